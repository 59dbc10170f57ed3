#include "core/process_stats.h"

#include <unistd.h>

#include <chrono>

#include "gtest/gtest.h"

namespace relay {
namespace {

// Spins on this thread for `ms` milliseconds of wall time.
void Spin(int ms) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  volatile uint64_t n = 0;
  while (std::chrono::steady_clock::now() < end) {
    n = n + 1;
  }
}

TEST(ProcessStatsTest, ThisProcessIsAliveWithMemoryAndCpu) {
  EXPECT_GT(ProcessRssKib(getpid()), 0);
  EXPECT_GT(ProcessOpenFds(getpid()), 0);
  const double before = ProcessCpuSeconds(getpid());
  Spin(200);
  // /proc counts in clock ticks (10 ms): 200 ms on CPU shows as at least a few of them.
  EXPECT_GE(ProcessCpuSeconds(getpid()) - before, 0.05);
}

TEST(ProcessStatsTest, TheHostsBusyCpuGrowsAtLeastByWhatThisProcessUsed) {
  const double host_before = HostBusyCpuSeconds();
  const double own_before = ProcessCpuSeconds(getpid());
  ASSERT_GT(host_before, 0);
  Spin(200);
  const double own = ProcessCpuSeconds(getpid()) - own_before;
  const double host = HostBusyCpuSeconds() - host_before;
  EXPECT_GE(own, 0.05);
  // Both are sampled in ticks, each read up to one tick (per CPU for the host) early.
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
