// Test helpers for picking ports that no other process holds right now.
#pragma once

#include <cstdint>

namespace relay::testing {

// Returns the first port of `count` consecutive ports in 20000-32000 that can all be
// bound on 127.0.0.1 now (random start, so parallel test binaries rarely collide).
uint16_t PickFreePortRange(int count);

}  // namespace relay::testing
