// Linear layers through BLAS. Weights are stored [out, in] (PyTorch / Hugging Face layout), so the
// forward is out = inp @ W^T and both backward products are plain GEMMs with a transpose flag.
#include <cblas.h>

#include "kernels/cpu/backend.h"

namespace nexus::cpu {

namespace {

// C[m,n] = alpha * op(A) op(B) + beta * C, row-major.
inline void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, idx m, idx n, idx k, const float* a, idx lda,
                 const float* b, idx ldb, float beta, float* c, idx ldc) {
  cblas_sgemm(CblasRowMajor, ta, tb, int(m), int(n), int(k), 1.0f, a, int(lda), b, int(ldb), beta, c, int(ldc));
}
inline void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, idx m, idx n, idx k, const double* a, idx lda,
                 const double* b, idx ldb, double beta, double* c, idx ldc) {
  cblas_dgemm(CblasRowMajor, ta, tb, int(m), int(n), int(k), 1.0, a, int(lda), b, int(ldb), beta, c, int(ldc));
}

// y[m] = A[m,n] x[n], row-major.
inline void gemv(idx m, idx n, const float* a, const float* x, float* y) {
  cblas_sgemv(CblasRowMajor, CblasNoTrans, int(m), int(n), 1.0f, a, int(n), x, 1, 0.0f, y, 1);
}
inline void gemv(idx m, idx n, const double* a, const double* x, double* y) {
  cblas_dgemv(CblasRowMajor, CblasNoTrans, int(m), int(n), 1.0, a, int(n), x, 1, 0.0, y, 1);
}

}  // namespace

template <typename T>
void matmul_forward(const Exec&, T* out, const T* inp, const T* weight, idx N, idx I, idx O) {
  // out[N,O] = inp[N,I] @ weight[O,I]^T. One row (a decode step of one sequence) is a
  // matrix-vector product: GEMM would pack the whole weight matrix for a single output row.
  if (N == 1 && I > 0) return gemv(O, I, weight, inp, out);  // (BLAS rejects lda = 0)
  gemm(CblasNoTrans, CblasTrans, N, O, I, inp, I, weight, I, T(0), out, O);
}

template <typename T>
void matmul_backward(const Exec&, T* dinp, accum_t<T>* dweight, const T* dout, const T* inp, const T* weight, idx N,
                     idx I, idx O, bool accumulate_dinp) {
  // dinp[N,I] (+)= dout[N,O] @ weight[O,I]
  if (dinp) gemm(CblasNoTrans, CblasNoTrans, N, I, O, dout, O, weight, I, accumulate_dinp ? T(1) : T(0), dinp, I);
  // dweight[O,I] += dout[N,O]^T @ inp[N,I]
  gemm(CblasTrans, CblasNoTrans, O, I, N, dout, O, inp, I, T(1), dweight, I);
}

template void matmul_forward<float>(const Exec&, float*, const float*, const float*, idx, idx, idx);
template void matmul_forward<double>(const Exec&, double*, const double*, const double*, idx, idx, idx);
template void matmul_backward<float>(const Exec&, float*, float*, const float*, const float*, const float*, idx, idx,
                                     idx, bool);
template void matmul_backward<double>(const Exec&, double*, double*, const double*, const double*, const double*, idx,
                                      idx, idx, bool);

}  // namespace nexus::cpu
