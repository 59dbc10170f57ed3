#include "core/host_port.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace relay {

bool IsIpv4(const std::string& host) {
  in_addr addr;
  return inet_pton(AF_INET, host.c_str(), &addr) == 1;
}

bool IsIpv6(const std::string& host) {
  in6_addr addr;
  return inet_pton(AF_INET6, host.c_str(), &addr) == 1;
}

bool IsAnyAddress(const std::string& host) { return host == "0.0.0.0" || host == "::"; }

std::string FormatHostPort(absl::string_view host, uint16_t port) {
  return host.find(':') != absl::string_view::npos ? absl::StrCat("[", host, "]:", port)
                                                   : absl::StrCat(host, ":", port);
}

absl::StatusOr<uint16_t> ParsePort(absl::string_view text, bool allow_zero) {
  uint32_t value = 0;
  if (!absl::SimpleAtoi(text, &value) || value > 65535 || (!allow_zero && value == 0)) {
    return absl::InvalidArgumentError(absl::StrCat("bad port '", text, "'"));
  }
  return static_cast<uint16_t>(value);
}

absl::StatusOr<HostPort> ParseHostPort(absl::string_view text) {
  const size_t colon = text.rfind(':');
  if (colon == absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat("expected HOST:PORT, got '", text, "'"));
  }
  HostPort hp;
  hp.host = std::string(text.substr(0, colon));
  if (hp.host == "localhost") {
    hp.host = "127.0.0.1";
  }
  if (hp.host.size() >= 2 && hp.host.front() == '[' && hp.host.back() == ']') {
    hp.host = hp.host.substr(1, hp.host.size() - 2);
    if (!IsIpv6(hp.host)) {
      return absl::InvalidArgumentError(absl::StrCat("'", hp.host, "' is not an IPv6 address"));
    }
  } else if (!IsIpv4(hp.host)) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", hp.host, "' is not an IPv4 address (IPv6 goes in brackets: [::1]:6008)"));
  }
  absl::StatusOr<uint16_t> port = ParsePort(text.substr(colon + 1), /*allow_zero=*/true);
  if (!port.ok()) {
    return port.status();
  }
  hp.port = *port;
  return hp;
}

bool IsHostName(absl::string_view host) {
  if (host.empty() || host.size() > 253 || host.front() == '-' || host.front() == '.' ||
      IsIpv4(std::string(host))) {
    return false;
  }
  bool letter = false;
  for (char c : host) {
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    letter = letter || alpha;
    if (!alpha && !(c >= '0' && c <= '9') && c != '-' && c != '.') {
      return false;
    }
  }
  return letter;
}

absl::StatusOr<HostPort> ParseRelayAddress(absl::string_view text) {
  const size_t colon = text.rfind(':');
  if (colon != absl::string_view::npos && IsHostName(text.substr(0, colon))) {
    absl::StatusOr<uint16_t> port = ParsePort(text.substr(colon + 1), /*allow_zero=*/false);
    if (!port.ok()) {
      return port.status();
    }
    return HostPort{std::string(text.substr(0, colon)), *port};
  }
  return ParseHostPort(text);
}

}  // namespace relay
