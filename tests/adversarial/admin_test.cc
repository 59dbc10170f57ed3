// The admin endpoint under idle and slow clients: it serves many at once, so a health
// check is answered while 1,000 connections sit idle and slow ones trickle their
// requests; the idle and slow are closed at their header deadline (2 s).
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/adversarial/attack_helpers.h"
#include "tests/testing/free_ports.h"

namespace relay::testing {
namespace {

TEST(AdminTest, HealthzIsAnsweredBesideAThousandIdleAndSlowClients) {
  const uint16_t admin = PickFreePortRange(1);
  RelayProcess relay;
  ASSERT_TRUE(relay.Start(
      {PortRange(4), "--threads=1", absl::StrCat("--admin_listen=127.0.0.1:", admin), "--quiet"}));
  ASSERT_TRUE(WaitForAdmin(admin));
  std::vector<net::UniqueFd> idle;
  for (int i = 0; i < 1000; ++i) {
    absl::StatusOr<net::UniqueFd> fd =
        net::ConnectWithTimeout("127.0.0.1", admin, absl::Seconds(2));
    ASSERT_TRUE(fd.ok()) << "connection " << i << ": " << fd.status();
    idle.push_back(std::move(*fd));
  }
  // 20 slowloris clients: a byte of a request head every 100 ms.
  std::atomic<bool> stop{false};
  std::thread slow([&] {
    std::vector<net::UniqueFd> fds;
    for (int i = 0; i < 20; ++i) {
      absl::StatusOr<net::UniqueFd> fd =
          net::ConnectWithTimeout("127.0.0.1", admin, absl::Seconds(2));
      if (fd.ok()) {
        fds.push_back(std::move(*fd));
      }
    }
    const std::string head =
        "GET /metrics HTTP/1.1\r\nX-Slow: 1234567890123456789012345678901234567890";
    for (size_t at = 0; at < head.size() && !stop.load(); ++at) {
      for (net::UniqueFd& fd : fds) {
        WriteAll(fd.get(), head.substr(at, 1));
      }
      absl::SleepFor(absl::Milliseconds(100));
    }
  });
  absl::SleepFor(absl::Milliseconds(300));
  for (int i = 0; i < 5; ++i) {
    absl::StatusOr<HttpAnswer> health = HttpGet(admin, "/healthz", absl::Seconds(1));
    ASSERT_TRUE(health.ok()) << "check " << i << ": " << health.status();
    EXPECT_EQ(health->code, 200);
    EXPECT_EQ(health->body, "ok\n");
  }
  absl::StatusOr<HttpAnswer> metrics = HttpGet(admin, "/metrics", absl::Seconds(2));
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_EQ(metrics->code, 200);
  // The idle clients are closed at their header deadline (with a 408).
  for (size_t i = 0; i < idle.size(); i += 100) {
    EXPECT_TRUE(WaitForClose(idle[i].get(), absl::Seconds(5))) << "idle client " << i;
  }
  stop = true;
  slow.join();
  EXPECT_EQ(relay.Stop(), 0);
}

}  // namespace
}  // namespace relay::testing
