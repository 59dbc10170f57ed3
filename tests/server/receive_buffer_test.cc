// Peer receive buffers (--peer_receive_buffer, --peer_bulk_receive_buffer,
// --bulk_receive_peers): every peer socket is capped; a fast stream staged by splice gets
// the larger bulk buffer while its reactor has one free, and gives it back when it slows down,
// closes, or sits silent while a faster stream asks; a stream the relay holds back keeps it (what
// its socket queues stays counted). On a fake clock, so "a second" is exact. The relay runs in this
// process, so the tests read its sockets' SO_RCVBUF directly.
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/control_codec.h"
#include "gtest/gtest.h"
#include "net/socket_ops.h"
#include "tests/testing/relay_fixture.h"

namespace relay::testing {
namespace {

// Below Debian's default net.core.rmem_max (212992), which cuts SO_RCVBUF.
constexpr uint32_t kSmall = 32 * 1024;
constexpr uint32_t kBulk = 128 * 1024;

void OneBulkBuffer(RelayConfig& c) {
  c.threads = 1;
  c.forward_mode = ForwardMode::kSplice;  // only bytes staged by splice count
  c.peer_receive_buffer = kSmall;
  c.peer_bulk_receive_buffer = kBulk;
  c.bulk_receive_peers = 1;
}

bool SameAddress(const sockaddr_storage& a, const sockaddr_storage& b) {
  if (a.ss_family != AF_INET || b.ss_family != AF_INET) {
    return false;
  }
  const auto& x = reinterpret_cast<const sockaddr_in&>(a);
  const auto& y = reinterpret_cast<const sockaddr_in&>(b);
  return x.sin_port == y.sin_port && x.sin_addr.s_addr == y.sin_addr.s_addr;
}

// Orders this thread's fd calls with the reactors' (for ThreadSanitizer, which checks
// that an fd is not used in one thread while another opens or closes it): a snapshot is
// a task each reactor runs and answers, through their queues.
void SyncWithReactors(RelayFixture& relay) {
  ASSERT_TRUE(relay.server().Snapshot(false, absl::Seconds(10)).ok());
}

// The relay's socket connected to `sender`, found among this process's fds by its peer
// address; -1 if none.
int FindRelaySideFd(int sender) {
  sockaddr_storage local{};
  socklen_t len = sizeof(local);
  if (getsockname(sender, reinterpret_cast<sockaddr*>(&local), &len) != 0) {
    return -1;
  }
  int found = -1;
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) {
    return -1;
  }
  while (dirent* e = readdir(dir)) {
    const int fd = atoi(e->d_name);
    struct stat st;
    if (e->d_name[0] == '.' || fd == sender || fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) {
      continue;
    }
    sockaddr_storage peer{};
    socklen_t plen = sizeof(peer);
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &plen) == 0 &&
        SameAddress(peer, local)) {
      found = fd;
    }
  }
  closedir(dir);
  return found;
}

// The same, with the reactors' fd calls before and after ordered with the search.
int RelaySideFd(RelayFixture& relay, int sender) {
  SyncWithReactors(relay);
  const int fd = FindRelaySideFd(sender);
  SyncWithReactors(relay);
  return fd;
}

// SO_RCVBUF of the relay's socket connected to `sender`, as the kernel counts (twice what
// was set); -1 if not found.
int RelaySideReceiveBuffer(RelayFixture& relay, int sender) {
  SyncWithReactors(relay);
  int v = -1;
  socklen_t vlen = sizeof(v);
  const int fd = FindRelaySideFd(sender);
  if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, &vlen) != 0) {
    v = -1;
  }
  SyncWithReactors(relay);
  return v;
}

// A Ping answered after the data frames proves the reactor finished the read turns that
// delivered them (one reactor thread). Returns the data frames read first.
std::vector<std::string> DrainThroughPong(TestNode* node) {
  std::vector<std::string> data;
  EXPECT_TRUE(node->Send(kOpPing).ok());
  for (int i = 0; i < 1000; ++i) {
    absl::StatusOr<Frame> f = ReadFrame(node->fd(), absl::Seconds(10));
    EXPECT_TRUE(f.ok()) << f.status();
    if (!f.ok()) {
      break;
    }
    wire::Message m;
    if (m.ParseFromString(f->payload) && m.opcode() == kOpPong) {
      return data;
    }
    data.push_back(f->payload);
  }
  ADD_FAILURE() << "no Pong";
  return data;
}

// `count` frames of `size` bytes from `sender`, all delivered whole to `node`.
void Stream(int sender, TestNode* node, int count, size_t size, char fill) {
  std::string bytes;
  for (int i = 0; i < count; ++i) {
    bytes += MakeFrame(std::string(size, fill));
  }
  ASSERT_TRUE(WriteAll(sender, bytes));
  std::vector<std::string> got;
  for (int i = 0; i < count; ++i) {
    absl::StatusOr<Frame> f = node->ReadDataFrame();
    ASSERT_TRUE(f.ok()) << f.status();
    ASSERT_EQ(f->payload, std::string(size, fill));
  }
  EXPECT_TRUE(DrainThroughPong(node).empty());
}

// A node and two senders to it, A and B, on a fake clock.
struct TwoSenders {
  void Start() {
    node = relay.NodeWithAddress(&address);
    const absl::Status connected = ConnectTwo(address, &a, &b);
    ASSERT_TRUE(connected.ok()) << connected;
    ASSERT_EQ(relay.WaitForCounter("proxy_accepted", 2), 2u);
  }
  FakeClock clock;
  RelayFixture relay{8, OneBulkBuffer, &clock};
  std::string address;
  std::unique_ptr<TestNode> node;
  net::UniqueFd a, b;
};

TEST(ReceiveBufferTest, AFastStreamGetsTheBulkBufferAndGivesItBackWhenItSlows) {
  TwoSenders t;
  ASSERT_NO_FATAL_FAILURE(t.Start());
  EXPECT_EQ(RelaySideReceiveBuffer(t.relay, t.a.get()), 2 * static_cast<int>(kSmall));

  // A moves 180 KB within one (fake) second: over 128 KiB, so it takes the one buffer.
  ASSERT_NO_FATAL_FAILURE(Stream(t.a.get(), t.node.get(), 3, 60000, 'a'));
  EXPECT_EQ(t.relay.Counter("proxy_bulk_buffers"), 1u);
  EXPECT_EQ(RelaySideReceiveBuffer(t.relay, t.a.get()), 2 * static_cast<int>(kBulk));
  // B does the same in the same second: none is free (counted), B keeps the small one.
  ASSERT_NO_FATAL_FAILURE(Stream(t.b.get(), t.node.get(), 3, 60000, 'b'));
  EXPECT_EQ(t.relay.Counter("proxy_bulk_buffers_full"), 1u);
  EXPECT_EQ(t.relay.Counter("proxy_bulk_buffers"), 1u);
  EXPECT_EQ(RelaySideReceiveBuffer(t.relay, t.b.get()), 2 * static_cast<int>(kSmall));

  // The second A moved 180 KB in is over: at its next read A keeps the buffer.
  t.clock.Advance(absl::Milliseconds(1500));
  ASSERT_NO_FATAL_FAILURE(Stream(t.a.get(), t.node.get(), 1, 100, 'a'));
  EXPECT_EQ(t.relay.Counter("proxy_bulk_buffers_returned"), 0u);
  // A second of 100 bytes: A gives it back.
  t.clock.Advance(absl::Milliseconds(1500));
  ASSERT_NO_FATAL_FAILURE(Stream(t.a.get(), t.node.get(), 1, 100, 'a'));
  EXPECT_EQ(t.relay.Counter("proxy_bulk_buffers_returned"), 1u);
  EXPECT_EQ(RelaySideReceiveBuffer(t.relay, t.a.get()), 2 * static_cast<int>(kSmall));
  // B, fast again (it was refused in an earlier second), now gets it.
  ASSERT_NO_FATAL_FAILURE(Stream(t.b.get(), t.node.get(), 3, 60000, 'b'));
  EXPECT_EQ(t.relay.Counter("proxy_bulk_buffers"), 2u);
  EXPECT_EQ(RelaySideReceiveBuffer(t.relay, t.b.get()), 2 * static_cast<int>(kBulk));
  // B closes: the buffer is given back with it.
  t.b.Reset();
  EXPECT_EQ(t.relay.WaitForCounter("proxy_bulk_buffers_returned", 2), 2u);
}

TEST(ReceiveBufferTest, AStreamStagedByCopyKeepsTheSmallBuffer) {
  // Copy reads the payload, best while it is still in the CPU's cache: a larger window
  // would let it wait longer. So bytes staged by copy do not count.
  FakeClock clock;
  RelayFixture relay(
      8,
      [](RelayConfig& c) {
        OneBulkBuffer(c);
        c.forward_mode = ForwardMode::kCopy;
      },
      &clock);
  std::string address;
  auto node = relay.NodeWithAddress(&address);
  absl::StatusOr<net::UniqueFd> a = ConnectTo(address);
  ASSERT_TRUE(a.ok());
  ASSERT_NO_FATAL_FAILURE(Stream(a->get(), node.get(), 6, 60000, 'a'));
  EXPECT_GE(relay.Counter("proxy_copied_bytes"), 6u * 60000);
  EXPECT_EQ(relay.Counter("proxy_bulk_buffers"), 0u);
  EXPECT_EQ(relay.Counter("proxy_bulk_buffers_full"), 0u);
  EXPECT_EQ(RelaySideReceiveBuffer(relay, a->get()), 2 * static_cast<int>(kSmall));
}

TEST(ReceiveBufferTest, ASilentHolderYieldsToAFastStreamAfterASecond) {
  TwoSenders t;
  ASSERT_NO_FATAL_FAILURE(t.Start());
  ASSERT_NO_FATAL_FAILURE(Stream(t.a.get(), t.node.get(), 3, 60000, 'a'));
  ASSERT_EQ(t.relay.Counter("proxy_bulk_buffers"), 1u);

  // A goes silent (its socket read to empty). Within the second it staged in, B is refused.
  t.clock.Advance(absl::Milliseconds(500));
  ASSERT_NO_FATAL_FAILURE(Stream(t.b.get(), t.node.get(), 3, 60000, 'b'));
  EXPECT_EQ(t.relay.Counter("proxy_bulk_buffers_full"), 1u);
  EXPECT_EQ(RelaySideReceiveBuffer(t.relay, t.a.get()), 2 * static_cast<int>(kBulk));
  // A second after A's last bytes, B asks again and takes A's buffer.
  t.clock.Advance(absl::Milliseconds(1100));
  ASSERT_NO_FATAL_FAILURE(Stream(t.b.get(), t.node.get(), 3, 60000, 'b'));
  EXPECT_EQ(t.relay.Counter("proxy_bulk_buffers"), 2u);
  EXPECT_EQ(t.relay.Counter("proxy_bulk_buffers_returned"), 1u);
  EXPECT_EQ(RelaySideReceiveBuffer(t.relay, t.a.get()), 2 * static_cast<int>(kSmall));
  EXPECT_EQ(RelaySideReceiveBuffer(t.relay, t.b.get()), 2 * static_cast<int>(kBulk));
  // A still flows, now through the small buffer.
  ASSERT_NO_FATAL_FAILURE(Stream(t.a.get(), t.node.get(), 2, 1000, 'a'));
}

TEST(ReceiveBufferTest, AStreamHeldBackByItsNodeKeepsItsBuffer) {
  // Node 1 stops reading: the relay stops reading A (its staging waits for node 1) and
  // A's socket may queue its whole bulk buffer. That memory stays counted: a second later
  // the fast B of node 2 is refused, not given A's buffer. When node 1 reads again, A's
  // frames arrive whole.
  FakeClock clock;
  RelayFixture relay(
      16,
      [](RelayConfig& c) {
        OneBulkBuffer(c);
        c.max_frame_bytes = 64 * 1024;
        c.stage_bytes = 64 * 1024;
        c.session_stage_bytes = 2 * (64 * 1024 + kFrameHeaderSize);
      },
      &clock);
  std::string address1, address2;
  auto node1 = relay.NodeWithAddress(&address1);
  auto node2 = relay.NodeWithAddress(&address2);
  absl::StatusOr<net::UniqueFd> a = ConnectTo(address1);
  absl::StatusOr<net::UniqueFd> b = ConnectTo(address2);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_NO_FATAL_FAILURE(Stream(a->get(), node1.get(), 3, 60000, 'a'));
  ASSERT_EQ(relay.Counter("proxy_bulk_buffers"), 1u);

  // A writes on while node 1 reads nothing, until the relay's socket for A holds more
  // unread bytes than the small buffer could: the relay has stopped reading A (its
  // staging waits for node 1) and A's bulk buffer is in use.
  ASSERT_TRUE(net::SetNonBlocking(a->get()).ok());
  const int relay_side = RelaySideFd(relay, a->get());
  ASSERT_GE(relay_side, 0);
  const std::string frame = MakeFrame(std::string(60000, 'q'));
  size_t written = 0;
  int queued = 0;
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (queued <= 2 * static_cast<int>(kSmall) && absl::Now() < deadline) {
    const size_t at = written % frame.size();
    const ssize_t n = send(a->get(), frame.data() + at, frame.size() - at, MSG_NOSIGNAL);
    if (n > 0) {
      written += static_cast<size_t>(n);
    } else {
      ASSERT_EQ(errno, EAGAIN);
      pollfd p{a->get(), POLLOUT, 0};
      poll(&p, 1, 10);
    }
    ASSERT_EQ(ioctl(relay_side, FIONREAD, &queued), 0);
  }
  ASSERT_GT(queued, 2 * static_cast<int>(kSmall));

  clock.Advance(absl::Milliseconds(1500));
  ASSERT_NO_FATAL_FAILURE(Stream(b->get(), node2.get(), 3, 60000, 'b'));
  EXPECT_EQ(relay.Counter("proxy_bulk_buffers_full"), 1u);
  EXPECT_EQ(relay.Counter("proxy_bulk_buffers"), 1u);
  EXPECT_EQ(relay.Counter("proxy_bulk_buffers_returned"), 0u);
  EXPECT_EQ(RelaySideReceiveBuffer(relay, a->get()), 2 * static_cast<int>(kBulk));

  // Node 1 reads again: every whole frame A wrote arrives.
  const size_t whole = written / frame.size();
  for (size_t i = 0; i < whole; ++i) {
    absl::StatusOr<Frame> f = node1->ReadDataFrame();
    ASSERT_TRUE(f.ok()) << f.status() << " after " << i << " of " << whole;
    ASSERT_EQ(f->payload, std::string(60000, 'q'));
  }
}

}  // namespace
}  // namespace relay::testing
