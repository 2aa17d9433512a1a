#include "trainer/options.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string_view>
#include <system_error>

#include <boost/program_options.hpp>

#include "model/checked_math.h"
#include "model/memory_need.h"

namespace nexus {

namespace po = boost::program_options;

namespace {

// The single list of options: every key, its field and its help line. Templated on constness
// so one list serves parsing (writes the fields), printing and the help text.
template <typename Options, typename F>
void for_each_option(Options& o, F&& f) {
  auto& m = o.model;
  f("model.vocab_size", m.vocab_size, "vocabulary size (256 for the byte tokenizer)");
  f("model.d_model", m.d_model, "hidden size D");
  f("model.n_layers", m.n_layers, "number of layers L");
  f("model.pattern", m.pattern, "one letter per layer, M (Mamba-2) or A (attention); empty: A where i % 8 == 4");
  f("model.mlp_hidden", m.mlp_hidden, "SwiGLU hidden width (intermediate_size)");
  f("model.n_heads", m.n_heads, "attention query heads");
  f("model.n_kv_heads", m.n_kv_heads, "attention key/value heads (GQA)");
  f("model.head_dim", m.head_dim, "attention head size");
  f("model.rope_theta", m.rope_theta, "RoPE base");
  f("model.attention_neighborhood", m.attention_neighborhood,
    "positions each attention layer reads: full, sliding:W, dilated:W:D, log, block:C, sink:K+<rule>; "
    "one for all attention layers or a comma-separated list, one per attention layer");
  f("model.attention_impl", m.attention_impl,
    "attention on a GPU: nexus (the own kernels) | cudnn (cuDNN's fused attention for bf16 calls it can express: "
    "full causal or no mask, head_dim a multiple of 8 up to 128; the own kernels for the rest, e.g. ring blocks "
    "and other neighborhoods; the run prints which each layer uses). CPU runs ignore it");
  f("model.mamba_expand", m.mamba_expand, "Mamba-2 d_inner = expand * d_model");
  f("model.mamba_headdim", m.mamba_headdim, "Mamba-2 head size P");
  f("model.mamba_ngroups", m.mamba_ngroups, "Mamba-2 B/C groups G");
  f("model.mamba_d_state", m.mamba_d_state, "Mamba-2 state size N");
  f("model.mamba_d_conv", m.mamba_d_conv, "Mamba-2 conv1d kernel size");
  f("model.mamba_chunk", m.mamba_chunk, "SSD chunk size Q");
  f("model.norm_eps", m.norm_eps, "RMSNorm epsilon");
  f("model.tie_embeddings", m.tie_embeddings, "lm_head shares the embedding matrix");
  f("model.init_std", m.init_std, "standard deviation of the normal weight init");
  auto& d = o.data;
  f("data.source", d.source, "mqar | shards | hdf5 (text: `nexus data prepare` makes shards)");
  f("data.path", d.path,
    "training data (not for mqar): files, directories (every *.bin, *.h5, *.hdf5 in it, by name) or globs, "
    "comma-separated");
  f("data.mqar_pairs", d.mqar_pairs, "mqar: key-value pairs per sequence");
  f("data.mqar_queries", d.mqar_queries, "mqar: queries per sequence");
  f("data.val_path", d.val_path, "validation data, as data.path; empty: none (mqar: its own stream)");
  auto& t = o.train;
  f("train.steps", t.steps, "optimizer steps");
  f("train.global_batch", t.global_batch, "sequences per optimizer step, all ranks together");
  f("train.micro_batch", t.micro_batch, "sequences per rank per forward/backward");
  f("train.grad_accum", t.grad_accum, "micro-batches per step; 0: global_batch / (micro_batch * dp), else checked");
  f("train.seq_len", t.seq_len, "tokens per sequence");
  f("train.seed", t.seed, "seed for the initialisation and the data order");
  f("train.max_bad_steps", t.max_bad_steps, "non-finite steps skipped in a row before the run stops");
  f("train.eval_every", t.eval_every, "steps between evaluations; 0: never");
  f("train.eval_batches", t.eval_batches, "batches per evaluation");
  f("train.log_every", t.log_every, "steps between log lines");
  f("train.out_dir", t.out_dir, "run directory (metrics, logs)");
  f("train.exit_after", t.exit_after,
    "stop (with a checkpoint) after this many steps of this run, e.g. to fit a job's time limit; 0: never");
  f("train.recompute", t.recompute,
    "activation recomputation: none | attention | mamba | mlp | all, or a list such as mamba,mlp (the chosen "
    "blocks keep only their input and run their forward again in the backward; results are unchanged)");
  auto& op = o.optim;
  f("optim.lr", op.lr, "peak learning rate");
  f("optim.beta1", op.beta1, "AdamW beta1");
  f("optim.beta2", op.beta2, "AdamW beta2");
  f("optim.eps", op.eps, "AdamW epsilon");
  f("optim.weight_decay", op.weight_decay, "AdamW decoupled weight decay (not on norms, biases, A_log, D, dt_bias)");
  f("optim.grad_clip", op.grad_clip, "max global gradient norm; 0: no clipping");
  auto& sc = o.schedule;
  f("schedule.name", sc.name, "cosine | constant | wsd (warmup-stable-decay)");
  f("schedule.min_lr", sc.min_lr, "learning rate at the end of the decay");
  f("schedule.warmup_steps", sc.warmup_steps, "linear warmup steps");
  f("schedule.wsd_decay_fraction", sc.wsd_decay_fraction, "wsd: fraction of the steps spent decaying to min_lr");
  auto& ck = o.checkpoint;
  f("checkpoint.every", ck.every, "steps between checkpoints; 0: never");
  f("checkpoint.dir", ck.dir, "checkpoint directory; empty: <train.out_dir>/checkpoints");
  f("checkpoint.keep", ck.keep, "checkpoints kept; 0: all");
  f("parallel.cp", o.parallel.cp, "context-parallel group size; dp = world size / cp");
  f("parallel.zero", o.parallel.zero,
    "0: every rank holds the whole AdamW state; 1: ZeRO-1, the AdamW moments sharded over all ranks (dp x cp)");
  f("parallel.transport", o.parallel.transport,
    "data plane: auto | mpi | staged | nccl (auto: mpi on the CPU; on a GPU nccl when built and one rank per GPU, "
    "else staged: host copies around MPI)");
  f("parallel.overlap_kib", o.parallel.overlap_kib,
    "several ranks: reduce the deltas in buckets of this many KiB during the last micro-batch's backward (hides "
    "the communication behind it; zero 0 all-reduces them, zero 1 reduce-scatters them to the shards); 0: after the "
    "backward (zero 0 one all-reduce, zero 1 one reduce-scatter)");
  f("parallel.nccl_timeout_s", o.parallel.nccl_timeout_s,
    "nccl data plane: seconds an operation may stay unfinished (a dead or stuck peer) before the run ends with an "
    "error on this rank");
  f("parallel.mpi_timeout_s", o.parallel.mpi_timeout_s,
    "several ranks: seconds one blocking MPI call may wait (a stuck peer; longer than the slowest checkpoint "
    "write) before the run ends with an error naming the call; 0: wait forever");
  auto& rt = o.runtime;
  f("runtime.device", rt.device, "cpu | cuda");
  f("runtime.dtype", rt.dtype, "fp32 | bf16 (activations and compute weights; bf16 needs runtime.device = cuda)");
  f("runtime.threads", rt.threads, "OpenMP threads per rank; 0: OMP_NUM_THREADS, else all cores");
  f("runtime.memory_limit", rt.memory_limit,
    "memory the run may take on this machine (all its ranks), e.g. 512MiB or 80GiB; the memory check refuses a "
    "run that needs more; empty: what the machine has");
}

constexpr std::array<std::pair<const char*, const char*>, 8> kSections = {{
    {"model", "architecture (Hugging Face BambaConfig)"},
    {"data", "training and validation data"},
    {"train", "steps, batch, evaluation and logging cadence"},
    {"optim", "AdamW and gradient clipping"},
    {"schedule", "learning-rate schedule"},
    {"checkpoint", "checkpoint cadence and place"},
    {"parallel", "process mesh"},
    {"runtime", "device, precision, threads"},
}};

// Keys as they were named before the options were grouped per component. They are still read
// (configs stored in older checkpoints, existing scripts), as the new key, with a note.
constexpr std::array<std::pair<const char*, const char*>, 13> kFormerKeys = {{
    {"train.lr", "optim.lr"},
    {"train.beta1", "optim.beta1"},
    {"train.beta2", "optim.beta2"},
    {"train.eps", "optim.eps"},
    {"train.weight_decay", "optim.weight_decay"},
    {"train.grad_clip", "optim.grad_clip"},
    {"train.schedule", "schedule.name"},
    {"train.min_lr", "schedule.min_lr"},
    {"train.warmup_steps", "schedule.warmup_steps"},
    {"train.wsd_decay_fraction", "schedule.wsd_decay_fraction"},
    {"train.ckpt_every", "checkpoint.every"},
    {"train.ckpt_dir", "checkpoint.dir"},
    {"train.ckpt_keep", "checkpoint.keep"},
}};

std::string_view section_of(std::string_view key) { return key.substr(0, key.find('.')); }

// ---- values <-> text ---------------------------------------------------------------------

const char* type_name(const idx&) { return "int"; }
const char* type_name(const std::uint64_t&) { return "uint"; }
const char* type_name(const double&) { return "float"; }
const char* type_name(const bool&) { return "bool"; }
const char* type_name(const std::string&) { return "string"; }

std::string format(idx v) { return std::to_string(v); }
std::string format(std::uint64_t v) { return std::to_string(v); }
std::string format(bool v) { return v ? "true" : "false"; }
std::string format(const std::string& v) { return v; }
std::string format(double v) {
  // Shortest text that reads back to the same double, so the INI text round-trips exactly.
  std::array<char, 64> buf{};
  const auto r = std::to_chars(buf.data(), buf.data() + buf.size(), v);
  return std::string(buf.data(), r.ptr);
}

// Each parse returns false when `text` is not entirely a value of the type.
template <typename Int>
bool parse_integer(const std::string& text, Int& out) {
  const char* end = text.data() + text.size();
  const auto r = std::from_chars(text.data(), end, out);
  return r.ec == std::errc() && r.ptr == end;
}
bool parse(const std::string& text, idx& out) { return parse_integer(text, out); }
bool parse(const std::string& text, std::uint64_t& out) { return parse_integer(text, out); }
bool parse(const std::string& text, double& out) {
  const char* end = text.data() + text.size();
  const auto r = std::from_chars(text.data(), end, out);
  return r.ec == std::errc() && r.ptr == end && std::isfinite(out);
}
bool parse(const std::string& text, bool& out) {
  std::string s = text;
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  const bool yes = s == "true" || s == "yes" || s == "on" || s == "1";
  const bool no = s == "false" || s == "no" || s == "off" || s == "0";
  if (yes || no) out = yes;
  return yes || no;
}
bool parse(const std::string& text, std::string& out) {
  out = text;
  return true;
}

const char* expected(const idx&) { return "an integer"; }
const char* expected(const std::uint64_t&) { return "a non-negative integer"; }
const char* expected(const double&) { return "a finite number"; }
const char* expected(const bool&) { return "true or false"; }
const char* expected(const std::string&) { return "a string"; }

// ---- Boost.Program_options plumbing ------------------------------------------------------

// Every option takes its value as a string; the conversion is ours, so that a malformed value
// reports the key, the value and the expected type. With `show_defaults` the defaults appear
// in the description (for the help text only: parsing must see just what was given).
po::options_description describe(bool show_defaults) {
  po::options_description all(100, 50);
  const RunOptions defaults;
  for (const auto& [section, title] : kSections) {
    po::options_description group(std::string("[") + section + "] " + title, 100, 50);
    for_each_option(defaults, [&](const char* key, const auto& field, const char* help) {
      if (section_of(key) != section) return;
      auto* value = po::value<std::string>()->value_name(type_name(field));
      if (show_defaults) {
        const std::string text = format(field);
        value->default_value(text, text.empty() ? "\"\"" : text);
      }
      group.add_options()(key, value, help);
    });
    all.add(group);
  }
  if (!show_defaults) {  // readable, not advertised
    po::options_description former("former names");
    for (const auto& [old_key, new_key] : kFormerKeys) former.add_options()(old_key, po::value<std::string>(), new_key);
    all.add(former);
  }
  return all;
}

po::options_description generic_options() {
  po::options_description generic("General", 100, 50);
  generic.add_options()("help,h", "print this help and exit")(
      "config,c", po::value<std::string>()->value_name("FILE"),
      "INI file ([section] key = value); the command line overrides it")(
      "resume", po::value<std::string>()->value_name("latest|DIR|FILE"),
      "resume from a checkpoint: 'latest' (the newest one in checkpoint.dir that verifies; a fresh "
      "start when there is none yet), a checkpoint directory (the same, but it must hold one), or a "
      "checkpoint file");
  return generic;
}

po::variables_map read_ini(const std::string& text, const std::string& origin) {
  std::istringstream in(text);
  po::variables_map vm;
  try {
    po::store(po::parse_config_file(in, describe(false), /*allow_unregistered=*/false), vm);
  } catch (const po::unknown_option& e) {
    throw OptionsError("unknown key '" + e.get_option_name() + "' in " + origin + " (nexus train --help lists the keys)");
  } catch (const po::error& e) {
    throw OptionsError(origin + ": " + e.what());
  }
  return vm;
}

// Sets every option `vm` holds; a key under its former name sets the new key and adds a note.
void apply(const po::variables_map& vm, const std::string& origin, RunOptions& o, std::vector<std::string>* notes) {
  for_each_option(o, [&](const char* key, auto& field, const char*) {
    auto it = vm.find(key);
    std::string given = key;
    for (const auto& [old_key, new_key] : kFormerKeys) {
      if (std::string_view(new_key) != key || !vm.count(old_key)) continue;
      if (it != vm.end())
        throw OptionsError(std::string(key) + " is given twice in " + origin + ", also under its former name " +
                           old_key);
      it = vm.find(old_key);
      given = old_key;
      if (notes) notes->push_back(origin + ": " + old_key + " is now " + key);
    }
    if (it == vm.end()) return;
    const auto& text = it->second.as<std::string>();
    if (!parse(text, field))
      throw OptionsError("invalid value '" + text + "' for " + given + " (" + origin + "): expected " + expected(field));
  });
}

[[noreturn]] void fail(const std::string& message) { throw OptionsError("invalid configuration: " + message); }

template <typename T>
std::string kv(const char* key, const T& value) {
  return std::string(key) + " = " + format(value);
}

void require(bool ok, const std::string& message) {
  if (!ok) fail(message);
}

// Sizes that multiply into buffer sizes and counters get explicit bounds, so that no product of
// them can wrap (see model/checked_math.h). `low` is 0 for "0 means derived/never" options.
void require_range(const char* key, idx value, idx low, idx high) {
  require(value >= low && value <= high, kv(key, value) + " is out of range: expected " + format(low) + " to " +
                                             format(high));
}

// Upper bounds of the run's sizes: far beyond real runs (1M-token sequences, 16M-sequence
// batches, 67M steps), small enough that tokens per step and tokens seen fit in int64.
constexpr idx kMaxSeqLen = idx(1) << 24;
constexpr idx kMaxBatch = idx(1) << 24;
constexpr idx kMaxMicroBatch = idx(1) << 16;
constexpr idx kMaxSteps = idx(1) << 26;
constexpr idx kMaxTokensPerStep = idx(1) << 36;    // global_batch * seq_len
constexpr idx kMaxTokensPerMicroBatch = idx(1) << 28;  // micro_batch * seq_len: one forward's rows

// Fills the values that default to others, then checks everything that does not depend on the
// world size.
void finalize(RunOptions& o) {
  ModelConfig& m = o.model;
  TrainOptions& t = o.train;
  const OptimOptions& op = o.optim;
  const ScheduleOptions& sc = o.schedule;
  CheckpointOptions& ck = o.checkpoint;
  const RuntimeOptions& rt = o.runtime;
  DataOptions& d = o.data;
  try {
    m.validate();
  } catch (const OptionsError&) {
    throw;
  } catch (const ConfigError& e) {
    throw OptionsError(e.what());
  }
  if (m.pattern.empty()) m.pattern = m.layer_pattern();
  try {
    m.recompute = parse_recompute(t.recompute);
  } catch (const ConfigError& e) {
    fail(e.what());
  }
  if (ck.dir.empty()) ck.dir = t.out_dir + "/checkpoints";

  require(t.steps > 0, kv("train.steps", t.steps) + " must be positive");
  require(t.global_batch > 0, kv("train.global_batch", t.global_batch) + " must be positive");
  require(t.micro_batch > 0, kv("train.micro_batch", t.micro_batch) + " must be positive");
  require_range("train.steps", t.steps, 1, kMaxSteps);
  require_range("train.global_batch", t.global_batch, 1, kMaxBatch);
  require_range("train.micro_batch", t.micro_batch, 1, kMaxMicroBatch);
  require_range("train.grad_accum", t.grad_accum, 0, kMaxBatch);
  require_range("train.seq_len", t.seq_len, 1, kMaxSeqLen);
  require_range("train.eval_batches", t.eval_batches, 0, kMaxBatch);
  require_range("schedule.warmup_steps", sc.warmup_steps, 0, kMaxSteps);
  require_range("data.mqar_pairs", d.mqar_pairs, 1, kMaxSeqLen);
  require_range("data.mqar_queries", d.mqar_queries, 1, kMaxSeqLen);
  require_range("parallel.cp", o.parallel.cp, 1, idx(1) << 16);
  // The bounds above keep these products far from overflow; they are still computed checked.
  require(checked_mul(t.global_batch, t.seq_len, "tokens per step") <= kMaxTokensPerStep,
          "train.global_batch * train.seq_len = " + format(t.global_batch) + " * " + format(t.seq_len) +
              " tokens per step is out of range: expected at most " + format(kMaxTokensPerStep));
  require(checked_mul(t.micro_batch, t.seq_len, "tokens per micro-batch") <= kMaxTokensPerMicroBatch,
          "train.micro_batch * train.seq_len = " + format(t.micro_batch) + " * " + format(t.seq_len) +
              " tokens per micro-batch is out of range: expected at most " + format(kMaxTokensPerMicroBatch));
  require(t.global_batch % t.micro_batch == 0,
          kv("train.global_batch", t.global_batch) + " is not a multiple of " + kv("train.micro_batch", t.micro_batch));
  require(t.grad_accum >= 0, kv("train.grad_accum", t.grad_accum) + " must be 0 (derived) or positive");
  require(t.grad_accum == 0 || t.global_batch % (t.micro_batch * t.grad_accum) == 0,
          kv("train.global_batch", t.global_batch) + " is not a multiple of train.micro_batch * train.grad_accum = " +
              format(t.micro_batch) + " * " + format(t.grad_accum));
  require(t.seq_len > 0, kv("train.seq_len", t.seq_len) + " must be positive");
  require(op.lr > 0, kv("optim.lr", op.lr) + " must be positive");
  require(sc.min_lr >= 0 && sc.min_lr <= op.lr,
          kv("schedule.min_lr", sc.min_lr) + " must lie in [0, optim.lr = " + format(op.lr) + "]");
  // A warmup longer than the run is allowed: a short smoke run (--train.steps=5) of a config
  // written for a long one just stays in warmup.
  require(sc.warmup_steps >= 0, kv("schedule.warmup_steps", sc.warmup_steps) + " must not be negative");
  require(parse_lr_schedule(sc.name).has_value(),
          "schedule.name = \"" + sc.name + "\" is not one of cosine, constant, wsd");
  require(sc.wsd_decay_fraction >= 0 && sc.wsd_decay_fraction <= 1,
          kv("schedule.wsd_decay_fraction", sc.wsd_decay_fraction) + " must lie in [0, 1]");
  if (sc.name == "wsd")
    require(sc.warmup_steps <= wsd_decay_start(o.schedule_config()),
            kv("schedule.warmup_steps", sc.warmup_steps) + " overlaps the decay, which starts at step " +
                format(wsd_decay_start(o.schedule_config())) + " (train.steps = " + format(t.steps) +
                ", schedule.wsd_decay_fraction = " + format(sc.wsd_decay_fraction) + ")");
  require(op.beta1 >= 0 && op.beta1 < 1, kv("optim.beta1", op.beta1) + " must lie in [0, 1)");
  require(op.beta2 >= 0 && op.beta2 < 1, kv("optim.beta2", op.beta2) + " must lie in [0, 1)");
  require(op.eps > 0, kv("optim.eps", op.eps) + " must be positive");
  require(op.weight_decay >= 0, kv("optim.weight_decay", op.weight_decay) + " must not be negative");
  require(op.grad_clip >= 0, kv("optim.grad_clip", op.grad_clip) + " must not be negative (0 disables clipping)");
  require(t.max_bad_steps >= 0, kv("train.max_bad_steps", t.max_bad_steps) + " must not be negative");
  require(t.eval_every >= 0, kv("train.eval_every", t.eval_every) + " must not be negative (0: never)");
  require(t.eval_every == 0 || t.eval_batches > 0,
          kv("train.eval_batches", t.eval_batches) + " must be positive when train.eval_every = " + format(t.eval_every));
  require(t.log_every > 0, kv("train.log_every", t.log_every) + " must be positive");
  require(!t.out_dir.empty(), "train.out_dir must not be empty");
  require(ck.every >= 0, kv("checkpoint.every", ck.every) + " must not be negative (0: never)");
  require(ck.keep >= 0, kv("checkpoint.keep", ck.keep) + " must not be negative (0: keep all)");
  require(t.exit_after >= 0, kv("train.exit_after", t.exit_after) + " must not be negative (0: never)");

  require(d.source != "text",
          "data.source = text: the trainer reads tokens; turn the text files into token shards first with "
          "`nexus data prepare --out PREFIX FILE...` and train with data.source = shards, data.path = "
          "'PREFIX_train_*.bin'");
  require(d.source == "mqar" || d.source == "shards" || d.source == "hdf5",
          "data.source = \"" + d.source + "\" is not one of mqar, shards, hdf5");
  require(d.source == "mqar" || !d.path.empty(), "data.path is required when data.source = " + d.source);
  require(d.mqar_pairs > 0, kv("data.mqar_pairs", d.mqar_pairs) + " must be positive");
  require(d.mqar_queries > 0, kv("data.mqar_queries", d.mqar_queries) + " must be positive");
  require(o.parallel.cp > 0, kv("parallel.cp", o.parallel.cp) + " must be positive");
  require(o.parallel.overlap_kib >= 0 && o.parallel.overlap_kib <= (idx(1) << 30),
          kv("parallel.overlap_kib", o.parallel.overlap_kib) + " is out of range: expected 0 (no overlap) to 1073741824");
  require(o.parallel.mpi_timeout_s >= 0 && o.parallel.mpi_timeout_s <= 604800,
          kv("parallel.mpi_timeout_s", o.parallel.mpi_timeout_s) +
              " is out of range: expected 0 (no timeout) to 604800 (one week)");
  require(o.parallel.nccl_timeout_s >= 1 && o.parallel.nccl_timeout_s <= 86400,
          kv("parallel.nccl_timeout_s", o.parallel.nccl_timeout_s) + " is out of range: expected 1 to 86400 (one day)");
  require(o.parallel.zero == 0 || o.parallel.zero == 1,
          kv("parallel.zero", o.parallel.zero) +
              " is not one of 0 (replicated optimizer state), 1 (ZeRO-1: AdamW moments sharded over the ranks)");
  require(rt.device == "cpu" || rt.device == "cuda", "runtime.device = \"" + rt.device + "\" is not one of cpu, cuda");
  const std::string& tr = o.parallel.transport;
  require(tr == "auto" || tr == "mpi" || tr == "staged" || tr == "nccl",
          "parallel.transport = \"" + tr + "\" is not one of auto, mpi, staged, nccl");
  require(rt.device == "cuda" || tr == "auto" || tr == "mpi",
          "parallel.transport = " + tr + " needs runtime.device = cuda (on the CPU: auto or mpi)");
  require(rt.device == "cpu" || tr != "mpi",
          "parallel.transport = mpi with runtime.device = cuda would hand device pointers to MPI (needs a CUDA-aware "
          "MPI); expected auto, staged or nccl");
  require(rt.dtype == "fp32" || rt.dtype == "bf16", "runtime.dtype = \"" + rt.dtype + "\" is not one of fp32, bf16");
  require(rt.dtype != "bf16" || rt.device == "cuda",
          "runtime.dtype = bf16 needs runtime.device = cuda (the CPU computes in fp32)");
  require(rt.threads >= 0, kv("runtime.threads", rt.threads) + " must not be negative (0: the default)");
  require(rt.memory_limit.empty() || parse_bytes(rt.memory_limit).has_value(),
          "runtime.memory_limit = \"" + rt.memory_limit + "\" is not a size: expected " + kBytesSyntax +
              "; empty: no limit");

  // Values that the INI text could not carry back unchanged.
  for_each_option(o, [](const char* key, const auto& field, const char*) {
    const std::string text = format(field);
    const bool padded = !text.empty() && (std::isspace(static_cast<unsigned char>(text.front())) ||
                                          std::isspace(static_cast<unsigned char>(text.back())));
    require(!padded && text.find_first_of("#\r\n") == std::string::npos,
            std::string(key) + " = \"" + text + "\" cannot be stored in an INI file ('#', line breaks or edge spaces)");
  });
}

std::string read_file(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw OptionsError("config file '" + path + "' is a directory; expected an INI file (e.g. configs/tiny.ini)");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw OptionsError("cannot open config file '" + path + "'");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw OptionsError("cannot read config file '" + path + "'");
  return text.str();
}

}  // namespace

ScheduleConfig RunOptions::schedule_config() const {
  return ScheduleConfig{parse_lr_schedule(schedule.name).value_or(LrSchedule::Cosine),
                        optim.lr,
                        schedule.min_lr,
                        schedule.warmup_steps,
                        train.steps,
                        schedule.wsd_decay_fraction};
}

AdamWHyper RunOptions::adamw() const { return AdamWHyper{optim.beta1, optim.beta2, optim.eps, optim.weight_decay}; }

CommandLine parse_command_line(const std::vector<std::string>& args) {
  po::options_description desc = generic_options();
  desc.add(describe(false));
  po::positional_options_description positional;
  positional.add("config", 1);
  // Guessing would let a misspelt prefix such as --train.ckpt silently pick a key.
  const int style = po::command_line_style::default_style & ~po::command_line_style::allow_guessing;
  po::variables_map cli;
  try {
    po::store(po::command_line_parser(args).options(desc).positional(positional).style(style).run(), cli);
  } catch (const po::unknown_option& e) {
    const std::string name = e.get_option_name();  // "--key=value" when given with '='
    throw OptionsError("unknown option '" + name.substr(0, name.find('=')) +
                       "' on the command line (nexus train --help lists them)");
  } catch (const po::error& e) {
    throw OptionsError(std::string("command line: ") + e.what());
  }

  CommandLine result;
  result.help = cli.count("help") > 0;
  if (cli.count("config")) result.config_file = cli["config"].as<std::string>();
  if (cli.count("resume")) result.resume = cli["resume"].as<std::string>();
  if (result.help) return result;
  if (!result.config_file.empty())
    apply(read_ini(read_file(result.config_file), "config file " + result.config_file),
          "config file " + result.config_file, result.options, &result.notes);
  apply(cli, "command line", result.options, &result.notes);
  finalize(result.options);
  return result;
}

CommandLine parse_command_line(int argc, const char* const argv[]) {
  return parse_command_line(std::vector<std::string>(argv + std::min(argc, 1), argv + argc));
}

RunOptions parse_ini(const std::string& text, const std::string& origin) {
  RunOptions o;
  apply(read_ini(text, origin), origin, o, nullptr);
  try {
    finalize(o);
  } catch (const ConfigError& e) {
    throw OptionsError(origin + ": " + e.what());  // e.g. which checkpoint's stored config
  }
  return o;
}

std::string to_ini(const RunOptions& options) {
  std::string out = "# nexus run configuration, resolved values\n";
  for (const auto& [section, title] : kSections) {
    out += std::string("\n[") + section + "]\n";
    for_each_option(options, [&](const char* key, const auto& field, const char*) {
      const std::string_view k(key);
      if (section_of(k) != section) return;
      out += std::string(k.substr(k.find('.') + 1)) + " = " + format(field) + "\n";
    });
  }
  return out;
}

std::string options_help(const std::string& usage) {
  po::options_description desc = generic_options();
  desc.add(describe(true));
  std::ostringstream out;
  out << usage << "\n\n"
      << "Options come from the INI file (section [model], key d_model is model.d_model) and the\n"
      << "command line (--model.d_model=512), which wins. Defaults in parentheses.\n\n"
      << desc;
  return out.str();
}

BatchLayout batch_layout(const RunOptions& options, idx world_size) {
  const TrainOptions& t = options.train;
  const idx cp = options.parallel.cp;
  require(world_size > 0, "world size " + format(world_size) + " must be positive");
  require(world_size % cp == 0,
          "world size " + format(world_size) + " is not a multiple of " + kv("parallel.cp", cp));
  BatchLayout layout;
  layout.world = world_size;
  layout.cp = cp;
  layout.dp = world_size / cp;
  layout.micro_batch = t.micro_batch;
  layout.global_batch = t.global_batch;
  const idx per_pass = t.micro_batch * layout.dp;  // sequences per micro-step over all replicas
  require(t.global_batch % per_pass == 0,
          kv("train.global_batch", t.global_batch) + " is not divisible by train.micro_batch * dp = " +
              format(t.micro_batch) + " * " + format(layout.dp) + " = " + format(per_pass) + " (world size " +
              format(world_size) + ", " + kv("parallel.cp", cp) + ")");
  layout.grad_accum = t.global_batch / per_pass;
  require(t.grad_accum == 0 || t.grad_accum == layout.grad_accum,
          kv("train.grad_accum", t.grad_accum) + " does not match train.global_batch / (train.micro_batch * dp) = " +
              format(t.global_batch) + " / (" + format(t.micro_batch) + " * " + format(layout.dp) + ") = " +
              format(layout.grad_accum) + " at world size " + format(world_size) + "; set it to 0 to derive it");
  require(cp == 1 || t.seq_len % (2 * cp) == 0,
          kv("train.seq_len", t.seq_len) + " is not divisible by 2 * parallel.cp = " + format(2 * cp) +
              " (each sequence is cut into 2 * cp zigzag chunks)");
  return layout;
}

}  // namespace nexus
