// Identity: a node's Ed25519 key pair and the ids derived from it (shared/PROTOCOL.md
// sections 3 and 6). A node keeps its identity across runs (a key file) so the relay,
// which keys leases by connection id, gives it back the same proxy address.
//
// Immutable after creation; copy freely; any thread.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "proto/relay.pb.h"

namespace relay {

class Identity {
 public:
  // A fresh random key pair.
  static Identity Generate();
  // From a 32-byte Ed25519 seed (deterministic; used by tests).
  static absl::StatusOr<Identity> FromSeed(absl::string_view seed);
  // Loads the key file at `path` (64 hex characters: the seed), or creates it with mode
  // 0600 if it does not exist, holding `create_as` (null: a fresh key). A file that others
  // may read or write (any of mode 077) is refused. Errors name the file and the cause.
  static absl::StatusOr<Identity> LoadOrCreate(const std::string& path,
                                               const Identity* create_as = nullptr);

  const std::string& public_key() const { return public_key_; }  // 32 bytes: net_key
  const std::string& secret_key() const { return secret_key_; }  // 64 bytes (libsodium)
  const std::string& id() const { return id_; }                  // BLAKE2b-256(net_key)
  std::string PublicKeyHex() const;                              // 64 hex characters
  // BLAKE2b-256(net_key || address).
  std::string ConnectionId(absl::string_view address) const;
  // The sender field of this identity's messages at `address`: its key, the address, and
  // the id and connection id derived from them (PROTOCOL section 6).
  wire::ID Sender(absl::string_view address) const;

 private:
  std::string public_key_;
  std::string secret_key_;
  std::string id_;
};

}  // namespace relay
