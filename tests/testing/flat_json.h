// ParseFlatJson: a strict parser for one flat JSON object of string and number values
// (what --log_format=json writes), for tests. No JSON library: protobuf's Struct map
// crashes under this toolchain's TSan build.
#pragma once

#include <map>
#include <string>

#include "absl/strings/string_view.h"

namespace relay::testing {

// Fills *fields (strings decoded, numbers as written); false on anything that is not one
// object of "key": "string" | number pairs.
bool ParseFlatJson(absl::string_view text, std::map<std::string, std::string>* fields);

}  // namespace relay::testing
