#include "core/config.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace relay {

absl::Status ParsePortRange(absl::string_view text, uint16_t* lo, uint16_t* hi) {
  const size_t dash = text.find('-');
  if (dash == absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected LO-HI with 1 <= LO <= HI <= 65535, got '", text, "'"));
  }
  absl::StatusOr<uint16_t> a = ParsePort(text.substr(0, dash), false);
  absl::StatusOr<uint16_t> b = ParsePort(text.substr(dash + 1), false);
  if (!a.ok() || !b.ok()) {
    return absl::InvalidArgumentError(
        "LO and HI must be ports in 1..65535 (expected LO-HI, e.g. 55535-65534)");
  }
  if (*a > *b) {
    return absl::InvalidArgumentError(
        absl::StrCat("LO (", *a, ") is above HI (", *b, "); expected LO <= HI"));
  }
  *lo = *a;
  *hi = *b;
  return absl::OkStatus();
}

namespace {

// --listen and the first --advertise_host.
absl::Status ValidateListenAndAdvertise(const RelayConfig& c) {
  std::vector<const HostPort*> listens = {&c.listen};
  for (const HostPort& l : c.more_listen) {
    listens.push_back(&l);
  }
  for (const HostPort* l : listens) {
    if (!IsIpv4(l->host) && !IsIpv6(l->host)) {
      return absl::InvalidArgumentError(absl::StrCat("--listen=", FormatHostPort(l->host, l->port),
                                                     ": HOST must be an IPv4 or IPv6 address"));
    }
  }
  if (!c.advertise_host.empty() && !IsIpv4(c.advertise_host) && !IsIpv6(c.advertise_host)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--advertise_host=", c.advertise_host, ": expected an IPv4 or IPv6 address (no brackets)"));
  }
  for (const ProxyAddress& a : c.more_proxy_addresses) {
    if (!IsIpv4(a.advertise) && !IsIpv6(a.advertise)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--advertise_host=", a.advertise, ": expected an IPv4 or IPv6 address"));
    }
  }
  return absl::OkStatus();
}

// Several proxy addresses, and the first one's bind address and family.
absl::Status ValidateProxyAddresses(const RelayConfig& c) {
  if (!c.more_proxy_addresses.empty()) {
    // Several addresses: each listener binds its own IP, so ports do not collide.
    absl::flat_hash_set<std::string> binds;
    for (const ProxyAddress& a : ResolveProxyAddresses(c)) {
      if (!IsIpv4(a.bind) && !IsIpv6(a.bind)) {
        return absl::InvalidArgumentError(absl::StrCat("--advertise_host=", a.advertise, "@",
                                                       a.bind, ": BIND must be an IP address"));
      }
      if (IsAnyAddress(a.bind) || !binds.insert(a.bind).second) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--advertise_host: with several proxy addresses each binds its own IP (", a.advertise,
            " binds ", a.bind, ", a wildcard or an IP used twice); give ADVERTISE@BIND"));
      }
      if (IsIpv6(a.bind) != IsIpv6(a.advertise)) {
        return absl::InvalidArgumentError(absl::StrCat("--advertise_host=", a.advertise, "@",
                                                       a.bind, ": the two must be one family"));
      }
    }
  }
  if (!c.advertise_bind.empty() && !IsIpv4(c.advertise_bind) && !IsIpv6(c.advertise_bind)) {
    return absl::InvalidArgumentError(absl::StrCat("--advertise_host=", c.advertise_host, "@",
                                                   c.advertise_bind, ": BIND must be an IP"));
  }
  if (!c.advertise_host.empty() && c.advertise_bind.empty() && c.more_proxy_addresses.empty() &&
      IsIpv6(c.advertise_host) != IsIpv6(c.listen.host)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--advertise_host=", c.advertise_host,
                     ": the proxy ports are bound on the first --listen (",
                     FormatHostPort(c.listen.host, c.listen.port),
                     "), so the advertised address must be of "
                     "its family (list an address of that family first)"));
  }
  return absl::OkStatus();
}

// --port_range, --threads, --reactor_slice, and the session lifetimes.
absl::Status ValidateReactors(const RelayConfig& c) {
  if (c.port_lo == 0 || c.port_lo > c.port_hi) {
    return absl::InvalidArgumentError(absl::StrCat("--port_range=", c.port_lo, "-", c.port_hi,
                                                   ": expected 1 <= LO <= HI <= 65535"));
  }
  if (c.threads < 0 || c.threads > kMaxThreads) {
    return absl::InvalidArgumentError(
        absl::StrCat("--threads=", c.threads, ": expected 0 (one per CPU) to ", kMaxThreads));
  }
  if (c.reactor_slice != absl::ZeroDuration() &&
      (c.reactor_slice < absl::Microseconds(100) || c.reactor_slice > absl::Milliseconds(100))) {
    return absl::InvalidArgumentError(
        absl::StrCat("--reactor_slice=", absl::FormatDuration(c.reactor_slice),
                     ": expected 0 (the kernel's default) or 100us to 100ms (what Linux accepts)"));
  }
  if (c.keepalive_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--keepalive_timeout=", absl::FormatDuration(c.keepalive_timeout),
                     ": expected a positive duration"));
  }
  if (c.lease_ttl < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--lease_ttl=", absl::FormatDuration(c.lease_ttl), ": expected a duration >= 0"));
  }
  return absl::OkStatus();
}

// Frames, staging memory and receive buffers.
absl::Status ValidateStaging(const RelayConfig& c) {
  if (c.max_frame_bytes == 0 || c.max_frame_bytes > (1u << 30)) {
    return absl::InvalidArgumentError(absl::StrCat("--max_frame_bytes=", c.max_frame_bytes,
                                                   ": expected 1 to 1073741824 (1 GiB)"));
  }
  if (c.stage_bytes < 64 * 1024) {
    return absl::InvalidArgumentError(
        absl::StrCat("--stage_bytes=", c.stage_bytes, ": expected at least 65536 (64 KiB)"));
  }
  const uint64_t min_budget = uint64_t{c.max_frame_bytes} + kFrameHeaderSize + c.stage_bytes;
  if (c.stage_budget_bytes < min_budget) {
    return absl::InvalidArgumentError(
        absl::StrCat("--stage_budget=", c.stage_budget_bytes, ": expected at least ", min_budget,
                     " (one largest frame, --max_frame_bytes + 10, plus --stage_bytes)"));
  }
  if (c.session_stage_bytes != 0 &&
      (c.session_stage_bytes < min_budget || c.session_stage_bytes > c.stage_budget_bytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--session_stage_bytes=", c.session_stage_bytes, ": expected ", min_budget,
                     " (--max_frame_bytes + 10 + --stage_bytes) to --stage_budget (",
                     c.stage_budget_bytes, "), or 0 for auto"));
  }
  if (c.peer_receive_buffer < 4096 || c.peer_receive_buffer > (1u << 30)) {
    return absl::InvalidArgumentError(absl::StrCat("--peer_receive_buffer=", c.peer_receive_buffer,
                                                   ": expected 4096 to 1073741824 (1 GiB)"));
  }
  return absl::OkStatus();
}

// Every deadline, and the minimum rate inside a frame.
absl::Status ValidateDeadlines(const RelayConfig& c) {
  for (const auto& [name, d] :
       {std::pair<const char*, absl::Duration>{"frame_timeout", c.frame_timeout},
        {"frame_stall_timeout", c.frame_stall_timeout},
        {"peer_idle_timeout", c.peer_idle_timeout},
        {"first_frame_timeout", c.first_frame_timeout},
        {"node_write_timeout", c.node_write_timeout},
        {"node_queue_soft_time", c.node_queue_soft_time},
        {"accept_backoff", c.accept_backoff},
        {"claim_window", c.claim_window},
        {"state_sync_interval", c.state_sync_interval}}) {
    if (d <= absl::ZeroDuration()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", name, "=", absl::FormatDuration(d), ": expected a positive duration"));
    }
  }
  if (c.takeover_interval < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--takeover_interval=", absl::FormatDuration(c.takeover_interval),
                     ": expected a duration >= 0"));
  }
  if (c.frame_min_rate == 0) {
    return absl::InvalidArgumentError("--frame_min_rate=0: expected at least 1 (bytes/s)");
  }
  return absl::OkStatus();
}

// Control messages, per-source rates and --relay_name.
absl::Status ValidateControl(const RelayConfig& c) {
  if (c.max_control_bytes < 1024 || c.max_control_bytes > (1u << 20)) {
    return absl::InvalidArgumentError(absl::StrCat("--max_control_bytes=", c.max_control_bytes,
                                                   ": expected 1024 to 1048576 (1 MiB)"));
  }
  if (c.control_budget_bytes < c.max_control_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("--control_budget=", c.control_budget_bytes,
                                                   ": expected at least --max_control_bytes (",
                                                   c.max_control_bytes, ")"));
  }
  if (!(c.control_rate >= 0)) {
    return absl::InvalidArgumentError(absl::StrCat("--control_rate=", c.control_rate,
                                                   ": expected >= 0 (messages/s; 0 = no limit)"));
  }
  if (!(c.control_per_ip >= 0)) {
    return absl::InvalidArgumentError(absl::StrCat("--control_per_ip=", c.control_per_ip,
                                                   ": expected >= 0 (messages/s; 0 = no limit)"));
  }
  if (c.control_rate > 0 && c.control_burst == 0) {
    return absl::InvalidArgumentError("--control_burst=0: expected at least 1");
  }
  if (c.proxy_requests_per_ip < 0) {
    return absl::InvalidArgumentError("--proxy_requests_per_ip: expected >= 0 (0 = no limit)");
  }
  for (const std::string& name : c.relay_names) {
    if (!absl::StartsWith(name, "tcp://") || name.size() <= 6 ||
        name.find(':', 6) == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("--relay_name=", name, ": expected tcp://HOST:PORT"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateConfig(const RelayConfig& c) {
  for (absl::Status (*check)(const RelayConfig&) :
       {ValidateListenAndAdvertise, ValidateProxyAddresses, ValidateReactors, ValidateStaging,
        ValidateDeadlines, ValidateControl}) {
    if (absl::Status status = check(c); !status.ok()) {
      return status;
    }
  }
  return absl::OkStatus();
}

std::string ResolveAdvertiseHost(const RelayConfig& c) {
  if (!c.advertise_host.empty()) {
    return c.advertise_host;
  }
  if (!IsAnyAddress(c.listen.host)) {
    return c.listen.host;
  }
  if (!c.interface_address.empty()) {
    return c.interface_address;
  }
  return c.listen.host == "::" ? "::1" : "127.0.0.1";
}

bool NeedsInterfaceAddress(const RelayConfig& c) {
  return c.advertise_host.empty() && IsAnyAddress(c.listen.host) && c.interface_address.empty();
}

std::vector<ProxyAddress> ResolveProxyAddresses(const RelayConfig& c) {
  std::vector<ProxyAddress> out;
  ProxyAddress first;
  first.advertise = ResolveAdvertiseHost(c);
  first.bind = !c.advertise_bind.empty()        ? c.advertise_bind
               : c.more_proxy_addresses.empty() ? c.listen.host
                                                : first.advertise;
  out.push_back(first);
  for (ProxyAddress a : c.more_proxy_addresses) {
    if (a.bind.empty()) {
      a.bind = a.advertise;
    }
    out.push_back(a);
  }
  return out;
}

absl::StatusOr<ProxyAddress> ParseProxyAddress(absl::string_view text) {
  ProxyAddress a;
  const size_t at = text.find('@');
  a.advertise = std::string(text.substr(0, at));
  if (at != absl::string_view::npos) {
    a.bind = std::string(text.substr(at + 1));
  }
  if (!IsIpv4(a.advertise) && !IsIpv6(a.advertise)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", a.advertise, "' is not an IPv4 or IPv6 address (expected IP or IP@BIND_IP)"));
  }
  if (at != absl::string_view::npos && !IsIpv4(a.bind) && !IsIpv6(a.bind)) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", a.bind, "' (after @) is not an IPv4 or IPv6 address"));
  }
  return a;
}

namespace {

// Ports of `lo`-`hi` (inside the ephemeral range) that `reserved` ("a,b-c,...") does not
// reserve.
uint32_t UnreservedPorts(uint32_t lo, uint32_t hi, absl::string_view reserved) {
  std::vector<bool> taken(hi - lo + 1, false);
  for (absl::string_view item : absl::StrSplit(reserved, ',', absl::SkipWhitespace())) {
    item = absl::StripAsciiWhitespace(item);
    uint16_t a = 0, b = 0;
    uint32_t one = 0;
    if (!ParsePortRange(item, &a, &b).ok()) {
      if (!absl::SimpleAtoi(item, &one) || one > 65535) {
        continue;
      }
      a = b = static_cast<uint16_t>(one);
    }
    for (uint32_t p = std::max<uint32_t>(a, lo); p <= std::min<uint32_t>(b, hi); ++p) {
      taken[p - lo] = true;
    }
  }
  return static_cast<uint32_t>(std::count(taken.begin(), taken.end(), false));
}

}  // namespace

std::vector<std::string> StartupWarnings(const RelayConfig& c, const std::string& advertised,
                                         uint16_t local_lo, uint16_t local_hi, uint64_t rmem_max,
                                         absl::string_view reserved_ports) {
  std::vector<std::string> out;
  if (c.advertise_host.empty() && IsAnyAddress(c.listen.host)) {
    out.push_back(absl::StrCat(
        "proxy addresses advertise ", advertised,
        ", guessed from this machine's first non-loopback interface; behind NAT (a cloud "
        "VM) that is the private address: set --advertise_host to the public IP"));
  }
  const uint32_t overlap_lo = std::max(c.port_lo, local_lo);
  const uint32_t overlap_hi = std::min(c.port_hi, local_hi);
  const uint32_t exposed = local_lo != 0 && overlap_lo <= overlap_hi
                               ? UnreservedPorts(overlap_lo, overlap_hi, reserved_ports)
                               : 0;
  if (exposed > 0) {
    out.push_back(absl::StrCat(
        "--port_range=", c.port_lo, "-", c.port_hi, " overlaps net.ipv4.ip_local_port_range (",
        local_lo, "-", local_hi, ") in ", exposed,
        " ports not in net.ipv4.ip_local_reserved_ports: outgoing connections of this host "
        "can take them, and a remembered lease then comes back on another port "
        "(lease_port_rebound); move --port_range, or reserve it with the sysctl "
        "(docs/DEPLOY.md)"));
  }
  if (rmem_max != 0 && c.peer_receive_buffer > rmem_max) {
    out.push_back(absl::StrCat(
        "net.core.rmem_max (", rmem_max, ") is below --peer_receive_buffer=", c.peer_receive_buffer,
        ": the kernel cuts peer receive buffers to it, and fast peers get a smaller TCP window; "
        "raise the sysctl to at least ",
        c.peer_receive_buffer, " (docs/DEPLOY.md)"));
  }
  return out;
}

uint64_t SessionStageBytes(const RelayConfig& c) {
  if (c.session_stage_bytes != 0) {
    return c.session_stage_bytes;
  }
  const uint64_t min_share = uint64_t{c.max_frame_bytes} + kFrameHeaderSize + c.stage_bytes;
  return std::min(c.stage_budget_bytes, std::max(c.stage_budget_bytes / 8, min_share));
}

int ResolveThreads(const RelayConfig& c, int online_cpus) {
  return c.threads > 0 ? c.threads : std::max(1, online_cpus);
}

}  // namespace relay
