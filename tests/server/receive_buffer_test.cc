// Peer receive buffers (--peer_receive_buffer): every peer socket is capped, whether its
// stream is fast or slow, staged by splice or by copy, so what peers can queue in the
// kernel stays bounded. The relay runs in this process, so the tests read its sockets'
// SO_RCVBUF directly.
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
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/control_codec.h"
#include "gtest/gtest.h"
#include "net/socket_ops.h"
#include "tests/testing/relay_fixture.h"

namespace relay::testing {
namespace {

// Below Debian's default net.core.rmem_max (212992), which cuts SO_RCVBUF.
constexpr uint32_t kSmall = 32 * 1024;

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
  ASSERT_TRUE(relay.server().Snapshot(absl::Seconds(10)).ok());
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

class ReceiveBufferTest : public ::testing::TestWithParam<ForwardMode> {};

TEST_P(ReceiveBufferTest, EveryPeerSocketKeepsThePeerReceiveBufferWhileItStreams) {
  RelayFixture relay(8, [](RelayConfig& c) {
    c.threads = 1;
    c.forward_mode = GetParam();
    c.peer_receive_buffer = kSmall;
  });
  std::string address;
  std::unique_ptr<TestNode> node = relay.NodeWithAddress(&address);
  net::UniqueFd a, b;
  const absl::Status connected = ConnectTwo(address, &a, &b);
  ASSERT_TRUE(connected.ok()) << connected;
  ASSERT_EQ(relay.WaitForCounter("proxy_accepted", 2), 2u);
  // A streams 8 MiB (64 KiB frames) while B stays silent: both keep the cap.
  const std::string frame = MakeFrame(std::string(64 * 1024, 'a'));
  std::thread writer([&] {
    for (int i = 0; i < 128; ++i) {
      if (!WriteAll(a.get(), frame)) {
        return;
      }
    }
  });
  std::string failure;  // asserted once the writer is joined (a joinable thread aborts)
  for (int i = 0; i < 128 && failure.empty(); ++i) {
    absl::StatusOr<Frame> f = node->ReadDataFrame();
    if (!f.ok() || f->payload.size() != 64u * 1024) {
      failure = absl::StrCat("frame ", i, ": ", f.ok() ? "wrong size" : f.status().ToString());
      ::shutdown(a.get(), SHUT_RDWR);  // unblocks the writer
    }
  }
  writer.join();
  ASSERT_TRUE(failure.empty()) << failure;
  EXPECT_EQ(RelaySideReceiveBuffer(relay, a.get()), static_cast<int>(2 * kSmall));
  EXPECT_EQ(RelaySideReceiveBuffer(relay, b.get()), static_cast<int>(2 * kSmall));
}

INSTANTIATE_TEST_SUITE_P(Modes, ReceiveBufferTest,
                         ::testing::Values(ForwardMode::kSplice, ForwardMode::kCopy),
                         [](const ::testing::TestParamInfo<ForwardMode>& info) {
                           return info.param == ForwardMode::kCopy ? "Copy" : "Splice";
                         });

}  // namespace
}  // namespace relay::testing
