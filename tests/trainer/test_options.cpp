// The `nexus train` configuration layer: INI + command line, errors, help, INI round trip.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "model/memory_need.h"
#include "trainer/options.h"

namespace nexus {
namespace {

namespace fs = std::filesystem;

// Every key the configuration must offer, written out here independently of options.cpp.
const std::vector<std::string> kAllKeys = {
    "model.vocab_size", "model.d_model", "model.n_layers", "model.pattern", "model.mlp_hidden", "model.n_heads",
    "model.n_kv_heads", "model.head_dim", "model.rope_theta", "model.attention_neighborhood", "model.attention_impl", "model.mamba_expand",
    "model.mamba_headdim",
    "model.mamba_ngroups", "model.mamba_d_state", "model.mamba_d_conv", "model.mamba_chunk", "model.norm_eps",
    "model.tie_embeddings", "model.init_std", "train.steps", "train.global_batch", "train.micro_batch",
    "train.grad_accum", "train.seq_len", "train.seed", "optim.lr", "schedule.min_lr", "schedule.warmup_steps",
    "schedule.name", "schedule.wsd_decay_fraction", "optim.beta1", "optim.beta2", "optim.eps", "optim.weight_decay",
    "optim.grad_clip", "train.max_bad_steps", "train.eval_every", "train.eval_batches", "train.log_every",
    "train.out_dir", "checkpoint.every", "checkpoint.dir", "checkpoint.keep", "train.exit_after", "data.source",
    "data.path",
    "data.mqar_pairs", "data.mqar_queries", "data.val_path", "parallel.cp", "parallel.overlap_kib", "parallel.nccl_timeout_s", "parallel.mpi_timeout_s", "parallel.zero", "parallel.transport",
    "runtime.device",
    "runtime.dtype", "runtime.threads", "train.recompute", "runtime.memory_limit"};

// A scratch INI file removed at the end of the test.
class IniFile {
 public:
  explicit IniFile(const std::string& text) {
    path_ = fs::temp_directory_path() /
            ("nexus_options_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".ini");
    std::ofstream(path_) << text;
  }
  ~IniFile() { fs::remove(path_); }
  std::string path() const { return path_.string(); }

 private:
  fs::path path_;
};

// The message of the OptionsError that `f` throws, or "" (a failure) when it throws none.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const OptionsError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no OptionsError thrown";
  return "";
}

#define EXPECT_CONTAINS(text, part) EXPECT_NE(std::string(text).find(part), std::string::npos) << (text)

// key -> value lines of INI text, "section.key" keys.
std::map<std::string, std::string> ini_values(const std::string& text) {
  std::map<std::string, std::string> values;
  std::istringstream in(text);
  std::string line, section;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    if (line[0] == '[') {
      section = line.substr(1, line.find(']') - 1);
      continue;
    }
    const auto eq = line.find(" = ");
    const std::string key = section + "." + line.substr(0, eq);
    EXPECT_EQ(values.count(key), 0u) << "duplicate " << key;
    values[key] = line.substr(eq + 3);
  }
  return values;
}

TEST(Options, DefaultsDescribeATinyValidRun) {
  const CommandLine cl = parse_command_line(std::vector<std::string>{});
  EXPECT_FALSE(cl.help);
  EXPECT_EQ(cl.options.model.d_model, ModelConfig{}.d_model);
  EXPECT_EQ(cl.options.model.pattern, "MMMMAMMM");  // the default pattern, resolved
  EXPECT_EQ(cl.options.checkpoint.dir, cl.options.train.out_dir + "/checkpoints");
  EXPECT_EQ(cl.options.data.source, "mqar");
  EXPECT_EQ(batch_layout(cl.options, 1).grad_accum, 4);  // 8 sequences in micro-batches of 2
}

TEST(Options, CommandLineOverridesFile) {
  const IniFile file(
      "# comment\n[model]\nd_model = 64\nn_layers = 4\n[train]\nsteps = 50\nlr = 0.002\nschedule = wsd\n"
      "[data]\nsource = shards\npath = /data/*.bin\n");
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"--config", file.path(), "--model.d_model=96", "--schedule.warmup_steps", "5"},
        std::vector<std::string>{"--model.d_model", "96", file.path(), "--schedule.warmup_steps=5"},
        std::vector<std::string>{"-c", file.path(), "--model.d_model=96", "--schedule.warmup_steps=5"}}) {
    const CommandLine cl = parse_command_line(args);
    EXPECT_EQ(cl.config_file, file.path());
    EXPECT_EQ(cl.options.model.d_model, 96);          // both, command line wins
    EXPECT_EQ(cl.options.model.n_layers, 4);          // file only
    EXPECT_EQ(cl.options.model.pattern, "MMMM");      // default pattern for 4 layers
    EXPECT_EQ(cl.options.train.steps, 50);            // file only
    EXPECT_EQ(cl.options.optim.lr, 0.002);            // file only
    EXPECT_EQ(cl.options.schedule.warmup_steps, 5);      // command line only
    EXPECT_EQ(cl.options.schedule.name, "wsd");
    EXPECT_EQ(cl.options.optim.beta2, 0.95);          // neither: default
    EXPECT_EQ(cl.options.data.path, "/data/*.bin");
    EXPECT_EQ(cl.options.schedule_config().kind, LrSchedule::Wsd);
    EXPECT_EQ(cl.options.schedule_config().total_steps, 50);
  }
}

TEST(Options, ArgvFormSkipsTheProgramName) {
  const char* argv[] = {"train", "--train.steps=7", "--schedule.warmup_steps=0"};
  EXPECT_EQ(parse_command_line(3, argv).options.train.steps, 7);
}

TEST(Options, HelpFlagSkipsValidation) {
  const CommandLine cl = parse_command_line(std::vector<std::string>{"--help", "--train.steps=0"});
  EXPECT_TRUE(cl.help);
  EXPECT_TRUE(parse_command_line(std::vector<std::string>{"-h"}).help);
}

TEST(Options, BadAttentionNeighborhoodNamesKeyAndValue) {
  std::string msg = error_of([] {
    parse_command_line(std::vector<std::string>{"--model.attention_neighborhood=sliding:0"});
  });
  EXPECT_CONTAINS(msg, "model.attention_neighborhood = \"sliding:0\"");
  EXPECT_CONTAINS(msg, "positive integer");
  // The default pattern has one attention layer in 8: two entries do not fit.
  msg = error_of([] { parse_command_line(std::vector<std::string>{"--model.attention_neighborhood=log,full"}); });
  EXPECT_CONTAINS(msg, "has 2 entries; expected 1");
}

TEST(Options, AttentionImplIsCheckedAndReachesTheModel) {
  EXPECT_EQ(parse_command_line(std::vector<std::string>{}).options.model.attention_impl, "nexus");
  // Taken in any build and on any device: a GPU run on a build without cuDNN is refused when its
  // model is built (model/attention_impl.h), so stored configs still read everywhere.
  for (const char* device : {"cpu", "cuda"})
    EXPECT_EQ(parse_command_line(std::vector<std::string>{"--model.attention_impl=cudnn",
                                                          std::string("--runtime.device=") + device})
                  .options.model.attention_impl,
              "cudnn");
  const std::string msg =
      error_of([] { parse_command_line(std::vector<std::string>{"--model.attention_impl=flash"}); });
  EXPECT_CONTAINS(msg, "model.attention_impl = \"flash\" is not one of nexus, cudnn");
}

TEST(Options, UnknownKeyInFileNamesKeyAndFile) {
  const IniFile file("[model]\nd_model = 64\nd_modle = 32\n");
  const std::string msg = error_of([&] { parse_command_line(std::vector<std::string>{"--config", file.path()}); });
  EXPECT_CONTAINS(msg, "model.d_modle");
  EXPECT_CONTAINS(msg, file.path());
  // A key outside any section is unknown too.
  const IniFile bare("steps = 5\n");
  EXPECT_CONTAINS(error_of([&] { parse_command_line(std::vector<std::string>{bare.path()}); }), "'steps'");
}

TEST(Options, UnknownKeyOnCommandLineNamesIt) {
  EXPECT_CONTAINS(error_of([] { parse_command_line(std::vector<std::string>{"--train.stepz=5"}); }), "--train.stepz'");
  EXPECT_CONTAINS(error_of([] { parse_command_line(std::vector<std::string>{"--train.stepz", "5"}); }), "--train.stepz'");
  // No prefix guessing: a truncated key is unknown, not silently completed.
  EXPECT_CONTAINS(error_of([] { parse_command_line(std::vector<std::string>{"--train.ste=5"}); }), "--train.ste'");
}

TEST(Options, MissingFileIsAnError) {
  EXPECT_CONTAINS(error_of([] { parse_command_line(std::vector<std::string>{"--config", "/nonexistent/x.ini"}); }),
                  "/nonexistent/x.ini");
}

TEST(Options, MalformedValuesNameKeyValueAndType) {
  std::string msg = error_of([] { parse_command_line(std::vector<std::string>{"--model.d_model=12x"}); });
  EXPECT_CONTAINS(msg, "model.d_model");
  EXPECT_CONTAINS(msg, "'12x'");
  EXPECT_CONTAINS(msg, "integer");
  msg = error_of([] { parse_command_line(std::vector<std::string>{"--optim.lr=fast"}); });
  EXPECT_CONTAINS(msg, "optim.lr");
  EXPECT_CONTAINS(msg, "'fast'");
  EXPECT_CONTAINS(msg, "number");
  msg = error_of([] { parse_command_line(std::vector<std::string>{"--model.tie_embeddings=maybe"}); });
  EXPECT_CONTAINS(msg, "model.tie_embeddings");
  EXPECT_CONTAINS(msg, "true or false");
  msg = error_of([] { parse_command_line(std::vector<std::string>{"--train.seed=-3"}); });
  EXPECT_CONTAINS(msg, "train.seed");
  EXPECT_CONTAINS(msg, "'-3'");
  const IniFile file("[train]\nsteps = ten\n");
  msg = error_of([&] { parse_command_line(std::vector<std::string>{file.path()}); });
  EXPECT_CONTAINS(msg, "train.steps");
  EXPECT_CONTAINS(msg, "'ten'");
  EXPECT_CONTAINS(msg, file.path());
}

TEST(Options, ImpossibleCombinationsNameTheValues) {
  auto msg_of = [](std::vector<std::string> args) { return error_of([&] { parse_command_line(args); }); };
  std::string msg = msg_of({"--train.global_batch=10", "--train.micro_batch=4"});
  EXPECT_CONTAINS(msg, "train.global_batch = 10");
  EXPECT_CONTAINS(msg, "train.micro_batch = 4");
  msg = msg_of({"--optim.lr=0.001", "--schedule.min_lr=0.01"});
  EXPECT_CONTAINS(msg, "schedule.min_lr = 0.01");
  msg = msg_of({"--schedule.warmup_steps=-1"});
  EXPECT_CONTAINS(msg, "schedule.warmup_steps = -1");
  EXPECT_NO_THROW(parse_command_line(std::vector<std::string>{"--train.steps=5"}));  // ends inside warmup
  msg = msg_of({"--schedule.name=linear"});
  EXPECT_CONTAINS(msg, "linear");
  msg = msg_of({"--schedule.name=wsd", "--train.steps=100", "--schedule.warmup_steps=90"});
  EXPECT_CONTAINS(msg, "schedule.warmup_steps = 90");
  msg = msg_of({"--data.source=shards"});
  EXPECT_CONTAINS(msg, "data.path");
  msg = msg_of({"--data.source=parquet"});
  EXPECT_CONTAINS(msg, "parquet");
  msg = msg_of({"--parallel.zero=2"});
  EXPECT_CONTAINS(msg, "parallel.zero = 2 is not one of 0");
  EXPECT_CONTAINS(msg, "1 (ZeRO-1");
  EXPECT_EQ(parse_command_line(std::vector<std::string>{"--parallel.zero=1"}).options.parallel.zero, 1);
}

TEST(Options, AbsurdSizesAreRefusedWithTheirRange) {
  // Each of these used to wrap a product (B*T, micro_batch * grad_accum, d_inner), end in
  // bad_alloc, or divide by zero; each must now name the key and the allowed range.
  auto msg_of = [](std::vector<std::string> args) { return error_of([&] { parse_command_line(args); }); };
  const std::string two62 = "4611686018427387904";
  EXPECT_CONTAINS(msg_of({"--train.seq_len=" + two62, "--train.micro_batch=16"}),
                  "train.seq_len = " + two62 + " is out of range: expected 1 to 16777216");
  EXPECT_CONTAINS(msg_of({"--train.seq_len=1000000000"}), "train.seq_len = 1000000000 is out of range");
  // 2^32 * 2^32 wraps to 0 in int64: the divisibility check divided by it.
  EXPECT_CONTAINS(msg_of({"--train.micro_batch=4294967296", "--train.grad_accum=4294967296"}),
                  "train.micro_batch = 4294967296 is out of range");
  EXPECT_CONTAINS(msg_of({"--train.global_batch=16", "--train.micro_batch=16", "--train.grad_accum=" + two62}),
                  "train.grad_accum = " + two62 + " is out of range");
  EXPECT_CONTAINS(msg_of({"--train.global_batch=32", "--train.micro_batch=32", "--train.seq_len=16777216"}),
                  "train.micro_batch * train.seq_len = 32 * 16777216 tokens per micro-batch is out of range");
  EXPECT_CONTAINS(msg_of({"--train.global_batch=16777216", "--train.micro_batch=1", "--train.seq_len=16777216"}),
                  "train.global_batch * train.seq_len = 16777216 * 16777216 tokens per step is out of range");
  EXPECT_CONTAINS(msg_of({"--model.mamba_expand=9223372036854775807"}), "model.mamba_expand = 9223372036854775807 is out of range");
  EXPECT_CONTAINS(msg_of({"--model.n_layers=1000000000"}), "model.n_layers = 1000000000 is out of range: expected 1 to 1024");
  // The same bounds hold for a stored config (parse_ini is what a checkpoint's config goes through).
  EXPECT_CONTAINS(error_of([] { parse_ini("[model]\nmamba_d_conv = 4611686018427387904\n", "stored config"); }),
                  "model.mamba_d_conv = 4611686018427387904 is out of range");
  EXPECT_CONTAINS(msg_of({"--data.mqar_pairs=" + two62}), "data.mqar_pairs = " + two62 + " is out of range");
  EXPECT_CONTAINS(msg_of({"--parallel.cp=" + two62}), "parallel.cp = " + two62 + " is out of range");
}

TEST(Options, ADirectoryAsTheConfigFileIsRefused) {
  // Before: the directory read as an empty INI, and the run trained with built-in defaults.
  const std::string dir = fs::temp_directory_path().string();
  const std::string msg = error_of([&] { parse_command_line(std::vector<std::string>{"--config", dir}); });
  EXPECT_CONTAINS(msg, "config file '" + dir + "' is a directory");
  EXPECT_CONTAINS(error_of([&] { parse_command_line(std::vector<std::string>{dir}); }), "is a directory");
}

TEST(Options, BatchLayoutDerivesAccumulationAndRejectsIndivisibleBatches) {
  RunOptions o = parse_command_line(std::vector<std::string>{"--train.global_batch=16", "--train.micro_batch=2",
                                                             "--parallel.cp=2"})
                     .options;
  const BatchLayout l = batch_layout(o, 8);  // dp = 4: 16 = 2 * 2 * 4
  EXPECT_EQ(l.dp, 4);
  EXPECT_EQ(l.cp, 2);
  EXPECT_EQ(l.grad_accum, 2);
  EXPECT_EQ(batch_layout(o, 2).grad_accum, 8);  // dp = 1

  std::string msg = error_of([&] { batch_layout(o, 12); });  // dp = 6: 16 / (2 * 6)
  EXPECT_CONTAINS(msg, "train.global_batch = 16");
  EXPECT_CONTAINS(msg, "2 * 6 = 12");
  msg = error_of([&] { batch_layout(o, 3); });  // 3 ranks cannot form cp groups of 2
  EXPECT_CONTAINS(msg, "world size 3");
  EXPECT_CONTAINS(msg, "parallel.cp = 2");

  o.train.grad_accum = 2;  // a config written for dp = 4 now checks it
  EXPECT_NO_THROW(batch_layout(o, 8));
  msg = error_of([&] { batch_layout(o, 4); });
  EXPECT_CONTAINS(msg, "train.grad_accum = 2");
  EXPECT_CONTAINS(msg, "= 4 at world size 4");

  o.train.grad_accum = 0;
  o.train.seq_len = 250;  // 2 * cp = 4 zigzag chunks
  EXPECT_CONTAINS(error_of([&] { batch_layout(o, 8); }), "train.seq_len = 250");
}

TEST(Options, ModelValidationErrorPropagatesWithFieldName) {
  const std::string msg =
      error_of([] { parse_command_line(std::vector<std::string>{"--model.n_heads=6", "--model.n_kv_heads=4"}); });
  EXPECT_CONTAINS(msg, "model.n_heads = 6");
  EXPECT_CONTAINS(msg, "model.n_kv_heads = 4");
  EXPECT_THROW(parse_command_line(std::vector<std::string>{"--model.pattern=MMA"}), ConfigError);
  EXPECT_CONTAINS(error_of([] { parse_command_line(std::vector<std::string>{"--model.pattern=MMXMMMMM"}); }),
                  "model.pattern");
}

TEST(Options, HelpListsEveryKeyWithItsDefault) {
  const std::string help = options_help();
  const std::map<std::string, std::string> defaults = ini_values(to_ini(RunOptions{}));
  EXPECT_EQ(defaults.size(), kAllKeys.size());
  for (const std::string& key : kAllKeys) {
    const auto at = help.find("--" + key + " ");
    ASSERT_NE(at, std::string::npos) << key;
    const std::string line = help.substr(at, help.find('\n', at) - at);
    ASSERT_EQ(defaults.count(key), 1u) << key;
    const std::string& value = defaults.at(key);
    EXPECT_CONTAINS(line, "(=" + (value.empty() ? std::string("\"\"") : value) + ")");
  }
  // A few defaults spelled out, so the test does not rest on to_ini alone.
  EXPECT_CONTAINS(help, "--model.d_model int (=128)");
  EXPECT_CONTAINS(help, "--model.tie_embeddings bool (=false)");
  EXPECT_CONTAINS(help, "--schedule.name string (=cosine)");
  EXPECT_CONTAINS(help, "--optim.lr float (=0.001)");
  EXPECT_CONTAINS(help, "--parallel.cp int (=1)");
  EXPECT_CONTAINS(help, "--config");
  // And nothing beyond the list.
  std::size_t listed = 0;
  for (auto at = help.find("  --"); at != std::string::npos; at = help.find("  --", at + 1))
    if (help.substr(at + 4, help.find(' ', at + 4) - at - 4).find('.') != std::string::npos) ++listed;
  EXPECT_EQ(listed, kAllKeys.size());
}

TEST(Options, ResolvedIniTextRoundTrips) {
  const CommandLine cl = parse_command_line(std::vector<std::string>{
      "--model.n_layers=4", "--model.pattern=MAMA", "--model.tie_embeddings=on", "--model.rope_theta=500000",
      "--model.attention_neighborhood=sink:4+sliding:64,log", "--model.norm_eps=1e-6",
      "--model.init_std=0.30000000000000004", "--optim.lr=3e-4", "--schedule.min_lr=3e-5",
      "--train.seed=18446744073709551615", "--schedule.name=constant", "--train.out_dir=/tmp/run 1",
      "--data.source=hdf5", "--data.path=/data/shard_*.h5", "--data.val_path=val.h5", "--parallel.cp=2"});
  const std::string text = to_ini(cl.options);
  const std::map<std::string, std::string> values = ini_values(text);
  EXPECT_EQ(values.size(), kAllKeys.size());
  for (const std::string& key : kAllKeys) EXPECT_EQ(values.count(key), 1u) << key;
  EXPECT_EQ(values.at("model.pattern"), "MAMA");
  EXPECT_EQ(values.at("checkpoint.dir"), "/tmp/run 1/checkpoints");

  const RunOptions back = parse_ini(text, "round trip");
  EXPECT_EQ(to_ini(back), text);
  EXPECT_EQ(back.train, cl.options.train);
  EXPECT_EQ(back.data, cl.options.data);
  EXPECT_EQ(back.parallel, cl.options.parallel);
  EXPECT_EQ(back.model.pattern, "MAMA");
  EXPECT_EQ(back.model.attention_neighborhood, "sink:4+sliding:64,log");
  EXPECT_TRUE(back.model.tie_embeddings);
  EXPECT_EQ(back.model.init_std, 0.30000000000000004);  // exact, not merely close
  EXPECT_EQ(back.model.norm_eps, 1e-6);
  EXPECT_EQ(back.optim.lr, 3e-4);
  EXPECT_EQ(back.train.seed, 18446744073709551615u);
}

TEST(Options, RecomputeAndMemoryLimitAreCheckedAndReachTheModel) {
  const CommandLine cl = parse_command_line(
      std::vector<std::string>{"--train.recompute=mlp,mamba", "--runtime.memory_limit=1.5GiB"});
  EXPECT_EQ(cl.options.model.recompute, (Recompute{false, true, true}));
  EXPECT_EQ(parse_bytes(cl.options.runtime.memory_limit), std::size_t(3) << 29);
  EXPECT_CONTAINS(error_of([] { parse_command_line(std::vector<std::string>{"--train.recompute=attn"}); }),
                  "train.recompute = \"attn\" names 'attn': expected none, all, or a comma-separated list");
  EXPECT_CONTAINS(error_of([] { parse_command_line(std::vector<std::string>{"--runtime.memory_limit=80 GiB"}); }),
                  "runtime.memory_limit = \"80 GiB\" is not a size: expected a size such as 512MiB");
  EXPECT_EQ(parse_bytes("80GiB"), std::size_t(80) << 30);
  EXPECT_EQ(parse_bytes("141GB"), std::size_t(141000000000));
  EXPECT_EQ(parse_bytes("4096"), std::size_t(4096));
  for (const char* bad : {"", "GiB", "0", "1.2.3GiB", "-5MiB", "12 MiB", "12gib", "1e30TB"})
    EXPECT_FALSE(parse_bytes(bad).has_value()) << bad;
}

TEST(Options, ParseIniReportsItsOrigin) {
  EXPECT_CONTAINS(error_of([] { parse_ini("[train]\nsteps = 1\nbogus = 2\n", "checkpoint step_00000010.h5"); }),
                  "checkpoint step_00000010.h5");
}

// Configs written before the options were grouped per component (and stored in older
// checkpoints) still read: a former key sets the new one and says so; both at once is refused.
TEST(Options, FormerKeyNamesReadAsTheNewKeysWithANote) {
  const IniFile file("[train]\nlr = 0.002\nckpt_every = 7\nschedule = wsd\n");
  const CommandLine cl =
      parse_command_line(std::vector<std::string>{file.path(), "--train.grad_clip=0.5", "--train.steps=50"});
  EXPECT_EQ(cl.options.optim.lr, 0.002);
  EXPECT_EQ(cl.options.checkpoint.every, 7);
  EXPECT_EQ(cl.options.schedule.name, "wsd");
  EXPECT_EQ(cl.options.optim.grad_clip, 0.5);
  ASSERT_EQ(cl.notes.size(), 4u);
  EXPECT_CONTAINS(cl.notes[0], "train.lr is now optim.lr");
  EXPECT_CONTAINS(cl.notes[3], "command line: train.grad_clip is now optim.grad_clip");
  EXPECT_EQ(parse_ini("[train]\nlr = 0.003\n").optim.lr, 0.003);  // a stored config of an older checkpoint
  EXPECT_CONTAINS(error_of([] { parse_command_line(std::vector<std::string>{"--optim.lr=1", "--train.lr=2"}); }),
                  "optim.lr is given twice in command line, also under its former name train.lr");
  // The help shows only the new names.
  EXPECT_EQ(options_help().find("train.lr"), std::string::npos);
}

TEST(Options, RuntimeAndTextSourceAreCheckedWhileParsing) {
  auto msg_of = [](std::vector<std::string> args) { return error_of([&] { parse_command_line(args); }); };
  EXPECT_CONTAINS(msg_of({"--runtime.device=tpu"}), "runtime.device = \"tpu\" is not one of cpu, cuda");
  EXPECT_CONTAINS(msg_of({"--runtime.dtype=fp8"}), "runtime.dtype = \"fp8\"");
  EXPECT_CONTAINS(msg_of({"--runtime.dtype=bf16"}), "runtime.dtype = bf16 needs runtime.device = cuda");
  EXPECT_CONTAINS(msg_of({"--runtime.threads=-1"}), "runtime.threads = -1");
  EXPECT_CONTAINS(msg_of({"--data.source=text", "--data.path=a.txt"}), "nexus data prepare");
  EXPECT_NO_THROW(parse_command_line(std::vector<std::string>{"--runtime.device=cuda", "--runtime.dtype=bf16"}));
  // Context parallelism has a bf16 path (ring attention and the Mamba-2 state passing on the GPU).
  EXPECT_NO_THROW(parse_command_line(
      std::vector<std::string>{"--runtime.device=cuda", "--runtime.dtype=bf16", "--parallel.cp=2"}));
}

TEST(Options, TransportIsCheckedAgainstTheDevice) {
  auto msg_of = [](std::vector<std::string> args) { return error_of([&] { parse_command_line(args); }); };
  auto transport_of = [](std::vector<std::string> args) {
    return parse_command_line(args).options.parallel.transport;
  };
  EXPECT_EQ(transport_of({}), "auto");
  EXPECT_CONTAINS(msg_of({"--parallel.transport=gloo"}),
                  "parallel.transport = \"gloo\" is not one of auto, mpi, staged, nccl");
  EXPECT_CONTAINS(msg_of({"--parallel.transport=nccl"}), "parallel.transport = nccl needs runtime.device = cuda");
  EXPECT_CONTAINS(msg_of({"--parallel.transport=staged"}), "parallel.transport = staged needs runtime.device = cuda");
  EXPECT_CONTAINS(msg_of({"--runtime.device=cuda", "--parallel.transport=mpi"}), "CUDA-aware");
  EXPECT_EQ(transport_of({"--parallel.transport=mpi"}), "mpi");
  for (const char* t : {"auto", "staged", "nccl"})
    EXPECT_EQ(transport_of({"--runtime.device=cuda", std::string("--parallel.transport=") + t}), t);
}

TEST(Options, ValuesThatCannotRoundTripAreRejected) {
  EXPECT_CONTAINS(error_of([] { parse_command_line(std::vector<std::string>{"--train.out_dir=a#b"}); }),
                  "train.out_dir");
}

}  // namespace
}  // namespace nexus
