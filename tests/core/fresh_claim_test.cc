// Fresh claims: the relay's name and a time inside the window, checked without a clock of
// its own (the caller passes the relay's wall clock).
#include "core/fresh_claim.h"

#include "gtest/gtest.h"
#include "proto/relay.pb.h"

namespace relay {
namespace {

const std::vector<std::string> kNames = {"tcp://1.2.3.4:6008", "tcp://relay.example.net:6008"};
const absl::Time kNow = absl::FromUnixMillis(1'800'000'000'000);

std::string Claim(const std::string& relay, uint64_t time_ms) {
  wire::ProxyRequest r;
  r.set_claim_relay(relay);
  r.set_claim_time_ms(time_ms);
  return r.SerializeAsString();
}

FreshClaimStatus Check(const std::string& inner) {
  return CheckFreshClaim(inner, kNames, kNow, absl::Seconds(60)).status;
}

TEST(FreshClaimTest, APlainProxyRequestHasNoClaim) {
  EXPECT_EQ(Check(""), FreshClaimStatus::kAbsent);
  wire::ProxyRequest r;
  r.set_origin_address("tcp://10.0.0.1:1");
  EXPECT_EQ(Check(r.SerializeAsString()), FreshClaimStatus::kAbsent);
  EXPECT_EQ(Check("\xff\xff\xff"), FreshClaimStatus::kMalformed);
}

TEST(FreshClaimTest, NameAndWindow) {
  const uint64_t now = 1'800'000'000'000;
  EXPECT_EQ(Check(Claim("tcp://1.2.3.4:6008", now)), FreshClaimStatus::kFresh);
  EXPECT_EQ(Check(Claim("tcp://relay.example.net:6008", now - 60'000)), FreshClaimStatus::kFresh);
  EXPECT_EQ(Check(Claim("tcp://1.2.3.4:6008", now + 60'000)), FreshClaimStatus::kFresh);
  EXPECT_EQ(Check(Claim("tcp://1.2.3.4:6008", now - 60'001)), FreshClaimStatus::kStale);
  EXPECT_EQ(Check(Claim("tcp://1.2.3.4:6008", now + 60'001)), FreshClaimStatus::kStale);
  EXPECT_EQ(Check(Claim("tcp://1.2.3.4:6008", 0)), FreshClaimStatus::kStale);
  EXPECT_EQ(Check(Claim("tcp://1.2.3.4:6008", UINT64_MAX)), FreshClaimStatus::kStale);
  EXPECT_EQ(Check(Claim("tcp://1.2.3.5:6008", now)), FreshClaimStatus::kWrongRelay);
  EXPECT_EQ(Check(Claim("", now)), FreshClaimStatus::kWrongRelay);
  const FreshClaimCheck c =
      CheckFreshClaim(Claim("tcp://1.2.3.4:6008", now - 90'000), kNames, kNow, absl::Seconds(60));
  EXPECT_EQ(c.skew_ms, -90'000);
  EXPECT_EQ(c.time_ms, now - 90'000);
  EXPECT_EQ(FreshClaimStatusName(c.status), "stale");
}

}  // namespace
}  // namespace relay
