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
  if (!IsIpv4(hp.host)) {
    return absl::InvalidArgumentError(absl::StrCat("'", hp.host, "' is not an IPv4 address"));
  }
  absl::StatusOr<uint16_t> port = ParsePort(text.substr(colon + 1), /*allow_zero=*/true);
  if (!port.ok()) {
    return port.status();
  }
  hp.port = *port;
  return hp;
}

}  // namespace relay
