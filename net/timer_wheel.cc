#include "net/timer_wheel.h"

#include <algorithm>

#include "base/log.h"

namespace relay::net {

Timer::~Timer() {
  if (wheel_ != nullptr) {
    wheel_->Cancel(this);
  }
}

void Timer::Unlink() {
  prev_->next_ = next_;
  next_->prev_ = prev_;
  prev_ = next_ = nullptr;
}

TimerWheel::TimerWheel(const Clock* clock, absl::Duration tick, size_t slots)
    : clock_(clock), origin_(clock->Now()), tick_(tick) {
  RELAY_CHECK(slots > 0 && tick > absl::ZeroDuration());
  slots_ = std::make_unique<Timer[]>(slots);
  slot_count_ = slots;
  for (size_t i = 0; i < slots; ++i) {
    slots_[i].prev_ = slots_[i].next_ = &slots_[i];
  }
  done_tick_ = TickOf(origin_);
}

TimerWheel::~TimerWheel() {
  for (size_t i = 0; i < slot_count_; ++i) {
    Timer& s = slots_[i];
    while (s.next_ != &s) {
      Timer* t = s.next_;
      t->Unlink();
      t->wheel_ = nullptr;
    }
  }
}

int64_t TimerWheel::TickOf(absl::Time t) const {
  absl::Duration remainder;
  return absl::IDivDuration(t - origin_, tick_, &remainder);
}

void TimerWheel::Link(Timer* timer, int64_t tick) {
  tick = std::max(tick, done_tick_ + 1);
  Timer& head = slots_[static_cast<size_t>(tick) % slot_count_];
  timer->prev_ = head.prev_;
  timer->next_ = &head;
  head.prev_->next_ = timer;
  head.prev_ = timer;
}

void TimerWheel::Arm(Timer* timer, absl::Time deadline) {
  if (timer->wheel_ != nullptr) {
    timer->Unlink();
  } else {
    ++armed_;
  }
  timer->wheel_ = this;
  timer->deadline_ = deadline;
  // A deadline between ticks fires at the tick after it, never early.
  Link(timer, TickOf(deadline) + 1);
}

void TimerWheel::Extend(Timer* timer, absl::Time deadline) {
  if (timer->wheel_ == nullptr || deadline < timer->deadline_) {
    Arm(timer, deadline);
    return;
  }
  timer->deadline_ = deadline;  // re-linked when its current slot comes up
}

void TimerWheel::Cancel(Timer* timer) {
  if (timer->wheel_ == nullptr) {
    return;
  }
  timer->Unlink();
  timer->wheel_ = nullptr;
  --armed_;
}

size_t TimerWheel::Advance() {
  const absl::Time now = clock_->Now();
  const int64_t now_tick = TickOf(now);
  if (now_tick <= done_tick_) {
    return 0;
  }
  // After a long pause every slot is due at most once: visit each slot once.
  const int64_t first = std::max(done_tick_ + 1, now_tick - static_cast<int64_t>(slot_count_) + 1);
  done_tick_ = now_tick;
  Timer due;
  due.prev_ = due.next_ = &due;
  for (int64_t tick = first; tick <= now_tick; ++tick) {
    Timer& head = slots_[static_cast<size_t>(tick) % slot_count_];
    Timer* t = head.next_;
    while (t != &head) {
      Timer* next = t->next_;
      if (t->deadline_ <= now) {
        t->Unlink();
        t->prev_ = due.prev_;
        t->next_ = &due;
        due.prev_->next_ = t;
        due.prev_ = t;
      } else {
        // Extended, or due in a later round: move it to its own slot unless it is there.
        const int64_t target = std::max(TickOf(t->deadline_) + 1, done_tick_ + 1);
        if (&slots_[static_cast<size_t>(target) % slot_count_] != &head) {
          t->Unlink();
          Link(t, target);
        }
      }
      t = next;
    }
  }
  size_t fired = 0;
  while (due.next_ != &due) {
    Timer* t = due.next_;
    t->Unlink();
    t->wheel_ = nullptr;
    --armed_;
    ++fired;
    t->on_fire_();  // may destroy t, or cancel timers still in `due`
  }
  return fired;
}

int TimerWheel::MillisToNextTick() const {
  if (armed_ == 0) {
    return -1;
  }
  const absl::Time next = origin_ + tick_ * (done_tick_ + 1);
  const absl::Duration left = next - clock_->Now();
  if (left <= absl::ZeroDuration()) {
    return 0;
  }
  return static_cast<int>(absl::ToInt64Milliseconds(absl::Ceil(left, absl::Milliseconds(1))));
}

}  // namespace relay::net
