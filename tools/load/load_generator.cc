#include "tools/load/load_generator.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/control_codec.h"
#include "core/log.h"
#include "core/process_stats.h"
#include "net/socket_ops.h"
#include "node/node_client.h"

namespace relay::load {
namespace {

int64_t MonoNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

void RaiseFdLimit() {
  rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

void SetNonBlocking(int fd) { (void)net::SetNonBlocking(fd); }

std::string FrameHeaderBytes(uint32_t network_id, uint32_t length) {
  std::string h(kFrameHeaderSize, '\0');
  EncodeFrameHeader(FrameHeader{network_id, kLoadFrameMarker, length},
                    reinterpret_cast<uint8_t*>(h.data()));
  return h;
}

// A node main connection's keepalive (the relay does not check signatures).
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

struct Conn {
  int fd = -1;
  bool sender = false;
  // Sender.
  bool finished = false;    // stopped at a frame boundary after the run (or lost)
  uint64_t sent_bytes = 0;  // frames written, header included
  size_t off = 0;           // position in the shared batch (throughput mode)
  std::string pending;      // stamped frames not yet written (rate mode)
  int64_t next_due_ns = 0;  // rate mode
  // Receiver: an incremental frame parser.
  uint8_t hdr[kFrameHeaderSize];
  size_t hdr_have = 0;
  uint64_t payload_left = 0;
  uint32_t length = 0;
  bool data = false;
  uint8_t ts[8];
  size_t ts_have = 0;
};

struct Shared {
  const LoadOptions* options = nullptr;
  std::string batch;  // whole frames back to back
  int64_t period_ns = 0;
  std::atomic<bool> stop{false};
  std::atomic<bool> stop_sending{false};  // senders finish their frame, then stop
  std::atomic<bool> measuring{false};
  uint64_t frame_size = 0;  // header + payload
};

class Worker {
 public:
  explicit Worker(Shared* shared) : shared_(shared) {
    ep_ = epoll_create1(EPOLL_CLOEXEC);
    buf_.resize(256 * 1024);
  }
  ~Worker() {
    for (Conn& c : conns_) {
      close(c.fd);
    }
    close(ep_);
  }
  void Add(int fd, bool sender) {
    SetNonBlocking(fd);
    if (sender) {
      // Real senders sit on other hosts; here their send queues would share the relay
      // host's TCP memory (tcp_mem). Autotuned to 4 MiB each, hundreds of senders push
      // the whole host into TCP memory pressure and the test measures that instead.
      int bytes = 512 * 1024;
      setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof(bytes));
    }
    Conn c;
    c.fd = fd;
    c.sender = sender;
    conns_.push_back(std::move(c));
    if (sender) {
      unfinished_senders.fetch_add(1);
    }
  }
  void Start() {
    std::mt19937_64 rng(conns_.size() + 17);
    for (size_t i = 0; i < conns_.size(); ++i) {
      Conn& c = conns_[i];
      if (c.sender && shared_->period_ns > 0) {
        c.next_due_ns = MonoNs() + static_cast<int64_t>(rng() % shared_->period_ns);
      }
      epoll_event ev;
      ev.events = c.sender ? (shared_->period_ns > 0 ? 0u : uint32_t{EPOLLOUT}) : EPOLLIN;
      ev.data.u64 = i;
      epoll_ctl(ep_, EPOLL_CTL_ADD, c.fd, &ev);
    }
    thread_ = std::thread([this] { Loop(); });
  }
  void Join() {
    if (thread_.joinable()) {
      thread_.join();
    }
  }
  std::atomic<uint64_t> frames{0};
  std::atomic<uint64_t> bytes{0};
  std::atomic<uint64_t> bad{0};
  // Connections the other side closed or reset before the run ended (a relay that died),
  // and node streams that ended inside a frame.
  std::atomic<uint64_t> lost{0};
  std::atomic<uint64_t> cut{0};
  // Every data frame received, measured or not, and (once stop_sending) the frames the
  // senders wrote whole and how many senders have not reached a frame boundary yet.
  std::atomic<uint64_t> received_frames{0};
  std::atomic<uint64_t> sent_frames{0};
  std::atomic<int> unfinished_senders{0};
  std::vector<uint64_t> latency_ns;

 private:
  void Loop() {
    epoll_event events[256];
    const bool paced = shared_->period_ns > 0;
    while (!shared_->stop.load(std::memory_order_relaxed)) {
      timespec timeout{0, 100 * 1000 * 1000};
      if (paced) {
        int64_t next = MonoNs() + 1000000;
        for (const Conn& c : conns_) {
          if (c.sender) {
            next = std::min(next, c.next_due_ns);
          }
        }
        const int64_t wait = std::max<int64_t>(0, next - MonoNs());
        timeout = timespec{0, static_cast<long>(wait)};
      }
      const int n = epoll_pwait2(ep_, events, 256, &timeout, nullptr);
      // Receivers first and until drained (bounded): the node side must never be the
      // bottleneck, or the generator would measure itself.
      for (int i = 0; i < n; ++i) {
        Conn& c = conns_[events[i].data.u64];
        if (!c.sender) {
          for (int reads = 0; reads < 64 && Receive(c); ++reads) {
          }
        }
      }
      for (int i = 0; i < n; ++i) {
        Conn& c = conns_[events[i].data.u64];
        if (c.sender && !c.finished) {
          paced ? Flush(c) : SendBatch(c);
        }
      }
      if (shared_->stop_sending.load(std::memory_order_relaxed)) {
        // The run is over: each sender completes the frame it is in, then stops, so every
        // frame written can be accounted for at the nodes.
        for (Conn& c : conns_) {
          if (c.sender && !c.finished) {
            paced ? Flush(c) : SendBatch(c);
            const bool boundary = paced ? c.pending.empty() : c.off % shared_->frame_size == 0;
            if (boundary && !c.finished) {
              Finish(c);
            }
          }
        }
        continue;
      }
      if (paced) {
        const int64_t now = MonoNs();
        for (Conn& c : conns_) {
          if (c.sender && c.next_due_ns <= now) {
            while (c.next_due_ns <= now && c.pending.size() < (4u << 20)) {
              AppendStampedFrame(&c.pending);
              c.next_due_ns += shared_->period_ns;
            }
            Flush(c);
          }
        }
      }
    }
  }

  void SendBatch(Conn& c) {
    const std::string& batch = shared_->batch;
    const bool stopping = shared_->stop_sending.load(std::memory_order_relaxed);
    for (int i = 0; i < 2; ++i) {
      size_t len = batch.size() - c.off;
      if (stopping) {
        len = (shared_->frame_size - c.off % shared_->frame_size) % shared_->frame_size;
        if (len == 0) {
          return;  // at a frame boundary: done
        }
      }
      const ssize_t n = ::send(c.fd, batch.data() + c.off, len, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n <= 0) {
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
          SenderLost(c);
        }
        return;
      }
      c.sent_bytes += static_cast<uint64_t>(n);
      c.off = (c.off + static_cast<size_t>(n)) % batch.size();
    }
  }

  void Finish(Conn& c) {
    c.finished = true;
    epoll_ctl(ep_, EPOLL_CTL_DEL, c.fd, nullptr);
    sent_frames.fetch_add(c.sent_bytes / shared_->frame_size);
    unfinished_senders.fetch_sub(1);
  }

  void AppendStampedFrame(std::string* out) {
    const uint32_t len = shared_->options->frame_bytes;
    out->append(FrameHeaderBytes(shared_->options->network_id, len));
    const int64_t now = MonoNs();
    char ts[8];
    memcpy(ts, &now, sizeof(ts));
    out->append(ts, std::min<size_t>(8, len));
    if (len > 8) {
      out->append(len - 8, 'r');
    }
  }

  void Flush(Conn& c) {
    while (!c.pending.empty()) {
      const ssize_t n =
          ::send(c.fd, c.pending.data(), c.pending.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n <= 0) {
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
          SenderLost(c);
        }
        return;
      }
      c.sent_bytes += static_cast<uint64_t>(n);
      c.pending.erase(0, static_cast<size_t>(n));
    }
  }

  // A sender's connection failed (reset by a dying relay): stop polling it, count it.
  void SenderLost(Conn& c) {
    epoll_ctl(ep_, EPOLL_CTL_DEL, c.fd, nullptr);
    c.pending.clear();
    c.next_due_ns = INT64_MAX;
    if (!c.finished) {
      c.finished = true;  // what it wrote whole still counts as sent
      sent_frames.fetch_add(c.sent_bytes / shared_->frame_size);
      unfinished_senders.fetch_sub(1);
    }
    if (!shared_->stop.load(std::memory_order_relaxed)) {
      lost.fetch_add(1, std::memory_order_relaxed);
    }
  }

  // Reads and parses once; returns true if a full buffer was read (more may be waiting).
  bool Receive(Conn& c) {
    const ssize_t n = ::recv(c.fd, buf_.data(), buf_.size(), MSG_DONTWAIT);
    if (n <= 0) {
      if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        epoll_ctl(ep_, EPOLL_CTL_DEL, c.fd, nullptr);
        if (!shared_->stop.load(std::memory_order_relaxed)) {
          lost.fetch_add(1, std::memory_order_relaxed);
          if (c.hdr_have > 0) {
            cut.fetch_add(1, std::memory_order_relaxed);  // the stream ended inside a frame
          }
        }
      }
      return false;
    }
    const bool measuring = shared_->measuring.load(std::memory_order_relaxed);
    const uint8_t* p = buf_.data();
    size_t left = static_cast<size_t>(n);
    uint64_t done_frames = 0, done_bytes = 0;
    while (left > 0) {
      if (c.hdr_have < kFrameHeaderSize) {
        const size_t take = std::min(left, kFrameHeaderSize - c.hdr_have);
        memcpy(c.hdr + c.hdr_have, p, take);
        c.hdr_have += take;
        p += take;
        left -= take;
        if (c.hdr_have == kFrameHeaderSize) {
          const FrameHeader h = DecodeFrameHeader(c.hdr);
          c.length = h.length;
          c.payload_left = h.length;
          c.data = h.compress_info == kLoadFrameMarker;
          c.ts_have = 0;
          if (c.data && (h.network_id != shared_->options->network_id ||
                         h.length != shared_->options->frame_bytes)) {
            bad.fetch_add(1, std::memory_order_relaxed);
          }
        }
        continue;
      }
      const size_t take = static_cast<size_t>(std::min<uint64_t>(left, c.payload_left));
      if (c.ts_have < 8) {
        const size_t t = std::min(take, 8 - c.ts_have);
        memcpy(c.ts + c.ts_have, p, t);
        c.ts_have += t;
      }
      p += take;
      left -= take;
      c.payload_left -= take;
      if (c.payload_left == 0) {
        if (c.data) {
          ++done_frames;
          done_bytes += c.length;
          if (measuring && shared_->period_ns > 0 && c.length >= 8) {
            int64_t sent;
            memcpy(&sent, c.ts, 8);
            latency_ns.push_back(static_cast<uint64_t>(std::max<int64_t>(0, MonoNs() - sent)));
          }
        }
        c.hdr_have = 0;
      }
    }
    received_frames.fetch_add(done_frames, std::memory_order_relaxed);
    if (measuring) {
      frames.fetch_add(done_frames, std::memory_order_relaxed);
      bytes.fetch_add(done_bytes, std::memory_order_relaxed);
    }
    return static_cast<size_t>(n) == buf_.size();
  }

  Shared* shared_;
  int ep_;
  std::vector<Conn> conns_;
  std::vector<uint8_t> buf_;
  std::thread thread_;
};

struct NodeEnd {
  int fd = -1;          // relay mode: the main connection; direct: the listener
  std::string address;  // where senders connect
};

// Opens `count` node sessions on the relay, `threads` at a time. Returns the main fds.
absl::StatusOr<std::vector<NodeEnd>> ConnectNodes(const LoadOptions& o, int count, int threads) {
  std::vector<NodeEnd> ends(count);
  std::mutex mu;
  absl::Status first_error;
  std::atomic<int> next{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < std::max(1, threads); ++t) {
    pool.emplace_back([&] {
      for (int i = next.fetch_add(1); i < count; i = next.fetch_add(1)) {
        node::NodeOptions no;
        no.relays = {o.relay};
        no.network_id = o.network_id;
        no.max_backoff = absl::Milliseconds(200);
        node::NodeClient client(Identity::Generate(), no);
        absl::StatusOr<std::string> address = client.Connect(absl::Seconds(10));
        if (!address.ok()) {
          std::lock_guard<std::mutex> lock(mu);
          if (first_error.ok()) {
            first_error = address.status();
          }
          return;
        }
        ends[i].address = *address;
        ends[i].fd = client.TakeMainConnection().Release();
      }
    });
  }
  for (auto& t : pool) {
    t.join();
  }
  if (!first_error.ok()) {
    for (NodeEnd& e : ends) {
      if (e.fd >= 0) {
        close(e.fd);
      }
    }
    return first_error;
  }
  return ends;
}

int AcceptOne(int listener) {
  pollfd p{listener, POLLIN, 0};
  if (poll(&p, 1, 10000) <= 0) {
    return -1;
  }
  return net::Accept(listener);
}

std::string BuildBatch(const LoadOptions& o) {
  const uint64_t frame = kFrameHeaderSize + uint64_t{o.frame_bytes};
  const uint64_t count = std::clamp<uint64_t>((256 * 1024) / frame, 1, 4096);
  std::string one = FrameHeaderBytes(o.network_id, o.frame_bytes);
  one.append(o.frame_bytes, 'b');
  std::string batch;
  batch.reserve(count * frame);
  for (uint64_t i = 0; i < count; ++i) {
    batch += one;
  }
  return batch;
}

// False once `pid` has exited (also while it is a zombie its parent has not reaped yet).
bool ProcessAlive(pid_t pid) {
  FILE* f = fopen(absl::StrCat("/proc/", pid, "/stat").c_str(), "r");
  if (f == nullptr) {
    return false;
  }
  char line[512];
  const bool read = fgets(line, sizeof(line), f) != nullptr;
  fclose(f);
  const char* paren = read ? strrchr(line, ')') : nullptr;
  return paren == nullptr || (paren[1] == ' ' && paren[2] != 'Z' && paren[2] != 'X');
}

double Percentile(std::vector<uint64_t>& v, double q) {
  if (v.empty()) {
    return 0;
  }
  const size_t k = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<ptrdiff_t>(k), v.end());
  return static_cast<double>(v[k]) / 1000.0;
}

}  // namespace

absl::StatusOr<LoadResult> LoadGenerator::Run() {
  const LoadOptions& o = options_;
  RaiseFdLimit();
  const int threads = o.threads > 0 ? o.threads : static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  LoadResult result;
  result.mode = o.direct
                    ? (o.via ? absl::StrCat("direct via ", FormatHostPort(o.via->host, o.via->port))
                             : std::string("direct"))
                    : absl::StrCat("relay ", FormatHostPort(o.relay.host, o.relay.port));
  if (o.relay_pid > 0) {
    result.relay_rss_before_kib = ProcessRssKib(o.relay_pid);
  }

  // Idle sessions first: the scale measurement.
  std::vector<NodeEnd> idle;
  if (o.idle_nodes > 0) {
    if (o.direct) {
      return absl::InvalidArgumentError("--idle_nodes needs a relay (not --direct)");
    }
    const absl::Time start = absl::Now();
    absl::StatusOr<std::vector<NodeEnd>> ends = ConnectNodes(o, o.idle_nodes, 2 * threads);
    if (!ends.ok()) {
      return ends.status();
    }
    idle = std::move(*ends);
    result.idle_setup_s = absl::ToDoubleSeconds(absl::Now() - start);
    if (o.relay_pid > 0) {
      absl::SleepFor(absl::Milliseconds(200));
      result.relay_rss_per_idle_kib =
          static_cast<double>(ProcessRssKib(o.relay_pid) - result.relay_rss_before_kib) /
          o.idle_nodes;
    }
  }

  // Node ends and senders.
  std::vector<NodeEnd> nodes;
  std::vector<int> listeners;
  if (o.direct) {
    if (o.sink && o.nodes != 1) {
      return absl::InvalidArgumentError("--sink works with --nodes=1");
    }
    for (int i = 0; i < o.nodes; ++i) {
      const HostPort bind = o.sink.value_or(HostPort{"127.0.0.1", 0});
      absl::StatusOr<net::UniqueFd> l = net::Listen(bind.host, bind.port, false, 4096);
      if (!l.ok()) {
        return absl::UnavailableError(absl::StrCat("node listener: ", l.status().message()));
      }
      NodeEnd end;
      end.address = o.via ? FormatHostPort(o.via->host, o.via->port)
                          : FormatHostPort(bind.host, net::LocalPort(l->get()));
      end.fd = l->Release();
      nodes.push_back(end);
    }
  } else if (o.nodes > 0) {
    absl::StatusOr<std::vector<NodeEnd>> ends = ConnectNodes(o, o.nodes, 2 * threads);
    if (!ends.ok()) {
      return ends.status();
    }
    nodes = std::move(*ends);
  }

  Shared shared;
  shared.options = &o;
  shared.batch = BuildBatch(o);
  shared.frame_size = kFrameHeaderSize + o.frame_bytes;
  const int total_senders = o.nodes * o.senders;
  if (o.rate > 0 && total_senders > 0) {
    shared.period_ns = static_cast<int64_t>(1e9 * total_senders / o.rate);
  }
  std::vector<std::unique_ptr<Worker>> workers;
  for (int i = 0; i < threads; ++i) {
    workers.push_back(std::make_unique<Worker>(&shared));
  }
  size_t rr = 0;
  std::vector<int> measured_mains;  // relay mode: the measured nodes' main connections
  for (NodeEnd& node : nodes) {
    for (int s = 0; s < o.senders; ++s) {
      absl::StatusOr<HostPort> to = node::ParsePeerAddress(node.address);
      if (!to.ok()) {
        return to.status();
      }
      absl::StatusOr<net::UniqueFd> fd = net::ConnectBlocking(to->host, to->port);
      if (!fd.ok()) {
        return absl::UnavailableError(
            absl::StrCat("sender to ", node.address, ": ", fd.status().message()));
      }
      if (o.sender_notsent_lowat > 0) {
        const int lowat = static_cast<int>(std::min<uint32_t>(o.sender_notsent_lowat, 1 << 30));
        if (setsockopt(fd->get(), IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof(lowat)) != 0) {
          return absl::InvalidArgumentError(
              absl::StrCat("--sender_notsent_lowat: setsockopt: ", ErrnoText(errno)));
        }
      }
      workers[rr++ % workers.size()]->Add(fd->Release(), true);
      if (o.direct) {
        const int accepted = AcceptOne(node.fd);
        if (accepted < 0) {
          return absl::UnavailableError("the node listener accepted nothing");
        }
        workers[rr++ % workers.size()]->Add(accepted, false);
      }
    }
    if (!o.direct) {
      measured_mains.push_back(node.fd);  // kept alive by the keepalive thread too
      workers[rr++ % workers.size()]->Add(node.fd, false);
      node.fd = -1;
    }
  }

  // Keepalives for every relay session (idle ones are also drained here).
  std::atomic<bool> keepalive_stop{false};
  std::thread keepalive([&] {
    const std::string frame = KeepaliveFrame(o.network_id);
    char sink[4096];
    absl::Time next = absl::Now() + o.keepalive_interval;
    while (!keepalive_stop.load()) {
      absl::SleepFor(absl::Milliseconds(50));
      for (const NodeEnd& e : idle) {
        while (::recv(e.fd, sink, sizeof(sink), MSG_DONTWAIT) > 0) {
        }
      }
      if (absl::Now() < next) {
        continue;
      }
      next = absl::Now() + o.keepalive_interval;
      for (const NodeEnd& e : idle) {
        ::send(e.fd, frame.data(), frame.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      }
      // The measured nodes too (their workers read the answers): a run longer than the
      // relay's keepalive timeout must not lose its nodes.
      for (int fd : measured_mains) {
        ::send(fd, frame.data(), frame.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      }
    }
  });

  for (auto& w : workers) {
    w->Start();
  }
  // The warm-up: traffic flows, nothing is counted (frames, bytes, latency, the relay's
  // CPU), so the measurement sees each path in its steady state, as iperf3 --omit does.
  const absl::Time warm_end = absl::Now() + o.warmup;
  bool relay_died = false;
  while (absl::Now() < warm_end && !relay_died) {
    absl::SleepFor(std::min(absl::Milliseconds(100), warm_end - absl::Now()));
    relay_died = o.relay_pid > 0 && !ProcessAlive(o.relay_pid);
    if (o.relay_pid > 0 && !relay_died) {
      result.relay_rss_peak_kib = std::max(result.relay_rss_peak_kib, ProcessRssKib(o.relay_pid));
    }
  }
  const double cpu_before = o.relay_pid > 0 ? ProcessCpuSeconds(o.relay_pid) : 0;
  const double own_before = ProcessCpuSeconds(getpid());
  const double host_before = HostBusyCpuSeconds();
  if (o.relay_pid > 0) {
    result.relay_rss_peak_kib = std::max(result.relay_rss_peak_kib, ProcessRssKib(o.relay_pid));
  }
  shared.measuring.store(true);
  const absl::Time t0 = absl::Now();
  const absl::Time end = t0 + o.seconds;
  absl::Time next_report = t0 + absl::Seconds(1);
  uint64_t last_bytes = 0, last_frames = 0;
  while (!relay_died && absl::Now() < end) {
    absl::SleepFor(std::min(absl::Milliseconds(100), end - absl::Now()));
    if (o.relay_pid > 0 && !ProcessAlive(o.relay_pid)) {
      relay_died = true;
      break;
    }
    if (o.relay_pid > 0) {
      result.relay_rss_peak_kib = std::max(result.relay_rss_peak_kib, ProcessRssKib(o.relay_pid));
    }
    if (o.progress && absl::Now() >= next_report) {
      uint64_t b = 0, f = 0;
      for (auto& w : workers) {
        b += w->bytes.load();
        f += w->frames.load();
      }
      fprintf(stderr, "relay-load: t=%.0fs frames/s=%.0f payload Gbit/s=%.2f\n",
              absl::ToDoubleSeconds(absl::Now() - t0), static_cast<double>(f - last_frames),
              static_cast<double>(b - last_bytes) * 8 / 1e9);
      last_bytes = b;
      last_frames = f;
      next_report += absl::Seconds(1);
    }
  }
  shared.measuring.store(false);
  result.seconds = absl::ToDoubleSeconds(absl::Now() - t0);
  const double cpu_after = o.relay_pid > 0 ? ProcessCpuSeconds(o.relay_pid) : 0;
  const double own_after = ProcessCpuSeconds(getpid());
  const double host_after = HostBusyCpuSeconds();
  // Senders finish their frames; then every frame sent should reach its node (bounded).
  shared.stop_sending.store(true);
  const absl::Time drain_deadline = absl::Now() + absl::Seconds(10);
  int unfinished = 0;
  for (bool done = false; !done && absl::Now() < drain_deadline && !relay_died;) {
    absl::SleepFor(absl::Milliseconds(5));
    uint64_t sent = 0, received = 0;
    unfinished = 0;
    for (auto& w : workers) {
      sent += w->sent_frames.load();
      received += w->received_frames.load();
      unfinished += w->unfinished_senders.load();
    }
    done = unfinished == 0 && received >= sent;
  }
  shared.stop.store(true);
  for (auto& w : workers) {
    w->Join();
  }
  keepalive_stop.store(true);
  keepalive.join();

  std::vector<uint64_t> latency;
  for (auto& w : workers) {
    result.frames += w->frames.load();
    result.payload_bytes += w->bytes.load();
    result.bad_frames += w->bad.load();
    result.lost_connections += w->lost.load();
    result.cut_frames += w->cut.load();
    result.frames_sent += w->sent_frames.load();
    result.frames_received += w->received_frames.load();
    latency.insert(latency.end(), w->latency_ns.begin(), w->latency_ns.end());
  }
  workers.clear();  // closes senders and receivers
  for (const NodeEnd& e : nodes) {
    if (e.fd >= 0) {
      close(e.fd);
    }
  }
  for (const NodeEnd& e : idle) {
    close(e.fd);
  }
  result.frames_per_s = static_cast<double>(result.frames) / result.seconds;
  result.gbit_per_s = static_cast<double>(result.payload_bytes) * 8 / 1e9 / result.seconds;
  result.latency_samples = latency.size();
  result.p50_us = Percentile(latency, 0.50);
  result.p99_us = Percentile(latency, 0.99);
  result.p999_us = Percentile(latency, 0.999);
  result.max_us =
      latency.empty()
          ? 0
          : static_cast<double>(*std::max_element(latency.begin(), latency.end())) / 1000.0;
  if (relay_died) {
    return absl::UnavailableError(absl::StrCat("the relay (pid ", o.relay_pid, ") died after ",
                                               absl::StrFormat("%.1f", result.seconds),
                                               " s of the run; no result"));
  }
  if (result.lost_connections > 0) {
    return absl::UnavailableError(absl::StrCat(
        result.lost_connections, " connections were closed by the other side during the run (",
        result.cut_frames,
        " node streams ended inside a frame): did the relay die or drop "
        "them? no result"));
  }
  if (unfinished > 0) {
    // A frame begun and never finished: the other side stopped taking the sender's bytes.
    // Counting only frames written whole would call a frozen relay "no frame lost".
    return absl::DeadlineExceededError(
        absl::StrCat(unfinished,
                     " senders could not finish the frame they were writing within 10 s after "
                     "the run: the other side stopped taking their bytes (a stall); no result"));
  }
  result.lost_frames =
      result.frames_sent > result.frames_received ? result.frames_sent - result.frames_received : 0;
  if (result.lost_frames > 0) {
    return absl::DataLossError(absl::StrCat(
        result.lost_frames, " of ", result.frames_sent,
        " frames the senders wrote whole never reached their node (waited 10 s after the run)"));
  }
  const double gb = static_cast<double>(result.payload_bytes) / 1e9;
  if (o.relay_pid > 0) {
    result.relay_cpu_s = cpu_after - cpu_before;
    result.relay_cpu_s_per_gb = gb > 0 ? result.relay_cpu_s / gb : 0;
  }
  result.load_cpu_s_per_gb = gb > 0 ? (own_after - own_before) / gb : 0;
  result.host_cpu_s_per_gb = gb > 0 && host_before > 0 ? (host_after - host_before) / gb : 0;
  return result;
}

std::string FormatTable(const LoadOptions& o, const LoadResult& r) {
  std::string out;
  auto row = [&](const std::string& k, const std::string& v) {
    absl::StrAppend(&out, absl::StrFormat("%-22s %s\n", k, v));
  };
  row("path", r.mode);
  row("nodes x senders", absl::StrCat(o.nodes, " x ", o.senders));
  row("frame payload bytes", absl::StrCat(o.frame_bytes));
  row("seconds", absl::StrFormat("%.2f", r.seconds));
  if (o.warmup > absl::ZeroDuration()) {
    row("warm-up seconds", absl::StrFormat("%.2f (not counted)", absl::ToDoubleSeconds(o.warmup)));
  }
  row("frames/s", absl::StrFormat("%.0f", r.frames_per_s));
  row("payload Gbit/s", absl::StrFormat("%.3f", r.gbit_per_s));
  row("bad frames", absl::StrCat(r.bad_frames));
  row("frames sent/received",
      absl::StrCat(r.frames_sent, " / ", r.frames_received, " (", r.lost_frames, " lost)"));
  if (r.latency_samples > 0) {
    row("latency us p50/p99/p99.9/max",
        absl::StrFormat("%.1f / %.1f / %.1f / %.1f (%d samples)", r.p50_us, r.p99_us, r.p999_us,
                        r.max_us, r.latency_samples));
  }
  row("load CPU s per GB", absl::StrFormat("%.3f (senders and nodes)", r.load_cpu_s_per_gb));
  row("host CPU s per GB",
      absl::StrFormat("%.3f (every CPU busy, all processes and the kernel)", r.host_cpu_s_per_gb));
  if (o.relay_pid > 0) {
    row("relay CPU s", absl::StrFormat("%.3f", r.relay_cpu_s));
    row("relay CPU s per GB", absl::StrFormat("%.3f", r.relay_cpu_s_per_gb));
    row("relay RSS KiB before/peak",
        absl::StrCat(r.relay_rss_before_kib, " / ", r.relay_rss_peak_kib));
  }
  if (o.idle_nodes > 0) {
    row("idle sessions", absl::StrCat(o.idle_nodes));
    row("idle setup s", absl::StrFormat("%.3f", r.idle_setup_s));
    if (o.relay_pid > 0) {
      row("relay RSS KiB/session", absl::StrFormat("%.2f", r.relay_rss_per_idle_kib));
    }
  }
  return out;
}

std::string FormatJson(const LoadOptions& o, const LoadResult& r) {
  // What was not measured is null, never a 0 that reads like a measurement.
  auto num = [](bool measured, double v, int decimals) {
    return measured ? absl::StrFormat("%.*f", decimals, v) : std::string("null");
  };
  const bool latency = r.latency_samples > 0;
  const bool relay = o.relay_pid > 0;
  const bool idle = o.idle_nodes > 0;
  return absl::StrCat(
      absl::StrFormat(
          "{\"path\":\"%s\",\"nodes\":%d,\"senders\":%d,\"frame_bytes\":%u,\"seconds\":%.3f,"
          "\"warmup_s\":%.3f,"
          "\"frames\":%u,\"frames_per_s\":%.1f,\"gbit_per_s\":%.4f,\"bad_frames\":%u,"
          "\"cut_frames\":%u,\"frames_sent\":%u,\"frames_received\":%u,\"lost_frames\":%u,"
          "\"latency_samples\":%u,",
          r.mode, o.nodes, o.senders, o.frame_bytes, r.seconds, absl::ToDoubleSeconds(o.warmup),
          r.frames, r.frames_per_s, r.gbit_per_s, r.bad_frames, r.cut_frames, r.frames_sent,
          r.frames_received, r.lost_frames, r.latency_samples),
      "\"p50_us\":", num(latency, r.p50_us, 2), ",\"p99_us\":", num(latency, r.p99_us, 2),
      ",\"p999_us\":", num(latency, r.p999_us, 2), ",\"max_us\":", num(latency, r.max_us, 2),
      ",\"relay_cpu_s\":", num(relay, r.relay_cpu_s, 4),
      ",\"relay_cpu_s_per_gb\":", num(relay, r.relay_cpu_s_per_gb, 4),
      ",\"load_cpu_s_per_gb\":", absl::StrFormat("%.4f", r.load_cpu_s_per_gb),
      ",\"host_cpu_s_per_gb\":", num(r.host_cpu_s_per_gb > 0, r.host_cpu_s_per_gb, 4),
      ",\"relay_rss_before_kib\":", num(relay, static_cast<double>(r.relay_rss_before_kib), 0),
      ",\"relay_rss_peak_kib\":", num(relay, static_cast<double>(r.relay_rss_peak_kib), 0),
      ",\"idle_nodes\":", o.idle_nodes, ",\"idle_setup_s\":", num(idle, r.idle_setup_s, 4),
      ",\"relay_rss_per_idle_kib\":", num(idle && relay, r.relay_rss_per_idle_kib, 3), "}");
}

}  // namespace relay::load
