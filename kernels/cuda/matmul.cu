// Linear layers through cuBLASLt. Weights are stored [out, in] row-major (the CPU's layout), so
// each product is written for cuBLASLt's column-major view, in which a row-major [r, c] matrix is
// its own transpose [c, r] with leading dimension c:
//   forward   out[N,O]    = inp[N,I] @ W[O,I]^T    ->  out^T[O,N]  = op_T(W) @ inp^T
//   dinp      dinp[N,I]  (+)= dout[N,O] @ W[O,I]     ->  dinp^T[I,N] = W^T @ dout^T
//   dweight   dweight[O,I] += dout^T @ inp[N,I]     ->  dweight^T[I,O] = inp^T @ op_T(dout^T)
// Inputs are T (fp32, fp64 or bf16), accumulation is in the compute type (fp32 for fp32 and
// bf16: no TF32, so fp32 GEMMs keep fp32 accuracy; fp64 for fp64), and the weight gradient is
// added (beta = 1) into the accumulator-type delta buffer, as the CPU backend does.
#include <cublasLt.h>

#include <mutex>
#include <string>

#include "kernels/cuda/backend.h"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/lazy_library.h"
#include "kernels/cuda/scratch.cuh"

namespace nexus::cuda {

namespace {

constexpr std::size_t kWorkspaceBytes = std::size_t(32) << 20;  // cuBLASLt's recommendation for Hopper

// cublasGetStatusName lives in libcublas, which nothing else here needs: name the statuses
// cuBLASLt returns ourselves.
const char* status_name(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "cublasStatus_t";
  }
}

void check_lt(cublasStatus_t status, const char* call) {
  if (status != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error(std::string("cuBLASLt error in ") + call + ": " + status_name(status) + " (" +
                             std::to_string(int(status)) + ")");
}
#define NEXUS_LT_CHECK(call) check_lt((call), #call)

// cuBLASLt's entry points, opened on the first GEMM (kernels/cuda/lazy_library.h).
struct CublasLt {
  DynamicLibrary library{"libcublasLt.so." + std::to_string(CUBLAS_VER_MAJOR)};
  NEXUS_LIBRARY_FUNCTION(library, cublasLtCreate);
  NEXUS_LIBRARY_FUNCTION(library, cublasLtMatmulDescCreate);
  NEXUS_LIBRARY_FUNCTION(library, cublasLtMatmulDescDestroy);
  NEXUS_LIBRARY_FUNCTION(library, cublasLtMatmulDescSetAttribute);
  NEXUS_LIBRARY_FUNCTION(library, cublasLtMatrixLayoutCreate);
  NEXUS_LIBRARY_FUNCTION(library, cublasLtMatrixLayoutDestroy);
  NEXUS_LIBRARY_FUNCTION(library, cublasLtMatmulPreferenceCreate);
  NEXUS_LIBRARY_FUNCTION(library, cublasLtMatmulPreferenceDestroy);
  NEXUS_LIBRARY_FUNCTION(library, cublasLtMatmulPreferenceSetAttribute);
  NEXUS_LIBRARY_FUNCTION(library, cublasLtMatmulAlgoGetHeuristic);
  NEXUS_LIBRARY_FUNCTION(library, cublasLtMatmul);
};
const CublasLt& lt() {
  static const CublasLt api;
  return api;
}

// One handle for the process (cuBLASLt handles are not tied to a stream), made on first use.
cublasLtHandle_t lt_handle() {
  static std::once_flag once;
  static cublasLtHandle_t handle = nullptr;
  std::call_once(once, [] { NEXUS_LT_CHECK(lt().cublasLtCreate(&handle)); });
  return handle;
}

template <typename T>
struct GemmTypes;
template <>
struct GemmTypes<float> {
  static constexpr cudaDataType_t data = CUDA_R_32F, scale = CUDA_R_32F;
  static constexpr cublasComputeType_t compute = CUBLAS_COMPUTE_32F;  // plain fp32 FMA, no TF32
};
template <>
struct GemmTypes<double> {
  static constexpr cudaDataType_t data = CUDA_R_64F, scale = CUDA_R_64F;
  static constexpr cublasComputeType_t compute = CUBLAS_COMPUTE_64F;
};
template <>
struct GemmTypes<bf16> {
  static constexpr cudaDataType_t data = CUDA_R_16BF, scale = CUDA_R_32F;
  static constexpr cublasComputeType_t compute = CUBLAS_COMPUTE_32F;
};
template <typename T>
constexpr cudaDataType_t data_type() {
  return GemmTypes<T>::data;
}

// Owned cuBLASLt descriptors, destroyed on scope exit.
struct Layout {
  cublasLtMatrixLayout_t desc = nullptr;
  // A column-major rows x cols matrix with leading dimension ld.
  Layout(cudaDataType_t type, idx rows, idx cols, idx ld) {
    NEXUS_LT_CHECK(lt().cublasLtMatrixLayoutCreate(&desc, type, std::uint64_t(rows), std::uint64_t(cols), ld));
  }
  ~Layout() { lt().cublasLtMatrixLayoutDestroy(desc); }
  Layout(const Layout&) = delete;
  Layout& operator=(const Layout&) = delete;
};

// D[m,n] = alpha * op(A) @ op(B) + beta * C (column-major, C and D the same buffer), where op(A)
// is m x k and op(B) is k x n. A and B have type T; C/D have type Out (T, or the accumulator
// type for a weight gradient).
template <typename T, typename Out>
void gemm(const Exec& ex, bool trans_a, bool trans_b, idx m, idx n, idx k, const T* a, idx lda, const T* b, idx ldb,
          bool accumulate, Out* c, idx ldc) {
  using Scale = std::conditional_t<std::is_same_v<T, double>, double, float>;
  const Scale alpha = 1, beta = accumulate ? 1 : 0;
  cublasLtMatmulDesc_t op = nullptr;
  NEXUS_LT_CHECK(lt().cublasLtMatmulDescCreate(&op, GemmTypes<T>::compute, GemmTypes<T>::scale));
  struct OpGuard {
    cublasLtMatmulDesc_t d;
    ~OpGuard() { lt().cublasLtMatmulDescDestroy(d); }
  } op_guard{op};
  const cublasOperation_t ta = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, tb = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  NEXUS_LT_CHECK(lt().cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
  NEXUS_LT_CHECK(lt().cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
  // The layouts describe the matrices as stored (before op).
  const Layout la(data_type<T>(), trans_a ? k : m, trans_a ? m : k, lda);
  const Layout lb(data_type<T>(), trans_b ? n : k, trans_b ? k : n, ldb);
  const Layout lc(data_type<Out>(), m, n, ldc);
  cublasLtMatmulPreference_t pref = nullptr;
  NEXUS_LT_CHECK(lt().cublasLtMatmulPreferenceCreate(&pref));
  struct PrefGuard {
    cublasLtMatmulPreference_t p;
    ~PrefGuard() { lt().cublasLtMatmulPreferenceDestroy(p); }
  } pref_guard{pref};
  const std::size_t workspace_bytes = kWorkspaceBytes;
  NEXUS_LT_CHECK(lt().cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                            &workspace_bytes, sizeof workspace_bytes));
  cublasLtMatmulHeuristicResult_t best{};
  int found = 0;
  NEXUS_LT_CHECK(lt().cublasLtMatmulAlgoGetHeuristic(lt_handle(), op, la.desc, lb.desc, lc.desc, lc.desc, pref, 1,
                                                      &best, &found));
  if (found == 0)
    throw std::runtime_error("cuBLASLt has no algorithm for a " + std::to_string(m) + " x " + std::to_string(n) +
                             " x " + std::to_string(k) + " GEMM of these types");
  void* workspace = stream_scratch(ex, Scratch::gemm_workspace, workspace_bytes);
  NEXUS_LT_CHECK(lt().cublasLtMatmul(lt_handle(), op, &alpha, a, la.desc, b, lb.desc, &beta, c, lc.desc, c,
                                      lc.desc, &best.algo, workspace, workspace_bytes, stream_of(ex)));
}

}  // namespace

template <typename T>
void matmul_forward(const Exec& ex, T* out, const T* inp, const T* weight, idx N, idx I, idx O) {
  if (N <= 0 || O <= 0) return;
  // out^T[O,N] = op_T(W: stored [I,O], ld I) @ inp^T (stored [I,N], ld I)
  gemm(ex, true, false, O, N, I, weight, I, inp, I, false, out, O);
}

template <typename T>
void matmul_backward(const Exec& ex, T* dinp, accum_t<T>* dweight, const T* dout, const T* inp, const T* weight,
                     idx N, idx I, idx O, bool accumulate_dinp) {
  if (N <= 0 || I <= 0 || O <= 0) return;
  // dinp^T[I,N] (+)= W^T (stored [I,O], ld I) @ dout^T (stored [O,N], ld O)
  if (dinp) gemm(ex, false, false, I, N, O, weight, I, dout, O, accumulate_dinp, dinp, I);
  // dweight^T[I,O] += inp^T (stored [I,N], ld I) @ op_T(dout^T: stored [O,N], ld O)
  gemm(ex, false, true, I, O, N, inp, I, dout, O, true, dweight, I);
}

#define NEXUS_INSTANTIATE(T)                                                                                 \
  template void matmul_forward<T>(const Exec&, T*, const T*, const T*, idx, idx, idx);                      \
  template void matmul_backward<T>(const Exec&, T*, accum_t<T>*, const T*, const T*, const T*, idx, idx, idx, \
                                   bool);
NEXUS_INSTANTIATE(float)
NEXUS_INSTANTIATE(double)
NEXUS_INSTANTIATE(bf16)
#undef NEXUS_INSTANTIATE

}  // namespace nexus::cuda
