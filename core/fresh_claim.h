// FreshClaim: closes the replay gap of PROTOCOL section 6 where the wire allows
// (docs/SECURITY.md, "Replay").
//
// A signature covers the sender's address and id and the inner message bytes, not the
// opcode: a node's signed empty Keepalive (or a Ping it sent to a peer) is also a valid
// signed empty ProxyRequest. A fresh claim carries, inside the signed ProxyRequest, the
// relay it is for (claim_relay, "tcp://HOST:PORT" as the node dialed it) and the node's
// wall-clock time (claim_time_ms). The relay accepts it only if it names this relay, its
// time is within the window of the relay's clock, and (per lease) it is newer than the
// last fresh claim accepted for that lease, so each claim is accepted at most once.
//
// Pure functions; any thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace relay {

enum class FreshClaimStatus : uint8_t {
  kAbsent,      // a plain ProxyRequest (no claim fields)
  kFresh,       // names this relay, time within the window
  kMalformed,   // the inner message is not a ProxyRequest
  kWrongRelay,  // made for another relay
  kStale,       // time outside the window (a replay, or a node's clock far off)
};

struct FreshClaimCheck {
  FreshClaimStatus status = FreshClaimStatus::kAbsent;
  uint64_t time_ms = 0;  // the claim's time, when it has one
  int64_t skew_ms = 0;   // claim time - relay time (for the log line)
};

// `inner`: the ProxyRequest bytes (Message.message). `relay_names`: every
// "tcp://HOST:PORT" nodes may dial this relay by. `wall_now`: the relay's wall clock.
FreshClaimCheck CheckFreshClaim(absl::string_view inner,
                                const std::vector<std::string>& relay_names, absl::Time wall_now,
                                absl::Duration window);

// The short name of a status, for logs ("fresh", "stale", ...).
absl::string_view FreshClaimStatusName(FreshClaimStatus status);

}  // namespace relay
