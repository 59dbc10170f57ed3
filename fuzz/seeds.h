// Seed corpora for the fuzz targets: real frames as the relay and relay-node produce them
// (signed ProxyRequests plain and fresh, Keepalives, Pings, MetricRequests, Disconnects,
// data frames of several sizes), built with the project's own codec so they stay real as
// the protocol code changes.
#pragma once

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace relay::fuzz {

// The fuzz targets, by name: frame_header, control_message, main_stream, proxy_stream.
const std::vector<std::string>& TargetNames();
// The seeds of one target (empty for an unknown name).
std::vector<std::string> SeedsFor(absl::string_view target);

}  // namespace relay::fuzz
