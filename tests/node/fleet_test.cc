// A fleet behind one DNS name: three relay-server processes on one port at 127.0.0.1,
// 127.0.0.2 and 127.0.0.3, and nodes given only the name (resolved here by a stand-in for
// DNS that returns the three addresses, as an A record set would). The nodes spread over
// the relays; when one relay dies (SIGKILL), each of its nodes is served by another, and
// the nodes of the others keep their relay and their address.
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/host_port.h"
#include "core/identity.h"
#include "gtest/gtest.h"
#include "net/socket_ops.h"
#include "node/node_client.h"
#include "tests/testing/flat_json.h"
#include "tests/testing/free_ports.h"
#include "tests/testing/relay_process.h"

namespace relay::testing {
namespace {

using node::NodeClient;
using node::NodeOptions;
using node::ReceivedMessage;

constexpr int kNodes = 30;
const std::vector<std::string> kHosts = {"127.0.0.1", "127.0.0.2", "127.0.0.3"};

NodeOptions FleetOptions(uint16_t port) {
  NodeOptions options;
  options.relays.push_back(HostPort{"fleet.test", port});
  options.resolve = [](const std::string& name) -> absl::StatusOr<std::vector<std::string>> {
    if (name != "fleet.test") {
      return absl::NotFoundError(name);
    }
    return kHosts;
  };
  options.initial_backoff = absl::Milliseconds(20);
  options.max_backoff = absl::Milliseconds(200);
  options.io_timeout = absl::Seconds(5);
  return options;
}

struct FleetNode {
  std::unique_ptr<NodeClient> client;
  std::atomic<int> received{0};
};

// Polls `done` every 20 ms until it holds or `timeout` passes.
template <typename F>
bool WaitUntil(absl::Duration timeout, F done) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!done()) {
    if (absl::Now() >= deadline) {
      return false;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return true;
}

TEST(FleetTest, NodesBehindOneNameSpreadAndAreServedByTheOthersWhenARelayDies) {
  const uint16_t port = PickFreePortRange(1);
  std::map<std::string, std::unique_ptr<RelayProcess>> relays;  // by "host:port"
  for (const std::string& host : kHosts) {
    auto relay = std::make_unique<RelayProcess>();
    const uint16_t proxy = PickFreePortRange(kNodes + 1);
    ASSERT_TRUE(relay->StartOn(host, port,
                               {absl::StrCat("--port_range=", proxy, "-", proxy + kNodes),
                                "--advertise_host=" + host, "--threads=1", "--quiet"}))
        << host << ": " << relay->Stderr();
    relays[FormatHostPort(host, port)] = std::move(relay);
  }
  std::vector<std::unique_ptr<FleetNode>> nodes;
  for (int i = 0; i < kNodes; ++i) {
    auto n = std::make_unique<FleetNode>();
    n->client = std::make_unique<NodeClient>(Identity::Generate(), FleetOptions(port));
    ASSERT_TRUE(n->client->Connect(absl::Seconds(10)).ok());
    FleetNode* raw = n.get();
    n->client->Start([raw](const ReceivedMessage&) { raw->received.fetch_add(1); });
    nodes.push_back(std::move(n));
  }
  // Spread: each node starts at a random one of the name's addresses.
  std::map<std::string, int> per_relay;
  std::map<FleetNode*, std::string> relay_of, address_of;
  for (auto& n : nodes) {
    ++per_relay[n->client->current_relay()];
    relay_of[n.get()] = n->client->current_relay();
    address_of[n.get()] = n->client->proxy_address();
  }
  ASSERT_GE(per_relay.size(), 2u) << "30 nodes all on one relay";
  std::string victim;
  for (const auto& [relay, count] : per_relay) {
    if (victim.empty() || count > per_relay[victim]) {
      victim = relay;
    }
  }
  ASSERT_EQ(relays.count(victim), 1u) << victim;

  ASSERT_EQ(kill(relays[victim]->pid(), SIGKILL), 0);
  relays[victim]->Wait(absl::Seconds(10));
  // Every node of the dead relay is attached to another within 30 s.
  const bool rehomed = WaitUntil(absl::Seconds(30), [&] {
    for (auto& n : nodes) {
      if (n->client->current_relay() == victim || n->client->proxy_address().empty()) {
        return false;
      }
    }
    return true;
  });
  ASSERT_TRUE(rehomed) << "nodes still on " << victim;

  NodeClient sender(Identity::Generate(), FleetOptions(port));
  ASSERT_TRUE(sender.Connect(absl::Seconds(10)).ok());
  sender.Start([](const ReceivedMessage&) {});
  int moved = 0;
  for (auto& n : nodes) {
    if (relay_of[n.get()] == victim) {
      ++moved;
      EXPECT_GE(n->client->reconnects(), 1);
    } else {  // the survivors' nodes noticed nothing
      EXPECT_EQ(n->client->current_relay(), relay_of[n.get()]);
      EXPECT_EQ(n->client->proxy_address(), address_of[n.get()]);
    }
    // Served: a message to its (possibly new) address arrives.
    ASSERT_TRUE(sender.SendBytes(n->client->proxy_address(), "hello").ok());
  }
  EXPECT_EQ(moved, per_relay[victim]);
  const bool served = WaitUntil(absl::Seconds(10), [&] {
    for (auto& n : nodes) {
      if (n->received.load() < 1) {
        return false;
      }
    }
    return true;
  });
  EXPECT_TRUE(served);
  sender.Stop();
  for (auto& n : nodes) {
    n->client->Stop();
  }
  for (auto& [name, relay] : relays) {
    if (name != victim) {
      EXPECT_EQ(relay->Stop(), 0) << name;
    }
  }
}

// relay-load drives a fleet: 40 idle nodes and one measured node start on the first of
// three relays; that relay is killed; every one of them moves along its list (node k tries
// the others rotated by k), so the two survivors take half each, and the run reports the
// moves and the Keepalives' round trips instead of failing.
TEST(FleetTest, RelayLoadMovesEveryNodeOfADeadRelayAlongItsList) {
  constexpr int kIdle = 40;
  const uint16_t port = PickFreePortRange(1);
  std::vector<std::unique_ptr<RelayProcess>> relays;
  std::string list;
  for (const std::string& host : kHosts) {
    auto relay = std::make_unique<RelayProcess>();
    const uint16_t proxy = PickFreePortRange(kIdle + 2);
    ASSERT_TRUE(relay->StartOn(host, port,
                               {absl::StrCat("--port_range=", proxy, "-", proxy + kIdle + 1),
                                "--advertise_host=" + host, "--threads=1"}))
        << host << ": " << relay->Stderr();
    absl::StrAppend(&list, list.empty() ? "" : ",", FormatHostPort(host, port));
    relays.push_back(std::move(relay));
  }
  BackgroundProgram load;
  ASSERT_TRUE(load.Start("relay-load",
                         {"--relay=" + list, "--failover", absl::StrCat("--idle_nodes=", kIdle),
                          "--nodes=1", "--rate=500", "--frame_bytes=1024", "--seconds=5",
                          "--keepalive_interval=300ms", "--threads=1", "--progress=false", "--json",
                          absl::StrCat("--relay_pid=", relays[0]->pid())}));
  // Every node is on the first relay; then it dies.
  ASSERT_TRUE(WaitUntil(absl::Seconds(20), [&] {
    return relays[0]->Counters()["sessions_started"] == kIdle + 1;
  })) << load.Output();
  ASSERT_EQ(kill(relays[0]->pid(), SIGKILL), 0);
  relays[0]->Wait(absl::Seconds(10));
  ASSERT_EQ(load.Wait(absl::Seconds(90)), 0) << load.Output();

  std::map<std::string, std::string> result;
  const std::string out = load.Output();
  ASSERT_TRUE(ParseFlatJson(out.substr(out.find('{'), out.rfind('}') - out.find('{') + 1), &result))
      << out;
  EXPECT_EQ(result["rehomed_nodes"], absl::StrCat(kIdle + 1)) << out;
  EXPECT_EQ(result["rehome_failed"], "0");
  EXPECT_EQ(result["relay_died"], "true");
  EXPECT_NE(result["rehome_p99_s"], "null");
  EXPECT_LT(std::stod(result["rehome_max_s"]), 30.0);
  EXPECT_GT(std::stoull(result["keepalives_answered"]), 0u) << out;
  EXPECT_NE(result["keepalive_p99_us"], "null");
  // The survivors took the nodes half each.
  const uint64_t second = relays[1]->Counters()["sessions_started"];
  const uint64_t third = relays[2]->Counters()["sessions_started"];
  EXPECT_EQ(second + third, static_cast<uint64_t>(kIdle + 1));
  EXPECT_GE(std::min(second, third), static_cast<uint64_t>(kIdle / 2));
  EXPECT_EQ(relays[1]->Stop(), 0);
  EXPECT_EQ(relays[2]->Stop(), 0);
}

// Without --failover, a relay that dies under relay-load's idle sessions fails the run,
// naming what was lost, instead of reporting a result.
TEST(FleetTest, RelayLoadWithoutFailoverFailsWhenItsRelayDies) {
  RelayProcess relay;
  const uint16_t proxy = PickFreePortRange(12);
  ASSERT_TRUE(relay.Start({absl::StrCat("--port_range=", proxy, "-", proxy + 11), "--threads=1"}));
  BackgroundProgram load;
  ASSERT_TRUE(load.Start("relay-load", {absl::StrCat("--relay=127.0.0.1:", relay.port()),
                                        "--idle_nodes=10", "--nodes=0", "--seconds=3",
                                        "--keepalive_interval=200ms", "--progress=false"}));
  ASSERT_TRUE(WaitUntil(absl::Seconds(20), [&] {
    return relay.Counters()["sessions_started"] == 10;
  })) << load.Output();
  ASSERT_EQ(kill(relay.pid(), SIGKILL), 0);
  relay.Wait(absl::Seconds(10));
  EXPECT_EQ(load.Wait(absl::Seconds(60)), 1) << load.Output();
  EXPECT_NE(load.Output().find("10 connections were closed by the other side"), std::string::npos)
      << load.Output();
}

TEST(FleetTest, ANameResolvesToEveryAddressItHas) {
  absl::StatusOr<std::vector<std::string>> loopback = net::ResolveHost("localhost");
  ASSERT_TRUE(loopback.ok()) << loopback.status();
  EXPECT_NE(std::find(loopback->begin(), loopback->end(), "127.0.0.1"), loopback->end());
  EXPECT_EQ(std::set<std::string>(loopback->begin(), loopback->end()).size(), loopback->size());
  EXPECT_FALSE(net::ResolveHost("no-such-host.invalid").ok());
}

}  // namespace
}  // namespace relay::testing
