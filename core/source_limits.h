// SourceLimits: what one source (an IPv4 address, or an IPv6 /64: net::PeerSourceKey)
// may hold on the relay at once (main
// connections, live sessions, leases, peer connections) and how fast it may claim proxy
// addresses (a token bucket of ProxyRequests per second). The defaults are generous,
// since many honest nodes can share one NAT address; they exist so that one client cannot
// take every port, fd or session slot of the relay.
//
// Thread-safe: shared by every reactor. Striped mutexes (16 stripes by IP hash); used only
// when a connection opens or closes and on ProxyRequests, never per frame. Entries are
// removed when an IP holds nothing, so memory follows the number of active IPs. Owned by
// the RelayServer; outlives every shard.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"

namespace relay {

class SourceLimits {
 public:
  enum Kind { kMain, kSession, kLease, kPeer, kKinds };
  struct Limits {
    // Per kind; 0 means no limit.
    std::array<uint32_t, kKinds> max = {1024, 1024, 4096, 4096};
    double requests_per_second = 100;  // 0: no limit; bursts of twice this
  };

  explicit SourceLimits(const Limits& limits) : limits_(limits) {}
  SourceLimits(const SourceLimits&) = delete;
  SourceLimits& operator=(const SourceLimits&) = delete;

  // Counts one more `kind` for `ip`. False (nothing counted) if the IP is at its limit.
  // ip 0 (unknown) is never limited, and Release(.., 0) is a no-op.
  bool Acquire(Kind kind, uint64_t ip);
  // Counts one more `kind` for `ip` whatever its limit: for connections that already
  // exist (handed over by the relay process this one replaces).
  void AcquireExisting(Kind kind, uint64_t ip);
  void Release(Kind kind, uint64_t ip);
  // Takes one ProxyRequest token for `ip` at `now`. False if its bucket is empty.
  bool AllowRequest(uint64_t ip, absl::Time now);

  // How many `kind` `ip` holds now (tests, metrics).
  uint32_t Count(Kind kind, uint64_t ip) const;
  // IPs with any state (tests, metrics).
  size_t tracked_ips() const;

 private:
  struct Entry {
    std::array<uint32_t, kKinds> held = {};
    double tokens = 0;
    absl::Time refilled;
    bool bucket_started = false;
  };
  struct Stripe {
    mutable std::mutex mu;
    absl::flat_hash_map<uint64_t, Entry> entries;
    uint64_t requests = 0;
  };
  Stripe& StripeOf(uint64_t ip) const;
  // Drops an entry that holds nothing and whose bucket is full.
  void MaybeErase(Stripe& stripe, uint64_t ip, const Entry& e) const;
  void Sweep(Stripe& stripe, absl::Time now) const;

  const Limits limits_;
  mutable std::array<Stripe, 16> stripes_;
};

}  // namespace relay
