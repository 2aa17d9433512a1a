// The configuration of a `nexus train` run: INI files and command-line overrides read by
// Boost.Program_options into plain structs.
//
//   [model]            <=>  --model.d_model=512  or  --model.d_model 512
//   d_model = 256
//
// The command line wins over the file (`--config FILE`, or the file as the one positional
// argument). Unknown keys, malformed values and impossible combinations throw OptionsError with
// a message naming the key, the value and (for file keys) the file.
//
// Batch rule: train.global_batch (sequences per optimizer step over all ranks) and
// train.micro_batch (sequences per rank per forward/backward) are given; with dp = world / cp
// data-parallel replicas, grad_accum = global_batch / (micro_batch * dp) micro-batches per step.
// train.grad_accum = 0 (the default) derives it; a nonzero value is a check that the run has the
// batch layout the config was written for. See batch_layout().
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"
#include "optim/adamw.h"
#include "optim/schedule.h"

namespace nexus {

// Every configuration error of the command (a ConfigError, so ModelConfig's errors and these are
// caught alike); what() is the full message for the user.
struct OptionsError : ConfigError {
  using ConfigError::ConfigError;
};

// One section per component, one job per section (the INI section is the struct's name).

// [train] the loop: how long, what batch, how often to evaluate and log.
struct TrainOptions {
  idx steps = 100;
  idx global_batch = 8;  // sequences per optimizer step, all ranks together
  idx micro_batch = 2;   // sequences per rank per forward/backward
  idx grad_accum = 0;    // 0: derived (see above); otherwise checked
  idx seq_len = 256;
  std::uint64_t seed = 1234;
  idx max_bad_steps = 5;  // non-finite steps skipped in a row before the run stops
  idx eval_every = 50;    // 0: never
  idx eval_batches = 4;
  idx log_every = 10;
  std::string out_dir = "runs/nexus";  // metrics and logs
  idx exit_after = 0;                  // stop after this many steps of this run (0: never)
  std::string recompute = "none";      // none | attention | mamba | mlp | all | a list (model/recompute.h)
  bool operator==(const TrainOptions&) const = default;
};

// [optim] AdamW and clipping.
struct OptimOptions {
  double lr = 1e-3;  // peak
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
  double grad_clip = 1.0;  // max global norm; 0 disables clipping
  bool operator==(const OptimOptions&) const = default;
};

// [schedule] the learning rate over the steps (peak: optim.lr).
struct ScheduleOptions {
  std::string name = "cosine";  // cosine | constant | wsd
  double min_lr = 1e-4;
  idx warmup_steps = 10;
  double wsd_decay_fraction = 0.2;
  bool operator==(const ScheduleOptions&) const = default;
};

// [checkpoint] when and where the integrated state is written.
struct CheckpointOptions {
  idx every = 100;  // 0: never
  std::string dir;  // empty in a file: <train.out_dir>/checkpoints
  idx keep = 3;     // 0: keep all
  bool operator==(const CheckpointOptions&) const = default;
};

// [runtime] where the run computes.
struct RuntimeOptions {
  std::string device = "cpu";  // cpu | cuda
  std::string dtype = "fp32";  // fp32 | bf16 (activations and compute weights; bf16 needs cuda)
  idx threads = 0;             // OpenMP threads per rank; 0: OMP_NUM_THREADS or all cores
  std::string memory_limit;    // caps the memory the run may take per machine (parse_bytes); empty: none
  bool operator==(const RuntimeOptions&) const = default;
};

struct DataOptions {
  std::string source = "mqar";  // mqar | shards | hdf5
  std::string path;             // file, directory or glob; unused by mqar
  idx mqar_pairs = 16;
  idx mqar_queries = 16;
  std::string val_path;  // empty: no held-out file (mqar draws validation from its own stream)
  bool operator==(const DataOptions&) const = default;
};

struct ParallelOptions {
  idx cp = 1;  // context-parallel group size; dp = world / cp
  idx zero = 0;  // 0: every rank holds the whole AdamW state; 1: ZeRO-1, the moments sharded over the ranks
  // The data plane (parallel/transport.h): auto | mpi | staged | nccl. auto: mpi on the CPU; on a GPU
  // nccl when built and every rank has its own GPU, else staged (host copies around MPI).
  std::string transport = "auto";
  // More than one rank: the delta reduction (zero 0 all-reduce, zero 1 reduce-scatter to the
  // shards) runs in buckets of this many KiB while the last micro-batch's backward still runs
  // (optim/delta_reduction.h); 0: after the backward.
  // 25 MiB, PyTorch DDP's bucket_cap_mb.
  idx overlap_kib = 25 * 1024;
  // NCCL data plane: how long one operation may stay unfinished before its watchdog ends the run
  // (parallel/nccl_data_plane.h); PyTorch's default NCCL timeout.
  idx nccl_timeout_s = 300;
  // Several ranks: how long one blocking MPI call (the control plane, the MPI data plane) may wait
  // before this rank ends the run, naming the call (Communicator::watch_blocking_calls); 0: never.
  // Long enough for the root's largest checkpoint write, which the others wait out in one call;
  // gloo's default timeout in PyTorch.
  idx mpi_timeout_s = 1800;
  bool operator==(const ParallelOptions&) const = default;
};

struct RunOptions {
  ModelConfig model;
  DataOptions data;
  TrainOptions train;
  OptimOptions optim;
  ScheduleOptions schedule;
  CheckpointOptions checkpoint;
  ParallelOptions parallel;
  RuntimeOptions runtime;

  ScheduleConfig schedule_config() const;
  AdamWHyper adamw() const;
};

struct CommandLine {
  RunOptions options;
  bool help = false;        // --help / -h: print options_help() and exit 0
  std::string config_file;  // empty when none was given
  std::string resume;       // --resume: "latest", a checkpoint directory or file; empty: fresh start
  std::vector<std::string> notes;  // e.g. a key given under its former name, for the run's log
};

// Reads `args` (the arguments after the subcommand, e.g. {"--config", "tiny.ini",
// "--train.steps=5"}). Everything independent of the world size is validated here, including
// ModelConfig::validate(). With --help the options are not validated.
CommandLine parse_command_line(const std::vector<std::string>& args);
// argv-style: argv[0] is skipped (pass `argc - 1, argv + 1` to skip the program name and keep
// the subcommand as argv[0]).
CommandLine parse_command_line(int argc, const char* const argv[]);

// Parses INI text such as to_ini()'s (e.g. the config stored in a checkpoint) and validates it.
// `origin` names the text in error messages. Keys under their former names (before the options
// were grouped per component, e.g. train.lr for optim.lr) are read as the new ones, so configs
// stored in older checkpoints still load.
RunOptions parse_ini(const std::string& text, const std::string& origin = "<config text>");

// Every key with its resolved value, grouped by section; parse_ini(to_ini(o)) reproduces o.
std::string to_ini(const RunOptions& options);

// The option reference, every key with its default, e.g. for `nexus train --help`.
std::string options_help(const std::string& usage = "Usage: nexus train [--config FILE] [--section.key=value ...]");

// How the global batch is split at a world size. Throws OptionsError naming the values when
// world % cp != 0, global_batch % (micro_batch * dp) != 0, a nonzero grad_accum disagrees, or
// (cp > 1) seq_len % (2 * cp) != 0.
struct BatchLayout {
  idx world = 1, dp = 1, cp = 1;
  idx micro_batch = 1, grad_accum = 1, global_batch = 1;
};
BatchLayout batch_layout(const RunOptions& options, idx world_size);

}  // namespace nexus
