// The relay's identity: nodes (the Go node library) identify their relay by its key, so a
// relay that changed key at every start lost its nodes after a restart even when it gave
// them their old addresses. With --state_dir the key is kept there (relay.key), through
// kill -9 and live upgrades; with neither it nor --key_file the relay warns at start.
#include <signal.h>
#include <sys/stat.h>

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/control_codec.h"
#include "gtest/gtest.h"
#include "tests/adversarial/attack_helpers.h"
#include "tests/testing/free_ports.h"
#include "tests/testing/temp_dir.h"

namespace relay::testing {
namespace {

// The key the relay on `port` signs its answers with (the sender of a keepalive's reply).
std::string RelayKey(uint16_t port) {
  TestNode node;
  EXPECT_TRUE(node.Connect("127.0.0.1", port).ok());
  EXPECT_TRUE(node.Send(kOpKeepalive).ok());
  absl::StatusOr<wire::Message> reply = node.ReadMessage();
  EXPECT_TRUE(reply.ok()) << reply.status();
  return reply.ok() ? reply->sender().net_key() : "";
}

class RelayKeyTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_FALSE(dir_.empty()); }
  TempDir temp_{"key"};
  const std::string dir_ = temp_.path();
};

TEST_F(RelayKeyTest, WithAStateDirectoryTheKeySurvivesKillNineAndLiveUpgrades) {
  const std::string state = dir_ + "/state";
  const std::string ports = PortRange(4);
  std::string key;
  {
    RelayProcess relay;
    ASSERT_TRUE(relay.Start({ports, "--state_dir=" + state}));
    key = RelayKey(relay.port());
    EXPECT_EQ(key.size(), 32u);
    EXPECT_FALSE(absl::StrContains(relay.Stderr(), "key is new at every start"));
    ASSERT_EQ(kill(relay.pid(), SIGKILL), 0);
    EXPECT_EQ(relay.Stop(), -1);
  }
  struct stat st;
  ASSERT_EQ(stat((state + "/relay.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  RelayProcess relay;
  const std::string socket = dir_ + "/upgrade.sock";
  ASSERT_TRUE(relay.Start({ports, "--state_dir=" + state, "--upgrade_socket=" + socket}));
  EXPECT_EQ(RelayKey(relay.port()), key) << "a new key after kill -9";
  RelayProcess next;
  ASSERT_TRUE(next.TakeOver(relay, {ports, "--state_dir=" + state}, socket)) << next.Stderr();
  EXPECT_EQ(RelayKey(next.port()), key) << "a new key after a live upgrade";
  EXPECT_EQ(next.Stop(), 0);
}

TEST_F(RelayKeyTest, AnUpgradeFromAnEphemeralKeyKeepsItInTheStateDirectory) {
  // A relay of an earlier version ran with --state_dir but a new key per start: the
  // process that takes over keeps the running key, and from then on it is kept.
  const std::string socket = dir_ + "/upgrade.sock";
  const std::string ports = PortRange(4);
  RelayProcess relay;
  ASSERT_TRUE(relay.Start({ports, "--upgrade_socket=" + socket}));
  EXPECT_TRUE(absl::StrContains(relay.Stderr(), "key is new at every start"));
  const std::string key = RelayKey(relay.port());
  RelayProcess next;
  ASSERT_TRUE(next.TakeOver(relay, {ports, "--state_dir=" + dir_ + "/state"}, socket));
  EXPECT_EQ(RelayKey(next.port()), key);
  EXPECT_EQ(next.Stop(), 0);
  RelayProcess restarted;
  ASSERT_TRUE(restarted.Start({ports, "--state_dir=" + dir_ + "/state"}));
  EXPECT_EQ(RelayKey(restarted.port()), key);
  EXPECT_EQ(restarted.Stop(), 0);
}

}  // namespace
}  // namespace relay::testing
