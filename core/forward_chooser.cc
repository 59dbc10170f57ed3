#include "core/forward_chooser.h"

#include <algorithm>

namespace relay {

ForwardChooser::ForwardChooser(const Options& options) : options_(options), hold_(options.hold) {}

ForwardChooser::Mode ForwardChooser::mode() const {
  if (!in_trial_) {
    return held_;
  }
  // Window -1 settles the first mode (connections switch as their staging empties).
  const bool first_mode = std::max(window_index_, 0) % 2 == 0;
  return first_mode == trial_copy_first_ ? Mode::kCopy : Mode::kSplice;
}

void ForwardChooser::Sample(absl::Time now, int64_t cpu_ns, uint64_t bytes) {
  const bool first = window_start_ == absl::InfinitePast();
  const absl::Duration wall = now - window_start_;
  const int64_t cpu = cpu_ns - window_cpu_ns_;
  const uint64_t moved = bytes - window_bytes_;
  window_start_ = now;
  window_end_ = now + options_.window;
  window_cpu_ns_ = cpu_ns;
  window_bytes_ = bytes;
  if (first) {
    return;
  }
  // Busy by its CPU share alone: a window may run long (connections decide how to stage
  // seldom when each read takes long, as under a sanitizer), and a long window spent
  // mostly idle has a small share.
  const bool busy =
      moved > 0 && static_cast<double>(cpu) >= options_.min_busy * absl::ToDoubleNanoseconds(wall);
  if (in_trial_) {
    if (!busy) {
      // Not counted. Too many such windows: the load went away; no verdict, the held
      // mode stays.
      if (++idle_windows_ > options_.trial_windows) {
        in_trial_ = false;
        hold_until_ = now + options_.hold;
      }
      return;
    }
    if (window_index_ >= 0) {
      const int m = IndexOf(mode());
      trial_cpu_ns_[m] += cpu;
      trial_bytes_[m] += moved;
      trial_wall_ns_[m] += absl::ToInt64Nanoseconds(wall);
    }
    if (++window_index_ == options_.trial_windows) {
      EndTrial(now);
    }
    return;
  }
  if (now < hold_until_) {
    return;
  }
  if (busy) {
    StartTrial();
  } else {
    held_ = Mode::kRule;  // a light load: the rule decides until the next busy window
    hold_ = options_.hold;
  }
}

void ForwardChooser::StartTrial() {
  in_trial_ = true;
  trial_copy_first_ = held_ != Mode::kCopy;  // the mode not held goes first
  window_index_ = -1;
  idle_windows_ = 0;
  for (int i = 0; i < 2; ++i) {
    trial_cpu_ns_[i] = 0;
    trial_bytes_[i] = 0;
    trial_wall_ns_[i] = 0;
  }
}

void ForwardChooser::EndTrial(absl::Time now) {
  in_trial_ = false;
  if (trial_bytes_[kCopyIndex] == 0 || trial_bytes_[kSpliceIndex] == 0) {
    hold_until_ = now + options_.hold;
    return;
  }
  ++trials_;
  for (int i = 0; i < 2; ++i) {
    last_cost_[i] = static_cast<double>(trial_cpu_ns_[i]) / static_cast<double>(trial_bytes_[i]);
    last_rate_[i] = static_cast<double>(trial_bytes_[i]) /
                    (static_cast<double>(std::max<int64_t>(trial_wall_ns_[i], 1)) / 1e9);
  }
  // A mode that moved clearly more bytes per second wins. Where the reactor's thread is
  // the bottleneck that is also the mode with less CPU per byte; where it is not, the
  // mode changed what the rest of the path could do. Otherwise the load set the rate,
  // and the mode with less CPU per byte wins. (What takes longer than a window to show
  // is not seen: docs/BENCHMARKS.md, "What the measurement cannot see".)
  const double copy_rate = last_rate_[kCopyIndex];
  const double splice_rate = last_rate_[kSpliceIndex];
  if (std::max(copy_rate, splice_rate) >
      std::min(copy_rate, splice_rate) * (1 + options_.rate_margin)) {
    Decide(now, copy_rate > splice_rate ? Mode::kCopy : Mode::kSplice);
    return;
  }
  const Mode cheaper =
      last_cost_[kCopyIndex] <= last_cost_[kSpliceIndex] ? Mode::kCopy : Mode::kSplice;
  Mode next = cheaper;
  if (held_ != Mode::kRule && cheaper != held_) {
    if (last_cost_[IndexOf(cheaper)] > last_cost_[IndexOf(held_)] * (1 - options_.margin)) {
      next = held_;  // not cheaper by enough to switch
    }
  }
  Decide(now, next);
}

void ForwardChooser::Decide(absl::Time now, Mode next) {
  if (next == held_) {
    hold_ = std::min(2 * hold_, options_.max_hold);
  } else {
    held_ = next;
    hold_ = options_.hold;
    ++changes_;
  }
  hold_until_ = now + hold_;
}

}  // namespace relay
