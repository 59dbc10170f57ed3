#include "net/block_pool.h"

#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace relay::net {
namespace {

TEST(BlockPoolTest, ReusesReleasedBlocksAndNeverHandsOutMoreThanItsBound) {
  BlockPool pool(/*max_idle=*/2, /*max_in_use=*/3);
  std::vector<Block> out(3);
  for (Block& b : out) {
    ASSERT_TRUE(pool.Acquire(&b));
    EXPECT_EQ(b.staged(), 0u);
  }
  Block fourth;
  EXPECT_FALSE(pool.Acquire(&fourth));  // the bound: the caller stages by splice instead
  EXPECT_EQ(pool.in_use(), 3u);
  EXPECT_EQ(pool.created(), 3u);

  uint8_t* first = out[0].data.get();
  out[0].tail = 100;  // bytes in it are dropped with it
  pool.Release(std::move(out[0]));
  pool.Release(std::move(out[1]));
  pool.Release(std::move(out[2]));  // the cache keeps two; the third is freed
  EXPECT_EQ(pool.in_use(), 0u);
  EXPECT_EQ(pool.idle(), 2u);

  Block again;
  ASSERT_TRUE(pool.Acquire(&again));
  EXPECT_EQ(pool.created(), 3u);  // from the cache
  EXPECT_EQ(again.head, 0u);
  EXPECT_EQ(again.tail, 0u);
  Block other;
  ASSERT_TRUE(pool.Acquire(&other));
  EXPECT_TRUE(again.data.get() == first || other.data.get() == first);
  pool.Release(std::move(again));
  pool.Release(std::move(other));
  pool.Release(Block{});  // an empty block is ignored
  EXPECT_EQ(pool.in_use(), 0u);
}

}  // namespace
}  // namespace relay::net
