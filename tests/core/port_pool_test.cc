#include "core/port_pool.h"

#include <atomic>
#include <set>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace relay {
namespace {

TEST(PortPoolTest, HandsOutEveryPortOnceThenRunsDry) {
  PortPool pool(1000, 1009);
  EXPECT_EQ(pool.size(), 10u);
  EXPECT_EQ(pool.available(), 10u);
  std::set<uint16_t> seen;
  for (int i = 0; i < 10; ++i) {
    std::optional<uint16_t> p = pool.Allocate();
    ASSERT_TRUE(p.has_value());
    EXPECT_GE(*p, 1000);
    EXPECT_LE(*p, 1009);
    EXPECT_TRUE(seen.insert(*p).second) << "port " << *p << " handed out twice";
  }
  EXPECT_FALSE(pool.Allocate().has_value());
  EXPECT_EQ(pool.available(), 0u);
}

TEST(PortPoolTest, ReleasedPortsGoToTheTail) {
  PortPool pool(1, 3);
  const uint16_t a = *pool.Allocate();
  EXPECT_TRUE(pool.Release(a));
  // The two never-used ports come before the one just released.
  EXPECT_NE(*pool.Allocate(), a);
  EXPECT_NE(*pool.Allocate(), a);
  EXPECT_EQ(*pool.Allocate(), a);
}

TEST(PortPoolTest, RefusesDoubleAndForeignReleases) {
  PortPool pool(100, 101);
  const uint16_t a = *pool.Allocate();
  EXPECT_TRUE(pool.Release(a));
  EXPECT_FALSE(pool.Release(a));   // already free
  EXPECT_FALSE(pool.Release(99));  // outside the range
  EXPECT_FALSE(pool.Release(102));
  EXPECT_EQ(pool.available(), 2u);
}

TEST(PortPoolTest, AllocateUsableSkipsPortsThatCannotBeUsedAndKeepsThem) {
  PortPool pool(10, 14);
  std::optional<uint16_t> p = pool.AllocateUsable([](uint16_t port) { return port == 13; }, 10);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(*p, 13);
  EXPECT_EQ(pool.available(), 4u);  // the refused ones went back
  EXPECT_FALSE(pool.AllocateUsable([](uint16_t) { return false; }, 10).has_value());
  EXPECT_EQ(pool.available(), 4u);
}

TEST(PortPoolTest, ConcurrentAllocateAndReleaseNeverHandsAPortOutTwice) {
  constexpr uint16_t kLo = 20000;
  constexpr uint16_t kHi = 20063;  // fewer ports than threads * held, so it runs dry often
  PortPool pool(kLo, kHi);
  std::vector<std::atomic<int>> owners(kHi - kLo + 1);
  for (auto& o : owners) {
    o.store(0);
  }
  std::atomic<bool> failed{false};
  std::atomic<long> allocations{0};
  auto worker = [&] {
    std::vector<uint16_t> held;
    for (int round = 0; round < 20000; ++round) {
      if (held.size() < 24) {
        if (std::optional<uint16_t> p = pool.Allocate()) {
          if (owners[*p - kLo].fetch_add(1) != 0) {
            failed = true;
          }
          held.push_back(*p);
          allocations.fetch_add(1, std::memory_order_relaxed);
        }
      }
      if (!held.empty() && (round % 3 == 0 || held.size() >= 24)) {
        const uint16_t p = held.back();
        held.pop_back();
        owners[p - kLo].fetch_sub(1);
        if (!pool.Release(p)) {
          failed = true;
        }
      }
    }
    for (uint16_t p : held) {
      owners[p - kLo].fetch_sub(1);
      pool.Release(p);
    }
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < 6; ++i) {  // more threads than cores: preemption mid-operation
    threads.emplace_back(worker);
  }
  for (auto& t : threads) {
    t.join();
  }
  EXPECT_FALSE(failed.load());
  EXPECT_GT(allocations.load(), 20000);
  EXPECT_EQ(pool.available(), pool.size());
  std::set<uint16_t> all;
  while (std::optional<uint16_t> p = pool.Allocate()) {
    EXPECT_TRUE(all.insert(*p).second);
  }
  EXPECT_EQ(all.size(), pool.size());
}

}  // namespace
}  // namespace relay
