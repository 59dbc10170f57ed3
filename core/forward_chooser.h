// ForwardChooser: how --forward=auto learns, per reactor, whether staging by copy or by
// splice moves more, or costs its thread less.
//
// Which way is cheaper depends on the host as much as on the load: on one host of this
// project's benchmarks copy won with few busy connections and lost with many; on another
// host (a different CPU and hypervisor) splice won nearly everywhere, 16 senders merging
// into one node moving 18 Gbit/s spliced against 11 copied. A fixed rule tuned on one
// host is wrong on the other, so under load each reactor measures (docs/BENCHMARKS.md,
// "Copy or splice, per connection").
//
// What it measures: only windows (`window`, 10 ms) in which the reactor's thread was busy
// (its CPU time at least `min_busy` of the window's wall time) count, each with the
// thread's CPU time, the bytes it forwarded and its wall time. Copy and splice are set
// against each other in adjacent time, never across seconds: on the shared 2-vCPU
// benchmark machines a mode's rate swings by 20-30 % over tens of milliseconds and by
// half for a second or more (a co-tenant, a slower spell), and evidence pooled over a
// whole hold blamed such a spell on the mode held through it (docs/BENCHMARKS.md, "Copy
// or splice, per connection").
//
// How it decides:
// - While busy, and the held mode's hold is over, it runs a trial: `turns` turns of
//   `turn_windows` windows, the two modes in turn (the mode not held first). The first
//   `settle_windows` of each turn, and of a hold, are not counted: connections switch as
//   their staging empties. A load that starts with nothing held is first staged by the
//   rule for `warmup_windows` busy windows: while its connections open its rate rises
//   (one node, 256 senders of 16 KiB: about 100 ms, from 0.4 to 1.3 GB/s), and a turn
//   taken then makes its mode look the worse.
// - A trial's turns give copy's rate and CPU per byte over splice's, as logs; each
//   trial's weigh `trial_memory` of the next one's, so a few trials are averaged and a
//   change of load shows within two.
// - A mode's lead when held: what a longer run of it shows that its turns do not (one
//   sender of 1 MiB frames on a benchmark host: copy's node grows its receive window over
//   a hold; 256 senders of 64 KiB: splice moves 20 % more held than in turns). The rate
//   of the hold's tail (its last 200 ms) over the mode's turns in the trial right after,
//   again adjacent in time, averaged over its holds and fading with age (`memory`).
// - The verdict: copy over splice by the turns, each raised by its lead where known.
//   More than `rate_margin` ahead wins: where the thread is the bottleneck that is the
//   mode with less CPU per byte, and where it is not, the mode changed what the rest of
//   the path could do. Otherwise (the load set the rate) the mode with less CPU per byte
//   by the turns wins; it replaces a held one only when it is cheaper by more than
//   `margin`.
// - A close call under a steady, heavy load (at most one window per turn not busy, the
//   thread at least `probe_busy` busy) whose other mode has no lead known lately (none
//   measured, or faded under `held_evidence`) holds that mode once instead, so that both
//   leads are known; between close modes this recurs every few holds.
// - A trial ends before its last turn when one mode is already far ahead (four rate
//   margins): after a turn of each, or after the first turn when the held mode's tail is
//   that far ahead of the other's turn. A clear loser then costs one turn, not half the
//   trial.
// - The winner is held for `hold` (twice that when it moved more than four rate margins
//   more); a verdict that confirms the held mode doubles the hold (up to `max_hold`), so
//   a steady load pays for few trials, and a wrong verdict is undone at the next trial.
// - When the thread is not busy, a held mode lapses at the end of its hold, what was
//   measured under that load is dropped, and the static rule decides again (kRule): at
//   low load the CPU per byte hardly matters and the rule keeps small frames off pipes
//   (latency). A trial does not count a window that is not busy, and ends without a
//   verdict after more such windows than it has.
//
// Windows are closed lazily: the reactor asks Due(now) when a connection decides how to
// stage (no timer, so an idle reactor does no work for this), and then calls Sample with
// its thread's CPU time and its bytes forwarded so far.
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
    // A trial: `turns` turns (even: half in each mode) of `turn_windows` windows.
    int turns = 4;
    int turn_windows = 5;
    // Windows not counted after each change of mode.
    int settle_windows = 1;
    // A load starting with nothing held: its first busy windows, staged by the rule,
    // before the first trial (its connections open and its rate rises meanwhile).
    int warmup_windows = 10;
    // How fast a mode's lead when held fades: its weight halves every `memory`.
    absl::Duration memory = absl::Seconds(2);
    // Each trial's turns weigh this much of the next trial's.
    double trial_memory = 0.5;
    absl::Duration hold = absl::Seconds(1);
    absl::Duration max_hold = absl::Seconds(8);
    // A close call holds the other mode once unless its lead when held is known: measured
    // after its holds, with a faded weight of at least this (one measure: for 6.6 s).
    double held_evidence = 0.1;
    double min_busy = 0.3;
    // A close call holds the other mode once only when the trial's thread was at least
    // this busy: below, the load is light and CPU per byte is all the trial can judge.
    double probe_busy = 0.5;
    double margin = 0.05;       // CPU per byte
    double rate_margin = 0.05;  // bytes per second
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
  // The CPU per byte (ns) of each mode in the last trial's turns (0 before one).
  double last_copy_ns_per_byte() const { return last_cost_[kCopyIndex]; }
  double last_splice_ns_per_byte() const { return last_cost_[kSpliceIndex]; }
  // The bytes per second of each mode in the last trial's turns (of the held mode: its
  // hold's tail, when the trial ended after one turn).
  double last_copy_bytes_per_second() const { return last_rate_[kCopyIndex]; }
  double last_splice_bytes_per_second() const { return last_rate_[kSpliceIndex]; }

 private:
  static constexpr int kCopyIndex = 0;
  static constexpr int kSpliceIndex = 1;
  static constexpr int kTailWindows = 20;  // the hold's tail: its last 200 ms
  // The index of kCopy or kSplice in the per-mode arrays.
  static int IndexOf(Mode m) { return m == Mode::kCopy ? kCopyIndex : kSpliceIndex; }
  // Sums over counted windows.
  struct Sums {
    double cpu_ns = 0;
    double bytes = 0;
    double wall_ns = 0;
  };
  // A mode's lead, when held, over its own turns: log(tail rate / turn rate), averaged
  // over the trials that followed its holds, fading with age (`memory`).
  struct Lead {
    double log_sum = 0;
    double weight = 0;
    absl::Time at = absl::InfinitePast();
  };
  void StartTrial();
  void EndTrial(absl::Time now);
  // Whether the trial can end before its last turn: one mode moves more than four rate
  // margins more (a clear verdict), after a turn of each mode in this trial, or after the
  // first turn when the held mode's tail is that far ahead of the other's turn.
  bool FarAheadAlready() const;
  // log(copy's rate / splice's): the trials' turns (with this trial's so far), each
  // mode's turns raised by its lead when held, where that is known.
  double LogRateRatio(absl::Time now, bool with_this_trial) const;
  // A mode's lead when held, or 0 where not known lately (FreshLead: its faded weight,
  // LeadWeight, at least `held_evidence`).
  double HeldLead(absl::Time now, int index) const;
  bool FreshLead(absl::Time now, int index) const;
  double LeadWeight(absl::Time now, int index) const;
  // Holds `next`: for `hold` when it changes the held mode (twice that when `clear`),
  // doubling the hold when it confirms it.
  void Decide(absl::Time now, Mode next, bool clear);

  const Options options_;
  Mode held_ = Mode::kRule;
  absl::Duration hold_;
  absl::Time hold_until_ = absl::InfinitePast();
  bool in_trial_ = false;
  bool trial_copy_first_ = true;
  int turn_ = 0;          // the trial's turn: even turns run the first mode
  int turn_window_ = 0;   // the window within the turn
  int idle_windows_ = 0;  // windows of this trial that were not busy (not counted)
  int settle_left_ = 0;   // windows still not counted after a change of mode
  int warm_windows_ = 0;  // busy windows of a starting load (nothing held) so far
  Sums turn_sums_[2];     // this trial's counted windows, per mode
  // The held mode's latest counted windows (a ring), and their rate when a trial starts.
  double tail_bytes_[kTailWindows] = {};
  double tail_wall_ns_[kTailWindows] = {};
  int tail_next_ = 0;
  int tail_count_ = 0;
  double tail_rate_ = 0;
  // The trials' turns, as logs of copy's over splice's, each trial's weight
  // `trial_memory` times the next one's.
  double log_rate_ratio_ = 0;
  double log_cost_ratio_ = 0;
  double ratio_weight_ = 0;
  Lead lead_[2];
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
