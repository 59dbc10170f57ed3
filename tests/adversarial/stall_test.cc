// Senders that stop inside a frame: whatever the frame's size, they lose their connection
// --frame_stall_timeout after their last byte, and while they wait the other peers of
// their node keep flowing (partial large frames other than the head's share half of the
// node's staging share: core/stage_budget.h).
#include <sys/socket.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/adversarial/attack_helpers.h"

namespace relay::testing {
namespace {

constexpr uint32_t kFrame = 4u << 20;  // --max_frame_bytes of the test

// A connection to `address` that sends all of a kFrame-byte frame but its last byte (as
// much of it as the relay takes within 2 s), then nothing.
net::UniqueFd StallInsideAFrame(const std::string& address) {
  absl::StatusOr<net::UniqueFd> fd = ConnectTo(address);
  if (!fd.ok()) {
    return net::UniqueFd();
  }
  timeval tv{2, 0};
  setsockopt(fd->get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  WriteAll(fd->get(), Header(kFrame) + std::string(kFrame - 1, 's'));  // short if held back
  return std::move(*fd);
}

TEST(StallTest, PeersStalledInsideLargeFramesNeverHoldBackTheirNodesOtherPeers) {
  RelayProcess relay;
  // A node's share holds two of the frames: two stalled senders could fill it.
  ASSERT_TRUE(
      relay.Start({PortRange(8), "--threads=1", "--max_frame_bytes=4194304",
                   "--session_stage_bytes=8388608", "--frame_stall_timeout=2s", "--quiet"}));
  Innocents innocent(relay.port(), 1);
  ASSERT_TRUE(innocent.Flow(3));
  // Two attackers at a time, again as soon as the relay drops them, for 8 s.
  std::atomic<bool> stop{false};
  std::atomic<int> rounds{0};
  std::thread attacker([&] {
    while (!stop.load()) {
      std::vector<net::UniqueFd> fds;
      for (int i = 0; i < 2; ++i) {
        fds.push_back(StallInsideAFrame(innocent.address(0)));
      }
      for (net::UniqueFd& fd : fds) {
        while (!stop.load() && fd.valid() && !WaitForHangup(fd.get(), absl::Milliseconds(100))) {
        }
      }
      ++rounds;
    }
  });
  // Every innocent frame arrives within 1 s (without the shared half it waited for the
  // stall deadline; without the deadline, for the frame's rate deadline: about 74 s).
  const absl::Time end = absl::Now() + absl::Seconds(8);
  int frames = 0;
  while (absl::Now() < end && innocent.Flow(1, absl::Seconds(1))) {
    ++frames;
    absl::SleepFor(absl::Milliseconds(20));
  }
  stop = true;
  attacker.join();
  EXPECT_GE(absl::Now(), end) << "an innocent frame took more than 1 s, after " << frames;
  EXPECT_GE(rounds.load(), 2) << "the stalled senders were not dropped";
  std::map<std::string, uint64_t> c = relay.Counters();
  EXPECT_GE(c["proxy_frame_stalls"], 2u);
  EXPECT_GT(c["proxy_session_share_waits"], 0u) << "the second stalled frame never waited";
  EXPECT_EQ(relay.Stop(), 0);
}

TEST(StallTest, AStalledHeaderOrSmallFrameIsDroppedAtTheStallDeadline) {
  RelayProcess relay;
  ASSERT_TRUE(relay.Start(
      {PortRange(4), "--threads=1", "--frame_stall_timeout=1s", "--frame_timeout=30s", "--quiet"}));
  Innocents innocent(relay.port(), 1);
  absl::StatusOr<net::UniqueFd> fd = ConnectTo(innocent.address(0));
  ASSERT_TRUE(fd.ok());
  ASSERT_TRUE(WriteAll(fd->get(), Header(1000) + std::string(500, 'x')));
  const absl::Time start = absl::Now();
  EXPECT_TRUE(WaitForHangup(fd->get(), absl::Seconds(10)));
  EXPECT_LT(absl::Now() - start, absl::Seconds(5)) << "held to --frame_timeout, not the stall";
  EXPECT_EQ(WaitForCounter(relay, "proxy_frame_stalls", 1), 1u);
  EXPECT_TRUE(innocent.Flow(3));
  EXPECT_EQ(relay.Stop(), 0);
}

}  // namespace
}  // namespace relay::testing
