// scheduler_slice: asks the kernel's fair scheduler (EEVDF) for a shorter time slice for
// the calling thread.
//
// Linux >= 6.12 lets a SCHED_OTHER thread request its slice with sched_setattr()
// (sched_runtime, clamped to 100 us .. 100 ms; by default a few ms, 3 ms on the
// development machine's 6.18). A thread that wakes with a shorter slice than the one
// running on its CPU preempts it at once (PREEMPT_SHORT) instead of waiting until the
// running thread has had its share (RUN_TO_PARITY). A reactor sleeps in epoll_wait() and
// wakes for each frame, so a short slice is what lets a frame's wake-up go ahead of a
// busy neighbour's bulk work. No privilege is needed. Older kernels accept the call and
// ignore the value: the result says so.
#pragma once

#include <sys/types.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace relay::net {

enum class SliceResult {
  kSet,          // the kernel now uses `slice` for this thread
  kUnsupported,  // the kernel took the call but has no per-thread slice (Linux < 6.12)
  kNotFair,      // the thread runs under a real-time or deadline policy: left alone
};

// Requests `slice` for the calling thread, keeping its policy and nice value. An error
// status when the kernel refuses (e.g. a seccomp filter); the thread is then unchanged.
absl::StatusOr<SliceResult> RequestSchedulerSlice(absl::Duration slice);

// The current slice of thread `tid` (0: the calling thread) as the kernel reports it (0
// on kernels that report none). Any thread the caller may inspect, e.g. another
// process's reactors from /proc/PID/task.
absl::StatusOr<absl::Duration> SchedulerSliceOf(pid_t tid);
inline absl::StatusOr<absl::Duration> CurrentSchedulerSlice() { return SchedulerSliceOf(0); }

}  // namespace relay::net
