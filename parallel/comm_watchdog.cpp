#include "parallel/comm_watchdog.h"

#include <cstdio>
#include <exception>
#include <string>
#include <type_traits>
#include <utility>

namespace nexus {

namespace {

std::string seconds_text(std::chrono::milliseconds d) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f s", double(d.count()) / 1000.0);
  return text;
}

}  // namespace

CommWatchdog::CommWatchdog(std::string who, std::chrono::milliseconds timeout, Hooks hooks,
                           std::chrono::milliseconds poll)
    : who_(std::move(who)), timeout_(timeout), poll_(poll), hooks_(std::move(hooks)), thread_([this] { run(); }) {}

CommWatchdog::~CommWatchdog() { stop(); }

void CommWatchdog::stop() {
  {
    std::lock_guard<std::mutex> lock(stop_mutex_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void CommWatchdog::launched(std::uint64_t op, const char* call) {
  std::lock_guard<std::mutex> lock(ops_mutex_);
  ops_.push_back(Op{op, call, Clock::now()});
}

std::size_t CommWatchdog::outstanding() const {
  std::lock_guard<std::mutex> lock(ops_mutex_);
  return ops_.size();
}

template <typename F>
bool CommWatchdog::check(F step) {
  std::string problem;
  try {
    if constexpr (std::is_void_v<decltype(step())>)
      step();
    else
      problem = step();
  } catch (const std::exception& e) {
    problem = who_ + ": the watchdog's check failed: " + e.what();
  } catch (...) {
    problem = who_ + ": the watchdog's check failed with an unknown exception";
  }
  if (problem.empty()) return true;
  hooks_.fatal(problem);
  return false;
}

void CommWatchdog::run() {
  if (hooks_.on_start && !check([this] { hooks_.on_start(); })) return;
  std::unique_lock<std::mutex> lock(stop_mutex_);
  while (!stop_cv_.wait_for(lock, poll_, [this] { return stopping_; })) {
    lock.unlock();
    const bool watching = check([this] { return check_hooks(); });
    lock.lock();
    if (!watching) return;
  }
}

std::string CommWatchdog::check_hooks() {
  // Retire what has ended. Only this thread pops, so the front read under the lock stays the front
  // while `complete` (which may take the plane's locks) runs without it.
  for (;;) {
    Op front;
    {
      std::lock_guard<std::mutex> lock(ops_mutex_);
      if (ops_.empty()) break;
      front = ops_.front();
    }
    bool complete = false;
    try {
      complete = hooks_.complete(front.id);
    } catch (const std::exception& e) {
      return who_ + ": " + front.call + ": " + e.what();  // the operation it happened under, named
    }
    if (!complete) break;
    {
      std::lock_guard<std::mutex> lock(ops_mutex_);
      ops_.pop_front();
    }
    if (hooks_.retired) hooks_.retired(front.id);
  }
  bool any = false;
  Op oldest{};
  {
    std::lock_guard<std::mutex> lock(ops_mutex_);
    if (!ops_.empty()) {
      any = true;
      oldest = ops_.front();
    }
  }
  const std::string error = hooks_.async_error();
  if (!error.empty()) return who_ + ": " + (any ? oldest.call : "between operations") + " failed: " + error;
  if (!any) return {};
  const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - oldest.start);
  if (waited <= timeout_) return {};
  return who_ + ": " + oldest.call + " not complete after " + seconds_text(waited) + " (timeout " +
         seconds_text(timeout_) + "): a peer stopped calling, or died unnoticed";
}

}  // namespace nexus
