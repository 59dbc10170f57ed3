// Who may claim an address (core/claim_check.h): what a claim proves under each policy,
// whether that proof may take a bound or freshly claimed lease, and what it binds.
#include "core/claim_check.h"

#include "core/identity.h"
#include "core/signing.h"
#include "gtest/gtest.h"

namespace relay {
namespace {

const absl::Time kNow = absl::FromUnixMillis(1'800'000'000'000);
constexpr uint64_t kNowMs = 1'800'000'000'000;

ClaimPolicy Policy(bool require_signatures = false, bool strict = false) {
  ClaimPolicy p;
  p.require_signatures = require_signatures;
  p.strict_claims = strict;
  p.window = absl::Seconds(60);
  p.relay_names = {"tcp://1.2.3.4:6008"};
  return p;
}

// A ProxyRequest from `identity`, fresh for `relay` at `time_ms` (0: a plain claim),
// signed unless `sign` is false.
wire::Message Request(const Identity& identity, const std::string& relay = "", uint64_t time_ms = 0,
                      bool sign = true) {
  wire::Message m;
  m.mutable_sender()->set_address("tcp://10.0.0.1:7000");
  m.mutable_sender()->set_net_key(identity.public_key());
  m.mutable_sender()->set_id(DeriveId(identity.public_key()));
  m.mutable_sender()->set_connection_id(
      DeriveConnectionId(identity.public_key(), m.sender().address()));
  if (time_ms != 0) {
    wire::ProxyRequest r;
    r.set_claim_relay(relay);
    r.set_claim_time_ms(time_ms);
    m.set_message(r.SerializeAsString());
  }
  if (sign) {
    EXPECT_TRUE(SignMessage(identity.secret_key(), &m).ok());
  }
  return m;
}

TEST(ClaimCheckTest, UnsignedClaimsPassOnlyWithoutSignaturesOrStrictClaims) {
  const Identity id = Identity::Generate();
  const wire::Message plain = Request(id, "", 0, /*sign=*/false);
  ClaimCheck c = CheckClaim(plain, Signature::kUnchecked, Policy(), kNow);
  EXPECT_EQ(c.verdict, ClaimVerdict::kAccepted);
  EXPECT_EQ(c.proof.signer, "");
  EXPECT_EQ(CheckClaim(plain, Signature::kUnchecked, Policy(true), kNow).verdict,
            ClaimVerdict::kUnsigned);
  EXPECT_EQ(CheckClaim(plain, Signature::kUnchecked, Policy(false, true), kNow).verdict,
            ClaimVerdict::kUnsigned);
}

TEST(ClaimCheckTest, ASignatureNamesItsKeyUnlessItFails) {
  const Identity id = Identity::Generate();
  const ClaimCheck c = CheckClaim(Request(id), Signature::kUnchecked, Policy(), kNow);
  EXPECT_EQ(c.verdict, ClaimVerdict::kAccepted);
  EXPECT_EQ(c.proof.signer, id.public_key());
  EXPECT_EQ(c.proof.fresh_time_ms, 0u);
  wire::Message forged = Request(id);
  forged.mutable_sender()->set_address("tcp://10.0.0.2:7000");  // not what was signed
  EXPECT_EQ(CheckClaim(forged, Signature::kUnchecked, Policy(), kNow).verdict,
            ClaimVerdict::kBadSignature);
  // Already verified as it was parsed (--require_signatures): not checked twice.
  EXPECT_EQ(CheckClaim(forged, Signature::kValid, Policy(), kNow).verdict, ClaimVerdict::kAccepted);
}

TEST(ClaimCheckTest, FreshClaimsNameThisRelayWithinTheWindow) {
  const Identity id = Identity::Generate();
  ClaimCheck c =
      CheckClaim(Request(id, "tcp://1.2.3.4:6008", kNowMs), Signature::kUnchecked, Policy(), kNow);
  EXPECT_EQ(c.verdict, ClaimVerdict::kAccepted);
  EXPECT_EQ(c.proof.fresh_time_ms, kNowMs);
  EXPECT_EQ(
      CheckClaim(Request(id, "tcp://9.9.9.9:6008", kNowMs), Signature::kUnchecked, Policy(), kNow)
          .verdict,
      ClaimVerdict::kWrongRelay);
  c = CheckClaim(Request(id, "tcp://1.2.3.4:6008", kNowMs - 61'000), Signature::kUnchecked,
                 Policy(), kNow);
  EXPECT_EQ(c.verdict, ClaimVerdict::kStale);
  EXPECT_EQ(c.skew_ms, -61'000);
  // A plain signed claim: accepted, unless only fresh claims are.
  EXPECT_EQ(CheckClaim(Request(id), Signature::kUnchecked, Policy(false, true), kNow).verdict,
            ClaimVerdict::kNotFresh);
}

TEST(ClaimCheckTest, ABoundLeaseTakesOnlyItsKeyAndAFreshOneOnlyANewerClaim) {
  ClaimProof by_a{"key-a", 0};
  ClaimProof by_b{"key-b", 0};
  EXPECT_EQ(RefusalFor("", 0, by_a), LeaseRefusal::kNone);
  EXPECT_EQ(RefusalFor("key-a", 0, by_a), LeaseRefusal::kNone);
  EXPECT_EQ(RefusalFor("key-a", 0, by_b), LeaseRefusal::kBound);
  EXPECT_EQ(RefusalFor("key-a", 0, ClaimProof{}), LeaseRefusal::kBound);  // unsigned
  EXPECT_EQ(RefusalFor("key-a", 5000, by_a), LeaseRefusal::kNotFresh);
  EXPECT_EQ(RefusalFor("key-a", 5000, ClaimProof{"key-a", 5000}), LeaseRefusal::kReplayed);
  EXPECT_EQ(RefusalFor("key-a", 5000, ClaimProof{"key-a", 4999}), LeaseRefusal::kReplayed);
  EXPECT_EQ(RefusalFor("key-a", 5000, ClaimProof{"key-a", 5001}), LeaseRefusal::kNone);
}

TEST(ClaimCheckTest, AClaimBindsAnUnboundLeaseAndMovesItsFreshTime) {
  std::string owner;
  uint64_t fresh = 0;
  BindChange c = Bind(ClaimProof{}, &owner, &fresh);  // unsigned: binds nothing
  EXPECT_FALSE(c.bound || c.fresh);
  c = Bind(ClaimProof{"key-a", 0}, &owner, &fresh);
  EXPECT_TRUE(c.bound);
  EXPECT_FALSE(c.fresh);
  EXPECT_EQ(owner, "key-a");
  c = Bind(ClaimProof{"key-a", 7000}, &owner, &fresh);
  EXPECT_FALSE(c.bound);  // already bound
  EXPECT_TRUE(c.fresh);
  EXPECT_EQ(fresh, 7000u);
  EXPECT_EQ(owner, "key-a");
}

}  // namespace
}  // namespace relay
