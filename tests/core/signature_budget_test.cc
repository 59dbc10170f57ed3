#include "core/signature_budget.h"

#include "gtest/gtest.h"

namespace relay {
namespace {

const absl::Time kStart = absl::FromUnixSeconds(1000);

TEST(SignatureBudgetTest, AHeavySourceWaitsALightOneGoesOn) {
  SignatureBudget budget({/*rate=*/1000, /*light_per_second=*/4});  // bursts of 10
  absl::Duration wait;
  int now_heavy = 0;
  for (int i = 0; i < 40; ++i) {
    now_heavy += budget.Take(1, kStart, &wait) ? 1 : 0;
  }
  // The burst only: past 4 checks in its second the source is heavy (no reserve).
  EXPECT_EQ(now_heavy, 10);
  EXPECT_GT(wait, absl::ZeroDuration());
  // Another source, light: served from the reserve.
  EXPECT_TRUE(budget.Take(2, kStart, &wait));
  EXPECT_EQ(budget.sources(), 2u);
}

TEST(SignatureBudgetTest, ThoseThatWaitAreServedInTurnAtTheRate) {
  SignatureBudget budget({/*rate=*/1000, /*light_per_second=*/0});
  absl::Duration wait;
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(budget.Take(1, kStart, &wait));
  }
  absl::Duration last = absl::ZeroDuration();
  for (int i = 0; i < 5; ++i) {
    ASSERT_FALSE(budget.Take(1, kStart, &wait));
    EXPECT_GT(wait, last);  // each owns a later token
    last = wait;
  }
  EXPECT_NEAR(absl::ToDoubleMilliseconds(last), 5.0, 0.01);
  // A new second forgets who was heavy; the bucket refills at the rate.
  EXPECT_TRUE(budget.Take(1, kStart + absl::Seconds(1), &wait));
}

TEST(SignatureBudgetTest, ZeroRateMeansNoLimit) {
  SignatureBudget budget({0, 0});
  absl::Duration wait;
  for (int i = 0; i < 100000; ++i) {
    ASSERT_TRUE(budget.Take(1, kStart, &wait));
  }
}

}  // namespace
}  // namespace relay
