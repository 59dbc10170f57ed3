#include "net/host_info.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cstdio>

namespace relay::net {
namespace {

// Reads `n` unsigned numbers from the sysctl file `path`; false if it cannot.
bool ReadSysctl(const char* path, int n, unsigned long long* values) {
  FILE* f = fopen(path, "r");
  if (f == nullptr) {
    return false;
  }
  int got = 0;
  while (got < n && fscanf(f, "%llu", &values[got]) == 1) {
    ++got;
  }
  fclose(f);
  return got == n;
}

}  // namespace

std::string FirstInterfaceAddress(bool v6) {
  std::string found = v6 ? "::1" : "127.0.0.1";
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) {
    return found;
  }
  for (ifaddrs* it = list; it != nullptr; it = it->ifa_next) {
    if (it->ifa_addr == nullptr || it->ifa_addr->sa_family != (v6 ? AF_INET6 : AF_INET) ||
        (it->ifa_flags & IFF_LOOPBACK) || !(it->ifa_flags & IFF_UP)) {
      continue;
    }
    char buf[INET6_ADDRSTRLEN];
    if (v6) {
      const in6_addr& a = reinterpret_cast<const sockaddr_in6*>(it->ifa_addr)->sin6_addr;
      if (IN6_IS_ADDR_LINKLOCAL(&a) || IN6_IS_ADDR_LOOPBACK(&a)) {
        continue;  // a peer elsewhere cannot use it
      }
      if (inet_ntop(AF_INET6, &a, buf, sizeof(buf)) != nullptr) {
        found = buf;
        break;
      }
      continue;
    }
    const auto* sin = reinterpret_cast<const sockaddr_in*>(it->ifa_addr);
    if (inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof(buf)) != nullptr) {
      found = buf;
      break;
    }
  }
  freeifaddrs(list);
  return found;
}

uint64_t ReadRmemMax() {
  unsigned long long v = 0;
  return ReadSysctl("/proc/sys/net/core/rmem_max", 1, &v) ? v : 0;
}

std::string ReadLocalReservedPorts() {
  std::string text;
  FILE* f = fopen("/proc/sys/net/ipv4/ip_local_reserved_ports", "r");
  if (f == nullptr) {
    return text;
  }
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
    text.append(buf, n);
  }
  fclose(f);
  return text;
}

bool ReadLocalPortRange(uint16_t* lo, uint16_t* hi) {
  unsigned long long v[2] = {0, 0};
  if (!ReadSysctl("/proc/sys/net/ipv4/ip_local_port_range", 2, v) || v[0] > v[1] || v[1] > 65535) {
    return false;
  }
  *lo = static_cast<uint16_t>(v[0]);
  *hi = static_cast<uint16_t>(v[1]);
  return true;
}

int OnlineCpus() {
  const long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<int>(n) : 1;
}

}  // namespace relay::net
