#include "net/timer_wheel.h"

#include <memory>
#include <vector>

#include "base/clock.h"
#include "gtest/gtest.h"

namespace relay::net {
namespace {

class TimerWheelTest : public ::testing::Test {
 protected:
  FakeClock clock_;
  TimerWheel wheel_{&clock_, absl::Milliseconds(10), 16};
};

TEST_F(TimerWheelTest, FiresAtTheDeadlineNeverBefore) {
  int fired = 0;
  Timer t([&] { ++fired; });
  wheel_.Arm(&t, clock_.Now() + absl::Milliseconds(35));
  EXPECT_TRUE(t.armed());
  clock_.Advance(absl::Milliseconds(30));
  EXPECT_EQ(wheel_.Advance(), 0u);
  clock_.Advance(absl::Milliseconds(4));
  EXPECT_EQ(wheel_.Advance(), 0u);
  clock_.Advance(absl::Milliseconds(10));
  EXPECT_EQ(wheel_.Advance(), 1u);
  EXPECT_EQ(fired, 1);
  EXPECT_FALSE(t.armed());
  clock_.Advance(absl::Seconds(10));
  EXPECT_EQ(wheel_.Advance(), 0u);
  EXPECT_EQ(fired, 1);
}

TEST_F(TimerWheelTest, CancelledTimersDoNotFire) {
  int fired = 0;
  Timer a([&] { ++fired; });
  Timer b([&] { ++fired; });
  wheel_.Arm(&a, clock_.Now() + absl::Milliseconds(20));
  wheel_.Arm(&b, clock_.Now() + absl::Milliseconds(20));
  wheel_.Cancel(&a);
  EXPECT_EQ(wheel_.armed_count(), 1u);
  clock_.Advance(absl::Milliseconds(100));
  EXPECT_EQ(wheel_.Advance(), 1u);
  EXPECT_EQ(fired, 1);
}

TEST_F(TimerWheelTest, DestroyingAnArmedTimerCancelsIt) {
  int fired = 0;
  {
    Timer t([&] { ++fired; });
    wheel_.Arm(&t, clock_.Now() + absl::Milliseconds(20));
  }
  EXPECT_EQ(wheel_.armed_count(), 0u);
  clock_.Advance(absl::Milliseconds(100));
  wheel_.Advance();
  EXPECT_EQ(fired, 0);
}

TEST_F(TimerWheelTest, ExtendMovesTheDeadlineLaterLazily) {
  int fired = 0;
  Timer t([&] { ++fired; });
  wheel_.Arm(&t, clock_.Now() + absl::Milliseconds(50));
  for (int i = 0; i < 10; ++i) {  // a keepalive every 30 ms pushes the deadline
    clock_.Advance(absl::Milliseconds(30));
    wheel_.Advance();
    wheel_.Extend(&t, clock_.Now() + absl::Milliseconds(50));
  }
  EXPECT_EQ(fired, 0);
  clock_.Advance(absl::Milliseconds(45));
  wheel_.Advance();
  EXPECT_EQ(fired, 0);
  clock_.Advance(absl::Milliseconds(20));
  wheel_.Advance();
  EXPECT_EQ(fired, 1);
}

TEST_F(TimerWheelTest, DeadlinesBeyondOneRoundWaitForTheirRound) {
  // 16 slots of 10 ms: a 1 s deadline wraps the wheel several times.
  int fired = 0;
  Timer t([&] { ++fired; });
  wheel_.Arm(&t, clock_.Now() + absl::Seconds(1));
  for (int i = 0; i < 99; ++i) {
    clock_.Advance(absl::Milliseconds(10));
    wheel_.Advance();
  }
  EXPECT_EQ(fired, 0);
  clock_.Advance(absl::Milliseconds(20));
  wheel_.Advance();
  EXPECT_EQ(fired, 1);
}

TEST_F(TimerWheelTest, ALongPauseFiresEverythingDueOnce) {
  int fired = 0;
  std::vector<std::unique_ptr<Timer>> timers;
  for (int i = 0; i < 100; ++i) {
    timers.push_back(std::make_unique<Timer>([&] { ++fired; }));
    wheel_.Arm(timers.back().get(), clock_.Now() + absl::Milliseconds(i * 7));
  }
  clock_.Advance(absl::Seconds(5));
  EXPECT_EQ(wheel_.Advance(), 100u);
  EXPECT_EQ(fired, 100);
  EXPECT_EQ(wheel_.armed_count(), 0u);
}

TEST_F(TimerWheelTest, CallbackMayDestroyItselfAndCancelOthers) {
  int fired = 0;
  auto self = std::make_unique<Timer>();
  auto other = std::make_unique<Timer>([&] { ++fired; });
  self->set_callback([&] {
    ++fired;
    wheel_.Cancel(other.get());
    self.reset();
  });
  wheel_.Arm(self.get(), clock_.Now() + absl::Milliseconds(10));
  wheel_.Arm(other.get(), clock_.Now() + absl::Milliseconds(10));
  clock_.Advance(absl::Milliseconds(50));
  wheel_.Advance();
  EXPECT_EQ(fired, 1);
  EXPECT_EQ(self, nullptr);
  EXPECT_EQ(wheel_.armed_count(), 0u);
}

TEST_F(TimerWheelTest, ReportsTimeToTheNextTick) {
  EXPECT_EQ(wheel_.MillisToNextTick(), -1);
  int fired = 0;
  Timer t([&] { ++fired; });
  wheel_.Arm(&t, clock_.Now() + absl::Seconds(1));
  const int ms = wheel_.MillisToNextTick();
  EXPECT_GE(ms, 0);
  EXPECT_LE(ms, 10);
}

}  // namespace
}  // namespace relay::net
