// The time between two points of a stream's work. On the CPU the ops finish before they return,
// so that is the host clock between start() and stop(). On a GPU the host only enqueues: two CUDA
// events recorded on ex.stream measure what the stream itself spent between them, e.g. waiting on
// the communication stream for an all-reduce (the exposed communication time), which the host
// clock around an enqueue would put at ~0.
#pragma once

#include <chrono>

#include "kernels/types.h"

namespace nexus {

class StreamTimer {
 public:
  explicit StreamTimer(const Exec& ex);  // the events are made here, once
  ~StreamTimer();
  StreamTimer(const StreamTimer&) = delete;
  StreamTimer& operator=(const StreamTimer&) = delete;

  void start();
  void stop();
  // Seconds from start() to stop(); on a GPU it waits until the stream reaches stop()'s point, so
  // read it after something that synchronizes anyway (the step's loss) to add no stall.
  double seconds();

 private:
  Exec ex_;
  std::chrono::steady_clock::time_point host_start_, host_stop_;
  void* events_[2] = {nullptr, nullptr};  // CUDA: start, stop
};

}  // namespace nexus
