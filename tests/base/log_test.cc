// Log lines as JSON (--log_format=json): valid JSON whatever bytes a message carries, with
// the count of lines a rate limiter suppressed.
#include "base/log.h"

#include <unistd.h>

#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "tests/testing/flat_json.h"

namespace relay {
namespace {

TEST(LogJsonTest, EveryLineIsOneJsonObjectWithItsMessageIntact) {
  char path[] = "/tmp/relay-log-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  const int saved = dup(STDERR_FILENO);
  ASSERT_TRUE(RedirectLogTo(path).ok());
  SetLogJson(true);
  SetLogInterval(absl::Hours(1));
  RELAY_LOG(WARNING) << "a \"quoted\" \x01 tab\t back\\slash \xff byte";
  for (int i = 0; i < 3; ++i) {
    RELAY_LOG_LIMITED(ERROR) << "limited " << i;  // one line; the next says 2 suppressed
  }
  SetLogJson(false);
  SetLogInterval(absl::Seconds(10));
  dup2(saved, STDERR_FILENO);
  close(saved);
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  unlink(path);
  std::vector<std::map<std::string, std::string>> lines;
  for (absl::string_view line : absl::StrSplit(text.str(), '\n', absl::SkipEmpty())) {
    std::map<std::string, std::string> object;
    ASSERT_TRUE(testing::ParseFlatJson(line, &object)) << line;
    lines.push_back(object);
  }
  ASSERT_EQ(lines.size(), 2u) << text.str();
  EXPECT_EQ(lines[0]["level"], "WARNING");
  EXPECT_EQ(lines[0]["message"],
            "a \"quoted\" \x01 tab\t back\\slash \xc3\xbf byte");  // 0xff as U+00FF
  EXPECT_NE(lines[0]["source"].find("log_test.cc:"), std::string::npos);
  EXPECT_EQ(lines[0]["time"].size(), 24u);  // ...T..:..:..mmmZ
  EXPECT_EQ(lines[1]["message"], "limited 0");
  EXPECT_EQ(lines[1].count("suppressed"), 0u);
}

}  // namespace
}  // namespace relay
