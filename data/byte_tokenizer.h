// The byte-level tokenizer: byte b (0..255) is token b, and token 256 is end-of-text (EOT), which
// separates documents. Vocabulary 257; the model's vocab_size may be larger (padded for GEMM
// tiles), the extra rows simply never occur in the data.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/types.h"

namespace nexus {

inline constexpr std::int32_t kByteEot = 256;
inline constexpr idx kByteVocabSize = 257;

// The token of one byte of text.
inline std::int32_t byte_token(char c) { return static_cast<std::int32_t>(static_cast<unsigned char>(c)); }

// Appends the tokens of `text` (one per byte, any byte value) to `out`.
void byte_encode(std::string_view text, std::vector<std::int32_t>& out);
std::vector<std::int32_t> byte_encode(std::string_view text);

// The bytes of tokens[0, n), with each EOT written as `eot_text`. Throws DataError naming the
// index and value of a token outside 0..256.
std::string byte_decode(const std::int32_t* tokens, idx n, std::string_view eot_text = "<|endoftext|>");

// Throws DataError unless model_vocab_size >= 257, suggesting a padded size.
void check_byte_vocab(idx model_vocab_size);

// vocab rounded up to a multiple of `multiple` (e.g. 257 -> 320 for 64).
idx padded_vocab_size(idx vocab, idx multiple = 64);

}  // namespace nexus
