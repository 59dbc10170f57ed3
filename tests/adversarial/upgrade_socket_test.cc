// Silent callers of the upgrade socket (a process of the relay's uid that connects and
// says nothing) cannot hold the upgrade path: each is closed after kHelloTimeout, and a
// real upgrade queued behind them goes through while innocent nodes keep flowing.
#include <sys/socket.h>
#include <sys/un.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/adversarial/attack_helpers.h"
#include "tests/testing/temp_dir.h"

namespace relay::testing {
namespace {

net::UniqueFd ConnectUnix(const std::string& path) {
  net::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  path.copy(addr.sun_path, sizeof(addr.sun_path) - 1);
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    return net::UniqueFd();
  }
  return fd;
}

TEST(UpgradeSocketTest, SilentCallersDoNotHoldALiveUpgradeBack) {
  TempDir dir("upgrade");
  ASSERT_FALSE(dir.path().empty());
  const std::string socket = dir.path() + "/upgrade.sock";
  const std::string ports = PortRange(4);
  RelayProcess relay;
  ASSERT_TRUE(relay.Start({ports, "--upgrade_socket=" + socket, "--quiet"}));
  Innocents innocents(relay.port(), 2);
  ASSERT_TRUE(innocents.Flow(3));
  std::vector<net::UniqueFd> silent;
  for (int i = 0; i < 20; ++i) {  // 20 x 10 s before: the upgrade gave up long before
    silent.push_back(ConnectUnix(socket));
    ASSERT_TRUE(silent.back().valid());
  }
  RelayProcess next;
  ASSERT_TRUE(next.TakeOver(relay, {ports, "--quiet"}, socket)) << next.Stderr();
  EXPECT_TRUE(innocents.Flow(3));
  for (net::UniqueFd& fd : silent) {
    EXPECT_TRUE(WaitForClose(fd.get(), absl::Seconds(5)));
  }
  EXPECT_EQ(next.Stop(), 0);
}

}  // namespace
}  // namespace relay::testing
