#include "core/control_codec.h"

#include <utility>

#include "absl/status/status.h"
#include "base/log.h"
#include "core/frame_header.h"
#include "core/signing.h"

namespace relay {

ControlCodec::ControlCodec(uint32_t network_id, Identity relay, std::string relay_address)
    : network_id_(network_id),
      relay_(std::move(relay)),
      relay_address_(std::move(relay_address)),
      relay_connection_id_(relay_.ConnectionId(relay_address_)) {
  wire::Message empty;
  empty.mutable_sender()->set_address(relay_address_);
  empty.mutable_sender()->set_id(relay_.id());
  RELAY_CHECK(SignMessage(relay_.secret_key(), &empty).ok());
  empty_signature_ = empty.signature();
}

absl::StatusOr<wire::Message> ControlCodec::Parse(absl::string_view payload) const {
  wire::Message msg;
  if (!msg.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return absl::InvalidArgumentError("payload is not a protobuf Message");
  }
  if (msg.opcode() == 0) {
    return absl::InvalidArgumentError("opcode is 0");
  }
  if (!msg.has_sender()) {
    return absl::InvalidArgumentError("sender is missing");
  }
  if (msg.sender().net_key().empty()) {
    return absl::InvalidArgumentError("sender.net_key is empty");
  }
  if (msg.sender().address().empty()) {
    return absl::InvalidArgumentError("sender.address is empty");
  }
  if (msg.netid() != network_id_) {
    return absl::InvalidArgumentError("netID differs from the relay's network id");
  }
  if (msg.opcode() == kOpProxyRequest) {
    const size_t n = msg.sender().connection_id().size();
    if (n == 0 || n > kMaxConnectionIdBytes) {
      return absl::InvalidArgumentError("ProxyRequest without a valid sender.connection_id");
    }
  }
  return msg;
}

void ControlCodec::AppendMessage(uint32_t opcode, const google::protobuf::MessageLite& inner,
                                 uint64_t message_nonce, uint64_t request_nonce, bool reply_flag,
                                 std::string* out) const {
  wire::Message msg;
  inner.SerializeToString(msg.mutable_message());
  wire::ID* sender = msg.mutable_sender();
  sender->set_net_key(relay_.public_key());
  sender->set_address(relay_address_);
  sender->set_id(relay_.id());
  sender->set_connection_id(relay_connection_id_);
  msg.set_request_nonce(request_nonce);
  msg.set_message_nonce(message_nonce);
  msg.set_reply_flag(reply_flag);
  msg.set_opcode(opcode);
  msg.set_netid(network_id_);
  if (msg.message().empty()) {
    msg.set_signature(empty_signature_);
  } else if (opcode != kOpMetricResponse) {
    RELAY_CHECK(SignMessage(relay_.secret_key(), &msg).ok());
  }

  const size_t body = msg.ByteSizeLong();
  const size_t start = out->size();
  out->resize(start + kFrameHeaderSize + body);
  uint8_t* p = reinterpret_cast<uint8_t*>(out->data() + start);
  FrameHeader h;
  h.network_id = network_id_;
  h.compress_info = 0;
  h.length = static_cast<uint32_t>(body);
  EncodeFrameHeader(h, p);
  msg.SerializeWithCachedSizesToArray(p + kFrameHeaderSize);
}

bool ControlCodec::AppendStatelessReply(const wire::Message& request, uint64_t message_nonce,
                                        std::string* out) const {
  switch (request.opcode()) {
    case kOpKeepalive:
      AppendMessage(kOpKeepaliveResponse, wire::KeepaliveResponse(), message_nonce,
                    request.request_nonce(), true, out);
      return true;
    case kOpPing:
      AppendMessage(kOpPong, wire::Pong(), message_nonce, request.request_nonce(), true, out);
      return true;
    case kOpMetricRequest: {
      wire::MetricRequest metric;
      metric.ParseFromString(request.message());
      wire::MetricResponse response;
      response.set_send_timestamp(metric.send_timestamp());
      response.set_raw_data(metric.raw_data());
      AppendMessage(kOpMetricResponse, response, message_nonce, request.request_nonce(), true, out);
      return true;
    }
    default:
      return false;
  }
}

}  // namespace relay
