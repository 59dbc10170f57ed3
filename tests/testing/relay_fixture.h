// RelayFixture: a RelayServer running in the test process on 127.0.0.1 (main port 0,
// proxy ports from a free range), stopped and joined when the fixture is destroyed.
#pragma once

#include <functional>
#include <memory>

#include "gtest/gtest.h"
#include "server/relay_server.h"
#include "tests/testing/free_ports.h"
#include "tests/testing/test_node.h"

namespace relay::testing {

class RelayFixture {
 public:
  // `ports`: how many proxy ports; `tweak` may change the config before start; `clock`
  // drives every timer of the relay (a FakeClock makes time-based tests deterministic:
  // advance it, then wait for the counter).
  explicit RelayFixture(int ports = 64, std::function<void(RelayConfig&)> tweak = nullptr,
                        const Clock* clock = MonotonicClock::Get()) {
    config_.listen = HostPort{"127.0.0.1", 0};
    config_.threads = 2;
    config_.port_lo = PickFreePortRange(ports);
    config_.port_hi = static_cast<uint16_t>(config_.port_lo + ports - 1);
    if (tweak) {
      tweak(config_);
    }
    absl::StatusOr<std::unique_ptr<RelayServer>> server = RelayServer::Create(config_, clock);
    EXPECT_TRUE(server.ok()) << server.status();
    if (server.ok()) {
      server_ = std::move(*server);
      server_->Start();
    }
  }
  ~RelayFixture() {
    if (server_) {
      server_->Stop();
    }
  }

  RelayServer& server() { return *server_; }
  const RelayConfig& config() const { return config_; }
  uint16_t port() const { return server_->main_port(); }
  uint64_t Counter(const std::string& name) const { return server_->Counters().at(name); }

  // A node connected to this relay that already holds a proxy address.
  std::unique_ptr<TestNode> NodeWithAddress(std::string* address,
                                            const std::string& connection_id = "") {
    auto node = std::make_unique<TestNode>(connection_id);
    EXPECT_TRUE(node->Connect("127.0.0.1", port()).ok());
    absl::StatusOr<std::string> a = node->RequestProxy();
    EXPECT_TRUE(a.ok()) << a.status();
    if (a.ok()) {
      *address = *a;
    }
    return node;
  }

  // Returns once every reactor has run its timers at least once since the call began (a
  // FakeClock advanced before it is then seen by every timer). A reactor runs tasks
  // before timers in each loop turn, so one round of tasks answered does not prove it;
  // the second round is run in a later turn, after the first turn's timers.
  void WaitForTimers() {
    for (int round = 0; round < 2; ++round) {
      EXPECT_TRUE(server_->Snapshot(absl::Seconds(10)).ok());
    }
  }

  // Waits (bounded) until `name` reaches at least `value`; returns the last value seen.
  uint64_t WaitForCounter(const std::string& name, uint64_t value,
                          absl::Duration timeout = absl::Seconds(10)) const {
    const absl::Time deadline = absl::Now() + timeout;
    uint64_t v = Counter(name);
    while (v < value && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(5));
      v = Counter(name);
    }
    return v;
  }

 private:
  RelayConfig config_;
  std::unique_ptr<RelayServer> server_;
};

}  // namespace relay::testing
