// Whole-buffer ops on the GPU: fills, copies, strided copies and adds, scale, axpy, the widened
// and narrowed adds (grid-stride elementwise loops) and the
// reductions the trainer reads on the host (sum of squares, all finite, counting targets). Same
// contracts as kernels/cpu/buffer_ops.cpp; the sum of squares keeps the CPU's fixed 2^15-element
// blocks added in block order, so its result is deterministic (and equal on every replica).
#include <cmath>

#include "kernels/cuda/backend.h"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/reduce.cuh"
#include "kernels/cuda/scratch.cuh"

namespace nexus::cuda {

namespace {

constexpr unsigned kThreads = 256;
constexpr idx kReduceBlock = idx{1} << 15;  // as the CPU backend

template <typename T>
__global__ void fill_kernel(T* x, idx n, T value) {
  for (idx i = blockIdx.x * idx(blockDim.x) + threadIdx.x; i < n; i += idx(gridDim.x) * blockDim.x) x[i] = value;
}

// Element i of a Strided3 view (i2 innermost): its offsets on the dst and src sides.
struct StridedOffsets {
  idx dst, src;
};
__device__ inline StridedOffsets strided_offsets(const Strided3& s, idx i) {
  const idx i2 = i % s.n2, i01 = i / s.n2;
  const idx i1 = i01 % s.n1, i0 = i01 / s.n1;
  return {i0 * s.dst_ld0 + i1 * s.dst_ld1 + i2, i0 * s.src_ld0 + i1 * s.src_ld1 + i2};
}

template <typename T>
__global__ void copy_strided_kernel(T* __restrict__ dst, const T* __restrict__ src, Strided3 s) {
  for (idx i = blockIdx.x * idx(blockDim.x) + threadIdx.x; i < s.n0 * s.n1 * s.n2; i += idx(gridDim.x) * blockDim.x) {
    const StridedOffsets at = strided_offsets(s, i);
    dst[at.dst] = src ? src[at.src] : T(compute_t<T>(0));
  }
}

template <typename T>
__global__ void add_strided_kernel(T* __restrict__ dst, const T* __restrict__ src, Strided3 s) {
  using C = compute_t<T>;
  for (idx i = blockIdx.x * idx(blockDim.x) + threadIdx.x; i < s.n0 * s.n1 * s.n2; i += idx(gridDim.x) * blockDim.x) {
    const StridedOffsets at = strided_offsets(s, i);
    dst[at.dst] = T(C(dst[at.dst]) + C(src[at.src]));
  }
}

template <typename T>
__global__ void scale_kernel(T* x, idx n, T factor) {
  using C = compute_t<T>;
  for (idx i = blockIdx.x * idx(blockDim.x) + threadIdx.x; i < n; i += idx(gridDim.x) * blockDim.x)
    x[i] = T(C(x[i]) * C(factor));
}

// y + a*x rounded twice, as the CPU computes it (ISO C++ builds do not contract into an FMA;
// nvcc would): the GPU's axpy then equals the CPU's bit for bit.
__device__ inline float add_product_rn(float y, float a, float x) { return __fadd_rn(y, __fmul_rn(a, x)); }
__device__ inline double add_product_rn(double y, double a, double x) { return __dadd_rn(y, __dmul_rn(a, x)); }

template <typename T>
__global__ void axpy_kernel(T* __restrict__ y, const T* __restrict__ x, idx n, T alpha) {
  for (idx i = blockIdx.x * idx(blockDim.x) + threadIdx.x; i < n; i += idx(gridDim.x) * blockDim.x)
    y[i] = T(add_product_rn(compute_t<T>(y[i]), compute_t<T>(alpha), compute_t<T>(x[i])));
}

// The widened and narrowed adds: every sum in accum_t<T> (= compute_t<T>), the only rounding to
// T that of add_narrowed's store. For float and double a single add each, as the CPU's axpy with
// alpha 1 computes it (1 * x is x exactly), so the results match bit for bit.
template <typename T, bool kAdd>
__global__ void widen_kernel(accum_t<T>* __restrict__ acc, const T* __restrict__ x, idx n) {
  using A = accum_t<T>;
  for (idx i = blockIdx.x * idx(blockDim.x) + threadIdx.x; i < n; i += idx(gridDim.x) * blockDim.x)
    acc[i] = kAdd ? acc[i] + A(x[i]) : A(x[i]);
}

template <typename T>
__global__ void add_narrowed_kernel(T* __restrict__ y, const accum_t<T>* __restrict__ x, idx n) {
  using A = accum_t<T>;
  for (idx i = blockIdx.x * idx(blockDim.x) + threadIdx.x; i < n; i += idx(gridDim.x) * blockDim.x)
    y[i] = T(A(y[i]) + x[i]);
}

// One CUDA block per reduction block: each thread sums a strided share in double, then the fixed
// block tree of kernels/cuda/reduce.cuh; partial[b] = the block's sum. The order is fixed by the
// launch shape alone.
template <typename T>
__global__ void sum_of_squares_blocks(const T* __restrict__ x, idx n, double* __restrict__ partial) {
  const idx start = blockIdx.x * kReduceBlock;
  const idx len = n - start < kReduceBlock ? n - start : kReduceBlock;
  double sum = 0.0;
  for (idx i = threadIdx.x; i < len; i += kThreads) {
    const double v = static_cast<double>(compute_t<T>(x[start + i]));  // exact from bf16 too
    sum += v * v;
  }
  sum = block_sum<kThreads>(sum);
  if (threadIdx.x == 0) partial[blockIdx.x] = sum;
}

// The block sums added in block order by one thread, as the CPU adds them.
__global__ void sum_in_order(const double* __restrict__ partial, idx blocks, double* __restrict__ total) {
  double s = 0.0;
  for (idx b = 0; b < blocks; ++b) s += partial[b];
  *total = s;
}

template <typename T>
__global__ void any_not_finite(const T* __restrict__ x, idx n, unsigned* __restrict__ bad) {
  unsigned mine = 0;
  for (idx i = blockIdx.x * idx(blockDim.x) + threadIdx.x; i < n; i += idx(gridDim.x) * blockDim.x)
    mine |= !isfinite(compute_t<T>(x[i]));
  if (mine) atomicOr(bad, 1u);  // an OR: the order of arrival cannot change the result
}

__global__ void count_nonnegative(const std::int32_t* __restrict__ targets, idx n, unsigned long long* __restrict__ count) {
  unsigned long long mine = 0;
  for (idx i = blockIdx.x * idx(blockDim.x) + threadIdx.x; i < n; i += idx(gridDim.x) * blockDim.x)
    mine += targets[i] >= 0;
  if (mine) atomicAdd(count, mine);  // integer sums are exact in any order
}

}  // namespace

template <typename T>
void fill_constant(const Exec& ex, T* x, idx n, T value) {
  launch_over<kThreads>(ex, n, fill_kernel<T>, x, n, value);
}

template <typename T>
void copy_values(const Exec& ex, T* dst, const T* src, idx n) {
  if (n > 0)
    NEXUS_CUDA_CHECK(cudaMemcpyAsync(dst, src, std::size_t(n) * sizeof(T), cudaMemcpyDeviceToDevice, stream_of(ex)));
}

template <typename T>
void copy_strided(const Exec& ex, T* dst, const T* src, const Strided3& s) {
  launch_over<kThreads>(ex, s.n0 * s.n1 * s.n2, copy_strided_kernel<T>, dst, src, s);
}

template <typename T>
void add_strided(const Exec& ex, T* dst, const T* src, const Strided3& s) {
  launch_over<kThreads>(ex, s.n0 * s.n1 * s.n2, add_strided_kernel<T>, dst, src, s);
}

template <typename T>
void scale_inplace(const Exec& ex, T* x, idx n, T factor) {
  launch_over<kThreads>(ex, n, scale_kernel<T>, x, n, factor);
}

template <typename T>
void axpy(const Exec& ex, T* y, const T* x, idx n, T alpha) {
  launch_over<kThreads>(ex, n, axpy_kernel<T>, y, x, n, alpha);
}

template <typename T>
void copy_widened(const Exec& ex, accum_t<T>* acc, const T* x, idx n) {
  launch_over<kThreads>(ex, n, widen_kernel<T, false>, acc, x, n);
}

template <typename T>
void add_widened(const Exec& ex, accum_t<T>* acc, const T* x, idx n) {
  launch_over<kThreads>(ex, n, widen_kernel<T, true>, acc, x, n);
}

template <typename T>
void add_narrowed(const Exec& ex, T* y, const accum_t<T>* x, idx n) {
  launch_over<kThreads>(ex, n, add_narrowed_kernel<T>, y, x, n);
}

template <typename T>
double sum_of_squares(const Exec& ex, const T* x, idx n) {
  if (n <= 0) return 0.0;
  const idx blocks = (n + kReduceBlock - 1) / kReduceBlock;
  auto* partial = static_cast<double*>(reduction_scratch(ex, std::size_t(blocks + 1) * sizeof(double)));
  sum_of_squares_blocks<<<static_cast<unsigned>(blocks), kThreads, 0, stream_of(ex)>>>(x, n, partial);
  NEXUS_CUDA_CHECK_LAUNCH();
  sum_in_order<<<1, 1, 0, stream_of(ex)>>>(partial, blocks, partial + blocks);
  NEXUS_CUDA_CHECK_LAUNCH();
  double total = 0.0;
  copy_to_host(ex, &total, partial + blocks, sizeof total);
  return total;
}

template <typename T>
bool all_finite(const Exec& ex, const T* x, idx n) {
  if (n <= 0) return true;
  auto* bad = static_cast<unsigned*>(reduction_scratch(ex, sizeof(unsigned)));
  NEXUS_CUDA_CHECK(cudaMemsetAsync(bad, 0, sizeof(unsigned), stream_of(ex)));
  launch_over<kThreads>(ex, n, any_not_finite<T>, x, n, bad);
  unsigned host = 0;
  copy_to_host(ex, &host, bad, sizeof host);
  return host == 0;
}

idx count_targets(const Exec& ex, const std::int32_t* targets, idx N) {
  if (N <= 0) return 0;
  auto* count = static_cast<unsigned long long*>(reduction_scratch(ex, sizeof(unsigned long long)));
  NEXUS_CUDA_CHECK(cudaMemsetAsync(count, 0, sizeof(unsigned long long), stream_of(ex)));
  launch_over<kThreads>(ex, N, count_nonnegative, targets, N, count);
  unsigned long long host = 0;
  copy_to_host(ex, &host, count, sizeof host);
  return static_cast<idx>(host);
}

#define NEXUS_INSTANTIATE(T)                                              \
  template void fill_constant<T>(const Exec&, T*, idx, T);                \
  template void copy_values<T>(const Exec&, T*, const T*, idx);           \
  template void scale_inplace<T>(const Exec&, T*, idx, T);                \
  template void axpy<T>(const Exec&, T*, const T*, idx, T);               \
  template void copy_widened<T>(const Exec&, accum_t<T>*, const T*, idx); \
  template void add_widened<T>(const Exec&, accum_t<T>*, const T*, idx);  \
  template void add_narrowed<T>(const Exec&, T*, const accum_t<T>*, idx); \
  template double sum_of_squares<T>(const Exec&, const T*, idx);          \
  template bool all_finite<T>(const Exec&, const T*, idx);
NEXUS_INSTANTIATE(float)
NEXUS_INSTANTIATE(double)
NEXUS_INSTANTIATE(bf16)  // Model<bf16>'s activations and compute weights; arithmetic in float
#undef NEXUS_INSTANTIATE
#define NEXUS_INSTANTIATE(T)                                                          \
  template void copy_strided<T>(const Exec&, T*, const T*, const Strided3&); \
  template void add_strided<T>(const Exec&, T*, const T*, const Strided3&);
NEXUS_INSTANTIATE(float)
NEXUS_INSTANTIATE(double)
NEXUS_INSTANTIATE(bf16)
#undef NEXUS_INSTANTIATE

}  // namespace nexus::cuda
