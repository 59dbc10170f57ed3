// LeaseTable: connection_id -> proxy port, live while the node's session runs and
// remembered for the lease time after it ends (shared/PROTOCOL.md section 5).
//
// One table per shard (reactor), used only from that shard's thread: no locks. The table
// owns the ports of its leases: a port leaves the PortPool when a lease takes it and goes
// back exactly when the lease really ends (ExpireIfDue, Erase, or the table's destruction),
// so a live or remembered port can never be handed to another node. Expiry is driven from
// outside (the shard's timer wheel calls ExpireIfDue), so no operation scans the table.
// Lease pointers stay valid until that lease is erased. Remembered leases are also kept
// in the order they were remembered, so that under pool pressure the oldest one can give
// its port to a new node (OldestRemembered, Erase). Each lease may count against its
// source IP in SourceLimits (kLease); the table releases that count when the lease ends.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/node_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "core/port_pool.h"
#include "core/source_limits.h"

namespace relay {

// Per-lease state that the owner of the table attaches (the server keeps the session and
// the expiry timer here). Destroyed with the lease.
class LeaseAttachment {
 public:
  virtual ~LeaseAttachment() = default;
};

struct Lease;

// Told of every change to a lease (LeaseStore writes them to disk). Called on the table's
// thread; implementations must be thread-safe across tables.
class LeaseObserver {
 public:
  virtual ~LeaseObserver() = default;
  // The lease was created or changed (live, remembered until expires_at, port, key).
  virtual void LeaseChanged(const Lease& lease) = 0;
  // The lease ended (expired, evicted, erased).
  virtual void LeaseEnded(absl::string_view id) = 0;
};

struct Lease {
  uint16_t port = 0;
  uint8_t address = 0;          // which proxy address (and port pool) the port belongs to
  bool live = false;            // a session holds it right now
  absl::Time expires_at;        // meaningful only while !live
  uint64_t source_ip = 0;       // who claimed it (counted in SourceLimits::kLease)
  std::string owner_key;        // net_key of a valid signed claim: only it may claim again
  uint64_t fresh_claim_ms = 0;  // time of the last fresh claim accepted: later ones must be newer
  absl::string_view id;         // the key (points into the table)
  std::unique_ptr<LeaseAttachment> attachment;

 private:
  friend class LeaseTable;
  Lease* older_ = nullptr;  // remembered list, while !live
  Lease* newer_ = nullptr;
  Lease* group_older_ = nullptr;  // its source group's remembered list
  Lease* group_newer_ = nullptr;
  bool remembered_ = false;
};

class LeaseTable {
 public:
  // `pool` must outlive the table. `ttl` is how long a lease is remembered after the
  // session's last activity.
  LeaseTable(PortPool* pool, absl::Duration ttl, SourceLimits* limits = nullptr);
  // One pool per proxy address (Lease::address indexes it).
  LeaseTable(std::vector<PortPool*> pools, absl::Duration ttl, SourceLimits* limits = nullptr);
  ~LeaseTable();  // releases every port still held
  LeaseTable(const LeaseTable&) = delete;
  LeaseTable& operator=(const LeaseTable&) = delete;

  // Returns the lease of `id` (live, or remembered and not yet expired at `now`), or null.
  // A remembered lease found expired is ended on the spot (its port returns to the pool).
  Lease* Find(absl::string_view id, absl::Time now);

  // The lease of `id` as it is (live, or remembered, expired or not), or null; changes
  // nothing (the admin endpoint's listing).
  const Lease* Peek(absl::string_view id) const {
    auto it = leases_.find(id);
    return it == leases_.end() ? nullptr : &it->second;
  }

  // Creates a live lease for `id` on `port`, which the caller took from the pool; the
  // table now owns the port (and the kLease count of `source_ip`, if the caller took one).
  // Requires that `id` has no lease.
  Lease* CreateLive(absl::string_view id, uint16_t port, uint64_t source_ip = 0,
                    uint8_t address = 0);

  // Marks a lease live again (a node came back within the lease time).
  void MarkLive(Lease* lease);

  // Recreates a remembered lease from disk (LeaseStore), on `port`, which the pool holds
  // for it (PortPool's `held`), bound to `owner_key`, remembered until `expires_at`.
  // Requires that `id` has no lease. Not reported to the observer.
  Lease* Restore(absl::string_view id, uint16_t port, std::string owner_key,
                 uint64_t fresh_claim_ms, absl::Time expires_at, uint8_t address = 0,
                 uint64_t source_ip = 0);

  // Reports a change made to a lease's fields from outside (owner_key, fresh_claim_ms).
  void Changed(const Lease& lease) {
    if (observer_ != nullptr) {
      observer_->LeaseChanged(lease);
    }
  }
  // Every later change goes to `observer` (null: none). Set it to null before the table
  // is destroyed if the destruction must not be reported as leases ending.
  void set_observer(LeaseObserver* observer) { observer_ = observer; }

  // The remembered lease that was remembered first, or null.
  Lease* OldestRemembered() const { return oldest_; }
  size_t remembered_count() const { return remembered_; }
  // Remembered leases are also listed per source group (SourceLimits::EvictionGroup of
  // the IP that claimed them: IPv4 /24, IPv6 /48; 0 for leases read from disk). The
  // oldest remembered lease of `group`, or null.
  Lease* OldestRememberedOf(uint64_t group) const;
  // The oldest remembered lease of the group holding the most remembered leases (of those
  // holding as many, the one whose oldest was remembered last), or null (pool pressure:
  // the heaviest lose theirs first). Scans the groups.
  Lease* OldestOfHeaviestGroup() const;

  // The session ended; the lease is remembered until `last_activity + ttl`.
  // Returns that expiry time.
  absl::Time Remember(Lease* lease, absl::Time last_activity);

  // Moves a lease to `new_port` of proxy address `new_address` (taken from that pool by
  // the caller) and releases the old one (used when the remembered port can no longer be
  // bound).
  void ChangePort(Lease* lease, uint16_t new_port, uint8_t new_address = 0);

  // Ends the lease of `id` if it is remembered (not live) and expired at `now`.
  // Returns true if it ended (the port went back to the pool).
  bool ExpireIfDue(absl::string_view id, absl::Time now);

  // Ends the lease of `id` at once, whatever its state. Returns false if there is none.
  bool Erase(absl::string_view id);

  // Calls f(const Lease&) for every lease, in no order (live upgrade: the hand-over).
  template <typename F>
  void ForEach(F f) const {
    for (const auto& [id, lease] : leases_) {
      f(lease);
    }
  }

  size_t size() const { return leases_.size(); }
  absl::Duration ttl() const { return ttl_; }

 private:
  using Map = absl::node_hash_map<std::string, Lease>;
  struct Group {
    Lease* oldest = nullptr;
    Lease* newest = nullptr;
    size_t count = 0;
  };
  void Unlink(Lease* lease);
  // Ends a lease: its port goes back to the pool, its IP's count is released.
  void End(Map::iterator it);

  std::vector<PortPool*> pools_;
  absl::Duration ttl_;
  SourceLimits* limits_;
  LeaseObserver* observer_ = nullptr;
  Map leases_;
  Lease* oldest_ = nullptr;  // remembered list: oldest first
  Lease* newest_ = nullptr;
  size_t remembered_ = 0;
  absl::flat_hash_map<uint64_t, Group> groups_;  // remembered leases per source group
};

}  // namespace relay
