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

TEST(SourceLimitsTest, ControlMessagesAreABucketPerIpOfTheirOwnAndSayHowLongToWait) {
  SourceLimits::Limits l;
  l.requests_per_second = 10;
  l.control_per_second = 4;  // bursts of 8
  SourceLimits limits(l);
  ASSERT_TRUE(limits.Acquire(SourceLimits::kMain, 7));
  const absl::Time t0 = absl::UnixEpoch() + absl::Hours(1);
  absl::Duration wait;
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(limits.AllowControl(7, t0, &wait)) << i;
  }
  // Refused callers queue: each owns the token it waits for, so the next waits longer.
  EXPECT_FALSE(limits.AllowControl(7, t0, &wait));
  EXPECT_NEAR(absl::ToDoubleMilliseconds(wait), 250, 1e-6);  // one token at 4 per second
  EXPECT_FALSE(limits.AllowControl(7, t0, &wait));
  EXPECT_NEAR(absl::ToDoubleMilliseconds(wait), 500, 1e-6);  // the one after it
  EXPECT_TRUE(limits.AllowRequest(7, t0));                   // claims have their own bucket
  EXPECT_TRUE(limits.AllowControl(8, t0, &wait));            // other IPs are not affected
  // 400 ms in, the two queued tokens are not both earned yet: a newcomer waits for the
  // third (at 750 ms), and from then on the bucket is its own again.
  EXPECT_FALSE(limits.AllowControl(7, t0 + absl::Milliseconds(400), &wait));
  EXPECT_NEAR(absl::ToDoubleMilliseconds(wait), 350, 1e-6);
  EXPECT_TRUE(limits.AllowControl(7, t0 + absl::Milliseconds(1100), &wait));
  // Leaving and coming back does not refill it: the entry stays until it has refilled.
  limits.Release(SourceLimits::kMain, 7);
  ASSERT_TRUE(limits.Acquire(SourceLimits::kMain, 7));
  EXPECT_FALSE(limits.AllowControl(7, t0 + absl::Milliseconds(1110), &wait));
  SourceLimits::Limits off = l;
  off.control_per_second = 0;
  SourceLimits unlimited(off);
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(unlimited.AllowControl(7, t0, &wait));
  }
}

// A live upgrade hands the buckets that are not full to the next process: an IP that used
// up its ProxyRequests or control messages gets no new ones from a restart.
TEST(SourceLimitsTest, BucketsThatAreNotFullAreCarriedOver) {
  SourceLimits::Limits l;
  l.requests_per_second = 10;  // bursts of 20
  l.control_per_second = 100;  // bursts of 200
  SourceLimits before(l);
  const absl::Time t = absl::UnixEpoch() + absl::Hours(1);
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(before.AllowRequest(7, t));
  }
  absl::Duration wait;
  ASSERT_TRUE(before.AllowControl(8, t, &wait));               // IP 8: one control message
  ASSERT_TRUE(before.AllowRequest(9, t - absl::Seconds(10)));  // IP 9: refilled since
  std::vector<SourceLimits::Levels> levels = before.ExportLevels(t);
  ASSERT_EQ(levels.size(), 2u);  // 9's buckets are full again: nothing to carry
  SourceLimits after(l);
  for (const SourceLimits::Levels& x : levels) {
    if (x.ip == 7) {
      EXPECT_EQ(x.requests, 0.0);
      EXPECT_FALSE(x.control.has_value());
    } else {
      EXPECT_EQ(x.ip, 8u);
      EXPECT_EQ(x.control, 199.0);
      EXPECT_FALSE(x.requests.has_value());
    }
    after.RestoreLevels(x, t + absl::Seconds(5));
  }
  // The new process's clock: 5 s on. IP 7 gets no burst back, only the rate from then.
  EXPECT_FALSE(after.AllowRequest(7, t + absl::Seconds(5)));
  EXPECT_TRUE(after.AllowRequest(7, t + absl::Seconds(5) + absl::Milliseconds(100)));
  EXPECT_TRUE(after.AllowRequest(9, t + absl::Seconds(5)));
  EXPECT_EQ(after.tracked_ips(), 3u);
  // Where those limits are off, nothing is restored and no entry kept.
  SourceLimits::Levels off;
  off.ip = 10;
  off.requests = 1;
  SourceLimits unlimited(SourceLimits::Limits{{0, 0, 0, 0}, 0, 0});
  unlimited.RestoreLevels(off, t);
  EXPECT_EQ(unlimited.tracked_ips(), 0u);
}

// An IPv6 key as net::PeerSourceKey makes it: the /64 prefix with the top bit set.
uint64_t V6(uint64_t prefix64) { return prefix64 | (uint64_t{1} << 63); }

TEST(SourceLimitsTest, WiderPrefixesHaveLimitsOfTheirOwn) {
  SourceLimits::Limits l;
  l.max = {0, 20, 0, 0};  // 20 sessions per IP; /24 and /56: 80; /48: 320
  SourceLimits limits(l);
  // 250 /64s of one /56 (2001:db8:0:100::/56) take 80 sessions, not 250 x 20.
  int got = 0;
  for (uint64_t i = 0; i < 250; ++i) {
    const uint64_t ip = V6(0x20010db800000100ull + i);
    for (int k = 0; k < 20; ++k) {
      got += limits.Acquire(SourceLimits::kSession, ip) ? 1 : 0;
    }
  }
  EXPECT_EQ(got, 80);
  // Other /56s of the same /48 add up to its 320.
  for (uint64_t n = 2; n < 16; ++n) {
    for (uint64_t i = 0; i < 20; ++i) {
      got +=
          limits.Acquire(SourceLimits::kSession, V6(0x20010db800000000ull + n * 256 + i)) ? 1 : 0;
    }
  }
  EXPECT_EQ(got, 320);
  // Another /48 is not affected; nor IPv4, whose /24 holds 80.
  EXPECT_TRUE(limits.Acquire(SourceLimits::kSession, V6(0x20010db800010000ull)));
  int v4 = 0;
  for (uint32_t host = 1; host < 200; ++host) {
    v4 += limits.Acquire(SourceLimits::kSession, 0x0A000000u + host) ? 1 : 0;  // 10.0.0.x
  }
  EXPECT_EQ(v4, 80);
  // Releasing gives room back at every level.
  limits.Release(SourceLimits::kSession, 0x0A000001u);
  EXPECT_TRUE(limits.Acquire(SourceLimits::kSession, 0x0A0000F0u));
}

TEST(SourceLimitsTest, EvictionsAreABucketPerWidestPrefix) {
  SourceLimits::Limits l;
  l.evictions_per_minute = 2;  // bursts of 4
  SourceLimits limits(l);
  const absl::Time now = absl::FromUnixSeconds(1000);
  int allowed = 0;
  for (uint32_t host = 1; host <= 16; ++host) {  // 16 sources of one /24
    allowed += limits.AllowEviction(0x7F000100u + host, now) ? 1 : 0;
  }
  EXPECT_EQ(allowed, 4);
  EXPECT_TRUE(limits.AllowEviction(0x7F000201u, now));                      // another /24
  EXPECT_TRUE(limits.AllowEviction(0x7F000101u, now + absl::Seconds(30)));  // one earned
  EXPECT_EQ(SourceLimits::EvictionGroup(0x7F000101u), SourceLimits::EvictionGroup(0x7F0001FEu));
  EXPECT_EQ(SourceLimits::EvictionGroup(V6(0x20010db800000100ull)),
            SourceLimits::EvictionGroup(V6(0x20010db8000000FFull)));  // one /48
  EXPECT_NE(SourceLimits::EvictionGroup(V6(0x20010db800000100ull)),
            SourceLimits::Prefixes(V6(0x20010db800000100ull))[0]);  // its /56 differs
}

}  // namespace
}  // namespace relay
