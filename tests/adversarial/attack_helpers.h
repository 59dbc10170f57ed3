// Helpers of the attack tests (tests/adversarial): innocent nodes whose frames must keep
// flowing beside an attack, and small waits on the relay process.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "net/socket_ops.h"
#include "tests/testing/relay_process.h"
#include "tests/testing/test_node.h"

namespace relay::testing {

// RSS bounds are for a plain build; ThreadSanitizer's shadow memory multiplies RSS.
#if defined(__SANITIZE_THREAD__)
constexpr long kRssScale = 8;
#else
constexpr long kRssScale = 1;
#endif

// Polls the relay's counter `name` (bounded) until it reaches `at_least`; returns the
// last value seen.
uint64_t WaitForCounter(RelayProcess& relay, const std::string& name, uint64_t at_least);

// Log lines other than the start-up ones (configuration, listening, start-up warnings),
// the session lines (capped by --log_sessions_per_second) and the stop: what an attack
// can add.
int LogLines(const std::string& log);

// --port_range=LO-HI over `count` free ports.
std::string PortRange(int count);

// True if the relay closes `fd` within `timeout`, seen without reading from it (FIN or
// RST shows as POLLRDHUP / POLLHUP / POLLERR even with unread data in the buffer).
bool WaitForHangup(int fd, absl::Duration timeout);

// A frame header announcing `length` payload bytes.
std::string Header(uint32_t length);

// GET `path` from 127.0.0.1:`port` (HTTP/1.0); the status line's code and the body, or
// an error if no whole answer came within `timeout`.
struct HttpAnswer {
  int code = 0;
  std::string body;
};
absl::StatusOr<HttpAnswer> HttpGet(uint16_t port, const std::string& path,
                                   absl::Duration timeout = absl::Seconds(5));

// Waits (bounded, 5 s) until the admin endpoint on `port` answers /healthz; true if it did.
bool WaitForAdmin(uint16_t port);

// Innocent nodes, each with one peer: Flow() sends frames through every one of them and
// checks each arrives whole (bounded wait per frame).
class Innocents {
 public:
  Innocents(uint16_t relay_port, int count, const std::string& source = "127.0.0.1");

  // Sends `rounds` frames of 1 KiB through every innocent node. True if all arrived, each
  // within `per_frame`.
  bool Flow(int rounds, absl::Duration per_frame = absl::Seconds(10));

  const std::string& address(size_t i) const { return addresses_[i]; }
  size_t size() const { return nodes_.size(); }

 private:
  std::vector<std::unique_ptr<TestNode>> nodes_;
  std::vector<net::UniqueFd> peers_;
  std::vector<std::string> addresses_;
};

}  // namespace relay::testing
