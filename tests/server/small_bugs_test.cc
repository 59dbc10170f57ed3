// The smaller bugs of issue 7, each pinned by a test: a main connection handed to its
// home reactor keeps the replies queued before the hand-off; MetricRequests echo up to
// --max_control_bytes and get a clear Disconnect beyond. (SIGPIPE on the loop threads:
// tests/net/reactor_test.cc.)
#include "core/control_codec.h"
#include "gtest/gtest.h"
#include "tests/testing/relay_fixture.h"

namespace relay::testing {
namespace {

TEST(SmallBugsTest, AHandedOffConnectionKeepsTheRepliesQueuedBeforeTheHandOff) {
  RelayFixture relay(64, [](RelayConfig& c) { c.threads = 2; });
  for (int i = 0; i < 24; ++i) {
    TestNode node;
    ASSERT_TRUE(node.Connect("127.0.0.1", relay.port()).ok());
    // A Keepalive and a ProxyRequest in one write: the Keepalive is answered on the
    // accepting reactor, the ProxyRequest (often) on another.
    wire::ProxyRequest request;
    const std::string bytes =
        MakeControlFrame(kOpKeepalive, "", node.id(), 7) +
        MakeControlFrame(kOpProxyRequest, request.SerializeAsString(), node.id(), 8);
    ASSERT_TRUE(WriteAll(node.fd(), bytes));
    absl::StatusOr<wire::Message> first = node.ReadMessage(absl::Seconds(5));
    ASSERT_TRUE(first.ok()) << "node " << i << ": " << first.status();
    EXPECT_EQ(first->opcode(), kOpKeepaliveResponse) << "node " << i;
    EXPECT_EQ(first->request_nonce(), 7u);
    absl::StatusOr<wire::Message> second = node.ReadMessage(absl::Seconds(5));
    ASSERT_TRUE(second.ok()) << "node " << i << ": " << second.status();
    EXPECT_EQ(second->opcode(), kOpProxyResponse);
    EXPECT_EQ(second->request_nonce(), 8u);
    EXPECT_GT(second->message_nonce(), first->message_nonce()) << "nonces keep counting";
  }
  EXPECT_GT(relay.Counter("main_handed_off"), 0u) << "no connection was handed off";
}

TEST(SmallBugsTest, MetricRequestsEchoUpToTheControlCapAndGetADisconnectBeyond) {
  RelayFixture relay;
  std::string address;
  auto node = relay.NodeWithAddress(&address);
  wire::MetricRequest metric;
  metric.set_send_timestamp(12345);
  metric.set_raw_data(std::string(60 * 1024, 'm'));
  ASSERT_TRUE(node->Send(kOpMetricRequest, metric.SerializeAsString(), 9).ok());
  absl::StatusOr<wire::Message> reply = node->ReadMessage();
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->opcode(), kOpMetricResponse);
  wire::MetricResponse echoed;
  ASSERT_TRUE(echoed.ParseFromString(reply->message()));
  EXPECT_EQ(echoed.raw_data(), metric.raw_data());
  EXPECT_EQ(echoed.send_timestamp(), 12345);

  metric.set_raw_data(std::string(70 * 1024, 'm'));  // over --max_control_bytes (64 KiB)
  ASSERT_TRUE(node->Send(kOpMetricRequest, metric.SerializeAsString(), 10).ok());
  reply = node->ReadMessage();
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->opcode(), kOpDisconnect);
  EXPECT_TRUE(WaitForClose(node->fd(), absl::Seconds(5)));
  EXPECT_EQ(relay.Counter("main_control_too_large"), 1u);
}

}  // namespace
}  // namespace relay::testing
