#include "net/scheduler_slice.h"

#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <thread>

#include "gtest/gtest.h"

namespace relay::net {
namespace {

// Runs `fn` on a thread of its own, so the test's scheduling changes die with it.
template <typename F>
void OnFreshThread(F fn) {
  std::thread t(fn);
  t.join();
}

TEST(SchedulerSliceTest, TheKernelReportsTheRequestedSliceOrHasNone) {
  OnFreshThread([] {
    absl::StatusOr<absl::Duration> before = CurrentSchedulerSlice();
    ASSERT_TRUE(before.ok()) << before.status();
    absl::StatusOr<SliceResult> result = RequestSchedulerSlice(absl::Microseconds(200));
    ASSERT_TRUE(result.ok()) << result.status();
    absl::StatusOr<absl::Duration> after = CurrentSchedulerSlice();
    ASSERT_TRUE(after.ok()) << after.status();
    if (*result == SliceResult::kSet) {
      EXPECT_EQ(*after, absl::Microseconds(200));
      EXPECT_NE(*before, absl::Microseconds(200)) << "the default slice is not 200 us";
    } else {
      // Linux < 6.12: no per-thread slice, and none reported either before or after.
      ASSERT_EQ(*result, SliceResult::kUnsupported);
      EXPECT_EQ(*before, absl::ZeroDuration());
      EXPECT_EQ(*after, absl::ZeroDuration());
    }
  });
}

TEST(SchedulerSliceTest, KeepsTheThreadsPolicyAndNiceValue) {
  OnFreshThread([] {
    const pid_t tid = static_cast<pid_t>(syscall(SYS_gettid));
    // SCHED_BATCH and a higher nice value need no privilege.
    sched_param param{};
    ASSERT_EQ(sched_setscheduler(tid, SCHED_BATCH, &param), 0);
    ASSERT_EQ(setpriority(PRIO_PROCESS, static_cast<id_t>(tid), 7), 0);
    absl::StatusOr<SliceResult> result = RequestSchedulerSlice(absl::Milliseconds(1));
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_NE(*result, SliceResult::kNotFair);
    EXPECT_EQ(sched_getscheduler(tid), SCHED_BATCH);
    errno = 0;
    EXPECT_EQ(getpriority(PRIO_PROCESS, static_cast<id_t>(tid)), 7);
    EXPECT_EQ(errno, 0);
    if (*result == SliceResult::kSet) {
      EXPECT_EQ(*CurrentSchedulerSlice(), absl::Milliseconds(1));
    }
  });
}

TEST(SchedulerSliceTest, AValueOutsideWhatTheKernelAcceptsIsClampedNotRefused) {
  // The relay validates --reactor_slice itself (100us to 100ms); below that the kernel
  // clamps, so a caller that skipped the check still gets a working thread.
  OnFreshThread([] {
    absl::StatusOr<SliceResult> result = RequestSchedulerSlice(absl::Microseconds(10));
    ASSERT_TRUE(result.ok()) << result.status();
    if (*result == SliceResult::kSet) {
      EXPECT_EQ(*CurrentSchedulerSlice(), absl::Microseconds(100));
    }
  });
}

}  // namespace
}  // namespace relay::net
