// Restarts of the real binary: leases in --state_dir survive a kill -9 (a stranger that
// comes first never gets a remembered port; the owner, second, gets its own back, still
// bound to its key), a damaged state refuses to start unless discarded, and SIGTERM
// drains without cutting a frame.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <atomic>
#include <fstream>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/control_codec.h"
#include "core/frame_header.h"
#include "core/identity.h"
#include "gtest/gtest.h"
#include "tests/testing/free_ports.h"
#include "tests/testing/relay_process.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/test_node.h"

namespace relay::testing {
namespace {

class RestartTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.empty());
    lo_ = PickFreePortRange(2);
  }
  std::vector<std::string> Flags() {
    return {"--threads=2", absl::StrCat("--port_range=", lo_, "-", lo_ + 1), "--state_dir=" + dir_,
            "--state_sync_interval=100ms"};
  }
  TempDir temp_{"state"};
  const std::string dir_ = temp_.path();
  uint16_t lo_ = 0;
};

std::unique_ptr<TestNode> Signed(const Identity& key) {
  auto n = std::make_unique<TestNode>();
  n->SignAs(key.public_key(), key.secret_key());
  return n;
}

TEST_F(RestartTest, AfterKillNineTheOwnerGetsItsAddressAndAStrangerNeverDoes) {
  const Identity owner = Identity::Generate();
  std::string address;
  {
    RelayProcess relay;
    ASSERT_TRUE(relay.Start(Flags()));
    auto node = Signed(owner);
    ASSERT_TRUE(node->Connect("127.0.0.1", relay.port()).ok());
    absl::StatusOr<std::string> a = node->RequestProxy();
    ASSERT_TRUE(a.ok()) << a.status();
    address = *a;
    ASSERT_EQ(kill(relay.pid(), SIGKILL), 0);  // a crash: no clean stop, no snapshot
    EXPECT_EQ(relay.Stop(), -1);
  }
  RelayProcess relay;
  ASSERT_TRUE(relay.Start(Flags()));
  // A stranger first: it gets the other port, never the owner's.
  auto stranger = Signed(Identity::Generate());
  ASSERT_TRUE(stranger->Connect("127.0.0.1", relay.port()).ok());
  absl::StatusOr<std::string> other = stranger->RequestProxy();
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_NE(*other, address);
  // A thief with the owner's connection id, unsigned: the binding survived the crash.
  TestNode thief(Signed(owner)->connection_id());
  ASSERT_TRUE(thief.Connect("127.0.0.1", relay.port()).ok());
  EXPECT_FALSE(thief.RequestProxy().ok());
  // The owner, second: its own address back.
  auto back = Signed(owner);
  ASSERT_TRUE(back->Connect("127.0.0.1", relay.port()).ok());
  absl::StatusOr<std::string> again = back->RequestProxy();
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, address);
  std::map<std::string, uint64_t> c = relay.Counters();
  EXPECT_EQ(c["leases_restored"], 1u);
  EXPECT_EQ(c["leases_reused"], 1u);
  EXPECT_EQ(c["claims_refused_bound"], 1u);
  // And after a clean stop and start, the same again.
  EXPECT_EQ(relay.Stop(), 0);
  RelayProcess third;
  ASSERT_TRUE(third.Start(Flags()));
  auto last = Signed(owner);
  ASSERT_TRUE(last->Connect("127.0.0.1", third.port()).ok());
  absl::StatusOr<std::string> last_address = last->RequestProxy();
  ASSERT_TRUE(last_address.ok());
  EXPECT_EQ(*last_address, address);
  EXPECT_EQ(third.Stop(), 0);
}

// With two proxy addresses the lease on disk keeps which IP it is on: after kill -9 each
// owner gets its own IP and port back, and a stranger neither.
TEST_F(RestartTest, LeasesOnTwoProxyAddressesComeBackOnTheirOwnIp) {
  std::vector<std::string> flags = Flags();
  flags[0] = "--threads=1";  // one reactor: the addresses are handed out in turn
  flags.push_back("--advertise_host=127.0.0.1,127.0.0.2");
  const Identity first = Identity::Generate();
  const Identity second = Identity::Generate();
  std::string a1, a2;
  {
    RelayProcess relay;
    ASSERT_TRUE(relay.Start(flags));
    auto n1 = Signed(first);
    auto n2 = Signed(second);
    ASSERT_TRUE(n1->Connect("127.0.0.1", relay.port()).ok());
    ASSERT_TRUE(n2->Connect("127.0.0.1", relay.port()).ok());
    absl::StatusOr<std::string> r1 = n1->RequestProxy();
    absl::StatusOr<std::string> r2 = n2->RequestProxy();
    ASSERT_TRUE(r1.ok() && r2.ok());
    a1 = *r1;
    a2 = *r2;
    EXPECT_EQ(a1.rfind("127.0.0.1:", 0), 0u) << a1;
    EXPECT_EQ(a2.rfind("127.0.0.2:", 0), 0u) << a2;
    ASSERT_EQ(kill(relay.pid(), SIGKILL), 0);
    EXPECT_EQ(relay.Stop(), -1);
  }
  RelayProcess relay;
  ASSERT_TRUE(relay.Start(flags));
  auto stranger = Signed(Identity::Generate());
  ASSERT_TRUE(stranger->Connect("127.0.0.1", relay.port()).ok());
  absl::StatusOr<std::string> other = stranger->RequestProxy();
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_NE(*other, a1);
  EXPECT_NE(*other, a2);
  auto back2 = Signed(second);
  ASSERT_TRUE(back2->Connect("127.0.0.1", relay.port()).ok());
  absl::StatusOr<std::string> again2 = back2->RequestProxy();
  ASSERT_TRUE(again2.ok()) << again2.status();
  EXPECT_EQ(*again2, a2);
  auto back1 = Signed(first);
  ASSERT_TRUE(back1->Connect("127.0.0.1", relay.port()).ok());
  absl::StatusOr<std::string> again1 = back1->RequestProxy();
  ASSERT_TRUE(again1.ok()) << again1.status();
  EXPECT_EQ(*again1, a1);
  EXPECT_EQ(relay.Counters()["leases_restored"], 2u);
  EXPECT_EQ(relay.Stop(), 0);
}

TEST_F(RestartTest, ADamagedStateRefusesToStartUnlessDiscarded) {
  {
    RelayProcess relay;
    ASSERT_TRUE(relay.Start(Flags()));
    TestNode node;
    ASSERT_TRUE(node.Connect("127.0.0.1", relay.port()).ok());
    ASSERT_TRUE(node.RequestProxy().ok());
    EXPECT_EQ(relay.Stop(), 0);
  }
  {
    // Flip bits of one byte (setting it to a constant would leave it unchanged 1 time in
    // 256: the byte may be part of a random connection id).
    std::fstream f(dir_ + "/leases.snapshot", std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(30);
    const char byte = static_cast<char>(f.get());
    f.seekp(30);
    f.put(static_cast<char>(byte ^ 0x55));
  }
  std::vector<std::string> flags = Flags();
  flags.push_back("--listen=127.0.0.1:0");
  std::string output;
  EXPECT_EQ(RelayProcess::RunToCompletion(flags, &output), 1);
  EXPECT_NE(output.find("leases.snapshot: checksum mismatch"), std::string::npos) << output;
  EXPECT_NE(output.find("--state_discard_corrupt"), std::string::npos) << output;
  RelayProcess relay;
  flags.pop_back();
  flags.push_back("--state_discard_corrupt");
  ASSERT_TRUE(relay.Start(flags));
  TestNode node;
  ASSERT_TRUE(node.Connect("127.0.0.1", relay.port()).ok());
  EXPECT_TRUE(node.RequestProxy().ok());
  EXPECT_EQ(relay.Stop(), 0);
  EXPECT_NE(relay.Stderr().find("moved the damaged lease state to"), std::string::npos);
}

// SIGTERM under load: 16 senders push 64 KiB frames at one node; the node's stream must
// end with whole frames, then the relay's Disconnect, then EOF: never inside a frame.
TEST_F(RestartTest, SigtermDrainsWithoutCuttingAFrame) {
  RelayProcess relay;
  std::vector<std::string> flags = Flags();
  flags.push_back("--drain_timeout=20s");
  ASSERT_TRUE(relay.Start(flags));
  TestNode node;
  absl::StatusOr<std::string> address = node.ConnectAndClaim(relay.port());
  ASSERT_TRUE(address.ok());

  constexpr int kSenders = 16;
  constexpr uint32_t kPayload = 64 * 1024;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> sent_frames{0};
  std::vector<std::thread> senders;
  for (int i = 0; i < kSenders; ++i) {
    senders.emplace_back([&, i] {
      absl::StatusOr<net::UniqueFd> fd = ConnectTo(*address);
      if (!fd.ok()) {
        return;
      }
      const std::string frame = MakeFrame(std::string(kPayload, static_cast<char>('a' + i)));
      while (!stop.load()) {
        size_t off = 0;
        while (off < frame.size()) {
          const ssize_t n = send(fd->get(), frame.data() + off, frame.size() - off, MSG_NOSIGNAL);
          if (n <= 0) {
            return;  // the relay closed us (drain): done
          }
          off += static_cast<size_t>(n);
        }
        sent_frames.fetch_add(1);
      }
    });
  }
  // The node reads everything until EOF and checks it frame by frame.
  std::atomic<uint64_t> data_frames{0};
  uint64_t bad_frames = 0, frames_after_disconnect = 0;
  bool disconnect = false;
  size_t leftover = 0;
  std::thread reader([&] {
    FrameStream stream(kDefaultNetworkId, 1u << 24);
    char tmp[1 << 16];
    const absl::Time deadline = absl::Now() + absl::Seconds(60);
    while (absl::Now() < deadline) {
      pollfd p{node.fd(), POLLIN, 0};
      if (poll(&p, 1, 1000) <= 0) {
        continue;
      }
      const ssize_t n = recv(node.fd(), tmp, sizeof(tmp), 0);
      if (n <= 0) {
        break;  // EOF (or reset)
      }
      stream.Append(absl::string_view(tmp, static_cast<size_t>(n)));
      const bool good =
          TakeWholeFrames(&stream, [&](const FrameHeader& h, absl::string_view payload) {
            if (disconnect) {
              ++frames_after_disconnect;
            }
            if (h.length == kPayload) {
              ++data_frames;
              if (payload.find_first_not_of(payload[0]) != absl::string_view::npos) {
                ++bad_frames;  // bytes of two frames mixed
              }
            } else {
              wire::Message m;
              if (m.ParseFromArray(payload.data(), static_cast<int>(payload.size())) &&
                  m.opcode() == kOpDisconnect) {
                disconnect = true;
              } else {
                ++bad_frames;
              }
            }
          });
      if (!good) {
        ++bad_frames;  // a header that breaks the rules: the stream cannot go on
        break;
      }
    }
    leftover = stream.buffered();
  });
  for (int i = 0; i < 1000 && data_frames.load() < 200; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_GE(data_frames.load(), 200u) << "frames flow to the node";
  const uint64_t before = data_frames.load();
  EXPECT_EQ(relay.Stop(absl::Seconds(30)), 0) << relay.Stderr();
  stop.store(true);
  reader.join();
  for (std::thread& t : senders) {
    t.join();
  }
  EXPECT_GE(data_frames.load(), before);
  EXPECT_EQ(bad_frames, 0u);
  EXPECT_EQ(leftover, 0u) << "the stream ended inside a frame";
  EXPECT_TRUE(disconnect) << "the node was told";
  EXPECT_EQ(frames_after_disconnect, 0u);
  EXPECT_NE(relay.Stderr().find("drained in"), std::string::npos) << relay.Stderr();
}

}  // namespace
}  // namespace relay::testing
