// Attention neighborhoods written out from their definitions (DESIGN.md section 6), as the
// independent reference for kernels/neighborhood.h: each rule enumerates the positions it lets a
// query read and looks for the key among them, with none of the closed-form index arithmetic
// (distance tests, interval bounds) that the kernels use.
#pragma once

#include <cstdint>

#include "kernels/neighborhood.h"

namespace nexus::test {

inline Neighborhood make_neighborhood(Neighborhood::Kind kind, std::int64_t width = 0, std::int64_t dilation = 1,
                                      std::int64_t sink = 0) {
  Neighborhood n;
  n.kind = kind;
  n.width = width;
  n.dilation = dilation;
  n.sink = sink;
  return n;
}

inline bool naive_visible(const Neighborhood& n, std::int64_t q, std::int64_t k) {
  if (k > q || k < 0) return false;
  if (k < n.sink) return true;  // the first K tokens
  switch (n.kind) {
    case Neighborhood::kFull:
      return true;
    case Neighborhood::kSliding:  // q, q-1, ..., q-W+1
      for (std::int64_t i = 0; i < n.width; ++i)
        if (q - i == k) return true;
      return false;
    case Neighborhood::kDilated:  // q, q-D, ..., q-(W-1)D
      for (std::int64_t i = 0; i < n.width; ++i)
        if (q - i * n.dilation == k) return true;
      return false;
    case Neighborhood::kLog:  // q, q-1, q-2, q-4, ...
      if (k == q) return true;
      for (std::int64_t step = 1; step <= q; step *= 2)
        if (q - step == k) return true;
      return false;
    case Neighborhood::kBlock: {  // the keys of q's cluster up to q
      const std::int64_t cluster_start = q - q % n.width;
      for (std::int64_t j = cluster_start; j <= q; ++j)
        if (j == k) return true;
      return false;
    }
  }
  return false;
}

}  // namespace nexus::test
