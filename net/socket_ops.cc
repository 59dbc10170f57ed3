#include "net/socket_ops.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <cstddef>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/log.h"

namespace relay::net {
namespace {

absl::Status Errno(const char* what, int err) {
  return absl::Status(absl::ErrnoToStatusCode(err), absl::StrCat(what, ": ", ErrnoText(err)));
}

IoResult FromSyscall(ssize_t n) {
  IoResult r;
  if (n > 0) {
    r.bytes = static_cast<size_t>(n);
  } else if (n == 0) {
    r.status = IoStatus::kEof;
  } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
    r.status = IoStatus::kAgain;
  } else {
    r.status = IoStatus::kError;
    r.error = errno;
  }
  return r;
}

// Non-blocking calls rarely see EINTR, but a signal can still interrupt one: retry it
// rather than report an error that would close the connection.
template <typename Call>
IoResult RetryEintr(Call&& call) {
  ssize_t n;
  do {
    n = call();
  } while (n < 0 && errno == EINTR);
  return FromSyscall(n);
}

// A non-blocking, close-on-exec TCP socket of `family` (AF_INET, AF_INET6).
absl::StatusOr<UniqueFd> NewTcpSocket(int family) {
  UniqueFd fd(::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) {
    return Errno("socket", errno);
  }
  if (family == AF_INET6) {
    int one = 1;
    setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  }
  return fd;
}

bool IsV4Mapped(const in6_addr& a) { return IN6_IS_ADDR_V4MAPPED(&a); }

void SetNoDelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

}  // namespace

absl::StatusOr<SocketAddress> MakeAddress(const std::string& host, uint16_t port) {
  SocketAddress addr;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&addr.storage);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    addr.len = sizeof(sockaddr_in);
    return addr;
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&addr.storage);
  if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    addr.len = sizeof(sockaddr_in6);
    return addr;
  }
  return absl::InvalidArgumentError(absl::StrCat("'", host, "' is not an IPv4 or IPv6 address"));
}

std::string FormatAddress(const sockaddr* addr) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (addr->sa_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(addr);
    inet_ntop(AF_INET, &v4->sin_addr, buf, sizeof(buf));
    return absl::StrCat(buf, ":", ntohs(v4->sin_port));
  }
  if (addr->sa_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(addr);
    if (IsV4Mapped(v6->sin6_addr)) {
      inet_ntop(AF_INET, &v6->sin6_addr.s6_addr[12], buf, sizeof(buf));
      return absl::StrCat(buf, ":", ntohs(v6->sin6_port));
    }
    inet_ntop(AF_INET6, &v6->sin6_addr, buf, sizeof(buf));
    return absl::StrCat("[", buf, "]:", ntohs(v6->sin6_port));
  }
  return "?";
}

absl::StatusOr<UniqueFd> Listen(const std::string& host, uint16_t port, bool reuse_port,
                                int backlog) {
  absl::StatusOr<SocketAddress> addr = MakeAddress(host, port);
  if (!addr.ok()) {
    return addr.status();
  }
  absl::StatusOr<UniqueFd> socket = NewTcpSocket(addr->family());
  if (!socket.ok()) {
    return socket.status();
  }
  UniqueFd fd = std::move(*socket);
  int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (reuse_port && setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
    return Errno("setsockopt(SO_REUSEPORT)", errno);
  }
  if (::bind(fd.get(), addr->get(), addr->len) != 0) {
    return Errno("bind", errno);
  }
  if (::listen(fd.get(), backlog) != 0) {
    return Errno("listen", errno);
  }
  return fd;
}

bool PortHasListener(const std::string& host, uint16_t port) {
  absl::StatusOr<SocketAddress> addr = MakeAddress(host, port);
  if (!addr.ok()) {
    return false;
  }
  absl::StatusOr<UniqueFd> socket = NewTcpSocket(addr->family());
  if (!socket.ok()) {
    return false;
  }
  int one = 1;
  setsockopt(socket->get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  return ::bind(socket->get(), addr->get(), addr->len) != 0 && errno == EADDRINUSE;
}

absl::StatusOr<UniqueFd> TakeExclusiveName(const std::string& name) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) {
    return Errno("socket(AF_UNIX)", errno);
  }
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string path = "relay:" + name;  // abstract: sun_path[0] stays '\0'
  if (path.size() + 1 > sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError("exclusive name too long");
  }
  memcpy(addr.sun_path + 1, path.data(), path.size());
  const socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + path.size());
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), len) != 0) {
    if (errno == EADDRINUSE) {
      return absl::AlreadyExistsError(absl::StrCat("'", name, "' is held by another process"));
    }
    return Errno("bind(abstract socket)", errno);
  }
  return fd;
}

uint16_t LocalPort(int fd) {
  sockaddr_storage addr;
  socklen_t len = sizeof(addr);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return 0;
  }
  return addr.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port)
                                    : ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
}

std::string PeerName(int fd) {
  sockaddr_storage addr;
  socklen_t len = sizeof(addr);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return "?";
  }
  return FormatAddress(reinterpret_cast<const sockaddr*>(&addr));
}

uint64_t PeerSourceKey(int fd) {
  sockaddr_storage addr;
  socklen_t len = sizeof(addr);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return 0;
  }
  if (addr.ss_family == AF_INET) {
    return ntohl(reinterpret_cast<const sockaddr_in*>(&addr)->sin_addr.s_addr);
  }
  if (addr.ss_family != AF_INET6) {
    return 0;
  }
  const in6_addr& a = reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_addr;
  if (IsV4Mapped(a)) {
    uint32_t v4;
    memcpy(&v4, &a.s6_addr[12], 4);
    return ntohl(v4);
  }
  uint64_t prefix = 0;
  for (int i = 0; i < 8; ++i) {
    prefix = (prefix << 8) | a.s6_addr[i];
  }
  return prefix | (uint64_t{1} << 63);
}

int Accept(int listen_fd) {
  const int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd >= 0) {
    SetNoDelay(fd);
  }
  return fd;
}

absl::StatusOr<UniqueFd> ConnectBlocking(const std::string& host, uint16_t port) {
  absl::StatusOr<UniqueFd> fd = ConnectWithTimeout(host, port, absl::Seconds(30));
  if (!fd.ok()) {
    return absl::Status(fd.status().code(),
                        absl::StrCat("connect ", host, ":", port, ": ", fd.status().message()));
  }
  const int flags = fcntl(fd->get(), F_GETFL);
  if (flags < 0 || fcntl(fd->get(), F_SETFL, flags & ~O_NONBLOCK) != 0) {
    return Errno("fcntl(~O_NONBLOCK)", errno);
  }
  return fd;
}

bool WaitForFd(int fd, short events, absl::Time deadline) {
  for (;;) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      return false;
    }
    pollfd p{fd, events, 0};
    const int r = poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
    if (r > 0) {
      return true;
    }
    if (r < 0 && errno != EINTR) {
      return false;
    }
  }
}

absl::Status WriteAllUntil(int fd, absl::string_view data, absl::Time deadline) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
      return absl::UnavailableError(ErrnoText(errno));
    }
    if (!WaitForFd(fd, POLLOUT, deadline)) {
      return absl::DeadlineExceededError("write timed out");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<UniqueFd> StartConnect(const std::string& host, uint16_t port) {
  absl::StatusOr<SocketAddress> addr = MakeAddress(host, port);
  if (!addr.ok()) {
    return addr.status();
  }
  absl::StatusOr<UniqueFd> socket = NewTcpSocket(addr->family());
  if (!socket.ok()) {
    return socket.status();
  }
  UniqueFd fd = std::move(*socket);
  SetNoDelay(fd.get());
  if (::connect(fd.get(), addr->get(), addr->len) != 0 && errno != EINPROGRESS) {
    return absl::UnavailableError(ErrnoText(errno));
  }
  return fd;
}

absl::StatusOr<std::vector<std::string>> ResolveHost(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int rc = getaddrinfo(host.c_str(), nullptr, &hints, &found);
  if (rc != 0) {
    return absl::UnavailableError(absl::StrCat("cannot resolve '", host, "': ", gai_strerror(rc)));
  }
  std::vector<std::string> out;
  for (const addrinfo* a = found; a != nullptr; a = a->ai_next) {
    char buf[INET6_ADDRSTRLEN] = {};
    const void* ip =
        a->ai_family == AF_INET
            ? static_cast<const void*>(&reinterpret_cast<const sockaddr_in*>(a->ai_addr)->sin_addr)
            : static_cast<const void*>(
                  &reinterpret_cast<const sockaddr_in6*>(a->ai_addr)->sin6_addr);
    if ((a->ai_family == AF_INET || a->ai_family == AF_INET6) &&
        inet_ntop(a->ai_family, ip, buf, sizeof(buf)) != nullptr &&
        std::find(out.begin(), out.end(), buf) == out.end()) {
      out.emplace_back(buf);
    }
  }
  freeaddrinfo(found);
  if (out.empty()) {
    return absl::UnavailableError(absl::StrCat("'", host, "' has no IPv4 or IPv6 address"));
  }
  return out;
}

absl::StatusOr<UniqueFd> ConnectWithTimeout(const std::string& host, uint16_t port,
                                            absl::Duration timeout) {
  absl::StatusOr<UniqueFd> started = StartConnect(host, port);
  if (!started.ok()) {
    return started.status();
  }
  UniqueFd fd = std::move(*started);
  if (!WaitForFd(fd.get(), POLLOUT, absl::Now() + timeout)) {
    return absl::DeadlineExceededError("connect timed out");
  }
  int err = 0;
  socklen_t len = sizeof(err);
  getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) {
    return absl::UnavailableError(ErrnoText(err));
  }
  return fd;
}

absl::Status MakePipe(size_t want_bytes, UniqueFd* read_end, UniqueFd* write_end,
                      size_t* capacity) {
  int fds[2];
  if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) {
    return Errno("pipe2", errno);
  }
  read_end->Reset(fds[0]);
  write_end->Reset(fds[1]);
  int got = fcntl(fds[1], F_GETPIPE_SZ);
  // Ask for the size; when the kernel refuses (pipe-max-size, pipe-user-pages-soft),
  // halve until it accepts or we are back at the default.
  for (size_t want = want_bytes; want > static_cast<size_t>(got); want /= 2) {
    const int r = fcntl(fds[1], F_SETPIPE_SZ, static_cast<int>(want));
    if (r > 0) {
      got = r;
      break;
    }
  }
  *capacity = got > 0 ? static_cast<size_t>(got) : 65536;
  return absl::OkStatus();
}

absl::Status SetNonBlocking(int fd) {
  const int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
    return Errno("fcntl(O_NONBLOCK)", errno);
  }
  return absl::OkStatus();
}

void SetAbortiveClose(int fd) {
  linger l{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
}

bool SetReceiveBuffer(int fd, int bytes) {
  return setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes)) == 0;
}

IoResult Splice(int from, int to, size_t len, bool more) {
  return RetryEintr([&] {
    return ::splice(from, nullptr, to, nullptr, len,
                    SPLICE_F_MOVE | SPLICE_F_NONBLOCK | (more ? SPLICE_F_MORE : 0));
  });
}

IoResult Recv(int fd, void* buf, size_t len, bool peek) {
  return RetryEintr([&] { return ::recv(fd, buf, len, MSG_DONTWAIT | (peek ? MSG_PEEK : 0)); });
}

IoResult Send(int fd, const void* buf, size_t len, bool more) {
  const int flags = MSG_DONTWAIT | MSG_NOSIGNAL | (more ? MSG_MORE : 0);
  return RetryEintr([&] { return ::send(fd, buf, len, flags); });
}

IoResult RecvV(int fd, iovec* iov, size_t count) {
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = count;
  return RetryEintr([&] { return ::recvmsg(fd, &msg, MSG_DONTWAIT); });
}

IoResult SendV(int fd, const iovec* iov, size_t count) {
  msghdr msg{};
  msg.msg_iov = const_cast<iovec*>(iov);
  msg.msg_iovlen = count;
  return RetryEintr([&] { return ::sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL); });
}

IoResult Read(int fd, void* buf, size_t len) {
  return RetryEintr([&] { return ::read(fd, buf, len); });
}

IoResult Write(int fd, const void* buf, size_t len) {
  return RetryEintr([&] { return ::write(fd, buf, len); });
}

int BytesReadable(int fd) {
  int pending = 0;
  return ioctl(fd, FIONREAD, &pending) == 0 ? pending : -1;
}

}  // namespace relay::net
