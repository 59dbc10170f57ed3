// relay-server: the relay's command-line entry point. Reads the flags (server/flags.h),
// starts the RelayServer, and waits for SIGINT/SIGTERM (drain and stop, exit 0), SIGUSR1
// (print the counters), SIGHUP (reload the log settings), SIGUSR2 or a process on
// --upgrade_socket (live upgrade: hand everything over, server/upgrade.h).
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/command_line.h"
#include "base/log.h"
#include "core/config.h"
#include "net/host_info.h"
#include "server/admin_server.h"
#include "server/flags.h"
#include "server/relay_server.h"
#include "server/upgrade.h"

namespace {

using relay::ProgramOptions;
using relay::RelayServer;

// A relay holds one fd per connection and two per staging pipe: raise the soft open-files
// limit to the hard one (systemd's LimitNOFILE sets both). Returns the limit in force.
rlim_t RaiseFdLimit() {
  rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    return 0;
  }
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
    getrlimit(RLIMIT_NOFILE, &limit);
  }
  return limit.rlim_cur;
}

void PrintCounters(const relay::RelayServer& server) {
  std::string line = "counters:";
  for (const auto& [name, value] : server.Counters()) {
    if (value != 0) {
      absl::StrAppend(&line, " ", name, "=", value);
    }
  }
  RELAY_LOG_ALWAYS(INFO) << line;
}

bool WritePidFile(const std::string& pidfile) {
  FILE* f = fopen(pidfile.c_str(), "w");
  if (f == nullptr || fprintf(f, "%d\n", static_cast<int>(getpid())) < 0 || fclose(f) != 0) {
    fprintf(stderr, "relay-server: --pidfile=%s: cannot write the file\n", pidfile.c_str());
    return false;
  }
  return true;
}

// A process started by SIGUSR2 that exited (it failed to take over, or it took over and
// later stopped): collect it, and say how it ended.
void ReapSuccessors() {
  int status = 0;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      RELAY_LOG(WARNING) << "the process started to take over (pid " << pid << ") exited with "
                         << (WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status))
                         << "; this relay serves on (its reason is in its own log output)";
    }
  }
}

void LogTakeover(const relay::Takeover& takeover) {
  size_t mains = 0, sessions = 0, peers = 0, remembered = 0;
  for (const auto& shard : takeover.handed.state.shards()) {
    mains += shard.mains_size();
    for (const auto& lease : shard.leases()) {
      if (lease.live()) {
        ++sessions;
        peers += lease.session().peers_size();
      } else {
        ++remembered;
      }
    }
  }
  RELAY_LOG_ALWAYS(INFO) << "live upgrade: took over from relay-server " << takeover.old_version
                         << ": " << sessions << " sessions, " << mains << " main connections, "
                         << peers << " peers, " << remembered
                         << " remembered leases; forwarding paused for "
                         << absl::FormatDuration(absl::Trunc(absl::Now() - takeover.frozen_at,
                                                             absl::Microseconds(100)));
}

// Drains the relay until done, --drain_timeout, or a second SIGTERM/SIGINT.
void Drain(RelayServer& server, const sigset_t& signals, absl::Duration timeout) {
  const absl::Time start = absl::Now();
  const absl::Time deadline = start + timeout;
  const timespec no_wait = {0, 0};
  for (;;) {
    if (server.Drain(std::min(absl::Milliseconds(50), deadline - absl::Now()))) {
      RELAY_LOG(INFO) << "drained in " << absl::FormatDuration(absl::Now() - start)
                      << ": every node got its frames and a Disconnect";
      return;
    }
    const int sig = sigtimedwait(&signals, nullptr, &no_wait);
    if (sig == SIGUSR1) {
      PrintCounters(server);
    }
    if (sig == SIGTERM || sig == SIGINT) {
      RELAY_LOG(WARNING) << "signal " << sig << " during the drain: stopping now";
      return;
    }
    if (absl::Now() >= deadline) {
      RELAY_LOG(WARNING) << "--drain_timeout reached: the connections left are closed now";
      return;
    }
  }
}

// Blocks the signals the relay handles, before any thread starts, so only the signalfd of
// the loop sees them.
sigset_t BlockSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  for (int sig : {SIGINT, SIGTERM, SIGUSR1, SIGUSR2, SIGHUP}) {
    sigaddset(&signals, sig);
  }
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  signal(SIGXFSZ, SIG_IGN);  // a file size limit fails the write (EFBIG) like a full disk
  return signals;
}

// The RelayServer, fresh or from a live upgrade's `takeover`; nullptr if it could not
// start (said on stderr; a refused takeover leaves the old relay serving).
std::unique_ptr<RelayServer> CreateServer(const relay::RelayConfig& config,
                                          relay::Takeover* takeover) {
  absl::StatusOr<std::unique_ptr<RelayServer>> server = RelayServer::Create(
      config, relay::MonotonicClock::Get(), takeover ? &takeover->handed : nullptr);
  if (server.ok()) {
    return std::move(*server);
  }
  fprintf(stderr, "relay-server: %s\n", std::string(server.status().message()).c_str());
  if (takeover) {
    // The old relay runs on. Leave at once: nothing here may touch the shared sockets.
    relay::RefuseTakeover(takeover->conn.get(), std::string(server.status().message()));
    _exit(1);
  }
  return nullptr;
}

// The socket later upgrades come through: the one taken over (after confirming the
// takeover), or a new one at --upgrade_socket. False if it could not be had.
bool OpenUpgradeSocket(const ProgramOptions& options, relay::Takeover* takeover,
                       std::unique_ptr<relay::UpgradeSocket>* upgrade) {
  if (takeover) {
    if (!options.upgrade_socket.empty() && options.upgrade_socket != options.take_over) {
      RELAY_LOG(WARNING) << "--upgrade_socket=" << options.upgrade_socket
                         << " ignored: this relay serves later upgrades on the socket it took "
                         << "over, " << options.take_over;
    }
    *upgrade =
        relay::UpgradeSocket::Adopt(std::move(takeover->upgrade_listener), options.take_over);
    absl::Status confirmed = relay::ConfirmTakeover(takeover->conn.get());
    if (!confirmed.ok()) {
      fprintf(stderr, "relay-server: --take_over=%s: %s; the running relay keeps serving\n",
              options.take_over.c_str(), std::string(confirmed.message()).c_str());
      _exit(1);
    }
    if (!options.pidfile.empty() && !WritePidFile(options.pidfile)) {
      RELAY_LOG(ERROR) << "--pidfile=" << options.pidfile << ": cannot write it (serving anyway)";
    }
    return true;
  }
  if (options.upgrade_socket.empty()) {
    return true;
  }
  absl::StatusOr<std::unique_ptr<relay::UpgradeSocket>> created =
      relay::UpgradeSocket::Create(options.upgrade_socket);
  if (!created.ok()) {
    fprintf(stderr, "relay-server: %s\n", std::string(created.status().message()).c_str());
    return false;
  }
  *upgrade = std::move(*created);
  return true;
}

// The admin endpoint, or nullptr (none asked for, or its port could not be had: the relay
// serves without it). After a live upgrade the old process may hold the port a few more
// milliseconds.
std::unique_ptr<relay::AdminServer> StartAdmin(const ProgramOptions& options, RelayServer* server,
                                               bool took_over) {
  if (!options.admin_listen) {
    return nullptr;
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(took_over ? 5 : 0);
  absl::StatusOr<std::unique_ptr<relay::AdminServer>> started;
  for (;;) {
    started = relay::AdminServer::Start(*options.admin_listen, server);
    if (started.ok() || absl::Now() >= deadline) {
      break;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  if (!started.ok()) {
    RELAY_LOG(ERROR) << started.status().message() << "; serving without the admin endpoint";
    return nullptr;
  }
  RELAY_LOG(INFO) << "admin endpoint on http://" << options.admin_listen->host << ":"
                  << (*started)->port() << "/metrics, /healthz, /sessions";
  return std::move(*started);
}

// The start-up lines: the configuration, warnings about the host, where the relay
// listens; then tells systemd (Type=notify) it is ready. After a live upgrade this process
// is the service's main one (the unit has NotifyAccess=all for this message).
void AnnounceStart(const relay::RelayConfig& config, const ProgramOptions& options,
                   const RelayServer& server) {
  relay::LogEffectiveConfiguration();
  for (const std::string& flag : relay::RetiredFlagsGiven()) {
    RELAY_LOG(WARNING) << flag << " ignored: that flag is retired; drop it from the flag file";
  }
  if (!options.forward_alias.empty()) {
    RELAY_LOG(WARNING) << "--forward=" << options.forward_alias << " is read as --forward=splice "
                       << "(the chooser of earlier versions is gone); drop it from the flag file";
  }
  uint16_t local_lo = 0, local_hi = 0;
  relay::net::ReadLocalPortRange(&local_lo, &local_hi);
  for (const std::string& warning :
       relay::StartupWarnings(config, server.advertise_host(), local_lo, local_hi,
                              relay::net::ReadRmemMax(), relay::net::ReadLocalReservedPorts())) {
    RELAY_LOG(WARNING) << warning;
  }
  std::vector<std::string> proxy_ranges;
  for (const relay::ProxyAddress& a : server.proxy_addresses()) {
    proxy_ranges.push_back(absl::StrCat(relay::FormatHostPort(a.advertise, config.port_lo), "-",
                                        config.port_hi,
                                        a.bind == a.advertise || relay::IsAnyAddress(a.bind)
                                            ? ""
                                            : absl::StrCat(" (bound on ", a.bind, ")")));
  }
  const std::string listens = absl::StrJoin(server.listen_names(), ", ");
  RELAY_LOG(INFO) << "relay-server listening on " << listens << " with " << server.thread_count()
                  << " reactors; proxy addresses " << absl::StrJoin(proxy_ranges, ", ")
                  << ", network id " << config.network_id << "; relay key "
                  << server.relay_key_hex();
  sd_notifyf(0, "READY=1\nSTATUS=serving on %s\nMAINPID=%d", listens.c_str(),
             static_cast<int>(getpid()));
}

// Every process waiting on the upgrade socket, in turn, may take over; on success this
// process exits here (it closes nothing: the new process holds every socket).
void ServeUpgrades(RelayServer& server, relay::UpgradeSocket& upgrade, absl::Duration timeout) {
  for (relay::net::UniqueFd conn; (conn = upgrade.Accept()).valid();) {
    RELAY_LOG_ALWAYS(INFO) << "live upgrade: a new process asks to take over; freezing";
    absl::StatusOr<pid_t> successor = relay::HandOver(server, upgrade, std::move(conn), timeout);
    if (successor.ok()) {
      RELAY_LOG_ALWAYS(INFO) << "live upgrade: handed over to pid " << *successor << "; exiting";
      sd_notifyf(0, "MAINPID=%d", static_cast<int>(*successor));
      _exit(0);
    }
    RELAY_LOG(ERROR) << "live upgrade failed: " << successor.status().message();
  }
}

// SIGUSR2: starts this binary again to take over through the upgrade socket.
void SpawnUpgrade(const std::vector<std::string>& argv, const relay::UpgradeSocket* upgrade) {
  if (upgrade == nullptr) {
    RELAY_LOG(WARNING) << "SIGUSR2 ignored: live upgrade needs --upgrade_socket";
    return;
  }
  absl::StatusOr<pid_t> child = relay::SpawnSuccessor(argv, upgrade->path());
  if (child.ok()) {
    RELAY_LOG_ALWAYS(INFO) << "SIGUSR2: started pid " << *child << " to take over (live upgrade)";
  } else {
    RELAY_LOG(ERROR) << "SIGUSR2: cannot start the new process: " << child.status().message();
  }
}

// Serves signals and upgrades until SIGINT/SIGTERM, then drains. False if no signalfd.
bool ServeSignals(RelayServer& server, relay::UpgradeSocket* upgrade, const sigset_t& signals,
                  const ProgramOptions& options, const std::vector<std::string>& argv) {
  const int signal_fd = signalfd(-1, &signals, SFD_CLOEXEC);
  if (signal_fd < 0) {
    RELAY_LOG(ERROR) << "signalfd failed: " << relay::ErrnoText(errno);
    return false;
  }
  for (;;) {
    pollfd fds[2] = {{signal_fd, POLLIN, 0}, {upgrade ? upgrade->fd() : -1, POLLIN, 0}};
    const int ready = poll(fds, 2, 1000);
    ReapSuccessors();
    if (ready > 0 && fds[1].revents != 0) {
      ServeUpgrades(server, *upgrade, options.upgrade_timeout);
    }
    signalfd_siginfo info;
    if (ready <= 0 || fds[0].revents == 0 || read(signal_fd, &info, sizeof(info)) != sizeof(info)) {
      continue;
    }
    const int sig = static_cast<int>(info.ssi_signo);
    if (sig == SIGUSR1) {
      PrintCounters(server);
    } else if (sig == SIGHUP) {
      sd_notify(0, "RELOADING=1");
      relay::ReloadLogFlags(options.log_file);
      sd_notify(0, "READY=1");
    } else if (sig == SIGUSR2) {
      SpawnUpgrade(argv, upgrade);
    } else {
      RELAY_LOG(INFO) << "signal " << sig
                      << ": draining (no new nodes or frames; frames in flight delivered; "
                         "--drain_timeout="
                      << absl::FormatDuration(options.drain_timeout) << ")";
      sd_notify(0, "STOPPING=1\nSTATUS=draining");
      Drain(server, signals, options.drain_timeout);
      return true;
    }
  }
}

// Starts the relay (the pid file exists before the port accepts connections, so whoever
// sees the port open can read it; taking over, once this process is the relay) and serves
// until it stops. Returns the exit status.
int Run(const relay::RelayConfig& config, const ProgramOptions& options, const sigset_t& signals,
        const std::vector<std::string>& argv) {
  std::optional<relay::Takeover> takeover;
  if (!options.take_over.empty()) {
    absl::StatusOr<relay::Takeover> received = relay::ReceiveTakeover(options.take_over);
    if (!received.ok()) {
      fprintf(stderr, "relay-server: --take_over=%s: %s\n", options.take_over.c_str(),
              std::string(received.status().message()).c_str());
      return 1;
    }
    takeover = std::move(*received);
  }
  if (!options.pidfile.empty() && !takeover && !WritePidFile(options.pidfile)) {
    return 1;
  }
  relay::Takeover* handed = takeover ? &*takeover : nullptr;
  std::unique_ptr<RelayServer> server = CreateServer(config, handed);
  std::unique_ptr<relay::UpgradeSocket> upgrade;
  if (server == nullptr || !OpenUpgradeSocket(options, handed, &upgrade)) {
    if (!options.pidfile.empty()) {
      unlink(options.pidfile.c_str());
    }
    return 1;
  }
  server->Start();
  if (takeover) {
    LogTakeover(*takeover);
  }
  std::unique_ptr<relay::AdminServer> admin = StartAdmin(options, server.get(), handed != nullptr);
  AnnounceStart(config, options, *server);
  const bool served = ServeSignals(*server, upgrade.get(), signals, options, argv);
  if (admin) {
    admin->Stop();
  }
  server->Stop();
  PrintCounters(*server);
  if (!options.pidfile.empty()) {
    unlink(options.pidfile.c_str());
  }
  return served ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> original_argv(argv, argv + argc);  // for SIGUSR2
  const std::vector<std::string> positional =
      relay::ParseCommandLineOrExit(argc, argv, relay::kServerProgram);
  if (!positional.empty()) {
    relay::ExitUsage(relay::kServerProgram, absl::StrCat("unexpected argument '", positional[0],
                                                         "' (flags are --name=value)"));
  }
  relay::RelayConfig config;
  ProgramOptions options;
  relay::ReadFlagsOrExit(&config, &options);
  const absl::Status logging = relay::ApplyLogFlags(options.log_file);
  if (!logging.ok()) {
    fprintf(stderr, "relay-server: %s\n", std::string(logging.message()).c_str());
    return 1;
  }
  const sigset_t signals = BlockSignals();
  const rlim_t fd_limit = RaiseFdLimit();
  if (fd_limit != 0 && fd_limit < 4096) {
    RELAY_LOG(WARNING) << "the open-files limit is " << fd_limit
                       << ": a few hundred nodes at most (raise it: ulimit -n, LimitNOFILE)";
  }
  return Run(config, options, signals, original_argv);
}
