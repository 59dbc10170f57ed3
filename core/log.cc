#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "google/protobuf/stubs/logging.h"

namespace relay {
namespace {

std::atomic<int> min_level{static_cast<int>(LogLevel::kInfo)};
std::atomic<int64_t> interval_ns{10'000'000'000};

int64_t MonotonicNanos() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

void ProtobufLogHandler(google::protobuf::LogLevel level, const char* filename, int line,
                        const std::string& message) {
  if (level == google::protobuf::LOGLEVEL_FATAL) {
    LogMessage(LogLevel::kFatal, filename, line).stream() << "libprotobuf: " << message;
    return;
  }
  RELAY_LOG_LIMITED(WARNING) << "libprotobuf: " << message;
}

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

namespace {
std::atomic<int> session_rate{20};
std::atomic<int64_t> session_window{0};  // the second being counted
std::atomic<int> session_lines{0};       // lines logged in it
std::atomic<uint64_t> session_suppressed{0};
}  // namespace

void SetSessionLogRate(int per_second) { session_rate.store(per_second); }

bool AllowSessionLog(uint64_t* suppressed) {
  const int rate = session_rate.load(std::memory_order_relaxed);
  if (rate <= 0) {
    return false;
  }
  const int64_t second = MonotonicNanos() / 1'000'000'000;
  int64_t window = session_window.load(std::memory_order_relaxed);
  if (second != window && session_window.compare_exchange_strong(window, second)) {
    session_lines.store(0, std::memory_order_relaxed);
  }
  if (session_lines.fetch_add(1, std::memory_order_relaxed) >= rate) {
    session_suppressed.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  *suppressed = session_suppressed.exchange(0, std::memory_order_relaxed);
  return true;
}

void SetMinLogLevel(LogLevel level) { min_level.store(static_cast<int>(level)); }

void SetLogInterval(absl::Duration interval) {
  interval_ns.store(absl::ToInt64Nanoseconds(interval));
}

absl::Status RedirectLogTo(const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) {
    return absl::PermissionDeniedError(std::string("--log_file=") + path +
                                       ": cannot open: " + strerror(errno));
  }
  const bool ok = ::dup2(fd, STDERR_FILENO) >= 0;
  ::close(fd);
  if (!ok) {
    return absl::InternalError(std::string("--log_file=") + path + ": dup2: " + strerror(errno));
  }
  return absl::OkStatus();
}

void RouteProtobufLogs() { google::protobuf::SetLogHandler(&ProtobufLogHandler); }

bool LogRateLimiter::Allow(uint64_t* suppressed) {
  const int64_t now = MonotonicNanos();
  int64_t next = next_ns_.load(std::memory_order_relaxed);
  if (now >= next &&
      next_ns_.compare_exchange_strong(next, now + interval_ns.load(std::memory_order_relaxed),
                                       std::memory_order_relaxed)) {
    *suppressed = suppressed_.exchange(0, std::memory_order_relaxed);
    return true;
  }
  suppressed_.fetch_add(1, std::memory_order_relaxed);
  return false;
}

LogMessage::LogMessage(LogLevel level, const char* file, int line, uint64_t suppressed, bool always)
    : level_(level), suppressed_(suppressed), always_(always) {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  tm tm_utc;
  gmtime_r(&ts.tv_sec, &tm_utc);
  char when[32];
  strftime(when, sizeof(when), "%m%d %H:%M:%S", &tm_utc);
  const char* base = strrchr(file, '/');
  char millis[8];
  snprintf(millis, sizeof(millis), ".%03d", static_cast<int>(ts.tv_nsec / 1000000));
  stream_ << LevelLetter(level) << when << millis << ' ' << (base ? base + 1 : file) << ':' << line
          << "] ";
}

LogMessage::~LogMessage() {
  if (always_ || static_cast<int>(level_) >= min_level.load(std::memory_order_relaxed) ||
      level_ == LogLevel::kFatal) {
    if (suppressed_ > 0) {
      stream_ << " [" << suppressed_ << " more like this suppressed since the last one]";
    }
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
