// The Shard's part of a live upgrade (server/upgrade.h): freeze, come to rest, export its
// state and fds, or thaw; in the new process, import that state and resume. Declared in
// server/shard.h with the rest of the Shard.
#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "base/log.h"
#include "net/socket_ops.h"
#include "server/main_connection.h"
#include "server/proxy_connection.h"
#include "server/session.h"
#include "server/session_slot.h"
#include "server/shard.h"

namespace relay {

bool Shard::Freeze() {
  if (draining_) {
    return false;
  }
  frozen_ = true;
  for (auto& acceptor : acceptors_) {
    acceptor->Pause();
  }
  for (auto& [conn, owned] : mains_) {
    conn->Freeze();
    if (conn->session() != nullptr && conn->session()->main() == conn) {
      conn->session()->Freeze();
    }
  }
  return true;
}

bool Shard::AtRest() const {
  if (!frozen_ || !pending_claims_.empty()) {
    return false;
  }
  for (const auto& [conn, owned] : mains_) {
    if (!conn->AtRest() || (conn->session() != nullptr && !conn->session()->AtRest())) {
      return false;
    }
  }
  return true;
}

void Shard::ForceRest() {
  std::vector<MainConnection*> restless;
  for (auto& [conn, owned] : mains_) {
    if (!conn->AtRest() && !conn->closed()) {
      restless.push_back(conn);
    }
  }
  for (MainConnection* conn : restless) {
    stats_.Add(Counter::kUpgradeDisconnects);
    conn->Abort("live upgrade: its frames did not drain within --upgrade_timeout");
  }
  if (!restless.empty()) {
    RELAY_LOG(WARNING) << "live upgrade: " << restless.size()
                       << " nodes did not take their frames within --upgrade_timeout and were "
                          "closed (counted as upgrade_disconnects; they reconnect and keep "
                          "their addresses)";
  }
  size_t dropped = 0;
  for (auto& [conn, owned] : mains_) {
    if (conn->session() != nullptr) {
      dropped += conn->session()->DropRestless();
    }
  }
  if (dropped > 0) {
    stats_.Add(Counter::kUpgradePeersDropped, dropped);
    RELAY_LOG(WARNING) << "live upgrade: " << dropped
                       << " peers were inside a frame at --upgrade_timeout and were closed, "
                          "their partial frames dropped (counted as upgrade_peers_dropped)";
  }
  RetryPendingClaims();  // claims waiting for a port: answered or refused now
}

void Shard::Export(handover::Shard* out, std::vector<int>* fds) const {
  auto add_fd = [fds](int fd) {
    fds->push_back(fd);
    return static_cast<uint32_t>(fds->size() - 1);
  };
  const absl::Time now = reactor_->clock()->Now();
  out->set_listener_fd(add_fd(acceptors_.front()->fd()));
  for (size_t i = 1; i < acceptors_.size(); ++i) {
    out->add_more_listener_fds(add_fd(acceptors_[i]->fd()));
  }
  leases_.ForEach([&](const Lease& lease) {
    handover::Lease* l = out->add_leases();
    l->set_id(std::string(lease.id));
    l->set_port(lease.port);
    l->set_address(lease.address);
    l->set_owner_key(lease.owner_key);
    l->set_fresh_claim_ms(lease.fresh_claim_ms);
    l->set_source_ip(lease.source_ip);
    l->set_live(lease.live);
    if (!lease.live) {
      l->set_remembered_ms_left(
          std::max<int64_t>(0, absl::ToInt64Milliseconds(lease.expires_at - now)));
      return;
    }
    const Session* session = static_cast<SessionSlot*>(lease.attachment.get())->session.get();
    handover::Session* hs = l->mutable_session();
    hs->set_listener_fd(add_fd(session->listener_fd()));
    hs->set_source_ip(session->source_ip());
    hs->set_frames_to_node(session->frames_to_node);
    hs->set_bytes_to_node(session->bytes_to_node);
    hs->set_age_ms(absl::ToInt64Milliseconds(now - session->started_at));
    hs->set_since_takeover_ms(session->last_takeover == absl::InfinitePast()
                                  ? -1
                                  : absl::ToInt64Milliseconds(now - session->last_takeover));
    for (const ProxyConnection* peer : session->peers()) {
      handover::Peer* p = hs->add_peers();
      p->set_fd(add_fd(peer->fd()));
      p->set_source_ip(peer->source_ip());
    }
  });
  for (const auto& [conn, owned] : mains_) {
    handover::Main* m = out->add_mains();
    m->set_fd(add_fd(conn->fd()));
    m->set_source_ip(conn->source_ip());
    m->set_input(std::string(conn->unparsed_input()));
    m->set_next_nonce(conn->next_nonce());
    m->set_idle_ms(absl::ToInt64Milliseconds(now - conn->last_activity()));
    m->set_seen_frame(conn->seen_frame());
    m->set_frames_from_node(conn->frames_from_node());
    m->set_bytes_from_node(conn->bytes_from_node());
    const double level = conn->ControlLevel(now);
    if (level < context_->config.control_burst) {
      m->set_control_limited(true);
      m->set_control_tokens(level);
    }
    if (conn->session() != nullptr && conn->session()->main() == conn) {
      m->set_session_id(conn->session()->connection_id());
    }
  }
}

void Shard::Thaw() {
  if (!frozen_) {
    return;
  }
  frozen_ = false;
  for (auto& acceptor : acceptors_) {
    acceptor->Resume();
  }
  std::vector<MainConnection*> mains;
  for (auto& [conn, owned] : mains_) {
    mains.push_back(conn);
  }
  for (MainConnection* conn : mains) {
    if (conn->session() != nullptr && conn->session()->main() == conn) {
      conn->session()->Thaw();
    }
    if (!conn->closed()) {
      conn->Thaw();
    }
  }
}

namespace {

// Takes fd number `index` of the received ones (each may be used once).
absl::StatusOr<net::UniqueFd> TakeReceived(std::vector<net::UniqueFd>* fds, uint32_t index) {
  if (index >= fds->size() || !(*fds)[index].valid()) {
    return absl::DataLossError(
        absl::StrCat("handed-over state names fd #", index, " which was not received (or twice)"));
  }
  return std::move((*fds)[index]);
}

}  // namespace

absl::Status Shard::ImportListeners(const handover::Shard& in, std::vector<net::UniqueFd>* fds) {
  absl::StatusOr<net::UniqueFd> listener = TakeReceived(fds, in.listener_fd());
  if (!listener.ok()) {
    return listener.status();
  }
  absl::Status status = Listen(std::move(*listener));
  for (uint32_t index : in.more_listener_fds()) {
    absl::StatusOr<net::UniqueFd> more = TakeReceived(fds, index);
    if (!more.ok()) {
      return more.status();
    }
    if (status.ok()) {
      status = Listen(std::move(*more));
    }
  }
  return status;
}

absl::Status Shard::ImportLease(const handover::Lease& l, absl::Time now,
                                std::vector<net::UniqueFd>* fds) {
  if (leases_.Find(l.id(), now) != nullptr || l.port() > 0xffff ||
      l.address() >= context_->pools.size()) {
    return absl::DataLossError("handed-over state has a lease twice, or a bad port or address");
  }
  const uint16_t port = static_cast<uint16_t>(l.port());
  const uint8_t address = static_cast<uint8_t>(l.address());
  source_limits().AcquireExisting(SourceLimits::kLease, l.source_ip());
  auto slot = std::make_unique<SessionSlot>();
  SessionSlot* raw_slot = slot.get();
  if (!l.live()) {
    Lease* lease =
        leases_.Restore(l.id(), port, l.owner_key(), l.fresh_claim_ms(),
                        now + absl::Milliseconds(l.remembered_ms_left()), address, l.source_ip());
    const std::string id = l.id();
    slot->expiry.set_callback([this, id] { OnLeaseTimer(id); });
    reactor_->timers().Arm(&slot->expiry, lease->expires_at);
    lease->attachment = std::move(slot);
    return absl::OkStatus();
  }
  Lease* lease = leases_.CreateLive(l.id(), port, l.source_ip(), address);
  lease->owner_key = l.owner_key();
  lease->fresh_claim_ms = l.fresh_claim_ms();
  lease->attachment = std::move(slot);
  const handover::Session& s = l.session();
  absl::StatusOr<net::UniqueFd> proxy = TakeReceived(fds, s.listener_fd());
  if (!proxy.ok()) {
    return proxy.status();
  }
  source_limits().AcquireExisting(SourceLimits::kSession, s.source_ip());
  raw_slot->session =
      std::make_unique<Session>(this, l.id(), port, std::move(*proxy), s.source_ip(), address);
  Session* session = raw_slot->session.get();
  if (!session->Start()) {
    return absl::InternalError("cannot register a handed-over proxy listener");
  }
  session->started_at = now - absl::Milliseconds(s.age_ms());
  session->frames_to_node = s.frames_to_node();
  session->bytes_to_node = s.bytes_to_node();
  if (s.since_takeover_ms() >= 0) {
    session->last_takeover = now - absl::Milliseconds(s.since_takeover_ms());
  }
  for (const handover::Peer& p : s.peers()) {
    absl::StatusOr<net::UniqueFd> fd = TakeReceived(fds, p.fd());
    if (!fd.ok()) {
      return fd.status();
    }
    source_limits().AcquireExisting(SourceLimits::kPeer, p.source_ip());
    if (!session->AdoptPeer(std::move(*fd), p.source_ip())) {
      return absl::InternalError("cannot register a handed-over peer connection");
    }
  }
  return absl::OkStatus();
}

absl::Status Shard::ImportMain(const handover::Main& m, absl::Time now,
                               std::vector<net::UniqueFd>* fds) {
  absl::StatusOr<net::UniqueFd> fd = TakeReceived(fds, m.fd());
  if (!fd.ok()) {
    return fd.status();
  }
  source_limits().AcquireExisting(SourceLimits::kMain, m.source_ip());
  MainConnection* conn = AddMain(std::move(*fd), m.source_ip(), m.next_nonce(),
                                 now - absl::Milliseconds(m.idle_ms()), m.seen_frame());
  if (conn == nullptr) {
    return absl::InternalError("cannot register a handed-over main connection");
  }
  conn->SetPending(m.input(), m.output());
  conn->AddFromNode(m.frames_from_node(), m.bytes_from_node());
  if (m.control_limited()) {
    conn->RestoreControlLevel(m.control_tokens(), now);
  }
  if (!m.session_id().empty()) {
    Lease* lease = leases_.Find(m.session_id(), now);
    if (lease == nullptr || !lease->live) {
      return absl::DataLossError("a handed-over main connection names no live session");
    }
    Session* session = SlotOf(lease)->session.get();
    session->AttachMain(conn);
    conn->set_session(session);
  }
  imported_.push_back(conn);
  return absl::OkStatus();
}

absl::Status Shard::Import(const handover::Shard& in, std::vector<net::UniqueFd>* fds) {
  if (absl::Status status = ImportListeners(in, fds); !status.ok()) {
    return status;
  }
  const absl::Time now = reactor_->clock()->Now();
  // Remembered leases oldest first, so the eviction order stays as it was.
  std::vector<const handover::Lease*> leases;
  for (const handover::Lease& l : in.leases()) {
    leases.push_back(&l);
  }
  std::stable_sort(leases.begin(), leases.end(),
                   [](const handover::Lease* a, const handover::Lease* b) {
                     return a->remembered_ms_left() < b->remembered_ms_left();
                   });
  for (const handover::Lease* l : leases) {
    if (absl::Status status = ImportLease(*l, now, fds); !status.ok()) {
      return status;
    }
  }
  UpdateRemembered();
  for (const handover::Main& m : in.mains()) {
    if (absl::Status status = ImportMain(m, now, fds); !status.ok()) {
      return status;
    }
  }
  // Every live session must have its main connection.
  absl::Status missing = absl::OkStatus();
  leases_.ForEach([&](const Lease& lease) {
    if (lease.live &&
        static_cast<SessionSlot*>(lease.attachment.get())->session->main() == nullptr) {
      missing = absl::DataLossError("a handed-over session has no main connection");
    }
  });
  return missing;
}

void Shard::ResumeImported() {
  std::vector<MainConnection*> mains;
  mains.swap(imported_);
  for (MainConnection* conn : mains) {
    if (mains_.contains(conn) && !conn->closed()) {
      conn->ProcessInput();
      if (!conn->closed()) {
        reactor_->MarkReady(conn);
      }
    }
  }
}

}  // namespace relay
