// Shard: the relay's state on one reactor: its main listener (one SO_REUSEPORT socket per
// reactor, so the kernel spreads nodes), the main connections accepted here, the leases
// and sessions whose connection id hashes to this reactor, and the reactor's shares of
// memory (staging, partial control frames).
//
// Routing: a node's lease lives on the shard HomeOf(connection_id). A main connection
// accepted elsewhere is handed (fd + unread bytes + unwritten replies) to that shard on
// its ProxyRequest, so a node's main connection, its proxy listener and all its peers
// share one reactor and forwarding takes no lock; a reconnecting node always meets its
// old session there.
//
// Claims: a ProxyRequest is rate-limited per source IP (--proxy_requests_per_ip) where it
// arrives; at home, a live session is taken over (at most once per --takeover_interval),
// a remembered lease gives its port back, and a new lease takes a free port. When no port
// is free, the oldest remembered lease gives up its port (counted as leases_evicted):
// only when every port is held by a live session is a claim refused.
//
// Thread: every method runs on the shard's reactor thread. Owned by the RelayServer.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "core/lease_table.h"
#include "core/signature_budget.h"
#include "core/stage_budget.h"
#include "net/acceptor.h"
#include "net/reactor.h"
#include "net/timer_wheel.h"
#include "net/unique_fd.h"
#include "proto/handover.pb.h"
#include "proto/relay.pb.h"
#include "server/lease_store.h"
#include "server/server_context.h"
#include "server/stats.h"

namespace relay {

class MainConnection;
class ProxyConnection;
class Session;

// The first 4 bytes of a connection id in hex: how log lines name a node's lease.
std::string IdPrefix(absl::string_view connection_id);

class Shard {
 public:
  Shard(int index, net::Reactor* reactor, const ServerContext* context);
  ~Shard();

  // Takes a main listener for this reactor (one per --listen address) and registers it.
  // Call before the loop runs.
  absl::Status Listen(net::UniqueFd listener);

  // What happened to the main connection that sent a ProxyRequest.
  enum class RequestOutcome {
    kAnswered,
    kMoved,  // handed to its home reactor
    kClosed,
    kPending,  // waiting for another reactor to free a port; Claim retried then
  };
  // `verified`: the request's signature was already checked (--require_signatures).
  RequestOutcome OnProxyRequest(MainConnection* conn, const wire::Message& request,
                                Signature signature = Signature::kUnchecked);
  // Recreates a lease read from --state_dir as remembered until `expires_at` (before the
  // reactor runs). Its port is already held for it in the pool.
  // `address`: the index of its proxy address.
  void RestoreLease(const StoredLease& stored, uint8_t address, absl::Time expires_at);
  // Drain (SIGTERM), on this shard's thread: stop accepting main connections and peers;
  // every peer stops at its next frame boundary; a node whose peers delivered everything
  // gets a Disconnect and its connection closes; new claims are refused. drained() turns
  // true when no main connection is left (any thread may read it).
  void BeginDrain();
  bool drained() const { return drained_.load(std::memory_order_acquire); }
  // Every later lease change is reported to `store` (null: none). While the store cannot
  // write, claims are refused (claims_not_durable).
  void set_lease_store(LeaseStore* store) {
    leases_.set_observer(store);
    store_ = store;
  }
  // The main connection closed: ends its session (if it is the session's current one)
  // and deletes it at the end of the turn.
  void OnMainClosed(MainConnection* conn);
  // Called on this shard's thread by the hand-off task.
  struct HandedOff {
    net::UniqueFd fd;
    uint64_t source_ip = 0;
    std::string input;   // read, not yet parsed
    std::string output;  // replies not yet written
    uint64_t next_nonce = 1;
    uint64_t frames_from_node = 0, bytes_from_node = 0;
    // Its control bucket's tokens (MainConnection::ControlLevel); unset: full.
    double control_level = std::numeric_limits<double>::infinity();
    absl::Time last_activity;
    wire::Message request;
    ClaimProof proof;
  };
  void Adopt(HandedOff handed);
  // Another shard's pool ran dry: give up the port of the oldest remembered lease here.
  // Ends a remembered lease to free its port for a new node (pool pressure); null: none.
  void EvictRemembered(Lease* lease);
  // Under pool pressure, the remembered lease a claim from `source_ip` may take the port
  // of, or null: the oldest of the heaviest source group's, if that is the claimant's
  // group or within its --evictions_per_source; else the claimant's group's own oldest.
  Lease* PressureVictim(uint64_t source_ip);
  LeaseTable& leases() { return leases_; }
  // A port was freed for this shard's waiting claims: retry them.
  void RetryPendingClaims();

  // --- Live upgrade (server/upgrade.h); on this shard's thread unless noted ---
  // Stops accepting nodes and peers (listeners stay open), stops reading main
  // connections, and pauses every peer at its next frame boundary; frames already begun
  // and replies already queued still go out. Refused (false) while draining.
  bool Freeze();
  // Frozen, and nothing in flight: every main connection written out, every peer paused
  // at a boundary with nothing staged, no claim waiting.
  bool AtRest() const;
  // --upgrade_timeout passed: closes what would not come to rest (a node that does not
  // take its frames: upgrade_disconnects; a peer inside a frame: upgrade_peers_dropped).
  void ForceRest();
  // Writes the state of this shard (at rest) into *out, appending the fds it names to
  // *fds; the fds stay open and registered here (this process exits, or thaws).
  void Export(handover::Shard* out, std::vector<int>* fds) const;
  // Undoes Freeze (the upgrade failed): everything resumes as it was.
  void Thaw();
  // In the new process, before the reactor runs: rebuilds what Export wrote. `fds` are
  // the fds received, indexed by the message's *_fd fields; the ones used are moved out.
  // `now` is when the state was received.
  absl::Status Import(const handover::Shard& in, std::vector<net::UniqueFd>* fds);
  // Runs on the reactor once it started: parses input that came with the connections.
  void ResumeImported();

  // --- The admin endpoint (server/admin_server.h), on this shard's thread ---
  // Gauges, read without walking the sessions (a scrape costs the reactor O(1)).
  struct Snapshot {
    size_t sessions = 0, remembered = 0, mains = 0, peers = 0;
    uint64_t staged_bytes = 0;
  };
  Snapshot TakeSnapshot() const;
  struct SessionInfo {
    uint32_t key = 0;           // SessionKey: the listing's order and its cursor
    std::string id_prefix;      // IdPrefix of the connection id
    std::string proxy_address;  // advertised IP and port
    std::string node;           // the node's ip:port
    size_t peers = 0;
    uint64_t frames_to_node = 0, bytes_to_node = 0;
    uint64_t frames_from_node = 0, bytes_from_node = 0;
    absl::Duration age, idle;  // since it started; since the node's last control message
    bool bound = false;        // its lease is bound to a key
  };
  // A session's place in the listing: its proxy address index and port.
  static uint32_t SessionKey(uint8_t address, uint16_t port) {
    return (uint32_t{address} << 16) | port;
  }
  // At most `max` live sessions whose key is above `after`, in key order: a page of the
  // listing, so that one task of the admin endpoint costs a reactor turn a bounded time.
  std::vector<SessionInfo> ListSessions(int64_t after, size_t max) const;
  // Session::Start and Shutdown keep the live sessions' index; Session counts its peers.
  void IndexSession(const Session* session);
  void UnindexSession(const Session* session);
  void PeersChanged(int64_t delta) { live_peers_ += delta; }

  // Closes every connection and session (shutdown). The leases stay until destruction.
  void CloseAll();

  // --- Shares of this reactor ---
  StageBudget& stage_budget() { return stage_budget_; }
  SignatureBudget& signature_budget() { return signature_budget_; }
  // Partial control frames of main connections (--control_budget): Hold returns false
  // (nothing held) when `bytes` more would exceed it.
  bool HoldControlBytes(uint64_t bytes);
  void ReleaseControlBytes(uint64_t bytes) { control_held_ -= bytes; }
  // Control frames parsed in this reactor turn, from all main connections: true (and
  // counted) while fewer than kControlFramesPerTurn; false leaves the rest to later turns,
  // so a flood from many connections costs each turn at most a fraction of a millisecond.
  static constexpr uint32_t kControlFramesPerTurn = 256;
  bool TakeControlFrameSlot();

  // How every listener of this shard accepts (budget, fd reserve, back-off), and what
  // they report when they stop for lack of fds.
  net::Acceptor::Options AcceptorOptions() const;
  void OnAcceptRefused(const char* listener, int error);

  // How log lines name a proxy port: the port, or ADVERTISED_IP:PORT when the relay has
  // several proxy addresses.
  std::string PortName(uint8_t address, uint16_t port) const;

  // Which shard owns the lease of `connection_id`: a SipHash keyed by the relay's
  // `shard_key` (random per relay, so no client can aim its sessions at one reactor; the
  // same in the process a live upgrade hands over to, so every lease stays home).
  static int HomeOf(absl::string_view connection_id, const std::string& shard_key, int shard_count);

  net::Reactor* reactor() const { return reactor_; }
  const ServerContext& context() const { return *context_; }
  SourceLimits& source_limits() const { return *context_->limits; }
  ShardStats& stats() { return stats_; }
  const ShardStats& stats() const { return stats_; }
  int index() const { return index_; }
  size_t lease_count() const { return leases_.size(); }
  // Remembered leases here; read by other shards to pick whom to ask for a port.
  size_t remembered_count() const { return remembered_.load(std::memory_order_relaxed); }

 private:
  void OnMainAccepted(net::UniqueFd fd);
  MainConnection* AddMain(net::UniqueFd fd, uint64_t source_ip, uint64_t next_nonce,
                          absl::Time last_activity, bool seen_frame);
  // The claim itself, on the home shard.
  RequestOutcome Claim(MainConnection* conn, const wire::Message& request, const ClaimProof& proof,
                       bool may_wait = true);
  // Checks what a claim proves (the relay's part of PROTOCOL section 6, and fresh claims).
  // Fills *proof; returns false (the claim refused and counted) for a bad signature, an
  // unsigned claim under --require_signatures or --strict_claims, a fresh claim for
  // another relay or out of --claim_window, or a plain claim under --strict_claims.
  // Claim's two ways: a remembered lease gets its port again (or a new one if it cannot
  // be bound); a new lease takes a free port, or waits for another shard to free one
  // (`may_wait`).
  RequestOutcome ClaimRemembered(Lease* lease, MainConnection* conn, const wire::Message& request);
  RequestOutcome ClaimNew(MainConnection* conn, const wire::Message& request,
                          const ClaimProof& proof, bool may_wait);
  bool CheckClaim(MainConnection* conn, const wire::Message& request, Signature signature,
                  ClaimProof* proof);
  void Bind(Lease* lease, const ClaimProof& proof);
  RequestOutcome TakeOver(Lease* lease, MainConnection* conn, const wire::Message& request);
  RequestOutcome Answer(MainConnection* conn, const wire::Message& request, uint8_t address,
                        uint16_t port);
  // Refuses a claim with Disconnect; `counter` says why.
  RequestOutcome Refuse(MainConnection* conn, Counter counter);
  void HandOff(MainConnection* conn, const wire::Message& request, int home, ClaimProof proof);
  // Opens a proxy listener on `port`; empty fd if the port cannot be bound.
  net::UniqueFd BindProxy(uint8_t address, uint16_t port);
  // A free port with its listener bound, evicting the oldest remembered lease when the
  // pool is empty. nullopt if every port is live.
  // *asked_elsewhere: no remembered lease here, another shard was asked to free a port.
  struct PortChoice {
    uint8_t address;  // index of the proxy address (ServerContext::proxy_addresses)
    uint16_t port;
  };
  std::optional<PortChoice> TakePort(net::UniqueFd* listener, uint64_t source_ip,
                                     bool* asked_elsewhere = nullptr);
  // None here: asks the shard holding the most remembered leases to free a port (by
  // PressureVictim there); *asked if it did.
  void AskRichestShard(uint64_t source_ip, bool* asked);
  // `how`: "new" or "remembered", for the session's start line in the log.
  bool StartSession(Lease* lease, absl::string_view id, net::UniqueFd listener,
                    MainConnection* conn, const char* how);
  void EndSession(Session* session, absl::Time last_activity);
  void OnLeaseTimer(std::string id);
  void UpdateRemembered() { remembered_.store(leases_.remembered_count()); }
  // A claim is acknowledged only when its lease is on disk: false if the store cannot
  // write now (counted, logged by the store).
  bool LeasesDurable() const { return store_ == nullptr || store_->writable(); }
  // While draining: Disconnects the nodes that have nothing left in flight.
  void CheckDrain();
  // Import's parts (server/shard_upgrade.cc): the main listeners; one lease (and, if live,
  // its session, proxy listener and peers); one main connection.
  absl::Status ImportListeners(const handover::Shard& in, std::vector<net::UniqueFd>* fds);
  absl::Status ImportLease(const handover::Lease& l, absl::Time now,
                           std::vector<net::UniqueFd>* fds);
  absl::Status ImportMain(const handover::Main& m, absl::Time now, std::vector<net::UniqueFd>* fds);

  const int index_;
  net::Reactor* reactor_;
  const ServerContext* context_;
  ShardStats stats_;
  std::vector<std::unique_ptr<net::Acceptor>> acceptors_;  // one per --listen address
  // Live sessions by SessionKey, and their peers; before leases_, whose sessions unindex
  // themselves when it destroys them.
  absl::btree_map<uint32_t, const Session*> sessions_;
  int64_t live_peers_ = 0;
  LeaseTable leases_;
  LeaseStore* store_ = nullptr;  // --state_dir, or null
  std::atomic<size_t> remembered_{0};
  StageBudget stage_budget_;
  SignatureBudget signature_budget_;
  uint64_t control_held_ = 0;
  uint64_t control_turn_ = 0;  // the reactor turn control_frames_ counts
  uint32_t control_frames_ = 0;
  absl::flat_hash_map<MainConnection*, std::unique_ptr<MainConnection>> mains_;
  struct PendingClaim {
    MainConnection* conn;
    wire::Message request;
    ClaimProof proof;
  };
  std::deque<PendingClaim> pending_claims_;
  bool draining_ = false;
  bool frozen_ = false;
  uint8_t next_address_ = 0;               // the proxy address TakePort tries first
  std::vector<MainConnection*> imported_;  // main connections with input to parse (Import)
  std::atomic<bool> drained_{false};
  net::Timer drain_timer_{[this] { CheckDrain(); }};
};

}  // namespace relay
