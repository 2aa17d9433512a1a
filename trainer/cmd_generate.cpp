// `nexus generate`: text from a trained model with recurrent inference (InferenceSession<float>):
// the prompt is prefilled token by token, then each new token is sampled from the last logits
// (temperature, top-k) and fed back, with O(1) work per token in the Mamba layers and a paged KV
// cache in the attention layers. Byte tokenizer in and out; stops at end-of-text.
#include <algorithm>
#include <boost/program_options.hpp>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "data/byte_tokenizer.h"
#include "model/inference.h"
#include "model/memory_need.h"
#include "trainer/commands.h"
#include "trainer/runtime.h"
#include "trainer/export.h"

namespace nexus {

namespace {

struct GenerateError : ConfigError {
  using ConfigError::ConfigError;
};

const char* kGenerateUsage =
    "Usage: nexus generate --model PATH (--prompt TEXT | --tokens IDS) --max-new-tokens N [--temperature T]\n"
    "                      [--top-k K] [--seed S] [--device cpu|cuda]\n"
    "  Continues TEXT (byte tokenizer) until N new tokens or end-of-text; prints the text.\n"
    "  --model PATH          a step_*.h5 checkpoint, a checkpoint directory (its latest) or an export folder\n"
    "  --prompt TEXT         the beginning of the text (may be empty: generation starts a new document)\n"
    "  --tokens IDS          instead of text, comma-separated token ids (any vocabulary, e.g. the built-in\n"
    "                        recall task's); the continuation is printed as token ids\n"
    "  --max-new-tokens N    at most N tokens after the prompt\n"
    "  --temperature T       softmax temperature; 0 picks the most likely token (default 0.8)\n"
    "  --top-k K             sample among the K most likely tokens; 0 means all (default 40)\n"
    "  --seed S              sampling seed (default 1234)\n"
    "  --device DEVICE       cpu (default) or cuda: where the model runs (fp32)\n";

[[noreturn]] void usage_error(const std::string& what) {
  throw GenerateError("nexus generate: " + what + "\n" + kGenerateUsage);
}

// Far more than any context this CPU decoder is meant for; keeps the KV pool size arithmetic small.
constexpr long long kMaxNewTokens = 1 << 24;

// NaN or inf logits (broken weights) would be sampled as token 0 forever: stop with an error.
void require_finite_logits(const float* logits, idx n, const std::string& where, const std::string& model) {
  for (idx i = 0; i < n; ++i)
    if (!std::isfinite(logits[i]))
      throw GenerateError("nexus generate: the logits " + where + " are not finite (" + std::to_string(logits[i]) +
                          " for token id " + std::to_string(i) + ") in " + model);
}

struct SamplerScratch {
  std::vector<std::int32_t> order;  // [n] token ids, the top k first
  std::vector<double> weight;       // [k] unnormalised probabilities
};

// Draws the next token from logits[0, n): the argmax at temperature 0, otherwise a sample from
// softmax(logits / temperature) restricted to the top_k largest (all when top_k is 0).
std::int32_t sample_token(const float* logits, idx n, double temperature, idx top_k, std::mt19937_64& rng,
                          SamplerScratch& scratch) {
  std::vector<std::int32_t>& order = scratch.order;
  std::vector<double>& weight = scratch.weight;
  if (temperature == 0.0) return static_cast<std::int32_t>(std::max_element(logits, logits + n) - logits);
  const idx k = top_k > 0 ? std::min(top_k, n) : n;
  order.resize(static_cast<std::size_t>(n));
  for (idx i = 0; i < n; ++i) order[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(i);
  // Ties broken by token id, so the candidate set does not depend on the sort's internals.
  auto larger = [logits](std::int32_t a, std::int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  std::partial_sort(order.begin(), order.begin() + k, order.end(), larger);
  const double top = double(logits[order[0]]);
  double total = 0.0;
  weight.resize(static_cast<std::size_t>(k));
  for (idx i = 0; i < k; ++i) {
    weight[static_cast<std::size_t>(i)] =
        std::exp((double(logits[order[static_cast<std::size_t>(i)]]) - top) / temperature);
    total += weight[static_cast<std::size_t>(i)];
  }
  double u = std::uniform_real_distribution<double>(0.0, total)(rng);
  for (idx i = 0; i < k; ++i) {
    u -= weight[static_cast<std::size_t>(i)];
    if (u < 0.0) return order[static_cast<std::size_t>(i)];
  }
  return order[static_cast<std::size_t>(k - 1)];  // u landed on total itself (rounding)
}

}  // namespace

int command_generate(int argc, char** argv) {
  std::string model_path, prompt, token_list, device = "cpu";
  long long max_new = 0, top_k = 40;
  double temperature = 0.8;
  std::uint64_t seed = 1234;
  namespace po = boost::program_options;
  po::options_description options;
  options.add_options()("help,h", "")("model", po::value(&model_path))("prompt", po::value(&prompt))("tokens", po::value(&token_list))(
      "max-new-tokens", po::value(&max_new))("temperature", po::value(&temperature))("top-k", po::value(&top_k))(
      "seed", po::value(&seed))("device", po::value(&device));
  const po::positional_options_description no_positional;  // a stray word is an error
  po::variables_map vm;
  try {
    // Boost skips argv[0] ("generate") as the program name.
    po::store(po::command_line_parser(argc, argv).options(options).positional(no_positional).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    usage_error(e.what());
  }
  if (vm.count("help")) {
    std::printf("%s", kGenerateUsage);
    return 0;
  }
  if (model_path.empty()) usage_error("needs --model PATH");
  const Exec ex = command_exec(device, "nexus generate");
  const bool text_mode = !vm.count("tokens");
  if (text_mode && !vm.count("prompt")) usage_error("needs --prompt TEXT or --tokens IDS");
  if (!text_mode && vm.count("prompt")) usage_error("--prompt and --tokens are alternatives: give one");
  if (!vm.count("max-new-tokens")) usage_error("needs --max-new-tokens N");
  if (max_new < 0 || max_new > kMaxNewTokens)
    usage_error("--max-new-tokens " + std::to_string(max_new) + " is out of range: expected 0 to " +
                std::to_string(kMaxNewTokens));
  if (!(temperature >= 0) || !std::isfinite(temperature)) usage_error("--temperature must be >= 0");
  if (top_k < 0) usage_error("--top-k must be >= 0");

  const LoadedModel loaded = load_model_files(model_path);
  const ModelConfig& c = loaded.config;
  std::vector<std::int32_t> context;
  if (text_mode) {
    try {
      check_byte_vocab(c.vocab_size);
    } catch (const std::exception& e) {
      throw GenerateError(std::string("nexus generate: ") + e.what() + " (use --tokens for other vocabularies)");
    }
    // An empty prompt starts a new document: the context is the end-of-text that precedes one.
    context = prompt.empty() ? std::vector<std::int32_t>{kByteEot} : byte_encode(prompt);
  } else {
    std::stringstream list(token_list);
    for (std::string item; std::getline(list, item, ',');) {
      char* end = nullptr;
      const long long id = std::strtoll(item.c_str(), &end, 10);
      if (item.empty() || *end != '\0' || id < 0 || id >= c.vocab_size)
        usage_error("--tokens: '" + item + "' is not a token id in [0, " + std::to_string(c.vocab_size) + ")");
      context.push_back(static_cast<std::int32_t>(id));
    }
    if (context.empty()) usage_error("--tokens needs at least one token id");
    std::printf("%s ->", token_list.c_str());
  }
  const auto n_prompt = static_cast<idx>(context.size());
  constexpr idx kBlockTokens = 16;
  // A bounded neighborhood (sliding, block, dilated in every attention layer) frees old blocks,
  // so the pool needs only what one window spans, however long the generation.
  const idx blocks = kv_blocks_needed(c, n_prompt + static_cast<idx>(max_new), 1, kBlockTokens);
  const bool bounded = InferenceSession<float>::bounded_blocks(c, kBlockTokens) > 0;
  MemoryNeed need;
  need.activations = InferenceSession<float>::cache_bytes(c, 1, kBlockTokens, blocks);
  if (ex.device != Device::cpu) need.parameters = std::size_t(loaded.params.size()) * sizeof(float);  // a device copy
  require_device_memory("nexus generate (" + std::to_string(n_prompt + max_new) + " tokens of context)", need, ex);
  // The weights on the session's device: the loaded host copy itself on the CPU.
  DeviceBuffer<float> device_params;
  const float* params = loaded.params.data();
  if (ex.device != Device::cpu) {
    device_params = DeviceBuffer<float>(ex, idx(loaded.params.size()));
    copy_to_device(ex, device_params.data(), params, device_params.bytes());
    params = device_params.data();
  }
  InferenceSession<float> session(c, params, 1, kBlockTokens, blocks, ex);
  // The next token's logits on the host, for the sampler: the session's own buffer on the CPU, a
  // copy into one reused host buffer otherwise.
  std::vector<float> host_logits(ex.device == Device::cpu ? 0 : std::size_t(c.vocab_size));
  auto on_host = [&](const float* device_logits) {
    if (ex.device == Device::cpu) return device_logits;
    copy_to_host(ex, host_logits.data(), device_logits, host_logits.size() * sizeof(float));
    return static_cast<const float*>(host_logits.data());
  };
  if (c.attention_layer_count() > 0)
    std::fprintf(stderr, "attention: %s; KV cache %lld blocks of %lld tokens%s\n", c.attention_neighborhood.c_str(),
                 static_cast<long long>(blocks), static_cast<long long>(kBlockTokens),
                 bounded ? " (bounded by the neighborhood)" : "");

  std::fprintf(stderr, "model: %s\n", loaded.description.c_str());
  if (text_mode) std::fwrite(prompt.data(), 1, prompt.size(), stdout);
  std::fflush(stdout);
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  const float* logits = on_host(session.prefill(context.data(), n_prompt));
  require_finite_logits(logits, c.vocab_size, "after the prompt", loaded.description);
  const auto t1 = Clock::now();
  std::mt19937_64 rng(seed);
  SamplerScratch scratch;
  idx generated = 0;
  for (; generated < max_new; ++generated) {
    // Only the byte vocabulary: rows past 256 (padding) never occur in the data.
    const idx choices = text_mode ? idx(kByteVocabSize) : c.vocab_size;
    const std::int32_t next = sample_token(logits, choices, temperature, static_cast<idx>(top_k), rng, scratch);
    if (text_mode && next == kByteEot) break;
    if (text_mode) {
      const std::string text = byte_decode(&next, 1);
      std::fwrite(text.data(), 1, text.size(), stdout);
    } else {
      std::printf(" %d", next);
    }
    std::fflush(stdout);
    if (generated + 1 < max_new) {
      logits = on_host(session.step(&next));
      require_finite_logits(logits, c.vocab_size, "at generated token " + std::to_string(generated + 1),
                            loaded.description);
    }
  }
  const auto t2 = Clock::now();
  std::printf("\n");
  const double prefill_s = std::chrono::duration<double>(t1 - t0).count();
  const double decode_s = std::chrono::duration<double>(t2 - t1).count();
  std::fprintf(stderr, "prompt: %lld tokens in %.3f s; generated: %lld tokens in %.3f s (%.1f tokens/s)\n",
               (long long)n_prompt, prefill_s, (long long)generated, decode_s,
               decode_s > 0 ? double(generated) / decode_s : 0.0);
  return 0;
}

}  // namespace nexus
