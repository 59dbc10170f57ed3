// Acceptor: a listening socket on a reactor: accepts connections (a bounded number per
// turn) and hands each to a callback. Shared by every listener of the relay (each shard's
// main listener, each session's proxy listener).
//
// Under fd exhaustion it backs off and retries, after HAProxy's listener.c: when accept
// fails for lack of resources (EMFILE, ENFILE, ENOBUFS, ENOMEM), or when the fd it would
// get is inside the reserve (fewer than `fd_reserve` fds left under RLIMIT_NOFILE: it
// looks before accepting, so the connection stays in the backlog; only one that another
// thread's fds pushed into the reserve after the look is closed at once), it stops
// accepting and tries again after `backoff`, so connections waiting in the backlog are
// served as soon as fds free up, and existing connections keep the reserve for their
// pipes. Edge-triggered epoll would otherwise never report that backlog again.
//
// Thread: one reactor; Start(), events and the destructor on its thread. Owned by its user
// (Shard, Session); unregisters itself when destroyed.
#pragma once

#include <cstdint>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "net/reactor.h"
#include "net/timer_wheel.h"
#include "net/unique_fd.h"

namespace relay::net {

class Acceptor final : public EventHandler {
 public:
  struct Options {
    int budget = 64;          // connections accepted per turn
    uint32_t fd_reserve = 0;  // fds kept free for existing connections
    absl::Duration backoff = absl::Milliseconds(100);
  };
  // `on_accept(fd)` gets every accepted connection; `on_refused(errno)` is told each
  // time accepting stops for lack of resources (EMFILE for the reserve), for counters
  // and logs. Neither may destroy this Acceptor.
  Acceptor(Reactor* reactor, UniqueFd listener, const Options& options,
           absl::AnyInvocable<void(UniqueFd)> on_accept, absl::AnyInvocable<void(int)> on_refused);
  ~Acceptor() override;
  Acceptor(const Acceptor&) = delete;
  Acceptor& operator=(const Acceptor&) = delete;

  // Registers the listener with the reactor.
  absl::Status Start();
  void OnEvents(uint32_t events) override;
  // Stops accepting and closes the listener. Idempotent.
  void Close();
  // Live upgrade: stops accepting (connections wait in the backlog) without closing, and
  // starts again. Paused, the listener may be handed to another process.
  void Pause() { paused_ = true; }
  void Resume();
  int fd() const { return listener_.get(); }

 private:
  void AcceptSome();
  // The next accepted fd would be inside the reserve (one fcntl and close: accepting is
  // not the forwarding path).
  bool InsideReserve() const;

  Reactor* reactor_;
  UniqueFd listener_;
  Options options_;
  int fd_ceiling_;  // an accepted fd at or above this is inside the reserve
  absl::AnyInvocable<void(UniqueFd)> on_accept_;
  absl::AnyInvocable<void(int)> on_refused_;
  uint64_t handle_ = 0;
  bool registered_ = false;
  bool paused_ = false;
  Timer retry_;
};

}  // namespace relay::net
