#include "core/lease_table.h"

#include <utility>

#include "base/log.h"

namespace relay {

LeaseTable::LeaseTable(PortPool* pool, absl::Duration ttl, SourceLimits* limits)
    : LeaseTable(std::vector<PortPool*>{pool}, ttl, limits) {}

LeaseTable::LeaseTable(std::vector<PortPool*> pools, absl::Duration ttl, SourceLimits* limits)
    : pools_(std::move(pools)), ttl_(ttl), limits_(limits) {}

LeaseTable::~LeaseTable() {
  observer_ = nullptr;  // a shutdown is not the end of the leases on disk
  while (!leases_.empty()) {
    End(leases_.begin());
  }
}

void LeaseTable::Unlink(Lease* lease) {
  if (!lease->remembered_) {
    return;
  }
  (lease->older_ != nullptr ? lease->older_->newer_ : oldest_) = lease->newer_;
  (lease->newer_ != nullptr ? lease->newer_->older_ : newest_) = lease->older_;
  lease->older_ = lease->newer_ = nullptr;
  auto g = groups_.find(SourceLimits::EvictionGroup(lease->source_ip));
  RELAY_DCHECK(g != groups_.end());
  if (g != groups_.end()) {
    Group& group = g->second;
    (lease->group_older_ != nullptr ? lease->group_older_->group_newer_ : group.oldest) =
        lease->group_newer_;
    (lease->group_newer_ != nullptr ? lease->group_newer_->group_older_ : group.newest) =
        lease->group_older_;
    if (--group.count == 0) {
      groups_.erase(g);
    }
  }
  lease->group_older_ = lease->group_newer_ = nullptr;
  lease->remembered_ = false;
  --remembered_;
}

Lease* LeaseTable::OldestRememberedOf(uint64_t group) const {
  auto g = groups_.find(group);
  return g == groups_.end() ? nullptr : g->second.oldest;
}

Lease* LeaseTable::OldestOfHeaviestGroup() const {
  const Group* heaviest = nullptr;
  for (const auto& [key, group] : groups_) {
    // Ties go to the group remembered last (a burst of throw-away identities is newer
    // than the nodes that left before it).
    if (heaviest == nullptr || group.count > heaviest->count ||
        (group.count == heaviest->count &&
         group.oldest->expires_at > heaviest->oldest->expires_at)) {
      heaviest = &group;
    }
  }
  return heaviest == nullptr ? nullptr : heaviest->oldest;
}

void LeaseTable::End(Map::iterator it) {
  Lease& lease = it->second;
  if (observer_ != nullptr) {
    observer_->LeaseEnded(lease.id);
  }
  Unlink(&lease);
  pools_[lease.address]->Release(lease.port);
  if (limits_ != nullptr) {
    limits_->Release(SourceLimits::kLease, lease.source_ip);
  }
  // The attachment (and its timers) goes before the key its callbacks may refer to.
  lease.attachment.reset();
  leases_.erase(it);
}

Lease* LeaseTable::Find(absl::string_view id, absl::Time now) {
  auto it = leases_.find(id);
  if (it == leases_.end()) {
    return nullptr;
  }
  if (!it->second.live && now >= it->second.expires_at) {
    End(it);
    return nullptr;
  }
  return &it->second;
}

Lease* LeaseTable::CreateLive(absl::string_view id, uint16_t port, uint64_t source_ip,
                              uint8_t address) {
  auto [it, inserted] = leases_.try_emplace(std::string(id));
  RELAY_CHECK(inserted) << "lease already exists";
  RELAY_CHECK(address < pools_.size()) << "no proxy address " << int{address};
  it->second.port = port;
  it->second.address = address;
  it->second.live = true;
  it->second.source_ip = source_ip;
  it->second.id = it->first;
  Changed(it->second);
  return &it->second;
}

void LeaseTable::MarkLive(Lease* lease) {
  Unlink(lease);
  lease->live = true;
  Changed(*lease);
}

Lease* LeaseTable::Restore(absl::string_view id, uint16_t port, std::string owner_key,
                           uint64_t fresh_claim_ms, absl::Time expires_at, uint8_t address,
                           uint64_t source_ip) {
  auto [it, inserted] = leases_.try_emplace(std::string(id));
  RELAY_CHECK(inserted) << "lease already exists";
  RELAY_CHECK(address < pools_.size()) << "no proxy address " << int{address};
  Lease* lease = &it->second;
  lease->port = port;
  lease->address = address;
  lease->id = it->first;
  lease->owner_key = std::move(owner_key);
  lease->fresh_claim_ms = fresh_claim_ms;
  lease->source_ip = source_ip;
  LeaseObserver* observer = std::exchange(observer_, nullptr);
  Remember(lease, expires_at - ttl_);
  observer_ = observer;
  return lease;
}

absl::Time LeaseTable::Remember(Lease* lease, absl::Time last_activity) {
  lease->live = false;
  lease->expires_at = last_activity + ttl_;
  if (!lease->remembered_) {
    lease->remembered_ = true;
    lease->older_ = newest_;
    lease->newer_ = nullptr;
    (newest_ != nullptr ? newest_->newer_ : oldest_) = lease;
    newest_ = lease;
    ++remembered_;
    Group& group = groups_[SourceLimits::EvictionGroup(lease->source_ip)];
    lease->group_older_ = group.newest;
    lease->group_newer_ = nullptr;
    (group.newest != nullptr ? group.newest->group_newer_ : group.oldest) = lease;
    group.newest = lease;
    ++group.count;
  }
  Changed(*lease);
  return lease->expires_at;
}

void LeaseTable::ChangePort(Lease* lease, uint16_t new_port, uint8_t new_address) {
  pools_[lease->address]->Release(lease->port);
  lease->port = new_port;
  lease->address = new_address;
  Changed(*lease);
}

bool LeaseTable::ExpireIfDue(absl::string_view id, absl::Time now) {
  auto it = leases_.find(id);
  if (it == leases_.end() || it->second.live || now < it->second.expires_at) {
    return false;
  }
  End(it);
  return true;
}

bool LeaseTable::Erase(absl::string_view id) {
  auto it = leases_.find(id);
  if (it == leases_.end()) {
    return false;
  }
  End(it);
  return true;
}

}  // namespace relay
