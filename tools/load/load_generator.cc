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
#include "base/log.h"
#include "base/process_stats.h"
#include "core/control_codec.h"
#include "net/socket_ops.h"
#include "node/node_client.h"
#include "tools/load/load_worker.h"
#include "tools/load/session_keeper.h"

namespace relay::load {
namespace {

void RaiseFdLimit() {
  rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

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
        no.relays = {o.relays[0]};  // every node starts on the first
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

std::string RelayList(const std::vector<HostPort>& relays) {
  std::string out;
  for (const HostPort& r : relays) {
    absl::StrAppend(&out, out.empty() ? "" : ",", FormatHostPort(r.host, r.port));
  }
  return out;
}

int AcceptOne(int listener) {
  pollfd p{listener, POLLIN, 0};
  if (poll(&p, 1, 10000) <= 0) {
    return -1;
  }
  return net::Accept(listener);
}

// A sender's connection to `address` (a proxy address, or --direct's listener), with
// --sender_notsent_lowat.
absl::StatusOr<net::UniqueFd> ConnectSender(const LoadOptions& o, const std::string& address) {
  absl::StatusOr<HostPort> to = node::ParsePeerAddress(address);
  if (!to.ok()) {
    return to.status();
  }
  absl::StatusOr<net::UniqueFd> fd = net::ConnectBlocking(to->host, to->port);
  if (!fd.ok()) {
    return absl::UnavailableError(absl::StrCat("sender to ", address, ": ", fd.status().message()));
  }
  if (o.sender_notsent_lowat > 0) {
    const int lowat = static_cast<int>(std::min<uint32_t>(o.sender_notsent_lowat, 1 << 30));
    if (setsockopt(fd->get(), IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof(lowat)) != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--sender_notsent_lowat: setsockopt: ", ErrnoText(errno)));
    }
  }
  return fd;
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

// The largest of nanosecond samples, in microseconds (0 if none).
double MaxUs(const std::vector<uint64_t>& v) {
  return v.empty() ? 0 : static_cast<double>(*std::max_element(v.begin(), v.end())) / 1000.0;
}

// One run of the load: its connections, workers and measurements, in the order Run()
// takes its steps.
class LoadRun {
 public:
  explicit LoadRun(const LoadOptions& o)
      : o_(o),
        threads_(o.threads > 0 ? o.threads : static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN))) {}
  ~LoadRun();

  // Idle sessions first: the scale measurement (setup time, relay RSS per session).
  absl::Status ConnectIdle();
  // The measured nodes: sessions on the relay, or (--direct) local listeners.
  absl::Status OpenNodes();
  // The senders to every node, spread over the workers with the node ends.
  absl::Status OpenSenders();
  // Keepalives for every relay session, and (--failover) their moves between relays.
  void StartKeepalives();
  // Warm-up, then the measured seconds, then the senders finish their frames and the
  // nodes take every frame written (bounded); stops the workers.
  void Measure();
  // The result, or why there is none (the relay died, connections or frames were lost).
  absl::StatusOr<LoadResult> Finish();

 private:
  // Sleeps up to `until` in 100 ms steps, watching the relay (alive, peak RSS); calls
  // `each` every step. False if the relay died.
  template <typename F>
  bool Watch(absl::Time until, F each);
  void Progress(absl::Time t0, absl::Time* next_report, uint64_t* last_bytes,
                uint64_t* last_frames);
  void DrainFrames();
  void Collect();
  // The SessionKeeper's part: Keepalives, lost sessions, failover.
  void CollectSessions();
  absl::Status Verdict() const;

  const LoadOptions& o_;
  const int threads_;
  LoadResult result_;
  std::vector<NodeEnd> nodes_;
  LoadShared shared_;
  SessionKeeper keeper_{o_, &shared_};  // every relay session's Keepalives and failover
  std::vector<std::unique_ptr<LoadWorker>> workers_;
  bool relay_died_ = false;  // --relay_pid died (without --failover: the run fails)
  int unfinished_ = 0;
  double relay_cpu_ = 0, own_cpu_ = 0, host_cpu_ = 0;  // over the measured seconds
  std::vector<uint64_t> latency_;
};

LoadRun::~LoadRun() {
  shared_.stop.store(true);
  for (auto& w : workers_) {
    w->Join();
  }
  keeper_.Stop();
  workers_.clear();  // closes senders and receivers (the keeper its idle sessions)
  for (const NodeEnd& e : nodes_) {
    if (e.fd >= 0) {
      close(e.fd);
    }
  }
}

absl::Status LoadRun::ConnectIdle() {
  result_.mode =
      o_.direct ? (o_.via ? absl::StrCat("direct via ", FormatHostPort(o_.via->host, o_.via->port))
                          : std::string("direct"))
                : absl::StrCat(o_.relays.size() > 1 ? "relays " : "relay ", RelayList(o_.relays),
                               o_.failover ? " (failover)" : "");
  if (o_.relay_pid > 0) {
    result_.relay_rss_before_kib = ProcessRssKib(o_.relay_pid);
  }
  if (o_.idle_nodes == 0) {
    return absl::OkStatus();
  }
  if (o_.direct) {
    return absl::InvalidArgumentError("--idle_nodes needs a relay (not --direct)");
  }
  const absl::Time start = absl::Now();
  absl::StatusOr<std::vector<NodeEnd>> ends = ConnectNodes(o_, o_.idle_nodes, 2 * threads_);
  if (!ends.ok()) {
    return ends.status();
  }
  for (const NodeEnd& e : *ends) {
    keeper_.AddIdle(e.fd);
  }
  result_.idle_setup_s = absl::ToDoubleSeconds(absl::Now() - start);
  if (o_.relay_pid > 0) {
    absl::SleepFor(absl::Milliseconds(200));
    result_.relay_rss_per_idle_kib =
        static_cast<double>(ProcessRssKib(o_.relay_pid) - result_.relay_rss_before_kib) /
        o_.idle_nodes;
  }
  return absl::OkStatus();
}

absl::Status LoadRun::OpenNodes() {
  if (!o_.direct) {
    if (o_.nodes == 0) {
      return absl::OkStatus();
    }
    absl::StatusOr<std::vector<NodeEnd>> ends = ConnectNodes(o_, o_.nodes, 2 * threads_);
    if (!ends.ok()) {
      return ends.status();
    }
    nodes_ = std::move(*ends);
    return absl::OkStatus();
  }
  if (o_.sink && o_.nodes != 1) {
    return absl::InvalidArgumentError("--sink works with --nodes=1");
  }
  for (int i = 0; i < o_.nodes; ++i) {
    const HostPort bind = o_.sink.value_or(HostPort{"127.0.0.1", 0});
    absl::StatusOr<net::UniqueFd> l = net::Listen(bind.host, bind.port, false, 4096);
    if (!l.ok()) {
      return absl::UnavailableError(absl::StrCat("node listener: ", l.status().message()));
    }
    NodeEnd end;
    end.address = o_.via ? FormatHostPort(o_.via->host, o_.via->port)
                         : FormatHostPort(bind.host, net::LocalPort(l->get()));
    end.fd = l->Release();
    nodes_.push_back(end);
  }
  return absl::OkStatus();
}

absl::Status LoadRun::OpenSenders() {
  shared_.options = &o_;
  shared_.batch = BuildBatch(o_);
  shared_.frame_size = kFrameHeaderSize + o_.frame_bytes;
  const int total_senders = o_.nodes * o_.senders;
  if (o_.rate > 0 && total_senders > 0) {
    shared_.period_ns = static_cast<int64_t>(1e9 * total_senders / o_.rate);
  }
  for (int i = 0; i < threads_; ++i) {
    workers_.push_back(std::make_unique<LoadWorker>(&shared_));
  }
  size_t rr = 0;
  auto next_worker = [&]() -> LoadWorker& { return *workers_[rr++ % workers_.size()]; };
  for (NodeEnd& node : nodes_) {
    for (int s = 0; s < o_.senders; ++s) {
      absl::StatusOr<net::UniqueFd> fd = ConnectSender(o_, node.address);
      if (!fd.ok()) {
        return fd.status();
      }
      next_worker().Add(fd->Release(), true);
      if (o_.direct) {
        const int accepted = AcceptOne(node.fd);
        if (accepted < 0) {
          return absl::UnavailableError("the node listener accepted nothing");
        }
        next_worker().Add(accepted, false);
      }
    }
    if (!o_.direct) {
      // The worker reads it; the keeper sends its Keepalives.
      next_worker().Add(node.fd, false, keeper_.AddMeasured(node.fd));
      node.fd = -1;
    }
  }
  return absl::OkStatus();
}

void LoadRun::StartKeepalives() {
  if (o_.failover) {
    shared_.node_lost = [this](int node) { keeper_.MeasuredLost(node); };
  }
  keeper_.Start();
}

template <typename F>
bool LoadRun::Watch(absl::Time until, F each) {
  while ((!relay_died_ || o_.failover) && absl::Now() < until) {
    absl::SleepFor(std::min(absl::Milliseconds(100), until - absl::Now()));
    if (o_.relay_pid > 0 && !relay_died_ && !ProcessAlive(o_.relay_pid)) {
      relay_died_ = true;  // with --failover the nodes move on, and so does the run
      if (!o_.failover) {
        break;
      }
    }
    if (o_.relay_pid > 0 && !relay_died_) {
      result_.relay_rss_peak_kib =
          std::max(result_.relay_rss_peak_kib, ProcessRssKib(o_.relay_pid));
    }
    each();
  }
  return !relay_died_ || o_.failover;
}

void LoadRun::Progress(absl::Time t0, absl::Time* next_report, uint64_t* last_bytes,
                       uint64_t* last_frames) {
  if (!o_.progress || absl::Now() < *next_report) {
    return;
  }
  uint64_t b = 0, f = 0;
  for (auto& w : workers_) {
    b += w->bytes.load();
    f += w->frames.load();
  }
  fprintf(stderr, "relay-load: t=%.0fs frames/s=%.0f payload Gbit/s=%.2f\n",
          absl::ToDoubleSeconds(absl::Now() - t0), static_cast<double>(f - *last_frames),
          static_cast<double>(b - *last_bytes) * 8 / 1e9);
  *last_bytes = b;
  *last_frames = f;
  *next_report += absl::Seconds(1);
}

void LoadRun::Measure() {
  for (auto& w : workers_) {
    w->Start();
  }
  // The warm-up: traffic flows, nothing is counted (frames, bytes, latency, the relay's
  // CPU), so the measurement sees each path in its steady state, as iperf3 --omit does.
  Watch(absl::Now() + o_.warmup, [] {});
  const double cpu_before = o_.relay_pid > 0 ? ProcessCpuSeconds(o_.relay_pid) : 0;
  const double own_before = ProcessCpuSeconds(getpid());
  const double host_before = HostBusyCpuSeconds();
  if (o_.relay_pid > 0 && !relay_died_) {
    result_.relay_rss_peak_kib = std::max(result_.relay_rss_peak_kib, ProcessRssKib(o_.relay_pid));
  }
  shared_.measuring.store(true);
  const absl::Time t0 = absl::Now();
  absl::Time next_report = t0 + absl::Seconds(1);
  uint64_t last_bytes = 0, last_frames = 0;
  Watch(t0 + o_.seconds, [&] { Progress(t0, &next_report, &last_bytes, &last_frames); });
  shared_.measuring.store(false);
  result_.seconds = absl::ToDoubleSeconds(absl::Now() - t0);
  relay_cpu_ = o_.relay_pid > 0 && !relay_died_ ? ProcessCpuSeconds(o_.relay_pid) - cpu_before : 0;
  own_cpu_ = ProcessCpuSeconds(getpid()) - own_before;
  host_cpu_ = host_before > 0 ? HostBusyCpuSeconds() - host_before : 0;
  DrainFrames();
  shared_.stop.store(true);
  for (auto& w : workers_) {
    w->Join();
  }
  keeper_.Stop();  // waits for the nodes still moving to another relay (bounded)
  Collect();
}

void LoadRun::DrainFrames() {
  // Senders finish their frames; then every frame sent should reach its node (bounded).
  shared_.stop_sending.store(true);
  // With --failover, frames in a relay that died never come: the wait ends once nothing
  // has arrived for a second.
  const absl::Time drain_deadline = absl::Now() + absl::Seconds(10);
  absl::Time last_progress = absl::Now();
  uint64_t last_received = 0;
  for (bool done = false;
       !done && absl::Now() < drain_deadline && !(relay_died_ && !o_.failover);) {
    absl::SleepFor(absl::Milliseconds(5));
    uint64_t sent = 0, received = 0;
    unfinished_ = 0;
    for (auto& w : workers_) {
      sent += w->sent_frames.load();
      received += w->received_frames.load();
      unfinished_ += w->unfinished_senders.load();
    }
    if (received != last_received) {
      last_received = received;
      last_progress = absl::Now();
    }
    done = unfinished_ == 0 &&
           (received >= sent || (o_.failover && absl::Now() - last_progress > absl::Seconds(1)));
  }
}

void LoadRun::Collect() {
  LoadResult& r = result_;
  for (auto& w : workers_) {
    r.frames += w->frames.load();
    r.payload_bytes += w->bytes.load();
    r.bad_frames += w->bad.load();
    r.lost_connections += w->lost.load();
    r.cut_frames += w->cut.load();
    r.frames_sent += w->sent_frames.load();
    r.frames_received += w->received_frames.load();
    latency_.insert(latency_.end(), w->latency_ns.begin(), w->latency_ns.end());
  }
  r.frames_per_s = static_cast<double>(r.frames) / r.seconds;
  r.gbit_per_s = static_cast<double>(r.payload_bytes) * 8 / 1e9 / r.seconds;
  r.latency_samples = latency_.size();
  r.p50_us = Percentile(latency_, 0.50);
  r.p99_us = Percentile(latency_, 0.99);
  r.p999_us = Percentile(latency_, 0.999);
  r.max_us = MaxUs(latency_);
  r.lost_frames = r.frames_sent > r.frames_received ? r.frames_sent - r.frames_received : 0;
  const double gb = static_cast<double>(r.payload_bytes) / 1e9;
  if (o_.relay_pid > 0) {
    r.relay_cpu_s = relay_cpu_;
    r.relay_cpu_s_per_gb = gb > 0 ? relay_cpu_ / gb : 0;
  }
  r.load_cpu_s_per_gb = gb > 0 ? own_cpu_ / gb : 0;
  r.host_cpu_s_per_gb = gb > 0 ? host_cpu_ / gb : 0;
  r.relay_died = relay_died_;
  CollectSessions();
}

void LoadRun::CollectSessions() {
  LoadResult& r = result_;
  KeeperResult k = keeper_.result();
  r.lost_connections += k.lost;
  r.keepalives_sent = k.keepalives_sent;
  r.keepalives_answered = k.keepalives_answered;
  r.keepalive_p50_us = Percentile(k.keepalive_rtt_ns, 0.50);
  r.keepalive_p99_us = Percentile(k.keepalive_rtt_ns, 0.99);
  r.keepalive_max_us = MaxUs(k.keepalive_rtt_ns);
  r.rehomed_nodes = k.rehomed;
  r.rehome_failed = k.rehome_failed;
  r.rehome_p50_s = Percentile(k.rehome_ns, 0.50) / 1e6;
  r.rehome_p99_s = Percentile(k.rehome_ns, 0.99) / 1e6;
  r.rehome_max_s = MaxUs(k.rehome_ns) / 1e6;
}

absl::Status LoadRun::Verdict() const {
  const LoadResult& r = result_;
  if (r.rehome_failed > 0) {
    return absl::UnavailableError(absl::StrCat(
        r.rehome_failed, " nodes lost their relay and found no other in the --relay list within ",
        absl::FormatDuration(SessionKeeper::kRehomeDeadline), "; no result"));
  }
  if (o_.failover && r.rehomed_nodes > 0) {
    // A relay was lost and its nodes moved: what it held (connections, frames in flight)
    // is reported, not an error.
    return absl::OkStatus();
  }
  if (relay_died_) {
    return absl::UnavailableError(absl::StrCat("the relay (pid ", o_.relay_pid, ") died after ",
                                               absl::StrFormat("%.1f", r.seconds),
                                               " s of the run; no result"));
  }
  if (r.lost_connections > 0) {
    return absl::UnavailableError(absl::StrCat(
        r.lost_connections, " connections were closed by the other side during the run (",
        r.cut_frames,
        " node streams ended inside a frame): did the relay die or drop them? no result"));
  }
  if (unfinished_ > 0) {
    // A frame begun and never finished: the other side stopped taking the sender's bytes.
    // Counting only frames written whole would call a frozen relay "no frame lost".
    return absl::DeadlineExceededError(
        absl::StrCat(unfinished_,
                     " senders could not finish the frame they were writing within 10 s after "
                     "the run: the other side stopped taking their bytes (a stall); no result"));
  }
  if (r.lost_frames > 0) {
    return absl::DataLossError(absl::StrCat(
        r.lost_frames, " of ", r.frames_sent,
        " frames the senders wrote whole never reached their node (waited 10 s after the run)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<LoadResult> LoadRun::Finish() {
  if (absl::Status verdict = Verdict(); !verdict.ok()) {
    return verdict;
  }
  return result_;
}

// FormatTable's rows about sessions: the idle ones, their Keepalives, failover.
void AppendSessionRows(const LoadOptions& o, const LoadResult& r, std::string* out) {
  auto row = [&](const std::string& k, const std::string& v) {
    absl::StrAppend(out, absl::StrFormat("%-22s %s\n", k, v));
  };
  if (o.idle_nodes > 0) {
    row("idle sessions", absl::StrCat(o.idle_nodes));
    row("idle setup s", absl::StrFormat("%.3f", r.idle_setup_s));
    if (o.relay_pid > 0) {
      row("relay RSS KiB/session", absl::StrFormat("%.2f", r.relay_rss_per_idle_kib));
    }
    row("keepalives answered", absl::StrCat(r.keepalives_answered, " / ", r.keepalives_sent));
    if (r.keepalives_answered > 0) {
      row("keepalive us p50/p99/max", absl::StrFormat("%.1f / %.1f / %.1f", r.keepalive_p50_us,
                                                      r.keepalive_p99_us, r.keepalive_max_us));
    }
  }
  if (o.failover) {
    row("rehomed nodes", absl::StrCat(r.rehomed_nodes, " (", r.rehome_failed, " found no relay)"));
    if (r.rehomed_nodes > 0) {
      row("rehome s p50/p99/max",
          absl::StrFormat("%.3f / %.3f / %.3f", r.rehome_p50_s, r.rehome_p99_s, r.rehome_max_s));
      row("lost with the relay",
          absl::StrCat(r.lost_connections, " connections, ", r.lost_frames, " frames"));
    }
  }
}

}  // namespace

absl::StatusOr<LoadResult> LoadGenerator::Run() {
  RaiseFdLimit();
  LoadRun run(options_);
  absl::Status status = run.ConnectIdle();
  if (status.ok()) {
    status = run.OpenNodes();
  }
  if (status.ok()) {
    status = run.OpenSenders();
  }
  if (!status.ok()) {
    return status;
  }
  run.StartKeepalives();
  run.Measure();
  return run.Finish();
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
  if (o.relay_pid > 0 && r.relay_died) {
    row("relay", absl::StrCat("pid ", o.relay_pid, " died during the run"));
  } else if (o.relay_pid > 0) {
    row("relay CPU s", absl::StrFormat("%.3f", r.relay_cpu_s));
    row("relay CPU s per GB", absl::StrFormat("%.3f", r.relay_cpu_s_per_gb));
    row("relay RSS KiB before/peak",
        absl::StrCat(r.relay_rss_before_kib, " / ", r.relay_rss_peak_kib));
  }
  AppendSessionRows(o, r, &out);
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
  const bool keepalive = r.keepalives_answered > 0;
  const bool rehomed = r.rehomed_nodes > 0;
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
      ",\"relay_rss_per_idle_kib\":", num(idle && relay, r.relay_rss_per_idle_kib, 3),
      ",\"keepalives_sent\":", r.keepalives_sent,
      ",\"keepalives_answered\":", r.keepalives_answered,
      ",\"keepalive_p50_us\":", num(keepalive, r.keepalive_p50_us, 1),
      ",\"keepalive_p99_us\":", num(keepalive, r.keepalive_p99_us, 1),
      ",\"keepalive_max_us\":", num(keepalive, r.keepalive_max_us, 1),
      ",\"failover\":", o.failover ? "true" : "false", ",\"rehomed_nodes\":", r.rehomed_nodes,
      ",\"rehome_failed\":", r.rehome_failed, ",\"rehome_p50_s\":", num(rehomed, r.rehome_p50_s, 3),
      ",\"rehome_p99_s\":", num(rehomed, r.rehome_p99_s, 3),
      ",\"rehome_max_s\":", num(rehomed, r.rehome_max_s, 3),
      ",\"lost_connections\":", r.lost_connections,
      ",\"relay_died\":", r.relay_died ? "true" : "false", "}");
}

}  // namespace relay::load
