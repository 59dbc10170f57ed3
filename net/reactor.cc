#include "net/reactor.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/log.h"

namespace relay::net {
namespace {

constexpr uint32_t kWakeSlot = 0;
constexpr int kMaxEvents = 256;
constexpr size_t kRingCapacity = 4096;
// Empty pipes kept per reactor. Pipe capacity counts against the per-user pipe budget
// (fs.pipe-user-pages-soft) whether or not it holds data, so the cache stays small.
constexpr size_t kIdlePipes = 16;
// Copy-staging blocks kept for reuse (6 MiB): enough for the connections active at once.
constexpr size_t kIdleBlocks = 64;

uint64_t MakeHandle(uint32_t slot, uint32_t generation) {
  return (static_cast<uint64_t>(slot) << 32) | generation;
}

}  // namespace

EventHandler::~EventHandler() {
  if (ready_owner_ != nullptr) {
    // Unlink from the ready list so it never calls a destroyed handler.
    if (ready_prev_ != nullptr) {
      ready_prev_->ready_next_ = ready_next_;
    } else {
      ready_owner_->ready_first_ = ready_next_;
    }
    if (ready_next_ != nullptr) {
      ready_next_->ready_prev_ = ready_prev_;
    } else {
      ready_owner_->ready_last_ = ready_prev_;
    }
  }
}

Reactor::Reactor(int index, int count, const Clock* clock, size_t pipe_bytes)
    : index_(index),
      clock_(clock),
      timers_(clock),
      pipes_(pipe_bytes, kIdlePipes),
      blocks_(kIdleBlocks, /*max_in_use=*/SIZE_MAX),
      scratch_(std::make_unique<uint8_t[]>(2 * kScratchBytes)) {
  for (int i = 0; i < count; ++i) {
    inbox_.push_back(std::make_unique<SpscRing<Task*>>(kRingCapacity));
  }
  slots_.push_back(Slot{});  // slot 0: the wakeup eventfd
}

absl::StatusOr<std::unique_ptr<Reactor>> Reactor::Create(int index, int count, const Clock* clock,
                                                         size_t pipe_bytes) {
  std::unique_ptr<Reactor> r(new Reactor(index, count, clock, pipe_bytes));
  r->epoll_fd_.Reset(epoll_create1(EPOLL_CLOEXEC));
  if (!r->epoll_fd_) {
    return absl::InternalError(absl::StrCat("epoll_create1: ", ErrnoText(errno)));
  }
  r->wake_fd_.Reset(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!r->wake_fd_) {
    return absl::InternalError(absl::StrCat("eventfd: ", ErrnoText(errno)));
  }
  epoll_event ev;
  ev.events = EPOLLIN | EPOLLET;
  ev.data.u64 = MakeHandle(kWakeSlot, 0);
  if (epoll_ctl(r->epoll_fd_.get(), EPOLL_CTL_ADD, r->wake_fd_.get(), &ev) != 0) {
    return absl::InternalError(absl::StrCat("epoll_ctl(eventfd): ", ErrnoText(errno)));
  }
  return r;
}

Reactor::~Reactor() {
  RunDeferred();
  for (auto& ring : inbox_) {
    Task* task = nullptr;
    while (ring->TryPop(&task)) {
      delete task;
    }
  }
  for (auto& [target, task] : overflow_) {
    delete task;
  }
}

absl::StatusOr<uint64_t> Reactor::Register(int fd, uint32_t events, EventHandler* handler) {
  RELAY_DCHECK(thread_id_.load() == std::thread::id() || InLoopThread());
  uint32_t slot;
  if (!free_slots_.empty()) {
    slot = free_slots_.back();
    free_slots_.pop_back();
  } else {
    slot = static_cast<uint32_t>(slots_.size());
    slots_.push_back(Slot{});
  }
  slots_[slot].handler = handler;
  const uint64_t handle = MakeHandle(slot, slots_[slot].generation);
  epoll_event ev;
  ev.events = events | EPOLLET;
  ev.data.u64 = handle;
  if (epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
    const int err = errno;
    slots_[slot].handler = nullptr;
    ++slots_[slot].generation;
    free_slots_.push_back(slot);
    return absl::InternalError(absl::StrCat("epoll_ctl(ADD): ", ErrnoText(err)));
  }
  return handle;
}

void Reactor::Unregister(uint64_t handle, int fd) {
  RELAY_DCHECK(InLoopThread() || thread_id_.load() == std::thread::id());
  const uint32_t slot = static_cast<uint32_t>(handle >> 32);
  RELAY_DCHECK(slot < slots_.size() && slots_[slot].generation == static_cast<uint32_t>(handle));
  epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, fd, nullptr);
  slots_[slot].handler = nullptr;
  ++slots_[slot].generation;
  free_slots_.push_back(slot);
}

void Reactor::MarkReady(EventHandler* handler) {
  RELAY_DCHECK(InLoopThread());
  if (handler->ready_owner_ != nullptr) {
    return;
  }
  handler->ready_owner_ = this;
  handler->ready_next_ = nullptr;
  handler->ready_prev_ = ready_last_;
  if (ready_last_ != nullptr) {
    ready_last_->ready_next_ = handler;
  } else {
    ready_first_ = handler;
  }
  ready_last_ = handler;
}

void Reactor::RunDeferred() {
  // A destructor may defer more deletions (a session drops its peers): loop until none.
  while (!deferred_.empty()) {
    std::vector<std::unique_ptr<EventHandler>> batch;
    batch.swap(deferred_);
    batch.clear();
  }
}

void Reactor::DeferDelete(std::unique_ptr<EventHandler> handler) {
  deferred_.push_back(std::move(handler));
}

void Reactor::Post(Reactor* target, std::unique_ptr<Task> task) {
  RELAY_DCHECK(InLoopThread());
  Task* raw = task.release();
  if (!overflow_.empty() || !target->inbox_[index_]->TryPush(raw)) {
    overflow_.emplace_back(target, raw);  // keeps order behind earlier spills
    return;
  }
  target->Kick();
}

void Reactor::PostExternal(std::unique_ptr<Task> task) {
  {
    std::lock_guard<std::mutex> lock(external_mu_);
    external_.push_back(std::move(task));
  }
  Kick();
}

void Reactor::Kick() {
  if (!kicked_.exchange(true)) {
    const uint64_t one = 1;
    ssize_t ignored = ::write(wake_fd_.get(), &one, sizeof(one));
    (void)ignored;
  }
}

void Reactor::Stop() {
  stop_.store(true);
  kicked_.store(false);
  Kick();
}

void Reactor::RetryOverflow() {
  size_t done = 0;
  for (; done < overflow_.size(); ++done) {
    auto [target, task] = overflow_[done];
    if (!target->inbox_[index_]->TryPush(task)) {
      break;
    }
    target->Kick();
  }
  overflow_.erase(overflow_.begin(), overflow_.begin() + static_cast<ptrdiff_t>(done));
}

void Reactor::DrainInbox() {
  for (auto& ring : inbox_) {
    Task* task = nullptr;
    // Bounded: at most one ring's worth per source per turn.
    for (size_t i = 0; i < kRingCapacity && ring->TryPop(&task); ++i) {
      std::unique_ptr<Task> owned(task);
      owned->Run();
    }
  }
  std::vector<std::unique_ptr<Task>> external;
  {
    std::lock_guard<std::mutex> lock(external_mu_);
    external.swap(external_);
  }
  for (auto& task : external) {
    task->Run();
  }
}

void Reactor::RunReadyList() {
  // Take the current list; handlers marked ready while it runs wait for the next turn.
  ready_batch_.clear();
  for (EventHandler* p = ready_first_; p != nullptr;) {
    EventHandler* next = p->ready_next_;
    p->ready_owner_ = nullptr;
    p->ready_next_ = p->ready_prev_ = nullptr;
    ready_batch_.push_back(p);
    p = next;
  }
  ready_first_ = ready_last_ = nullptr;
  // Nothing is destroyed during a turn (deletion is deferred), so the pointers stay valid.
  for (size_t i = 0; i < ready_batch_.size(); ++i) {
    ready_batch_[i]->OnEvents(kReadyEvent);
  }
}

int Reactor::ComputeTimeout() const {
  if (ready_first_ != nullptr || !overflow_.empty()) {
    return 0;
  }
  const int t = timers_.MillisToNextTick();
  return t < 0 ? 1000 : t;
}

namespace {

int64_t MonotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

}  // namespace

void LoopHistogram::Record(int64_t ns) {
  size_t i = 0;
  while (i < kBoundsNs.size() && ns > kBoundsNs[i]) {
    ++i;
  }
  buckets_[i].store(buckets_[i].load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  sum_ns_.store(sum_ns_.load(std::memory_order_relaxed) + static_cast<uint64_t>(ns),
                std::memory_order_relaxed);
}

LoopHistogram::Snapshot LoopHistogram::Read() const {
  Snapshot s;
  uint64_t total = 0;
  for (size_t i = 0; i < buckets_.size(); ++i) {
    total += buckets_[i].load(std::memory_order_relaxed);
    s.cumulative[i] = total;
  }
  s.sum_ns = sum_ns_.load(std::memory_order_relaxed);
  return s;
}

void Reactor::Run() {
  thread_id_.store(std::this_thread::get_id());
  // splice() into a socket the peer closed raises SIGPIPE (it has no MSG_NOSIGNAL), and
  // its default action kills the process: block it on this thread, whatever the
  // embedding program does with its signals. The error comes back as EPIPE.
  sigset_t pipe_signal;
  sigemptyset(&pipe_signal);
  sigaddset(&pipe_signal, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_signal, nullptr);
  epoll_event events[kMaxEvents];
  while (!stop_.load(std::memory_order_relaxed)) {
    const int n = epoll_wait(epoll_fd_.get(), events, kMaxEvents, ComputeTimeout());
    if (n < 0 && errno != EINTR) {
      RELAY_LOG(FATAL) << "epoll_wait: " << ErrnoText(errno);
    }
    const int64_t turn_start = MonotonicNs();
    ++turn_;
    for (int i = 0; i < n; ++i) {
      const uint32_t slot = static_cast<uint32_t>(events[i].data.u64 >> 32);
      const uint32_t generation = static_cast<uint32_t>(events[i].data.u64);
      if (slot == kWakeSlot) {
        uint64_t value;
        ssize_t ignored = ::read(wake_fd_.get(), &value, sizeof(value));
        (void)ignored;
        kicked_.store(false);
        continue;
      }
      const Slot& s = slots_[slot];
      if (s.generation != generation || s.handler == nullptr) {
        continue;  // stale: unregistered earlier in this batch
      }
      s.handler->OnEvents(events[i].events);
    }
    DrainInbox();
    RunReadyList();
    timers_.Advance();
    if (!overflow_.empty()) {
      RetryOverflow();
    }
    RunDeferred();
    loop_histogram_.Record(MonotonicNs() - turn_start);
  }
  DrainInbox();
  RunDeferred();
}

}  // namespace relay::net
