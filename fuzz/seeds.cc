#include "fuzz/seeds.h"

#include "core/control_codec.h"
#include "core/frame_header.h"
#include "core/identity.h"
#include "core/signing.h"
#include "proto/relay.pb.h"

namespace relay::fuzz {
namespace {

std::string Frame(const std::string& payload, uint16_t compress_info = 0) {
  std::string f(kFrameHeaderSize, '\0');
  EncodeFrameHeader(
      FrameHeader{kDefaultNetworkId, compress_info, static_cast<uint32_t>(payload.size())},
      reinterpret_cast<uint8_t*>(f.data()));
  return f + payload;
}

// A node's control message payload, signed as relay-node signs it.
std::string NodeMessage(uint32_t opcode, const std::string& inner, bool sign = true) {
  static const Identity key = *Identity::FromSeed(std::string(32, 'n'));
  wire::Message m;
  m.set_message(inner);
  *m.mutable_sender() = key.Sender("tcp://0.0.0.0:0");
  m.set_opcode(opcode);
  m.set_netid(kDefaultNetworkId);
  m.set_message_nonce(1);
  m.set_request_nonce(opcode == kOpMetricRequest ? 9 : 0);
  if (sign) {
    SignMessage(key.secret_key(), &m).IgnoreError();
  }
  return m.SerializeAsString();
}

std::vector<std::string> ControlPayloads() {
  wire::ProxyRequest fresh;
  fresh.set_claim_relay("tcp://127.0.0.1:6008");
  fresh.set_claim_time_ms(1'800'000'000'000);
  wire::MetricRequest metric;
  metric.set_send_timestamp(123456789);
  metric.set_raw_data("metric payload");
  wire::Bytes bytes;
  bytes.set_data("hello through the relay");
  return {
      NodeMessage(kOpProxyRequest, ""),
      NodeMessage(kOpProxyRequest, "", /*sign=*/false),
      NodeMessage(kOpProxyRequest, fresh.SerializeAsString()),
      NodeMessage(kOpKeepalive, ""),
      NodeMessage(kOpPing, ""),
      NodeMessage(kOpMetricRequest, metric.SerializeAsString()),
      NodeMessage(kOpDisconnect, ""),
      NodeMessage(kOpBytes, bytes.SerializeAsString()),
  };
}

std::vector<std::string> DataFrames() {
  return {Frame(std::string(1, 'a')), Frame(std::string(100, 'b')), Frame(std::string(1500, 'c')),
          Frame(std::string(17000, 'd')), Frame(std::string(64, 'e'), 0x0103)};
}

}  // namespace

const std::vector<std::string>& TargetNames() {
  static const std::vector<std::string> names = {"frame_header", "control_message", "main_stream",
                                                 "proxy_stream"};
  return names;
}

std::vector<std::string> SeedsFor(absl::string_view target) {
  std::vector<std::string> seeds;
  if (target == "control_message") {
    return ControlPayloads();
  }
  std::vector<std::string> control;
  for (const std::string& p : ControlPayloads()) {
    control.push_back(Frame(p));
  }
  if (target == "frame_header") {
    for (const std::string& f : control) {
      seeds.push_back(f);
      seeds.push_back(f.substr(0, kFrameHeaderSize));
    }
    for (const std::string& f : DataFrames()) {
      seeds.push_back(f.substr(0, kFrameHeaderSize));
    }
  } else if (target == "main_stream") {
    std::string all;
    for (const std::string& f : control) {
      seeds.push_back(f);
      all += f;
    }
    seeds.push_back(all);
    seeds.push_back(all + control[0].substr(0, 7));  // ends inside a header
  } else if (target == "proxy_stream") {
    std::string all;
    for (const std::string& f : DataFrames()) {
      seeds.push_back(f);
      all += f;
    }
    seeds.push_back(all);
    std::string many;
    for (int i = 0; i < 200; ++i) {
      many += DataFrames()[i % 3];
    }
    seeds.push_back(many);
  }
  return seeds;
}

}  // namespace relay::fuzz
