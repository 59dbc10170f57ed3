// relay/node.h: make a program a node of the relay network (docs/NODE_LIBRARY.md).
//
//   pkg-config --cflags --libs relay-node        (C++17)
//   CMake: find_package(RelayNode REQUIRED)  ->  target RelayNode::relay-node
//
// The node keeps one long-lived main connection to a relay of its list and gets a public
// proxy address there ("ip:port"); every message other nodes send to that address
// arrives through on_message. It reconnects, moves to the next relay when one dies, and
// keeps its address across reconnects (the relay remembers its key's lease).
//
// This header uses the standard library only: no protobuf or abseil types, so programs
// build against it without the relay's own dependencies.
//
// Threads: Connect() then Start() from one thread. Callbacks run on one dispatcher thread
// of the library, in order, never on the thread that keeps the session alive; Stop() is
// safe from any thread, a callback included. SendBytes() from any thread. Do not destroy
// a Node from one of its callbacks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#define RELAY_NODE_API __attribute__((visibility("default")))

namespace relay {

struct NodeConfig {
  // Relays to use, "host:port" or "[v6]:port", tried in order. A host may be a DNS name:
  // it stands for every address it resolves to (A and AAAA records), which each node
  // tries from a random one on, so nodes behind one name spread over its relays.
  std::vector<std::string> relays;
  // Keeps the node's identity (and so its proxy address) across runs: an Ed25519 seed,
  // created with mode 0600 if missing. Empty: a new identity for this process.
  std::string key_file;
  // The node's own stable address (with the key, it makes the relay's lease key).
  std::string local_address = "tcp://0.0.0.0:0";
  // Pinned relays: their public keys, 64 hex characters each. Empty: any relay.
  std::vector<std::string> relay_keys_hex;
  uint32_t network_id = 1564141146;
  int keepalive_interval_ms = 15000;
  // A relay that answers none of this many Keepalives in a row is left for the next.
  int max_missed_keepalives = 3;
  // Attached to a later relay of the list, try the earlier ones this often (0: never).
  int move_back_interval_ms = 0;
  // Messages at least this large are sent zlib-compressed (0: never).
  size_t compress_threshold = 4u << 20;
};

struct NodeMessage {
  uint32_t opcode = 0;           // 1 for Bytes (SendBytes)
  std::string payload;           // the Bytes data, or the inner message bytes
  std::string sender_address;    // as the sender states it, "tcp://ip:port" (reply here)
  std::string sender_key_hex;    // the sender's public key, 64 hex characters
  bool signature_valid = false;  // signed, and the signature verified
  bool reply = false;
};

struct NodeEvent {
  enum class Kind { kAddress, kRelayLost, kRelayMoved };
  Kind kind = Kind::kAddress;
  std::string relay;     // "host:port"
  std::string address;   // kAddress: the proxy address
  bool changed = false;  // kAddress: differs from the previous one
  std::string reason;    // kRelayLost: why
};

class RELAY_NODE_API Node {
 public:
  // A node with `config` (the key file is read or created here). Null with *error set
  // if the configuration is unusable.
  static std::unique_ptr<Node> Create(const NodeConfig& config, std::string* error);
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Connects to the first relay that answers (retrying with backoff up to timeout_ms)
  // and returns the proxy address; "" with *error if none did.
  std::string Connect(int timeout_ms, std::string* error);
  // Starts delivering messages and events (after Connect).
  void Start(std::function<void(const NodeMessage&)> on_message,
             std::function<void(const NodeEvent&)> on_event = nullptr);
  // Ends the session (a Disconnect to the relay) and the library's threads. Idempotent.
  void Stop();

  // Sends `data` to another node's proxy address ("ip:port" or "tcp://ip:port"), signed,
  // on a connection kept for that peer (reused; closed after 30 s unused).
  // `reply`: marks it as a reply (echo services answer none, so two never loop). Blocks
  // until written (at most ~10 s); false with *error on failure.
  bool SendBytes(const std::string& address, const std::string& data, std::string* error,
                 bool reply = false);

  // The same without waiting: queued at once; `done(ok, error)` runs on a library thread
  // (keep it short) when the message is written or failed. False with *error, nothing
  // queued, when 64 MiB already wait to be written: slow down (back-pressure).
  bool SendBytesAsync(const std::string& address, const std::string& data,
                      std::function<void(bool ok, const std::string& error)> done,
                      std::string* error, bool reply = false);

  std::string proxy_address() const;  // "" before Connect
  std::string public_key_hex() const;
  static const char* Version();

 private:
  struct Impl;
  explicit Node(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace relay
