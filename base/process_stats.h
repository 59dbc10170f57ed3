// process_stats: what /proc says about another process (the relay, measured by
// relay-load and by the tests): resident memory and CPU time; and how busy the whole
// machine's CPUs were. Stateless; any thread.
#pragma once

#include <sys/types.h>

namespace relay {

// VmRSS of `pid` in KiB, or 0 if it cannot be read.
long ProcessRssKib(pid_t pid);
// User + system CPU seconds `pid` has used, or 0 if it cannot be read.
double ProcessCpuSeconds(pid_t pid);
// CPU seconds all of this machine's CPUs have spent busy since boot (/proc/stat: user,
// nice, system, irq and softirq time; not idle, I/O wait or time stolen by a hypervisor),
// or 0 if it cannot be read. Over an interval: what every process and the kernel used.
double HostBusyCpuSeconds();
// File descriptors `pid` has open (/proc/<pid>/fd; for this process, not counting the
// one used to read it), or -1 if unknown.
int ProcessOpenFds(pid_t pid);

}  // namespace relay
