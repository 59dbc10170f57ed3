#include "core/fresh_claim.h"

#include <algorithm>
#include <cstdint>

#include "proto/relay.pb.h"

namespace relay {

FreshClaimCheck CheckFreshClaim(absl::string_view inner,
                                const std::vector<std::string>& relay_names, absl::Time wall_now,
                                absl::Duration window) {
  FreshClaimCheck check;
  wire::ProxyRequest request;
  if (!request.ParseFromArray(inner.data(), static_cast<int>(inner.size()))) {
    check.status = FreshClaimStatus::kMalformed;
    return check;
  }
  if (request.claim_relay().empty() && request.claim_time_ms() == 0) {
    return check;  // kAbsent
  }
  check.time_ms = request.claim_time_ms();
  if (std::find(relay_names.begin(), relay_names.end(), request.claim_relay()) ==
      relay_names.end()) {
    check.status = FreshClaimStatus::kWrongRelay;
    return check;
  }
  // Both in [0, INT64_MAX]: the difference cannot overflow (a time near 2^64 saturates).
  const int64_t now_ms = std::max<int64_t>(0, absl::ToUnixMillis(wall_now));
  const int64_t claim_ms =
      static_cast<int64_t>(std::min<uint64_t>(check.time_ms, static_cast<uint64_t>(INT64_MAX)));
  check.skew_ms = claim_ms - now_ms;
  const int64_t window_ms = absl::ToInt64Milliseconds(window);
  if (check.time_ms == 0 || check.skew_ms > window_ms || -check.skew_ms > window_ms) {
    check.status = FreshClaimStatus::kStale;
    return check;
  }
  check.status = FreshClaimStatus::kFresh;
  return check;
}

absl::string_view FreshClaimStatusName(FreshClaimStatus status) {
  switch (status) {
    case FreshClaimStatus::kAbsent:
      return "absent";
    case FreshClaimStatus::kFresh:
      return "fresh";
    case FreshClaimStatus::kMalformed:
      return "malformed";
    case FreshClaimStatus::kWrongRelay:
      return "wrong_relay";
    case FreshClaimStatus::kStale:
      return "stale";
  }
  return "unknown";
}

}  // namespace relay
