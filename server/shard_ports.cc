// Shard: proxy ports for claims (the pools, in turn over the proxy addresses) and pool
// pressure: which remembered lease gives its port to a new node (fair by source group),
// here or on the shard holding the most (EvictTask), and the claims that wait for it.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/log.h"
#include "net/socket_ops.h"
#include "server/main_connection.h"
#include "server/shard.h"

namespace relay {
namespace {

// Ports tried for one ProxyRequest before the request is refused.
constexpr size_t kBindTries = 64;

class RetryClaimsTask final : public net::Task {
 public:
  explicit RetryClaimsTask(Shard* target) : target_(target) {}
  void Run() override { target_->RetryPendingClaims(); }

 private:
  Shard* target_;
};

// Frees a port on `target` for a claim from `source_ip` (the remembered lease
// Shard::PressureVictim picks there, if any), then tells `requester`.
class EvictTask final : public net::Task {
 public:
  EvictTask(Shard* target, Shard* requester, uint64_t source_ip)
      : target_(target), requester_(requester), source_ip_(source_ip) {}
  void Run() override {
    Lease* victim = target_->PressureVictim(source_ip_);
    if (victim == nullptr) {
      target_->stats().Add(Counter::kEvictionsLimited);
    }
    target_->EvictRemembered(victim);
    target_->reactor()->Post(requester_->reactor(), std::make_unique<RetryClaimsTask>(requester_));
  }

 private:
  Shard* target_;
  Shard* requester_;
  uint64_t source_ip_;
};

}  // namespace

std::optional<Shard::PortChoice> Shard::TakePort(net::UniqueFd* listener, uint64_t source_ip,
                                                 bool* asked_elsewhere) {
  // Proxy addresses in turn (each shard starts where it left off), so nodes spread over
  // every address's ports.
  const std::vector<PortPool*>& pools = context_->pools;
  auto allocate = [&]() -> std::optional<PortChoice> {
    for (size_t i = 0; i < pools.size(); ++i) {
      const uint8_t a = static_cast<uint8_t>((next_address_ + i) % pools.size());
      auto bind = [&](uint16_t p) { return (*listener = BindProxy(a, p)).valid(); };
      if (std::optional<uint16_t> port = pools[a]->AllocateUsable(bind, kBindTries)) {
        next_address_ = static_cast<uint8_t>((a + 1) % pools.size());
        return PortChoice{a, *port};
      }
    }
    return std::nullopt;
  };
  std::optional<PortChoice> port = allocate();
  size_t free = 0;
  for (const PortPool* pool : pools) {
    free += pool->available();
  }
  if (port || free > 0) {
    return port;  // found one, or only bind failures (not pool pressure)
  }
  // Pool pressure: a new node gets the port of a remembered lease rather than being
  // locked out for the lease time. Fair by source: the group holding the most remembered
  // leases loses its oldest first, and a group may push out other groups' leases only
  // within its eviction allowance (--evictions_per_source); beyond it, only its own.
  if (Lease* victim = PressureVictim(source_ip)) {
    EvictRemembered(victim);
    return allocate();
  }
  if (leases_.remembered_count() > 0) {
    stats_.Add(Counter::kEvictionsLimited);  // over its allowance, and none of its own
  } else if (asked_elsewhere != nullptr) {
    AskRichestShard(source_ip, asked_elsewhere);
  }
  return std::nullopt;
}

void Shard::AskRichestShard(uint64_t source_ip, bool* asked) {
  // None here: ask the shard holding the most remembered leases to free one, by the same
  // rule (PressureVictim, there); the claim waits for it (RetryPendingClaims).
  Shard* richest = nullptr;
  for (Shard* shard : context_->shards) {
    if (shard != this && shard->remembered_count() > 0 &&
        (richest == nullptr || shard->remembered_count() > richest->remembered_count())) {
      richest = shard;
    }
  }
  if (richest != nullptr) {
    reactor_->Post(richest->reactor(), std::make_unique<EvictTask>(richest, this, source_ip));
    *asked = true;
  }
}

void Shard::RetryPendingClaims() {
  std::deque<PendingClaim> claims;
  claims.swap(pending_claims_);
  for (PendingClaim& claim : claims) {
    MainConnection* conn = claim.conn;
    conn->set_claim_pending(false);
    // Once only: if the freed port went to someone else, this claim is refused.
    if (Claim(conn, claim.request, claim.proof, /*may_wait=*/false) == RequestOutcome::kAnswered) {
      conn->ProcessInput();
    }
  }
}

Lease* Shard::PressureVictim(uint64_t source_ip) {
  const uint64_t own = SourceLimits::EvictionGroup(source_ip);
  Lease* heaviest = leases_.OldestOfHeaviestGroup();
  if (heaviest == nullptr || SourceLimits::EvictionGroup(heaviest->source_ip) == own) {
    return heaviest;  // none, or the claimant's own group's
  }
  if (source_limits().AllowEviction(source_ip, reactor_->clock()->Now())) {
    return heaviest;
  }
  return leases_.OldestRememberedOf(own);  // over its allowance: only its own
}

void Shard::EvictRemembered(Lease* lease) {
  if (lease == nullptr) {
    return;
  }
  stats_.Add(Counter::kLeasesEvicted);
  RELAY_LOG_LIMITED(WARNING) << "proxy port pool empty: the port of a remembered lease ("
                             << lease->port
                             << ", of the source group holding the most) goes to a new node "
                                "(counted as leases_evicted)";
  const std::string id(lease->id);
  leases_.Erase(id);
  UpdateRemembered();
}

net::UniqueFd Shard::BindProxy(uint8_t address, uint16_t port) {
  absl::StatusOr<net::UniqueFd> fd = net::Listen(context_->proxy_addresses[address].bind, port,
                                                 /*reuse_port=*/false, 1024);
  if (!fd.ok()) {
    stats_.Add(Counter::kProxyBindFailures);
    return net::UniqueFd();
  }
  return std::move(*fd);
}

}  // namespace relay
