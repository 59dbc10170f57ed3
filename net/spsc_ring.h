// SpscRing: a bounded single-producer single-consumer ring (after Seastar's per-core-pair
// queues). One ring carries work from one reactor to another; each side touches only its
// own index, so push and pop are a load and a store, no CAS and no lock.
//
// Thread: exactly one producer thread calls TryPush, exactly one consumer thread calls
// TryPop. T must be trivially copyable (the reactors pass raw Task pointers whose
// ownership travels with them).
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <type_traits>

namespace relay::net {

template <typename T>
class SpscRing {
  static_assert(std::is_trivially_copyable_v<T>);

 public:
  // `capacity` is rounded up to a power of two.
  explicit SpscRing(size_t capacity) {
    size_t c = 1;
    while (c < capacity) {
      c <<= 1;
    }
    mask_ = c - 1;
    slots_ = std::make_unique<T[]>(c);
  }

  // Returns false when full.
  bool TryPush(T value) {
    const size_t tail = tail_.load(std::memory_order_relaxed);
    if (tail - head_cache_ > mask_) {
      head_cache_ = head_.load(std::memory_order_acquire);
      if (tail - head_cache_ > mask_) {
        return false;
      }
    }
    slots_[tail & mask_] = value;
    tail_.store(tail + 1, std::memory_order_release);
    return true;
  }

  // Returns false when empty.
  bool TryPop(T* value) {
    const size_t head = head_.load(std::memory_order_relaxed);
    if (head == tail_cache_) {
      tail_cache_ = tail_.load(std::memory_order_acquire);
      if (head == tail_cache_) {
        return false;
      }
    }
    *value = slots_[head & mask_];
    head_.store(head + 1, std::memory_order_release);
    return true;
  }

 private:
  size_t mask_;
  std::unique_ptr<T[]> slots_;
  alignas(64) std::atomic<size_t> head_{0};  // consumer's
  size_t tail_cache_ = 0;                    // consumer's view of tail_
  alignas(64) std::atomic<size_t> tail_{0};  // producer's
  size_t head_cache_ = 0;                    // producer's view of head_
};

}  // namespace relay::net
