// Restarts of the real binary: leases in --state_dir survive a kill -9 (a stranger that
// comes first never gets a remembered port; the owner, second, gets its own back, still
// bound to its key), and a damaged state refuses to start unless discarded.
#include <signal.h>
#include <sys/wait.h>

#include <fstream>

#include "absl/strings/str_cat.h"
#include "core/identity.h"
#include "gtest/gtest.h"
#include "tests/testing/free_ports.h"
#include "tests/testing/relay_process.h"
#include "tests/testing/test_node.h"

namespace relay::testing {
namespace {

class RestartTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/relay-state-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    lo_ = PickFreePortRange(2);
  }
  void TearDown() override { ASSERT_EQ(system(("rm -rf " + dir_).c_str()), 0); }
  std::vector<std::string> Flags() {
    return {"--threads=2", absl::StrCat("--port_range=", lo_, "-", lo_ + 1), "--state_dir=" + dir_,
            "--state_sync_interval=100ms"};
  }
  std::string dir_;
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
    std::fstream f(dir_ + "/leases.snapshot", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(30);
    f.put('\x55');
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

}  // namespace
}  // namespace relay::testing
