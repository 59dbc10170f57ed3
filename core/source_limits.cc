#include "core/source_limits.h"

#include <algorithm>

#include "core/log.h"

namespace relay {

SourceLimits::Stripe& SourceLimits::StripeOf(uint64_t ip) const {
  // Fibonacci hashing spreads neighbouring addresses over the stripes.
  const uint32_t folded = static_cast<uint32_t>(ip ^ (ip >> 32));
  return stripes_[(folded * 2654435761u) >> 28];
}

void SourceLimits::MaybeErase(Stripe& stripe, uint64_t ip, const Entry& e) const {
  for (uint32_t held : e.held) {
    if (held != 0) {
      return;
    }
  }
  if (e.bucket_started && e.tokens < 2 * limits_.requests_per_second) {
    return;  // keep the bucket until it has refilled, or a client could reset it
  }
  stripe.entries.erase(ip);
}

bool SourceLimits::Acquire(Kind kind, uint64_t ip) {
  if (ip == 0) {
    return true;
  }
  Stripe& stripe = StripeOf(ip);
  std::lock_guard<std::mutex> lock(stripe.mu);
  Entry& e = stripe.entries[ip];
  if (limits_.max[kind] != 0 && e.held[kind] >= limits_.max[kind]) {
    MaybeErase(stripe, ip, e);
    return false;
  }
  ++e.held[kind];
  return true;
}

void SourceLimits::AcquireExisting(Kind kind, uint64_t ip) {
  if (ip == 0) {
    return;
  }
  Stripe& stripe = StripeOf(ip);
  std::lock_guard<std::mutex> lock(stripe.mu);
  ++stripe.entries[ip].held[kind];
}

void SourceLimits::Release(Kind kind, uint64_t ip) {
  if (ip == 0) {
    return;
  }
  Stripe& stripe = StripeOf(ip);
  std::lock_guard<std::mutex> lock(stripe.mu);
  auto it = stripe.entries.find(ip);
  RELAY_DCHECK(it != stripe.entries.end() && it->second.held[kind] > 0);
  if (it == stripe.entries.end() || it->second.held[kind] == 0) {
    return;
  }
  --it->second.held[kind];
  MaybeErase(stripe, ip, it->second);
}

bool SourceLimits::AllowRequest(uint64_t ip, absl::Time now) {
  const double rate = limits_.requests_per_second;
  if (ip == 0 || rate <= 0) {
    return true;
  }
  Stripe& stripe = StripeOf(ip);
  std::lock_guard<std::mutex> lock(stripe.mu);
  Entry& e = stripe.entries[ip];
  const double burst = 2 * rate;
  if (!e.bucket_started) {
    e.bucket_started = true;
    e.tokens = burst;
  } else {
    const double elapsed = std::max(0.0, absl::ToDoubleSeconds(now - e.refilled));
    e.tokens = std::min(burst, e.tokens + elapsed * rate);
  }
  e.refilled = now;
  if (++stripe.requests % 256 == 0) {
    Sweep(stripe, now);  // amortized: drop idle IPs whose buckets have refilled
  }
  if (e.tokens < 1) {
    return false;
  }
  e.tokens -= 1;
  return true;
}

void SourceLimits::Sweep(Stripe& stripe, absl::Time now) const {
  const double burst = 2 * limits_.requests_per_second;
  for (auto it = stripe.entries.begin(); it != stripe.entries.end();) {
    const Entry& e = it->second;
    bool idle = true;
    for (uint32_t held : e.held) {
      idle = idle && held == 0;
    }
    const double tokens =
        e.tokens + absl::ToDoubleSeconds(now - e.refilled) * limits_.requests_per_second;
    if (idle && tokens >= burst) {
      stripe.entries.erase(it++);
    } else {
      ++it;
    }
  }
}

uint32_t SourceLimits::Count(Kind kind, uint64_t ip) const {
  Stripe& stripe = StripeOf(ip);
  std::lock_guard<std::mutex> lock(stripe.mu);
  auto it = stripe.entries.find(ip);
  return it == stripe.entries.end() ? 0 : it->second.held[kind];
}

size_t SourceLimits::tracked_ips() const {
  size_t n = 0;
  for (const Stripe& stripe : stripes_) {
    std::lock_guard<std::mutex> lock(stripe.mu);
    n += stripe.entries.size();
  }
  return n;
}

}  // namespace relay
