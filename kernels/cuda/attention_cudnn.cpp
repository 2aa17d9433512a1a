// cuDNN's fused attention (kernels/cuda/attention_cudnn.h) through the cudnn-frontend graph API:
// one sdpa or sdpa_backward graph per shape, built on its first call and kept.
//
// Layouts: cuDNN's attention tensors are 4-d [B, H, T, hd] with free strides, so Q, K, V, O, dO
// and the gradients are described in place over our [B, T, H, hd] buffers. Its Stats tensor is
// the natural-log log-sum-exp of the scaled scores per query row (what our lse is), but the
// backward reads it only packed as [B, H, Tq] before cuDNN 9.26: it lives in scratch and is
// transposed from and to our [B, Tq, H] lse. cuDNN overwrites dQ, dK, dV where our contract adds
// to them, so they land in scratch and are then added.
//
// Host code only (compiled by the C++ compiler): the transposes and the adds are the backend's
// copy_strided and add_strided.
//
// cuDNN is opened on the first call, not linked (kernels/cuda/lazy_library.h): this file is
// compiled with the frontend's NV_CUDNN_FRONTEND_USE_DYNAMIC_LOADING (kernels/CMakeLists.txt), so
// the frontend calls cuDNN through cudnn_frontend::cudnn_dlhandle, and opens the CUDA runtime and
// NVRTC (which a few of its engines compile with) itself.
#include "kernels/cuda/attention_cudnn.h"

#include <cuda_runtime.h>
#include <cudnn.h>
#include <cudnn_frontend.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>

#include "kernels/cuda/backend.h"
#include "kernels/cuda/lazy_library.h"
#include "kernels/cuda/scratch.cuh"

namespace cudnn_frontend {
void* cudnn_dlhandle = nullptr;  // the cuDNN the frontend calls: set by open_cudnn
}

namespace nexus::cuda {

namespace {

namespace fe = cudnn_frontend;
using Tensor = fe::graph::Tensor_attributes;

enum Uid : Tensor::uid_t { kQ = 1, kK, kV, kO, kStats, kdO, kdQ, kdK, kdV };

std::string describe(const AttentionShape& s) {
  return "B=" + std::to_string(s.B) + " Tq=" + std::to_string(s.Tq) + " Tk=" + std::to_string(s.Tk) +
         " n_heads=" + std::to_string(s.n_heads) + " n_kv_heads=" + std::to_string(s.n_kv_heads) +
         " head_dim=" + std::to_string(s.head_dim) + (s.causal ? " causal" : " non-causal");
}

void check(cudaError_t e, const char* call) {
  if (e != cudaSuccess) throw std::runtime_error(std::string("CUDA error in ") + call + ": " + cudaGetErrorString(e));
}
void check(cudnnStatus_t e, const char* call) {
  if (e != CUDNN_STATUS_SUCCESS)
    throw std::runtime_error(std::string("cuDNN error in ") + call + ": " + fe::detail::get_error_string(e));
}

void check(fe::error_t e, const char* direction, const char* stage, const AttentionShape& s) {
  if (e.is_bad())
    throw std::runtime_error(std::string("cuDNN attention ") + direction + " (" + describe(s) + "): " + stage +
                             " failed: " + e.get_message());
}

void require_supported(const AttentionShape& s, const char* direction, std::initializer_list<const void*> pointers) {
  if (const char* why = cudnn_attention_unsupported<bf16>(s))
    throw std::invalid_argument(std::string("cuDNN attention ") + direction + " (" + describe(s) +
                                ") cannot run this call: " + why);
  for (const void* p : pointers)
    if (reinterpret_cast<std::uintptr_t>(p) % 16 != 0)
      throw std::invalid_argument(std::string("cuDNN attention ") + direction + " (" + describe(s) +
                                  "): a buffer is not 16-byte aligned");
}

// A [B, T, H, hd] buffer as cuDNN's [B, H, T, hd].
Tensor& as_bthd(Tensor& t, Uid uid, idx B, idx T, idx H, idx hd) {
  return t.set_uid(uid).set_dim({B, H, T, hd}).set_stride({T * H * hd, hd, H * hd, 1});
}
Tensor& as_packed_stats(Tensor& t, const AttentionShape& s) {
  return t.set_uid(kStats)
      .set_data_type(fe::DataType_t::FLOAT)
      .set_dim({s.B, s.n_heads, s.Tq, 1})
      .set_stride({s.n_heads * s.Tq, s.Tq, 1, 1});
}

// bf16 in and out, fp32 softmax and accumulation.
std::shared_ptr<fe::graph::Graph> new_graph() {
  auto g = std::make_shared<fe::graph::Graph>();
  g->set_io_data_type(fe::DataType_t::BFLOAT16)
      .set_intermediate_data_type(fe::DataType_t::FLOAT)
      .set_compute_data_type(fe::DataType_t::FLOAT);
  return g;
}

// Q, K, V of shape s, described in place.
struct Inputs {
  std::shared_ptr<Tensor> q, k, v;
};
Inputs add_inputs(fe::graph::Graph& g, const AttentionShape& s) {
  const idx Hq = s.n_heads, Hkv = s.n_kv_heads, hd = s.head_dim;
  return {g.tensor(as_bthd(Tensor().set_name("Q"), kQ, s.B, s.Tq, Hq, hd)),
          g.tensor(as_bthd(Tensor().set_name("K"), kK, s.B, s.Tk, Hkv, hd)),
          g.tensor(as_bthd(Tensor().set_name("V"), kV, s.B, s.Tk, Hkv, hd))};
}

float attention_scale(const AttentionShape& s) { return 1.0f / std::sqrt(float(s.head_dim)); }

std::shared_ptr<fe::graph::Graph> forward_graph(const AttentionShape& s) {
  auto g = new_graph();
  const Inputs in = add_inputs(*g, s);
  auto options = fe::graph::SDPA_attributes()
                     .set_name("nexus_attention_forward")
                     .set_generate_stats(true)
                     .set_attn_scale(attention_scale(s));
  if (s.causal) options.set_causal_mask(true);  // top left: key j visible to query i iff j <= i
  auto [o, stats] = g->sdpa(in.q, in.k, in.v, options);
  as_bthd(o->set_output(true), kO, s.B, s.Tq, s.n_heads, s.head_dim);
  as_packed_stats(stats->set_output(true), s);
  return g;
}

std::shared_ptr<fe::graph::Graph> backward_graph(const AttentionShape& s) {
  auto g = new_graph();
  const Inputs in = add_inputs(*g, s);
  const idx Hq = s.n_heads, Hkv = s.n_kv_heads, hd = s.head_dim;
  auto o = g->tensor(as_bthd(Tensor().set_name("O"), kO, s.B, s.Tq, Hq, hd));
  auto dout = g->tensor(as_bthd(Tensor().set_name("dO"), kdO, s.B, s.Tq, Hq, hd));
  auto stats = g->tensor(as_packed_stats(Tensor().set_name("Stats"), s));
  auto options = fe::graph::SDPA_backward_attributes()
                     .set_name("nexus_attention_backward")
                     .set_attn_scale(attention_scale(s))
                     .set_deterministic_algorithm(true);
  if (s.causal) options.set_causal_mask(true);
  auto [dq, dk, dv] = g->sdpa_backward(in.q, in.k, in.v, o, dout, stats, options);
  as_bthd(dq->set_output(true), kdQ, s.B, s.Tq, Hq, hd);
  as_bthd(dk->set_output(true), kdK, s.B, s.Tk, Hkv, hd);
  as_bthd(dv->set_output(true), kdV, s.B, s.Tk, Hkv, hd);
  return g;
}

struct BuiltGraph {
  std::shared_ptr<fe::graph::Graph> graph;
  std::int64_t workspace_bytes = 0;
};

// The shape fields a graph depends on, and its direction.
using GraphKey = std::tuple<bool, idx, idx, idx, idx, idx, idx, bool>;

// One cuDNN handle per (device, stream), bound to that stream, with the graphs built on it.
struct StreamContext {
  cudnnHandle_t handle = nullptr;
  std::map<GraphKey, BuiltGraph> graphs;
};

// Opens cuDNN for the frontend, once. The frontend opens the CUDA runtime by its own list of
// names (libcudart.so.12 first); naming ours keeps it on the runtime this process is linked with
// (unless the user named one).
void open_cudnn() {
  static std::once_flag once;
  std::call_once(once, [] {
    setenv("CUDNN_FRONTEND_CUDART_LIB_NAME", ("libcudart.so." + std::to_string(CUDART_VERSION / 1000)).c_str(), 0);
    fe::cudnn_dlhandle = DynamicLibrary("libcudnn.so." + std::to_string(CUDNN_MAJOR)).handle;
  });
}

// The graph of (direction, shape) on ex's device and stream, built on first use; the handle to run
// it with. Handles and graphs live as long as the process, like the other backend caches.
std::pair<cudnnHandle_t, const BuiltGraph*> graph_for(const Exec& ex, bool backward, const AttentionShape& s) {
  open_cudnn();
  int device = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  static std::mutex mutex;
  static std::map<std::pair<int, void*>, StreamContext> contexts;
  const std::lock_guard<std::mutex> lock(mutex);
  StreamContext& c = contexts[{device, ex.stream}];
  if (!c.handle) {
    cudnnHandle_t h = nullptr;
    check(fe::detail::create_handle(&h), "cudnnCreate");
    check(fe::detail::set_stream(h, static_cast<cudaStream_t>(ex.stream)), "cudnnSetStream");
    c.handle = h;
  }
  const GraphKey key{backward, s.B, s.Tq, s.Tk, s.n_heads, s.n_kv_heads, s.head_dim, s.causal};
  if (const auto it = c.graphs.find(key); it != c.graphs.end()) return {c.handle, &it->second};
  const char* direction = backward ? "backward" : "forward";
  BuiltGraph built{backward ? backward_graph(s) : forward_graph(s), 0};
  fe::graph::Graph& g = *built.graph;
  check(g.validate(), direction, "validate", s);
  check(g.build_operation_graph(c.handle), direction, "build_operation_graph", s);
  check(g.create_execution_plans({fe::HeurMode_t::A}), direction, "create_execution_plans", s);
  check(g.check_support(), direction, "check_support", s);
  check(g.build_plans(), direction, "build_plans", s);
  check(g.get_workspace_size(built.workspace_bytes), direction, "get_workspace_size", s);
  return {c.handle, &c.graphs.emplace(key, std::move(built)).first->second};
}

// Offsets of the pieces carved from one scratch block, each 256-byte aligned.
struct Carving {
  std::size_t bytes = 0;
  std::size_t take(std::size_t n) {
    const std::size_t at = bytes;
    bytes += (n + 255) / 256 * 256;
    return at;
  }
};

// lse [B, Tq, H] <-> cuDNN's packed stats [B, H, Tq]: per sequence a (query, head) view of both.
void stats_to_lse(const Exec& ex, float* lse, const float* stats, const AttentionShape& s) {
  const idx T = s.Tq, H = s.n_heads;
  for (idx b = 0; b < s.B; ++b) copy_strided(ex, lse + b * T * H, stats + b * H * T, Strided3{T, H, 1, H, 1, 1, T});
}
void lse_to_stats(const Exec& ex, float* stats, const float* lse, const AttentionShape& s) {
  const idx T = s.Tq, H = s.n_heads;
  for (idx b = 0; b < s.B; ++b) copy_strided(ex, stats + b * H * T, lse + b * T * H, Strided3{T, H, 1, 1, T, H, 1});
}

// dst[i] += src[i] for i < n, as a one-row strided view.
void add_flat(const Exec& ex, bf16* dst, const bf16* src, idx n) {
  add_strided(ex, dst, src, Strided3{1, 1, n, n, n, n, n});
}

void execute(const BuiltGraph& g, cudnnHandle_t handle, std::unordered_map<Tensor::uid_t, void*>& pack, void* workspace,
             const char* direction, const AttentionShape& s) {
  check(g.graph->execute(handle, pack, workspace), direction, "execute", s);
}

}  // namespace

void cudnn_attention_forward(const Exec& ex, bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v,
                             const AttentionShape& s) {
  require_supported(s, "forward", {out, q, k, v});
  const auto [handle, g] = graph_for(ex, false, s);
  Carving carve;
  const std::size_t stats_at = carve.take(std::size_t(s.B * s.n_heads * s.Tq) * sizeof(float));
  const std::size_t workspace_at = carve.take(std::size_t(g->workspace_bytes));
  auto* base = static_cast<char*>(stream_scratch(ex, Scratch::cudnn_attention, carve.bytes));
  auto* stats = reinterpret_cast<float*>(base + stats_at);
  std::unordered_map<Tensor::uid_t, void*> pack = {{kQ, const_cast<bf16*>(q)}, {kK, const_cast<bf16*>(k)},
                                                   {kV, const_cast<bf16*>(v)}, {kO, out}, {kStats, stats}};
  execute(*g, handle, pack, base + workspace_at, "forward", s);
  stats_to_lse(ex, lse, stats, s);
}

void cudnn_attention_backward(const Exec& ex, bf16* dq, bf16* dk, bf16* dv, const bf16* dout, const bf16* q,
                              const bf16* k, const bf16* v, const bf16* out, const float* lse,
                              const AttentionShape& s) {
  require_supported(s, "backward", {dq, dk, dv, dout, q, k, v, out});
  const auto [handle, g] = graph_for(ex, true, s);
  const idx nq = s.B * s.Tq * s.n_heads * s.head_dim, nk = s.B * s.Tk * s.n_kv_heads * s.head_dim;
  Carving carve;
  const std::size_t stats_at = carve.take(std::size_t(s.B * s.n_heads * s.Tq) * sizeof(float));
  const std::size_t dq_at = carve.take(std::size_t(nq) * sizeof(bf16));
  const std::size_t dk_at = carve.take(std::size_t(nk) * sizeof(bf16));
  const std::size_t dv_at = carve.take(std::size_t(nk) * sizeof(bf16));
  const std::size_t workspace_at = carve.take(std::size_t(g->workspace_bytes));
  auto* base = static_cast<char*>(stream_scratch(ex, Scratch::cudnn_attention, carve.bytes));
  auto* stats = reinterpret_cast<float*>(base + stats_at);
  auto* dq_new = reinterpret_cast<bf16*>(base + dq_at);
  auto* dk_new = reinterpret_cast<bf16*>(base + dk_at);
  auto* dv_new = reinterpret_cast<bf16*>(base + dv_at);
  lse_to_stats(ex, stats, lse, s);
  std::unordered_map<Tensor::uid_t, void*> pack = {
      {kQ, const_cast<bf16*>(q)}, {kK, const_cast<bf16*>(k)},       {kV, const_cast<bf16*>(v)},
      {kO, const_cast<bf16*>(out)}, {kdO, const_cast<bf16*>(dout)}, {kStats, stats},
      {kdQ, dq_new},                {kdK, dk_new},                  {kdV, dv_new}};
  execute(*g, handle, pack, base + workspace_at, "backward", s);
  add_flat(ex, dq, dq_new, nq);
  add_flat(ex, dk, dk_new, nk);
  add_flat(ex, dv, dv_new, nk);
}

}  // namespace nexus::cuda
