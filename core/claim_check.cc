#include "core/claim_check.h"

#include "core/fresh_claim.h"
#include "core/signing.h"

namespace relay {

ClaimCheck CheckClaim(const wire::Message& request, Signature signature, const ClaimPolicy& policy,
                      absl::Time wall_now) {
  ClaimCheck check;
  if (request.signature().empty()) {
    if (policy.require_signatures || policy.strict_claims) {
      check.verdict = ClaimVerdict::kUnsigned;
    }
    return check;
  }
  if (signature == Signature::kInvalid ||
      (signature == Signature::kUnchecked && !VerifyMessage(request).ok())) {
    check.verdict = ClaimVerdict::kBadSignature;
    return check;
  }
  check.proof.signer = request.sender().net_key();
  const FreshClaimCheck fresh =
      CheckFreshClaim(request.message(), policy.relay_names, wall_now, policy.window);
  switch (fresh.status) {
    case FreshClaimStatus::kFresh:
      check.proof.fresh_time_ms = fresh.time_ms;
      break;
    case FreshClaimStatus::kAbsent:
    case FreshClaimStatus::kMalformed:
      if (policy.strict_claims) {
        check.verdict = ClaimVerdict::kNotFresh;  // else a plain signed claim (older nodes)
      }
      break;
    case FreshClaimStatus::kWrongRelay:
      check.verdict = ClaimVerdict::kWrongRelay;
      break;
    case FreshClaimStatus::kStale:
      check.verdict = ClaimVerdict::kStale;
      check.skew_ms = fresh.skew_ms;
      break;
  }
  return check;
}

LeaseRefusal RefusalFor(const std::string& owner_key, uint64_t fresh_claim_ms,
                        const ClaimProof& proof) {
  if (!owner_key.empty() && owner_key != proof.signer) {
    return LeaseRefusal::kBound;
  }
  if (fresh_claim_ms != 0) {
    if (proof.fresh_time_ms == 0) {
      return LeaseRefusal::kNotFresh;
    }
    if (proof.fresh_time_ms <= fresh_claim_ms) {
      return LeaseRefusal::kReplayed;
    }
  }
  return LeaseRefusal::kNone;
}

BindChange Bind(const ClaimProof& proof, std::string* owner_key, uint64_t* fresh_claim_ms) {
  BindChange change;
  if (!proof.signer.empty() && owner_key->empty()) {
    *owner_key = proof.signer;
    change.bound = true;
  }
  if (proof.fresh_time_ms != 0) {
    *fresh_claim_ms = proof.fresh_time_ms;
    change.fresh = true;
  }
  return change;
}

}  // namespace relay
