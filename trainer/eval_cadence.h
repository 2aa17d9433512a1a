// The evaluation cadence of a run: every train.eval_every steps and after the last, the mean loss
// (and, for MQAR, the answer accuracy) over the eval split, all ranks together.
#pragma once

#include <memory>

#include "data/loader.h"
#include "model/model.h"
#include "parallel/communicator.h"
#include "trainer/local_batch.h"
#include "trainer/options.h"

namespace nexus {

struct Evaluation {
  double loss = 0;
  double accuracy = -1;  // -1: the task has no answers to score
};

class EvalCadence {
 public:
  // The eval split of `o`'s data, read in batches of `global_micro` sequences (all dp replicas)
  // of which replica `dp_rank` of `dp` takes its rows; at most train.eval_batches of them. No eval
  // split, train.eval_every = 0 or a split smaller than one batch: the cadence never fires.
  EvalCadence(const RunOptions& o, idx global_micro, idx dp_rank, idx dp);

  // After `steps_done` steps (the last of the run when `last`).
  bool due(idx steps_done, bool last) const {
    return data_ && (steps_done % every_ == 0 || last);
  }
  // T: float or bf16 (its logits are widened to fp32 on the host for answer scoring).
  template <typename T>
  Evaluation run(Model<T>& model, LocalBatch& local, const Communicator& comm);

 private:
  std::unique_ptr<DataLoader> data_;  // null when the cadence never fires
  idx every_ = 0, batches_ = 0;
  bool score_ = false;  // MQAR: score the answers
};

}  // namespace nexus
