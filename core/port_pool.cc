#include "core/port_pool.h"

#include <sched.h>

#include "base/log.h"

namespace relay {
namespace {

// Spins briefly, then yields the CPU (the thread we wait for may be preempted).
void Backoff(uint32_t* spins) {
  if (++*spins < 64) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  } else {
    sched_yield();
  }
}

}  // namespace

PortPool::PortPool(uint16_t lo, uint16_t hi, const std::vector<uint16_t>& held) : lo_(lo), hi_(hi) {
  RELAY_CHECK(lo > 0 && lo <= hi) << "bad port range " << lo << "-" << hi;
  // Twice the ports, so a consumer paused between its CAS and its store (which makes
  // Vyukov's queue look full for a moment) is far behind the producers' lap.
  size_t capacity = 2;
  while (capacity < 2 * size()) {
    capacity <<= 1;
  }
  mask_ = capacity - 1;
  cells_ = std::make_unique<Cell[]>(capacity);
  for (size_t i = 0; i < capacity; ++i) {
    cells_[i].sequence.store(i, std::memory_order_relaxed);
  }
  handed_out_ = std::make_unique<std::atomic<uint8_t>[]>(size());
  for (size_t i = 0; i < size(); ++i) {
    handed_out_[i].store(0, std::memory_order_relaxed);
  }
  for (uint16_t port : held) {
    RELAY_CHECK(port >= lo && port <= hi) << "held port " << port << " outside the range";
    handed_out_[port - lo].store(1, std::memory_order_relaxed);
  }
  size_t free = 0;
  for (size_t i = 0; i < size(); ++i) {
    if (handed_out_[i].load(std::memory_order_relaxed) == 0) {
      RELAY_CHECK(Push(static_cast<uint16_t>(lo + i)));
      ++free;
    }
  }
  available_.store(free, std::memory_order_relaxed);
}

std::optional<uint16_t> PortPool::Allocate() {
  std::optional<uint16_t> port = Pop();
  if (port) {
    const uint8_t was = handed_out_[*port - lo_].exchange(1, std::memory_order_acq_rel);
    RELAY_CHECK(was == 0) << "port " << *port << " was in the pool while handed out";
    available_.fetch_sub(1, std::memory_order_relaxed);
  }
  return port;
}

bool PortPool::Release(uint16_t port) {
  if (port < lo_ || port > hi_) {
    return false;
  }
  uint8_t expected = 1;
  if (!handed_out_[port - lo_].compare_exchange_strong(expected, 0, std::memory_order_acq_rel)) {
    return false;
  }
  available_.fetch_add(1, std::memory_order_relaxed);
  // The ring holds every port of the range, so it always has room for a released one.
  RELAY_CHECK(Push(port));
  return true;
}

bool PortPool::Push(uint16_t port) {
  uint32_t spins = 0;
  uint64_t pos = enqueue_pos_.load(std::memory_order_relaxed);
  for (;;) {
    Cell& cell = cells_[pos & mask_];
    const uint64_t seq = cell.sequence.load(std::memory_order_acquire);
    const int64_t diff = static_cast<int64_t>(seq) - static_cast<int64_t>(pos);
    if (diff == 0) {
      if (enqueue_pos_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
        cell.port = port;
        cell.sequence.store(pos + 1, std::memory_order_release);
        return true;
      }
    } else if (diff < 0) {
      // The ring holds at most size() ports and has room for twice that, so "full" can
      // only be a consumer paused (maybe preempted) between its CAS and its store a lap
      // behind: wait for it to finish.
      Backoff(&spins);
      pos = enqueue_pos_.load(std::memory_order_relaxed);
    } else {
      pos = enqueue_pos_.load(std::memory_order_relaxed);
    }
  }
}

std::optional<uint16_t> PortPool::Pop() {
  uint32_t spins = 0;
  uint64_t pos = dequeue_pos_.load(std::memory_order_relaxed);
  for (;;) {
    Cell& cell = cells_[pos & mask_];
    const uint64_t seq = cell.sequence.load(std::memory_order_acquire);
    const int64_t diff = static_cast<int64_t>(seq) - static_cast<int64_t>(pos + 1);
    if (diff == 0) {
      if (dequeue_pos_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
        const uint16_t port = cell.port;
        cell.sequence.store(pos + mask_ + 1, std::memory_order_release);
        return port;
      }
    } else if (diff < 0) {
      if (enqueue_pos_.load(std::memory_order_acquire) == pos) {
        return std::nullopt;  // really empty
      }
      // A producer claimed this cell and has not published it yet: a free port is on its
      // way, so wait rather than report a false "exhausted".
      Backoff(&spins);
      pos = dequeue_pos_.load(std::memory_order_relaxed);
    } else {
      pos = dequeue_pos_.load(std::memory_order_relaxed);
    }
  }
}

}  // namespace relay
