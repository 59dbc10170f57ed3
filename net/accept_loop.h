// AcceptSome: the bounded accept loop shared by every listener of the relay (the main
// listener of each shard, the proxy listener of each session).
//
// Accepts up to `budget` connections from a non-blocking listener and hands each one to
// `on_accept(UniqueFd)`. Stateless; runs on the caller's (reactor) thread.
#pragma once

#include <errno.h>

#include "net/socket_ops.h"
#include "net/unique_fd.h"

namespace relay::net {

enum class AcceptOutcome {
  kDrained,      // no connection left pending (EAGAIN)
  kBudgetSpent,  // more may be pending: call again next turn (edge-triggered epoll)
  kFailed,       // accept failed (EMFILE, ENFILE, ENOBUFS...): *error holds errno
};

template <typename OnAccept>
AcceptOutcome AcceptSome(int listen_fd, int budget, OnAccept&& on_accept, int* error) {
  for (int i = 0; i < budget; ++i) {
    const int fd = Accept(listen_fd);
    if (fd >= 0) {
      on_accept(UniqueFd(fd));
      continue;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return AcceptOutcome::kDrained;
    }
    if (errno != EINTR && errno != ECONNABORTED) {
      *error = errno;
      return AcceptOutcome::kFailed;
    }
  }
  return AcceptOutcome::kBudgetSpent;
}

}  // namespace relay::net
