// Test helpers for picking ports that no other process holds right now.
#pragma once

#include <cstdint>

namespace relay::testing {

// Returns the first port of `count` consecutive ports in 20000-31999 that can all be
// bound on 127.0.0.1 now. Each test process owns one slot of 1,500 ports there (an
// flock on /tmp/relay-test-ports.<slot>.lock, held until it exits, which the kernel
// releases however it exits) and hands out ranges from it in turn, so test binaries run
// in parallel (ctest -j) never pick overlapping ranges, and two relays of one process
// never share a port either, even before either has bound it (a relay binds its proxy
// ports only when nodes ask). With every slot held, or more ports asked than a slot
// has, it falls back to a random start over the whole span (collisions then possible).
uint16_t PickFreePortRange(int count);

}  // namespace relay::testing
