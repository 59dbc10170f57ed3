#include "core/forward_chooser.h"

#include <cstdint>

#include "gtest/gtest.h"

namespace relay {
namespace {

using Mode = ForwardChooser::Mode;

// How a simulated reactor does in one mode: the CPU it spends per byte forwarded and the
// bytes it forwards per ns of wall time.
struct Behaviour {
  double ns_per_byte;
  double bytes_per_ns;
};

// A reactor whose thread is the bottleneck: `busy` of the wall time on CPU, so the mode
// that costs less per byte also moves more.
Behaviour CpuBound(double ns_per_byte, double busy = 0.9) {
  return Behaviour{ns_per_byte, busy / ns_per_byte};
}

// Drives a chooser through windows of a simulated reactor.
class Sim {
 public:
  explicit Sim(ForwardChooser* chooser) : chooser_(chooser) { chooser_->Sample(now_, 0, 0); }
  // Runs one window and returns the mode it ran in.
  Mode Window(Behaviour copy, Behaviour splice, absl::Duration length = absl::Milliseconds(20)) {
    const Mode m = chooser_->mode();
    const Behaviour& b = m == Mode::kSplice ? splice : copy;
    const double bytes = b.bytes_per_ns * absl::ToDoubleNanoseconds(length);
    now_ += length;
    cpu_ += static_cast<int64_t>(bytes * b.ns_per_byte);
    bytes_ += static_cast<uint64_t>(bytes);
    EXPECT_TRUE(chooser_->Due(now_));
    chooser_->Sample(now_, cpu_, bytes_);
    return m;
  }
  // A CPU-bound window: copy and splice cost `copy_ns_per_byte` and `splice_ns_per_byte`.
  Mode Window(double copy_ns_per_byte, double splice_ns_per_byte, double busy = 0.9,
              absl::Duration length = absl::Milliseconds(20)) {
    if (busy == 0) {
      return Window(Behaviour{1, 0}, Behaviour{1, 0}, length);
    }
    return Window(CpuBound(copy_ns_per_byte, busy), CpuBound(splice_ns_per_byte, busy), length);
  }
  // Runs windows until the chooser leaves its trial (bounded); returns how many ran.
  int UntilTrialEnds(double copy_ns_per_byte, double splice_ns_per_byte) {
    int n = 0;
    while (chooser_->in_trial() && n < 100) {
      Window(copy_ns_per_byte, splice_ns_per_byte);
      ++n;
    }
    return n;
  }
  absl::Time now() const { return now_; }

 private:
  ForwardChooser* chooser_;
  absl::Time now_ = absl::FromUnixSeconds(1000);
  int64_t cpu_ = 0;
  uint64_t bytes_ = 0;
};

TEST(ForwardChooserTest, StartsWithTheRuleAndLearnsTheCheaperModeUnderLoad) {
  ForwardChooser chooser;
  EXPECT_EQ(chooser.mode(), Mode::kRule);
  Sim sim(&chooser);
  // Splice costs half as much CPU per byte on this "host".
  sim.Window(1.0, 0.5);
  ASSERT_TRUE(chooser.in_trial());
  // A settling window (not counted), then the trial's windows alternate the two modes,
  // copy first (nothing is held yet), so the settling window runs copy too.
  const int windows = ForwardChooser::Options().trial_windows;
  int copies = 0, splices = 0;
  Mode previous = Mode::kRule;
  for (int i = 0; i < windows + 1; ++i) {
    ASSERT_TRUE(chooser.in_trial());
    const Mode m = sim.Window(1.0, 0.5);
    if (i <= 1) {
      EXPECT_EQ(m, Mode::kCopy) << "window " << i;
    } else {
      EXPECT_NE(m, previous) << "window " << i;
    }
    if (i > 0) {
      (m == Mode::kCopy ? copies : splices)++;
    }
    previous = m;
  }
  EXPECT_EQ(copies, windows / 2);
  EXPECT_EQ(splices, windows / 2);
  EXPECT_FALSE(chooser.in_trial());
  EXPECT_EQ(chooser.mode(), Mode::kSplice);
  EXPECT_EQ(chooser.trials(), 1u);
  EXPECT_EQ(chooser.changes(), 1u);
  EXPECT_NEAR(chooser.last_copy_ns_per_byte(), 1.0, 0.01);
  EXPECT_NEAR(chooser.last_splice_ns_per_byte(), 0.5, 0.01);
}

TEST(ForwardChooserTest, LearnsCopyWhereCopyIsCheaper) {
  ForwardChooser chooser;
  Sim sim(&chooser);
  sim.Window(0.4, 0.6);
  sim.UntilTrialEnds(0.4, 0.6);
  EXPECT_EQ(chooser.mode(), Mode::kCopy);
}

TEST(ForwardChooserTest, HoldsItsModeBetweenTrialsAndDoublesTheHoldWhenConfirmed) {
  ForwardChooser chooser;  // hold 1 s, at most 4 s
  Sim sim(&chooser);
  sim.Window(1.0, 0.5);
  sim.UntilTrialEnds(1.0, 0.5);
  ASSERT_EQ(chooser.mode(), Mode::kSplice);
  // Held for 1 s: no trial starts before, every window runs spliced.
  const absl::Time held_from = sim.now();
  while (sim.now() - held_from < absl::Seconds(1)) {
    EXPECT_EQ(sim.Window(1.0, 0.5), Mode::kSplice);
    EXPECT_FALSE(chooser.in_trial() && sim.now() - held_from < absl::Seconds(1));
  }
  // The next trial runs the mode not held (copy) first, and confirms splice.
  for (int i = 0; i < 3 && !chooser.in_trial(); ++i) {
    sim.Window(1.0, 0.5);
  }
  ASSERT_TRUE(chooser.in_trial());
  EXPECT_EQ(chooser.mode(), Mode::kCopy);
  sim.UntilTrialEnds(1.0, 0.5);
  EXPECT_EQ(chooser.mode(), Mode::kSplice);
  EXPECT_EQ(chooser.trials(), 2u);
  EXPECT_EQ(chooser.changes(), 1u);
  // Confirmed: now held for 2 s.
  const absl::Time confirmed = sim.now();
  while (!chooser.in_trial() && sim.now() - confirmed < absl::Seconds(5)) {
    sim.Window(1.0, 0.5);
  }
  EXPECT_GE(sim.now() - confirmed, absl::Seconds(2));
  EXPECT_LT(sim.now() - confirmed, absl::Seconds(2) + absl::Milliseconds(100));
}

TEST(ForwardChooserTest, KeepsTheHeldModeUnlessTheOtherIsCheaperByTheMargin) {
  ForwardChooser chooser;  // margin 5 %
  Sim sim(&chooser);
  sim.Window(1.0, 0.5);
  sim.UntilTrialEnds(1.0, 0.5);
  ASSERT_EQ(chooser.mode(), Mode::kSplice);
  // The load changed: copy is now 3 % cheaper, within the margin.
  while (!chooser.in_trial()) {
    sim.Window(0.97, 1.0);
  }
  sim.UntilTrialEnds(0.97, 1.0);
  EXPECT_EQ(chooser.mode(), Mode::kSplice);
  EXPECT_EQ(chooser.changes(), 1u);
  // Copy 20 % cheaper: the next trial switches.
  while (!chooser.in_trial()) {
    sim.Window(0.8, 1.0);
  }
  sim.UntilTrialEnds(0.8, 1.0);
  EXPECT_EQ(chooser.mode(), Mode::kCopy);
  EXPECT_EQ(chooser.changes(), 2u);
}

TEST(ForwardChooserTest, ALightLoadRunsNoTrialAndLetsTheHeldModeLapseToTheRule) {
  ForwardChooser chooser;  // busy: at least 30 % of each window on CPU
  Sim sim(&chooser);
  for (int i = 0; i < 200; ++i) {
    sim.Window(1.0, 0.5, /*busy=*/0.2);
    ASSERT_FALSE(chooser.in_trial());
    ASSERT_EQ(chooser.mode(), Mode::kRule);
  }
  EXPECT_EQ(chooser.trials(), 0u);
  // Busy: learns splice; then light again: after its hold, the rule decides once more.
  sim.Window(1.0, 0.5);
  sim.UntilTrialEnds(1.0, 0.5);
  ASSERT_EQ(chooser.mode(), Mode::kSplice);
  const absl::Time light_from = sim.now();
  while (chooser.mode() != Mode::kRule && sim.now() - light_from < absl::Seconds(3)) {
    sim.Window(1.0, 0.5, /*busy=*/0.2);
  }
  EXPECT_EQ(chooser.mode(), Mode::kRule);
  EXPECT_GE(sim.now() - light_from, absl::Seconds(1));
}

TEST(ForwardChooserTest, ATrialSkipsIdleWindowsAndEndsWithoutAVerdictWhenTheLoadGoesAway) {
  ForwardChooser chooser;
  Sim sim(&chooser);
  sim.Window(1.0, 0.5);
  ASSERT_TRUE(chooser.in_trial());
  sim.Window(1.0, 0.5);
  sim.Window(1.0, 0.5);
  // One window with nothing forwarded is not counted, and the trial goes on.
  sim.Window(1.0, 0.5, /*busy=*/0);
  EXPECT_TRUE(chooser.in_trial());
  // More such windows than the trial has: the load went away.
  for (int i = 0; i < ForwardChooser::Options().trial_windows; ++i) {
    sim.Window(1.0, 0.5, /*busy=*/0);
  }
  EXPECT_FALSE(chooser.in_trial());
  EXPECT_EQ(chooser.mode(), Mode::kRule);
  EXPECT_EQ(chooser.trials(), 0u);
  // A window that ran far past its end counts by its CPU share: 1 s mostly idle is not
  // busy, 1 s mostly on CPU is (each read may take long, as under a sanitizer).
  ForwardChooser other;
  Sim late(&other);
  late.Window(1.0, 0.5, 0.1, absl::Seconds(1));
  EXPECT_FALSE(other.in_trial());
  late.Window(1.0, 0.5, 0.9, absl::Seconds(1));
  EXPECT_TRUE(other.in_trial());
}

TEST(ForwardChooserTest, PrefersTheModeThatMovesClearlyMoreWhateverItsCpuPerByte) {
  // The thread is not the bottleneck: copy costs a little more per byte but the path
  // moves 1.6 times the bytes with it (one sender of 1 MiB frames on a benchmark host).
  ForwardChooser chooser;
  Sim sim(&chooser);
  const Behaviour copy{0.33, 2.6}, splice{0.30, 1.6};
  sim.Window(copy, splice);
  ASSERT_TRUE(chooser.in_trial());
  for (int i = 0; i < 20 && chooser.in_trial(); ++i) {
    sim.Window(copy, splice);
  }
  EXPECT_EQ(chooser.mode(), Mode::kCopy);
  EXPECT_NEAR(chooser.last_copy_bytes_per_second() / chooser.last_splice_bytes_per_second(),
              2.6 / 1.6, 0.01);
}

TEST(ForwardChooserTest, WhereTheLoadSetsTheRateTheModeWithLessCpuPerByteWins) {
  // Senders at a fixed rate: both modes move the same bytes; splice costs less per byte.
  ForwardChooser chooser;
  Sim sim(&chooser);
  const Behaviour copy{1.0, 0.6}, splice{0.7, 0.6};  // 60 % and 42 % busy
  sim.Window(copy, splice);
  for (int i = 0; i < 20 && chooser.in_trial(); ++i) {
    sim.Window(copy, splice);
  }
  EXPECT_EQ(chooser.mode(), Mode::kSplice);
  // And the rates within the margin do not decide: copy moving 10 % more, at 30 % more
  // CPU per byte, leaves splice held.
  const Behaviour copy2{0.91, 0.66}, splice2{0.7, 0.6};
  for (int i = 0; i < 200 && !chooser.in_trial(); ++i) {
    sim.Window(copy2, splice2);
  }
  ASSERT_TRUE(chooser.in_trial());
  for (int i = 0; i < 20 && chooser.in_trial(); ++i) {
    sim.Window(copy2, splice2);
  }
  EXPECT_EQ(chooser.mode(), Mode::kSplice);
  EXPECT_EQ(chooser.trials(), 2u);
}

TEST(ForwardChooserTest, IsNotDueBeforeItsWindowEnds) {
  ForwardChooser chooser;
  const absl::Time t0 = absl::FromUnixSeconds(5);
  EXPECT_TRUE(chooser.Due(t0));  // nothing sampled yet
  chooser.Sample(t0, 0, 0);
  EXPECT_FALSE(chooser.Due(t0 + absl::Milliseconds(9)));
  EXPECT_TRUE(chooser.Due(t0 + absl::Milliseconds(10)));
}

}  // namespace
}  // namespace relay
