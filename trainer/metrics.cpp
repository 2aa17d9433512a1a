#include "trainer/metrics.h"

#include <sys/resource.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace nexus {

double peak_rss_mib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return double(usage.ru_maxrss) / 1024.0;  // Linux reports KiB
}

MetricsLog::MetricsLog(const std::string& run_dir, bool enabled)
    : enabled_(enabled), start_(std::chrono::steady_clock::now()) {
  if (!enabled_) return;
  tty_ = isatty(STDOUT_FILENO) != 0;
  std::filesystem::create_directories(run_dir);
  path_ = (std::filesystem::path(run_dir) / "metrics.jsonl").string();
  file_ = std::fopen(path_.c_str(), "a");
  if (!file_) throw std::runtime_error("cannot open metrics file " + path_ + " for appending");
}

MetricsLog::~MetricsLog() {
  if (file_) std::fclose(file_);
}

void MetricsLog::write_json(const std::string& line) {
  std::fprintf(file_, "%s\n", line.c_str());
  std::fflush(file_);  // a killed run keeps every line it printed
}

void MetricsLog::step(const StepMetrics& m) {
  if (!enabled_) return;
  if (tty_) std::printf("\r\033[K");  // replace the progress bar with the step line
  std::printf("step %6lld/%lld | loss %.4f | lr %.2e | gnorm %.3f | %8.0f tok/s | %7.1f ms | mfu %5.1f%% | mem %.0f MiB%s\n",
              (long long)m.step, (long long)m.total_steps, m.loss, m.lr, m.grad_norm, m.tokens_per_s, m.ms,
              100.0 * m.mfu, m.peak_mem_mib,
              m.bad_steps ? (" | skipped " + std::to_string(m.bad_steps)).c_str() : "");
  if (tty_) {
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const double frac = double(m.step) / double(std::max<idx>(m.total_steps, 1));
    const double eta = frac > 0 ? elapsed * (1 - frac) / frac : 0;
    const int width = 30, filled = int(frac * width);
    std::printf("[%s%s] %3.0f%% ETA %02d:%02d", std::string(std::size_t(filled), '#').c_str(),
                std::string(std::size_t(width - filled), '.').c_str(), 100 * frac, int(eta) / 60, int(eta) % 60);
  }
  std::fflush(stdout);
  write_json(nlohmann::json{{"step", m.step},
                            {"loss", m.loss},
                            {"lr", m.lr},
                            {"grad_norm", m.grad_norm},
                            {"tokens_per_s", m.tokens_per_s},
                            {"ms", m.ms},
                            {"mfu", m.mfu},
                            {"peak_mem_mib", m.peak_mem_mib},
                            {"bad_steps", m.bad_steps}}
                 .dump());
}

void MetricsLog::eval(idx step, double loss, double accuracy) {
  if (!enabled_) return;
  if (tty_) std::printf("\r\033[K");
  nlohmann::json j{{"step", step}, {"eval_loss", loss}};
  if (accuracy >= 0) {
    std::printf("eval   %6lld | loss %.4f | accuracy %.2f%%\n", (long long)step, loss, 100 * accuracy);
    j["eval_accuracy"] = accuracy;
  } else {
    std::printf("eval   %6lld | loss %.4f\n", (long long)step, loss);
  }
  std::fflush(stdout);
  write_json(j.dump());
}

void MetricsLog::note(const std::string& text) {
  if (!enabled_) return;
  if (tty_) std::printf("\r\033[K");
  std::printf("%s\n", text.c_str());
  std::fflush(stdout);
  write_json(nlohmann::json{{"note", text}}.dump());
}

}  // namespace nexus
