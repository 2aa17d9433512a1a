// The `nexus train` configuration layer: INI + command line, errors, help, INI round trip.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "trainer/options.h"

namespace nexus {
namespace {

namespace fs = std::filesystem;

// Every key the configuration must offer, written out here independently of options.cpp.
const std::vector<std::string> kAllKeys = {
    "model.vocab_size", "model.d_model", "model.n_layers", "model.pattern", "model.mlp_hidden", "model.n_heads",
    "model.n_kv_heads", "model.head_dim", "model.rope_theta", "model.attention_neighborhood", "model.mamba_expand",
    "model.mamba_headdim",
    "model.mamba_ngroups", "model.mamba_d_state", "model.mamba_d_conv", "model.mamba_chunk", "model.norm_eps",
    "model.tie_embeddings", "model.init_std", "train.steps", "train.global_batch", "train.micro_batch",
    "train.grad_accum", "train.seq_len", "train.seed", "train.lr", "train.min_lr", "train.warmup_steps",
    "train.schedule", "train.wsd_decay_fraction", "train.beta1", "train.beta2", "train.eps", "train.weight_decay",
    "train.grad_clip", "train.max_bad_steps", "train.eval_every", "train.eval_batches", "train.log_every",
    "train.out_dir", "train.ckpt_every", "train.ckpt_dir", "train.ckpt_keep", "train.exit_after", "data.source",
    "data.path",
    "data.mqar_pairs", "data.mqar_queries", "data.val_path", "parallel.cp"};

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
  EXPECT_EQ(cl.options.train.ckpt_dir, cl.options.train.out_dir + "/checkpoints");
  EXPECT_EQ(cl.options.data.source, "mqar");
  EXPECT_EQ(batch_layout(cl.options, 1).grad_accum, 4);  // 8 sequences in micro-batches of 2
}

TEST(Options, CommandLineOverridesFile) {
  const IniFile file(
      "# comment\n[model]\nd_model = 64\nn_layers = 4\n[train]\nsteps = 50\nlr = 0.002\nschedule = wsd\n"
      "[data]\nsource = shards\npath = /data/*.bin\n");
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"--config", file.path(), "--model.d_model=96", "--train.warmup_steps", "5"},
        std::vector<std::string>{"--model.d_model", "96", file.path(), "--train.warmup_steps=5"},
        std::vector<std::string>{"-c", file.path(), "--model.d_model=96", "--train.warmup_steps=5"}}) {
    const CommandLine cl = parse_command_line(args);
    EXPECT_EQ(cl.config_file, file.path());
    EXPECT_EQ(cl.options.model.d_model, 96);          // both, command line wins
    EXPECT_EQ(cl.options.model.n_layers, 4);          // file only
    EXPECT_EQ(cl.options.model.pattern, "MMMM");      // default pattern for 4 layers
    EXPECT_EQ(cl.options.train.steps, 50);            // file only
    EXPECT_EQ(cl.options.train.lr, 0.002);            // file only
    EXPECT_EQ(cl.options.train.warmup_steps, 5);      // command line only
    EXPECT_EQ(cl.options.train.schedule, "wsd");
    EXPECT_EQ(cl.options.train.beta2, 0.95);          // neither: default
    EXPECT_EQ(cl.options.data.path, "/data/*.bin");
    EXPECT_EQ(cl.options.schedule().kind, LrSchedule::Wsd);
    EXPECT_EQ(cl.options.schedule().total_steps, 50);
  }
}

TEST(Options, ArgvFormSkipsTheProgramName) {
  const char* argv[] = {"train", "--train.steps=7", "--train.warmup_steps=0"};
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
  msg = error_of([] { parse_command_line(std::vector<std::string>{"--train.lr=fast"}); });
  EXPECT_CONTAINS(msg, "train.lr");
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
  msg = msg_of({"--train.lr=0.001", "--train.min_lr=0.01"});
  EXPECT_CONTAINS(msg, "train.min_lr = 0.01");
  msg = msg_of({"--train.warmup_steps=-1"});
  EXPECT_CONTAINS(msg, "train.warmup_steps = -1");
  EXPECT_NO_THROW(parse_command_line(std::vector<std::string>{"--train.steps=5"}));  // ends inside warmup
  msg = msg_of({"--train.schedule=linear"});
  EXPECT_CONTAINS(msg, "linear");
  msg = msg_of({"--train.schedule=wsd", "--train.steps=100", "--train.warmup_steps=90"});
  EXPECT_CONTAINS(msg, "train.warmup_steps = 90");
  msg = msg_of({"--data.source=shards"});
  EXPECT_CONTAINS(msg, "data.path");
  msg = msg_of({"--data.source=parquet"});
  EXPECT_CONTAINS(msg, "parquet");
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
  EXPECT_CONTAINS(help, "--train.schedule string (=cosine)");
  EXPECT_CONTAINS(help, "--train.lr float (=0.001)");
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
      "--model.attention_neighborhood=sink:4+sliding:64,log", "--model.norm_eps=1e-6", "--model.init_std=0.30000000000000004", "--train.lr=3e-4", "--train.min_lr=3e-5",
      "--train.seed=18446744073709551615", "--train.schedule=constant", "--train.out_dir=/tmp/run 1",
      "--data.source=text", "--data.path=/data/shard_*.txt", "--data.val_path=val.txt", "--parallel.cp=2"});
  const std::string text = to_ini(cl.options);
  const std::map<std::string, std::string> values = ini_values(text);
  EXPECT_EQ(values.size(), kAllKeys.size());
  for (const std::string& key : kAllKeys) EXPECT_EQ(values.count(key), 1u) << key;
  EXPECT_EQ(values.at("model.pattern"), "MAMA");
  EXPECT_EQ(values.at("train.ckpt_dir"), "/tmp/run 1/checkpoints");

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
  EXPECT_EQ(back.train.lr, 3e-4);
  EXPECT_EQ(back.train.seed, 18446744073709551615u);
}

TEST(Options, ParseIniReportsItsOrigin) {
  EXPECT_CONTAINS(error_of([] { parse_ini("[train]\nsteps = 1\nbogus = 2\n", "checkpoint step_00000010.h5"); }),
                  "checkpoint step_00000010.h5");
}

TEST(Options, ValuesThatCannotRoundTripAreRejected) {
  EXPECT_CONTAINS(error_of([] { parse_command_line(std::vector<std::string>{"--train.out_dir=a#b"}); }),
                  "train.out_dir");
}

}  // namespace
}  // namespace nexus
