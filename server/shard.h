// Shard: the relay's state on one reactor: its main listener (one SO_REUSEPORT socket per
// reactor, so the kernel spreads nodes), the main connections accepted here, and the
// leases and sessions whose connection id hashes to this reactor.
//
// Routing: a node's lease lives on the shard HomeOf(connection_id). A main connection
// accepted elsewhere is handed (fd + unread bytes) to that shard on its ProxyRequest, so
// a node's main connection, its proxy listener and all its peers share one reactor and
// forwarding takes no lock; a reconnecting node always meets its old session there.
//
// Thread: every method runs on the shard's reactor thread. Owned by the RelayServer.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "core/lease_table.h"
#include "net/reactor.h"
#include "net/timer_wheel.h"
#include "net/unique_fd.h"
#include "proto/relay.pb.h"
#include "server/server_context.h"
#include "server/stats.h"

namespace relay {

class MainConnection;
class ProxyConnection;
class Session;

class Shard final : public net::EventHandler {
 public:
  Shard(int index, net::Reactor* reactor, const ServerContext* context);
  ~Shard() override;

  // Takes the main listener for this reactor and registers it. Call before the loop runs.
  absl::Status Listen(net::UniqueFd listener);
  // Accepts main connections.
  void OnEvents(uint32_t events) override;

  // What happened to the main connection that sent a ProxyRequest.
  enum class RequestOutcome { kAnswered, kMoved, kClosed };
  RequestOutcome OnProxyRequest(MainConnection* conn, const wire::Message& request);
  // The main connection closed: ends its session (if it is the session's current one)
  // and deletes it at the end of the turn.
  void OnMainClosed(MainConnection* conn);
  // Called on this shard's thread by the hand-off task.
  void Adopt(net::UniqueFd fd, std::string input, uint64_t next_nonce, absl::Time last_activity,
             wire::Message request);

  // Closes every connection and session (shutdown). The leases stay until destruction.
  void CloseAll();

  // --- The staging budget shared by every peer on this reactor ---
  // Takes `bytes` from the budget; false (nothing taken) if it has less left.
  bool ReserveStage(uint64_t bytes);
  // Gives bytes back and wakes the peers waiting for budget.
  void ReleaseStage(uint64_t bytes);
  // `conn` could not reserve `need` bytes: call it back (OnEvents(kReadyEvent)) when
  // that much is free. Waiters are called back in arrival order.
  void WaitForStage(ProxyConnection* conn, uint64_t need);
  void CancelWaitForStage(ProxyConnection* conn);
  uint64_t stage_budget_left() const { return stage_left_; }

  // Which shard owns the lease of `connection_id`.
  static int HomeOf(absl::string_view connection_id, int shard_count);

  net::Reactor* reactor() const { return reactor_; }
  const ServerContext& context() const { return *context_; }
  ShardStats& stats() { return stats_; }
  const ShardStats& stats() const { return stats_; }
  int index() const { return index_; }
  size_t lease_count() const { return leases_.size(); }

 private:
  MainConnection* AddMain(net::UniqueFd fd, uint64_t next_nonce, absl::Time last_activity);
  RequestOutcome Answer(MainConnection* conn, const wire::Message& request, uint16_t port);
  RequestOutcome Refuse(MainConnection* conn);
  void HandOff(MainConnection* conn, const wire::Message& request, int home);
  // Opens a proxy listener on `port`; empty fd if the port cannot be bound.
  net::UniqueFd BindProxy(uint16_t port);
  bool StartSession(Lease* lease, absl::string_view id, net::UniqueFd listener,
                    MainConnection* conn);
  void EndSession(Session* session, absl::Time last_activity);
  void OnLeaseTimer(std::string id);

  const int index_;
  net::Reactor* reactor_;
  const ServerContext* context_;
  ShardStats stats_;
  net::UniqueFd listener_;
  uint64_t listener_handle_ = 0;
  bool listening_ = false;
  LeaseTable leases_;
  uint64_t stage_left_;
  struct StageWaiter {
    ProxyConnection* conn;
    uint64_t need;
  };
  std::deque<StageWaiter> stage_waiters_;
  absl::flat_hash_map<MainConnection*, std::unique_ptr<MainConnection>> mains_;
};

}  // namespace relay
