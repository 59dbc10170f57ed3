// relay::Node (include/relay/node.h): the installed, dependency-free face of NodeClient.
#include <string>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "core/host_port.h"
#include "core/identity.h"
#include "core/signing.h"
#include "node/node_client.h"
#include "relay/node.h"

namespace relay {

struct Node::Impl {
  Impl(Identity identity, node::NodeOptions options)
      : client(std::move(identity), std::move(options)) {}
  node::NodeClient client;
};

Node::Node(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Node::~Node() {
  if (impl_ != nullptr) {
    impl_->client.Stop();
  }
}

std::unique_ptr<Node> Node::Create(const NodeConfig& config, std::string* error) {
  node::NodeOptions options;
  for (const std::string& relay : config.relays) {
    absl::StatusOr<HostPort> hp = ParseRelayAddress(absl::StripPrefix(relay, "tcp://"));
    if (!hp.ok()) {
      *error = absl::StrCat("relay '", relay, "': ", hp.status().message());
      return nullptr;
    }
    options.relays.push_back(*hp);
  }
  if (options.relays.empty()) {
    *error = "no relay given";
    return nullptr;
  }
  for (const std::string& hex : config.relay_keys_hex) {
    const std::string key = absl::HexStringToBytes(hex);
    if (hex.size() != 64 || key.size() != 32) {
      *error = absl::StrCat("relay key '", hex, "': expected 64 hex characters");
      return nullptr;
    }
    options.relay_keys.push_back(key);
  }
  if (config.keepalive_interval_ms <= 0 || config.max_missed_keepalives < 0 ||
      config.move_back_interval_ms < 0) {
    *error = "keepalive_interval_ms must be positive, the others not negative";
    return nullptr;
  }
  options.local_address = config.local_address;
  options.network_id = config.network_id;
  options.keepalive_interval = absl::Milliseconds(config.keepalive_interval_ms);
  options.max_missed_keepalives = config.max_missed_keepalives;
  options.move_back_interval = absl::Milliseconds(config.move_back_interval_ms);
  options.compress_threshold = config.compress_threshold;
  absl::StatusOr<Identity> identity =
      config.key_file.empty() ? Identity::Generate() : Identity::LoadOrCreate(config.key_file);
  if (!identity.ok()) {
    *error = std::string(identity.status().message());
    return nullptr;
  }
  return std::unique_ptr<Node>(
      new Node(std::make_unique<Impl>(std::move(*identity), std::move(options))));
}

std::string Node::Connect(int timeout_ms, std::string* error) {
  absl::StatusOr<std::string> address = impl_->client.Connect(absl::Milliseconds(timeout_ms));
  if (!address.ok()) {
    *error = std::string(address.status().message());
    return "";
  }
  return *address;
}

void Node::Start(std::function<void(const NodeMessage&)> on_message,
                 std::function<void(const NodeEvent&)> on_event) {
  node::NodeClient::NodeCallbacks callbacks;
  if (on_message) {
    callbacks.on_message = [on_message = std::move(on_message)](const node::ReceivedMessage& m) {
      NodeMessage out;
      out.opcode = m.message.opcode();
      out.payload = m.payload;
      out.sender_address = m.message.sender().address();
      out.sender_key_hex = absl::BytesToHexString(m.message.sender().net_key());
      out.signature_valid = !m.message.signature().empty() && VerifyMessage(m.message).ok();
      out.reply = m.message.reply_flag();
      on_message(out);
    };
  }
  if (on_event) {
    callbacks.on_event = [on_event = std::move(on_event)](const node::NodeEvent& e) {
      NodeEvent out;
      out.kind = e.kind == node::NodeEvent::Kind::kAddress     ? NodeEvent::Kind::kAddress
                 : e.kind == node::NodeEvent::Kind::kRelayLost ? NodeEvent::Kind::kRelayLost
                                                               : NodeEvent::Kind::kRelayMoved;
      out.relay = e.relay;
      out.address = e.address;
      out.changed = e.changed;
      out.reason = e.reason;
      on_event(out);
    };
  }
  impl_->client.Start(std::move(callbacks));
}

void Node::Stop() { impl_->client.Stop(); }

bool Node::SendBytes(const std::string& address, const std::string& data, std::string* error,
                     bool reply) {
  absl::Status status = impl_->client.SendBytes(address, data, reply);
  if (!status.ok() && error != nullptr) {
    *error = std::string(status.message());
  }
  return status.ok();
}

bool Node::SendBytesAsync(const std::string& address, const std::string& data,
                          std::function<void(bool ok, const std::string& error)> done,
                          std::string* error, bool reply) {
  absl::Status status = impl_->client.SendBytesAsync(
      address, data,
      [done = std::move(done)](absl::Status s) {
        if (done) {
          done(s.ok(), std::string(s.message()));
        }
      },
      reply);
  if (!status.ok() && error != nullptr) {
    *error = std::string(status.message());
  }
  return status.ok();
}

std::string Node::proxy_address() const { return impl_->client.proxy_address(); }

std::string Node::public_key_hex() const { return impl_->client.identity().PublicKeyHex(); }

const char* Node::Version() { return RELAY_VERSION; }

}  // namespace relay
