// Token embedding: a row gather forward, a row scatter-add backward.
//
// Token ids are trusted to lie in [0, V): the model validates tokens when it loads a batch, and V is
// not even passed here. An out-of-range id is a programming error (out-of-bounds access).
#include <algorithm>

#include "kernels/cpu/backend.h"

namespace nexus::cpu {

namespace {

// Columns per backward work item: 64 floats = four cache lines, so two threads never write the same
// line of dtable, and enough items (D / 64) to keep every core busy at model widths.
constexpr idx kColumnBlock = 64;

}  // namespace

template <typename T>
void embedding_forward(const Exec&, T* out, const std::int32_t* tokens, const T* table, idx N, idx D) {
#pragma omp parallel for schedule(static)
  for (idx n = 0; n < N; ++n) {
    const T* row = table + static_cast<idx>(tokens[n]) * D;  // [D]
    std::copy_n(row, D, out + n * D);
  }
}

template <typename T>
void embedding_backward(const Exec&, accum_t<T>* dtable, const std::int32_t* tokens, const T* dout, idx N, idx D) {
  // Several tokens of a batch usually share an id, so splitting the tokens across threads would
  // race on dtable rows. Splitting the columns instead makes every thread the sole writer of its
  // columns in every row, with no reduction buffer; each thread still streams all of dout once.
  const idx blocks = (D + kColumnBlock - 1) / kColumnBlock;
#pragma omp parallel for schedule(static)
  for (idx blk = 0; blk < blocks; ++blk) {
    const idx d0 = blk * kColumnBlock;
    const idx width = std::min(kColumnBlock, D - d0);
    for (idx n = 0; n < N; ++n) {
      T* __restrict dst = dtable + static_cast<idx>(tokens[n]) * D + d0;  // [width] of row tokens[n]
      const T* __restrict src = dout + n * D + d0;                        // [width] of row n
      for (idx d = 0; d < width; ++d) dst[d] += src[d];
    }
  }
}

template void embedding_forward<float>(const Exec&, float*, const std::int32_t*, const float*, idx, idx);
template void embedding_forward<double>(const Exec&, double*, const std::int32_t*, const double*, idx, idx);
template void embedding_backward<float>(const Exec&, float*, const std::int32_t*, const float*, idx, idx);
template void embedding_backward<double>(const Exec&, double*, const std::int32_t*, const double*, idx, idx);

}  // namespace nexus::cpu
