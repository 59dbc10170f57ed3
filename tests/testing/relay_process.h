// RelayProcess: runs the real relay-server binary (path from $RELAY_SERVER_BIN) for a
// test, on 127.0.0.1 with free ports, and always ends it: SIGTERM in Stop(), SIGKILL in
// the destructor if it is still running. The child dies with the test (PR_SET_PDEATHSIG).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace relay::testing {

class RelayProcess {
 public:
  RelayProcess() = default;
  ~RelayProcess();
  RelayProcess(const RelayProcess&) = delete;
  RelayProcess& operator=(const RelayProcess&) = delete;

  // Starts relay-server with `args` plus --listen on a free port and waits (bounded)
  // until it accepts connections. Returns false if it did not come up.
  bool Start(std::vector<std::string> args);
  // The same on `host`:`port` (another loopback address: relays of a fleet on one port).
  bool StartOn(const std::string& host, uint16_t port, std::vector<std::string> args);
  // The same, with the child's open-files limit (soft and hard) set to `nofile`.
  bool StartWithFdLimit(std::vector<std::string> args, int nofile);
  // The relay's counters and gauges: sends SIGUSR1 and parses the line it logs. Empty on
  // failure (bounded wait).
  std::map<std::string, uint64_t> Counters();
  // Open fds of the relay process (/proc/<pid>/fd), -1 if unknown.
  int OpenFds() const;
  // Live upgrade: starts relay-server with `args` plus --listen=<old's port> and
  // --take_over=`socket`, and waits (bounded) until it says it took over. False if it
  // exited first or did not finish in time (Wait() then gives its exit status).
  bool TakeOver(const RelayProcess& old, std::vector<std::string> args, const std::string& socket);
  // Sends SIGTERM and waits; returns the exit status (or -1 on timeout / signal death).
  int Stop(absl::Duration timeout = absl::Seconds(20));
  // Waits for the process to exit by itself; its exit status, -1 if a signal ended it, -2
  // on timeout.
  int Wait(absl::Duration timeout);

  pid_t pid() const { return pid_; }
  uint16_t port() const { return port_; }
  // Resident set size from /proc/<pid>/status, in KiB (0 if unavailable).
  long RssKib() const;
  // Everything the process wrote to stderr so far.
  std::string Stderr() const;

  // Runs the binary with `args` to completion (bounded); returns its exit status and
  // its stdout+stderr in *output.
  static int RunToCompletion(std::vector<std::string> args, std::string* output);
  // The same for another program of build/bin (e.g. "relay-node").
  static int RunProgram(const std::string& name, std::vector<std::string> args,
                        std::string* output);
  static std::string BinaryPath();
  // The path of a program in the directory relay-server lives in.
  static std::string ProgramPath(const std::string& name);

 private:
  pid_t pid_ = -1;
  uint16_t port_ = 0;
  int nofile_ = 0;
  int exit_status_ = -2;  // once it exited and was collected
  std::string log_path_;
};

// The text of a file of the source tree (README.md, docs/...), "" if missing.
std::string ReadSourceFile(const std::string& relative_path);

// Another program of build/bin (relay-node, relay-load) run in the background for a test,
// its stdout+stderr going to a temp file. Killed (SIGKILL) by the destructor if still
// running; the child also dies with the test (PR_SET_PDEATHSIG).
class BackgroundProgram {
 public:
  BackgroundProgram() = default;
  ~BackgroundProgram();
  BackgroundProgram(const BackgroundProgram&) = delete;
  BackgroundProgram& operator=(const BackgroundProgram&) = delete;

  bool Start(const std::string& name, std::vector<std::string> args);
  // Everything it printed so far.
  std::string Output() const;
  // Polls (bounded) until Output() contains `text`; false on timeout.
  bool WaitForOutput(const std::string& text, absl::Duration timeout) const;
  // Waits (bounded) for it to exit; returns its exit status, -1 if a signal ended it, -2
  // on timeout.
  int Wait(absl::Duration timeout);
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  std::string out_path_;
};

}  // namespace relay::testing
