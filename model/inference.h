// Recurrent inference: the model run one token per sequence at a time, with O(1) work per token
// in the Mamba layers (conv window + SSM state per sequence) and a paged KV cache in the attention
// layers. Produces the same logits as Model::forward on the whole sequence.
//
// KV cache: one pool of `max_blocks` blocks of `block_tokens` tokens, shared by the sequences
// through a free list; every attention layer has its own K and V storage for each block, so a
// sequence's block table serves all its attention layers. A sequence takes a block when its
// position crosses a block boundary and gives its blocks back on reset. When every attention layer
// has a bounded neighborhood (sliding, block, dilated), a block goes back to the pool as soon as
// no later query of any layer reads it (the sink's blocks stay), so a sequence holds at most
// bounded_blocks() blocks however long it runs: generation memory stops growing with context.
// Everything is allocated at construction, in one block on the device of the session's Exec
// (caches, activations, and the device copies of the step's tokens, block table and lengths);
// step() allocates nothing. The bookkeeping (positions, block tables, the free list) lives on the
// host, and each step copies what the kernels read of it to the device once.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <vector>

#include "kernels/device_memory.h"
#include "model/arena.h"
#include "model/config.h"
#include "model/layers.h"
#include "model/params.h"

namespace nexus {

// Thrown by step() when a sequence needs a new KV block and none is free; the session is left as
// it was before the call (no token consumed), so the caller may reset some sequences and retry.
struct KvCacheFull : std::runtime_error {
  using std::runtime_error::runtime_error;
};

template <typename T>
class InferenceSession {
 public:
  // params: the flat buffer in ParamTable(config) layout, borrowed (it must outlive the session).
  // max_batch sequences decode side by side, each at its own position. Every op runs on `ex`.
  InferenceSession(const ModelConfig& config, const T* params, idx max_batch, idx block_tokens = 16,
                   idx max_blocks = 256, Exec ex = {});
  using A = accum_t<T>;  // the accumulator type: SSM states and norm statistics

  // Bytes of the per-layer state a session of these sizes allocates (KV pools, conv and SSM
  // states), by the formulas the constructor uses; the per-token scratch ([batch, width]) is
  // negligible next to them. For a memory check before constructing one.
  static std::size_t cache_bytes(const ModelConfig& config, idx max_batch, idx block_tokens, idx max_blocks);

  // One token per sequence (tokens: [max_batch], host memory); returns the logits of the next
  // token, [max_batch, vocab_size] in device memory (read them on the host through a HostMirror),
  // valid until the next call. A token outside [0, vocab) throws
  // std::invalid_argument; an exhausted KV pool throws KvCacheFull.
  const T* step(const std::int32_t* tokens);
  // Tn tokens per sequence (tokens: [max_batch, Tn]), one step at a time; returns the logits
  // after the last one.
  const T* prefill(const std::int32_t* tokens, idx Tn);

  // Every sequence back to position 0 (states zeroed, every block back in the pool).
  void reset();
  // Sequence b alone back to position 0; the others keep their state.
  void reset_sequence(idx b);

  const ModelConfig& config() const { return config_; }
  idx max_batch() const { return batch_; }
  idx block_tokens() const { return block_tokens_; }
  idx max_blocks() const { return max_blocks_; }
  idx free_blocks() const { return n_free_; }
  // The most blocks one sequence ever holds at once under the config's neighborhoods, or -1 when
  // some attention layer reads back arbitrarily far (full, log): then it grows with the position.
  static idx bounded_blocks(const ModelConfig& config, idx block_tokens);
  idx position(idx b) const { return pos_[static_cast<std::size_t>(b)]; }  // tokens consumed by sequence b
  const T* logits() const { return logits_; }

 private:
  // Views into memory_; a layer has either the Mamba or the attention parts (the others null).
  struct LayerCache {
    T* conv = nullptr;                     // [B, K-1, conv_dim]  Mamba: the last K-1 conv inputs
    A* ssm = nullptr;                      // [B, H, P, N]        Mamba: SSM state
    T* k_pool = nullptr, *v_pool = nullptr;  // [max_blocks, block_tokens, Hkv, hd]  attention: after RoPE
  };
  // Lays every device buffer out in `arena` (a measuring pass when it has no memory).
  void carve(Arena& arena);
  // Elements of one layer's state (see LayerCache).
  static idx kv_pool_elems(const ModelConfig& c, idx block_tokens, idx max_blocks);
  static idx conv_state_elems(const ModelConfig& c, idx batch);
  static idx ssm_state_elems(const ModelConfig& c, idx batch);
  void claim_blocks();
  void evict_blocks();
  void release_blocks(idx b);
  void mamba_step(const MambaTensors<const T*>& w, LayerCache& cache);
  void attention_step(const AttentionTensors<const T*>& w, LayerCache& cache, const Neighborhood& neighborhood);
  PagedKvShape paged_shape(const Neighborhood& neighborhood) const;

  ModelConfig config_;
  ParamTable table_;
  Exec ex_;
  idx batch_, block_tokens_, max_blocks_;
  std::vector<LayerTensors<const T*>> weights_;  // [n_layers] views into the borrowed params
  const T* embed_ = nullptr;                     // [V, D]
  const T* final_norm_ = nullptr;                // [D]
  const T* head_ = nullptr;                      // [V, D]
  std::vector<LayerCache> caches_;               // [n_layers]
  DeviceBuffer<std::byte> memory_;               // everything below that the kernels read or write

  std::vector<Neighborhood> neighborhoods_;  // [n_layers] each attention layer's
  idx pinned_blocks_ = 0;                    // blocks holding the largest sink, never evicted
  std::vector<idx> evicted_;                 // [B] logical blocks below this were examined for eviction
  std::vector<idx> pos_;                   // [B] tokens consumed per sequence
  std::vector<idx> kv_len_;                // [B] cached tokens per sequence during a step (pos + 1)
  std::vector<std::int32_t> block_table_;  // [B, max_blocks] block ids, -1 beyond a sequence's blocks
  std::vector<std::int32_t> free_;         // [max_blocks] stack of free block ids; n_free_ in use
  idx n_free_ = 0;
  std::vector<std::int32_t> column_;  // [B] prefill's tokens of one step

  // Device copies of the step's host inputs.
  std::int32_t* tokens_dev_ = nullptr;       // [B]
  std::int32_t* block_table_dev_ = nullptr;  // [B, max_blocks]
  idx* kv_len_dev_ = nullptr;                // [B]

  // One token per sequence of activations, reused by every layer (device memory).
  T* res_ = nullptr;      // [B, D] residual stream
  T* ln_ = nullptr;       // [B, D] a norm's output (the next block's input)
  A* rstd_ = nullptr;     // [B, G] gated norm statistics ([B] for the RMSNorms)
  T* branch_ = nullptr;   // [B, D] a mixer's or MLP's output, added by the next norm
  T* gate_up_ = nullptr;  // [B, 2F]
  T* act_ = nullptr;      // [B, F]
  T* zxbcdt_ = nullptr;   // [B, in_proj_dim]  (Mamba layers only)
  T* xbc_ = nullptr;      // [B, conv_dim]
  T* y_ = nullptr;        // [B, d_inner]
  T* gated_ = nullptr;    // [B, d_inner]
  T* q_ = nullptr, *att_ = nullptr;  // [B, Hq*hd]  (attention layers only)
  T* k_ = nullptr, *v_ = nullptr;    // [B, Hkv*hd]
  T* logits_ = nullptr;   // [B, V]
};

// KV blocks of `block_tokens` tokens that `batch` sequences of `context` tokens take: one more
// than the context spans per sequence (the block a next token opens), or the neighborhood's bound
// when every attention layer's is bounded (bounded_blocks).
idx kv_blocks_needed(const ModelConfig& c, idx context, idx batch, idx block_tokens);

}  // namespace nexus
