// The HDF5 wrapper of the checkpoint format: ids closed on scope exit, HDF5's error stack turned
// into CheckpointError messages ("checkpoint <path>: <what> (HDF5: <cause>)"), the file access
// properties every checkpoint is opened with, and typed scalar and string attributes.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <cstdlib>
#include <exception>
#include <string>
#include <utility>

#include "trainer/checkpoint_error.h"

namespace nexus::hdf5 {

// An HDF5 id closed on scope exit.
class Hid {
 public:
  Hid() = default;
  Hid(hid_t id, herr_t (*closer)(hid_t)) : id_(id), close_(closer) {}
  Hid(Hid&& o) noexcept : id_(std::exchange(o.id_, -1)), close_(o.close_) {}
  Hid& operator=(Hid&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = std::exchange(o.id_, -1);
      close_ = o.close_;
    }
    return *this;
  }
  Hid(const Hid&) = delete;
  Hid& operator=(const Hid&) = delete;
  ~Hid() { reset(); }
  hid_t get() const { return id_; }
  // Closes now and reports whether the close succeeded (it is where a file's data is written).
  bool close() {
    const bool ok = id_ < 0 || close_(id_) >= 0;
    id_ = -1;
    return ok;
  }

 private:
  void reset() {
    if (id_ >= 0) close_(id_);
    id_ = -1;
  }
  hid_t id_ = -1;
  herr_t (*close_)(hid_t) = nullptr;
};

// Silences HDF5's error printing while a checkpoint is read or written: its errors become
// CheckpointError messages instead. The caller's handler is restored when the scope ends
// normally, but not when it ends with an exception: HDF5 1.10 leaks internal blocks when a damaged
// object header fails to load (HDFGroup/hdf5#3790, fixed in 1.14.5), and with a handler installed
// it then prints "HDF5: infinite loop closing library" at exit, which would look like a failure
// after a damaged checkpoint has been cleanly refused.
class QuietHdf5 {
 public:
  QuietHdf5() {
#if !H5_VERSION_GE(1, 10, 7)
    // No per-file switch before 1.10.7: checkpoints must not depend on a lock-capable filesystem.
    ::setenv("HDF5_USE_FILE_LOCKING", "FALSE", 0);
#endif
    H5Eget_auto2(H5E_DEFAULT, &func_, &data_);
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  }
  ~QuietHdf5() {
    if (std::uncaught_exceptions() == exceptions_) H5Eset_auto2(H5E_DEFAULT, func_, data_);
  }
  QuietHdf5(const QuietHdf5&) = delete;
  QuietHdf5& operator=(const QuietHdf5&) = delete;

 private:
  H5E_auto2_t func_ = nullptr;
  void* data_ = nullptr;
  int exceptions_ = std::uncaught_exceptions();
};

// The innermost messages of HDF5's current error stack (the specific cause) as
// " (HDF5: <cause>)", or "" when the stack is empty; then clears it.
std::string hdf5_reason();

// File access properties: no file locking (checkpoints must not depend on a lock-capable
// filesystem) and the HDF5 1.10 file format. Negative on failure.
hid_t file_access_plist();

// Raises CheckpointError "<path>: <what><HDF5 reason>" when `status` is negative.
template <typename T>
T check(T status, const std::string& path, const std::string& what) {
  if (status < 0) throw CheckpointError("checkpoint " + path + ": " + what + hdf5_reason());
  return status;
}

void write_i64(hid_t obj, const char* name, std::int64_t v, const std::string& path);
void write_u64(hid_t obj, const char* name, std::uint64_t v, const std::string& path);
void write_u32(hid_t obj, const char* name, std::uint32_t v, const std::string& path);
// Fixed-length, null-padded UTF-8 string of exactly the text's size (at least 1 byte).
void write_string_attr(hid_t obj, const char* name, const std::string& text, const std::string& path);

// The attribute `name` of `obj` (`where` names obj in messages); missing or unreadable throws.
Hid open_attr(hid_t obj, const char* name, const std::string& path, const std::string& where);

// Reads a scalar integer attribute, converted by HDF5 to `mem_type` (range-checked).
template <typename T>
T read_scalar_attr(hid_t obj, const char* name, hid_t mem_type, const std::string& path, const std::string& where) {
  Hid attr = open_attr(obj, name, path, where);
  Hid type(check(H5Aget_type(attr.get()), path, "reading attribute types"), H5Tclose);
  Hid space(check(H5Aget_space(attr.get()), path, "reading attribute spaces"), H5Sclose);
  if (H5Tget_class(type.get()) != H5T_INTEGER || H5Sget_simple_extent_npoints(space.get()) != 1)
    throw CheckpointError("checkpoint " + path + ": attribute '" + name + "' on " + where + " is not a scalar integer");
  T value{};
  check(H5Aread(attr.get(), mem_type, &value), path, "reading attribute '" + std::string(name) + "' on " + where);
  return value;
}

// A fixed-length string attribute of the file's root (trailing NULs removed).
std::string read_string_attr(hid_t obj, const char* name, const std::string& path);

}  // namespace nexus::hdf5
