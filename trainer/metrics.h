// What a run reports: one human line per step on stdout (with progress and the ETA), and the same
// fields as JSON lines in <run dir>/metrics.jsonl for plotting.
// Only the root rank constructs an enabled log; the others' calls do nothing.
#pragma once

#include <chrono>
#include <cstdio>
#include <string>

#include "kernels/types.h"

namespace nexus {

struct StepMetrics {
  idx step = 0, total_steps = 0;
  double loss = 0, lr = 0, grad_norm = 0;
  double tokens_per_s = 0, ms = 0;
  double mfu = 0;  // model FLOPs achieved / GEMM peak measured at start
  double peak_mem_mib = 0;     // host: the largest rank's resident-set peak
  double peak_device_mib = 0;  // GPU: the largest rank's device memory peak (0 on the CPU)
  double comm_wait_ms = 0;     // several ranks: the delta reduction's exposed time (the longest rank's)
  idx bad_steps = 0;
};

class MetricsLog {
 public:
  MetricsLog(const std::string& run_dir, bool enabled);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;

  // The step a (resumed) run starts from, so the ETA counts only this run's pace.
  void start_at(idx step) { first_step_ = step; start_ = std::chrono::steady_clock::now(); }
  void step(const StepMetrics& m);
  // accuracy < 0 means the task has no accuracy metric.
  void eval(idx step, double loss, double accuracy);
  void note(const std::string& text);  // a line on stdout, also recorded as {"note": ...}
  const std::string& path() const { return path_; }

 private:
  void write_json(const std::string& line);
  bool enabled_;
  idx first_step_ = 0;
  double eta_s_ = 0;
  std::string path_;
  std::FILE* file_ = nullptr;
  std::chrono::steady_clock::time_point start_;
};

// Peak resident memory of this process so far, in MiB.
double peak_rss_mib();

}  // namespace nexus
