// Minimal logging and assertion macros for the relay (abseil 20220623 ships no absl/log).
//
// RELAY_LOG(INFO|WARNING|ERROR) << ...;  writes one line to stderr, thread-safe per line.
// RELAY_LOG_LIMITED(level) << ...;       logs at most one line per interval (default 10 s,
//                                         SetLogInterval) from this call site; the next line
//                                         it prints says how many it suppressed. The error
//                                         paths use it with a counter, so a flood of bad
//                                         input costs one line per interval, not millions,
//                                         and a second, different attack still shows.
// RELAY_CHECK(cond) << ...;              aborts on the impossible (all builds).
// RELAY_DCHECK(cond);                    checks invariants in debug builds only.
// Any thread may log. Never log per frame on the forwarding path.
#pragma once

#include <atomic>
#include <cstdint>
#include <sstream>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace relay {

enum class LogLevel { kInfo, kWarning, kError, kFatal };

// The text of errno value `err` ("Connection reset by peer"). Thread-safe, unlike
// strerror(), whose buffer for unknown values is shared by every thread.
std::string ErrnoText(int err);

// Sets the lowest level that is printed (default kInfo). Thread-safe.
void SetMinLogLevel(LogLevel level);
// Each line as one JSON object instead of text (--log_format=json):
//   {"time":"2026-11-25T23:47:35.529Z","level":"INFO","source":"main.cc:371",
//    "message":"...","suppressed":3}
// ("suppressed" only when a rate limiter dropped lines before this one). Thread-safe.
void SetLogJson(bool json);
// Sets the interval of RELAY_LOG_LIMITED (default 10 s). Thread-safe.
void SetLogInterval(absl::Duration interval);

// Session lines (a node's session starting and ending): at most `per_second` lines per
// second over the whole process (0: none), so a flood of throw-away sessions cannot
// flood the log. Thread-safe.
void SetSessionLogRate(int per_second);
// True if a session line may be logged now; *suppressed gets the session lines dropped
// since the last one logged.
bool AllowSessionLog(uint64_t* suppressed);

// Sends the log (stderr) to `path` from now on, appending (created 0640). Called again
// with the same path (SIGHUP after logrotate moved the file), it reopens it: the switch
// is atomic (dup2), so no line is lost or split. Returns the error naming the file.
absl::Status RedirectLogTo(const std::string& path);

// Routes libprotobuf's own log lines (e.g. "invalid UTF-8" on every bad message)
// through RELAY_LOG_LIMITED, so input cannot flood the log through protobuf. Idempotent.
void RouteProtobufLogs();

// One call site's state for RELAY_LOG_LIMITED. Lock-free; any thread.
class LogRateLimiter {
 public:
  // True if this site may log now; then *suppressed gets the lines dropped since the
  // last one it printed.
  bool Allow(uint64_t* suppressed);

 private:
  std::atomic<int64_t> next_ns_{0};
  std::atomic<uint64_t> suppressed_{0};
};

// The per-statement state of RELAY_LOG_LIMITED's for-loop: runs the body at most once.
class LogGate {
 public:
  // `allow(&suppressed)` says whether this line may be printed (a LogRateLimiter's Allow,
  // or AllowSessionLog) and how many were dropped before it.
  template <typename Allow>
  explicit LogGate(Allow&& allow) : open_(allow(&suppressed_)) {}
  bool open() const { return open_; }
  void Close() { open_ = false; }
  uint64_t suppressed() const { return suppressed_; }

 private:
  uint64_t suppressed_ = 0;
  bool open_;
};

class LogMessage {
 public:
  // `suppressed`: lines a rate limiter dropped before this one (said at the line's end).
  // `always`: printed whatever SetMinLogLevel says (output the operator asked for).
  LogMessage(LogLevel level, const char* file, int line, uint64_t suppressed = 0,
             bool always = false);
  ~LogMessage();  // writes the line; aborts for kFatal
  LogMessage(const LogMessage&) = delete;
  LogMessage& operator=(const LogMessage&) = delete;
  std::ostream& stream() { return stream_; }

 private:
  LogLevel level_;
  uint64_t suppressed_;
  bool always_;
  bool json_;
  std::string prefix_;  // json: the fields before "message"
  std::ostringstream stream_;
};

// Turns a streamed expression into void, so the macros below work in expressions.
struct LogVoidify {
  void operator&(std::ostream&) {}
};

}  // namespace relay

#define RELAY_LOG_LEVEL_INFO ::relay::LogLevel::kInfo
#define RELAY_LOG_LEVEL_WARNING ::relay::LogLevel::kWarning
#define RELAY_LOG_LEVEL_ERROR ::relay::LogLevel::kError
#define RELAY_LOG_LEVEL_FATAL ::relay::LogLevel::kFatal

#define RELAY_LOG(level) ::relay::LogMessage(RELAY_LOG_LEVEL_##level, __FILE__, __LINE__).stream()
// Printed even under --quiet: for what the operator asked for (SIGUSR1's counters).
#define RELAY_LOG_ALWAYS(level) \
  ::relay::LogMessage(RELAY_LOG_LEVEL_##level, __FILE__, __LINE__, 0, true).stream()

#define RELAY_LOG_LIMITED(level)                                                                \
  for (::relay::LogGate relay_log_gate([](uint64_t* relay_suppressed) {                         \
         static ::relay::LogRateLimiter relay_log_limiter;                                      \
         return relay_log_limiter.Allow(relay_suppressed);                                      \
       });                                                                                      \
       relay_log_gate.open(); relay_log_gate.Close())                                           \
  ::relay::LogMessage(RELAY_LOG_LEVEL_##level, __FILE__, __LINE__, relay_log_gate.suppressed()) \
      .stream()

// RELAY_LOG_SESSION << ...;  an INFO line about a session, within SetSessionLogRate.
#define RELAY_LOG_SESSION                                                                         \
  for (::relay::LogGate relay_session_gate(&::relay::AllowSessionLog); relay_session_gate.open(); \
       relay_session_gate.Close())                                                                \
  ::relay::LogMessage(::relay::LogLevel::kInfo, __FILE__, __LINE__,                               \
                      relay_session_gate.suppressed())                                            \
      .stream()

#define RELAY_CHECK(cond)                                                                  \
  (cond) ? (void)0                                                                         \
         : ::relay::LogVoidify() &                                                         \
               ::relay::LogMessage(::relay::LogLevel::kFatal, __FILE__, __LINE__).stream() \
                   << "Check failed: " #cond " "

#ifdef NDEBUG
#define RELAY_DCHECK(cond) \
  while (false) RELAY_CHECK(cond)
#else
#define RELAY_DCHECK(cond) RELAY_CHECK(cond)
#endif
