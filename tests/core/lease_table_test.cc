#include "core/lease_table.h"

#include "absl/strings/str_cat.h"
#include "base/clock.h"
#include "gtest/gtest.h"

namespace relay {
namespace {

class LeaseTableTest : public ::testing::Test {
 protected:
  FakeClock clock_;
  PortPool pool_{5000, 5002};
  LeaseTable table_{&pool_, absl::Minutes(180)};

  Lease* NewLease(const std::string& id) { return table_.CreateLive(id, *pool_.Allocate()); }
};

TEST_F(LeaseTableTest, LiveLeaseIsFoundAndNeverExpires) {
  Lease* lease = NewLease("node-a");
  const uint16_t port = lease->port;
  clock_.Advance(absl::Hours(1000));
  EXPECT_EQ(table_.Find("node-a", clock_.Now()), lease);
  EXPECT_FALSE(table_.ExpireIfDue("node-a", clock_.Now()));
  EXPECT_EQ(lease->port, port);
  EXPECT_EQ(table_.Find("node-b", clock_.Now()), nullptr);
}

TEST_F(LeaseTableTest, RememberedLeaseKeepsItsPortForTheTtlFromLastActivity) {
  Lease* lease = NewLease("node-a");
  const uint16_t port = lease->port;
  const absl::Time last_activity = clock_.Now();
  clock_.Advance(absl::Minutes(10));  // the session ended 10 minutes after its last keepalive
  EXPECT_EQ(table_.Remember(lease, last_activity), last_activity + absl::Minutes(180));
  EXPECT_EQ(pool_.available(), 2u);  // still held

  clock_.Advance(absl::Minutes(169));  // 179 minutes after the last activity
  EXPECT_FALSE(table_.ExpireIfDue("node-a", clock_.Now()));
  Lease* found = table_.Find("node-a", clock_.Now());
  ASSERT_NE(found, nullptr);
  EXPECT_EQ(found->port, port);
  EXPECT_FALSE(found->live);

  clock_.Advance(absl::Minutes(1));  // exactly the TTL
  EXPECT_TRUE(table_.ExpireIfDue("node-a", clock_.Now()));
  EXPECT_EQ(table_.Find("node-a", clock_.Now()), nullptr);
  EXPECT_EQ(pool_.available(), 3u);  // the port went back
}

TEST_F(LeaseTableTest, FindEndsAnExpiredLeaseOnTheSpot) {
  Lease* lease = NewLease("node-a");
  table_.Remember(lease, clock_.Now());
  clock_.Advance(absl::Minutes(181));
  EXPECT_EQ(table_.Find("node-a", clock_.Now()), nullptr);
  EXPECT_EQ(table_.size(), 0u);
  EXPECT_EQ(pool_.available(), 3u);
}

TEST_F(LeaseTableTest, MarkLiveStopsExpiry) {
  Lease* lease = NewLease("node-a");
  table_.Remember(lease, clock_.Now());
  clock_.Advance(absl::Minutes(100));
  table_.MarkLive(table_.Find("node-a", clock_.Now()));
  clock_.Advance(absl::Minutes(500));
  EXPECT_FALSE(table_.ExpireIfDue("node-a", clock_.Now()));
  EXPECT_NE(table_.Find("node-a", clock_.Now()), nullptr);
}

TEST_F(LeaseTableTest, ChangePortAndEraseReturnPorts) {
  Lease* lease = NewLease("node-a");
  const uint16_t old_port = lease->port;
  const uint16_t new_port = *pool_.Allocate();
  table_.ChangePort(lease, new_port);
  EXPECT_EQ(lease->port, new_port);
  EXPECT_EQ(pool_.available(), 2u);
  EXPECT_TRUE(table_.Erase("node-a"));
  EXPECT_FALSE(table_.Erase("node-a"));
  EXPECT_EQ(pool_.available(), 3u);
  EXPECT_NE(old_port, new_port);
}

TEST(LeaseTableDestructionTest, ReleasesEveryPort) {
  PortPool pool(7000, 7001);
  {
    LeaseTable table(&pool, absl::Minutes(1));
    table.CreateLive("a", *pool.Allocate());
    table.CreateLive("b", *pool.Allocate());
    EXPECT_EQ(pool.available(), 0u);
  }
  EXPECT_EQ(pool.available(), 2u);
}

TEST(LeaseTableGroupsTest, RememberedLeasesAreListedPerSourceGroup) {
  PortPool pool(1000, 1009);
  LeaseTable table(&pool, absl::Hours(1));
  const absl::Time now = absl::FromUnixSeconds(1000);
  const uint64_t a = 0x0A000001u, b = 0x0A000101u;  // 10.0.0.1 and 10.0.1.1: two /24s
  for (int i = 0; i < 5; ++i) {
    const uint64_t ip = i < 3 ? a : b;
    Lease* l = table.CreateLive(absl::StrCat("id", i), *pool.Allocate(), ip);
    table.Remember(l, now + absl::Seconds(i));
  }
  // The heaviest group (a: 3) loses its oldest first.
  ASSERT_NE(table.OldestOfHeaviestGroup(), nullptr);
  EXPECT_EQ(table.OldestOfHeaviestGroup()->id, "id0");
  EXPECT_EQ(table.OldestRememberedOf(SourceLimits::EvictionGroup(b))->id, "id3");
  table.Erase("id0");
  table.Erase("id1");  // a: 1, b: 2
  EXPECT_EQ(table.OldestOfHeaviestGroup()->id, "id3");
  table.MarkLive(table.Find("id3", now));
  table.Erase("id4");
  table.Erase("id2");
  EXPECT_EQ(table.OldestOfHeaviestGroup(), nullptr);
  EXPECT_EQ(table.OldestRememberedOf(SourceLimits::EvictionGroup(a)), nullptr);
}

}  // namespace
}  // namespace relay
