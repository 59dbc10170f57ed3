// The staging budget (memory bound whatever peers send, a session's head frame reserved)
// and the deadlines of proxy connections (frame minimum rate, idle), on a fake clock.
#include <sys/socket.h>

#include <algorithm>
#include <memory>
#include <thread>
#include <vector>

#include "core/control_codec.h"
#include "gtest/gtest.h"
#include "tests/testing/relay_fixture.h"

namespace relay::testing {
namespace {

std::string Filled(size_t n, char c) { return std::string(n, c); }

// Budget = one 1 MiB frame + one 64 KiB stage: two large frames cannot be staged at once.
void OneLargeFrameBudget(RelayConfig& c) {
  c.threads = 1;
  c.max_frame_bytes = 1 << 20;
  c.stage_bytes = 64 * 1024;
  c.stage_budget_bytes = (1 << 20) + kFrameHeaderSize + 64 * 1024;
}

// Two senders to one node: A begins a 1 MiB frame and stops halfway (its frame is the
// session's head: the rest of it is reserved), then B's large frame stages what is left of
// the share and waits for memory.
struct HalfFrameAndAWaiter {
  std::unique_ptr<TestNode> node;
  net::UniqueFd a, b;
  std::string frame_a = MakeFrame(Filled(1 << 20, 'a'));
  std::string frame_b = MakeFrame(Filled((1 << 20) - 100, 'b'));
  std::thread writer;  // writes frame_b; join it

  void Start(RelayFixture& relay) {
    std::string address;
    node = relay.NodeWithAddress(&address);
    const absl::Status connected = ConnectTwo(address, &a, &b);
    ASSERT_TRUE(connected.ok()) << connected;
    ASSERT_TRUE(WriteAll(a.get(), absl::string_view(frame_a).substr(0, frame_a.size() / 2)));
    writer = std::thread([this] { WriteAll(b.get(), frame_b); });
    EXPECT_GE(relay.WaitForCounter("proxy_session_share_waits", 1), 1u);
  }
  ~HalfFrameAndAWaiter() {
    if (writer.joinable()) {
      shutdown(b.get(), SHUT_RDWR);  // a failed test: unblock the writer
      writer.join();
    }
  }
};

TEST(StagingBudgetTest, AFrameThatDoesNotFitTheBudgetWaitsAndThenArrivesWhole) {
  RelayFixture relay(8, OneLargeFrameBudget);
  HalfFrameAndAWaiter t;
  ASSERT_NO_FATAL_FAILURE(t.Start(relay));
  // A finishes; its frame goes out and frees the budget; then B's frame arrives: B waited,
  // it was not dropped.
  ASSERT_TRUE(WriteAll(t.a.get(), absl::string_view(t.frame_a).substr(t.frame_a.size() / 2)));
  absl::StatusOr<Frame> f = t.node->ReadDataFrame(absl::Seconds(20));
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->payload, Filled(1 << 20, 'a'));
  f = t.node->ReadDataFrame(absl::Seconds(20));
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->payload, Filled((1 << 20) - 100, 'b'));
  t.writer.join();
  EXPECT_EQ(relay.Counter("proxy_closed"), 0u);
}

// Budget 512 KiB (384 KiB once a session holds more than a 64 KiB stage), frames up to
// 128 KiB: a few partial frames fill it.
void SmallBudget(RelayConfig& c) {
  c.threads = 1;
  c.max_frame_bytes = 128 * 1024;
  c.stage_bytes = 64 * 1024;
  c.stage_budget_bytes = 512 * 1024;
}

// Waits (bounded) until the relay's reactors hold at least `bytes` staged; returns the
// last amount seen.
uint64_t WaitForStaged(RelayFixture& relay, uint64_t bytes) {
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  uint64_t staged = 0;
  do {
    absl::StatusOr<std::vector<Shard::Snapshot>> snap =
        relay.server().Snapshot(absl::Seconds(5));
    staged = 0;
    for (const Shard::Snapshot& s : snap.ok() ? *snap : std::vector<Shard::Snapshot>()) {
      staged += s.staged_bytes;
    }
    if (staged >= bytes) {
      break;
    }
    absl::SleepFor(absl::Milliseconds(5));
  } while (absl::Now() < deadline);
  return staged;
}

TEST(StagingBudgetTest, ASenderStalledInsideAFrameDoesNotHoldBackOtherNodesFrames) {
  // Five senders, each to a node of its own, send 96 KiB of a 120 KiB frame (480 KiB of
  // the 512). Then S, to a sixth node, sends 100 KiB of its 120 KiB frame and stops: it is
  // the first to find the budget full, is let finish beyond it, and waits for bytes S
  // does not send. The five then send the rest of their frames: they are let finish
  // beside S, within the overdraft. (Before, one frame at a time finished beyond the
  // budget, and S held that place until its frame deadline, over 10 s: one slow sender
  // stopped its reactor's forwarding, the "second of silence" of make bench's 1,000 nodes
  // x 1 MiB row.)
  RelayFixture relay(8, SmallBudget);
  constexpr int kFillers = 5;
  constexpr size_t kPayload = 120 * 1024;
  constexpr size_t kFirstPart = 96 * 1024;
  std::vector<std::unique_ptr<TestNode>> nodes;
  std::vector<net::UniqueFd> senders;
  std::vector<std::string> frames;
  for (int i = 0; i <= kFillers; ++i) {  // the last one is S
    std::string address;
    nodes.push_back(relay.NodeWithAddress(&address));
    absl::StatusOr<net::UniqueFd> fd = ConnectTo(address);
    ASSERT_TRUE(fd.ok()) << fd.status();
    senders.push_back(std::move(*fd));
    frames.push_back(MakeFrame(Filled(kPayload, static_cast<char>('a' + i))));
  }
  for (int i = 0; i < kFillers; ++i) {
    ASSERT_TRUE(WriteAll(senders[i].get(), absl::string_view(frames[i]).substr(0, kFirstPart)));
  }
  ASSERT_GE(WaitForStaged(relay, kFillers * kFirstPart), kFillers * kFirstPart);
  const size_t s_part = 100 * 1024;
  ASSERT_TRUE(
      WriteAll(senders[kFillers].get(), absl::string_view(frames[kFillers]).substr(0, s_part)));
  ASSERT_GE(WaitForStaged(relay, kFillers * kFirstPart + s_part), kFillers * kFirstPart + s_part);
  for (int i = 0; i < kFillers; ++i) {
    ASSERT_TRUE(WriteAll(senders[i].get(), absl::string_view(frames[i]).substr(kFirstPart)));
  }
  for (int i = 0; i < kFillers; ++i) {
    absl::StatusOr<Frame> f = nodes[i]->ReadDataFrame(absl::Seconds(5));
    ASSERT_TRUE(f.ok()) << "node " << i << ": " << f.status();
    EXPECT_EQ(f->payload, Filled(kPayload, static_cast<char>('a' + i)));
  }
  EXPECT_GT(relay.Counter("stage_overdraft_bytes"), 0u);  // they finished beyond the budget
  EXPECT_EQ(relay.Counter("proxy_frame_timeouts"), 0u);   // S is still there, mid-frame
  ASSERT_TRUE(
      WriteAll(senders[kFillers].get(), absl::string_view(frames[kFillers]).substr(s_part)));
  absl::StatusOr<Frame> f = nodes[kFillers]->ReadDataFrame(absl::Seconds(5));
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->payload, Filled(kPayload, static_cast<char>('a' + kFillers)));
  EXPECT_EQ(relay.Counter("proxy_closed"), 0u);
}

// A Ping answered proves that the relay's reactor ran a whole turn (and its timers)
// after the clock moved. Data frames that arrive first are kept in *data.
void RoundTrip(TestNode* node, std::vector<std::string>* data = nullptr) {
  ASSERT_TRUE(node->Send(kOpPing).ok());
  for (int i = 0; i < 100; ++i) {
    absl::StatusOr<Frame> f = ReadFrame(node->fd(), absl::Seconds(5));
    ASSERT_TRUE(f.ok()) << f.status();
    wire::Message m;
    if (m.ParseFromString(f->payload) && m.opcode() == kOpPong) {
      return;
    }
    ASSERT_NE(data, nullptr) << "unexpected data frame";
    data->push_back(f->payload);
  }
  FAIL() << "no Pong";
}

TEST(StagingBudgetTest, ASenderStalledInsideAFrameIsDroppedAtItsDeadline) {
  FakeClock clock;
  // Copy staging, so the test can see (proxy_copied_bytes) that the relay has read the
  // frame's first bytes, and started its deadline, before the clock moves: a Pong alone
  // does not prove it (the peer is accepted in one turn and read in a later one).
  RelayFixture relay(
      8,
      [](RelayConfig& c) {
        c.threads = 1;
        c.forward_mode = ForwardMode::kCopy;
        c.frame_stall_timeout = absl::Seconds(30);  // the rate deadline comes first
      },
      &clock);
  std::string address;
  auto node = relay.NodeWithAddress(&address);
  absl::StatusOr<net::UniqueFd> staller = ConnectTo(address);
  absl::StatusOr<net::UniqueFd> other = ConnectTo(address);
  ASSERT_TRUE(staller.ok() && other.ok());
  const std::string frame = MakeFrame(Filled(100000, 's'));
  ASSERT_TRUE(WriteAll(staller->get(), absl::string_view(frame).substr(0, 5000)));
  ASSERT_EQ(relay.WaitForCounter("proxy_copied_bytes", 5000), 5000u);
  RoundTrip(node.get());

  // Deadline: --frame_timeout (10 s) + 5000 bytes / 64 KiB/s. At 9 s it is still there.
  clock.Advance(absl::Seconds(9));
  RoundTrip(node.get());
  RoundTrip(node.get());
  EXPECT_EQ(relay.Counter("proxy_frame_timeouts"), 0u);
  clock.Advance(absl::Seconds(2));
  EXPECT_EQ(relay.WaitForCounter("proxy_frame_timeouts", 1), 1u);
  EXPECT_TRUE(WaitForClose(staller->get(), absl::Seconds(5)));
  // Nothing of the stalled frame reached the node, and the stream goes on whole.
  ASSERT_TRUE(WriteAll(other->get(), MakeFrame("after the stall")));
  absl::StatusOr<Frame> f = node->ReadDataFrame();
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->payload, "after the stall");
  EXPECT_EQ(relay.Counter("proxy_truncated_frames"), 1u);
}

TEST(StagingBudgetTest, ASenderWaitingForStagingMemoryIsNotBlamedByItsDeadline) {
  // A stalls halfway through its frame; B's frame waits for memory. 30 s later A is past
  // its deadline and dropped, but B is not: the relay stopped reading B, B did not stop
  // sending. B's frame then arrives whole.
  FakeClock clock;
  RelayFixture relay(8, OneLargeFrameBudget, &clock);
  HalfFrameAndAWaiter t;
  ASSERT_NO_FATAL_FAILURE(t.Start(relay));
  clock.Advance(absl::Seconds(30));
  std::vector<std::string> data;
  ASSERT_NO_FATAL_FAILURE(RoundTrip(t.node.get(), &data));
  EXPECT_EQ(relay.WaitForCounter("proxy_frame_timeouts", 1), 1u);  // A, stalled
  EXPECT_TRUE(WaitForClose(t.a.get(), absl::Seconds(5)));
  absl::StatusOr<Frame> f = t.node->ReadDataFrame(absl::Seconds(20));
  t.writer.join();
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->payload, Filled((1 << 20) - 100, 'b'));
  EXPECT_TRUE(data.empty());
  EXPECT_EQ(relay.Counter("proxy_frame_timeouts"), 1u);
}

TEST(StagingBudgetTest, ATrickleBelowTheMinimumRateIsDroppedAnHonestSlowSenderIsNot) {
  FakeClock clock;
  RelayFixture relay(
      8, [](RelayConfig& c) { c.threads = 1; }, &clock);
  std::string address;
  auto node = relay.NodeWithAddress(&address);
  absl::StatusOr<net::UniqueFd> loris = ConnectTo(address);
  absl::StatusOr<net::UniqueFd> honest = ConnectTo(address);
  ASSERT_TRUE(loris.ok() && honest.ok());
  const std::string big = MakeFrame(Filled(1 << 20, 'l'));
  const std::string slow = MakeFrame(Filled(600 * 1024, 'h'));
  // The loris sends its header, then one byte per second; the honest sender 100 KiB per
  // second (above --frame_min_rate, 64 KiB/s).
  ASSERT_TRUE(WriteAll(loris->get(), absl::string_view(big).substr(0, kFrameHeaderSize)));
  size_t sent_slow = 0;
  std::vector<std::string> data;
  for (int second = 0; second < 12; ++second) {
    if (second < 9) {
      ASSERT_TRUE(
          WriteAll(loris->get(), absl::string_view(big).substr(kFrameHeaderSize + second, 1)));
    }
    const size_t n = std::min<size_t>(100 * 1024, slow.size() - sent_slow);
    ASSERT_TRUE(WriteAll(honest->get(), absl::string_view(slow).substr(sent_slow, n)));
    sent_slow += n;
    ASSERT_NO_FATAL_FAILURE(RoundTrip(node.get(), &data));
    clock.Advance(absl::Seconds(1));
    ASSERT_NO_FATAL_FAILURE(RoundTrip(node.get(), &data));
    if (second < 9) {
      EXPECT_EQ(relay.Counter("proxy_frame_timeouts"), 0u) << "dropped early, at " << second;
    }
  }
  // 9 bytes bought 9/65536 s: the loris is dropped at about 10 s.
  EXPECT_EQ(relay.WaitForCounter("proxy_frame_timeouts", 1), 1u);
  EXPECT_TRUE(WaitForClose(loris->get(), absl::Seconds(5)));
  ASSERT_EQ(data.size(), 1u);
  EXPECT_EQ(data[0], Filled(600 * 1024, 'h'));
  EXPECT_EQ(relay.Counter("proxy_frame_timeouts"), 1u);
}

TEST(StagingBudgetTest, APeerThatNeverSendsIsClosedAfterTheIdleTimeout) {
  FakeClock clock;
  RelayFixture relay(
      8, [](RelayConfig& c) { c.threads = 1; }, &clock);
  std::string address;
  auto node = relay.NodeWithAddress(&address);
  absl::StatusOr<net::UniqueFd> idle = ConnectTo(address);
  absl::StatusOr<net::UniqueFd> busy = ConnectTo(address);
  ASSERT_TRUE(idle.ok() && busy.ok());
  RoundTrip(node.get());
  for (int i = 0; i < 4; ++i) {  // 4 x 30 s; busy sends a frame every 30 s
    ASSERT_TRUE(WriteAll(busy->get(), MakeFrame("tick")));
    absl::StatusOr<Frame> f = node->ReadDataFrame();
    ASSERT_TRUE(f.ok()) << f.status();
    clock.Advance(absl::Seconds(30));
    RoundTrip(node.get());
  }
  clock.Advance(absl::Seconds(1));  // 121 s: past --peer_idle_timeout (120 s)
  EXPECT_EQ(relay.WaitForCounter("proxy_idle_timeouts", 1), 1u);
  EXPECT_TRUE(WaitForClose(idle->get(), absl::Seconds(5)));
  ASSERT_TRUE(WriteAll(busy->get(), MakeFrame("still here")));
  absl::StatusOr<Frame> f = node->ReadDataFrame();
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->payload, "still here");
  EXPECT_EQ(relay.Counter("proxy_idle_timeouts"), 1u);
}

}  // namespace
}  // namespace relay::testing
