// SessionSlot: what a Shard keeps per lease (LeaseTable's attachment): the session while
// the lease is live, the expiry timer while it is remembered. Shared by the shard's files
// (shard.cc, shard_upgrade.cc); nothing else uses it.
//
// Thread: the shard's reactor only, like the lease it hangs on.
#pragma once

#include <memory>

#include "core/lease_table.h"
#include "net/timer_wheel.h"
#include "server/session.h"

namespace relay {

struct SessionSlot final : public LeaseAttachment {
  std::unique_ptr<Session> session;
  net::Timer expiry;
};

inline SessionSlot* SlotOf(Lease* lease) {
  return static_cast<SessionSlot*>(lease->attachment.get());
}

}  // namespace relay
