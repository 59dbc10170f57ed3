// The RelayServer's part of a live upgrade (server/upgrade.h). New side: check and adopt
// a handed-over state (AdoptState, run by Create). Old side: freeze every shard until all
// are at rest and export their state with the relay's own (FreezeForHandover), or resume
// (ThawAfterHandover). Declared in server/relay_server.h.
#include <sodium.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "base/log.h"
#include "server/relay_server.h"
#include "server/shard_task.h"

namespace relay {
namespace {

// "ADVERTISE@BIND" of each proxy address (a live upgrade keeps them).
std::vector<std::string> ProxyAddressNames(const std::vector<ProxyAddress>& addresses) {
  std::vector<std::string> out;
  for (const ProxyAddress& a : addresses) {
    out.push_back(absl::StrCat(a.advertise, "@", a.bind));
  }
  return out;
}

// The leases of a handed-over state, as the lease store keeps them.
std::vector<StoredLease> StoredLeasesOf(const handover::State& state, int64_t wall_ms,
                                        const std::vector<ProxyAddress>& addresses) {
  std::vector<StoredLease> out;
  for (const handover::Shard& shard : state.shards()) {
    for (const handover::Lease& l : shard.leases()) {
      StoredLease stored;
      stored.id = l.id();
      stored.port = static_cast<uint16_t>(l.port());
      stored.owner_key = l.owner_key();
      stored.fresh_claim_ms = l.fresh_claim_ms();
      stored.expires_unix_ms = l.live() ? 0 : wall_ms + l.remembered_ms_left();
      if (addresses.size() > 1 && l.address() < addresses.size()) {
        stored.address = addresses[l.address()].advertise;
      }
      out.push_back(std::move(stored));
    }
  }
  return out;
}

// A live upgrade keeps the listeners and the leases' ports: the new process must listen
// where the old one does and hand out the same range.
absl::Status CheckHandedOver(const RelayConfig& config, const handover::State& state) {
  const std::string range = absl::StrCat(config.port_lo, "-", config.port_hi);
  // The same addresses in the same order (a port 0 matches the port the old one got).
  auto same = [](const HostPort& want, const std::string& have) {
    absl::StatusOr<HostPort> h = ParseHostPort(have);
    return h.ok() && h->host == want.host && (want.port == 0 || want.port == h->port);
  };
  bool same_listen = same(config.listen, state.listen()) &&
                     static_cast<size_t>(state.more_listen_size()) == config.more_listen.size();
  for (size_t i = 0; same_listen && i < config.more_listen.size(); ++i) {
    same_listen = same(config.more_listen[i], state.more_listen(static_cast<int>(i)));
  }
  if (!same_listen) {
    std::string have = state.listen();
    for (const std::string& more : state.more_listen()) {
      absl::StrAppend(&have, ",", more);
    }
    return absl::FailedPreconditionError(
        absl::StrCat("--listen differs from the running relay's (", have,
                     "): a live upgrade keeps the listeners (change --listen with a restart)"));
  }
  const std::vector<std::string> addresses = ProxyAddressNames(ResolveProxyAddresses(config));
  if (!std::equal(addresses.begin(), addresses.end(), state.proxy_addresses().begin(),
                  state.proxy_addresses().end())) {
    return absl::FailedPreconditionError(
        absl::StrCat("--advertise_host differs from the running relay's (",
                     absl::StrJoin(state.proxy_addresses(), ","),
                     "): a live upgrade keeps every proxy address (change it with a restart)"));
  }
  if (state.port_range() != range) {
    return absl::FailedPreconditionError(absl::StrCat(
        "--port_range=", range, " differs from the running relay's ", state.port_range(),
        ": a live upgrade keeps every proxy address (change --port_range with a restart)"));
  }
  if (state.shards_size() == 0 || state.shards_size() > 1024 ||
      state.shard_key().size() != crypto_shorthash_KEYBYTES) {
    return absl::DataLossError("handed-over state has no shards, or no shard key");
  }
  return absl::OkStatus();
}

// Shifts the fd indexes of one shard's exported state past `base`, the fds of the shards
// exported before it.
void ShiftFdIndexes(uint32_t base, handover::Shard* out) {
  out->set_listener_fd(out->listener_fd() + base);
  for (int j = 0; j < out->more_listener_fds_size(); ++j) {
    out->set_more_listener_fds(j, out->more_listener_fds(j) + base);
  }
  for (handover::Lease& l : *out->mutable_leases()) {
    if (l.live()) {
      l.mutable_session()->set_listener_fd(l.session().listener_fd() + base);
      for (handover::Peer& p : *l.mutable_session()->mutable_peers()) {
        p.set_fd(p.fd() + base);
      }
    }
  }
  for (handover::Main& m : *out->mutable_mains()) {
    m.set_fd(m.fd() + base);
  }
}

}  // namespace

void RelayServer::KeepRunningPortRange(const std::string& running) {
  RelayConfig& config = context_.config;
  uint16_t lo = 0, hi = 0;
  if (config.port_range_default && ParsePortRange(running, &lo, &hi).ok() &&
      (lo != config.port_lo || hi != config.port_hi)) {
    // The default range changed between versions: the running relay's stays (its leases
    // are on it), unless --port_range says otherwise.
    RELAY_LOG(WARNING) << "keeping the running relay's proxy ports " << running
                       << " (this version's default is " << config.port_lo << "-" << config.port_hi
                       << "); set --port_range to keep them after a restart too";
    config.port_lo = lo;
    config.port_hi = hi;
  }
}

absl::Status RelayServer::AdoptState(const Clock* clock, HandedOver* taken) {
  const RelayConfig& config = context_.config;
  KeepRunningPortRange(taken->state.port_range());
  absl::Status status = CheckHandedOver(config, taken->state);
  if (!status.ok()) {
    return status;
  }
  context_.shard_key = taken->state.shard_key();
  // The old process's reactor count: each shard's leases, sessions and main listener go
  // to the shard of the same index.
  const int threads = taken->state.shards_size();
  if (config.threads != 0 && config.threads != threads) {
    RELAY_LOG(WARNING) << "--threads=" << config.threads << " ignored: a live upgrade keeps the "
                       << threads << " reactors of the running relay (change it with a restart)";
  }
  absl::StatusOr<Identity> key = LoadRelayKey(config, taken->state.relay_seed());
  if (!key.ok()) {
    return key.status();
  }
  status = AdoptMainListeners(taken);
  if (!status.ok()) {
    return status;
  }
  SetUpCodec(std::move(*key));
  if (codec_->relay().secret_key().substr(0, 32) != taken->state.relay_seed()) {
    RELAY_LOG(WARNING) << RelayKeyPath(config) << " holds another key than the running relay's: "
                       << "nodes identify the relay by its key and will lose track of it";
  }
  status = OpenStore(clock);
  if (!status.ok()) {
    return status;
  }
  // The handed-over leases are the truth (the old process wrote the same to disk).
  const std::vector<StoredLease> restored =
      StoredLeasesOf(taken->state, absl::ToUnixMillis(clock->WallNow()), context_.proxy_addresses);
  MakePools(restored);
  MakeLimits();
  RestoreSourceBuckets(taken->state, clock);
  status = MakeShards(threads, clock);
  for (int i = 0; status.ok() && i < threads; ++i) {
    status = shards_[i]->Import(taken->state.shards(i), &taken->fds);
  }
  if (!status.ok()) {
    return status;
  }
  imported_ = true;
  return store_ != nullptr ? StartStore(restored) : absl::OkStatus();
}

absl::Status RelayServer::AdoptMainListeners(HandedOver* taken) {
  // The old process's listeners, instance locks and all: nothing is bound anew.
  std::vector<uint32_t> locks(taken->state.more_instance_lock_fds().begin(),
                              taken->state.more_instance_lock_fds().end());
  if (taken->state.has_instance_lock()) {
    locks.push_back(taken->state.instance_lock_fd());
  }
  for (uint32_t i : locks) {
    if (i >= taken->fds.size()) {
      return absl::DataLossError("handed-over state names a missing fd");
    }
    instance_locks_.push_back(std::move(taken->fds[i]));
  }
  absl::StatusOr<HostPort> listen = ParseHostPort(taken->state.listen());
  if (!listen.ok()) {
    return listen.status();
  }
  main_port_ = listen->port;
  listen_names_.assign(taken->state.more_listen().begin(), taken->state.more_listen().end());
  return absl::OkStatus();
}

void RelayServer::RestoreSourceBuckets(const handover::State& state, const Clock* clock) {
  for (const handover::SourceBuckets& b : state.source_buckets()) {
    SourceLimits::Levels levels;
    levels.ip = b.ip();
    if (b.requests_limited()) {
      levels.requests = b.request_tokens();
    }
    if (b.control_limited()) {
      levels.control = b.control_tokens();
    }
    limits_->RestoreLevels(levels, clock->Now());
  }
}

// One attempt at exporting every shard: each reactor runs an export task and, if its
// shard was at rest, stays inside it until released.
struct RelayServer::HandoverRound {
  std::mutex mu;
  std::condition_variable cv;
  size_t reported = 0;
  bool all_at_rest = true;
  bool released = false;
  std::vector<handover::Shard> shards;
  std::vector<std::vector<int>> fds;
};

bool RelayServer::TryExport(handover::State* state, std::vector<int>* fds) {
  auto round = std::make_shared<HandoverRound>();
  round->shards.resize(shards_.size());
  round->fds.resize(shards_.size());
  for (size_t i = 0; i < shards_.size(); ++i) {
    reactors_[i]->PostExternal(MakeShardTask(shards_[i].get(), [round, i](Shard* shard) {
      const bool at_rest = shard->AtRest();
      if (at_rest) {
        shard->Export(&round->shards[i], &round->fds[i]);
      }
      std::unique_lock<std::mutex> lock(round->mu);
      round->all_at_rest = round->all_at_rest && at_rest;
      ++round->reported;
      round->cv.notify_all();
      if (at_rest) {
        // Nothing on this reactor may move while its fds travel: stay here.
        round->cv.wait(lock, [&] { return round->released; });
      }
    }));
  }
  std::unique_lock<std::mutex> lock(round->mu);
  round->cv.wait(lock, [&] { return round->reported == shards_.size(); });
  if (!round->all_at_rest) {
    round->released = true;
    round->cv.notify_all();
    return false;
  }
  lock.unlock();
  for (size_t i = 0; i < shards_.size(); ++i) {
    handover::Shard* out = state->add_shards();
    *out = std::move(round->shards[i]);
    ShiftFdIndexes(static_cast<uint32_t>(fds->size()), out);
    fds->insert(fds->end(), round->fds[i].begin(), round->fds[i].end());
  }
  round_ = std::move(round);
  return true;
}

void RelayServer::ReleaseRound() {
  if (round_ != nullptr) {
    std::lock_guard<std::mutex> lock(round_->mu);
    round_->released = true;
    round_->cv.notify_all();
  }
  round_.reset();
}

absl::Status RelayServer::FreezeShards(absl::Duration timeout) {
  auto frozen = std::make_shared<std::atomic<int>>(0);
  auto refused = std::make_shared<std::atomic<bool>>(false);
  for (size_t i = 0; i < shards_.size(); ++i) {
    reactors_[i]->PostExternal(MakeShardTask(shards_[i].get(), [frozen, refused](Shard* shard) {
      if (!shard->Freeze()) {
        refused->store(true);
      }
      frozen->fetch_add(1);
    }));
  }
  const absl::Time start = absl::Now();
  while (frozen->load() < static_cast<int>(shards_.size()) && absl::Now() - start < timeout) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  if (refused->load() || frozen->load() < static_cast<int>(shards_.size())) {
    return absl::FailedPreconditionError("a reactor could not be frozen (draining?)");
  }
  return absl::OkStatus();
}

absl::Status RelayServer::ExportAtRest(absl::Time start, absl::Duration timeout,
                                       handover::State* state, std::vector<int>* fds) {
  bool forced = false;
  for (int attempts = 1;; ++attempts) {
    fds->clear();
    state->Clear();
    if (TryExport(state, fds)) {
      RELAY_LOG_ALWAYS(INFO) << "live upgrade: at rest after "
                             << absl::FormatDuration(absl::Now() - start) << " (" << attempts
                             << " checks)";
      return absl::OkStatus();
    }
    const absl::Duration elapsed = absl::Now() - start;
    if (!forced && elapsed >= timeout) {
      // What would not come to rest is closed (counted) rather than handed over half-way.
      forced = true;
      for (size_t i = 0; i < shards_.size(); ++i) {
        reactors_[i]->PostExternal(
            MakeShardTask(shards_[i].get(), [](Shard* shard) { shard->ForceRest(); }));
      }
    } else if (forced && elapsed >= timeout + absl::Seconds(2)) {
      return absl::DeadlineExceededError(
          "the relay did not come to rest for the hand-over; it runs on unchanged");
    }
    absl::SleepFor(absl::Milliseconds(1));
  }
}

void RelayServer::ExportRelayState(handover::State* state, std::vector<int>* fds) const {
  state->set_listen(FormatHostPort(context_.config.listen.host, main_port_));
  for (const std::string& name : listen_names_) {
    state->add_more_listen(name);
  }
  state->set_port_range(absl::StrCat(context_.config.port_lo, "-", context_.config.port_hi));
  state->set_relay_seed(codec_->relay().secret_key().substr(0, 32));
  state->set_shard_key(context_.shard_key);
  for (const std::string& name : ProxyAddressNames(context_.proxy_addresses)) {
    state->add_proxy_addresses(name);
  }
  // The source IPs' rate buckets that are not full go along (each main connection's own
  // went with it): restarting the relay refills none of them.
  for (const SourceLimits::Levels& l : limits_->ExportLevels(reactors_[0]->clock()->Now())) {
    handover::SourceBuckets* b = state->add_source_buckets();
    b->set_ip(l.ip);
    if (l.requests) {
      b->set_requests_limited(true);
      b->set_request_tokens(*l.requests);
    }
    if (l.control) {
      b->set_control_limited(true);
      b->set_control_tokens(*l.control);
    }
  }
  for (const net::UniqueFd& lock : instance_locks_) {
    state->add_more_instance_lock_fds(static_cast<uint32_t>(fds->size()));
    fds->push_back(lock.get());
  }
}

absl::StatusOr<handover::State> RelayServer::FreezeForHandover(absl::Duration timeout,
                                                               std::vector<int>* fds) {
  if (!started_ || stopped_ || drain_started_ || handing_over_) {
    return absl::FailedPreconditionError(
        "the relay is not running (stopping, draining, or already handing over)");
  }
  handing_over_ = true;
  const absl::Time start = absl::Now();
  handover::State state;
  absl::Status status = FreezeShards(timeout);
  if (status.ok()) {
    status = ExportAtRest(start, timeout, &state, fds);
  }
  if (!status.ok()) {
    handing_over_ = false;
    for (size_t i = 0; i < shards_.size(); ++i) {
      reactors_[i]->PostExternal(
          MakeShardTask(shards_[i].get(), [](Shard* shard) { shard->Thaw(); }));
    }
    return status;
  }
  // Every reactor is stopped: no lease changes. Close the store, so the new process owns
  // the files (it writes a fresh snapshot of the same leases).
  if (store_ != nullptr) {
    store_->Close();
    for (auto& shard : shards_) {
      shard->set_lease_store(nullptr);
    }
  }
  ExportRelayState(&state, fds);
  return state;
}

absl::Status RelayServer::ThawAfterHandover() {
  absl::Status status = absl::OkStatus();
  if (store_ != nullptr) {
    // The reactors are still stopped: read the leases as they stand, and record anew.
    LeaseStore::Options options;
    options.dir = context_.config.state_dir;
    options.sync_interval = context_.config.state_sync_interval;
    absl::StatusOr<std::unique_ptr<LeaseStore>> store = LeaseStore::Open(options);
    if (store.ok()) {
      std::vector<StoredLease> leases = (*store)->loaded();
      status = (*store)->Start(leases);
      if (status.ok()) {
        for (auto& shard : shards_) {
          shard->set_lease_store(nullptr);
        }
        store_ = std::move(*store);
        for (auto& shard : shards_) {
          shard->set_lease_store(store_.get());
        }
      }
    } else {
      status = store.status();
    }
    if (!status.ok()) {
      RELAY_LOG(ERROR) << "after a failed hand-over the lease store could not be reopened ("
                       << status.message() << "): lease changes are not written to --state_dir "
                       << "until a restart";
    }
  }
  ReleaseRound();
  for (size_t i = 0; i < shards_.size(); ++i) {
    reactors_[i]->PostExternal(
        MakeShardTask(shards_[i].get(), [](Shard* shard) { shard->Thaw(); }));
  }
  handing_over_ = false;
  return status;
}

}  // namespace relay
