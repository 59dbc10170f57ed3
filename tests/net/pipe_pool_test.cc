#include "net/pipe_pool.h"

#include <fcntl.h>
#include <unistd.h>

#include "gtest/gtest.h"
#include "net/socket_ops.h"

namespace relay::net {
namespace {

TEST(PipePoolTest, GivesSizedNonBlockingPipes) {
  PipePool pool(256 * 1024, 4);
  Pipe pipe;
  ASSERT_TRUE(pool.Acquire(&pipe).ok());
  ASSERT_TRUE(pipe.valid());
  EXPECT_GE(pipe.capacity, 64u * 1024);
  EXPECT_EQ(pipe.bytes, 0u);
  char c = 'x';
  ASSERT_EQ(Write(pipe.write_end.get(), &c, 1).status, IoStatus::kOk);
  ASSERT_EQ(Read(pipe.read_end.get(), &c, 1).status, IoStatus::kOk);
  // Non-blocking: an empty pipe reports EAGAIN instead of hanging the reactor.
  EXPECT_EQ(Read(pipe.read_end.get(), &c, 1).status, IoStatus::kAgain);
}

TEST(PipePoolTest, ReusesCleanPipesAndKillsDirtyOnes) {
  PipePool pool(64 * 1024, 4);
  Pipe a;
  ASSERT_TRUE(pool.Acquire(&a).ok());
  const int a_read = a.read_end.get();
  pool.Release(std::move(a));
  EXPECT_EQ(pool.idle(), 1u);
  Pipe b;
  ASSERT_TRUE(pool.Acquire(&b).ok());
  EXPECT_EQ(b.read_end.get(), a_read);  // the cached one
  EXPECT_EQ(pool.created(), 1u);

  ASSERT_EQ(Write(b.write_end.get(), "abc", 3).status, IoStatus::kOk);
  b.bytes = 3;
  pool.Release(std::move(b));
  EXPECT_EQ(pool.idle(), 0u);  // closed: its bytes belong to a frame nobody will finish
  EXPECT_EQ(pool.killed_dirty(), 1u);
  EXPECT_EQ(fcntl(a_read, F_GETFD), -1);  // the fd is really closed
}

TEST(PipePoolTest, KeepsAtMostMaxIdle) {
  PipePool pool(64 * 1024, 2);
  Pipe p[3];
  for (Pipe& x : p) {
    ASSERT_TRUE(pool.Acquire(&x).ok());
  }
  for (Pipe& x : p) {
    pool.Release(std::move(x));
  }
  EXPECT_EQ(pool.idle(), 2u);
}

}  // namespace
}  // namespace relay::net
