#include "core/forward_chooser.h"

#include <algorithm>
#include <cmath>

namespace relay {

ForwardChooser::ForwardChooser(const Options& options) : options_(options), hold_(options.hold) {}

ForwardChooser::Mode ForwardChooser::mode() const {
  if (!in_trial_) {
    return held_;
  }
  return (turn_ % 2 == 0) == trial_copy_first_ ? Mode::kCopy : Mode::kSplice;
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
  const Mode ran = mode();
  Fade(wall);
  bool counted;
  if (in_trial_) {
    counted = busy && turn_window_ >= options_.settle_windows;
  } else {
    counted = busy && held_ != Mode::kRule && settle_left_ == 0;
    settle_left_ = std::max(settle_left_ - 1, 0);
  }
  if (counted) {
    Evidence& e = evidence_[IndexOf(ran)];
    e.cpu_ns += static_cast<double>(cpu);
    e.bytes += static_cast<double>(moved);
    e.wall_ns += absl::ToDoubleNanoseconds(wall);
    if (in_trial_) {
      trial_cpu_ns_ += static_cast<double>(cpu);
      trial_wall_ns_ += absl::ToDoubleNanoseconds(wall);
    } else {
      e.held_wall_ns += absl::ToDoubleNanoseconds(wall);
    }
  }
  if (in_trial_) {
    if (!busy) {
      // Not counted. Too many such windows: the load went away; no verdict, the held
      // mode stays.
      if (++idle_windows_ > options_.turns * options_.turn_windows) {
        in_trial_ = false;
        hold_until_ = now + options_.hold;
        settle_left_ = options_.settle_windows;
      }
      return;
    }
    if (++turn_window_ == options_.turn_windows) {
      turn_window_ = 0;
      if (++turn_ == options_.turns || FarAheadAlready()) {
        EndTrial(now);
      }
    }
    return;
  }
  if (now < hold_until_) {
    return;
  }
  if (!busy) {
    held_ = Mode::kRule;  // a light load: the rule decides until the next busy window
    hold_ = options_.hold;
    warm_windows_ = 0;
    return;
  }
  // Nothing held: a load is starting. Its first busy windows are not like the rest (its
  // connections opening, its rate still rising), and whichever mode ran them would look
  // the worse, so the rule stages them and the trial starts after `warmup_windows`.
  if (held_ == Mode::kRule && ++warm_windows_ < options_.warmup_windows) {
    return;
  }
  warm_windows_ = 0;
  StartTrial();
}

bool ForwardChooser::FarAheadAlready() const {
  double rate[2];
  for (int i = 0; i < 2; ++i) {
    const Evidence& e = evidence_[i];
    if (e.bytes < 1) {
      return false;
    }
    rate[i] = e.bytes / (std::max(e.wall_ns, 1.0) / 1e9);
  }
  const double ratio = std::max(rate[0], rate[1]) / std::max(std::min(rate[0], rate[1]), 1.0);
  if (ratio <= 1 + 4 * options_.rate_margin) {
    return false;
  }
  if (turn_ >= 2) {
    return true;  // each mode has had a turn of this trial
  }
  // After the first turn, of the mode not held: the held mode is far ahead by what its
  // hold showed.
  const Mode ahead = rate[kCopyIndex] > rate[kSpliceIndex] ? Mode::kCopy : Mode::kSplice;
  return ahead == held_ && evidence_[IndexOf(held_)].held_wall_ns >=
                               options_.held_evidence * absl::ToDoubleNanoseconds(options_.hold);
}

void ForwardChooser::Fade(absl::Duration age) {
  const double keep = std::exp2(-absl::FDivDuration(age, options_.memory));
  for (Evidence& e : evidence_) {
    e.cpu_ns *= keep;
    e.bytes *= keep;
    e.wall_ns *= keep;
    e.held_wall_ns *= keep;
  }
}

void ForwardChooser::StartTrial() {
  in_trial_ = true;
  trial_copy_first_ = held_ != Mode::kCopy;  // the mode not held goes first
  turn_ = 0;
  turn_window_ = 0;
  idle_windows_ = 0;
  trial_cpu_ns_ = 0;
  trial_wall_ns_ = 0;
}

void ForwardChooser::EndTrial(absl::Time now) {
  in_trial_ = false;
  settle_left_ = options_.settle_windows;
  const Evidence& copy = evidence_[kCopyIndex];
  const Evidence& splice = evidence_[kSpliceIndex];
  if (copy.bytes < 1 || splice.bytes < 1) {
    hold_until_ = now + options_.hold;
    return;
  }
  ++trials_;
  for (int i = 0; i < 2; ++i) {
    const Evidence& e = evidence_[i];
    last_cost_[i] = e.cpu_ns / e.bytes;
    last_rate_[i] = e.bytes / (std::max(e.wall_ns, 1.0) / 1e9);
  }
  // A mode that moved clearly more bytes per second wins. Where the reactor's thread is
  // the bottleneck that is also the mode with less CPU per byte; where it is not, the
  // mode changed what the rest of the path could do. Otherwise the load set the rate,
  // and the mode with less CPU per byte wins.
  const double copy_rate = last_rate_[kCopyIndex];
  const double splice_rate = last_rate_[kSpliceIndex];
  const double rate_ratio =
      std::max(copy_rate, splice_rate) / std::max(std::min(copy_rate, splice_rate), 1.0);
  if (rate_ratio > 1 + options_.rate_margin) {
    // Far ahead (by four margins): a load that changes little pays for fewer trials.
    Decide(now, copy_rate > splice_rate ? Mode::kCopy : Mode::kSplice,
           rate_ratio > 1 + 4 * options_.rate_margin);
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
  // A close call under a steady, heavy load (at most one window per turn not busy, the
  // thread at least probe_busy busy), and the other mode was not held lately: its
  // evidence is only the trials' short turns, which do not show what builds up over a
  // longer run (the node's receive window, say: docs/BENCHMARKS.md). Hold it once, so
  // both are judged by holds. Under a light load, or one that comes and goes (the
  // bench's 10,000 frames/s of 1 KiB keep a reactor 30-36 % busy), the rates say nothing
  // and the cheaper mode stands.
  const Mode other = next == Mode::kCopy ? Mode::kSplice : Mode::kCopy;
  const bool heavy = idle_windows_ <= options_.turns &&
                     trial_cpu_ns_ >= options_.probe_busy * std::max(trial_wall_ns_, 1.0);
  if (heavy && evidence_[IndexOf(other)].held_wall_ns <
                   options_.held_evidence * absl::ToDoubleNanoseconds(options_.hold)) {
    next = other;
  }
  Decide(now, next, /*clear=*/false);
}

void ForwardChooser::Decide(absl::Time now, Mode next, bool clear) {
  if (next == held_) {
    hold_ = std::min(2 * hold_, options_.max_hold);
  } else {
    held_ = next;
    hold_ = clear ? std::min(2 * options_.hold, options_.max_hold) : options_.hold;
    ++changes_;
  }
  hold_until_ = now + hold_;
}

}  // namespace relay
