#include "tools/load/session_keeper.h"

#include <errno.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "core/control_codec.h"
#include "core/frame_header.h"
#include "core/identity.h"
#include "node/node_client.h"
#include "proto/relay.pb.h"

namespace relay::load {
namespace {

constexpr int kRehomeThreads = 8;

// A node main connection's Keepalive (the relay does not check its signature).
std::string KeepaliveFrame(uint32_t network_id) {
  wire::Message msg;
  msg.mutable_sender()->set_net_key("relay-load");
  msg.mutable_sender()->set_address("tcp://relay-load");
  msg.set_opcode(kOpKeepalive);
  msg.set_netid(network_id);
  const std::string body = msg.SerializeAsString();
  std::string h(kFrameHeaderSize, '\0');
  EncodeFrameHeader(FrameHeader{network_id, 0, static_cast<uint32_t>(body.size())},
                    reinterpret_cast<uint8_t*>(h.data()));
  return h + body;
}

}  // namespace

SessionKeeper::SessionKeeper(const LoadOptions& options, const LoadShared* shared)
    : o_(options), shared_(shared), keepalive_(KeepaliveFrame(options.network_id)) {
  ep_ = epoll_create1(EPOLL_CLOEXEC);
}

SessionKeeper::~SessionKeeper() {
  Stop();
  for (const Node& n : nodes_) {
    if (n.idle && n.fd >= 0) {
      close(n.fd);
    }
  }
  close(ep_);
}

int SessionKeeper::AddNode(int fd, bool idle) {
  Node n;
  n.fd = fd;
  n.idle = idle;
  nodes_.push_back(std::move(n));
  return static_cast<int>(nodes_.size()) - 1;
}

int SessionKeeper::AddIdle(int fd) { return AddNode(fd, true); }
int SessionKeeper::AddMeasured(int fd) { return AddNode(fd, false); }

void SessionKeeper::Start() {
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (nodes_[i].idle) {
      epoll_event ev{EPOLLIN | EPOLLRDHUP, {.u64 = i}};
      epoll_ctl(ep_, EPOLL_CTL_ADD, nodes_[i].fd, &ev);
    }
  }
  if (o_.failover) {
    for (int i = 0; i < kRehomeThreads; ++i) {
      rehome_threads_.emplace_back([this] { RehomeLoop(); });
    }
  }
  start_ns_ = MonoNs();
  thread_ = std::thread([this] { Loop(); });
}

void SessionKeeper::MeasuredLost(int node) {
  std::lock_guard<std::mutex> lock(mu_);
  measured_lost_.push_back(node);
}

void SessionKeeper::Stop() {
  if (!thread_.joinable()) {
    return;
  }
  {
    // Nodes still looking for a relay get until their deadline.
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, absl::ToChronoSeconds(kRehomeDeadline), [&] { return rehoming_ == 0; });
  }
  stop_.store(true);
  thread_.join();
  {
    std::lock_guard<std::mutex> lock(mu_);
    rehome_stop_ = true;
  }
  cv_.notify_all();
  for (std::thread& t : rehome_threads_) {
    t.join();
  }
  rehome_threads_.clear();
  Adopt();
  result_.rehome_failed += to_rehome_.size();
  to_rehome_.clear();
}

void SessionKeeper::Loop() {
  epoll_event events[256];
  while (!stop_.load()) {
    const int n = epoll_wait(ep_, events, 256, 5);
    const int64_t now = MonoNs();
    for (int i = 0; i < n; ++i) {
      const int node = static_cast<int>(events[i].data.u64);
      if (nodes_[node].alive && !Read(nodes_[node], now)) {
        Lost(node, now);
      }
    }
    Adopt();
    SendDue(now);
  }
}

void SessionKeeper::SendDue(int64_t now) {
  const uint64_t count = nodes_.size();
  const int64_t interval = absl::ToInt64Nanoseconds(o_.keepalive_interval);
  if (count == 0 || interval <= 0) {
    return;
  }
  // Keepalive number s is node s % count's, due at start + (s + 1) * interval / count.
  const bool measuring = shared_->measuring.load(std::memory_order_relaxed);
  for (;;) {
    const uint64_t s = next_beat_;
    const int64_t due =
        start_ns_ + static_cast<int64_t>((static_cast<__int128>(s) + 1) * interval / count);
    if (due > now) {
      return;
    }
    ++next_beat_;
    const int node = static_cast<int>(s % count);
    Node& n = nodes_[node];
    if (!n.alive) {
      continue;
    }
    if (n.idle && n.keepalive_sent_ns != 0 && ++n.missed >= kMaxMissedKeepalives) {
      Lost(node, now);  // a relay that stopped answering: frozen, or cut off
      continue;
    }
    if (::send(n.fd, keepalive_.data(), keepalive_.size(), MSG_DONTWAIT | MSG_NOSIGNAL) < 0 &&
        errno != EAGAIN) {
      continue;  // a closed connection: Read (or the worker) reports it
    }
    if (n.idle) {
      n.keepalive_sent_ns = now;
      n.sent_measuring = measuring;
      result_.keepalives_sent += measuring ? 1 : 0;
    }
  }
}

bool SessionKeeper::Read(Node& n, int64_t now) {
  char buf[4096];
  for (;;) {
    const ssize_t got = ::recv(n.fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) {
      return false;
    }
    if (got < 0) {
      return true;
    }
    n.in.append(buf, static_cast<size_t>(got));
    size_t off = 0;
    while (n.in.size() - off >= kFrameHeaderSize) {
      const FrameHeader h = DecodeFrameHeader(reinterpret_cast<const uint8_t*>(n.in.data() + off));
      if (n.in.size() - off < h.frame_size()) {
        break;
      }
      wire::Message msg;
      if (msg.ParseFromArray(n.in.data() + off + kFrameHeaderSize, static_cast<int>(h.length)) &&
          msg.opcode() == kOpKeepaliveResponse && n.keepalive_sent_ns != 0) {
        if (n.sent_measuring) {
          ++result_.keepalives_answered;
          result_.keepalive_rtt_ns.push_back(static_cast<uint64_t>(now - n.keepalive_sent_ns));
        }
        n.keepalive_sent_ns = 0;
        n.missed = 0;
      }
      off += h.frame_size();
    }
    n.in.erase(0, off);
  }
}

void SessionKeeper::Lost(int node, int64_t now) {
  Node& n = nodes_[node];
  n.alive = false;
  if (n.idle) {
    close(n.fd);  // also leaves the epoll set
  }
  n.fd = -1;
  n.in.clear();
  n.keepalive_sent_ns = 0;
  n.missed = 0;
  if (stop_.load()) {
    return;
  }
  if (!o_.failover) {
    ++result_.lost;
    return;
  }
  n.lost_ns = now;
  {
    std::lock_guard<std::mutex> lock(mu_);
    to_rehome_.push_back(Loss{node, n.relay, now});
    ++rehoming_;
  }
  cv_.notify_one();
}

void SessionKeeper::Adopt() {
  std::vector<int> lost;
  std::vector<Rehomed> found;
  {
    std::lock_guard<std::mutex> lock(mu_);
    lost.swap(measured_lost_);
    found.swap(rehomed_);
  }
  const int64_t now = MonoNs();
  for (int node : lost) {
    if (nodes_[node].alive && !nodes_[node].idle) {
      Lost(node, now);  // the worker owns (and closes) the old connection
    }
  }
  for (const Rehomed& r : found) {
    if (r.fd < 0) {
      ++result_.rehome_failed;
      continue;
    }
    Node& n = nodes_[r.node];
    n.fd = r.fd;
    n.idle = true;  // a measured node comes back idle: its senders knew the old address
    n.alive = true;
    n.relay = r.relay;
    ++result_.rehomed;
    result_.rehome_ns.push_back(r.ns);
    epoll_event ev{EPOLLIN | EPOLLRDHUP, {.u64 = static_cast<uint64_t>(r.node)}};
    epoll_ctl(ep_, EPOLL_CTL_ADD, n.fd, &ev);
  }
}

void SessionKeeper::RehomeLoop() {
  for (;;) {
    Loss loss;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return rehome_stop_ || !to_rehome_.empty(); });
      if (rehome_stop_) {
        return;
      }
      loss = to_rehome_.front();
      to_rehome_.pop_front();
    }
    uint32_t now_at = 0;
    const int fd = Rehome(loss.node, loss.relay, loss.lost_ns, &now_at);
    {
      std::lock_guard<std::mutex> lock(mu_);
      rehomed_.push_back(
          Rehomed{loss.node, fd, now_at, static_cast<uint64_t>(MonoNs() - loss.lost_ns)});
      --rehoming_;
    }
    cv_.notify_all();
  }
}

HostPort SessionKeeper::RelayOf(int node, uint32_t position) const {
  // Node k's order: the first relay, then the others rotated by k.
  const size_t n = o_.relays.size();
  position %= static_cast<uint32_t>(n);
  if (position == 0 || n == 1) {
    return o_.relays[0];
  }
  return o_.relays[1 + (position - 1 + static_cast<size_t>(node)) % (n - 1)];
}

int SessionKeeper::Rehome(int node, uint32_t relay, int64_t lost_ns, uint32_t* now_at) {
  const int64_t deadline = lost_ns + absl::ToInt64Nanoseconds(kRehomeDeadline);
  const uint32_t count = static_cast<uint32_t>(o_.relays.size());
  // The relays after the lost one in the node's order, the lost one last (it may be back).
  uint32_t from = relay + 1;
  while (MonoNs() < deadline) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (rehome_stop_) {
        return -1;
      }
    }
    node::NodeOptions no;
    for (uint32_t k = 0; k < count; ++k) {
      no.relays.push_back(RelayOf(node, from + k));
    }
    no.network_id = o_.network_id;
    no.io_timeout = absl::Seconds(2);
    no.initial_backoff = absl::Milliseconds(50);
    no.max_backoff = absl::Milliseconds(500);
    node::NodeClient client(Identity::Generate(), no);
    const absl::Duration left = absl::Nanoseconds(deadline - MonoNs());
    absl::StatusOr<std::string> address = client.Connect(std::min(left, absl::Seconds(5)));
    if (address.ok()) {
      const std::string attached = client.current_relay();
      for (uint32_t k = 0; k < count; ++k) {
        const HostPort hp = RelayOf(node, from + k);
        if (FormatHostPort(hp.host, hp.port) == attached) {
          *now_at = (from + k) % count;
        }
      }
      return client.TakeMainConnection().Release();
    }
    if (absl::IsFailedPrecondition(address.status())) {
      ++from;  // that relay's ports are all taken: the next one first
    }
  }
  return -1;
}

}  // namespace relay::load
