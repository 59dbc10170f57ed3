// What the relay asks of the host it runs on, at start: its interfaces, the sysctls that
// bound what the relay may use, its CPUs. Read once by relay-server and RelayServer::Create
// (core/config.h keeps the answers in RelayConfig and StartupWarnings' arguments).
//
// Stateless; any thread.
#pragma once

#include <cstdint>
#include <string>

namespace relay::net {

// The first non-loopback, up IP of the family (IPv6: global, not link-local) of this
// machine's interfaces; "127.0.0.1" or "::1" if there is none.
std::string FirstInterfaceAddress(bool ipv6);
// Reads net.ipv4.ip_local_port_range; false if unreadable.
bool ReadLocalPortRange(uint16_t* lo, uint16_t* hi);
// Reads net.ipv4.ip_local_reserved_ports ("8080,61000-65000"); empty if unreadable.
std::string ReadLocalReservedPorts();
// Reads net.core.rmem_max; 0 if unreadable.
uint64_t ReadRmemMax();
// CPUs online (at least 1).
int OnlineCpus();

}  // namespace relay::net
