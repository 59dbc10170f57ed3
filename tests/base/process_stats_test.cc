#include "base/process_stats.h"

#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>

#include "gtest/gtest.h"

namespace relay {
namespace {

// This process's CPU time, to the nanosecond (the clock /proc's figures come from).
double CpuNow() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) / 1e9;
}

// Spins on this thread until the process has used `seconds` more CPU (bounded: 10 s of
// wall time, however busy the machine).
void SpinCpu(double seconds) {
  const double until = CpuNow() + seconds;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  volatile uint64_t n = 0;
  while (CpuNow() < until && std::chrono::steady_clock::now() < deadline) {
    n = n + 1;
  }
}

TEST(ProcessStatsTest, ThisProcessIsAliveWithMemoryAndCpu) {
  EXPECT_GT(ProcessRssKib(getpid()), 0);
  EXPECT_GT(ProcessOpenFds(getpid()), 0);
  const double before = ProcessCpuSeconds(getpid());
  SpinCpu(0.2);
  // /proc counts in clock ticks (10 ms): 200 ms more of CPU is about 20 of them.
  EXPECT_GE(ProcessCpuSeconds(getpid()) - before, 0.15);
}

TEST(ProcessStatsTest, TheHostsBusyCpuGrowsAtLeastByWhatThisProcessUsed) {
  const double host_before = HostBusyCpuSeconds();
  const double own_before = ProcessCpuSeconds(getpid());
  ASSERT_GT(host_before, 0);
  SpinCpu(0.2);
  const double own = ProcessCpuSeconds(getpid()) - own_before;
  const double host = HostBusyCpuSeconds() - host_before;
  EXPECT_GE(own, 0.15);
  // Both in ticks, each read up to a tick (on each CPU, for the host) behind.
  EXPECT_GE(host, own - 0.05);
}

TEST(ProcessStatsTest, AProcessThatDoesNotExistReadsAsNothing) {
  // Above the kernel's pid_max limit (4194304 at most), so never a live process.
  const pid_t none = 1 << 23;
  EXPECT_EQ(ProcessRssKib(none), 0);
  EXPECT_EQ(ProcessCpuSeconds(none), 0);
  EXPECT_EQ(ProcessOpenFds(none), -1);
}

}  // namespace
}  // namespace relay
