// The stream readers' frame splitting as pure functions (core/frame_scan.h). The fuzzers
// in fuzz/ check the same functions against a reference parser on random streams.
#include "core/frame_scan.h"

#include <string>

#include "gtest/gtest.h"

namespace relay {
namespace {

constexpr uint32_t kNet = kDefaultNetworkId;

std::string Frame(uint32_t length, uint32_t network_id = kNet) {
  std::string f(kFrameHeaderSize + length, 'p');
  EncodeFrameHeader(FrameHeader{network_id, 0, length}, reinterpret_cast<uint8_t*>(f.data()));
  return f;
}

const uint8_t* U(const std::string& s) { return reinterpret_cast<const uint8_t*>(s.data()); }

TEST(ScanControlFrameTest, SplitsWholeFramesAndWaitsForTheRest) {
  const std::string two = Frame(5) + Frame(7);
  ControlFrameScan s = ScanControlFrame(two, kNet, 100);
  ASSERT_EQ(s.kind, ControlFrameScan::Kind::kFrame);
  EXPECT_EQ(s.consumed, 15u);
  EXPECT_EQ(s.payload, "ppppp");
  EXPECT_EQ(ScanControlFrame(absl::string_view(two).substr(15, 12), kNet, 100).kind,
            ControlFrameScan::Kind::kNeedMore);
  EXPECT_EQ(ScanControlFrame(absl::string_view(two).substr(0, 9), kNet, 100).kind,
            ControlFrameScan::Kind::kNeedMore);
  EXPECT_EQ(ScanControlFrame(Frame(101), kNet, 100).kind, ControlFrameScan::Kind::kTooLarge);
  s = ScanControlFrame(Frame(0), kNet, 100);
  EXPECT_EQ(s.kind, ControlFrameScan::Kind::kBadHeader);
  EXPECT_EQ(s.error, FrameError::kZeroLength);
  EXPECT_EQ(ScanControlFrame(Frame(3, 5), kNet, 100).error, FrameError::kBadNetworkId);
}

TEST(PlanStageTest, TakesWholeFramesThenTheStartOfOneBeyondTheWindow) {
  const std::string window = Frame(10) + Frame(20) + Frame(1000).substr(0, 50);
  StagePlan p = PlanStage(U(window), window.size(), kNet, 1 << 20, 0, 1 << 20, 1 << 20, 0);
  EXPECT_EQ(p.bytes, 20u + 30u + 1010u);
  EXPECT_TRUE(p.beyond_window);
  EXPECT_EQ(p.last_length, 1000u);
  // The budget caps the frame that goes beyond the window.
  p = PlanStage(U(window), window.size(), kNet, 1 << 20, 0, 1 << 20, 100, 0);
  EXPECT_EQ(p.bytes, 50u + 100u);
  const MovedFrames m = CountMovedFrames(U(window), window.size(), 70);
  EXPECT_EQ(m.frames, 2u);
  EXPECT_EQ(m.complete_bytes, 50u);
  EXPECT_EQ(m.partial_size, 1010u);
  EXPECT_EQ(m.partial_left, 1010u - 20u);
}

TEST(PlanStageTest, BadHeadersCapsAndHeadersInPieces) {
  const std::string bad = Frame(10, 99);
  StagePlan p = PlanStage(U(bad), bad.size(), kNet, 1 << 20, 0, 1 << 20, 1 << 20, 0);
  EXPECT_EQ(p.bytes, 0u);
  EXPECT_EQ(p.error, FrameError::kBadNetworkId);
  // Good frames before a bad header go first; the bad one is reported by the next plan.
  const std::string good_then_bad = Frame(10) + bad;
  p = PlanStage(U(good_then_bad), good_then_bad.size(), kNet, 1 << 20, 0, 1 << 20, 1 << 20, 0);
  EXPECT_EQ(p.bytes, 20u);
  EXPECT_EQ(p.error, FrameError::kOk);
  // Over the cap with something staged: wait for room; with nothing staged: alone.
  const std::string big = Frame(500);
  p = PlanStage(U(big), big.size(), kNet, 1 << 20, 10, 100, 1 << 20, 0);
  EXPECT_TRUE(p.needs_room);
  p = PlanStage(U(big), big.size(), kNet, 1 << 20, 0, 100, 1 << 20, 0);
  EXPECT_EQ(p.bytes, 510u);
  // Nine bytes of a header: nothing to do until more arrive.
  p = PlanStage(U(big), 9, kNet, 1 << 20, 0, 100, 1 << 20, 0);
  EXPECT_EQ(p.bytes, 0u);
  EXPECT_FALSE(p.needs_room);
  EXPECT_EQ(p.error, FrameError::kOk);
}

}  // namespace
}  // namespace relay
