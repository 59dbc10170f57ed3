// Leases and keepalives (shared/PROTOCOL.md sections 4-5): remembered addresses,
// keepalive timeouts, and a pool that never gives away a remembered port.
#include "absl/strings/str_cat.h"
#include "core/control_codec.h"
#include "gtest/gtest.h"
#include "tests/testing/relay_fixture.h"

namespace relay::testing {
namespace {

TEST(LeaseTest, KeepaliveTimeoutClosesTheNodeAndTheAddressComesBack) {
  FakeClock clock;
  RelayFixture relay(
      8, [](RelayConfig& c) { c.keepalive_timeout = absl::Milliseconds(500); }, &clock);
  std::string address;
  auto node = relay.NodeWithAddress(&address);
  clock.Advance(absl::Milliseconds(400));
  relay.WaitForTimers();
  EXPECT_EQ(relay.Counter("keepalive_timeouts"), 0u) << "closed before its timeout";
  clock.Advance(absl::Milliseconds(200));
  EXPECT_TRUE(WaitForClose(node->fd(), absl::Seconds(10)));
  EXPECT_EQ(relay.WaitForCounter("keepalive_timeouts", 1), 1u);

  std::string again;
  auto back = relay.NodeWithAddress(&again, node->connection_id());
  EXPECT_EQ(again, address);
}

TEST(LeaseTest, KeepalivesKeepTheSessionAlive) {
  FakeClock clock;
  RelayFixture relay(
      8, [](RelayConfig& c) { c.keepalive_timeout = absl::Milliseconds(600); }, &clock);
  std::string address;
  auto node = relay.NodeWithAddress(&address);
  for (int i = 0; i < 8; ++i) {  // 1.6 s in all, well past the timeout
    clock.Advance(absl::Milliseconds(200));
    relay.WaitForTimers();
    ASSERT_TRUE(node->Send(kOpKeepalive).ok());
    absl::StatusOr<wire::Message> m = node->ReadMessage(absl::Seconds(5));
    ASSERT_TRUE(m.ok()) << "round " << i << ": " << m.status();
    EXPECT_EQ(m->opcode(), kOpKeepaliveResponse);
  }
  EXPECT_EQ(relay.Counter("keepalive_timeouts"), 0u);
  // The proxy address still works.
  absl::StatusOr<net::UniqueFd> peer = ConnectTo(address);
  ASSERT_TRUE(peer.ok());
  ASSERT_TRUE(WriteAll(peer->get(), MakeFrame("still here")));
  absl::StatusOr<Frame> f = node->ReadDataFrame();
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->payload, "still here");
}

TEST(LeaseTest, ReconnectWithinTheLeaseTimeGetsTheSameAddressOnEveryShard) {
  // Many nodes, so their leases land on both reactors and many main connections are
  // accepted by the reactor that does not own their lease (hand-off).
  RelayFixture relay(64);
  std::vector<std::string> ids, addresses;
  for (int i = 0; i < 24; ++i) {
    std::string address;
    auto node = relay.NodeWithAddress(&address);
    ids.push_back(node->connection_id());
    addresses.push_back(address);
    node->Close();
  }
  EXPECT_EQ(relay.WaitForCounter("sessions_ended", 24), 24u);
  // Between the two rounds the remembered ports are not bound: another test's relay
  // running in parallel may take one (the ranges are picked at random), and then the
  // relay must give that node a new port and count it. Any other change is a bug.
  uint64_t moved = 0;
  for (int i = 0; i < 24; ++i) {
    std::string again;
    auto node = relay.NodeWithAddress(&again, ids[i]);
    if (again != addresses[i]) {
      ++moved;
    }
  }
  EXPECT_EQ(moved, relay.Counter("lease_port_rebound"))
      << "a node got another address although its remembered port was free";
  EXPECT_EQ(relay.Counter("leases_reused"), 24u);
  EXPECT_GT(relay.Counter("main_handed_off"), 0u);
}

TEST(LeaseTest, ARememberedPortComesBackAfterTheLeaseTime) {
  FakeClock clock;
  RelayFixture relay(
      1, [](RelayConfig& c) { c.lease_ttl = absl::Minutes(10); }, &clock);
  std::string address;
  auto first = relay.NodeWithAddress(&address);
  first->Close();
  EXPECT_EQ(relay.WaitForCounter("sessions_ended", 1), 1u);
  EXPECT_EQ(relay.Counter("leases_expired"), 0u);
  clock.Advance(absl::Minutes(9));
  relay.WaitForTimers();  // every reactor saw 9 minutes pass: nothing was due
  EXPECT_EQ(relay.Counter("leases_expired"), 0u);
  clock.Advance(absl::Minutes(2));
  EXPECT_EQ(relay.WaitForCounter("leases_expired", 1), 1u);
  EXPECT_EQ(relay.Counter("ports_free"), 1u);
  std::string taken;
  auto third = relay.NodeWithAddress(&taken);
  EXPECT_EQ(taken, address);
  EXPECT_EQ(relay.Counter("leases_evicted"), 0u);
}

// Pool pressure: a free port is always preferred; when none is free, a new node takes
// the port of the oldest remembered lease (never a live one) instead of being locked out
// for the lease time.
TEST(LeaseTest, WhenThePoolIsEmptyTheOldestRememberedLeaseGivesUpItsPort) {
  RelayFixture relay(2, [](RelayConfig& c) { c.threads = 1; });
  std::string a1, a2, b;
  auto first = relay.NodeWithAddress(&a1);
  auto second = relay.NodeWithAddress(&a2);
  first->Close();
  EXPECT_EQ(relay.WaitForCounter("sessions_ended", 1), 1u);
  second->Close();
  EXPECT_EQ(relay.WaitForCounter("sessions_ended", 2), 2u);
  EXPECT_EQ(relay.Counter("ports_free"), 0u);

  // Both ports remembered: a newcomer takes the older one (first's), not second's.
  auto newcomer = relay.NodeWithAddress(&b);
  EXPECT_EQ(b, a1);
  EXPECT_EQ(relay.Counter("leases_evicted"), 1u);
  // second comes back within its lease: its own address, untouched.
  std::string again;
  auto second_back = relay.NodeWithAddress(&again, second->connection_id());
  EXPECT_EQ(again, a2);
  // first comes back: every port is live now, so it is refused, clearly.
  TestNode first_back(first->connection_id());
  ASSERT_TRUE(first_back.Connect("127.0.0.1", relay.port()).ok());
  absl::StatusOr<std::string> refused = first_back.RequestProxy();
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().message(), "disconnect");
  EXPECT_TRUE(WaitForClose(first_back.fd(), absl::Seconds(10)));
  EXPECT_EQ(relay.Counter("pool_exhausted"), 1u);
}

// The remembered lease may live on another reactor than the newcomer's: the claim waits
// for that reactor to free the port instead of being refused.
TEST(LeaseTest, EvictionWorksAcrossReactors) {
  RelayFixture relay(1, [](RelayConfig& c) { c.threads = 2; });
  for (int i = 0; i < 8; ++i) {
    std::string address;
    auto node = relay.NodeWithAddress(&address);  // a new identity each round
    ASSERT_FALSE(address.empty()) << "round " << i;
    node->Close();
    ASSERT_EQ(relay.WaitForCounter("sessions_ended", i + 1), static_cast<uint64_t>(i + 1));
  }
  EXPECT_EQ(relay.Counter("leases_evicted"), 7u);
  EXPECT_EQ(relay.Counter("pool_exhausted"), 0u);
}

TEST(LeaseTest, ALiveSessionsPortIsNeverGivenAway) {
  RelayFixture relay(1);
  std::string address;
  auto first = relay.NodeWithAddress(&address);
  TestNode second;
  ASSERT_TRUE(second.Connect("127.0.0.1", relay.port()).ok());
  absl::StatusOr<std::string> refused = second.RequestProxy();
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().message(), "disconnect");
  EXPECT_EQ(relay.Counter("pool_exhausted"), 1u);
  EXPECT_EQ(relay.Counter("leases_evicted"), 0u);
  // The first node is untouched.
  ASSERT_TRUE(first->Send(kOpPing).ok());
  absl::StatusOr<wire::Message> m = first->ReadMessage();
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->opcode(), kOpPong);
}

}  // namespace
}  // namespace relay::testing
