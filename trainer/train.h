// The training loop: evaluate (forward) -> differentiate (backward, deltas accumulate over
// micro-batches) -> integrate (all-reduce, clip, AdamW), with periodic evaluation and logging.
#pragma once

#include <memory>
#include <vector>

#include "data/loader.h"
#include "parallel/communicator.h"
#include "trainer/options.h"

namespace nexus {

struct TrainResult {
  idx first_step = 0;             // 0, or the step a resumed run started from
  idx steps_done = 0;             // the run's step count when it stopped (skipped steps included)
  std::vector<double> losses;     // global mean training loss of each step
  double eval_loss = -1;          // last evaluation (-1: none ran)
  double eval_accuracy = -1;      // last evaluation's answer accuracy (-1: task has none)
  idx bad_steps = 0;              // skipped for a non-finite loss or gradient norm
  int stop_signal = 0;            // the signal that stopped the run early, or 0
  std::string metrics_path;       // root rank only
  std::string last_checkpoint;    // root rank only; empty when none was written
};

// The sequences a run reads, built from the [data] options: split 0 = train, 1 = eval (null when
// the data has no eval split). Errors name the option and the file.
std::unique_ptr<SequenceSource> make_sequences(const RunOptions& options, bool eval);

// Runs until options.train.steps steps are done, on `comm` (all of its ranks call this).
// `resume` ("latest", a checkpoint directory or file; empty for a fresh start) restores the
// weights, optimizer state, step, token count and data position, so the run continues exactly as
// if it had never stopped. Checkpoints are written every checkpoint.every steps and at the end
// (unless ckpt_every is 0), and always when SIGTERM or SIGUSR1 arrives on any rank or
// train.exit_after is reached (the run then stops at the step boundary). Throws on
// configuration, data or checkpoint errors before any step, and std::runtime_error after
// max_bad_steps non-finite steps in a row.
// `final_weights`, when given, receives a host copy of the final weights (identical on every rank);
// nothing is copied otherwise (a 7B model's weights are 28 GB).
TrainResult train(const RunOptions& options, const Communicator& comm, const std::string& resume = "",
                  std::vector<float>* final_weights = nullptr);

}  // namespace nexus
