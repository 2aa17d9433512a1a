// The data plane for device buffers that works anywhere: every operation copies the device data to
// host memory, runs the wrapped host data plane (the MPI Communicator) on it and copies the result
// back. No NCCL, no CUDA-aware MPI, and several ranks may share one GPU; the price is two copies
// over PCIe per transfer and no overlap of the copies with the transfer. It is also the GPU code
// path that CPU tests can check: with Exec{cpu} the copies are memcpy.
//
// Host memory is planned, not allocated per call:
// - collectives go through one staging buffer of `staging_bytes`, allocated by the constructor;
//   a larger message travels in pieces that fit it (an all-gather or reduce-scatter in pieces of
//   `count`, each piece's send and receive parts together in the buffer);
// - a point-to-point transfer holds its data on the host until it completes, and transfers may be
//   in flight together (a ring posts its sends and receives before waiting on any), so each piece
//   (at most `staging_bytes`) takes a host slab from a pool; slabs come back when the transfer ends
//   and are kept, and a piece takes the smallest free slab that holds it, so the pool grows to the
//   run's peak of bytes in flight during the first step and a step that repeats it allocates
//   nothing. (One shared buffer with pieces sent one after another would need the receiver to
//   post the next piece inside its wait(), and a ring whose ranks all wait on their sends first
//   would deadlock.)
// Every rank of the group must use the same staging_bytes: a point-to-point message is a sequence
// of pieces of that size, matched in order.
//
// Completion is on the host: every collective, the non-blocking ones included (blocking, then a
// complete Request), returns with its result on the device. A non-blocking
// all-reduce would gain nothing here: the data must reach the host before MPI can move it, and
// copying it there synchronizes the caller's stream, so the host waits for the compute either way.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <vector>

#include "parallel/data_plane.h"

namespace nexus {

namespace detail {
class SlabPool;
}

class StagedDataPlane final : public DataPlane {
 public:
  // Borrows `host` (a data plane on host buffers), which must outlive this plane and its requests.
  // Buffers passed to the operations live on ex.device; copies are ordered on ex.stream. Throws
  // std::invalid_argument for staging_bytes == 0.
  StagedDataPlane(const DataPlane& host, Exec ex, std::size_t staging_bytes);
  ~StagedDataPlane() override;
  StagedDataPlane(const StagedDataPlane&) = delete;
  StagedDataPlane& operator=(const StagedDataPlane&) = delete;

  int rank() const override { return host_.rank(); }
  int size() const override { return host_.size(); }
  std::size_t staging_bytes() const { return staging_bytes_; }
  // Slabs the point-to-point pool has allocated so far: the peak number of pieces in flight.
  std::size_t slabs_made() const;

 private:
  void do_allreduce_sum(void* data, idx count, DType t) const override;
  void do_allgather(const void* send, void* recv, idx count, DType t) const override;
  void do_reduce_scatter_sum(const void* send, void* recv, idx count, DType t) const override;
  Request do_ireduce_scatter_sum(void* data, std::span<const idx> counts, void* recv,
                                 DType t) const override;
  Request do_isend(const void* data, idx count, DType t, int dest, int tag) const override;
  Request do_irecv(void* data, idx count, DType t, int source, int tag) const override;

  // Elements of `t` per collective piece when each piece needs `parts` of them in the buffer;
  // throws naming the operation when not even one fits.
  idx piece_count(DType t, idx parts, const char* what) const;

  const DataPlane& host_;
  Exec ex_;
  std::size_t staging_bytes_;
  std::unique_ptr<unsigned char[]> staging_;  // [staging_bytes_]: the collectives' buffer
  mutable std::vector<idx> one_count_;         // [size] zeros but one: a reduce-scatter onto one rank
  std::shared_ptr<detail::SlabPool> slabs_;   // point-to-point slabs, shared with requests in flight
};

}  // namespace nexus
