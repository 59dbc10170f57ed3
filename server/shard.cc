#include "server/shard.h"

#include <errno.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "core/log.h"
#include "net/accept_loop.h"
#include "net/socket_ops.h"
#include "server/main_connection.h"
#include "server/proxy_connection.h"
#include "server/session.h"

namespace relay {
namespace {

// Connections accepted per listener per turn before yielding to other work.
constexpr int kAcceptBudget = 64;
// Ports tried for one ProxyRequest before the request is refused.
constexpr size_t kBindTries = 64;

// What the shard keeps per lease: the session while it is live, the expiry timer while
// it is remembered.
struct SessionSlot final : public LeaseAttachment {
  std::unique_ptr<Session> session;
  net::Timer expiry;
};

SessionSlot* SlotOf(Lease* lease) { return static_cast<SessionSlot*>(lease->attachment.get()); }

// Moves a main connection to the shard that owns its lease.
class HandOffTask final : public net::Task {
 public:
  HandOffTask(Shard* target, net::UniqueFd fd, std::string input, uint64_t nonce,
              absl::Time last_activity, wire::Message request)
      : target_(target),
        fd_(std::move(fd)),
        input_(std::move(input)),
        nonce_(nonce),
        last_activity_(last_activity),
        request_(std::move(request)) {}
  void Run() override {
    target_->Adopt(std::move(fd_), std::move(input_), nonce_, last_activity_, std::move(request_));
  }

 private:
  Shard* target_;
  net::UniqueFd fd_;
  std::string input_;
  uint64_t nonce_;
  absl::Time last_activity_;
  wire::Message request_;
};

}  // namespace

Shard::Shard(int index, net::Reactor* reactor, const ServerContext* context)
    : index_(index),
      reactor_(reactor),
      context_(context),
      leases_(context->ports, context->config.lease_ttl),
      stage_left_(context->config.stage_budget_bytes) {}

Shard::~Shard() {
  CloseAll();
  if (stage_left_ != context_->config.stage_budget_bytes) {
    RELAY_LOG(ERROR) << "staging budget not fully returned at shutdown: "
                     << context_->config.stage_budget_bytes - stage_left_ << " bytes";
  }
  if (listening_) {
    reactor_->Unregister(listener_handle_, listener_.get());
  }
}

int Shard::HomeOf(absl::string_view connection_id, int shard_count) {
  return static_cast<int>(absl::HashOf(connection_id) % static_cast<size_t>(shard_count));
}

absl::Status Shard::Listen(net::UniqueFd listener) {
  listener_ = std::move(listener);
  absl::StatusOr<uint64_t> handle = reactor_->Register(listener_.get(), EPOLLIN, this);
  if (!handle.ok()) {
    return handle.status();
  }
  listener_handle_ = *handle;
  listening_ = true;
  return absl::OkStatus();
}

void Shard::OnEvents(uint32_t /*events*/) {
  if (!listening_) {
    return;
  }
  int error = 0;
  const net::AcceptOutcome outcome = net::AcceptSome(
      listener_.get(), kAcceptBudget,
      [this](net::UniqueFd fd) {
        stats_.Add(Counter::kMainAccepted);
        AddMain(std::move(fd), 1, reactor_->clock()->Now());
      },
      &error);
  if (outcome == net::AcceptOutcome::kBudgetSpent) {
    reactor_->MarkReady(this);  // more may be pending
  } else if (outcome == net::AcceptOutcome::kFailed) {
    // EMFILE and friends: the connection stays in the backlog and is retried when the
    // next one arrives.
    stats_.Add(Counter::kAcceptErrors);
    RELAY_LOG_ONCE(ERROR) << "accept on the main listener: " << strerror(error)
                          << " (raise the open-files limit; counted as accept_errors)";
  }
}

MainConnection* Shard::AddMain(net::UniqueFd fd, uint64_t next_nonce, absl::Time last_activity) {
  auto conn = std::make_unique<MainConnection>(this, std::move(fd), next_nonce, last_activity);
  MainConnection* raw = conn.get();
  mains_.emplace(raw, std::move(conn));
  if (!raw->Start()) {
    raw->Close("cannot register with epoll");
    return nullptr;
  }
  return raw;
}

void Shard::Adopt(net::UniqueFd fd, std::string input, uint64_t next_nonce,
                  absl::Time last_activity, wire::Message request) {
  MainConnection* conn = AddMain(std::move(fd), next_nonce, last_activity);
  if (conn == nullptr) {
    return;
  }
  if (OnProxyRequest(conn, request) == RequestOutcome::kAnswered) {
    // Frames the node sent after its ProxyRequest travelled with it.
    conn->SetPendingInput(std::move(input));
    conn->ProcessInput();
  }
}

Shard::RequestOutcome Shard::OnProxyRequest(MainConnection* conn, const wire::Message& request) {
  if (Session* session = conn->session()) {
    return Answer(conn, request, session->port());  // asked again: same address
  }
  const std::string& id = request.sender().connection_id();
  const int home = HomeOf(id, static_cast<int>(context_->shards.size()));
  if (home != index_) {
    HandOff(conn, request, home);
    return RequestOutcome::kMoved;
  }
  const absl::Time now = reactor_->clock()->Now();
  Lease* lease = leases_.Find(id, now);
  if (lease != nullptr && lease->live) {
    // Takeover: a newer main connection for a live session (a node that reconnected
    // before its old socket timed out). The session, its listener and peers stay.
    SessionSlot* slot = SlotOf(lease);
    MainConnection* old = slot->session->main();
    slot->session->AttachMain(conn);
    conn->set_session(slot->session.get());
    if (old != nullptr && old != conn) {
      old->set_session(nullptr);
      stats_.Add(Counter::kMainTakenOver);
      old->Close("taken over by a newer main connection");
    }
    return Answer(conn, request, lease->port);
  }
  if (lease != nullptr) {
    // Remembered: the same port again, if it can still be bound.
    net::UniqueFd listener = BindProxy(lease->port);
    if (!listener) {
      std::optional<uint16_t> port = context_->ports->AllocateUsable(
          [&](uint16_t p) { return (listener = BindProxy(p)).valid(); }, kBindTries);
      if (!port) {
        return Refuse(conn);
      }
      stats_.Add(Counter::kLeasePortRebound);
      RELAY_LOG_ONCE(WARNING) << "a remembered proxy port could not be bound again; the node "
                                 "got a new one (counted as lease_port_rebound)";
      leases_.ChangePort(lease, *port);
    }
    stats_.Add(Counter::kLeasesReused);
    reactor_->timers().Cancel(&SlotOf(lease)->expiry);
    leases_.MarkLive(lease);
    if (!StartSession(lease, id, std::move(listener), conn)) {
      return RequestOutcome::kClosed;
    }
    return Answer(conn, request, lease->port);
  }
  net::UniqueFd listener;
  std::optional<uint16_t> port = context_->ports->AllocateUsable(
      [&](uint16_t p) { return (listener = BindProxy(p)).valid(); }, kBindTries);
  if (!port) {
    return Refuse(conn);
  }
  lease = leases_.CreateLive(id, *port);
  lease->attachment = std::make_unique<SessionSlot>();
  if (!StartSession(lease, id, std::move(listener), conn)) {
    return RequestOutcome::kClosed;
  }
  return Answer(conn, request, *port);
}

net::UniqueFd Shard::BindProxy(uint16_t port) {
  absl::StatusOr<net::UniqueFd> fd =
      net::Listen(context_->config.listen.host, port, /*reuse_port=*/false, 1024);
  if (!fd.ok()) {
    stats_.Add(Counter::kProxyBindFailures);
    return net::UniqueFd();
  }
  return std::move(*fd);
}

bool Shard::StartSession(Lease* lease, absl::string_view id, net::UniqueFd listener,
                         MainConnection* conn) {
  SessionSlot* slot = SlotOf(lease);
  slot->session =
      std::make_unique<Session>(this, std::string(id), lease->port, std::move(listener));
  stats_.Add(Counter::kSessionsStarted);
  if (!slot->session->Start()) {
    conn->Close("cannot register the proxy listener");
    return false;
  }
  slot->session->AttachMain(conn);
  conn->set_session(slot->session.get());
  return true;
}

Shard::RequestOutcome Shard::Answer(MainConnection* conn, const wire::Message& request,
                                    uint16_t port) {
  wire::ProxyResponse response;
  response.set_origin_address(request.sender().address());
  response.set_proxy_address(absl::StrCat(context_->advertise_host, ":", port));
  conn->SendControl(kOpProxyResponse, response, &request);
  return conn->closed() ? RequestOutcome::kClosed : RequestOutcome::kAnswered;
}

Shard::RequestOutcome Shard::Refuse(MainConnection* conn) {
  stats_.Add(Counter::kPoolExhausted);
  RELAY_LOG_ONCE(WARNING) << "proxy port pool exhausted (" << context_->ports->size()
                          << " ports, all live or remembered): ProxyRequest refused with "
                             "Disconnect (counted as pool_exhausted)";
  conn->SendControl(kOpDisconnect, wire::Disconnect(), nullptr);
  conn->CloseAfterFlush();
  return RequestOutcome::kClosed;
}

void Shard::HandOff(MainConnection* conn, const wire::Message& request, int home) {
  stats_.Add(Counter::kMainHandedOff);
  auto task =
      std::make_unique<HandOffTask>(context_->shards[home], conn->TakeFd(), conn->TakeInput(),
                                    conn->next_nonce(), conn->last_activity(), request);
  conn->Close("handed off");
  reactor_->Post(context_->shards[home]->reactor(), std::move(task));
}

void Shard::OnMainClosed(MainConnection* conn) {
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
  reactor_->DeferDelete(std::move(slot->session));
  slot->expiry.set_callback([this, id] { OnLeaseTimer(id); });
  reactor_->timers().Arm(&slot->expiry, expires);
}

void Shard::OnLeaseTimer(std::string id) {
  // `id` is a copy: ExpireIfDue destroys the timer (and this callback's captures).
  if (leases_.ExpireIfDue(id, reactor_->clock()->Now())) {
    stats_.Add(Counter::kLeasesExpired);
  }
}

bool Shard::ReserveStage(uint64_t bytes) {
  if (bytes > stage_left_) {
    return false;
  }
  stage_left_ -= bytes;
  return true;
}

void Shard::ReleaseStage(uint64_t bytes) {
  stage_left_ += bytes;
  // Call back the oldest waiters whose needs the free budget covers (not all of them:
  // a herd would only fight over it). A woken peer that loses the race waits again.
  uint64_t free = stage_left_;
  while (!stage_waiters_.empty() && stage_waiters_.front().need <= free) {
    free -= stage_waiters_.front().need;
    ProxyConnection* conn = stage_waiters_.front().conn;
    stage_waiters_.pop_front();
    conn->waiting_for_stage = false;
    reactor_->MarkReady(conn);
  }
}

void Shard::WaitForStage(ProxyConnection* conn, uint64_t need) {
  if (!conn->waiting_for_stage) {
    conn->waiting_for_stage = true;
    stage_waiters_.push_back(StageWaiter{conn, need});
    stats_.Add(Counter::kProxyStageWaits);
    RELAY_LOG_ONCE(WARNING) << "the staging budget of a reactor is used up (--stage_budget);"
                               " peers wait for the nodes to drain (counted as "
                               "proxy_stage_waits)";
  }
}

void Shard::CancelWaitForStage(ProxyConnection* conn) {
  if (!conn->waiting_for_stage) {
    return;
  }
  conn->waiting_for_stage = false;
  for (auto it = stage_waiters_.begin(); it != stage_waiters_.end(); ++it) {
    if (it->conn == conn) {
      stage_waiters_.erase(it);
      break;
    }
  }
}

void Shard::CloseAll() {
  while (!mains_.empty()) {
    mains_.begin()->first->Close("relay shutting down");
  }
}

}  // namespace relay
