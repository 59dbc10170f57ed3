// FrameStream: frames split from a stream read in pieces of any size, bad headers refused
// as soon as they are whole, nothing lost between reads.
#include "core/frame_stream.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace relay {
namespace {

constexpr uint32_t kNet = 7;

std::string Frame(const std::string& payload, uint32_t network_id = kNet) {
  std::string f(kFrameHeaderSize, '\0');
  EncodeFrameHeader(FrameHeader{network_id, 0, static_cast<uint32_t>(payload.size())},
                    reinterpret_cast<uint8_t*>(f.data()));
  return f + payload;
}

std::vector<std::string> TakeAll(FrameStream& stream) {
  std::vector<std::string> out;
  FrameStream::Frame f;
  while (stream.Take(&f) == FrameStream::Result::kFrame) {
    EXPECT_EQ(f.size, kFrameHeaderSize + f.payload.size());
    out.emplace_back(f.payload);
  }
  return out;
}

TEST(FrameStreamTest, FramesReadInPiecesOfEverySizeComeOutWholeAndInOrder) {
  const std::string bytes = Frame("a") + Frame(std::string(300, 'b')) + Frame("cc");
  for (size_t piece = 1; piece <= bytes.size(); ++piece) {
    FrameStream stream(kNet, 1000);
    std::vector<std::string> got;
    for (size_t off = 0; off < bytes.size(); off += piece) {
      stream.Append(absl::string_view(bytes).substr(off, piece));
      for (std::string& p : TakeAll(stream)) {
        got.push_back(std::move(p));
      }
    }
    ASSERT_EQ(got.size(), 3u) << "pieces of " << piece;
    EXPECT_EQ(got[0], "a");
    EXPECT_EQ(got[1], std::string(300, 'b'));
    EXPECT_EQ(got[2], "cc");
    EXPECT_EQ(stream.buffered(), 0u);
  }
}

TEST(FrameStreamTest, APartialFrameWaitsAndIsKept) {
  FrameStream stream(kNet, 1000);
  const std::string f = Frame("hello");
  stream.Append(absl::string_view(f).substr(0, 12));  // header and two bytes
  FrameStream::Frame out;
  EXPECT_EQ(stream.Take(&out), FrameStream::Result::kNeedMore);
  EXPECT_EQ(stream.buffered(), 12u);
  stream.Append(absl::string_view(f).substr(12));
  ASSERT_EQ(stream.Take(&out), FrameStream::Result::kFrame);
  EXPECT_EQ(out.payload, "hello");
}

TEST(FrameStreamTest, ABadHeaderIsRefusedAsSoonAsItIsWhole) {
  FrameStream wrong_net(kNet, 1000);
  wrong_net.Append(Frame("x", kNet + 1).substr(0, kFrameHeaderSize));
  FrameStream::Frame out;
  EXPECT_EQ(wrong_net.Take(&out), FrameStream::Result::kBad);
  EXPECT_EQ(wrong_net.error(), FrameError::kBadNetworkId);

  // Too long: refused from its header alone, not after buffering a gigabyte.
  FrameStream too_long(kNet, 100);
  too_long.Append(Frame(std::string(101, 'z')).substr(0, kFrameHeaderSize));
  EXPECT_EQ(too_long.Take(&out), FrameStream::Result::kBad);
  EXPECT_EQ(too_long.error(), FrameError::kTooLong);
  too_long.Append(Frame("ok"));  // a stream that went bad stays bad
  EXPECT_EQ(too_long.Take(&out), FrameStream::Result::kBad);
  too_long.Clear();
  too_long.Append(Frame("ok"));
  ASSERT_EQ(too_long.Take(&out), FrameStream::Result::kFrame);
  EXPECT_EQ(out.payload, "ok");

  FrameStream empty(kNet, 100);
  empty.Append(Frame(""));
  EXPECT_EQ(empty.Take(&out), FrameStream::Result::kBad);
  EXPECT_EQ(empty.error(), FrameError::kZeroLength);
}

}  // namespace
}  // namespace relay
