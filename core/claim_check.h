// ClaimCheck: who may claim an address (a ProxyRequest), as pure functions: what a claim
// proves about its sender (PROTOCOL section 6: a valid signature names the key; a fresh
// claim, core/fresh_claim.h, names this relay and a time), whether that proof may take a
// lease (a lease bound to a key only by that key; one claimed fresh only by a newer fresh
// claim), and what a successful claim binds. docs/SECURITY.md explains the rules; the
// Shard applies them, counts each refusal and answers the node.
//
// Pure functions; any thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "proto/relay.pb.h"

namespace relay {

// What a claim proved, checked once on the shard that read it and carried with it.
struct ClaimProof {
  std::string signer;          // net_key of a valid signature, or empty (unsigned)
  uint64_t fresh_time_ms = 0;  // time of a valid fresh claim, or 0
};

// The relay's rules for claims (its flags and names).
struct ClaimPolicy {
  bool require_signatures = false;  // --require_signatures
  bool strict_claims = false;       // --strict_claims: only checked fresh claims
  absl::Duration window;            // --claim_window
  std::vector<std::string> relay_names;
};

enum class ClaimVerdict : uint8_t {
  kAccepted,
  kUnsigned,      // no signature, where one is required
  kBadSignature,  // a signature that does not verify
  kNotFresh,      // not a fresh claim, under --strict_claims
  kWrongRelay,    // a fresh claim for another relay
  kStale,         // a fresh claim whose time is outside the window
};

struct ClaimCheck {
  ClaimVerdict verdict = ClaimVerdict::kAccepted;
  ClaimProof proof;     // when accepted
  int64_t skew_ms = 0;  // kStale: claim time - relay time
};

// What the caller knows of a message's signature: the relay checks it as the message is
// parsed (within the reactor's signature budget), or knows its key already.
enum class Signature : uint8_t { kUnchecked, kValid, kInvalid };

// Checks `request` against `policy` at the relay's wall clock (its signature, unless
// `signature` says already).
ClaimCheck CheckClaim(const wire::Message& request, Signature signature, const ClaimPolicy& policy,
                      absl::Time wall_now);

enum class LeaseRefusal : uint8_t {
  kNone,
  kBound,     // the lease is bound to another key
  kNotFresh,  // the lease was claimed fresh; this claim is not
  kReplayed,  // not newer than the lease's last fresh claim
};

// Whether `proof` may claim a lease bound to `owner_key` (empty: unbound) whose last fresh
// claim was at `fresh_claim_ms` (0: none).
LeaseRefusal RefusalFor(const std::string& owner_key, uint64_t fresh_claim_ms,
                        const ClaimProof& proof);

// What an accepted claim binds: a signed claim binds an unbound lease to its key, and a
// fresh claim's time becomes the lease's. Updates the two fields; says what changed.
struct BindChange {
  bool bound = false;  // the lease is now bound to the signer
  bool fresh = false;  // its last fresh claim moved on
};
BindChange Bind(const ClaimProof& proof, std::string* owner_key, uint64_t* fresh_claim_ms);

}  // namespace relay
