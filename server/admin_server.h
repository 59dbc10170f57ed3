// AdminServer: the operator's HTTP endpoint (--admin_listen, off by default; bind it to
// loopback or a management network). One thread of its own, so nothing it does blocks a
// reactor: each scrape posts small tasks to the reactors (Shard::TakeSnapshot, O(1);
// Shard::ListSessions, a bounded page) and waits for the answers, bounded.
//
//   GET /metrics   Prometheus text format 0.0.4: every counter (relay_<name>_total), the
//                  live gauges (sessions, remembered leases, main and peer connections,
//                  staged bytes, free ports, each per reactor where it is per reactor), a
//                  per-reactor loop-turn histogram, process gauges.
//   GET /healthz   200 "ok" when every reactor answers within a second, else 503.
//   GET /sessions  JSON: one object per live session (id prefix, proxy address, the
//                  node's address, peers, frames and bytes each way, age, idle time), a
//                  page of at most ?limit=N (default and most: 1000), reactor by reactor
//                  in port order; "next" is the cursor of the next page (?after=NEXT),
//                  null after the last. Gathered 256 sessions per reactor task, so a
//                  listing of any size costs no reactor turn more than ~0.1 ms.
//
// A deliberately small HTTP/1.1 server: `Connection: close`, GET only, a request head of
// at most 8 KiB that must arrive within 2 s of the connection (else 408), an answer that
// must be taken within 10 s. Many clients at once (one epoll loop, non-blocking): at most
// kMaxClients, the oldest closed to make room, so idle or slow clients delay no scrape; a
// backlog of 4096. Anything else gets a 4xx; every error, timeout and eviction is counted
// (relay_admin_errors_total).
//
// Thread: Start/Stop from the controlling thread; serves on its own thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "core/host_port.h"
#include "net/unique_fd.h"
#include "server/relay_server.h"

namespace relay {

class AdminServer {
 public:
  // Binds `listen` (port 0 picks one) and starts serving `relay`, which must outlive
  // this object (or Stop() it first).
  static absl::StatusOr<std::unique_ptr<AdminServer>> Start(const HostPort& listen,
                                                            const RelayServer* relay);
  ~AdminServer();  // Stop()
  void Stop();
  uint16_t port() const { return port_; }

  // The bodies, without HTTP (tests call them too). A page of /sessions starts after
  // `after` (the reactor and Shard::SessionKey of the last session of the page before).
  struct SessionCursor {
    size_t shard = 0;
    int64_t key = -1;  // -1: from the reactor's first session
  };
  std::string Metrics() const;
  std::string Sessions(size_t limit, SessionCursor after) const;
  bool Healthy() const;

 private:
  struct Response {
    int code;
    std::string type;
    std::string body;
  };
  // One client: its request head as it arrives, then its answer as it is taken.
  struct Client {
    net::UniqueFd fd;
    std::string in;
    std::string out;
    size_t out_off = 0;
    absl::Time deadline;  // for the head, then for the answer
    std::list<Client>::iterator self;
  };
  static constexpr size_t kMaxClients = 1024;
  void AcceptClients();
  // Reads (and once the head is whole, answers) or writes, as the client allows.
  void OnClient(Client* c);
  // Closes the clients past their deadlines (408 to those that sent no whole head).
  void ExpireClients(absl::Time now);
  // The answer to a request line.
  Response Route(absl::string_view line) const;
  // ... as a whole HTTP response.
  std::string Answer(absl::string_view request_line) const;
  // Metrics' sections, appended to *out: every counter (and the RelayServer's gauges),
  // the reactors' live gauges, their loop-turn histograms, the process.
  void AppendCounters(std::string* out) const;
  void AppendReactorGauges(std::string* out) const;
  void AppendLoopHistograms(std::string* out) const;
  void AppendProcess(std::string* out) const;
  AdminServer() = default;
  void Serve();

  const RelayServer* relay_ = nullptr;
  net::UniqueFd listener_;
  net::UniqueFd stop_fd_;  // eventfd: wakes the thread to stop
  uint16_t port_ = 0;
  std::thread thread_;
  int epoll_fd_ = -1;          // the serving thread's
  std::list<Client> clients_;  // oldest first; only the serving thread touches it
  absl::Time started_ = absl::Now();
  std::atomic<uint64_t> requests_{0};
  // relay_process_open_fds, counted at most every kOpenFdsEvery (listing /proc/self/fd
  // costs about 2 ms per 1,000 fds).
  int OpenFds() const;
  mutable std::mutex fds_mu_;
  mutable int open_fds_ = -1;
  mutable absl::Time open_fds_at_ = absl::InfinitePast();
  mutable std::atomic<uint64_t> errors_{0};
};

}  // namespace relay
