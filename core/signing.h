// signing: the identity derivations and message signatures of shared/PROTOCOL.md
// section 6, on libsodium (Ed25519, BLAKE2b-256).
//
//   id            = BLAKE2b-256(net_key)
//   connection_id = BLAKE2b-256(net_key || address)
//   signature     = Ed25519.sign(secret_key, BLAKE2b-256(S)),
//   S = le32(len(address)) || address || le32(len(id)) || id || Message.message
//
// Stateless and thread-safe (InitSodium() is idempotent and called by each function).
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "proto/relay.pb.h"

namespace relay {

inline constexpr size_t kPublicKeyBytes = 32;
inline constexpr size_t kSecretKeyBytes = 64;
inline constexpr size_t kSignatureBytes = 64;

// BLAKE2b with a 32-byte digest, no key.
std::string Blake2b256(absl::string_view data);
std::string DeriveId(absl::string_view net_key);
std::string DeriveConnectionId(absl::string_view net_key, absl::string_view address);
// The bytes S that a signature covers.
std::string SignedBytes(absl::string_view address, absl::string_view id, absl::string_view message);
// Signs `msg` in place (signature over its sender.address, sender.id and message).
// `secret_key` is libsodium's 64-byte Ed25519 secret key.
absl::Status SignMessage(absl::string_view secret_key, wire::Message* msg);
// Checks a signed message: signature valid for sender.net_key, and sender.id and
// sender.connection_id derived from that key. Returns the first rule broken.
absl::Status VerifyMessage(const wire::Message& msg);

}  // namespace relay
