// The delta all-reduce of zero 0 overlapped with the backward pass (DDP's gradient buckets): the
// backward of a step's last micro-batch reports each parameter range the moment its deltas are
// final on this rank, and once at least `bucket_bytes` of contiguous final deltas are waiting they
// are all-reduced in the background (DataPlane::iallreduce_sum) while the layers below still run
// their backward. finish() posts what is left (the embedding, last in the backward) and waits: the
// time spent waiting there is the communication the backward did not hide (exposed time).
//
// The backward produces the flat buffer from the top down (the parameter table is [embedding |
// layer 0 | ... | layer L-1 | final norm | lm_head] and the backward walks it in reverse), so ready
// ranges arrive in descending, contiguous order and a bucket is always one contiguous slice.
// Every rank reports the same ranges in the same order, so the all-reduces match across ranks.
// The sums are those of the one all-reduce over the whole buffer (each element is the same sum of
// the same ranks' values; with 2 ranks bit for bit, beyond that within the transport's summation
// order, as between bucket sizes of the blocking all-reduce).
#pragma once

#include <cstddef>
#include <vector>

#include "parallel/data_plane.h"

namespace nexus {

class OverlappedDeltaReduction {
 public:
  // Sums deltas[n] over `group` (borrowed, as the buffer).
  OverlappedDeltaReduction(const DataPlane& group, float* deltas, idx n, std::size_t bucket_bytes);

  // A new step: nothing posted, nothing pending.
  void begin();
  // deltas[offset, offset + count) are final on this rank. Ranges must come in descending order,
  // each ending where the previous one began; throws std::logic_error otherwise.
  void ready(idx offset, idx count);
  // Posts whatever is not posted yet (down to offset 0) and waits for every bucket: the time spent
  // here is the exposed communication of the step (the trainer reports it).
  void finish();

  std::size_t buckets_posted() const { return posted_; }  // in the last step

 private:
  void post(idx begin, idx end);

  const DataPlane& group_;
  float* deltas_;
  idx n_;
  idx bucket_elems_;
  idx pending_begin_ = 0, pending_end_ = 0;  // final, not yet posted: [pending_begin_, pending_end_)
  std::vector<Request> inflight_;
  std::size_t posted_ = 0;
};

}  // namespace nexus
