// ParseFlatJson: a strict parser for one flat JSON object of string, number, true, false
// and null values (what --log_format=json and relay-load --json write), for tests. No JSON library:
// protobuf's Struct map crashes under this toolchain's TSan build.
#pragma once

#include <map>
#include <string>

#include "absl/strings/string_view.h"

namespace relay::testing {

// Fills *fields (strings decoded, numbers and literals as written); false on anything
// that is not one object of "key": "string" | number | true | false | null pairs.
bool ParseFlatJson(absl::string_view text, std::map<std::string, std::string>* fields);

}  // namespace relay::testing
