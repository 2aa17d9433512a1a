// Damaged, forged or non-finite exports are refused, never evaluated: per-tensor checksums in the
// safetensors __metadata__ verified on load, duplicate header keys, non-finite weights, non-finite
// logits in eval and generate, and a config.json that disagrees with the weight files refused
// before the weights are allocated.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <new>
#include <string>
#include <vector>

#include "model/config.h"
#include "trainer/commands.h"
#include "trainer/export.h"
#include "trainer/safetensors.h"
#include "export_test_util.h"
#include "support/temp_dir.h"

namespace nexus {
namespace {

namespace fs = std::filesystem;
using test::SmallModel;
using test::TempDir;
using test::run_command;
using test::slurp;
using test::write_raw;

template <typename Error, typename F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no exception of the expected type";
  return "";
}

void write_file(const fs::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary | std::ios::trunc) << bytes;
}

TEST(ExportIntegrity, AFlippedDataByteIsRefusedNamingTheTensor) {
  const SmallModel model(31);
  for (const ExportDtype dtype : {ExportDtype::BF16, ExportDtype::F32}) {
    TempDir dir;
    const fs::path out = dir / "m";
    export_hf(model.c, model.t, model.p.data(), out.string(), dtype);
    ASSERT_EQ(load_model_files(out.string()).params.size(), model.p.size());  // intact: loads
    const fs::path weights = out / "model.safetensors";
    const SafetensorsFile file(weights.string());
    // One flip in the middle of every tensor, each in a fresh copy: each is caught and named.
    const std::string original = slurp(weights);
    for (const SafetensorsEntry& e : file.tensors()) {
      std::string bytes = original;
      bytes[std::size_t(file.data_start() + (e.begin + e.end) / 2)] ^= 0x10;
      write_file(weights, bytes);
      const std::string msg = message_of<SafetensorsError>([&] { load_model_files(out.string()); });
      EXPECT_NE(msg.find("tensor " + e.name + " fails its checksum"), std::string::npos) << msg;
    }
    write_file(weights, original);
    // Through the command a user runs: a refusal, not "loss: nan".
    EXPECT_NO_THROW(load_model_files(out.string()));
  }
}

TEST(ExportIntegrity, FilesWithoutChecksumsStillLoad) {
  // transformers' own files carry no checksums: they are read as before.
  TempDir dir;
  write_raw(dir / "x.safetensors",
            R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8);
  const SafetensorsFile file((dir / "x.safetensors").string());
  EXPECT_EQ(file.read("a"), (std::vector<float>{0.0f, 0.0f}));
  // A malformed or orphaned checksum entry is refused when the file is opened.
  write_raw(dir / "y.safetensors",
            R"({"__metadata__":{"nexus.crc32:a":"xyz"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8);
  EXPECT_NE(message_of<SafetensorsError>([&] { SafetensorsFile f((dir / "y.safetensors").string()); })
                .find("checksum of tensor a is 'xyz'"),
            std::string::npos);
  write_raw(dir / "z.safetensors",
            R"({"__metadata__":{"nexus.crc32:b":"00000000"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8);
  EXPECT_NE(message_of<SafetensorsError>([&] { SafetensorsFile f((dir / "z.safetensors").string()); })
                .find("checksum for tensor b, which the file does not hold"),
            std::string::npos);
}

TEST(ExportIntegrity, DuplicateHeaderKeysAreRefused) {
  // Parsers disagree on which copy wins; before, the last one silently did.
  TempDir dir;
  const char* headers[] = {
      R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
      R"({"a":{"dtype":"F32","dtype":"BF16","shape":[2],"data_offsets":[0,4]}})",
      R"({"__metadata__":{"format":"pt","format":"np"},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
  };
  const char* keys[] = {"\"a\"", "\"dtype\"", "\"format\""};
  for (int i = 0; i < 3; ++i) {
    const fs::path p = dir / ("dup" + std::to_string(i) + ".safetensors");
    write_raw(p, headers[i], 4);
    const std::string msg = message_of<SafetensorsError>([&] { SafetensorsFile f(p.string()); });
    EXPECT_NE(msg.find(std::string("lists the key ") + keys[i] + " twice"), std::string::npos) << msg;
    EXPECT_NE(msg.find(p.string()), std::string::npos) << msg;
  }
  // The same key in different objects is not a duplicate.
  write_raw(dir / "ok.safetensors",
            R"({"__metadata__":{"dtype":"x"},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4);
  EXPECT_NO_THROW(SafetensorsFile((dir / "ok.safetensors").string()));
}

TEST(ExportIntegrity, NonFiniteWeightsAreRefusedAtLoad) {
  SmallModel model(32);
  const ParamInfo& w = model.t.at("model.layers.1.self_attn.k_proj.weight");
  model.p[std::size_t(w.offset + 5)] = std::numeric_limits<float>::quiet_NaN();
  TempDir dir;
  // The checksum is of the NaN as written: only the finiteness check can catch this one.
  export_hf(model.c, model.t, model.p.data(), (dir / "m").string(), ExportDtype::F32);
  const std::string msg = message_of<ExportError>([&] { load_model_files((dir / "m").string()); });
  EXPECT_NE(msg.find("tensor " + w.name + " has a non-finite value"), std::string::npos) << msg;
  EXPECT_NE(msg.find("at element 5"), std::string::npos) << msg;
}

TEST(ExportIntegrity, NonFiniteLogitsAreAnErrorInEvalAndGenerate) {
  // Finite weights whose logits overflow fp32: eval and generate must fail, naming the place.
  SmallModel model(33);
  const ParamInfo& head = model.t.at("lm_head.weight");
  for (idx i = 0; i < head.numel; ++i) model.p[std::size_t(head.offset + i)] = 3e38f;
  TempDir dir;
  const std::string path = (dir / "m").string();
  export_hf(model.c, model.t, model.p.data(), path, ExportDtype::F32);
  std::string msg = message_of<ConfigError>([&] { run_command(command_eval, {"eval", "--model", path, "--tokens", "3,1,4"}); });
  EXPECT_NE(msg.find("logits of position 0 (token 3) are not finite"), std::string::npos) << msg;
  ::testing::internal::CaptureStdout();
  msg = message_of<ConfigError>([&] {
    run_command(command_generate, {"generate", "--model", path, "--tokens", "3,1", "--max-new-tokens", "2"});
  });
  ::testing::internal::GetCapturedStdout();
  EXPECT_NE(msg.find("the logits after the prompt are not finite"), std::string::npos) << msg;
}

TEST(ExportIntegrity, ConfigJsonSizesAreBoundedByTheirJsonKeys) {
  // Before: num_hidden_layers = 2^31 built a 2 GB layer pattern before any check, and a huge
  // mamba_n_heads or mamba_expand overflowed mamba_expand * hidden_size.
  const nlohmann::json base = bamba_config_json(test::small_config(), ExportDtype::F32);
  const std::pair<const char*, std::int64_t> cases[] = {
      {"num_hidden_layers", std::int64_t(1) << 31}, {"hidden_size", 1000000000},
      {"vocab_size", 2000000000},                   {"intermediate_size", 1000000000},
      {"mamba_expand", std::int64_t(1) << 62},      {"mamba_d_conv", std::int64_t(1) << 62},
      {"head_dim", std::int64_t(1) << 62},          {"mamba_n_heads", std::int64_t(1) << 62},
  };
  for (const auto& [key, value] : cases) {
    nlohmann::json j = base;
    j[key] = value;
    const std::string msg = message_of<ExportError>([&] { model_config_from_bamba_json(j, "config.json"); });
    EXPECT_NE(msg.find(std::string("config.json: ") + key + " = " + std::to_string(value) + " is out of range"),
              std::string::npos)
        << msg;
  }
}

TEST(ExportIntegrity, AConfigThatDisagreesWithTheWeightsIsRefusedBeforeAllocating) {
  // config.json = {"model_type": "bamba"}: BambaConfig's defaults describe a ~9B model (36 GB of
  // fp32). Before, the loader allocated that before looking at the weight file. Run in a child
  // whose address space is capped 2 GiB above what it uses, so an allocation shows as bad_alloc.
  const SmallModel model(34);
  TempDir dir;
  const fs::path out = dir / "m";
  export_hf(model.c, model.t, model.p.data(), out.string(), ExportDtype::F32);
  std::ofstream(out / "config.json", std::ios::trunc) << R"({"model_type": "bamba"})";
  std::fflush(nullptr);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    std::ifstream status("/proc/self/status");
    std::size_t vm_kib = 0;
    for (std::string line; std::getline(status, line);)
      if (line.rfind("VmSize:", 0) == 0) vm_kib = std::stoull(line.substr(7));
    const rlimit cap{vm_kib * 1024 + (std::size_t(2) << 30), vm_kib * 1024 + (std::size_t(2) << 30)};
    ::setrlimit(RLIMIT_AS, &cap);
    int code = 4;
    try {
      load_model_files(out.string());
      code = 1;  // loaded: wrong
    } catch (const ExportError& e) {
      const std::string m = e.what();
      code = m.find("model.embed_tokens.weight has shape [67, 32], config.json implies [128000, 4096]") != std::string::npos ? 0 : 2;
      if (code) std::fprintf(stderr, "unexpected message: %s\n", m.c_str());
    } catch (const std::bad_alloc&) {
      code = 3;  // allocated first
    } catch (const std::exception& e) {
      std::fprintf(stderr, "unexpected error: %s\n", e.what());
    }
    ::_exit(code);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1: loaded, 2: other message, 3: bad_alloc (allocated before checking), 4: other";
}

}  // namespace
}  // namespace nexus
