// Control exchanges on the main connection (shared/PROTOCOL.md sections 3-4) and the
// two-node exchange of section 1, against a RelayServer on 127.0.0.1.
#include "server/relay_server.h"

#include <algorithm>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/control_codec.h"
#include "gtest/gtest.h"
#include "net/frame_io.h"
#include "tests/testing/relay_fixture.h"

namespace relay::testing {
namespace {

TEST(RelayServerTest, ProxyRequestGetsAnAddressAndTheSameOneWhenAskedAgain) {
  RelayFixture relay;
  TestNode node;
  ASSERT_TRUE(node.Connect("127.0.0.1", relay.port()).ok());
  ASSERT_TRUE(node.Send(kOpProxyRequest, wire::ProxyRequest().SerializeAsString(), 41).ok());
  absl::StatusOr<wire::Message> reply = node.ReadMessage();
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->opcode(), kOpProxyResponse);
  EXPECT_TRUE(reply->reply_flag());
  EXPECT_EQ(reply->request_nonce(), 41u);
  EXPECT_EQ(reply->message_nonce(), 1u);
  EXPECT_EQ(reply->netid(), kDefaultNetworkId);
  EXPECT_FALSE(reply->sender().net_key().empty());
  EXPECT_EQ(reply->sender().address(), absl::StrCat("tcp://127.0.0.1:", relay.port()));
  wire::ProxyResponse response;
  ASSERT_TRUE(response.ParseFromString(reply->message()));
  EXPECT_EQ(response.origin_address(), node.id().address());
  const std::string& address = response.proxy_address();
  ASSERT_EQ(address.rfind("127.0.0.1:", 0), 0u) << address;  // no scheme
  const int port = std::stoi(address.substr(address.find(':') + 1));
  EXPECT_GE(port, relay.config().port_lo);
  EXPECT_LE(port, relay.config().port_hi);

  absl::StatusOr<std::string> again = node.RequestProxy();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, address);
  EXPECT_EQ(relay.Counter("sessions_started"), 1u);
}

// A one-reactor relay on `clock` with these control limits (declare it after the clock).
std::unique_ptr<RelayFixture> ControlLimitedRelay(FakeClock* clock, double rate, uint32_t burst,
                                                  double per_ip) {
  return std::make_unique<RelayFixture>(
      8,
      [=](RelayConfig& c) {
        c.threads = 1;
        c.control_rate = rate;
        c.control_burst = burst;
        c.control_per_ip = per_ip;
      },
      clock);
}

TEST(RelayServerTest, AConnectionFloodingControlMessagesIsThrottledWhileOthersAreAnswered) {
  // --control_rate: 500 keepalives sent at once get the burst answered, then the relay
  // stops reading that connection until its rate allows more. The clock is fake, so no
  // time passes (and nothing refills) until the test advances it; meanwhile another node
  // on the same reactor gets its ProxyRequest and keepalive answered.
  FakeClock clock;
  std::unique_ptr<RelayFixture> fixture = ControlLimitedRelay(&clock, 10, 20, /*per_ip=*/200);
  RelayFixture& relay = *fixture;
  TestNode flood;
  ASSERT_TRUE(flood.Connect("127.0.0.1", relay.port()).ok());
  for (uint64_t i = 1; i <= 500; ++i) {
    ASSERT_TRUE(flood.Send(kOpKeepalive, "", i).ok());
  }
  for (int i = 0; i < 20; ++i) {
    absl::StatusOr<wire::Message> m = flood.ReadMessage();
    ASSERT_TRUE(m.ok()) << "reply " << i << ": " << m.status();
    EXPECT_EQ(m->opcode(), kOpKeepaliveResponse);
  }
  EXPECT_EQ(relay.WaitForCounter("main_control_throttled", 1), 1u);
  EXPECT_EQ(relay.Counter("control_messages"), 20u);

  std::string address;
  auto innocent = relay.NodeWithAddress(&address);
  EXPECT_FALSE(address.empty());
  ASSERT_TRUE(innocent->Send(kOpKeepalive, "", 7).ok());
  absl::StatusOr<wire::Message> m = innocent->ReadMessage();
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->opcode(), kOpKeepaliveResponse);
  EXPECT_EQ(m->request_nonce(), 7u);
  EXPECT_EQ(relay.Counter("control_messages"), 22u) << "no more of the flood was read";

  // One second at 10 per second: ten more, then paused again.
  clock.Advance(absl::Seconds(1));
  EXPECT_EQ(relay.WaitForCounter("control_messages", 32), 32u);
  for (int i = 0; i < 10; ++i) {
    m = flood.ReadMessage();
    ASSERT_TRUE(m.ok()) << "reply " << 20 + i << ": " << m.status();
    EXPECT_EQ(m->request_nonce(), 21u + i);
  }
  EXPECT_EQ(relay.WaitForCounter("main_control_throttled", 2), 2u);
  EXPECT_EQ(relay.Counter("control_messages"), 32u);
  EXPECT_EQ(relay.Counter("main_protocol_errors"), 0u);
}

TEST(RelayServerTest, ManyConnectionsOfOneIpShareItsControlRateAndOtherIpsAreNotSlowed) {
  // --control_per_ip: opening more connections does not buy more control messages. Two
  // connections from 127.0.0.1 flood keepalives; together they get the IP's burst (20)
  // and then 10 per (fake) second, while a node from 127.0.0.2 is answered at once.
  FakeClock clock;
  std::unique_ptr<RelayFixture> fixture = ControlLimitedRelay(&clock, 0, 200, /*per_ip=*/10);
  RelayFixture& relay = *fixture;
  TestNode a, b;
  ASSERT_TRUE(a.Connect("127.0.0.1", relay.port()).ok());
  ASSERT_TRUE(b.Connect("127.0.0.1", relay.port()).ok());
  for (uint64_t i = 1; i <= 200; ++i) {
    ASSERT_TRUE(a.Send(kOpKeepalive, "", i).ok());
    ASSERT_TRUE(b.Send(kOpKeepalive, "", i).ok());
  }
  EXPECT_GE(relay.WaitForCounter("main_control_throttled", 2), 2u);
  EXPECT_EQ(relay.Counter("control_messages"), 20u);

  TestNode other;
  ASSERT_TRUE(other.ConnectFrom("127.0.0.2", "127.0.0.1", relay.port()).ok());
  absl::StatusOr<std::string> address = other.RequestProxy();
  ASSERT_TRUE(address.ok()) << address.status();
  ASSERT_TRUE(other.Send(kOpKeepalive, "", 9).ok());
  absl::StatusOr<wire::Message> m = other.ReadMessage();
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->request_nonce(), 9u);
  EXPECT_EQ(relay.Counter("control_messages"), 22u) << "no more of the flood was read";
  absl::StatusOr<net::UniqueFd> peer = ConnectTo(*address);  // and its frames flow
  ASSERT_TRUE(peer.ok()) << peer.status();
  ASSERT_TRUE(WriteAll(peer->get(), MakeFrame("innocent frame")));
  absl::StatusOr<Frame> f = other.ReadDataFrame();
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->payload, "innocent frame");

  clock.Advance(absl::Seconds(1));
  EXPECT_EQ(relay.WaitForCounter("control_messages", 32), 32u);
  EXPECT_EQ(relay.Counter("main_protocol_errors"), 0u);
}

TEST(RelayServerTest, MovingToAnotherReactorDoesNotRefillAConnectionsControlBucket) {
  // A ProxyRequest for a session homed on the other reactor moves the main connection
  // there (main_handed_off). Its --control_rate bucket goes along: a node that used up its
  // burst gets no new one by claiming an address homed elsewhere. The clock is fake, so
  // nothing refills until the test advances it. Which reactor a connection id is homed on
  // depends on the relay's random shard key: try ids until one moves (half of them do).
  FakeClock clock;
  RelayFixture relay(
      64,
      [](RelayConfig& c) {
        c.threads = 2;
        c.control_rate = 1;
        c.control_burst = 3;
        c.control_per_ip = 0;
      },
      &clock);
  for (int attempt = 0; attempt < 30; ++attempt) {
    const uint64_t moved = relay.Counter("main_handed_off");
    TestNode node;
    ASSERT_TRUE(node.Connect("127.0.0.1", relay.port()).ok());
    for (uint64_t i = 1; i <= 2; ++i) {
      ASSERT_TRUE(node.Send(kOpKeepalive, "", i).ok());
      ASSERT_TRUE(node.ReadMessage().ok()) << i;
    }
    absl::StatusOr<std::string> address = node.RequestProxy();  // the burst's last token
    ASSERT_TRUE(address.ok()) << address.status();
    if (relay.Counter("main_handed_off") == moved) {
      continue;  // homed on the reactor that accepted it
    }
    const uint64_t throttled = relay.Counter("main_control_throttled");
    ASSERT_TRUE(node.Send(kOpKeepalive, "", 9).ok());
    EXPECT_EQ(relay.WaitForCounter("main_control_throttled", throttled + 1), throttled + 1);
    EXPECT_FALSE(node.ReadMessage(absl::Milliseconds(200)).ok())
        << "the connection's bucket was refilled when it moved";
    clock.Advance(absl::Milliseconds(1100));  // one token at 1 per second (timers tick)
    absl::StatusOr<wire::Message> m = node.ReadMessage();
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ(m->request_nonce(), 9u);
    EXPECT_EQ(relay.Counter("main_protocol_errors"), 0u);
    return;
  }
  FAIL() << "no connection id of 30 was homed on the other reactor";
}

TEST(RelayServerTest, ThrottledConnectionsOfOneIpAreWokenOnceEachInTurn) {
  // --control_per_ip with many connections waiting: each queues for a token of its own,
  // so the relay wakes each once, in turn, and not every one of them at each refill (a
  // thousand connections of one IP would otherwise cost the reactor a thousand wake-ups
  // per token). 30 connections send one keepalive each against a burst of 20 and 10 per
  // (fake) second: 20 answered at once, 10 throttled once each, then one per 100 ms.
  FakeClock clock;
  std::unique_ptr<RelayFixture> fixture = ControlLimitedRelay(&clock, 0, 200, /*per_ip=*/10);
  RelayFixture& relay = *fixture;
  constexpr int kNodes = 30;
  std::vector<std::unique_ptr<TestNode>> nodes;
  for (int i = 0; i < kNodes; ++i) {
    nodes.push_back(std::make_unique<TestNode>());
    ASSERT_TRUE(nodes.back()->Connect("127.0.0.1", relay.port()).ok()) << i;
    ASSERT_TRUE(nodes.back()->Send(kOpKeepalive, "", 100 + i).ok()) << i;
  }
  EXPECT_EQ(relay.WaitForCounter("main_control_throttled", 10), 10u);
  EXPECT_EQ(relay.WaitForCounter("control_messages", 20), 20u);
  for (int step = 1; step <= 12; ++step) {
    clock.Advance(absl::Milliseconds(100));
    // By now the tokens of the first step - 1 in the queue are earned (timers fire on
    // 50 ms ticks); never more than one per 100 ms.
    const uint64_t answered = relay.WaitForCounter("control_messages", 20 + std::min(step - 1, 10));
    EXPECT_GE(answered, 20u + std::min(step - 1, 10)) << "step " << step;
    EXPECT_LE(answered, 20u + std::min(step, 10)) << "step " << step;
  }
  EXPECT_EQ(relay.WaitForCounter("control_messages", kNodes), static_cast<uint64_t>(kNodes));
  for (int i = 0; i < kNodes; ++i) {
    absl::StatusOr<wire::Message> m = nodes[i]->ReadMessage();
    ASSERT_TRUE(m.ok()) << "node " << i << ": " << m.status();
    EXPECT_EQ(m->request_nonce(), 100u + i);
  }
  EXPECT_EQ(relay.Counter("main_control_throttled"), 10u) << "a waiting connection was woken "
                                                             "for a token it did not get";
  EXPECT_EQ(relay.Counter("main_protocol_errors"), 0u);
}

TEST(RelayServerTest, AnswersKeepalivePingAndMetricWithCountingNonces) {
  RelayFixture relay;
  TestNode node;
  ASSERT_TRUE(node.Connect("127.0.0.1", relay.port()).ok());
  ASSERT_TRUE(node.Send(kOpKeepalive, "", 5).ok());
  absl::StatusOr<wire::Message> m = node.ReadMessage();
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->opcode(), kOpKeepaliveResponse);
  EXPECT_EQ(m->message_nonce(), 1u);

  ASSERT_TRUE(node.Send(kOpPing).ok());
  m = node.ReadMessage();
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->opcode(), kOpPong);
  EXPECT_EQ(m->message_nonce(), 2u);

  wire::MetricRequest metric;
  metric.set_send_timestamp(1700000000123);
  metric.set_raw_data(std::string("\x00\x01\x02", 3));
  ASSERT_TRUE(node.Send(kOpMetricRequest, metric.SerializeAsString(), 77).ok());
  m = node.ReadMessage();
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->opcode(), kOpMetricResponse);
  EXPECT_EQ(m->request_nonce(), 77u);
  EXPECT_TRUE(m->reply_flag());
  EXPECT_EQ(m->message_nonce(), 3u);
  wire::MetricResponse echo;
  ASSERT_TRUE(echo.ParseFromString(m->message()));
  EXPECT_EQ(echo.send_timestamp(), 1700000000123);
  EXPECT_EQ(echo.raw_data(), std::string("\x00\x01\x02", 3));
}

TEST(RelayServerTest, TwoNodesExchangeFramesBothWaysThroughTheirProxyAddresses) {
  RelayFixture relay;
  std::string address1, address2;
  auto node1 = relay.NodeWithAddress(&address1);
  auto node2 = relay.NodeWithAddress(&address2);
  ASSERT_NE(address1, address2);

  // Node1 -> Node2: connection-3 to Proxy-Server-2, out of Main-Connection-2.
  absl::StatusOr<net::UniqueFd> conn3 = ConnectTo(address2);
  ASSERT_TRUE(conn3.ok());
  const std::string hello = MakeFrame("hello from node1");
  ASSERT_TRUE(WriteAll(conn3->get(), hello));
  absl::StatusOr<Frame> got = node2->ReadDataFrame();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->payload, "hello from node1");
  EXPECT_EQ(got->header.network_id, kDefaultNetworkId);

  // Node2 -> Node1: connection-4 to Proxy-Server-1, out of Main-Connection-1.
  absl::StatusOr<net::UniqueFd> conn4 = ConnectTo(address1);
  ASSERT_TRUE(conn4.ok());
  // Forwarded byte for byte, header included, compress_info untouched.
  const std::string answer = MakeFrame("answer from node2", kDefaultNetworkId, (1 << 8) | 2);
  ASSERT_TRUE(WriteAll(conn4->get(), answer));
  absl::StatusOr<std::string> raw =
      net::ReadExactly(node1->fd(), answer.size(), absl::Now() + absl::Seconds(10));
  ASSERT_TRUE(raw.ok()) << raw.status();
  EXPECT_EQ(*raw, answer);
}

TEST(RelayServerTest, UnknownOpcodesAreIgnoredAndCounted) {
  RelayFixture relay;
  TestNode node;
  ASSERT_TRUE(node.Connect("127.0.0.1", relay.port()).ok());
  ASSERT_TRUE(node.Send(4242, "whatever").ok());
  ASSERT_TRUE(node.Send(kOpPing).ok());
  absl::StatusOr<wire::Message> m = node.ReadMessage();
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->opcode(), kOpPong);  // still served
  EXPECT_EQ(relay.Counter("unknown_opcodes"), 1u);
}

TEST(RelayServerTest, DisconnectEndsTheSessionAndAReconnectGetsTheSameAddress) {
  RelayFixture relay;
  std::string address;
  auto node = relay.NodeWithAddress(&address);
  ASSERT_TRUE(node->Send(kOpDisconnect).ok());
  EXPECT_TRUE(WaitForClose(node->fd(), absl::Seconds(10)));
  EXPECT_EQ(relay.WaitForCounter("sessions_ended", 1), 1u);
  // The proxy listener is closed with the session.
  EXPECT_FALSE(ConnectTo(address).ok());

  std::string again;
  auto back = relay.NodeWithAddress(&again, node->connection_id());
  EXPECT_EQ(again, address);
  EXPECT_EQ(relay.Counter("leases_reused"), 1u);
}

TEST(RelayServerTest, ANewerMainConnectionTakesTheSessionOver) {
  RelayFixture relay;
  std::string address;
  auto old_main = relay.NodeWithAddress(&address);
  absl::StatusOr<net::UniqueFd> peer = ConnectTo(address);
  ASSERT_TRUE(peer.ok());
  ASSERT_TRUE(WriteAll(peer->get(), MakeFrame("before")));
  absl::StatusOr<Frame> f = old_main->ReadDataFrame();
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->payload, "before");

  std::string again;
  auto new_main = relay.NodeWithAddress(&again, old_main->connection_id());
  EXPECT_EQ(again, address);
  EXPECT_TRUE(WaitForClose(old_main->fd(), absl::Seconds(10)));
  EXPECT_EQ(relay.Counter("main_taken_over"), 1u);

  // The peer's connection survived the takeover; its frames now reach the new main.
  ASSERT_TRUE(WriteAll(peer->get(), MakeFrame("after")));
  f = new_main->ReadDataFrame();
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->payload, "after");
}

}  // namespace
}  // namespace relay::testing
