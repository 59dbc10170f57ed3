#include "server/flags.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/log.h"
#include "net/host_info.h"

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
ABSL_FLAG(std::string, port_range, "20000-29999",
          "Proxy ports the relay hands out, LO-HI. The default is below Linux's ephemeral "
          "range (net.ipv4.ip_local_port_range, 32768-60999), which outgoing connections "
          "take ports from; the relay warns at start if the range overlaps it.");
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
ABSL_FLAG(std::string, forward, "splice",
          "How frame bytes move from peers to nodes: splice (zero-copy through pipes; small "
          "frames of a sender slower than the relay, whose socket each read drains, by copy: "
          "fewer syscalls a frame at light load) or copy (recv/send through pooled user-space "
          "blocks for every frame; faster on some hosts for few streams of large frames: "
          "measure with bench/ab.sh). auto and rule, the choosers of earlier versions, are "
          "read as splice.");
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
ABSL_FLAG(absl::Duration, frame_stall_timeout, absl::Seconds(5),
          "Drop a sender when no byte of its frame arrives for this long, whatever the "
          "frame's size (time the relay is not reading does not count).");
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
ABSL_FLAG(double, signature_budget, 4000,
          "Signature checks each reactor does per second (about 40 us each: the default is "
          "a sixth of a core); beyond it, sources that sent many in the current second wait "
          "(counted as signature_waits) while light ones go on. A connection's messages "
          "signed by the key it already proved are not checked again. 0 = no limit.");
ABSL_FLAG(uint32_t, prefix_factor, 4,
          "The per-IP limits (max_*_per_ip) also hold for wider prefixes, this many times "
          "larger at each step: an IPv4 /24; an IPv6 /56 and /48 (IPv6 sources are /64s). "
          "0 = no prefix limits.");
ABSL_FLAG(double, evictions_per_source, 2,
          "Under pool pressure (no free port) a new node takes the port of a remembered "
          "lease, from the source group holding the most; a group (IPv4 /24, IPv6 /48) may "
          "push out others' leases at this many per minute (bursts of twice), beyond it "
          "only its own (else refused: evictions_limited). 0 = no limit.");
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
          "its public key (printed at start) with relay-node --relay_key, and identify the "
          "relay by it. Empty: relay.key in --state_dir; with neither, a new key per run "
          "(warned at start).");
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

namespace relay {

// Flags of earlier versions: accepted, ignored, and warned about at start.
constexpr const char* kRetiredFlags[] = {"peer_bulk_receive_buffer", "bulk_receive_peers"};

const ProgramInfo kServerProgram = {
    "relay-server",
    "a relay for P2P nodes behind NAT.\n"
    "Nodes keep one main connection and get a public proxy address; every frame peers\n"
    "send there is delivered, whole and in order, down the node's main connection.",
    "  relay-server [--listen=0.0.0.0:6008] [--port_range=20000-29999] [--flagfile=FILE] ...\n"
    "  Signals: SIGINT/SIGTERM drain and stop (exit 0); SIGUSR1 prints the counters;\n"
    "  SIGHUP reopens --log_file and reloads the log flags from the flag files;\n"
    "  SIGUSR2 starts the binary at this path again and hands everything over to it\n"
    "  (live upgrade; needs --upgrade_socket).",
    "server/flags.cc",
    "0 clean stop (or --help/--version), 1 the relay could not start (e.g. the port is\n"
    "taken), 2 usage error (a bad flag or value; the message names it).",
    kRetiredFlags,
};

namespace {

template <typename T>
T Parsed(const std::string& flag, const std::string& text, absl::StatusOr<T> parsed) {
  if (!parsed.ok()) {
    ExitUsage(kServerProgram, absl::StrCat("--", flag, "=", text, ": ", parsed.status().message()));
  }
  return *std::move(parsed);
}

// --listen, --advertise_host, --port_range.
void ReadAddresses(RelayConfig* config) {
  const std::vector<std::string> listens = absl::GetFlag(FLAGS_listen);
  if (listens.empty()) {
    ExitUsage(kServerProgram, "--listen: expected at least one HOST:PORT");
  }
  for (const std::string& text : listens) {
    (&text == &listens.front() ? config->listen : config->more_listen.emplace_back()) =
        Parsed("listen", text, ParseHostPort(text));
  }
  for (const std::string& text : absl::GetFlag(FLAGS_advertise_host)) {
    const ProxyAddress address = Parsed("advertise_host", text, ParseProxyAddress(text));
    if (config->advertise_host.empty()) {
      config->advertise_host = address.advertise;
      config->advertise_bind = address.bind;
    } else {
      config->more_proxy_addresses.push_back(address);
    }
  }
  const std::string range = absl::GetFlag(FLAGS_port_range);
  const absl::Status status = ParsePortRange(range, &config->port_lo, &config->port_hi);
  if (!status.ok()) {
    ExitUsage(kServerProgram, absl::StrCat("--port_range=", range, ": ", status.message()));
  }
  // (This abseil cannot tell a flag given from one left at its default: the value tells.)
  const absl::CommandLineFlag* flag = absl::FindCommandLineFlag("port_range");
  config->port_range_default = flag == nullptr || flag->CurrentValue() == flag->DefaultValue();
}

// Frames, staging and the deadlines of connections.
void ReadForwarding(RelayConfig* config, ProgramOptions* options) {
  config->network_id = absl::GetFlag(FLAGS_network_id);
  config->threads = absl::GetFlag(FLAGS_threads);
  config->reactor_slice = absl::GetFlag(FLAGS_reactor_slice);
  config->keepalive_timeout = absl::GetFlag(FLAGS_keepalive_timeout);
  config->lease_ttl = absl::GetFlag(FLAGS_lease_ttl);
  config->max_frame_bytes = absl::GetFlag(FLAGS_max_frame_bytes);
  config->stage_bytes = absl::GetFlag(FLAGS_stage_bytes);
  config->stage_budget_bytes = absl::GetFlag(FLAGS_stage_budget);
  config->peer_receive_buffer = absl::GetFlag(FLAGS_peer_receive_buffer);
  config->session_stage_bytes = absl::GetFlag(FLAGS_session_stage_bytes);
  config->frame_timeout = absl::GetFlag(FLAGS_frame_timeout);
  config->frame_min_rate = absl::GetFlag(FLAGS_frame_min_rate);
  config->frame_stall_timeout = absl::GetFlag(FLAGS_frame_stall_timeout);
  config->peer_idle_timeout = absl::GetFlag(FLAGS_peer_idle_timeout);
  config->first_frame_timeout = absl::GetFlag(FLAGS_first_frame_timeout);
  config->node_write_timeout = absl::GetFlag(FLAGS_node_write_timeout);
  config->node_queue_soft_bytes = absl::GetFlag(FLAGS_node_queue_soft_bytes);
  config->node_queue_soft_time = absl::GetFlag(FLAGS_node_queue_soft_time);
  const std::string forward = absl::GetFlag(FLAGS_forward);
  if (forward == "copy") {
    config->forward_mode = ForwardMode::kCopy;
  } else if (forward == "auto" || forward == "rule") {
    options->forward_alias = forward;  // flag files of earlier versions
  } else if (forward != "splice") {
    ExitUsage(kServerProgram, absl::StrCat("--forward=", forward, ": expected splice or copy"));
  }
}

// Control messages, per-source limits, claims and state.
void ReadLimits(RelayConfig* config) {
  config->max_control_bytes = absl::GetFlag(FLAGS_max_control_bytes);
  config->control_budget_bytes = absl::GetFlag(FLAGS_control_budget);
  config->control_rate = absl::GetFlag(FLAGS_control_rate);
  config->control_burst = absl::GetFlag(FLAGS_control_burst);
  config->max_mains_per_ip = absl::GetFlag(FLAGS_max_mains_per_ip);
  config->max_sessions_per_ip = absl::GetFlag(FLAGS_max_sessions_per_ip);
  config->max_leases_per_ip = absl::GetFlag(FLAGS_max_leases_per_ip);
  config->max_peers_per_ip = absl::GetFlag(FLAGS_max_peers_per_ip);
  config->proxy_requests_per_ip = absl::GetFlag(FLAGS_proxy_requests_per_ip);
  config->control_per_ip = absl::GetFlag(FLAGS_control_per_ip);
  config->signature_budget = absl::GetFlag(FLAGS_signature_budget);
  config->prefix_factor = absl::GetFlag(FLAGS_prefix_factor);
  config->evictions_per_source = absl::GetFlag(FLAGS_evictions_per_source);
  config->takeover_interval = absl::GetFlag(FLAGS_takeover_interval);
  config->fd_reserve = absl::GetFlag(FLAGS_fd_reserve);
  config->accept_backoff = absl::GetFlag(FLAGS_accept_backoff);
  config->require_signatures = absl::GetFlag(FLAGS_require_signatures);
  config->strict_claims = absl::GetFlag(FLAGS_strict_claims);
  config->claim_window = absl::GetFlag(FLAGS_claim_window);
  config->relay_names = absl::GetFlag(FLAGS_relay_name);
  config->key_file = absl::GetFlag(FLAGS_key_file);
  config->state_dir = absl::GetFlag(FLAGS_state_dir);
  config->state_discard_corrupt = absl::GetFlag(FLAGS_state_discard_corrupt);
  config->state_sync_interval = absl::GetFlag(FLAGS_state_sync_interval);
}

// The program's own flags (admin endpoint, upgrades, drain, pid and log files).
void ReadProgramOptions(ProgramOptions* options) {
  const std::string admin = absl::GetFlag(FLAGS_admin_listen);
  if (!admin.empty()) {
    options->admin_listen = Parsed("admin_listen", admin, ParseHostPort(admin));
  }
  options->upgrade_socket = absl::GetFlag(FLAGS_upgrade_socket);
  options->take_over = absl::GetFlag(FLAGS_take_over);
  options->upgrade_timeout = absl::GetFlag(FLAGS_upgrade_timeout);
  options->drain_timeout = absl::GetFlag(FLAGS_drain_timeout);
  options->pidfile = absl::GetFlag(FLAGS_pidfile);
  options->log_file = absl::GetFlag(FLAGS_log_file);
  if (absl::GetFlag(FLAGS_log_interval) <= absl::ZeroDuration()) {
    ExitUsage(kServerProgram, "--log_interval: expected a positive duration");
  }
  if (absl::GetFlag(FLAGS_log_sessions_per_second) < 0) {
    ExitUsage(kServerProgram, "--log_sessions_per_second: expected >= 0 (0 = none)");
  }
  const std::string log_format = absl::GetFlag(FLAGS_log_format);
  if (log_format != "text" && log_format != "json") {
    ExitUsage(kServerProgram, absl::StrCat("--log_format=", log_format, ": expected text or json"));
  }
}

}  // namespace

void ReadFlagsOrExit(RelayConfig* config, ProgramOptions* options) {
  ReadAddresses(config);
  ReadForwarding(config, options);
  ReadLimits(config);
  if (NeedsInterfaceAddress(*config)) {
    config->interface_address = net::FirstInterfaceAddress(config->listen.host == "::");
  }
  const absl::Status status = ValidateConfig(*config);
  if (!status.ok()) {
    ExitUsage(kServerProgram, status.message());
  }
  ReadProgramOptions(options);
}

absl::Status ApplyLogFlags(const std::string& log_file) {
  SetLogInterval(absl::GetFlag(FLAGS_log_interval));
  SetSessionLogRate(absl::GetFlag(FLAGS_log_sessions_per_second));
  SetLogJson(absl::GetFlag(FLAGS_log_format) == "json");
  if (!log_file.empty()) {
    absl::Status opened = RedirectLogTo(log_file);
    if (!opened.ok()) {
      return opened;
    }
  }
  if (absl::GetFlag(FLAGS_quiet)) {
    SetMinLogLevel(LogLevel::kWarning);
  }
  return absl::OkStatus();
}

void ReloadLogFlags(const std::string& log_file) {
  if (!log_file.empty()) {
    absl::Status reopened = RedirectLogTo(log_file);
    if (!reopened.ok()) {
      RELAY_LOG(ERROR) << "SIGHUP: " << reopened.message() << " (still logging to the old file)";
    }
  }
  absl::StatusOr<FlagReload> reload =
      ReloadFlagFiles(kServerProgram, {"log_interval", "quiet", "log_sessions_per_second"});
  if (!reload.ok()) {
    RELAY_LOG(ERROR) << "SIGHUP: flag files not reloaded: " << reload.status().message()
                     << "; running on as before";
    return;
  }
  if (absl::GetFlag(FLAGS_log_interval) > absl::ZeroDuration()) {
    SetLogInterval(absl::GetFlag(FLAGS_log_interval));
  }
  SetMinLogLevel(absl::GetFlag(FLAGS_quiet) ? LogLevel::kWarning : LogLevel::kInfo);
  SetSessionLogRate(std::max(0, absl::GetFlag(FLAGS_log_sessions_per_second)));
  RELAY_LOG_ALWAYS(INFO)
      << "SIGHUP: " << (log_file.empty() ? "" : "log file reopened; ")
      << "reloaded: " << (reload->applied.empty() ? "nothing" : absl::StrJoin(reload->applied, " "))
      << (reload->need_restart.empty() ? std::string()
                                       : absl::StrCat("; changed in the flag file but applied only "
                                                      "by a restart: ",
                                                      absl::StrJoin(reload->need_restart, " ")));
}

void LogEffectiveConfiguration() {
  std::vector<std::string> flags;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (absl::EndsWith(flag->Filename(), kServerProgram.main_file)) {
      flags.push_back(absl::StrCat("--", name, "=", flag->CurrentValue()));
    }
  }
  std::sort(flags.begin(), flags.end());
  RELAY_LOG_ALWAYS(INFO) << "configuration: " << absl::StrJoin(flags, " ");
}

}  // namespace relay
