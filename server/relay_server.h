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
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "base/clock.h"
#include "core/config.h"
#include "core/control_codec.h"
#include "core/identity.h"
#include "core/port_pool.h"
#include "net/reactor.h"
#include "net/unique_fd.h"
#include "proto/handover.pb.h"
#include "server/lease_store.h"
#include "server/server_context.h"
#include "server/shard.h"

namespace relay {

// What a relay process handed over to this one (live upgrade, server/upgrade.h): its
// state, and the fds that state names by index.
struct HandedOver {
  handover::State state;
  std::vector<net::UniqueFd> fds;
};

// The relay's key file: --key_file, else relay.key in --state_dir (nodes identify the
// relay by its key, so it is kept with the state by default), else "" (a new key each
// start).
std::string RelayKeyPath(const RelayConfig& config);
// The relay's key: from RelayKeyPath (created if missing, holding the key of
// `running_seed` if given: that of the relay a live upgrade replaces), else that key,
// else a new one, with a warning that it changes at every start.
absl::StatusOr<Identity> LoadRelayKey(const RelayConfig& config, absl::string_view running_seed);

class RelayServer {
 public:
  // Validates `config`, binds the main listeners (one SO_REUSEPORT socket per reactor)
  // and builds the reactors. Nothing runs until Start().
  // With `taken` (live upgrade) nothing is bound: the listeners, connections, sessions
  // and leases of the old process are adopted, with its reactor count and relay key
  // (unless --key_file); --listen and --port_range must be the old process's.
  static absl::StatusOr<std::unique_ptr<RelayServer>> Create(
      const RelayConfig& config, const Clock* clock = MonotonicClock::Get(),
      HandedOver* taken = nullptr);
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

  // What every reactor holds now (the admin endpoint). Each reactor answers a small
  // task; DeadlineExceeded if one does not within `timeout` (a stuck reactor). Any
  // thread.
  absl::StatusOr<std::vector<Shard::Snapshot>> Snapshot(absl::Duration timeout) const;
  // A page of reactor `shard`'s live sessions (Shard::ListSessions), the same way.
  absl::StatusOr<std::vector<Shard::SessionInfo>> ListSessions(size_t shard, int64_t after,
                                                               size_t max,
                                                               absl::Duration timeout) const;
  size_t shard_count() const { return shards_.size(); }
  // Each reactor's loop-turn histogram (any thread).
  std::vector<net::LoopHistogram::Snapshot> LoopHistograms() const;

  // --- Live upgrade, old side (server/upgrade.h), from the controlling thread ---
  // Freezes every shard (no new nodes, peers or frames; frames begun and replies queued
  // still go out) and waits until all are at rest; after `timeout` closes what would not
  // come to rest (counted). Then every reactor thread stops inside a task, its state
  // written into the result and its fds appended to *fds (still open here), and stays
  // stopped until ThawAfterHandover(); the lease store is closed. Fails (and thaws) when
  // draining or stopped.
  absl::StatusOr<handover::State> FreezeForHandover(absl::Duration timeout, std::vector<int>* fds);
  // The other process did not take over: reopens the lease store and resumes everything.
  absl::Status ThawAfterHandover();

  // The main listener's port (useful with --listen=...:0).
  uint16_t main_port() const { return main_port_; }
  // HOST:PORT of every main listener, the first one first.
  std::vector<std::string> listen_names() const;
  const std::string& advertise_host() const { return context_.advertise_host; }
  // Every proxy address (advertised IP, bind IP), the first one first.
  const std::vector<ProxyAddress>& proxy_addresses() const { return context_.proxy_addresses; }
  // The relay's public key in hex (what nodes pin with relay-node --relay_key).
  std::string relay_key_hex() const { return codec_->relay().PublicKeyHex(); }
  int thread_count() const { return static_cast<int>(reactors_.size()); }
  // Every counter summed over the shards, plus the gauges "ports_free" and "source_ips"
  // (and with --state_dir "leases_restored", "state_write_errors", "state_snapshots").
  // Staged bytes are per reactor: Snapshot().
  std::map<std::string, uint64_t> Counters() const;

 private:
  RelayServer() = default;
  // Create's two ways: a fresh start (binds the main listeners, restores leases from
  // --state_dir), or the adoption of a live upgrade's handed-over state (binds nothing;
  // server/relay_server_upgrade.cc, with the old side's freeze and export).
  absl::Status StartFresh(const Clock* clock);
  absl::Status AdoptState(const Clock* clock, HandedOver* taken);
  // A live upgrade without --port_range keeps the running relay's range (`running`,
  // LO-HI), which an earlier version's default may have set.
  void KeepRunningPortRange(const std::string& running);
  // Their steps, in the order they run.
  absl::Status LockMainPorts(const std::vector<HostPort>& addresses);
  absl::Status BindMainListeners(std::vector<std::vector<net::UniqueFd>>* listeners);
  absl::Status AdoptMainListeners(HandedOver* taken);
  void SetUpCodec(Identity key);               // the codec and the names fresh claims may carry
  absl::Status OpenStore(const Clock* clock);  // --state_dir, if set
  // The port pools, without the restored leases' ports; returns each lease's address.
  std::vector<uint8_t> MakePools(const std::vector<StoredLease>& restored);
  void RestoreSourceBuckets(const handover::State& state, const Clock* clock);
  void MakeLimits();
  absl::Status MakeShards(int threads, const Clock* clock);
  void RestoreLeases(const Clock* clock, const std::vector<StoredLease>& restored,
                     const std::vector<uint8_t>& restored_address);
  absl::Status StartStore(const std::vector<StoredLease>& restored);
  void StartReactorThread(int index);  // on reactor thread `index`, before its loop

  ServerContext context_;
  std::unique_ptr<LeaseStore> store_;  // --state_dir; before the shards that report to it
  size_t leases_restored_ = 0;
  std::unique_ptr<ControlCodec> codec_;
  std::vector<std::unique_ptr<PortPool>> pools_;  // one per proxy address
  std::unique_ptr<SourceLimits> limits_;
  std::vector<std::unique_ptr<net::Reactor>> reactors_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::vector<std::thread> threads_;
  uint16_t main_port_ = 0;
  std::vector<net::UniqueFd> instance_locks_;  // the exclusive names of the main ports
  std::vector<std::string> listen_names_;      // HOST:PORT of the main listeners after the first
  struct HandoverRound;
  // Each reactor exports its shard inside a task and waits there; false if some shard
  // was not at rest (every reactor then runs on).
  bool TryExport(handover::State* state, std::vector<int>* fds);
  // FreezeForHandover's steps: every shard frozen (within `timeout`); then export tries
  // until all are at rest (after `timeout`, what would not come to rest is closed); then
  // the relay's own state (listeners, key, proxy addresses, rate buckets, locks).
  absl::Status FreezeShards(absl::Duration timeout);
  absl::Status ExportAtRest(absl::Time start, absl::Duration timeout, handover::State* state,
                            std::vector<int>* fds);
  void ExportRelayState(handover::State* state, std::vector<int>* fds) const;
  void ReleaseRound();
  std::shared_ptr<HandoverRound> round_;  // the reactors stopped inside export tasks
  bool handing_over_ = false;
  bool imported_ = false;  // built from a handed-over state: parse its input at Start
  bool started_ = false;
  bool drain_started_ = false;
  bool stopped_ = false;
};

}  // namespace relay
