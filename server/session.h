// Session: a node's live presence on the relay: its proxy listener, the peers connected
// to it, the main connection their frames go to, and its share of the reactor's staging
// memory (StageAccount). A session lives while its node's main connection does; a newer
// main connection with the same connection id takes it over (the listener and the peers
// stay). When it ends, the lease is remembered by the Shard.
//
// Thread: one reactor (the shard that owns the node's lease). Owned by the Shard (in the
// lease's attachment); destroyed deferred, at the end of a loop turn.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "core/stage_budget.h"
#include "net/acceptor.h"
#include "net/unique_fd.h"

namespace relay {

class MainConnection;
class ProxyConnection;
class Shard;

// An EventHandler only so that the reactor can delete it deferred (its listener's events
// go to its Acceptor).
class Session final : public net::EventHandler {
 public:
  // `source_ip`: the node's IPv4 address, already counted against the per-IP session
  // limit by the caller; released when the session is destroyed.
  Session(Shard* shard, std::string connection_id, uint16_t port, net::UniqueFd listener,
          uint64_t source_ip, uint8_t address = 0);
  ~Session();

  // Registers the proxy listener. Returns false on failure.
  bool Start();
  void OnEvents(uint32_t /*events*/) override {}

  MainConnection* main() const { return main_; }
  // Makes `main` the connection frames go to. The previous one (if any) gives its commit
  // queue to the new one and is detached; the caller closes it.
  void AttachMain(MainConnection* main);

  // Closes the listener and every peer; staged frames are dropped and their memory given
  // back at once. Idempotent.
  void Shutdown();
  // The relay is draining: closes the listener; each peer stops at its next frame
  // boundary, its complete frames still delivered.
  void Drain();
  // Drain() is done: every peer delivered what it had and is gone.
  bool Drained() const { return peers_.empty(); }
  // Live upgrade (server/upgrade.h): stop accepting peers, pause each at its next frame
  // boundary; Thaw() resumes. AtRest(): every peer paused with nothing in flight.
  void Freeze();
  void Thaw();
  bool AtRest() const;
  // After --upgrade_timeout: closes every peer that is not at rest (inside a frame), its
  // partial frame dropped. Returns how many.
  size_t DropRestless();
  int listener_fd() const { return acceptor_.fd(); }
  // The peers, for handing them over (in no order).
  std::vector<const ProxyConnection*> peers() const;
  // A peer handed over by the previous process (its IP already counted by the caller).
  bool AdoptPeer(net::UniqueFd fd, uint64_t source_ip);
  // Deletes (deferred) a proxy connection that is finished.
  void ReapIfFinished(ProxyConnection* conn);

  const std::string& connection_id() const { return connection_id_; }
  uint16_t port() const { return port_; }
  uint8_t address() const { return address_; }  // index of its proxy address
  uint64_t source_ip() const { return source_ip_; }
  size_t peer_count() const { return peers_.size(); }
  StageAccount& stage_account() { return stage_account_; }
  // The node's main connection is taking data now (not blocked on a full socket).
  bool NodeDraining() const;
  // Bytes waiting for the node: staged frames of every peer.
  uint64_t queued_bytes() const { return stage_account_.used; }
  // When the last takeover of this session happened (InfinitePast if none).
  absl::Time last_takeover = absl::InfinitePast();
  // When it started (for the session's end line in the log).
  absl::Time started_at;
  // Traffic to the node (for the admin endpoint's /sessions): whole frames staged from
  // its peers, and bytes written to its main connection.
  uint64_t frames_to_node = 0;
  uint64_t bytes_to_node = 0;

 private:
  void OnPeer(net::UniqueFd fd);

  Shard* shard_;
  std::string connection_id_;
  uint16_t port_;
  uint8_t address_;
  uint64_t source_ip_;
  net::Acceptor acceptor_;
  MainConnection* main_ = nullptr;
  StageAccount stage_account_;
  absl::flat_hash_map<ProxyConnection*, std::unique_ptr<ProxyConnection>> peers_;
};

}  // namespace relay
