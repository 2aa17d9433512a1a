// Routes StreamTimer to the backend of its device, as kernels/device_memory.cpp routes memory.
#include "kernels/stream_timer.h"

#if NEXUS_HAS_CUDA
#include "kernels/cuda/backend.h"
#endif
#include "kernels/ops.h"

namespace nexus {

StreamTimer::StreamTimer(const Exec& ex) : ex_(ex) {
  if (ex.device == Device::cpu) return;
#if NEXUS_HAS_CUDA
  events_[0] = cuda::timing_event_create();
  events_[1] = cuda::timing_event_create();
  return;
#endif
  detail::no_backend("StreamTimer", ex.device);
}

StreamTimer::~StreamTimer() {
#if NEXUS_HAS_CUDA
  for (void* e : events_)
    if (e) cuda::timing_event_destroy(e);
#endif
}

void StreamTimer::start() {
  host_start_ = std::chrono::steady_clock::now();
#if NEXUS_HAS_CUDA
  if (events_[0]) cuda::timing_event_record(ex_, events_[0]);
#endif
}

void StreamTimer::stop() {
  host_stop_ = std::chrono::steady_clock::now();
#if NEXUS_HAS_CUDA
  if (events_[1]) cuda::timing_event_record(ex_, events_[1]);
#endif
}

double StreamTimer::seconds() {
#if NEXUS_HAS_CUDA
  if (events_[0]) return cuda::timing_event_seconds(events_[0], events_[1]);
#endif
  return std::chrono::duration<double>(host_stop_ - host_start_).count();
}

}  // namespace nexus
