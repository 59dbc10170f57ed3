// HostPort: an IP address (IPv4, or IPv6) and a port, and their textual form
// "HOST:PORT" ("[V6]:PORT" for IPv6, as Go's net.JoinHostPort writes it). Shared by the
// relay (its --listen) and the node side (the relays a node dials, peer addresses).
//
// Plain value type and pure functions; any thread.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace relay {

struct HostPort {
  std::string host;  // dotted IPv4, or IPv6 without brackets (ParseRelayAddress: or a name)
  uint16_t port = 0;
};

// Parses "HOST:PORT": HOST a dotted IPv4 address, "localhost", or an IPv6 address in
// brackets ("[::1]:6008", "[::]:6008"). Returns InvalidArgument on bad input.
absl::StatusOr<HostPort> ParseHostPort(absl::string_view text);
// A relay a node dials: what ParseHostPort takes, or "NAME:PORT" with NAME a DNS name
// (letters, digits, '-' and '.'), which the node resolves to every address it has.
// "localhost" stays a name here (127.0.0.1 and ::1).
absl::StatusOr<HostPort> ParseRelayAddress(absl::string_view text);
// True if `host` is a DNS name as ParseRelayAddress takes it (not an IP address).
bool IsHostName(absl::string_view host);
// "HOST:PORT", brackets around an IPv6 host.
std::string FormatHostPort(absl::string_view host, uint16_t port);

// True if `host` is a dotted IPv4 address; IsIpv6: an IPv6 address (no brackets).
bool IsIpv4(const std::string& host);
bool IsIpv6(const std::string& host);
// The wildcard ("0.0.0.0", "::").
bool IsAnyAddress(const std::string& host);

// Parses a port number (0 only if `allow_zero`).
absl::StatusOr<uint16_t> ParsePort(absl::string_view text, bool allow_zero);

}  // namespace relay
