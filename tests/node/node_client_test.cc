// NodeClient against a real relay on 127.0.0.1: reconnects keep the address, a relay list
// fails over, refusals and unreachable relays are reported.
#include "node/node_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "core/compression.h"
#include "core/control_codec.h"
#include "core/signing.h"
#include "gtest/gtest.h"
#include "net/socket_ops.h"
#include "tests/testing/free_ports.h"
#include "tests/testing/relay_fixture.h"

namespace relay::node {
namespace {

using relay::testing::RelayFixture;

NodeOptions OptionsFor(std::vector<uint16_t> ports) {
  NodeOptions options;
  for (uint16_t p : ports) {
    options.relays.push_back(HostPort{"127.0.0.1", p});
  }
  options.initial_backoff = absl::Milliseconds(20);
  options.max_backoff = absl::Milliseconds(200);
  options.io_timeout = absl::Seconds(5);
  return options;
}

// Two processes started with one key take the session from each other; each backs off
// (jittered, exponential) after a session that ended at once, so the fight slows to a
// trickle instead of tens of thousands of takeovers (the relay's damping is off here).
TEST(NodeClientTest, TwoClientsWithOneKeyBackOffInsteadOfFighting) {
  RelayFixture relay(8, [](RelayConfig& c) { c.takeover_interval = absl::ZeroDuration(); });
  absl::StatusOr<Identity> key = Identity::FromSeed(std::string(32, 'k'));
  ASSERT_TRUE(key.ok());
  NodeOptions options = OptionsFor({relay.port()});
  options.initial_backoff = absl::Milliseconds(200);  // the library's defaults
  options.max_backoff = absl::Seconds(10);
  NodeClient a(*key, options);
  NodeClient b(*key, options);
  ASSERT_TRUE(a.Connect(absl::Seconds(5)).ok());
  a.Start([](const relay::node::ReceivedMessage&) {});
  // b's fresh claim must be newer than a's (same key, so the same lease): a claim in the
  // same millisecond is refused as a replay (docs/SECURITY.md).
  absl::SleepFor(absl::Milliseconds(2));
  ASSERT_TRUE(b.Connect(absl::Seconds(5)).ok());
  b.Start([](const relay::node::ReceivedMessage&) {});
  absl::SleepFor(absl::Seconds(3));
  a.Stop();
  b.Stop();
  // Without back-off each reconnect takes the session at once: thousands in 3 s. With
  // it (200 ms doubling to 10 s, jittered) at most about ten per client.
  EXPECT_GE(relay.Counter("main_taken_over"), 1u);
  EXPECT_LE(relay.Counter("main_taken_over"), 20u);
  EXPECT_GE(a.quick_drops() + b.quick_drops(), 1);
}

TEST(NodeClientTest, ReceivesMessagesAndReconnectsToTheSameAddress) {
  // The relay drops silent main connections after 400 ms; the client's keepalives are
  // too rare, so the relay drops it and the client must come back on its own.
  RelayFixture relay(8, [](RelayConfig& c) { c.keepalive_timeout = absl::Milliseconds(400); });
  NodeOptions options = OptionsFor({relay.port()});
  options.keepalive_interval = absl::Seconds(60);
  NodeClient client(Identity::Generate(), options);
  absl::StatusOr<std::string> address = client.Connect(absl::Seconds(5));
  ASSERT_TRUE(address.ok()) << address.status();

  std::mutex mu;
  std::vector<std::string> got;
  client.Start([&](const ReceivedMessage& m) {
    std::lock_guard<std::mutex> lock(mu);
    got.push_back(m.payload);
  });
  EXPECT_GE(relay.WaitForCounter("keepalive_timeouts", 1), 1u);
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (client.reconnects() < 1 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_GE(client.reconnects(), 1);
  EXPECT_EQ(client.proxy_address(), *address);  // same lease, same address

  NodeClient sender(Identity::Generate(), OptionsFor({}));
  ASSERT_TRUE(sender.SendBytes(*address, "after the reconnect").ok());
  while (absl::Now() < deadline) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (!got.empty()) {
        break;
      }
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  client.Stop();
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], "after the reconnect");
}

// A frame larger than the node takes (max_message_bytes) is refused from its header, not
// buffered: the node drops that connection, reconnects to the same address, and the next
// message still arrives.
TEST(NodeClientTest, AFrameOverMaxMessageBytesIsRefusedFromItsHeader) {
  RelayFixture relay(8);
  NodeOptions options = OptionsFor({relay.port()});
  options.max_message_bytes = 64 * 1024;
  NodeClient client(Identity::Generate(), options);
  absl::StatusOr<std::string> address = client.Connect(absl::Seconds(5));
  ASSERT_TRUE(address.ok()) << address.status();
  std::atomic<int> got{0};
  client.Start([&](const ReceivedMessage& m) {
    if (m.payload == "small") {
      got.fetch_add(1);
    }
  });
  absl::StatusOr<HostPort> to = ParsePeerAddress(*address);
  ASSERT_TRUE(to.ok());
  absl::StatusOr<net::UniqueFd> peer = net::ConnectBlocking(to->host, to->port);
  ASSERT_TRUE(peer.ok());
  std::string big(kFrameHeaderSize, '\0');
  EncodeFrameHeader(FrameHeader{kDefaultNetworkId, 0, 200 * 1024},
                    reinterpret_cast<uint8_t*>(big.data()));
  big.append(200 * 1024, 'x');
  ASSERT_TRUE(net::WriteAllUntil(peer->get(), big, absl::Now() + absl::Seconds(5)).ok());
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (client.reconnects() < 1 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_GE(client.reconnects(), 1) << "the node kept reading a frame it cannot take";
  EXPECT_EQ(client.proxy_address(), *address);
  NodeClient sender(Identity::Generate(), OptionsFor({}));
  ASSERT_TRUE(sender.SendBytes(*address, "small").ok());
  while (got.load() < 1 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  client.Stop();
  EXPECT_EQ(got.load(), 1);
}

// PROTOCOL section 2: a message over the threshold goes out compressed and is read back
// whole; a peer's gzip and flate frames are read too; a bomb or bzip2 is dropped and
// counted.
TEST(NodeClientTest, CompressedMessagesBothWays) {
  RelayFixture relay;
  NodeOptions receiver = OptionsFor({relay.port()});
  receiver.max_message_bytes = 4u << 20;
  NodeClient client(Identity::Generate(), receiver);
  absl::StatusOr<std::string> address = client.Connect(absl::Seconds(5));
  ASSERT_TRUE(address.ok()) << address.status();
  std::mutex mu;
  std::vector<ReceivedMessage> got;
  client.Start([&](const ReceivedMessage& m) {
    std::lock_guard<std::mutex> lock(mu);
    got.push_back(m);
  });
  std::string big;
  for (int i = 0; i < 50000; ++i) {
    big += "payload " + std::to_string(i % 13) + " ";
  }
  NodeOptions options = OptionsFor({});
  options.compress_threshold = 64 * 1024;
  NodeClient sender(Identity::Generate(), options);
  ASSERT_TRUE(sender.SendBytes(*address, big).ok());
  ASSERT_TRUE(sender.SendBytes(*address, "small").ok());
  // A peer that compresses with gzip and with raw flate (PROTOCOL algorithms 2 and 5).
  for (CompressAlgorithm a : {CompressAlgorithm::kGzip, CompressAlgorithm::kFlate}) {
    wire::Message m;
    m.set_opcode(kOpBytes);
    wire::Bytes bytes;
    bytes.set_data(big);
    m.set_message(bytes.SerializeAsString());
    absl::StatusOr<std::string> packed = Compress(a, m.SerializeAsString());
    ASSERT_TRUE(packed.ok());
    absl::StatusOr<net::UniqueFd> peer = relay::testing::ConnectTo(*address);
    ASSERT_TRUE(peer.ok());
    const std::string frame =
        relay::testing::MakeFrame(*packed, kDefaultNetworkId, CompressInfo(a));
    ASSERT_EQ(send(peer->get(), frame.data(), frame.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(frame.size()));
  }
  // A bomb (inflates past max_message_bytes) and bzip2 (unsupported): dropped, counted.
  absl::StatusOr<std::string> bomb = Compress(CompressAlgorithm::kZlib, std::string(8u << 20, 'z'));
  ASSERT_TRUE(bomb.ok());
  for (uint16_t info :
       {CompressInfo(CompressAlgorithm::kZlib), CompressInfo(CompressAlgorithm::kBzip2)}) {
    absl::StatusOr<net::UniqueFd> peer = relay::testing::ConnectTo(*address);
    ASSERT_TRUE(peer.ok());
    const std::string frame = relay::testing::MakeFrame(*bomb, kDefaultNetworkId, info);
    ASSERT_EQ(send(peer->get(), frame.data(), frame.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(frame.size()));
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (absl::Now() < deadline && (client.undecodable_messages() < 2 || [&] {
           std::lock_guard<std::mutex> lock(mu);
           return got.size() < 4;
         }())) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  client.Stop();
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got[0].payload, big);
  EXPECT_LT(got[0].frame_bytes, big.size() / 4) << "it travelled compressed";
  EXPECT_EQ(got[1].payload, "small");
  EXPECT_GT(got[1].frame_bytes, 0u);
  EXPECT_EQ(got[2].payload, big);
  EXPECT_EQ(got[3].payload, big);
  EXPECT_EQ(client.undecodable_messages(), 2);
}

// Collects a client's callbacks, with the thread each ran on.
struct Recorder {
  std::mutex mu;
  std::vector<std::string> messages;
  std::vector<NodeEvent> events;
  std::vector<std::thread::id> threads;
  NodeClient::NodeCallbacks Callbacks() {
    return NodeClient::NodeCallbacks{[this](const ReceivedMessage& m) {
                                       std::lock_guard<std::mutex> lock(mu);
                                       messages.push_back(m.payload);
                                       threads.push_back(std::this_thread::get_id());
                                     },
                                     [this](const NodeEvent& e) {
                                       std::lock_guard<std::mutex> lock(mu);
                                       events.push_back(e);
                                       threads.push_back(std::this_thread::get_id());
                                     }};
  }
  // Waits (bounded) until `pred` holds under the lock.
  template <typename Pred>
  bool WaitFor(Pred pred, absl::Duration timeout = absl::Seconds(10)) {
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      {
        std::lock_guard<std::mutex> lock(mu);
        if (pred()) {
          return true;
        }
      }
      absl::SleepFor(absl::Milliseconds(10));
    }
    return false;
  }
};

// A callback that takes seconds delays nothing else: Keepalives go on (the relay would
// drop a node silent for its keepalive timeout), and every message arrives in order.
TEST(NodeClientTest, ASlowCallbackDoesNotGetTheNodeDropped) {
  RelayFixture relay(8, [](RelayConfig& c) { c.keepalive_timeout = absl::Seconds(1); });
  NodeOptions options = OptionsFor({relay.port()});
  options.keepalive_interval = absl::Milliseconds(150);
  NodeClient client(Identity::Generate(), options);
  absl::StatusOr<std::string> address = client.Connect(absl::Seconds(5));
  ASSERT_TRUE(address.ok()) << address.status();
  std::mutex mu;
  std::vector<std::string> got;
  std::thread::id callback_thread;
  client.Start([&](const ReceivedMessage& m) {
    if (m.payload == "first") {
      absl::SleepFor(absl::Milliseconds(2500));  // more than two relay keepalive timeouts
    }
    std::lock_guard<std::mutex> lock(mu);
    got.push_back(m.payload);
    callback_thread = std::this_thread::get_id();
  });
  NodeClient sender(Identity::Generate(), OptionsFor({}));
  for (const char* text : {"first", "second", "third"}) {
    ASSERT_TRUE(sender.SendBytes(*address, text).ok());
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (got.size() == 3 || absl::Now() > deadline) {
        break;
      }
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  client.Stop();
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_EQ(got, (std::vector<std::string>{"first", "second", "third"}));
  EXPECT_NE(callback_thread, std::this_thread::get_id());
  EXPECT_EQ(relay.Counter("keepalive_timeouts"), 0u);
  EXPECT_EQ(client.reconnects(), 0);
}

// Stop() from inside a callback returns (it used to abort: the callback ran on the
// thread Stop joined); the client is stopped and can be destroyed from outside.
TEST(NodeClientTest, StopFromACallback) {
  RelayFixture relay;
  NodeClient client(Identity::Generate(), OptionsFor({relay.port()}));
  absl::StatusOr<std::string> address = client.Connect(absl::Seconds(5));
  ASSERT_TRUE(address.ok()) << address.status();
  absl::Notification stopped;
  client.Start([&](const ReceivedMessage&) {
    client.Stop();
    stopped.Notify();
  });
  NodeClient sender(Identity::Generate(), OptionsFor({}));
  ASSERT_TRUE(sender.SendBytes(*address, "stop now").ok());
  ASSERT_TRUE(stopped.WaitForNotificationWithTimeout(absl::Seconds(10)));
  client.Stop();  // idempotent, and joins the dispatcher from here
  EXPECT_EQ(relay.WaitForCounter("sessions_ended", 1), 1u) << "the session ended";
  EXPECT_EQ(relay.Counter("disconnects_received"), 1u) << "with a Disconnect";
}

// Events: the address at start; when the relay goes away, the loss, the move to the
// next relay and the new address; with move_back_interval, the way back to the first
// relay when it returns, and its address.
TEST(NodeClientTest, EventsReportAddressesLossesAndMovesIncludingTheWayBack) {
  const uint16_t first_port = relay::testing::PickFreePortRange(1);
  auto first =
      std::make_unique<RelayFixture>(8, [&](RelayConfig& c) { c.listen.port = first_port; });
  RelayFixture second;
  NodeOptions options = OptionsFor({first_port, second.port()});
  options.move_back_interval = absl::Milliseconds(200);
  options.initial_backoff = absl::Milliseconds(20);
  NodeClient client(Identity::Generate(), options);
  absl::StatusOr<std::string> address = client.Connect(absl::Seconds(5));
  ASSERT_TRUE(address.ok()) << address.status();
  Recorder rec;
  client.Start(rec.Callbacks());
  ASSERT_TRUE(rec.WaitFor([&] { return rec.events.size() >= 1; }));
  {
    std::lock_guard<std::mutex> lock(rec.mu);
    EXPECT_EQ(rec.events[0].kind, NodeEvent::Kind::kAddress);
    EXPECT_EQ(rec.events[0].address, *address);
    EXPECT_FALSE(rec.events[0].changed);
  }
  first.reset();  // the first relay goes away: lost, moved, a new address
  ASSERT_TRUE(rec.WaitFor([&] { return rec.events.size() >= 4; })) << client.relay_moves();
  std::string second_address;
  {
    std::lock_guard<std::mutex> lock(rec.mu);
    EXPECT_EQ(rec.events[1].kind, NodeEvent::Kind::kRelayLost);
    EXPECT_EQ(rec.events[1].relay, absl::StrCat("127.0.0.1:", first_port));
    EXPECT_FALSE(rec.events[1].reason.empty());
    EXPECT_EQ(rec.events[2].kind, NodeEvent::Kind::kRelayMoved);
    EXPECT_EQ(rec.events[2].relay, absl::StrCat("127.0.0.1:", second.port()));
    EXPECT_EQ(rec.events[3].kind, NodeEvent::Kind::kAddress);
    EXPECT_TRUE(rec.events[3].changed);
    second_address = rec.events[3].address;
  }
  EXPECT_EQ(client.proxy_address(), second_address);
  // The first relay returns on its port: the node moves back to it.
  first = std::make_unique<RelayFixture>(8, [&](RelayConfig& c) { c.listen.port = first_port; });
  ASSERT_TRUE(rec.WaitFor([&] { return rec.events.size() >= 6; }));
  {
    std::lock_guard<std::mutex> lock(rec.mu);
    EXPECT_EQ(rec.events[4].kind, NodeEvent::Kind::kRelayMoved);
    EXPECT_EQ(rec.events[4].relay, absl::StrCat("127.0.0.1:", first_port));
    EXPECT_EQ(rec.events[5].kind, NodeEvent::Kind::kAddress);
    EXPECT_TRUE(rec.events[5].changed);
    for (std::thread::id id : rec.threads) {
      EXPECT_NE(id, std::this_thread::get_id());
    }
  }
  EXPECT_EQ(client.current_relay(), absl::StrCat("127.0.0.1:", first_port));
  EXPECT_EQ(second.WaitForCounter("sessions_ended", 1), 1u) << "it left the second relay";
  client.Stop();
}

// Sending reuses one connection per peer: 1,000 messages, one TCP connection (the relay
// accepted one peer), every message in order; after the relay closes an idle connection
// and after the node's own idle expiry, the next message opens a new one.
TEST(NodeClientTest, OneConnectionPerPeerIsReused) {
  RelayFixture relay(8, [](RelayConfig& c) { c.peer_idle_timeout = absl::Seconds(1); });
  NodeClient receiver(Identity::Generate(), OptionsFor({relay.port()}));
  absl::StatusOr<std::string> address = receiver.Connect(absl::Seconds(5));
  ASSERT_TRUE(address.ok()) << address.status();
  Recorder rec;
  receiver.Start(rec.Callbacks());
  NodeOptions options = OptionsFor({});
  options.peer_idle_timeout = absl::Seconds(30);
  NodeClient sender(Identity::Generate(), options);
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(sender.SendBytes(*address, absl::StrCat("m", i)).ok()) << i;
  }
  ASSERT_TRUE(rec.WaitFor([&] { return rec.messages.size() >= 1000; }));
  EXPECT_EQ(sender.peer_connections_opened(), 1u);
  EXPECT_EQ(relay.Counter("proxy_accepted"), 1u);
  {
    std::lock_guard<std::mutex> lock(rec.mu);
    for (int i = 0; i < 1000; ++i) {
      ASSERT_EQ(rec.messages[i], absl::StrCat("m", i));
    }
  }
  // The relay closes the idle connection (--peer_idle_timeout 1 s): the sender sees it
  // and the next message goes on a new connection.
  EXPECT_GE(relay.WaitForCounter("proxy_idle_timeouts", 1), 1u);
  for (int i = 0; i < 500 && sender.peer_connections_closed_by_relay() == 0; ++i) {
    absl::SleepFor(absl::Milliseconds(10));  // bounded: the sender sees the close
  }
  EXPECT_EQ(sender.peer_connections_closed_by_relay(), 1u);
  ASSERT_TRUE(sender.SendBytes(*address, "after the relay closed it").ok());
  ASSERT_TRUE(rec.WaitFor([&] { return rec.messages.size() >= 1001; }));
  EXPECT_EQ(sender.peer_connections_opened(), 2u);
  receiver.Stop();
}

// The node closes a peer connection it has not used for peer_idle_timeout (before the
// relay's --peer_idle_timeout would), and the next message opens a new one.
TEST(NodeClientTest, IdlePeerConnectionsExpire) {
  RelayFixture relay;  // --peer_idle_timeout 120 s: only the node's expiry applies
  NodeClient receiver(Identity::Generate(), OptionsFor({relay.port()}));
  absl::StatusOr<std::string> address = receiver.Connect(absl::Seconds(5));
  ASSERT_TRUE(address.ok()) << address.status();
  Recorder rec;
  receiver.Start(rec.Callbacks());
  NodeOptions quick = OptionsFor({});
  quick.peer_idle_timeout = absl::Milliseconds(100);
  NodeClient brief(Identity::Generate(), quick);
  ASSERT_TRUE(brief.SendBytes(*address, "one").ok());
  ASSERT_TRUE(rec.WaitFor([&] { return rec.messages.size() >= 1; }));
  // The expiry is time itself: wait past it (the sender looks at least every 100 ms).
  EXPECT_EQ(relay.WaitForCounter("proxy_closed", 1), 1u) << "the node closed it";
  ASSERT_TRUE(brief.SendBytes(*address, "two").ok());
  ASSERT_TRUE(rec.WaitFor([&] { return rec.messages.size() >= 2; }));
  EXPECT_EQ(brief.peer_connections_opened(), 2u);
  EXPECT_EQ(brief.peer_connections_closed_by_relay(), 0u);
  EXPECT_EQ(relay.Counter("proxy_idle_timeouts"), 0u);
  receiver.Stop();
}

// SendBytesAsync returns at once; a peer that takes nothing fills the queue and further
// sends are refused (back-pressure) instead of piling up; every completion runs once.
TEST(NodeClientTest, AsyncSendsReportBackPressureAndCompleteOnce) {
  // A "peer" that accepts in the kernel and never reads.
  absl::StatusOr<net::UniqueFd> sink = net::Listen("127.0.0.1", 0, false, 16);
  ASSERT_TRUE(sink.ok());
  const std::string address = absl::StrCat("127.0.0.1:", net::LocalPort(sink->get()));
  NodeOptions options = OptionsFor({});
  options.max_send_queue_bytes = 1u << 20;
  std::atomic<int> completed{0}, succeeded{0};
  int refused = 0, queued = 0;
  {
    NodeClient sender(Identity::Generate(), options);
    const std::string chunk(64 * 1024, 'x');
    for (int i = 0; i < 20000 && refused == 0; ++i) {
      absl::Status s = sender.SendBytesAsync(address, chunk, [&](absl::Status done) {
        completed.fetch_add(1);
        succeeded.fetch_add(done.ok() ? 1 : 0);
      });
      if (absl::IsResourceExhausted(s)) {
        ++refused;
      } else {
        ASSERT_TRUE(s.ok()) << s;
        ++queued;
      }
      if (i % 64 == 0) {
        absl::SleepFor(absl::Milliseconds(1));  // let the socket buffers fill
      }
    }
    EXPECT_EQ(refused, 1) << "the queue filled";
    // At least a queue's worth went in first, plus whatever the socket buffers took
    // meanwhile (maybe nothing, if the connection was not up yet): 1 MiB holds 15 frames
    // of a 64 KiB message with its header and signed envelope, not 16.
    EXPECT_GE(queued, 15);
  }  // the sender stops: what is still queued completes as cancelled
  EXPECT_EQ(completed.load(), queued) << "every completion ran, once";
  EXPECT_LE(succeeded.load(), queued);
}

TEST(NodeClientTest, FailsOverToTheSecondRelayWhenTheFirstIsDown) {
  RelayFixture relay;
  const uint16_t dead = relay::testing::PickFreePortRange(1);  // nobody listens there
  NodeClient client(Identity::Generate(), OptionsFor({dead, relay.port()}));
  absl::StatusOr<std::string> address = client.Connect(absl::Seconds(5));
  ASSERT_TRUE(address.ok()) << address.status();
  EXPECT_EQ(relay.Counter("sessions_started"), 1u);
}

TEST(NodeClientTest, ReportsUnreachableRelaysAndRefusals) {
  const uint16_t dead = relay::testing::PickFreePortRange(1);
  NodeClient lonely(Identity::Generate(), OptionsFor({dead}));
  absl::StatusOr<std::string> none = lonely.Connect(absl::Milliseconds(300));
  ASSERT_FALSE(none.ok());
  EXPECT_TRUE(absl::IsUnavailable(none.status()));
  EXPECT_NE(none.status().message().find("cannot reach any relay"), std::string::npos);

  RelayFixture relay(1);
  NodeClient first(Identity::Generate(), OptionsFor({relay.port()}));
  ASSERT_TRUE(first.Connect(absl::Seconds(5)).ok());
  NodeClient second(Identity::Generate(), OptionsFor({relay.port()}));
  absl::StatusOr<std::string> refused = second.Connect(absl::Seconds(5));
  ASSERT_FALSE(refused.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(refused.status())) << refused.status();
}

TEST(NodeClientTest, MessagesAreSignedAndCarryTheSendersProxyAddress) {
  RelayFixture relay;
  NodeClient receiver(Identity::Generate(), OptionsFor({relay.port()}));
  absl::StatusOr<std::string> to = receiver.Connect(absl::Seconds(5));
  ASSERT_TRUE(to.ok());
  absl::Notification got;
  wire::Message seen;
  receiver.Start([&](const ReceivedMessage& m) {
    if (!got.HasBeenNotified()) {
      seen = m.message;
      got.Notify();
    }
  });
  NodeClient sender(Identity::Generate(), OptionsFor({relay.port()}));
  absl::StatusOr<std::string> from = sender.Connect(absl::Seconds(5));
  ASSERT_TRUE(from.ok());
  ASSERT_TRUE(sender.SendBytes("tcp://" + *to, "signed hello").ok());
  ASSERT_TRUE(got.WaitForNotificationWithTimeout(absl::Seconds(10)));
  receiver.Stop();
  EXPECT_EQ(seen.sender().address(), "tcp://" + *from);
  EXPECT_TRUE(VerifyMessage(seen).ok());
}

// A relay that answers the ProxyRequest and then goes silent (frozen, or cut off without
// a reset): its TCP connection stays open, no Keepalive is ever answered.
class SilentRelay {
 public:
  SilentRelay() {
    listener_ = *net::Listen("127.0.0.1", 0, false);
    port_ = net::LocalPort(listener_.get());
    thread_ = std::thread([this] { Run(); });
  }
  ~SilentRelay() {
    stop_.store(true);
    thread_.join();
  }
  uint16_t port() const { return port_; }

 private:
  void Run() {
    const ControlCodec codec(kDefaultNetworkId, Identity::Generate(),
                             absl::StrCat("tcp://127.0.0.1:", port_));
    std::vector<net::UniqueFd> conns;
    while (!stop_.load()) {
      pollfd p{listener_.get(), POLLIN, 0};
      if (poll(&p, 1, 20) > 0) {
        net::UniqueFd c(accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (c.valid()) {
          wire::ProxyResponse response;
          response.set_proxy_address("127.0.0.1:1");
          std::string frame;
          codec.AppendMessage(kOpProxyResponse, response, 1, 0, true, &frame);
          (void)!write(c.get(), frame.data(), frame.size());  // then never a word
          conns.push_back(std::move(c));
        }
      }
    }
  }
  net::UniqueFd listener_;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

TEST(NodeClientTest, MovesToTheNextRelayWhenKeepalivesGoUnanswered) {
  SilentRelay frozen;
  RelayFixture live;
  NodeOptions options = OptionsFor({frozen.port(), live.port()});
  options.keepalive_interval = absl::Milliseconds(100);
  options.max_missed_keepalives = 3;
  NodeClient client(Identity::Generate(), options);
  absl::StatusOr<std::string> address = client.Connect(absl::Seconds(5));
  ASSERT_TRUE(address.ok());
  EXPECT_EQ(client.current_relay(), absl::StrCat("127.0.0.1:", frozen.port()));
  const absl::Time start = absl::Now();
  client.Start([](const ReceivedMessage&) {});
  const absl::Time deadline = start + absl::Seconds(10);
  while (client.reconnects() < 1 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  const absl::Duration moved_after = absl::Now() - start;
  EXPECT_EQ(client.relay_moves(), 1);
  EXPECT_EQ(client.current_relay(), absl::StrCat("127.0.0.1:", live.port()));
  EXPECT_EQ(live.Counter("sessions_started"), 1u);
  // Three unanswered Keepalives at 100 ms, then the move: well under a second.
  EXPECT_LT(moved_after, absl::Seconds(2)) << moved_after;
  client.Stop();
}

}  // namespace
}  // namespace relay::node
