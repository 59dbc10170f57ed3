// MakeShardTask: a task that runs `fn(shard)` on the shard's reactor (Reactor::Post /
// PostExternal), for the RelayServer's calls into its shards (start, upgrade, drain,
// snapshots). Internal to server/.
#pragma once

#include <memory>
#include <utility>

#include "net/reactor.h"
#include "server/shard.h"

namespace relay {

// Runs `fn(shard)` on the shard's reactor.
template <typename F>
class ShardTask final : public net::Task {
 public:
  ShardTask(Shard* shard, F fn) : shard_(shard), fn_(std::move(fn)) {}
  void Run() override { fn_(shard_); }

 private:
  Shard* shard_;
  F fn_;
};

template <typename F>
std::unique_ptr<net::Task> MakeShardTask(Shard* shard, F fn) {
  return std::make_unique<ShardTask<F>>(shard, std::move(fn));
}

}  // namespace relay
