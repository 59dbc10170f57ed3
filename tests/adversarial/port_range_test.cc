// Proxy ports the host cannot take: the default --port_range is outside Linux's
// ephemeral range (outgoing connections of the host took remembered ports: 27 leases came
// back on other ports in a kill -9 loop), the relay warns when a range overlaps it, and a
// live upgrade from a relay on another range (an earlier default) keeps that range.
#include <fstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/adversarial/attack_helpers.h"
#include "tests/testing/free_ports.h"
#include "tests/testing/temp_dir.h"

namespace relay::testing {
namespace {

// True once the relay's log has the "listening" line (its start-up warnings come before).
bool Started(const RelayProcess& relay) {
  for (int i = 0; i < 100; ++i) {
    if (absl::StrContains(relay.Stderr(), "relay-server listening")) {
      return true;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return false;
}

TEST(PortRangeTest, TheDefaultRangeIsOutsideTheEphemeralOneAndAnOverlapIsWarned) {
  int lo = 0, hi = 0;
  std::ifstream("/proc/sys/net/ipv4/ip_local_port_range") >> lo >> hi;
  ASSERT_GT(hi, 0);
  RelayProcess relay;  // on the default range (binding is not needed to see the warning)
  ASSERT_TRUE(relay.Start({"--threads=1"}));
  ASSERT_TRUE(Started(relay));
  const bool overlaps = lo <= 29999 && hi >= 20000;
  EXPECT_EQ(absl::StrContains(relay.Stderr(), "overlaps net.ipv4.ip_local_port_range"), overlaps)
      << relay.Stderr();
  EXPECT_EQ(relay.Stop(), 0);
  RelayProcess inside;
  ASSERT_TRUE(inside.Start({absl::StrCat("--port_range=", lo, "-", lo + 9), "--threads=1"}));
  ASSERT_TRUE(Started(inside));
  EXPECT_TRUE(absl::StrContains(
      inside.Stderr(),
      absl::StrCat("overlaps net.ipv4.ip_local_port_range (", lo, "-", hi, ") in 10 ports")))
      << inside.Stderr();
  EXPECT_EQ(inside.Stop(), 0);
}

TEST(PortRangeTest, ALiveUpgradeWithoutPortRangeKeepsTheRunningRelaysRange) {
  TempDir dir("ports");
  ASSERT_FALSE(dir.path().empty());
  const std::string socket = dir.path() + "/upgrade.sock";
  RelayProcess old_relay;  // an earlier version's default range, here any other range
  ASSERT_TRUE(old_relay.Start({PortRange(4), "--upgrade_socket=" + socket}));
  Innocents innocents(old_relay.port(), 2);
  ASSERT_TRUE(innocents.Flow(3));
  RelayProcess next;
  ASSERT_TRUE(next.TakeOver(old_relay, {"--threads=1"}, socket)) << next.Stderr();
  EXPECT_TRUE(absl::StrContains(next.Stderr(), "keeping the running relay's proxy ports"))
      << next.Stderr();
  EXPECT_TRUE(innocents.Flow(3)) << "the sessions did not survive the upgrade";
  EXPECT_EQ(next.Stop(), 0);
}

}  // namespace
}  // namespace relay::testing
