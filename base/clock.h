// Clock: the source of "now" for timers and leases, injected so tests are deterministic.
//
// MonotonicClock reads CLOCK_MONOTONIC (never jumps with wall-clock changes) for Now() and
// the real time for WallNow(); FakeClock is advanced by hand in tests. Now() is thread-safe on
// both. Clocks are owned by whoever creates them and must outlive every TimerWheel or LeaseTable
// that uses them.
#pragma once

#include <time.h>

#include <atomic>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace relay {

class Clock {
 public:
  virtual ~Clock() = default;
  // Returns the current time. Only differences between values are meaningful.
  virtual absl::Time Now() const = 0;
  // Returns the wall-clock time (compared with times that nodes send, e.g. fresh claims).
  virtual absl::Time WallNow() const = 0;
};

class MonotonicClock final : public Clock {
 public:
  absl::Time Now() const override {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return absl::TimeFromTimespec(ts);
  }
  absl::Time WallNow() const override { return absl::Now(); }
  // A process-wide instance.
  static MonotonicClock* Get() {
    static MonotonicClock clock;
    return &clock;
  }
};

class FakeClock final : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::UnixEpoch() + absl::Hours(1)) : now_ns_(0) {
    now_ns_ = absl::ToUnixNanos(start);
  }
  absl::Time Now() const override { return absl::FromUnixNanos(now_ns_.load()); }
  // The fake wall clock is the fake time itself (tests sign claims with it).
  absl::Time WallNow() const override { return Now(); }
  void Advance(absl::Duration d) { now_ns_ += absl::ToInt64Nanoseconds(d); }

 private:
  std::atomic<int64_t> now_ns_;
};

}  // namespace relay
