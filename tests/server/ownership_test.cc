// Ownership of a proxy address (PROTOCOL section 6; issue 8, part 1): a lease first
// claimed with a valid signature is bound to that key. A copied connection id, a wrong
// signature, a signature by another key or ids that do not derive from the key take
// nothing; the true key takes its session over at once and gets its remembered address
// back; unsigned nodes keep working; --require_signatures refuses anything unsigned.
// Replay (fresh claims, --strict_claims) and the relay's own signed identity.
#include <atomic>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "core/control_codec.h"
#include "core/identity.h"
#include "core/signing.h"
#include "gtest/gtest.h"
#include "node/node_client.h"
#include "tests/testing/relay_fixture.h"

namespace relay::testing {
namespace {

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

// A fresh claim's inner message: made for `relay` at `time_ms`.
std::string FreshClaim(const std::string& relay, uint64_t time_ms) {
  wire::ProxyRequest request;
  request.set_claim_relay(relay);
  request.set_claim_time_ms(time_ms);
  return request.SerializeAsString();
}

uint64_t NowMs() { return static_cast<uint64_t>(absl::ToUnixMillis(absl::Now())); }

// A message signed by `key` at the default address, as a node would send it.
wire::Message SignedMessage(const Identity& key, uint32_t opcode, const std::string& inner) {
  TestNode shape;
  shape.SignAs(key.public_key(), key.secret_key());
  wire::Message msg;
  msg.set_message(inner);
  *msg.mutable_sender() = shape.id();
  msg.set_opcode(opcode);
  msg.set_netid(kDefaultNetworkId);
  msg.set_message_nonce(7);
  EXPECT_TRUE(SignMessage(key.secret_key(), &msg).ok());
  return msg;
}

// Sends `msg` as it is, on a new connection, and returns the relay's first reply.
absl::StatusOr<wire::Message> SendRaw(RelayFixture& relay, const wire::Message& msg,
                                      std::unique_ptr<TestNode>* keep = nullptr) {
  auto conn = std::make_unique<TestNode>();
  absl::Status status = conn->Connect("127.0.0.1", relay.port());
  if (!status.ok()) {
    return status;
  }
  if (!WriteAll(conn->fd(), MakeFrame(msg.SerializeAsString()))) {
    return absl::UnavailableError("write failed");
  }
  absl::StatusOr<wire::Message> reply = conn->ReadMessage(absl::Seconds(5));
  if (keep != nullptr) {
    *keep = std::move(conn);
  }
  return reply;
}

// A signed message replayed as a claim: the same bytes, opcode 15 (the opcode is not
// signed).
wire::Message AsClaim(wire::Message msg) {
  msg.set_opcode(kOpProxyRequest);
  return msg;
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
  absl::StatusOr<std::string> a = again.ConnectAndClaim(relay.port());
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

// --- Replay (PROTOCOL section 6 signs neither the opcode nor the nonces) ---

TEST(ReplayTest, DefaultModeStillTakesAReplayedMessageOfANodeThatSignsPlainClaims) {
  // The gap as the wire has it, for nodes that only sign empty ProxyRequests: their
  // signed Ping (seen by any peer) is a valid claim. docs/SECURITY.md says so.
  RelayFixture relay;
  const Identity key = Identity::Generate();
  auto node = SignedNode(key);
  ASSERT_TRUE(node->Connect("127.0.0.1", relay.port()).ok());
  ASSERT_TRUE(node->RequestProxy().ok());  // a plain signed claim
  std::unique_ptr<TestNode> thief;
  absl::StatusOr<wire::Message> reply =
      SendRaw(relay, AsClaim(SignedMessage(key, kOpPing, "")), &thief);
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->opcode(), kOpProxyResponse);
  EXPECT_EQ(relay.Counter("main_taken_over"), 1u);
}

TEST(ReplayTest, ALeaseClaimedFreshRefusesReplayedPingsKeepalivesAndClaims) {
  RelayFixture relay;
  const std::string name = absl::StrCat("tcp://127.0.0.1:", relay.port());
  const Identity key = Identity::Generate();
  auto node = SignedNode(key);
  ASSERT_TRUE(node->Connect("127.0.0.1", relay.port()).ok());
  const uint64_t t = NowMs();
  ASSERT_TRUE(node->Send(kOpProxyRequest, FreshClaim(name, t), 1).ok());
  absl::StatusOr<wire::Message> answer = node->ReadMessage();
  ASSERT_TRUE(answer.ok());
  ASSERT_EQ(answer->opcode(), kOpProxyResponse);
  wire::ProxyResponse response;
  ASSERT_TRUE(response.ParseFromString(answer->message()));
  EXPECT_EQ(response.claim_time_ms(), t) << "the relay's signed answer echoes the claim";
  EXPECT_TRUE(VerifyMessage(*answer).ok());
  EXPECT_EQ(relay.Counter("fresh_claims"), 1u);

  // A Ping and a Keepalive the node signed (seen by a peer, or on the path), replayed as
  // claims: refused even in the default mode, because this lease was claimed fresh.
  for (uint32_t opcode : {kOpPing, kOpKeepalive}) {
    absl::StatusOr<wire::Message> r = SendRaw(relay, AsClaim(SignedMessage(key, opcode, "")));
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->opcode(), kOpDisconnect) << "opcode " << opcode;
  }
  EXPECT_EQ(relay.Counter("claims_not_fresh"), 2u);
  // The node's own fresh claim, replayed byte for byte: refused (not newer).
  const wire::Message claim = SignedMessage(key, kOpProxyRequest, FreshClaim(name, t));
  absl::StatusOr<wire::Message> r = SendRaw(relay, claim);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->opcode(), kOpDisconnect);
  EXPECT_EQ(relay.Counter("claims_replayed"), 1u);
  EXPECT_EQ(relay.Counter("main_taken_over"), 0u);
  ExpectPong(node.get());  // the node never lost its session

  // The true key with a new fresh claim takes over at once.
  auto again = SignedNode(key);
  ASSERT_TRUE(again->Connect("127.0.0.1", relay.port()).ok());
  ASSERT_TRUE(again->Send(kOpProxyRequest, FreshClaim(name, t + 1), 1).ok());
  absl::StatusOr<wire::Message> taken = again->ReadMessage();
  ASSERT_TRUE(taken.ok());
  EXPECT_EQ(taken->opcode(), kOpProxyResponse);
  EXPECT_EQ(relay.Counter("main_taken_over"), 1u);
}

TEST(ReplayTest, StrictModeRefusesPlainStaleForeignAndReplayedClaims) {
  RelayFixture relay(8, [](RelayConfig& c) {
    c.strict_claims = true;
    c.claim_window = absl::Seconds(30);
    c.relay_names = {"tcp://relay.example.net:6008"};
  });
  const std::string name = absl::StrCat("tcp://127.0.0.1:", relay.port());
  const Identity key = Identity::Generate();
  auto expect = [&](const wire::Message& msg, uint32_t opcode, const char* counter,
                    uint64_t count) {
    absl::StatusOr<wire::Message> r = SendRaw(relay, msg);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->opcode(), opcode) << counter;
    EXPECT_EQ(relay.Counter(counter), count);
  };
  // No lease exists yet: a replayed Ping is still no claim here.
  expect(AsClaim(SignedMessage(key, kOpPing, "")), kOpDisconnect, "claims_not_fresh", 1);
  expect(SignedMessage(key, kOpProxyRequest, ""), kOpDisconnect, "claims_not_fresh", 2);
  TestNode plain;  // unsigned
  ASSERT_TRUE(plain.Connect("127.0.0.1", relay.port()).ok());
  EXPECT_FALSE(plain.RequestProxy().ok());
  EXPECT_EQ(relay.Counter("unsigned_refused"), 1u);
  const uint64_t now = NowMs();
  expect(SignedMessage(key, kOpProxyRequest, FreshClaim(name, now - 31000)), kOpDisconnect,
         "claims_stale", 1);
  expect(SignedMessage(key, kOpProxyRequest, FreshClaim(name, now + 31000)), kOpDisconnect,
         "claims_stale", 2);
  expect(SignedMessage(key, kOpProxyRequest, FreshClaim("tcp://10.9.9.9:6008", now)), kOpDisconnect,
         "claims_wrong_relay", 1);
  // Accepted: by the advertised name, then (newer) by an operator's --relay_name.
  const wire::Message good = SignedMessage(key, kOpProxyRequest, FreshClaim(name, now));
  std::unique_ptr<TestNode> holder;
  absl::StatusOr<wire::Message> r = SendRaw(relay, good, &holder);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->opcode(), kOpProxyResponse);
  expect(good, kOpDisconnect, "claims_replayed", 1);  // the same claim again
  expect(SignedMessage(key, kOpProxyRequest, FreshClaim("tcp://relay.example.net:6008", now + 1)),
         kOpProxyResponse, "fresh_claims", 2);
  EXPECT_EQ(relay.Counter("main_taken_over"), 1u);
}

// --- The relay's identity ---

TEST(RelayIdentityTest, ANodePinsTheRelayKeyAndRefusesAnImpostor) {
  RelayFixture relay;
  const std::string relay_key = relay.server().relay_key_hex();
  node::NodeOptions options;
  options.relays.push_back(HostPort{"127.0.0.1", relay.port()});
  options.io_timeout = absl::Seconds(2);
  options.relay_keys = {absl::HexStringToBytes(relay_key)};
  node::NodeClient pinned(Identity::Generate(), options);
  ASSERT_TRUE(pinned.Connect(absl::Seconds(5)).ok());
  EXPECT_EQ(relay.Counter("fresh_claims"), 1u) << "relay-node's library sends fresh claims";

  options.relay_keys = {Identity::Generate().public_key()};  // someone else's relay
  node::NodeClient wrong(Identity::Generate(), options);
  absl::StatusOr<std::string> refused = wrong.Connect(absl::Milliseconds(600));
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("not a pinned one"), std::string::npos)
      << refused.status();
}

TEST(RelayIdentityTest, APeerCannotForgeTheRelaysDisconnect) {
  RelayFixture relay;
  node::NodeOptions options;
  options.relays.push_back(HostPort{"127.0.0.1", relay.port()});
  node::NodeClient node(Identity::Generate(), options);
  absl::StatusOr<std::string> address = node.Connect(absl::Seconds(5));
  ASSERT_TRUE(address.ok());
  std::atomic<int> got{0};
  node.Start([&](const node::ReceivedMessage&) { got.fetch_add(1); });
  // A peer sends, to the node's proxy address, a Disconnect that names the relay as its
  // sender (address and net_key copied from any relay message), signed by itself.
  const Identity forger = Identity::Generate();
  wire::Message fake = SignedMessage(forger, kOpDisconnect, "");
  fake.mutable_sender()->set_address(absl::StrCat("tcp://127.0.0.1:", relay.port()));
  fake.mutable_sender()->set_net_key(absl::HexStringToBytes(relay.server().relay_key_hex()));
  absl::StatusOr<net::UniqueFd> peer = ConnectTo(*address);
  ASSERT_TRUE(peer.ok());
  ASSERT_TRUE(WriteAll(peer->get(), MakeFrame(fake.SerializeAsString())));
  // Then a real message, so we know the forgery was read before it.
  ASSERT_TRUE(
      WriteAll(peer->get(), MakeFrame(SignedMessage(forger, kOpBytes, "x").SerializeAsString())));
  for (int i = 0; i < 500 && got.load() == 0; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(got.load(), 1);
  EXPECT_EQ(node.forged_relay_messages(), 1);
  EXPECT_EQ(node.reconnects(), 0) << "the forged Disconnect did not end the session";
  node.Stop();
}

}  // namespace
}  // namespace relay::testing
