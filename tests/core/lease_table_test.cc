#include "core/lease_table.h"

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

}  // namespace
}  // namespace relay
