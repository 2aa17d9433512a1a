// The one interface every token file format implements, and the error every data problem throws.
//
// A TokenReader is one open file holding a 1-D array of token ids. It gives random access to any
// range without reading the rest of the file, so each data-parallel rank reads only its own rows.
#pragma once

#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>

#include "kernels/types.h"

namespace nexus {

// Thrown for unreadable, malformed or out-of-vocabulary data. what() names the file, where in it
// (byte offset or token index), the value found and what was expected.
struct DataError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// DataError whose message is the parts streamed one after another.
template <typename... Parts>
DataError data_error(const Parts&... parts) {
  std::ostringstream s;
  (s << ... << parts);
  return DataError(s.str());
}

class TokenReader {
 public:
  virtual ~TokenReader() = default;
  virtual const std::string& path() const = 0;
  // Number of tokens in the file.
  virtual idx size() const = 0;
  // out[0, count) = tokens [start, start + count) of this file, widened to int32. Requires
  // 0 <= start and start + count <= size(). Values are not checked against a vocabulary here
  // (TokenSource does that); an unsigned value above INT32_MAX arrives negative or clipped.
  virtual void read(idx start, idx count, std::int32_t* out) = 0;
  // Where token i lives, for error messages ("byte offset 1048" or "element 12").
  virtual std::string locate(idx i) const = 0;
};

}  // namespace nexus
