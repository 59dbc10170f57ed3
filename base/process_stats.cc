#include "base/process_stats.h"

#include <dirent.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

namespace relay {

long ProcessRssKib(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      return std::atol(line.c_str() + 6);
    }
  }
  return 0;
}

double ProcessCpuSeconds(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t close_paren = stat.rfind(')');
  if (close_paren == std::string::npos) {
    return 0;
  }
  // Fields after the command: state(3) ... utime(14) stime(15).
  std::vector<std::string> fields;
  size_t pos = close_paren + 2;
  while (pos < stat.size() && fields.size() < 13) {
    const size_t space = stat.find(' ', pos);
    fields.push_back(stat.substr(pos, space - pos));
    pos = space == std::string::npos ? stat.size() : space + 1;
  }
  if (fields.size() < 13) {
    return 0;
  }
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  return (std::stod(fields[11]) + std::stod(fields[12])) / ticks;
}

double HostBusyCpuSeconds() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  // The first line sums every CPU: "cpu user nice system idle iowait irq softirq steal ...".
  uint64_t t[7] = {};
  if (!(in >> cpu) || cpu != "cpu") {
    return 0;
  }
  for (uint64_t& v : t) {
    if (!(in >> v)) {
      return 0;
    }
  }
  const uint64_t busy = t[0] + t[1] + t[2] + t[5] + t[6];
  return static_cast<double>(busy) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

int ProcessOpenFds(pid_t pid) {
  DIR* dir = opendir(absl::StrCat("/proc/", pid, "/fd").c_str());
  if (dir == nullptr) {
    return -1;
  }
  int n = 0;
  while (readdir(dir) != nullptr) {
    ++n;
  }
  closedir(dir);
  // "." and "..", and when counting our own fds the directory's.
  return n - (pid == getpid() ? 3 : 2);
}

}  // namespace relay
