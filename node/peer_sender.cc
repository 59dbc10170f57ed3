#include "node/peer_sender.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/log.h"
#include "net/socket_ops.h"
#include "net/unique_fd.h"

namespace relay::node {

// One destination: its connection (if any) and the frames waiting for it, in order.
struct PeerSender::Peer {
  HostPort to;
  net::UniqueFd fd;
  bool connecting = false;
  absl::Time connect_deadline;
  absl::Time last_used;
  std::deque<Item> items;
};

// Every destination, by "HOST:PORT".
struct PeerSender::Peers : absl::flat_hash_map<std::string, Peer> {};

PeerSender::PeerSender(Options options) : options_(options) {
  RELAY_CHECK(pipe2(wake_, O_NONBLOCK | O_CLOEXEC) == 0);
  thread_ = std::thread([this] { Run(); });
}

PeerSender::~PeerSender() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  char c = 1;
  ssize_t ignored = write(wake_[1], &c, 1);
  (void)ignored;
  thread_.join();
  close(wake_[0]);
  close(wake_[1]);
}

size_t PeerSender::queued_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return queued_bytes_;
}

absl::Status PeerSender::Send(const HostPort& to, std::string frame, Done done) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) {
      return absl::CancelledError("the node is stopping");
    }
    if (queued_bytes_ + frame.size() > options_.max_queued_bytes && queued_bytes_ > 0) {
      return absl::ResourceExhaustedError(
          absl::StrCat(queued_bytes_, " bytes already wait to be sent (max_queued_bytes ",
                       options_.max_queued_bytes, "): slow down"));
    }
    queued_bytes_ += frame.size();
    inbox_.push_back(Item{to, std::move(frame), 0, std::move(done)});
  }
  char c = 1;
  ssize_t ignored = write(wake_[1], &c, 1);
  (void)ignored;
  return absl::OkStatus();
}

void PeerSender::Finish(Item& item, absl::Status status) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    queued_bytes_ -= item.frame.size();
  }
  if (item.done) {
    item.done(std::move(status));
  }
}

void PeerSender::FailAll(Peer& peer, const absl::Status& status) {
  while (!peer.items.empty()) {
    Item item = std::move(peer.items.front());
    peer.items.pop_front();
    Finish(item, status);
  }
}

void PeerSender::DropConnection(Peer& peer, const std::string& why) {
  peer.fd.Reset();
  peer.connecting = false;
  if (!peer.items.empty() && peer.items.front().written > 0) {
    Item item = std::move(peer.items.front());
    peer.items.pop_front();
    Finish(item, absl::UnavailableError(absl::StrCat("connection to ",
                                                     FormatHostPort(peer.to.host, peer.to.port),
                                                     " lost mid-frame: ", why)));
  }
}

bool PeerSender::TakeArrived(Peers& peers) {
  std::deque<Item> arrived;
  bool stopping;
  {
    std::lock_guard<std::mutex> lock(mu_);
    arrived.swap(inbox_);
    stopping = stop_;
  }
  const absl::Time now = absl::Now();
  for (Item& item : arrived) {
    Peer& peer = peers[FormatHostPort(item.to.host, item.to.port)];
    peer.to = item.to;
    peer.last_used = now;
    peer.items.push_back(std::move(item));
  }
  return !stopping;
}

void PeerSender::TendConnections(Peers& peers) {
  const absl::Time now = absl::Now();
  std::vector<std::string> idle;
  for (auto& [key, peer] : peers) {
    if (!peer.items.empty() && !peer.fd.valid()) {
      absl::StatusOr<net::UniqueFd> fd = net::StartConnect(peer.to.host, peer.to.port);
      if (!fd.ok()) {
        FailAll(peer, absl::UnavailableError(
                          absl::StrCat("cannot connect to ", key, ": ", fd.status().message())));
        continue;
      }
      peer.fd = std::move(*fd);
      peer.connecting = true;
      peer.connect_deadline = now + options_.connect_timeout;
      connections_opened_.fetch_add(1);
    }
    if (peer.connecting && now >= peer.connect_deadline) {
      peer.fd.Reset();
      peer.connecting = false;
      FailAll(peer, absl::DeadlineExceededError(absl::StrCat("connect to ", key, " timed out")));
    }
    if (peer.items.empty() && now - peer.last_used >= options_.idle_timeout) {
      idle.push_back(key);
    }
  }
  for (const std::string& key : idle) {
    peers.erase(key);  // closes the connection
  }
}

void PeerSender::PollPeers(Peers& peers) {
  std::vector<pollfd> fds = {{wake_[0], POLLIN, 0}};
  std::vector<Peer*> polled;
  for (auto& [key, peer] : peers) {
    if (peer.fd.valid()) {
      const short events = static_cast<short>(
          POLLIN | POLLRDHUP | (peer.connecting || !peer.items.empty() ? POLLOUT : 0));
      fds.push_back({peer.fd.get(), events, 0});
      polled.push_back(&peer);
    }
  }
  // Wake for the next idle expiry or connect deadline: at least once a second, and at
  // least once per idle_timeout.
  const int wait_ms = static_cast<int>(
      std::clamp<int64_t>(absl::ToInt64Milliseconds(options_.idle_timeout), 10, 1000));
  poll(fds.data(), fds.size(), wait_ms);
  if (fds[0].revents & POLLIN) {
    char buf[64];
    while (read(wake_[0], buf, sizeof(buf)) > 0) {
    }
  }
  for (size_t i = 0; i < polled.size(); ++i) {
    if (fds[i + 1].revents != 0 && ConnectionUsable(*polled[i], fds[i + 1].revents)) {
      WriteQueued(*polled[i]);
    }
  }
}

bool PeerSender::ConnectionUsable(Peer& peer, short revents) {
  if (peer.connecting) {
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(peer.fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0 || (revents & (POLLERR | POLLHUP))) {
      peer.fd.Reset();
      peer.connecting = false;
      FailAll(peer, absl::UnavailableError(absl::StrCat(
                        "cannot connect to ", FormatHostPort(peer.to.host, peer.to.port), ": ",
                        ErrnoText(err != 0 ? err : ECONNREFUSED))));
      return false;
    }
    if (!(revents & POLLOUT)) {
      return false;
    }
    peer.connecting = false;
  }
  if (revents & (POLLIN | POLLRDHUP | POLLHUP | POLLERR)) {
    // The relay never writes to a peer: readable means closed (idle timeout, a drain) or
    // reset.
    char byte;
    const ssize_t n = recv(peer.fd.get(), &byte, 1, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) || (revents & POLLERR)) {
      connections_closed_by_peer_.fetch_add(1);
      DropConnection(peer, n == 0 ? "closed by the relay" : ErrnoText(errno));
      return false;
    }
  }
  // A connection idle for a while may have been closed since the last poll: look before
  // starting a frame on it (what is written after a close is lost).
  if (!peer.items.empty() && peer.items.front().written == 0 &&
      absl::Now() - peer.last_used > absl::Milliseconds(500)) {
    char byte;
    const ssize_t n = recv(peer.fd.get(), &byte, 1, MSG_DONTWAIT | MSG_PEEK);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
      connections_closed_by_peer_.fetch_add(1);
      DropConnection(peer, "closed by the relay");
      return false;  // reconnected on the next round
    }
  }
  return true;
}

void PeerSender::WriteQueued(Peer& peer) {
  while (!peer.items.empty()) {
    Item& item = peer.items.front();
    const ssize_t n = ::send(peer.fd.get(), item.frame.data() + item.written,
                             item.frame.size() - item.written, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno != EAGAIN && errno != EINTR) {
        DropConnection(peer, ErrnoText(errno));
      }
      return;
    }
    item.written += static_cast<size_t>(n);
    peer.last_used = absl::Now();
    if (item.written < item.frame.size()) {
      return;  // the socket is full: POLLOUT again
    }
    Item done = std::move(peer.items.front());
    peer.items.pop_front();
    Finish(done, absl::OkStatus());
  }
}

void PeerSender::Run() {
  Peers peers;
  while (TakeArrived(peers)) {
    // Connect where frames wait; give up on connections that take too long; close the
    // idle ones. Then write what the sockets take.
    TendConnections(peers);
    PollPeers(peers);
  }
  for (auto& [key, peer] : peers) {
    FailAll(peer, absl::CancelledError("the node stopped before this message was sent"));
  }
}

}  // namespace relay::node
