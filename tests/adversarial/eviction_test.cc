// Pool pressure fair by source: nodes that left keep their addresses against a burst of
// throw-away claims from 16 source addresses of one /24. The group holding the most remembered
// leases loses its oldest first, and one group (an IPv4 /24, an IPv6 /48) pushes out
// others' leases only within --evictions_per_source; beyond it, only its own (before:
// 1,252 evictions in 0.5 s, and 0 of 500 nodes got their address back).
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/adversarial/attack_helpers.h"

namespace relay::testing {
namespace {

// 200 departed nodes, each of its own /24 (127.0.2.1, 127.0.3.1...), then a burst of
// throw-away claims from 16 sources (`attacker(s)`, s = 1..16) for 0.5 s: how many of
// the nodes get their own address back.
void Burst(const std::function<std::string(int)>& attacker) {
  constexpr int kNodes = 200;
  RelayProcess relay;
  ASSERT_TRUE(relay.Start(
      {PortRange(kNodes + 10), "--threads=1", "--proxy_requests_per_ip=1000", "--quiet"}));
  // The nodes (each behind its own address, of its own /24: 127.0.2.1, 127.0.3.1...)
  // claim and leave: their leases are remembered.
  auto source = [](int i) { return absl::StrCat("127.0.", 2 + i, ".1"); };
  std::vector<std::string> ids, addresses;
  for (int i = 0; i < kNodes; ++i) {
    TestNode node;
    ASSERT_TRUE(node.ConnectFrom(source(i), "127.0.0.1", relay.port()).ok());
    absl::StatusOr<std::string> a = node.RequestProxy();
    ASSERT_TRUE(a.ok()) << "node " << i << ": " << a.status();
    ids.push_back(node.connection_id());
    addresses.push_back(*a);
  }
  ASSERT_EQ(WaitForCounter(relay, "sessions_ended", kNodes), static_cast<uint64_t>(kNodes));
  // The 16 sources claim with new identities for 0.5 s.
  std::atomic<bool> stop{false};
  std::atomic<int> claims{0};
  std::vector<std::thread> attackers;
  for (int s = 1; s <= 16; ++s) {
    attackers.emplace_back([&, s] {
      while (!stop.load()) {
        TestNode thrown;
        if (thrown.ConnectFrom(attacker(s), "127.0.0.1", relay.port()).ok() &&
            thrown.RequestProxy(absl::Seconds(2)).ok()) {
          ++claims;
        }
      }
    });
  }
  absl::SleepFor(absl::Milliseconds(500));
  stop = true;
  for (std::thread& t : attackers) {
    t.join();
  }
  EXPECT_GT(claims.load(), 20) << "the burst did not put the pool under pressure";
  // The departed nodes come back: at least 95 % get their own address.
  int back = 0;
  for (int i = 0; i < kNodes; ++i) {
    TestNode node(ids[i]);
    ASSERT_TRUE(node.ConnectFrom(source(i), "127.0.0.1", relay.port()).ok());
    absl::StatusOr<std::string> a = node.RequestProxy();
    back += a.ok() && *a == addresses[i] ? 1 : 0;
  }
  std::map<std::string, uint64_t> c = relay.Counters();
  EXPECT_GE(back, kNodes * 95 / 100) << "leases_evicted " << c["leases_evicted"] << " limited "
                                     << c["evictions_limited"] << " claims " << claims.load();
  EXPECT_GT(c["evictions_limited"] + c["leases_evicted"], 0u);
  EXPECT_EQ(relay.Stop(), 0);
}

TEST(EvictionTest, ABurstFrom16SourcesOfOneSlash24LeavesDepartedNodesTheirAddresses) {
  Burst([](int s) { return absl::StrCat("127.1.0.", s); });
}

TEST(EvictionTest, ABurstFrom16Slash24sLeavesDepartedNodesTheirAddresses) {
  Burst([](int s) { return absl::StrCat("127.1.", s, ".1"); });
}

}  // namespace
}  // namespace relay::testing
