// ServerContext: what every shard shares, read-only after start-up (plus the lock-free
// port pool). Owned by the RelayServer, which outlives all shards.
#pragma once

#include <string>
#include <vector>

#include "core/claim_check.h"
#include "core/config.h"
#include "core/control_codec.h"
#include "core/port_pool.h"
#include "core/source_limits.h"

namespace relay {

class Shard;

struct ServerContext {
  RelayConfig config;
  std::string advertise_host;  // of the first proxy address
  // Every proxy address, and its pool of free ports (the same index; a lease's address).
  std::vector<ProxyAddress> proxy_addresses;
  std::vector<PortPool*> pools;
  ControlCodec* codec = nullptr;
  SourceLimits* limits = nullptr;  // thread-safe
  std::vector<Shard*> shards;      // index = reactor index; fixed before the reactors start
  uint32_t max_control_bytes = 0;
  // Keys Shard::HomeOf; random per relay, handed over by a live upgrade.
  std::string shard_key;
  // Who may claim an address (core/claim_check.h), with every "tcp://HOST:PORT" a fresh
  // claim may name.
  ClaimPolicy claims;
};

}  // namespace relay
