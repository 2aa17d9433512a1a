#include "model/recompute.h"

#include <utility>

#include "model/config.h"

namespace nexus {

Recompute parse_recompute(const std::string& text) {
  const auto bad = [&](const std::string& why) {
    return ConfigError("train.recompute = \"" + text + "\" " + why +
                       ": expected none, all, or a comma-separated list of attention, mamba, mlp");
  };
  if (text == "none") return {};
  if (text == "all") return {true, true, true};
  Recompute r;
  std::size_t start = 0;
  while (true) {
    const std::size_t comma = text.find(',', start);
    const std::string item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    bool* field = item == "attention" ? &r.attention : item == "mamba" ? &r.mamba : item == "mlp" ? &r.mlp : nullptr;
    if (!field) throw bad(item.empty() ? "has an empty item" : "names '" + item + "'");
    if (*field) throw bad("names '" + item + "' twice");
    *field = true;
    if (comma == std::string::npos) return r;
    start = comma + 1;
  }
}

std::string recompute_text(const Recompute& r) {
  if (!r.any()) return "none";
  if (r.attention && r.mamba && r.mlp) return "all";
  std::string out;
  using Kind = std::pair<bool, const char*>;
  for (const auto& [on, name] : {Kind{r.attention, "attention"}, Kind{r.mamba, "mamba"}, Kind{r.mlp, "mlp"}})
    if (on) {
      if (!out.empty()) out += ',';
      out += name;
    }
  return out;
}

}  // namespace nexus
