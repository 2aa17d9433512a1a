// How far back information can have travelled through a stack of layers: for the last position
// t = T-1 of a sequence, the set of input positions that can influence its hidden state after
// layers 0..i, for every i. An attention layer passes on what its neighborhood reads (the union
// over N(u) of every position u already reached); a Mamba-2 layer sees the whole prefix. Exact
// sets, not bounds, so dilated layers show their gaps.
#pragma once

#include <string>
#include <vector>

#include "model/config.h"

namespace nexus {

struct LayerReach {
  idx layer;                 // index into the pattern
  char mixer;                // 'A' or 'M'
  std::string neighborhood;  // the attention layer's, "" for Mamba
  idx reach;                 // t - (earliest position reached): how far back information came from
  idx reached;               // how many of the t + 1 positions [0, t] are reached
  bool whole_prefix;         // reached == t + 1
  std::vector<double> density;  // [bins]: the fraction reached of each equal slice of distances [0, T)
};

// One entry per layer of config's pattern, for the last position of a T-token sequence (T >= 1);
// `bins` slices of distance for LayerReach::density (0: none).
std::vector<LayerReach> receptive_field(const ModelConfig& config, idx T, idx bins = 0);

}  // namespace nexus
