#include "core/token_bucket.h"

#include "gtest/gtest.h"

namespace relay {
namespace {

const absl::Time kStart = absl::FromUnixSeconds(1000);

TEST(TokenBucketTest, StartsFullSpendsItsBurstThenRefillsAtTheRate) {
  TokenBucket b;
  absl::Duration wait;
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(b.Take(10, 3, kStart, &wait)) << i;
  }
  ASSERT_FALSE(b.Take(10, 3, kStart, &wait));
  EXPECT_EQ(wait, absl::Milliseconds(100));  // one token at 10/s
  EXPECT_FALSE(b.Take(10, 3, kStart + absl::Milliseconds(50), &wait));
  EXPECT_EQ(wait, absl::Milliseconds(50));
  EXPECT_TRUE(b.Take(10, 3, kStart + absl::Milliseconds(100), &wait));
  // A long pause refills only up to the burst.
  const absl::Time later = kStart + absl::Seconds(60);
  EXPECT_TRUE(b.Full(10, 3, later));
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(b.Take(10, 3, later, &wait)) << i;
  }
  EXPECT_FALSE(b.Take(10, 3, later, &wait));
  EXPECT_FALSE(b.Full(10, 3, later));
}

TEST(TokenBucketTest, QueuedCallersEachWaitForTheirOwnTokenInTheOrderTheyAsked) {
  // --control_per_ip: a caller refused by TakeOrQueue owns the token it waits for, so the
  // next caller waits one token longer, and a plain Take() after them waits for all.
  TokenBucket b;
  absl::Duration wait;
  ASSERT_TRUE(b.TakeOrQueue(10, 2, kStart, &wait));
  ASSERT_TRUE(b.TakeOrQueue(10, 2, kStart, &wait));
  ASSERT_FALSE(b.TakeOrQueue(10, 2, kStart, &wait));
  EXPECT_NEAR(absl::ToDoubleMilliseconds(wait), 100, 1e-6);
  ASSERT_FALSE(b.TakeOrQueue(10, 2, kStart, &wait));
  EXPECT_NEAR(absl::ToDoubleMilliseconds(wait), 200, 1e-6);
  // 100 ms later the first queued token is earned (and owned): nothing for others yet.
  EXPECT_FALSE(b.Take(10, 2, kStart + absl::Milliseconds(100), &wait));
  EXPECT_NEAR(absl::ToDoubleMilliseconds(wait), 200, 1e-6);
  EXPECT_FALSE(b.Take(10, 2, kStart + absl::Milliseconds(250), &wait));
  EXPECT_NEAR(absl::ToDoubleMilliseconds(wait), 50, 1e-6);
  EXPECT_TRUE(b.Take(10, 2, kStart + absl::Milliseconds(300), &wait));
  // The credit is paid back by time alone: a long pause leaves the bucket full.
  EXPECT_TRUE(b.Full(10, 2, kStart + absl::Seconds(60)));
}

TEST(TokenBucketTest, AnUnusedBucketIsFullAndAClockStepBackAddsNothing) {
  TokenBucket b;
  EXPECT_TRUE(b.Full(5, 10, kStart));
  absl::Duration wait;
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(b.Take(5, 10, kStart, &wait));
  }
  EXPECT_FALSE(b.Take(5, 10, kStart - absl::Seconds(30), &wait));
}

// A live upgrade carries a bucket's level to the next process (TokenBucket::Restore).
TEST(TokenBucketTest, ALevelCarriedOverKeepsTheBucketAsLowAsItWas) {
  TokenBucket b;
  EXPECT_EQ(b.Level(5, 10, kStart), 10);  // unused: full
  absl::Duration wait;
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(b.Take(5, 10, kStart, &wait));
  }
  EXPECT_NEAR(b.Level(5, 10, kStart + absl::Milliseconds(200)), 1, 1e-9);
  TokenBucket next;
  next.Restore(b.Level(5, 10, kStart + absl::Milliseconds(200)), 10, kStart + absl::Seconds(7));
  EXPECT_TRUE(next.Take(5, 10, kStart + absl::Seconds(7), &wait));
  EXPECT_FALSE(next.Take(5, 10, kStart + absl::Seconds(7), &wait));  // not refilled
  EXPECT_NEAR(absl::ToDoubleMilliseconds(wait), 200, 1e-6);
  // Credit owed to waiting callers is not carried; nor more than a full bucket.
  next.Restore(-3, 10, kStart);
  EXPECT_EQ(next.Level(5, 10, kStart), 0);
  next.Restore(50, 10, kStart);
  EXPECT_EQ(next.Level(5, 10, kStart), 10);
}

}  // namespace
}  // namespace relay
