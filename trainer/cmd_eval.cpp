// `nexus eval`: one forward pass over a given sequence, for checking a model (or an export)
// against another implementation token by token.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "data/byte_tokenizer.h"
#include "data/token_reader.h"
#include "model/memory_need.h"
#include "model/model.h"
#include "trainer/commands.h"
#include "trainer/export.h"
#include "trainer/runtime.h"

namespace nexus {

namespace {

const char* kEvalUsage =
    "Usage: nexus eval --model PATH (--tokens 1,2,3 | --text TEXT) [--logits-out FILE.npy] [--device cpu|cuda]\n"
    "  One forward pass (batch 1) over the sequence; prints the mean next-token loss.\n"
    "  --model PATH        a step_*.h5 checkpoint, a checkpoint directory (its latest) or an export folder\n"
    "  --tokens LIST       token ids separated by commas\n"
    "  --text TEXT         text, encoded by the byte tokenizer (one token per byte)\n"
    "  --logits-out FILE   write the logits [T, vocab_size] as float32 .npy\n"
    "  --device DEVICE     cpu (default) or cuda: where the forward pass runs (fp32)\n";

[[noreturn]] void usage_error(const std::string& what) { throw EvalError("nexus eval: " + what + "\n" + kEvalUsage); }

std::vector<std::int32_t> parse_tokens(const std::string& list) {
  std::vector<std::int32_t> tokens;
  std::size_t pos = 0;
  while (pos <= list.size()) {
    const std::size_t comma = std::min(list.find(',', pos), list.size());
    std::string item = list.substr(pos, comma - pos);
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    std::size_t used = 0;
    long long v = -1;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (item.empty() || used != item.size() || v < 0 || v > INT32_MAX)
      usage_error("--tokens: item " + std::to_string(tokens.size()) + " '" + item + "' is not a token id");
    tokens.push_back(static_cast<std::int32_t>(v));
    pos = comma + 1;
  }
  return tokens;
}

}  // namespace

void write_npy(const std::string& path, const float* data, const std::vector<idx>& shape) {
  std::string dims;
  idx numel = 1;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    dims += (i ? ", " : "") + std::to_string(shape[i]);
    numel *= shape[i];
  }
  if (shape.size() == 1) dims += ",";  // numpy's tuple syntax: (T,)
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  // Magic (6) + version (2) + header length (2) + header, padded with spaces and ended by '\n' to
  // a multiple of 64 bytes, as numpy writes it.
  header.append(63 - (10 + header.size()) % 64, ' ');
  header += '\n';
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  const auto len = static_cast<std::uint16_t>(header.size());
  const char prefix[8] = {'\x93', 'N', 'U', 'M', 'P', 'Y', 1, 0};
  out.write(prefix, 8);
  const char len_le[2] = {static_cast<char>(len & 0xFF), static_cast<char>(len >> 8)};
  out.write(len_le, 2);
  out << header;
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(numel * idx(sizeof(float))));
  out.flush();
  if (!out) throw ExportError("cannot write " + path);
}

int command_eval(int argc, char** argv) {
  std::string model_path, logits_out, text, token_list, device = "cpu";
  bool have_text = false, have_tokens = false;
  for (const CommandArg& a : split_command_args<EvalError>(argc, argv, {"--model", "--tokens", "--text", "--logits-out", "--device"},
                                                           "nexus eval: ", std::string("\n") + kEvalUsage)) {
    if (a.key == "--help") {
      std::printf("%s", kEvalUsage);
      return 0;
    } else if (a.key == "--model") {
      model_path = a.value;
    } else if (a.key == "--tokens") {
      token_list = a.value;
      have_tokens = true;
    } else if (a.key == "--text") {
      text = a.value;
      have_text = true;
    } else if (a.key == "--logits-out") {
      logits_out = a.value;
    } else if (a.key == "--device") {
      device = a.value;
    } else {
      usage_error("unexpected argument " + (a.key.empty() ? a.value : a.key));
    }
  }
  if (model_path.empty()) usage_error("needs --model PATH");
  const Exec ex = command_exec(device, "nexus eval");
  if (have_text == have_tokens) usage_error("needs exactly one of --tokens and --text");

  const LoadedModel loaded = load_model_files(model_path);
  const ModelConfig& c = loaded.config;
  std::vector<std::int32_t> tokens;
  if (have_text) {
    try {
      check_byte_vocab(c.vocab_size);
    } catch (const DataError& e) {
      throw EvalError(std::string("nexus eval --text: ") + e.what());
    }
    tokens = byte_encode(text);
  } else {
    tokens = parse_tokens(token_list);
  }
  if (tokens.empty()) usage_error("the sequence is empty");
  for (std::size_t t = 0; t < tokens.size(); ++t)
    if (tokens[t] >= c.vocab_size)
      usage_error("token " + std::to_string(t) + " = " + std::to_string(tokens[t]) + " is outside the vocabulary [0, " +
                  std::to_string(c.vocab_size) + ")");

  const auto T = static_cast<idx>(tokens.size());
  std::vector<std::int32_t> targets(tokens.begin() + 1, tokens.end());
  targets.push_back(-1);
  MemoryNeed need = training_memory_need(c, BatchShape{1, T});
  need.optimizer = 0;  // no optimizer; the loaded weights are already counted as in use
  require_device_memory("nexus eval over " + std::to_string(T) + " tokens", need, ex);
  Model<float> model(c, BatchShape{1, T}, nullptr, ex);
  copy_to_device(model.exec(), model.params(), loaded.params.data(), loaded.params.size() * sizeof(float));
  const LossSum loss = model.forward(tokens.data(), targets.data());
  const idx V = c.vocab_size;
  const HostMirror<const float> logits(model.exec(), model.logits(), T * V);
  // A NaN or inf here means the weights or the arithmetic are broken; never print it as a result.
  for (idx i = 0; i < T * V; ++i)
    if (!std::isfinite(logits.data()[i]))
      throw EvalError("nexus eval: the logits of position " + std::to_string(i / V) + " (token " +
                      std::to_string(tokens[static_cast<std::size_t>(i / V)]) + ") are not finite (" +
                      std::to_string(logits.data()[i]) + " for token id " + std::to_string(i % V) + ") in " +
                      loaded.description);
  if (!std::isfinite(loss.sum))
    throw EvalError("nexus eval: the loss is not finite (" + std::to_string(loss.sum) + ") in " + loaded.description);

  std::printf("model: %s\ntokens: %lld\n", loaded.description.c_str(), (long long)T);
  if (loss.count > 0) {
    const double mean = loss.sum / double(loss.count);
    std::printf("loss: %.6f (mean over %lld next-token targets, perplexity %.3f)\n", mean, (long long)loss.count,
                std::exp(mean));
  } else {
    std::printf("loss: n/a (one token has no next-token target)\n");
  }
  if (!logits_out.empty()) {
    write_npy(logits_out, logits.data(), {T, c.vocab_size});
    std::printf("logits [%lld, %lld] float32: %s\n", (long long)T, (long long)c.vocab_size, logits_out.c_str());
  }
  return 0;
}

}  // namespace nexus
