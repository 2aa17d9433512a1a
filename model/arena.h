// One allocation for all activations. The model lays its buffers out twice with the same code:
// once with no memory to measure the total, once over the real block to hand out pointers. Nothing
// is allocated or freed after construction.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>

#include "kernels/types.h"

namespace nexus {

class Arena {
 public:
  static constexpr std::size_t kAlign = 64;  // a cache line; also the widest vector load

  // Measuring pass: take() returns null and only counts.
  Arena() = default;
  // Carving pass over a block of `bytes` (from allocate()).
  Arena(std::byte* base, std::size_t bytes) : base_(base), capacity_(bytes) {}

  template <typename T>
  T* take(idx count) {
    T* p = base_ ? reinterpret_cast<T*>(base_ + align_up(used_)) : nullptr;
    // Saturating: a measuring pass over absurd sizes reports "more than any machine has"
    // (SIZE_MAX) for the memory check to refuse, instead of wrapping to a small number.
    std::size_t bytes = 0;
    if (count < 0 || __builtin_mul_overflow(static_cast<std::size_t>(count), sizeof(T), &bytes) ||
        __builtin_add_overflow(align_up(used_), bytes, &used_))
      used_ = SIZE_MAX;
    if (base_ && used_ > capacity_) throw std::bad_alloc();
    return p;
  }

  // Buffers that are never live at the same time (e.g. one mixer kind's backward scratch and the
  // other's) may overlap: mark(), carve one set, rewind(), carve the other, then keep the larger.
  std::size_t mark() const { return used_; }
  void rewind(std::size_t to) { used_ = to; }
  void advance_to(std::size_t at_least) { used_ = used_ > at_least ? used_ : at_least; }
  std::size_t used() const { return used_; }
  static std::size_t align_up(std::size_t n) { return n > SIZE_MAX - kAlign ? SIZE_MAX : (n + kAlign - 1) / kAlign * kAlign; }


 private:
  std::byte* base_ = nullptr;
  std::size_t capacity_ = 0;
  std::size_t used_ = 0;
};

}  // namespace nexus
