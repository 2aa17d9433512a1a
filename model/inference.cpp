// Recurrent inference, one token per sequence per step, in Model::forward's order:
//   embedding -> per layer: (+ branch) input_layernorm -> mixer step -> (+ branch) pre_ff_layernorm
//   -> MLP -> (+ branch) final_layernorm -> lm_head
// with every residual add fused into the norm that follows it, as in the full forward. Only the
// mixers differ from the full forward: conv1d_silu_step / ssd_step on per-sequence states, and
// attention_decode_paged over the paged cache.
#include "model/inference.h"

#include "model/checked_math.h"

#include <algorithm>
#include <limits>
#include <string>

namespace nexus {

namespace {

std::size_t sz(idx n) { return static_cast<std::size_t>(n); }

}  // namespace

template <typename T>
InferenceSession<T>::InferenceSession(const ModelConfig& config, const T* params, idx max_batch, idx block_tokens,
                                      idx max_blocks, Exec ex)
    : config_(config),
      table_(config),
      ex_(ex),
      batch_(max_batch),
      block_tokens_(block_tokens),
      max_blocks_(max_blocks) {
  config_.validate();
  if (!params) throw std::invalid_argument("InferenceSession: params is null");
  if (max_batch <= 0 || block_tokens <= 0 || max_blocks <= 0 || max_blocks > std::numeric_limits<std::int32_t>::max())
    throw std::invalid_argument("InferenceSession: max_batch = " + std::to_string(max_batch) + ", block_tokens = " +
                                std::to_string(block_tokens) + ", max_blocks = " + std::to_string(max_blocks) +
                                " must be positive (max_blocks < 2^31)");
  const ModelConfig& c = config_;
  const idx B = batch_;
  embed_ = params + table_.at("model.embed_tokens.weight").offset;
  final_norm_ = params + table_.at("model.final_layernorm.weight").offset;
  head_ = params + table_.at(c.tie_embeddings ? "model.embed_tokens.weight" : "lm_head.weight").offset;
  caches_.resize(sz(c.n_layers));
  idx max_sink = 0;
  neighborhoods_ = c.layer_neighborhoods();
  for (const Neighborhood& n : neighborhoods_) max_sink = std::max(max_sink, n.sink);
  pinned_blocks_ = (max_sink + block_tokens_ - 1) / block_tokens_;
  for (idx i = 0; i < c.n_layers; ++i) weights_.push_back(layer_tensors(params, table_, c, i));
  pos_.assign(sz(B), 0);
  evicted_.assign(sz(B), 0);
  kv_len_.assign(sz(B), 0);
  block_table_.assign(sz(B * max_blocks_), -1);
  free_.assign(sz(max_blocks_), 0);
  column_.assign(sz(B), 0);
  Arena measure;
  carve(measure);
  memory_ = DeviceBuffer<std::byte>(ex_, idx(measure.used()));
  Arena arena(memory_.data(), memory_.bytes());
  carve(arena);
  reset();
}

template <typename T>
void InferenceSession<T>::carve(Arena& arena) {
  const ModelConfig& c = config_;
  const idx B = batch_, D = c.d_model, F = c.mlp_hidden, V = c.vocab_size;
  const idx qdim = c.n_heads * c.head_dim, kvdim = c.n_kv_heads * c.head_dim;
  const bool has_mamba = c.attention_layer_count() < c.n_layers, has_attention = c.attention_layer_count() > 0;
  caches_.assign(sz(c.n_layers), LayerCache{});
  for (idx i = 0; i < c.n_layers; ++i) {
    LayerCache& lc = caches_[sz(i)];
    if (c.is_attention(i)) {
      lc.k_pool = arena.take<T>(kv_pool_elems(c, block_tokens_, max_blocks_));
      lc.v_pool = arena.take<T>(kv_pool_elems(c, block_tokens_, max_blocks_));
    } else {
      lc.conv = arena.take<T>(conv_state_elems(c, B));
      lc.ssm = arena.take<A>(ssm_state_elems(c, B));
    }
  }
  tokens_dev_ = arena.take<std::int32_t>(B);
  block_table_dev_ = has_attention ? arena.take<std::int32_t>(B * max_blocks_) : nullptr;
  kv_len_dev_ = has_attention ? arena.take<idx>(B) : nullptr;
  res_ = arena.take<T>(B * D);
  ln_ = arena.take<T>(B * D);
  rstd_ = arena.take<A>(B * c.mamba_ngroups);  // [B] for the RMSNorms, [B, G] for the gated one
  branch_ = arena.take<T>(B * D);
  gate_up_ = arena.take<T>(B * 2 * F);
  act_ = arena.take<T>(B * F);
  if (has_mamba) {
    zxbcdt_ = arena.take<T>(B * c.in_proj_dim());
    xbc_ = arena.take<T>(B * c.conv_dim());
    y_ = arena.take<T>(B * c.d_inner());
    gated_ = arena.take<T>(B * c.d_inner());
  }
  if (has_attention) {
    q_ = arena.take<T>(B * qdim);
    att_ = arena.take<T>(B * qdim);
    k_ = arena.take<T>(B * kvdim);
    v_ = arena.take<T>(B * kvdim);
  }
  logits_ = arena.take<T>(B * V);
}

template <typename T>
idx InferenceSession<T>::kv_pool_elems(const ModelConfig& c, idx block_tokens, idx max_blocks) {
  const idx kvdim = checked_mul(c.n_kv_heads, c.head_dim, "n_kv_heads * head_dim");
  return checked_mul(checked_mul(max_blocks, block_tokens, "KV cache tokens"), kvdim, "KV pool size");
}

template <typename T>
idx InferenceSession<T>::conv_state_elems(const ModelConfig& c, idx batch) {
  return checked_mul(checked_mul(batch, c.mamba_d_conv - 1, "conv window"), c.conv_dim(), "conv state size");
}

template <typename T>
idx InferenceSession<T>::ssm_state_elems(const ModelConfig& c, idx batch) {
  return checked_mul(checked_mul(batch, c.d_inner(), "batch * d_inner"), c.mamba_d_state, "SSM state size");
}

template <typename T>
std::size_t InferenceSession<T>::cache_bytes(const ModelConfig& c, idx max_batch, idx block_tokens, idx max_blocks) {
  c.validate();
  const idx attention = c.attention_layer_count(), mamba = c.n_layers - attention;
  const idx per_attention = checked_mul(2, kv_pool_elems(c, block_tokens, max_blocks), "K and V pools");
  // K/V pools and conv windows have the compute type, SSM states the accumulator type.
  const idx narrow = checked_add(checked_mul(attention, per_attention, "KV caches"),
                                 checked_mul(mamba, conv_state_elems(c, max_batch), "conv windows"), "session state");
  const idx wide = checked_mul(mamba, ssm_state_elems(c, max_batch), "SSM states");
  return static_cast<std::size_t>(checked_add(checked_mul(narrow, idx(sizeof(T)), "session state bytes"),
                                              checked_mul(wide, idx(sizeof(A)), "SSM state bytes"),
                                              "session state bytes"));
}

idx kv_blocks_needed(const ModelConfig& c, idx context, idx batch, idx block_tokens) {
  idx per_sequence = checked_add(context, block_tokens - 1, "context") / block_tokens + 1;
  const idx bound = InferenceSession<float>::bounded_blocks(c, block_tokens);
  if (bound > 0) per_sequence = std::min(per_sequence, bound);
  return checked_mul(per_sequence, batch, "KV blocks");
}

template <typename T>
void InferenceSession<T>::reset() {
  // The stack pops block 0 first, so a fresh or reset session fills the pool in the same order.
  n_free_ = max_blocks_;
  for (idx j = 0; j < max_blocks_; ++j) free_[sz(j)] = static_cast<std::int32_t>(max_blocks_ - 1 - j);
  std::fill(block_table_.begin(), block_table_.end(), -1);
  std::fill(pos_.begin(), pos_.end(), 0);
  std::fill(evicted_.begin(), evicted_.end(), 0);
  // The whole block: caches and activations (the activations start at zero, as before any step).
  memory_.zero();
}

template <typename T>
void InferenceSession<T>::release_blocks(idx b) {
  std::int32_t* table = block_table_.data() + b * max_blocks_;
  for (idx j = 0; j < max_blocks_; ++j)  // evicted blocks leave holes: every slot is looked at
    if (table[j] >= 0) {
      free_[sz(n_free_++)] = table[j];
      table[j] = -1;
    }
  evicted_[sz(b)] = 0;
}

template <typename T>
PagedKvShape InferenceSession<T>::paged_shape(const Neighborhood& neighborhood) const {
  const ModelConfig& c = config_;
  return PagedKvShape{batch_, c.n_heads, c.n_kv_heads, c.head_dim, block_tokens_, max_blocks_, neighborhood,
                      std::min(pinned_blocks_, max_blocks_)};
}

template <typename T>
idx InferenceSession<T>::bounded_blocks(const ModelConfig& c, idx block_tokens) {
  idx reach = 0, max_sink = 0;  // the longest distance back any layer reads; the largest sink
  const std::vector<Neighborhood> neighborhoods = c.layer_neighborhoods();
  for (idx i = 0; i < c.n_layers; ++i) {
    if (!c.is_attention(i)) continue;
    const Neighborhood& n = neighborhoods[sz(i)];
    max_sink = std::max(max_sink, n.sink);
    switch (n.kind) {
      case Neighborhood::kSliding:
      case Neighborhood::kBlock: reach = std::max(reach, n.width - 1); break;
      case Neighborhood::kDilated: reach = std::max(reach, (n.width - 1) * n.dilation); break;
      default: return -1;
    }
  }
  // Keys [pos - reach, pos] touch at most reach / bt + 2 blocks; the sink's blocks come on top.
  return reach / block_tokens + 2 + (max_sink + block_tokens - 1) / block_tokens;
}

// Frees, for every sequence, the blocks below the position that every attention layer's
// neighborhood keeps for the queries from the current position on (none when a layer reads back
// arbitrarily far); blocks holding sink tokens stay.
template <typename T>
void InferenceSession<T>::evict_blocks() {
  for (idx b = 0; b < batch_; ++b) {
    const idx pos = pos_[sz(b)];
    idx keep_from = pos;
    for (idx i = 0; i < config_.n_layers; ++i)
      if (config_.is_attention(i)) keep_from = std::min(keep_from, neighborhoods_[sz(i)].retained_from(pos));
    const PagedKvShape shape = paged_shape({});
    idx& next = evicted_[sz(b)];
    next = std::max(next, pinned_blocks_);
    for (; (next + 1) * block_tokens_ <= keep_from; ++next) {
      std::int32_t& id = block_table_[sz(b * max_blocks_ + paged_slot(shape, next))];
      if (id < 0) continue;
      free_[sz(n_free_++)] = id;
      id = -1;
    }
  }
}

template <typename T>
void InferenceSession<T>::reset_sequence(idx b) {
  if (b < 0 || b >= batch_)
    throw std::out_of_range("InferenceSession::reset_sequence: sequence " + std::to_string(b) + " of " +
                            std::to_string(batch_));
  release_blocks(b);
  pos_[sz(b)] = 0;
  const idx conv_row = conv_state_elems(config_, 1), ssm_row = ssm_state_elems(config_, 1);
  for (LayerCache& lc : caches_) {
    if (!lc.conv) continue;  // an attention layer: its blocks went back to the pool
    fill_constant(ex_, lc.conv + b * conv_row, conv_row, T(0));
    fill_constant(ex_, lc.ssm + b * ssm_row, ssm_row, A(0));
  }
}

// Gives every sequence whose next token starts a new block that block, all or nothing: on
// exhaustion the blocks taken in this call go back and the session is unchanged.
template <typename T>
void InferenceSession<T>::claim_blocks() {
  if (config_.attention_layer_count() == 0) return;
  const PagedKvShape shape = paged_shape({});
  // The slot of sequence b's next block; -1 when its table row has no room (every slot past the
  // pinned ones still holds a block some query will read).
  auto slot_of = [&](idx b) {
    const idx block = pos_[sz(b)] / block_tokens_;
    if (block >= max_blocks_ && pinned_blocks_ >= max_blocks_) return idx(-1);
    const idx slot = paged_slot(shape, block);
    return block_table_[sz(b * max_blocks_ + slot)] < 0 ? slot : idx(-1);
  };
  for (idx b = 0; b < batch_; ++b) {
    const idx pos = pos_[sz(b)];
    if (pos % block_tokens_ != 0) continue;
    const idx slot = slot_of(b);
    if (n_free_ == 0 || slot < 0) {
      for (idx r = b - 1; r >= 0; --r)
        if (pos_[sz(r)] % block_tokens_ == 0) {
          std::int32_t& id = block_table_[sz(r * max_blocks_ + paged_slot(shape, pos_[sz(r)] / block_tokens_))];
          free_[sz(n_free_++)] = id;
          id = -1;
        }
      throw KvCacheFull("KV cache pool exhausted: sequence " + std::to_string(b) + " at position " +
                        std::to_string(pos) + " needs a new block, but all " + std::to_string(max_blocks_) +
                        " blocks of " + std::to_string(block_tokens_) +
                        " tokens are in use or its block table is full (construct the session with a larger "
                        "max_blocks, or reset sequences)");
    }
    block_table_[sz(b * max_blocks_ + slot)] = free_[sz(--n_free_)];
  }
}

template <typename T>
const T* InferenceSession<T>::step(const std::int32_t* tokens) {
  const ModelConfig& c = config_;
  const Exec& ex = ex_;
  const idx B = batch_, D = c.d_model, V = c.vocab_size;
  for (idx b = 0; b < B; ++b)
    if (tokens[b] < 0 || tokens[b] >= V)
      throw std::invalid_argument("token " + std::to_string(tokens[b]) + " of sequence " + std::to_string(b) +
                                  " is outside the vocabulary [0, " + std::to_string(V) + ")");
  evict_blocks();
  claim_blocks();
  copy_to_device(ex, tokens_dev_, tokens, sz(B) * sizeof(std::int32_t));
  if (block_table_dev_) {  // what attention_decode_paged reads, the same for every layer
    for (idx b = 0; b < B; ++b) kv_len_[sz(b)] = pos_[sz(b)] + 1;
    copy_to_device(ex, block_table_dev_, block_table_.data(), block_table_.size() * sizeof(std::int32_t));
    copy_to_device(ex, kv_len_dev_, kv_len_.data(), kv_len_.size() * sizeof(idx));
  }

  embedding_forward(ex, res_, static_cast<const std::int32_t*>(tokens_dev_), embed_, B, D);
  const T* branch = nullptr;  // the previous block's output, added by the next fused norm
  for (idx i = 0; i < c.n_layers; ++i) {
    const LayerTensors<const T*>& w = weights_[sz(i)];
    residual_rmsnorm_forward(ex, res_, ln_, rstd_, res_, branch, w.input_norm, B, D,
                             c.norm_eps);
    if (c.is_attention(i))
      attention_step(w.attn, caches_[sz(i)], neighborhoods_[sz(i)]);
    else
      mamba_step(w.mamba, caches_[sz(i)]);
    residual_rmsnorm_forward(ex, res_, ln_, rstd_, res_, branch_, w.ff_norm, B, D,
                             c.norm_eps);
    mlp_forward(ex, branch_, MlpActivations<T>{gate_up_, act_}, ln_, w.mlp, B, D,
                c.mlp_hidden);
    branch = branch_;
  }
  residual_rmsnorm_forward(ex, res_, ln_, rstd_, res_, branch, final_norm_, B, D,
                           c.norm_eps);
  matmul_forward(ex, logits_, ln_, head_, B, D, V);
  for (idx& p : pos_) ++p;
  return logits_;
}

template <typename T>
const T* InferenceSession<T>::prefill(const std::int32_t* tokens, idx Tn) {
  if (Tn <= 0)
    throw std::invalid_argument("InferenceSession::prefill: Tn = " + std::to_string(Tn) + " must be positive");
  for (idx t = 0; t < Tn; ++t) {
    for (idx b = 0; b < batch_; ++b) column_[sz(b)] = tokens[b * Tn + t];
    step(column_.data());
  }
  return logits_;
}

// in_proj -> conv step over xBC -> SSM step -> gated RMSNorm with z -> out_proj, the full mixer's
// sequence with the two recurrent ops in place of the scans (same slices, same strides).
template <typename T>
void InferenceSession<T>::mamba_step(const MambaTensors<const T*>& w, LayerCache& lc) {
  const ModelConfig& c = config_;
  const Exec& ex = ex_;
  const idx B = batch_, D = c.d_model, E = c.in_proj_dim(), C = c.conv_dim(), Di = c.d_inner();
  const idx GN = c.mamba_ngroups * c.mamba_d_state;
  T* z = zxbcdt_;
  matmul_forward(ex, z, ln_, w.in_proj, B, D, E);
  conv1d_silu_step(ex, xbc_, lc.conv, z + Di, E, w.conv_w, w.conv_b, B, C, c.mamba_d_conv);
  ssd_step(ex, y_, lc.ssm, xbc_, xbc_ + Di, xbc_ + Di + GN, z + Di + C, w.dt_bias,
           w.A_log, w.D, mamba_ssd_shape(c, B, 1), SsdStrides{C, C, E});
  gated_rmsnorm_forward(ex, gated_, rstd_, y_, z, E, w.norm, B, Di, c.mamba_ngroups, c.norm_eps);
  matmul_forward(ex, branch_, gated_, w.out_proj, B, Di, D);
}

// q/k/v projections -> RoPE at each sequence's own position -> K, V appended to the cache ->
// attention over the cached tokens -> o_proj.
template <typename T>
void InferenceSession<T>::attention_step(const AttentionTensors<const T*>& w, LayerCache& lc,
                                         const Neighborhood& neighborhood) {
  const ModelConfig& c = config_;
  const Exec& ex = ex_;
  const idx B = batch_, D = c.d_model, hd = c.head_dim, Hq = c.n_heads, Hkv = c.n_kv_heads;
  const idx qdim = Hq * hd, kvdim = Hkv * hd;
  matmul_forward(ex, q_, ln_, w.q, B, D, qdim);
  matmul_forward(ex, k_, ln_, w.k, B, D, kvdim);
  matmul_forward(ex, v_, ln_, w.v, B, D, kvdim);
  for (idx b = 0; b < B; ++b) {
    const idx pos = pos_[sz(b)];
    rope_forward(ex, q_ + b * qdim, 1, 1, Hq, hd, c.rotary_dim(), pos, c.rope_theta);
    rope_forward(ex, k_ + b * kvdim, 1, 1, Hkv, hd, c.rotary_dim(), pos, c.rope_theta);
    const idx blk = block_table_[sz(b * max_blocks_ + paged_slot(paged_shape({}), pos / block_tokens_))];
    const idx at = (blk * block_tokens_ + pos % block_tokens_) * kvdim;
    copy_values(ex, lc.k_pool + at, static_cast<const T*>(k_ + b * kvdim), kvdim);
    copy_values(ex, lc.v_pool + at, static_cast<const T*>(v_ + b * kvdim), kvdim);
  }
  attention_decode_paged(ex, att_, q_, lc.k_pool, lc.v_pool, static_cast<const std::int32_t*>(block_table_dev_),
                         static_cast<const idx*>(kv_len_dev_), paged_shape(neighborhood));
  matmul_forward(ex, branch_, att_, w.o, B, qdim, D);
}

template class InferenceSession<float>;
template class InferenceSession<double>;
template class InferenceSession<bf16>;  // GPU only, as Model<bf16>

}  // namespace nexus
