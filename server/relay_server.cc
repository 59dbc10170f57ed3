#include "server/relay_server.h"

#include <algorithm>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/log.h"
#include "net/socket_ops.h"

namespace relay {
namespace {

// Staging pipes are sized at most 256 KiB: pipe capacity counts against the per-user
// pipe budget (fs.pipe-user-pages-soft, 64 MiB by default) even while empty, so many
// moderate pipes serve more busy senders than a few huge ones.
size_t PipeBytesFor(const RelayConfig& config) {
  return std::clamp<size_t>(config.stage_bytes, 64 * 1024, 256 * 1024);
}

SourceLimits::Limits SourceLimitsOf(const RelayConfig& config) {
  SourceLimits::Limits limits;
  limits.max[SourceLimits::kMain] = config.max_mains_per_ip;
  limits.max[SourceLimits::kSession] = config.max_sessions_per_ip;
  limits.max[SourceLimits::kLease] = config.max_leases_per_ip;
  limits.max[SourceLimits::kPeer] = config.max_peers_per_ip;
  limits.requests_per_second = config.proxy_requests_per_ip;
  return limits;
}

// The stored leases this configuration can take back: ports inside --port_range, one
// lease per port (the later-expiring one), connection ids the relay would accept.
std::vector<StoredLease> UsableLeases(const std::vector<StoredLease>& loaded,
                                      const RelayConfig& config) {
  std::vector<StoredLease> sorted = loaded;
  std::sort(sorted.begin(), sorted.end(), [](const StoredLease& a, const StoredLease& b) {
    const int64_t ea = a.expires_unix_ms == 0 ? INT64_MAX : a.expires_unix_ms;
    const int64_t eb = b.expires_unix_ms == 0 ? INT64_MAX : b.expires_unix_ms;
    return ea > eb;
  });
  std::vector<StoredLease> out;
  absl::flat_hash_set<uint16_t> ports;
  size_t dropped = 0;
  for (StoredLease& l : sorted) {
    if (l.port < config.port_lo || l.port > config.port_hi || l.id.size() > kMaxConnectionIdBytes ||
        !ports.insert(l.port).second) {
      ++dropped;
      continue;
    }
    out.push_back(std::move(l));
  }
  if (dropped > 0) {
    RELAY_LOG(WARNING) << "--state_dir: " << dropped
                       << " stored leases not restored (port outside --port_range, or a port "
                          "stored twice)";
  }
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<RelayServer>> RelayServer::Create(const RelayConfig& config,
                                                                 const Clock* clock) {
  absl::Status status = ValidateConfig(config);
  if (!status.ok()) {
    return status;
  }
  std::unique_ptr<RelayServer> server(new RelayServer());
  ServerContext& ctx = server->context_;
  ctx.config = config;
  ctx.advertise_host = ResolveAdvertiseHost(config);
  ctx.max_control_bytes = std::min(config.max_frame_bytes, config.max_control_bytes);
  RouteProtobufLogs();
  const int threads = ResolveThreads(config);

  // The key first: whoever sees the port accept may read the key file.
  absl::StatusOr<Identity> key =
      config.key_file.empty() ? Identity::Generate() : Identity::LoadOrCreate(config.key_file);
  if (!key.ok()) {
    return key.status();
  }
  // One relay per main address: SO_REUSEPORT would let a second relay-server start
  // silently and the kernel would split nodes between two unrelated relays.
  if (config.listen.port != 0) {
    const std::string name = absl::StrCat("relay-server:", config.listen.port);
    absl::StatusOr<net::UniqueFd> lock = net::TakeExclusiveName(name);
    if (!lock.ok() || net::PortHasListener(config.listen.host, config.listen.port)) {
      return absl::AlreadyExistsError(absl::StrCat(
          "main port ", config.listen.host, ":", config.listen.port,
          " is already in use (another relay-server, or another program); refusing to start "
          "a second relay there (stop the other one, or pick another --listen)"));
    }
    server->instance_lock_ = std::move(*lock);
  }
  // The first listener picks the port (config may say 0); the others join it.
  std::vector<net::UniqueFd> listeners;
  uint16_t port = config.listen.port;
  for (int i = 0; i < threads; ++i) {
    absl::StatusOr<net::UniqueFd> fd = net::Listen(config.listen.host, port, true);
    if (!fd.ok()) {
      return absl::Status(fd.status().code(), absl::StrCat("main listener ", config.listen.host,
                                                           ":", port, ": ", fd.status().message()));
    }
    port = net::LocalPort(fd->get());
    listeners.push_back(std::move(*fd));
  }
  server->main_port_ = port;

  server->codec_ = std::make_unique<ControlCodec>(
      config.network_id, std::move(*key), absl::StrCat("tcp://", ctx.advertise_host, ":", port));
  // The names a fresh claim may carry: the advertised address, the listen address, and
  // the operator's --relay_name list.
  ctx.relay_names = config.relay_names;
  ctx.relay_names.push_back(server->codec_->relay_address());
  if (config.listen.host != "0.0.0.0" && config.listen.host != ctx.advertise_host) {
    ctx.relay_names.push_back(absl::StrCat("tcp://", config.listen.host, ":", port));
  }
  // Leases from --state_dir: their ports stay out of the pool, so no other node gets one.
  std::vector<StoredLease> restored;
  if (!config.state_dir.empty()) {
    LeaseStore::Options options;
    options.dir = config.state_dir;
    options.discard_corrupt = config.state_discard_corrupt;
    options.sync_interval = config.state_sync_interval;
    options.clock = clock;
    absl::StatusOr<std::unique_ptr<LeaseStore>> store = LeaseStore::Open(options);
    if (!store.ok()) {
      return store.status();
    }
    server->store_ = std::move(*store);
    for (const std::string& file : server->store_->discarded()) {
      RELAY_LOG(WARNING) << "--state_discard_corrupt: moved the damaged lease state to " << file
                         << "; starting with no leases";
    }
    restored = UsableLeases(server->store_->loaded(), config);
  }
  std::vector<uint16_t> held;
  for (const StoredLease& l : restored) {
    held.push_back(l.port);
  }
  server->ports_ = std::make_unique<PortPool>(config.port_lo, config.port_hi, held);
  server->limits_ = std::make_unique<SourceLimits>(SourceLimitsOf(config));
  ctx.codec = server->codec_.get();
  ctx.ports = server->ports_.get();
  ctx.limits = server->limits_.get();

  for (int i = 0; i < threads; ++i) {
    absl::StatusOr<std::unique_ptr<net::Reactor>> reactor =
        net::Reactor::Create(i, threads, clock, PipeBytesFor(config));
    if (!reactor.ok()) {
      return reactor.status();
    }
    server->reactors_.push_back(std::move(*reactor));
  }
  for (int i = 0; i < threads; ++i) {
    server->shards_.push_back(std::make_unique<Shard>(i, server->reactors_[i].get(), &ctx));
    ctx.shards.push_back(server->shards_.back().get());
  }
  if (server->store_ != nullptr) {
    // Remembered until their time on disk (a lease live at a crash: a whole lease time
    // from now, its node was attached), never beyond a lease time from now.
    const absl::Time now = clock->Now();
    const int64_t wall_ms = absl::ToUnixMillis(clock->WallNow());
    for (const StoredLease& l : restored) {
      absl::Duration left = l.expires_unix_ms == 0
                                ? config.lease_ttl
                                : absl::Milliseconds(l.expires_unix_ms - wall_ms);
      left = std::min(left, config.lease_ttl);
      server->shards_[Shard::HomeOf(l.id, threads)]->RestoreLease(l, now + left);
    }
    server->leases_restored_ = restored.size();
    status = server->store_->Start(restored);
    if (!status.ok()) {
      return status;
    }
    for (auto& shard : server->shards_) {
      shard->set_lease_observer(server->store_.get());
    }
    RELAY_LOG(INFO) << "--state_dir=" << config.state_dir << ": " << restored.size()
                    << " leases restored";
  }
  for (int i = 0; i < threads; ++i) {
    status = server->shards_[i]->Listen(std::move(listeners[i]));
    if (!status.ok()) {
      return status;
    }
  }
  return server;
}

RelayServer::~RelayServer() {
  Stop();
  shards_.clear();  // before the reactors they use
  reactors_.clear();
}

void RelayServer::Start() {
  if (started_) {
    return;
  }
  started_ = true;
  for (size_t i = 0; i < reactors_.size(); ++i) {
    threads_.emplace_back([this, i] {
      reactors_[i]->Run();
      // Tear down on the reactor's own thread, then let deferred deletions run.
      shards_[i]->CloseAll();
      reactors_[i]->RunDeferred();
    });
  }
}

namespace {

class DrainTask final : public net::Task {
 public:
  explicit DrainTask(Shard* shard) : shard_(shard) {}
  void Run() override { shard_->BeginDrain(); }

 private:
  Shard* shard_;
};

}  // namespace

bool RelayServer::Drain(absl::Duration timeout) {
  if (!started_ || stopped_) {
    return true;
  }
  if (!drain_started_) {
    drain_started_ = true;
    for (size_t i = 0; i < reactors_.size(); ++i) {
      reactors_[i]->PostExternal(std::make_unique<DrainTask>(shards_[i].get()));
    }
  }
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    bool all = true;
    for (const auto& shard : shards_) {
      all = all && shard->drained();
    }
    if (all) {
      return true;
    }
    if (absl::Now() >= deadline) {
      return false;
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
}

void RelayServer::Stop() {
  if (stopped_) {
    return;
  }
  stopped_ = true;
  for (auto& reactor : reactors_) {
    reactor->Stop();
  }
  for (auto& thread : threads_) {
    thread.join();
  }
  threads_.clear();
  if (!started_) {
    for (size_t i = 0; i < shards_.size(); ++i) {
      shards_[i]->CloseAll();
      reactors_[i]->RunDeferred();
    }
  }
  if (store_ != nullptr) {
    // Every session has ended (its lease remembered): write the last snapshot, and
    // report nothing more (destroying the tables does not end the leases on disk).
    store_->Close();
    for (auto& shard : shards_) {
      shard->set_lease_observer(nullptr);
    }
  }
}

std::map<std::string, uint64_t> RelayServer::Counters() const {
  std::map<std::string, uint64_t> out;
  for (size_t c = 0; c < static_cast<size_t>(Counter::kCount); ++c) {
    uint64_t sum = 0;
    for (const auto& shard : shards_) {
      sum += shard->stats().Get(static_cast<Counter>(c));
    }
    out[std::string(kCounterNames[c])] = sum;
  }
  out["ports_free"] = ports_->available();
  if (store_ != nullptr) {
    out["leases_restored"] = leases_restored_;
    out["state_write_errors"] = store_->write_errors();
    out["state_snapshots"] = store_->snapshots();
  }
  out["source_ips"] = limits_->tracked_ips();
  return out;
}

}  // namespace relay
