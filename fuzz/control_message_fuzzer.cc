// Fuzz target: a control message's payload as the relay handles it: parse and validate
// (ControlCodec::Parse), the signature check (VerifyMessage), the fresh-claim check
// (CheckFreshClaim) and the stateless replies (AppendStatelessReply).
// Properties: nothing crashes or reads out of bounds; every reply the relay builds is one
// whole valid frame that the relay's own parser accepts, signed where the relay signs.
#include <string>
#include <vector>

#include "core/control_codec.h"
#include "core/frame_scan.h"
#include "core/fresh_claim.h"
#include "core/identity.h"
#include "base/log.h"
#include "core/signing.h"
#include "fuzz/fuzz_input.h"

namespace {

const relay::ControlCodec& Codec() {
  static const bool quiet = [] {
    relay::RouteProtobufLogs();  // protobuf's complaints (invalid UTF-8) rate-limited
    return true;
  }();
  (void)quiet;
  static const relay::ControlCodec* codec = new relay::ControlCodec(
      relay::kDefaultNetworkId, *relay::Identity::FromSeed(std::string(32, 's')),
      "tcp://127.0.0.1:6008");
  return *codec;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace relay;
  const absl::string_view payload(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<wire::Message> msg = Codec().Parse(payload);
  if (!msg.ok()) {
    FUZZ_CHECK(!msg.status().message().empty());
    return 0;
  }
  FUZZ_CHECK(msg->opcode() != 0 && !msg->sender().net_key().empty() &&
             !msg->sender().address().empty() && msg->netid() == kDefaultNetworkId);
  if (!msg->signature().empty()) {
    (void)VerifyMessage(*msg);  // any outcome; must not crash
  }
  if (msg->opcode() == kOpProxyRequest) {
    FUZZ_CHECK(!msg->sender().connection_id().empty() &&
               msg->sender().connection_id().size() <= kMaxConnectionIdBytes);
    static const std::vector<std::string> names = {"tcp://127.0.0.1:6008"};
    const FreshClaimCheck fresh = CheckFreshClaim(
        msg->message(), names, absl::FromUnixMillis(1'800'000'000'000), absl::Seconds(60));
    FUZZ_CHECK(!FreshClaimStatusName(fresh.status).empty());
    if (fresh.status == FreshClaimStatus::kFresh) {
      FUZZ_CHECK(fresh.skew_ms >= -60'000 && fresh.skew_ms <= 60'000);
    }
  }
  std::string out;
  if (!Codec().AppendStatelessReply(*msg, 1, &out)) {
    FUZZ_CHECK(out.empty());
    return 0;
  }
  const ControlFrameScan scan = ScanControlFrame(out, kDefaultNetworkId, 1u << 30);
  FUZZ_CHECK(scan.kind == ControlFrameScan::Kind::kFrame && scan.consumed == out.size());
  absl::StatusOr<wire::Message> reply = Codec().Parse(scan.payload);
  FUZZ_CHECK(reply.ok());
  FUZZ_CHECK(reply->reply_flag() && reply->request_nonce() == msg->request_nonce());
  if (reply->opcode() == kOpMetricResponse && !reply->message().empty()) {
    FUZZ_CHECK(reply->signature().empty());  // bytes the requester chose: never signed
  } else {
    FUZZ_CHECK(VerifyMessage(*reply).ok());  // KeepaliveResponse, Pong, empty echoes: signed
  }
  return 0;
}
