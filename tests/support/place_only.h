// The place of one rank in a group, without MPI: constructing a DistributedAdamW asks no more, so
// tests can build every rank's optimizer (and count its shard's buffers) in one process.
#pragma once

#include <stdexcept>

#include "parallel/data_plane.h"

namespace nexus::test {

class PlaceOnly final : public DataPlane {
 public:
  PlaceOnly(int size, int rank) : size_(size), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return size_; }

 private:
  [[noreturn]] static void no_transfers() { throw std::logic_error("PlaceOnly moves no data"); }
  void do_allreduce_sum(void*, idx, DType) const override { no_transfers(); }
  void do_allgather(const void*, void*, idx, DType) const override { no_transfers(); }
  void do_reduce_scatter_sum(const void*, void*, idx, DType) const override { no_transfers(); }
  Request do_ireduce_scatter_sum(void*, std::span<const idx>, void*, DType) const override { no_transfers(); }
  Request do_isend(const void*, idx, DType, int, int) const override { no_transfers(); }
  Request do_irecv(void*, idx, DType, int, int) const override { no_transfers(); }
  int size_, rank_;
};

}  // namespace nexus::test
