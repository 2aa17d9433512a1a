// Whole-buffer element loops: fills, copies, scaling, axpy (which the widened and narrowed adds are
// here), strided copies, and the two reductions over the gradient (sum of squares, all finite).
// Memory-bound; parallel only when the buffer is large enough to pay for waking the threads.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "kernels/cpu/backend.h"

namespace nexus::cpu {

namespace {

// Below this many elements a loop runs on the calling thread.
constexpr idx kParallelElems = idx{1} << 15;

// Fixed, thread-count-independent reduction blocks (see sum_of_squares in op_declarations.inc).
constexpr idx kReduceBlock = idx{1} << 15;

}  // namespace

template <typename T>
void fill_constant(const Exec&, T* x, idx n, T value) {
#pragma omp parallel for simd schedule(static) if (n > kParallelElems)
  for (idx i = 0; i < n; ++i) x[i] = value;
}

template <typename T>
void copy_values(const Exec&, T* __restrict dst, const T* __restrict src, idx n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelElems)
  for (idx i = 0; i < n; ++i) dst[i] = src[i];
}

template <typename T>
void scale_inplace(const Exec&, T* x, idx n, T factor) {
#pragma omp parallel for simd schedule(static) if (n > kParallelElems)
  for (idx i = 0; i < n; ++i) x[i] *= factor;
}

template <typename T>
void axpy(const Exec&, T* __restrict y, const T* __restrict x, idx n, T alpha) {
#pragma omp parallel for simd schedule(static) if (n > kParallelElems)
  for (idx i = 0; i < n; ++i) y[i] += alpha * x[i];
}

// The CPU computes float and double only, where accum_t<T> = T: widening and narrowing are no-ops.
template <typename T>
void copy_widened(const Exec& ex, accum_t<T>* acc, const T* x, idx n) {
  static_assert(std::is_same_v<accum_t<T>, T>);
  copy_values(ex, acc, x, n);
}

template <typename T>
void add_widened(const Exec& ex, accum_t<T>* acc, const T* x, idx n) {
  static_assert(std::is_same_v<accum_t<T>, T>);
  axpy(ex, acc, x, n, T(1));
}

template <typename T>
void add_narrowed(const Exec& ex, T* y, const accum_t<T>* x, idx n) {
  static_assert(std::is_same_v<accum_t<T>, T>);
  axpy(ex, y, x, n, T(1));
}

template <typename T>
void copy_strided(const Exec&, T* dst, const T* src, const Strided3& s) {
  for (idx i0 = 0; i0 < s.n0; ++i0)
    for (idx i1 = 0; i1 < s.n1; ++i1) {
      T* d = dst + i0 * s.dst_ld0 + i1 * s.dst_ld1;
      if (src)
        std::memcpy(d, src + i0 * s.src_ld0 + i1 * s.src_ld1, std::size_t(s.n2) * sizeof(T));
      else
        std::fill(d, d + s.n2, T(0));
    }
}

template <typename T>
void add_strided(const Exec&, T* dst, const T* src, const Strided3& s) {
  for (idx i0 = 0; i0 < s.n0; ++i0)
    for (idx i1 = 0; i1 < s.n1; ++i1) {
      T* __restrict d = dst + i0 * s.dst_ld0 + i1 * s.dst_ld1;
      const T* __restrict a = src + i0 * s.src_ld0 + i1 * s.src_ld1;
#pragma omp simd
      for (idx i = 0; i < s.n2; ++i) d[i] += a[i];
    }
}

template <typename T>
double sum_of_squares(const Exec&, const T* x, idx n) {
  const idx blocks = (n + kReduceBlock - 1) / kReduceBlock;
  std::vector<double> partial(static_cast<std::size_t>(blocks));  // one sum of squares per block
#pragma omp parallel for schedule(static)
  for (idx b = 0; b < blocks; ++b) {
    const T* __restrict xb = x + b * kReduceBlock;
    const idx len = std::min(kReduceBlock, n - b * kReduceBlock);
    double sum = 0.0;
#pragma omp simd reduction(+ : sum)
    for (idx i = 0; i < len; ++i) {
      const double v = static_cast<double>(xb[i]);
      sum += v * v;
    }
    partial[static_cast<std::size_t>(b)] = sum;
  }
  double total = 0.0;
  for (double s : partial) total += s;
  return total;
}

template <typename T>
bool all_finite(const Exec&, const T* x, idx n) {
  int bad = 0;
#pragma omp parallel for simd schedule(static) reduction(| : bad)
  for (idx i = 0; i < n; ++i) bad |= !(std::fabs(x[i]) <= std::numeric_limits<T>::max());  // NaN compares false
  return bad == 0;
}

#define NEXUS_INSTANTIATE(T)                                                 \
  template void fill_constant<T>(const Exec&, T*, idx, T);                   \
  template void copy_values<T>(const Exec&, T*, const T*, idx);              \
  template void scale_inplace<T>(const Exec&, T*, idx, T);                   \
  template void axpy<T>(const Exec&, T*, const T*, idx, T);                  \
  template void copy_widened<T>(const Exec&, T*, const T*, idx);             \
  template void add_widened<T>(const Exec&, T*, const T*, idx);              \
  template void add_narrowed<T>(const Exec&, T*, const T*, idx);             \
  template void copy_strided<T>(const Exec&, T*, const T*, const Strided3&); \
  template void add_strided<T>(const Exec&, T*, const T*, const Strided3&);  \
  template double sum_of_squares<T>(const Exec&, const T*, idx);             \
  template bool all_finite<T>(const Exec&, const T*, idx);
NEXUS_INSTANTIATE(float)
NEXUS_INSTANTIATE(double)
#undef NEXUS_INSTANTIATE

}  // namespace nexus::cpu
