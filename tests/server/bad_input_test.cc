// Bad input closes only the offending connection, is counted, and loses nothing else.
#include "absl/strings/str_cat.h"
#include "core/control_codec.h"
#include "gtest/gtest.h"
#include "tests/testing/relay_fixture.h"

namespace relay::testing {
namespace {

std::string Header(uint32_t network_id, uint32_t length) {
  std::string h(kFrameHeaderSize, '\0');
  EncodeFrameHeader(FrameHeader{network_id, 0, length}, reinterpret_cast<uint8_t*>(h.data()));
  return h;
}

struct BadFrame {
  std::string name;
  std::string bytes;
  std::string counter;
};

std::vector<BadFrame> BadProxyFrames(uint32_t max_frame) {
  return {
      {"bad network id", MakeFrame("x", kDefaultNetworkId + 1), "proxy_bad_network_id"},
      {"zero length", Header(kDefaultNetworkId, 0), "proxy_zero_length"},
      {"oversized length", Header(kDefaultNetworkId, max_frame + 1), "proxy_too_long"},
  };
}

TEST(BadInputTest, BadFramesOnAProxyConnectionCloseOnlyThatConnection) {
  RelayFixture relay(8, [](RelayConfig& c) { c.max_frame_bytes = 100000; });
  std::string address;
  auto node = relay.NodeWithAddress(&address);
  absl::StatusOr<net::UniqueFd> good = ConnectTo(address);
  ASSERT_TRUE(good.ok());
  uint64_t errors = 0;
  for (const BadFrame& bad : BadProxyFrames(100000)) {
    SCOPED_TRACE(bad.name);
    absl::StatusOr<net::UniqueFd> offender = ConnectTo(address);
    ASSERT_TRUE(offender.ok());
    // A whole frame first: it is delivered; then the bad header closes the connection.
    ASSERT_TRUE(WriteAll(offender->get(), MakeFrame("good frame first") + bad.bytes));
    absl::StatusOr<Frame> f = node->ReadDataFrame();
    ASSERT_TRUE(f.ok()) << f.status();
    EXPECT_EQ(f->payload, "good frame first");
    EXPECT_TRUE(WaitForClose(offender->get(), absl::Seconds(10)));
    EXPECT_EQ(relay.WaitForCounter(bad.counter, 1), 1u);
    EXPECT_EQ(relay.Counter("proxy_protocol_errors"), ++errors);

    // Everything else goes on: the other sender, the node's main connection.
    ASSERT_TRUE(WriteAll(good->get(), MakeFrame(absl::StrCat("after ", bad.name))));
    f = node->ReadDataFrame();
    ASSERT_TRUE(f.ok()) << f.status();
    EXPECT_EQ(f->payload, absl::StrCat("after ", bad.name));
  }
  ASSERT_TRUE(node->Send(kOpPing).ok());
  absl::StatusOr<wire::Message> m = node->ReadMessage();
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->opcode(), kOpPong);
}

TEST(BadInputTest, BadFramesOnAMainConnectionCloseOnlyThatConnection) {
  RelayFixture relay(8, [](RelayConfig& c) { c.max_frame_bytes = 100000; });
  std::string address;
  auto bystander = relay.NodeWithAddress(&address);

  wire::ID sender;
  sender.set_net_key("k");
  sender.set_address("tcp://127.0.0.1:1");
  wire::ID no_key = sender;
  no_key.clear_net_key();
  wire::ID bad_utf8 = sender;
  bad_utf8.set_address("tcp://\xff\xfe:1");
  const std::vector<std::pair<std::string, std::string>> bad_inputs = {
      {"bad network id", MakeControlFrame(kOpPing, "", sender, 0, kDefaultNetworkId + 1)},
      {"zero length", Header(kDefaultNetworkId, 0)},
      {"not a protobuf", MakeFrame("\xff\xff\xff\xff")},
      {"sender without net_key", MakeControlFrame(kOpPing, "", no_key)},
      {"ProxyRequest without connection_id", MakeControlFrame(kOpProxyRequest, "", sender)},
      {"address not UTF-8", MakeControlFrame(kOpPing, "", bad_utf8)},
      // Over --max_control_bytes (64 KiB): a Disconnect first, counted on its own.
      {"oversized length", Header(kDefaultNetworkId, 100001)},
  };
  uint64_t errors = 0;
  for (const auto& [name, bytes] : bad_inputs) {
    SCOPED_TRACE(name);
    TestNode offender;
    ASSERT_TRUE(offender.Connect("127.0.0.1", relay.port()).ok());
    ASSERT_TRUE(WriteAll(offender.fd(), bytes));
    if (name == "oversized length") {
      absl::StatusOr<wire::Message> bye = offender.ReadMessage();
      ASSERT_TRUE(bye.ok()) << bye.status();
      EXPECT_EQ(bye->opcode(), kOpDisconnect);
      EXPECT_TRUE(WaitForClose(offender.fd(), absl::Seconds(10)));
      EXPECT_EQ(relay.WaitForCounter("main_control_too_large", 1), 1u);
    } else {
      EXPECT_TRUE(WaitForClose(offender.fd(), absl::Seconds(10)));
      ++errors;
      EXPECT_EQ(relay.WaitForCounter("main_protocol_errors", errors), errors);
    }

    // The bystander node is untouched: control and data both still work.
    ASSERT_TRUE(bystander->Send(kOpPing).ok());
    absl::StatusOr<wire::Message> m = bystander->ReadMessage();
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ(m->opcode(), kOpPong);
    absl::StatusOr<net::UniqueFd> peer = ConnectTo(address);
    ASSERT_TRUE(peer.ok());
    ASSERT_TRUE(WriteAll(peer->get(), MakeFrame(name)));
    absl::StatusOr<Frame> f = bystander->ReadDataFrame();
    ASSERT_TRUE(f.ok()) << f.status();
    EXPECT_EQ(f->payload, name);
  }
}

TEST(BadInputTest, ANodeWithABadMainFrameLosesItsSessionButKeepsItsLease) {
  RelayFixture relay(8);
  std::string address;
  auto node = relay.NodeWithAddress(&address);
  ASSERT_TRUE(WriteAll(node->fd(), Header(kDefaultNetworkId, 0)));
  EXPECT_TRUE(WaitForClose(node->fd(), absl::Seconds(10)));
  std::string again;
  auto back = relay.NodeWithAddress(&again, node->connection_id());
  EXPECT_EQ(again, address);
}

}  // namespace
}  // namespace relay::testing
