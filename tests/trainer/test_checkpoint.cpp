// Checkpoints: exact round trip, logical shapes, crash-safe directory handling, architecture
// checks, and damage (truncation, flipped bytes, rewritten data, removed pieces) that must be
// refused, never loaded as different values.
#include <gtest/gtest.h>
#include <hdf5.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "data/data_test_util.h"
#include "support/model_configs.h"
#include "support/reference_crc32.h"
#include "trainer/commands.h"
#include "trainer/checkpoint.h"
#include "trainer/crc32.h"
#include "trainer/options.h"

namespace nexus {
namespace {

namespace fs = std::filesystem;
using test::read_bytes;
using test::reference_crc32;
using test::TempDir;
using test::write_bytes;

ModelConfig small_config() {
  return test::small_hybrid({.vocab_size = 32, .d_model = 16, .pattern = "MA", .mlp_hidden = 32, .n_heads = 2,
                             .n_kv_heads = 1, .head_dim = 8, .mamba_chunk = 16});
}

// A model's parameters and optimizer state with random values (and a few special ones), plus
// the metadata of a run that has them.
struct State {
  ModelConfig config;
  ParamTable table;
  std::vector<float> params, m, v;
  CheckpointMeta meta;

  explicit State(const ModelConfig& c, std::uint32_t seed = 7) : config(c), table(c) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.f, 1.f);
    const std::size_t n = static_cast<std::size_t>(table.total());
    params.resize(n);
    m.resize(n);
    v.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
      params[i] = normal(rng);
      m[i] = 1e-3f * normal(rng);
      v[i] = std::abs(1e-6f * normal(rng));
    }
    // Values whose bits a lossy path would change.
    params[0] = -0.0f;
    params[1] = std::numeric_limits<float>::denorm_min();
    params[2] = std::numeric_limits<float>::infinity();
    params[3] = std::numeric_limits<float>::quiet_NaN();
    RunOptions o = parse_ini("");
    o.model = c;
    meta.step = 100;
    meta.tokens_seen = 123456789012LL;
    meta.config_ini = to_ini(o);
    meta.loader_position = "epoch=2,sequence=1536";
    meta.seed = 0xFEDCBA9876543210ull;
    meta.optimizer_steps = 98;
    meta.bad_steps = 2;
  }

  std::string save(const std::string& dir, idx step, idx keep = 0) {
    meta.step = step;
    return save_checkpoint(dir, meta, table, params.data(), m.data(), v.data(), keep);
  }
};

struct Loaded {
  std::vector<float> params, m, v;
  CheckpointMeta meta;
};

Loaded load(const std::string& path, const ModelConfig& config) {
  const ParamTable table(config);
  Loaded l;
  const std::size_t n = static_cast<std::size_t>(table.total());
  l.params.assign(n, 0.f);
  l.m.assign(n, 0.f);
  l.v.assign(n, 0.f);
  l.meta = load_checkpoint(path, config, table, l.params.data(), l.m.data(), l.v.data());
  return l;
}

bool bit_identical(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// The message of the CheckpointError that f throws (a test failure if it throws nothing else).
std::string checkpoint_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const CheckpointError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a CheckpointError";
  return {};
}

std::set<std::string> dir_listing(const fs::path& dir) {
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.insert(e.path().filename().string());
  return names;
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Test-side HDF5 access to a checkpoint file, without the code under test; no file locking.
hid_t open_h5(const std::string& path, unsigned flags) {
  const hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  H5Pset_file_locking(fapl, false, true);
  const hid_t f = H5Fopen(path.c_str(), flags, fapl);
  H5Pclose(fapl);
  return f;
}

// File offset and size of the first chunk of `dataset`.
std::pair<std::size_t, std::size_t> first_chunk(const std::string& path, const std::string& dataset) {
  const hid_t f = open_h5(path, H5F_ACC_RDONLY);
  EXPECT_GE(f, 0);
  const hid_t d = H5Dopen2(f, dataset.c_str(), H5P_DEFAULT);
  EXPECT_GE(d, 0);
  hsize_t offset[8] = {};
  unsigned mask = 0;
  haddr_t addr = 0;
  hsize_t size = 0;
  const hid_t space = H5Dget_space(d);
  EXPECT_GE(H5Dget_chunk_info(d, space, 0, offset, &mask, &addr, &size), 0);
  H5Sclose(space);
  H5Dclose(d);
  H5Fclose(f);
  return {static_cast<std::size_t>(addr), static_cast<std::size_t>(size)};
}

// `copy` := `path` changed through the HDF5 API by `edit`, so HDF5's own checksums stay valid.
void edit_copy(const std::string& path, const std::string& copy, const std::function<void(hid_t)>& edit) {
  fs::copy_file(path, copy, fs::copy_options::overwrite_existing);
  const hid_t f = open_h5(copy, H5F_ACC_RDWR);
  ASSERT_GE(f, 0);
  edit(f);
  H5Fclose(f);
}

// `to` := `bytes` with byte `at` xor-ed with `mask`.
void write_flipped(const std::vector<unsigned char>& bytes, std::size_t at, unsigned char mask, const std::string& to) {
  std::vector<unsigned char> b = bytes;
  b[at] ^= mask;
  write_bytes(to, b);
}

// ---------------------------------------------------------------------------------------------

TEST(Checkpoint, Crc32MatchesTheStandardCheckValueAndABitwiseReference) {
  EXPECT_EQ(crc32_of("123456789", 9), 0xCBF43926u);  // the CRC-32/ISO-HDLC check value
  EXPECT_EQ(crc32_of("", 0), 0u);
  std::mt19937 rng(3);
  std::vector<unsigned char> bytes(1000);
  for (auto& b : bytes) b = static_cast<unsigned char>(rng());
  for (std::size_t n : {1u, 7u, 8u, 9u, 63u, 1000u}) {
    EXPECT_EQ(crc32_of(bytes.data(), n), reference_crc32(bytes.data(), n)) << n;
    // Continuing a CRC over a split buffer gives the CRC of the whole.
    EXPECT_EQ(crc32_of(bytes.data() + n / 3, n - n / 3, crc32_of(bytes.data(), n / 3)),
              reference_crc32(bytes.data(), n))
        << n;
  }
}

TEST(Checkpoint, RoundTripIsBitIdenticalWithEveryMetaField) {
  TempDir dir;
  State s(small_config());
  const std::string path = s.save(dir.path().string(), 100);
  EXPECT_EQ(path, (dir.path() / "step_00000100.h5").string());

  const Loaded l = load(path, s.config);
  EXPECT_TRUE(bit_identical(l.params, s.params));
  EXPECT_TRUE(bit_identical(l.m, s.m));
  EXPECT_TRUE(bit_identical(l.v, s.v));
  EXPECT_EQ(l.meta.format_version, 1);
  EXPECT_EQ(l.meta.step, 100);
  EXPECT_EQ(l.meta.tokens_seen, 123456789012LL);
  EXPECT_EQ(l.meta.config_ini, s.meta.config_ini);
  EXPECT_EQ(l.meta.loader_position, "epoch=2,sequence=1536");
  EXPECT_EQ(l.meta.seed, 0xFEDCBA9876543210ull);
  EXPECT_EQ(l.meta.optimizer_steps, 98);
  EXPECT_EQ(l.meta.bad_steps, 2);
  EXPECT_EQ(read_checkpoint_meta(path), l.meta);
  EXPECT_EQ(verify_checkpoint(path), l.meta);
  // The stored config reads back to the same architecture.
  EXPECT_EQ(parse_ini(l.meta.config_ini).model.d_model, 16);

  // Independent look with the HDF5 API: logical shapes, fp32, Fletcher32, and the CRC attribute
  // equals the reference CRC of the expected values.
  const hid_t f = open_h5(path, H5F_ACC_RDONLY);
  ASSERT_GE(f, 0);
  const ModelConfig& c = s.config;
  const struct {
    std::string name;
    std::vector<hsize_t> dims;
  } expected[] = {
      {"/model/model.embed_tokens.weight", {32, 16}},
      {"/model/model.layers.0.mamba.conv1d.weight", {hsize_t(c.conv_dim()), 1, 4}},
      {"/optim/exp_avg/model.layers.1.self_attn.k_proj.weight", {8, 16}},
      {"/optim/exp_avg_sq/model.layers.0.mamba.A_log", {hsize_t(c.mamba_heads())}},
  };
  for (const auto& e : expected) {
    SCOPED_TRACE(e.name);
    const hid_t d = H5Dopen2(f, e.name.c_str(), H5P_DEFAULT);
    ASSERT_GE(d, 0);
    const hid_t space = H5Dget_space(d);
    std::vector<hsize_t> dims(static_cast<std::size_t>(H5Sget_simple_extent_ndims(space)));
    H5Sget_simple_extent_dims(space, dims.data(), nullptr);
    EXPECT_EQ(dims, e.dims);
    const hid_t type = H5Dget_type(d);
    EXPECT_TRUE(H5Tequal(type, H5T_IEEE_F32LE) > 0);
    const hid_t dcpl = H5Dget_create_plist(d);
    EXPECT_EQ(H5Pget_layout(dcpl), H5D_CHUNKED);
    bool fletcher = false;
    for (int i = 0; i < H5Pget_nfilters(dcpl); ++i) {
      unsigned flags = 0, config = 0;
      std::size_t nelem = 0;
      fletcher |= H5Pget_filter2(dcpl, static_cast<unsigned>(i), &flags, &nelem, nullptr, 0, nullptr, &config) ==
                  H5Z_FILTER_FLETCHER32;
    }
    EXPECT_TRUE(fletcher);
    const std::string group = e.name.substr(0, e.name.rfind('/'));
    const ParamInfo& p = s.table.at(e.name.substr(e.name.rfind('/') + 1));
    const std::vector<float>& src = group == "/model" ? s.params : group == "/optim/exp_avg" ? s.m : s.v;
    const hid_t attr = H5Aopen(d, "crc32", H5P_DEFAULT);
    std::uint32_t crc = 0;
    H5Aread(attr, H5T_NATIVE_UINT32, &crc);
    EXPECT_EQ(crc, reference_crc32(src.data() + p.offset, static_cast<std::size_t>(p.numel) * sizeof(float)));
    H5Aclose(attr);
    H5Pclose(dcpl);
    H5Tclose(type);
    H5Sclose(space);
    H5Dclose(d);
  }
  H5Fclose(f);
}

TEST(Checkpoint, SaveLeavesNoTemporaryFileUpdatesLatestAndPrunes) {
  TempDir dir;
  State s(small_config());
  const std::string d = dir.path().string();
  // A stray temporary file from an earlier, interrupted write: the next save removes it.
  write_bytes(dir.file("step_00000007.h5.tmp-4242"), {1, 2, 3});
  for (idx step : {10, 20, 30, 40}) {
    s.save(d, step, /*keep=*/2);
    EXPECT_EQ(read_text(dir.path() / "latest"), checkpoint_file_name(step) + "\n");
    for (const auto& name : dir_listing(dir.path())) EXPECT_EQ(name.find("tmp"), std::string::npos) << name;
  }
  EXPECT_EQ(dir_listing(dir.path()), (std::set<std::string>{"latest", "step_00000030.h5", "step_00000040.h5"}));

  // keep = 0 keeps everything.
  s.save(d, 50, 0);
  s.save(d, 60, 0);
  EXPECT_EQ(dir_listing(dir.path()).size(), 5u);

  // The file just written is kept even when older-run files carry higher step numbers.
  s.save(d, 45, 2);
  EXPECT_EQ(dir_listing(dir.path()), (std::set<std::string>{"latest", "step_00000045.h5", "step_00000060.h5"}));
  EXPECT_EQ(read_text(dir.path() / "latest"), "step_00000045.h5\n");
}

TEST(Checkpoint, ArchitectureMismatchNamesTheFirstDifferingFieldWithBothValues) {
  TempDir dir;
  State s(small_config());
  const std::string path = s.save(dir.path().string(), 100);

  ModelConfig other = small_config();
  other.d_model = 32;  // differs first (d_model precedes n_layers in the [model] section)
  other.n_layers = 3;
  other.pattern = "MAM";
  std::string msg = checkpoint_error([&] { load(path, other); });
  EXPECT_NE(msg.find("checkpoint " + path + " was written for model.d_model = 16, this run has model.d_model = 32"),
            std::string::npos)
      << msg;

  other = small_config();
  other.mamba_d_state = 16;  // same tensor names, different shapes
  msg = checkpoint_error([&] { load(path, other); });
  EXPECT_NE(msg.find("model.mamba_d_state = 8, this run has model.mamba_d_state = 16"), std::string::npos) << msg;

  other = small_config();
  other.pattern = "";  // resolves to the default pattern "MM"
  msg = checkpoint_error([&] { load(path, other); });
  EXPECT_NE(msg.find("model.pattern = MA, this run has model.pattern = MM"), std::string::npos) << msg;

  // The same architecture with an explicit pattern equal to the default loads.
  other = small_config();
  EXPECT_NO_THROW(load(path, other));

  // Which kernels compute attention is not architecture: a run may switch it on resume.
  other.attention_impl = "cudnn";
  EXPECT_NO_THROW(load(path, other));
}

TEST(Checkpoint, TruncatedFilesAreRefusedNamingTheFile) {
  TempDir dir;
  State s(small_config());
  const std::string path = s.save(dir.path().string(), 100);
  const std::vector<unsigned char> bytes = read_bytes(path);
  ASSERT_GT(bytes.size(), 4096u);
  const std::string damaged = dir.file("step_00000200.h5");
  for (std::size_t size :
       {std::size_t(0), std::size_t(7), std::size_t(100), bytes.size() / 2, bytes.size() - 1024, bytes.size() - 1}) {
    SCOPED_TRACE(size);
    write_bytes(damaged, std::vector<unsigned char>(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(size)));
    const std::string msg = checkpoint_error([&] { load(damaged, s.config); });
    EXPECT_NE(msg.find(damaged), std::string::npos) << msg;
    EXPECT_THROW(read_checkpoint_meta(damaged), CheckpointError);
  }
  EXPECT_NE(checkpoint_error([&] { load(dir.file("missing.h5"), s.config); }).find("does not exist"),
            std::string::npos);
}

TEST(Checkpoint, FlippedBytesInTensorDataAreDetected) {
  TempDir dir;
  State s(small_config());
  const std::string path = s.save(dir.path().string(), 100);
  const std::vector<unsigned char> bytes = read_bytes(path);
  const std::string damaged = dir.file("damaged.h5");
  for (const std::string dataset : {"/model/model.embed_tokens.weight", "/optim/exp_avg_sq/lm_head.weight",
                                    "/optim/exp_avg/model.layers.0.mamba.D"}) {
    SCOPED_TRACE(dataset);
    const auto [addr, size] = first_chunk(path, dataset);
    ASSERT_GT(size, 0u);
    ASSERT_LE(addr + size, bytes.size());
    for (std::size_t at : {addr, addr + size / 2, addr + size - 1}) {
      write_flipped(bytes, at, 0x10, damaged);
      const std::string msg = checkpoint_error([&] { load(damaged, s.config); });
      EXPECT_NE(msg.find(damaged), std::string::npos) << msg;
      EXPECT_NE(msg.find(dataset), std::string::npos) << msg;
      EXPECT_THROW(verify_checkpoint(damaged), CheckpointError);
    }
  }
}

TEST(Checkpoint, AFlippedByteAnywhereIsRefusedOrHarmless) {
  TempDir dir;
  State s(small_config());
  const std::string path = s.save(dir.path().string(), 100);
  const std::vector<unsigned char> bytes = read_bytes(path);
  const std::string damaged = dir.file("damaged.h5");
  // Every byte of the first 256 (superblock, start of the root object header with the meta
  // attributes), then ~400 positions spread over the rest of the file.
  std::vector<std::size_t> positions;
  for (std::size_t at = 0; at < std::min<std::size_t>(256, bytes.size()); ++at) positions.push_back(at);
  for (std::size_t at = 256; at < bytes.size(); at += std::max<std::size_t>(1, bytes.size() / 400))
    positions.push_back(at);
  idx refused = 0, harmless = 0;
  for (std::size_t at : positions) {
    write_flipped(bytes, at, 0xA5, damaged);
    try {
      const Loaded l = load(damaged, s.config);
      // Unused space: loading it must give exactly the saved state.
      EXPECT_TRUE(bit_identical(l.params, s.params) && bit_identical(l.m, s.m) && bit_identical(l.v, s.v) &&
                  l.meta == load(path, s.config).meta)
          << "byte " << at << " changed the loaded state silently";
      ++harmless;
    } catch (const CheckpointError& e) {
      EXPECT_NE(std::string(e.what()).find(damaged), std::string::npos) << e.what();
      ++refused;
    }
  }
  // Almost all of the file is checksummed data or metadata (the rest is alignment padding).
  EXPECT_GT(refused, idx(positions.size() * 9 / 10));
  std::printf("flipped %zu positions of %zu bytes: %lld refused, %lld in unused space\n", positions.size(),
              bytes.size(), static_cast<long long>(refused), static_cast<long long>(harmless));
}

TEST(Checkpoint, DamageThatHdf5CannotSeeIsCaughtByTheChecksums) {
  TempDir dir;
  State s(small_config());
  const std::string path = s.save(dir.path().string(), 100);
  const std::string copy = dir.file("copy.h5");

  // Data rewritten through HDF5 itself (so Fletcher32 is recomputed and valid).
  edit_copy(path, copy, [](hid_t f) {
    const hid_t d = H5Dopen2(f, "/optim/exp_avg/model.final_layernorm.weight", H5P_DEFAULT);
    std::vector<float> x(16, 0.5f);
    EXPECT_GE(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x.data()), 0);
    H5Dclose(d);
  });
  std::string msg = checkpoint_error([&] { load(copy, s.config); });
  EXPECT_NE(msg.find("checksum mismatch in dataset /optim/exp_avg/model.final_layernorm.weight"), std::string::npos)
      << msg;

  // A metadata attribute changed consistently with HDF5's own checksums.
  edit_copy(path, copy, [](hid_t f) {
    const hid_t a = H5Aopen(f, "step", H5P_DEFAULT);
    const std::int64_t step = 200;
    EXPECT_GE(H5Awrite(a, H5T_NATIVE_INT64, &step), 0);
    H5Aclose(a);
  });
  msg = checkpoint_error([&] { read_checkpoint_meta(copy); });
  EXPECT_NE(msg.find("metadata checksum mismatch"), std::string::npos) << msg;

  // A missing optimizer tensor.
  edit_copy(path, copy, [](hid_t f) {
    EXPECT_GE(H5Ldelete(f, "/optim/exp_avg_sq/model.layers.1.self_attn.v_proj.weight", H5P_DEFAULT), 0);
  });
  msg = checkpoint_error([&] { load(copy, s.config); });
  EXPECT_NE(msg.find("missing dataset /optim/exp_avg_sq/model.layers.1.self_attn.v_proj.weight"), std::string::npos)
      << msg;
  EXPECT_THROW(verify_checkpoint(copy), CheckpointError);

  // No completion mark: a write that never finished.
  edit_copy(path, copy, [](hid_t f) { EXPECT_GE(H5Adelete(f, "complete"), 0); });
  msg = checkpoint_error([&] { read_checkpoint_meta(copy); });
  EXPECT_NE(msg.find("incomplete"), std::string::npos) << msg;
}

// The names of `obj`'s attributes, read from the file itself.
std::vector<std::string> attribute_names(hid_t obj) {
  std::vector<std::string> names;
  hsize_t index = 0;
  H5Aiterate2(
      obj, H5_INDEX_NAME, H5_ITER_INC, &index,
      [](hid_t, const char* name, const H5A_info_t*, void* out) -> herr_t {
        static_cast<std::vector<std::string>*>(out)->push_back(name);
        return 0;
      },
      &names);
  return names;
}

// Changes attribute `name` of `obj` in place through HDF5, keeping its type and size (so HDF5's
// own checksums stay valid and only a checksum of the values can notice): the lowest bit of its
// first byte flips, which changes an integer by one (little-endian) and a string's first
// character. Returns a description of the change, or "" (a test failure) for a type this test
// cannot change yet.
std::string tamper_attribute(hid_t obj, const std::string& name) {
  const hid_t attr = H5Aopen(obj, name.c_str(), H5P_DEFAULT);
  EXPECT_GE(attr, 0) << name;
  const hid_t type = H5Aget_type(attr);
  const H5T_class_t type_class = H5Tget_class(type);
  std::string what;
  if ((type_class == H5T_INTEGER || type_class == H5T_STRING) && !H5Tis_variable_str(type)) {
    std::vector<unsigned char> bytes(H5Aget_storage_size(attr));
    EXPECT_FALSE(bytes.empty()) << name;
    EXPECT_GE(H5Aread(attr, type, bytes.data()), 0) << name;
    bytes[0] ^= 1u;
    EXPECT_GE(H5Awrite(attr, type, bytes.data()), 0) << name;
    what = std::string(type_class == H5T_INTEGER ? "integer" : "string") + " attribute '" + name + "'";
  } else {
    ADD_FAILURE() << "attribute '" << name << "' has an HDF5 type (class " << int(type_class)
                  << ") this test cannot tamper with: teach tamper_attribute about it";
  }
  H5Tclose(type);
  H5Aclose(attr);
  return what;
}

// A field left out of the metadata checksum (or a new attribute added without it) would let a
// changed value load silently. Every attribute is found in the file, not listed here, so one added
// later is covered without touching this test.
TEST(Checkpoint, EveryRootAttributeIsProtected) {
  TempDir dir;
  State s(small_config());
  const std::string path = s.save(dir.path().string(), 100);
  const std::string copy = dir.file("copy.h5");

  std::vector<std::string> names;
  {
    const hid_t f = open_h5(path, H5F_ACC_RDONLY);
    ASSERT_GE(f, 0);
    names = attribute_names(f);
    H5Fclose(f);
  }
  // The fields this format stores today must be among them (the enumeration itself works).
  for (const char* expected : {"format_version", "step", "tokens_seen", "config_ini", "loader_position", "seed",
                               "optimizer_steps", "bad_steps", "tensors", "meta_crc32", "complete"})
    EXPECT_NE(std::find(names.begin(), names.end(), expected), names.end()) << expected;

  for (const std::string& name : names) {
    SCOPED_TRACE(name);
    std::string what;
    edit_copy(path, copy, [&](hid_t f) { what = tamper_attribute(f, name); });
    if (what.empty()) continue;
    // Both the metadata reader and a full load refuse it (a silent load is checkpoint_error's
    // failure, traced to the attribute), naming the file.
    for (const auto& read : std::vector<std::function<void()>>{[&] { read_checkpoint_meta(copy); },
                                                              [&] { load(copy, s.config); }}) {
      const std::string msg = checkpoint_error(read);
      if (!msg.empty()) {
        EXPECT_NE(msg.find(copy), std::string::npos) << what << ": " << msg;
      }
    }
  }
  std::printf("tampered with %zu root attributes, one at a time\n", names.size());
}

// Each tensor's "crc32" attribute (and any other a dataset carries) is checked against the data.
TEST(Checkpoint, EveryDatasetAttributeIsProtected) {
  TempDir dir;
  State s(small_config());
  const std::string path = s.save(dir.path().string(), 100);
  const std::string copy = dir.file("copy.h5");

  // Every dataset in the file with its attributes, found by walking the file.
  struct Found {
    std::string dataset;
    std::vector<std::string> attributes;
  };
  std::vector<Found> found;
  {
    const hid_t f = open_h5(path, H5F_ACC_RDONLY);
    ASSERT_GE(f, 0);
    H5Ovisit2(
        f, H5_INDEX_NAME, H5_ITER_INC,
        [](hid_t root, const char* name, const H5O_info_t* info, void* out) -> herr_t {
          if (info->type != H5O_TYPE_DATASET) return 0;
          const hid_t d = H5Dopen2(root, name, H5P_DEFAULT);
          static_cast<std::vector<Found>*>(out)->push_back({std::string("/") + name, attribute_names(d)});
          H5Dclose(d);
          return 0;
        },
        &found, H5O_INFO_BASIC);
    H5Fclose(f);
  }
  // Three groups of one dataset per tensor.
  ASSERT_EQ(found.size(), 3 * s.table.params().size());

  idx tampered = 0;
  for (const Found& d : found) {
    EXPECT_FALSE(d.attributes.empty()) << d.dataset << " carries no checksum attribute";
    for (const std::string& name : d.attributes) {
      SCOPED_TRACE(d.dataset + " attribute " + name);
      std::string what;
      edit_copy(path, copy, [&](hid_t f) {
        const hid_t obj = H5Dopen2(f, d.dataset.c_str(), H5P_DEFAULT);
        ASSERT_GE(obj, 0);
        what = tamper_attribute(obj, name);
        H5Dclose(obj);
      });
      if (what.empty()) continue;
      const std::string msg = checkpoint_error([&] { load(copy, s.config); });
      if (!msg.empty()) {
        EXPECT_NE(msg.find(d.dataset), std::string::npos) << what << ": " << msg;
      }
      EXPECT_THROW(verify_checkpoint(copy), CheckpointError);
      ++tampered;
    }
  }
  std::printf("tampered with %lld dataset attributes, one at a time\n", static_cast<long long>(tampered));
}

// --resume loads while it verifies: a damaged newest file is found out mid-load (buffers partly
// overwritten) and the next older one is loaded over it in full, equal to a plain load bit for bit.
TEST(Checkpoint, ResumeLoadsTheNewestCheckpointThatLoadsAndFallsBackPastDamage) {
  TempDir dir;
  const std::string d = dir.path().string();
  State older(small_config(), 7), newer(small_config(), 8);
  const ParamTable& table = older.table;
  std::vector<float> params(older.params.size(), 1.5f), m = params, v = params;
  CheckpointMeta meta;
  std::vector<std::string> notes;

  // Nothing there: a fresh start that leaves the buffers alone.
  EXPECT_EQ(resume_checkpoint("latest", d, older.config, table, params.data(), m.data(), v.data(), meta, notes), "");
  EXPECT_EQ(params, std::vector<float>(older.params.size(), 1.5f));
  const std::string p2 = older.save(d, 2), p3 = newer.save(d, 3);
  // Flip a byte in the last group's first tensor, so the load gets far before it notices.
  const std::vector<unsigned char> bytes = read_bytes(p3);
  const auto [addr, size] = first_chunk(p3, "/optim/exp_avg_sq/model.embed_tokens.weight");
  ASSERT_GT(size, 0u);
  write_flipped(bytes, addr + size / 2, 0x10, p3);
  EXPECT_EQ(resume_checkpoint("latest", d, older.config, table, params.data(), m.data(), v.data(), meta, notes), p2);
  const Loaded plain = load(p2, older.config);
  EXPECT_TRUE(bit_identical(params, plain.params) && bit_identical(m, plain.m) && bit_identical(v, plain.v));
  EXPECT_EQ(meta.step, 2);
  std::string all;
  for (const auto& note : notes) all += note + "\n";
  EXPECT_NE(all.find(p3), std::string::npos) << all;

  // A different architecture stops at once, naming the field, though an older file exists too.
  ModelConfig wider = older.config;
  wider.d_model += 16;
  const ParamTable wider_table(wider);
  std::vector<float> w(static_cast<std::size_t>(wider_table.total()));
  const std::string msg = checkpoint_error([&] {
    resume_checkpoint("latest", d, wider, wider_table, w.data(), w.data(), w.data(), meta, notes);
  });
  EXPECT_NE(msg.find("model.d_model"), std::string::npos) << msg;
}

TEST(Checkpoint, ResolveFindsTheNewestCheckpointThatVerifies) {
  TempDir dir;
  State s(small_config());
  const std::string d = dir.path().string();
  std::vector<std::string> notes;

  // Nothing there yet: a fresh start.
  EXPECT_EQ(resolve_checkpoint("latest", d, notes), "");
  EXPECT_EQ(resolve_checkpoint("latest", dir.file("not_created_yet"), notes), "");
  EXPECT_TRUE(notes.empty());

  const std::string p1 = s.save(d, 1), p2 = s.save(d, 2), p3 = s.save(d, 3);
  EXPECT_EQ(resolve_checkpoint("latest", d, notes), p3);
  EXPECT_EQ(resolve_checkpoint(d, "ignored", notes), p3);  // a directory as the spec
  EXPECT_EQ(resolve_checkpoint(p2, d, notes), p2);         // an explicit file
  EXPECT_TRUE(notes.empty());

  // An interrupted write: complete-looking and garbage temporary files are never candidates.
  fs::copy_file(p3, dir.file("step_00000004.h5.tmp-999"));
  write_bytes(dir.file("step_00000005.h5.tmp-998"), {0x89, 'H', 'D', 'F'});
  EXPECT_EQ(resolve_checkpoint("latest", d, notes), p3);
  EXPECT_TRUE(notes.empty());

  // The newest is damaged: fall back to the previous one, and say which file was skipped.
  std::vector<unsigned char> bytes = read_bytes(p3);
  bytes.resize(bytes.size() / 2);
  write_bytes(p3, bytes);
  EXPECT_EQ(resolve_checkpoint("latest", d, notes), p2);
  ASSERT_FALSE(notes.empty());
  std::string all;
  for (const auto& n : notes) all += n + "\n";
  EXPECT_NE(all.find(p3), std::string::npos) << all;
  EXPECT_NE(all.find(p2), std::string::npos) << all;

  // An explicitly named damaged file is an error naming it, not a fallback.
  std::string msg = checkpoint_error([&] { resolve_checkpoint(p3, d, notes); });
  EXPECT_NE(msg.find(p3), std::string::npos) << msg;
  EXPECT_THROW(resolve_checkpoint(dir.file("step_00000099.h5"), d, notes), CheckpointError);

  // No `latest` (a crash before its first write): the newest step file that verifies, noted.
  fs::remove(dir.path() / "latest");
  notes.clear();
  EXPECT_EQ(resolve_checkpoint("latest", d, notes), p2);
  EXPECT_FALSE(notes.empty());

  // `latest` naming something that is not a checkpoint name is ignored.
  std::ofstream(dir.path() / "latest") << "../../etc/passwd\n";
  notes.clear();
  EXPECT_EQ(resolve_checkpoint("latest", d, notes), p2);
  EXPECT_FALSE(notes.empty());

  // Checkpoints exist but none verifies: an error, not a silent fresh start.
  for (const std::string& p : {p1, p2}) {
    bytes = read_bytes(p);
    bytes[bytes.size() / 2] ^= 0xFF;
    bytes.resize(bytes.size() - 1024);
    write_bytes(p, bytes);
  }
  msg = checkpoint_error([&] { resolve_checkpoint("latest", d, notes); });
  EXPECT_NE(msg.find(d), std::string::npos) << msg;

  // `latest` left behind with no checkpoint at all is an error too.
  for (const std::string& p : {p1, p2, p3}) fs::remove(p);
  std::ofstream(dir.path() / "latest") << "step_00000003.h5\n";
  EXPECT_THROW(resolve_checkpoint("latest", d, notes), CheckpointError);
}

TEST(Checkpoint, AWriterKilledBetweenRenameAndPointerUpdateLosesNothing) {
  // `latest` is a hint: a save killed after step_2.h5 was renamed into place but before `latest`
  // was rewritten must resume from step 2 (before: from step 1, losing a checkpoint's steps).
  TempDir dir;
  State s(small_config());
  const std::string d = dir.path().string();
  s.save(d, 1);
  s.params[10] = 42.0f;  // step 2's state differs from step 1's
  std::fflush(nullptr);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::setenv("NEXUS_FAILPOINT", "checkpoint_after_rename:kill", 1);
    s.save(d, 2);
    ::_exit(0);  // not reached: the failpoint kills the writer
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "the writer was not killed at the failpoint";
  EXPECT_EQ(read_text(dir.path() / "latest"), "step_00000001.h5\n");  // the pointer never moved
  const std::string p2 = dir.file("step_00000002.h5");
  ASSERT_TRUE(fs::exists(p2));

  std::vector<std::string> notes;
  EXPECT_EQ(resolve_checkpoint("latest", d, notes), p2);
  std::string all;
  for (const auto& n : notes) all += n + "\n";
  EXPECT_NE(all.find("is newer and verifies"), std::string::npos) << all;
  EXPECT_EQ(resolve_checkpoint(d, "ignored", notes), p2);  // a directory spec resolves the same way
  EXPECT_TRUE(bit_identical(load(p2, s.config).params, s.params));

  // The next save repairs the pointer.
  s.save(d, 3);
  EXPECT_EQ(read_text(dir.path() / "latest"), "step_00000003.h5\n");
}

TEST(Checkpoint, PublishingCanBeWithdrawnBeforeTheRename) {
  // A run whose launcher died must not publish: the file stays a temporary and is removed.
  TempDir dir;
  State s(small_config());
  const std::string d = dir.path().string();
  s.save(d, 1);
  const std::string msg = checkpoint_error([&] {
    save_checkpoint(d, s.meta, s.table, s.params.data(), s.m.data(), s.v.data(), 0, [] { return false; });
  });
  EXPECT_NE(msg.find("not published"), std::string::npos) << msg;
  EXPECT_EQ(dir_listing(dir.path()), (std::set<std::string>{"latest", "step_00000001.h5"}));
}

TEST(Checkpoint, AnOverflowingStoredConfigIsRefusedBeforeAllocating) {
  // Before: inspect laid out a table from mamba_expand = 2^62 and asked for 2^53 bytes.
  TempDir dir;
  State s(small_config());
  const std::string key = "mamba_expand = ";
  const std::size_t at = s.meta.config_ini.find(key);
  ASSERT_NE(at, std::string::npos);
  const std::size_t end = s.meta.config_ini.find('\n', at);
  s.meta.config_ini.replace(at, end - at, key + "4611686018427387904");
  const std::string path = s.save(dir.path().string(), 5);
  std::string arg0 = "inspect", arg1 = path;
  char* argv[] = {arg0.data(), arg1.data()};
  std::string msg;
  try {
    command_inspect(2, argv);
  } catch (const InspectError& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("model.mamba_expand = 4611686018427387904 is out of range"), std::string::npos) << msg;
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
}

TEST(Checkpoint, InspectPrintsMetaConfigAndNorms) {
  TempDir dir;
  State s(small_config());
  const std::string path = s.save(dir.path().string(), 100);
  // Finite values, so the norms are numbers.
  std::fill(s.params.begin(), s.params.begin() + 4, 0.25f);
  s.save(dir.path().string(), 100);

  std::string arg0 = "inspect", arg1 = path;
  char* argv[] = {arg0.data(), arg1.data()};
  testing::internal::CaptureStdout();
  EXPECT_EQ(command_inspect(2, argv), 0);
  const std::string out = testing::internal::GetCapturedStdout();
  EXPECT_NE(out.find("step             100"), std::string::npos) << out;
  EXPECT_NE(out.find("tokens_seen      123456789012"), std::string::npos) << out;
  EXPECT_NE(out.find("epoch=2,sequence=1536"), std::string::npos) << out;
  EXPECT_NE(out.find(s.meta.config_ini), std::string::npos) << out;

  const ParamInfo& p = s.table.at("model.layers.1.self_attn.q_proj.weight");
  double sp = 0, sm = 0, sv = 0;
  for (idx i = p.offset; i < p.offset + p.numel; ++i) {
    const auto k = static_cast<std::size_t>(i);
    sp += double(s.params[k]) * s.params[k];
    sm += double(s.m[k]) * s.m[k];
    sv += double(s.v[k]) * s.v[k];
  }
  char line[256];
  std::snprintf(line, sizeof line, "%-48s %-16s %14.6e %14.6e %14.6e", p.name.c_str(), "[16, 16]", std::sqrt(sp),
                std::sqrt(sm), std::sqrt(sv));
  EXPECT_NE(out.find(line), std::string::npos) << line << "\n" << out;

  // Bad usage and bad files are clean configuration-style errors.
  char* no_path[] = {arg0.data()};
  EXPECT_THROW(command_inspect(1, no_path), ConfigError);
  std::vector<unsigned char> bytes = read_bytes(path);
  bytes.resize(bytes.size() / 2);
  write_bytes(path, bytes);
  try {
    command_inspect(2, argv);
    ADD_FAILURE() << "inspect accepted a truncated file";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace nexus
