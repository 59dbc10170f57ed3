#include "core/lease_table.h"

#include "core/log.h"

namespace relay {

LeaseTable::LeaseTable(PortPool* pool, absl::Duration ttl) : pool_(pool), ttl_(ttl) {}

LeaseTable::~LeaseTable() {
  for (auto& [id, lease] : leases_) {
    pool_->Release(lease.port);
  }
}

Lease* LeaseTable::Find(absl::string_view id, absl::Time now) {
  auto it = leases_.find(id);
  if (it == leases_.end()) {
    return nullptr;
  }
  if (!it->second.live && now >= it->second.expires_at) {
    pool_->Release(it->second.port);
    leases_.erase(it);
    return nullptr;
  }
  return &it->second;
}

Lease* LeaseTable::CreateLive(absl::string_view id, uint16_t port) {
  auto [it, inserted] = leases_.try_emplace(std::string(id));
  RELAY_CHECK(inserted) << "lease already exists";
  it->second.port = port;
  it->second.live = true;
  return &it->second;
}

absl::Time LeaseTable::Remember(Lease* lease, absl::Time last_activity) {
  lease->live = false;
  lease->expires_at = last_activity + ttl_;
  return lease->expires_at;
}

void LeaseTable::ChangePort(Lease* lease, uint16_t new_port) {
  pool_->Release(lease->port);
  lease->port = new_port;
}

bool LeaseTable::ExpireIfDue(absl::string_view id, absl::Time now) {
  auto it = leases_.find(id);
  if (it == leases_.end() || it->second.live || now < it->second.expires_at) {
    return false;
  }
  pool_->Release(it->second.port);
  leases_.erase(it);
  return true;
}

bool LeaseTable::Erase(absl::string_view id) {
  auto it = leases_.find(id);
  if (it == leases_.end()) {
    return false;
  }
  pool_->Release(it->second.port);
  leases_.erase(it);
  return true;
}

}  // namespace relay
