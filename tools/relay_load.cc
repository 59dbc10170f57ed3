// relay-load: an end-to-end load generator that speaks the relay protocol. See README
// "Benchmarks" and docs/BENCHMARKS.md.
#include <signal.h>

#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/command_line.h"
#include "tools/load/load_generator.h"

ABSL_FLAG(std::vector<std::string>, relay, {"127.0.0.1:6008"},
          "The relay's main address, IP:PORT; a list (A,B,...) with --failover: every node "
          "starts on the first.");
ABSL_FLAG(bool, failover, false,
          "A node whose relay closes its session or leaves 3 Keepalives in a row unanswered "
          "moves along the --relay list, as the node library does (node k tries the others "
          "rotated by k, so a dead relay's nodes spread evenly over the rest), instead of "
          "failing the run; reports rehomed_nodes and the seconds from the loss to the new "
          "address. A measured node moves too and comes back idle (its senders knew the old "
          "address); what a dead relay held is reported, not an error.");
ABSL_FLAG(int, nodes, 1, "Node sessions that receive frames.");
ABSL_FLAG(int, senders, 1, "Sender connections per node.");
ABSL_FLAG(uint32_t, frame_bytes, 64 * 1024, "Payload bytes per frame.");
ABSL_FLAG(absl::Duration, seconds, absl::Seconds(5), "How long to measure.");
ABSL_FLAG(absl::Duration, warmup, absl::ZeroDuration(),
          "How long the traffic flows before the measurement starts; nothing in it is counted "
          "(frames, bytes, latency, the relay's CPU), so a path is measured in its steady "
          "state (as iperf3 --omit). The frame checks cover it too.");
ABSL_FLAG(bool, direct, false,
          "No relay: senders write straight to a listener that plays the node (the "
          "machine's ceiling), or through --via to --sink.");
ABSL_FLAG(std::string, sink, "", "--direct: the node listener binds this HOST:PORT.");
ABSL_FLAG(std::string, via, "",
          "--direct: senders connect here (a TCP forwarder such as haproxy that forwards to "
          "--sink).");
ABSL_FLAG(double, rate, 0,
          "Frames per second over all senders (0 = as fast as possible). Frames carry a send "
          "timestamp and the one-way latency percentiles are reported.");
ABSL_FLAG(int, idle_nodes, 0,
          "Idle sessions to hold, each sending a Keepalive per --keepalive_interval (spread "
          "over the interval): the relay's memory per session, and the Keepalives' round "
          "trip over the measured seconds (keepalive_p99_us).");
ABSL_FLAG(int, relay_pid, 0, "The relay's pid: report its CPU per GB and peak RSS.");
ABSL_FLAG(int, threads, 0, "Load threads; 0 = one per online CPU.");
ABSL_FLAG(uint32_t, network_id, relay::kDefaultNetworkId, "Network id.");
ABSL_FLAG(absl::Duration, keepalive_interval, absl::Seconds(15), "Keepalive period.");
ABSL_FLAG(bool, json, false, "Print the summary as one JSON object.");
ABSL_FLAG(bool, progress, true, "A progress line per second on stderr.");
ABSL_FLAG(uint32_t, sender_notsent_lowat, 0,
          "TCP_NOTSENT_LOWAT of every sender socket in bytes (0 = the kernel's default): "
          "senders queue at most this much beyond what the path has taken, so on loopback "
          "their own transmit work stays in their thread instead of running inside the "
          "relay's reads, as it would on other hosts.");

namespace {

bool ParseOptional(const std::string& flag, const std::string& text,
                   std::optional<relay::HostPort>* out) {
  if (text.empty()) {
    return true;
  }
  absl::StatusOr<relay::HostPort> hp = relay::ParseHostPort(text);
  if (!hp.ok()) {
    fprintf(stderr, "relay-load: --%s: %s\n", flag.c_str(),
            std::string(hp.status().message()).c_str());
    return false;
  }
  *out = *hp;
  return true;
}

}  // namespace

constexpr relay::ProgramInfo kProgram = {
    "relay-load",
    "load generator for the relay.",
    "  relay-load --relay=HOST:PORT --nodes=N --senders=S --frame_bytes=B --seconds=T\n"
    "  relay-load --relay=A,B,C --failover --idle_nodes=N ... (a fleet: nodes move on)\n"
    "  relay-load --direct ...                 (the same traffic without the relay)\n"
    "  relay-load --direct --sink=H:P --via=H:P (through another forwarder)",
    "tools/relay_load.cc",
    "0 done and every frame arrived intact, 1 the run failed or frames were damaged,\n"
    "2 usage error.",
};

// --relay: one or more IP:PORT (exits with a usage error otherwise).
std::vector<relay::HostPort> ParseRelays() {
  std::vector<relay::HostPort> relays;
  for (const std::string& text : absl::GetFlag(FLAGS_relay)) {
    absl::StatusOr<relay::HostPort> hp = relay::ParseHostPort(text);
    if (!hp.ok()) {
      relay::ExitUsage(kProgram, absl::StrCat("--relay=", text, ": ", hp.status().message()));
    }
    relays.push_back(*hp);
  }
  if (relays.empty()) {
    relay::ExitUsage(kProgram, "--relay: expected IP:PORT");
  }
  return relays;
}

int main(int argc, char** argv) {
  const std::vector<std::string> positional = relay::ParseCommandLineOrExit(argc, argv, kProgram);
  if (!positional.empty()) {
    relay::ExitUsage(kProgram, absl::StrCat("unexpected argument '", positional[0], "'"));
  }
  signal(SIGPIPE, SIG_IGN);

  relay::load::LoadOptions o;
  o.relays = ParseRelays();
  o.failover = absl::GetFlag(FLAGS_failover);
  if (o.relays.size() > 1 && !o.failover) {
    relay::ExitUsage(kProgram, "--relay: one IP:PORT, or a list with --failover");
  }
  o.direct = absl::GetFlag(FLAGS_direct);
  if (!ParseOptional("sink", absl::GetFlag(FLAGS_sink), &o.sink) ||
      !ParseOptional("via", absl::GetFlag(FLAGS_via), &o.via)) {
    return 2;
  }
  o.nodes = absl::GetFlag(FLAGS_nodes);
  o.senders = absl::GetFlag(FLAGS_senders);
  o.frame_bytes = absl::GetFlag(FLAGS_frame_bytes);
  o.seconds = absl::GetFlag(FLAGS_seconds);
  o.warmup = absl::GetFlag(FLAGS_warmup);
  o.rate = absl::GetFlag(FLAGS_rate);
  o.idle_nodes = absl::GetFlag(FLAGS_idle_nodes);
  o.relay_pid = absl::GetFlag(FLAGS_relay_pid);
  o.threads = absl::GetFlag(FLAGS_threads);
  o.network_id = absl::GetFlag(FLAGS_network_id);
  o.keepalive_interval = absl::GetFlag(FLAGS_keepalive_interval);
  o.progress = absl::GetFlag(FLAGS_progress);
  o.sender_notsent_lowat = absl::GetFlag(FLAGS_sender_notsent_lowat);
  if (o.nodes < 0 || o.senders < 1 || o.frame_bytes == 0 || o.seconds <= absl::ZeroDuration() ||
      o.seconds > absl::Hours(1) || o.warmup < absl::ZeroDuration() || o.warmup > absl::Hours(1) ||
      (o.direct && o.nodes < 1)) {
    relay::ExitUsage(kProgram,
                     absl::StrCat("bad load shape (--nodes=", o.nodes, " --senders=", o.senders,
                                  " --frame_bytes=", o.frame_bytes,
                                  " --seconds=", absl::FormatDuration(o.seconds),
                                  " --warmup=", absl::FormatDuration(o.warmup),
                                  "): expected nodes >= 0 (>= 1 with --direct), senders >= 1, "
                                  "frame_bytes >= 1, 0 < seconds <= 1h, 0 <= warmup <= 1h"));
  }
  if ((o.sink || o.via) && !o.direct) {
    relay::ExitUsage(kProgram, "--sink and --via go with --direct");
  }
  relay::load::LoadGenerator generator(o);
  absl::StatusOr<relay::load::LoadResult> result = generator.Run();
  if (!result.ok()) {
    fprintf(stderr, "relay-load: %s\n", std::string(result.status().message()).c_str());
    return 1;
  }
  const std::string text = absl::GetFlag(FLAGS_json) ? relay::load::FormatJson(o, *result) + "\n"
                                                     : relay::load::FormatTable(o, *result);
  fputs(text.c_str(), stdout);
  return result->bad_frames == 0 ? 0 : 1;
}
