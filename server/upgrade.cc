#include "server/upgrade.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/log.h"
#include "net/fd_passing.h"

namespace relay {
namespace {

// The largest state accepted: ~200 bytes per lease or connection, for millions.
constexpr size_t kMaxStateBytes = size_t{1} << 30;
constexpr size_t kMaxFds = size_t{1} << 24;

absl::Status Errno(const std::string& what, int error) {
  return absl::Status(absl::ErrnoToStatusCode(error), absl::StrCat(what, ": ", ErrnoText(error)));
}

absl::StatusOr<sockaddr_un> UnixAddress(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("upgrade socket path '", path,
                                                   "' is empty or longer than ",
                                                   sizeof(addr.sun_path) - 1, " bytes"));
  }
  memcpy(addr.sun_path, path.data(), path.size());
  return addr;
}

absl::StatusOr<net::UniqueFd> ConnectUnix(const std::string& path) {
  absl::StatusOr<sockaddr_un> addr = UnixAddress(path);
  if (!addr.ok()) {
    return addr.status();
  }
  net::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) {
    return Errno("socket(AF_UNIX)", errno);
  }
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof(*addr)) != 0) {
    return Errno(absl::StrCat("connect to the upgrade socket ", path), errno);
  }
  return fd;
}

}  // namespace

absl::StatusOr<std::unique_ptr<UpgradeSocket>> UpgradeSocket::Create(const std::string& path) {
  absl::StatusOr<sockaddr_un> addr = UnixAddress(path);
  if (!addr.ok()) {
    return addr.status();
  }
  if (ConnectUnix(path).ok()) {
    return absl::AlreadyExistsError(absl::StrCat(
        "--upgrade_socket=", path, ": a running process listens there (another relay-server?)"));
  }
  unlink(path.c_str());  // a leftover of a relay that crashed
  net::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) {
    return Errno("socket(AF_UNIX)", errno);
  }
  // Only this user may connect: whoever takes over gets every connection and the key.
  const mode_t old_mask = umask(0177);
  const int bound = ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof(*addr));
  const int bind_errno = errno;
  umask(old_mask);
  if (bound != 0) {
    return Errno(absl::StrCat("--upgrade_socket=", path, ": bind"), bind_errno);
  }
  if (::listen(fd.get(), 64) != 0) {
    return Errno(absl::StrCat("--upgrade_socket=", path, ": listen"), errno);
  }
  return std::unique_ptr<UpgradeSocket>(new UpgradeSocket(std::move(fd), path));
}

std::unique_ptr<UpgradeSocket> UpgradeSocket::Adopt(net::UniqueFd listener, std::string path) {
  fcntl(listener.get(), F_SETFL, fcntl(listener.get(), F_GETFL) | O_NONBLOCK);
  return std::unique_ptr<UpgradeSocket>(new UpgradeSocket(std::move(listener), std::move(path)));
}

UpgradeSocket::~UpgradeSocket() {
  if (listener_.valid()) {
    unlink(path_.c_str());
  }
}

net::UniqueFd UpgradeSocket::Accept() {
  for (int i = 0; i < 64; ++i) {
    net::UniqueFd fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!fd) {
      break;
    }
    callers_.push_back(Caller{std::move(fd), absl::Now() + kHelloTimeout});
  }
  while (!callers_.empty()) {
    std::vector<pollfd> fds;
    absl::Time first = absl::InfiniteFuture();
    for (const Caller& c : callers_) {
      fds.push_back(pollfd{c.fd.get(), POLLIN, 0});
      first = std::min(first, c.deadline);
    }
    const int64_t wait_ms = std::max<int64_t>(0, absl::ToInt64Milliseconds(first - absl::Now()));
    if (poll(fds.data(), fds.size(), static_cast<int>(wait_ms)) > 0) {
      for (size_t i = 0; i < fds.size(); ++i) {
        if (fds[i].revents != 0) {
          net::UniqueFd fd = std::move(callers_[i].fd);
          callers_.erase(callers_.begin() + static_cast<ptrdiff_t>(i));
          return fd;
        }
      }
    }
    const absl::Time now = absl::Now();
    const size_t before = callers_.size();
    callers_.erase(std::remove_if(callers_.begin(), callers_.end(),
                                  [now](const Caller& c) { return c.deadline <= now; }),
                   callers_.end());
    if (callers_.size() != before) {
      RELAY_LOG_LIMITED(WARNING) << "--upgrade_socket: closed " << before - callers_.size()
                                 << " caller(s) that sent nothing in "
                                 << absl::FormatDuration(kHelloTimeout);
    }
  }
  return net::UniqueFd();
}

absl::StatusOr<pid_t> HandOver(RelayServer& server, const UpgradeSocket& upgrade_socket,
                               net::UniqueFd conn, absl::Duration freeze_timeout) {
  // The accepted socket inherits nothing from the non-blocking listener on Linux, but be
  // explicit: every exchange below is blocking with its own deadline.
  fcntl(conn.get(), F_SETFL, fcntl(conn.get(), F_GETFL) & ~O_NONBLOCK);
  const int64_t uid = net::PeerUid(conn.get());
  if (uid != static_cast<int64_t>(getuid()) && uid != 0) {
    return absl::PermissionDeniedError(absl::StrCat("a process of uid ", uid,
                                                    " asked to take over; only uid ", getuid(),
                                                    " (this relay's) or root may"));
  }
  ucred cred{};
  socklen_t cred_len = sizeof(cred);
  getsockopt(conn.get(), SOL_SOCKET, SO_PEERCRED, &cred, &cred_len);
  char hello[sizeof(kHelloMagic)];
  absl::Status status =
      net::ReceiveAll(conn.get(), hello, sizeof(hello), absl::Now() + kHelloTimeout);
  if (!status.ok() || memcmp(hello, kHelloMagic, sizeof(hello)) != 0) {
    return absl::InvalidArgumentError("the caller is not a relay-server taking over");
  }
  const absl::Time frozen_at = absl::Now();
  std::vector<int> fds;
  absl::StatusOr<handover::State> state = server.FreezeForHandover(freeze_timeout, &fds);
  if (!state.ok()) {
    net::SendAll(conn.get(), "E", 1).IgnoreError();
    return state.status();
  }
  state->set_version(kHandoverVersion);
  state->set_sender_version(RELAY_VERSION);
  state->set_frozen_at_unix_us(absl::ToUnixMicros(frozen_at));
  state->set_upgrade_listener_fd(static_cast<uint32_t>(fds.size()));
  fds.push_back(upgrade_socket.fd());
  std::string blob;
  if (!state->SerializeToString(&blob)) {
    status = absl::InternalError("cannot serialize the state");
  } else {
    status = net::SendParcel(conn.get(), blob, fds);
  }
  if (status.ok()) {
    RELAY_LOG_ALWAYS(INFO) << "live upgrade: state sent (" << blob.size() << " bytes, "
                           << fds.size() << " fds) "
                           << absl::FormatDuration(absl::Now() - frozen_at)
                           << " after the freeze began";
  }
  char answer = 0;
  if (status.ok()) {
    status = net::ReceiveAll(conn.get(), &answer, 1, absl::Now() + kReadyTimeout);
  }
  if (status.ok() && answer != 'K') {
    std::string reason(512, '\0');
    const ssize_t n = recv(conn.get(), reason.data(), reason.size(), MSG_DONTWAIT);
    reason.resize(n > 0 ? static_cast<size_t>(n) : 0);
    status = absl::AbortedError(absl::StrCat("the new process refused the state: ", reason));
  }
  if (status.ok()) {
    // Committed: from here the new process runs, this one must go.
    status = net::SendAll(conn.get(), "G", 1);
    if (status.ok()) {
      return cred.pid;
    }
    // The new process died between its 'K' and our 'G': it never started, so this one
    // runs on.
  }
  conn.Reset();  // a new process still waiting for 'G' sees the close and exits
  absl::Status thawed = server.ThawAfterHandover();
  return absl::Status(status.code(),
                      absl::StrCat(status.message(), "; the relay runs on unchanged",
                                   thawed.ok() ? "" : " (but see the lease store error)"));
}

absl::StatusOr<Takeover> ReceiveTakeover(const std::string& path) {
  absl::StatusOr<net::UniqueFd> conn = ConnectUnix(path);
  if (!conn.ok()) {
    return absl::Status(conn.status().code(),
                        absl::StrCat(conn.status().message(),
                                     " (is a relay-server running with --upgrade_socket there?)"));
  }
  absl::Status status = net::SendAll(conn->get(), kHelloMagic, sizeof(kHelloMagic));
  if (!status.ok()) {
    return status;
  }
  // The old relay first comes to rest (up to its --upgrade_timeout), then sends.
  absl::StatusOr<net::Parcel> parcel =
      net::ReceiveParcel(conn->get(), kMaxStateBytes, kMaxFds, absl::Now() + absl::Minutes(5));
  if (!parcel.ok()) {
    return absl::Status(
        parcel.status().code(),
        absl::StrCat("receiving the running relay's state: ", parcel.status().message(),
                     " (its log says why; it runs on unchanged)"));
  }
  Takeover t;
  t.conn = std::move(*conn);
  if (!t.handed.state.ParseFromString(parcel->blob)) {
    return absl::DataLossError("the running relay's state does not parse");
  }
  if (t.handed.state.version() != kHandoverVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat("the running relay (", t.handed.state.sender_version(),
                     ") hands over in format ", t.handed.state.version(), "; this one reads ",
                     kHandoverVersion, ": upgrade by restart instead (docs/DEPLOY.md)"));
  }
  t.handed.fds = std::move(parcel->fds);
  const uint32_t upgrade_fd = t.handed.state.upgrade_listener_fd();
  if (upgrade_fd >= t.handed.fds.size()) {
    return absl::DataLossError("the running relay's state names a missing fd");
  }
  t.upgrade_listener = std::move(t.handed.fds[upgrade_fd]);
  t.frozen_at = absl::FromUnixMicros(t.handed.state.frozen_at_unix_us());
  t.old_version = t.handed.state.sender_version();
  return t;
}

absl::Status ConfirmTakeover(int conn) {
  absl::Status status = net::SendAll(conn, "K", 1);
  char go = 0;
  if (status.ok()) {
    status = net::ReceiveAll(conn, &go, 1, absl::Now() + absl::Seconds(30));
  }
  if (status.ok() && go != 'G') {
    status = absl::AbortedError("the running relay did not let go");
  }
  return status;
}

void RefuseTakeover(int conn, const std::string& reason) {
  const std::string message = "E" + reason.substr(0, 500);
  net::SendAll(conn, message.data(), message.size()).IgnoreError();
}

absl::StatusOr<pid_t> SpawnSuccessor(const std::vector<std::string>& argv,
                                     const std::string& upgrade_path) {
  // The binary now at this program's path (a package upgrade replaced it), not the
  // running image.
  char exe[4096];
  const ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n <= 0) {
    return Errno("readlink(/proc/self/exe)", errno);
  }
  std::string path(exe, static_cast<size_t>(n));
  if (absl::EndsWith(path, " (deleted)")) {
    path.resize(path.size() - 10);
  }
  std::vector<std::string> args;
  args.push_back(path);
  for (size_t i = 1; i < argv.size(); ++i) {
    if (!absl::StartsWith(argv[i], "--take_over=") && !absl::StartsWith(argv[i], "-take_over=")) {
      args.push_back(argv[i]);
    }
  }
  args.push_back("--take_over=" + upgrade_path);
  std::vector<char*> cargs;
  for (std::string& a : args) {
    cargs.push_back(a.data());
  }
  cargs.push_back(nullptr);
  const pid_t pid = fork();
  if (pid < 0) {
    return Errno("fork", errno);
  }
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);  // the parent blocks its signals for sigwait
    signal(SIGPIPE, SIG_DFL);
    execv(cargs[0], cargs.data());
    _exit(127);
  }
  return pid;
}

}  // namespace relay
