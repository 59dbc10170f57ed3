#include "server/relay_server.h"

#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <optional>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/log.h"
#include "net/host_info.h"
#include "net/scheduler_slice.h"
#include "net/socket_ops.h"
#include "server/shard_task.h"

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
  limits.prefix_factor = config.prefix_factor;
  limits.evictions_per_minute = config.evictions_per_source;
  limits.requests_per_second = config.proxy_requests_per_ip;
  limits.control_per_second = config.control_per_ip;
  return limits;
}

// Which proxy address a stored lease names (its advertised IP; empty: the first).
std::optional<uint8_t> AddressIndex(const std::vector<ProxyAddress>& addresses,
                                    const std::string& address) {
  if (address.empty()) {
    return 0;
  }
  for (size_t i = 0; i < addresses.size(); ++i) {
    if (addresses[i].advertise == address) {
      return static_cast<uint8_t>(i);
    }
  }
  return std::nullopt;
}

// The stored leases this configuration can take back: ports inside --port_range on a
// proxy address it still has, one lease per (address, port) (the later-expiring one),
// connection ids the relay would accept.
std::vector<StoredLease> UsableLeases(const std::vector<StoredLease>& loaded,
                                      const RelayConfig& config,
                                      const std::vector<ProxyAddress>& addresses) {
  std::vector<StoredLease> sorted = loaded;
  std::sort(sorted.begin(), sorted.end(), [](const StoredLease& a, const StoredLease& b) {
    const int64_t ea = a.expires_unix_ms == 0 ? INT64_MAX : a.expires_unix_ms;
    const int64_t eb = b.expires_unix_ms == 0 ? INT64_MAX : b.expires_unix_ms;
    return ea > eb;
  });
  std::vector<StoredLease> out;
  absl::flat_hash_set<std::pair<uint8_t, uint16_t>> taken;
  size_t dropped = 0;
  for (StoredLease& l : sorted) {
    const std::optional<uint8_t> address = AddressIndex(addresses, l.address);
    if (!address || l.port < config.port_lo || l.port > config.port_hi ||
        l.id.size() > kMaxConnectionIdBytes || !taken.insert({*address, l.port}).second) {
      ++dropped;
      continue;
    }
    out.push_back(std::move(l));
  }
  if (dropped > 0) {
    RELAY_LOG(WARNING) << "--state_dir: " << dropped
                       << " stored leases not restored (port outside --port_range, a proxy "
                          "address no longer in --advertise_host, or a port stored twice)";
  }
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<RelayServer>> RelayServer::Create(const RelayConfig& given,
                                                                 const Clock* clock,
                                                                 HandedOver* taken) {
  RelayConfig config = given;
  if (NeedsInterfaceAddress(config)) {
    config.interface_address = net::FirstInterfaceAddress(config.listen.host == "::");
  }
  absl::Status status = ValidateConfig(config);
  if (!status.ok()) {
    return status;
  }
  std::unique_ptr<RelayServer> server(new RelayServer());
  ServerContext& ctx = server->context_;
  ctx.config = config;
  ctx.proxy_addresses = ResolveProxyAddresses(config);
  ctx.advertise_host = ctx.proxy_addresses.front().advertise;
  ctx.max_control_bytes = std::min(config.max_frame_bytes, config.max_control_bytes);
  RouteProtobufLogs();
  status = taken != nullptr ? server->AdoptState(clock, taken) : server->StartFresh(clock);
  if (!status.ok()) {
    return status;
  }
  return server;
}

std::string RelayKeyPath(const RelayConfig& config) {
  if (!config.key_file.empty()) {
    return config.key_file;
  }
  return config.state_dir.empty() ? "" : config.state_dir + "/relay.key";
}

absl::StatusOr<Identity> LoadRelayKey(const RelayConfig& config, absl::string_view running_seed) {
  std::optional<Identity> running;
  if (!running_seed.empty()) {
    absl::StatusOr<Identity> from_seed = Identity::FromSeed(running_seed);
    if (!from_seed.ok()) {
      return from_seed.status();
    }
    running = *from_seed;
  }
  const std::string path = RelayKeyPath(config);
  if (path.empty()) {
    RELAY_LOG(WARNING) << "the relay's key is new at every start (no --key_file, no "
                          "--state_dir): nodes identify the relay by its key and lose track of "
                          "it after a restart; set --state_dir (the key is kept there) or "
                          "--key_file";
    return running ? *running : Identity::Generate();
  }
  if (config.key_file.empty() && ::mkdir(config.state_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return absl::PermissionDeniedError(
        absl::StrCat("--state_dir=", config.state_dir, ": cannot create: ", ErrnoText(errno)));
  }
  return Identity::LoadOrCreate(path, running ? &*running : nullptr);
}

absl::Status RelayServer::StartFresh(const Clock* clock) {
  const RelayConfig& config = context_.config;
  RELAY_CHECK(sodium_init() >= 0);
  context_.shard_key.resize(crypto_shorthash_KEYBYTES);
  randombytes_buf(context_.shard_key.data(), context_.shard_key.size());
  const int threads = ResolveThreads(config, net::OnlineCpus());
  // The key first: whoever sees the port accept may read the key file.
  absl::StatusOr<Identity> key = LoadRelayKey(config, "");
  if (!key.ok()) {
    return key.status();
  }
  // listeners[i]: reactor i's main listeners, one per --listen address.
  std::vector<std::vector<net::UniqueFd>> listeners(threads);
  absl::Status status = BindMainListeners(&listeners);
  if (!status.ok()) {
    return status;
  }
  SetUpCodec(std::move(*key));
  status = OpenStore(clock);
  if (!status.ok()) {
    return status;
  }
  const std::vector<StoredLease> restored =
      store_ != nullptr ? UsableLeases(store_->loaded(), config, context_.proxy_addresses)
                        : std::vector<StoredLease>();
  const std::vector<uint8_t> restored_address = MakePools(restored);
  MakeLimits();
  status = MakeShards(threads, clock);
  if (!status.ok()) {
    return status;
  }
  if (store_ != nullptr) {
    RestoreLeases(clock, restored, restored_address);
    status = StartStore(restored);
    RELAY_LOG(INFO) << "--state_dir=" << config.state_dir << ": " << restored.size()
                    << " leases restored";
  }
  for (int i = 0; status.ok() && i < threads; ++i) {
    for (net::UniqueFd& fd : listeners[i]) {
      status.Update(shards_[i]->Listen(std::move(fd)));
    }
  }
  return status;
}

absl::Status RelayServer::LockMainPorts(const std::vector<HostPort>& addresses) {
  // One relay per main address: SO_REUSEPORT would let a second relay-server start
  // silently and the kernel would split nodes between two unrelated relays. Relays on one
  // port at different IPs (a fleet on one host) are separate; a wildcard listener and one
  // on a specific IP of the same port are told apart by the bind check.
  absl::flat_hash_set<std::string> locked;
  for (const HostPort& a : addresses) {
    const std::string name = FormatHostPort(a.host, a.port);
    if (a.port == 0 || !locked.insert(name).second) {
      continue;
    }
    absl::StatusOr<net::UniqueFd> lock = net::TakeExclusiveName("relay-server:" + name);
    if (!lock.ok() || net::PortHasListener(a.host, a.port)) {
      return absl::AlreadyExistsError(absl::StrCat(
          "main port ", FormatHostPort(a.host, a.port),
          " is already in use (another relay-server, or another program); refusing to start "
          "a second relay there (stop the other one, or pick another --listen; to replace a "
          "running relay-server without downtime, see --take_over)"));
    }
    instance_locks_.push_back(std::move(*lock));
  }
  return absl::OkStatus();
}

absl::Status RelayServer::BindMainListeners(std::vector<std::vector<net::UniqueFd>>* listeners) {
  const RelayConfig& config = context_.config;
  std::vector<HostPort> addresses = {config.listen};
  addresses.insert(addresses.end(), config.more_listen.begin(), config.more_listen.end());
  absl::Status status = LockMainPorts(addresses);
  if (!status.ok()) {
    return status;
  }
  // Per address, the first reactor's listener picks the port (config may say 0); the
  // others join it.
  for (size_t k = 0; k < addresses.size(); ++k) {
    uint16_t p = addresses[k].port;
    for (std::vector<net::UniqueFd>& reactor_listeners : *listeners) {
      absl::StatusOr<net::UniqueFd> fd = net::Listen(addresses[k].host, p, true);
      if (!fd.ok()) {
        return absl::Status(fd.status().code(),
                            absl::StrCat("main listener ", FormatHostPort(addresses[k].host, p),
                                         ": ", fd.status().message()));
      }
      p = net::LocalPort(fd->get());
      reactor_listeners.push_back(std::move(*fd));
    }
    if (k == 0) {
      main_port_ = p;
    } else {
      listen_names_.push_back(FormatHostPort(addresses[k].host, p));
    }
  }
  return absl::OkStatus();
}

void RelayServer::SetUpCodec(Identity key) {
  const RelayConfig& config = context_.config;
  codec_ = std::make_unique<ControlCodec>(
      config.network_id, std::move(key),
      absl::StrCat("tcp://", FormatHostPort(context_.advertise_host, main_port_)));
  context_.codec = codec_.get();
  // The names a fresh claim may carry: the advertised address, the listen address, and
  // the operator's --relay_name list.
  context_.claims.require_signatures = config.require_signatures;
  context_.claims.strict_claims = config.strict_claims;
  context_.claims.window = config.claim_window;
  std::vector<std::string>& names = context_.claims.relay_names;
  names = config.relay_names;
  names.push_back(codec_->relay_address());
  for (size_t a = 1; a < context_.proxy_addresses.size(); ++a) {
    names.push_back(
        absl::StrCat("tcp://", FormatHostPort(context_.proxy_addresses[a].advertise, main_port_)));
  }
  if (!IsAnyAddress(config.listen.host) && config.listen.host != context_.advertise_host) {
    names.push_back(absl::StrCat("tcp://", FormatHostPort(config.listen.host, main_port_)));
  }
  for (const std::string& name : listen_names_) {
    if (!absl::StartsWith(name, "0.0.0.0:") && !absl::StartsWith(name, "[::]:")) {
      names.push_back(absl::StrCat("tcp://", name));
    }
  }
}

absl::Status RelayServer::OpenStore(const Clock* clock) {
  const RelayConfig& config = context_.config;
  if (config.state_dir.empty()) {
    return absl::OkStatus();
  }
  LeaseStore::Options options;
  options.dir = config.state_dir;
  options.discard_corrupt = config.state_discard_corrupt;
  options.sync_interval = config.state_sync_interval;
  options.clock = clock;
  for (const ProxyAddress& a : context_.proxy_addresses) {
    options.addresses.push_back(a.advertise);
  }
  absl::StatusOr<std::unique_ptr<LeaseStore>> store = LeaseStore::Open(options);
  if (!store.ok()) {
    return store.status();
  }
  store_ = std::move(*store);
  for (const std::string& file : store_->discarded()) {
    RELAY_LOG(WARNING) << "--state_discard_corrupt: moved the damaged lease state to " << file
                       << "; starting with no leases";
  }
  return absl::OkStatus();
}

std::vector<uint8_t> RelayServer::MakePools(const std::vector<StoredLease>& restored) {
  // One pool of the whole --port_range per proxy address; the ports of restored leases
  // stay out of it, so no other node gets one.
  std::vector<std::vector<uint16_t>> held(context_.proxy_addresses.size());
  std::vector<uint8_t> restored_address;  // of each restored lease
  for (const StoredLease& l : restored) {
    const uint8_t a = AddressIndex(context_.proxy_addresses, l.address).value_or(0);
    held[a].push_back(l.port);
    restored_address.push_back(a);
  }
  for (size_t a = 0; a < context_.proxy_addresses.size(); ++a) {
    pools_.push_back(
        std::make_unique<PortPool>(context_.config.port_lo, context_.config.port_hi, held[a]));
    context_.pools.push_back(pools_.back().get());
  }
  return restored_address;
}

void RelayServer::MakeLimits() {
  limits_ = std::make_unique<SourceLimits>(SourceLimitsOf(context_.config));
  context_.limits = limits_.get();
}

absl::Status RelayServer::MakeShards(int threads, const Clock* clock) {
  for (int i = 0; i < threads; ++i) {
    absl::StatusOr<std::unique_ptr<net::Reactor>> reactor =
        net::Reactor::Create(i, threads, clock, PipeBytesFor(context_.config));
    if (!reactor.ok()) {
      return reactor.status();
    }
    reactors_.push_back(std::move(*reactor));
  }
  for (int i = 0; i < threads; ++i) {
    shards_.push_back(std::make_unique<Shard>(i, reactors_[i].get(), &context_));
    context_.shards.push_back(shards_.back().get());
  }
  return absl::OkStatus();
}

void RelayServer::RestoreLeases(const Clock* clock, const std::vector<StoredLease>& restored,
                                const std::vector<uint8_t>& restored_address) {
  // Remembered until their time on disk (a lease live at a crash: a whole lease time from
  // now, its node was attached), never beyond a lease time from now.
  const absl::Duration ttl = context_.config.lease_ttl;
  const absl::Time now = clock->Now();
  const int64_t wall_ms = absl::ToUnixMillis(clock->WallNow());
  for (size_t i = 0; i < restored.size(); ++i) {
    const StoredLease& l = restored[i];
    absl::Duration left =
        l.expires_unix_ms == 0 ? ttl : absl::Milliseconds(l.expires_unix_ms - wall_ms);
    const int home = Shard::HomeOf(l.id, context_.shard_key, static_cast<int>(shards_.size()));
    shards_[home]->RestoreLease(l, restored_address[i], now + std::min(left, ttl));
  }
  leases_restored_ = restored.size();
}

absl::Status RelayServer::StartStore(const std::vector<StoredLease>& restored) {
  absl::Status status = store_->Start(restored);
  if (!status.ok()) {
    return status;
  }
  for (auto& shard : shards_) {
    shard->set_lease_store(store_.get());
  }
  return absl::OkStatus();
}

RelayServer::~RelayServer() {
  Stop();
  shards_.clear();  // before the reactors they use
  reactors_.clear();
}

// Asks the scheduler for --reactor_slice and names the reactor thread ("reactor-N" in
// top, perf and /proc), in that order: a thread named "reactor-N" already has its slice.
// Reactor 0 logs the outcome; a refusal only costs latency.
void RelayServer::StartReactorThread(int index) {
  const absl::Duration slice = context_.config.reactor_slice;
  std::optional<absl::StatusOr<net::SliceResult>> requested;
  if (slice != absl::ZeroDuration()) {
    requested = net::RequestSchedulerSlice(slice);
  }
  pthread_setname_np(pthread_self(), absl::StrCat("reactor-", index).c_str());
  if (!requested.has_value() || index != 0) {
    return;
  }
  const absl::StatusOr<net::SliceResult>& result = *requested;
  if (!result.ok()) {
    RELAY_LOG(WARNING) << "--reactor_slice=" << absl::FormatDuration(slice)
                       << " not applied: " << result.status().message()
                       << "; reactors keep the kernel's slice";
  } else if (*result == net::SliceResult::kUnsupported) {
    RELAY_LOG(INFO) << "--reactor_slice=" << absl::FormatDuration(slice)
                    << " has no effect: this kernel has no per-thread slice (Linux >= 6.12)";
  } else if (*result == net::SliceResult::kNotFair) {
    RELAY_LOG(INFO) << "--reactor_slice ignored: the reactors run under a real-time policy";
  }
}

void RelayServer::Start() {
  if (started_) {
    return;
  }
  started_ = true;
  for (size_t i = 0; i < reactors_.size(); ++i) {
    threads_.emplace_back([this, i] {
      StartReactorThread(static_cast<int>(i));
      reactors_[i]->Run();
      // Tear down on the reactor's own thread, then let deferred deletions run.
      shards_[i]->CloseAll();
      reactors_[i]->RunDeferred();
    });
    if (imported_) {
      reactors_[i]->PostExternal(
          MakeShardTask(shards_[i].get(), [](Shard* shard) { shard->ResumeImported(); }));
    }
  }
}

bool RelayServer::Drain(absl::Duration timeout) {
  if (!started_ || stopped_) {
    return true;
  }
  if (!drain_started_) {
    drain_started_ = true;
    for (size_t i = 0; i < reactors_.size(); ++i) {
      reactors_[i]->PostExternal(
          MakeShardTask(shards_[i].get(), [](Shard* shard) { shard->BeginDrain(); }));
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
  ReleaseRound();  // reactors held by a hand-over that was not completed
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
      shard->set_lease_store(nullptr);
    }
  }
}

std::vector<std::string> RelayServer::listen_names() const {
  std::vector<std::string> out = {FormatHostPort(context_.config.listen.host, main_port_)};
  out.insert(out.end(), listen_names_.begin(), listen_names_.end());
  return out;
}

namespace {

// Runs `f(shard i)` on each of `indexes`' reactors and collects the answers (in that
// order); DeadlineExceeded if a reactor does not answer within `timeout`.
template <typename T, typename F>
absl::StatusOr<std::vector<T>> AskShards(const std::vector<std::unique_ptr<net::Reactor>>& reactors,
                                         const std::vector<std::unique_ptr<Shard>>& shards,
                                         const std::vector<size_t>& indexes, absl::Duration timeout,
                                         F f) {
  struct Collected {
    std::mutex mu;
    std::condition_variable cv;
    std::vector<T> answers;
    size_t done = 0;
  };
  auto collected = std::make_shared<Collected>();
  collected->answers.resize(indexes.size());
  for (size_t k = 0; k < indexes.size(); ++k) {
    const size_t i = indexes[k];
    reactors[i]->PostExternal(MakeShardTask(shards[i].get(), [collected, k, f](Shard* shard) {
      T answer = f(shard);
      std::lock_guard<std::mutex> lock(collected->mu);
      collected->answers[k] = std::move(answer);
      ++collected->done;
      collected->cv.notify_all();
    }));
  }
  std::unique_lock<std::mutex> lock(collected->mu);
  if (!collected->cv.wait_for(lock, absl::ToChronoNanoseconds(timeout),
                              [&] { return collected->done == indexes.size(); })) {
    return absl::DeadlineExceededError(
        absl::StrCat(indexes.size() - collected->done, " of ", indexes.size(),
                     " reactors did not answer within ", absl::FormatDuration(timeout)));
  }
  return std::move(collected->answers);
}

}  // namespace

absl::StatusOr<std::vector<Shard::Snapshot>> RelayServer::Snapshot(absl::Duration timeout) const {
  std::vector<size_t> all(shards_.size());
  for (size_t i = 0; i < all.size(); ++i) {
    all[i] = i;
  }
  return AskShards<Shard::Snapshot>(reactors_, shards_, all, timeout,
                                    [](Shard* shard) { return shard->TakeSnapshot(); });
}

absl::StatusOr<std::vector<Shard::SessionInfo>> RelayServer::ListSessions(
    size_t shard, int64_t after, size_t max, absl::Duration timeout) const {
  absl::StatusOr<std::vector<std::vector<Shard::SessionInfo>>> page =
      AskShards<std::vector<Shard::SessionInfo>>(
          reactors_, shards_, {shard}, timeout,
          [after, max](Shard* s) { return s->ListSessions(after, max); });
  if (!page.ok()) {
    return page.status();
  }
  return std::move((*page)[0]);
}

std::vector<net::LoopHistogram::Snapshot> RelayServer::LoopHistograms() const {
  std::vector<net::LoopHistogram::Snapshot> out;
  for (const auto& reactor : reactors_) {
    out.push_back(reactor->loop_histogram().Read());
  }
  return out;
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
  uint64_t free = 0;
  for (const auto& pool : pools_) {
    free += pool->available();
  }
  out["ports_free"] = free;
  if (store_ != nullptr) {
    out["leases_restored"] = leases_restored_;
    out["state_write_errors"] = store_->write_errors();
    out["state_snapshots"] = store_->snapshots();
    out["state_writable"] = store_->writable() ? 1 : 0;
  }
  out["source_ips"] = limits_->tracked_ips();
  return out;
}

}  // namespace relay
