// ForwardChooser: how --forward=auto learns, per reactor, whether staging by copy or by
// splice moves more, or costs its thread less.
//
// Which way is cheaper depends on the host as much as on the load: on one host of this
// project's benchmarks copy won with few busy connections and lost with many; on another
// host (a different CPU and hypervisor) splice won nearly everywhere, 16 senders merging
// into one node moving 18 Gbit/s spliced against 11 copied. A fixed rule tuned on one
// host is wrong on the other, so under load each reactor measures (docs/BENCHMARKS.md,
// "Copy or splice, per connection"):
//
// - While the reactor's thread is busy (its CPU time is at least `min_busy` of the wall
//   time of a window), it runs a trial: one window to settle, then `trial_windows` short
//   windows, the two modes in turn, summing its thread's CPU time and the bytes it
//   forwarded in each mode.
// - The mode that moved more than `rate_margin` more bytes per second wins: where the
//   thread is the bottleneck that is the one with less CPU per byte, and where it is not,
//   the mode changed what the rest of the path could do. Otherwise (the load set the
//   rate) the mode with less CPU per byte wins; it replaces a held one only when it is
//   cheaper by more than `margin`. The winner is held for `hold`; a trial that confirms
//   the held mode doubles the hold (up to `max_hold`), so a steady load pays for few
//   trials.
// - When the thread is not busy, a held mode lapses at the end of its hold and the static
//   rule decides again (kRule): at low load the CPU per byte hardly matters and the rule
//   keeps small frames off pipes (latency). A trial does not count a window that is not
//   busy, and ends without a verdict after more such windows than it has.
//
// Windows are closed lazily: the reactor asks Due(now) when a connection decides how to
// stage (no timer, so an idle reactor does no work for this), and then calls Sample with
// its thread's CPU time and its bytes forwarded so far. A connection keeps the mode it
// chose until its staging empties, so a window also carries some bytes of the previous
// mode; alternating windows make that even for both modes.
//
// Thread: one per reactor, used only on that reactor's thread. No sockets, no clock of its
// own: the caller passes the time and the counters (tests drive it directly).
#pragma once

#include <cstdint>

#include "absl/time/time.h"

namespace relay {

class ForwardChooser {
 public:
  enum class Mode : uint8_t {
    kRule,    // nothing measured holds: the static rule decides
    kCopy,    // stage by copy
    kSplice,  // stage by splice
  };
  struct Options {
    absl::Duration window = absl::Milliseconds(10);
    int trial_windows = 12;  // even: half in each mode
    absl::Duration hold = absl::Seconds(1);
    absl::Duration max_hold = absl::Seconds(8);
    double min_busy = 0.3;
    double margin = 0.05;       // CPU per byte
    double rate_margin = 0.10;  // bytes per second
  };

  ForwardChooser() : ForwardChooser(Options()) {}
  explicit ForwardChooser(const Options& options);

  // The mode staging should use now.
  Mode mode() const;
  // Whether the current window has ended: then call Sample.
  bool Due(absl::Time now) const { return now >= window_end_; }
  // Closes the current window and opens the next. `cpu_ns`: the reactor thread's CPU time
  // so far; `bytes`: the bytes it forwarded so far (both only grow).
  void Sample(absl::Time now, int64_t cpu_ns, uint64_t bytes);

  bool in_trial() const { return in_trial_; }
  // Trials completed, and how many of them changed the held mode.
  uint64_t trials() const { return trials_; }
  uint64_t changes() const { return changes_; }
  // The CPU per byte (ns) each mode showed in the last completed trial (0 before one).
  double last_copy_ns_per_byte() const { return last_cost_[kCopyIndex]; }
  double last_splice_ns_per_byte() const { return last_cost_[kSpliceIndex]; }
  // The bytes per second each mode moved in the last completed trial.
  double last_copy_bytes_per_second() const { return last_rate_[kCopyIndex]; }
  double last_splice_bytes_per_second() const { return last_rate_[kSpliceIndex]; }

 private:
  static constexpr int kCopyIndex = 0;
  static constexpr int kSpliceIndex = 1;
  // The index of kCopy or kSplice in the per-mode arrays.
  static int IndexOf(Mode m) { return m == Mode::kCopy ? kCopyIndex : kSpliceIndex; }
  void StartTrial();
  void EndTrial(absl::Time now);
  void Decide(absl::Time now, Mode next);

  const Options options_;
  Mode held_ = Mode::kRule;
  absl::Duration hold_;
  absl::Time hold_until_ = absl::InfinitePast();
  bool in_trial_ = false;
  bool trial_copy_first_ = true;
  int window_index_ = 0;  // -1: the trial's first window, not counted
  int idle_windows_ = 0;  // windows of this trial that were not busy (not counted)
  int64_t trial_cpu_ns_[2] = {0, 0};
  uint64_t trial_bytes_[2] = {0, 0};
  int64_t trial_wall_ns_[2] = {0, 0};
  double last_cost_[2] = {0, 0};
  double last_rate_[2] = {0, 0};
  // The open window.
  absl::Time window_start_ = absl::InfinitePast();
  absl::Time window_end_ = absl::InfinitePast();
  int64_t window_cpu_ns_ = 0;
  uint64_t window_bytes_ = 0;
  uint64_t trials_ = 0;
  uint64_t changes_ = 0;
};

}  // namespace relay
