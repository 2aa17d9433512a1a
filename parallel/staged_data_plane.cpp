#include "parallel/staged_data_plane.h"

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "kernels/device_memory.h"

namespace nexus {

namespace detail {

// Host slabs for point-to-point pieces: taken by a transfer, given back when it ends, kept for the
// next one. A piece takes the smallest free slab that holds it (a new one of its size if none
// does), so a step that repeats the previous step's messages finds an exact fit for each and
// allocates nothing. Only the thread that calls the data plane touches it.
class SlabPool {
 public:
  struct Slab {
    std::unique_ptr<unsigned char[]> data;
    std::size_t capacity = 0;
  };
  std::size_t made() const { return made_; }
  Slab take(std::size_t bytes) {
    auto best = free_.end();
    for (auto it = free_.begin(); it != free_.end(); ++it)
      if (it->capacity >= bytes && (best == free_.end() || it->capacity < best->capacity)) best = it;
    if (best == free_.end()) {
      ++made_;
      return Slab{std::unique_ptr<unsigned char[]>(new unsigned char[bytes]), bytes};
    }
    Slab s = std::move(*best);
    free_.erase(best);
    return s;
  }
  void give_back(std::vector<Slab>& slabs) {
    for (Slab& s : slabs) free_.push_back(std::move(s));
    slabs.clear();
  }

 private:
  std::size_t made_ = 0;
  std::vector<Slab> free_;
};

}  // namespace detail

namespace {

using detail::SlabPool;

// Calls f with a value of the element type `t` names, so the typed DataPlane templates can be
// called on the host plane.
template <typename F>
void with_type(DType t, F&& f) {
  switch (t) {
    case DType::u8: return f(std::uint8_t{});
    case DType::i32: return f(std::int32_t{});
    case DType::i64: return f(std::int64_t{});
    case DType::f32: return f(float{});
    case DType::f64: return f(double{});
    case DType::bf16: return f(bf16{});
  }
  throw std::invalid_argument("unknown element type " + std::to_string(int(t)));
}

// One point-to-point transfer: its pieces in flight on the host plane, each in its own slab.
// A receive copies the slabs to the device once every piece has arrived (in wait() or a test()
// that finds them all done); the slabs then go back to the pool.
class StagedPending final : public Request::Pending {
 public:
  StagedPending(std::shared_ptr<SlabPool> pool, const Exec& ex, void* device_dst, std::size_t bytes,
                std::size_t piece)
      : pool_(std::move(pool)),
        ex_(ex),
        device_dst_(static_cast<unsigned char*>(device_dst)),
        bytes_(bytes),
        piece_(piece) {}
  ~StagedPending() override {
    pieces_.clear();  // each Request waits for its piece
    pool_->give_back(slabs_);
  }
  std::vector<SlabPool::Slab>& slabs() { return slabs_; }
  std::vector<Request>& pieces() { return pieces_; }

  void wait() override {
    for (Request& r : pieces_) r.wait();
    finish();
  }
  bool test() override {
    bool done = true;
    for (Request& r : pieces_) done = r.test() && done;
    if (done) finish();
    return done;
  }

 private:
  void finish() {
    if (device_dst_) {
      for (std::size_t i = 0; i < slabs_.size(); ++i)
        copy_to_device(ex_, device_dst_ + i * piece_, slabs_[i].data.get(), std::min(piece_, bytes_ - i * piece_));
      device_dst_ = nullptr;
    }
    pieces_.clear();
    pool_->give_back(slabs_);
  }

  std::shared_ptr<SlabPool> pool_;
  Exec ex_;
  unsigned char* device_dst_;  // null for a send, and once a receive has been copied back
  std::size_t bytes_, piece_;
  std::vector<SlabPool::Slab> slabs_;
  std::vector<Request> pieces_;
};

}  // namespace

StagedDataPlane::StagedDataPlane(const DataPlane& host, Exec ex, std::size_t staging_bytes)
    : host_(host), ex_(ex), staging_bytes_(staging_bytes) {
  if (staging_bytes == 0) throw std::invalid_argument("StagedDataPlane: a staging buffer of 0 bytes");
  staging_.reset(new unsigned char[staging_bytes]);
  one_count_.assign(std::size_t(host.size()), 0);
  slabs_ = std::make_shared<SlabPool>();
}

StagedDataPlane::~StagedDataPlane() = default;

std::size_t StagedDataPlane::slabs_made() const { return slabs_->made(); }

idx StagedDataPlane::piece_count(DType t, idx parts, const char* what) const {
  const idx n = idx(staging_bytes_ / (std::size_t(parts) * dtype_bytes(t)));
  if (n < 1)
    throw std::invalid_argument(std::string("StagedDataPlane ") + what + ": a staging buffer of " +
                                std::to_string(staging_bytes_) + " bytes cannot hold one piece (" +
                                std::to_string(parts) + " elements of " + std::to_string(dtype_bytes(t)) +
                                " bytes)");
  return n;
}

void StagedDataPlane::do_allreduce_sum(void* data, idx count, DType t) const {
  if (count <= 0 || size() == 1) return;
  const std::size_t elem = dtype_bytes(t);
  const idx piece = piece_count(t, 1, "all-reduce");
  auto* d = static_cast<unsigned char*>(data);
  with_type(t, [&](auto tag) {
    using T = decltype(tag);
    for (idx begin = 0; begin < count; begin += piece) {
      const idx n = std::min(piece, count - begin);
      unsigned char* at = d + std::size_t(begin) * elem;
      copy_to_host(ex_, staging_.get(), at, std::size_t(n) * elem);
      host_.allreduce_sum(reinterpret_cast<T*>(staging_.get()), n);
      copy_to_device(ex_, at, staging_.get(), std::size_t(n) * elem);
    }
  });
}

// Piece [begin, begin + n) of every rank's block: the send piece first in the buffer, the
// gathered pieces (rank q's at q * n) after it, copied to recv[q * count + begin, ...).
void StagedDataPlane::do_allgather(const void* send, void* recv, idx count, DType t) const {
  if (count <= 0) return;
  const std::size_t elem = dtype_bytes(t);
  const idx P = size();
  const idx piece = piece_count(t, P + 1, "all-gather");
  const auto* s = static_cast<const unsigned char*>(send);
  auto* r = static_cast<unsigned char*>(recv);
  with_type(t, [&](auto tag) {
    using T = decltype(tag);
    for (idx begin = 0; begin < count; begin += piece) {
      const idx n = std::min(piece, count - begin);
      unsigned char* host_send = staging_.get();
      unsigned char* host_recv = staging_.get() + std::size_t(n) * elem;
      copy_to_host(ex_, host_send, s + std::size_t(begin) * elem, std::size_t(n) * elem);
      host_.allgather(reinterpret_cast<const T*>(host_send), n, reinterpret_cast<T*>(host_recv));
      for (idx q = 0; q < P; ++q)
        copy_to_device(ex_, r + std::size_t(q * count + begin) * elem, host_recv + std::size_t(q * n) * elem,
                       std::size_t(n) * elem);
    }
  });
}

// Piece [begin, begin + n) of every rank's block: rank q's block's piece at q * n in the buffer,
// this rank's reduced piece after them.
void StagedDataPlane::do_reduce_scatter_sum(const void* send, void* recv, idx count, DType t) const {
  if (count <= 0) return;
  const std::size_t elem = dtype_bytes(t);
  const idx P = size();
  const idx piece = piece_count(t, P + 1, "reduce-scatter");
  const auto* s = static_cast<const unsigned char*>(send);
  auto* r = static_cast<unsigned char*>(recv);
  with_type(t, [&](auto tag) {
    using T = decltype(tag);
    for (idx begin = 0; begin < count; begin += piece) {
      const idx n = std::min(piece, count - begin);
      unsigned char* host_send = staging_.get();
      unsigned char* host_recv = staging_.get() + std::size_t(P * n) * elem;
      for (idx q = 0; q < P; ++q)
        copy_to_host(ex_, host_send + std::size_t(q * n) * elem, s + std::size_t(q * count + begin) * elem,
                     std::size_t(n) * elem);
      host_.reduce_scatter_sum(reinterpret_cast<const T*>(host_send), n, reinterpret_cast<T*>(host_recv));
      copy_to_device(ex_, r + std::size_t(begin) * elem, host_recv, std::size_t(n) * elem);
    }
  });
}

// Each rank's part in turn, piece by piece: the piece summed onto that rank alone (a reduce-scatter
// whose other counts are 0) and copied to recv there.
Request StagedDataPlane::do_ireduce_scatter_sum(void* data, std::span<const idx> counts, void* recv,
                                                DType t) const {
  idx total = 0;
  for (const idx c : counts) total += c;
  if (total == 0) return Request();
  const std::size_t elem = dtype_bytes(t);
  const idx piece = piece_count(t, 2, "reduce-scatter");
  const auto* s = static_cast<const unsigned char*>(data);
  auto* r = static_cast<unsigned char*>(recv);
  with_type(t, [&](auto tag) {
    using T = decltype(tag);
    T* host_send = reinterpret_cast<T*>(staging_.get());
    T* host_recv = host_send + piece;
    idx first = 0;  // rank q's part begins at send[first]
    for (int q = 0; q < size(); first += counts[std::size_t(q)], ++q) {
      for (idx begin = 0; begin < counts[std::size_t(q)]; begin += piece) {
        const idx n = std::min(piece, counts[std::size_t(q)] - begin);
        copy_to_host(ex_, host_send, s + std::size_t(first + begin) * elem, std::size_t(n) * elem);
        std::fill(one_count_.begin(), one_count_.end(), idx(0));  // whatever an earlier throw left
        one_count_[std::size_t(q)] = n;
        host_.ireduce_scatter_sum(host_send, one_count_, host_recv).wait();
        if (q == rank()) copy_to_device(ex_, r + std::size_t(begin) * elem, host_recv, std::size_t(n) * elem);
      }
    }
  });
  return Request();
}

Request StagedDataPlane::do_isend(const void* data, idx count, DType t, int dest, int tag) const {
  const std::size_t bytes = std::size_t(std::max<idx>(count, 0)) * dtype_bytes(t);
  auto pending = std::make_unique<StagedPending>(slabs_, ex_, nullptr, bytes, staging_bytes_);
  const auto* d = static_cast<const unsigned char*>(data);
  for (std::size_t at = 0; at < bytes; at += staging_bytes_) {
    const std::size_t n = std::min(staging_bytes_, bytes - at);
    pending->slabs().push_back(slabs_->take(n));
    unsigned char* slab = pending->slabs().back().data.get();
    copy_to_host(ex_, slab, d + at, n);
    pending->pieces().push_back(host_.isend(slab, idx(n), dest, tag));
  }
  return Request(std::move(pending));
}

Request StagedDataPlane::do_irecv(void* data, idx count, DType t, int source, int tag) const {
  const std::size_t bytes = std::size_t(std::max<idx>(count, 0)) * dtype_bytes(t);
  auto pending = std::make_unique<StagedPending>(slabs_, ex_, data, bytes, staging_bytes_);
  for (std::size_t at = 0; at < bytes; at += staging_bytes_) {
    const std::size_t n = std::min(staging_bytes_, bytes - at);
    pending->slabs().push_back(slabs_->take(n));
    pending->pieces().push_back(host_.irecv(pending->slabs().back().data.get(), idx(n), source, tag));
  }
  return Request(std::move(pending));
}

}  // namespace nexus
