#include "trainer/checkpoint.h"

#include <hdf5.h>

#include <algorithm>
#include <bit>
#include <charconv>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <utility>

#include "trainer/crc32.h"
#include "trainer/durable_file.h"
#include "trainer/hdf5_io.h"
#include "trainer/options.h"
#include "trainer/signals.h"

namespace nexus {

namespace fs = std::filesystem;

// The CRC and the stored fp32 datasets are defined on little-endian bytes; on such a machine that
// is the memory image, so no byte swapping anywhere.
static_assert(std::endian::native == std::endian::little, "checkpoint CRCs assume a little-endian host");

namespace {

using namespace hdf5;

// ---- names and small helpers -----------------------------------------------------------------

constexpr const char* kGroups[3] = {"/model", "/optim/exp_avg", "/optim/exp_avg_sq"};
constexpr idx kChunkElements = idx(1) << 20;  // 4 MiB of fp32 per chunk at most

[[noreturn]] void fail(const std::string& message) { throw CheckpointError(message); }

std::string shape_text(const std::vector<idx>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// "step_<digits>.h5" -> the step; anything else (temporary files included) -> nullopt.
std::optional<idx> step_of_file_name(const std::string& name) {
  const std::string prefix = "step_", suffix = ".h5";
  if (name.size() <= prefix.size() + suffix.size() || name.rfind(prefix, 0) != 0 ||
      name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
    return std::nullopt;
  const char* first = name.data() + prefix.size();
  const char* last = name.data() + name.size() - suffix.size();
  idx step = 0;
  const auto r = std::from_chars(first, last, step);
  if (r.ec != std::errc() || r.ptr != last || *first == '-' || *first == '+') return std::nullopt;
  return step;
}

bool is_temporary_name(const std::string& name) {
  return (name.rfind("step_", 0) == 0 && name.find(".h5.tmp-") != std::string::npos) ||
         name.rfind("latest.tmp-", 0) == 0;
}

// ---- the metadata record ---------------------------------------------------------------------

// Every root attribute in one canonical byte string, so one CRC covers them all.
std::uint32_t meta_crc(const CheckpointMeta& m, const std::string& tensors) {
  std::string s;
  auto add = [&](const char* key, const std::string& value) {
    s += key;
    s += '=';
    s += std::to_string(value.size());
    s += ':';
    s += value;
    s += '\n';
  };
  add("format_version", std::to_string(m.format_version));
  add("step", std::to_string(m.step));
  add("tokens_seen", std::to_string(m.tokens_seen));
  add("config_ini", m.config_ini);
  add("loader_position", m.loader_position);
  add("seed", std::to_string(m.seed));
  add("optimizer_steps", std::to_string(m.optimizer_steps));
  add("bad_steps", std::to_string(m.bad_steps));
  add("tensors", tensors);
  return crc32_of(s.data(), s.size());
}

std::string tensor_manifest(const ParamTable& table) {
  std::string s;
  for (const ParamInfo& p : table.params()) s += p.name + "\n";
  return s;
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) lines.push_back(line);
  return lines;
}

// ---- writing ---------------------------------------------------------------------------------

void write_tensor(hid_t group, const ParamInfo& p, const float* data, const std::string& path,
                  const std::string& where) {
  const int rank = static_cast<int>(p.shape.size());
  std::vector<hsize_t> dims(p.shape.begin(), p.shape.end());
  Hid space(check(rank == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(rank, dims.data(), nullptr), path,
                  "creating the dataspace of " + where),
            H5Sclose);
  Hid dcpl(check(H5Pcreate(H5P_DATASET_CREATE), path, "creating a property list"), H5Pclose);
  if (rank > 0 && p.numel > 0) {
    // Whole trailing dimensions while they fit the budget, then as many rows as fit: for the
    // usual [rows, cols] weight that is a block of full rows.
    std::vector<hsize_t> chunk(dims.size());
    idx budget = kChunkElements;
    for (int d = rank - 1; d >= 0; --d) {
      const idx c = std::min(p.shape[static_cast<std::size_t>(d)], std::max<idx>(1, budget));
      chunk[static_cast<std::size_t>(d)] = static_cast<hsize_t>(c);
      budget /= c;
    }
    check(H5Pset_chunk(dcpl.get(), rank, chunk.data()), path, "chunking " + where);
    check(H5Pset_fletcher32(dcpl.get()), path, "adding the Fletcher32 filter to " + where);
  }
  Hid dset(check(H5Dcreate2(group, p.name.c_str(), H5T_IEEE_F32LE, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT),
                 path, "creating " + where),
           H5Dclose);
  if (p.numel > 0)
    check(H5Dwrite(dset.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), path, "writing " + where);
  write_u32(dset.get(), "crc32", crc32_of(data, static_cast<std::size_t>(p.numel) * sizeof(float)), path);
}

void write_file(const std::string& path, const CheckpointMeta& meta, const ParamTable& table,
                const float* const buffers[3]) {
  QuietHdf5 quiet;
  Hid fapl(check(file_access_plist(), path, "creating file access properties"), H5Pclose);
  // SEMI: closing the file fails (instead of silently deferring the write) if an object is open.
  check(H5Pset_fclose_degree(fapl.get(), H5F_CLOSE_SEMI), path, "setting the close degree");
  Hid file(check(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()), path, "cannot create the file"),
           H5Fclose);
  {
    Hid lcpl(check(H5Pcreate(H5P_LINK_CREATE), path, "creating a property list"), H5Pclose);
    check(H5Pset_create_intermediate_group(lcpl.get(), 1), path, "setting link properties");
    for (int g = 0; g < 3; ++g) {
      Hid group(check(H5Gcreate2(file.get(), kGroups[g], lcpl.get(), H5P_DEFAULT, H5P_DEFAULT), path,
                      std::string("creating group ") + kGroups[g]),
                H5Gclose);
      for (const ParamInfo& p : table.params())
        write_tensor(group.get(), p, buffers[g] + p.offset, path, std::string("dataset ") + kGroups[g] + "/" + p.name);
    }
  }
  failpoint("checkpoint_write");  // every tensor written, the metadata and completion mark not yet
  const hid_t root = file.get();
  const std::string tensors = tensor_manifest(table);
  write_i64(root, "format_version", meta.format_version, path);
  write_i64(root, "step", meta.step, path);
  write_i64(root, "tokens_seen", meta.tokens_seen, path);
  write_string_attr(root, "config_ini", meta.config_ini, path);
  write_string_attr(root, "loader_position", meta.loader_position, path);
  write_u64(root, "seed", meta.seed, path);
  write_i64(root, "optimizer_steps", meta.optimizer_steps, path);
  write_i64(root, "bad_steps", meta.bad_steps, path);
  write_string_attr(root, "tensors", tensors, path);
  write_u32(root, "meta_crc32", meta_crc(meta, tensors), path);
  check(H5Fflush(root, H5F_SCOPE_GLOBAL), path, "flushing");
  write_i64(root, "complete", 1, path);
  check(H5Fflush(root, H5F_SCOPE_GLOBAL), path, "flushing");
  if (!file.close()) fail("checkpoint " + path + ": closing the file failed" + hdf5_reason());
}

// Keeps `current` and the newest keep - 1 other step files; removes stray temporary files.
void prune(const fs::path& dir, const std::string& current, idx keep) {
  std::vector<std::pair<idx, fs::path>> others;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (is_temporary_name(name)) {
      fs::remove(entry.path(), ec);
    } else if (const auto step = step_of_file_name(name); step && name != current) {
      others.emplace_back(*step, entry.path());
    }
  }
  if (keep <= 0) return;
  std::sort(others.begin(), others.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  for (std::size_t i = static_cast<std::size_t>(keep - 1); i < others.size(); ++i) fs::remove(others[i].second, ec);
}

// ---- reading ---------------------------------------------------------------------------------

// An open, "complete" checkpoint with its verified metadata.
class Reader {
 public:
  explicit Reader(std::string path) : path_(std::move(path)) {
    std::error_code ec;
    if (!fs::exists(path_, ec)) fail("checkpoint " + path_ + " does not exist");
    if (!fs::is_regular_file(path_, ec)) fail("checkpoint " + path_ + " is not a regular file");
    file_size_ = static_cast<idx>(fs::file_size(path_, ec));
    Hid fapl(check(file_access_plist(), path_, "creating file access properties"), H5Pclose);
    const hid_t file = H5Fopen(path_.c_str(), H5F_ACC_RDONLY, fapl.get());
    if (file < 0) fail("checkpoint " + path_ + " is not a readable HDF5 file (truncated or damaged)" + hdf5_reason());
    file_ = Hid(file, H5Fclose);
    read_meta();
  }

  const CheckpointMeta& meta() const { return meta_; }
  const std::vector<std::string>& tensors() const { return tensors_; }
  const std::string& path() const { return path_; }

  // Reads group/name into `out` (numel floats; nullptr: a scratch buffer, for verification
  // only) after checking its type and, when `expected` is given, its shape; then its CRC.
  void read_tensor(const char* group, const std::string& name, const std::vector<idx>* expected, float* out) {
    const std::string full = std::string(group) + "/" + name;
    const std::string where = "dataset " + full;
    htri_t exists = H5Lexists(file_.get(), group, H5P_DEFAULT);
    if (exists > 0) exists = H5Lexists(file_.get(), full.c_str(), H5P_DEFAULT);
    if (exists < 0) fail("checkpoint " + path_ + ": damaged metadata: cannot look up " + where + hdf5_reason());
    if (exists == 0) fail("checkpoint " + path_ + ": missing " + where);
    Hid dset(check(H5Dopen2(file_.get(), full.c_str(), H5P_DEFAULT), path_, "opening " + where), H5Dclose);
    Hid type(check(H5Dget_type(dset.get()), path_, "reading the type of " + where), H5Tclose);
    if (H5Tget_class(type.get()) != H5T_FLOAT || H5Tget_size(type.get()) != sizeof(float))
      fail("checkpoint " + path_ + ": " + where + " is not fp32");
    Hid space(check(H5Dget_space(dset.get()), path_, "reading the shape of " + where), H5Sclose);
    const int rank = check(H5Sget_simple_extent_ndims(space.get()), path_, "reading the shape of " + where);
    std::vector<hsize_t> dims(static_cast<std::size_t>(rank));
    check(H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr), path_, "reading the shape of " + where);
    const std::vector<idx> shape(dims.begin(), dims.end());
    if (expected && shape != *expected)
      fail("checkpoint " + path_ + ": " + where + " has shape " + shape_text(shape) + ", this model expects " +
           shape_text(*expected));
    // Uncompressed data cannot exceed the file; a larger count means damaged metadata (and
    // would otherwise allocate absurdly, or overflow).
    const idx limit = file_size_ / idx(sizeof(float));
    idx numel = 1;
    for (idx s : shape) {
      if (s < 0 || (s > 0 && numel > limit / s))
        fail("checkpoint " + path_ + ": " + where + " claims shape " + shape_text(shape) + ", larger than the file");
      numel *= s;
    }
    std::vector<float> scratch;
    if (!out) {
      scratch.resize(static_cast<std::size_t>(numel));
      out = scratch.data();
    }
    if (numel > 0)
      check(H5Dread(dset.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out), path_,
            "reading " + where + " failed: data damaged");
    const auto stored = read_scalar_attr<std::uint32_t>(dset.get(), "crc32", H5T_NATIVE_UINT32, path_, where);
    const std::uint32_t actual = crc32_of(out, static_cast<std::size_t>(numel) * sizeof(float));
    if (stored != actual) {
      char buf[96];
      std::snprintf(buf, sizeof buf, " (stored crc32 %08x, data %08x)", stored, actual);
      fail("checkpoint " + path_ + ": checksum mismatch in " + where + buf);
    }
  }

 private:
  void read_meta() {
    const hid_t root = file_.get();
    const htri_t complete = H5Aexists(root, "complete");
    if (complete < 0) fail("checkpoint " + path_ + ": damaged metadata: cannot read its attributes" + hdf5_reason());
    if (complete == 0 || read_scalar_attr<std::int64_t>(root, "complete", H5T_NATIVE_INT64, path_, "the file") != 1)
      fail("checkpoint " + path_ + " is incomplete (no 'complete' mark: its write was interrupted)");
    const auto version = read_scalar_attr<std::int64_t>(root, "format_version", H5T_NATIVE_INT64, path_, "the file");
    if (version != kCheckpointFormatVersion)
      fail("checkpoint " + path_ + " has format version " + std::to_string(version) + "; this build reads version " +
           std::to_string(kCheckpointFormatVersion));
    meta_.format_version = static_cast<int>(version);
    meta_.step = read_scalar_attr<std::int64_t>(root, "step", H5T_NATIVE_INT64, path_, "the file");
    meta_.tokens_seen = read_scalar_attr<std::int64_t>(root, "tokens_seen", H5T_NATIVE_INT64, path_, "the file");
    meta_.config_ini = read_string_attr(root, "config_ini", path_);
    meta_.loader_position = read_string_attr(root, "loader_position", path_);
    meta_.seed = read_scalar_attr<std::uint64_t>(root, "seed", H5T_NATIVE_UINT64, path_, "the file");
    meta_.optimizer_steps =
        read_scalar_attr<std::int64_t>(root, "optimizer_steps", H5T_NATIVE_INT64, path_, "the file");
    meta_.bad_steps = read_scalar_attr<std::int64_t>(root, "bad_steps", H5T_NATIVE_INT64, path_, "the file");
    const std::string tensors = read_string_attr(root, "tensors", path_);
    const auto stored = read_scalar_attr<std::uint32_t>(root, "meta_crc32", H5T_NATIVE_UINT32, path_, "the file");
    if (stored != meta_crc(meta_, tensors))
      fail("checkpoint " + path_ + ": metadata checksum mismatch (damaged attributes)");
    tensors_ = split_lines(tensors);
  }

  std::string path_;
  idx file_size_ = 0;
  Hid file_;
  CheckpointMeta meta_;
  std::vector<std::string> tensors_;
};

// "key = value" lines of the [model] section of to_ini() text, less model.attention_impl: which
// kernels compute attention is no property of the weights, and a resumed run may change it.
std::vector<std::pair<std::string, std::string>> model_section(const std::string& ini) {
  std::vector<std::pair<std::string, std::string>> out;
  bool in_model = false;
  for (const std::string& line : split_lines(ini)) {
    if (line.front() == '[') {
      in_model = line == "[model]";
    } else if (in_model && line.front() != '#') {
      const auto eq = line.find(" = ");
      if (eq != std::string::npos && line.substr(0, eq) != "attention_impl")
        out.emplace_back(line.substr(0, eq), line.substr(eq + 3));
    }
  }
  return out;
}

void check_architecture(const std::string& path, const std::string& stored_ini, const ModelConfig& expected) {
  RunOptions stored, wanted;
  try {
    stored = parse_ini(stored_ini, "the config stored in checkpoint " + path);
  } catch (const ConfigError& e) {
    fail("checkpoint " + path + ": its stored config cannot be read: " + e.what());
  }
  wanted.model = expected;
  if (wanted.model.pattern.empty()) wanted.model.pattern = wanted.model.layer_pattern();
  const auto have = model_section(to_ini(stored)), want = model_section(to_ini(wanted));
  for (std::size_t i = 0; i < std::min(have.size(), want.size()); ++i)
    if (have[i] != want[i])
      fail("checkpoint " + path + " was written for model." + have[i].first + " = " + have[i].second +
           ", this run has model." + want[i].first + " = " + want[i].second);
}

// The verification error of `path`, or "" when it verifies.
std::string verification_error(const std::string& path) {
  try {
    verify_checkpoint(path);
    return "";
  } catch (const CheckpointError& e) {
    return e.what();
  }
}

// Step files in `dir`, newest first.
std::vector<fs::path> step_files(const fs::path& dir) {
  std::vector<std::pair<idx, fs::path>> found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec))
    if (const auto step = step_of_file_name(entry.path().filename().string()); step && entry.is_regular_file(ec))
      found.emplace_back(*step, entry.path());
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<fs::path> out;
  for (auto& f : found) out.push_back(std::move(f.second));
  return out;
}

// The newest step file that verifies, whatever `latest` says: `latest` is only a hint. A run that
// died (or whose disk filled) after renaming step_N.h5 into place but before rewriting `latest`
// leaves the pointer one checkpoint behind, and step_N.h5 is complete and verified all the same.
// `accept` returns "" when it takes a candidate, or why it cannot (e.g. its verification error).
template <typename Accept>
std::string resolve_in_directory(const fs::path& dir, std::vector<std::string>& notes, Accept&& accept) {
  std::error_code ec;
  const fs::path latest = dir / "latest";
  std::string hint;  // the file `latest` names
  const bool has_latest = fs::exists(latest, ec);
  if (has_latest) {
    std::ifstream in(latest);
    std::string name;
    std::getline(in, name);
    while (!name.empty() && (name.back() == '\r' || name.back() == ' ')) name.pop_back();
    if (!step_of_file_name(name) || name.find('/') != std::string::npos)
      notes.push_back(latest.string() + " holds '" + name + "', not a checkpoint file name; ignoring it");
    else
      hint = (dir / name).string();
  }
  const std::vector<fs::path> candidates = step_files(dir);
  if (candidates.empty()) {
    if (!has_latest) return "";  // a fresh start
    fail("checkpoint directory " + dir.string() + " has a 'latest' file but no usable checkpoint");
  }
  if (!has_latest) notes.push_back(latest.string() + " is missing; looking for the newest checkpoint that verifies");
  bool skipped = false;
  for (const fs::path& c : candidates) {
    const std::string error = accept(c.string());
    if (!error.empty()) {
      notes.push_back((c.string() == hint ? latest.string() + " names " + c.string() + ", which cannot be used: "
                                          : "skipping " + c.string() + ": ") +
                      error);
      skipped = true;
      continue;
    }
    if (!hint.empty() && c.string() != hint && !skipped)
      notes.push_back(latest.string() + " names " + hint + ", but " + c.string() +
                      " is newer and verifies (a save interrupted before updating 'latest'); resuming from it");
    else if (skipped)
      notes.push_back("resuming from " + c.string() + " instead");
    return c.string();
  }
  fail("no checkpoint in " + dir.string() + " verifies (" + std::to_string(candidates.size()) +
       " found; see the notes for each)");
}

}  // namespace

// ---- public API ------------------------------------------------------------------------------

std::string checkpoint_file_name(idx step) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "step_%08lld.h5", static_cast<long long>(step));
  return buf;
}

std::string save_checkpoint(const std::string& dir, const CheckpointMeta& meta, const ParamTable& table,
                            const float* params, const float* exp_avg, const float* exp_avg_sq, idx keep,
                            const std::function<bool()>& publish_allowed) {
  if (meta.step < 0) fail("save_checkpoint: step " + std::to_string(meta.step) + " is negative");
  if (!params || !exp_avg || !exp_avg_sq) fail("save_checkpoint: null parameter or optimizer buffer");
  const fs::path where = dir.empty() ? fs::path(".") : fs::path(dir);
  std::error_code ec;
  fs::create_directories(where, ec);
  if (ec) fail("checkpoint: cannot create directory '" + where.string() + "': " + ec.message());
  const std::string name = checkpoint_file_name(meta.step);
  const fs::path final_path = where / name;
  const fs::path tmp = where / temporary_name(name);
  CheckpointMeta written = meta;
  written.format_version = kCheckpointFormatVersion;  // the layout this code writes
  const float* const buffers[3] = {params, exp_avg, exp_avg_sq};
  try {
    write_file(tmp.string(), written, table, buffers);
    fsync_path(tmp.string(), false);
    // The last moment to withdraw: after the rename the checkpoint is published.
    if (publish_allowed && !publish_allowed())
      fail("checkpoint " + final_path.string() + " not published: the run is being abandoned");
    rename_durably(tmp, final_path);
  } catch (...) {
    fs::remove(tmp, ec);
    throw;
  }
  failpoint("checkpoint_after_rename");
  write_text_durably(where / "latest", name + "\n");
  prune(where, name, keep);
  return final_path.string();
}

CheckpointMeta read_checkpoint_meta(const std::string& path) {
  QuietHdf5 quiet;
  return Reader(path).meta();
}

CheckpointMeta verify_checkpoint(const std::string& path) {
  QuietHdf5 quiet;
  Reader reader(path);
  for (const char* group : kGroups)
    for (const std::string& name : reader.tensors()) reader.read_tensor(group, name, nullptr, nullptr);
  return reader.meta();
}

CheckpointMeta load_checkpoint(const std::string& path, const ModelConfig& expected, const ParamTable& table,
                               float* params, float* exp_avg, float* exp_avg_sq) {
  QuietHdf5 quiet;
  Reader reader(path);
  check_architecture(path, reader.meta().config_ini, expected);
  for (const std::string& name : reader.tensors())
    if (!table.find(name)) fail("checkpoint " + path + " holds tensor " + name + ", which this model does not have");
  float* const buffers[3] = {params, exp_avg, exp_avg_sq};
  for (int g = 0; g < 3; ++g)
    for (const ParamInfo& p : table.params())
      reader.read_tensor(kGroups[g], p.name, &p.shape, buffers[g] ? buffers[g] + p.offset : nullptr);
  return reader.meta();
}

namespace {

// The resolution of --resume, with `accept` deciding about each candidate file.
template <typename Accept>
std::string resolve_with(const std::string& spec, const std::string& ckpt_dir, std::vector<std::string>& notes,
                         Accept&& accept) {
  std::error_code ec;
  if (spec == "latest") return resolve_in_directory(ckpt_dir, notes, accept);
  if (fs::is_directory(spec, ec)) return resolve_in_directory(spec, notes, accept);
  const std::string error = accept(spec);
  if (!error.empty()) throw CheckpointError("cannot resume from " + spec + ": " + error);
  return spec;
}

}  // namespace

std::string resolve_checkpoint(const std::string& spec, const std::string& ckpt_dir, std::vector<std::string>& notes) {
  return resolve_with(spec, ckpt_dir, notes, verification_error);
}

std::string resume_checkpoint(const std::string& spec, const std::string& ckpt_dir, const ModelConfig& expected,
                              const ParamTable& table, float* params, float* exp_avg, float* exp_avg_sq,
                              CheckpointMeta& meta, std::vector<std::string>& notes) {
  return resolve_with(spec, ckpt_dir, notes, [&](const std::string& path) -> std::string {
    // A file whose metadata does not even read is damaged: the next older one may do.
    CheckpointMeta stored;
    try {
      stored = read_checkpoint_meta(path);
    } catch (const CheckpointError& e) {
      return e.what();
    }
    // A different architecture is the run's mistake, not damage, and older files share it: stop.
    check_architecture(path, stored.config_ini, expected);
    try {
      meta = load_checkpoint(path, expected, table, params, exp_avg, exp_avg_sq);  // verifies as it reads
    } catch (const CheckpointError& e) {
      return e.what();
    }
    return "";
  });
}

}  // namespace nexus
