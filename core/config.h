// RelayConfig: everything relay-server can be told on its command line, with the parsers
// for the textual forms ("HOST:PORT", "LO-HI") and the validation of the whole.
//
// A plain value type; copy it freely. The server reads it once at start-up.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "core/frame_header.h"

namespace relay {

enum class ForwardMode { kSplice, kCopy };

// Reactors at most: each pair of reactors has a ring (32 KiB), so memory grows as the
// square of the count.
inline constexpr int kMaxThreads = 128;

struct HostPort {
  std::string host;  // dotted IPv4
  uint16_t port = 0;
};

struct RelayConfig {
  HostPort listen{"0.0.0.0", 6008};
  std::string advertise_host;  // empty: derived by ResolveAdvertiseHost()
  uint16_t port_lo = 55535;
  uint16_t port_hi = 65534;
  uint32_t network_id = kDefaultNetworkId;
  int threads = 0;  // 0: one per online CPU
  absl::Duration keepalive_timeout = absl::Seconds(180);
  absl::Duration lease_ttl = absl::Minutes(180);
  uint32_t max_frame_bytes = 16u << 20;
  ForwardMode forward_mode = ForwardMode::kSplice;
  // Bytes a proxy connection may stage beyond the frame it is receiving (one pipe).
  uint32_t stage_bytes = 1u << 20;
  // Bytes all peers of one reactor may hold staged at once (whole frames and frames in
  // progress): the bound on staging memory whatever peers send. Must hold one largest
  // frame plus one stage.
  uint64_t stage_budget_bytes = 256ull << 20;
};

// Parses "HOST:PORT" (HOST a dotted IPv4 address). Returns InvalidArgument on bad input.
absl::StatusOr<HostPort> ParseHostPort(absl::string_view text);

// Parses "LO-HI" with 1 <= LO <= HI <= 65535.
absl::Status ParsePortRange(absl::string_view text, uint16_t* lo, uint16_t* hi);

// Checks the configuration as a whole (ranges, positive durations, thread count).
absl::Status ValidateConfig(const RelayConfig& config);

// Returns the IP to put in proxy addresses: advertise_host if set, else the listen host,
// else (listening on 0.0.0.0) the first non-loopback IPv4 of this machine, else 127.0.0.1.
std::string ResolveAdvertiseHost(const RelayConfig& config);

// Returns the number of reactors to run: config.threads, or the online CPU count when 0.
int ResolveThreads(const RelayConfig& config);

}  // namespace relay
