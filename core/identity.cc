#include "core/identity.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "base/log.h"
#include "core/signing.h"

namespace relay {
namespace {

absl::Status FileError(const std::string& path, const char* what) {
  return absl::PermissionDeniedError(
      absl::StrCat("key file ", path, ": ", what, ": ", ErrnoText(errno)));
}

}  // namespace

absl::StatusOr<Identity> Identity::FromSeed(absl::string_view seed) {
  RELAY_CHECK(sodium_init() >= 0);
  if (seed.size() != crypto_sign_SEEDBYTES) {
    return absl::InvalidArgumentError("an Ed25519 seed is 32 bytes");
  }
  Identity identity;
  identity.public_key_.resize(crypto_sign_PUBLICKEYBYTES);
  identity.secret_key_.resize(crypto_sign_SECRETKEYBYTES);
  crypto_sign_seed_keypair(reinterpret_cast<unsigned char*>(identity.public_key_.data()),
                           reinterpret_cast<unsigned char*>(identity.secret_key_.data()),
                           reinterpret_cast<const unsigned char*>(seed.data()));
  identity.id_ = DeriveId(identity.public_key_);
  return identity;
}

Identity Identity::Generate() {
  RELAY_CHECK(sodium_init() >= 0);
  std::string seed(crypto_sign_SEEDBYTES, '\0');
  randombytes_buf(seed.data(), seed.size());
  return *FromSeed(seed);
}

absl::StatusOr<Identity> Identity::LoadOrCreate(const std::string& path,
                                                const Identity* create_as) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno != ENOENT) {
      return FileError(path, "cannot open");
    }
    Identity fresh = create_as != nullptr ? *create_as : Generate();
    std::string seed(crypto_sign_SEEDBYTES, '\0');
    crypto_sign_ed25519_sk_to_seed(
        reinterpret_cast<unsigned char*>(seed.data()),
        reinterpret_cast<const unsigned char*>(fresh.secret_key_.data()));
    const std::string text = absl::BytesToHexString(seed) + "\n";
    const int out = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (out < 0) {
      return FileError(path, "cannot create");
    }
    const bool ok = write(out, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    close(out);
    if (!ok) {
      return FileError(path, "cannot write");
    }
    return fresh;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    close(fd);
    return FileError(path, "cannot stat");
  }
  if ((st.st_mode & 077) != 0) {
    close(fd);
    return absl::PermissionDeniedError(
        absl::StrCat("key file ", path, ": readable or writable by others (mode ",
                     absl::StrFormat("%03o", st.st_mode & 0777), "); run chmod 600 ", path));
  }
  char buf[256];
  const ssize_t n = read(fd, buf, sizeof(buf));
  close(fd);
  if (n < 0) {
    return FileError(path, "cannot read");
  }
  absl::string_view text(buf, static_cast<size_t>(n));
  text = absl::StripAsciiWhitespace(text);
  const std::string seed = absl::HexStringToBytes(text);
  if (text.size() != 2 * crypto_sign_SEEDBYTES ||
      absl::BytesToHexString(seed) != absl::AsciiStrToLower(text)) {
    return absl::InvalidArgumentError(
        absl::StrCat("key file ", path, ": expected 64 hex characters (an Ed25519 seed)"));
  }
  return FromSeed(seed);
}

std::string Identity::PublicKeyHex() const { return absl::BytesToHexString(public_key_); }

std::string Identity::ConnectionId(absl::string_view address) const {
  return DeriveConnectionId(public_key_, address);
}

wire::ID Identity::Sender(absl::string_view address) const {
  wire::ID sender;
  sender.set_net_key(public_key_);
  sender.set_address(std::string(address));
  sender.set_id(id());
  sender.set_connection_id(ConnectionId(address));
  return sender;
}

}  // namespace relay
