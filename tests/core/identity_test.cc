// Identity derivations and signatures (shared/PROTOCOL.md section 6), checked against
// values computed outside this code: Python's hashlib for BLAKE2b, RFC 8032 for Ed25519,
// and the openssl command for signature verification.
#include "core/identity.h"

#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "core/signing.h"
#include "gtest/gtest.h"

namespace relay {
namespace {

std::string Hex(const std::string& bytes) { return absl::BytesToHexString(bytes); }
std::string Unhex(const std::string& hex) { return absl::HexStringToBytes(hex); }

std::string Range32() {
  std::string s;
  for (int i = 0; i < 32; ++i) {
    s.push_back(static_cast<char>(i));
  }
  return s;
}

TEST(SigningTest, Blake2b256MatchesIndependentVectors) {
  // python3: hashlib.blake2b(data, digest_size=32).hexdigest()
  EXPECT_EQ(Hex(Blake2b256("")),
            "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8");
  EXPECT_EQ(Hex(DeriveId(Range32())),
            "cb2f5160fc1f7e05a55ef49d340b48da2e5a78099d53393351cd579dd42503d6");
  EXPECT_EQ(Hex(DeriveConnectionId(Range32(), "tcp://10.0.0.5:30001")),
            "e92cf2b4806a04997dc197883522eb76a247b35b5854b5805e39f6bcc7fb8647");
}

TEST(SigningTest, SignedBytesLayout) {
  const std::string s = SignedBytes("ab", "xyz", "M");
  EXPECT_EQ(s, std::string("\x02\x00\x00\x00"
                           "ab"
                           "\x03\x00\x00\x00"
                           "xyz"
                           "M",
                           14));
}

TEST(IdentityTest, Rfc8032KeyFromSeed) {
  // RFC 8032 section 7.1, TEST 1.
  absl::StatusOr<Identity> id =
      Identity::FromSeed(Unhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"));
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(Hex(id->public_key()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
  EXPECT_EQ(id->id(), DeriveId(id->public_key()));
  EXPECT_EQ(id->ConnectionId("tcp://1.2.3.4:5"),
            DeriveConnectionId(id->public_key(), "tcp://1.2.3.4:5"));
  // The same TEST 1 signature of the empty message, from libsodium's primitive.
  unsigned char sig[64];
  crypto_sign_detached(sig, nullptr, nullptr, 0,
                       reinterpret_cast<const unsigned char*>(id->secret_key().data()));
  EXPECT_EQ(Hex(std::string(reinterpret_cast<char*>(sig), 64)),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc6"
            "1e39701cf9b46bd25bf5f0595bbe24655141438e7a100b");
}

wire::Message SignedMessage(const Identity& id, const std::string& address) {
  wire::Message msg;
  msg.set_message("inner message bytes");
  msg.mutable_sender()->set_net_key(id.public_key());
  msg.mutable_sender()->set_address(address);
  msg.mutable_sender()->set_id(id.id());
  msg.mutable_sender()->set_connection_id(id.ConnectionId(address));
  EXPECT_TRUE(SignMessage(id.secret_key(), &msg).ok());
  return msg;
}

TEST(IdentityTest, SignaturesVerifyAndTamperingIsCaught) {
  const Identity id = Identity::Generate();
  wire::Message msg = SignedMessage(id, "tcp://10.0.0.5:30001");
  EXPECT_TRUE(VerifyMessage(msg).ok());
  wire::Message bad = msg;
  bad.set_message("other bytes");
  EXPECT_FALSE(VerifyMessage(bad).ok());
  bad = msg;
  bad.mutable_sender()->set_address("tcp://10.0.0.6:30001");  // connection_id mismatch
  EXPECT_FALSE(VerifyMessage(bad).ok());
  bad = msg;
  bad.mutable_sender()->set_id(std::string(32, 'x'));
  EXPECT_FALSE(VerifyMessage(bad).ok());
  bad = SignedMessage(Identity::Generate(), "tcp://10.0.0.5:30001");
  bad.mutable_sender()->set_net_key(id.public_key());  // a key that did not sign it
  EXPECT_FALSE(VerifyMessage(bad).ok());
}

TEST(IdentityTest, OpensslVerifiesOurSignatureIndependently) {
  const Identity id = Identity::Generate();
  const wire::Message msg = SignedMessage(id, "tcp://10.0.0.5:30001");
  char dir_template[] = "/tmp/relay-sig-XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  const std::string dir = dir_template;
  // The signed digest, the signature, and the public key as an SPKI PEM.
  std::ofstream(dir + "/digest", std::ios::binary)
      << Blake2b256(SignedBytes(msg.sender().address(), msg.sender().id(), msg.message()));
  std::ofstream(dir + "/sig", std::ios::binary) << msg.signature();
  const std::string spki = Unhex("302a300506032b6570032100") + id.public_key();
  std::ofstream(dir + "/pub.pem") << "-----BEGIN PUBLIC KEY-----\n"
                                  << absl::Base64Escape(spki) << "\n-----END PUBLIC KEY-----\n";
  const std::string cmd =
      absl::StrCat("openssl pkeyutl -verify -pubin -inkey ", dir, "/pub.pem -rawin -in ", dir,
                   "/digest -sigfile ", dir, "/sig > ", dir, "/out 2>&1");
  EXPECT_EQ(system(cmd.c_str()), 0);
  std::ifstream out(dir + "/out");
  std::string text((std::istreambuf_iterator<char>(out)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("Signature Verified Successfully"), std::string::npos) << text;
  // And openssl refuses a tampered digest.
  std::ofstream(dir + "/digest", std::ios::binary) << std::string(32, 'x');
  EXPECT_NE(system(cmd.c_str()), 0);
  system(absl::StrCat("rm -rf ", dir).c_str());
}

TEST(IdentityTest, KeyFileIsCreatedPrivateAndReloadsTheSameIdentity) {
  char dir_template[] = "/tmp/relay-key-XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  const std::string path = std::string(dir_template) + "/node.key";
  absl::StatusOr<Identity> a = Identity::LoadOrCreate(path);
  ASSERT_TRUE(a.ok()) << a.status();
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  absl::StatusOr<Identity> b = Identity::LoadOrCreate(path);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(a->public_key(), b->public_key());

  std::ofstream(path) << "not a key\n";
  absl::StatusOr<Identity> c = Identity::LoadOrCreate(path);
  EXPECT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find(path), std::string::npos);
  chmod(path.c_str(), 0);
  if (geteuid() != 0) {  // root reads anything
    EXPECT_FALSE(Identity::LoadOrCreate(path).ok());
  }
  unlink(path.c_str());
  rmdir(dir_template);
}

TEST(IdentityTest, SenderIsTheKeyAddressAndDerivedIds) {
  const Identity id = Identity::Generate();
  const wire::ID sender = id.Sender("tcp://1.2.3.4:5");
  EXPECT_EQ(sender.net_key(), id.public_key());
  EXPECT_EQ(sender.address(), "tcp://1.2.3.4:5");
  EXPECT_EQ(sender.id(), DeriveId(id.public_key()));
  EXPECT_EQ(sender.connection_id(), DeriveConnectionId(id.public_key(), "tcp://1.2.3.4:5"));
  EXPECT_EQ(sender.SerializeAsString(),
            SignedMessage(id, "tcp://1.2.3.4:5").sender().SerializeAsString());
}

}  // namespace
}  // namespace relay
