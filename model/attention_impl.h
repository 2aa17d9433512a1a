// Which implementation computes an attention call (model.attention_impl): the own kernels
// (attention_forward / attention_backward, every device and precision) or cuDNN's fused attention
// (kernels/cuda/attention_cudnn.h), which a config may ask for and which runs where it can: on a
// CUDA device, in bf16, on the calls cuDNN can express. Every call decides alone, from its own
// shape, so a layer whose cached-prefix or ring blocks cuDNN cannot express still runs its plain
// calls there; forward and backward of a call decide alike.
#pragma once

#include <string>

#include "kernels/shapes.h"
#include "kernels/types.h"
#include "model/config.h"

namespace nexus {

struct AttentionImplChoice {
  bool cudnn = false;
  // With model.attention_impl = cudnn and the own kernel chosen: why cuDNN cannot run the call.
  const char* why_not_cudnn = nullptr;
};

// The implementation of one attention call with activations of type T on `device`.
template <typename T>
AttentionImplChoice choose_attention_impl(const ModelConfig& c, Device device, const AttentionShape& s);

// Throws ConfigError when the config asks for cuDNN attention on a CUDA device and this build has
// none (the configure step found no cudnn-frontend headers or no cuDNN 9). The CPU ignores the
// option, so a CPU run, or a stored config read elsewhere, is never refused.
void require_attention_impl_built(const ModelConfig& c, Device device);

// What each attention layer of a training run computes its local attention with, one line per
// layer ("# attention layer 4 (full): cudnn"), for the run's log: micro_batch sequences of
// local_len tokens on each rank, with activations in bf16 or not, and ring attention when cp > 1.
std::string attention_impl_report(const ModelConfig& c, Device device, bool bf16_activations, idx micro_batch,
                                  idx local_len, idx cp);

}  // namespace nexus
