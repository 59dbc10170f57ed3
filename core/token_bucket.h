// TokenBucket: `rate` tokens a second up to `burst`, full when first used. The one
// rate limiter of the relay: a main connection's control messages (MainConnection) and a
// source IP's ProxyRequests and control messages (SourceLimits).
//
// Thread: not synchronized; its owner serializes (a reactor thread, a stripe's mutex).
#pragma once

#include <algorithm>

#include "absl/time/time.h"

namespace relay {

struct TokenBucket {
  double tokens = 0;
  absl::Time refilled;
  bool started = false;

  // Brings the bucket up to `now` and takes a token if there is one; else sets *wait to
  // how long until there is.
  bool Take(double rate, double burst, absl::Time now, absl::Duration* wait) {
    if (!started) {
      started = true;
      tokens = burst;
    } else {
      const double elapsed = std::max(0.0, absl::ToDoubleSeconds(now - refilled));
      tokens = std::min(burst, tokens + elapsed * rate);
    }
    refilled = now;
    if (tokens < 1) {
      *wait = absl::Seconds((1 - tokens) / rate);
      return false;
    }
    tokens -= 1;
    return true;
  }
  // Like Take(), but with no token there it takes one on credit: the bucket goes below
  // zero, and *wait is how long until that token will have been earned. The caller then
  // owns it (it must not ask again for the same use) and callers who wait are served in
  // the order they asked, each after its own wait, instead of all of them retrying at each
  // refill. The credit is bounded by the number of callers, each waiting for one token.
  bool TakeOrQueue(double rate, double burst, absl::Time now, absl::Duration* wait) {
    if (Take(rate, burst, now, wait)) {
      return true;
    }
    tokens -= 1;  // *wait, from Take(), is when tokens were back at 1 before this: at 0 now
    return false;
  }
  // The tokens it would hold at `now` (a bucket never used is full).
  double Level(double rate, double burst, absl::Time now) const {
    if (!started) {
      return burst;
    }
    return std::min(burst, tokens + std::max(0.0, absl::ToDoubleSeconds(now - refilled)) * rate);
  }
  // Starts it at `level` tokens (between 0 and `burst`) at `now`: a bucket carried over
  // from the process this one took over from (a live upgrade), so that restarting the
  // relay is no way to refill it. Credit owed to waiting callers is not carried.
  void Restore(double level, double burst, absl::Time now) {
    started = true;
    tokens = std::clamp(level, 0.0, burst);
    refilled = now;
  }
  // Whether it would be full at `now` (then forgetting it changes nothing).
  bool Full(double rate, double burst, absl::Time now) const {
    return !started || rate <= 0 ||
           tokens + std::max(0.0, absl::ToDoubleSeconds(now - refilled)) * rate >= burst;
  }
};

}  // namespace relay
