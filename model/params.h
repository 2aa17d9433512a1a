// The parameter table: every tensor of the model with its Bamba name, logical shape, place in the
// one flat buffer, initialisation rule and weight-decay flag. The flat parameter buffer and the
// flat delta (gradient) buffer share this layout, so one all-reduce, one fused AdamW and one loop
// over the table cover the whole model.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"

namespace nexus {

enum class Init {
  Normal,       // N(0, init_std)
  NormalOut,    // N(0, init_std / sqrt(2 * n_layers)): projections that write into the residual
  Ones,         // norms' weights, D
  ConvUniform,  // conv1d weight and bias: U(-1/sqrt(K), 1/sqrt(K)), PyTorch's default for the layer
  ALog,         // log(U(1, 16))
  DtBias,       // inverse softplus of dt ~ log-uniform in [1e-3, 1e-1], floored at 1e-4
};

struct ParamInfo {
  std::string name;        // Bamba name, e.g. "model.layers.3.mamba.in_proj.weight"
  std::vector<idx> shape;  // logical shape, e.g. {in_proj_dim, d_model}
  idx offset = 0;          // first element in the flat buffer
  idx numel = 0;
  Init init = Init::Normal;
  bool decay = true;  // AdamW weight decay applies (false for norms, biases, dt_bias, A_log, D)
};

class ParamTable {
 public:
  explicit ParamTable(const ModelConfig& config);

  const std::vector<ParamInfo>& params() const { return params_; }
  idx total() const { return total_; }
  // Throws std::out_of_range naming the parameter when absent.
  const ParamInfo& at(const std::string& name) const;
  const ParamInfo* find(const std::string& name) const;

 private:
  void add(std::string name, std::vector<idx> shape, Init init, bool decay);
  std::vector<ParamInfo> params_;
  idx total_ = 0;
};

// Fills the flat buffer per the table's Init rules, deterministically from `seed` (each tensor
// draws from its own stream keyed by its name, so the values do not depend on table order).
template <typename T>
void init_parameters(T* params, const ParamTable& table, const ModelConfig& config, std::uint64_t seed);

}  // namespace nexus
