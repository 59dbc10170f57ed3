// TempDir: a fresh directory under /tmp for one test (relay-<name>-XXXXXX), removed with
// everything in it when the TempDir goes.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <string>

namespace relay::testing {

class TempDir {
 public:
  explicit TempDir(const std::string& name) {
    std::string tmpl = "/tmp/relay-" + name + "-XXXXXX";
    path_ = mkdtemp(tmpl.data()) != nullptr ? tmpl : "";
  }
  ~TempDir() {
    std::error_code ignored;
    if (!path_.empty()) {
      std::filesystem::remove_all(path_, ignored);
    }
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  // Empty if the directory could not be made.
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace relay::testing
