#include "core/log.h"

#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace relay {
namespace {

std::atomic<int> min_level{static_cast<int>(LogLevel::kInfo)};

char LevelLetter(LogLevel level) {
  switch (level) {
    case LogLevel::kInfo:
      return 'I';
    case LogLevel::kWarning:
      return 'W';
    case LogLevel::kError:
      return 'E';
    case LogLevel::kFatal:
      return 'F';
  }
  return '?';
}

}  // namespace

void SetMinLogLevel(LogLevel level) { min_level.store(static_cast<int>(level)); }

LogMessage::LogMessage(LogLevel level, const char* file, int line) : level_(level) {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  tm tm_utc;
  gmtime_r(&ts.tv_sec, &tm_utc);
  char when[32];
  strftime(when, sizeof(when), "%m%d %H:%M:%S", &tm_utc);
  const char* base = strrchr(file, '/');
  stream_ << LevelLetter(level) << when << '.' << (ts.tv_nsec / 1000000) << ' '
          << (base ? base + 1 : file) << ':' << line << "] ";
}

LogMessage::~LogMessage() {
  if (static_cast<int>(level_) >= min_level.load(std::memory_order_relaxed) ||
      level_ == LogLevel::kFatal) {
    stream_ << '\n';
    const std::string line = stream_.str();
    // One write() per line keeps lines from different threads whole.
    ssize_t ignored = ::write(STDERR_FILENO, line.data(), line.size());
    (void)ignored;
  }
  if (level_ == LogLevel::kFatal) {
    std::abort();
  }
}

}  // namespace relay
