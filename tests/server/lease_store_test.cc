// The lease state on disk: what a restart reads back, what a crash keeps (the files as
// they are when the process dies), torn writes, damage, compaction and expiry.
#include "server/lease_store.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <sstream>

#include "core/port_pool.h"
#include "gtest/gtest.h"

namespace relay {
namespace {

class LeaseStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/relay-leases-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { ASSERT_EQ(system(("rm -rf " + dir_).c_str()), 0); }

  std::unique_ptr<LeaseStore> Open(const std::string& dir, bool discard = false,
                                   std::vector<std::string> addresses = {}) {
    LeaseStore::Options o;
    o.dir = dir;
    o.discard_corrupt = discard;
    o.addresses = std::move(addresses);
    o.clock = &clock_;
    absl::StatusOr<std::unique_ptr<LeaseStore>> store = LeaseStore::Open(o);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(*store) : nullptr;
  }
  // The loaded leases by id.
  static std::map<std::string, StoredLease> ById(const LeaseStore& store) {
    std::map<std::string, StoredLease> out;
    for (const StoredLease& l : store.loaded()) {
      out[l.id] = l;
    }
    return out;
  }
  // Copies the state directory as it is now (what a kill -9 leaves behind).
  std::string Snapshot() {
    const std::string copy = dir_ + "-copy";
    EXPECT_EQ(system(("rm -rf " + copy + " && cp -a " + dir_ + " " + copy).c_str()), 0);
    return copy;
  }

  FakeClock clock_{absl::FromUnixSeconds(1'800'000'000)};
  std::string dir_;
};

TEST_F(LeaseStoreTest, ARestartReadsBackLiveRememberedAndBoundLeases) {
  PortPool pool(100, 110);
  LeaseTable table(&pool, absl::Minutes(180));
  {
    std::unique_ptr<LeaseStore> store = Open(dir_);
    ASSERT_TRUE(store->loaded().empty());
    ASSERT_TRUE(store->Start({}).ok());
    table.set_observer(store.get());
    Lease* live = table.CreateLive("live-node", *pool.Allocate());
    live->owner_key = std::string(32, 'k');
    live->fresh_claim_ms = 1234;
    table.Changed(*live);
    Lease* gone = table.CreateLive("gone-node", *pool.Allocate());
    table.Remember(gone, clock_.Now());
    table.Erase("gone-node");
    Lease* away = table.CreateLive("away-node", *pool.Allocate());
    table.Remember(away, clock_.Now() - absl::Minutes(30));  // 150 min left
    store->Close();                                          // a clean stop
    table.set_observer(nullptr);
  }
  std::unique_ptr<LeaseStore> again = Open(dir_);
  std::map<std::string, StoredLease> got = ById(*again);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got["live-node"].port, 100);
  EXPECT_EQ(got["live-node"].owner_key, std::string(32, 'k'));
  EXPECT_EQ(got["live-node"].fresh_claim_ms, 1234u);
  EXPECT_EQ(got["live-node"].expires_unix_ms, 0) << "live when written";
  EXPECT_EQ(got["away-node"].port, 102);
  EXPECT_EQ(got["away-node"].expires_unix_ms,
            absl::ToUnixMillis(clock_.WallNow() + absl::Minutes(150)));
}

// With several proxy addresses every record names its address (by advertised IP), and a
// state written with one address (no such field) still reads, as the first.
TEST_F(LeaseStoreTest, LeasesKeepTheirProxyAddress) {
  PortPool a(100, 101);
  PortPool b(100, 101);
  LeaseTable table(std::vector<PortPool*>{&a, &b}, absl::Minutes(180));
  {
    std::unique_ptr<LeaseStore> store = Open(dir_, false, {"203.0.113.7", "203.0.113.8"});
    ASSERT_TRUE(store->Start({}).ok());
    table.set_observer(store.get());
    table.CreateLive("on-a", *a.Allocate(), 0, 0);
    table.CreateLive("on-b", *b.Allocate(), 0, 1);
    store->Close();
    table.set_observer(nullptr);
  }
  std::map<std::string, StoredLease> got = ById(*Open(dir_));
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got["on-a"].address, "203.0.113.7");
  EXPECT_EQ(got["on-b"].address, "203.0.113.8");
  EXPECT_EQ(got["on-b"].port, 100);

  // One address: nothing extra is written (an older relay reads the files as before).
  const std::string single = dir_ + "-single";
  {
    PortPool pool(100, 101);
    LeaseTable one(&pool, absl::Minutes(180));
    std::unique_ptr<LeaseStore> store = Open(single, false, {"203.0.113.7"});
    ASSERT_TRUE(store->Start({}).ok());
    one.set_observer(store.get());
    one.CreateLive("only", *pool.Allocate());
    store->Close();
    one.set_observer(nullptr);
  }
  std::map<std::string, StoredLease> plain = ById(*Open(single));
  EXPECT_EQ(plain["only"].address, "");
  EXPECT_EQ(plain["only"].port, 100);
  ASSERT_EQ(system(("rm -rf " + single).c_str()), 0);
}

TEST_F(LeaseStoreTest, ACrashKeepsEveryChangeAndATornTailIsIgnored) {
  PortPool pool(100, 110);
  LeaseTable table(&pool, absl::Minutes(180));
  std::unique_ptr<LeaseStore> store = Open(dir_);
  ASSERT_TRUE(store->Start({}).ok());
  table.set_observer(store.get());
  table.CreateLive("a", *pool.Allocate());
  table.CreateLive("b", *pool.Allocate());
  const std::string crashed = Snapshot();  // the files at the moment of a kill -9
  {
    std::unique_ptr<LeaseStore> after = Open(crashed);
    EXPECT_EQ(ById(*after).size(), 2u);
  }
  // A power loss cut the last write: half a record at the end of the journal.
  const std::string torn = Snapshot();
  std::string journal;
  for (const char* name : {"/leases.journal.1", "/leases.journal.2"}) {
    std::ifstream f(torn + name);
    if (f) journal = torn + name;
  }
  ASSERT_FALSE(journal.empty());
  std::ofstream(journal, std::ios::app) << std::string("\x20\x00\x00\x00\x01\x02", 6);
  std::unique_ptr<LeaseStore> after = Open(torn);
  EXPECT_EQ(ById(*after).size(), 2u);
  table.set_observer(nullptr);
  store->Close();
  ASSERT_EQ(system(("rm -rf " + crashed + " " + torn).c_str()), 0);
}

TEST_F(LeaseStoreTest, DamageRefusesToStartUnlessDiscarded) {
  {
    std::unique_ptr<LeaseStore> store = Open(dir_);
    StoredLease l;
    l.id = "node";
    l.port = 100;
    l.expires_unix_ms = absl::ToUnixMillis(clock_.WallNow() + absl::Hours(1));
    ASSERT_TRUE(store->Start({l}).ok());
    store->Close();
  }
  const std::string snapshot = dir_ + "/leases.snapshot";
  std::fstream f(snapshot, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(30);  // inside the lease record's payload (the header record is 17 bytes)
  f.put('\x7f');
  f.close();
  LeaseStore::Options o;
  o.dir = dir_;
  o.clock = &clock_;
  absl::StatusOr<std::unique_ptr<LeaseStore>> refused = LeaseStore::Open(o);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find(snapshot + ": checksum mismatch"), std::string::npos)
      << refused.status();
  EXPECT_NE(refused.status().message().find("--state_discard_corrupt"), std::string::npos);
  std::unique_ptr<LeaseStore> discarded = Open(dir_, /*discard=*/true);
  EXPECT_TRUE(discarded->loaded().empty());
  ASSERT_FALSE(discarded->discarded().empty());
  EXPECT_NE(discarded->discarded()[0].find("leases.snapshot.corrupt-"), std::string::npos);
}

TEST_F(LeaseStoreTest, CompactionKeepsTheStateAndExpiredLeasesAreNotLoaded) {
  PortPool pool(1000, 1100);
  LeaseTable table(&pool, absl::Minutes(1));
  LeaseStore::Options o;
  o.dir = dir_;
  o.clock = &clock_;
  o.sync_interval = absl::Milliseconds(5);
  std::unique_ptr<LeaseStore> store = *LeaseStore::Open(o);
  ASSERT_TRUE(store->Start({}).ok());
  table.set_observer(store.get());
  // 5,000 claims and ends of one lease: the journal is compacted on the way.
  for (int i = 0; i < 5000; ++i) {
    Lease* l = table.CreateLive("churn", *pool.Allocate());
    table.Remember(l, clock_.Now());
    table.Erase("churn");
  }
  table.CreateLive("stays", *pool.Allocate());
  Lease* old = table.CreateLive("expires", *pool.Allocate());
  table.Remember(old, clock_.Now());
  for (int i = 0; i < 500 && store->snapshots() < 2; ++i) {
    usleep(10000);
  }
  EXPECT_GE(store->snapshots(), 2u) << "Start wrote one; the journal was compacted";
  const std::string crashed = Snapshot();
  clock_.Advance(absl::Minutes(2));  // "expires" is past its time at the next start
  std::unique_ptr<LeaseStore> after = Open(crashed);
  std::map<std::string, StoredLease> got = ById(*after);
  EXPECT_EQ(got.size(), 1u);
  EXPECT_EQ(got.count("stays"), 1u);
  table.set_observer(nullptr);
  store->Close();
  ASSERT_EQ(system(("rm -rf " + crashed).c_str()), 0);
}

TEST(PortPoolHeldTest, HeldPortsStartHandedOutAndComeBackOnRelease) {
  PortPool pool(10, 13, {11, 13});
  EXPECT_EQ(pool.available(), 2u);
  EXPECT_EQ(*pool.Allocate(), 10);
  EXPECT_EQ(*pool.Allocate(), 12);
  EXPECT_FALSE(pool.Allocate());
  EXPECT_TRUE(pool.Release(11));
  EXPECT_EQ(*pool.Allocate(), 11);
}

}  // namespace
}  // namespace relay
