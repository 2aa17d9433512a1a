#include "model/attention_impl.h"

#include "kernels/cuda/attention_cudnn.h"
#include "model/neighborhood_spec.h"

namespace nexus {

template <typename T>
AttentionImplChoice choose_attention_impl(const ModelConfig& c, Device device, const AttentionShape& s) {
  if (c.attention_impl != "cudnn") return {};
  if (device != Device::cuda) return {false, "the CPU has no cuDNN"};
  if (!cuda::kCudnnAttentionBuilt) return {false, "this build has no cuDNN attention"};
  const char* why = cuda::cudnn_attention_unsupported<T>(s);
  return {why == nullptr, why};
}

void require_attention_impl_built(const ModelConfig& c, Device device) {
  if (c.attention_impl == "cudnn" && device == Device::cuda && !cuda::kCudnnAttentionBuilt)
    throw ConfigError(
        "model.attention_impl = cudnn on a CUDA device: this build has no cuDNN attention (the configure step found "
        "no cudnn-frontend headers or no cuDNN 9: run launch/setup.sh with the CUDA toolkit installed, then "
        "reconfigure); expected nexus");
}

std::string attention_impl_report(const ModelConfig& c, Device device, bool bf16_activations, idx micro_batch,
                                  idx local_len, idx cp) {
  const std::vector<Neighborhood> neighborhoods = c.layer_neighborhoods();
  std::string out;
  for (idx layer = 0; layer < c.n_layers; ++layer) {
    if (!c.is_attention(layer)) continue;
    const Neighborhood& nb = neighborhoods[static_cast<std::size_t>(layer)];
    out += "# attention layer " + std::to_string(layer) + " (" + format_neighborhood(nb) + "): ";
    if (c.attention_impl != "cudnn") {
      out += "nexus\n";
      continue;
    }
    if (cp > 1) {
      out += "nexus (model.attention_impl = cudnn, but ring attention over parallel.cp = " + std::to_string(cp) +
             " runs offset blocks, which cuDNN cannot express)\n";
      continue;
    }
    const AttentionShape s{micro_batch, local_len, local_len, c.n_heads, c.n_kv_heads, c.head_dim, 0, 0, true, nb};
    const AttentionImplChoice choice = bf16_activations ? choose_attention_impl<bf16>(c, device, s)
                                                        : choose_attention_impl<float>(c, device, s);
    out += choice.cudnn ? std::string("cudnn\n")
                        : std::string("nexus (model.attention_impl = cudnn, but ") + choice.why_not_cudnn + ")\n";
  }
  return out;
}

template AttentionImplChoice choose_attention_impl<float>(const ModelConfig&, Device, const AttentionShape&);
template AttentionImplChoice choose_attention_impl<double>(const ModelConfig&, Device, const AttentionShape&);
template AttentionImplChoice choose_attention_impl<bf16>(const ModelConfig&, Device, const AttentionShape&);

}  // namespace nexus
