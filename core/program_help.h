// SetProgramHelp: the --help set-up shared by the relay's programs (relay-server,
// relay-node, relay-load): the usage text, and --help listing the flags defined in the
// program's own main file (absl picks the files to list by name).
//
// Call once at the start of main(), before absl::ParseCommandLine. Header-only; the
// programs link absl::flags_usage themselves.
#pragma once

#include <string>

#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"

namespace relay {

inline void SetProgramHelp(absl::string_view usage, absl::string_view main_file_suffix) {
  absl::SetProgramUsageMessage(usage);
  absl::FlagsUsageConfig config;
  config.contains_help_flags = [suffix = std::string(main_file_suffix)](absl::string_view file) {
    return absl::EndsWith(file, suffix);
  };
  config.contains_helpshort_flags = config.contains_help_flags;
  absl::SetFlagsUsageConfig(config);
}

}  // namespace relay
