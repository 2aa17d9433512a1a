#include "data/zigzag.h"

#include <algorithm>

#include "data/token_reader.h"
#include "parallel/zigzag.h"

namespace nexus {

void check_zigzag(idx T, idx cp, idx c) {
  if (cp < 1 || c < 0 || c >= cp) throw data_error("zigzag: cp rank ", c, " is not in [0, cp = ", cp, ")");
  if (T % (2 * cp) != 0)
    throw data_error("seq_len = ", T, " is not a multiple of 2 * cp = ", 2 * cp,
                     " (context parallelism cuts each sequence into 2 * cp equal chunks)");
}

void zigzag_slice(const std::int32_t* full, idx B, idx T, idx cp, idx c, std::int32_t* local) {
  check_zigzag(T, cp, c);
  const idx C = T / (2 * cp), L = 2 * C;
  for (idx b = 0; b < B; ++b) {
    const std::int32_t* row = full + b * T;
    for (idx half = 0; half < 2; ++half) {
      const idx chunk = zigzag_chunk(cp, c, half);
      std::copy(row + chunk * C, row + (chunk + 1) * C, local + b * L + half * C);
    }
  }
}

void zigzag_positions(idx T, idx cp, idx c, idx* positions) {
  check_zigzag(T, cp, c);
  const idx C = T / (2 * cp);
  for (idx half = 0; half < 2; ++half)
    for (idx j = 0; j < C; ++j) positions[half * C + j] = zigzag_chunk(cp, c, half) * C + j;
}

}  // namespace nexus
