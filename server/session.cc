#include "server/session.h"

#include <errno.h>

#include <cstring>
#include <utility>
#include <vector>

#include "base/log.h"
#include "net/socket_ops.h"
#include "server/main_connection.h"
#include "server/proxy_connection.h"
#include "server/shard.h"

namespace relay {

Session::Session(Shard* shard, std::string connection_id, uint16_t port, net::UniqueFd listener,
                 uint64_t source_ip, uint8_t address)
    : shard_(shard),
      connection_id_(std::move(connection_id)),
      port_(port),
      address_(address),
      source_ip_(source_ip),
      acceptor_(
          shard->reactor(), std::move(listener), shard->AcceptorOptions(),
          [this](net::UniqueFd fd) { OnPeer(std::move(fd)); },
          [shard](int error) { shard->OnAcceptRefused("a proxy listener", error); }) {}

Session::~Session() {
  Shutdown();
  shard_->source_limits().Release(SourceLimits::kSession, source_ip_);
}

bool Session::Start() {
  if (!acceptor_.Start().ok()) {
    return false;
  }
  shard_->IndexSession(this);
  return true;
}

void Session::OnPeer(net::UniqueFd fd) {
  const uint64_t ip = net::PeerSourceKey(fd.get());
  if (!shard_->source_limits().Acquire(SourceLimits::kPeer, ip)) {
    shard_->stats().Add(Counter::kLimitPeersPerIp);
    RELAY_LOG_LIMITED(WARNING) << "peer connection from " << net::PeerName(fd.get())
                               << " refused: that IP holds --max_peers_per_ip="
                               << shard_->context().config.max_peers_per_ip
                               << " connections (counted as limit_peers_per_ip)";
    return;  // fd closes
  }
  // Capped (--peer_receive_buffer): left to autotuning (up to tcp_rmem[2], 32 MiB here),
  // hundreds of senders pushing at a node that reads slowly would pin gigabytes of kernel
  // memory, until TCP memory pressure stalls every connection of the host.
  net::SetReceiveBuffer(fd.get(), static_cast<int>(shard_->context().config.peer_receive_buffer));
  // Counted before Start: a connection that fails to register is closed (and counted
  // closed) by its destructor, so accepted - closed = open stays exact.
  shard_->stats().Add(Counter::kProxyAccepted);
  auto conn = std::make_unique<ProxyConnection>(shard_, this, std::move(fd), ip);
  if (conn->Start()) {
    peers_.emplace(conn.get(), std::move(conn));
    shard_->PeersChanged(1);
  }
}

bool Session::AdoptPeer(net::UniqueFd fd, uint64_t source_ip) {
  // A socket handed over by a live upgrade gets this process's --peer_receive_buffer (an
  // earlier version may have given it a larger one).
  net::SetReceiveBuffer(fd.get(), static_cast<int>(shard_->context().config.peer_receive_buffer));
  auto conn = std::make_unique<ProxyConnection>(shard_, this, std::move(fd), source_ip);
  if (!conn->Start()) {
    return false;
  }
  peers_.emplace(conn.get(), std::move(conn));
  shard_->PeersChanged(1);
  return true;
}

void Session::Freeze() {
  acceptor_.Pause();
  for (auto& [raw, conn] : peers_) {
    raw->PauseAtBoundary();
  }
}

void Session::Thaw() {
  acceptor_.Resume();
  for (auto& [raw, conn] : peers_) {
    raw->Resume();
  }
}

bool Session::AtRest() const {
  for (const auto& [raw, conn] : peers_) {
    if (!raw->AtRest()) {
      return false;
    }
  }
  return true;
}

size_t Session::DropRestless() {
  std::vector<ProxyConnection*> restless;
  for (auto& [raw, conn] : peers_) {
    if (!raw->AtRest()) {
      restless.push_back(raw);
    }
  }
  for (ProxyConnection* raw : restless) {
    if (main_ != nullptr) {
      main_->Forget(raw);
    }
    raw->Discard();
    auto it = peers_.find(raw);
    shard_->reactor()->DeferDelete(std::move(it->second));
    peers_.erase(it);
  }
  shard_->PeersChanged(-static_cast<int64_t>(restless.size()));
  return restless.size();
}

std::vector<const ProxyConnection*> Session::peers() const {
  std::vector<const ProxyConnection*> out;
  out.reserve(peers_.size());
  for (const auto& [raw, conn] : peers_) {
    out.push_back(raw);
  }
  return out;
}

bool Session::NodeDraining() const { return main_ != nullptr && main_->writable(); }

void Session::AttachMain(MainConnection* main) {
  if (main_ != nullptr && main_ != main) {
    main_->GiveQueueTo(main);
  }
  main_ = main;
}

void Session::Shutdown() {
  shard_->UnindexSession(this);
  shard_->PeersChanged(-static_cast<int64_t>(peers_.size()));
  acceptor_.Close();
  for (auto& [raw, conn] : peers_) {
    if (main_ != nullptr) {
      main_->Forget(raw);
    }
    raw->Discard();
    shard_->reactor()->DeferDelete(std::move(conn));
  }
  peers_.clear();
  main_ = nullptr;
}

void Session::Drain() {
  acceptor_.Close();
  std::vector<ProxyConnection*> peers;
  for (auto& [raw, conn] : peers_) {
    peers.push_back(raw);
  }
  for (ProxyConnection* peer : peers) {
    peer->StopAtBoundary();  // may reap it (deleted at the end of the turn)
  }
}

void Session::ReapIfFinished(ProxyConnection* conn) {
  if (!conn->finished()) {
    return;
  }
  if (main_ != nullptr) {
    main_->Forget(conn);
  }
  conn->Discard();  // a partial frame's bytes go back to the budget now
  auto it = peers_.find(conn);
  if (it != peers_.end()) {
    shard_->reactor()->DeferDelete(std::move(it->second));
    peers_.erase(it);
    shard_->PeersChanged(-1);
  }
}

}  // namespace relay
