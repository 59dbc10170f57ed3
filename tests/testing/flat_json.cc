#include "tests/testing/flat_json.h"

#include <cctype>

#include "absl/strings/match.h"

namespace relay::testing {
namespace {

bool ParseString(absl::string_view* in, std::string* out) {
  if (in->empty() || (*in)[0] != '"') {
    return false;
  }
  in->remove_prefix(1);
  while (!in->empty()) {
    const char c = (*in)[0];
    in->remove_prefix(1);
    if (c == '"') {
      return true;
    }
    if (static_cast<unsigned char>(c) < 0x20) {
      return false;  // raw control characters are not allowed in JSON strings
    }
    if (c != '\\') {
      out->push_back(c);
      continue;
    }
    if (in->empty()) {
      return false;
    }
    const char e = (*in)[0];
    in->remove_prefix(1);
    switch (e) {
      case '"':
      case '\\':
      case '/':
        out->push_back(e);
        break;
      case 'n':
        out->push_back('\n');
        break;
      case 't':
        out->push_back('\t');
        break;
      case 'r':
        out->push_back('\r');
        break;
      case 'u': {
        if (in->size() < 4) {
          return false;
        }
        unsigned code = 0;
        for (int i = 0; i < 4; ++i) {
          const char h = (*in)[i];
          if (!isxdigit(static_cast<unsigned char>(h))) {
            return false;
          }
          code = code * 16 + static_cast<unsigned>(isdigit(h) ? h - '0' : (tolower(h) - 'a' + 10));
        }
        in->remove_prefix(4);
        if (code < 0x80) {
          out->push_back(static_cast<char>(code));
        } else if (code < 0x800) {
          out->push_back(static_cast<char>(0xc0 | (code >> 6)));
          out->push_back(static_cast<char>(0x80 | (code & 0x3f)));
        } else {
          out->push_back(static_cast<char>(0xe0 | (code >> 12)));
          out->push_back(static_cast<char>(0x80 | ((code >> 6) & 0x3f)));
          out->push_back(static_cast<char>(0x80 | (code & 0x3f)));
        }
        break;
      }
      default:
        return false;
    }
  }
  return false;
}

}  // namespace

bool ParseFlatJson(absl::string_view in, std::map<std::string, std::string>* fields) {
  if (in.empty() || in[0] != '{') {
    return false;
  }
  in.remove_prefix(1);
  while (true) {
    std::string key, value;
    if (!ParseString(&in, &key) || in.empty() || in[0] != ':') {
      return false;
    }
    in.remove_prefix(1);
    if (!in.empty() && in[0] == '"') {
      if (!ParseString(&in, &value)) {
        return false;
      }
    } else if (absl::StartsWith(in, "true") || absl::StartsWith(in, "null")) {
      value = std::string(in.substr(0, 4));
      in.remove_prefix(4);
    } else if (absl::StartsWith(in, "false")) {
      value = "false";
      in.remove_prefix(5);
    } else {
      while (!in.empty() &&
             (isdigit(static_cast<unsigned char>(in[0])) || in[0] == '-' || in[0] == '.')) {
        value.push_back(in[0]);
        in.remove_prefix(1);
      }
      if (value.empty()) {
        return false;
      }
    }
    (*fields)[key] = value;
    if (in.empty()) {
      return false;
    }
    if (in[0] == '}') {
      in.remove_prefix(1);
      return in.empty();
    }
    if (in[0] != ',') {
      return false;
    }
    in.remove_prefix(1);
  }
}

}  // namespace relay::testing
