// The host-side watchdog of a communicator whose operations complete on the GPU (the NCCL data
// plane): a thread that, every `poll`, retires the launched operations that have ended, asks for
// the communicator's asynchronous error, and checks how long the oldest operation still running
// has been outstanding. An error, or an operation outstanding longer than `timeout`, calls
// `fatal` once, with one line naming the communicator (`who`), the operation's call and the
// reason, and the thread stops watching.
//
// Why a thread, and why `fatal` ends the process (the NCCL plane's does; PyTorch's
// ProcessGroupNCCL watchdog with TORCH_NCCL_ASYNC_ERROR_HANDLING does the same): operations are
// stream-ordered, so the host does not wait for them where they are issued; it blocks later, in
// whatever CUDA call first needs their result (a device-to-host copy, a synchronize), and a
// collective whose peer died never ends. The thread that issued it can then neither notice nor
// unwind; only another thread can, and the only safe way out is to abort the communicator (so
// its kernels stop spinning) and end the process with a non-zero status, which makes mpirun or
// srun end the other ranks. Checkpoints stay whole: they are published by an atomic rename.
//
// No CUDA or NCCL here: the plane supplies them as hooks, and the CPU tests supply fakes.
// launched() is called by the thread that issues the operations; the hooks run on the watchdog's
// thread (complete, async_error, retired, fatal). A hook that throws is a fatal error with the
// exception's text (for `complete`, after the name of the operation it was asked about).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace nexus {

class CommWatchdog {
 public:
  struct Hooks {
    // Runs once on the watchdog's thread before its first check. Optional. (The NCCL plane makes
    // its GPU current there: a CUDA call on a thread without one would open a context on GPU 0.)
    std::function<void()> on_start;
    // Whether operation `op` has ended. Operations end in the order they were launched (one
    // stream), so only the oldest outstanding one is asked.
    std::function<bool(std::uint64_t op)> complete;
    // The communicator's asynchronous error, empty while it is healthy.
    std::function<std::string()> async_error;
    // `op` is known complete and no longer watched (its event may be reused). Optional.
    std::function<void(std::uint64_t op)> retired;
    // Called at most once, from the watchdog's thread, with the line to report. The plane's does
    // not return; after it returns (tests) the watchdog stops watching.
    std::function<void(const std::string& message)> fatal;
  };

  using Clock = std::chrono::steady_clock;

  // Starts the thread. `who` prefixes every message ("NCCL data plane, rank 3 (group rank 1 of 2)").
  CommWatchdog(std::string who, std::chrono::milliseconds timeout, Hooks hooks,
               std::chrono::milliseconds poll = std::chrono::milliseconds(50));
  // Stops the thread: no hook runs after the destructor (or stop()) returns.
  ~CommWatchdog();
  CommWatchdog(const CommWatchdog&) = delete;
  CommWatchdog& operator=(const CommWatchdog&) = delete;

  void stop();
  // Operation `op` (an id the hooks understand) was launched by NCCL call `call` (a string literal:
  // it is kept, not copied).
  void launched(std::uint64_t op, const char* call);
  // Launched and not yet known complete.
  std::size_t outstanding() const;
  std::chrono::milliseconds timeout() const { return timeout_; }

 private:
  struct Op {
    std::uint64_t id;
    const char* call;
    Clock::time_point start;
  };
  void run();
  // Runs one step (a round of checks: the fatal message or empty; or on_start), turning an
  // exception into the fatal message; false once fatal was called.
  template <typename F>
  bool check(F step);
  // One round's finding: the fatal message, or empty.
  std::string check_hooks();

  const std::string who_;
  const std::chrono::milliseconds timeout_, poll_;
  const Hooks hooks_;

  mutable std::mutex ops_mutex_;
  std::deque<Op> ops_;  // outstanding, oldest first: the issuing thread appends, the watchdog pops

  std::mutex stop_mutex_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
  std::thread thread_;  // last: started once everything above exists
};

}  // namespace nexus
