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
// Everything is allocated at construction; step() allocates nothing.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <vector>

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

  // One token per sequence (tokens: [max_batch]); returns the logits of the next token,
  // [max_batch, vocab_size], valid until the next call. A token outside [0, vocab) throws
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
  const T* logits() const { return logits_.data(); }

 private:
  struct LayerCache {
    std::vector<T> conv;            // [B, K-1, conv_dim]  Mamba: the last K-1 conv inputs
    std::vector<A> ssm;             // [B, H, P, N]        Mamba: SSM state
    std::vector<T> k_pool, v_pool;  // [max_blocks, block_tokens, Hkv, hd]  attention: after RoPE
  };
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

  std::vector<Neighborhood> neighborhoods_;  // [n_layers] each attention layer's
  idx pinned_blocks_ = 0;                    // blocks holding the largest sink, never evicted
  std::vector<idx> evicted_;                 // [B] logical blocks below this were examined for eviction
  std::vector<idx> pos_;                   // [B] tokens consumed per sequence
  std::vector<idx> kv_len_;                // [B] cached tokens per sequence during a step (pos + 1)
  std::vector<std::int32_t> block_table_;  // [B, max_blocks] block ids, -1 beyond a sequence's blocks
  std::vector<std::int32_t> free_;         // [max_blocks] stack of free block ids; n_free_ in use
  idx n_free_ = 0;
  std::vector<std::int32_t> column_;  // [B] prefill's tokens of one step

  // One token per sequence of activations, reused by every layer.
  std::vector<T> res_;      // [B, D] residual stream
  std::vector<T> ln_;       // [B, D] a norm's output (the next block's input)
  std::vector<A> rstd_;     // [B, G] gated norm statistics
  std::vector<T> branch_;   // [B, D] a mixer's or MLP's output, added by the next norm
  std::vector<T> gate_up_;  // [B, 2F]
  std::vector<T> act_;      // [B, F]
  std::vector<T> zxbcdt_;   // [B, in_proj_dim]
  std::vector<T> xbc_;      // [B, conv_dim]
  std::vector<T> y_;        // [B, d_inner]
  std::vector<T> gated_;    // [B, d_inner]
  std::vector<T> q_, att_;  // [B, Hq*hd]
  std::vector<T> k_, v_;    // [B, Hkv*hd]
  std::vector<T> logits_;   // [B, V]
};

// KV blocks of `block_tokens` tokens that `batch` sequences of `context` tokens take: one more
// than the context spans per sequence (the block a next token opens), or the neighborhood's bound
// when every attention layer's is bounded (bounded_blocks).
idx kv_blocks_needed(const ModelConfig& c, idx context, idx batch, idx block_tokens);

}  // namespace nexus
