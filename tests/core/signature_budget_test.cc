#include "core/signature_budget.h"

#include "gtest/gtest.h"

namespace relay {
namespace {

using Grant = SignatureBudget::Grant;
const absl::Time kStart = absl::FromUnixSeconds(1000);

TEST(SignatureBudgetTest, AHeavySourceWaitsALightOneGoesOn) {
  SignatureBudget budget({/*rate=*/1000, /*light_per_second=*/4});  // bursts of 10
  absl::Duration wait;
  int now_heavy = 0;
  uint64_t turn = 1;
  for (int i = 0; i < 40; ++i) {
    now_heavy += budget.Take(1, kStart, turn++, &wait) == Grant::kNow ? 1 : 0;
  }
  // The burst only: past 4 checks in its second the source is heavy (no reserve).
  EXPECT_EQ(now_heavy, 10);
  EXPECT_GT(wait, absl::ZeroDuration());
  // Another source, light: served from the reserve.
  EXPECT_EQ(budget.Take(2, kStart, turn++, &wait), Grant::kNow);
  EXPECT_EQ(budget.sources(), 2u);
}

TEST(SignatureBudgetTest, ThoseThatWaitAreServedInTurnAtTheRate) {
  SignatureBudget budget({/*rate=*/1000, /*light_per_second=*/0});
  absl::Duration wait;
  uint64_t turn = 1;
  for (int i = 0; i < 10; ++i) {
    ASSERT_EQ(budget.Take(1, kStart, turn++, &wait), Grant::kNow);
  }
  absl::Duration last = absl::ZeroDuration();
  for (int i = 0; i < 5; ++i) {
    ASSERT_EQ(budget.Take(1, kStart, turn++, &wait), Grant::kQueued);
    EXPECT_GT(wait, last);  // each owns a later token
    last = wait;
  }
  EXPECT_NEAR(absl::ToDoubleMilliseconds(last), 5.0, 0.01);
  // A new second forgets who was heavy; the bucket refills at the rate.
  EXPECT_EQ(budget.Take(1, kStart + absl::Seconds(1), turn++, &wait), Grant::kNow);
}

TEST(SignatureBudgetTest, OneTurnChecksAtMostTheBurstEvenWithQueuedTokens) {
  SignatureBudget budget({/*rate=*/1000, /*light_per_second=*/8});  // bursts of 10
  absl::Duration wait;
  for (int i = 0; i < 10; ++i) {
    ASSERT_EQ(budget.Take(100 + i, kStart, 1, &wait), Grant::kNow);
  }
  EXPECT_EQ(budget.Take(200, kStart, 1, &wait), Grant::kNextTurn);
  // Queueing for a token takes no check from the turn: a heavy source queues 30 times.
  for (int i = 0; i < 8; ++i) {
    budget.Take(1, kStart, 2, &wait);
  }
  for (int i = 0; i < 30; ++i) {
    ASSERT_EQ(budget.Take(1, kStart, 2, &wait), Grant::kQueued);
  }
  // Thirty queued tokens fall due in the same tick: ten are checked per turn.
  int redeemed = 0;
  for (int i = 0; i < 30; ++i) {
    redeemed += budget.Redeem(3) ? 1 : 0;
  }
  EXPECT_EQ(redeemed, 10);
  EXPECT_TRUE(budget.Redeem(4));
  // A new turn, a light source: checked now (from the reserve, the bucket being empty).
  EXPECT_EQ(budget.Take(300, kStart + absl::Milliseconds(10), 5, &wait), Grant::kNow);
}

TEST(SignatureBudgetTest, ZeroRateMeansNoLimit) {
  SignatureBudget budget({0, 0});
  absl::Duration wait;
  for (int i = 0; i < 100000; ++i) {
    ASSERT_EQ(budget.Take(1, kStart, 1, &wait), Grant::kNow);
    ASSERT_TRUE(budget.Redeem(1));
  }
}

}  // namespace
}  // namespace relay
