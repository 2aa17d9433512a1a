#include "data/hdf5_tokens.h"

#include <hdf5.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <type_traits>

namespace nexus {

static_assert(std::is_same_v<hid_t, std::int64_t>, "Hdf5TokenReader stores hid_t as int64");

namespace {

// Silences HDF5's default error-stack printing for the lifetime of the guard, restoring the
// caller's handler afterwards: our failures are reported as DataError instead.
class QuietHdf5Errors {
 public:
  QuietHdf5Errors() {
    H5Eget_auto2(H5E_DEFAULT, &func_, &data_);
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  }
  ~QuietHdf5Errors() { H5Eset_auto2(H5E_DEFAULT, func_, data_); }
  QuietHdf5Errors(const QuietHdf5Errors&) = delete;
  QuietHdf5Errors& operator=(const QuietHdf5Errors&) = delete;

 private:
  H5E_auto2_t func_ = nullptr;
  void* data_ = nullptr;
};

const char* type_class_name(H5T_class_t c) {
  switch (c) {
    case H5T_INTEGER: return "integer";
    case H5T_FLOAT: return "float";
    case H5T_STRING: return "string";
    case H5T_COMPOUND: return "compound";
    case H5T_ENUM: return "enum";
    case H5T_ARRAY: return "array";
    default: return "non-integer";
  }
}

}  // namespace

bool has_hdf5_signature(const std::string& path) {
  static constexpr char kSignature[8] = {'\x89', 'H', 'D', 'F', '\r', '\n', '\x1a', '\n'};
  std::ifstream f(path, std::ios::binary);
  char head[8] = {};
  return f.read(head, 8) && std::memcmp(head, kSignature, 8) == 0;
}

Hdf5TokenReader::Hdf5TokenReader(std::string path, std::string dataset)
    : path_(std::move(path)), dataset_(std::move(dataset)) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path_, ec))
    throw data_error("cannot open HDF5 token file '", path_, "': no such file");
  QuietHdf5Errors quiet;
  const hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
#if H5_VERSION_GE(1, 10, 7)
  H5Pset_file_locking(fapl, false, true);
#endif
  file_ = H5Fopen(path_.c_str(), H5F_ACC_RDONLY, fapl);
  H5Pclose(fapl);
  if (file_ < 0) throw data_error("cannot open HDF5 token file '", path_, "': not an HDF5 file or unreadable");

  hid_t type = -1, space = -1;
  try {
    if (H5Lexists(file_, dataset_.c_str(), H5P_DEFAULT) <= 0)
      throw data_error(path_, ": no dataset '", dataset_, "' (expected a 1-D integer dataset of token ids)");
    dset_ = H5Dopen2(file_, dataset_.c_str(), H5P_DEFAULT);
    if (dset_ < 0) throw data_error(path_, ": '", dataset_, "' exists but is not a dataset");
    type = H5Dget_type(dset_);
    const H5T_class_t cls = H5Tget_class(type);
    if (cls != H5T_INTEGER)
      throw data_error(path_, ": dataset '", dataset_, "' has ", type_class_name(cls),
                       " elements, expected integer token ids");
    space = H5Dget_space(dset_);
    const int rank = H5Sget_simple_extent_ndims(space);
    if (rank != 1)
      throw data_error(path_, ": dataset '", dataset_, "' has rank ", rank, ", expected a 1-D array of token ids");
    hsize_t n = 0;
    H5Sget_simple_extent_dims(space, &n, nullptr);
    count_ = static_cast<idx>(n);
    H5Sclose(space);
    H5Tclose(type);
  } catch (...) {
    if (space >= 0) H5Sclose(space);
    if (type >= 0) H5Tclose(type);
    if (dset_ >= 0) H5Dclose(dset_);
    H5Fclose(file_);
    throw;
  }
}

Hdf5TokenReader::~Hdf5TokenReader() {
  QuietHdf5Errors quiet;
  if (dset_ >= 0) H5Dclose(dset_);
  if (file_ >= 0) H5Fclose(file_);
}

void Hdf5TokenReader::read(idx start, idx count, std::int32_t* out) {
  if (start < 0 || count < 0 || start + count > count_)
    throw data_error(path_, ": token range [", start, ", ", start + count, ") is outside dataset '", dataset_, "' of ",
                     count_, " tokens");
  if (count == 0) return;
  QuietHdf5Errors quiet;
  const hsize_t offset = static_cast<hsize_t>(start), n = static_cast<hsize_t>(count);
  const hid_t file_space = H5Dget_space(dset_);
  const hid_t mem_space = H5Screate_simple(1, &n, nullptr);
  herr_t status = H5Sselect_hyperslab(file_space, H5S_SELECT_SET, &offset, nullptr, &n, nullptr);
  if (status >= 0) status = H5Dread(dset_, H5T_NATIVE_INT32, mem_space, file_space, H5P_DEFAULT, out);
  H5Sclose(mem_space);
  H5Sclose(file_space);
  if (status < 0)
    throw data_error(path_, ": reading elements [", start, ", ", start + count, ") of dataset '", dataset_, "' failed");
}

std::string Hdf5TokenReader::locate(idx i) const {
  return "element " + std::to_string(i) + " of dataset '" + dataset_ + "'";
}

}  // namespace nexus
