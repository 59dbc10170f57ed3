// StagingBuffer on real loopback TCP sockets: bytes staged by splice, by copy, and by copy
// that runs out of blocks and goes on in pipes come out whole and in order; a gathered
// write takes the front blocks; a full socket is reported, not an error; Clear gives
// every pipe and block back. No reactor thread runs: the buffer only uses its pools.
#include "server/staging_buffer.h"

#include <poll.h>
#include <sys/socket.h>

#include <memory>
#include <string>
#include <thread>

#include "base/clock.h"
#include "gtest/gtest.h"
#include "net/socket_ops.h"

namespace relay {
namespace {

constexpr uint64_t kCap = 1 << 20;

// A connected pair on 127.0.0.1: `in` is what the buffer reads (the peer's socket on the
// relay), `sender` writes into it; `out` is what it writes (the node's main connection),
// `sink` reads what came out.
struct Sockets {
  void SetUp() {
    absl::StatusOr<net::UniqueFd> listener = net::Listen("127.0.0.1", 0, false);
    ASSERT_TRUE(listener.ok()) << listener.status();
    const uint16_t port = net::LocalPort(listener->get());
    for (auto [client, server] : {std::pair{&sender, &in}, std::pair{&sink, &out}}) {
      absl::StatusOr<net::UniqueFd> c = net::ConnectBlocking("127.0.0.1", port);
      ASSERT_TRUE(c.ok()) << c.status();
      ASSERT_TRUE(net::WaitForFd(listener->get(), POLLIN, absl::Now() + absl::Seconds(5)));
      const int fd = net::Accept(listener->get());
      ASSERT_GE(fd, 0);
      *client = std::move(*c);
      *server = net::UniqueFd(fd);
    }
  }
  // Waits until `n` bytes are readable on `in` (bounded).
  void WaitReadable(int n) {
    const absl::Time deadline = absl::Now() + absl::Seconds(5);
    while (net::BytesReadable(in.get()) < n && absl::Now() < deadline) {
      net::WaitForFd(in.get(), POLLIN, deadline);
    }
    ASSERT_GE(net::BytesReadable(in.get()), n);
  }
  // Reads exactly `n` bytes from `sink` (bounded).
  std::string Drain(size_t n) {
    std::string got;
    const absl::Time deadline = absl::Now() + absl::Seconds(5);
    char buf[65536];
    while (got.size() < n && net::WaitForFd(sink.get(), POLLIN, deadline)) {
      const ssize_t r = ::recv(sink.get(), buf, std::min(sizeof(buf), n - got.size()), 0);
      if (r <= 0) {
        break;
      }
      got.append(buf, static_cast<size_t>(r));
    }
    return got;
  }
  net::UniqueFd sender, in, out, sink;
};

std::string Bytes(size_t n, int seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) {
    s[i] = static_cast<char>((i * 131 + static_cast<size_t>(seed)) % 251);
  }
  return s;
}

class StagingBufferTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<net::Reactor>> r =
        net::Reactor::Create(0, 1, MonotonicClock::Get(), 64 * 1024);
    ASSERT_TRUE(r.ok()) << r.status();
    reactor_ = std::move(*r);
    sockets_.SetUp();
  }
  void TearDown() override {
    if (writer_.joinable()) {
      writer_.join();
    }
  }
  // Sends `bytes` from a thread (more than the socket buffers hold) and stages all of
  // them, as they arrive, into `staged`; returns how many were staged (bounded wait).
  uint64_t SendAndStage(StagingBuffer& staged, const std::string& bytes) {
    writer_ = std::thread([this, &bytes] {
      EXPECT_TRUE(
          net::WriteAllUntil(sockets_.sender.get(), bytes, absl::Now() + absl::Seconds(10)).ok());
    });
    uint64_t moved = 0;
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (moved < bytes.size() && net::WaitForFd(sockets_.in.get(), POLLIN, deadline)) {
      const StagingBuffer::StageResult r =
          staged.StageIn(sockets_.in.get(), bytes.size() - moved, kCap, false, false);
      EXPECT_EQ(r.error, 0);
      EXPECT_FALSE(r.eof);
      moved += r.moved;
    }
    writer_.join();
    return moved;
  }

  std::unique_ptr<net::Reactor> reactor_;
  ShardStats stats_;
  Sockets sockets_;
  std::thread writer_;
};

TEST_F(StagingBufferTest, SplicedBytesComeOutWholeAndInOrder) {
  StagingBuffer staged(reactor_.get(), &stats_);
  const std::string bytes = Bytes(200 * 1024, 1);
  ASSERT_EQ(SendAndStage(staged, bytes), bytes.size());
  EXPECT_EQ(staged.bytes(), bytes.size());
  EXPECT_GE(staged.pipe_count(), 1u);
  EXPECT_EQ(stats_.Get(Counter::kProxyCopiedBytes), 0u);  // spliced, not copied
  // Nothing more: the socket is empty (asked, since the bytes are not known to be there).
  const StagingBuffer::StageResult r =
      staged.StageIn(sockets_.in.get(), 100, kCap, /*known_available=*/false, false);
  EXPECT_EQ(r.moved, 0u);
  EXPECT_TRUE(r.socket_empty);

  uint64_t written = 0;
  for (int i = 0; i < 100 && written < bytes.size(); ++i) {
    const StagingBuffer::WriteResult w =
        staged.WriteTo(sockets_.out.get(), bytes.size() - written, kCap);
    ASSERT_EQ(w.error, 0);
    written += w.bytes;
    if (w.out_blocked) {
      EXPECT_EQ(sockets_.Drain(w.bytes).size(), w.bytes);
    }
  }
  EXPECT_EQ(written, bytes.size());
  EXPECT_EQ(staged.bytes(), 0u);
  EXPECT_EQ(staged.pipe_count(), 0u);  // given back once empty
}

TEST_F(StagingBufferTest, CopiedBytesAreScannedInPlaceAndGathered) {
  StagingBuffer staged(reactor_.get(), &stats_);
  staged.set_copy(true);
  const std::string bytes = Bytes(150 * 1024, 2);  // more than one 96 KiB block
  const StagingBuffer::Mark mark = staged.TailMark();
  ASSERT_EQ(SendAndStage(staged, bytes), bytes.size());
  EXPECT_TRUE(staged.copy());
  EXPECT_TRUE(staged.OnlyInBlocks());
  EXPECT_EQ(stats_.Get(Counter::kProxyCopiedBytes), bytes.size());
  std::string seen;
  staged.ForEachPiece(mark, bytes.size(), [&](const uint8_t* data, size_t n) {
    seen.append(reinterpret_cast<const char*>(data), n);
    return true;
  });
  EXPECT_EQ(seen, bytes);

  // A gathered write of the first 100,000 bytes, then the rest by WriteTo.
  iovec iov[4];
  size_t count = 0;
  ASSERT_EQ(staged.AppendFront(iov, &count, 4, 100000), 100000u);
  ASSERT_EQ(net::SendV(sockets_.out.get(), iov, count).bytes, 100000u);
  staged.Consume(100000);
  const StagingBuffer::WriteResult w = staged.WriteTo(sockets_.out.get(), bytes.size(), kCap);
  EXPECT_EQ(w.bytes, bytes.size() - 100000);
  EXPECT_EQ(sockets_.Drain(bytes.size()), bytes);
  EXPECT_EQ(staged.bytes(), 0u);
  EXPECT_EQ(reactor_->blocks().in_use(), 0u);
}

TEST_F(StagingBufferTest, CopyThatRunsOutOfBlocksGoesOnInPipesAfterThem) {
  reactor_->blocks().set_max_in_use(1);
  StagingBuffer staged(reactor_.get(), &stats_);
  staged.set_copy(true);
  const std::string bytes = Bytes(300 * 1024, 3);
  ASSERT_EQ(SendAndStage(staged, bytes), bytes.size());
  EXPECT_FALSE(staged.copy());  // the pool ran dry
  EXPECT_EQ(stats_.Get(Counter::kProxyCopyFallbacks), 1u);
  EXPECT_FALSE(staged.OnlyInBlocks());
  EXPECT_GE(staged.pipe_count(), 1u);
  uint64_t written = 0;
  std::string got;
  for (int i = 0; i < 100 && written < bytes.size(); ++i) {
    const StagingBuffer::WriteResult w =
        staged.WriteTo(sockets_.out.get(), bytes.size() - written, kCap);
    ASSERT_EQ(w.error, 0);
    written += w.bytes;
    got += sockets_.Drain(w.bytes);
  }
  EXPECT_EQ(got, bytes);  // blocks first, then pipes: the order of the stream
}

TEST_F(StagingBufferTest, AFullSocketIsReportedAndClearGivesEverythingBack) {
  ASSERT_TRUE(net::SetReceiveBuffer(sockets_.sink.get(), 4096));
  StagingBuffer staged(reactor_.get(), &stats_);
  const std::string bytes = Bytes(4 << 20, 4);
  uint64_t staged_total = 0;
  // Stage and write until the node's side is full (nobody reads the sink).
  bool blocked = false;
  for (int i = 0; i < 200 && !blocked; ++i) {
    ASSERT_TRUE(net::WriteAllUntil(sockets_.sender.get(), bytes.substr(0, 64 * 1024),
                                   absl::Now() + absl::Seconds(5))
                    .ok());
    sockets_.WaitReadable(1);
    staged_total += staged.StageIn(sockets_.in.get(), 64 * 1024, kCap, false, false).moved;
    const StagingBuffer::WriteResult w = staged.WriteTo(sockets_.out.get(), staged.bytes(), kCap);
    ASSERT_EQ(w.error, 0);
    blocked = w.out_blocked;
  }
  EXPECT_TRUE(blocked) << "the sink never filled";
  EXPECT_GT(staged.bytes(), 0u);
  staged.Clear();
  EXPECT_EQ(staged.bytes(), 0u);
  EXPECT_EQ(staged.pipe_count(), 0u);
  EXPECT_GT(staged_total, 0u);
}

}  // namespace
}  // namespace relay
