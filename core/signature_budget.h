// SignatureBudget: how many Ed25519 verifications one reactor does per second, so that
// signed control messages from many sources (each within its own rates) cannot take the
// reactor's CPU from forwarding. An Ed25519 check costs about 40 us: the default 4,000
// per second is about a sixth of a core.
//
// - A bucket of `rate` checks per second with a small burst (rate / 100).
// - When it is empty, light sources (fewer than `light_per_second` checks in the current
//   second: a node claiming its address, once) still go on, from a reserve of rate / 4;
//   the heavy ones wait. Those that wait are queued (TokenBucket::TakeOrQueue): each owns
//   the token it waits for and is served after its wait, in the order they asked.
// - At most kChecksPerTurn (and the burst) per reactor turn, whatever the tokens: the queued tokens
// of many
//   waiters fall due together (the timer wheel fires in ticks), and a turn then spends
//   about a millisecond on signatures; the rest wait for the next turns.
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
  // Checks per reactor turn, at most (and at most the burst): about a millisecond.
  static constexpr double kChecksPerTurn = 16;
  explicit SignatureBudget(const Limits& limits) : limits_(limits) {}

  enum class Grant {
    kNow,       // check now
    kQueued,    // the caller owns a queued token: Redeem it after *wait
    kNextTurn,  // this turn's checks are spent: ask again next turn
  };
  // One check for `source` at `now`, in reactor turn `turn`.
  Grant Take(uint64_t source, absl::Time now, uint64_t turn, absl::Duration* wait);
  // A queued token that fell due: true to check now, false if this turn's checks are
  // spent (the token stays the caller's: redeem it next turn).
  bool Redeem(uint64_t turn);

  // Sources seen in the current second (tests).
  size_t sources() const { return used_.size(); }

 private:
  // True (and counted) if turn `turn` has room for one more check.
  bool TakeTurnSlot(uint64_t turn);

  const Limits limits_;
  TokenBucket bucket_;
  TokenBucket reserve_;
  int64_t second_ = 0;
  uint64_t turn_ = 0;
  uint32_t turn_checks_ = 0;
  absl::flat_hash_map<uint64_t, uint32_t> used_;  // checks per source, this second
};

}  // namespace relay
