#include "net/acceptor.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include "net/socket_ops.h"

namespace relay::net {
namespace {

int FdCeiling(uint32_t reserve) {
  rlimit limit;
  if (reserve == 0 || getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) {
    return -1;
  }
  const rlim_t ceiling = limit.rlim_cur > reserve ? limit.rlim_cur - reserve : 0;
  return static_cast<int>(std::min<rlim_t>(ceiling, 1 << 30));
}

}  // namespace

Acceptor::Acceptor(Reactor* reactor, UniqueFd listener, const Options& options,
                   absl::AnyInvocable<void(UniqueFd)> on_accept,
                   absl::AnyInvocable<void(int)> on_refused)
    : reactor_(reactor),
      listener_(std::move(listener)),
      options_(options),
      fd_ceiling_(FdCeiling(options.fd_reserve)),
      on_accept_(std::move(on_accept)),
      on_refused_(std::move(on_refused)),
      retry_([this] { AcceptSome(); }) {}

Acceptor::~Acceptor() { Close(); }

absl::Status Acceptor::Start() {
  absl::StatusOr<uint64_t> handle = reactor_->Register(listener_.get(), EPOLLIN, this);
  if (!handle.ok()) {
    return handle.status();
  }
  handle_ = *handle;
  registered_ = true;
  return absl::OkStatus();
}

void Acceptor::Close() {
  if (registered_) {
    reactor_->Unregister(handle_, listener_.get());
    registered_ = false;
  }
  reactor_->timers().Cancel(&retry_);
  listener_.Reset();
}

void Acceptor::Resume() {
  paused_ = false;
  if (listener_.valid() && !retry_.armed()) {
    reactor_->MarkReady(this);  // edge-triggered: connections may already wait
  }
}

void Acceptor::OnEvents(uint32_t /*events*/) {
  if (!retry_.armed()) {
    AcceptSome();  // while backing off, the retry timer accepts
  }
}

bool Acceptor::InsideReserve() const {
  if (fd_ceiling_ < 0) {
    return false;
  }
  // The lowest free fd is what accept would return (fds are allocated lowest first).
  const int probe = fcntl(listener_.get(), F_DUPFD_CLOEXEC, 0);
  if (probe < 0) {
    return true;  // none at all
  }
  ::close(probe);
  return probe >= fd_ceiling_;
}

void Acceptor::AcceptSome() {
  if (paused_) {
    return;  // Resume() accepts what waits
  }
  for (int i = 0; i < options_.budget && listener_.valid(); ++i) {
    if (InsideReserve()) {
      // The connection waits in the backlog (accepted and closed, it would be lost).
      on_refused_(EMFILE);
      reactor_->timers().Arm(&retry_, reactor_->clock()->Now() + options_.backoff);
      return;
    }
    const int fd = Accept(listener_.get());
    if (fd >= 0) {
      UniqueFd conn(fd);
      if (fd_ceiling_ >= 0 && fd >= fd_ceiling_) {
        // Another thread took the last fds since the check: this one cannot wait.
        conn.Reset();
        on_refused_(EMFILE);
        reactor_->timers().Arm(&retry_, reactor_->clock()->Now() + options_.backoff);
        return;
      }
      on_accept_(std::move(conn));
      continue;
    }
    const int err = errno;
    if (err == EAGAIN || err == EWOULDBLOCK) {
      return;
    }
    if (err == EINTR || err == ECONNABORTED || err == EPROTO || err == EPERM) {
      continue;  // that one connection failed; the listener is fine
    }
    // EMFILE, ENFILE, ENOBUFS, ENOMEM: the connection stays in the backlog. Retry
    // after the backoff (edge-triggered epoll will not report it again).
    on_refused_(err);
    reactor_->timers().Arm(&retry_, reactor_->clock()->Now() + options_.backoff);
    return;
  }
  if (listener_.valid()) {
    reactor_->MarkReady(this);  // budget spent: more may be pending
  }
}

}  // namespace relay::net
