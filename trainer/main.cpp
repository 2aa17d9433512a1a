// `nexus`: the command users run, under mpirun or srun.
//
//   nexus train [--config FILE] [--section.key=value ...] [--resume latest|DIR|FILE]
//   nexus eval --model CHECKPOINT|EXPORT_DIR (--tokens 1,2,3 | --text TEXT) [--logits-out F.npy]
//   nexus export CHECKPOINT --out DIR [--dtype bf16|fp32]
//   nexus inspect CHECKPOINT
//   nexus generate --model CHECKPOINT|EXPORT_DIR (--prompt TEXT | --tokens IDS) --max-new-tokens N
//   nexus plan [--config FILE] [--section.key=value ...] [--device cpu|h100-80g|h200] [--memory SIZE]
//   nexus data prepare --out PREFIX [--shard-tokens N] [--separator S] FILE...
//
// Every rank runs the same command. Any rank's fatal error ends the whole job with a message
// and a non-zero exit (MPI_Abort), never a hang.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "data/prepare.h"
#include "model/memory_need.h"
#include "kernels/cpu/blas_runtime.h"
#include "parallel/communicator.h"
#include "trainer/commands.h"
#include "trainer/options.h"
#include "trainer/runtime.h"
#include "trainer/signals.h"
#include "trainer/train.h"

using namespace nexus;

namespace {

const char* kUsage =
    "Usage: nexus <command> [options]\n"
    "\n"
    "Commands:\n"
    "  train          train a model (launch with mpirun -np N or srun); --help lists every option\n"
    "  eval           loss (and logits) of a checkpoint or exported model on given tokens or text\n"
    "  export         write a checkpoint as a Hugging Face Bamba folder (config.json, safetensors)\n"
    "  inspect        print a checkpoint's step, tokens, config and every tensor's shape and norm\n"
    "  generate       continue a prompt with recurrent decoding (O(1) per token in Mamba layers)\n"
    "  plan           the memory a run needs per rank, by purpose, and the longest sequence that fits\n"
    "  data prepare   turn raw text files into llm.c token shards with the byte tokenizer\n"
    "\n"
    "Examples:\n"
    "  mpirun -np 2 nexus train --config configs/tiny.ini\n"
    "  mpirun -np 2 nexus train --config configs/tiny.ini --resume latest\n"
    "  nexus export runs/tiny/checkpoints/step_00000300.h5 --out runs/tiny/hf\n"
    "  nexus train --config configs/tiny.ini --train.steps=50 --optim.lr=3e-3\n"
    "  nexus data prepare --out data/mytext *.txt\n";

const char* kPrepareUsage =
    "Usage: nexus data prepare --out PREFIX [--shard-tokens N] [--separator TEXT] FILE...\n"
    "  Writes PREFIX_val_000000.bin (the first shard) and PREFIX_train_NNNNNN.bin (the rest):\n"
    "  llm.c uint16 shards of byte tokens, documents separated by end-of-text (token 256).\n"
    "  --shard-tokens N   tokens per shard (default 100000000)\n"
    "  --separator TEXT   also split each file into documents at TEXT (e.g. $'\\n\\n')\n";

int run_train(int argc, char** argv, const Communicator& comm) {
  const CommandLine cl = parse_command_line(argc, argv);  // argv[0] is "train"
  if (cl.help) {
    if (comm.is_root()) std::printf("%s", options_help().c_str());
    return 0;
  }
  if (comm.is_root())
    for (const std::string& note : cl.notes) std::printf("note: %s\n", note.c_str());
  apply_runtime(cl.options.runtime);
  install_stop_signals();
  watch_launcher();
  const TrainResult r = train(cl.options, comm, cl.resume);
  if (comm.is_root()) {
    std::printf("done: %lld steps", (long long)r.steps_done);
    if (!r.losses.empty()) std::printf(", final loss %.4f", r.losses.back());
    if (r.eval_accuracy >= 0) std::printf(", eval accuracy %.1f%%", 100 * r.eval_accuracy);
    std::printf("\npeak memory of rank 0: %zu bytes (VmHWM)", peak_resident_bytes());
    std::printf("\nmetrics: %s  (plot: trainer/plot_metrics.py %s)\n", r.metrics_path.c_str(),
                r.metrics_path.c_str());
  }
  return 0;
}

// argv[0] is "prepare".
int run_data_prepare(int argc, char** argv, const Communicator& comm) {
  PrepareOptions p;
  for (const CommandArg& a : split_command_args<ConfigError>(argc, argv, {"--out", "--shard-tokens", "--separator"},
                                                             "nexus data prepare: ", "")) {
    if (a.key == "--help") {
      if (comm.is_root()) std::printf("%s", kPrepareUsage);
      return 0;
    } else if (a.key == "--out") {
      p.out_prefix = a.value;
    } else if (a.key == "--shard-tokens") {
      try {
        p.shard_tokens = std::stoll(a.value);
      } catch (const std::exception&) {
        throw ConfigError("nexus data prepare: --shard-tokens " + a.value + " is not an integer");
      }
    } else if (a.key == "--separator") {
      p.document_separator = a.value;
    } else if (!a.key.empty()) {
      throw ConfigError("nexus data prepare: unknown option " + a.key + "\n" + kPrepareUsage);
    } else {
      p.inputs.push_back(a.value);
    }
  }
  if (p.out_prefix.empty() || p.inputs.empty())
    throw ConfigError(std::string("nexus data prepare: needs --out PREFIX and at least one input file\n") +
                      kPrepareUsage);
  if (!comm.is_root()) return 0;  // one writer
  for (const PreparedShard& s : prepare_text_shards(p))
    std::printf("%s  %s  %lld tokens\n", s.split.c_str(), s.path.c_str(), (long long)s.tokens);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  select_blas_core(argv);
  MpiRuntime mpi(&argc, &argv);
  const Communicator comm = Communicator::world();
  const std::string command = argc > 1 ? argv[1] : "";
  try {
    if (command == "train") return run_train(argc - 1, argv + 1, comm);
    // Single-process commands: only the root rank acts when launched under mpirun.
    if (command == "eval" || command == "export" || command == "inspect" || command == "generate" ||
        command == "plan") {
      if (!comm.is_root()) return 0;
      if (command == "eval") return command_eval(argc - 1, argv + 1);
      if (command == "export") return command_export(argc - 1, argv + 1);
      if (command == "generate") return command_generate(argc - 1, argv + 1);
      if (command == "plan") return command_plan(argc - 1, argv + 1);
      return command_inspect(argc - 1, argv + 1);
    }
    if (command == "data" && argc > 2 && std::strcmp(argv[2], "prepare") == 0)
      return run_data_prepare(argc - 2, argv + 2, comm);
    if (command == "--help" || command == "-h" || command == "help") {
      if (comm.is_root()) std::printf("%s", kUsage);
      return 0;
    }
    if (comm.is_root())
      std::fprintf(stderr, "nexus: unknown command '%s'\n\n%s", command.c_str(), kUsage);
    return 2;
  } catch (const ConfigError& e) {
    // Configuration errors are identical on every rank: report once, exit cleanly everywhere.
    if (comm.is_root()) std::fprintf(stderr, "nexus: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    comm.abort(e.what(), 1);
  }
}
