// A step's delta reduction over the data-parallel ranks, overlapped with the backward pass (DDP's
// gradient buckets) unless bucket_bytes is 0: the backward of a step's last micro-batch reports
// each parameter range the moment its deltas are final on this rank, and once at least
// `bucket_bytes` of contiguous final deltas are waiting they are reduced in the background while
// the layers below still run their backward. finish() posts what is left (the embedding, last in
// the backward; everything when bucket_bytes is 0) and waits: the time spent waiting there is the
// communication the backward did not hide (exposed time).
//
// Two destinations, as the optimizer needs them:
//   zero 0: each bucket is all-reduced in place (DataPlane::iallreduce_sum), so every rank ends
//     with the group's sum of every delta.
//   zero 1: each bucket is reduce-scattered at the ZeRO-1 shard boundaries (flat_shard over the
//     group, as DistributedAdamW lays out its shards; DataPlane::ireduce_scatter_sum with the
//     bucket's piece of each shard as that rank's count), so a rank receives the sums of its own
//     shard into the optimizer's shard buffer, bucket by bucket; the delta buffer is spent (a
//     plane may sum in it). On NCCL the buckets move the bytes of the one reduce-scatter after the
//     backward, but during it (Megatron's distributed optimizer overlaps its reduce-scatter the
//     same way; its buckets are sharded afresh, these keep the checkpoint's one flat layout); the
//     MPI plane all-reduces each bucket instead (twice the bytes; see Communicator).
//
// The backward produces the flat buffer from the top down (the parameter table is [embedding |
// layer 0 | ... | layer L-1 | final norm | lm_head] and the backward walks it in reverse), so ready
// ranges arrive in descending, contiguous order and a bucket is always one contiguous slice.
// Every rank reports the same ranges in the same order, so the collectives match across ranks.
// The sums are those of one reduction over the whole buffer (each element is the same sum of the
// same ranks' values; with 2 ranks bit for bit, beyond that within the transport's summation
// order, as between bucket sizes of the blocking all-reduce).
#pragma once

#include <cstddef>
#include <vector>

#include "parallel/data_plane.h"
#include "parallel/flat_shard.h"

namespace nexus {

class DeltaReduction {
 public:
  // bucket_bytes 0: no overlap -- ready() posts nothing and finish() reduces the whole buffer (as
  // one collective where the transport allows), so the time it waits is all of the reduction.
  // Zero 0: sums deltas[n] over `group` in place on every rank (group and buffer borrowed).
  DeltaReduction(const DataPlane& group, float* deltas, idx n, std::size_t bucket_bytes);
  // Zero 1: this rank receives the sums of its shard into shard_sums[shard.numel] (borrowed:
  // DistributedAdamW::shard() and shard_sums()). Throws std::invalid_argument unless `shard` is
  // flat_shard(n, group.size(), group.rank()), the layout the reduction cuts the buckets by.
  DeltaReduction(const DataPlane& group, float* deltas, idx n, std::size_t bucket_bytes,
                           const FlatShard& shard, float* shard_sums);

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
  void post(idx begin, idx end);      // in collectives of at most kMaxPost elements
  void post_one(idx begin, idx end);

  const DataPlane& group_;
  float* deltas_;
  idx n_;
  idx bucket_elems_;
  float* shard_sums_ = nullptr;  // zero 1: [shard numel] this rank's sums; null under zero 0
  std::vector<idx> counts_;      // zero 1: [group size] one bucket's piece of each rank's shard
  idx pending_begin_ = 0, pending_end_ = 0;  // final, not yet posted: [pending_begin_, pending_end_)
  std::vector<Request> inflight_;
  std::size_t posted_ = 0;
};

}  // namespace nexus
