// relay-server: the relay's command-line entry point. Parses the flags, starts the
// RelayServer, and waits for SIGINT/SIGTERM (drain and stop, exit 0), SIGUSR1 (print the
// counters), SIGHUP (reload the log settings), SIGUSR2 or a process on --upgrade_socket
// (live upgrade: hand everything over, server/upgrade.h).
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
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/command_line.h"
#include "core/config.h"
#include "core/log.h"
#include "server/admin_server.h"
#include "server/relay_server.h"
#include "server/upgrade.h"

ABSL_FLAG(std::vector<std::string>, listen, {"0.0.0.0:6008"},
          "Main listener HOST:PORT, IPv4 or [IPv6]; give it more than once (or A,B) to "
          "listen on several addresses, e.g. 0.0.0.0:6008 and [::]:6008. Proxy ports are "
          "bound on the first one's address.");
ABSL_FLAG(std::vector<std::string>, advertise_host, {},
          "IP put in proxy addresses, or IP@BIND_IP when the proxy ports must be bound on "
          "another (private) IP. Given more than once (or A,B): several proxy addresses, each "
          "with the whole --port_range, so one host serves more nodes than one IP's ports "
          "(each then binds its own IP). Default: the listen host, or the first non-loopback "
          "IP of the listen family on this machine when listening on 0.0.0.0 or [::].");
ABSL_FLAG(std::string, port_range, "55535-65534", "Proxy ports the relay hands out, LO-HI.");
ABSL_FLAG(uint32_t, network_id, relay::kDefaultNetworkId, "Network id every frame must carry.");
ABSL_FLAG(int, threads, 0, "Reactor threads; 0 = one per online CPU.");
ABSL_FLAG(absl::Duration, reactor_slice, absl::Microseconds(100),
          "Scheduler time slice each reactor thread asks for (Linux >= 6.12, no privilege "
          "needed): a reactor waking for a frame preempts a busy thread on its CPU at once "
          "instead of waiting out that thread's slice (3 ms by default). 0 = the kernel's "
          "default; otherwise 100us to 100ms.");
ABSL_FLAG(absl::Duration, keepalive_timeout, absl::Seconds(180),
          "Close a main connection that sends nothing valid for this long (e.g. 180s).");
ABSL_FLAG(absl::Duration, lease_ttl, absl::Minutes(180),
          "Remember a node's proxy port this long after its last activity (e.g. 180m).");
ABSL_FLAG(uint32_t, max_frame_bytes, 16u << 20, "Largest frame payload accepted, in bytes.");
ABSL_FLAG(uint32_t, stage_bytes, 1u << 20,
          "Bytes of whole frames one peer connection may stage in pipes before it waits for "
          "the node (a single larger frame is staged alone, up to max_frame_bytes).");
ABSL_FLAG(uint64_t, stage_budget, 256ull << 20,
          "Bytes all peers of one reactor may hold staged at once: the bound on staging "
          "memory, whatever peers send (at least max_frame_bytes + stage_bytes).");
ABSL_FLAG(uint32_t, peer_receive_buffer, 512 * 1024,
          "Receive buffer of each peer socket (SO_RCVBUF; the kernel counts twice this, and "
          "cuts it to net.core.rmem_max): what a peer can queue in the kernel while the relay "
          "does not read it.");
ABSL_FLAG(uint32_t, peer_bulk_receive_buffer, 2 * 1024 * 1024,
          "Receive buffer of a peer that stages at least this many bytes by splice within a "
          "second (more than by copy), while fewer than bulk_receive_peers peers of its "
          "reactor hold one: a larger TCP window, so fewer window updates and more bytes in "
          "flight. Given back when a second falls short of that, or the peer closes. 0 = "
          "never.");
ABSL_FLAG(uint32_t, bulk_receive_peers, 8,
          "Peers per reactor that may hold peer_bulk_receive_buffer at once (the bound on that "
          "kernel memory: this x 2 x peer_bulk_receive_buffer per reactor). 0 = none.");
ABSL_FLAG(std::string, forward, "auto",
          "How frame bytes move from peers to nodes: auto (the default: a reactor whose thread is "
          "busy measures which of copy and splice moves more bytes per second or, where the load "
          "sets the rate, costs it less CPU per byte, by trials of up to 200 ms in which the two "
          "take turns, repeated every 1-8 s, and each one's lead when held, and stages that way; "
          "at light load, and for the first 100 ms of a load, the rule decides), rule (the rule "
          "alone: per connection, by recv/send through pooled buffers while the reactor is not "
          "busy with many connections at once, and frames over 64 KiB only while at most 8 of its "
          "nodes have bytes staged; otherwise splice), splice (zero-copy through pipes, always) "
          "or copy (recv/send, always). rule, splice and copy are for benchmarks.");
ABSL_FLAG(uint64_t, session_stage_bytes, 0,
          "Staged bytes one session (all peers of one node) may hold; peers of a node that "
          "does not read stop at this share (its oldest partial frame may finish beyond it, "
          "by at most that frame). 0 = stage_budget / 8, at least max_frame_bytes + "
          "stage_bytes.");
ABSL_FLAG(absl::Duration, frame_timeout, absl::Seconds(10),
          "A frame must be whole within this + its bytes received / frame_min_rate, or its "
          "sender is dropped (a header alone is dropped after this).");
ABSL_FLAG(uint32_t, frame_min_rate, 64 * 1024,
          "Bytes per second a sender must keep up inside a frame (see frame_timeout).");
ABSL_FLAG(absl::Duration, peer_idle_timeout, absl::Seconds(120),
          "Close a peer connection that sends nothing at a frame boundary for this long.");
ABSL_FLAG(absl::Duration, first_frame_timeout, absl::Seconds(10),
          "A new main connection must send a valid control frame within this.");
ABSL_FLAG(absl::Duration, node_write_timeout, absl::Seconds(30),
          "Close a node that takes no byte for this long while frames or replies wait.");
ABSL_FLAG(uint64_t, node_queue_soft_bytes, 16ull << 20,
          "Close a node whose queue stays above this many bytes for node_queue_soft_time.");
ABSL_FLAG(absl::Duration, node_queue_soft_time, absl::Seconds(60), "See node_queue_soft_bytes.");
ABSL_FLAG(uint32_t, max_control_bytes, 64 * 1024,
          "Largest control frame on a main connection; larger ones get a Disconnect.");
ABSL_FLAG(uint64_t, control_budget, 32ull << 20,
          "Bytes all partial control frames of one reactor may hold; the connection that "
          "would exceed it is closed.");
ABSL_FLAG(double, control_rate, 50,
          "Control messages one main connection may send per second, after a burst of "
          "--control_burst; beyond that the relay stops reading it until its rate allows "
          "more (counted as main_control_throttled). Bounds the CPU one connection can take "
          "(a signature check per message under --require_signatures). 0 = no limit.");
ABSL_FLAG(uint32_t, control_burst, 200, "See control_rate.");
ABSL_FLAG(double, control_per_ip, 200,
          "Control messages all main connections of one source IP may send per second "
          "(bursts of twice that); a connection that finds its IP's bucket empty is not "
          "read until it refills (counted as main_control_throttled). 0 = no limit.");
ABSL_FLAG(uint32_t, max_mains_per_ip, 1024, "Main connections per source IP (0 = no limit).");
ABSL_FLAG(uint32_t, max_sessions_per_ip, 1024, "Live sessions per source IP (0 = no limit).");
ABSL_FLAG(uint32_t, max_leases_per_ip, 4096,
          "Leases (live and remembered) claimed per source IP (0 = no limit).");
ABSL_FLAG(uint32_t, max_peers_per_ip, 4096, "Peer connections per source IP (0 = no limit).");
ABSL_FLAG(double, proxy_requests_per_ip, 100,
          "New claims (ProxyRequests) per second per source IP, bursts of twice that (0 = no "
          "limit).");
ABSL_FLAG(absl::Duration, takeover_interval, absl::Seconds(1),
          "Refuse a second takeover of one session within this window.");
ABSL_FLAG(uint32_t, fd_reserve, 128,
          "File descriptors kept free for existing sessions: new connections are refused "
          "when fewer are left.");
ABSL_FLAG(absl::Duration, accept_backoff, absl::Milliseconds(100),
          "A listener that ran out of fds (or hit fd_reserve) retries after this.");
ABSL_FLAG(bool, require_signatures, false,
          "Refuse every control message that is not validly signed (PROTOCOL section 6). "
          "Without it, unsigned nodes work, but a lease first claimed with a valid "
          "signature is bound to that key.");
ABSL_FLAG(bool, strict_claims, false,
          "Accept only signed fresh claims: each ProxyRequest names this relay and carries a "
          "time within --claim_window, newer than the lease's last claim, so no signed "
          "message can be replayed as a claim (docs/SECURITY.md). relay-node sends them.");
ABSL_FLAG(absl::Duration, claim_window, absl::Seconds(60),
          "A fresh claim's time may differ from this relay's clock by at most this.");
ABSL_FLAG(std::vector<std::string>, relay_name, {},
          "More names nodes dial this relay by, tcp://HOST:PORT[,...] (a DNS name, a NAT "
          "address), accepted in fresh claims besides tcp://<advertised ip>:<port>.");
ABSL_FLAG(std::string, key_file, "",
          "The relay's Ed25519 key: 64 hex characters, created with mode 0600 if missing; "
          "refused if others can read it. The relay signs its messages with it; nodes pin "
          "its public key (printed at start) with relay-node --relay_key. Empty: a new key "
          "per run.");
ABSL_FLAG(std::string, state_dir, "",
          "Keep leases (and their bound keys) in this directory (created 0700), so after a "
          "crash or restart every node gets its address back and no remembered port goes to "
          "another node. Empty: leases live in memory only.");
ABSL_FLAG(bool, state_discard_corrupt, false,
          "If the state in --state_dir is damaged, move it aside and start with no leases "
          "(without it the relay refuses to start).");
ABSL_FLAG(absl::Duration, state_sync_interval, absl::Seconds(1),
          "fdatasync the lease journal this often: at most this much lease history is lost "
          "at a power loss (a crash of the relay loses none).");
ABSL_FLAG(absl::Duration, drain_timeout, absl::Seconds(30),
          "SIGTERM/SIGINT drain: peers stop at their next frame boundary, every frame already "
          "begun is delivered, each node gets a Disconnect; after this long whatever is left "
          "is cut. A second signal stops at once.");
ABSL_FLAG(std::string, admin_listen, "",
          "Serve /metrics (Prometheus), /healthz and /sessions (JSON) over HTTP on HOST:PORT "
          "(e.g. 127.0.0.1:9108; keep it off the internet). Empty: no admin endpoint.");
ABSL_FLAG(std::string, upgrade_socket, "",
          "Listen on this Unix socket (mode 0600) for a new relay-server process that takes "
          "over without downtime (--take_over, or SIGUSR2 / systemctl reload). Empty: no "
          "live upgrade.");
ABSL_FLAG(std::string, take_over, "",
          "Start by taking over from the relay-server running with --upgrade_socket=PATH: its "
          "listeners, nodes, peers and leases move to this process with no connection "
          "closed and no frame lost; then it exits. --listen and --port_range must match.");
ABSL_FLAG(absl::Duration, upgrade_timeout, absl::Seconds(10),
          "Live upgrade: how long the old relay waits for every frame in flight to reach its "
          "node; after it, nodes that do not read and peers inside a frame are closed.");
ABSL_FLAG(absl::Duration, log_interval, absl::Seconds(10),
          "Each kind of warning is logged at most once per interval, with a count of the "
          "suppressed ones.");
ABSL_FLAG(bool, quiet, false, "Log warnings and errors only.");
ABSL_FLAG(std::string, log_format, "text",
          "text, or json: each log line one JSON object (time, level, source, message, "
          "suppressed) for log collectors.");
ABSL_FLAG(int, log_sessions_per_second, 20,
          "Log a line when a node's session starts, is taken over, and ends (its address, "
          "id prefix, port, cause, bytes), at most this many lines per second (the rest "
          "counted in the next line); 0: none. INFO lines (--quiet hides them).");
ABSL_FLAG(std::string, log_file, "",
          "Append the log to this file instead of stderr (created 0640); SIGHUP reopens it "
          "(after logrotate moved it).");
ABSL_FLAG(std::string, pidfile, "",
          "Write the relay's process id to this file at start (removed at a clean exit), so "
          "scripts can signal this one relay: kill -USR1 $(cat FILE).");

namespace {

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

}  // namespace

constexpr relay::ProgramInfo kProgram = {
    "relay-server",
    "a relay for P2P nodes behind NAT.\n"
    "Nodes keep one main connection and get a public proxy address; every frame peers\n"
    "send there is delivered, whole and in order, down the node's main connection.",
    "  relay-server [--listen=0.0.0.0:6008] [--port_range=55535-65534] [--flagfile=FILE] ...\n"
    "  Signals: SIGINT/SIGTERM drain and stop (exit 0); SIGUSR1 prints the counters;\n"
    "  SIGHUP reopens --log_file and reloads the log flags from the flag files;\n"
    "  SIGUSR2 starts the binary at this path again and hands everything over to it\n"
    "  (live upgrade; needs --upgrade_socket).",
    "server/main.cc",
    "0 clean stop (or --help/--version), 1 the relay could not start (e.g. the port is\n"
    "taken), 2 usage error (a bad flag or value; the message names it).",
};

namespace {

// SIGHUP: reopen the log file, and reload from the flag files what a running relay can
// change (the log settings); say which other changes need a restart. Never stops.
// One line with every flag's value (defaults included), so the log says what ran.
void LogEffectiveConfiguration() {
  std::vector<std::string> flags;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (absl::EndsWith(flag->Filename(), "server/main.cc")) {
      flags.push_back(absl::StrCat("--", name, "=", flag->CurrentValue()));
    }
  }
  std::sort(flags.begin(), flags.end());
  RELAY_LOG_ALWAYS(INFO) << "configuration: " << absl::StrJoin(flags, " ");
}

// Drains the relay until done, --drain_timeout, or a second SIGTERM/SIGINT.
void Drain(relay::RelayServer& server, const sigset_t& signals) {
  const absl::Time start = absl::Now();
  const absl::Time deadline = start + absl::GetFlag(FLAGS_drain_timeout);
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

void OnSighup(const std::string& log_file) {
  if (!log_file.empty()) {
    absl::Status reopened = relay::RedirectLogTo(log_file);
    if (!reopened.ok()) {
      RELAY_LOG(ERROR) << "SIGHUP: " << reopened.message() << " (still logging to the old file)";
    }
  }
  absl::StatusOr<relay::FlagReload> reload =
      relay::ReloadFlagFiles(kProgram, {"log_interval", "quiet", "log_sessions_per_second"});
  if (!reload.ok()) {
    RELAY_LOG(ERROR) << "SIGHUP: flag files not reloaded: " << reload.status().message()
                     << "; running on as before";
    return;
  }
  if (absl::GetFlag(FLAGS_log_interval) > absl::ZeroDuration()) {
    relay::SetLogInterval(absl::GetFlag(FLAGS_log_interval));
  }
  relay::SetMinLogLevel(absl::GetFlag(FLAGS_quiet) ? relay::LogLevel::kWarning
                                                   : relay::LogLevel::kInfo);
  relay::SetSessionLogRate(std::max(0, absl::GetFlag(FLAGS_log_sessions_per_second)));
  RELAY_LOG_ALWAYS(INFO)
      << "SIGHUP: " << (log_file.empty() ? "" : "log file reopened; ")
      << "reloaded: " << (reload->applied.empty() ? "nothing" : absl::StrJoin(reload->applied, " "))
      << (reload->need_restart.empty() ? std::string()
                                       : absl::StrCat("; changed in the flag file but applied only "
                                                      "by a restart: ",
                                                      absl::StrJoin(reload->need_restart, " ")));
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

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> original_argv(argv, argv + argc);  // for SIGUSR2
  const std::vector<std::string> positional = relay::ParseCommandLineOrExit(argc, argv, kProgram);
  if (!positional.empty()) {
    relay::ExitUsage(kProgram, absl::StrCat("unexpected argument '", positional[0],
                                            "' (flags are --name=value)"));
  }

  relay::RelayConfig config;
  const std::vector<std::string> listens = absl::GetFlag(FLAGS_listen);
  if (listens.empty()) {
    relay::ExitUsage(kProgram, "--listen: expected at least one HOST:PORT");
  }
  for (const std::string& text : listens) {
    absl::StatusOr<relay::HostPort> listen = relay::ParseHostPort(text);
    if (!listen.ok()) {
      relay::ExitUsage(kProgram, absl::StrCat("--listen=", text, ": ", listen.status().message()));
    }
    (&text == &listens.front() ? config.listen : config.more_listen.emplace_back()) = *listen;
  }
  for (const std::string& text : absl::GetFlag(FLAGS_advertise_host)) {
    absl::StatusOr<relay::ProxyAddress> address = relay::ParseProxyAddress(text);
    if (!address.ok()) {
      relay::ExitUsage(kProgram,
                       absl::StrCat("--advertise_host=", text, ": ", address.status().message()));
    }
    if (config.advertise_host.empty()) {
      config.advertise_host = address->advertise;
      config.advertise_bind = address->bind;
    } else {
      config.more_proxy_addresses.push_back(*address);
    }
  }
  absl::Status status =
      relay::ParsePortRange(absl::GetFlag(FLAGS_port_range), &config.port_lo, &config.port_hi);
  if (!status.ok()) {
    relay::ExitUsage(kProgram, absl::StrCat("--port_range=", absl::GetFlag(FLAGS_port_range), ": ",
                                            status.message()));
  }
  config.network_id = absl::GetFlag(FLAGS_network_id);
  config.threads = absl::GetFlag(FLAGS_threads);
  config.reactor_slice = absl::GetFlag(FLAGS_reactor_slice);
  config.keepalive_timeout = absl::GetFlag(FLAGS_keepalive_timeout);
  config.lease_ttl = absl::GetFlag(FLAGS_lease_ttl);
  config.max_frame_bytes = absl::GetFlag(FLAGS_max_frame_bytes);
  config.stage_bytes = absl::GetFlag(FLAGS_stage_bytes);
  config.stage_budget_bytes = absl::GetFlag(FLAGS_stage_budget);
  config.peer_receive_buffer = absl::GetFlag(FLAGS_peer_receive_buffer);
  config.peer_bulk_receive_buffer = absl::GetFlag(FLAGS_peer_bulk_receive_buffer);
  config.bulk_receive_peers = absl::GetFlag(FLAGS_bulk_receive_peers);
  config.session_stage_bytes = absl::GetFlag(FLAGS_session_stage_bytes);
  config.frame_timeout = absl::GetFlag(FLAGS_frame_timeout);
  config.frame_min_rate = absl::GetFlag(FLAGS_frame_min_rate);
  config.peer_idle_timeout = absl::GetFlag(FLAGS_peer_idle_timeout);
  config.first_frame_timeout = absl::GetFlag(FLAGS_first_frame_timeout);
  config.node_write_timeout = absl::GetFlag(FLAGS_node_write_timeout);
  config.node_queue_soft_bytes = absl::GetFlag(FLAGS_node_queue_soft_bytes);
  config.node_queue_soft_time = absl::GetFlag(FLAGS_node_queue_soft_time);
  config.max_control_bytes = absl::GetFlag(FLAGS_max_control_bytes);
  config.control_budget_bytes = absl::GetFlag(FLAGS_control_budget);
  config.control_rate = absl::GetFlag(FLAGS_control_rate);
  config.control_burst = absl::GetFlag(FLAGS_control_burst);
  config.max_mains_per_ip = absl::GetFlag(FLAGS_max_mains_per_ip);
  config.max_sessions_per_ip = absl::GetFlag(FLAGS_max_sessions_per_ip);
  config.max_leases_per_ip = absl::GetFlag(FLAGS_max_leases_per_ip);
  config.max_peers_per_ip = absl::GetFlag(FLAGS_max_peers_per_ip);
  config.proxy_requests_per_ip = absl::GetFlag(FLAGS_proxy_requests_per_ip);
  config.control_per_ip = absl::GetFlag(FLAGS_control_per_ip);
  config.takeover_interval = absl::GetFlag(FLAGS_takeover_interval);
  config.fd_reserve = absl::GetFlag(FLAGS_fd_reserve);
  config.accept_backoff = absl::GetFlag(FLAGS_accept_backoff);
  config.require_signatures = absl::GetFlag(FLAGS_require_signatures);
  config.strict_claims = absl::GetFlag(FLAGS_strict_claims);
  config.claim_window = absl::GetFlag(FLAGS_claim_window);
  config.relay_names = absl::GetFlag(FLAGS_relay_name);
  config.key_file = absl::GetFlag(FLAGS_key_file);
  config.state_dir = absl::GetFlag(FLAGS_state_dir);
  config.state_discard_corrupt = absl::GetFlag(FLAGS_state_discard_corrupt);
  config.state_sync_interval = absl::GetFlag(FLAGS_state_sync_interval);
  if (absl::GetFlag(FLAGS_log_interval) <= absl::ZeroDuration()) {
    relay::ExitUsage(kProgram, "--log_interval: expected a positive duration");
  }
  relay::SetLogInterval(absl::GetFlag(FLAGS_log_interval));
  if (absl::GetFlag(FLAGS_log_sessions_per_second) < 0) {
    relay::ExitUsage(kProgram, "--log_sessions_per_second: expected >= 0 (0 = none)");
  }
  relay::SetSessionLogRate(absl::GetFlag(FLAGS_log_sessions_per_second));
  const std::string forward = absl::GetFlag(FLAGS_forward);
  if (forward == "copy") {
    config.forward_mode = relay::ForwardMode::kCopy;
  } else if (forward == "splice") {
    config.forward_mode = relay::ForwardMode::kSplice;
  } else if (forward == "rule") {
    config.forward_mode = relay::ForwardMode::kRule;
  } else if (forward != "auto") {
    relay::ExitUsage(kProgram,
                     absl::StrCat("--forward=", forward, ": expected auto, rule, splice or copy"));
  }
  status = relay::ValidateConfig(config);
  if (!status.ok()) {
    relay::ExitUsage(kProgram, status.message());
  }
  const std::string log_format = absl::GetFlag(FLAGS_log_format);
  if (log_format != "text" && log_format != "json") {
    relay::ExitUsage(kProgram,
                     absl::StrCat("--log_format=", log_format, ": expected text or json"));
  }
  relay::SetLogJson(log_format == "json");
  const std::string log_file = absl::GetFlag(FLAGS_log_file);
  if (!log_file.empty()) {
    absl::Status opened = relay::RedirectLogTo(log_file);
    if (!opened.ok()) {
      fprintf(stderr, "relay-server: %s\n", std::string(opened.message()).c_str());
      return 1;
    }
  }
  if (absl::GetFlag(FLAGS_quiet)) {
    relay::SetMinLogLevel(relay::LogLevel::kWarning);
  }

  // Block the signals before any thread starts, so only the signalfd below sees them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGUSR1);
  sigaddset(&signals, SIGUSR2);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  const rlim_t fd_limit = RaiseFdLimit();
  if (fd_limit != 0 && fd_limit < 4096) {
    RELAY_LOG(WARNING) << "the open-files limit is " << fd_limit
                       << ": a few hundred nodes at most (raise it: ulimit -n, LimitNOFILE)";
  }
  std::optional<relay::HostPort> admin_listen;
  if (!absl::GetFlag(FLAGS_admin_listen).empty()) {
    absl::StatusOr<relay::HostPort> parsed =
        relay::ParseHostPort(absl::GetFlag(FLAGS_admin_listen));
    if (!parsed.ok()) {
      relay::ExitUsage(kProgram, absl::StrCat("--admin_listen=", absl::GetFlag(FLAGS_admin_listen),
                                              ": ", parsed.status().message()));
    }
    admin_listen = *parsed;
  }
  // Live upgrade, the new side: the running relay's state and sockets, before anything
  // is bound here.
  const std::string take_over = absl::GetFlag(FLAGS_take_over);
  std::optional<relay::Takeover> takeover;
  if (!take_over.empty()) {
    absl::StatusOr<relay::Takeover> received = relay::ReceiveTakeover(take_over);
    if (!received.ok()) {
      fprintf(stderr, "relay-server: --take_over=%s: %s\n", take_over.c_str(),
              std::string(received.status().message()).c_str());
      return 1;
    }
    takeover = std::move(*received);
  }
  // The pid file exists before the port accepts connections, so whoever sees the port
  // open can read it (taking over: once this process is the relay).
  const std::string pidfile = absl::GetFlag(FLAGS_pidfile);
  if (!pidfile.empty() && !takeover && !WritePidFile(pidfile)) {
    return 1;
  }
  absl::StatusOr<std::unique_ptr<relay::RelayServer>> server = relay::RelayServer::Create(
      config, relay::MonotonicClock::Get(), takeover ? &takeover->handed : nullptr);
  if (!server.ok()) {
    fprintf(stderr, "relay-server: %s\n", std::string(server.status().message()).c_str());
    if (takeover) {
      // The old relay runs on. Leave at once: nothing here may touch the shared sockets.
      relay::RefuseTakeover(takeover->conn.get(), std::string(server.status().message()));
      _exit(1);
    }
    if (!pidfile.empty()) {
      unlink(pidfile.c_str());
    }
    return 1;
  }
  std::unique_ptr<relay::UpgradeSocket> upgrade;
  const std::string upgrade_path = absl::GetFlag(FLAGS_upgrade_socket);
  if (takeover) {
    if (!upgrade_path.empty() && upgrade_path != take_over) {
      RELAY_LOG(WARNING) << "--upgrade_socket=" << upgrade_path << " ignored: this relay serves "
                         << "later upgrades on the socket it took over, " << take_over;
    }
    upgrade = relay::UpgradeSocket::Adopt(std::move(takeover->upgrade_listener), take_over);
    absl::Status confirmed = relay::ConfirmTakeover(takeover->conn.get());
    if (!confirmed.ok()) {
      fprintf(stderr, "relay-server: --take_over=%s: %s; the running relay keeps serving\n",
              take_over.c_str(), std::string(confirmed.message()).c_str());
      _exit(1);
    }
    if (!pidfile.empty() && !WritePidFile(pidfile)) {
      RELAY_LOG(ERROR) << "--pidfile=" << pidfile << ": cannot write it (serving anyway)";
    }
  } else if (!upgrade_path.empty()) {
    absl::StatusOr<std::unique_ptr<relay::UpgradeSocket>> created =
        relay::UpgradeSocket::Create(upgrade_path);
    if (!created.ok()) {
      fprintf(stderr, "relay-server: %s\n", std::string(created.status().message()).c_str());
      if (!pidfile.empty()) {
        unlink(pidfile.c_str());
      }
      return 1;
    }
    upgrade = std::move(*created);
  }
  (*server)->Start();
  if (takeover) {
    LogTakeover(*takeover);
  }
  std::unique_ptr<relay::AdminServer> admin;
  if (admin_listen) {
    // After a live upgrade the old process may hold the port a few more milliseconds.
    const absl::Time deadline = absl::Now() + absl::Seconds(takeover ? 5 : 0);
    absl::StatusOr<std::unique_ptr<relay::AdminServer>> started;
    for (;;) {
      started = relay::AdminServer::Start(*admin_listen, server->get());
      if (started.ok() || absl::Now() >= deadline) {
        break;
      }
      absl::SleepFor(absl::Milliseconds(10));
    }
    if (!started.ok()) {
      RELAY_LOG(ERROR) << started.status().message() << "; serving without the admin endpoint";
    } else {
      admin = std::move(*started);
      RELAY_LOG(INFO) << "admin endpoint on http://" << admin_listen->host << ":" << admin->port()
                      << "/metrics, /healthz, /sessions";
    }
  }
  LogEffectiveConfiguration();
  uint16_t local_lo = 0, local_hi = 0;
  relay::ReadLocalPortRange(&local_lo, &local_hi);
  for (const std::string& warning : relay::StartupWarnings(
           config, (*server)->advertise_host(), local_lo, local_hi, relay::ReadRmemMax())) {
    RELAY_LOG(WARNING) << warning;
  }
  std::vector<std::string> proxy_ranges;
  for (const relay::ProxyAddress& a : (*server)->proxy_addresses()) {
    proxy_ranges.push_back(absl::StrCat(relay::FormatHostPort(a.advertise, config.port_lo), "-",
                                        config.port_hi,
                                        a.bind == a.advertise || relay::IsAnyAddress(a.bind)
                                            ? ""
                                            : absl::StrCat(" (bound on ", a.bind, ")")));
  }
  RELAY_LOG(INFO) << "relay-server listening on " << absl::StrJoin((*server)->listen_names(), ", ")
                  << " with " << (*server)->thread_count() << " reactors; proxy addresses "
                  << absl::StrJoin(proxy_ranges, ", ") << ", network id " << config.network_id
                  << "; relay key " << (*server)->relay_key_hex();
  // systemd (Type=notify): ready once the port accepts and every reactor runs. A no-op
  // without $NOTIFY_SOCKET. After a live upgrade this process is the service's main one
  // (the unit has NotifyAccess=all for this message).
  sd_notifyf(0, "READY=1\nSTATUS=serving on %s\nMAINPID=%d",
             absl::StrJoin((*server)->listen_names(), ", ").c_str(), static_cast<int>(getpid()));

  const int signal_fd = signalfd(-1, &signals, SFD_CLOEXEC);
  if (signal_fd < 0) {
    RELAY_LOG(ERROR) << "signalfd failed: " << relay::ErrnoText(errno);
    return 1;
  }
  for (;;) {
    pollfd fds[2] = {{signal_fd, POLLIN, 0}, {upgrade ? upgrade->fd() : -1, POLLIN, 0}};
    const int ready = poll(fds, 2, 1000);
    ReapSuccessors();
    if (ready <= 0) {
      continue;
    }
    // Each waiting caller in turn (one that fails leaves the relay as it was).
    for (relay::net::UniqueFd conn; fds[1].revents != 0 && (conn = upgrade->Accept()).valid();) {
      RELAY_LOG_ALWAYS(INFO) << "live upgrade: a new process asks to take over; freezing";
      absl::StatusOr<pid_t> successor = relay::HandOver(**server, *upgrade, std::move(conn),
                                                        absl::GetFlag(FLAGS_upgrade_timeout));
      if (successor.ok()) {
        RELAY_LOG_ALWAYS(INFO) << "live upgrade: handed over to pid " << *successor << "; exiting";
        sd_notifyf(0, "MAINPID=%d", static_cast<int>(*successor));
        _exit(0);  // close nothing: the new process holds every socket
      }
      RELAY_LOG(ERROR) << "live upgrade failed: " << successor.status().message();
    }
    if (fds[0].revents == 0) {
      continue;
    }
    signalfd_siginfo info;
    if (read(signal_fd, &info, sizeof(info)) != sizeof(info)) {
      continue;
    }
    const int sig = static_cast<int>(info.ssi_signo);
    if (sig == SIGUSR1) {
      PrintCounters(**server);
      continue;
    }
    if (sig == SIGHUP) {
      sd_notify(0, "RELOADING=1");
      OnSighup(log_file);
      sd_notify(0, "READY=1");
      continue;
    }
    if (sig == SIGUSR2) {
      if (!upgrade) {
        RELAY_LOG(WARNING) << "SIGUSR2 ignored: live upgrade needs --upgrade_socket";
        continue;
      }
      absl::StatusOr<pid_t> child = relay::SpawnSuccessor(original_argv, upgrade->path());
      if (child.ok()) {
        RELAY_LOG_ALWAYS(INFO) << "SIGUSR2: started pid " << *child
                               << " to take over (live upgrade)";
      } else {
        RELAY_LOG(ERROR) << "SIGUSR2: cannot start the new process: " << child.status().message();
      }
      continue;
    }
    RELAY_LOG(INFO) << "signal " << sig
                    << ": draining (no new nodes or frames; frames in "
                       "flight delivered; --drain_timeout="
                    << absl::FormatDuration(absl::GetFlag(FLAGS_drain_timeout)) << ")";
    sd_notify(0, "STOPPING=1\nSTATUS=draining");
    Drain(**server, signals);
    break;
  }
  if (admin) {
    admin->Stop();
  }
  (*server)->Stop();
  PrintCounters(**server);
  if (!pidfile.empty()) {
    unlink(pidfile.c_str());
  }
  return 0;
}
