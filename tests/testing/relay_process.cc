#include "tests/testing/relay_process.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/process_stats.h"
#include "net/socket_ops.h"
#include "tests/testing/free_ports.h"

namespace relay::testing {
namespace {

pid_t Spawn(const std::vector<std::string>& args, const std::string& out_path, int nofile = 0) {
  std::vector<char*> argv;
  for (const std::string& a : args) {
    argv.push_back(const_cast<char*>(a.c_str()));
  }
  argv.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) {
      _exit(127);
    }
    const int fd = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd >= 0) {
      dup2(fd, STDOUT_FILENO);
      dup2(fd, STDERR_FILENO);
      close(fd);
    }
    if (nofile > 0) {
      rlimit limit{static_cast<rlim_t>(nofile), static_cast<rlim_t>(nofile)};
      setrlimit(RLIMIT_NOFILE, &limit);
    }
    execv(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

// Waits for `pid` up to `timeout`; returns the exit status, or -1.
int WaitFor(pid_t pid, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    int status = 0;
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  return -2;
}

std::string TempPath() {
  char path[] = "/tmp/relay-test-XXXXXX";
  const int fd = mkstemp(path);
  if (fd >= 0) {
    close(fd);
  }
  return path;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

std::string RelayProcess::BinaryPath() {
  const char* env = getenv("RELAY_SERVER_BIN");
  if (env != nullptr) {
    return env;
  }
  // Tests and the server land in the same bin/ directory.
  char self[4096];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  std::string dir = n > 0 ? std::string(self, static_cast<size_t>(n)) : std::string();
  dir = dir.substr(0, dir.rfind('/'));
  return dir + "/relay-server";
}

RelayProcess::~RelayProcess() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    WaitFor(pid_, absl::Seconds(10));
  }
  if (!log_path_.empty()) {
    unlink(log_path_.c_str());
  }
}

bool RelayProcess::StartWithFdLimit(std::vector<std::string> args, int nofile) {
  nofile_ = nofile;
  return Start(std::move(args));
}

std::map<std::string, uint64_t> RelayProcess::Counters() {
  std::map<std::string, uint64_t> out;
  if (pid_ <= 0) {
    return out;
  }
  const size_t before = Stderr().size();
  kill(pid_, SIGUSR1);
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (absl::Now() < deadline) {
    const std::string log = Stderr();
    const size_t at = log.find("counters:", before);
    const size_t end = at == std::string::npos ? at : log.find('\n', at);
    if (end != std::string::npos) {
      for (absl::string_view item : absl::StrSplit(
               absl::string_view(log).substr(at + 9, end - at - 9), ' ', absl::SkipEmpty())) {
        const size_t eq = item.find('=');
        uint64_t v = 0;
        if (eq != absl::string_view::npos && absl::SimpleAtoi(item.substr(eq + 1), &v)) {
          out[std::string(item.substr(0, eq))] = v;
        }
      }
      return out;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  return out;
}

int RelayProcess::OpenFds() const { return ProcessOpenFds(pid_); }

bool RelayProcess::Start(std::vector<std::string> args) {
  return StartOn("127.0.0.1", PickFreePortRange(1), std::move(args));
}

bool RelayProcess::StartOn(const std::string& host, uint16_t port, std::vector<std::string> args) {
  port_ = port;
  args.insert(args.begin(), BinaryPath());
  args.push_back(absl::StrCat("--listen=", host, ":", port_));
  log_path_ = TempPath();
  pid_ = Spawn(args, log_path_, nofile_);
  if (pid_ <= 0) {
    return false;
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (absl::Now() < deadline) {
    if (net::ConnectBlocking(host, port_).ok()) {
      return true;
    }
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return false;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return false;
}

bool RelayProcess::TakeOver(const RelayProcess& old, std::vector<std::string> args,
                            const std::string& socket) {
  port_ = old.port_;
  args.insert(args.begin(), BinaryPath());
  args.push_back(absl::StrCat("--listen=127.0.0.1:", port_));
  args.push_back("--take_over=" + socket);
  log_path_ = TempPath();
  pid_ = Spawn(args, log_path_, nofile_);
  if (pid_ <= 0) {
    return false;
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (absl::Now() < deadline) {
    if (Stderr().find("live upgrade: took over") != std::string::npos) {
      return true;
    }
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      pid_ = -1;
      return false;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  return false;
}

int RelayProcess::Wait(absl::Duration timeout) {
  if (pid_ <= 0) {
    return exit_status_;
  }
  const int status = WaitFor(pid_, timeout);
  if (status != -2) {
    pid_ = -1;
    exit_status_ = status;
  }
  return status;
}

int RelayProcess::Stop(absl::Duration timeout) {
  if (pid_ <= 0) {
    return -1;
  }
  kill(pid_, SIGTERM);
  const int status = WaitFor(pid_, timeout);
  if (status != -2) {
    pid_ = -1;
  }
  return status;
}

long RelayProcess::RssKib() const { return ProcessRssKib(pid_); }

std::string RelayProcess::Stderr() const { return ReadFile(log_path_); }

std::string RelayProcess::ProgramPath(const std::string& name) {
  const std::string server = BinaryPath();
  return server.substr(0, server.rfind('/') + 1) + name;
}

int RelayProcess::RunToCompletion(std::vector<std::string> args, std::string* output) {
  return RunProgram("relay-server", std::move(args), output);
}

int RelayProcess::RunProgram(const std::string& name, std::vector<std::string> args,
                             std::string* output) {
  args.insert(args.begin(), ProgramPath(name));
  const std::string path = TempPath();
  const pid_t pid = Spawn(args, path);
  int status = WaitFor(pid, absl::Seconds(20));
  if (status == -2) {
    kill(pid, SIGKILL);
    WaitFor(pid, absl::Seconds(5));
  }
  *output = ReadFile(path);
  unlink(path.c_str());
  return status;
}

}  // namespace relay::testing

namespace relay::testing {

std::string ReadSourceFile(const std::string& relative_path) {
  return ReadFile(absl::StrCat(RELAY_SOURCE_DIR, "/", relative_path));
}

BackgroundProgram::~BackgroundProgram() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    WaitFor(pid_, absl::Seconds(10));
  }
  if (!out_path_.empty()) {
    unlink(out_path_.c_str());
  }
}

bool BackgroundProgram::Start(const std::string& name, std::vector<std::string> args) {
  args.insert(args.begin(), RelayProcess::ProgramPath(name));
  out_path_ = TempPath();
  pid_ = Spawn(args, out_path_);
  return pid_ > 0;
}

std::string BackgroundProgram::Output() const { return ReadFile(out_path_); }

int BackgroundProgram::Wait(absl::Duration timeout) {
  const int status = WaitFor(pid_, timeout);
  if (status != -2) {
    pid_ = -1;  // reaped
  }
  return status;
}

bool BackgroundProgram::WaitForOutput(const std::string& text, absl::Duration timeout) const {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (Output().find(text) != std::string::npos) {
      return true;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return false;
}

}  // namespace relay::testing
