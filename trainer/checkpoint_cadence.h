// The checkpoint cadence of a run: restoring at the start (--resume), saving every
// checkpoint.every steps, after the last step, at train.exit_after, and when a stop signal ends
// the run with progress not yet on disk. Rank 0 reads and writes; every rank learns the outcome.
#pragma once

#include <cstdint>
#include <string>

#include "data/loader.h"
#include "model/model.h"
#include "optim/distributed_adamw.h"
#include "parallel/communicator.h"
#include "trainer/metrics.h"
#include "trainer/options.h"

namespace nexus {

// The state a checkpoint captures besides the tensors, identical on every rank.
struct RunState {
  idx step = 0;
  std::int64_t tokens_seen = 0;
  idx bad_steps = 0;
};

class CheckpointCadence {
 public:
  // Borrows all three for its lifetime.
  CheckpointCadence(const RunOptions& o, const Communicator& comm, MetricsLog& log) : o_(o), comm_(comm), log_(log) {}

  // `resume` ("latest", a checkpoint directory or file) into the weights, moments, run state and
  // data position; "latest" with nothing there starts fresh (with a note). Throws CheckpointError
  // (on every rank, with rank 0's message) or OptionsError for an explicit path with nothing there.
  // The moments are whole in the file; under ZeRO-1 each rank then takes its shard from rank 0.
  // T = bf16: the file's fp32 weights become the optimizer's master (set_master) and the model's
  // bf16 weights their rounding. Instantiated for float and bf16.
  template <typename T>
  void restore(const std::string& resume, RunState& st, Model<T>& model, DistributedAdamW& opt, DataLoader& data);

  // After `steps_done` steps: every checkpoint.every steps and after the last (when checkpoints
  // are on), and always when the run exits at train.exit_after.
  bool due(idx steps_done, bool last, bool exiting) const {
    return (o_.checkpoint.every > 0 && (steps_done % o_.checkpoint.every == 0 || last)) || exiting;
  }
  // Whether `st` has steps the newest checkpoint on disk does not (a stopping run saves them
  // whatever checkpoint.every says).
  bool unsaved(const RunState& st) const { return st.step > saved_step_; }

  // Writes the checkpoint of `st`; returns its path on rank 0 (empty elsewhere). A failed save
  // throws CheckpointError on every rank, so the job stops with rank 0's message instead of other
  // ranks training on. Under ZeRO-1 the moment shards are gathered to rank 0 first (a transient
  // full-size staging there, see DistributedAdamW). Collective.
  // T = bf16: the weights saved are the optimizer's fp32 master weights (gathered like the
  // moments), not the bf16 compute copy.
  template <typename T>
  std::string save(const RunState& st, const Model<T>& model, DistributedAdamW& opt, const DataLoader& data);

 private:
  const RunOptions& o_;
  const Communicator& comm_;
  MetricsLog& log_;
  idx saved_step_ = 0;  // the step of the newest checkpoint on disk (or the run's start)
};

}  // namespace nexus
