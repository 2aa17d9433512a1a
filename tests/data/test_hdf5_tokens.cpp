// HDF5 token files: round trip through files written here with the HDF5 C API (several integer
// types), format detection, and every error.
#include <gtest/gtest.h>
#include <hdf5.h>

#include "data/hdf5_tokens.h"
#include "data/token_source.h"
#include "data_test_util.h"

namespace nexus {
namespace {

using test::error_of;
using test::TempDir;

// Writes `values` as dataset `name` with file type `file_type` and shape `dims` (product = size).
template <typename V>
void write_h5(const std::string& path, const std::string& name, hid_t file_type, hid_t mem_type,
              const std::vector<V>& values, std::vector<hsize_t> dims) {
  const hid_t file = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(file, 0);
  const hid_t space = H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
  const hid_t dset = H5Dcreate2(file, name.c_str(), file_type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(dset, 0);
  ASSERT_GE(H5Dwrite(dset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()), 0);
  H5Dclose(dset);
  H5Sclose(space);
  H5Fclose(file);
}

std::vector<std::int64_t> ramp(idx n, std::int64_t mul, std::int64_t mod) {
  std::vector<std::int64_t> v(static_cast<std::size_t>(n));
  for (idx i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = (i * mul) % mod;
  return v;
}

TEST(Hdf5Tokens, RoundTripAcrossIntegerTypes) {
  TempDir dir;
  const idx n = 500;
  const auto values = ramp(n, 7919, 65536);  // fits every type below; uses the uint16 top bit
  for (const hid_t type : {H5T_STD_U16LE, H5T_STD_I32LE, H5T_STD_U32BE, H5T_STD_I64LE}) {
    const auto path = dir.file("t.h5");
    write_h5(path, "tokens", type, H5T_NATIVE_INT64, values, {static_cast<hsize_t>(n)});
    Hdf5TokenReader r(path);
    ASSERT_EQ(r.size(), n);
    for (const auto& [start, count] : std::vector<std::pair<idx, idx>>{{0, n}, {499, 1}, {17, 300}, {3, 0}}) {
      std::vector<std::int32_t> out(static_cast<std::size_t>(count));
      r.read(start, count, out.data());
      for (idx i = 0; i < count; ++i)
        ASSERT_EQ(out[static_cast<std::size_t>(i)], values[static_cast<std::size_t>(start + i)]) << start << "+" << i;
    }
  }
}

TEST(Hdf5Tokens, DetectedByExtensionOrSignatureInATokenSource) {
  TempDir dir;
  const auto values = ramp(10, 1, 1000);
  write_h5(dir.file("a.h5"), "tokens", H5T_STD_U16LE, H5T_NATIVE_INT64, values, {10});
  write_h5(dir.file("b.data"), "tokens", H5T_STD_U16LE, H5T_NATIVE_INT64, values, {10});  // no telling name
  EXPECT_TRUE(has_hdf5_signature(dir.file("b.data")));
  TokenSource src({dir.file("a.h5"), dir.file("b.data")}, 10);
  ASSERT_EQ(src.size(), 20);
  std::vector<std::int32_t> out(6);
  src.read(7, 6, out.data());
  EXPECT_EQ(out, (std::vector<std::int32_t>{7, 8, 9, 0, 1, 2}));
}

TEST(Hdf5Tokens, MissingDatasetNamesFileAndDataset) {
  TempDir dir;
  const auto path = dir.file("m.h5");
  write_h5(path, "ids", H5T_STD_I32LE, H5T_NATIVE_INT64, ramp(4, 1, 4), {4});
  const auto msg = error_of([&] { Hdf5TokenReader r(path); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("/tokens"), std::string::npos) << msg;
}

TEST(Hdf5Tokens, WrongTypeAndRank) {
  TempDir dir;
  const auto path = dir.file("w.h5");
  write_h5(path, "tokens", H5T_IEEE_F32LE, H5T_NATIVE_DOUBLE, std::vector<double>{1, 2, 3}, {3});
  auto msg = error_of([&] { Hdf5TokenReader r(path); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("float"), std::string::npos) << msg;

  write_h5(path, "tokens", H5T_STD_I32LE, H5T_NATIVE_INT64, ramp(6, 1, 6), {2, 3});
  msg = error_of([&] { Hdf5TokenReader r(path); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("rank 2"), std::string::npos) << msg;
}

TEST(Hdf5Tokens, MissingOrNonHdf5File) {
  TempDir dir;
  auto path = dir.file("none.h5");
  EXPECT_NE(error_of([&] { Hdf5TokenReader r(path); }).find(path), std::string::npos);
  path = dir.file("text.h5");
  test::write_bytes(path, {'h', 'e', 'l', 'l', 'o'});
  const auto msg = error_of([&] { Hdf5TokenReader r(path); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("not an HDF5 file"), std::string::npos) << msg;
}

TEST(Hdf5Tokens, OutOfVocabularyNamesElement) {
  TempDir dir;
  const auto path = dir.file("v.h5");
  write_h5(path, "tokens", H5T_STD_I64LE, H5T_NATIVE_INT64, std::vector<std::int64_t>{1, 2, -4, 3}, {4});
  auto src = TokenSource::open(path, 50);
  std::vector<std::int32_t> out(4);
  const auto msg = error_of([&] { src.read(0, 4, out.data()); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("element 2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("value -4"), std::string::npos) << msg;
}

}  // namespace
}  // namespace nexus
