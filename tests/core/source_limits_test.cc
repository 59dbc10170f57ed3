#include "core/source_limits.h"

#include "gtest/gtest.h"

namespace relay {
namespace {

TEST(SourceLimitsTest, CountsPerIpAndKindUpToTheLimit) {
  SourceLimits::Limits l;
  l.max = {2, 1, 1, 0};
  SourceLimits limits(l);
  EXPECT_TRUE(limits.Acquire(SourceLimits::kMain, 1));
  EXPECT_TRUE(limits.Acquire(SourceLimits::kMain, 1));
  EXPECT_FALSE(limits.Acquire(SourceLimits::kMain, 1));
  EXPECT_TRUE(limits.Acquire(SourceLimits::kMain, 2));  // another IP has its own count
  EXPECT_TRUE(limits.Acquire(SourceLimits::kSession, 1));
  EXPECT_FALSE(limits.Acquire(SourceLimits::kSession, 1));
  for (int i = 0; i < 10000; ++i) {
    ASSERT_TRUE(limits.Acquire(SourceLimits::kPeer, 1));  // 0 = no limit
  }
  EXPECT_EQ(limits.Count(SourceLimits::kMain, 1), 2u);
  limits.Release(SourceLimits::kMain, 1);
  EXPECT_TRUE(limits.Acquire(SourceLimits::kMain, 1));
  EXPECT_TRUE(limits.Acquire(SourceLimits::kSession, 0));  // unknown IP: never limited
  EXPECT_TRUE(limits.Acquire(SourceLimits::kSession, 0));
}

TEST(SourceLimitsTest, EntriesGoAwayWhenAnIpHoldsNothing) {
  SourceLimits limits(SourceLimits::Limits{});
  for (uint32_t ip = 1; ip <= 100; ++ip) {
    ASSERT_TRUE(limits.Acquire(SourceLimits::kMain, ip));
  }
  EXPECT_EQ(limits.tracked_ips(), 100u);
  for (uint32_t ip = 1; ip <= 100; ++ip) {
    limits.Release(SourceLimits::kMain, ip);
  }
  EXPECT_EQ(limits.tracked_ips(), 0u);
}

TEST(SourceLimitsTest, RequestsAreATokenBucketPerIp) {
  SourceLimits::Limits l;
  l.requests_per_second = 10;  // bursts of 20
  SourceLimits limits(l);
  const absl::Time t0 = absl::UnixEpoch() + absl::Hours(1);
  int allowed = 0;
  for (int i = 0; i < 100; ++i) {
    allowed += limits.AllowRequest(7, t0) ? 1 : 0;
  }
  EXPECT_EQ(allowed, 20);
  EXPECT_TRUE(limits.AllowRequest(8, t0));  // other IPs are not affected
  EXPECT_FALSE(limits.AllowRequest(7, t0 + absl::Milliseconds(50)));
  EXPECT_TRUE(limits.AllowRequest(7, t0 + absl::Milliseconds(150)));  // 1.5 tokens back
  allowed = 0;
  for (int i = 0; i < 100; ++i) {
    allowed += limits.AllowRequest(7, t0 + absl::Seconds(100)) ? 1 : 0;
  }
  EXPECT_EQ(allowed, 20);  // refilled to the burst, not beyond
}

}  // namespace
}  // namespace relay
