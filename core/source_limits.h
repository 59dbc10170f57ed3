// SourceLimits: what one source (an IPv4 address, or an IPv6 /64: net::PeerSourceKey)
// may hold on the relay at once (main
// connections, live sessions, leases, peer connections), how fast it may claim proxy
// addresses (a token bucket of ProxyRequests per second) and how fast its main
// connections together may send control messages (another bucket). The defaults are generous,
// since many honest nodes can share one NAT address; they exist so that one client cannot
// take every port, fd or session slot of the relay.
//
// Thread-safe: shared by every reactor. Striped mutexes (16 stripes by IP hash); used only
// when a connection opens or closes and on control messages, never per data frame. Entries are
// removed when an IP holds nothing, so memory follows the number of active IPs. Owned by
// the RelayServer; outlives every shard.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <optional>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "core/token_bucket.h"

namespace relay {

class SourceLimits {
 public:
  enum Kind { kMain, kSession, kLease, kPeer, kKinds };
  struct Limits {
    // Per kind; 0 means no limit.
    std::array<uint32_t, kKinds> max = {1024, 1024, 4096, 4096};
    double requests_per_second = 100;  // 0: no limit; bursts of twice this
    double control_per_second = 200;   // control messages; 0: no limit; bursts of twice
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
  // Takes one control-message token for `ip` at `now`. If its bucket is empty, queues the
  // caller (TokenBucket::TakeOrQueue): returns false and sets *wait to how long until its
  // token is earned; the caller then owns that token and must not ask again for the same
  // message. So many throttled connections of one IP are each woken once, in turn.
  bool AllowControl(uint64_t ip, absl::Time now, absl::Duration* wait);

  // An IP's rate buckets that are not full: their tokens (nullopt: full).
  struct Levels {
    uint64_t ip = 0;
    std::optional<double> requests;
    std::optional<double> control;
  };
  // Every IP's buckets that are not full at `now`, and the same carried into a new
  // SourceLimits: a live upgrade hands them to the next process, so that restarting the
  // relay refills no IP's bucket.
  std::vector<Levels> ExportLevels(absl::Time now) const;
  void RestoreLevels(const Levels& levels, absl::Time now);

  // How many `kind` `ip` holds now (tests, metrics).
  uint32_t Count(Kind kind, uint64_t ip) const;
  // IPs with any state (tests, metrics).
  size_t tracked_ips() const;

 private:
  struct Entry {
    std::array<uint32_t, kKinds> held = {};
    TokenBucket requests;  // bursts of twice the rate
    TokenBucket control;
  };
  struct Stripe {
    mutable std::mutex mu;
    absl::flat_hash_map<uint64_t, Entry> entries;
    uint64_t requests = 0;
  };
  Stripe& StripeOf(uint64_t ip) const;
  // Drops an entry that holds nothing and whose buckets are full.
  void MaybeErase(Stripe& stripe, uint64_t ip, const Entry& e) const;
  bool Forgettable(const Entry& e, absl::Time now) const;
  bool Take(TokenBucket Entry::*bucket, double rate, uint64_t ip, absl::Time now,
            absl::Duration* wait, bool queue);
  void Sweep(Stripe& stripe, absl::Time now) const;

  const Limits limits_;
  mutable std::array<Stripe, 16> stripes_;
};

}  // namespace relay
