#include "core/frame_header.h"

#include <cstring>

#include "gtest/gtest.h"

namespace relay {
namespace {

TEST(FrameHeaderTest, EncodesBigEndianInProtocolOrder) {
  FrameHeader h;
  h.network_id = 0x01020304;
  h.compress_info = 0x0102;
  h.length = 0x0a0b0c0d;
  uint8_t out[kFrameHeaderSize];
  EncodeFrameHeader(h, out);
  const uint8_t want[kFrameHeaderSize] = {1, 2, 3, 4, 1, 2, 0x0a, 0x0b, 0x0c, 0x0d};
  EXPECT_EQ(0, memcmp(out, want, kFrameHeaderSize));
}

TEST(FrameHeaderTest, RoundTripsExtremeValues) {
  for (uint32_t v : {0u, 1u, 0x7fffffffu, 0xffffffffu, kDefaultNetworkId}) {
    FrameHeader h;
    h.network_id = v;
    h.compress_info = static_cast<uint16_t>(v);
    h.length = ~v;
    uint8_t buf[kFrameHeaderSize];
    EncodeFrameHeader(h, buf);
    const FrameHeader back = DecodeFrameHeader(buf);
    EXPECT_EQ(back.network_id, h.network_id);
    EXPECT_EQ(back.compress_info, h.compress_info);
    EXPECT_EQ(back.length, h.length);
  }
}

TEST(FrameHeaderTest, CompressInfoFields) {
  FrameHeader h;
  h.compress_info = (1 << 8) | 3;
  EXPECT_TRUE(h.compressed());
  EXPECT_EQ(h.algorithm(), 3);
  h.compress_info = 5;
  EXPECT_FALSE(h.compressed());
  EXPECT_EQ(h.frame_size(), kFrameHeaderSize);
}

TEST(FrameHeaderTest, AcceptsAValidHeader) {
  FrameHeader h{kDefaultNetworkId, 0, 100};
  EXPECT_EQ(CheckFrameHeader(h, kDefaultNetworkId, 100), FrameError::kOk);
  h.length = 1;
  EXPECT_EQ(CheckFrameHeader(h, kDefaultNetworkId, 100), FrameError::kOk);
}

TEST(FrameHeaderTest, RefusesEveryMalformedHeader) {
  EXPECT_EQ(CheckFrameHeader({kDefaultNetworkId + 1, 0, 10}, kDefaultNetworkId, 100),
            FrameError::kBadNetworkId);
  EXPECT_EQ(CheckFrameHeader({0, 0, 10}, kDefaultNetworkId, 100), FrameError::kBadNetworkId);
  EXPECT_EQ(CheckFrameHeader({kDefaultNetworkId, 0, 0}, kDefaultNetworkId, 100),
            FrameError::kZeroLength);
  EXPECT_EQ(CheckFrameHeader({kDefaultNetworkId, 0, 101}, kDefaultNetworkId, 100),
            FrameError::kTooLong);
  EXPECT_EQ(CheckFrameHeader({kDefaultNetworkId, 0, 0xffffffff}, kDefaultNetworkId, 100),
            FrameError::kTooLong);
  // The network id is checked first: a garbage header reports the most telling error.
  EXPECT_EQ(CheckFrameHeader({7, 0, 0}, kDefaultNetworkId, 100), FrameError::kBadNetworkId);
  EXPECT_EQ(FrameErrorName(FrameError::kTooLong), "too_long");
  EXPECT_EQ(FrameErrorName(FrameError::kZeroLength), "zero_length");
  EXPECT_EQ(FrameErrorName(FrameError::kBadNetworkId), "bad_network_id");
}

}  // namespace
}  // namespace relay
