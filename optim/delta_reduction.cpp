#include "optim/delta_reduction.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace nexus {

namespace {
// The most elements one collective carries: the rest of the buffer at finish() (the embedding and
// whatever was never reported) can exceed any bucket, and an MPI count is an int.
constexpr idx kMaxPost = idx(1) << 30;
}  // namespace

DeltaReduction::DeltaReduction(const DataPlane& group, float* deltas, idx n,
                                                   std::size_t bucket_bytes)
    : group_(group),
      deltas_(deltas),
      n_(n),
      bucket_elems_(bucket_bytes == 0 ? n + 1 : std::max<idx>(1, idx(bucket_bytes / sizeof(float)))) {
  // At most one request per bucket, plus the remainder in pieces of kMaxPost: reserved once, so a
  // step allocates nothing.
  inflight_.reserve(std::size_t(n_ / bucket_elems_ + 2 + n_ / kMaxPost));
  begin();
}

DeltaReduction::DeltaReduction(const DataPlane& group, float* deltas, idx n,
                                                   std::size_t bucket_bytes, const FlatShard& shard,
                                                   float* shard_sums)
    : DeltaReduction(group, deltas, n, bucket_bytes) {
  if (shard != flat_shard(n, group.size(), group.rank()) || (shard.numel > 0 && !shard_sums))
    throw std::invalid_argument("DeltaReduction: the shard [" + std::to_string(shard.offset) + ", " +
                                std::to_string(shard.offset + shard.numel) + ") is not rank " +
                                std::to_string(group.rank()) + "'s of " + std::to_string(n) + " elements over " +
                                std::to_string(group.size()) + " ranks, or has no buffer");
  shard_sums_ = shard_sums;
  counts_.assign(std::size_t(group.size()), 0);
}

void DeltaReduction::begin() {
  inflight_.clear();
  pending_begin_ = pending_end_ = n_;
  posted_ = 0;
}

void DeltaReduction::post(idx begin, idx end) {
  for (; end - begin > kMaxPost; end -= kMaxPost) post_one(end - kMaxPost, end);  // top down, as ever
  if (begin < end) post_one(begin, end);
}

void DeltaReduction::post_one(idx begin, idx end) {
  if (!shard_sums_) {
    inflight_.push_back(group_.iallreduce_sum(deltas_ + begin, end - begin));
  } else {
    // Rank q's count is the bucket's overlap with its shard; shards ascend with q, so the
    // pieces lie in rank order in [begin, end), as the reduce-scatter reads them.
    const FlatShard mine = flat_shard(n_, group_.size(), group_.rank());
    for (int q = 0; q < group_.size(); ++q) {
      const FlatShard s = flat_shard(n_, group_.size(), q);
      counts_[std::size_t(q)] = std::max<idx>(0, std::min(end, s.offset + s.numel) - std::max(begin, s.offset));
    }
    float* recv = shard_sums_ + std::clamp<idx>(begin - mine.offset, 0, mine.numel);
    inflight_.push_back(group_.ireduce_scatter_sum(deltas_ + begin, counts_, recv));
  }
  ++posted_;
}

void DeltaReduction::ready(idx offset, idx count) {
  if (count < 0 || offset < 0 || offset + count != pending_begin_)
    throw std::logic_error("DeltaReduction::ready: range [" + std::to_string(offset) + ", " +
                           std::to_string(offset + count) + ") does not end where the last one began (" +
                           std::to_string(pending_begin_) + "): ranges must come top down and contiguous");
  pending_begin_ = offset;
  // Between two layers' backward passes: let the transport move the buckets in flight (MPI's
  // non-blocking collectives advance only inside MPI calls; NCCL's test() is an event query).
  for (Request& r : inflight_) r.test();
  if (pending_end_ - pending_begin_ >= bucket_elems_) {
    post(pending_begin_, pending_end_);
    pending_end_ = pending_begin_;
  }
}

void DeltaReduction::finish() {
  post(0, pending_end_);  // the pending bucket and anything never reported
  pending_begin_ = pending_end_ = 0;
  wait_all(inflight_);
  inflight_.clear();
}

}  // namespace nexus
