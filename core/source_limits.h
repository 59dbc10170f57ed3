// SourceLimits: what one source (an IPv4 address, or an IPv6 /64: net::PeerSourceKey)
// may hold on the relay at once (main connections, live sessions, leases, peer
// connections), and what its wider prefixes may (IPv4 /24; IPv6 /56 and /48: one
// allocation of addresses, prefix_factor times more at each step), how fast it may claim proxy
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
    // Wider prefixes hold `prefix_factor` times what the one below them may (IPv4: the
    // /24 4x the address; IPv6: the /56 4x the /64, the /48 16x). 0: no prefix limits.
    uint32_t prefix_factor = 4;
    // Remembered leases of other groups (IPv4 /24, IPv6 /48) one group may push out under
    // pool pressure, per minute, bursts of twice this. 0: no limit.
    double evictions_per_minute = 2;
  };
  // The prefixes above an IP's key that have limits of their own: up to two (level 1:
  // IPv4 /24 or IPv6 /56; level 2: IPv6 /48), as keys of their own; 0 where none.
  static std::array<uint64_t, 2> Prefixes(uint64_t ip);
  // The group an IP's evictions are counted for and its leases grouped by: its widest
  // prefix (IPv4 /24, IPv6 /48).
  static uint64_t EvictionGroup(uint64_t ip);

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
  // Takes one eviction token for `ip`'s group at `now` (it may push out another group's
  // remembered lease). False if its bucket is empty.
  bool AllowEviction(uint64_t ip, absl::Time now);
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
  // A prefix's counts, and (for an eviction group) its eviction bucket.
  struct Group {
    std::array<uint32_t, kKinds> held = {};
    TokenBucket evictions;
  };
  Stripe& StripeOf(uint64_t ip) const;
  // The limit of `kind` at prefix `level` (1 or 2); 0: none.
  uint32_t PrefixMax(Kind kind, int level) const;
  // Counts `kind` for the prefixes of `ip` if `check` finds each under its limit (or
  // always, !check). Requires groups_mu_.
  bool AcquirePrefixes(Kind kind, uint64_t ip, bool check);
  // Drops an entry that holds nothing and whose buckets are full.
  void MaybeErase(Stripe& stripe, uint64_t ip, const Entry& e) const;
  bool Forgettable(const Entry& e, absl::Time now) const;
  bool Take(TokenBucket Entry::*bucket, double rate, uint64_t ip, absl::Time now,
            absl::Duration* wait, bool queue);
  void Sweep(Stripe& stripe, absl::Time now) const;

  const Limits limits_;
  mutable std::array<Stripe, 16> stripes_;
  // Prefix counts and eviction buckets (taken after a stripe's lock, never before).
  mutable std::mutex groups_mu_;
  absl::flat_hash_map<uint64_t, Group> groups_;
};

}  // namespace relay
