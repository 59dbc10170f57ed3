#include "core/control_codec.h"

#include "core/frame_header.h"
#include "core/signing.h"
#include "gtest/gtest.h"

namespace relay {
namespace {

constexpr uint32_t kNet = 77;

wire::Message ValidMessage(uint32_t opcode) {
  wire::Message m;
  m.set_opcode(opcode);
  m.set_netid(kNet);
  m.mutable_sender()->set_net_key("key");
  m.mutable_sender()->set_address("tcp://10.0.0.5:30001");
  m.mutable_sender()->set_connection_id(std::string(32, 'c'));
  return m;
}

class ControlCodecTest : public ::testing::Test {
 protected:
  ControlCodec codec_{kNet, Identity::Generate(), "tcp://1.2.3.4:6008"};
};

TEST_F(ControlCodecTest, ParsesAValidMessage) {
  absl::StatusOr<wire::Message> m = codec_.Parse(ValidMessage(kOpKeepalive).SerializeAsString());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->opcode(), kOpKeepalive);
}

TEST_F(ControlCodecTest, RefusesEachBrokenRule) {
  auto parse = [&](const wire::Message& m) { return codec_.Parse(m.SerializeAsString()); };
  wire::Message m = ValidMessage(kOpKeepalive);
  m.set_opcode(0);
  EXPECT_FALSE(parse(m).ok());
  m = ValidMessage(kOpKeepalive);
  m.clear_sender();
  EXPECT_FALSE(parse(m).ok());
  m = ValidMessage(kOpKeepalive);
  m.mutable_sender()->clear_net_key();
  EXPECT_FALSE(parse(m).ok());
  m = ValidMessage(kOpKeepalive);
  m.mutable_sender()->clear_address();
  EXPECT_FALSE(parse(m).ok());
  m = ValidMessage(kOpKeepalive);
  m.set_netid(kNet + 1);
  EXPECT_FALSE(parse(m).ok());
  m = ValidMessage(kOpProxyRequest);
  m.mutable_sender()->clear_connection_id();
  EXPECT_FALSE(parse(m).ok());
  m = ValidMessage(kOpProxyRequest);
  m.mutable_sender()->set_connection_id(std::string(kMaxConnectionIdBytes + 1, 'x'));
  EXPECT_FALSE(parse(m).ok());
  EXPECT_FALSE(codec_.Parse("\xff\xff\xff garbage").ok());
}

TEST_F(ControlCodecTest, AppendMessageBuildsAFramedMessageFromTheRelay) {
  std::string out = "prefix";
  wire::ProxyResponse response;
  response.set_proxy_address("1.2.3.4:55555");
  codec_.AppendMessage(kOpProxyResponse, response, 5, 42, true, &out);
  ASSERT_GT(out.size(), 6 + kFrameHeaderSize);
  const FrameHeader h = DecodeFrameHeader(reinterpret_cast<const uint8_t*>(out.data() + 6));
  EXPECT_EQ(h.network_id, kNet);
  EXPECT_EQ(h.compress_info, 0);
  ASSERT_EQ(h.length, out.size() - 6 - kFrameHeaderSize);
  wire::Message m;
  ASSERT_TRUE(m.ParseFromString(out.substr(6 + kFrameHeaderSize)));
  EXPECT_EQ(m.opcode(), kOpProxyResponse);
  EXPECT_EQ(m.netid(), kNet);
  EXPECT_EQ(m.message_nonce(), 5u);
  EXPECT_EQ(m.request_nonce(), 42u);
  EXPECT_TRUE(m.reply_flag());
  EXPECT_EQ(m.sender().net_key(), codec_.relay().public_key());
  EXPECT_TRUE(VerifyMessage(m).ok()) << "the relay signs its messages";
  EXPECT_EQ(m.sender().address(), "tcp://1.2.3.4:6008");
  wire::ProxyResponse back;
  ASSERT_TRUE(back.ParseFromString(m.message()));
  EXPECT_EQ(back.proxy_address(), "1.2.3.4:55555");
}

wire::Message ReplyIn(const std::string& out) {
  wire::Message m;
  EXPECT_TRUE(m.ParseFromString(out.substr(kFrameHeaderSize)));
  return m;
}

TEST_F(ControlCodecTest, AnswersStatelessRequests) {
  std::string out;
  wire::Message req = ValidMessage(kOpKeepalive);
  req.set_request_nonce(9);
  ASSERT_TRUE(codec_.AppendStatelessReply(req, 1, &out));
  EXPECT_EQ(ReplyIn(out).opcode(), kOpKeepaliveResponse);
  EXPECT_EQ(ReplyIn(out).request_nonce(), 9u);

  out.clear();
  ASSERT_TRUE(codec_.AppendStatelessReply(ValidMessage(kOpPing), 2, &out));
  EXPECT_EQ(ReplyIn(out).opcode(), kOpPong);

  out.clear();
  wire::MetricRequest metric;
  metric.set_send_timestamp(123456789);
  metric.set_raw_data("raw\0data", 8);
  req = ValidMessage(kOpMetricRequest);
  req.set_message(metric.SerializeAsString());
  req.set_request_nonce(11);
  ASSERT_TRUE(codec_.AppendStatelessReply(req, 3, &out));
  const wire::Message reply = ReplyIn(out);
  EXPECT_EQ(reply.opcode(), kOpMetricResponse);
  EXPECT_TRUE(reply.reply_flag());
  EXPECT_EQ(reply.request_nonce(), 11u);
  wire::MetricResponse response;
  ASSERT_TRUE(response.ParseFromString(reply.message()));
  EXPECT_EQ(response.send_timestamp(), 123456789);
  EXPECT_EQ(response.raw_data(), std::string("raw\0data", 8));

  out.clear();
  EXPECT_FALSE(codec_.AppendStatelessReply(ValidMessage(kOpProxyRequest), 4, &out));
  EXPECT_FALSE(codec_.AppendStatelessReply(ValidMessage(1234), 4, &out));
  EXPECT_TRUE(out.empty());
}

}  // namespace
}  // namespace relay
