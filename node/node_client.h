// NodeClient: the node side of the relay protocol, for tools and node developers.
//
// It keeps the node's main connection to a relay: connects (trying a list of relays in
// order, with jittered exponential backoff between rounds), asks for a proxy address,
// sends a Keepalive every keepalive_interval (a relay that answers none of
// max_missed_keepalives in a row is left for the next one in the list), delivers every message that
// arrives to a callback, and reconnects when the connection drops, keeping its identity so the
// relay gives back the same address. Every message it sends is signed (PROTOCOL section 6).
//
// Threads (the rules an embedder needs):
//   - Connect() and Start() from one controlling thread, Connect first.
//   - The session loop (reading the main connection, sending Keepalives, reconnecting,
//     moving between relays) runs on a thread of its own and never runs user code.
//   - Every callback (messages and events) runs on one dispatcher thread, in order. A slow
//     callback delays later callbacks, never the Keepalives: the loop queues up to
//     max_queued_bytes of messages, then stops reading (TCP pushes back on the relay,
//     which drops a node that takes nothing for its --node_write_timeout, 30 s).
//   - Stop() is safe from any thread, a callback included (it returns at once there; the
//     dispatcher ends when that callback returns). Do not destroy the client from a
//     callback; the destructor calls Stop() and joins both threads.
//   - SendTo, SendBytes, proxy_address and the counters from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/frame_header.h"
#include "core/frame_stream.h"
#include "core/host_port.h"
#include "core/identity.h"
#include "net/unique_fd.h"
#include "node/peer_sender.h"
#include "proto/relay.pb.h"

namespace relay::node {

struct NodeOptions {
  // The relays, tried in order. A host may be a DNS name (ParseRelayAddress): it stands
  // for every address it resolves to (A and AAAA records), which each node tries from a
  // random one on, so the nodes behind one name spread over its relays; names are resolved
  // again before each round of connects (a relay that died is tried last, or gone).
  std::vector<HostPort> relays;
  // Resolves a relay's DNS name to its IP addresses; empty: net::ResolveHost (getaddrinfo).
  std::function<absl::StatusOr<std::vector<std::string>>(const std::string&)> resolve;
  uint32_t network_id = kDefaultNetworkId;
  absl::Duration keepalive_interval = absl::Seconds(15);
  absl::Duration io_timeout = absl::Seconds(10);  // connect and request/response waits
  absl::Duration initial_backoff = absl::Milliseconds(200);
  absl::Duration max_backoff = absl::Seconds(10);
  // The node's own stable address, sent in its ProxyRequest; its connection id (the
  // relay's lease key) is derived from it, so it must not change between runs.
  std::string local_address = "tcp://0.0.0.0:0";
  // A relay that answers none of this many Keepalives in a row is treated as dead (frozen,
  // or cut off by the network without a reset): the node moves to the next relay in the
  // list. 0: never (only a closed connection makes it move).
  int max_missed_keepalives = 3;
  // Send fresh claims (core/fresh_claim.h): each ProxyRequest names the relay as dialed
  // ("tcp://HOST:PORT") and carries the current time, so it cannot be replayed. Relays
  // that do not know fresh claims ignore the fields.
  bool fresh_claims = true;
  // Pinned relay keys (32-byte Ed25519 public keys). Empty: any relay. Otherwise a relay
  // must sign its ProxyResponse with one of them, echoing this node's claim, or it is
  // refused as an impostor (the next relay in the list is tried).
  std::vector<std::string> relay_keys;
  // Messages whose serialized envelope is at least this many bytes are sent compressed
  // (PROTOCOL section 2; Go nodes use 4 MiB). 0: never compress.
  size_t compress_threshold = 4u << 20;
  CompressAlgorithm compress_algorithm = CompressAlgorithm::kZlib;
  // Compressed messages received (zlib, gzip, flate) are inflated up to this size; larger
  // ones, and bzip2/lzw, are dropped (undecodable_messages()).
  size_t max_message_bytes = 64u << 20;
  // Messages waiting for the dispatcher (their bytes); beyond this the loop stops
  // reading until callbacks catch up.
  size_t max_queued_bytes = 64u << 20;
  // Attached to a relay later in the list than the first, try the earlier ones this
  // often and move back to the first that answers (NodeEvent::kRelayMoved). 0: stay.
  absl::Duration move_back_interval = absl::ZeroDuration();
  // Messages to peers: a pooled connection per peer is closed after this long unused
  // (below the relay's --peer_idle_timeout, 120 s), and at most this many bytes wait to
  // be written (SendBytesAsync refuses more).
  absl::Duration peer_idle_timeout = absl::Seconds(30);
  size_t max_send_queue_bytes = 64u << 20;
};

// What happened to the node's session, reported to NodeCallbacks::on_event.
struct NodeEvent {
  enum class Kind {
    kAddress,    // a proxy address was assigned (first, or after a reconnect or move)
    kRelayLost,  // the session on `relay` ended (`reason`); the node reconnects
    kRelayMoved  // the node now uses `relay` (another than before: failover, or back to
                 // an earlier relay in the list with move_back_interval)
  };
  Kind kind = Kind::kAddress;
  std::string relay;     // "host:port" of the relay concerned
  std::string address;   // kAddress: the proxy address ("ip:port" or "[v6]:port")
  bool changed = false;  // kAddress: differs from the previous address
  std::string reason;    // kRelayLost: why
};

// A message that arrived on the main connection from a peer.
struct ReceivedMessage {
  wire::Message message;  // the envelope (sender, opcode, inner message bytes)
  size_t frame_bytes = 0;
  // For opcode 1 (Bytes), the data; otherwise the inner message bytes.
  std::string payload;
};

class NodeClient {
 public:
  NodeClient(Identity identity, NodeOptions options);
  ~NodeClient();
  NodeClient(const NodeClient&) = delete;
  NodeClient& operator=(const NodeClient&) = delete;

  // Connects to the first relay that answers and obtains a proxy address, retrying
  // rounds over the relay list with backoff until `timeout`. Returns the address
  // ("ip:port"). Errors: Unavailable (no relay reachable; the message lists each relay's
  // error), FailedPrecondition (a relay refused: its port pool is exhausted).
  absl::StatusOr<std::string> Connect(absl::Duration timeout);

  // Starts the session loop and the dispatcher (after a successful Connect). The first
  // event is the address Connect obtained (kAddress).
  struct NodeCallbacks {
    std::function<void(const ReceivedMessage&)> on_message;
    std::function<void(const NodeEvent&)> on_event;
  };
  void Start(NodeCallbacks callbacks);
  void Start(std::function<void(const ReceivedMessage&)> on_message) {
    Start(NodeCallbacks{std::move(on_message), nullptr});
  }
  // Stops both threads (see the threading rules above). Idempotent.
  void Stop();

  // Sends a signed message to a peer's proxy address ("ip:port" or "tcp://ip:port") and
  // waits until it is written (at most about 2 x io_timeout). Connections are pooled
  // (node/peer_sender.h): one per peer, reused, closed after peer_idle_timeout unused.
  absl::Status SendTo(const std::string& address, uint32_t opcode, const std::string& inner,
                      bool reply_flag = false);
  // SendTo with a Bytes message carrying `data`.
  absl::Status SendBytes(const std::string& address, const std::string& data,
                         bool reply_flag = false);
  // The same without waiting: queued at once, `done` (may be empty) runs on the sender's
  // thread when it is written or failed. ResourceExhausted (nothing queued) when
  // max_send_queue_bytes already wait: the caller's back-pressure.
  absl::Status SendBytesAsync(const std::string& address, const std::string& data,
                              std::function<void(absl::Status)> done, bool reply_flag = false);
  // TCP connections opened to peers so far (each reused for every message to its peer).
  uint64_t peer_connections_opened();
  uint64_t peer_connections_closed_by_relay();

  // Gives up the main connection after Connect (for load generators that drive many
  // nodes from their own event loops). Do not Start() afterwards.
  net::UniqueFd TakeMainConnection() { return std::move(main_); }

  // "ip:port", empty before the first Connect.
  std::string proxy_address() const;
  int reconnects() const { return reconnects_.load(); }
  // Sessions that ended within a few seconds of starting (taken over by another process
  // with our key, refused, dropped at once): each made the node back off before it
  // reconnected.
  int quick_drops() const { return takeovers_or_quick_drops_.load(); }
  // Times the node left a relay that stopped answering Keepalives (each also logged).
  int relay_moves() const { return relay_moves_.load(); }
  // "host:port" of the relay the node is attached to (empty before Connect).
  std::string current_relay() const;
  // Messages that named the relay as sender without its signature (a peer forging the
  // relay's Disconnect, say): dropped.
  int forged_relay_messages() const { return forged_relay_messages_.load(); }
  // Times the loop stopped reading because callbacks fell max_queued_bytes behind.
  int dispatch_stalls() const { return dispatch_stalls_.load(); }
  // Frames from peers that could not be read: not a Message, corrupt or oversized
  // compressed payloads, unsupported algorithms. Dropped.
  int undecodable_messages() const { return undecodable_messages_.load(); }
  const Identity& identity() const { return identity_; }

 private:
  absl::StatusOr<std::string> TryRelay(const HostPort& relay, absl::Duration timeout);
  // Fills targets_ from options_.relays, each DNS name replaced by its addresses from this
  // node's turn on; a name that does not resolve adds its error to *errors.
  void ResolveRelays(std::vector<std::string>* errors);
  // Builds the frame and hands it to the sender.
  absl::Status Queue(const std::string& address, uint32_t opcode, const std::string& inner,
                     bool reply_flag, std::function<void(absl::Status)> done);
  // Queues a callback for the dispatcher.
  void Emit(NodeEvent event);
  void Deliver(ReceivedMessage message);
  void Dispatch();
  // True while the dispatcher is max_queued_bytes behind.
  bool QueueFull();
  // With move_back_interval: tries the relays before the current one; true if it moved.
  bool TryMoveBack();
  // After a (re)connect: the events for the new attachment.
  void ReportAttached(size_t previous_relay, const std::string& previous_address);
  // Checks the ProxyResponse (or Disconnect) `msg` of `relay` against the pinned keys;
  // learns the relay's key when it signs. `claim_time_ms`: the claim it answers.
  absl::Status CheckRelayAnswer(const HostPort& relay, const wire::Message& msg,
                                uint64_t claim_time_ms);
  // True if `m` (which names the relay's address) really comes from the relay: signed by
  // its key once the relay has shown one. A peer cannot forge the relay's Disconnect.
  bool FromRelay(const wire::Message& m) const;
  // A claim time after every earlier one of this client (wall clock, milliseconds).
  uint64_t NextClaimTime();
  std::string BuildFrame(uint32_t opcode, const std::string& inner, const std::string& address,
                         bool reply_flag);
  void Loop();
  // Waits `wait` unless Stop() is called; returns false if stopped.
  bool SleepUnlessStopped(absl::Duration wait);
  // A session that lasted this long resets the reconnect backoff.
  static constexpr absl::Duration kStableSession = absl::Seconds(10);
  // Reads frames until the connection fails or Stop; returns why, when a reconnect is
  // needed.
  std::string Serve();
  // What Serve keeps about the current main connection.
  struct ServeState {
    FrameStream stream;  // bytes from the relay, split into frames
    absl::Time next_keepalive;
    int unanswered = 0;  // Keepalives sent since the relay last answered one
  };
  // Sends a Keepalive when one is due; false (with *why) when the relay left too many
  // unanswered (the node moves on) or the write failed.
  bool KeepaliveIfDue(ServeState* state, std::string* why);
  // Reads what the relay sent and hands out its whole frames; false (with *why) when the
  // connection ends.
  bool ReadFrames(ServeState* state, std::string* why);
  // One whole frame from the relay: a message for the callbacks, or the relay's own
  // (a Disconnect ends Serve: false, with *why). Counts what it cannot decode.
  bool Receive(const FrameStream::Frame& frame, int* unanswered, std::string* why);

  const Identity identity_;
  const NodeOptions options_;
  net::UniqueFd main_;
  std::string relay_address_;  // the relay's sender.address
  std::string relay_key_;      // the relay's net_key, once it signed its answer; else empty
  uint64_t last_claim_ms_ = 0;
  mutable std::mutex mu_;
  std::string proxy_address_;
  std::atomic<uint64_t> nonce_{1};
  std::atomic<bool> stop_{false};
  std::atomic<int> reconnects_{0};
  std::atomic<int> takeovers_or_quick_drops_{0};
  std::atomic<int> forged_relay_messages_{0};
  std::atomic<int> undecodable_messages_{0};
  std::atomic<int> relay_moves_{0};
  // options_.relays with each name replaced by its addresses (ResolveRelays), under mu_.
  std::vector<HostPort> targets_;
  uint64_t spread_;      // this node's random turn within each name's addresses
  size_t attached_ = 0;  // index in targets_ of the relay attached to
  size_t start_at_ = 0;  // Connect tries targets_ from this index on
  NodeCallbacks callbacks_;
  std::thread thread_;
  // The dispatcher's queue: messages and events in arrival order.
  struct Queued {
    bool is_event = false;
    ReceivedMessage message;
    NodeEvent event;
  };
  std::mutex queue_mu_;
  std::condition_variable queue_cv_;
  std::deque<Queued> queue_;
  size_t queued_bytes_ = 0;
  std::thread dispatcher_;
  std::thread::id dispatcher_id_;  // set by Start, before any callback can run
  std::atomic<bool> dispatcher_joined_{false};
  std::mutex stop_mu_;  // Stop from two threads at once joins the loop once
  std::atomic<int> dispatch_stalls_{0};
  PeerSender& Sender();
  std::once_flag sender_once_;
  std::unique_ptr<PeerSender> sender_;  // messages to peers; made on the first send
  int wake_pipe_[2] = {-1, -1};
};

// Splits "ip:port" or "tcp://ip:port".
absl::StatusOr<HostPort> ParsePeerAddress(absl::string_view address);

}  // namespace relay::node
