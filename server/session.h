// Session: a node's live presence on the relay: its proxy listener, the peers connected
// to it, and the main connection their frames go to. A session lives while its node's
// main connection does; a newer main connection with the same connection id takes it over
// (the listener and the peers stay). When it ends, the lease is remembered by the Shard.
//
// Thread: one reactor (the shard that owns the node's lease). Owned by the Shard (in the
// lease's attachment); destroyed deferred, at the end of a loop turn.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "net/reactor.h"
#include "net/unique_fd.h"

namespace relay {

class MainConnection;
class ProxyConnection;
class Shard;

class Session final : public net::EventHandler {
 public:
  Session(Shard* shard, std::string connection_id, uint16_t port, net::UniqueFd listener);
  ~Session() override;

  // Registers the proxy listener. Returns false on failure.
  bool Start();
  // Accepts peers on the proxy listener.
  void OnEvents(uint32_t events) override;

  MainConnection* main() const { return main_; }
  // Makes `main` the connection frames go to. The previous one (if any) gives its commit
  // queue to the new one and is detached; the caller closes it.
  void AttachMain(MainConnection* main);

  // Closes the listener and every peer (staged frames are dropped). Idempotent.
  void Shutdown();
  // Deletes (deferred) a proxy connection that is finished.
  void ReapIfFinished(ProxyConnection* conn);

  const std::string& connection_id() const { return connection_id_; }
  uint16_t port() const { return port_; }
  size_t peer_count() const { return peers_.size(); }

 private:
  Shard* shard_;
  std::string connection_id_;
  uint16_t port_;
  net::UniqueFd listener_;
  uint64_t handle_ = 0;
  bool registered_ = false;
  MainConnection* main_ = nullptr;
  absl::flat_hash_map<ProxyConnection*, std::unique_ptr<ProxyConnection>> peers_;
};

}  // namespace relay
