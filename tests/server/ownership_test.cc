// Ownership of a proxy address (PROTOCOL section 6; issue 8, part 1): a lease first
// claimed with a valid signature is bound to that key. A copied connection id, a wrong
// signature, a signature by another key or ids that do not derive from the key take
// nothing; the true key takes its session over at once and gets its remembered address
// back; unsigned nodes keep working; --require_signatures refuses anything unsigned.
#include "core/control_codec.h"
#include "core/signing.h"
#include "gtest/gtest.h"
#include "node/identity.h"
#include "tests/testing/relay_fixture.h"

namespace relay::testing {
namespace {

using node::Identity;

std::unique_ptr<TestNode> SignedNode(const Identity& key) {
  auto n = std::make_unique<TestNode>();
  n->SignAs(key.public_key(), key.secret_key());
  return n;
}

// Sends a ProxyRequest built by hand (to tamper with it) and returns the reply opcode.
uint32_t ClaimWith(RelayFixture& relay, const wire::ID& sender, const std::string& secret_key,
                   bool corrupt_signature = false) {
  TestNode conn;
  EXPECT_TRUE(conn.Connect("127.0.0.1", relay.port()).ok());
  wire::Message msg;
  msg.set_message(wire::ProxyRequest().SerializeAsString());
  *msg.mutable_sender() = sender;
  msg.set_opcode(kOpProxyRequest);
  msg.set_netid(kDefaultNetworkId);
  msg.set_request_nonce(1);
  if (!secret_key.empty()) {
    EXPECT_TRUE(SignMessage(secret_key, &msg).ok());
  }
  if (corrupt_signature) {
    (*msg.mutable_signature())[5] ^= 0x40;
  }
  EXPECT_TRUE(WriteAll(conn.fd(), MakeFrame(msg.SerializeAsString())));
  absl::StatusOr<wire::Message> reply = conn.ReadMessage(absl::Seconds(5));
  EXPECT_TRUE(reply.ok()) << reply.status();
  return reply.ok() ? reply->opcode() : 0;
}

void ExpectPong(TestNode* node) {
  ASSERT_TRUE(node->Send(kOpPing).ok());
  absl::StatusOr<wire::Message> m = node->ReadMessage();
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->opcode(), kOpPong);
}

TEST(OwnershipTest, OnlyTheKeyHolderClaimsABoundLease) {
  RelayFixture relay;
  const Identity victim_key = Identity::Generate();
  auto victim = SignedNode(victim_key);
  ASSERT_TRUE(victim->Connect("127.0.0.1", relay.port()).ok());
  absl::StatusOr<std::string> address = victim->RequestProxy();
  ASSERT_TRUE(address.ok());
  EXPECT_EQ(relay.Counter("leases_bound"), 1u);

  // 1. The copied connection id, unsigned (everything a peer sees of the node).
  wire::ID copied = victim->id();
  EXPECT_EQ(ClaimWith(relay, copied, ""), kOpDisconnect);
  EXPECT_EQ(relay.Counter("claims_refused_bound"), 1u);
  // 2. A corrupted signature.
  EXPECT_EQ(ClaimWith(relay, copied, victim_key.secret_key(), /*corrupt=*/false), kOpProxyResponse)
      << "control: the true key's own signature is accepted";
  EXPECT_EQ(ClaimWith(relay, copied, victim_key.secret_key(), /*corrupt=*/true), kOpDisconnect);
  // 3. Signed by another key, claiming the victim's connection id with its net_key.
  const Identity thief = Identity::Generate();
  EXPECT_EQ(ClaimWith(relay, copied, thief.secret_key()), kOpDisconnect);
  // 4. The thief's own key, but the victim's connection id (does not derive from it).
  wire::ID mixed = copied;
  mixed.set_net_key(thief.public_key());
  mixed.set_id(thief.id());
  EXPECT_EQ(ClaimWith(relay, mixed, thief.secret_key()), kOpDisconnect);
  // 5. An id that does not derive from the key.
  wire::ID bad_id = copied;
  bad_id.set_id(std::string(32, 'x'));
  EXPECT_EQ(ClaimWith(relay, bad_id, victim_key.secret_key()), kOpDisconnect);
  EXPECT_EQ(relay.Counter("bad_signatures"), 4u);
  EXPECT_EQ(relay.Counter("claims_refused_bound"), 1u);
}

TEST(OwnershipTest, TheTrueKeyTakesItsSessionOverAtOnceAndGetsItsRememberedAddress) {
  RelayFixture relay;
  const Identity key = Identity::Generate();
  auto first = SignedNode(key);
  ASSERT_TRUE(first->Connect("127.0.0.1", relay.port()).ok());
  absl::StatusOr<std::string> address = first->RequestProxy();
  ASSERT_TRUE(address.ok());
  // A reconnect by the same key takes the live session over immediately.
  auto second = SignedNode(key);
  ASSERT_TRUE(second->Connect("127.0.0.1", relay.port()).ok());
  absl::StatusOr<std::string> again = second->RequestProxy();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *address);
  EXPECT_EQ(relay.Counter("main_taken_over"), 1u);
  ExpectPong(second.get());
  // The node leaves; a thief with the copied id is refused; the owner comes back to
  // its remembered address.
  second->Close();
  ASSERT_EQ(relay.WaitForCounter("sessions_ended", 1), 1u);
  EXPECT_EQ(ClaimWith(relay, first->id(), ""), kOpDisconnect);
  auto third = SignedNode(key);
  ASSERT_TRUE(third->Connect("127.0.0.1", relay.port()).ok());
  absl::StatusOr<std::string> back = third->RequestProxy();
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, *address);
  EXPECT_EQ(relay.Counter("leases_reused"), 1u);
}

TEST(OwnershipTest, UnsignedNodesKeepWorkingInTheDefaultMode) {
  RelayFixture relay;
  std::string address;
  auto node = relay.NodeWithAddress(&address);  // unsigned, random connection id
  ExpectPong(node.get());
  TestNode again(node->connection_id());  // an unsigned takeover of an unbound lease
  ASSERT_TRUE(again.Connect("127.0.0.1", relay.port()).ok());
  absl::StatusOr<std::string> a = again.RequestProxy();
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(*a, address);
  EXPECT_EQ(relay.Counter("leases_bound"), 0u);
}

TEST(OwnershipTest, RequireSignaturesRefusesEveryUnsignedMessage) {
  RelayFixture relay(8, [](RelayConfig& c) { c.require_signatures = true; });
  TestNode plain;
  ASSERT_TRUE(plain.Connect("127.0.0.1", relay.port()).ok());
  absl::StatusOr<std::string> refused = plain.RequestProxy();
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().message(), "disconnect");
  EXPECT_EQ(relay.Counter("unsigned_refused"), 1u);

  const Identity key = Identity::Generate();
  auto node = SignedNode(key);
  ASSERT_TRUE(node->Connect("127.0.0.1", relay.port()).ok());
  ASSERT_TRUE(node->RequestProxy().ok());
  ExpectPong(node.get());  // signed Ping: answered
  // An unsigned Keepalive on the same connection: Disconnect, closed.
  const std::string unsigned_keepalive = MakeControlFrame(kOpKeepalive, "", node->id());
  ASSERT_TRUE(WriteAll(node->fd(), unsigned_keepalive));
  absl::StatusOr<wire::Message> m = node->ReadMessage();
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->opcode(), kOpDisconnect);
  EXPECT_TRUE(WaitForClose(node->fd(), absl::Seconds(5)));
  EXPECT_EQ(relay.Counter("unsigned_refused"), 2u);
}

}  // namespace
}  // namespace relay::testing
