// relay-server: the relay's command-line entry point. Parses the flags, starts the
// RelayServer, and waits for SIGINT/SIGTERM (clean stop, exit 0) or SIGUSR1 (print the
// counters to stderr).
#include <signal.h>

#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "core/config.h"
#include "core/log.h"
#include "core/program_help.h"
#include "server/relay_server.h"

ABSL_FLAG(std::string, listen, "0.0.0.0:6008", "Main listener, HOST:PORT (IPv4).");
ABSL_FLAG(std::string, advertise_host, "",
          "IP put in proxy addresses. Default: the listen host, or the first non-loopback "
          "IPv4 of this machine when listening on 0.0.0.0.");
ABSL_FLAG(std::string, port_range, "55535-65534", "Proxy ports the relay hands out, LO-HI.");
ABSL_FLAG(uint32_t, network_id, relay::kDefaultNetworkId, "Network id every frame must carry.");
ABSL_FLAG(int, threads, 0, "Reactor threads; 0 = one per online CPU.");
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
ABSL_FLAG(std::string, forward, "splice",
          "How frame bytes move: splice (zero-copy through pipes, the default) or copy "
          "(recv/send through a user buffer; for benchmarks).");
ABSL_FLAG(bool, quiet, false, "Log warnings and errors only.");

namespace {

void PrintCounters(const relay::RelayServer& server) {
  std::string line = "counters:";
  for (const auto& [name, value] : server.Counters()) {
    if (value != 0) {
      absl::StrAppend(&line, " ", name, "=", value);
    }
  }
  RELAY_LOG(INFO) << line;
}

}  // namespace

int main(int argc, char** argv) {
  relay::SetProgramHelp(
      "a relay for P2P nodes behind NAT.\n"
      "Nodes keep one main connection and get a public proxy address; every frame peers\n"
      "send there is delivered, whole and in order, down the node's main connection.\n"
      "Usage: relay-server [--listen=0.0.0.0:6008] [--port_range=55535-65534] ...",
      "server/main.cc");
  absl::ParseCommandLine(argc, argv);

  relay::RelayConfig config;
  absl::StatusOr<relay::HostPort> listen = relay::ParseHostPort(absl::GetFlag(FLAGS_listen));
  if (!listen.ok()) {
    fprintf(stderr, "relay-server: --listen: %s\n", std::string(listen.status().message()).c_str());
    return 2;
  }
  config.listen = *listen;
  config.advertise_host = absl::GetFlag(FLAGS_advertise_host);
  absl::Status status =
      relay::ParsePortRange(absl::GetFlag(FLAGS_port_range), &config.port_lo, &config.port_hi);
  if (!status.ok()) {
    fprintf(stderr, "relay-server: --port_range: %s\n", std::string(status.message()).c_str());
    return 2;
  }
  config.network_id = absl::GetFlag(FLAGS_network_id);
  config.threads = absl::GetFlag(FLAGS_threads);
  config.keepalive_timeout = absl::GetFlag(FLAGS_keepalive_timeout);
  config.lease_ttl = absl::GetFlag(FLAGS_lease_ttl);
  config.max_frame_bytes = absl::GetFlag(FLAGS_max_frame_bytes);
  config.stage_bytes = absl::GetFlag(FLAGS_stage_bytes);
  config.stage_budget_bytes = absl::GetFlag(FLAGS_stage_budget);
  const std::string forward = absl::GetFlag(FLAGS_forward);
  if (forward == "copy") {
    config.forward_mode = relay::ForwardMode::kCopy;
  } else if (forward != "splice") {
    fprintf(stderr, "relay-server: --forward must be splice or copy\n");
    return 2;
  }
  if (absl::GetFlag(FLAGS_quiet)) {
    relay::SetMinLogLevel(relay::LogLevel::kWarning);
  }

  // Block the signals before any thread starts, so only sigwait() below sees them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  absl::StatusOr<std::unique_ptr<relay::RelayServer>> server = relay::RelayServer::Create(config);
  if (!server.ok()) {
    fprintf(stderr, "relay-server: %s\n", std::string(server.status().message()).c_str());
    return 1;
  }
  (*server)->Start();
  RELAY_LOG(INFO) << "relay-server listening on " << config.listen.host << ":"
                  << (*server)->main_port() << " with " << (*server)->thread_count()
                  << " reactors; proxy addresses " << (*server)->advertise_host() << ":"
                  << config.port_lo << "-" << config.port_hi << ", network id "
                  << config.network_id;
  for (;;) {
    int sig = 0;
    sigwait(&signals, &sig);
    if (sig == SIGUSR1) {
      PrintCounters(**server);
      continue;
    }
    RELAY_LOG(INFO) << "signal " << sig << ": stopping";
    break;
  }
  (*server)->Stop();
  PrintCounters(**server);
  return 0;
}
