#include "core/forward_chooser.h"

#include <algorithm>
#include <cmath>

namespace relay {
namespace {

double Rate(double bytes, double wall_ns) { return bytes / (std::max(wall_ns, 1.0) / 1e9); }

}  // namespace

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
  const double wall_ns = absl::ToDoubleNanoseconds(wall);
  const bool busy = moved > 0 && static_cast<double>(cpu) >= options_.min_busy * wall_ns;
  const Mode ran = mode();
  if (in_trial_) {
    if (busy && turn_window_ >= options_.settle_windows) {
      Sums& t = turn_sums_[IndexOf(ran)];
      t.cpu_ns += static_cast<double>(cpu);
      t.bytes += static_cast<double>(moved);
      t.wall_ns += wall_ns;
    }
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
  if (busy && held_ != Mode::kRule && settle_left_ == 0) {
    // The hold's latest windows: its tail, which the next trial's turns are set against.
    tail_bytes_[tail_next_] = static_cast<double>(moved);
    tail_wall_ns_[tail_next_] = wall_ns;
    tail_next_ = (tail_next_ + 1) % kTailWindows;
    tail_count_ = std::min(tail_count_ + 1, kTailWindows);
  }
  settle_left_ = std::max(settle_left_ - 1, 0);
  if (now < hold_until_) {
    return;
  }
  if (!busy) {
    // A light load: the rule decides until the next busy window, and what was measured
    // under the last load no longer counts.
    held_ = Mode::kRule;
    hold_ = options_.hold;
    warm_windows_ = 0;
    ratio_weight_ = 0;
    log_rate_ratio_ = 0;
    log_cost_ratio_ = 0;
    tail_count_ = 0;
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

void ForwardChooser::StartTrial() {
  in_trial_ = true;
  trial_copy_first_ = held_ != Mode::kCopy;  // the mode not held goes first
  turn_ = 0;
  turn_window_ = 0;
  idle_windows_ = 0;
  turn_sums_[kCopyIndex] = Sums();
  turn_sums_[kSpliceIndex] = Sums();
  double bytes = 0, wall_ns = 0;
  for (int i = 0; i < tail_count_; ++i) {
    bytes += tail_bytes_[i];
    wall_ns += tail_wall_ns_[i];
  }
  // A tail of less than half its length (a hold cut short) is not one.
  tail_rate_ = held_ != Mode::kRule && tail_count_ >= kTailWindows / 2 ? Rate(bytes, wall_ns) : 0;
  tail_count_ = 0;
  tail_next_ = 0;
}

double ForwardChooser::LeadWeight(absl::Time now, int index) const {
  const Lead& l = lead_[index];
  return l.weight > 0 ? l.weight * std::exp2(-absl::FDivDuration(now - l.at, options_.memory)) : 0;
}

bool ForwardChooser::FreshLead(absl::Time now, int index) const {
  return LeadWeight(now, index) >= options_.held_evidence;
}

double ForwardChooser::HeldLead(absl::Time now, int index) const {
  return FreshLead(now, index) ? lead_[index].log_sum / lead_[index].weight : 0;
}

double ForwardChooser::LogRateRatio(absl::Time now, bool with_this_trial) const {
  double sum = log_rate_ratio_, weight = ratio_weight_;
  if (with_this_trial) {
    const Sums& c = turn_sums_[kCopyIndex];
    const Sums& s = turn_sums_[kSpliceIndex];
    sum =
        sum * options_.trial_memory + std::log(Rate(c.bytes, c.wall_ns) / Rate(s.bytes, s.wall_ns));
    weight = weight * options_.trial_memory + 1;
  }
  if (weight <= 0) {
    return 0;
  }
  return sum / weight + HeldLead(now, kCopyIndex) - HeldLead(now, kSpliceIndex);
}

bool ForwardChooser::FarAheadAlready() const {
  const double far = std::log1p(4 * options_.rate_margin);
  const Sums& c = turn_sums_[kCopyIndex];
  const Sums& s = turn_sums_[kSpliceIndex];
  if (turn_ >= 2) {
    // Each mode has had a turn of this trial.
    return c.bytes >= 1 && s.bytes >= 1 && std::abs(LogRateRatio(window_start_, true)) > far;
  }
  // After the first turn, of the mode not held: the held mode far ahead by its hold's
  // tail, the windows just before that turn.
  const Sums& other = held_ == Mode::kCopy ? s : c;
  return held_ != Mode::kRule && tail_rate_ > 0 && other.bytes >= 1 &&
         std::log(tail_rate_ / Rate(other.bytes, other.wall_ns)) > far;
}

void ForwardChooser::EndTrial(absl::Time now) {
  in_trial_ = false;
  settle_left_ = options_.settle_windows;
  const Sums& c = turn_sums_[kCopyIndex];
  const Sums& s = turn_sums_[kSpliceIndex];
  if (turn_ == 1 && held_ != Mode::kRule) {
    // Ended after the turn of the mode not held: the held mode is far ahead by its tail.
    ++trials_;
    const Sums& other = held_ == Mode::kCopy ? s : c;
    last_rate_[IndexOf(held_)] = tail_rate_;
    last_rate_[1 - IndexOf(held_)] = Rate(other.bytes, other.wall_ns);
    Decide(now, held_, /*clear=*/true);
    return;
  }
  if (c.bytes < 1 || s.bytes < 1) {
    hold_until_ = now + options_.hold;
    return;
  }
  ++trials_;
  for (int i = 0; i < 2; ++i) {
    last_cost_[i] = turn_sums_[i].cpu_ns / turn_sums_[i].bytes;
    last_rate_[i] = Rate(turn_sums_[i].bytes, turn_sums_[i].wall_ns);
  }
  // The held mode's lead over its own turns: what a longer run of it shows that its turns
  // do not (a receive window grown, pipes filled), measured in adjacent time.
  if (held_ != Mode::kRule && tail_rate_ > 0) {
    Lead& l = lead_[IndexOf(held_)];
    const double kept = LeadWeight(now, IndexOf(held_));
    l.log_sum = (kept > 0 ? l.log_sum * kept / l.weight : 0) +
                std::log(tail_rate_ / last_rate_[IndexOf(held_)]);
    l.weight = kept + 1;
    l.at = now;
  }
  // This trial's turns, copy against splice in adjacent time: what the host did meanwhile
  // (a co-tenant, a slower spell) weighs on both alike.
  log_rate_ratio_ = log_rate_ratio_ * options_.trial_memory +
                    std::log(last_rate_[kCopyIndex] / last_rate_[kSpliceIndex]);
  log_cost_ratio_ = log_cost_ratio_ * options_.trial_memory +
                    std::log(last_cost_[kCopyIndex] / last_cost_[kSpliceIndex]);
  ratio_weight_ = ratio_weight_ * options_.trial_memory + 1;
  const double rate_log = LogRateRatio(now, /*with_this_trial=*/false);  // folded in above
  // A mode that moves clearly more bytes per second wins. Where the reactor's thread is
  // the bottleneck that is also the mode with less CPU per byte; where it is not, the
  // mode changed what the rest of the path could do. Otherwise the load set the rate,
  // and the mode with less CPU per byte wins.
  if (std::abs(rate_log) > std::log1p(options_.rate_margin)) {
    Decide(now, rate_log > 0 ? Mode::kCopy : Mode::kSplice,
           std::abs(rate_log) > std::log1p(4 * options_.rate_margin));
    return;
  }
  const double cost_log = log_cost_ratio_ / ratio_weight_;
  const Mode cheaper = cost_log <= 0 ? Mode::kCopy : Mode::kSplice;
  Mode next = cheaper;
  if (held_ != Mode::kRule && cheaper != held_ &&
      std::abs(cost_log) < -std::log1p(-options_.margin)) {
    next = held_;  // not cheaper by enough to switch
  }
  // A close call under a steady, heavy load (at most one window per turn not busy, the
  // thread at least probe_busy busy), and the other mode's lead when held is not known
  // lately: how it does over a longer run is not known (the node's receive window, say:
  // docs/BENCHMARKS.md). Hold it once, so both leads are known. Under a light load, or
  // one that comes and goes (the bench's 10,000 frames/s of 1 KiB keep a reactor 30-36 %
  // busy), the rates say nothing and the cheaper mode stands.
  const Mode other = next == Mode::kCopy ? Mode::kSplice : Mode::kCopy;
  const double trial_cpu = c.cpu_ns + s.cpu_ns;
  const double trial_wall = c.wall_ns + s.wall_ns;
  const bool heavy = idle_windows_ <= options_.turns &&
                     trial_cpu >= options_.probe_busy * std::max(trial_wall, 1.0);
  if (heavy && !FreshLead(now, IndexOf(other))) {
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
