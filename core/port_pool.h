// PortPool: the lock-free pool of free proxy ports (a bounded MPMC ring, after HAProxy's
// port_range and Dmitry Vyukov's bounded queue).
//
// A port is in the ring exactly when it is free: neither live nor remembered by a lease.
// Allocate() takes the oldest free port, Release() puts one back at the tail, so a port
// that could not be bound is retried only after every other free port. Both take no
// mutex (one CAS per call) and are safe from any thread; a call waits only for another
// thread caught between the CAS and the store of its own call (it spins, then yields).
// So "empty" is never reported while a released port is on its way into the ring. The pool also
// tracks which ports are handed out, so a double release is caught instead of corrupting the ring.
// Owned by the RelayServer; must outlive every shard that allocates from it.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

namespace relay {

class PortPool {
 public:
  // Holds every port in [lo, hi] except `held` (ports leases restored from disk own
  // already: they start handed out, and come back by Release). Requires lo <= hi, lo > 0.
  PortPool(uint16_t lo, uint16_t hi, const std::vector<uint16_t>& held = {});
  PortPool(const PortPool&) = delete;
  PortPool& operator=(const PortPool&) = delete;

  // Takes a free port, or returns nullopt when every port is handed out.
  std::optional<uint16_t> Allocate();

  // Returns a port taken by Allocate(). Returns false (and changes nothing) if the port is
  // outside the range or not currently handed out: a caller bug, reported not hidden.
  bool Release(uint16_t port);

  // Takes a free port for which `usable(port)` returns true, trying at most `max_tries`
  // ports; the ones refused go back to the tail of the ring (retried later). Returns
  // nullopt if the pool is empty or no tried port was usable.
  template <typename Usable>
  std::optional<uint16_t> AllocateUsable(Usable&& usable, size_t max_tries);

  uint16_t lo() const { return lo_; }
  uint16_t hi() const { return hi_; }
  size_t size() const { return static_cast<size_t>(hi_ - lo_) + 1; }
  // Free ports at this moment (exact when no other thread is in the pool).
  size_t available() const { return available_.load(std::memory_order_relaxed); }

 private:
  struct Cell {
    std::atomic<uint64_t> sequence;
    uint16_t port;
  };
  bool Push(uint16_t port);
  std::optional<uint16_t> Pop();

  const uint16_t lo_;
  const uint16_t hi_;
  size_t mask_;
  std::unique_ptr<Cell[]> cells_;
  std::unique_ptr<std::atomic<uint8_t>[]> handed_out_;  // indexed by port - lo_
  alignas(64) std::atomic<uint64_t> enqueue_pos_{0};
  alignas(64) std::atomic<uint64_t> dequeue_pos_{0};
  alignas(64) std::atomic<size_t> available_{0};
};

template <typename Usable>
std::optional<uint16_t> PortPool::AllocateUsable(Usable&& usable, size_t max_tries) {
  std::vector<uint16_t> refused;
  std::optional<uint16_t> found;
  for (size_t i = 0; i < max_tries; ++i) {
    std::optional<uint16_t> port = Allocate();
    if (!port) {
      break;
    }
    if (usable(*port)) {
      found = port;
      break;
    }
    refused.push_back(*port);
  }
  for (uint16_t port : refused) {
    Release(port);
  }
  return found;
}

}  // namespace relay
