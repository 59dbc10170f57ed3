// SignatureBudget: how many Ed25519 verifications one reactor does per second, so that
// signed control messages from many sources (each within its own rates) cannot take the
// reactor's CPU from forwarding. An Ed25519 check costs about 40 us: the default 4,000
// per second is about a sixth of a core.
//
// - A bucket of `rate` checks per second with a small burst (rate / 100: a reactor turn
//   spends at most a few milliseconds on signatures).
// - When it is empty, light sources (fewer than `light_per_second` checks in the current
//   second: a node claiming its address, once) still go on, from a reserve of rate / 4;
//   the heavy ones wait. Those that wait are queued (TokenBucket::TakeOrQueue): each owns
//   the token it waits for and is served after its wait, in the order they asked.
//
// Thread: one per reactor, used on its thread only.
#pragma once

#include <cstdint>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "core/token_bucket.h"

namespace relay {

class SignatureBudget {
 public:
  struct Limits {
    double rate = 4000;  // --signature_budget; 0: no limit
    uint32_t light_per_second = 8;
  };
  explicit SignatureBudget(const Limits& limits) : limits_(limits) {}

  // One check for `source` at `now`: true to check now. False: the caller owns a queued
  // token and checks after *wait (it must not ask again for the same message).
  bool Take(uint64_t source, absl::Time now, absl::Duration* wait);

  // Sources seen in the current second (tests).
  size_t sources() const { return used_.size(); }

 private:
  const Limits limits_;
  TokenBucket bucket_;
  TokenBucket reserve_;
  int64_t second_ = 0;
  absl::flat_hash_map<uint64_t, uint32_t> used_;  // checks per source, this second
};

}  // namespace relay
