#include "tests/testing/free_ports.h"

#include <random>

#include "core/log.h"
#include "net/socket_ops.h"

namespace relay::testing {

uint16_t PickFreePortRange(int count) {
  std::random_device rd;
  std::mt19937 rng(rd());
  std::uniform_int_distribution<int> dist(20000, 32000 - count);
  for (int attempt = 0; attempt < 200; ++attempt) {
    const uint16_t base = static_cast<uint16_t>(dist(rng));
    bool ok = true;
    for (int i = 0; i < count && ok; ++i) {
      ok = net::Listen("127.0.0.1", static_cast<uint16_t>(base + i), false).ok();
    }
    if (ok) {
      return base;
    }
  }
  RELAY_LOG(FATAL) << "no free port range of " << count;
  return 0;
}

}  // namespace relay::testing
