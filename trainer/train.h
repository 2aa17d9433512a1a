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
  idx steps_done = 0;             // optimizer steps taken or skipped in this run
  std::vector<double> losses;     // global mean training loss of each step
  double eval_loss = -1;          // last evaluation (-1: none ran)
  double eval_accuracy = -1;      // last evaluation's answer accuracy (-1: task has none)
  idx bad_steps = 0;              // skipped for a non-finite loss or gradient norm
  int stop_signal = 0;            // the signal that stopped the run early, or 0
  std::vector<float> params;      // final weights (identical on every rank)
  std::string metrics_path;       // root rank only
};

// The sequences a run reads, built from the [data] options: split 0 = train, 1 = eval (null when
// the data has no eval split). Errors name the option and the file.
std::unique_ptr<SequenceSource> make_sequences(const RunOptions& options, bool eval);

// Runs options.train.steps steps on `comm` (all of its ranks call this). Stops early, at a step
// boundary, when SIGTERM or SIGUSR1 arrives on any rank. Throws on configuration or data errors
// before any step, and std::runtime_error after max_bad_steps non-finite steps in a row.
TrainResult train(const RunOptions& options, const Communicator& comm);

}  // namespace nexus
