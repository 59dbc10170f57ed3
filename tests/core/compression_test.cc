#include "core/compression.h"

#include <string>

#include "gtest/gtest.h"

namespace relay {
namespace {

std::string Sample() {
  std::string s;
  for (int i = 0; i < 20000; ++i) {
    s += "message " + std::to_string(i % 97) + ";";
  }
  return s;
}

TEST(CompressionTest, RoundTripsZlibGzipAndFlate) {
  const std::string data = Sample();
  for (CompressAlgorithm a :
       {CompressAlgorithm::kZlib, CompressAlgorithm::kGzip, CompressAlgorithm::kFlate}) {
    absl::StatusOr<std::string> packed = Compress(a, data);
    ASSERT_TRUE(packed.ok()) << packed.status();
    EXPECT_LT(packed->size(), data.size() / 4);
    absl::StatusOr<std::string> back = Decompress(a, *packed, data.size());
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, data);
    // The formats differ: zlib data is not gzip data.
    if (a == CompressAlgorithm::kZlib) {
      EXPECT_FALSE(Decompress(CompressAlgorithm::kGzip, *packed, data.size()).ok());
    }
  }
  EXPECT_EQ(CompressInfo(CompressAlgorithm::kZlib), 0x0103);
}

TEST(CompressionTest, RefusesBombsDamageAndUnknownAlgorithms) {
  // 64 MiB of zeros packs into ~64 KiB: inflating stops at the bound.
  const std::string zeros(64u << 20, '\0');
  absl::StatusOr<std::string> bomb = Compress(CompressAlgorithm::kZlib, zeros);
  ASSERT_TRUE(bomb.ok());
  EXPECT_LT(bomb->size(), 256u * 1024);
  EXPECT_TRUE(
      absl::IsResourceExhausted(Decompress(CompressAlgorithm::kZlib, *bomb, 1u << 20).status()));
  absl::StatusOr<std::string> packed = Compress(CompressAlgorithm::kZlib, Sample());
  ASSERT_TRUE(packed.ok());
  EXPECT_FALSE(
      Decompress(CompressAlgorithm::kZlib, packed->substr(0, packed->size() / 2), 1u << 20).ok())
      << "cut short";
  std::string flipped = *packed;
  flipped[flipped.size() / 2] ^= 0x55;
  EXPECT_FALSE(Decompress(CompressAlgorithm::kZlib, flipped, 1u << 20).ok()) << "damaged";
  EXPECT_TRUE(
      absl::IsUnimplemented(Decompress(CompressAlgorithm::kBzip2, *packed, 1u << 20).status()));
  EXPECT_TRUE(absl::IsUnimplemented(Compress(CompressAlgorithm::kLzw, "x").status()));
}

}  // namespace
}  // namespace relay
