// relay-server's flags: their definitions (what --help lists), how they become a
// RelayConfig and the program's own options, and the log flags that SIGHUP reloads.
//
// Thread: ReadFlagsOrExit and ApplyLogFlags run on the main thread before any other
// starts; ReloadLogFlags on the thread that handles signals.
#pragma once

#include <optional>
#include <string>

#include "absl/flags/declare.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "base/command_line.h"
#include "core/config.h"
#include "core/host_port.h"

namespace relay {

// The program's name, summary, usage and exit codes (--help).
extern const ProgramInfo kServerProgram;

// What the program does around the relay: not part of RelayConfig.
struct ProgramOptions {
  std::optional<HostPort> admin_listen;
  std::string upgrade_socket;  // --upgrade_socket: empty, no live upgrade
  std::string take_over;       // --take_over: empty, a fresh start
  absl::Duration upgrade_timeout;
  absl::Duration drain_timeout;
  std::string pidfile;
  std::string log_file;
  std::string forward_alias;  // --forward=auto or rule (earlier versions'): read as splice
};

// Reads every flag into *config and *options and validates them (ValidateConfig); a bad
// value exits with a usage error (kExitUsage) that names it.
void ReadFlagsOrExit(RelayConfig* config, ProgramOptions* options);

// Applies the log flags (--log_format, --log_interval, --quiet, --log_sessions_per_second,
// --log_file). Fails only if --log_file cannot be opened.
absl::Status ApplyLogFlags(const std::string& log_file);

// SIGHUP: reopens --log_file and reloads the log flags from the flag files; logs which
// other changes need a restart. Never stops the relay.
void ReloadLogFlags(const std::string& log_file);

// One log line with every flag's value (defaults included), so the log says what ran.
void LogEffectiveConfiguration();

}  // namespace relay
