#include "optim/distributed_adamw.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "kernels/ops.h"
#include "optim/grad.h"

namespace nexus {

std::vector<DecayRange> shard_decay_ranges(const std::vector<DecayRange>& ranges, idx offset, idx numel) {
  std::vector<DecayRange> local;
  for (const DecayRange& r : ranges) {
    const idx begin = std::max(r.offset, offset), end = std::min(r.offset + r.numel, offset + numel);
    if (begin < end) local.push_back({begin - offset, end - begin, r.decay});
  }
  std::sort(local.begin(), local.end(), [](const DecayRange& a, const DecayRange& b) { return a.offset < b.offset; });
  return local;
}

namespace {

FlatShard shard_of(idx n, const DataPlane& group, bool sharded) {
  if (!sharded) return FlatShard{0, n, n, 0};
  return flat_shard(n, group.size(), group.rank());
}

// Checkpoint moves: the two moments, then (gather only) the master weights, at kStateTag + j for
// local_state()'s array j.
constexpr int kStateTag = 7101, kExpAvgTag = kStateTag, kExpAvgSqTag = kStateTag + 1;

}  // namespace

DistributedAdamW::DistributedAdamW(idx n, const AdamWHyper& hyper, const std::vector<DecayRange>& ranges,
                                   const DataPlane& group, int zero, const Exec& ex)
    : n_(n),
      group_(group),
      sharded_(zero == 1 && group.size() > 1),
      shard_(shard_of(n, group, sharded_)),
      local_(shard_.numel, hyper, shard_decay_ranges(ranges, shard_.offset, shard_.numel), ex) {
  if (zero != 0 && zero != 1)
    throw std::invalid_argument("DistributedAdamW: zero = " + std::to_string(zero) + ", expected 0 or 1");
  if (!sharded_) return;
  const std::size_t ranks = std::size_t(group.size());
  // Allocated once: the step itself allocates nothing.
  grad_shard_ = DeviceBuffer<float>(ex, shard_.numel);
  tail_gather_ = DeviceBuffer<float>(ex, idx(ranks) * shard_.tail);
  norm_parts_.resize(ranks);
  norm_device_ = DeviceBuffer<double>(ex, idx(ranks) + 1);
}

DistributedAdamW::Outcome DistributedAdamW::step(float* params, float* deltas, float scale, double loss,
                                                 double grad_clip, double lr, bool summed) {
  return step_on(params, static_cast<float*>(nullptr), deltas, scale, loss, grad_clip, lr, summed);
}

DistributedAdamW::Outcome DistributedAdamW::step(bf16* params, float* deltas, float scale, double loss,
                                                 double grad_clip, double lr, bool summed) {
  if (!has_master_) throw std::logic_error("DistributedAdamW: a bf16 step needs the fp32 master weights (set_master)");
  return step_on(params, master_.data(), deltas, scale, loss, grad_clip, lr, summed);
}

void DistributedAdamW::set_master(const float* host_master) {
  const Exec& ex = local_.exec();
  if (!has_master_) master_ = DeviceBuffer<float>(ex, shard_.numel);
  has_master_ = true;
  copy_to_device(ex, master_.data(), host_master + shard_.offset, std::size_t(shard_.numel) * sizeof(float));
}

// T = float: master is null, the weights are their own master. T = bf16: master[shard numel] is
// integrated and params (the compute copy) receives its rounding.
template <typename T>
DistributedAdamW::Outcome DistributedAdamW::step_on(T* params, float* master, float* deltas, float scale, double loss,
                                                    double grad_clip, double lr, bool summed) {
  const Exec& ex = local_.exec();
  // One AdamW pass over this rank's shard [offset, offset + numel) of the weights.
  auto integrate = [&](const float* grad) {
    if constexpr (std::is_same_v<T, float>)
      local_.step(params + shard_.offset, grad, lr);
    else
      local_.step(master, params + shard_.offset, grad, lr);
  };
  Outcome out;
  if (!sharded_) {
    if (!summed) group_.allreduce_sum(deltas, n_);
    scale_inplace(ex, deltas, n_, scale);
    out.grad_norm = clip_grad_norm(ex, deltas, n_, grad_clip);
    out.applied = std::isfinite(loss) && std::isfinite(out.grad_norm);
    if (out.applied) integrate(deltas);
    return out;
  }
  const idx ranks = group_.size(), block = shard_.block, tail = shard_.tail;
  const bool last = group_.rank() == ranks - 1;
  T* params_tail = params + ranks * block;  // [tail], after every rank's equal block
  // [shard numel] the summed deltas of this rank's shard: already there (summed: reduce-scattered
  // bucket by bucket during the backward), or reduce-scattered here -- the tail summed on every
  // rank (fewer elements than ranks) and kept by the last.
  float* grad = grad_shard_.data();
  if (!summed) {
    group_.reduce_scatter_sum(deltas, block, grad);
    if (tail > 0) {
      float* deltas_tail = deltas + ranks * block;
      group_.allreduce_sum(deltas_tail, tail);
      if (last) copy_values(ex, grad + block, deltas_tail, tail);
    }
  }
  scale_inplace(ex, grad, shard_.numel, scale);
  // The global norm from every shard's sum of squares. All-gathered and summed in rank order on
  // every rank (rather than all-reduced, whose order MPI may vary by rank), so every rank computes
  // the same norm, the same clip factor and the same skip decision by construction.
  // Through device memory, as the data plane needs (NCCL reads and writes device buffers); the
  // copy back synchronizes the stream the all-gather is ordered on.
  const double squares = sum_of_squares(ex, grad, shard_.numel);
  double* parts = norm_device_.data();
  copy_to_device(ex, parts + ranks, &squares, sizeof squares);
  group_.allgather(static_cast<const double*>(parts + ranks), 1, parts);
  copy_to_host(ex, norm_parts_.data(), parts, norm_parts_.size() * sizeof(double));
  double total = 0;
  for (const double part : norm_parts_) total += part;
  out.grad_norm = std::sqrt(total);
  clip_to_norm(ex, grad, shard_.numel, out.grad_norm, grad_clip);
  // Every rank agrees (same norm, same all-reduced loss): a skipped step moves nothing anywhere,
  // so the weights need no all-gather either.
  out.applied = std::isfinite(loss) && std::isfinite(out.grad_norm);
  if (!out.applied) return out;
  integrate(grad);
  // The deltas are spent: their buffer (numel floats, room for as many T) becomes the all-gather's
  // send block (which must not overlap the receive buffer, the weights themselves), and the tail
  // gather's buffer holds S * tail values of T as well.
  T* send = reinterpret_cast<T*>(grad);
  T* gathered_tail = reinterpret_cast<T*>(tail_gather_.data());
  copy_values(ex, send, static_cast<const T*>(params + shard_.offset), block);
  group_.allgather(send, block, params);
  if (tail > 0) {
    if (last) copy_values(ex, send, static_cast<const T*>(params_tail), tail);
    group_.allgather(send, tail, gathered_tail);
    copy_values(ex, params_tail, static_cast<const T*>(gathered_tail + (ranks - 1) * tail), tail);
  }
  return out;
}

bool DistributedAdamW::moments_on_host() const { return local_.exec().device == Device::cpu; }

std::vector<float*> DistributedAdamW::local_state() {
  std::vector<float*> state{local_.exp_avg().data(), local_.exp_avg_sq().data()};
  if (has_master_) state.push_back(master_.data());
  return state;
}

DistributedAdamW::FullMoments DistributedAdamW::full_moments(bool root) {
  if (!sharded_ && moments_on_host())
    return {local_.exp_avg().data(), local_.exp_avg_sq().data(), has_master_ ? master_.data() : nullptr};
  if (sharded_ && !root) return {};
  const std::size_t k = has_master_ ? 3 : 2;
  staging_.resize(k * std::size_t(n_));
  return {staging_.data(), staging_.data() + n_, has_master_ ? staging_.data() + 2 * n_ : nullptr};
}

void DistributedAdamW::gather_moments(int root) {
  const Exec& ex = local_.exec();
  const std::vector<float*> local = local_state();
  const std::size_t k = local.size();
  if (!sharded_) {
    if (moments_on_host() || group_.rank() != root) return;
    full_moments(true);
    for (std::size_t j = 0; j < k; ++j)
      copy_to_host(ex, staging_.data() + j * n_, local[j], std::size_t(n_) * sizeof(float));
    return;
  }
  full_moments(group_.rank() == root);
  if (group_.rank() != root) {
    std::vector<Request> sends;
    for (std::size_t j = 0; j < k; ++j) sends.push_back(group_.isend(local[j], shard_.numel, root, kStateTag + int(j)));
    wait_all(sends);
    return;
  }
  if (moments_on_host()) {  // the data plane writes straight into the staging
    std::vector<Request> receives;
    receives.reserve(k * std::size_t(group_.size()));
    for (int r = 0; r < group_.size(); ++r) {
      const FlatShard s = flat_shard(n_, group_.size(), r);
      for (std::size_t j = 0; j < k; ++j) {
        float* into = staging_.data() + j * n_ + s.offset;
        if (r == root)
          std::copy_n(local[j], s.numel, into);
        else
          receives.push_back(group_.irecv(into, s.numel, r, kStateTag + int(j)));
      }
    }
    wait_all(receives);
    return;
  }
  // Device state: each shard lands in device memory, then moves to the host staging, one rank at
  // a time (the root holds one shard of each array more on its device, not n).
  if (shard_recv_.size() == 0) shard_recv_ = DeviceBuffer<float>(ex, idx(k) * largest_flat_shard(n_, group_.size()));
  for (int r = 0; r < group_.size(); ++r) {
    const FlatShard s = flat_shard(n_, group_.size(), r);
    std::vector<const float*> from(local.begin(), local.end());
    if (r != root) {
      std::vector<Request> receives;
      for (std::size_t j = 0; j < k; ++j) {
        float* recv = shard_recv_.data() + j * s.numel;
        receives.push_back(group_.irecv(recv, s.numel, r, kStateTag + int(j)));
        from[j] = recv;
      }
      wait_all(receives);
    }
    for (std::size_t j = 0; j < k; ++j)
      copy_to_host(ex, staging_.data() + j * n_ + s.offset, from[j], std::size_t(s.numel) * sizeof(float));
  }
}

void DistributedAdamW::scatter_moments(int root) {
  const Exec& ex = local_.exec();
  float* exp_avg = local_.exp_avg().data();
  float* exp_avg_sq = local_.exp_avg_sq().data();
  if (!sharded_) {
    if (moments_on_host()) return;
    const std::size_t bytes = std::size_t(n_) * sizeof(float);
    copy_to_device(ex, exp_avg, staging_.data(), bytes);
    copy_to_device(ex, exp_avg_sq, staging_.data() + n_, bytes);
    release_full_moments();
    return;
  }
  if (group_.rank() != root) {
    Request receives[2] = {group_.irecv(exp_avg, shard_.numel, root, kExpAvgTag),
                           group_.irecv(exp_avg_sq, shard_.numel, root, kExpAvgSqTag)};
    wait_all(receives);
    return;
  }
  const float* full = staging_.data();
  const bool host = moments_on_host();
  if (!host && shard_recv_.size() == 0) shard_recv_ = DeviceBuffer<float>(ex, 2 * largest_flat_shard(n_, group_.size()));
  std::vector<Request> sends;
  sends.reserve(2 * std::size_t(group_.size()));
  for (int r = 0; r < group_.size(); ++r) {
    const FlatShard s = flat_shard(n_, group_.size(), r);
    const std::size_t bytes = std::size_t(s.numel) * sizeof(float);
    if (r == root) {
      if (host) {
        std::copy_n(full + s.offset, s.numel, exp_avg);
        std::copy_n(full + n_ + s.offset, s.numel, exp_avg_sq);
      } else {
        copy_to_device(ex, exp_avg, full + s.offset, bytes);
        copy_to_device(ex, exp_avg_sq, full + n_ + s.offset, bytes);
      }
      continue;
    }
    if (host) {  // the data plane reads straight from the staging
      sends.push_back(group_.isend(full + s.offset, s.numel, r, kExpAvgTag));
      sends.push_back(group_.isend(full + n_ + s.offset, s.numel, r, kExpAvgSqTag));
      continue;
    }
    // Device moments: through the device buffer, one rank at a time.
    float* send = shard_recv_.data();
    copy_to_device(ex, send, full + s.offset, bytes);
    copy_to_device(ex, send + s.numel, full + n_ + s.offset, bytes);
    Request pair[2] = {group_.isend(send, s.numel, r, kExpAvgTag), group_.isend(send + s.numel, s.numel, r, kExpAvgSqTag)};
    wait_all(pair);
  }
  wait_all(sends);
  release_full_moments();
}

void DistributedAdamW::release_full_moments() {
  std::vector<float>().swap(staging_);
  shard_recv_ = DeviceBuffer<float>();
}

}  // namespace nexus
