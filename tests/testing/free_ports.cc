#include "tests/testing/free_ports.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <mutex>
#include <random>
#include <string>

#include "absl/strings/str_cat.h"
#include "base/log.h"
#include "net/socket_ops.h"

namespace relay::testing {
namespace {

constexpr int kFirstPort = 20000;
constexpr int kSlots = 8;
constexpr int kSlotPorts = 1500;  // 8 x 1,500: 20000-31999

// The slot this process owns, or -1 when every slot is held by other processes. The lock
// file's descriptor stays open (close-on-exec: relays spawned by the test do not keep it);
// read-only, so a lock file another user created still serves (flock needs no write).
int OwnSlot() {
  static const int slot = [] {
    for (int s = 0; s < kSlots; ++s) {
      const std::string path = absl::StrCat("/tmp/relay-test-ports.", s, ".lock");
      const int fd = open(path.c_str(), O_RDONLY | O_CREAT | O_CLOEXEC, 0666);
      if (fd < 0) {
        continue;
      }
      if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
        return s;
      }
      close(fd);
    }
    RELAY_LOG(WARNING) << "every test port slot is held by another process: picking ports "
                          "at random";
    return -1;
  }();
  return slot;
}

bool AllBindable(uint16_t base, int count) {
  for (int i = 0; i < count; ++i) {
    if (!net::Listen("127.0.0.1", static_cast<uint16_t>(base + i), false).ok()) {
      return false;
    }
  }
  return true;
}

}  // namespace

uint16_t PickFreePortRange(int count) {
  const int slot = OwnSlot();
  if (slot >= 0 && count <= kSlotPorts) {
    static std::mutex mu;
    static int next = 0;  // offset in the slot of the next range handed out
    std::lock_guard<std::mutex> lock(mu);
    for (int scanned = 0; scanned < kSlotPorts; scanned += count) {
      if (next + count > kSlotPorts) {
        next = 0;
      }
      const uint16_t base = static_cast<uint16_t>(kFirstPort + slot * kSlotPorts + next);
      next += count;
      if (AllBindable(base, count)) {
        return base;
      }
    }
  }
  std::random_device rd;
  std::mt19937 rng(rd());
  std::uniform_int_distribution<int> dist(kFirstPort, kFirstPort + kSlots * kSlotPorts - count);
  for (int attempt = 0; attempt < 200; ++attempt) {
    const uint16_t base = static_cast<uint16_t>(dist(rng));
    if (AllBindable(base, count)) {
      return base;
    }
  }
  RELAY_LOG(FATAL) << "no free port range of " << count;
  return 0;
}

}  // namespace relay::testing
