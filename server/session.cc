#include "server/session.h"

#include <errno.h>

#include <cstring>
#include <utility>

#include "core/log.h"
#include "net/accept_loop.h"
#include "net/socket_ops.h"
#include "server/main_connection.h"
#include "server/proxy_connection.h"
#include "server/shard.h"

namespace relay {
namespace {
constexpr int kAcceptBudget = 64;
// A peer's socket receive buffer is capped: left to autotuning (up to tcp_rmem[2], 32 MiB
// here) hundreds of senders pushing at a node that reads slowly would pin gigabytes of
// kernel memory, until TCP memory pressure stalls every connection of the host, the
// node's main connection included. 512 KiB (1 MiB as the kernel counts) keeps loopback
// and LAN streams at full speed.
constexpr int kPeerReceiveBuffer = 512 * 1024;
}  // namespace

Session::Session(Shard* shard, std::string connection_id, uint16_t port, net::UniqueFd listener)
    : shard_(shard),
      connection_id_(std::move(connection_id)),
      port_(port),
      listener_(std::move(listener)) {}

Session::~Session() { Shutdown(); }

bool Session::Start() {
  absl::StatusOr<uint64_t> handle = shard_->reactor()->Register(listener_.get(), EPOLLIN, this);
  if (!handle.ok()) {
    return false;
  }
  handle_ = *handle;
  registered_ = true;
  return true;
}

void Session::OnEvents(uint32_t /*events*/) {
  if (!listener_) {
    return;
  }
  int error = 0;
  const net::AcceptOutcome outcome = net::AcceptSome(
      listener_.get(), kAcceptBudget,
      [this](net::UniqueFd fd) {
        net::SetReceiveBuffer(fd.get(), kPeerReceiveBuffer);
        auto conn = std::make_unique<ProxyConnection>(shard_, this, std::move(fd));
        if (conn->Start()) {
          shard_->stats().Add(Counter::kProxyAccepted);
          peers_.emplace(conn.get(), std::move(conn));
        }
      },
      &error);
  if (outcome == net::AcceptOutcome::kBudgetSpent) {
    shard_->reactor()->MarkReady(this);
  } else if (outcome == net::AcceptOutcome::kFailed) {
    shard_->stats().Add(Counter::kAcceptErrors);
    RELAY_LOG_ONCE(ERROR) << "accept on a proxy listener: " << strerror(error)
                          << " (counted as accept_errors)";
  }
}

void Session::AttachMain(MainConnection* main) {
  if (main_ != nullptr && main_ != main) {
    main_->GiveQueueTo(main);
  }
  main_ = main;
}

void Session::Shutdown() {
  if (registered_) {
    shard_->reactor()->Unregister(handle_, listener_.get());
    registered_ = false;
  }
  listener_.Reset();
  for (auto& [raw, conn] : peers_) {
    if (main_ != nullptr) {
      main_->Forget(raw);
    }
    raw->Close();
    shard_->reactor()->DeferDelete(std::move(conn));
  }
  peers_.clear();
  main_ = nullptr;
}

void Session::ReapIfFinished(ProxyConnection* conn) {
  if (!conn->finished()) {
    return;
  }
  if (main_ != nullptr) {
    main_->Forget(conn);
  }
  auto it = peers_.find(conn);
  if (it != peers_.end()) {
    shard_->reactor()->DeferDelete(std::move(it->second));
    peers_.erase(it);
  }
}

}  // namespace relay
