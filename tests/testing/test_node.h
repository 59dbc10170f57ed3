// TestNode: a blocking, test-only node client. It speaks the wire protocol with plain
// blocking sockets and timeouts, so tests can script a node step by step and see exactly
// what the relay sends. Not thread-safe; one per thread.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "core/frame_header.h"
#include "core/frame_stream.h"
#include "net/unique_fd.h"
#include "proto/relay.pb.h"

namespace relay::testing {

struct Frame {
  FrameHeader header;
  std::string payload;
};

// Calls on_frame(header, payload) for every whole frame at the front of *stream and
// takes them off; a partial frame stays for the next call (reading a node's raw stream).
// False if a header broke the rules (the stream cannot go on).
bool TakeWholeFrames(FrameStream* stream,
                     const std::function<void(const FrameHeader&, absl::string_view)>& on_frame);

// A whole frame (header + payload) as bytes.
std::string MakeFrame(absl::string_view payload, uint32_t network_id = kDefaultNetworkId,
                      uint16_t compress_info = 0);
// A frame whose payload is a Message with `opcode` and `inner`, from `sender`; signed
// with `secret_key` when it is not empty.
std::string MakeControlFrame(uint32_t opcode, const std::string& inner, const wire::ID& sender,
                             uint64_t request_nonce = 0, uint32_t network_id = kDefaultNetworkId,
                             const std::string& secret_key = "");

// Writes all of `data` (blocking). Returns false on error.
bool WriteAll(int fd, absl::string_view data);
// Reads one frame (net::ReadFrame: any network id, 1 byte to 1 GiB of payload).
absl::StatusOr<Frame> ReadFrame(int fd, absl::Duration timeout);
// True if the peer closes `fd` (EOF or reset) within `timeout`; data read meanwhile is
// discarded.
bool WaitForClose(int fd, absl::Duration timeout);
// Connects to "ip:port" (a proxy address) with a blocking socket.
absl::StatusOr<net::UniqueFd> ConnectTo(const std::string& address);
// Two senders to one address, connected in order: `a` first, then `b`.
absl::Status ConnectTwo(const std::string& address, net::UniqueFd* a, net::UniqueFd* b);
// A blocking connection to host:port from the loopback address `source` (e.g.
// "127.0.0.2"), so a test can play clients of different IPs.
absl::StatusOr<net::UniqueFd> ConnectFrom(const std::string& source, const std::string& host,
                                          uint16_t port);

class TestNode {
 public:
  // A node with `connection_id` (random 32 bytes when empty).
  explicit TestNode(std::string connection_id = "");

  // Makes this node sign every message with `secret_key` (libsodium, 64 bytes) as the
  // holder of `public_key` at the stable `address`, with ids derived as PROTOCOL
  // section 6 says (so the same key and address give the same connection id).
  void SignAs(const std::string& public_key, const std::string& secret_key,
              const std::string& address = "tcp://0.0.0.0:0");

  absl::Status Connect(const std::string& host, uint16_t port);
  // Connect from the loopback address `source` (another client IP).
  absl::Status ConnectFrom(const std::string& source, const std::string& host, uint16_t port);
  // Sends a ProxyRequest and waits for the ProxyResponse; returns its proxy_address.
  // Returns FailedPrecondition("disconnect") if the relay answered with Disconnect.
  absl::StatusOr<std::string> RequestProxy(absl::Duration timeout = absl::Seconds(10));
  // "A relay, a node, its address": connects to the relay on 127.0.0.1:`relay_port` and
  // claims an address (Connect, then RequestProxy).
  absl::StatusOr<std::string> ConnectAndClaim(uint16_t relay_port);
  // Sends one control message.
  absl::Status Send(uint32_t opcode, const std::string& inner = "", uint64_t request_nonce = 0);
  // Reads the next control message (skipping nothing).
  absl::StatusOr<wire::Message> ReadMessage(absl::Duration timeout = absl::Seconds(10));
  absl::StatusOr<Frame> ReadDataFrame(absl::Duration timeout = absl::Seconds(10));
  void Close() { fd_.Reset(); }

  int fd() const { return fd_.get(); }
  const wire::ID& id() const { return id_; }
  const std::string& connection_id() const { return id_.connection_id(); }

 private:
  wire::ID id_;
  std::string secret_key_;  // empty: unsigned
  net::UniqueFd fd_;
  uint64_t nonce_ = 1;
};

}  // namespace relay::testing
