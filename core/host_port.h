// HostPort: an IPv4 address and a port, and their textual form "HOST:PORT". Shared by
// the relay (its --listen) and the node side (the relays a node dials, peer addresses).
//
// Plain value type and pure functions; any thread.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace relay {

struct HostPort {
  std::string host;  // dotted IPv4
  uint16_t port = 0;
};

// Parses "HOST:PORT" (HOST a dotted IPv4 address, or "localhost"). Returns
// InvalidArgument on bad input.
absl::StatusOr<HostPort> ParseHostPort(absl::string_view text);

// True if `host` is a dotted IPv4 address.
bool IsIpv4(const std::string& host);

// Parses a port number (0 only if `allow_zero`).
absl::StatusOr<uint16_t> ParsePort(absl::string_view text, bool allow_zero);

}  // namespace relay
