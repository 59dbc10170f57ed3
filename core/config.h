// RelayConfig: everything relay-server can be told on its command line, with the parsers
// for the textual forms ("HOST:PORT", "LO-HI") and the validation of the whole.
//
// A plain value type; copy it freely. The server reads it once at start-up.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "core/frame_header.h"
#include "core/host_port.h"

namespace relay {

// How a peer's frames are staged and written to the node (--forward): kSplice moves them
// through pipes without copying the payload (server/proxy_connection.h); kCopy through
// pooled user-space blocks (recv/send), for hosts where that measures faster.
enum class ForwardMode { kSplice, kCopy };

// Reactors at most: each pair of reactors has a ring (32 KiB), so memory grows as the
// square of the count.
inline constexpr int kMaxThreads = 128;

// One address proxy ports are handed out on: the IP put in proxy addresses, and the IP
// the proxy listeners bind (the same on a host that owns its public IPs; a private one
// behind a 1:1 NAT).
struct ProxyAddress {
  std::string advertise;
  std::string bind;
};

struct RelayConfig {
  // The main listener; proxy ports are bound on its address (and family).
  HostPort listen{"0.0.0.0", 6008};
  // More main listeners (--listen given more than once: e.g. "[::]:6008" beside
  // "0.0.0.0:6008"); nodes may connect on any of them.
  std::vector<HostPort> more_listen;
  std::string advertise_host;  // empty: derived by ResolveAdvertiseHost()
  // This machine's first non-loopback IP of the first listener's family: what is advertised
  // on 0.0.0.0 or [::] without --advertise_host. Filled by relay-server and
  // RelayServer::Create (net::FirstInterfaceAddress) when NeedsInterfaceAddress.
  std::string interface_address;
  std::string advertise_bind;  // where its proxy listeners bind; empty: see ResolveProxyAddresses
  // More proxy addresses (--advertise_host given more than once): each holds the whole
  // --port_range, so N addresses serve N times the nodes. Bind empty: the advertised IP.
  std::vector<ProxyAddress> more_proxy_addresses;
  // Below Linux's default ephemeral range (32768-60999), so outgoing connections of the
  // host never take a proxy port.
  uint16_t port_lo = 20000;
  uint16_t port_hi = 29999;
  bool port_range_default = true;  // --port_range not given (a live upgrade keeps the old)
  uint32_t network_id = kDefaultNetworkId;
  int threads = 0;  // 0: one per online CPU
  // The scheduler slice each reactor thread asks for (net/scheduler_slice.h): a short one
  // lets a reactor's wake-up preempt a busy neighbour at once. 0 = the kernel's default.
  absl::Duration reactor_slice = absl::Microseconds(100);
  absl::Duration keepalive_timeout = absl::Seconds(180);
  absl::Duration lease_ttl = absl::Minutes(180);
  uint32_t max_frame_bytes = 16u << 20;
  ForwardMode forward_mode = ForwardMode::kSplice;
  // Bytes a proxy connection may stage beyond the frame it is receiving (one pipe).
  uint32_t stage_bytes = 1u << 20;
  // Bytes all peers of one reactor may hold staged at once (whole frames and frames in
  // progress): the bound on staging memory whatever peers send. Must hold one largest
  // frame plus one stage.
  uint64_t stage_budget_bytes = 256ull << 20;
  // Each peer socket's receive buffer (SO_RCVBUF; the kernel counts twice this): what a
  // peer can queue in the kernel while the relay does not read it. Left to autotuning,
  // hundreds of senders at a node that reads slowly would pin gigabytes of kernel memory.
  uint32_t peer_receive_buffer = 512 * 1024;

  // --- Isolation: every resource a client can hold has a bound, a deadline or a share.
  // docs/RELIABILITY.md explains each; the flags have the same names.
  // Staged bytes one session (all the peers of one node) may hold: a node that does not
  // read stops at this share. 0 = auto: stage_budget / 8, at least max_frame_bytes + 10 +
  // stage_bytes (SessionStageBytes()).
  uint64_t session_stage_bytes = 0;
  // A frame that began arriving must be whole within frame_timeout + size / frame_min_rate
  // (time spent waiting for the node to read does not count), or its sender is dropped.
  absl::Duration frame_timeout = absl::Seconds(10);
  uint32_t frame_min_rate = 64 * 1024;  // bytes per second
  // Whatever its size, a frame from which no byte arrives for this long (while the relay
  // reads) is dropped with its sender: a stalled frame holds a node's staging share for
  // this long at most.
  absl::Duration frame_stall_timeout = absl::Seconds(5);
  // A proxy connection that sends nothing at a frame boundary this long is closed.
  absl::Duration peer_idle_timeout = absl::Seconds(120);
  // A new main connection must send a valid control frame within this.
  absl::Duration first_frame_timeout = absl::Seconds(10);
  // A node that takes no byte for this long while frames or replies wait is closed.
  absl::Duration node_write_timeout = absl::Seconds(30);
  // A node whose queue stays above node_queue_soft_bytes for node_queue_soft_time is
  // closed (the hard limit is session_stage_bytes: peers wait at it).
  uint64_t node_queue_soft_bytes = 16ull << 20;
  absl::Duration node_queue_soft_time = absl::Seconds(60);
  // Largest control frame on a main connection, and the heap all partial control frames
  // of one reactor may hold.
  uint32_t max_control_bytes = 64 * 1024;
  uint64_t control_budget_bytes = 32ull << 20;
  // Control messages one main connection may send per second after a burst of
  // control_burst (each costs a parse, an answer and, with require_signatures, a
  // signature check); beyond that the relay stops reading the connection until its rate
  // allows more. 0 = no limit.
  double control_rate = 50;
  uint32_t control_burst = 200;
  // Per source IP (generous: many nodes can share one NAT address). 0 = no limit.
  uint32_t max_mains_per_ip = 1024;
  uint32_t max_sessions_per_ip = 1024;
  uint32_t max_leases_per_ip = 4096;
  uint32_t max_peers_per_ip = 4096;
  double proxy_requests_per_ip = 100;  // per second, bursts of twice that
  // Wider prefixes (IPv4 /24; IPv6 /56, /48) may hold this many times what the prefix
  // below them may, of each per-IP limit. 0: no prefix limits.
  uint32_t prefix_factor = 4;
  // Under pool pressure, remembered leases of other source groups (IPv4 /24, IPv6 /48)
  // one group may push out per minute, bursts of twice. 0: no limit.
  double evictions_per_source = 2;
  // Control messages all main connections of one source IP may send per second, bursts
  // of twice that (the bound on signature checks one IP can cost). 0 = no limit.
  double control_per_ip = 200;
  // Ed25519 checks one reactor does per second (core/signature_budget.h); beyond that
  // the heaviest sources wait. 0 = no limit.
  double signature_budget = 4000;
  // A second takeover of one session within this window is refused.
  absl::Duration takeover_interval = absl::Seconds(1);
  // File descriptors kept free for existing sessions: new connections are refused (and
  // the listeners back off) when fewer than this are left.
  uint32_t fd_reserve = 128;
  // Listeners that failed to accept (EMFILE...) retry after this.
  absl::Duration accept_backoff = absl::Milliseconds(100);

  // Ownership (docs/SECURITY.md). A lease first claimed with a valid signature is bound
  // to that key; with require_signatures every control message must be validly signed.
  bool require_signatures = false;
  // Every ProxyRequest must be a signed fresh claim (core/fresh_claim.h): names this relay
  // and carries a time within claim_window of the relay's clock.
  bool strict_claims = false;
  absl::Duration claim_window = absl::Seconds(60);
  // More "tcp://HOST:PORT" names nodes dial this relay by (a DNS name, a NAT address);
  // "tcp://<advertised ip>:<main port>" and the listen address are always names.
  std::vector<std::string> relay_names;
  // Leases kept on disk (server/lease_store.h); empty: in memory only (lost at a restart).
  std::string state_dir;
  // A damaged state is moved aside (and the relay starts with no leases) instead of
  // refusing to start.
  bool state_discard_corrupt = false;
  // The lease journal is fdatasync'ed this often: what a power loss can lose.
  absl::Duration state_sync_interval = absl::Seconds(1);
  // The relay's Ed25519 key (64 hex characters, the seed), created 0600 if missing.
  // Empty: a fresh key per process.
  std::string key_file;
};

// Parses "LO-HI" with 1 <= LO <= HI <= 65535.
absl::Status ParsePortRange(absl::string_view text, uint16_t* lo, uint16_t* hi);

// Checks the configuration as a whole (ranges, positive durations, thread count).
absl::Status ValidateConfig(const RelayConfig& config);

// Returns the IP to put in proxy addresses: advertise_host if set, else the listen host,
// else (listening on 0.0.0.0 or [::]) interface_address, else 127.0.0.1 or ::1. The family
// follows the listen address, since the proxy ports are bound there.
std::string ResolveAdvertiseHost(const RelayConfig& config);
// True when ResolveAdvertiseHost would guess and interface_address is not filled yet (the
// caller fills it from net::FirstInterfaceAddress).
bool NeedsInterfaceAddress(const RelayConfig& config);

// Every proxy address, the first one first: the first advertises ResolveAdvertiseHost and
// binds advertise_bind, else (alone) the listen host as before, else its advertised IP;
// the others bind their own bind address, else their advertised IP.
std::vector<ProxyAddress> ResolveProxyAddresses(const RelayConfig& config);
// Parses one --advertise_host entry: "IP" or "IP@BIND_IP" (IPv6 without brackets).
absl::StatusOr<ProxyAddress> ParseProxyAddress(absl::string_view text);

// Warnings about a configuration that runs but probably not as the operator means:
// the advertised IP guessed from an interface (on 0.0.0.0 without --advertise_host:
// behind NAT that is the private address), or --port_range overlapping the host's
// ephemeral port range `local_lo`-`local_hi` (net.ipv4.ip_local_port_range; 0-0 if
// unknown) in ports not reserved by `reserved_ports` (net.ipv4.ip_local_reserved_ports:
// "8080,61000-65000"), or peer receive buffers above net.core.rmem_max `rmem_max` (the
// kernel cuts SO_RCVBUF to it; 0 if unknown). One sentence each, naming what fixes it.
std::vector<std::string> StartupWarnings(const RelayConfig& config, const std::string& advertised,
                                         uint16_t local_lo, uint16_t local_hi, uint64_t rmem_max,
                                         absl::string_view reserved_ports = "");

// The effective --session_stage_bytes (resolving 0 = auto).
uint64_t SessionStageBytes(const RelayConfig& config);

// Returns the number of reactors to run: config.threads, or `online_cpus` (at least 1)
// when 0 (net::OnlineCpus()).
int ResolveThreads(const RelayConfig& config, int online_cpus);

}  // namespace relay
