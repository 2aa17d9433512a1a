// The whole hybrid model on one rank: flat parameters and deltas, one activation arena, and the
// evaluate (forward) / differentiate (backward) passes over a fixed batch shape.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "kernels/device_memory.h"
#include "model/arena.h"
#include "model/config.h"
#include "model/layers.h"
#include "model/params.h"

namespace nexus {

struct BatchShape {
  idx B;  // sequences per micro-batch
  idx T;  // tokens per sequence
};

// Where the activation arena's bytes go, from the same layout pass that sizes it (what
// `nexus plan` prints). Each part includes its alignment padding, so the parts sum to the arena.
struct ArenaBreakdown {
  std::size_t batch = 0;      // the batch's tokens and targets [N] (int32), copied in by forward
  std::size_t residuals = 0;  // per layer: residual stream points, norm outputs and rstd kept for the backward
  std::size_t attention = 0;  // per attention layer: q, k, v, attention output, lse (none when recomputed)
  std::size_t mamba = 0;      // per Mamba layer: in_proj, conv, SSD and gated-norm outputs (none when recomputed)
  std::size_t mlp = 0;        // per layer: gate|up and the SwiGLU activation (none when recomputed)
  std::size_t recompute = 0;  // the one shared set that recomputed blocks are rebuilt into in the backward
  std::size_t head = 0;       // final norm, logits [N, V], loss statistics, the branch buffer
  std::size_t backward = 0;   // backward scratch shared by all layers (gradients, SSD workspace)
  std::size_t comm = 0;       // context parallel: per-layer Mamba halos and states, ring attention workspace
  std::size_t total() const;  // saturates at SIZE_MAX, as the arena's measure does
};

// Summed next-token loss over the targets that count (target >= 0), and how many there were. The
// caller divides by the global count (all micro-batches, all ranks) so accumulation is exact.
struct LossSum {
  double sum = 0.0;
  idx count = 0;
};

template <typename T>
class Model {
 public:
  // With a context-parallel group `cp` of size > 1 (borrowed: it must outlive the model), the
  // batch holds this rank's zigzag part of each sequence (parallel/zigzag.h): shape.T = 2c tokens,
  // chunks r and 2cp-1-r of sequences of cp * shape.T tokens. Attention runs as ring attention and
  // the Mamba-2 layers pass state across the group; forward and backward are collective over it.
  // The loss and deltas are this rank's share (the caller sums over the group).
  // Every op runs on `ex` (its device holds the model's buffers).
  Model(const ModelConfig& config, BatchShape shape, const DataPlane* cp = nullptr, Exec ex = {});

  // The accumulator type (kernels/types.h): deltas and statistics.
  using A = accum_t<T>;

  const Exec& exec() const { return ex_; }

  // The activation arena a Model of this config and shape allocates on one rank of a
  // context-parallel group of `cp_size` ranks, measured by the same layout code (carve) without
  // allocating anything: what a memory check compares before a Model is built.
  // It follows config.recompute. Also instantiated for T = bf16 (measuring only): the arena a GPU
  // run with bf16 activations and fp32 statistics would carve.
  static std::size_t activation_bytes(const ModelConfig& config, BatchShape shape, int cp_size = 1);
  static ArenaBreakdown activation_breakdown(const ModelConfig& config, BatchShape shape, int cp_size = 1);

  const ModelConfig& config() const { return config_; }
  const ParamTable& table() const { return table_; }
  BatchShape shape() const { return shape_; }

  // Flat buffers in table() layout.
  T* params() { return params_.data(); }
  const T* params() const { return params_.data(); }
  A* deltas() { return deltas_.data(); }
  const A* deltas() const { return deltas_.data(); }
  idx num_params() const { return table_.total(); }

  // Draws the initial weights on the host and stores them on the model's device. The draw is in
  // the accumulator type A (init_parameters<A>: fp32 for bf16), then rounded to T: a bf16 run's
  // fp32 master weights are init_parameters<float> with the same seed (what the optimizer's
  // set_master takes), and these weights are exactly their rounding.
  void init(std::uint64_t seed);
  // host[num_params()] (host memory, accumulator type, e.g. fp32 master weights from a draw or a
  // checkpoint) rounded to T and stored on the model's device; a plain copy when T is A.
  void set_weights(const A* host);
  void zero_deltas();

  // evaluate. tokens, targets: [B, T] host memory (copied to the device); a token outside [0, vocab) throws std::invalid_argument
  // naming its index and value; targets < 0 are ignored.
  LossSum forward(const std::int32_t* tokens, const std::int32_t* targets);
  // [B*T, V] logits of the last forward (device memory: read them on the host through a
  // HostMirror); overwritten by backward (which turns them into dlogits).
  const T* logits() const { return logits_; }

  // differentiate. deltas += d(loss_scale * LossSum.sum) / d(params) for the last forward's batch.
  // `ready` (optional) hears of each parameter range whose deltas this backward has finished, as
  // soon as it has, top down: [final norm, end) with lm_head, each layer from the last to the
  // first, then the embedding -- what an overlapped reduction posts while the backward goes on.
  using DeltasReady = std::function<void(idx offset, idx count)>;
  void backward(double loss_scale, const DeltasReady& ready = {});

  std::size_t arena_bytes() const { return arena_bytes_; }
  // Bytes this rank sent for cross-rank mixing (ring K/V excluded: see ring_attention.h) in the
  // last forward + backward: the Mamba-2 state passing, which does not grow with T. Under
  // recomputation the backward runs the recomputed Mamba layers' forward again, and what that
  // sends is counted too (as is the recomputed attention's ring traffic in ring_stats()).
  std::size_t mamba_bytes_sent() const { return mamba_bytes_sent_; }
  // What the ring attention moved and computed on this rank in the last forward + backward (all
  // attention layers; zero without context parallelism): K/V and dK/dV bytes, kernel calls, and
  // the hops taken and skipped because their KV block was outside every local query's neighborhood.
  const RingStats& ring_stats() const { return ring_stats_; }
  // Model FLOPs of one forward pass per token, counted honestly: every GEMM, attention at the
  // average number of keys its neighborhood shows a query, and the SSD scan. Training is 3x.
  double forward_flops_per_token() const;

 private:
  // Per layer; under recomputation the pointers of recomputed parts all point into one shared set
  // (res_in always stays the layer's own).
  struct LayerState {
    T* res_in;   // [N, D] residual stream entering the layer
    T* ln1;      // [N, D] input_layernorm output (the mixer's input)
    A* rstd1;    // [N]
    T* res_mid;  // [N, D] residual stream after the mixer
    T* ln2;      // [N, D] pre_ff_layernorm output (the MLP's input)
    A* rstd2;    // [N]
    MlpActivations<T> mlp{};
    MambaActivations<T> mamba{};
    AttentionActivations<T> attn{};
    T* mamba_saved = nullptr;  // [mamba_cp_saved_size<T>] halos, true initial states, decays (cp only)
  };
  void carve(Arena& arena, ArenaBreakdown* parts = nullptr);
  // Layer i's forward from the residual entering it (prev_res + prev_branch, fused into the first
  // norm; prev_branch may be null): its mixer's then its MLP's output lands in branch_.
  void forward_layer(idx i, const T* prev_res, const T* prev_branch);
  void forward_mixer(idx i);  // ln1 -> branch_ through layer i's mixer
  struct MeasureOnly {};
  Model(MeasureOnly, const ModelConfig& config, BatchShape shape, int cp_size);

  ModelConfig config_;
  ParamTable table_;
  BatchShape shape_;
  const DataPlane* cp_ = nullptr;  // null unless context parallel with more than one rank
  int cp_size_ = 1;                  // cp_'s size (what the layout depends on), 1 without cp_
  Exec ex_;
  std::size_t mamba_bytes_sent_ = 0;
  RingStats ring_stats_;
  std::vector<Neighborhood> neighborhoods_;  // [n_layers] each attention layer's (full for Mamba layers)
  DeviceBuffer<T> params_;  // [num_params] every weight, carved into named views by table_
  DeviceBuffer<A> deltas_;  // [num_params] accumulated gradients, same layout
  // Views resolved once at construction (the buffers never move; a moved Model keeps them):
  // per layer into params_ and deltas_, and the offsets of the tensors outside the layers.
  std::vector<LayerTensors<const T*>> weights_;
  std::vector<LayerTensors<A*>> grads_;
  idx embed_offset_ = 0, final_norm_offset_ = 0, head_offset_ = 0;

  DeviceBuffer<std::byte> arena_memory_;  // [arena_bytes_] every activation, carved by carve()
  std::size_t arena_bytes_ = 0;
  std::vector<LayerState> layers_;
  std::int32_t* tokens_ = nullptr;   // [B, T] the last forward's batch, copied to the device
  std::int32_t* targets_ = nullptr;  // [B, T]
  bool has_forward_ = false;         // a forward whose logits a backward may consume
  T* res_final_ = nullptr;  // [N, D] residual stream after the last layer
  T* lnf_ = nullptr;        // [N, D] final_layernorm output
  A* rstdf_ = nullptr;      // [N]
  T* logits_ = nullptr;     // [N, V]
  A* ce_lse_ = nullptr;     // [N]
  T* branch_ = nullptr;     // [N, D] a mixer's or MLP's output, consumed by the next residual add
  // Backward scratch, shared by all layers.
  T* d_res_ = nullptr;      // [N, D] gradient of the residual stream
  T* d_ln_ = nullptr;       // [N, D] gradient of a norm's output
  MlpScratch<T> mlp_scratch_{};
  MambaScratch<T> mamba_scratch_{};
  AttentionScratch<T> attn_scratch_{};
  T* ring_workspace_ = nullptr;  // [ring_attention_workspace<T>] (cp only)
};

}  // namespace nexus
