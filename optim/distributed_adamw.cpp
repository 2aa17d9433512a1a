#include "optim/distributed_adamw.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

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

constexpr int kExpAvgTag = 7101, kExpAvgSqTag = 7102;  // checkpoint moves of the two moments

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
}

DistributedAdamW::Outcome DistributedAdamW::step(float* params, float* deltas, float scale, double loss,
                                                 double grad_clip, double lr, bool summed) {
  const Exec& ex = local_.exec();
  Outcome out;
  if (summed && sharded_)
    throw std::logic_error("DistributedAdamW::step: summed deltas under zero 1 (its reduce-scatter is the sum)");
  if (!sharded_) {
    if (!summed) group_.allreduce_sum(deltas, n_);
    scale_inplace(ex, deltas, n_, scale);
    out.grad_norm = clip_grad_norm(ex, deltas, n_, grad_clip);
    out.applied = std::isfinite(loss) && std::isfinite(out.grad_norm);
    if (out.applied) local_.step(params, deltas, lr);
    return out;
  }
  const idx ranks = group_.size(), block = shard_.block, tail = shard_.tail;
  const bool last = group_.rank() == ranks - 1;
  float* grad = grad_shard_.data();
  float* params_tail = params + ranks * block;  // [tail], after every rank's equal block
  // Summed deltas of this rank's block; the tail is summed on every rank (fewer elements than
  // ranks) and kept by the last.
  group_.reduce_scatter_sum(deltas, block, grad);
  if (tail > 0) {
    float* deltas_tail = deltas + ranks * block;
    group_.allreduce_sum(deltas_tail, tail);
    if (last) copy_values(ex, grad + block, deltas_tail, tail);
  }
  scale_inplace(ex, grad, shard_.numel, scale);
  // The global norm from every shard's sum of squares. All-gathered and summed in rank order on
  // every rank (rather than all-reduced, whose order MPI may vary by rank), so every rank computes
  // the same norm, the same clip factor and the same skip decision by construction.
  const double squares = sum_of_squares(ex, grad, shard_.numel);
  group_.allgather(&squares, 1, norm_parts_.data());
  double total = 0;
  for (const double part : norm_parts_) total += part;
  out.grad_norm = std::sqrt(total);
  clip_to_norm(ex, grad, shard_.numel, out.grad_norm, grad_clip);
  // Every rank agrees (same norm, same all-reduced loss): a skipped step moves nothing anywhere,
  // so the weights need no all-gather either.
  out.applied = std::isfinite(loss) && std::isfinite(out.grad_norm);
  if (!out.applied) return out;
  local_.step(params + shard_.offset, grad, lr);
  // The deltas are spent: their buffer becomes the all-gather's send block (which must not
  // overlap the receive buffer, the weights themselves).
  copy_values(ex, grad, params + shard_.offset, block);
  group_.allgather(grad, block, params);
  if (tail > 0) {
    if (last) copy_values(ex, grad, params_tail, tail);
    group_.allgather(grad, tail, tail_gather_.data());
    copy_values(ex, params_tail, tail_gather_.data() + (ranks - 1) * tail, tail);
  }
  return out;
}

bool DistributedAdamW::moments_on_host() const { return local_.exec().device == Device::cpu; }

DistributedAdamW::FullMoments DistributedAdamW::full_moments(bool root) {
  if (!sharded_ && moments_on_host()) return {local_.exp_avg().data(), local_.exp_avg_sq().data()};
  if (sharded_ && !root) return {};
  staging_.resize(2 * std::size_t(n_));
  return {staging_.data(), staging_.data() + n_};
}

void DistributedAdamW::gather_moments(int root) {
  const Exec& ex = local_.exec();
  const std::size_t shard_bytes = std::size_t(shard_.numel) * sizeof(float);
  if (!sharded_) {
    if (moments_on_host() || group_.rank() != root) return;
    const FullMoments full = full_moments(true);
    copy_to_host(ex, full.exp_avg, local_.exp_avg().data(), shard_bytes);
    copy_to_host(ex, full.exp_avg_sq, local_.exp_avg_sq().data(), shard_bytes);
    return;
  }
  const FullMoments full = full_moments(group_.rank() == root);
  if (group_.rank() != root) {
    Request sends[2] = {group_.isend(local_.exp_avg().data(), shard_.numel, root, kExpAvgTag),
                        group_.isend(local_.exp_avg_sq().data(), shard_.numel, root, kExpAvgSqTag)};
    wait_all(sends);
    return;
  }
  if (moments_on_host()) {  // the data plane writes straight into the staging
    std::vector<Request> receives;
    receives.reserve(2 * std::size_t(group_.size()));
    for (int r = 0; r < group_.size(); ++r) {
      const FlatShard s = flat_shard(n_, group_.size(), r);
      if (r == root) {
        std::copy_n(local_.exp_avg().data(), s.numel, full.exp_avg + s.offset);
        std::copy_n(local_.exp_avg_sq().data(), s.numel, full.exp_avg_sq + s.offset);
        continue;
      }
      receives.push_back(group_.irecv(full.exp_avg + s.offset, s.numel, r, kExpAvgTag));
      receives.push_back(group_.irecv(full.exp_avg_sq + s.offset, s.numel, r, kExpAvgSqTag));
    }
    wait_all(receives);
    return;
  }
  // Device moments: each shard lands in device memory, then moves to the host staging, one rank
  // at a time (the root holds one shard pair more on its device, not n).
  if (shard_recv_.size() == 0) shard_recv_ = DeviceBuffer<float>(ex, 2 * largest_flat_shard(n_, group_.size()));
  for (int r = 0; r < group_.size(); ++r) {
    const FlatShard s = flat_shard(n_, group_.size(), r);
    const float *avg = local_.exp_avg().data(), *avg_sq = local_.exp_avg_sq().data();
    if (r != root) {
      float* recv = shard_recv_.data();
      Request receives[2] = {group_.irecv(recv, s.numel, r, kExpAvgTag),
                             group_.irecv(recv + s.numel, s.numel, r, kExpAvgSqTag)};
      wait_all(receives);
      avg = recv;
      avg_sq = recv + s.numel;
    }
    copy_to_host(ex, full.exp_avg + s.offset, avg, std::size_t(s.numel) * sizeof(float));
    copy_to_host(ex, full.exp_avg_sq + s.offset, avg_sq, std::size_t(s.numel) * sizeof(float));
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
