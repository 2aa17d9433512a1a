// Size arithmetic that cannot wrap. Model, batch and file sizes come from users (INI files, the
// command line, config.json, a checkpoint's stored config, file headers); a product of such sizes
// that overflowed int64 would wrap to a small or negative number, pass later checks and corrupt
// memory. Every such product goes through these helpers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

#include "kernels/ops.h"

namespace nexus {

// a * b, or nullopt when a or b is negative or the product does not fit in idx.
inline std::optional<idx> mul_no_overflow(idx a, idx b) {
  idx out = 0;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &out)) return std::nullopt;
  return out;
}

// a + b, or nullopt when a or b is negative or the sum does not fit in idx.
inline std::optional<idx> add_no_overflow(idx a, idx b) {
  idx out = 0;
  if (a < 0 || b < 0 || __builtin_add_overflow(a, b, &out)) return std::nullopt;
  return out;
}

// a * b for non-negative sizes; throws std::overflow_error naming `what` when it would wrap.
// Validated configurations never get there (their bounds keep every product far below 2^63):
// this is the guard for a path that forgot to validate.
inline idx checked_mul(idx a, idx b, const char* what) {
  if (const auto r = mul_no_overflow(a, b)) return *r;
  throw std::overflow_error(std::string(what) + " = " + std::to_string(a) + " * " + std::to_string(b) +
                            " is negative or overflows a 64-bit size");
}

inline idx checked_add(idx a, idx b, const char* what) {
  if (const auto r = add_no_overflow(a, b)) return *r;
  throw std::overflow_error(std::string(what) + " = " + std::to_string(a) + " + " + std::to_string(b) +
                            " is negative or overflows a 64-bit size");
}

// Byte counts that saturate at SIZE_MAX instead of wrapping: a memory estimate of an absurd
// configuration reads "more than any machine has" and is refused.
inline std::size_t saturating_add(std::size_t a, std::size_t b) { return a > SIZE_MAX - b ? SIZE_MAX : a + b; }
inline std::size_t saturating_mul(std::size_t a, std::size_t b) {
  std::size_t out = 0;
  return __builtin_mul_overflow(a, b, &out) ? SIZE_MAX : out;
}

}  // namespace nexus
