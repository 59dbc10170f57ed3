// Log lines as JSON (--log_format=json): valid JSON whatever bytes a message carries, with
// the count of lines a rate limiter suppressed.
#include "core/log.h"

#include <unistd.h>

#include <fstream>
#include <sstream>

#include "absl/strings/str_split.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"

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
  std::vector<google::protobuf::Struct> lines;
  for (absl::string_view line : absl::StrSplit(text.str(), '\n', absl::SkipEmpty())) {
    google::protobuf::Struct object;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(std::string(line), &object).ok())
        << line;
    lines.push_back(object);
  }
  ASSERT_EQ(lines.size(), 2u) << text.str();
  EXPECT_EQ(lines[0].fields().at("level").string_value(), "WARNING");
  EXPECT_EQ(lines[0].fields().at("message").string_value(),
            "a \"quoted\" \x01 tab\t back\\slash \xc3\xbf byte");  // 0xff as U+00FF
  EXPECT_NE(lines[0].fields().at("source").string_value().find("log_test.cc:"), std::string::npos);
  EXPECT_EQ(lines[0].fields().at("time").string_value().size(), 24u);  // ...T..:..:..mmmZ
  EXPECT_EQ(lines[1].fields().at("message").string_value(), "limited 0");
  EXPECT_FALSE(lines[1].fields().contains("suppressed"));
}

}  // namespace
}  // namespace relay
