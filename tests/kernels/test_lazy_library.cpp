// kernels/cuda/lazy_library.h, the loader of the CUDA libraries the backend opens on first use,
// checked on libraries every machine has (it includes no CUDA header, so this runs in any build):
// a function found by name is the one the header declares, and a missing library or symbol
// throws naming it and what the run needed it for.
#include "kernels/cuda/lazy_library.h"

#include <gtest/gtest.h>

#include <cstring>
#include <stdexcept>
#include <string>

namespace nexus::cuda {
namespace {

struct Libc {
  DynamicLibrary library{"libc.so.6"};
  NEXUS_LIBRARY_FUNCTION(library, strlen);
};

TEST(LazyLibrary, CallsAFunctionByItsDeclaredType) {
  const Libc libc;
  EXPECT_EQ(libc.strlen("nexus"), std::size_t(5));
  EXPECT_EQ(libc.strlen, &::strlen);  // the same function a linked call reaches
}

std::string error_of(void (*f)()) {
  try {
    f();
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "(no exception)";
}

TEST(LazyLibrary, AMissingLibraryNamesItself) {
  const std::string what = error_of([] { DynamicLibrary("libnexus_no_such_library.so.1"); });
  EXPECT_NE(what.find("runtime.device = cuda needs libnexus_no_such_library.so.1: "), std::string::npos) << what;
}

TEST(LazyLibrary, AMissingSymbolNamesItAndTheLibrary) {
  const std::string what = error_of([] { DynamicLibrary("libc.so.6").function<void (*)()>("nexus_no_such_symbol"); });
  EXPECT_NE(what.find("libc.so.6 has no symbol nexus_no_such_symbol"), std::string::npos) << what;
}

}  // namespace
}  // namespace nexus::cuda
