#include "base/command_line.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"

#ifndef RELAY_VERSION
#define RELAY_VERSION "0.0.0"
#endif

namespace relay {
namespace {

bool IsPlainNumber(absl::string_view v) {
  if (v.empty()) {
    return false;
  }
  bool dot = false;
  for (char c : v) {
    if (c == '.' && !dot) {
      dot = true;
    } else if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) {
      return false;
    }
  }
  return true;
}

// What a value of the flag's type looks like, for error messages.
std::string Expected(const absl::CommandLineFlag& flag) {
  if (flag.IsOfType<absl::Duration>()) {
    return "a duration such as 30s, 500ms, 180m or plain seconds";
  }
  if (flag.IsOfType<bool>()) {
    return "true or false";
  }
  if (flag.IsOfType<int>() || flag.IsOfType<int64_t>()) {
    return "an integer";
  }
  if (flag.IsOfType<uint32_t>() || flag.IsOfType<uint64_t>()) {
    return "a non-negative integer";
  }
  if (flag.IsOfType<double>()) {
    return "a number";
  }
  return "a value";
}

std::vector<std::string>& RetiredGiven() {
  static std::vector<std::string>* given = new std::vector<std::string>();
  return *given;
}

bool IsRetired(const ProgramInfo& info, const std::string& name) {
  return std::find(info.retired.begin(), info.retired.end(), name) != info.retired.end();
}

// The flag files read at start, for ReloadFlagFiles.
std::vector<std::string>& FlagFiles() {
  static std::vector<std::string>* files = new std::vector<std::string>();
  return *files;
}

class Parser {
 public:
  explicit Parser(const ProgramInfo& info) : info_(info) {}

  std::vector<std::string> Run(std::vector<std::string> args) {
    std::vector<std::string> positional;
    for (size_t i = 0; i < args.size(); ++i) {
      const std::string& arg = args[i];
      if (arg == "--") {
        positional.insert(positional.end(), args.begin() + static_cast<ptrdiff_t>(i) + 1,
                          args.end());
        break;
      }
      if (arg.size() < 2 || arg[0] != '-') {
        positional.push_back(arg);
        continue;
      }
      ParseFlag(args, &i, &positional);
    }
    return positional;
  }

 private:
  // One "--name[=value]" at args[*i], taking the next argument as its value where one is
  // needed and not given.
  void ParseFlag(const std::vector<std::string>& args, size_t* i,
                 std::vector<std::string>* positional) {
    const std::string& arg = args[*i];
    absl::string_view body = arg;
    body.remove_prefix(body[1] == '-' ? 2 : 1);
    std::string name(body.substr(0, body.find('=')));
    const bool has_value = body.find('=') != absl::string_view::npos;
    std::string value = has_value ? std::string(body.substr(body.find('=') + 1)) : "";
    absl::StrReplaceAll({{"-", "_"}}, &name);
    auto next_value = [&](const std::string& flag, const std::string& expected) {
      if (*i + 1 >= args.size()) {
        ExitUsage(info_, absl::StrCat("--", flag, ": missing ", expected));
      }
      return args[++*i];
    };
    if (name == "help" || name == "helpfull" || name == "h" || name == "?") {
      PrintHelp();
      std::exit(0);
    }
    if (name == "version") {
      printf("%s %s\n", info_.name, RelayVersion());
      std::exit(0);
    }
    if (name == "flagfile") {
      ReadFlagFile(has_value ? value : next_value("flagfile", "FILE"), positional);
      return;
    }
    if (IsRetired(info_, name)) {
      RetiredGiven().push_back(arg);
      return;
    }
    bool negated = false;
    absl::CommandLineFlag* flag = FindOrNegated(name, has_value, &negated);
    if (flag == nullptr) {
      ExitUsage(info_, absl::StrCat("unknown flag ", arg, " (see ", info_.name, " --help)"));
    }
    if (flag->IsOfType<bool>() && !has_value) {
      value = negated ? "false" : "true";
    } else if (!has_value) {
      value = next_value(std::string(flag->Name()),
                         absl::StrCat("value (expected ", Expected(*flag), ")"));
    }
    Set(flag, value);
  }

  // The flag called `name`, or "no" + a boolean flag's name given without a value.
  absl::CommandLineFlag* FindOrNegated(const std::string& name, bool has_value, bool* negated) {
    absl::CommandLineFlag* flag = Find(name);
    if (flag == nullptr && absl::StartsWith(name, "no")) {
      flag = Find(name.substr(2));
      *negated = flag != nullptr && flag->IsOfType<bool>() && !has_value;
      if (!*negated) {
        flag = nullptr;
      }
    }
    return flag;
  }

  absl::CommandLineFlag* Find(const std::string& name) {
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    if (flag == nullptr || !absl::EndsWith(flag->Filename(), info_.main_file)) {
      return nullptr;
    }
    return flag;
  }

  void Set(absl::CommandLineFlag* flag, std::string value) {
    // A list flag given more than once (--listen=A --listen=B) accumulates: A,B.
    if (flag->IsOfType<std::vector<std::string>>() &&
        !seen_lists_.insert(std::string(flag->Name())).second && !value.empty()) {
      const std::string current = flag->CurrentValue();
      value = current.empty() ? value : absl::StrCat(current, ",", value);
    }
    std::string parsed = value;
    if (flag->IsOfType<absl::Duration>() && IsPlainNumber(value)) {
      parsed += "s";
    }
    std::string error;
    if (!flag->ParseFrom(parsed, &error)) {
      ExitUsage(info_,
                absl::StrCat("--", flag->Name(), "=", value, ": expected ", Expected(*flag)));
    }
    if (flag->IsOfType<absl::Duration>()) {
      absl::Duration d;
      if (absl::ParseDuration(parsed, &d) && d < absl::ZeroDuration()) {
        ExitUsage(info_, absl::StrCat("--", flag->Name(), "=", value,
                                      ": must not be negative (expected ", Expected(*flag), ")"));
      }
    }
  }

  void ReadFlagFile(const std::string& path, std::vector<std::string>* positional) {
    FlagFiles().push_back(path);
    if (++depth_ > 8) {
      ExitUsage(info_, absl::StrCat("--flagfile=", path, ": flag files nest too deep"));
    }
    std::ifstream in(path);
    if (!in) {
      ExitUsage(info_, absl::StrCat("--flagfile=", path, ": cannot read the file"));
    }
    std::vector<std::string> args;
    std::string line;
    while (std::getline(in, line)) {
      absl::string_view l = absl::StripAsciiWhitespace(line);
      if (l.empty() || l[0] == '#') {
        continue;
      }
      if (l[0] != '-') {
        ExitUsage(info_, absl::StrCat("--flagfile=", path, ": line '", l,
                                      "' is not a flag (expected --flag=value)"));
      }
      args.emplace_back(l);
    }
    std::vector<std::string> more = Run(std::move(args));
    positional->insert(positional->end(), more.begin(), more.end());
    --depth_;
  }

  void PrintHelp() {
    std::string out =
        absl::StrCat(info_.name, ": ", info_.summary, "\n\nUsage:\n", info_.usage, "\n\nFlags:\n");
    std::vector<std::pair<absl::string_view, absl::CommandLineFlag*>> flags;
    for (const auto& [name, flag] : absl::GetAllFlags()) {
      if (absl::EndsWith(flag->Filename(), info_.main_file)) {
        flags.emplace_back(name, flag);
      }
    }
    std::sort(flags.begin(), flags.end());
    for (const auto& [name, flag] : flags) {
      const std::string def = flag->DefaultValue();
      absl::StrAppend(&out, "  --", name, "=", def.empty() ? "\"\"" : def, "\n      ", flag->Help(),
                      "\n");
    }
    absl::StrAppend(&out,
                    "  --flagfile=FILE\n      Read more flags from FILE, one --flag=value per "
                    "line ('#' comments).\n  --help, --version\n      This text; the version.\n\n"
                    "Durations: 30s, 500ms, 180m, 1h30m, or plain seconds. '-' and '_' are the "
                    "same in flag names.\n\nExit codes: ",
                    info_.exit_codes, "\n");
    fputs(out.c_str(), stdout);
  }

  const ProgramInfo& info_;
  int depth_ = 0;
  std::set<std::string> seen_lists_;  // list flags set in this parse
};

}  // namespace

std::vector<std::string> ParseCommandLineOrExit(int argc, char** argv, const ProgramInfo& info) {
  std::vector<std::string> args(argv + std::min(argc, 1), argv + argc);
  return Parser(info).Run(std::move(args));
}

absl::StatusOr<FlagReload> ReloadFlagFiles(const ProgramInfo& info,
                                           const std::vector<std::string>& reloadable) {
  // First read and check every line; then apply.
  std::vector<std::pair<absl::CommandLineFlag*, std::string>> wanted;
  for (const std::string& path : FlagFiles()) {
    std::ifstream in(path);
    if (!in) {
      return absl::NotFoundError(absl::StrCat("--flagfile=", path, ": cannot read the file"));
    }
    std::string line;
    while (std::getline(in, line)) {
      absl::string_view l = absl::StripAsciiWhitespace(line);
      if (l.empty() || l[0] == '#') {
        continue;
      }
      if (!absl::ConsumePrefix(&l, "--") && !absl::ConsumePrefix(&l, "-")) {
        return absl::InvalidArgumentError(
            absl::StrCat("--flagfile=", path, ": line '", l, "' is not a flag"));
      }
      std::string name(l.substr(0, l.find('=')));
      absl::StrReplaceAll({{"-", "_"}}, &name);
      const bool has_value = l.find('=') != absl::string_view::npos;
      std::string value = has_value ? std::string(l.substr(l.find('=') + 1)) : "true";
      if (name == "flagfile" || IsRetired(info, name)) {
        continue;  // nested files were recorded when first read; retired flags are ignored
      }
      absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
      if (flag == nullptr && absl::StartsWith(name, "no") && !has_value) {
        flag = absl::FindCommandLineFlag(name.substr(2));
        value = "false";
      }
      if (flag == nullptr || !absl::EndsWith(flag->Filename(), info.main_file)) {
        return absl::InvalidArgumentError(
            absl::StrCat("--flagfile=", path, ": unknown flag --", name));
      }
      if (flag->IsOfType<absl::Duration>() && IsPlainNumber(value)) {
        value += "s";
      }
      wanted.emplace_back(flag, value);
    }
  }
  FlagReload reload;
  for (const auto& [flag, value] : wanted) {
    const std::string before = flag->CurrentValue();
    std::string error;
    if (!flag->ParseFrom(value, &error)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", flag->Name(), "=", value, ": expected ", Expected(*flag)));
    }
    const std::string after = flag->CurrentValue();
    if (after == before) {
      continue;
    }
    const std::string change = absl::StrCat("--", flag->Name(), "=", after);
    if (std::find(reloadable.begin(), reloadable.end(), flag->Name()) != reloadable.end()) {
      reload.applied.push_back(change);
    } else {
      flag->ParseFrom(before, &error);  // keep what the process runs with
      reload.need_restart.push_back(change);
    }
  }
  return reload;
}

void ExitUsage(const ProgramInfo& info, absl::string_view message) {
  fprintf(stderr, "%s: %s\n", info.name, std::string(message).c_str());
  std::exit(kExitUsage);
}

const char* RelayVersion() { return RELAY_VERSION; }

const std::vector<std::string>& RetiredFlagsGiven() { return RetiredGiven(); }

}  // namespace relay
