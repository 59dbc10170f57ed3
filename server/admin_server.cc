#include "server/admin_server.h"

#include <errno.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "base/log.h"
#include "base/process_stats.h"
#include "net/socket_ops.h"
#include "server/stats.h"

namespace relay {
namespace {

constexpr size_t kMaxRequestBytes = 8 * 1024;
constexpr absl::Duration kIoTimeout = absl::Seconds(2);      // for a request's head
constexpr absl::Duration kWriteTimeout = absl::Seconds(10);  // for the answer to be taken
constexpr absl::Duration kSnapshotTimeout = absl::Seconds(1);
// /sessions pages: at most this many sessions per answer (its default), gathered from
// the reactors kSessionChunk at a time, one small task per chunk.
constexpr size_t kMaxSessionPage = 1000;
constexpr size_t kSessionChunk = 64;
constexpr int kAdminNice = 10;
constexpr absl::Duration kOpenFdsEvery = absl::Seconds(10);

// Gauges among RelayServer::Counters() (everything else there is a counter).
bool IsGauge(const std::string& name) {
  return name == "ports_free" || name == "source_ips" || name == "leases_restored" ||
         name == "state_writable";
}

void Help(std::string* out, const std::string& name, const char* type, std::string_view help) {
  absl::StrAppend(out, "# HELP ", name, " ", absl::string_view(help.data(), help.size()),
                  "\n# TYPE ", name, " ", type, "\n");
}

// JSON string body (the values here are ASCII, but escape anyway).
std::string JsonString(absl::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (static_cast<unsigned char>(c) < 0x20) {
      absl::StrAppend(&out, absl::StrFormat("\\u%04x", c));
    } else {
      out.push_back(c);
    }
  }
  out.push_back('"');
  return out;
}

// One session of /sessions, after a comma unless `first`.
void AppendSession(const Shard::SessionInfo& s, size_t reactor, bool first, std::string* out) {
  absl::StrAppend(
      out, first ? "" : ",", "\n{\"id\":", JsonString(s.id_prefix),
      ",\"proxy_address\":", JsonString(s.proxy_address), ",\"node\":", JsonString(s.node),
      ",\"reactor\":", reactor, ",\"peers\":", s.peers, ",\"frames_to_node\":", s.frames_to_node,
      ",\"bytes_to_node\":", s.bytes_to_node, ",\"frames_from_node\":", s.frames_from_node,
      ",\"bytes_from_node\":", s.bytes_from_node,
      ",\"age_s\":", absl::StrFormat("%.3f", absl::ToDoubleSeconds(s.age)),
      ",\"idle_s\":", absl::StrFormat("%.3f", absl::ToDoubleSeconds(s.idle)),
      ",\"bound\":", s.bound ? "true" : "false", "}");
}

}  // namespace

absl::StatusOr<std::unique_ptr<AdminServer>> AdminServer::Start(const HostPort& listen,
                                                                const RelayServer* relay) {
  absl::StatusOr<net::UniqueFd> fd = net::Listen(listen.host, listen.port, false, 4096);
  if (!fd.ok()) {
    return absl::Status(fd.status().code(),
                        absl::StrCat("--admin_listen=", FormatHostPort(listen.host, listen.port),
                                     ": ", fd.status().message()));
  }
  std::unique_ptr<AdminServer> admin(new AdminServer());
  admin->relay_ = relay;
  admin->port_ = net::LocalPort(fd->get());
  admin->listener_ = std::move(*fd);
  admin->stop_fd_.Reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!admin->stop_fd_) {
    return absl::InternalError(absl::StrCat("eventfd: ", ErrnoText(errno)));
  }
  AdminServer* raw = admin.get();
  admin->thread_ = std::thread([raw] { raw->Serve(); });
  return admin;
}

AdminServer::~AdminServer() { Stop(); }

void AdminServer::Stop() {
  if (thread_.joinable()) {
    const uint64_t one = 1;
    ssize_t ignored = ::write(stop_fd_.get(), &one, sizeof(one));
    (void)ignored;
    thread_.join();
  }
}

void AdminServer::Serve() {
  // Below the reactors (nice 10: about a tenth of a reactor's share when both want a
  // CPU): building a page of JSON or counting 100,000 fds must not delay a frame; the
  // scrape still gets its share on a busy host.
  setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), kAdminNice);
  net::UniqueFd ep(epoll_create1(EPOLL_CLOEXEC));
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = &listener_;
  epoll_ctl(ep.get(), EPOLL_CTL_ADD, listener_.get(), &ev);
  ev.data.ptr = &stop_fd_;
  epoll_ctl(ep.get(), EPOLL_CTL_ADD, stop_fd_.get(), &ev);
  epoll_fd_ = ep.get();
  epoll_event events[64];
  for (;;) {
    const int n = epoll_wait(ep.get(), events, 64, 100);
    if (n < 0 && errno != EINTR) {
      RELAY_LOG(ERROR) << "admin endpoint: epoll_wait: " << ErrnoText(errno)
                       << "; it stops serving";
      break;
    }
    for (int i = 0; i < n; ++i) {
      if (events[i].data.ptr == &stop_fd_) {
        clients_.clear();
        return;
      }
      if (events[i].data.ptr == &listener_) {
        AcceptClients();
      } else {
        OnClient(static_cast<Client*>(events[i].data.ptr));
      }
    }
    ExpireClients(absl::Now());
  }
  clients_.clear();
}

void AdminServer::AcceptClients() {
  for (int i = 0; i < 256; ++i) {
    const int fd = net::Accept(listener_.get());
    if (fd < 0) {
      return;  // none left, or out of fds (the listener's backlog holds the rest)
    }
    if (clients_.size() >= kMaxClients) {
      // The oldest client makes room: idle or slow clients cannot lock scrapes out.
      errors_.fetch_add(1, std::memory_order_relaxed);
      clients_.pop_front();
    }
    clients_.emplace_back();
    Client& c = clients_.back();
    c.self = std::prev(clients_.end());
    c.fd.Reset(fd);
    c.deadline = absl::Now() + kIoTimeout;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.ptr = &c;
    epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
    requests_.fetch_add(1, std::memory_order_relaxed);
  }
}

void AdminServer::OnClient(Client* c) {
  if (c->out.empty()) {
    char buf[2048];
    ssize_t n;
    while ((n = ::recv(c->fd.get(), buf, sizeof(buf), 0)) > 0 && c->in.size() <= kMaxRequestBytes) {
      c->in.append(buf, static_cast<size_t>(n));
    }
    const bool whole =
        c->in.find("\r\n\r\n") != std::string::npos || c->in.find("\n\n") != std::string::npos;
    if (!whole && (c->in.size() > kMaxRequestBytes || n == 0 ||
                   (n < 0 && errno != EAGAIN && errno != EINTR))) {
      errors_.fetch_add(1, std::memory_order_relaxed);
      clients_.erase(c->self);
      return;
    }
    if (!whole) {
      return;  // the rest later, within the header deadline
    }
    c->out = Answer(absl::string_view(c->in).substr(0, c->in.find_first_of("\r\n")));
    c->deadline = absl::Now() + kWriteTimeout;
  }
  while (c->out_off < c->out.size()) {
    const ssize_t n =
        ::send(c->fd.get(), c->out.data() + c->out_off, c->out.size() - c->out_off, MSG_NOSIGNAL);
    if (n <= 0) {
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        return;  // EPOLLOUT (edge-triggered) says when there is room
      }
      break;
    }
    c->out_off += static_cast<size_t>(n);
  }
  clients_.erase(c->self);  // answered (Connection: close), or gone
}

void AdminServer::ExpireClients(absl::Time now) {
  for (auto it = clients_.begin(); it != clients_.end();) {
    if (now < it->deadline) {
      ++it;
      continue;
    }
    errors_.fetch_add(1, std::memory_order_relaxed);
    if (it->out.empty()) {
      const char kTimeout[] = "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n";
      ssize_t ignored = ::send(it->fd.get(), kTimeout, sizeof(kTimeout) - 1, MSG_NOSIGNAL);
      (void)ignored;
    }
    it = clients_.erase(it);
  }
}

AdminServer::Response AdminServer::Route(absl::string_view line) const {
  // "GET /path?query HTTP/1.1"
  if (!absl::StartsWith(line, "GET ")) {
    return Response{405, "text/plain; charset=utf-8", "only GET\n"};
  }
  absl::string_view target = line.substr(4);
  target = target.substr(0, target.find(' '));
  const absl::string_view path = target.substr(0, target.find('?'));
  const absl::string_view query =
      target.find('?') == absl::string_view::npos ? "" : target.substr(target.find('?') + 1);
  if (path == "/metrics") {
    return Response{200, "text/plain; version=0.0.4; charset=utf-8", Metrics()};
  }
  if (path == "/healthz") {
    if (!Healthy()) {
      return Response{503, "text/plain; charset=utf-8", "a reactor does not answer\n"};
    }
    // Degraded, not down: the relay serves its nodes (a restart would not make the disk
    // writable), but refuses claims; alert on relay_state_writable.
    const std::map<std::string, uint64_t> c = relay_->Counters();
    auto writable = c.find("state_writable");
    return Response{200, "text/plain; charset=utf-8",
                    writable != c.end() && writable->second == 0
                        ? "degraded: the lease state cannot be written (--state_dir); claims "
                          "are refused\n"
                        : "ok\n"};
  }
  if (path == "/sessions") {
    size_t limit = kMaxSessionPage;
    SessionCursor after;
    for (absl::string_view param : absl::StrSplit(query, '&', absl::SkipEmpty())) {
      if (absl::ConsumePrefix(&param, "limit=")) {
        if (!absl::SimpleAtoi(param, &limit)) {
          return Response{400, "text/plain; charset=utf-8", "limit=N expects a number\n"};
        }
      } else if (absl::ConsumePrefix(&param, "after=")) {
        std::pair<absl::string_view, absl::string_view> parts = absl::StrSplit(param, '.');
        if (!absl::SimpleAtoi(parts.first, &after.shard) ||
            !absl::SimpleAtoi(parts.second, &after.key)) {
          return Response{400, "text/plain; charset=utf-8",
                          "after= expects the \"next\" of the previous page\n"};
        }
      }
    }
    return Response{200, "application/json", Sessions(std::min(limit, kMaxSessionPage), after)};
  }
  return Response{404, "text/plain; charset=utf-8",
                  "not found: try /metrics, /healthz, /sessions\n"};
}

std::string AdminServer::Answer(absl::string_view request_line) const {
  const Response response = Route(request_line);
  const int code = response.code;
  if (code >= 400 && code != 503) {
    errors_.fetch_add(1, std::memory_order_relaxed);
  }
  const char* reason = code == 200   ? "OK"
                       : code == 400 ? "Bad Request"
                       : code == 404 ? "Not Found"
                       : code == 405 ? "Method Not Allowed"
                                     : "Service Unavailable";
  return absl::StrCat("HTTP/1.1 ", code, " ", reason, "\r\nContent-Type: ", response.type,
                      "\r\nContent-Length: ", response.body.size(), "\r\nConnection: close\r\n\r\n",
                      response.body);
}

bool AdminServer::Healthy() const { return relay_->Snapshot(kSnapshotTimeout).ok(); }

void AdminServer::AppendCounters(std::string* out) const {
  // Counters and the gauges RelayServer keeps.
  const std::map<std::string, uint64_t> counters = relay_->Counters();
  for (size_t c = 0; c < static_cast<size_t>(Counter::kCount); ++c) {
    const std::string name(kCounterNames[c]);
    const std::string metric = absl::StrCat("relay_", name, "_total");
    Help(out, metric, "counter", kCounterHelp[c]);
    auto it = counters.find(name);
    absl::StrAppend(out, metric, " ", it == counters.end() ? 0 : it->second, "\n");
  }
  for (const auto& [name, value] : counters) {
    bool known = false;
    for (std::string_view n : kCounterNames) {
      known = known || n == name;
    }
    if (known) {
      continue;
    }
    const bool gauge = IsGauge(name);
    const std::string metric = absl::StrCat("relay_", name, gauge ? "" : "_total");
    Help(out, metric, gauge ? "gauge" : "counter",
         name == "ports_free"        ? "proxy ports free in the pool"
         : name == "source_ips"      ? "source IPs with connections, leases or a request budget"
         : name == "leases_restored" ? "leases read from --state_dir at start"
         : name == "state_snapshots" ? "lease snapshots written to --state_dir"
                                     : "writes to --state_dir that failed (disk full...)");
    absl::StrAppend(out, metric, " ", value, "\n");
  }
}

void AdminServer::AppendReactorGauges(std::string* out) const {
  // Live gauges, per reactor.
  absl::StatusOr<std::vector<Shard::Snapshot>> shards = relay_->Snapshot(kSnapshotTimeout);
  Help(out, "relay_up", "gauge", "1 when every reactor answered this scrape within 1 s");
  absl::StrAppend(out, "relay_up ", shards.ok() ? 1 : 0, "\n");
  if (shards.ok()) {
    struct Gauge {
      const char* name;
      const char* help;
      uint64_t Shard::Snapshot::*field_u64;
      size_t Shard::Snapshot::*field_size;
    };
    const Gauge gauges[] = {
        {"relay_sessions", "live sessions (nodes attached)", nullptr, &Shard::Snapshot::sessions},
        {"relay_leases_remembered", "leases remembered for nodes that left", nullptr,
         &Shard::Snapshot::remembered},
        {"relay_main_connections", "node main connections open", nullptr, &Shard::Snapshot::mains},
        {"relay_peer_connections", "peer connections open", nullptr, &Shard::Snapshot::peers},
        {"relay_staged_bytes", "bytes of whole or partial frames staged for nodes",
         &Shard::Snapshot::staged_bytes, nullptr},
    };
    for (const Gauge& g : gauges) {
      Help(out, g.name, "gauge", absl::StrCat(g.help, ", per reactor"));
      for (size_t i = 0; i < shards->size(); ++i) {
        const Shard::Snapshot& s = (*shards)[i];
        const uint64_t v = g.field_u64 != nullptr ? s.*(g.field_u64) : s.*(g.field_size);
        absl::StrAppend(out, g.name, "{reactor=\"", i, "\"} ", v, "\n");
      }
    }
  }
}

void AdminServer::AppendLoopHistograms(std::string* out) const {
  // How long reactor turns take: how long an event can wait behind others.
  Help(out, "relay_reactor_loop_seconds", "histogram",
       "duration of each reactor loop turn (events, timers, tasks), per reactor");
  const std::vector<net::LoopHistogram::Snapshot> loops = relay_->LoopHistograms();
  for (size_t r = 0; r < loops.size(); ++r) {
    for (size_t b = 0; b < net::LoopHistogram::kBoundsNs.size(); ++b) {
      absl::StrAppend(out, "relay_reactor_loop_seconds_bucket{reactor=\"", r, "\",le=\"",
                      absl::StrFormat("%g", net::LoopHistogram::kBoundsNs[b] / 1e9), "\"} ",
                      loops[r].cumulative[b], "\n");
    }
    absl::StrAppend(out, "relay_reactor_loop_seconds_bucket{reactor=\"", r, "\",le=\"+Inf\"} ",
                    loops[r].cumulative.back(), "\n");
    absl::StrAppend(out, "relay_reactor_loop_seconds_sum{reactor=\"", r, "\"} ",
                    absl::StrFormat("%.9f", loops[r].sum_ns / 1e9), "\n");
    absl::StrAppend(out, "relay_reactor_loop_seconds_count{reactor=\"", r, "\"} ",
                    loops[r].cumulative.back(), "\n");
  }
}

void AdminServer::AppendProcess(std::string* out) const {
  // The process.
  Help(out, "relay_process_resident_memory_bytes", "gauge", "resident memory of the relay");
  absl::StrAppend(out, "relay_process_resident_memory_bytes ",
                  static_cast<uint64_t>(ProcessRssKib(getpid())) * 1024, "\n");
  Help(out, "relay_process_open_fds", "gauge",
       "file descriptors open in the relay (counted at most every 10 s)");
  absl::StrAppend(out, "relay_process_open_fds ", OpenFds(), "\n");
  Help(out, "relay_process_cpu_seconds_total", "counter", "user + system CPU the relay used");
  absl::StrAppend(out, "relay_process_cpu_seconds_total ",
                  absl::StrFormat("%.3f", ProcessCpuSeconds(getpid())), "\n");
  Help(out, "relay_start_time_seconds", "gauge", "when this admin endpoint started, Unix time");
  absl::StrAppend(out, "relay_start_time_seconds ", absl::ToUnixSeconds(started_), "\n");
  Help(out, "relay_build_info", "gauge", "the relay's version, as a label");
  absl::StrAppend(out, "relay_build_info{version=\"", RELAY_VERSION, "\"} 1\n");
  Help(out, "relay_admin_requests_total", "counter", "requests to this endpoint");
  absl::StrAppend(out, "relay_admin_requests_total ", requests_.load(), "\n");
  Help(out, "relay_admin_errors_total", "counter",
       "bad, slow or unknown requests to this endpoint");
  absl::StrAppend(out, "relay_admin_errors_total ", errors_.load(), "\n");
}

int AdminServer::OpenFds() const {
  std::lock_guard<std::mutex> lock(fds_mu_);
  const absl::Time now = absl::Now();
  if (now - open_fds_at_ >= kOpenFdsEvery) {
    open_fds_ = ProcessOpenFds(getpid());
    open_fds_at_ = now;
  }
  return open_fds_;
}

std::string AdminServer::Metrics() const {
  std::string out;
  AppendCounters(&out);
  AppendReactorGauges(&out);
  AppendLoopHistograms(&out);
  AppendProcess(&out);
  return out;
}

std::string AdminServer::Sessions(size_t limit, SessionCursor after) const {
  absl::StatusOr<std::vector<Shard::Snapshot>> shards = relay_->Snapshot(kSnapshotTimeout);
  if (!shards.ok()) {
    return absl::StrCat("{\"error\":", JsonString(shards.status().message()), "}\n");
  }
  size_t total = 0;
  for (const Shard::Snapshot& s : *shards) {
    total += s.sessions;
  }
  std::string out = absl::StrCat("{\"sessions_total\":", total, ",\"sessions\":[");
  // Reactor by reactor, each in key order, a chunk per task: no reactor turn pays for
  // more than kSessionChunk sessions.
  size_t n = 0;
  SessionCursor last = after;
  for (size_t r = after.shard; r < relay_->shard_count() && n < limit;) {
    const size_t ask = std::min(kSessionChunk, limit - n);
    absl::StatusOr<std::vector<Shard::SessionInfo>> chunk =
        relay_->ListSessions(r, r == last.shard ? last.key : -1, ask, kSnapshotTimeout);
    if (!chunk.ok()) {
      return absl::StrCat("{\"error\":", JsonString(chunk.status().message()), "}\n");
    }
    for (const Shard::SessionInfo& s : *chunk) {
      AppendSession(s, r, n++ == 0, &out);
      last = SessionCursor{r, s.key};
    }
    if (chunk->size() < ask) {
      ++r;  // this reactor has no more
    }
  }
  const bool more = n == limit && limit > 0;
  absl::StrAppend(&out, "\n],\"next\":",
                  more ? absl::StrCat("\"", last.shard, ".", last.key, "\"") : "null", "}\n");
  return out;
}

}  // namespace relay
