// The relay-node command: clear messages and distinct exit codes for what goes wrong.
#include <sys/stat.h>

#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/testing/free_ports.h"
#include "tests/testing/relay_process.h"

namespace relay::testing {
namespace {

TEST(RelayNodeCliTest, UnreachableRelayExitsOneWithTheReason) {
  const uint16_t dead = PickFreePortRange(1);
  std::string out;
  EXPECT_EQ(RelayProcess::RunProgram(
                "relay-node", {absl::StrCat("--relay=127.0.0.1:", dead), "--timeout=300ms"}, &out),
            1);
  EXPECT_NE(out.find("cannot reach any relay"), std::string::npos) << out;
  EXPECT_NE(out.find("Connection refused"), std::string::npos) << out;
}

TEST(RelayNodeCliTest, RefusedRequestExitsThree) {
  RelayProcess relay;
  const uint16_t lo = PickFreePortRange(1);
  ASSERT_TRUE(relay.Start({absl::StrCat("--port_range=", lo, "-", lo), "--quiet"}));
  std::string out;
  // `send --wait-reply` to an unreachable peer: gets an address, then fails to send.
  EXPECT_EQ(
      RelayProcess::RunProgram("relay-node",
                               {"send", absl::StrCat("--relay=127.0.0.1:", relay.port()),
                                "--to=127.0.0.1:1", "--text=x", "--wait-reply", "--timeout=2s"},
                               &out),
      1);
  EXPECT_NE(out.find("cannot connect to 127.0.0.1:1"), std::string::npos) << out;
  // Once the relay has ended that session, a live node holds the only port (it takes
  // the remembered one); a different identity is then refused.
  for (int i = 0; i < 500 && relay.Counters()["sessions_ended"] < 1; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  BackgroundProgram holder;
  ASSERT_TRUE(holder.Start("relay-node", {absl::StrCat("--relay=127.0.0.1:", relay.port())}));
  ASSERT_TRUE(holder.WaitForOutput(absl::StrCat("127.0.0.1:", lo), absl::Seconds(10)))
      << holder.Output();
  EXPECT_EQ(
      RelayProcess::RunProgram(
          "relay-node", {absl::StrCat("--relay=127.0.0.1:", relay.port()), "--timeout=2s"}, &out),
      3);
  EXPECT_NE(out.find("refused"), std::string::npos) << out;
  EXPECT_EQ(relay.Stop(), 0);
}

TEST(RelayNodeCliTest, UnreadableKeyFileExitsTwo) {
  const std::string path = absl::StrCat("/tmp/relay-cli-bad-", getpid(), ".key");
  std::ofstream(path) << "this is not a key\n";
  ASSERT_EQ(chmod(path.c_str(), 0600), 0);
  std::string out;
  EXPECT_EQ(RelayProcess::RunProgram("relay-node", {"--relay=127.0.0.1:1", "--key=" + path}, &out),
            2);
  EXPECT_NE(out.find(path + ": expected 64 hex characters"), std::string::npos) << out;
  // A key others can read is refused before it is used.
  std::ofstream(path) << std::string(64, 'a') << "\n";
  ASSERT_EQ(chmod(path.c_str(), 0644), 0);
  EXPECT_EQ(RelayProcess::RunProgram("relay-node", {"--relay=127.0.0.1:1", "--key=" + path}, &out),
            2);
  EXPECT_NE(out.find("readable or writable by others"), std::string::npos) << out;
  unlink(path.c_str());
  EXPECT_EQ(RelayProcess::RunProgram("relay-node", {}, &out), 2);
  EXPECT_NE(out.find("--relay"), std::string::npos) << out;
}

TEST(RelayNodeCliTest, PinnedRelayKeyAcceptsTheRelayAndRefusesAnImpostor) {
  RelayProcess pinned_relay;
  const uint16_t lo = PickFreePortRange(2);
  ASSERT_TRUE(pinned_relay.Start(
      {"--threads=1", absl::StrCat("--port_range=", lo, "-", lo + 1), "--strict_claims"}));
  std::string key;  // printed just after the port accepts: wait for it (bounded)
  for (int i = 0; i < 500 && key.empty(); ++i) {
    const std::string log = pinned_relay.Stderr();
    const size_t at = log.find("relay key ");
    if (at != std::string::npos && log.size() >= at + 10 + 64) {
      key = log.substr(at + 10, 64);
    } else {
      absl::SleepFor(absl::Milliseconds(10));
    }
  }
  ASSERT_EQ(key.size(), 64u) << pinned_relay.Stderr();
  const std::string relay_flag = absl::StrCat("--relay=127.0.0.1:", pinned_relay.port());
  // The right key: relay-node gets its address (a fresh claim, accepted in strict mode).
  BackgroundProgram node;
  ASSERT_TRUE(node.Start("relay-node", {relay_flag, "--relay_key=" + key}));
  ASSERT_TRUE(node.WaitForOutput(absl::StrCat("127.0.0.1:", lo), absl::Seconds(10)))
      << node.Output();
  // Another key: refused as an impostor, exit 1 with the reason.
  std::string out;
  EXPECT_EQ(
      RelayProcess::RunProgram(
          "relay-node", {relay_flag, "--relay_key=" + std::string(64, 'b'), "--timeout=1s"}, &out),
      1);
  EXPECT_NE(out.find("not a pinned one (--relay_key)"), std::string::npos) << out;
  EXPECT_EQ(RelayProcess::RunProgram("relay-node", {relay_flag, "--relay_key=12"}, &out), 2);
  EXPECT_NE(out.find("--relay_key=12: expected 64 hex characters"), std::string::npos) << out;
  EXPECT_EQ(pinned_relay.Stop(), 0);
}

}  // namespace
}  // namespace relay::testing
