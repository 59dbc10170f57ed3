// Reactor: one edge-triggered epoll loop, run on one thread (one per core), that owns
// everything on that core: the epoll fd, the wakeup eventfd, the timer wheel, the pipe
// pool, the ready list, deferred deletions and the inbound cross-reactor rings.
//
// - Each fd is registered once, edge-triggered, for all the events it will ever want;
//   handlers keep their own can-read / can-write state (no EPOLL_CTL_MOD on the hot path).
// - epoll_data carries (slot, generation): events for a slot that was unregistered earlier
//   in the same batch (a closed and reused fd) are dropped (after HAProxy's fd.c).
// - A handler capped by its per-turn work budget calls MarkReady(); edge-triggered epoll
//   will not report the data already there again, so the reactor calls it back next turn.
// - Objects are never deleted inside their own callbacks: DeferDelete() destroys them at
//   the end of the loop turn (after Envoy's deferred deletion).
// - Cross-reactor work: Post() puts a Task on the SPSC ring for (this reactor -> target)
//   and writes the target's eventfd only if it is not already kicked (after gRPC).
//
// - The loop thread blocks SIGPIPE, so writing into a closed socket (splice has no
//   MSG_NOSIGNAL) returns EPIPE instead of killing the embedding program.
//
// Thread: every method except Post's consumer side, Kick() and Stop() must run on the
// reactor's own thread (checked in debug builds). Owned by the RelayServer; destroyed
// after its thread is joined.
#pragma once

#include <sys/epoll.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "base/clock.h"
#include "net/block_pool.h"
#include "net/pipe_pool.h"
#include "net/spsc_ring.h"
#include "net/timer_wheel.h"
#include "net/unique_fd.h"

namespace relay::net {

// Passed to OnEvents when the reactor calls back a handler from the ready list.
inline constexpr uint32_t kReadyEvent = 1u << 30;

class Reactor;

// Something the reactor calls back. Connections derive from it.
class EventHandler {
 public:
  virtual ~EventHandler();
  // `events`: EPOLLIN / EPOLLOUT / EPOLLRDHUP / EPOLLHUP / EPOLLERR bits, or kReadyEvent.
  virtual void OnEvents(uint32_t events) = 0;

 private:
  friend class Reactor;
  Reactor* ready_owner_ = nullptr;  // non-null while on a ready list
  EventHandler* ready_prev_ = nullptr;
  EventHandler* ready_next_ = nullptr;
};

// Work sent from one reactor to another; Run() executes on the target's thread and the
// task is deleted right after.
class Task {
 public:
  virtual ~Task() = default;
  virtual void Run() = 0;
};

// How long the reactor's turns take (from epoll_wait returning to the next call): the
// longest an event can wait behind the others. A Prometheus-style histogram; one writer
// (the loop thread, relaxed load + store, no locked instruction), any reader.
class LoopHistogram {
 public:
  // Upper bounds of the buckets, in nanoseconds (the last bucket is +Inf).
  static constexpr std::array<int64_t, 12> kBoundsNs = {
      10'000,    25'000,    50'000,    100'000,    250'000,    500'000,
      1'000'000, 2'500'000, 5'000'000, 10'000'000, 50'000'000, 250'000'000};
  void Record(int64_t ns);
  // Cumulative count per bound, then the +Inf count (= total), and the sum.
  struct Snapshot {
    std::array<uint64_t, kBoundsNs.size() + 1> cumulative{};
    uint64_t sum_ns = 0;
  };
  Snapshot Read() const;

 private:
  std::array<std::atomic<uint64_t>, kBoundsNs.size() + 1> buckets_{};
  std::atomic<uint64_t> sum_ns_{0};
};

class Reactor {
 public:
  // `index` is this reactor's number in 0..count-1; `count` sizes the inbound rings.
  static absl::StatusOr<std::unique_ptr<Reactor>> Create(int index, int count, const Clock* clock,
                                                         size_t pipe_bytes);
  ~Reactor();
  Reactor(const Reactor&) = delete;
  Reactor& operator=(const Reactor&) = delete;

  // Runs the loop on the calling thread until Stop(). Calls `on_stop` (if set) on this
  // thread once the loop ends, before Run returns.
  void Run();
  // Asks the loop to end; safe from any thread.
  void Stop();
  // Destroys what DeferDelete() queued. For teardown after Run() returned, on the thread
  // that ran it.
  void RunDeferred();

  // Registers `fd` edge-triggered for `events` (EPOLLET is added). Returns a handle for
  // Unregister. The handler must stay alive until Unregister.
  absl::StatusOr<uint64_t> Register(int fd, uint32_t events, EventHandler* handler);
  // Removes `fd` from epoll and invalidates `handle`, so events already fetched for it in
  // this turn are dropped. Call before closing the fd.
  void Unregister(uint64_t handle, int fd);

  // Calls `handler->OnEvents(kReadyEvent)` next turn. Idempotent until that happens.
  void MarkReady(EventHandler* handler);
  // Destroys `handler` at the end of this loop turn.
  void DeferDelete(std::unique_ptr<EventHandler> handler);

  // Sends `task` to run on `target` (any reactor, this one included). Called on this
  // reactor's thread. Never fails: a full ring spills into a local overflow list that is
  // retried every turn.
  void Post(Reactor* target, std::unique_ptr<Task> task);
  // Runs `task` on this reactor; safe from any thread (used outside the loop threads,
  // e.g. by the main thread or tests). Takes a mutex: not for hot paths.
  void PostExternal(std::unique_ptr<Task> task);

  bool InLoopThread() const { return std::this_thread::get_id() == thread_id_.load(); }
  int index() const { return index_; }
  TimerWheel& timers() { return timers_; }
  PipePool& pipes() { return pipes_; }
  BlockPool& blocks() { return blocks_; }
  const Clock* clock() const { return clock_; }
  // Two 64 KiB scratch buffers for the loop thread: one for peeking at frame headers,
  // one for staging by copy. Valid until the current callback returns.
  uint8_t* scratch() { return scratch_.get(); }
  uint8_t* copy_buffer() { return scratch_.get() + kScratchBytes; }
  static constexpr size_t kScratchBytes = 64 * 1024;
  const LoopHistogram& loop_histogram() const { return loop_histogram_; }
  // Which turn of the loop runs now (counts up from 1): for limits per turn.
  uint64_t turn() const { return turn_; }

 private:
  friend class EventHandler;
  Reactor(int index, int count, const Clock* clock, size_t pipe_bytes);
  void Kick();
  void DrainInbox();
  void RunReadyList();
  void RetryOverflow();
  int ComputeTimeout() const;

  struct Slot {
    EventHandler* handler = nullptr;
    uint32_t generation = 0;
  };

  const int index_;
  const Clock* clock_;
  UniqueFd epoll_fd_;
  UniqueFd wake_fd_;
  std::atomic<bool> kicked_{false};
  std::atomic<bool> stop_{false};
  std::atomic<std::thread::id> thread_id_{};

  std::vector<Slot> slots_;
  std::vector<uint32_t> free_slots_;

  EventHandler* ready_first_ = nullptr;
  EventHandler* ready_last_ = nullptr;
  std::vector<EventHandler*> ready_batch_;
  std::vector<std::unique_ptr<EventHandler>> deferred_;

  // inbox_[i] carries tasks from reactor i to this one.
  std::vector<std::unique_ptr<SpscRing<Task*>>> inbox_;
  std::vector<std::pair<Reactor*, Task*>> overflow_;  // this reactor's tasks that did not fit
  std::mutex external_mu_;
  std::vector<std::unique_ptr<Task>> external_;

  TimerWheel timers_;
  LoopHistogram loop_histogram_;
  uint64_t turn_ = 0;
  PipePool pipes_;
  BlockPool blocks_;
  std::unique_ptr<uint8_t[]> scratch_;
};

}  // namespace relay::net
