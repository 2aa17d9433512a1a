// Forward and backward orchestration of the hybrid model. Layer i:
//   res_in -> input_layernorm -> mixer (Mamba-2 or attention) -> + res_in = res_mid
//   res_mid -> pre_ff_layernorm -> SwiGLU MLP -> + res_mid = next layer's res_in
// Each residual add is fused into the RMSNorm that follows it. Under recomputation
// (model/recompute.h) a recomputed block's buffers are one shared set that the backward rebuilds
// by running the layer's forward calls again on the input the layer kept.
#include "model/model.h"

#include "model/attention_impl.h"
#include "model/mamba_layer_cp.h"
#include "model/neighborhood_spec.h"
#include "parallel/ring_attention.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace nexus {

template <typename T>
Model<T>::Model(const ModelConfig& config, BatchShape shape, const DataPlane* cp, Exec ex)
    : config_(config), table_(config), shape_(shape), cp_(cp && cp->size() > 1 ? cp : nullptr),
      cp_size_(cp_ ? cp_->size() : 1), ex_(ex) {
  require_attention_impl_built(config, ex.device);
  if (shape.B <= 0 || shape.T <= 0)
    throw std::invalid_argument("batch shape B = " + std::to_string(shape.B) + ", T = " + std::to_string(shape.T) +
                                " must be positive");
  if (cp_ && (shape.T % 2 != 0 || shape.T / 2 < config.mamba_d_conv - 1))
    throw std::invalid_argument("context parallel: the local sequence (" + std::to_string(shape.T) +
                                " tokens) must be two zigzag chunks of at least model.mamba_d_conv - 1 = " +
                                std::to_string(config.mamba_d_conv - 1) + " tokens each");
  if (std::is_same_v<T, bf16> && ex.device == Device::cpu)
    throw std::invalid_argument("Model<bf16>: bf16 compute runs on the CUDA backend only (the CPU computes in fp32)");
  params_ = DeviceBuffer<T>(ex_, table_.total());
  params_.zero();
  deltas_ = DeviceBuffer<A>(ex_, table_.total());
  deltas_.zero();
  for (idx i = 0; i < config_.n_layers; ++i) {
    weights_.push_back(layer_tensors(static_cast<const T*>(params_.data()), table_, config_, i));
    grads_.push_back(layer_tensors(deltas_.data(), table_, config_, i));
  }
  embed_offset_ = table_.at("model.embed_tokens.weight").offset;
  final_norm_offset_ = table_.at("model.final_layernorm.weight").offset;
  head_offset_ = table_.at(config_.tie_embeddings ? "model.embed_tokens.weight" : "lm_head.weight").offset;
  layers_.resize(static_cast<std::size_t>(config_.n_layers));
  neighborhoods_ = config_.layer_neighborhoods();
  Arena measure;
  carve(measure);
  arena_bytes_ = measure.used();
  arena_memory_ = DeviceBuffer<std::byte>(ex_, idx(arena_bytes_));
  Arena arena(arena_memory_.data(), arena_bytes_);
  carve(arena);
}

template <typename T>
Model<T>::Model(MeasureOnly, const ModelConfig& config, BatchShape shape, int cp_size)
    : config_(config), table_(config), shape_(shape), cp_size_(cp_size) {
  layers_.resize(static_cast<std::size_t>(config_.n_layers));
}

std::size_t ArenaBreakdown::total() const {
  std::size_t sum = 0;
  for (std::size_t part : {batch, residuals, attention, mamba, mlp, recompute, head, backward, comm})
    if (__builtin_add_overflow(sum, part, &sum)) return SIZE_MAX;
  return sum;
}

template <typename T>
std::size_t Model<T>::activation_bytes(const ModelConfig& config, BatchShape shape, int cp_size) {
  return activation_breakdown(config, shape, cp_size).total();
}

template <typename T>
ArenaBreakdown Model<T>::activation_breakdown(const ModelConfig& config, BatchShape shape, int cp_size) {
  Model measuring(MeasureOnly{}, config, shape, cp_size);
  Arena measure;
  ArenaBreakdown parts;
  measuring.carve(measure, &parts);
  if (parts.total() != measure.used() && measure.used() != SIZE_MAX)
    throw std::logic_error("activation_breakdown: the parts do not add up to the arena");
  return parts;
}

template <typename T>
void Model<T>::carve(Arena& a, ArenaBreakdown* parts) {
  const ModelConfig& c = config_;
  const Recompute& rc = c.recompute;
  const idx N = shape_.B * shape_.T, D = c.d_model, F = c.mlp_hidden, V = c.vocab_size;
  const idx qdim = c.n_heads * c.head_dim, kvdim = c.n_kv_heads * c.head_dim;
  const bool has_attention = c.attention_layer_count() > 0, has_mamba = c.attention_layer_count() < c.n_layers;
  ArenaBreakdown ignored;
  ArenaBreakdown& part = parts ? *parts : ignored;
  // Runs `take` and books what it took (alignment included) under `into`.
  auto section = [&a](std::size_t& into, auto&& take) {
    const std::size_t before = a.used();
    take();
    into = a.used() == SIZE_MAX ? SIZE_MAX : into + (a.used() - before);
  };
  section(part.batch, [&] {
    tokens_ = a.take<std::int32_t>(N);
    targets_ = a.take<std::int32_t>(N);
  });
  auto take_norms = [&](LayerState& l) {
    l.ln1 = a.take<T>(N * D);
    l.rstd1 = a.take<A>(N);
    l.res_mid = a.take<T>(N * D);
    l.ln2 = a.take<T>(N * D);
    l.rstd2 = a.take<A>(N);
  };
  auto take_mlp = [&] { return MlpActivations<T>{a.take<T>(N * 2 * F), a.take<T>(N * F)}; };
  auto take_attention = [&] {
    return AttentionActivations<T>{a.take<T>(N * qdim), a.take<T>(N * kvdim), a.take<T>(N * kvdim),
                                   a.take<T>(N * qdim), a.take<A>(N * c.n_heads)};
  };
  auto take_mamba = [&] {
    return MambaActivations<T>{a.take<T>(N * c.in_proj_dim()), a.take<T>(N * c.conv_dim()),
                               a.take<T>(N * c.d_inner()), a.take<T>(N * c.d_inner()), a.take<A>(N * c.mamba_ngroups)};
  };

  // The shared set of the recomputed blocks, written by every such layer's forward and rebuilt
  // from the layer's kept input just before its backward. Only one layer is in flight at a time,
  // and only one mixer kind per layer, so the two mixer kinds' sets overlap.
  LayerState shared{};
  section(part.recompute, [&] {
    bool whole = false;
    for (idx i = 0; i < c.n_layers; ++i) whole = whole || rc.whole_layer(c.is_attention(i));
    if (whole) take_norms(shared);
    const std::size_t mixers = a.mark();
    if (rc.attention && has_attention) shared.attn = take_attention();
    const std::size_t attention_end = a.used();
    a.rewind(mixers);
    if (rc.mamba && has_mamba) shared.mamba = take_mamba();
    a.advance_to(attention_end);
    if (rc.mlp) shared.mlp = take_mlp();
  });
  for (idx i = 0; i < c.n_layers; ++i) {
    LayerState& l = layers_[static_cast<std::size_t>(i)];
    const bool attention = c.is_attention(i);
    section(part.residuals, [&] {
      l.res_in = a.take<T>(N * D);
      if (rc.whole_layer(attention)) {
        l.ln1 = shared.ln1, l.rstd1 = shared.rstd1, l.res_mid = shared.res_mid;
        l.ln2 = shared.ln2, l.rstd2 = shared.rstd2;
      } else {
        take_norms(l);
      }
    });
    section(part.mlp, [&] { l.mlp = rc.mlp ? shared.mlp : take_mlp(); });
    if (attention)
      section(part.attention, [&] { l.attn = rc.attention ? shared.attn : take_attention(); });
    else
      section(part.mamba, [&] { l.mamba = rc.mamba ? shared.mamba : take_mamba(); });
    if (cp_size_ > 1 && !attention)
      section(part.comm, [&] { l.mamba_saved = a.take<T>(mamba_cp_saved_size<T>(c, shape_.B, cp_size_)); });
  }
  section(part.head, [&] {
    res_final_ = a.take<T>(N * D);
    lnf_ = a.take<T>(N * D);
    rstdf_ = a.take<A>(N);
    logits_ = a.take<T>(N * V);
    ce_lse_ = a.take<A>(N);
    branch_ = a.take<T>(N * D);
  });
  section(part.backward, [&] {
    d_res_ = a.take<T>(N * D);
    d_ln_ = a.take<T>(N * D);
    mlp_scratch_ = {a.take<T>(N * 2 * F), a.take<T>(N * F)};
    // Only one mixer runs its backward at a time, so the two kinds' scratch overlap.
    const std::size_t mixer_scratch = a.mark();
    const idx mamba_workspace = cp_size_ > 1 ? mamba_cp_workspace<T>(c, shape_.B, shape_.T, cp_size_)
                                             : ssd_workspace<T>(mamba_ssd_shape(c, shape_.B, shape_.T));
    if (has_mamba)
      mamba_scratch_ = {a.take<T>(N * c.in_proj_dim()), a.take<T>(N * c.conv_dim()), a.take<T>(N * c.d_inner()),
                        a.take<T>(N * c.d_inner()), a.take<T>(mamba_workspace)};
    const std::size_t mamba_end = a.used();
    a.rewind(mixer_scratch);
    if (has_attention)
      attn_scratch_ = {a.take<T>(N * qdim), a.take<T>(N * kvdim), a.take<T>(N * kvdim), a.take<T>(N * qdim)};
    a.advance_to(mamba_end);
  });
  if (cp_size_ > 1 && has_attention)
    section(part.comm, [&] {
      ring_workspace_ = a.take<T>(ring_attention_workspace<T>(
          RingShape{shape_.B, shape_.T / 2, c.n_heads, c.n_kv_heads, c.head_dim, {}}));
    });
}

template <typename T>
void Model<T>::init(std::uint64_t seed) {
  if constexpr (std::is_same_v<T, A>) {
    HostMirror<T> host(ex_, params_.data(), params_.size(), /*fetch=*/false);
    init_parameters(host.data(), table_, config_, seed);
    host.store();
  } else {
    std::vector<A> drawn(static_cast<std::size_t>(num_params()));
    init_parameters(drawn.data(), table_, config_, seed);
    set_weights(drawn.data());
  }
}

template <typename T>
void Model<T>::set_weights(const A* host) {
  HostMirror<T> mirror(ex_, params_.data(), params_.size(), /*fetch=*/false);
  T* w = mirror.data();
  for (idx i = 0; i < num_params(); ++i) w[i] = T(host[i]);  // rounds to nearest even for bf16
  mirror.store();
}

template <typename T>
void Model<T>::zero_deltas() {
  fill_constant(ex_, deltas_.data(), num_params(), A(0));
}

template <typename T>
void Model<T>::forward_layer(idx i, const T* prev_res, const T* prev_branch) {
  const ModelConfig& c = config_;
  const idx N = shape_.B * shape_.T, D = c.d_model;
  LayerState& l = layers_[static_cast<std::size_t>(i)];
  const LayerTensors<const T*>& w = weights_[static_cast<std::size_t>(i)];
  residual_rmsnorm_forward(ex_, l.res_in, l.ln1, l.rstd1, prev_res, prev_branch, w.input_norm, N, D, c.norm_eps);
  forward_mixer(i);
  residual_rmsnorm_forward(ex_, l.res_mid, l.ln2, l.rstd2, l.res_in, branch_, w.ff_norm, N, D, c.norm_eps);
  mlp_forward(ex_, branch_, l.mlp, l.ln2, w.mlp, N, D, c.mlp_hidden);
}

template <typename T>
void Model<T>::forward_mixer(idx i) {
  const ModelConfig& c = config_;
  const idx B = shape_.B, Tn = shape_.T;
  LayerState& l = layers_[static_cast<std::size_t>(i)];
  const LayerTensors<const T*>& w = weights_[static_cast<std::size_t>(i)];
  const RingContext<T> ring{cp_, ring_workspace_, &ring_stats_};
  if (c.is_attention(i))
    attention_mixer_forward(ex_, branch_, l.attn, l.ln1, w.attn, c, B, Tn, idx(0), static_cast<KvPrefix<T>*>(nullptr),
                            cp_ ? &ring : nullptr, neighborhoods_[static_cast<std::size_t>(i)]);
  else if (cp_) {
    mamba_bytes_sent_ += mamba_mixer_forward_cp(ex_, branch_, l.mamba, l.ln1, w.mamba, c, B, Tn,
                                                mamba_scratch_.ssd_workspace, *cp_, l.mamba_saved);
  } else {
    mamba_mixer_forward(ex_, branch_, l.mamba, l.ln1, w.mamba, c, B, Tn, mamba_scratch_.ssd_workspace);
  }
}

template <typename T>
LossSum Model<T>::forward(const std::int32_t* tokens, const std::int32_t* targets) {
  const ModelConfig& c = config_;
  const Exec& ex = ex_;
  const idx B = shape_.B, Tn = shape_.T, N = B * Tn, D = c.d_model, V = c.vocab_size;
  // The batch arrives from the host: it is checked there, before any op sees it.
  for (idx n = 0; n < N; ++n) {
    if (tokens[n] < 0 || tokens[n] >= V)
      throw std::invalid_argument("token " + std::to_string(tokens[n]) + " at batch index " + std::to_string(n) +
                                  " is outside the vocabulary [0, " + std::to_string(V) + ")");
    if (targets[n] >= V)
      throw std::invalid_argument("target " + std::to_string(targets[n]) + " at batch index " +
                                  std::to_string(n) + " is outside the vocabulary [0, " + std::to_string(V) + ")");
  }
  copy_to_device(ex, tokens_, tokens, std::size_t(N) * sizeof(std::int32_t));
  copy_to_device(ex, targets_, targets, std::size_t(N) * sizeof(std::int32_t));
  has_forward_ = true;
  const T* P = params_.data();

  embedding_forward(ex, layers_[0].res_in, tokens_, P + embed_offset_, N, D);
  mamba_bytes_sent_ = 0;
  ring_stats_ = {};
  const T* prev_res = layers_[0].res_in;  // residual entering layer i (before its fused add)
  const T* prev_branch = nullptr;         // the previous MLP's output, added in the fused norm
  for (idx i = 0; i < c.n_layers; ++i) {
    forward_layer(i, prev_res, prev_branch);
    prev_res = layers_[static_cast<std::size_t>(i)].res_mid;
    prev_branch = branch_;
  }
  residual_rmsnorm_forward(ex, res_final_, lnf_, rstdf_, prev_res, prev_branch, P + final_norm_offset_, N, D,
                           c.norm_eps);
  matmul_forward(ex, logits_, lnf_, P + head_offset_, N, D, V);

  LossSum loss;
  loss.sum = cross_entropy_forward(ex, ce_lse_, logits_, targets_, N, V);
  loss.count = count_targets(ex, targets_, N);
  return loss;
}

template <typename T>
void Model<T>::backward(double loss_scale, const DeltasReady& ready) {
  if (!has_forward_) throw std::logic_error("Model::backward called before forward");
  const Exec& ex = ex_;
  const ModelConfig& c = config_;
  const idx B = shape_.B, Tn = shape_.T, N = B * Tn, D = c.d_model, V = c.vocab_size;
  const T* P = params_.data();
  A* G = deltas_.data();
  const RingContext<T> ring{cp_, ring_workspace_, &ring_stats_};
  const RingContext<T>* ring_ctx = cp_ ? &ring : nullptr;
  const idx head_off = head_offset_, final_norm_off = final_norm_offset_;

  cross_entropy_backward(ex, logits_, ce_lse_, targets_, N, V, loss_scale);  // logits_ now holds dlogits
  matmul_backward(ex, d_ln_, G + head_off, logits_, lnf_, P + head_off, N, D, V, false);
  fill_constant(ex, d_res_, N * D, T(0));
  rmsnorm_backward(ex, d_res_, G + final_norm_off, d_ln_, res_final_, P + final_norm_off, rstdf_, N, D);
  // Finished ranges, top down through the table [embedding | layer 0 .. L-1 | final norm | lm_head]
  // (tied embeddings: the head's deltas land in the embedding's, reported last).
  idx done_from = num_params();
  auto finished = [&](idx from) {
    if (ready) ready(from, done_from - from);
    done_from = from;
  };
  finished(final_norm_off);
  // d_res_ is now the gradient of every residual stream point walked backwards: each branch's
  // output gradient is d_res_ itself, and each norm's backward adds into it.
  // A recomputed block's activations are rebuilt from the input the layer kept, just before its
  // backward needs them (a whole layer from its residual input, the same call layer 0 makes).
  const Recompute& rc = c.recompute;
  for (idx i = c.n_layers - 1; i >= 0; --i) {
    LayerState& l = layers_[static_cast<std::size_t>(i)];
    const LayerTensors<const T*>& w = weights_[static_cast<std::size_t>(i)];
    const LayerTensors<A*>& g = grads_[static_cast<std::size_t>(i)];
    const bool attention = c.is_attention(i);
    if (rc.whole_layer(attention))
      forward_layer(i, l.res_in, nullptr);
    else if (rc.mlp)
      mlp_forward(ex, branch_, l.mlp, l.ln2, w.mlp, N, D, c.mlp_hidden);
    mlp_backward(ex, d_ln_, g.mlp, mlp_scratch_, d_res_, l.ln2, l.mlp, w.mlp, N, D, c.mlp_hidden);
    rmsnorm_backward(ex, d_res_, g.ff_norm, d_ln_, l.res_mid, w.ff_norm, l.rstd2, N, D);
    if (rc.mixer(attention) && !rc.whole_layer(attention)) forward_mixer(i);
    if (attention)
      attention_mixer_backward(ex, d_ln_, g.attn, attn_scratch_, d_res_, l.ln1, l.attn, w.attn, c, B, Tn, idx(0),
                               ring_ctx, neighborhoods_[static_cast<std::size_t>(i)]);
    else if (cp_) {
      mamba_bytes_sent_ += mamba_mixer_backward_cp(ex, d_ln_, g.mamba, mamba_scratch_, d_res_, l.ln1, l.mamba,
                                                   w.mamba, c, B, Tn, *cp_, l.mamba_saved);
    } else {
      mamba_mixer_backward(ex, d_ln_, g.mamba, mamba_scratch_, d_res_, l.ln1, l.mamba, w.mamba, c, B, Tn);
    }
    rmsnorm_backward(ex, d_res_, g.input_norm, d_ln_, l.res_in, w.input_norm, l.rstd1, N, D);
    finished(idx(g.input_norm - G));  // the layer's first tensor
  }
  embedding_backward(ex, G + embed_offset_, tokens_, d_res_, N, D);
  finished(0);
  has_forward_ = false;  // logits were consumed: a second backward needs a new forward
}

template <typename T>
double Model<T>::forward_flops_per_token() const {
  const ModelConfig& c = config_;
  // Attention's cost follows the whole sequence's length, cp times the local one.
  const double D = double(c.d_model), F = double(c.mlp_hidden), V = double(c.vocab_size);
  const double Tn = double(shape_.T * (cp_ ? cp_->size() : 1));
  double flops = 2.0 * D * V;  // lm_head
  for (idx i = 0; i < c.n_layers; ++i) {
    flops += 2.0 * D * 3.0 * F;  // gate, up, down
    if (c.is_attention(i)) {
      const double q = double(c.n_heads * c.head_dim), kv = double(c.n_kv_heads * c.head_dim);
      flops += 2.0 * D * (2.0 * q + 2.0 * kv);  // q, k, v, o projections
      // QK^T and PV over the keys the layer's neighborhood shows a query on average ((T+1)/2 for
      // full), 2 flops per multiply-add.
      flops += 2.0 * 2.0 * q * mean_visible_keys(neighborhoods_[static_cast<std::size_t>(i)], idx(Tn));
    } else {
      const double Di = double(c.d_inner()), H = double(c.mamba_heads()), Pd = double(c.mamba_headdim);
      const double G = double(c.mamba_ngroups), Ns = double(c.mamba_d_state);
      const double Q = double(std::min<idx>(c.mamba_chunk, shape_.T));
      flops += 2.0 * D * double(c.in_proj_dim()) + 2.0 * Di * D;  // in_proj, out_proj
      flops += 2.0 * double(c.conv_dim()) * double(c.mamba_d_conv);
      // SSD per token: C.B scores over half a chunk per group, the masked scores times X per head,
      // and the state update and state-to-output products (P x N each) per head.
      flops += 2.0 * G * Ns * (Q + 1.0) / 2.0 + H * (2.0 * Pd * (Q + 1.0) / 2.0 + 2.0 * 2.0 * Pd * Ns);
    }
  }
  return flops;
}

template class Model<float>;
template class Model<double>;
// bf16 activations and compute weights, fp32 statistics and deltas: GPU only (the CPU refuses bf16
// data, kernels/ops.h). The fp32 master weights live in the optimizer.
template class Model<bf16>;

}  // namespace nexus
