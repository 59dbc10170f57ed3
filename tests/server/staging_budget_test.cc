// The reactor-wide staging budget (memory bound whatever peers send) and the stall
// timeout for senders that stop in the middle of a frame.
#include <thread>

#include "core/control_codec.h"
#include "gtest/gtest.h"
#include "tests/testing/relay_fixture.h"

namespace relay::testing {
namespace {

std::string Filled(size_t n, char c) { return std::string(n, c); }

TEST(StagingBudgetTest, AFrameThatDoesNotFitTheBudgetWaitsAndThenArrivesWhole) {
  // Budget = one 1 MiB frame + one 64 KiB stage: two large frames cannot be staged at once.
  RelayFixture relay(8, [](RelayConfig& c) {
    c.threads = 1;
    c.max_frame_bytes = 1 << 20;
    c.stage_bytes = 64 * 1024;
    c.stage_budget_bytes = (1 << 20) + kFrameHeaderSize + 64 * 1024;
  });
  std::string address;
  auto node = relay.NodeWithAddress(&address);
  absl::StatusOr<net::UniqueFd> a = ConnectTo(address);
  absl::StatusOr<net::UniqueFd> b = ConnectTo(address);
  ASSERT_TRUE(a.ok() && b.ok());

  // A begins a 1 MiB frame and stops halfway: it holds 1 MiB of the budget.
  const std::string frame_a = MakeFrame(Filled(1 << 20, 'a'));
  ASSERT_TRUE(WriteAll(a->get(), absl::string_view(frame_a).substr(0, frame_a.size() / 2)));
  // B's large frame cannot be reserved: B waits, it is not dropped.
  const std::string frame_b = MakeFrame(Filled((1 << 20) - 100, 'b'));
  std::thread writer([&] { WriteAll(b->get(), frame_b); });
  EXPECT_GE(relay.WaitForCounter("proxy_stage_waits", 1), 1u);

  // A finishes; its frame goes out and frees the budget; then B's frame arrives.
  ASSERT_TRUE(WriteAll(a->get(), absl::string_view(frame_a).substr(frame_a.size() / 2)));
  absl::StatusOr<Frame> f = node->ReadDataFrame(absl::Seconds(20));
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->payload, Filled(1 << 20, 'a'));
  f = node->ReadDataFrame(absl::Seconds(20));
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->payload, Filled((1 << 20) - 100, 'b'));
  writer.join();
  EXPECT_EQ(relay.Counter("proxy_closed"), 0u);
}

TEST(StagingBudgetTest, ASenderStalledInsideAFrameIsDroppedAfterTheTimeout) {
  RelayFixture relay(8, [](RelayConfig& c) { c.keepalive_timeout = absl::Milliseconds(600); });
  std::string address;
  auto node = relay.NodeWithAddress(&address);
  absl::StatusOr<net::UniqueFd> staller = ConnectTo(address);
  absl::StatusOr<net::UniqueFd> other = ConnectTo(address);
  ASSERT_TRUE(staller.ok() && other.ok());
  const std::string frame = MakeFrame(Filled(100000, 's'));
  ASSERT_TRUE(WriteAll(staller->get(), absl::string_view(frame).substr(0, 5000)));

  // Keep the node's own session alive while the staller sits there.
  bool dropped = false;
  for (int i = 0; i < 40 && !dropped; ++i) {
    ASSERT_TRUE(node->Send(kOpKeepalive).ok());
    absl::StatusOr<wire::Message> m = node->ReadMessage(absl::Seconds(5));
    ASSERT_TRUE(m.ok()) << m.status();
    dropped = relay.Counter("proxy_stalled_frames") == 1;
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_TRUE(dropped);
  EXPECT_TRUE(WaitForClose(staller->get(), absl::Seconds(5)));
  // Nothing of the stalled frame reached the node, and the stream goes on whole.
  ASSERT_TRUE(WriteAll(other->get(), MakeFrame("after the stall")));
  absl::StatusOr<Frame> f = node->ReadDataFrame();
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->payload, "after the stall");
}

}  // namespace
}  // namespace relay::testing
