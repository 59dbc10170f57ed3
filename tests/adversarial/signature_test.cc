// Signature floods under --require_signatures: each message signed by another key costs
// the relay an Ed25519 check, the attacker nothing. The reactor's --signature_budget
// bounds the checks (the heavy sources wait, a node claiming its address does not), and a
// connection's messages signed by the key it already proved are not checked again.
#include <sys/socket.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/control_codec.h"
#include "core/frame_header.h"
#include "core/identity.h"
#include "core/signing.h"
#include "gtest/gtest.h"
#include "tests/adversarial/attack_helpers.h"

namespace relay::testing {
namespace {

std::unique_ptr<TestNode> SignedNode() {
  const Identity key = Identity::Generate();
  auto node = std::make_unique<TestNode>();
  node->SignAs(key.public_key(), key.secret_key());
  return node;
}

// A frame holding a keepalive signed by a new key.
std::string SignedKeepalive() {
  const Identity id = Identity::Generate();
  wire::Message m;
  *m.mutable_sender() = id.Sender("tcp://0.0.0.0:0");
  m.set_opcode(kOpKeepalive);
  m.set_netid(kDefaultNetworkId);
  m.set_request_nonce(1);
  EXPECT_TRUE(SignMessage(id.secret_key(), &m).ok());
  return MakeFrame(m.SerializeAsString());
}

TEST(SignatureTest, AFloodOfSignedMessagesFromManySourcesStaysWithinTheBudget) {
  RelayProcess relay;
  ASSERT_TRUE(relay.Start(
      {PortRange(8), "--threads=1", "--require_signatures", "--signature_budget=1000", "--quiet"}));
  auto innocent = SignedNode();
  absl::StatusOr<std::string> address = innocent->ConnectAndClaim(relay.port());
  ASSERT_TRUE(address.ok()) << address.status();
  absl::StatusOr<net::UniqueFd> peer = ConnectTo(*address);
  ASSERT_TRUE(peer.ok());
  // 64 sources (127.0.1.x), each streaming keepalives signed by 64 keys in turn.
  std::string batch;
  for (int k = 0; k < 64; ++k) {
    batch += SignedKeepalive();
  }
  std::atomic<bool> stop{false};
  std::vector<std::thread> attackers;
  for (int s = 0; s < 64; ++s) {
    attackers.emplace_back([&, s] {
      TestNode attacker;
      if (!attacker.ConnectFrom(absl::StrCat("127.0.1.", s + 1), "127.0.0.1", relay.port()).ok()) {
        return;
      }
      timeval tv{0, 200000};
      setsockopt(attacker.fd(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
      char sink[65536];
      while (!stop.load()) {
        ::send(attacker.fd(), batch.data(), batch.size(), MSG_NOSIGNAL);
        while (::recv(attacker.fd(), sink, sizeof(sink), MSG_DONTWAIT) > 0) {
        }
      }
    });
  }
  absl::SleepFor(absl::Milliseconds(500));
  const uint64_t checks_before = relay.Counters()["signature_checks"];
  const absl::Time start = absl::Now();
  // The innocent's frames flow, and a new node (a light source) claims an address.
  for (int i = 0; i < 30; ++i) {
    ASSERT_TRUE(WriteAll(peer->get(), MakeFrame(absl::StrCat("frame ", i))));
    absl::StatusOr<Frame> f = innocent->ReadDataFrame(absl::Seconds(2));
    ASSERT_TRUE(f.ok()) << "frame " << i << ": " << f.status();
    absl::SleepFor(absl::Milliseconds(50));
  }
  auto newcomer = SignedNode();
  EXPECT_TRUE(newcomer->ConnectAndClaim(relay.port()).ok());
  const uint64_t checks = relay.Counters()["signature_checks"] - checks_before;
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  stop = true;
  for (std::thread& t : attackers) {
    t.join();
  }
  // Checks stay near the budget (1,000/s, plus the light sources' reserve of a quarter):
  // unbounded, 64 sources at their control rates ask for 12,800/s.
  EXPECT_LE(static_cast<double>(checks), 1300 * seconds + 100) << "in " << seconds << " s";
  EXPECT_GT(relay.Counters()["signature_waits"], 0u);
  EXPECT_EQ(relay.Stop(), 0);
}

TEST(SignatureTest, MessagesSignedByTheKeyAConnectionProvedAreNotCheckedAgain) {
  RelayProcess relay;
  ASSERT_TRUE(relay.Start({PortRange(4), "--threads=1", "--require_signatures", "--quiet"}));
  auto node = SignedNode();
  ASSERT_TRUE(node->ConnectAndClaim(relay.port()).ok());
  const uint64_t after_claim = relay.Counters()["signature_checks"];
  EXPECT_EQ(after_claim, 1u);
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(node->Send(kOpKeepalive).ok());
    ASSERT_TRUE(node->ReadMessage().ok());
  }
  EXPECT_EQ(relay.Counters()["signature_checks"], after_claim);
  // A message signed by another key on the same connection is checked.
  ASSERT_TRUE(WriteAll(node->fd(), SignedKeepalive()));
  ASSERT_TRUE(node->ReadMessage().ok());
  EXPECT_EQ(relay.Counters()["signature_checks"], after_claim + 1);
  EXPECT_EQ(relay.Stop(), 0);
}

}  // namespace
}  // namespace relay::testing
