// AdminServer: the operator's HTTP endpoint (--admin_listen, off by default; bind it to
// loopback or a management network). One thread of its own, so nothing it does blocks a
// reactor: each scrape posts one small task per reactor (Shard::TakeSnapshot) and waits
// for the answers, bounded.
//
//   GET /metrics   Prometheus text format 0.0.4: every counter (relay_<name>_total), the
//                  live gauges (sessions, remembered leases, main and peer connections,
//                  staged bytes, free ports, each per reactor where it is per reactor), a
//                  per-reactor loop-turn histogram, process gauges.
//   GET /healthz   200 "ok" when every reactor answers within a second, else 503.
//   GET /sessions  JSON: one object per live session (id prefix, proxy address, the
//                  node's address, peers, frames and bytes each way, age, idle time);
//                  ?limit=N returns at most N (default 10000).
//
// A deliberately small HTTP/1.1 server: one connection at a time, `Connection: close`,
// a request of at most 8 KiB that must arrive within 2 s, GET only. Anything else gets a
// 4xx and is counted (relay_admin_errors_total).
//
// Thread: Start/Stop from the controlling thread; serves on its own thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
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

  // The bodies, without HTTP (tests call them too).
  std::string Metrics() const;
  std::string Sessions(size_t limit) const;
  bool Healthy() const;

 private:
  struct Response {
    int code;
    std::string type;
    std::string body;
  };
  // Reads the request's head (bounded by kIoTimeout and kMaxRequestBytes); false, with a
  // 408 sent or the connection gone, if it did not come.
  bool ReadRequest(int fd, absl::Time deadline, std::string* request);
  // The answer to a request line.
  Response Route(absl::string_view line) const;
  // Metrics' sections, appended to *out: every counter (and the RelayServer's gauges),
  // the reactors' live gauges, their loop-turn histograms, the process.
  void AppendCounters(std::string* out) const;
  void AppendReactorGauges(std::string* out) const;
  void AppendLoopHistograms(std::string* out) const;
  void AppendProcess(std::string* out) const;
  AdminServer() = default;
  void Serve();
  void HandleConnection(int fd);

  const RelayServer* relay_ = nullptr;
  net::UniqueFd listener_;
  net::UniqueFd stop_fd_;  // eventfd: wakes the thread to stop
  uint16_t port_ = 0;
  std::thread thread_;
  absl::Time started_ = absl::Now();
  std::atomic<uint64_t> requests_{0};
  std::atomic<uint64_t> errors_{0};
};

}  // namespace relay
