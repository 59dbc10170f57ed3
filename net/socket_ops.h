// socket_ops: every raw socket and pipe syscall of the relay, in one place.
//
// Set-up calls return absl::Status / StatusOr<UniqueFd> with errno in the message.
// Hot-path calls (Splice, Recv, Send) return an IoResult: bytes moved, or an errno,
// with no allocation; EAGAIN is reported as kAgain, never as an error.
// Stateless; safe from any thread.
#pragma once

#include <netinet/in.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "net/unique_fd.h"

namespace relay::net {

enum class IoStatus : uint8_t { kOk, kAgain, kEof, kError };

struct IoResult {
  IoStatus status = IoStatus::kOk;
  size_t bytes = 0;  // valid when status == kOk (then > 0)
  int error = 0;     // errno, when status == kError
};

// An IPv4 or IPv6 socket address.
struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t len = 0;
  int family() const { return storage.ss_family; }
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
};
// Builds a socket address from a literal IPv4 ("10.0.0.5") or IPv6 ("::1", no brackets)
// address; InvalidArgument otherwise.
absl::StatusOr<SocketAddress> MakeAddress(const std::string& host, uint16_t port);
// "a.b.c.d:port" or "[v6]:port" (an IPv4-mapped IPv6 address as IPv4).
std::string FormatAddress(const sockaddr* addr);

// A non-blocking, close-on-exec TCP listener bound to host:port (IPv4 or IPv6; an IPv6
// listener is IPV6_V6ONLY, so "[::]" and "0.0.0.0" are separate listeners) with
// SO_REUSEADDR (and SO_REUSEPORT when `reuse_port`), listening with `backlog`.
absl::StatusOr<UniqueFd> Listen(const std::string& host, uint16_t port, bool reuse_port,
                                int backlog = 4096);
// True if some socket already listens on host:port (a probe bind without SO_REUSEPORT
// fails with EADDRINUSE): SO_REUSEPORT would otherwise let a second process share it.
bool PortHasListener(const std::string& host, uint16_t port);
// Takes a process-wide exclusive name: an abstract Unix socket "relay:<name>", released by
// the kernel when the fd closes or the process dies (no stale lock files). Returns
// AlreadyExists if another process holds it.
absl::StatusOr<UniqueFd> TakeExclusiveName(const std::string& name);
// The local port a socket is bound to, or 0 on error.
uint16_t LocalPort(int fd);
// "a.b.c.d:port" or "[v6]:port" of the socket's peer, or "?" if unknown. For log lines
// (not hot paths).
std::string PeerName(int fd);
// Who the peer is, for per-source limits (core/source_limits.h): an IPv4 address in host
// order (also when it arrives IPv4-mapped on an IPv6 socket); for IPv6, its /64 prefix
// with the top bit set (global unicast has it clear, so it never meets an IPv4 key): one
// host usually owns a whole /64. 0 if unknown.
uint64_t PeerSourceKey(int fd);

// Accepts one connection as a non-blocking, close-on-exec fd with TCP_NODELAY set.
// Returns the fd, or -1 with errno set (EAGAIN when none is pending).
int Accept(int listen_fd);

// A blocking TCP connection to host:port (for tools and tests), with TCP_NODELAY.
absl::StatusOr<UniqueFd> ConnectBlocking(const std::string& host, uint16_t port);
// A non-blocking TCP connection to host:port with TCP_NODELAY, established within
// `timeout` (DeadlineExceeded otherwise; Unavailable with the reason on refusal).
// Writes all of `data` to a non-blocking socket, waiting for room up to `deadline` (tools,
// control messages and admin replies; not the forwarding path).
absl::Status WriteAllUntil(int fd, absl::string_view data, absl::Time deadline);
// Starts a non-blocking TCP connection to host:port (TCP_NODELAY): the fd, connected or
// connecting (then POLLOUT says it finished; SO_ERROR says how).
absl::StatusOr<UniqueFd> StartConnect(const std::string& host, uint16_t port);
// Every address of `host` (getaddrinfo: A and AAAA records, /etc/hosts), as IP strings in
// the resolver's order without repeats. Blocks: for the node library's own thread.
absl::StatusOr<std::vector<std::string>> ResolveHost(const std::string& host);
absl::StatusOr<UniqueFd> ConnectWithTimeout(const std::string& host, uint16_t port,
                                            absl::Duration timeout);
// Waits until `fd` reports `events` (poll(2) bits) or `deadline` passes. Returns false
// on timeout. For tools and tests; reactors never block.
bool WaitForFd(int fd, short events, absl::Time deadline);

// A non-blocking, close-on-exec pipe; its capacity raised towards `want_bytes` with
// F_SETPIPE_SZ (falling back to what the kernel allows). *capacity gets the result.
absl::Status MakePipe(size_t want_bytes, UniqueFd* read_end, UniqueFd* write_end, size_t* capacity);

absl::Status SetNonBlocking(int fd);
// Makes close() reset the connection at once (SO_LINGER 0), dropping unsent data.
void SetAbortiveClose(int fd);
// Caps the socket's receive buffer (SO_RCVBUF; the kernel doubles the value and stops
// autotuning it). Returns false on error.
bool SetReceiveBuffer(int fd, int bytes);

// splice(2) with SPLICE_F_MOVE | SPLICE_F_NONBLOCK between fds (one must be a pipe);
// `more` adds SPLICE_F_MORE (more data follows at once: let TCP build full segments).
IoResult Splice(int from, int to, size_t len, bool more = false);
// recv(2) with MSG_DONTWAIT; `peek` adds MSG_PEEK.
IoResult Recv(int fd, void* buf, size_t len, bool peek = false);
// send(2) with MSG_DONTWAIT | MSG_NOSIGNAL; `more` adds MSG_MORE (more follows at once).
IoResult Send(int fd, const void* buf, size_t len, bool more = false);
// recvmsg(2) / sendmsg(2) over `count` buffers (one syscall for several), with the flags
// of Recv and Send.
IoResult RecvV(int fd, iovec* iov, size_t count);
IoResult SendV(int fd, const iovec* iov, size_t count);
// Bytes waiting to be read on a socket (FIONREAD); -1 if it cannot be asked.
int BytesReadable(int fd);
// read(2) / write(2), non-blocking fds assumed.
IoResult Read(int fd, void* buf, size_t len);
IoResult Write(int fd, const void* buf, size_t len);

}  // namespace relay::net
