#include "trainer/metrics.h"

#include <sys/resource.h>

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
  // Progress and ETA ride on every step line rather than a redrawn bar: mpirun gives ranks a
  // pseudo-terminal even when the job's output goes to a file, where escape codes would be noise.
  if (m.step > first_step_) {
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const double rate = double(m.step - first_step_) / elapsed;  // steps per second in this run
    eta_s_ = double(m.total_steps - m.step) / rate;
  }
  const int eta = int(eta_s_ + 0.5);
  std::printf("step %6lld/%lld %3.0f%% | loss %.4f | lr %.2e | gnorm %.3f | %8.0f tok/s | %7.1f ms | mfu %5.1f%% | "
              "mem %.0f MiB%s | eta %d:%02d:%02d%s\n",
              (long long)m.step, (long long)m.total_steps, 100.0 * double(m.step) / double(std::max<idx>(m.total_steps, 1)),
              m.loss, m.lr, m.grad_norm, m.tokens_per_s, m.ms, 100.0 * m.mfu, m.peak_mem_mib,
              (std::string(m.peak_device_mib > 0 ? " | gpu " + std::to_string(long(m.peak_device_mib + 0.5)) + " MiB" : "") +
               (m.comm_wait_ms > 0 ? " | comm wait " + std::to_string(long(m.comm_wait_ms + 0.5)) + " ms" : ""))
                  .c_str(),
              eta / 3600,
              eta / 60 % 60, eta % 60, m.bad_steps ? (" | skipped " + std::to_string(m.bad_steps)).c_str() : "");
  std::fflush(stdout);
  write_json(nlohmann::json{{"step", m.step},
                            {"loss", m.loss},
                            {"lr", m.lr},
                            {"grad_norm", m.grad_norm},
                            {"tokens_per_s", m.tokens_per_s},
                            {"ms", m.ms},
                            {"mfu", m.mfu},
                            {"peak_mem_mib", m.peak_mem_mib},
                            {"peak_device_mib", m.peak_device_mib},
                            {"comm_wait_ms", m.comm_wait_ms},
                            {"bad_steps", m.bad_steps}}
                 .dump());
}

void MetricsLog::eval(idx step, double loss, double accuracy) {
  if (!enabled_) return;
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
  std::printf("%s\n", text.c_str());
  std::fflush(stdout);
  write_json(nlohmann::json{{"note", text}}.dump());
}

}  // namespace nexus
