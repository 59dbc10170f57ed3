#include "core/signing.h"

#include <sodium.h>

#include "absl/base/call_once.h"
#include "base/log.h"

namespace relay {
namespace {

void InitSodium() {
  static absl::once_flag once;
  absl::call_once(once, [] { RELAY_CHECK(sodium_init() >= 0) << "libsodium failed to start"; });
}

void AppendLe32(std::string* out, size_t n) {
  for (int i = 0; i < 4; ++i) {
    out->push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  }
}

}  // namespace

std::string Blake2b256(absl::string_view data) {
  InitSodium();
  std::string out(32, '\0');
  crypto_generichash(reinterpret_cast<unsigned char*>(out.data()), out.size(),
                     reinterpret_cast<const unsigned char*>(data.data()), data.size(), nullptr, 0);
  return out;
}

std::string DeriveId(absl::string_view net_key) { return Blake2b256(net_key); }

std::string DeriveConnectionId(absl::string_view net_key, absl::string_view address) {
  std::string both(net_key);
  both.append(address.data(), address.size());
  return Blake2b256(both);
}

std::string SignedBytes(absl::string_view address, absl::string_view id,
                        absl::string_view message) {
  std::string s;
  s.reserve(8 + address.size() + id.size() + message.size());
  AppendLe32(&s, address.size());
  s.append(address.data(), address.size());
  AppendLe32(&s, id.size());
  s.append(id.data(), id.size());
  s.append(message.data(), message.size());
  return s;
}

absl::Status SignMessage(absl::string_view secret_key, wire::Message* msg) {
  InitSodium();
  if (secret_key.size() != crypto_sign_SECRETKEYBYTES) {
    return absl::InvalidArgumentError("secret key must be 64 bytes");
  }
  const std::string digest =
      Blake2b256(SignedBytes(msg->sender().address(), msg->sender().id(), msg->message()));
  std::string sig(crypto_sign_BYTES, '\0');
  crypto_sign_detached(reinterpret_cast<unsigned char*>(sig.data()), nullptr,
                       reinterpret_cast<const unsigned char*>(digest.data()), digest.size(),
                       reinterpret_cast<const unsigned char*>(secret_key.data()));
  msg->set_signature(sig);
  return absl::OkStatus();
}

absl::Status VerifyMessage(const wire::Message& msg) {
  InitSodium();
  const wire::ID& s = msg.sender();
  if (s.net_key().size() != crypto_sign_PUBLICKEYBYTES) {
    return absl::UnauthenticatedError("sender.net_key is not an Ed25519 public key");
  }
  if (msg.signature().size() != crypto_sign_BYTES) {
    return absl::UnauthenticatedError("missing or malformed signature");
  }
  if (s.id() != DeriveId(s.net_key())) {
    return absl::UnauthenticatedError("sender.id is not BLAKE2b-256(net_key)");
  }
  if (s.connection_id() != DeriveConnectionId(s.net_key(), s.address())) {
    return absl::UnauthenticatedError("sender.connection_id is not BLAKE2b-256(net_key||address)");
  }
  const std::string digest = Blake2b256(SignedBytes(s.address(), s.id(), msg.message()));
  if (crypto_sign_verify_detached(
          reinterpret_cast<const unsigned char*>(msg.signature().data()),
          reinterpret_cast<const unsigned char*>(digest.data()), digest.size(),
          reinterpret_cast<const unsigned char*>(s.net_key().data())) != 0) {
    return absl::UnauthenticatedError("signature does not verify");
  }
  return absl::OkStatus();
}

}  // namespace relay
