#include "core/source_limits.h"

#include <algorithm>

#include "base/log.h"

namespace relay {

SourceLimits::Stripe& SourceLimits::StripeOf(uint64_t ip) const {
  // Fibonacci hashing spreads neighbouring addresses over the stripes.
  const uint32_t folded = static_cast<uint32_t>(ip ^ (ip >> 32));
  return stripes_[(folded * 2654435761u) >> 28];
}

bool SourceLimits::Forgettable(const Entry& e, absl::Time now) const {
  for (uint32_t held : e.held) {
    if (held != 0) {
      return false;
    }
  }
  // Keep a bucket until it has refilled, or a client could reset it by leaving.
  return e.requests.Full(limits_.requests_per_second, 2 * limits_.requests_per_second, now) &&
         e.control.Full(limits_.control_per_second, 2 * limits_.control_per_second, now);
}

void SourceLimits::MaybeErase(Stripe& stripe, uint64_t ip, const Entry& e) const {
  // No clock here: a bucket counts as full only if it was at its last refill (Sweep,
  // which has the time, drops the entries that have refilled since).
  if (Forgettable(e, absl::InfinitePast())) {
    stripe.entries.erase(ip);
  }
}

std::array<uint64_t, 2> SourceLimits::Prefixes(uint64_t ip) {
  // Keys of prefixes carry a tag no IP key has: IPv4 keys are below 2^32, IPv6 keys have
  // bit 63 set and (global unicast, 2000::/3) bit 62 clear; a /48 key also has bit 0 set
  // (a /56 key's low byte is 0).
  constexpr uint64_t kPrefix = uint64_t{1} << 62;
  if (ip == 0) {
    return {0, 0};
  }
  if (ip < (uint64_t{1} << 32)) {
    return {kPrefix | (ip & ~uint64_t{0xFF}), 0};  // the /24
  }
  return {kPrefix | (ip & ~uint64_t{0xFF}), kPrefix | (ip & ~uint64_t{0xFFFF}) | 1};  // /56, /48
}

uint64_t SourceLimits::EvictionGroup(uint64_t ip) {
  const std::array<uint64_t, 2> p = Prefixes(ip);
  return p[1] != 0 ? p[1] : p[0];
}

uint32_t SourceLimits::PrefixMax(Kind kind, int level) const {
  uint64_t max = limits_.max[kind];
  for (int i = 0; i < level; ++i) {
    max *= limits_.prefix_factor;
  }
  return static_cast<uint32_t>(std::min<uint64_t>(max, UINT32_MAX));
}

bool SourceLimits::AcquirePrefixes(Kind kind, uint64_t ip, bool check) {
  const std::array<uint64_t, 2> prefixes = Prefixes(ip);
  if (limits_.prefix_factor == 0) {
    return true;
  }
  for (int level = 0; check && level < 2; ++level) {
    auto it = prefixes[level] != 0 ? groups_.find(prefixes[level]) : groups_.end();
    const uint32_t max = PrefixMax(kind, level + 1);
    if (it != groups_.end() && max != 0 && it->second.held[kind] >= max) {
      return false;
    }
  }
  for (uint64_t prefix : prefixes) {
    if (prefix != 0) {
      ++groups_[prefix].held[kind];
    }
  }
  return true;
}

bool SourceLimits::Acquire(Kind kind, uint64_t ip) {
  if (ip == 0) {
    return true;
  }
  Stripe& stripe = StripeOf(ip);
  std::lock_guard<std::mutex> lock(stripe.mu);
  Entry& e = stripe.entries[ip];
  bool ok = limits_.max[kind] == 0 || e.held[kind] < limits_.max[kind];
  if (ok) {
    std::lock_guard<std::mutex> groups_lock(groups_mu_);
    ok = AcquirePrefixes(kind, ip, /*check=*/true);
  }
  if (!ok) {
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
  std::lock_guard<std::mutex> groups_lock(groups_mu_);
  AcquirePrefixes(kind, ip, /*check=*/false);
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
  if (limits_.prefix_factor == 0) {
    return;
  }
  std::lock_guard<std::mutex> groups_lock(groups_mu_);
  for (uint64_t prefix : Prefixes(ip)) {
    auto g = prefix != 0 ? groups_.find(prefix) : groups_.end();
    if (g == groups_.end() || g->second.held[kind] == 0) {
      continue;
    }
    --g->second.held[kind];
    if (g->second.held == std::array<uint32_t, kKinds>{} &&
        g->second.evictions.Full(limits_.evictions_per_minute / 60,
                                 std::max(1.0, 2 * limits_.evictions_per_minute),
                                 absl::InfinitePast())) {
      groups_.erase(g);
    }
  }
}

bool SourceLimits::AllowEviction(uint64_t ip, absl::Time now) {
  if (limits_.evictions_per_minute <= 0 || ip == 0) {
    return true;
  }
  std::lock_guard<std::mutex> lock(groups_mu_);
  absl::Duration wait;
  const double rate = limits_.evictions_per_minute / 60;
  return groups_[EvictionGroup(ip)].evictions.Take(
      rate, std::max(1.0, 2 * limits_.evictions_per_minute), now, &wait);
}

bool SourceLimits::AllowRequest(uint64_t ip, absl::Time now) {
  absl::Duration wait;
  return Take(&Entry::requests, limits_.requests_per_second, ip, now, &wait, /*queue=*/false);
}

bool SourceLimits::AllowControl(uint64_t ip, absl::Time now, absl::Duration* wait) {
  return Take(&Entry::control, limits_.control_per_second, ip, now, wait, /*queue=*/true);
}

bool SourceLimits::Take(TokenBucket Entry::*bucket, double rate, uint64_t ip, absl::Time now,
                        absl::Duration* wait, bool queue) {
  if (ip == 0 || rate <= 0) {
    return true;
  }
  Stripe& stripe = StripeOf(ip);
  std::lock_guard<std::mutex> lock(stripe.mu);
  if (++stripe.requests % 256 == 0) {
    Sweep(stripe, now);  // amortized: drop idle IPs whose buckets have refilled
  }
  TokenBucket& b = stripe.entries[ip].*bucket;
  return queue ? b.TakeOrQueue(rate, 2 * rate, now, wait) : b.Take(rate, 2 * rate, now, wait);
}

void SourceLimits::Sweep(Stripe& stripe, absl::Time now) const {
  for (auto it = stripe.entries.begin(); it != stripe.entries.end();) {
    if (Forgettable(it->second, now)) {
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

std::vector<SourceLimits::Levels> SourceLimits::ExportLevels(absl::Time now) const {
  const double rr = limits_.requests_per_second, cr = limits_.control_per_second;
  std::vector<Levels> out;
  for (const Stripe& stripe : stripes_) {
    std::lock_guard<std::mutex> lock(stripe.mu);
    for (const auto& [ip, e] : stripe.entries) {
      Levels l;
      l.ip = ip;
      const double requests = e.requests.Level(rr, 2 * rr, now);
      const double control = e.control.Level(cr, 2 * cr, now);
      if (rr > 0 && requests < 2 * rr) {
        l.requests = requests;
      }
      if (cr > 0 && control < 2 * cr) {
        l.control = control;
      }
      if (l.requests || l.control) {
        out.push_back(l);
      }
    }
  }
  return out;
}

void SourceLimits::RestoreLevels(const Levels& levels, absl::Time now) {
  if (levels.ip == 0) {
    return;
  }
  const double rr = limits_.requests_per_second, cr = limits_.control_per_second;
  Stripe& stripe = StripeOf(levels.ip);
  std::lock_guard<std::mutex> lock(stripe.mu);
  Entry& e = stripe.entries[levels.ip];
  if (rr > 0 && levels.requests) {
    e.requests.Restore(*levels.requests, 2 * rr, now);
  }
  if (cr > 0 && levels.control) {
    e.control.Restore(*levels.control, 2 * cr, now);
  }
  MaybeErase(stripe, levels.ip, e);  // nothing restored (those limits are off here)
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
