// echo_node: the smallest useful node. It attaches to a relay, prints its proxy address,
// and sends every message it receives back to its sender.
//
//   g++ -std=c++17 echo_node.cc $(pkg-config --cflags --libs relay-node) -o echo_node
//   ./echo_node 127.0.0.1:6008
#include <relay/node.h>
#include <signal.h>

#include <cstdio>
#include <string>

int main(int argc, char** argv) {
  // SIGINT/SIGTERM are waited for below; block them first, so the library's threads
  // (which inherit the mask) never take them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s RELAY_HOST:PORT [KEY_FILE]\n", argv[0]);
    return 2;
  }
  relay::NodeConfig config;
  config.relays.push_back(argv[1]);
  if (argc > 2) {
    config.key_file = argv[2];
  }
  std::string error;
  std::unique_ptr<relay::Node> node = relay::Node::Create(config, &error);
  if (node == nullptr) {
    std::fprintf(stderr, "echo_node: %s\n", error.c_str());
    return 1;
  }
  const std::string address = node->Connect(10000, &error);
  if (address.empty()) {
    std::fprintf(stderr, "echo_node: %s\n", error.c_str());
    return 1;
  }
  std::printf("%s\n", address.c_str());
  std::fflush(stdout);
  relay::Node* raw = node.get();
  node->Start(
      [raw](const relay::NodeMessage& m) {
        if (m.opcode != 1 || m.reply || !m.signature_valid) {
          return;  // echo only signed data messages, never a reply (no ping-pong)
        }
        std::string send_error;
        if (!raw->SendBytes(m.sender_address, m.payload, &send_error, /*reply=*/true)) {
          std::fprintf(stderr, "echo_node: reply to %s failed: %s\n", m.sender_address.c_str(),
                       send_error.c_str());
        }
      },
      [](const relay::NodeEvent& e) {
        if (e.kind == relay::NodeEvent::Kind::kRelayLost) {
          std::fprintf(stderr, "echo_node: lost %s (%s)\n", e.relay.c_str(), e.reason.c_str());
        }
      });
  int sig = 0;
  sigwait(&signals, &sig);
  node->Stop();
  return 0;
}
