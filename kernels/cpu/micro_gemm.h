// The register-tiled micro-GEMM of the CPU kernels that run their own small products inside an
// OpenMP region (SSD chunks, attention tiles): BLAS may not be called there (OpenBLAS is the OpenMP
// build and nested calls are slow), and these products are small (64-256 rows), strided, often
// triangular and often scaled by a diagonal on either side.
#pragma once

#include <algorithm>
#include <cstring>

#include "kernels/types.h"

namespace nexus::cpu::micro {

#if defined(__AVX512F__)
constexpr int kVecBytes = 64;
#elif defined(__AVX__)
constexpr int kVecBytes = 32;
#else
constexpr int kVecBytes = 16;
#endif

template <typename T>
struct VecOf;
template <>
struct VecOf<float> {
  typedef float type __attribute__((vector_size(kVecBytes)));
};
template <>
struct VecOf<double> {
  typedef double type __attribute__((vector_size(kVecBytes)));
};
template <typename T>
using Vec = typename VecOf<T>::type;
template <typename T>
constexpr idx kLanes = idx(kVecBytes / sizeof(T));

constexpr int kMR = 8;  // rows of a register tile
constexpr int kNV = 2;  // vectors per row of a register tile (kMR*kNV accumulators)

template <typename T>
inline Vec<T> vload(const T* p) {
  Vec<T> v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <typename T>
inline void vstore(T* p, const Vec<T>& v) {
  std::memcpy(p, &v, sizeof v);
}

// Which zero triangle of a square operand lets a tile skip part of the k range (the skipped
// entries must still hold explicit zeros: a tile straddling the diagonal reads them), or, for
// out_lower, which output tiles are not wanted (only C[i,j] with j <= i is computed).
enum class Tri { full, out_lower, a_lower, a_upper, b_lower };

// One MR x (NV vectors) tile: c = [c +] rs[r] * cs[j] * sum_{k in [kb,ke)} A(r,k) b[k,j].
// A(r,k) = a[r*lda + k], or a[k*lda + r] when a_trans (read in place, never copied).
template <typename T, int MR, int NV, bool a_trans>
inline void tile(idx kb, idx ke, const T* __restrict a, idx lda, const T* __restrict b, idx ldb, T* __restrict c,
                 idx ldc, const T* rs, const T* cs, bool accumulate) {
  constexpr idx W = kLanes<T>;
  Vec<T> acc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = Vec<T>{};
  for (idx k = kb; k < ke; ++k) {
    Vec<T> bv[NV];
    for (int v = 0; v < NV; ++v) bv[v] = vload(b + k * ldb + v * W);
    for (int r = 0; r < MR; ++r) {
      const T av = a_trans ? a[k * lda + r] : a[r * lda + k];
      for (int v = 0; v < NV; ++v) acc[r][v] += av * bv[v];
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) {
      Vec<T> o = acc[r][v];
      if (cs) o *= vload(cs + v * W);
      if (rs) o *= rs[r];
      T* p = c + r * ldc + v * W;
      if (accumulate) o += vload(p);
      vstore(p, o);
    }
}

// Same for the last n < kLanes columns of a row band.
template <typename T, int MR, bool a_trans>
inline void tile_tail(idx kb, idx ke, const T* __restrict a, idx lda, const T* __restrict b, idx ldb, T* __restrict c,
                      idx ldc, const T* rs, const T* cs, bool accumulate, idx n) {
  T acc[MR][kLanes<T>] = {};
  for (idx k = kb; k < ke; ++k)
    for (int r = 0; r < MR; ++r) {
      const T av = a_trans ? a[k * lda + r] : a[r * lda + k];
      for (idx j = 0; j < n; ++j) acc[r][j] += av * b[k * ldb + j];
    }
  for (int r = 0; r < MR; ++r)
    for (idx j = 0; j < n; ++j) {
      T o = acc[r][j];
      if (cs) o *= cs[j];
      if (rs) o *= rs[r];
      c[r * ldc + j] = accumulate ? c[r * ldc + j] + o : o;
    }
}

// MR rows by n <= kNV*kLanes columns.
template <typename T, int MR, bool a_trans>
inline void band(idx kb, idx ke, const T* a, idx lda, const T* b, idx ldb, T* c, idx ldc, const T* rs, const T* cs,
                 bool accumulate, idx n) {
  constexpr idx W = kLanes<T>;
  idx j = 0;
  for (; j + kNV * W <= n; j += kNV * W)
    tile<T, MR, kNV, a_trans>(kb, ke, a, lda, b + j, ldb, c + j, ldc, rs, cs ? cs + j : nullptr, accumulate);
  for (; j + W <= n; j += W)
    tile<T, MR, 1, a_trans>(kb, ke, a, lda, b + j, ldb, c + j, ldc, rs, cs ? cs + j : nullptr, accumulate);
  if (j < n)
    tile_tail<T, MR, a_trans>(kb, ke, a, lda, b + j, ldb, c + j, ldc, rs, cs ? cs + j : nullptr, accumulate, n - j);
}

// C[M,Nc] = [C +] diag(rs) (A[M,K] B[K,Nc]) diag(cs); rs, cs may be null (ones). Column panels
// outermost so a panel of B (K x 2 vectors) stays in L1 while the row tiles stream past it.
template <typename T, Tri tri, bool a_trans>
void gemm(idx M, idx Nc, idx K, const T* a, idx lda, const T* b, idx ldb, T* c, idx ldc, bool accumulate,
          const T* rs = nullptr, const T* cs = nullptr) {
  constexpr idx NR = kNV * kLanes<T>;
  for (idx j0 = 0; j0 < Nc; j0 += NR) {
    const idx nw = std::min(NR, Nc - j0);
    for (idx i0 = 0; i0 < M; i0 += kMR) {
      const idx mw = std::min<idx>(kMR, M - i0);
      if (tri == Tri::out_lower && j0 > i0 + mw - 1) continue;
      idx kb = 0, ke = K;
      if (tri == Tri::a_lower) ke = std::min(K, i0 + mw);
      if (tri == Tri::a_upper) kb = i0;
      if (tri == Tri::b_lower) kb = j0;
      const T* ap = a_trans ? a + i0 : a + i0 * lda;
      T* cp = c + i0 * ldc + j0;
      const T* csp = cs ? cs + j0 : nullptr;
      if (mw == kMR) {
        band<T, kMR, a_trans>(kb, ke, ap, lda, b + j0, ldb, cp, ldc, rs ? rs + i0 : nullptr, csp, accumulate, nw);
      } else {
        for (idx r = 0; r < mw; ++r)
          band<T, 1, a_trans>(kb, ke, a_trans ? ap + r : ap + r * lda, lda, b + j0, ldb, cp + r * ldc, ldc,
                              rs ? rs + i0 + r : nullptr, csp, accumulate, nw);
      }
    }
  }
}

// dst[c*ldd + r] = src[r*lds + c], in 16 x 16 blocks so both sides stay in cache.
template <typename T>
void transpose(const T* __restrict src, idx rows, idx cols, idx lds, T* __restrict dst, idx ldd) {
  constexpr idx kB = 16;
  for (idx r0 = 0; r0 < rows; r0 += kB)
    for (idx c0 = 0; c0 < cols; c0 += kB) {
      const idx r1 = std::min(rows, r0 + kB), c1 = std::min(cols, c0 + kB);
      for (idx cc = c0; cc < c1; ++cc)
        for (idx r = r0; r < r1; ++r) dst[cc * ldd + r] = src[r * lds + cc];
    }
}

}  // namespace nexus::cpu::micro
