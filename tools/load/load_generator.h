// LoadGenerator: the engine of relay-load. Sets up nodes (through a relay, or straight
// to local listeners for the --direct ceiling), opens senders to their addresses, pushes
// frames as fast as the path takes them (or at a fixed rate, stamped for latency), reads
// and checks whole frames on the node side, and measures.
//
// Thread: Run() from one thread; it starts `threads` worker threads (one epoll loop
// each) and joins them before returning.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/config.h"
#include "core/frame_header.h"

namespace relay::load {

// compress_info of load frames: "not compressed", algorithm 0xA5. The relay forwards it
// untouched; the node side tells data frames from the relay's control replies by it.
inline constexpr uint16_t kLoadFrameMarker = 0x00A5;

struct LoadOptions {
  // The relays: every node starts on the first; with `failover`, a node whose relay
  // dies (or stops answering Keepalives) moves along the list (SessionKeeper).
  std::vector<HostPort> relays{{"127.0.0.1", 6008}};
  bool failover = false;
  bool direct = false;
  std::optional<HostPort> sink;  // --direct: where the node listener binds
  std::optional<HostPort> via;   // --direct: where senders connect (a forwarder)
  int nodes = 1;
  int senders = 1;  // per node
  uint32_t frame_bytes = 64 * 1024;
  absl::Duration seconds = absl::Seconds(5);
  // Traffic before the measurement starts, not counted (a path's start-up: TCP windows
  // growing).
  absl::Duration warmup = absl::ZeroDuration();
  double rate = 0;  // frames/s over all senders; 0 = as fast as possible
  int idle_nodes = 0;
  pid_t relay_pid = 0;
  int threads = 0;  // 0 = one per online CPU
  uint32_t network_id = kDefaultNetworkId;
  absl::Duration keepalive_interval = absl::Seconds(15);
  bool progress = true;
  // TCP_NOTSENT_LOWAT of every sender socket, 0 = the kernel's default (no limit): how
  // many bytes a sender keeps queued beyond what the path has taken. On loopback a
  // sender's queued bytes are transmitted from inside whichever thread frees the window
  // (the relay's reads, when the relay is the slower side); a low mark keeps that work in
  // the sender's own thread, as it stays on the sender's host over a real network.
  uint32_t sender_notsent_lowat = 0;
};

struct LoadResult {
  double seconds = 0;
  uint64_t frames = 0;
  uint64_t payload_bytes = 0;
  uint64_t bad_frames = 0;
  uint64_t cut_frames = 0;        // node streams that ended inside a frame
  uint64_t lost_connections = 0;  // closed by the other side before the end (an error)
  // Over the whole run (warm-up and the end included): frames the senders wrote whole,
  // frames the nodes received, and the difference (an error).
  uint64_t frames_sent = 0;
  uint64_t frames_received = 0;
  uint64_t lost_frames = 0;
  double frames_per_s = 0;
  double gbit_per_s = 0;  // payload bits
  // One-way latency in microseconds (rate mode only; 0 otherwise).
  uint64_t latency_samples = 0;
  double p50_us = 0, p99_us = 0, p999_us = 0, max_us = 0;
  // With relay_pid: relay CPU seconds per GB of payload, and peak RSS during the run.
  double relay_cpu_s = 0;
  double relay_cpu_s_per_gb = 0;
  // This process's CPU (its senders and nodes) and every CPU of the host busy (the
  // forwarder, this process, the kernel's softirq work, anything else running), both per
  // GB of payload over the measured seconds: where the machine's CPU went.
  double load_cpu_s_per_gb = 0;
  double host_cpu_s_per_gb = 0;
  long relay_rss_before_kib = 0;
  long relay_rss_peak_kib = 0;
  // Idle sessions: setup time and relay RSS growth per session.
  double idle_setup_s = 0;
  double relay_rss_per_idle_kib = 0;
  // Idle sessions' Keepalives over the measured seconds: sent, answered, and the answers'
  // round trip.
  uint64_t keepalives_sent = 0;
  uint64_t keepalives_answered = 0;
  double keepalive_p50_us = 0, keepalive_p99_us = 0, keepalive_max_us = 0;
  // --failover: nodes that lost their relay and found another, the seconds from the loss
  // to the new address, and nodes that found none (an error); whether --relay_pid died.
  uint64_t rehomed_nodes = 0;
  double rehome_p50_s = 0, rehome_p99_s = 0, rehome_max_s = 0;
  uint64_t rehome_failed = 0;
  bool relay_died = false;
  std::string mode;
};

class LoadGenerator {
 public:
  explicit LoadGenerator(LoadOptions options) : options_(std::move(options)) {}
  // Runs the whole load (bounded by options.seconds plus set-up). Errors: set-up failures
  // (relay unreachable, refused, cannot bind a sink), and a run that lost connections
  // (the relay died: --relay_pid gone, or senders or nodes closed by the other side).
  absl::StatusOr<LoadResult> Run();

 private:
  LoadOptions options_;
};

// Renders a result as the summary table, or as one JSON object (figures that were not
// measured, e.g. latency without --rate or CPU without --relay_pid, are null).
std::string FormatTable(const LoadOptions& options, const LoadResult& result);
std::string FormatJson(const LoadOptions& options, const LoadResult& result);

}  // namespace relay::load
