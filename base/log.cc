#include "base/log.h"

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
std::atomic<bool> json_lines{false};

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kInfo:
      return "INFO";
    case LogLevel::kWarning:
      return "WARNING";
    case LogLevel::kError:
      return "ERROR";
    case LogLevel::kFatal:
      return "FATAL";
  }
  return "?";
}

// A JSON string body: quotes, backslashes, control characters and bytes >= 0x80 escaped
// (so the line is valid JSON whatever bytes a message carries).
void AppendJsonEscaped(std::string* out, const std::string& text) {
  for (const unsigned char c : text) {
    if (c == '"' || c == '\\') {
      out->push_back('\\');
      out->push_back(static_cast<char>(c));
    } else if (c < 0x20 || c >= 0x80) {
      char buf[8];
      snprintf(buf, sizeof(buf), "\\u%04x", c);
      out->append(buf);
    } else {
      out->push_back(static_cast<char>(c));
    }
  }
}

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

void SetLogJson(bool json) { json_lines.store(json); }

std::string ErrnoText(int err) {
  char buf[128];
  return strerror_r(err, buf, sizeof(buf));  // GNU: returns the text (maybe not in buf)
}

void SetMinLogLevel(LogLevel level) { min_level.store(static_cast<int>(level)); }

void SetLogInterval(absl::Duration interval) {
  interval_ns.store(absl::ToInt64Nanoseconds(interval));
}

absl::Status RedirectLogTo(const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) {
    return absl::PermissionDeniedError(std::string("--log_file=") + path +
                                       ": cannot open: " + ErrnoText(errno));
  }
  const bool ok = ::dup2(fd, STDERR_FILENO) >= 0;
  ::close(fd);
  if (!ok) {
    return absl::InternalError(std::string("--log_file=") + path + ": dup2: " + ErrnoText(errno));
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
    : level_(level),
      suppressed_(suppressed),
      always_(always),
      json_(json_lines.load(std::memory_order_relaxed)) {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  tm tm_utc;
  gmtime_r(&ts.tv_sec, &tm_utc);
  const char* base = strrchr(file, '/');
  const char* source = base ? base + 1 : file;
  const int millis = static_cast<int>(ts.tv_nsec / 1000000);
  char when[40];
  if (json_) {
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm_utc);
    char buf[512];
    snprintf(buf, sizeof(buf), "{\"time\":\"%s.%03dZ\",\"level\":\"%s\",\"source\":\"%s:%d\",",
             when, millis, LevelName(level), source, line);
    prefix_ = buf;
    return;
  }
  strftime(when, sizeof(when), "%m%d %H:%M:%S", &tm_utc);
  char ms[8];
  snprintf(ms, sizeof(ms), ".%03d", millis);
  stream_ << LevelLetter(level) << when << ms << ' ' << source << ':' << line << "] ";
}

LogMessage::~LogMessage() {
  if (always_ || static_cast<int>(level_) >= min_level.load(std::memory_order_relaxed) ||
      level_ == LogLevel::kFatal) {
    std::string line;
    if (json_) {
      line = prefix_ + "\"message\":\"";
      AppendJsonEscaped(&line, stream_.str());
      line += '"';
      if (suppressed_ > 0) {
        line += ",\"suppressed\":" + std::to_string(suppressed_);
      }
      line += "}\n";
    } else {
      if (suppressed_ > 0) {
        stream_ << " [" << suppressed_ << " more like this suppressed since the last one]";
      }
      stream_ << '\n';
      line = stream_.str();
    }
    // One write() per line keeps lines from different threads whole.
    ssize_t ignored = ::write(STDERR_FILENO, line.data(), line.size());
    (void)ignored;
  }
  if (level_ == LogLevel::kFatal) {
    std::abort();
  }
}

}  // namespace relay
