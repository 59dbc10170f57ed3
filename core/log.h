// Minimal logging and assertion macros for the relay (abseil 20220623 ships no absl/log).
//
// RELAY_LOG(INFO|WARNING|ERROR) << ...;  writes one line to stderr, thread-safe per line.
// RELAY_LOG_ONCE(level) << ...;          logs only the first time this call site runs; the
//                                         error paths use it together with a counter, so a
//                                         flood of bad input costs one line, not millions.
// RELAY_CHECK(cond) << ...;              aborts on the impossible (all builds).
// RELAY_DCHECK(cond);                    checks invariants in debug builds only.
// Any thread may log. Never log per frame on the forwarding path.
#pragma once

#include <atomic>
#include <sstream>

namespace relay {

enum class LogLevel { kInfo, kWarning, kError, kFatal };

// Sets the lowest level that is printed (default kInfo). Thread-safe.
void SetMinLogLevel(LogLevel level);

class LogMessage {
 public:
  LogMessage(LogLevel level, const char* file, int line);
  ~LogMessage();  // writes the line; aborts for kFatal
  LogMessage(const LogMessage&) = delete;
  LogMessage& operator=(const LogMessage&) = delete;
  std::ostream& stream() { return stream_; }

 private:
  LogLevel level_;
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

#define RELAY_LOG_ONCE(level)                                         \
  for (static std::atomic<bool> relay_logged_once{false};             \
       !relay_logged_once.exchange(true, std::memory_order_relaxed);) \
  RELAY_LOG(level)

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
