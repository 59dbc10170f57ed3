// The stream readers' frame splitting as pure functions (core/frame_scan.h). The fuzzers
// in fuzz/ check the same functions against a reference parser on random streams.
#include "core/frame_scan.h"

#include <string>
#include <vector>

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

// The plan counts what it holds, so a move of its whole frames needs no second walk over
// the headers; any move gives what the walk gives.
TEST(PlanStageTest, AMoveIsCountedFromThePlanAsTheWalkCountsIt) {
  const std::string window = Frame(10) + Frame(20) + Frame(1000).substr(0, 50);
  for (const uint64_t budget : {uint64_t{1} << 20, uint64_t{100}, uint64_t{0}}) {
    const StagePlan p = PlanStage(U(window), window.size(), kNet, 1 << 20, 0, 1 << 20, budget, 0);
    EXPECT_EQ(p.frames, 2u);
    EXPECT_EQ(p.frames_bytes, 50u);
    EXPECT_EQ(p.tail_size, 1010u);
    for (uint64_t moved = 0; moved <= p.bytes; ++moved) {
      const MovedFrames a = CountMovedFrames(p, U(window), window.size(), moved);
      const MovedFrames b = CountMovedFrames(U(window), window.size(), moved);
      ASSERT_EQ(a.frames, b.frames) << "moved " << moved << " budget " << budget;
      ASSERT_EQ(a.complete_bytes, b.complete_bytes) << moved;
      ASSERT_EQ(a.partial_size, b.partial_size) << moved;
      ASSERT_EQ(a.partial_left, b.partial_left) << moved;
    }
  }
  // All of the plan moved: the frame past the window is whole.
  const StagePlan p = PlanStage(U(window), window.size(), kNet, 1 << 20, 0, 1 << 20, 1 << 20, 0);
  const MovedFrames all = CountMovedFrames(p, U(window), window.size(), p.bytes);
  EXPECT_EQ(all.frames, 3u);
  EXPECT_EQ(all.complete_bytes, 1060u);
  EXPECT_EQ(all.partial_size, 0u);
  // No frame past the window: its whole frames are all there is.
  const std::string whole = Frame(10) + Frame(20);
  const StagePlan q = PlanStage(U(whole), whole.size(), kNet, 1 << 20, 0, 1 << 20, 1 << 20, 0);
  EXPECT_EQ(q.tail_size, 0u);
  EXPECT_EQ(CountMovedFrames(q, U(whole), whole.size(), 50).frames, 2u);
  EXPECT_EQ(CountMovedFrames(q, U(whole), whole.size(), 25).partial_left, 25u);
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

// Feeds `stream` to ScanPiece in pieces of `piece` bytes, up to a refused header.
struct Scanned {
  uint64_t frames = 0;
  uint64_t complete_bytes = 0;
  FrameError error = FrameError::kOk;
  uint64_t error_at = 0;  // in the stream
};
Scanned ScanInPieces(const std::string& stream, size_t piece, StreamPosition* pos) {
  Scanned out;
  for (size_t at = 0; at < stream.size() && out.error == FrameError::kOk; at += piece) {
    const size_t n = std::min(piece, stream.size() - at);
    const PieceScan s = ScanPiece(U(stream) + at, n, pos, kNet, 1 << 20);
    out.frames += s.frames;
    out.complete_bytes += s.complete_bytes;
    out.error = s.error;
    out.error_at = at + s.error_at;
  }
  return out;
}

TEST(ScanPieceTest, FindsTheFramesHoweverTheStreamIsCut) {
  const std::string stream = Frame(1) + Frame(300) + Frame(17) + Frame(4000);
  // Every piece size, down to one byte at a time: headers cut anywhere, frames whole.
  for (size_t piece : {1, 3, 9, 10, 11, 64, 311, 5000}) {
    StreamPosition pos;
    uint64_t complete = 0, frames = 0;
    for (size_t at = 0; at < stream.size(); at += piece) {
      const size_t n = std::min(piece, stream.size() - at);
      const PieceScan s = ScanPiece(U(stream) + at, n, &pos, kNet, 1 << 20);
      ASSERT_EQ(s.error, FrameError::kOk) << piece;
      complete += s.complete_bytes;
      frames += s.frames;
      // Between pieces the position is exact: inside a header, a body, or at a boundary.
      EXPECT_EQ(pos.in_frame(),
                at + n != 11 && at + n != 321 && at + n != 348 && at + n != stream.size())
          << piece << " at " << at + n;
    }
    EXPECT_EQ(frames, 4u) << piece;
    EXPECT_EQ(complete, stream.size()) << piece;
    EXPECT_FALSE(pos.in_frame());
    EXPECT_EQ(pos.last_length, 4000u);
  }
  // A header cut after 4 bytes: kept, and finished by the next piece.
  StreamPosition pos;
  const std::string f = Frame(20);
  PieceScan s = ScanPiece(U(f), 4, &pos, kNet, 1 << 20);
  EXPECT_EQ(pos.header_have, 4u);
  EXPECT_EQ(pos.frame_left, 0u);
  EXPECT_TRUE(pos.in_frame());
  s = ScanPiece(U(f) + 4, 10, &pos, kNet, 1 << 20);
  EXPECT_EQ(pos.header_have, 0u);
  EXPECT_EQ(pos.frame_size, 30u);
  EXPECT_EQ(pos.frame_left, 16u);
  EXPECT_EQ(s.frames, 0u);
}

TEST(ScanPieceTest, ABadHeaderStopsTheScanWhereItIsAfterTheGoodFrames) {
  for (size_t piece : {1, 7, 10, 25, 1000}) {
    const std::string stream = Frame(5) + Frame(20) + Frame(8, 99) + Frame(3);
    StreamPosition pos;
    const Scanned s = ScanInPieces(stream, piece, &pos);
    EXPECT_EQ(s.frames, 2u) << piece;
    EXPECT_EQ(s.complete_bytes, 45u) << piece;
    EXPECT_EQ(s.error, FrameError::kBadNetworkId) << piece;
    EXPECT_EQ(s.error_at, 45u + kFrameHeaderSize) << piece;  // just past the refused header
  }
  StreamPosition pos;
  EXPECT_EQ(ScanPiece(U(Frame(0)), 10, &pos, kNet, 100).error, FrameError::kZeroLength);
  pos = StreamPosition();
  EXPECT_EQ(ScanPiece(U(Frame(101)), 10, &pos, kNet, 100).error, FrameError::kTooLong);
}

}  // namespace
}  // namespace relay
