// relay-node: a node on the command line. Gets a proxy address from a relay and prints
// every message peers send to it, echoes them back (--echo), or sends one message
// (`relay-node send`). See README "relay-node".
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "base/command_line.h"
#include "core/control_codec.h"
#include "node/node_client.h"

ABSL_FLAG(std::string, relay, "",
          "Relays to use, HOST:PORT[,HOST:PORT...], tried in order. HOST may be a DNS name: it "
          "stands for every address it resolves to (A and AAAA), tried from a random one on, "
          "so nodes spread over the relays behind one name.");
ABSL_FLAG(std::string, key, "",
          "Key file: keeps the node's identity (and so its proxy address) across runs; "
          "created with mode 0600 if missing. Default: a fresh identity each run.");
ABSL_FLAG(bool, echo, false,
          "Answer every received message by sending its payload back to "
          "the sender's address.");
ABSL_FLAG(std::string, to, "", "send: the peer's proxy address, ip:port or tcp://ip:port.");
ABSL_FLAG(std::string, text, "", "send: the message text.");
ABSL_FLAG(std::string, file, "", "send: send this file's contents instead of --text.");
ABSL_FLAG(bool, wait_reply, false,
          "send: first get our own proxy address from --relay, send from it, and print the "
          "reply (also spelled --wait-reply).");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(10),
          "How long to try to reach a relay, or to wait for a reply.");
ABSL_FLAG(absl::Duration, keepalive_interval, absl::Seconds(15), "Keepalive period.");
ABSL_FLAG(uint32_t, network_id, relay::kDefaultNetworkId, "Network id.");
ABSL_FLAG(std::string, address, "tcp://0.0.0.0:0",
          "The node's own stable address (its connection id, the relay's lease key, is "
          "derived from the key and this).");
ABSL_FLAG(std::string, relay_key, "",
          "Pin the relay: its public key, 64 hex characters[,...] (relay-server prints it at "
          "start; see its --key_file). A relay that does not sign its answer with one of them, "
          "echoing this node's claim, is refused as an impostor and the next is tried.");

namespace {

constexpr int kExitUnreachable = 1;
constexpr int kExitUsage = relay::kExitUsage;
constexpr int kExitRefused = 3;

constexpr relay::ProgramInfo kProgram = {
    "relay-node",
    "a node of the relay network.",
    "  relay-node --relay=HOST:PORT[,...] [--key=FILE] [--echo]\n"
    "      prints its proxy address, then one line per message received\n"
    "  relay-node send --to=ADDR (--text=T | --file=F) [--relay=HOST:PORT --wait-reply]\n"
    "      sends one message to a proxy address",
    "tools/relay_node.cc",
    "0 done, 1 no relay reachable / peer unreachable / no reply, 2 usage error or\n"
    "unreadable key file, 3 the relay refused (no free proxy port).",
};

// A sender that sent without a relay has no address anyone can reach (its --address
// default, tcp://0.0.0.0:0): an echo to it can only fail.
bool Unreachable(const std::string& address) {
  return absl::EndsWith(address, ":0") || absl::StrContains(address, "0.0.0.0");
}

std::string Printable(const std::string& s) {
  for (unsigned char c : s) {
    if (c < 0x20 && c != '\n' && c != '\t') {
      return absl::StrCat("<", s.size(), " bytes>");
    }
  }
  return absl::StrCat("\"", absl::CEscape(s), "\"");
}

void PrintMessage(const relay::node::ReceivedMessage& m) {
  printf("%s opcode=%u size=%zu text=%s\n", m.message.sender().address().c_str(),
         m.message.opcode(), m.frame_bytes, Printable(m.payload).c_str());
  fflush(stdout);
}

int ExitFor(const absl::Status& status) {
  fprintf(stderr, "relay-node: %s\n", std::string(status.message()).c_str());
  return absl::IsFailedPrecondition(status) ? kExitRefused : kExitUnreachable;
}

absl::StatusOr<relay::node::NodeOptions> Options() {
  relay::node::NodeOptions options;
  for (absl::string_view part :
       absl::StrSplit(absl::GetFlag(FLAGS_relay), ',', absl::SkipEmpty())) {
    absl::StatusOr<relay::HostPort> hp = relay::ParseRelayAddress(part);
    if (!hp.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--relay: ", hp.status().message()));
    }
    options.relays.push_back(*hp);
  }
  options.network_id = absl::GetFlag(FLAGS_network_id);
  options.keepalive_interval = absl::GetFlag(FLAGS_keepalive_interval);
  options.local_address = absl::GetFlag(FLAGS_address);
  for (absl::string_view hex :
       absl::StrSplit(absl::GetFlag(FLAGS_relay_key), ',', absl::SkipEmpty())) {
    const std::string key = absl::HexStringToBytes(hex);
    if (hex.size() != 64 || absl::BytesToHexString(key) != absl::AsciiStrToLower(hex)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--relay_key=", hex, ": expected 64 hex characters (a relay's public key)"));
    }
    options.relay_keys.push_back(key);
  }
  return options;
}

absl::StatusOr<relay::Identity> LoadIdentity() {
  const std::string path = absl::GetFlag(FLAGS_key);
  if (path.empty()) {
    return relay::Identity::Generate();
  }
  return relay::Identity::LoadOrCreate(path);
}

sigset_t BlockStopSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  return signals;
}

int RunNode(relay::Identity identity, relay::node::NodeOptions options) {
  const sigset_t signals = BlockStopSignals();
  relay::node::NodeClient client(std::move(identity), std::move(options));
  absl::StatusOr<std::string> address = client.Connect(absl::GetFlag(FLAGS_timeout));
  if (!address.ok()) {
    return ExitFor(address.status());
  }
  printf("%s\n", address->c_str());
  fflush(stdout);
  const bool echo = absl::GetFlag(FLAGS_echo);
  client.Start([&client, echo](const relay::node::ReceivedMessage& m) {
    PrintMessage(m);
    // Replies carry reply_flag, and are never echoed: two echo nodes do not loop.
    if (echo && !m.message.reply_flag() && m.message.opcode() == relay::kOpBytes) {
      const std::string& to = m.message.sender().address();
      if (Unreachable(to)) {
        fprintf(stderr,
                "relay-node: not echoed: the sender's address %s cannot be reached (it sent "
                "without --relay; `relay-node send --relay=... --wait-reply` gets a reply)\n",
                to.c_str());
        return;
      }
      absl::Status s = client.SendBytes(m.message.sender().address(), m.payload, true);
      if (!s.ok()) {
        fprintf(stderr, "relay-node: echo failed: %s\n", std::string(s.message()).c_str());
      }
    }
  });
  int sig = 0;
  sigwait(&signals, &sig);
  client.Stop();
  return 0;
}

int RunSend(relay::Identity identity, relay::node::NodeOptions options) {
  std::string data = absl::GetFlag(FLAGS_text);
  const std::string file = absl::GetFlag(FLAGS_file);
  if (!file.empty()) {
    std::ifstream in(file, std::ios::binary);
    if (!in) {
      fprintf(stderr, "relay-node: cannot read %s\n", file.c_str());
      return kExitUsage;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    data = ss.str();
  }
  const std::string to = absl::GetFlag(FLAGS_to);
  if (to.empty()) {
    fprintf(stderr, "relay-node send: --to=ADDRESS is required\n");
    return kExitUsage;
  }
  const bool wait_reply = absl::GetFlag(FLAGS_wait_reply);
  if (wait_reply && options.relays.empty()) {
    fprintf(stderr, "relay-node send: --wait-reply needs --relay\n");
    return kExitUsage;
  }
  relay::node::NodeClient client(std::move(identity), std::move(options));
  absl::Notification replied;
  const absl::Time start = absl::Now();
  if (wait_reply) {
    BlockStopSignals();
    absl::StatusOr<std::string> address = client.Connect(absl::GetFlag(FLAGS_timeout));
    if (!address.ok()) {
      return ExitFor(address.status());
    }
    printf("%s\n", address->c_str());
    fflush(stdout);
    client.Start([&](const relay::node::ReceivedMessage& m) {
      if (!replied.HasBeenNotified()) {
        PrintMessage(m);
        printf("round trip %.3f ms\n", absl::ToDoubleMilliseconds(absl::Now() - start));
        fflush(stdout);
        replied.Notify();
      }
    });
  }
  absl::Status status = client.SendBytes(to, data);
  if (!status.ok()) {
    fprintf(stderr, "relay-node: %s\n", std::string(status.message()).c_str());
    return kExitUnreachable;
  }
  if (wait_reply && !replied.WaitForNotificationWithTimeout(absl::GetFlag(FLAGS_timeout))) {
    fprintf(stderr, "relay-node: no reply within %s\n",
            absl::FormatDuration(absl::GetFlag(FLAGS_timeout)).c_str());
    return kExitUnreachable;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> positional = relay::ParseCommandLineOrExit(argc, argv, kProgram);
  const bool send = !positional.empty() && positional[0] == "send";
  if (positional.size() > (send ? 1u : 0u)) {
    relay::ExitUsage(kProgram, absl::StrCat("unexpected argument '", positional.back(),
                                            "' (the only command is 'send')"));
  }
  absl::StatusOr<relay::node::NodeOptions> options = Options();
  if (!options.ok()) {
    fprintf(stderr, "relay-node: %s\n", std::string(options.status().message()).c_str());
    return kExitUsage;
  }
  if (!send && options->relays.empty()) {
    fprintf(stderr, "relay-node: --relay=HOST:PORT is required\n");
    return kExitUsage;
  }
  absl::StatusOr<relay::Identity> identity = LoadIdentity();
  if (!identity.ok()) {
    fprintf(stderr, "relay-node: %s\n", std::string(identity.status().message()).c_str());
    return kExitUsage;
  }
  return send ? RunSend(std::move(*identity), std::move(*options))
              : RunNode(std::move(*identity), std::move(*options));
}
