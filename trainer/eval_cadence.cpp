#include "trainer/eval_cadence.h"

#include <type_traits>
#include <vector>

#include <algorithm>

#include "data/mqar.h"
#include "kernels/device_memory.h"
#include "trainer/train.h"

namespace nexus {

EvalCadence::EvalCadence(const RunOptions& o, idx global_micro, idx dp_rank, idx dp)
    : every_(o.train.eval_every), score_(o.data.source == "mqar") {
  std::unique_ptr<SequenceSource> source = make_sequences(o, true);
  if (!source || every_ <= 0) return;
  batches_ = std::min<idx>(o.train.eval_batches, source->num_sequences() / global_micro);
  if (batches_ > 0) data_ = std::make_unique<DataLoader>(std::move(source), global_micro, dp_rank, dp);
}

template <typename T>
Evaluation EvalCadence::run(Model<T>& model, LocalBatch& local, const Communicator& comm) {
  DataLoader& loader = *data_;
  loader.reset();
  Batch batch;
  double totals[4] = {0, 0, 0, 0};  // loss sum, target count, correct answers, answers
  for (idx i = 0; i < batches_; ++i) {
    loader.next(batch);
    local.take(batch);
    const LossSum l = model.forward(local.tokens(), local.targets());
    totals[0] += l.sum;
    totals[1] += double(l.count);
    if (score_) {
      const idx N = model.shape().B * model.shape().T, V = model.config().vocab_size;
      const HostMirror<const T> logits(model.exec(), model.logits(), N * V);
      const float* scored = nullptr;
      std::vector<float> widened;
      if constexpr (std::is_same_v<T, float>) {
        scored = logits.data();
      } else {
        widened.assign(std::size_t(N * V), 0.0f);
        for (idx j = 0; j < N * V; ++j) widened[std::size_t(j)] = float(logits.data()[j]);
        scored = widened.data();
      }
      const AnswerScore s = score_answer_logits(scored, V, local.targets(), N);
      totals[2] += double(s.correct);
      totals[3] += double(s.total);
    }
  }
  comm.allreduce_sum(totals, 4);
  Evaluation e;
  e.loss = totals[1] > 0 ? totals[0] / totals[1] : 0.0;
  if (score_ && totals[3] > 0) e.accuracy = totals[2] / totals[3];
  return e;
}

template Evaluation EvalCadence::run(Model<float>&, LocalBatch&, const Communicator&);
template Evaluation EvalCadence::run(Model<bf16>&, LocalBatch&, const Communicator&);

}  // namespace nexus
