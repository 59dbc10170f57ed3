#include "tests/adversarial/attack_helpers.h"

#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "core/config.h"
#include "core/frame_header.h"
#include "gtest/gtest.h"
#include "tests/testing/free_ports.h"

namespace relay::testing {
namespace {

// Raise this test's own open-files limit: attacks open hundreds of sockets.
class Environment : public ::testing::Environment {
 public:
  void SetUp() override {
    signal(SIGPIPE, SIG_IGN);
    rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
      limit.rlim_cur = std::min<rlim_t>(limit.rlim_max, 65536);
      setrlimit(RLIMIT_NOFILE, &limit);
    }
  }
};
const auto* const kEnvironment = ::testing::AddGlobalTestEnvironment(new Environment);

}  // namespace

uint64_t WaitForCounter(RelayProcess& relay, const std::string& name, uint64_t at_least) {
  uint64_t v = 0;
  for (int i = 0; i < 100; ++i) {
    v = relay.Counters()[name];
    if (v >= at_least) {
      break;
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  return v;
}

// Log lines other than the start-up ones (configuration, listening, start-up warnings),
// the session lines (capped by --log_sessions_per_second) and the stop: what an attack
// can add.
int LogLines(const std::string& log) {
  int n = 0;
  for (absl::string_view line : absl::StrSplit(log, '\n', absl::SkipEmpty())) {
    bool routine = false;
    for (const char* kind :
         {"counters:", "configuration:", "relay-server listening",
          "overlaps net.ipv4.ip_local_port_range", "key is new at every start",
          "session start:", "session taken over:", "session end:", "draining", "drained in"}) {
      routine = routine || absl::StrContains(line, kind);
    }
    n += routine ? 0 : 1;
  }
  return n;
}

std::string PortRange(int count) {
  const uint16_t lo = PickFreePortRange(count);
  return absl::StrCat("--port_range=", lo, "-", lo + count - 1);
}

Innocents::Innocents(uint16_t relay_port, int count, const std::string& source) {
  for (int i = 0; i < count; ++i) {
    auto node = std::make_unique<TestNode>();
    EXPECT_TRUE(node->ConnectFrom(source, "127.0.0.1", relay_port).ok());
    absl::StatusOr<std::string> address = node->RequestProxy();
    EXPECT_TRUE(address.ok()) << address.status();
    if (!address.ok()) {
      continue;
    }
    absl::StatusOr<net::UniqueFd> peer = ConnectTo(*address);
    EXPECT_TRUE(peer.ok());
    addresses_.push_back(*address);
    nodes_.push_back(std::move(node));
    peers_.push_back(std::move(*peer));
  }
}

bool Innocents::Flow(int rounds, absl::Duration per_frame) {
  for (int r = 0; r < rounds; ++r) {
    for (size_t i = 0; i < nodes_.size(); ++i) {
      const std::string payload = absl::StrCat("innocent ", i, " round ", r, " ",
                                               std::string(1000, static_cast<char>('a' + i)));
      if (!WriteAll(peers_[i].get(), MakeFrame(payload))) {
        ADD_FAILURE() << "innocent peer " << i << " could not send";
        return false;
      }
      absl::StatusOr<Frame> f = nodes_[i]->ReadDataFrame(per_frame);
      if (!f.ok() || f->payload != payload) {
        ADD_FAILURE() << "innocent node " << i << " round " << r << ": "
                      << (f.ok() ? "wrong payload" : f.status().ToString());
        return false;
      }
    }
  }
  return true;
}

absl::StatusOr<HttpAnswer> HttpGet(uint16_t port, const std::string& path, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::StatusOr<net::UniqueFd> fd = net::ConnectWithTimeout("127.0.0.1", port, timeout);
  if (!fd.ok()) {
    return fd.status();
  }
  if (!WriteAll(fd->get(), absl::StrCat("GET ", path, " HTTP/1.0\r\n\r\n"))) {
    return absl::UnavailableError("cannot send the request");
  }
  std::string answer;
  char buf[4096];
  while (true) {
    if (!net::WaitForFd(fd->get(), POLLIN, deadline)) {
      return absl::DeadlineExceededError(absl::StrCat("no whole answer to GET ", path));
    }
    const ssize_t n = ::recv(fd->get(), buf, sizeof(buf), 0);
    if (n <= 0) {
      break;
    }
    answer.append(buf, static_cast<size_t>(n));
  }
  HttpAnswer out;
  const size_t space = answer.find(' ');
  const size_t body = answer.find("\r\n\r\n");
  if (space == std::string::npos || body == std::string::npos ||
      !absl::SimpleAtoi(absl::string_view(answer).substr(space + 1, 3), &out.code)) {
    return absl::DataLossError(absl::StrCat("not an HTTP answer: ", answer.substr(0, 80)));
  }
  out.body = answer.substr(body + 4);
  return out;
}

bool WaitForAdmin(uint16_t port) {
  for (int i = 0; i < 100; ++i) {
    if (HttpGet(port, "/healthz", absl::Seconds(1)).ok()) {
      return true;
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  return false;
}

bool WaitForHangup(int fd, absl::Duration timeout) {
  pollfd p{fd, POLLRDHUP, 0};
  return poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout))) == 1 &&
         (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

std::string Header(uint32_t length) {
  std::string h(kFrameHeaderSize, '\0');
  FrameHeader header;
  header.network_id = kDefaultNetworkId;
  header.compress_info = 0;
  header.length = length;
  EncodeFrameHeader(header, reinterpret_cast<uint8_t*>(h.data()));
  return h;
}

}  // namespace relay::testing
