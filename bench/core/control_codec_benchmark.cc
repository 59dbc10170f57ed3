#include "benchmark/benchmark.h"
#include "core/control_codec.h"
#include "core/frame_header.h"
#include "core/fresh_claim.h"
#include "core/identity.h"
#include "core/signing.h"

namespace relay {
namespace {

std::string KeepalivePayload() {
  wire::Message m;
  m.set_opcode(kOpKeepalive);
  m.set_netid(kDefaultNetworkId);
  m.mutable_sender()->set_net_key(std::string(32, 'k'));
  m.mutable_sender()->set_address("tcp://10.0.0.5:30001");
  m.mutable_sender()->set_id(std::string(32, 'i'));
  m.mutable_sender()->set_connection_id(std::string(32, 'c'));
  m.set_signature(std::string(64, 's'));
  return m.SerializeAsString();
}

void BM_ParseKeepalive(benchmark::State& state) {
  ControlCodec codec(kDefaultNetworkId, Identity::Generate(), "tcp://1.2.3.4:6008");
  const std::string payload = KeepalivePayload();
  for (auto _ : state) {
    benchmark::DoNotOptimize(codec.Parse(payload));
  }
}
BENCHMARK(BM_ParseKeepalive);

void BM_ParseAndAnswerKeepalive(benchmark::State& state) {
  ControlCodec codec(kDefaultNetworkId, Identity::Generate(), "tcp://1.2.3.4:6008");
  const std::string payload = KeepalivePayload();
  std::string out;
  uint64_t nonce = 1;
  for (auto _ : state) {
    out.clear();
    absl::StatusOr<wire::Message> m = codec.Parse(payload);
    codec.AppendStatelessReply(*m, nonce++, &out);
    benchmark::DoNotOptimize(out);
  }
}
BENCHMARK(BM_ParseAndAnswerKeepalive);

void BM_BuildProxyResponse(benchmark::State& state) {
  ControlCodec codec(kDefaultNetworkId, Identity::Generate(), "tcp://1.2.3.4:6008");
  std::string out;
  wire::ProxyResponse response;
  response.set_origin_address("tcp://10.0.0.5:30001");
  response.set_proxy_address("1.2.3.4:55535");
  for (auto _ : state) {
    out.clear();
    codec.AppendMessage(kOpProxyResponse, response, 7, 7, true, &out);
    benchmark::DoNotOptimize(out);
  }
}
BENCHMARK(BM_BuildProxyResponse);  // signed: one Ed25519 signature per answer

// What the relay does per signed claim (ownership checks; never per data frame): verify
// the node's signature and ids, then check the fresh-claim fields.
void BM_VerifyFreshClaim(benchmark::State& state) {
  const Identity node = Identity::Generate();
  wire::ProxyRequest claim;
  claim.set_claim_relay("tcp://1.2.3.4:6008");
  claim.set_claim_time_ms(static_cast<uint64_t>(absl::ToUnixMillis(absl::Now())));
  wire::Message m;
  m.set_message(claim.SerializeAsString());
  *m.mutable_sender() = node.Sender("tcp://0.0.0.0:0");
  m.set_opcode(kOpProxyRequest);
  m.set_netid(kDefaultNetworkId);
  SignMessage(node.secret_key(), &m).IgnoreError();
  const std::vector<std::string> names = {"tcp://1.2.3.4:6008"};
  for (auto _ : state) {
    benchmark::DoNotOptimize(VerifyMessage(m));
    benchmark::DoNotOptimize(CheckFreshClaim(m.message(), names, absl::Now(), absl::Seconds(60)));
  }
}
BENCHMARK(BM_VerifyFreshClaim);

}  // namespace
}  // namespace relay

BENCHMARK_MAIN();
