// Token ids in an HDF5 file: a 1-D dataset of any integer type (default name /tokens), read
// range by range with a hyperslab and converted to int32 by HDF5.
//
// Opened with the serial API (no MPI-IO driver: each rank reads its own rows independently) and
// with HDF5 file locking disabled where the library supports it (>= 1.10.7), so files on network
// file systems without lock support open. HDF5's automatic error printing is silenced during these
// calls; failures become DataError naming the file and the dataset.
#pragma once

#include <cstdint>
#include <string>

#include "data/token_reader.h"

namespace nexus {

class Hdf5TokenReader final : public TokenReader {
 public:
  // Throws DataError if the file is missing or not HDF5, if the dataset is missing, or if it is not
  // a 1-D integer dataset (the message names the class or rank found).
  explicit Hdf5TokenReader(std::string path, std::string dataset = "/tokens");
  ~Hdf5TokenReader() override;
  Hdf5TokenReader(const Hdf5TokenReader&) = delete;
  Hdf5TokenReader& operator=(const Hdf5TokenReader&) = delete;

  const std::string& path() const override { return path_; }
  idx size() const override { return count_; }
  // Values outside int32 arrive clipped to INT32_MIN / INT32_MAX (HDF5's integer conversion).
  void read(idx start, idx count, std::int32_t* out) override;
  std::string locate(idx i) const override;

 private:
  std::string path_, dataset_;
  std::int64_t file_ = -1, dset_ = -1;  // hid_t (int64 since HDF5 1.10)
  idx count_ = 0;
};

// True if the file starts with the HDF5 signature (a superblock at offset 0; files with a user
// block are recognised by their .h5 / .hdf5 extension instead, see token_source.h).
bool has_hdf5_signature(const std::string& path);

}  // namespace nexus
