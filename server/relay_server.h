// RelayServer: the whole relay in one object: N reactors (one thread each), one Shard
// per reactor, the shared port pool and control codec. relay-server's main() and the
// integration tests both drive it.
//
// Thread: Create/Start/Stop/Counters from one controlling thread (Counters from any).
// Stop() joins the reactor threads; the destructor calls Stop().
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "core/clock.h"
#include "core/config.h"
#include "core/control_codec.h"
#include "core/lease_store.h"
#include "core/port_pool.h"
#include "net/reactor.h"
#include "server/server_context.h"
#include "server/shard.h"

namespace relay {

class RelayServer {
 public:
  // Validates `config`, binds the main listeners (one SO_REUSEPORT socket per reactor)
  // and builds the reactors. Nothing runs until Start().
  static absl::StatusOr<std::unique_ptr<RelayServer>> Create(
      const RelayConfig& config, const Clock* clock = MonotonicClock::Get());
  ~RelayServer();

  // Starts one thread per reactor.
  void Start();
  // Graceful drain (SIGTERM): stops accepting nodes and peers; every peer stops at its
  // next frame boundary; each node gets every frame already begun, then a Disconnect,
  // then its connection closes. Returns true when every node is done within `timeout`
  // (false: Stop() then cuts what is left). Call Stop() after it either way. Called
  // again, it goes on waiting (the drain starts once).
  bool Drain(absl::Duration timeout);
  // Stops the reactors, closes every connection, joins the threads. Idempotent.
  void Stop();

  // The main listener's port (useful with --listen=...:0).
  uint16_t main_port() const { return main_port_; }
  const std::string& advertise_host() const { return context_.advertise_host; }
  // The relay's public key in hex (what nodes pin with relay-node --relay_key).
  std::string relay_key_hex() const { return codec_->relay().PublicKeyHex(); }
  int thread_count() const { return static_cast<int>(reactors_.size()); }
  // Every counter summed over the shards, plus the gauges "ports_free", "staged_bytes"
  // and "source_ips" (and with --state_dir "leases_restored", "state_write_errors",
  // "state_snapshots").
  std::map<std::string, uint64_t> Counters() const;

 private:
  RelayServer() = default;

  ServerContext context_;
  std::unique_ptr<LeaseStore> store_;  // --state_dir; before the shards that report to it
  size_t leases_restored_ = 0;
  std::unique_ptr<ControlCodec> codec_;
  std::unique_ptr<PortPool> ports_;
  std::unique_ptr<SourceLimits> limits_;
  std::vector<std::unique_ptr<net::Reactor>> reactors_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::vector<std::thread> threads_;
  uint16_t main_port_ = 0;
  net::UniqueFd instance_lock_;  // the exclusive name of this main port
  bool started_ = false;
  bool drain_started_ = false;
  bool stopped_ = false;
};

}  // namespace relay
