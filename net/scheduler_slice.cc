#include "net/scheduler_slice.h"

#include <errno.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace relay::net {
namespace {

// struct sched_attr of <linux/sched/types.h> (glibc 2.36 has neither the struct nor
// wrappers), as of SCHED_ATTR_SIZE_VER1 (Linux 5.3).
struct SchedAttr {
  uint32_t size;
  uint32_t sched_policy;
  uint64_t sched_flags;
  int32_t sched_nice;
  uint32_t sched_priority;
  uint64_t sched_runtime;
  uint64_t sched_deadline;
  uint64_t sched_period;
  uint32_t sched_util_min;
  uint32_t sched_util_max;
};
static_assert(sizeof(SchedAttr) == 56);
constexpr uint64_t kSchedFlagResetOnFork = 0x01;  // SCHED_FLAG_RESET_ON_FORK

absl::StatusOr<SchedAttr> GetAttr(pid_t tid = 0) {
  SchedAttr attr;
  std::memset(&attr, 0, sizeof(attr));
  if (syscall(SYS_sched_getattr, tid, &attr, sizeof(attr), 0) != 0) {
    return absl::ErrnoToStatus(errno, "sched_getattr");
  }
  return attr;
}

}  // namespace

absl::StatusOr<SliceResult> RequestSchedulerSlice(absl::Duration slice) {
  absl::StatusOr<SchedAttr> attr = GetAttr();
  if (!attr.ok()) {
    return attr.status();
  }
  if (attr->sched_policy != SCHED_OTHER && attr->sched_policy != SCHED_BATCH) {
    return SliceResult::kNotFair;
  }
  const uint64_t want = static_cast<uint64_t>(absl::ToInt64Nanoseconds(slice));
  SchedAttr set = *attr;  // same policy and nice value
  set.size = sizeof(set);
  set.sched_flags = attr->sched_flags & kSchedFlagResetOnFork;  // the only flag kept
  set.sched_priority = 0;
  set.sched_runtime = want;
  set.sched_deadline = 0;
  set.sched_period = 0;
  if (syscall(SYS_sched_setattr, 0, &set, 0) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("sched_setattr(sched_runtime=", want, ")"));
  }
  absl::StatusOr<SchedAttr> now = GetAttr();
  if (!now.ok()) {
    return now.status();
  }
  // Kernels before 6.12 report no slice (0) for fair threads; the kernel clamps a request
  // to 100 us .. 100 ms, so "set" is any non-zero answer.
  return now->sched_runtime != 0 ? SliceResult::kSet : SliceResult::kUnsupported;
}

absl::StatusOr<absl::Duration> SchedulerSliceOf(pid_t tid) {
  absl::StatusOr<SchedAttr> attr = GetAttr(tid);
  if (!attr.ok()) {
    return attr.status();
  }
  return absl::Nanoseconds(static_cast<int64_t>(attr->sched_runtime));
}

}  // namespace relay::net
