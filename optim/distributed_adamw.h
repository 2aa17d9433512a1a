// AdamW over data-parallel replicas: every rank of `group` (the run's world data plane, dp x cp)
// holds a share of the global batch's deltas; the step sums them over the group, normalises,
// clips to the global norm and integrates.
//
//   zero 0: all-reduce the whole delta buffer; every rank runs AdamW on all of it and holds both
//           moments whole (replicated optimizer state).
//   zero 1: reduce-scatter the deltas, so each rank receives the summed deltas of its own shard
//           (parallel/flat_shard.h) only; it runs AdamW on that shard with the moments of that
//           shard only, then all-gathers the updated weights. Optimizer state per rank: 2 n / S
//           instead of 2 n floats, for the same communication volume (an all-reduce is a
//           reduce-scatter plus an all-gather).
//
// Why the shards span the whole world (dp x cp) and not the dp group alone: the cp ranks of one
// replica hold partial deltas of the same replica (their parts of the same sequences), so the
// deltas must be summed over cp as well as over dp. One reduce-scatter over the world does both
// sums at once, where "all-reduce over cp, then reduce-scatter over dp" would move the cp sum
// twice and leave the cp ranks of a replica holding identical copies of the same shard (Megatron's
// distributed optimizer shards over data-parallel x context-parallel for the same reason). With cp
// = 1 the world is the dp group.
//
// fp32 (CPU or GPU): the master weights are the compute weights, so the shard of the weights being
// integrated is this rank's slice of the parameter buffer; there is no separate master copy.
// bf16 (GPU): the optimizer owns the fp32 master weights (set_master) -- this rank's shard under
// zero 1, all n under zero 0 -- and each step integrates them and writes the bf16 compute weights
// as their rounding in the same pass; zero 1 then all-gathers the bf16 compute copy (half the
// bytes of fp32), while each shard's master stays on its rank.
#pragma once

#include <cstdint>
#include <vector>

#include "optim/adamw.h"
#include "parallel/data_plane.h"
#include "parallel/flat_shard.h"

namespace nexus {

// `ranges` (tiling [0, n), in any order) intersected with the shard [offset, offset + numel),
// shifted to offsets relative to the shard: the decay ranges of an AdamW over the shard alone.
// Empty pieces are dropped, so the result tiles [0, numel).
std::vector<DecayRange> shard_decay_ranges(const std::vector<DecayRange>& ranges, idx offset, idx numel);

class DistributedAdamW {
 public:
  // zero: 0 or 1 (parallel.zero). With zero 1 on a group of one rank there is nothing to shard:
  // it runs as zero 0 (sharded() is false). Collectives run on `group` (borrowed: it must outlive
  // this object), in the same order on every rank.
  // The moments and the shard buffers live on ex's device, where every step runs.
  DistributedAdamW(idx n, const AdamWHyper& hyper, const std::vector<DecayRange>& ranges, const DataPlane& group,
                   int zero, const Exec& ex = {});

  struct Outcome {
    double grad_norm = 0;  // global norm of the normalised deltas, before clipping
    bool applied = false;  // false: loss or norm not finite, weights and moments untouched
  };
  // deltas[n]: this rank's summed-loss gradient; consumed (overwritten). `scale` normalises the
  // group's sum (1 / the global target count), `loss` is the step's global mean loss (the step is
  // skipped when it is not finite, as when the norm is not). params[n] ends identical on every
  // rank. Collective over the group.
  // `summed`: the deltas were reduced during the backward (DeltaReduction), so the step
  // skips its own reduction -- zero 0: the whole buffer is the group's sum;
  // zero 1: shard_sums() holds this rank's shard of the sum, and deltas are not read.
  Outcome step(float* params, float* deltas, float scale, double loss, double grad_clip, double lr,
               bool summed = false);
  // The bf16 step: params[n] is the bf16 compute copy (ends identical on every rank, the rounding
  // of the master weights). Throws std::logic_error unless set_master was called.
  Outcome step(bf16* params, float* deltas, float scale, double loss, double grad_clip, double lr,
               bool summed = false);

  // The fp32 master weights of a bf16 run: host_master[n] (host memory, the whole buffer on every
  // rank: the fp32 draw init_parameters<float> gives, or a checkpoint's weights); this rank keeps
  // its shard() of it on its device. Allocates the master on the first call.
  void set_master(const float* host_master);
  bool has_master() const { return has_master_; }
  // [shard().numel] this rank's master weights (device memory), null without set_master.
  const float* master() const { return has_master_ ? master_.data() : nullptr; }

  bool sharded() const { return sharded_; }
  // Zero 1: [shard().numel] where the summed deltas of this rank's shard go before step(summed)
  // (DeltaReduction's receive buffer, on the optimizer's device); null unless sharded.
  float* shard_sums() { return sharded_ ? grad_shard_.data() : nullptr; }
  // This rank's part of the flat buffer: all of it ({0, n}) unless sharded.
  const FlatShard& shard() const { return shard_; }
  // The optimizer over this rank's shard: its moments have shard().numel elements.
  const AdamW& local() const { return local_; }
  std::int64_t steps() const { return local_.steps(); }
  void set_steps(std::int64_t steps) { local_.set_steps(steps); }

  // Checkpoints hold the moments whole (their logical shapes), in host memory. full_moments(root)
  // gives the [n] exp_avg and exp_avg_sq that checkpoint I/O reads or writes: on the CPU under
  // zero 0 the optimizer's own buffers (every rank, no copy); otherwise a host staging copy of 2 n
  // floats, held until release_full_moments() -- on the root only under zero 1 (nullptr
  // elsewhere), on every rank under zero 0 on a GPU (each rank receives the root's broadcast into
  // it). That staging is the price of a file that loads on any number of ranks under either
  // setting: while a checkpoint is written or read, the root holds as much optimizer state as
  // under zero 0.
  // With master weights (set_master), `master` is the whole [n] fp32 master (gather_moments fills
  // it on the root as it fills the moments): what a bf16 checkpoint saves as its weights.
  struct FullMoments {
    float* exp_avg = nullptr;
    float* exp_avg_sq = nullptr;
    float* master = nullptr;
  };
  FullMoments full_moments(bool root);
  // Collective (before a save): the root's full moments (and master, if any) receive every rank's
  // shards (zero 1) or its own device buffers (zero 0 on a GPU). Zero 0 on the CPU: nothing to do.
  void gather_moments(int root);
  // Collective (after a load): every rank takes its part of the full moments onto its device --
  // its shard of the root's staging (zero 1), or the whole of its own staging, which the caller
  // filled by a broadcast (zero 0 on a GPU: one tree broadcast beats a message per rank) -- and
  // the staging is released. Zero 0 on the CPU: nothing here, the broadcast wrote the moments.
  // Only the moments: a load restores the master weights by set_master from the loaded weights.
  void scatter_moments(int root);
  void release_full_moments();

 private:
  bool moments_on_host() const;  // the moments' device is the CPU: checkpoints read them in place
  template <typename T>
  Outcome step_on(T* params, float* master, float* deltas, float scale, double loss, double grad_clip, double lr,
                  bool summed);
  // What gather_moments moves, in staging order: exp_avg, exp_avg_sq[, master] ([shard numel] each).
  std::vector<float*> local_state();

  idx n_;
  const DataPlane& group_;
  bool sharded_;
  FlatShard shard_;
  AdamW local_;                     // over shard_ (all of [0, n) unless sharded)
  DeviceBuffer<float> grad_shard_;   // [shard_.numel] summed deltas of this shard; the all-gather's send block
  DeviceBuffer<float> tail_gather_;  // [S * tail] the all-gathered tail, of which the last rank's block counts
  std::vector<double> norm_parts_;  // [S] every rank's sum of squares, summed in rank order
  DeviceBuffer<double> norm_device_;  // [S + 1] the same on the device, all-gathered from this rank's at [S]
  std::vector<float> staging_;      // [k n] host copy while a checkpoint moves (not CPU zero 0), else empty
  DeviceBuffer<float> shard_recv_;  // [k largest shard] zero 1 off the CPU: a shard received on its way to staging_
  DeviceBuffer<float> master_;      // [shard_.numel] fp32 master weights of a bf16 run (set_master), else empty
  bool has_master_ = false;
};

}  // namespace nexus
