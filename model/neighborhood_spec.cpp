#include "model/neighborhood_spec.h"

#include <algorithm>
#include <bit>
#include <charconv>
#include <limits>

#include "model/config.h"

namespace nexus {

namespace {

constexpr const char* kForms = "full, sliding:W, dilated:W:D, log, block:C or sink:K+<one of these>";

[[noreturn]] void fail(const std::string& key, const std::string& text, const std::string& why) {
  throw ConfigError("invalid model config: " + key + " = \"" + text + "\": " + why + " (expected " + kForms +
                    ", with W, D, C, K positive integers)");
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  while (true) {
    const std::size_t at = s.find(sep, start);
    parts.push_back(s.substr(start, at == std::string::npos ? std::string::npos : at - start));
    if (at == std::string::npos) return parts;
    start = at + 1;
  }
}

// A positive integer, or the failure naming which part of the text is wrong.
std::int64_t positive(const std::string& part, const char* what, const std::string& key, const std::string& text) {
  std::int64_t v = 0;
  const char* end = part.data() + part.size();
  const auto [ptr, ec] = std::from_chars(part.data(), end, v);
  if (part.empty() || ec != std::errc() || ptr != end || v <= 0)
    fail(key, text, std::string(what) + " \"" + part + "\" is not a positive integer");
  return v;
}

// One rule without a sink.
Neighborhood parse_rule(const std::string& rule, const std::string& key, const std::string& text) {
  const std::vector<std::string> f = split(rule, ':');
  Neighborhood n;
  auto arity = [&](std::size_t want) {
    if (f.size() != want)
      fail(key, text, "\"" + f[0] + "\" takes " + std::to_string(want - 1) + " number(s), got \"" + rule + "\"");
  };
  if (f[0] == "full") {
    arity(1);
  } else if (f[0] == "log") {
    arity(1);
    n.kind = Neighborhood::kLog;
  } else if (f[0] == "sliding") {
    arity(2);
    n.kind = Neighborhood::kSliding;
    n.width = positive(f[1], "the window W", key, text);
  } else if (f[0] == "dilated") {
    arity(3);
    n.kind = Neighborhood::kDilated;
    n.width = positive(f[1], "the count W", key, text);
    n.dilation = positive(f[2], "the spacing D", key, text);
    if (n.dilation > std::numeric_limits<std::int64_t>::max() / n.width)
      fail(key, text, "W x D overflows");
  } else if (f[0] == "block") {
    arity(2);
    n.kind = Neighborhood::kBlock;
    n.width = positive(f[1], "the cluster size C", key, text);
  } else if (f[0] == "sink") {
    fail(key, text, "a sink takes another rule after '+' (e.g. sink:4+sliding:512) and cannot be nested");
  } else {
    fail(key, text, "unknown neighborhood \"" + f[0] + "\"");
  }
  return n;
}

}  // namespace

Neighborhood parse_neighborhood(const std::string& text, const std::string& key) {
  if (text.rfind("sink:", 0) != 0) return parse_rule(text, key, text);
  const std::size_t plus = text.find('+');
  if (plus == std::string::npos) fail(key, text, "a sink needs another rule after '+', e.g. sink:4+sliding:512");
  Neighborhood n = parse_rule(text.substr(plus + 1), key, text);
  n.sink = positive(text.substr(5, plus - 5), "the sink size K", key, text);
  return n;
}

std::string format_neighborhood(const Neighborhood& n) {
  std::string rule;
  switch (n.kind) {
    case Neighborhood::kFull: rule = "full"; break;
    case Neighborhood::kSliding: rule = "sliding:" + std::to_string(n.width); break;
    case Neighborhood::kDilated: rule = "dilated:" + std::to_string(n.width) + ":" + std::to_string(n.dilation); break;
    case Neighborhood::kLog: rule = "log"; break;
    case Neighborhood::kBlock: rule = "block:" + std::to_string(n.width); break;
  }
  return n.sink > 0 ? "sink:" + std::to_string(n.sink) + "+" + rule : rule;
}

std::vector<Neighborhood> parse_neighborhood_list(const std::string& text, idx attention_layers,
                                                  const std::string& key) {
  const std::vector<std::string> entries = split(text, ',');
  if (entries.size() != 1 && static_cast<idx>(entries.size()) != attention_layers)
    throw ConfigError("invalid model config: " + key + " = \"" + text + "\" has " + std::to_string(entries.size()) +
                      " entries; expected 1 (for every attention layer) or one per attention layer (" +
                      std::to_string(attention_layers) + ")");
  std::vector<Neighborhood> out;
  for (idx i = 0; i < attention_layers; ++i)
    out.push_back(parse_neighborhood(entries[entries.size() == 1 ? 0 : static_cast<std::size_t>(i)], key));
  return out;
}

bool operator==(const Neighborhood& a, const Neighborhood& b) {
  return a.kind == b.kind && a.width == b.width && a.dilation == b.dilation && a.sink == b.sink;
}

double mean_visible_keys(const Neighborhood& n, idx T) {
  if (T <= 0) return 0.0;
  double total = 0;
  for (idx t = 0; t < T; ++t) {
    idx count = 0;
    switch (n.kind) {
      case Neighborhood::kFull: count = t + 1; break;
      case Neighborhood::kSliding: count = std::min<idx>(t + 1, n.width); break;
      case Neighborhood::kDilated: count = std::min<idx>(n.width, t / n.dilation + 1); break;
      case Neighborhood::kLog: count = 1 + (t > 0 ? std::bit_width(static_cast<std::uint64_t>(t)) : 0); break;
      case Neighborhood::kBlock: count = t % n.width + 1; break;
    }
    // Sink keys the rule alone would not show.
    Neighborhood rule = n;
    rule.sink = 0;
    for (idx k = 0; k < std::min<idx>(n.sink, t + 1); ++k) count += rule.visible(t, k) ? 0 : 1;
    total += double(count);
  }
  return total / double(T);
}

}  // namespace nexus
