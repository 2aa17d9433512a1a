// CommWatchdog on the CPU with fake hooks: what the NCCL plane relies on to end a run that would
// otherwise hang (an operation that never ends, an asynchronous error), and what it must not do
// (report a healthy run, call anything after it was destroyed). Timeouts are 200 ms (1 s where a
// stalled test thread could reach one and fail a healthy case) and polls 10 ms, so the suite takes
// a few seconds; the bounds on how soon a fatal report comes are loose (seconds) because the
// machine running the tests may be loaded.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "parallel/comm_watchdog.h"

namespace nexus {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Fake communicator: which ops have ended, the async error, and what the watchdog reported.
struct Fake {
  std::mutex m;
  std::set<std::uint64_t> done;
  std::string error;
  std::vector<std::uint64_t> asked, retired;
  std::vector<std::string> fatal;
  bool throw_in_complete = false;

  CommWatchdog::Hooks hooks() {
    CommWatchdog::Hooks h;
    h.complete = [this](std::uint64_t op) {
      std::lock_guard<std::mutex> lock(m);
      if (throw_in_complete) throw std::runtime_error("cudaEventQuery: an illegal memory access");
      asked.push_back(op);
      return done.count(op) > 0;
    };
    h.async_error = [this] {
      std::lock_guard<std::mutex> lock(m);
      return error;
    };
    h.retired = [this](std::uint64_t op) {
      std::lock_guard<std::mutex> lock(m);
      retired.push_back(op);
    };
    h.fatal = [this](const std::string& message) {
      std::lock_guard<std::mutex> lock(m);
      fatal.push_back(message);
    };
    return h;
  }
  void finish(std::uint64_t op) {
    std::lock_guard<std::mutex> lock(m);
    done.insert(op);
  }
  std::size_t fatal_count() {
    std::lock_guard<std::mutex> lock(m);
    return fatal.size();
  }
};

const std::string kWho = "NCCL data plane, rank 3 (group rank 1 of 2)";

std::unique_ptr<CommWatchdog> watchdog(Fake& f, std::chrono::milliseconds timeout) {
  return std::make_unique<CommWatchdog>(kWho, timeout, f.hooks(), 10ms);
}

// Polls `condition` until it holds or `limit` passes; whether it held.
template <typename F>
bool eventually(F condition, std::chrono::milliseconds limit = 3000ms) {
  const auto deadline = Clock::now() + limit;
  while (!condition()) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

TEST(CommWatchdog, AnOperationThatNeverEndsIsFatalAfterTheTimeout) {
  Fake f;
  const auto start = Clock::now();
  auto w = watchdog(f, 200ms);
  w->launched(7, "ncclAllReduce");
  ASSERT_TRUE(eventually([&] { return f.fatal_count() > 0; })) << "no fatal report within 3 s of a 200 ms timeout";
  const auto after = Clock::now() - start;
  EXPECT_GE(after, 200ms) << "reported before the timeout";
  std::this_thread::sleep_for(100ms);  // the watchdog stops watching after its report
  w.reset();
  ASSERT_EQ(f.fatal.size(), 1u);
  const std::string& m = f.fatal[0];
  EXPECT_NE(m.find(kWho), std::string::npos) << m;
  EXPECT_NE(m.find("ncclAllReduce"), std::string::npos) << m;
  EXPECT_NE(m.find("not complete after"), std::string::npos) << m;
  EXPECT_NE(m.find("0.2 s"), std::string::npos) << m;  // the timeout
  EXPECT_EQ(m.find('\n'), std::string::npos) << "one line: " << m;
}

TEST(CommWatchdog, AnAsyncErrorIsFatalPromptlyAndNamesTheOldestCall) {
  Fake f;
  auto w = watchdog(f, 60000ms);
  w->launched(1, "ncclSend/ncclRecv");
  w->launched(2, "ncclReduceScatter");
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(f.fatal_count(), 0u) << "a healthy communicator was reported";
  const auto start = Clock::now();
  {
    std::lock_guard<std::mutex> lock(f.m);
    f.error = "ncclRemoteError: remote process exited or there was a network error (peer rank 0 is gone)";
  }
  ASSERT_TRUE(eventually([&] { return f.fatal_count() > 0; }));
  EXPECT_LT(Clock::now() - start, 2000ms) << "an error must not wait for the timeout";
  w.reset();
  ASSERT_EQ(f.fatal.size(), 1u);
  EXPECT_NE(f.fatal[0].find("ncclSend/ncclRecv failed: ncclRemoteError"), std::string::npos) << f.fatal[0];
  EXPECT_NE(f.fatal[0].find("peer rank 0 is gone"), std::string::npos) << f.fatal[0];
  EXPECT_NE(f.fatal[0].find(kWho), std::string::npos) << f.fatal[0];
}

TEST(CommWatchdog, CompletedOperationsAreRetiredInLaunchOrder) {
  Fake f;
  auto w = watchdog(f, 60000ms);
  w->launched(1, "ncclAllReduce");
  w->launched(2, "ncclAllReduce");
  w->launched(3, "ncclAllGather");
  f.finish(2);  // ended out of order: not retired before 1 is
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(w->outstanding(), 3u);
  {
    std::lock_guard<std::mutex> lock(f.m);
    ASSERT_FALSE(f.asked.empty());
    for (std::uint64_t op : f.asked) EXPECT_EQ(op, 1u) << "asked about an op behind the oldest";
  }
  f.finish(1);
  ASSERT_TRUE(eventually([&] { return w->outstanding() == 1; }));
  f.finish(3);
  ASSERT_TRUE(eventually([&] { return w->outstanding() == 0; }));
  w.reset();
  EXPECT_EQ(f.retired, (std::vector<std::uint64_t>{1, 2, 3}));
  EXPECT_TRUE(f.fatal.empty()) << f.fatal[0];
}

TEST(CommWatchdog, IdleOrHealthyItNeverReports) {
  Fake f;
  // A timeout of 1 s, not less: the test thread is the "GPU" here, and a loaded CI machine may
  // stall it between launching an operation and finishing it.
  auto w = watchdog(f, 1000ms);
  std::this_thread::sleep_for(1100ms);  // nothing outstanding for longer than the timeout
  for (std::uint64_t op = 1; op <= 5; ++op) {
    w->launched(op, "ncclAllReduce");
    f.finish(op);
    std::this_thread::sleep_for(250ms);  // 1.25 s of operations, each shorter than the timeout
  }
  ASSERT_TRUE(eventually([&] { return w->outstanding() == 0; }));
  w.reset();
  EXPECT_TRUE(f.fatal.empty()) << f.fatal[0];
}

TEST(CommWatchdog, DestructionStopsTheThreadWithoutACallback) {
  Fake f;
  auto w = watchdog(f, 1000ms);  // 1 s: a stalled test thread must not reach it before reset()
  w->launched(1, "ncclAllReduce");  // never ends
  std::this_thread::sleep_for(50ms);
  const auto start = Clock::now();
  w.reset();
  EXPECT_LT(Clock::now() - start, 1000ms) << "stopping waited for more than a poll";
  const std::size_t asked = f.asked.size();
  std::this_thread::sleep_for(1100ms);  // past the timeout: a thread still running would report
  EXPECT_EQ(f.fatal_count(), 0u);
  std::lock_guard<std::mutex> lock(f.m);
  EXPECT_EQ(f.asked.size(), asked) << "a hook ran after the destructor returned";
}

TEST(CommWatchdog, AHookThatThrowsIsFatalWithItsText) {
  Fake f;
  auto w = watchdog(f, 60000ms);
  {
    std::lock_guard<std::mutex> lock(f.m);
    f.throw_in_complete = true;
  }
  w->launched(1, "ncclAllGather");
  ASSERT_TRUE(eventually([&] { return f.fatal_count() > 0; }));
  std::this_thread::sleep_for(50ms);
  w.reset();
  ASSERT_EQ(f.fatal.size(), 1u);
  EXPECT_NE(f.fatal[0].find("illegal memory access"), std::string::npos) << f.fatal[0];
  EXPECT_NE(f.fatal[0].find(kWho + ": ncclAllGather: "), std::string::npos) << "the operation is named: " << f.fatal[0];
}

}  // namespace
}  // namespace nexus
