// ShardStats: the counters of one shard (reactor), and their names.
//
// Each counter has one writer, the shard's thread, which bumps it with a relaxed load and
// store (no locked instruction on the forwarding path); any thread may read a snapshot.
// RelayServer::Counters() sums the shards. Every error path of the relay bumps exactly one
// counter here and logs once (RELAY_LOG_ONCE), so a flood of bad input costs no log spam.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace relay {

enum class Counter : size_t {
  kMainAccepted,
  kMainClosed,
  kMainHandedOff,  // main connections moved to the reactor that owns their lease
  kMainTakenOver,  // older main connections closed by a newer one with the same id
  kKeepaliveTimeouts,
  kDisconnectsReceived,
  kControlMessages,
  kUnknownOpcodes,
  kMainProtocolErrors,  // bad header or bad control message on a main connection
  kMainSlowReader,      // node did not read its control replies
  kCompressedControl,   // compressed control messages (ignored)
  kSessionsStarted,
  kSessionsEnded,
  kLeasesReused,  // ProxyRequest answered from a remembered lease
  kLeasesExpired,
  kLeasePortRebound,  // remembered port could not be bound again; a new one was given
  kPoolExhausted,
  kProxyBindFailures,
  kProxyAccepted,
  kProxyClosed,
  kProxyProtocolErrors,  // bad header on a proxy connection
  kProxyBadNetworkId,
  kProxyZeroLength,
  kProxyTooLong,
  kProxyTruncatedFrames,  // sender left in the middle of a frame; the partial frame dropped
  kProxyStageFailures,    // a frame could not be staged (no pipe, too fragmented)
  kProxyAbortedCommits,   // frames dropped because their main connection was replaced
  kProxyCopiedBytes,      // bytes staged by recv()+write() because segments were tiny
  kProxyStageWaits,       // peers that waited because the reactor's staging budget was used up
  kProxyStalledFrames,    // senders dropped for making no progress inside a frame
  kFramesForwarded,
  kBytesForwarded,
  kAcceptErrors,
  kCount,
};

inline constexpr std::array<std::string_view, static_cast<size_t>(Counter::kCount)> kCounterNames =
    {
        "main_accepted",          "main_closed",          "main_handed_off",
        "main_taken_over",        "keepalive_timeouts",   "disconnects_received",
        "control_messages",       "unknown_opcodes",      "main_protocol_errors",
        "main_slow_reader",       "compressed_control",   "sessions_started",
        "sessions_ended",         "leases_reused",        "leases_expired",
        "lease_port_rebound",     "pool_exhausted",       "proxy_bind_failures",
        "proxy_accepted",         "proxy_closed",         "proxy_protocol_errors",
        "proxy_bad_network_id",   "proxy_zero_length",    "proxy_too_long",
        "proxy_truncated_frames", "proxy_stage_failures", "proxy_aborted_commits",
        "proxy_copied_bytes",     "proxy_stage_waits",    "proxy_stalled_frames",
        "frames_forwarded",       "bytes_forwarded",      "accept_errors",
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
