#include "data/byte_tokenizer.h"

#include "data/token_reader.h"

namespace nexus {

void byte_encode(std::string_view text, std::vector<std::int32_t>& out) {
  out.reserve(out.size() + text.size());
  for (const char c : text) out.push_back(byte_token(c));
}

std::vector<std::int32_t> byte_encode(std::string_view text) {
  std::vector<std::int32_t> out;
  byte_encode(text, out);
  return out;
}

std::string byte_decode(const std::int32_t* tokens, idx n, std::string_view eot_text) {
  std::string out;
  out.reserve(static_cast<std::size_t>(n));
  for (idx i = 0; i < n; ++i) {
    const std::int32_t t = tokens[i];
    if (t == kByteEot) {
      out += eot_text;
    } else if (t >= 0 && t < 256) {
      out.push_back(static_cast<char>(static_cast<unsigned char>(t)));
    } else {
      throw data_error("byte_decode: token ", i, " has value ", t, ", expected 0..255 (a byte) or ", kByteEot, " (EOT)");
    }
  }
  return out;
}

idx padded_vocab_size(idx vocab, idx multiple) { return (vocab + multiple - 1) / multiple * multiple; }

void check_byte_vocab(idx model_vocab_size) {
  if (model_vocab_size < kByteVocabSize)
    throw data_error("model.vocab_size = ", model_vocab_size, " is too small for byte-level text: it needs ",
                     kByteVocabSize, " tokens (256 bytes + end-of-text); use at least ", kByteVocabSize, ", e.g. ",
                     padded_vocab_size(kByteVocabSize));
}

}  // namespace nexus
