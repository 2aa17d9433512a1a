#include "optim/overlapped_reduction.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace nexus {

OverlappedDeltaReduction::OverlappedDeltaReduction(const DataPlane& group, float* deltas, idx n,
                                                   std::size_t bucket_bytes)
    : group_(group), deltas_(deltas), n_(n), bucket_elems_(std::max<idx>(1, idx(bucket_bytes / sizeof(float)))) {
  // At most one request per bucket, plus the remainder: reserved once, so a step allocates nothing.
  inflight_.reserve(std::size_t(n_ / bucket_elems_ + 2));
  begin();
}

void OverlappedDeltaReduction::begin() {
  inflight_.clear();
  pending_begin_ = pending_end_ = n_;
  posted_ = 0;
}

void OverlappedDeltaReduction::post(idx begin, idx end) {
  if (begin >= end) return;
  inflight_.push_back(group_.iallreduce_sum(deltas_ + begin, end - begin));
  ++posted_;
}

void OverlappedDeltaReduction::ready(idx offset, idx count) {
  if (count < 0 || offset < 0 || offset + count != pending_begin_)
    throw std::logic_error("OverlappedDeltaReduction::ready: range [" + std::to_string(offset) + ", " +
                           std::to_string(offset + count) + ") does not end where the last one began (" +
                           std::to_string(pending_begin_) + "): ranges must come top down and contiguous");
  pending_begin_ = offset;
  if (pending_end_ - pending_begin_ >= bucket_elems_) {
    post(pending_begin_, pending_end_);
    pending_end_ = pending_begin_;
  }
}

void OverlappedDeltaReduction::finish() {
  post(0, pending_end_);  // the pending bucket and anything never reported
  pending_begin_ = pending_end_ = 0;
  wait_all(inflight_);
  inflight_.clear();
}

}  // namespace nexus
