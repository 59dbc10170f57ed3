// Attacks on the real relay-server binary, each at a small scale and bounded in time, each
// with innocent nodes beside it: the innocents' frames must keep arriving whole, the
// attacker must be cut off and counted, and the relay's memory and fds must stay bounded.
// `make attack` runs the same attacks at full scale and measures rates (docs/RELIABILITY.md).
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "core/control_codec.h"
#include "gtest/gtest.h"
#include "tests/adversarial/attack_helpers.h"
#include "tests/testing/free_ports.h"
#include "tests/testing/relay_process.h"
#include "tests/testing/test_node.h"

namespace relay::testing {
namespace {

TEST(AttacksTest, HeaderOnlyFramesFreezeNobodyAndAreDroppedAtTheirDeadline) {
  RelayProcess relay;
  ASSERT_TRUE(relay.Start({PortRange(16), "--threads=2", "--frame_timeout=2s", "--quiet"}));
  Innocents innocents(relay.port(), 4);
  ASSERT_TRUE(innocents.Flow(5));
  const long rss_before = relay.RssKib();
  // 300 connections (3 KB in all), each announcing a 16 MiB frame and sending nothing
  // more, spread over the innocents' own proxy addresses.
  std::vector<net::UniqueFd> attackers;
  for (int i = 0; i < 300; ++i) {
    absl::StatusOr<net::UniqueFd> fd = ConnectTo(innocents.address(i % innocents.size()));
    ASSERT_TRUE(fd.ok());
    ASSERT_TRUE(WriteAll(fd->get(), Header(16u << 20)));
    attackers.push_back(std::move(*fd));
  }
  EXPECT_TRUE(innocents.Flow(20)) << "innocent frames stopped during the attack";
  EXPECT_LT(relay.RssKib() - rss_before, kRssScale * 64 * 1024)
      << "a declared length reserved memory";
  // The attackers are cut off at --frame_timeout; the innocents go on.
  for (net::UniqueFd& fd : attackers) {
    ASSERT_TRUE(WaitForClose(fd.get(), absl::Seconds(20)));
  }
  EXPECT_EQ(WaitForCounter(relay, "proxy_frame_timeouts", 300), 300u);
  EXPECT_TRUE(innocents.Flow(5));
  EXPECT_EQ(relay.Stop(), 0);
}

TEST(AttacksTest, ManySendersOfLargeFramesIntoOneNodeNeverFreezeIt) {
  // 128 senders of 1 MiB frames into one node (relay-load) whose staging share is 8 MiB:
  // frames larger than a peer socket's buffer arrive in pieces, and the share fills with
  // the partial frames of many senders. Their session's head must always be able to
  // finish its frame, or the share never drains and the node gets nothing more, for as
  // long as the senders wait (make bench found it: 256 senders x 1 MiB froze a node at its
  // 32 MiB share). relay-load prints the frames delivered in each second: none may be 0.
  RelayProcess relay;
  ASSERT_TRUE(relay.Start({PortRange(8), "--threads=1", "--max_frame_bytes=1048576",
                           "--stage_bytes=65536", "--session_stage_bytes=8388608", "--quiet"}));
  std::string out;
  EXPECT_EQ(RelayProcess::RunProgram("relay-load",
                                     {absl::StrCat("--relay=127.0.0.1:", relay.port()), "--nodes=1",
                                      "--senders=128", "--frame_bytes=1048576", "--seconds=4"},
                                     &out),
            0)
      << out;
  int seconds = 0;
  for (absl::string_view line : absl::StrSplit(out, '\n')) {
    const size_t at = line.find(" frames/s=");
    if (absl::StartsWith(line, "relay-load: t=") && at != absl::string_view::npos) {
      ++seconds;
      EXPECT_FALSE(absl::StartsWith(line.substr(at + 10), "0 "))
          << "no frame reached the node in second " << seconds << ":\n"
          << out;
    }
  }
  EXPECT_GE(seconds, 3) << out;
  EXPECT_EQ(relay.Counters()["proxy_frame_timeouts"], 0u);
  EXPECT_EQ(relay.Stop(), 0);
}

TEST(AttacksTest, NodesThatNeverReadAreClosedAndStarveNobody) {
  RelayProcess relay;
  // Shares small enough that four pushers fill one: 1 MiB frames, 2 MiB + 10 per session.
  ASSERT_TRUE(
      relay.Start({PortRange(32), "--threads=2", "--node_write_timeout=2s",
                   "--max_frame_bytes=1048576", "--session_stage_bytes=2097162", "--quiet"}));
  Innocents innocents(relay.port(), 4);
  ASSERT_TRUE(innocents.Flow(3));
  // 4 nodes that never read; 4 peers each push 64 KiB frames at them without pause.
  std::vector<std::unique_ptr<TestNode>> sinks;
  std::vector<std::thread> pushers;
  std::atomic<bool> stop{false};
  for (int n = 0; n < 4; ++n) {
    auto node = std::make_unique<TestNode>();
    ASSERT_TRUE(node->Connect("127.0.0.1", relay.port()).ok());
    absl::StatusOr<std::string> address = node->RequestProxy();
    ASSERT_TRUE(address.ok());
    for (int p = 0; p < 4; ++p) {
      pushers.emplace_back([address = *address, &stop] {
        absl::StatusOr<net::UniqueFd> fd = ConnectTo(address);
        const std::string frame = MakeFrame(std::string(64 * 1024, 'x'));
        while (fd.ok() && !stop.load() && WriteAll(fd->get(), frame)) {
        }
      });
    }
    sinks.push_back(std::move(node));
  }
  EXPECT_TRUE(innocents.Flow(20)) << "innocent frames stopped while sinks did not read";
  // The relay closes each sink after --node_write_timeout, and drops its peers. (Seen
  // without reading: reading would make the sink a node that reads.)
  for (auto& sink : sinks) {
    EXPECT_TRUE(WaitForHangup(sink->fd(), absl::Seconds(30)));
  }
  for (std::thread& t : pushers) {
    t.join();  // their connections were closed by the relay
  }
  EXPECT_EQ(WaitForCounter(relay, "node_write_timeouts", 4), 4u);
  std::map<std::string, uint64_t> c = relay.Counters();
  EXPECT_GT(c["proxy_session_share_waits"], 0u) << "the sinks' peers should have hit the share";
  EXPECT_TRUE(innocents.Flow(5));
  EXPECT_EQ(relay.Stop(), 0);
}

TEST(AttacksTest, ThrowAwayIdentitiesCannotLockNewNodesOut) {
  RelayProcess relay;
  ASSERT_TRUE(relay.Start({PortRange(20), "--threads=1", "--proxy_requests_per_ip=20", "--quiet"}));
  // One client (127.0.0.2) claims addresses with fresh identities as fast as it can.
  int claimed = 0, refused = 0;
  const absl::Time start = absl::Now();
  for (int i = 0; i < 100; ++i) {
    TestNode burner;
    ASSERT_TRUE(burner.ConnectFrom("127.0.0.2", "127.0.0.1", relay.port()).ok());
    absl::StatusOr<std::string> a = burner.RequestProxy();
    (a.ok() ? claimed : refused)++;
  }
  // The bucket holds 40 and refills 20 per second while the loop runs (slowly under a
  // sanitizer): that many and no more.
  const double allowed = 40 + 20 * absl::ToDoubleSeconds(absl::Now() - start) + 1;
  EXPECT_LE(claimed, allowed) << "the per-IP claim rate (20/s, bursts of 40) did not hold";
  EXPECT_GT(refused, 0) << "the burst was cut";
  // A new node from another address gets an address at once: free ports first, then
  // the ports of the oldest remembered leases.
  Innocents innocents(relay.port(), 10);
  ASSERT_EQ(innocents.size(), 10u);
  EXPECT_TRUE(innocents.Flow(2));
  std::map<std::string, uint64_t> c = relay.Counters();
  EXPECT_EQ(c["limit_proxy_requests_per_ip"], static_cast<uint64_t>(refused));
  // 20 ports: every claim past the 20th took the port of the oldest remembered lease.
  EXPECT_EQ(c["leases_evicted"], static_cast<uint64_t>(std::max(0, claimed + 10 - 20)));
  EXPECT_EQ(c["pool_exhausted"], 0u);
  EXPECT_EQ(relay.Stop(), 0);
}

TEST(AttacksTest, IdleAndTricklingConnectionsAreTimedOut) {
  RelayProcess relay;
  ASSERT_TRUE(
      relay.Start({PortRange(8), "--threads=2", "--frame_timeout=1s", "--frame_min_rate=1000",
                   "--peer_idle_timeout=2s", "--first_frame_timeout=1s", "--quiet"}));
  Innocents innocents(relay.port(), 2);
  std::vector<net::UniqueFd> silent_mains, idle_peers, lorises;
  for (int i = 0; i < 50; ++i) {
    absl::StatusOr<net::UniqueFd> m = ConnectTo(absl::StrCat("127.0.0.1:", relay.port()));
    absl::StatusOr<net::UniqueFd> p = ConnectTo(innocents.address(0));
    absl::StatusOr<net::UniqueFd> l = ConnectTo(innocents.address(1));
    ASSERT_TRUE(m.ok() && p.ok() && l.ok());
    ASSERT_TRUE(WriteAll(l->get(), Header(100000)));
    silent_mains.push_back(std::move(*m));
    idle_peers.push_back(std::move(*p));
    lorises.push_back(std::move(*l));
  }
  // The lorises trickle 1 byte every 200 ms (5 B/s, under --frame_min_rate).
  for (int t = 0; t < 10; ++t) {
    for (net::UniqueFd& l : lorises) {
      WriteAll(l.get(), "x");
    }
    EXPECT_TRUE(innocents.Flow(1));
    absl::SleepFor(absl::Milliseconds(200));
  }
  for (auto* group : {&silent_mains, &idle_peers, &lorises}) {
    for (net::UniqueFd& fd : *group) {
      ASSERT_TRUE(WaitForClose(fd.get(), absl::Seconds(20)));
    }
  }
  EXPECT_EQ(WaitForCounter(relay, "first_frame_timeouts", 50), 50u);
  std::map<std::string, uint64_t> c = relay.Counters();
  EXPECT_EQ(c["proxy_frame_timeouts"], 50u);
  EXPECT_GE(c["proxy_idle_timeouts"], 50u);
  EXPECT_EQ(relay.Stop(), 0);
}

TEST(AttacksTest, PartialControlFramesHoldBoundedMemory) {
  RelayProcess relay;
  ASSERT_TRUE(relay.Start({PortRange(8), "--threads=2", "--control_budget=4194304", "--quiet"}));
  Innocents innocents(relay.port(), 2);
  const long rss_before = relay.RssKib();
  // 300 main connections each send 64 KiB - 1 of a control frame and stop.
  const std::string partial =
      (Header(64 * 1024 - kFrameHeaderSize) + std::string(64 * 1024, 'c')).substr(0, 64 * 1024 - 1);
  std::vector<net::UniqueFd> holders;
  for (int i = 0; i < 300; ++i) {
    absl::StatusOr<net::UniqueFd> fd = ConnectTo(absl::StrCat("127.0.0.1:", relay.port()));
    ASSERT_TRUE(fd.ok());
    WriteAll(fd->get(), partial);
    holders.push_back(std::move(*fd));
  }
  EXPECT_TRUE(innocents.Flow(5));
  EXPECT_GT(WaitForCounter(relay, "main_control_budget", 151), 150u)
      << "2 reactors x 4 MiB hold about 128 of 300";
  EXPECT_LT(relay.RssKib() - rss_before, kRssScale * 24 * 1024);
  holders.clear();
  EXPECT_TRUE(innocents.Flow(3));
  EXPECT_EQ(relay.Stop(), 0);
}

TEST(AttacksTest, OutOfFdsExistingSessionsFlowAndTheBacklogIsServedLater) {
  RelayProcess relay;
  ASSERT_TRUE(relay.StartWithFdLimit(
      {PortRange(16), "--threads=1", "--fd_reserve=32", "--accept_backoff=50ms", "--quiet"}, 200));
  Innocents innocents(relay.port(), 3);
  ASSERT_TRUE(innocents.Flow(3));
  // Open main connections until the relay runs into its fd reserve (few wait behind).
  std::vector<net::UniqueFd> hogs;
  for (int i = 0; i < 250 && (i < 150 || i % 5 != 0 || relay.Counters()["accept_errors"] == 0);
       ++i) {
    absl::StatusOr<net::UniqueFd> fd = ConnectTo(absl::StrCat("127.0.0.1:", relay.port()));
    ASSERT_TRUE(fd.ok());
    hogs.push_back(std::move(*fd));
  }
  EXPECT_GT(WaitForCounter(relay, "accept_errors", 1), 0u);
  EXPECT_LE(relay.OpenFds(), 200);
  // Existing sessions keep forwarding (their pipes come from the reserve).
  EXPECT_TRUE(innocents.Flow(20));
  // Nodes that arrive now wait in the backlog: none is accepted and closed at the reserve
  // (4 of 10 were). Once the hogs go, each is served without a new arrival.
  std::vector<std::unique_ptr<TestNode>> late;
  for (int i = 0; i < 10; ++i) {
    late.push_back(std::make_unique<TestNode>());
    ASSERT_TRUE(late.back()->Connect("127.0.0.1", relay.port()).ok());
  }
  absl::SleepFor(absl::Seconds(1));  // twenty backoffs: closed ones would show by now
  for (auto& node : late) {
    EXPECT_FALSE(WaitForHangup(node->fd(), absl::ZeroDuration())) << "closed at the reserve";
  }
  hogs.clear();
  for (auto& node : late) {
    absl::StatusOr<std::string> address = node->RequestProxy(absl::Seconds(10));
    EXPECT_TRUE(address.ok()) << address.status();
  }
  EXPECT_EQ(relay.Stop(), 0);
}

TEST(AttacksTest, ATakeoverStormIsDampedAndLogged) {
  RelayProcess relay;
  ASSERT_TRUE(relay.Start({PortRange(8), "--threads=2", "--takeover_interval=5s"}));
  TestNode first;
  absl::StatusOr<std::string> address = first.ConnectAndClaim(relay.port());
  ASSERT_TRUE(address.ok());
  // The first takeover by the same id works at once (a node that reconnected).
  TestNode second(first.connection_id());
  absl::StatusOr<std::string> again = second.ConnectAndClaim(relay.port());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *address);
  EXPECT_TRUE(WaitForClose(first.fd(), absl::Seconds(5)));
  // 50 more within the window are refused with Disconnect.
  for (int i = 0; i < 50; ++i) {
    TestNode thief(first.connection_id());
    ASSERT_TRUE(thief.Connect("127.0.0.1", relay.port()).ok());
    absl::StatusOr<std::string> r = thief.RequestProxy();
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().message(), "disconnect");
  }
  EXPECT_EQ(WaitForCounter(relay, "takeover_damped", 50), 50u);
  std::map<std::string, uint64_t> c = relay.Counters();
  EXPECT_EQ(c["main_taken_over"], 1u);
  // The holder still has its session; one rate-limited log line names both addresses.
  ASSERT_TRUE(second.Send(kOpPing).ok());
  absl::StatusOr<wire::Message> pong = second.ReadMessage();
  ASSERT_TRUE(pong.ok());
  EXPECT_EQ(pong->opcode(), kOpPong);
  const std::string log = relay.Stderr();
  EXPECT_NE(log.find("takeover of a session by 127.0.0.1:"), std::string::npos) << log;
  EXPECT_NE(log.find("current holder 127.0.0.1:"), std::string::npos) << log;
  EXPECT_LE(LogLines(log), 1) << log;  // one refusal line for 50 refusals
  EXPECT_EQ(relay.Stop(), 0);
}

TEST(AttacksTest, AFloodOfBadInputCostsOneLogLinePerInterval) {
  RelayProcess relay;
  ASSERT_TRUE(relay.Start({PortRange(8), "--threads=2", "--log_interval=60s"}));
  wire::ID bad_utf8;
  bad_utf8.set_net_key("k");
  bad_utf8.set_address("tcp://\xc3\x28:1");
  bad_utf8.set_connection_id("id");
  const std::string frame = MakeControlFrame(kOpProxyRequest, "", bad_utf8);
  wire::ID no_key = bad_utf8;
  no_key.set_address("tcp://1.2.3.4:1");
  no_key.clear_net_key();
  const std::string other = MakeControlFrame(kOpPing, "", no_key);
  for (int i = 0; i < 500; ++i) {
    absl::StatusOr<net::UniqueFd> fd = ConnectTo(absl::StrCat("127.0.0.1:", relay.port()));
    ASSERT_TRUE(fd.ok());
    WriteAll(fd->get(), i % 2 == 0 ? frame : other);
    WaitForClose(fd->get(), absl::Seconds(5));
  }
  EXPECT_EQ(WaitForCounter(relay, "main_protocol_errors", 500), 500u);
  const std::string log = relay.Stderr();
  // One line per kind of bad input (protobuf's own complaint goes through the same
  // limiter).
  EXPECT_LE(LogLines(log), 3) << log;
  EXPECT_NE(log.find("invalid control message from 127.0.0.1:"), std::string::npos) << log;
  EXPECT_EQ(relay.Stop(), 0);
}

// A main connection's control frames are handled a few per reactor turn (and a few
// hundred per turn from all connections): frames that wait are answered on later turns,
// with no more bytes arriving, and the reactor forwards between them.
TEST(AttacksTest, AControlBurstIsAnsweredWholeOverManyTurns) {
  RelayProcess relay;
  ASSERT_TRUE(relay.Start(
      {PortRange(4), "--threads=1", "--control_rate=0", "--control_per_ip=0", "--quiet"}));
  TestNode innocent;
  absl::StatusOr<std::string> address = innocent.ConnectAndClaim(relay.port());
  ASSERT_TRUE(address.ok()) << address.status();
  absl::StatusOr<net::UniqueFd> peer = ConnectTo(*address);
  ASSERT_TRUE(peer.ok());
  constexpr int kBurst = 3000;
  TestNode burst;
  ASSERT_TRUE(burst.Connect("127.0.0.1", relay.port()).ok());
  std::string frames;
  for (int i = 0; i < kBurst; ++i) {
    frames += MakeControlFrame(kOpKeepalive, "", burst.id(), i + 1);
  }
  std::thread writer([&] { WriteAll(burst.fd(), frames); });  // then nothing more
  int answered = 0;
  for (; answered < kBurst; ++answered) {
    absl::StatusOr<wire::Message> reply = burst.ReadMessage(absl::Seconds(5));
    if (!reply.ok()) {
      break;
    }
    if (answered % 500 == 0) {  // the innocent's frames go on meanwhile
      ASSERT_TRUE(WriteAll(peer->get(), MakeFrame(absl::StrCat("frame ", answered))));
      absl::StatusOr<Frame> f = innocent.ReadDataFrame(absl::Seconds(5));
      ASSERT_TRUE(f.ok()) << f.status();
    }
  }
  writer.join();
  EXPECT_EQ(answered, kBurst);
  EXPECT_GE(relay.Counters()["control_messages"], uint64_t{kBurst});
  EXPECT_EQ(relay.Stop(), 0);
}

}  // namespace
}  // namespace relay::testing
