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

TEST(FleetTest, ANameResolvesToEveryAddressItHas) {
  absl::StatusOr<std::vector<std::string>> loopback = net::ResolveHost("localhost");
  ASSERT_TRUE(loopback.ok()) << loopback.status();
  EXPECT_NE(std::find(loopback->begin(), loopback->end(), "127.0.0.1"), loopback->end());
  EXPECT_EQ(std::set<std::string>(loopback->begin(), loopback->end()).size(), loopback->size());
  EXPECT_FALSE(net::ResolveHost("no-such-host.invalid").ok());
}

}  // namespace
}  // namespace relay::testing
