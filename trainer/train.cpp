#include "trainer/train.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <type_traits>

#include "data/mqar.h"
#include "data/token_source.h"
#include "kernels/cpu/blas_runtime.h"
#include "kernels/ops.h"
#include "kernels/stream_timer.h"
#include "model/checked_math.h"
#include "model/memory_need.h"
#include "model/attention_impl.h"
#include "model/model.h"
#include "model/params.h"
#include "optim/adamw.h"
#include "optim/distributed_adamw.h"
#include "optim/delta_reduction.h"
#include "optim/schedule.h"
#include "parallel/mesh.h"
#include "trainer/checkpoint_cadence.h"
#include "trainer/eval_cadence.h"
#include "trainer/local_batch.h"
#include "trainer/metrics.h"
#include "trainer/plan.h"
#include "trainer/runtime.h"
#include "trainer/signals.h"

namespace nexus {

std::unique_ptr<SequenceSource> make_sequences(const RunOptions& o, bool eval) {
  const DataOptions& d = o.data;
  if (d.source == "mqar") {
    MqarConfig m;
    m.vocab_size = o.model.vocab_size;
    m.seq_len = o.train.seq_len;
    m.num_pairs = d.mqar_pairs;
    m.num_queries = d.mqar_queries;
    m.seed = o.train.seed;
    if (!eval) return std::make_unique<MqarSequences>(m, MqarSplit::train);
    return std::make_unique<MqarSequences>(m, MqarSplit::eval, std::max<idx>(1, o.train.eval_batches) *
                                                                   o.train.global_batch);
  }
  if (d.source == "shards" || d.source == "hdf5") {
    const std::string& spec = eval ? d.val_path : d.path;
    if (spec.empty()) {
      if (eval) return nullptr;
      throw OptionsError("data.path is empty: data.source = " + d.source + " needs token files (a path or glob)");
    }
    return std::make_unique<TokenSequences>(TokenSource::open(spec, o.model.vocab_size), o.train.seq_len);
  }
  throw OptionsError("data.source = " + d.source +
                     " is not readable by the trainer; expected mqar, shards or hdf5 (turn raw text into shards "
                     "with `nexus data prepare`)");
}

namespace {

// Refuses, on every rank, a run whose model, optimizer and activations do not fit in the memory
// this machine has left, before any of it is allocated. Every rank on a machine allocates the same.
void require_run_fits(const RunOptions& o, const BatchLayout& layout, const Communicator& comm) {
  MemoryNeed need = run_memory_need(o, layout);  // what `nexus plan` prints
  // While a checkpoint is saved or loaded, host memory holds the staged optimizer state (and on a
  // GPU the fp32 weights). Counted for this rank as it stages; the check multiplies by the
  // processes on the machine, so on the root's machine it is conservative by the others' share.
  const std::size_t staging = checkpoint_host_staging(o, layout, comm.is_root());
  const Exec ex = runtime_exec(o.runtime);
  std::string shortfall;
  if (ex.device == Device::cpu) {
    need.other = saturating_add(need.other, staging);
    shortfall = memory_shortfall("this run", need, comm.local_size(), available_memory());
  } else {
    // The model, optimizer and activations live in the rank's own GPU memory; the staging in the
    // machine's host memory, shared by its ranks.
    shortfall = memory_shortfall("this run", need, 1, device_memory_available(ex));
    MemoryNeed host;
    host.other = staging;
    if (shortfall.empty())
      shortfall = memory_shortfall("checkpoint staging in host memory", host, comm.local_size(), available_memory());
  }
  if (comm.all(shortfall.empty())) return;
  // Machines may differ: a rank other than the root reports its own shortfall itself.
  if (!shortfall.empty() && !comm.is_root()) std::fprintf(stderr, "nexus: rank %d: %s\n", comm.rank(), shortfall.c_str());
  throw OptionsError(shortfall.empty() ? "the memory check failed on another rank (see its message)" : shortfall);
}

// One optimizer step. evaluate + differentiate: every micro-batch adds its summed-loss gradient to
// the deltas; integrate (DistributedAdamW, over the world's data plane): sum, normalise by the
// global target count, clip, AdamW -- unless the loss or the gradient norm is not finite (the
// step is then skipped).
struct StepOutcome {
  double loss = 0, grad_norm = 0;
  double comm_wait_s = 0;  // several ranks: the delta reduction's exposed time
  bool applied = false;
};
template <typename T>
StepOutcome train_step(Model<T>& model, DistributedAdamW& optimizer, DeltaReduction* reduction,
                       StreamTimer& comm_timer, DataLoader& data, LocalBatch& local, Batch& batch, idx grad_accum,
                       const Communicator& control, double grad_clip, double lr, idx step) {
  model.zero_deltas();
  double totals[2] = {0, 0};  // loss sum, target count over this rank's micro-batches
  if (reduction) reduction->begin();
  for (idx micro = 0; micro < grad_accum; ++micro) {
    data.next(batch);
    local.take(batch);
    const LossSum l = model.forward(local.tokens(), local.targets());
    // The last micro-batch's backward finishes each layer's deltas: its buckets go out at once.
    if (reduction && micro + 1 == grad_accum)
      model.backward(1.0, [reduction](idx offset, idx count) { reduction->ready(offset, count); });
    else
      model.backward(1.0);
    totals[0] += l.sum;
    totals[1] += double(l.count);
  }
  control.allreduce_sum(totals, 2);  // host values: the control plane (the data plane may be NCCL's)
  StepOutcome out;
  // The delta reduction's exposed time: the wait for the buckets still in flight after the
  // backward, or for the whole reduction without overlap. Timed on the compute stream: on a GPU
  // the host only enqueues the wait (NCCL plane), and what is exposed is the time the stream
  // stalls until the reduction's last bucket has landed.
  failpoint("delta_reduction");  // a rank that stops here leaves its peers waiting in the reduction
  comm_timer.start();
  if (reduction) reduction->finish();
  comm_timer.stop();
  if (totals[1] <= 0) throw std::runtime_error("step " + std::to_string(step) + ": the global batch has no targets");
  out.loss = totals[0] / totals[1];
  const DistributedAdamW::Outcome integrated = optimizer.step(model.params(), model.deltas(), float(1.0 / totals[1]),
                                                              out.loss, grad_clip, lr, reduction != nullptr);
  out.grad_norm = integrated.grad_norm;
  out.applied = integrated.applied;
  out.comm_wait_s = comm_timer.seconds();  // after the step's norm reached the host: no added stall
  return out;
}

template <typename T>
TrainResult train_model(const RunOptions& o, const Communicator& comm, const std::string& resume,
                        std::vector<float>* final_weights, const Mesh& mesh, const BatchLayout& layout, MetricsLog& log,
                        DataLoader& train_data, EvalCadence& evals, const Exec& ex);

}  // namespace

TrainResult train(const RunOptions& o, const Communicator& comm, const std::string& resume,
                  std::vector<float>* final_weights) {
  const BatchLayout layout = batch_layout(o, comm.size());
  const TrainOptions& t = o.train;
  // A rank that hangs (rather than dies) must not leave the others waiting in MPI forever.
  if (comm.size() > 1 && o.parallel.mpi_timeout_s > 0)
    Communicator::watch_blocking_calls(std::chrono::seconds(o.parallel.mpi_timeout_s), comm.rank());
  // cp-inner mesh: ranks [d*cp, (d+1)*cp) share each sequence (neighbours, so one node), and
  // data-parallel replica d reads its own rows of every global batch.
  // A GPU run first makes its node-local GPU current (before any CUDA allocation or stream), then
  // builds its data planes on it: NCCL, or device buffers staged through host memory.
  const Exec ex = runtime_exec(o.runtime);
  const DataTransport transport = ex.device == Device::cpu
                                      ? choose_transport(o.parallel.transport, Device::cpu, nccl_built(), GpuPlacement{})
                                      : select_local_gpu(comm, o.parallel.transport);
  constexpr std::size_t kStagingBytes = std::size_t(64) << 20;  // the staged plane's host pieces
  const Mesh mesh(comm, layout.cp, transport, ex, kStagingBytes, std::chrono::seconds(o.parallel.nccl_timeout_s));
  const idx dp_rank = mesh.dp_rank();
  MetricsLog log(t.out_dir, comm.is_root());
  if (comm.is_root()) {
    const std::string ini = to_ini(o);
    std::printf("# nexus train: %d rank(s), dp %lld x cp %lld, micro_batch %lld x grad_accum %lld = global_batch %lld\n%s\n",
                comm.size(), (long long)layout.dp, (long long)layout.cp, (long long)layout.micro_batch,
                (long long)layout.grad_accum, (long long)layout.global_batch, ini.c_str());
    std::ofstream(std::filesystem::path(t.out_dir) / "config.ini") << ini;
    if (ex.device != Device::cpu) std::printf("# device: %s, data plane: %s\n", o.runtime.device.c_str(), transport_name(transport));
  }
  failpoint("train_setup");
  require_run_fits(o, layout, comm);

  // One loader batch is one micro-batch on every rank: the grad_accum successive micro-batches of
  // all ranks together are exactly the global batch a single rank would read in one go.
  DataLoader train_data(make_sequences(o, false), layout.micro_batch * layout.dp, dp_rank, layout.dp);
  EvalCadence evals(o, layout.micro_batch * layout.dp, dp_rank, layout.dp);

  return o.runtime.dtype == "bf16"
             ? train_model<bf16>(o, comm, resume, final_weights, mesh, layout, log, train_data, evals, ex)
             : train_model<float>(o, comm, resume, final_weights, mesh, layout, log, train_data, evals, ex);
}

namespace {

// The run itself on a model of compute type T (float; bf16 on a GPU, over fp32 master weights in
// the optimizer), from the weights' draw (or the checkpoint) to the last step.
template <typename T>
TrainResult train_model(const RunOptions& o, const Communicator& comm, const std::string& resume,
                        std::vector<float>* final_weights, const Mesh& mesh, const BatchLayout& layout, MetricsLog& log,
                        DataLoader& train_data, EvalCadence& evals, const Exec& ex) {
  const TrainOptions& t = o.train;
  const idx local_len = t.seq_len / layout.cp;
  // Every rank measures its GEMM peak at the same time, so the sum is the job's real peak; before
  // the model exists, so that the measurement's buffers (on a GPU 384 MiB) never compete with it.
  const double peak_gflops = comm.sum(gemm_peak_gflops(ex));
  Model<T> model(o.model, BatchShape{layout.micro_batch, local_len}, &mesh.cp_data(), ex);
  DistributedAdamW optimizer(model.num_params(), o.adamw(), decay_ranges(model.table()), mesh.world_data(),
                             int(o.parallel.zero), model.exec());
  // Same seed on every rank: identical weights without a broadcast. bf16: the fp32 draw is the
  // master, the model computes with its rounding.
  if constexpr (std::is_same_v<T, bf16>) {
    std::vector<float> master(std::size_t(model.num_params()));
    init_parameters(master.data(), model.table(), o.model, t.seed);
    model.set_weights(master.data());
    optimizer.set_master(master.data());
  } else {
    model.init(t.seed);
  }
  if (comm.is_root() && ex.device != Device::cpu)  // which attention each layer runs (model.attention_impl)
    std::printf("%s", attention_impl_report(o.model, ex.device, std::is_same_v<T, bf16>, layout.micro_batch, local_len,
                                            layout.cp)
                          .c_str());
  const ScheduleConfig schedule = o.schedule_config();
  const double train_flops_per_token = 3.0 * model.forward_flops_per_token();
  if (comm.is_root())
    log.note("model: " + std::to_string(model.num_params()) + " parameters, activation arena " +
             std::to_string(model.arena_bytes() >> 20) + " MiB per rank, GEMM peak " +
             std::to_string(int(peak_gflops)) + " GFLOP/s (all ranks)");
  if (comm.is_root()) {
    // The optimizer state each rank holds (the last rank's shard is the largest).
    const std::size_t moments = 2 * std::size_t(largest_flat_shard(model.num_params(),
                                                                   optimizer.sharded() ? comm.size() : 1)) * sizeof(float);
    log.note("AdamW moments: " + std::to_string(moments >> 10) + " KiB per rank" +
             (optimizer.sharded() ? " (parallel.zero = 1: sharded over " + std::to_string(comm.size()) + " ranks)"
              : o.parallel.zero == 1 ? " (parallel.zero = 1 on one rank: nothing to shard, as zero = 0)"
                                     : ""));
  }

  // Several ranks: the deltas are all-reduced (zero 0) or reduce-scattered into the optimizer's
  // shard (zero 1) in buckets during the backward, or in one go after it (overlap_kib 0).
  StreamTimer comm_timer(ex);  // the exposed reduction time of each step
  std::unique_ptr<DeltaReduction> reduction;
  if (comm.size() > 1) {
    const std::size_t bucket_bytes = std::size_t(o.parallel.overlap_kib) << 10;
    reduction = optimizer.sharded()
                  ? std::make_unique<DeltaReduction>(mesh.world_data(), model.deltas(), model.num_params(),
                                                               bucket_bytes, optimizer.shard(), optimizer.shard_sums())
                  : std::make_unique<DeltaReduction>(mesh.world_data(), model.deltas(), model.num_params(),
                                                               bucket_bytes);
  }

  RunState st;
  CheckpointCadence checkpoints(o, comm, log);
  if (!resume.empty()) checkpoints.restore(resume, st, model, optimizer, train_data);

  // Setup is over: a stop signal from here on finishes the step and saves.
  defer_stop_signals_to_step_boundaries();
  log.start_at(st.step);
  TrainResult result;
  result.metrics_path = log.path();
  result.first_step = st.step;
  result.steps_done = st.step;
  result.bad_steps = st.bad_steps;
  Batch batch;
  LocalBatch local(layout.cp, mesh.cp_rank());
  idx bad_in_a_row = 0;
  const idx n = model.num_params();
  // On a GPU an error must end the job before this scope unwinds: unwinding frees device memory
  // (cudaFree waits for the whole GPU) and destroys transfers in flight, and either can wait on an
  // NCCL kernel whose peer never comes, so the job would end only at the watchdog's timeout, with
  // its line instead of this error. Configuration errors are the same on every rank (main reports
  // them once and every rank unwinds together).
  try {
    for (idx step = st.step; step < t.steps; ++step) {
      // Agreeing on the stop costs one tiny all-reduce, and keeps ranks from diverging on it.
      if (!comm.all(stop_signal() == 0)) {
        result.stop_signal = int(comm.max(double(stop_signal())));
        log.note("stop requested by signal " + std::to_string(result.stop_signal) + ": stopping after step " +
                 std::to_string(step));
        // A preempted run keeps its progress whatever checkpoint.every says.
        if (checkpoints.unsaved(st)) result.last_checkpoint = checkpoints.save(st, model, optimizer, train_data);
        break;
      }
      const auto start = std::chrono::steady_clock::now();
      const double lr = learning_rate(schedule, step);
      const StepOutcome out = train_step(model, optimizer, reduction.get(), comm_timer, train_data, local, batch,
                                         layout.grad_accum, mesh.world(), o.optim.grad_clip, lr, step);
      const double loss = out.loss, grad_norm = out.grad_norm;
      if (out.applied) {
        bad_in_a_row = 0;
      } else {
        ++result.bad_steps;
        ++st.bad_steps;
        log.note("step " + std::to_string(step + 1) + ": non-finite loss " + std::to_string(loss) +
                 " or gradient norm " + std::to_string(grad_norm) + ", step skipped");
        if (++bad_in_a_row >= t.max_bad_steps)
          throw std::runtime_error(std::to_string(bad_in_a_row) + " non-finite steps in a row (train.max_bad_steps = " +
                                   std::to_string(t.max_bad_steps) + "); lower optim.lr or check the data");
      }
      result.losses.push_back(loss);
      result.steps_done = step + 1;
      st.step = step + 1;
      st.tokens_seen += layout.global_batch * t.seq_len;
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

      const bool exiting = t.exit_after > 0 && step + 1 - result.first_step >= t.exit_after;
      const bool last = step + 1 == t.steps || exiting;
      if (t.log_every > 0 && ((step + 1) % t.log_every == 0 || step == 0 || last)) {
        StepMetrics m;
        m.step = step + 1;
        m.total_steps = t.steps;
        m.loss = loss;
        m.lr = lr;
        m.grad_norm = grad_norm;
        m.ms = 1e3 * seconds;
        m.tokens_per_s = double(layout.global_batch * t.seq_len) / seconds;
        m.mfu = train_flops_per_token * m.tokens_per_s / (peak_gflops * 1e9);
        m.peak_mem_mib = comm.max(peak_rss_mib());
        m.peak_device_mib = comm.max(device_peak_mib(ex));
        m.comm_wait_ms = comm.max(1e3 * out.comm_wait_s);
        m.bad_steps = result.bad_steps;
        log.step(m);
      }
      if (evals.due(step + 1, last)) {
        const Evaluation e = evals.run(model, local, comm);
        result.eval_loss = e.loss;
        result.eval_accuracy = e.accuracy;
        log.eval(step + 1, e.loss, e.accuracy);
      }
      if (checkpoints.due(step + 1, last, exiting))
        result.last_checkpoint = checkpoints.save(st, model, optimizer, train_data);
      if (exiting) {
        log.note("train.exit_after = " + std::to_string(t.exit_after) + " steps reached: stopping at step " +
                 std::to_string(step + 1) + " of " + std::to_string(t.steps));
        break;
      }
    }
  } catch (const ConfigError&) {
    throw;
  } catch (const std::exception& e) {
    if (ex.device != Device::cpu) comm.abort(e.what(), 1);
    throw;
  }
  if (final_weights) {  // the compute weights (bf16: the master's rounding), widened to fp32
    const HostMirror<const T> weights(model.exec(), model.params(), n);
    final_weights->assign(std::size_t(n), 0.0f);
    for (idx i = 0; i < n; ++i) (*final_weights)[std::size_t(i)] = float(weights.data()[i]);
  }
  return result;
}

}  // namespace

}  // namespace nexus
