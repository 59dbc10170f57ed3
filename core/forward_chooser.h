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
// What it measures: every window (`window`, 10 ms) in which the reactor's thread was busy
// (its CPU time at least `min_busy` of the window's wall time) adds the thread's CPU time,
// the bytes it forwarded and the wall time to the evidence of the mode it ran in. Evidence
// fades with age (`memory`), so it follows a changing load; a light load forgets it. The
// evidence of the mode held comes from the whole hold, not from a short sample: on the
// shared 2-vCPU benchmark machines a mode's rate swings by 20-30 % over tens of
// milliseconds, and short windows taken in turn blur the two modes together
// (docs/BENCHMARKS.md, "Copy or splice, per connection": "Why whole holds").
//
// How it decides:
// - While busy, and the held mode's hold is over, it runs a trial: `turns` turns of
//   `turn_windows` windows, the two modes in turn (the mode not held first), so the mode
//   not held gets fresh evidence. The first `settle_windows` of each turn, and of a hold,
//   are not counted: connections switch as their staging empties. A load that starts
//   with nothing held is first staged by the rule for `warmup_windows` busy windows: while
//   its connections open its rate rises (one node, 256 senders of 16 KiB: about 100 ms,
//   from 0.4 to 1.3 GB/s), and a turn taken then makes its mode look the worse.
// - A trial ends before its last turn when one mode is already far ahead (by four rate
//   margins): after a turn of each, or after the first turn when the held mode leads by
//   what its hold showed. A clear loser then costs one turn, not half the trial.
// - At the end of a trial, from all the evidence: the mode that moved more than
//   `rate_margin` more bytes per second wins: where the thread is the bottleneck that is
//   the one with less CPU per byte, and where it is not, the mode changed what the rest of
//   the path could do. Otherwise (the load set the rate) the mode with less CPU per byte
//   wins; it replaces a held one only when it is cheaper by more than `margin`.
// - A close call (rates within `rate_margin`) under a steady, heavy load (at most one
//   window per turn not busy, the thread at least `probe_busy` busy) whose loser was not
//   held lately (its faded evidence from holds is under `held_evidence` of `hold`) holds
//   the loser once instead: its evidence so far is only the trials' short turns, which do
//   not show what builds up over a longer run (one sender of 1 MiB frames on a benchmark
//   host: copy and splice alike in turns of 50 ms, copy 30 % ahead over whole holds, as
//   the node's receive window grows). So both are judged by holds; between close modes
//   this recurs every few holds, once the loser's evidence has faded.
// - The winner is held for `hold` (twice that when it moved more than four rate margins
//   more); a verdict that confirms the held mode doubles the hold (up to `max_hold`), so
//   a steady load pays for few trials, and a wrong verdict is undone at the next trial,
//   when the long evidence of the mode it left outweighs one trial's.
// - When the thread is not busy, a held mode lapses at the end of its hold and the static
//   rule decides again (kRule): at low load the CPU per byte hardly matters and the rule
//   keeps small frames off pipes (latency). A trial does not count a window that is not
//   busy, and ends without a verdict after more such windows than it has.
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
    // How fast evidence fades: its weight halves every `memory`.
    absl::Duration memory = absl::Seconds(2);
    absl::Duration hold = absl::Seconds(1);
    absl::Duration max_hold = absl::Seconds(8);
    // A close call holds the other mode once unless its evidence from holds (faded) is
    // at least this share of `hold`.
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
  // The CPU per byte (ns) of each mode's evidence at the last verdict (0 before one).
  double last_copy_ns_per_byte() const { return last_cost_[kCopyIndex]; }
  double last_splice_ns_per_byte() const { return last_cost_[kSpliceIndex]; }
  // The bytes per second of each mode's evidence at the last verdict.
  double last_copy_bytes_per_second() const { return last_rate_[kCopyIndex]; }
  double last_splice_bytes_per_second() const { return last_rate_[kSpliceIndex]; }

 private:
  static constexpr int kCopyIndex = 0;
  static constexpr int kSpliceIndex = 1;
  // The index of kCopy or kSplice in the per-mode arrays.
  static int IndexOf(Mode m) { return m == Mode::kCopy ? kCopyIndex : kSpliceIndex; }
  // One mode's evidence: sums over its counted windows, each weighted by its age.
  struct Evidence {
    double cpu_ns = 0;
    double bytes = 0;
    double wall_ns = 0;
    double held_wall_ns = 0;  // of wall_ns, from holds
  };
  void Fade(absl::Duration age);
  void StartTrial();
  // Whether the trial can end before its last turn: one mode moved more than four rate
  // margins more (a clear verdict), after a turn of each mode in this trial, or after the
  // first turn when the lead is the held mode's, shown by its hold.
  bool FarAheadAlready() const;
  void EndTrial(absl::Time now);
  // Holds `next`: for `hold` when it changes the held mode (twice that when `clear`),
  // doubling the hold when it confirms it.
  void Decide(absl::Time now, Mode next, bool clear);

  const Options options_;
  Mode held_ = Mode::kRule;
  absl::Duration hold_;
  absl::Time hold_until_ = absl::InfinitePast();
  bool in_trial_ = false;
  bool trial_copy_first_ = true;
  int turn_ = 0;              // the trial's turn: even turns run the first mode
  int turn_window_ = 0;       // the window within the turn
  int idle_windows_ = 0;      // windows of this trial that were not busy (not counted)
  int settle_left_ = 0;       // windows still not counted after a change of mode
  int warm_windows_ = 0;      // busy windows of a starting load (nothing held) so far
  double trial_cpu_ns_ = 0;   // the trial's counted windows: CPU time
  double trial_wall_ns_ = 0;  // and wall time
  Evidence evidence_[2];
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
