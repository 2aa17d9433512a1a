#include "trainer/checkpoint_cadence.h"

#include <optional>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "kernels/device_memory.h"
#include "trainer/checkpoint.h"
#include "trainer/signals.h"

namespace nexus {

template <typename T>
std::string CheckpointCadence::save(const RunState& st, const Model<T>& model, DistributedAdamW& opt,
                                    const DataLoader& data) {
  constexpr bool master_weights = !std::is_same_v<T, float>;  // bf16: the optimizer's master is saved
  if (master_weights && !opt.has_master())
    throw std::logic_error("checkpoint: a bf16 model's optimizer has no master weights (set_master)");
  const RunOptions& o = o_;
  const Communicator& comm = comm_;
  std::string path, error;
  opt.gather_moments(0);
  if (comm.is_root()) {
    // Host memory: the optimizer's own buffers (CPU, zero 0) or the staging.
    const DistributedAdamW::FullMoments moments = opt.full_moments(true);
    CheckpointMeta meta;
    meta.step = st.step;
    meta.tokens_seen = st.tokens_seen;
    meta.config_ini = to_ini(o);
    meta.loader_position = data.position().to_string();
    meta.seed = o.train.seed;
    meta.optimizer_steps = opt.steps();
    meta.bad_steps = st.bad_steps;
    try {
      // The checkpoint is written from host memory: the buffers themselves on the CPU.
      const Exec& ex = model.exec();
      const idx n = model.num_params();
      const float* weights = moments.master;  // bf16: the master, gathered with the moments
      std::optional<HostMirror<const float>> params;
      if constexpr (!master_weights) weights = params.emplace(ex, model.params(), n).data();
      path = save_checkpoint(o.checkpoint.dir, meta, model.table(), weights, moments.exp_avg,
                             moments.exp_avg_sq, o.checkpoint.keep, [] { return !launcher_gone(); });
      log_.note("checkpoint: " + path);
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  opt.release_full_moments();
  if (!comm.all(error.empty())) throw CheckpointError(comm.is_root() ? error : "checkpoint save failed on rank 0");
  saved_step_ = st.step;
  return path;
}

template <typename T>
void CheckpointCadence::restore(const std::string& resume, RunState& st, Model<T>& model, DistributedAdamW& opt,
                                DataLoader& data) {
  constexpr bool master_weights = !std::is_same_v<T, float>;
  const RunOptions& o = o_;
  const Communicator& comm = comm_;
  MetricsLog& log = log_;
  std::string path, error;
  CheckpointMeta meta;
  // Root reads into host memory and broadcasts from it; every rank then stores it on its device.
  const Exec& ex = model.exec();
  const idx n = model.num_params();
  // fp32: the model's own buffer (a host mirror on a GPU); bf16: a host fp32 copy, which becomes
  // the optimizer's master and, rounded, the model's weights.
  std::vector<float> master_host;
  std::optional<HostMirror<float>> mirror;
  float* params = nullptr;
  if constexpr (master_weights) {
    master_host.resize(std::size_t(n));
    params = master_host.data();
  } else {
    params = mirror.emplace(ex, model.params(), n, false).data();
  }
  const DistributedAdamW::FullMoments moments = opt.full_moments(comm.is_root());
  if (comm.is_root()) {
    try {
      std::vector<std::string> notes;
      try {
        path = resume_checkpoint(resume, o.checkpoint.dir, o.model, model.table(), params,
                                 moments.exp_avg, moments.exp_avg_sq, meta, notes);
      } catch (...) {
        for (const std::string& note : notes) log.note(note);  // which files were tried, before the error
        throw;
      }
      for (const std::string& note : notes) log.note(note);
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  if (!comm.all(error.empty())) throw CheckpointError(comm.is_root() ? error : "checkpoint load failed on rank 0");
  std::int64_t found = comm.is_root() && !path.empty() ? 1 : 0;
  comm.broadcast(&found, sizeof found);
  if (!found) {
    opt.release_full_moments();
    // Only "latest" means "resume if there is anything": an explicit directory that holds no
    // checkpoint is a wrong path, and training from scratch into it would hide the mistake.
    if (resume != "latest")
      throw OptionsError("--resume " + resume + ": no checkpoint there (no step_*.h5 files); give a checkpoint "
                         "directory or file, or --resume latest to start fresh when " + o.checkpoint.dir +
                         " has none");
    log.note("--resume latest: no checkpoint in " + o.checkpoint.dir + " (checkpoint.dir) yet, starting fresh");
    return;
  }
  std::int64_t header[5] = {meta.step, meta.tokens_seen, meta.optimizer_steps, meta.bad_steps, 0};
  std::string position = meta.loader_position;
  header[4] = std::int64_t(position.size());
  comm.broadcast(header, sizeof header);
  position.resize(std::size_t(header[4]));
  comm.broadcast(position.data(), position.size());
  comm.broadcast(params, std::size_t(n) * sizeof(float));
  if constexpr (master_weights) {
    model.set_weights(params);
    opt.set_master(params);
  } else {
    mirror->store();
  }
  if (!opt.sharded()) {  // every rank's full moments receive the root's
    comm.broadcast(moments.exp_avg, std::size_t(n) * sizeof(float));
    comm.broadcast(moments.exp_avg_sq, std::size_t(n) * sizeof(float));
  }
  opt.scatter_moments(0);
  st.step = header[0];
  st.tokens_seen = header[1];
  opt.set_steps(header[2]);
  st.bad_steps = header[3];
  data.restore(LoaderPosition::parse(position));
  saved_step_ = st.step;
  log.note("resumed from " + (comm.is_root() ? path : std::string("checkpoint")) + " at step " +
           std::to_string(st.step) + ", data position " + position);
}

template std::string CheckpointCadence::save(const RunState&, const Model<float>&, DistributedAdamW&,
                                             const DataLoader&);
template std::string CheckpointCadence::save(const RunState&, const Model<bf16>&, DistributedAdamW&,
                                             const DataLoader&);
template void CheckpointCadence::restore(const std::string&, RunState&, Model<float>&, DistributedAdamW&,
                                         DataLoader&);
template void CheckpointCadence::restore(const std::string&, RunState&, Model<bf16>&, DistributedAdamW&,
                                         DataLoader&);

}  // namespace nexus
