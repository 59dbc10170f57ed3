// A full disk under --state_dir (the relay's file size limit lowered: its writes fail as
// on a full filesystem, with EFBIG for ENOSPC). A claim is
// acknowledged only when its lease is on disk: while the journal cannot be written the
// relay refuses claims (claims_not_durable) and says so on /healthz; after kill -9 every
// node that was given an address gets it back and no stranger ever gets one of them.
#include <signal.h>
#include <sys/resource.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/adversarial/attack_helpers.h"
#include "tests/testing/free_ports.h"
#include "tests/testing/temp_dir.h"

namespace relay::testing {
namespace {

class FullDiskTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.empty());
    lo_ = PickFreePortRange(40);
    admin_ = PickFreePortRange(1);
  }
  std::vector<std::string> Flags() const {
    return {"--threads=2",
            absl::StrCat("--port_range=", lo_, "-", lo_ + 39),
            "--state_dir=" + dir_,
            "--state_sync_interval=100ms",
            absl::StrCat("--admin_listen=127.0.0.1:", admin_),
            "--quiet"};
  }
  // The relay's writes past a file's 64th byte fail (a snapshot, the journal's next
  // record, its log) as on a full disk; or, `full` false, none do.
  void SetDiskFull(const RelayProcess& relay, bool full) {
    rlimit limit{RLIM_INFINITY, RLIM_INFINITY};
    ASSERT_EQ(prlimit(relay.pid(), RLIMIT_FSIZE, nullptr, &limit), 0);
    limit.rlim_cur = full ? 64 : limit.rlim_max;
    ASSERT_EQ(prlimit(relay.pid(), RLIMIT_FSIZE, &limit, nullptr), 0);
  }
  // A counter or gauge from /metrics (the relay's log, which Counters() reads, is a file
  // too: it cannot grow while the disk is "full").
  uint64_t Metric(const std::string& name) {
    absl::StatusOr<HttpAnswer> m = HttpGet(admin_, "/metrics");
    EXPECT_TRUE(m.ok()) << m.status();
    for (absl::string_view line : absl::StrSplit(m.ok() ? m->body : "", '\n')) {
      for (const std::string& metric : {"relay_" + name + " ", "relay_" + name + "_total "}) {
        uint64_t v = 0;
        if (absl::StartsWith(line, metric) && absl::SimpleAtoi(line.substr(metric.size()), &v)) {
          return v;
        }
      }
    }
    ADD_FAILURE() << "no metric " << name;
    return 0;
  }
  // `count` new nodes claim addresses; the addresses, and the nodes (kept connected).
  std::vector<std::string> Claim(uint16_t port, int count,
                                 std::vector<std::unique_ptr<TestNode>>* nodes) {
    std::vector<std::string> addresses;
    for (int i = 0; i < count; ++i) {
      auto node = std::make_unique<TestNode>();
      EXPECT_TRUE(node->Connect("127.0.0.1", port).ok());
      absl::StatusOr<std::string> a = node->RequestProxy();
      EXPECT_TRUE(a.ok()) << a.status();
      addresses.push_back(a.ok() ? *a : "");
      nodes->push_back(std::move(node));
    }
    return addresses;
  }
  // After a restart: strangers take every free port first (not more: a new node beyond
  // that may take a remembered port, by the pool's eviction), then each node of `nodes`
  // comes back. Every node must get its own address, and no stranger any of them.
  void ExpectAllBack(uint16_t port, const std::vector<std::unique_ptr<TestNode>>& nodes,
                     const std::vector<std::string>& addresses) {
    std::vector<std::unique_ptr<TestNode>> strangers;
    for (size_t i = 0; i < 40 - addresses.size(); ++i) {
      auto s = std::make_unique<TestNode>();
      ASSERT_TRUE(s->Connect("127.0.0.1", port).ok());
      absl::StatusOr<std::string> a = s->RequestProxy();
      ASSERT_TRUE(a.ok()) << "stranger " << i << ": " << a.status();
      EXPECT_EQ(std::find(addresses.begin(), addresses.end(), *a), addresses.end())
          << "a stranger got the acknowledged address " << *a;
      strangers.push_back(std::move(s));
    }
    for (size_t i = 0; i < nodes.size(); ++i) {
      TestNode back(nodes[i]->connection_id());
      ASSERT_TRUE(back.Connect("127.0.0.1", port).ok());
      absl::StatusOr<std::string> a = back.RequestProxy();
      ASSERT_TRUE(a.ok()) << "node " << i << ": " << a.status();
      EXPECT_EQ(*a, addresses[i]) << "node " << i;
    }
  }
  TempDir temp_{"full"};
  const std::string dir_ = temp_.path();
  uint16_t lo_ = 0;
  uint16_t admin_ = 0;
};

TEST_F(FullDiskTest, ClaimsAreRefusedWhileTheJournalCannotBeWrittenAndNoAddressIsLost) {
  std::vector<std::unique_ptr<TestNode>> acknowledged;
  std::vector<std::string> addresses;
  {
    RelayProcess relay;
    ASSERT_TRUE(relay.Start(Flags()));
    ASSERT_TRUE(WaitForAdmin(admin_));
    addresses = Claim(relay.port(), 10, &acknowledged);
    SetDiskFull(relay, true);
    for (int i = 0; i < 10; ++i) {
      TestNode refused;
      ASSERT_TRUE(refused.Connect("127.0.0.1", relay.port()).ok());
      EXPECT_FALSE(refused.RequestProxy().ok()) << "claim " << i << " acknowledged on a full disk";
    }
    EXPECT_EQ(Metric("claims_not_durable"), 10u);
    EXPECT_EQ(Metric("state_writable"), 0u);
    absl::StatusOr<HttpAnswer> health = HttpGet(admin_, "/healthz");
    ASSERT_TRUE(health.ok()) << health.status();
    EXPECT_EQ(health->code, 200);
    EXPECT_TRUE(absl::StartsWith(health->body, "degraded")) << health->body;
    // Half the acknowledged nodes leave while nothing can be written.
    for (int i = 0; i < 5; ++i) {
      acknowledged[i]->Close();
    }
    for (int i = 0; i < 100 && Metric("sessions_ended") < 5; ++i) {
      absl::SleepFor(absl::Milliseconds(20));
    }
    ASSERT_EQ(kill(relay.pid(), SIGKILL), 0);
    EXPECT_EQ(relay.Stop(), -1);
  }
  RelayProcess relay;
  ASSERT_TRUE(relay.Start(Flags()));
  ExpectAllBack(relay.port(), acknowledged, addresses);
  EXPECT_EQ(relay.Stop(), 0);
}

TEST_F(FullDiskTest, WhenSpaceFreesTheStateIsWrittenAgainAndClaimsAreAccepted) {
  std::vector<std::unique_ptr<TestNode>> acknowledged;
  std::vector<std::string> addresses;
  {
    RelayProcess relay;
    ASSERT_TRUE(relay.Start(Flags()));
    ASSERT_TRUE(WaitForAdmin(admin_));
    addresses = Claim(relay.port(), 5, &acknowledged);
    SetDiskFull(relay, true);
    TestNode refused;
    ASSERT_TRUE(refused.Connect("127.0.0.1", relay.port()).ok());
    EXPECT_FALSE(refused.RequestProxy().ok());
    acknowledged[0]->Close();  // a change only memory holds, until the state is written
    SetDiskFull(relay, false);
    for (int i = 0; i < 100 && Metric("state_writable") == 0; ++i) {
      absl::SleepFor(absl::Milliseconds(20));
    }
    EXPECT_EQ(Metric("state_writable"), 1u);
    absl::StatusOr<HttpAnswer> health = HttpGet(admin_, "/healthz");
    ASSERT_TRUE(health.ok()) << health.status();
    EXPECT_EQ(health->body, "ok\n");
    std::vector<std::string> more = Claim(relay.port(), 5, &acknowledged);
    addresses.insert(addresses.end(), more.begin(), more.end());
    ASSERT_EQ(kill(relay.pid(), SIGKILL), 0);
    EXPECT_EQ(relay.Stop(), -1);
  }
  RelayProcess relay;
  ASSERT_TRUE(relay.Start(Flags()));
  ExpectAllBack(relay.port(), acknowledged, addresses);
  EXPECT_EQ(relay.Counters()["leases_restored"], 10u);
  EXPECT_EQ(relay.Stop(), 0);
}

}  // namespace
}  // namespace relay::testing
