// ControlCodec: parses, validates and builds the control messages of a main connection
// (shared/PROTOCOL.md sections 3 and 4). Protobuf lives here and in the session logic
// only; the forwarding path never touches it.
//
// Immutable after construction; any thread may call its const methods concurrently.
// Owned by the server, which keeps it alive longer than every connection that uses it.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/identity.h"
#include "google/protobuf/message_lite.h"
#include "proto/relay.pb.h"

namespace relay {

// Opcodes of PROTOCOL section 3.
enum Opcode : uint32_t {
  kOpBytes = 1,
  kOpKeepalive = 2,
  kOpKeepaliveResponse = 3,
  kOpProxyResponse = 9,
  kOpPing = 10,
  kOpPong = 11,
  kOpDisconnect = 14,
  kOpProxyRequest = 15,
  kOpMetricRequest = 16,
  kOpMetricResponse = 17,
};

// Upper bound on a connection id the relay accepts as a lease key (BLAKE2b-256 is 32).
inline constexpr size_t kMaxConnectionIdBytes = 64;

class ControlCodec {
 public:
  // `relay`: the relay's key pair: its public key is sent as sender.net_key (with the id
  // and connection id derived from it), and its messages are signed (PROTOCOL section 6)
  // so a node can tell the relay's messages from forgeries and pin the relay's key.
  // `relay_address`: "tcp://<advertised ip>:<main port>", sent as sender.address.
  ControlCodec(uint32_t network_id, Identity relay, std::string relay_address);

  // Parses `payload` as a Message and applies the validity rules of PROTOCOL section 3
  // (opcode != 0, sender with net_key and address, netID == network id); a ProxyRequest
  // must also carry a connection id of 1..kMaxConnectionIdBytes bytes.
  // Returns the message, or InvalidArgument naming the broken rule.
  absl::StatusOr<wire::Message> Parse(absl::string_view payload) const;

  // Appends one whole frame (header + Message) to *out, from the relay, carrying `inner`,
  // signed: messages with an empty inner message (KeepaliveResponse, Pong, Disconnect)
  // carry one signature computed at construction (the signature does not cover the
  // opcode or nonces, so it is the same for all of them); others are signed one by one,
  // except a MetricResponse: its bytes are the requester's choice, and signing them would
  // make the relay a signing oracle.
  void AppendMessage(uint32_t opcode, const google::protobuf::MessageLite& inner,
                     uint64_t message_nonce, uint64_t request_nonce, bool reply_flag,
                     std::string* out) const;

  // Answers the control messages that need no session state: Keepalive ->
  // KeepaliveResponse, Ping -> Pong, MetricRequest -> MetricResponse (echoing
  // send_timestamp and raw_data). Appends the reply frame to *out and returns true, or
  // returns false (nothing appended) for any other opcode. A MetricRequest whose inner
  // message does not parse is answered with empty fields.
  bool AppendStatelessReply(const wire::Message& request, uint64_t message_nonce,
                            std::string* out) const;

  uint32_t network_id() const { return network_id_; }
  const std::string& relay_address() const { return relay_address_; }
  const Identity& relay() const { return relay_; }

 private:
  uint32_t network_id_;
  Identity relay_;
  std::string relay_address_;
  std::string relay_connection_id_;
  std::string empty_signature_;  // the signature of every message with empty inner bytes
};

}  // namespace relay
