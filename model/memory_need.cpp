#include "model/memory_need.h"

#include <sys/resource.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <utility>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <optional>
#include <sstream>

#include "model/checked_math.h"
#include "model/params.h"
#include "parallel/flat_shard.h"

namespace nexus {

namespace {


// The first number after `key` in a "key: value kB" file such as /proc/meminfo, in bytes.
std::optional<std::size_t> read_kib_field(const char* file, const std::string& key) {
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(key, 0) == 0) {
      std::istringstream fields(line.substr(key.size()));
      unsigned long long kib = 0;
      if (fields >> kib) return saturating_mul(static_cast<std::size_t>(kib), 1024);
    }
  return std::nullopt;
}

// A number alone in a file (cgroup files); nullopt for "max", a missing or unreadable file.
std::optional<std::size_t> read_number_file(const std::string& file) {
  std::ifstream in(file);
  unsigned long long v = 0;
  if (in >> v) return static_cast<std::size_t>(v);
  return std::nullopt;
}

// This process's cgroup v2 directory ("0::/path" in /proc/self/cgroup), or "".
std::string cgroup_v2_dir() {
  std::ifstream in("/proc/self/cgroup");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("0::", 0) == 0) return "/sys/fs/cgroup" + line.substr(3);
  return "";
}

void consider(MemoryAvailable& best, std::optional<std::size_t> bytes, const std::string& source) {
  if (bytes && *bytes < best.bytes) best = {*bytes, source};
}

// limit - used, for a limit and usage read from two files.
std::optional<std::size_t> headroom(const std::string& limit_file, const std::string& usage_file) {
  const auto limit = read_number_file(limit_file), used = read_number_file(usage_file);
  if (!limit) return std::nullopt;
  const std::size_t u = used.value_or(0);
  return *limit > u ? *limit - u : 0;
}

// runtime.memory_limit, set once at startup before any check reads it.
MemoryAvailable& memory_cap() {
  static MemoryAvailable cap;
  return cap;
}

}  // namespace

void set_memory_limit(std::size_t bytes, const std::string& source) {
  memory_cap() = bytes ? MemoryAvailable{bytes, source} : MemoryAvailable{};
}

std::optional<std::size_t> parse_bytes(const std::string& text) {
  static constexpr std::pair<const char*, double> kUnits[] = {
      {"KiB", 1024.0}, {"MiB", 1048576.0}, {"GiB", 1073741824.0}, {"TiB", 1099511627776.0},
      {"KB", 1e3},     {"MB", 1e6},        {"GB", 1e9},           {"TB", 1e12},
      {"B", 1.0},      {"", 1.0}};
  std::size_t digits = 0;
  while (digits < text.size() && (std::isdigit(static_cast<unsigned char>(text[digits])) || text[digits] == '.'))
    ++digits;
  if (digits == 0) return std::nullopt;
  double value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + digits, value);
  if (ec != std::errc() || end != text.data() + digits) return std::nullopt;
  for (const auto& [unit, scale] : kUnits)
    if (text.compare(digits, std::string::npos, unit) == 0) {
      const double bytes = std::round(value * scale);
      if (!(bytes >= 1) || bytes >= double(SIZE_MAX)) return std::nullopt;
      return static_cast<std::size_t>(bytes);
    }
  return std::nullopt;
}

std::size_t resident_bytes() { return read_kib_field("/proc/self/status", "VmRSS:").value_or(0); }
std::size_t peak_resident_bytes() { return read_kib_field("/proc/self/status", "VmHWM:").value_or(0); }

std::size_t MemoryNeed::total() const {
  return saturating_add(saturating_add(saturating_add(parameters, deltas), saturating_add(optimizer, activations)), other);
}

std::string gib(std::size_t bytes) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f GiB", double(bytes) / double(std::size_t(1) << 30));
  return buf;
}

std::string MemoryNeed::breakdown() const {
  std::string out;
  auto part = [&](const char* name, std::size_t bytes) {
    if (bytes) out += (out.empty() ? "" : " + ") + std::string(name) + " " + gib(bytes);
  };
  part("parameters", parameters);
  part("deltas", deltas);
  part("AdamW moments", optimizer);
  part("activations", activations);
  part("other", other);
  return out;
}

MemoryNeed weights_memory_need(const ModelConfig& config, int copies) {
  const ParamTable table(config);  // validates; small (one entry per tensor)
  MemoryNeed need;
  need.parameters = saturating_mul(static_cast<std::size_t>(table.total()), sizeof(float));
  need.other = saturating_mul(need.parameters, static_cast<std::size_t>(std::max(copies, 1) - 1));
  return need;
}

MemoryNeed training_memory_need(const ModelConfig& config, BatchShape shape, int cp_size, int optimizer_shards) {
  MemoryNeed need = weights_memory_need(config);
  need.deltas = need.parameters;                  // Model's flat delta buffer
  need.optimizer = saturating_mul(need.parameters, 2);  // AdamW's exp_avg and exp_avg_sq
  if (optimizer_shards > 1) {
    const std::size_t shard = saturating_mul(static_cast<std::size_t>(largest_flat_shard(
                                          static_cast<idx>(need.parameters / sizeof(float)), optimizer_shards)),
                                      sizeof(float));
    need.optimizer = saturating_mul(shard, 2);
    need.deltas = saturating_add(need.deltas, shard);
  }
  need.activations = Model<float>::activation_bytes(config, shape, cp_size);
  return need;
}

MemoryAvailable available_memory() {
  MemoryAvailable best;
  if (const MemoryAvailable& cap = memory_cap(); cap.bytes != SIZE_MAX) {
    // The cap covers the whole process: what it already holds (libraries, MPI, BLAS) counts.
    const std::size_t held = resident_bytes();
    consider(best, cap.bytes > held ? cap.bytes - held : 0, cap.source + " minus " + gib(held) + " resident");
  }
  consider(best, read_kib_field("/proc/meminfo", "MemAvailable:"), "MemAvailable in /proc/meminfo");
  if (const std::string dir = cgroup_v2_dir(); !dir.empty())
    consider(best, headroom(dir + "/memory.max", dir + "/memory.current"), "cgroup limit " + dir + "/memory.max");
  consider(best, headroom("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
           "cgroup v1 limit /sys/fs/cgroup/memory/memory.limit_in_bytes");
  rlimit as{};
  if (::getrlimit(RLIMIT_AS, &as) == 0 && as.rlim_cur != RLIM_INFINITY) {
    const std::size_t limit = static_cast<std::size_t>(as.rlim_cur);
    const std::size_t used = read_kib_field("/proc/self/status", "VmSize:").value_or(0);
    consider(best, limit > used ? limit - used : 0, "address-space limit (ulimit -v) minus " + gib(used) + " in use");
  }
  return best;
}

std::string memory_shortfall(const std::string& what, const MemoryNeed& need, int processes,
                             const MemoryAvailable& available) {
  const std::size_t each = need.total();
  const std::size_t all = saturating_mul(each, static_cast<std::size_t>(std::max(processes, 1)));
  if (all <= available.bytes) return "";
  std::string message = what + " needs " + (each == SIZE_MAX ? "more than 16 EiB" : gib(each));
  if (processes > 1) message += " per process x " + std::to_string(processes) + " processes on this machine = " + gib(all);
  return message + " (" + need.breakdown() + "), but only " + gib(available.bytes) + " is available (" +
         available.source + ")";
}

void require_memory(const std::string& what, const MemoryNeed& need, int processes) {
  const std::string shortfall = memory_shortfall(what, need, processes, available_memory());
  if (!shortfall.empty()) throw ConfigError(shortfall);
}

}  // namespace nexus
