// The relay on IPv6 and on several addresses at once: a relay listening on [::1] hands
// out "[::1]:port" addresses that peers reach over IPv6; a relay listening on 127.0.0.1
// and [::1] takes nodes on both; nodes that send fresh claims name the relay as they
// dialed it, brackets included; per-source limits count an IPv6 /64 as one source.
#include <sys/socket.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "core/host_port.h"
#include "core/identity.h"
#include "gtest/gtest.h"
#include "node/node_client.h"
#include "tests/testing/relay_fixture.h"

namespace relay::testing {
namespace {

// Sends one frame of `payload` to `address` and checks the node receives it.
void ExpectDelivered(TestNode& node, const std::string& address, const std::string& payload) {
  absl::StatusOr<net::UniqueFd> peer = ConnectTo(address);
  ASSERT_TRUE(peer.ok()) << address << ": " << peer.status();
  const std::string frame = MakeFrame(payload);
  ASSERT_EQ(send(peer->get(), frame.data(), frame.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(frame.size()));
  absl::StatusOr<Frame> got = node.ReadDataFrame();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->payload, payload);
}

TEST(AddressesTest, AnIpv6RelayHandsOutIpv6AddressesPeersReach) {
  RelayFixture relay(4, [](RelayConfig& c) {
    c.listen = HostPort{"::1", 0};
    c.max_mains_per_ip = 1;
  });
  EXPECT_EQ(relay.server().listen_names().front(),
            absl::StrCat("[::1]:", relay.server().main_port()));
  TestNode node;
  ASSERT_TRUE(node.Connect("::1", relay.port()).ok());
  absl::StatusOr<std::string> address = node.RequestProxy();
  ASSERT_TRUE(address.ok()) << address.status();
  EXPECT_EQ(address->rfind("[::1]:", 0), 0u) << *address;
  ExpectDelivered(node, *address, "over IPv6");
  // A second main connection from the same /64 is the same source.
  TestNode second;
  ASSERT_TRUE(second.Connect("::1", relay.port()).ok());
  EXPECT_FALSE(second.RequestProxy(absl::Seconds(2)).ok());
  EXPECT_EQ(relay.WaitForCounter("limit_mains_per_ip", 1), 1u);
}

TEST(AddressesTest, OneRelayTakesNodesOnIpv4AndIpv6) {
  RelayFixture relay(4, [](RelayConfig& c) { c.more_listen.push_back(HostPort{"::1", 0}); });
  const std::vector<std::string> names = relay.server().listen_names();
  ASSERT_EQ(names.size(), 2u);
  absl::StatusOr<HostPort> v6 = ParseHostPort(names[1]);
  ASSERT_TRUE(v6.ok()) << names[1];
  EXPECT_EQ(v6->host, "::1");
  // A node over IPv6 gets an address on the first listener's family (IPv4 here).
  TestNode over6;
  ASSERT_TRUE(over6.Connect("::1", v6->port).ok());
  absl::StatusOr<std::string> a6 = over6.RequestProxy();
  ASSERT_TRUE(a6.ok()) << a6.status();
  EXPECT_EQ(a6->rfind("127.0.0.1:", 0), 0u) << *a6;
  ExpectDelivered(over6, *a6, "node on IPv6");
  TestNode over4;
  absl::StatusOr<std::string> a4 = over4.ConnectAndClaim(relay.port());
  ASSERT_TRUE(a4.ok()) << a4.status();
  EXPECT_NE(*a4, *a6);
  ExpectDelivered(over4, *a4, "node on IPv4");
}

TEST(AddressesTest, FreshClaimsNameAnIpv6RelayWithBrackets) {
  RelayFixture relay(4, [](RelayConfig& c) {
    c.listen = HostPort{"::1", 0};
    c.strict_claims = true;  // only signed fresh claims naming this relay are accepted
  });
  node::NodeOptions options;
  options.relays.push_back(HostPort{"::1", relay.port()});
  node::NodeClient client(Identity::Generate(), options);
  absl::StatusOr<std::string> address = client.Connect(absl::Seconds(10));
  ASSERT_TRUE(address.ok()) << address.status();
  EXPECT_EQ(address->rfind("[::1]:", 0), 0u) << *address;
  EXPECT_EQ(relay.Counter("fresh_claims"), 1u);
  EXPECT_EQ(relay.Counter("claims_wrong_relay"), 0u);
  client.Stop();
}

}  // namespace
}  // namespace relay::testing

namespace relay::testing {
namespace {

// Two proxy addresses (127.0.0.1 and 127.0.0.2, each binding its own IP) hold twice the
// nodes of one --port_range: nodes spread over both, peers reach each on its own IP.
TEST(AddressesTest, TwoProxyAddressesHoldTwiceTheNodes) {
  RelayFixture relay(2, [](RelayConfig& c) {
    c.advertise_host = "127.0.0.1";
    c.more_proxy_addresses.push_back(ProxyAddress{"127.0.0.2", ""});
  });
  ASSERT_EQ(relay.server().proxy_addresses().size(), 2u);
  EXPECT_EQ(relay.server().proxy_addresses()[0].bind, "127.0.0.1");
  EXPECT_EQ(relay.server().proxy_addresses()[1].bind, "127.0.0.2");
  std::vector<std::unique_ptr<TestNode>> nodes;
  std::vector<std::string> addresses;
  int on_first = 0, on_second = 0;
  for (int i = 0; i < 4; ++i) {  // 2 ports x 2 addresses
    std::string address;
    nodes.push_back(relay.NodeWithAddress(&address));
    ASSERT_FALSE(address.empty());
    addresses.push_back(address);
    on_first += address.rfind("127.0.0.1:", 0) == 0;
    on_second += address.rfind("127.0.0.2:", 0) == 0;
  }
  EXPECT_EQ(on_first, 2);
  EXPECT_EQ(on_second, 2);
  for (int i = 0; i < 4; ++i) {
    ExpectDelivered(*nodes[i], addresses[i], absl::StrCat("to node ", i));
  }
  EXPECT_EQ(relay.Counter("ports_free"), 0u);
  TestNode fifth;  // every port of both addresses is live
  ASSERT_TRUE(fifth.Connect("127.0.0.1", relay.port()).ok());
  EXPECT_FALSE(fifth.RequestProxy(absl::Seconds(2)).ok());
  EXPECT_EQ(relay.Counter("pool_exhausted"), 1u);
  // A node that leaves comes back to its own address (the lease keeps which IP).
  const std::string id = nodes[3]->connection_id();
  nodes[3]->Close();
  relay.WaitForCounter("sessions_ended", 1);
  TestNode back(id);
  absl::StatusOr<std::string> again = back.ConnectAndClaim(relay.port());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, addresses[3]);
}

TEST(AddressesTest, SeveralProxyAddressesMustEachBindTheirOwnIp) {
  RelayConfig c;
  c.listen = HostPort{"0.0.0.0", 6008};
  c.advertise_host = "203.0.113.7";
  c.advertise_bind = "0.0.0.0";  // a wildcard would collide with the other address's ports
  c.more_proxy_addresses.push_back(ProxyAddress{"203.0.113.8", ""});
  EXPECT_FALSE(ValidateConfig(c).ok());
  c.advertise_bind = "10.0.0.7";
  EXPECT_TRUE(ValidateConfig(c).ok());
  c.more_proxy_addresses.push_back(ProxyAddress{"203.0.113.9", "10.0.0.7"});  // bound twice
  EXPECT_FALSE(ValidateConfig(c).ok());
  EXPECT_EQ(ParseProxyAddress("203.0.113.7@10.0.0.7")->bind, "10.0.0.7");
  EXPECT_FALSE(ParseProxyAddress("203.0.113.7@").ok());
  EXPECT_FALSE(ParseProxyAddress("host.example").ok());
}

}  // namespace
}  // namespace relay::testing
