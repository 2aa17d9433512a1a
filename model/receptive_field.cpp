#include "model/receptive_field.h"

#include <algorithm>
#include <stdexcept>

#include "model/neighborhood_spec.h"

namespace nexus {

namespace {

using Reached = std::vector<char>;  // [t + 1]: position p reached

std::size_t at(idx p) { return static_cast<std::size_t>(p); }

// Positions some reached u reads through the neighborhood: {k : exists u reached, visible(u, k)},
// per rule in O(t) (O(t W) dilated, O(t log t) log) rather than over all pairs.
Reached through(const Reached& in, const Neighborhood* nb) {
  const idx n = static_cast<idx>(in.size());
  idx last = -1;  // the latest reached position
  for (idx p = 0; p < n; ++p)
    if (in[at(p)]) last = p;
  Reached out(in.size(), 0);
  if (last < 0) return out;
  auto prefix = [&](idx end) {
    for (idx k = 0; k < std::min(end, last + 1); ++k) out[at(k)] = 1;
  };
  if (!nb || nb->is_full()) {  // Mamba, or full attention: everything up to the latest
    prefix(last + 1);
    return out;
  }
  switch (nb->kind) {
    case Neighborhood::kSliding: {  // k is read iff some reached u lies in [k, k + W - 1]
      idx next = -1;                // the nearest reached position at or after k
      for (idx k = n - 1; k >= 0; --k) {
        if (in[at(k)]) next = k;
        out[at(k)] = next >= 0 && next - k < nb->width;
      }
      break;
    }
    case Neighborhood::kBlock: {  // k is read iff a reached u >= k sits in k's cluster
      idx cluster_last = -1;
      for (idx k = n - 1; k >= 0; --k) {
        if (k % nb->width == nb->width - 1 || k == n - 1) cluster_last = -1;  // a new cluster starts (from above)
        if (in[at(k)] && cluster_last < 0) cluster_last = k;
        out[at(k)] = cluster_last >= k;
      }
      break;
    }
    case Neighborhood::kDilated:
      for (idx u = 0; u < n; ++u)
        if (in[at(u)])
          for (idx i = 0; i < nb->width && u - i * nb->dilation >= 0; ++i) out[at(u - i * nb->dilation)] = 1;
      break;
    case Neighborhood::kLog:
      for (idx u = 0; u < n; ++u)
        if (in[at(u)]) {
          out[at(u)] = 1;
          for (idx step = 1; step <= u; step *= 2) out[at(u - step)] = 1;
        }
      break;
    default:
      break;
  }
  prefix(nb->sink);
  return out;
}

}  // namespace

std::vector<LayerReach> receptive_field(const ModelConfig& c, idx T, idx bins) {
  if (T < 1) throw std::invalid_argument("receptive_field: T = " + std::to_string(T) + " must be positive");
  c.validate();
  const std::string pattern = c.layer_pattern();
  const std::vector<Neighborhood> nbs = c.layer_neighborhoods();
  std::vector<LayerReach> out;
  for (idx top = 0; top < c.n_layers; ++top) {
    // From the last position down through layers top, top-1, ..., 0.
    Reached set(at(T), 0);
    set[at(T - 1)] = 1;
    for (idx i = top; i >= 0; --i) set = through(set, c.is_attention(i) ? &nbs[at(i)] : nullptr);
    const auto first = std::find(set.begin(), set.end(), 1);
    const idx reached = static_cast<idx>(std::count(set.begin(), set.end(), 1));
    std::vector<double> density(at(std::max<idx>(bins, 0)), 0.0), width(density.size(), 0.0);
    for (idx d = 0; d < T && bins > 0; ++d) {  // distance d is position T - 1 - d
      const std::size_t bin = at(d * bins / T);
      width[bin] += 1;
      density[bin] += set[at(T - 1 - d)] ? 1 : 0;
    }
    for (std::size_t b = 0; b < density.size(); ++b) density[b] = width[b] > 0 ? density[b] / width[b] : 0.0;
    out.push_back({top, pattern[at(top)], c.is_attention(top) ? format_neighborhood(nbs[at(top)]) : "",
                   T - 1 - static_cast<idx>(first - set.begin()), reached, reached == T, std::move(density)});
  }
  return out;
}

}  // namespace nexus
