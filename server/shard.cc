#include "server/shard.h"

#include <errno.h>
#include <sodium.h>
#include <time.h>

#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "base/log.h"
#include "core/fresh_claim.h"
#include "core/signing.h"
#include "net/socket_ops.h"
#include "server/main_connection.h"
#include "server/proxy_connection.h"
#include "server/session.h"
#include "server/session_slot.h"

namespace relay {
namespace {

// Connections accepted per listener per turn before yielding to other work.
constexpr int kAcceptBudget = 64;

// Moves a main connection to the shard that owns its lease.
class HandOffTask final : public net::Task {
 public:
  HandOffTask(Shard* target, Shard::HandedOff handed)
      : target_(target), handed_(std::move(handed)) {}
  void Run() override { target_->Adopt(std::move(handed_)); }

 private:
  Shard* target_;
  Shard::HandedOff handed_;
};

}  // namespace

std::string Shard::PortName(uint8_t address, uint16_t port) const {
  return context_->proxy_addresses.size() == 1
             ? absl::StrCat(port)
             : FormatHostPort(context_->proxy_addresses[address].advertise, port);
}

std::string IdPrefix(absl::string_view connection_id) {
  return absl::BytesToHexString(connection_id.substr(0, 4));
}

namespace {

StageBudget::Limits StageLimitsOf(const RelayConfig& config) {
  StageBudget::Limits limits;
  limits.total = config.stage_budget_bytes;
  limits.per_session = SessionStageBytes(config);
  limits.headroom = config.stage_budget_bytes / 4;
  limits.small_session = config.stage_bytes;
  limits.overdraft = uint64_t{config.max_frame_bytes} + kFrameHeaderSize;
  return limits;
}

}  // namespace

Shard::Shard(int index, net::Reactor* reactor, const ServerContext* context)
    : index_(index),
      reactor_(reactor),
      context_(context),
      leases_(context->pools, context->config.lease_ttl, context->limits),
      stage_budget_(StageLimitsOf(context->config)),
      signature_budget_({context->config.signature_budget}) {
  // Copy-staging blocks never add up to more than the staging budget allows.
  reactor_->blocks().set_max_in_use(
      std::max<uint64_t>(1, context->config.stage_budget_bytes / net::BlockPool::kBlockBytes));
}

Shard::~Shard() {
  CloseAll();
  if (stage_budget_.used() != 0) {
    RELAY_LOG(ERROR) << "staging budget not fully returned at shutdown: " << stage_budget_.used()
                     << " bytes";
  }
}

int Shard::HomeOf(absl::string_view connection_id, const std::string& shard_key, int shard_count) {
  RELAY_DCHECK(shard_key.size() == crypto_shorthash_KEYBYTES);
  uint64_t hash = 0;
  crypto_shorthash(reinterpret_cast<unsigned char*>(&hash),
                   reinterpret_cast<const unsigned char*>(connection_id.data()),
                   connection_id.size(), reinterpret_cast<const unsigned char*>(shard_key.data()));
  return static_cast<int>(hash % static_cast<uint64_t>(shard_count));
}

net::Acceptor::Options Shard::AcceptorOptions() const {
  net::Acceptor::Options options;
  options.budget = kAcceptBudget;
  options.fd_reserve = context_->config.fd_reserve;
  options.backoff = context_->config.accept_backoff;
  return options;
}

void Shard::OnAcceptRefused(const char* listener, int error) {
  stats_.Add(Counter::kAcceptErrors);
  RELAY_LOG_LIMITED(ERROR) << "accept on " << listener << ": " << ErrnoText(error)
                           << (error == EMFILE ? " (or fewer than --fd_reserve fds left)" : "")
                           << "; new connections wait in the backlog, retried every "
                           << absl::FormatDuration(context_->config.accept_backoff)
                           << " (raise the open-files limit, LimitNOFILE; counted as "
                              "accept_errors)";
}

absl::Status Shard::Listen(net::UniqueFd listener) {
  acceptors_.push_back(std::make_unique<net::Acceptor>(
      reactor_, std::move(listener), AcceptorOptions(),
      [this](net::UniqueFd fd) { OnMainAccepted(std::move(fd)); },
      [this](int error) { OnAcceptRefused("a main listener", error); }));
  return acceptors_.back()->Start();
}

void Shard::OnMainAccepted(net::UniqueFd fd) {
  const uint64_t ip = net::PeerSourceKey(fd.get());
  if (!source_limits().Acquire(SourceLimits::kMain, ip)) {
    stats_.Add(Counter::kLimitMainsPerIp);
    RELAY_LOG_LIMITED(WARNING) << "main connection from " << net::PeerName(fd.get())
                               << " refused: that IP holds --max_mains_per_ip="
                               << context_->config.max_mains_per_ip
                               << " (counted as limit_mains_per_ip)";
    return;
  }
  stats_.Add(Counter::kMainAccepted);
  AddMain(std::move(fd), ip, 1, reactor_->clock()->Now(), /*seen_frame=*/false);
}

MainConnection* Shard::AddMain(net::UniqueFd fd, uint64_t source_ip, uint64_t next_nonce,
                               absl::Time last_activity, bool seen_frame) {
  auto conn = std::make_unique<MainConnection>(this, std::move(fd), source_ip, next_nonce,
                                               last_activity, seen_frame);
  MainConnection* raw = conn.get();
  mains_.emplace(raw, std::move(conn));
  if (frozen_) {
    raw->Freeze();  // handed from another shard during a live upgrade
  }
  if (!raw->Start()) {
    raw->Close("cannot register with epoll");
    return nullptr;
  }
  return raw;
}

void Shard::Adopt(HandedOff handed) {
  MainConnection* conn = AddMain(std::move(handed.fd), handed.source_ip, handed.next_nonce,
                                 handed.last_activity, /*seen_frame=*/true);
  if (conn == nullptr) {
    return;
  }
  // Replies queued before the hand-off go first; frames the node sent after its
  // ProxyRequest travelled with it.
  conn->SetPending(std::move(handed.input), std::move(handed.output));
  conn->AddFromNode(handed.frames_from_node, handed.bytes_from_node);
  conn->RestoreControlLevel(handed.control_level, reactor_->clock()->Now());
  if (Claim(conn, handed.request, handed.proof) == RequestOutcome::kAnswered) {
    conn->ProcessInput();
  }
}

Shard::RequestOutcome Shard::OnProxyRequest(MainConnection* conn, const wire::Message& request,
                                            Signature signature) {
  // The rate limit comes first: it also bounds the signature checks (and the signed
  // answers) one IP can cause.
  if (!source_limits().AllowRequest(conn->source_ip(), reactor_->clock()->Now())) {
    return Refuse(conn, Counter::kLimitRequestsPerIp);
  }
  if (Session* session = conn->session()) {
    return Answer(conn, request, session->address(), session->port());  // asked again
  }
  ClaimProof proof;
  if (!CheckClaim(conn, request, signature, &proof)) {
    return RequestOutcome::kClosed;
  }
  const int home = HomeOf(request.sender().connection_id(), context_->shard_key,
                          static_cast<int>(context_->shards.size()));
  if (home != index_) {
    HandOff(conn, request, home, std::move(proof));
    return RequestOutcome::kMoved;
  }
  return Claim(conn, request, proof);
}

bool Shard::CheckClaim(MainConnection* conn, const wire::Message& request, Signature signature,
                       ClaimProof* proof) {
  const ClaimPolicy& policy = context_->claims;
  if (signature == Signature::kUnchecked && !request.signature().empty()) {
    stats_.Add(Counter::kSignatureChecks);
  }
  const ClaimCheck check =
      relay::CheckClaim(request, signature, policy, reactor_->clock()->WallNow());
  switch (check.verdict) {
    case ClaimVerdict::kAccepted:
      *proof = check.proof;
      return true;
    case ClaimVerdict::kUnsigned:
      Refuse(conn, Counter::kUnsignedRefused);
      return false;
    case ClaimVerdict::kBadSignature:
      RELAY_LOG_LIMITED(WARNING) << "ProxyRequest from " << conn->PeerName()
                                 << " has a bad signature";
      Refuse(conn, Counter::kBadSignatures);
      return false;
    case ClaimVerdict::kNotFresh:
      Refuse(conn, Counter::kClaimsNotFresh);
      return false;
    case ClaimVerdict::kWrongRelay:
      RELAY_LOG_LIMITED(WARNING) << "fresh claim from " << conn->PeerName()
                                 << " names another relay (add the name it dials by to "
                                    "--relay_name if it is this one)";
      Refuse(conn, Counter::kClaimsWrongRelay);
      return false;
    case ClaimVerdict::kStale:
      RELAY_LOG_LIMITED(WARNING) << "fresh claim from " << conn->PeerName() << " is "
                                 << check.skew_ms / 1000.0
                                 << " s off this relay's clock (--claim_window="
                                 << absl::FormatDuration(policy.window)
                                 << "): a replay, or the node's clock is wrong";
      Refuse(conn, Counter::kClaimsStale);
      return false;
  }
  return false;
}

void Shard::Bind(Lease* lease, const ClaimProof& proof) {
  const BindChange change = relay::Bind(proof, &lease->owner_key, &lease->fresh_claim_ms);
  if (change.bound) {
    stats_.Add(Counter::kLeasesBound);
  }
  if (change.fresh) {
    stats_.Add(Counter::kFreshClaims);
  }
  if (change.bound || change.fresh) {
    leases_.Changed(*lease);  // the binding survives a restart (--state_dir)
  }
}

Shard::RequestOutcome Shard::Claim(MainConnection* conn, const wire::Message& request,
                                   const ClaimProof& proof, bool may_wait) {
  if (draining_) {
    return Refuse(conn, Counter::kDrainDisconnects);  // the relay is stopping
  }
  Lease* lease = leases_.Find(request.sender().connection_id(), reactor_->clock()->Now());
  UpdateRemembered();
  if (lease != nullptr) {
    // Bound to a key: a copied connection id without that key's signature takes nothing
    // (neither the live session nor the remembered port); claimed fresh: nor a replay.
    switch (RefusalFor(lease->owner_key, lease->fresh_claim_ms, proof)) {
      case LeaseRefusal::kNone:
        break;
      case LeaseRefusal::kBound:
        return Refuse(conn, Counter::kClaimsRefusedBound);
      case LeaseRefusal::kNotFresh:
        return Refuse(conn, Counter::kClaimsNotFresh);
      case LeaseRefusal::kReplayed:
        return Refuse(conn, Counter::kClaimsReplayed);
    }
    Bind(lease, proof);
  }
  if (lease != nullptr && lease->live) {
    return TakeOver(lease, conn, request);
  }
  if (!source_limits().Acquire(SourceLimits::kSession, conn->source_ip())) {
    return Refuse(conn, Counter::kLimitSessionsPerIp);
  }
  return lease != nullptr ? ClaimRemembered(lease, conn, request)
                          : ClaimNew(conn, request, proof, may_wait);
}

Shard::RequestOutcome Shard::ClaimRemembered(Lease* lease, MainConnection* conn,
                                             const wire::Message& request) {
  // The same port again, if it can still be bound.
  net::UniqueFd listener = BindProxy(lease->address, lease->port);
  if (!listener) {
    std::optional<PortChoice> port = TakePort(&listener, conn->source_ip());
    if (!port) {
      source_limits().Release(SourceLimits::kSession, conn->source_ip());
      return Refuse(conn, Counter::kPoolExhausted);
    }
    stats_.Add(Counter::kLeasePortRebound);
    RELAY_LOG_LIMITED(WARNING) << "a remembered proxy port could not be bound again; the node "
                                  "got a new one (counted as lease_port_rebound)";
    leases_.ChangePort(lease, port->port, port->address);
  }
  if (!LeasesDurable()) {
    source_limits().Release(SourceLimits::kSession, conn->source_ip());
    return Refuse(conn, Counter::kClaimsNotDurable);
  }
  stats_.Add(Counter::kLeasesReused);
  reactor_->timers().Cancel(&SlotOf(lease)->expiry);
  leases_.MarkLive(lease);
  UpdateRemembered();
  if (!StartSession(lease, lease->id, std::move(listener), conn, "remembered")) {
    return RequestOutcome::kClosed;
  }
  return Answer(conn, request, lease->address, lease->port);
}

Shard::RequestOutcome Shard::ClaimNew(MainConnection* conn, const wire::Message& request,
                                      const ClaimProof& proof, bool may_wait) {
  if (!LeasesDurable()) {
    source_limits().Release(SourceLimits::kSession, conn->source_ip());
    return Refuse(conn, Counter::kClaimsNotDurable);
  }
  if (!source_limits().Acquire(SourceLimits::kLease, conn->source_ip())) {
    source_limits().Release(SourceLimits::kSession, conn->source_ip());
    return Refuse(conn, Counter::kLimitLeasesPerIp);
  }
  net::UniqueFd listener;
  bool asked_elsewhere = false;
  std::optional<PortChoice> port =
      TakePort(&listener, conn->source_ip(), may_wait ? &asked_elsewhere : nullptr);
  if (!port) {
    source_limits().Release(SourceLimits::kLease, conn->source_ip());
    source_limits().Release(SourceLimits::kSession, conn->source_ip());
    if (asked_elsewhere) {
      conn->set_claim_pending(true);
      pending_claims_.push_back(PendingClaim{conn, request, proof});
      return RequestOutcome::kPending;
    }
    return Refuse(conn, Counter::kPoolExhausted);
  }
  const std::string& id = request.sender().connection_id();
  Lease* lease = leases_.CreateLive(id, port->port, conn->source_ip(), port->address);
  Bind(lease, proof);
  if (!LeasesDurable()) {
    // Its record did not reach the disk: after a crash the port could go to another
    // node, so the claim is not acknowledged (the lease ends, its port goes back).
    leases_.Erase(id);
    source_limits().Release(SourceLimits::kSession, conn->source_ip());
    return Refuse(conn, Counter::kClaimsNotDurable);
  }
  lease->attachment = std::make_unique<SessionSlot>();
  if (!StartSession(lease, id, std::move(listener), conn, "new")) {
    return RequestOutcome::kClosed;
  }
  return Answer(conn, request, port->address, port->port);
}

Shard::RequestOutcome Shard::TakeOver(Lease* lease, MainConnection* conn,
                                      const wire::Message& request) {
  // Takeover: a newer main connection for a live session (a node that reconnected
  // before its old socket timed out). The session, its listener and peers stay.
  Session* session = SlotOf(lease)->session.get();
  MainConnection* old = session->main();
  if (old == conn) {
    return Answer(conn, request, lease->address, lease->port);
  }
  const absl::Time now = reactor_->clock()->Now();
  if (now - session->last_takeover < context_->config.takeover_interval) {
    // Two connections fighting over one id (the same key started twice, or a thief):
    // the first takeover wins at once, later ones within the window are refused.
    stats_.Add(Counter::kTakeoverDamped);
    RELAY_LOG_LIMITED(WARNING) << "takeover of a session by " << conn->PeerName()
                               << " refused: it was taken over less than --takeover_interval="
                               << absl::FormatDuration(context_->config.takeover_interval)
                               << " ago (current holder "
                               << (old != nullptr ? old->PeerName() : std::string("none"))
                               << "; counted as takeover_damped)";
    conn->SendControl(kOpDisconnect, wire::Disconnect(), nullptr);
    conn->CloseAfterFlush();
    return RequestOutcome::kClosed;
  }
  session->last_takeover = now;
  RELAY_LOG_SESSION << "session taken over: id " << IdPrefix(session->connection_id()) << " port "
                    << PortName(session->address(), session->port()) << " now node "
                    << conn->PeerName() << " (was "
                    << (old != nullptr ? old->PeerName() : std::string("none")) << ")";
  session->AttachMain(conn);
  conn->set_session(session);
  if (old != nullptr) {
    old->set_session(nullptr);
    stats_.Add(Counter::kMainTakenOver);
    old->Close("taken over by a newer main connection");
  }
  return Answer(conn, request, lease->address, lease->port);
}

bool Shard::StartSession(Lease* lease, absl::string_view id, net::UniqueFd listener,
                         MainConnection* conn, const char* how) {
  SessionSlot* slot = SlotOf(lease);
  slot->session = std::make_unique<Session>(this, std::string(id), lease->port, std::move(listener),
                                            conn->source_ip(), lease->address);
  if (!slot->session->Start()) {
    // The lease must not stay live with no session: end it, and its port.
    reactor_->DeferDelete(std::move(slot->session));
    leases_.Erase(std::string(id));
    conn->Close("cannot register the proxy listener");
    return false;
  }
  stats_.Add(Counter::kSessionsStarted);  // only a session that runs: started - ended = live
  slot->session->AttachMain(conn);
  conn->set_session(slot->session.get());
  slot->session->started_at = reactor_->clock()->Now();
  if (frozen_) {
    slot->session->Freeze();
  }
  RELAY_LOG_SESSION << "session start: node " << conn->PeerName() << " id " << IdPrefix(id)
                    << " port " << PortName(lease->address, lease->port) << " (" << how << " lease"
                    << (lease->owner_key.empty() ? "" : ", bound to its key") << ")";
  return true;
}

Shard::RequestOutcome Shard::Answer(MainConnection* conn, const wire::Message& request,
                                    uint8_t address, uint16_t port) {
  wire::ProxyResponse response;
  response.set_origin_address(request.sender().address());
  response.set_proxy_address(FormatHostPort(context_->proxy_addresses[address].advertise, port));
  wire::ProxyRequest asked;
  if (!request.signature().empty() && asked.ParseFromString(request.message())) {
    response.set_claim_time_ms(asked.claim_time_ms());  // binds the signed answer to the claim
  }
  conn->SendControl(kOpProxyResponse, response, &request);
  return conn->closed() ? RequestOutcome::kClosed : RequestOutcome::kAnswered;
}

Shard::RequestOutcome Shard::Refuse(MainConnection* conn, Counter counter) {
  stats_.Add(counter);
  RELAY_LOG_LIMITED(WARNING) << "ProxyRequest from " << conn->PeerName()
                             << " refused with Disconnect (counted as "
                             << kCounterNames[static_cast<size_t>(counter)] << ": "
                             << kCounterHelp[static_cast<size_t>(counter)] << ")";
  conn->SendControl(kOpDisconnect, wire::Disconnect(), nullptr);
  conn->CloseAfterFlush();
  return RequestOutcome::kClosed;
}

void Shard::HandOff(MainConnection* conn, const wire::Message& request, int home,
                    ClaimProof proof) {
  stats_.Add(Counter::kMainHandedOff);
  HandedOff handed;
  handed.proof = std::move(proof);
  handed.source_ip = conn->TakeSourceIp();
  handed.input = conn->TakeInput();
  handed.output = conn->TakeOutput();
  handed.next_nonce = conn->next_nonce();
  handed.frames_from_node = conn->frames_from_node();
  handed.bytes_from_node = conn->bytes_from_node();
  handed.control_level = conn->ControlLevel(reactor_->clock()->Now());
  handed.last_activity = conn->last_activity();
  handed.request = request;
  handed.fd = conn->TakeFd();
  conn->Close("handed off");
  reactor_->Post(context_->shards[home]->reactor(),
                 std::make_unique<HandOffTask>(context_->shards[home], std::move(handed)));
}

void Shard::OnMainClosed(MainConnection* conn) {
  for (auto it = pending_claims_.begin(); it != pending_claims_.end(); ++it) {
    if (it->conn == conn) {
      pending_claims_.erase(it);
      break;
    }
  }
  Session* session = conn->session();
  if (session != nullptr && session->main() == conn) {
    EndSession(session, conn->last_activity());
  }
  auto it = mains_.find(conn);
  if (it != mains_.end()) {
    reactor_->DeferDelete(std::move(it->second));
    mains_.erase(it);
  }
}

void Shard::EndSession(Session* session, absl::Time last_activity) {
  const std::string id = session->connection_id();
  Lease* lease = leases_.Find(id, reactor_->clock()->Now());
  session->Shutdown();
  stats_.Add(Counter::kSessionsEnded);
  if (lease == nullptr) {
    return;
  }
  SessionSlot* slot = SlotOf(lease);
  const absl::Time expires = leases_.Remember(lease, last_activity);
  UpdateRemembered();
  reactor_->DeferDelete(std::move(slot->session));
  slot->expiry.set_callback([this, id] { OnLeaseTimer(id); });
  reactor_->timers().Arm(&slot->expiry, expires);
}

void Shard::RestoreLease(const StoredLease& stored, uint8_t address, absl::Time expires_at) {
  Lease* lease = leases_.Restore(stored.id, stored.port, stored.owner_key, stored.fresh_claim_ms,
                                 expires_at, address);
  auto slot = std::make_unique<SessionSlot>();
  const std::string id = stored.id;
  slot->expiry.set_callback([this, id] { OnLeaseTimer(id); });
  reactor_->timers().Arm(&slot->expiry, expires_at);
  lease->attachment = std::move(slot);
  UpdateRemembered();
}

void Shard::OnLeaseTimer(std::string id) {
  // `id` is a copy: ExpireIfDue destroys the timer (and this callback's captures).
  if (leases_.ExpireIfDue(id, reactor_->clock()->Now())) {
    stats_.Add(Counter::kLeasesExpired);
    UpdateRemembered();
  }
}

bool Shard::HoldControlBytes(uint64_t bytes) {
  if (control_held_ + bytes > context_->config.control_budget_bytes) {
    return false;
  }
  control_held_ += bytes;
  return true;
}

bool Shard::TakeControlFrameSlot() {
  if (reactor_->turn() != control_turn_) {
    control_turn_ = reactor_->turn();
    control_frames_ = 0;
  }
  if (control_frames_ >= kControlFramesPerTurn) {
    return false;
  }
  ++control_frames_;
  return true;
}

void Shard::BeginDrain() {
  draining_ = true;
  for (auto& acceptor : acceptors_) {
    acceptor->Close();
  }
  for (auto& [conn, owned] : mains_) {
    if (conn->session() != nullptr && conn->session()->main() == conn) {
      conn->session()->Drain();
    }
  }
  CheckDrain();
}

void Shard::CheckDrain() {
  std::vector<MainConnection*> mains;
  for (auto& [conn, owned] : mains_) {
    mains.push_back(conn);
  }
  for (MainConnection* conn : mains) {
    if (conn->closed() || conn->closing()) {
      continue;
    }
    Session* session = conn->session();
    if ((session == nullptr || session->Drained()) && !conn->HasPendingOutput()) {
      // Every frame in flight for this node is delivered: tell it, then close.
      stats_.Add(Counter::kDrainDisconnects);
      conn->SendControl(kOpDisconnect, wire::Disconnect(), nullptr);
      conn->CloseAfterFlush();
    }
  }
  if (mains_.empty()) {
    drained_.store(true, std::memory_order_release);
    return;
  }
  reactor_->timers().Arm(&drain_timer_, reactor_->clock()->Now() + absl::Milliseconds(10));
}

Shard::Snapshot Shard::TakeSnapshot() const {
  Snapshot snap;
  snap.sessions = sessions_.size();
  snap.peers = static_cast<size_t>(live_peers_);
  snap.mains = mains_.size();
  snap.remembered = leases_.remembered_count();
  snap.staged_bytes = stage_budget_.used();
  return snap;
}

std::vector<Shard::SessionInfo> Shard::ListSessions(int64_t after, size_t max) const {
  std::vector<SessionInfo> out;
  const absl::Time now = reactor_->clock()->Now();
  auto it = after < 0 ? sessions_.begin() : sessions_.upper_bound(static_cast<uint32_t>(after));
  for (; it != sessions_.end() && out.size() < max; ++it) {
    const Session* session = it->second;
    SessionInfo info;
    info.key = it->first;
    info.id_prefix = IdPrefix(session->connection_id());
    info.proxy_address =
        FormatHostPort(context_->proxy_addresses[session->address()].advertise, session->port());
    info.peers = session->peer_count();
    info.frames_to_node = session->frames_to_node;
    info.bytes_to_node = session->bytes_to_node;
    info.age = now - session->started_at;
    const Lease* lease = leases_.Peek(session->connection_id());
    info.bound = lease != nullptr && !lease->owner_key.empty();
    if (const MainConnection* main = session->main()) {
      info.node = main->PeerName();
      info.frames_from_node = main->frames_from_node();
      info.bytes_from_node = main->bytes_from_node();
      info.idle = now - main->last_activity();
    }
    out.push_back(std::move(info));
  }
  return out;
}

void Shard::IndexSession(const Session* session) {
  sessions_[SessionKey(session->address(), session->port())] = session;
}

void Shard::UnindexSession(const Session* session) {
  auto it = sessions_.find(SessionKey(session->address(), session->port()));
  if (it != sessions_.end() && it->second == session) {
    sessions_.erase(it);
  }
}

void Shard::CloseAll() {
  reactor_->timers().Cancel(&drain_timer_);
  for (auto& acceptor : acceptors_) {
    acceptor->Close();
  }
  while (!mains_.empty()) {
    mains_.begin()->first->Close("relay shutting down");
  }
}

}  // namespace relay
