// ParseCommandLineOrExit: the command-line front end shared by the relay's programs
// (relay-server, relay-node, relay-load), so every one of them behaves alike:
//
//   --help              prints the usage and every flag of the program (name, default,
//                       meaning) on stdout, exits 0; no build path is shown
//   --version           prints "<program> <version>", exits 0
//   --flagfile=FILE     reads more flags from FILE: one --flag=value per line, '#' starts a
//                       comment, blank lines ignored (may be given more than once)
//   --name=value, --name value, --bool_flag, --nobool_flag; '-' and '_' are the same in
//   names (--wait-reply == --wait_reply); "--" ends the flags.
//   Durations take abseil's form (30s, 500ms, 1h30m) or plain seconds ("10" == 10s).
//
// Any usage error (unknown flag, bad value, missing value) prints one line
// "<program>: --flag=value: what is wrong; what is expected" on stderr and exits with
// kExitUsage (2). Runtime failures are the programs' own (exit 1).
//
// Thread: call once, from main(), before any thread starts. Only flags defined in the
// program's own main file are accepted and listed.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace relay {

// The exit status of every usage error, in every program.
inline constexpr int kExitUsage = 2;

struct ProgramInfo {
  const char* name;              // "relay-server"
  absl::string_view summary;     // printed first by --help
  absl::string_view usage;       // usage lines
  absl::string_view main_file;   // suffix of the file that defines the flags
  absl::string_view exit_codes;  // the program's exit codes, for --help
  // Flags of earlier versions that are accepted and ignored (so an old flag file still
  // starts the program, and a live upgrade with it still works): RetiredFlagsGiven() lists
  // the ones given, for the program to warn about. A retired flag takes its value after '='.
  absl::Span<const char* const> retired = {};
};

// "--name=value" of each retired flag given on the command line or in a flag file.
const std::vector<std::string>& RetiredFlagsGiven();

// Parses argv into the program's absl flags (see above). Returns the positional
// arguments (argv[0] excluded). Exits on --help, --version and usage errors.
std::vector<std::string> ParseCommandLineOrExit(int argc, char** argv, const ProgramInfo& info);

// What ReloadFlagFiles did: "--name=value" of each flag applied, and of each flag whose
// value changed in the files but cannot change in a running process.
struct FlagReload {
  std::vector<std::string> applied;
  std::vector<std::string> need_restart;
};

// Re-reads the flag files ParseCommandLineOrExit read (SIGHUP) and applies the changed
// flags named in `reloadable`; the other changes are listed, not applied. Never exits:
// a file that cannot be read, or a bad value, returns an error and applies nothing.
// Call from one thread (the one that handles signals); the caller then reads the
// reloaded flags.
absl::StatusOr<FlagReload> ReloadFlagFiles(const ProgramInfo& info,
                                           const std::vector<std::string>& reloadable);

// Prints "<program>: <message>" on stderr and exits with kExitUsage.
[[noreturn]] void ExitUsage(const ProgramInfo& info, absl::string_view message);

// The relay's version ("0.4.0"), from the build.
const char* RelayVersion();

}  // namespace relay
