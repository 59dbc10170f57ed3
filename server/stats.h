// ShardStats: the counters of one shard (reactor), and their names.
//
// Each counter has one writer, the shard's thread, which bumps it with a relaxed load and
// store (no locked instruction on the forwarding path); any thread may read a snapshot.
// RelayServer::Counters() sums the shards. Every error path of the relay bumps exactly one
// counter here and logs through RELAY_LOG_LIMITED (one line per interval per call site),
// so a flood of bad input costs no log spam.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace relay {

// X(enum name, printed name, meaning). docs/RELIABILITY.md defines every counter.
#define RELAY_COUNTERS(X)                                                                        \
  X(kMainAccepted, "main_accepted", "main connections accepted")                                 \
  X(kMainClosed, "main_closed", "main connections closed (handed-off ones excluded)")            \
  X(kMainHandedOff, "main_handed_off", "main connections moved to their lease's reactor")        \
  X(kMainTakenOver, "main_taken_over", "older main connections replaced by a newer one")         \
  X(kTakeoverDamped, "takeover_damped",                                                          \
    "takeovers refused: the session was taken over "                                             \
    "less than --takeover_interval ago")                                                         \
  X(kKeepaliveTimeouts, "keepalive_timeouts",                                                    \
    "main connections silent for the keepalive "                                                 \
    "timeout")                                                                                   \
  X(kFirstFrameTimeouts, "first_frame_timeouts",                                                 \
    "new main connections that sent no valid "                                                   \
    "frame in --first_frame_timeout")                                                            \
  X(kNodeWriteTimeouts, "node_write_timeouts",                                                   \
    "nodes that took no byte for "                                                               \
    "--node_write_timeout while data waited")                                                    \
  X(kNodeQueueSoftLimit, "node_queue_soft_limit",                                                \
    "nodes whose queue stayed above "                                                            \
    "--node_queue_soft_bytes too long")                                                          \
  X(kDisconnectsReceived, "disconnects_received", "Disconnect messages from nodes")              \
  X(kControlMessages, "control_messages", "valid control messages received")                     \
  X(kUnknownOpcodes, "unknown_opcodes", "control messages with an unknown opcode (ignored)")     \
  X(kMainProtocolErrors, "main_protocol_errors",                                                 \
    "bad header or control message on a main "                                                   \
    "connection (closed)")                                                                       \
  X(kMainControlTooLarge, "main_control_too_large",                                              \
    "control frames over "                                                                       \
    "--max_control_bytes (Disconnect, closed)")                                                  \
  X(kMainControlBudget, "main_control_budget",                                                   \
    "main connections closed because partial "                                                   \
    "control frames filled --control_budget")                                                    \
  X(kMainSlowReader, "main_slow_reader", "nodes that left too many control replies unread")      \
  X(kMainControlThrottled, "main_control_throttled",                                             \
    "times a main connection was paused for "                                                    \
    "sending control messages faster than --control_rate or --control_per_ip")                   \
  X(kCompressedControl, "compressed_control", "compressed control messages (ignored)")           \
  X(kSessionsStarted, "sessions_started", "sessions started")                                    \
  X(kSessionsEnded, "sessions_ended", "sessions ended")                                          \
  X(kLeasesReused, "leases_reused", "ProxyRequests answered from a remembered lease")            \
  X(kLeasesExpired, "leases_expired", "remembered leases that expired")                          \
  X(kLeasesEvicted, "leases_evicted",                                                            \
    "remembered leases whose port went to a new node "                                           \
    "because the pool was empty")                                                                \
  X(kLeasePortRebound, "lease_port_rebound",                                                     \
    "remembered ports that could not be bound "                                                  \
    "again (the node got a new one)")                                                            \
  X(kSignatureChecks, "signature_checks", "Ed25519 signature checks")                            \
  X(kSignatureWaits, "signature_waits",                                                          \
    "control messages that waited for the reactor's --signature_budget")                         \
  X(kEvictionsLimited, "evictions_limited",                                                      \
    "claims refused under pool pressure: the source group's --evictions_per_source is spent")    \
  X(kClaimsNotDurable, "claims_not_durable",                                                     \
    "claims refused: the lease journal could not be written (--state_dir)")                      \
  X(kPoolExhausted, "pool_exhausted",                                                            \
    "ProxyRequests refused: every port held by a live "                                          \
    "session")                                                                                   \
  X(kProxyBindFailures, "proxy_bind_failures", "proxy ports that could not be bound")            \
  X(kLimitMainsPerIp, "limit_mains_per_ip", "main connections refused by --max_mains_per_ip")    \
  X(kLimitSessionsPerIp, "limit_sessions_per_ip",                                                \
    "ProxyRequests refused by "                                                                  \
    "--max_sessions_per_ip")                                                                     \
  X(kLimitLeasesPerIp, "limit_leases_per_ip", "ProxyRequests refused by --max_leases_per_ip")    \
  X(kLimitPeersPerIp, "limit_peers_per_ip", "peer connections refused by --max_peers_per_ip")    \
  X(kLimitRequestsPerIp, "limit_proxy_requests_per_ip",                                          \
    "ProxyRequests refused by "                                                                  \
    "--proxy_requests_per_ip")                                                                   \
  X(kLeasesBound, "leases_bound", "leases bound to the key of a valid signed claim")             \
  X(kBadSignatures, "bad_signatures",                                                            \
    "signed control messages that failed verification (Disconnect, closed)")                     \
  X(kUnsignedRefused, "unsigned_refused",                                                        \
    "unsigned control messages refused under --require_signatures (claims: or --strict_claims)") \
  X(kClaimsRefusedBound, "claims_refused_bound",                                                 \
    "claims of a lease bound to another key, or unsigned (Disconnect)")                          \
  X(kDrainDisconnects, "drain_disconnects",                                                      \
    "nodes sent a Disconnect by a drain (SIGTERM), after their frames in flight")                \
  X(kUpgradeDisconnects, "upgrade_disconnects",                                                  \
    "nodes closed by a live upgrade: their frames did not drain in --upgrade_timeout")           \
  X(kUpgradePeersDropped, "upgrade_peers_dropped",                                               \
    "peers closed by a live upgrade: inside a frame at --upgrade_timeout (partial frame lost)")  \
  X(kFreshClaims, "fresh_claims", "signed fresh claims accepted (docs/SECURITY.md, Replay)")     \
  X(kClaimsNotFresh, "claims_not_fresh",                                                         \
    "claims without fresh-claim fields refused (--strict_claims, or a lease claimed fresh)")     \
  X(kClaimsStale, "claims_stale", "fresh claims with a time outside --claim_window (refused)")   \
  X(kClaimsReplayed, "claims_replayed",                                                          \
    "fresh claims not newer than the lease's last one: replays (refused)")                       \
  X(kClaimsWrongRelay, "claims_wrong_relay",                                                     \
    "fresh claims made for another relay (refused; see --relay_name)")                           \
  X(kProxyAccepted, "proxy_accepted", "peer connections accepted")                               \
  X(kProxyClosed, "proxy_closed", "peer connections closed")                                     \
  X(kProxyProtocolErrors, "proxy_protocol_errors", "bad frame headers from peers (closed)")      \
  X(kProxyBadNetworkId, "proxy_bad_network_id", "... of which a wrong network id")               \
  X(kProxyZeroLength, "proxy_zero_length", "... of which a zero length")                         \
  X(kProxyTooLong, "proxy_too_long", "... of which a length over --max_frame_bytes")             \
  X(kProxyTruncatedFrames, "proxy_truncated_frames",                                             \
    "peers gone inside a frame (partial "                                                        \
    "frame dropped)")                                                                            \
  X(kProxyFrameTimeouts, "proxy_frame_timeouts",                                                 \
    "peers dropped for not finishing a frame in "                                                \
    "time")                                                                                      \
  X(kProxyFrameStalls, "proxy_frame_stalls",                                                     \
    "... of which no byte arrived for --frame_stall_timeout")                                    \
  X(kProxyIdleTimeouts, "proxy_idle_timeouts",                                                   \
    "peers closed after --peer_idle_timeout "                                                    \
    "silent at a frame boundary")                                                                \
  X(kProxyStageFailures, "proxy_stage_failures", "frames that could not be staged (pipes)")      \
  X(kProxyAbortedCommits, "proxy_aborted_commits",                                               \
    "peers dropped because their node's main "                                                   \
    "connection was replaced mid-frame")                                                         \
  X(kProxyCopiedBytes, "proxy_copied_bytes",                                                     \
    "bytes staged through user space: by copy (--forward) or "                                   \
    "recv()+write() (tiny segments)")                                                            \
  X(kProxyCopyFallbacks, "proxy_copy_fallbacks",                                                 \
    "times copy staging found every block in use (--stage_budget's "                             \
    "worth) and went on by splice")                                                              \
  X(kProxyStageWaits, "proxy_stage_waits",                                                       \
    "peers that waited: the reactor's staging memory "                                           \
    "was used up")                                                                               \
  X(kProxySessionShareWaits, "proxy_session_share_waits",                                        \
    "peers that waited: their "                                                                  \
    "session's share was used up")                                                               \
  X(kProxyPipeWaits, "proxy_pipe_waits", "peers that waited for a pipe (fd limit)")              \
  X(kStageOverdraftBytes, "stage_overdraft_bytes",                                               \
    "bytes granted beyond --stage_budget to finish frames (within one largest frame per "        \
    "reactor) when partial frames fill it")                                                      \
  X(kFramesForwarded, "frames_forwarded", "whole frames staged for delivery")                    \
  X(kBytesForwarded, "bytes_forwarded", "bytes written to nodes' main connections")              \
  X(kAcceptErrors, "accept_errors",                                                              \
    "times a listener stopped accepting for lack of fds "                                        \
    "(it backs off and retries)")

enum class Counter : size_t {
#define RELAY_COUNTER_ENUM(name, text, help) name,
  RELAY_COUNTERS(RELAY_COUNTER_ENUM)
#undef RELAY_COUNTER_ENUM
      kCount,
};

inline constexpr std::array<std::string_view, static_cast<size_t>(Counter::kCount)> kCounterNames =
    {
#define RELAY_COUNTER_NAME(name, text, help) text,
        RELAY_COUNTERS(RELAY_COUNTER_NAME)
#undef RELAY_COUNTER_NAME
};

inline constexpr std::array<std::string_view, static_cast<size_t>(Counter::kCount)> kCounterHelp = {
#define RELAY_COUNTER_HELP(name, text, help) help,
    RELAY_COUNTERS(RELAY_COUNTER_HELP)
#undef RELAY_COUNTER_HELP
};

class ShardStats {
 public:
  // Adds `n` to `c`. Only the owning shard's thread may call it.
  void Add(Counter c, uint64_t n = 1) {
    std::atomic<uint64_t>& v = values_[static_cast<size_t>(c)].value;
    v.store(v.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  // Any thread.
  uint64_t Get(Counter c) const {
    return values_[static_cast<size_t>(c)].value.load(std::memory_order_relaxed);
  }

 private:
  struct alignas(8) Cell {
    std::atomic<uint64_t> value{0};
  };
  // The whole block is written by one thread, so it shares cache lines only with itself.
  alignas(64) std::array<Cell, static_cast<size_t>(Counter::kCount)> values_;
};

}  // namespace relay
