// TimerWheel: a hashed timing wheel (after Varghese & Lauck, as in Seastar's timer-set and
// Kafka's purgatory) for the per-reactor timers: keepalive deadlines and lease expiries.
//
// Arm, Cancel and Extend are O(1); Advance touches only the slots whose tick has come.
// Timers are built for the common case of moving later all the time (every keepalive
// pushes a deadline): Extend only records the new deadline, and the timer is re-linked
// lazily when its old slot comes up. The clock is injected so tests are deterministic.
//
// Thread: one wheel per reactor; every method runs on that reactor's thread. A Timer must
// not outlive its wheel; destroying an armed Timer cancels it, and a timer's callback may
// destroy the timer itself or any other timer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/functional/any_invocable.h"
#include "absl/time/time.h"
#include "base/clock.h"

namespace relay::net {

class TimerWheel;

class Timer {
 public:
  Timer() = default;
  explicit Timer(absl::AnyInvocable<void()> on_fire) : on_fire_(std::move(on_fire)) {}
  void set_callback(absl::AnyInvocable<void()> on_fire) { on_fire_ = std::move(on_fire); }
  ~Timer();
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  bool armed() const { return wheel_ != nullptr; }
  absl::Time deadline() const { return deadline_; }

 private:
  friend class TimerWheel;
  void Unlink();

  absl::AnyInvocable<void()> on_fire_;
  TimerWheel* wheel_ = nullptr;
  Timer* prev_ = nullptr;
  Timer* next_ = nullptr;
  absl::Time deadline_;
};

class TimerWheel {
 public:
  TimerWheel(const Clock* clock, absl::Duration tick = absl::Milliseconds(50), size_t slots = 8192);
  ~TimerWheel();
  TimerWheel(const TimerWheel&) = delete;
  TimerWheel& operator=(const TimerWheel&) = delete;

  // Arms (or re-arms) `timer` to fire at `deadline`, or at the next tick if that passed.
  void Arm(Timer* timer, absl::Time deadline);
  // Moves an armed timer's deadline later without touching the wheel (lazy re-arm);
  // arms it if it is not armed. A deadline earlier than the current one re-arms.
  void Extend(Timer* timer, absl::Time deadline);
  void Cancel(Timer* timer);

  // Fires every timer whose deadline has passed. Returns how many fired.
  size_t Advance();
  // Milliseconds until the next tick that may fire a timer; -1 when no timer is armed.
  int MillisToNextTick() const;

  size_t armed_count() const { return armed_; }
  const Clock* clock() const { return clock_; }

 private:
  friend class Timer;
  int64_t TickOf(absl::Time t) const;
  void Link(Timer* timer, int64_t tick);

  const Clock* clock_;
  const absl::Time origin_;
  const absl::Duration tick_;
  std::unique_ptr<Timer[]> slots_;  // sentinels of circular lists
  size_t slot_count_;
  int64_t done_tick_;  // every tick <= done_tick_ has been processed
  size_t armed_ = 0;
};

}  // namespace relay::net
