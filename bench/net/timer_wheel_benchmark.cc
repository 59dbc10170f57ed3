#include <memory>
#include <vector>

#include "benchmark/benchmark.h"
#include "base/clock.h"
#include "net/timer_wheel.h"

namespace relay::net {
namespace {

void BM_ArmAndCancel(benchmark::State& state) {
  FakeClock clock;
  TimerWheel wheel(&clock);
  int fired = 0;
  Timer t([&] { ++fired; });
  for (auto _ : state) {
    wheel.Arm(&t, clock.Now() + absl::Seconds(180));
    wheel.Cancel(&t);
  }
  benchmark::DoNotOptimize(fired);
}
BENCHMARK(BM_ArmAndCancel);

// The keepalive pattern: each keepalive pushes the deadline later (lazy re-arm).
void BM_Extend(benchmark::State& state) {
  FakeClock clock;
  TimerWheel wheel(&clock);
  int fired = 0;
  Timer t([&] { ++fired; });
  wheel.Arm(&t, clock.Now() + absl::Seconds(180));
  for (auto _ : state) {
    clock.Advance(absl::Microseconds(1));
    wheel.Extend(&t, clock.Now() + absl::Seconds(180));
  }
  benchmark::DoNotOptimize(fired);
}
BENCHMARK(BM_Extend);

// Insert N timers, then advance until all expired: cost per timer.
void BM_InsertAndExpire(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  FakeClock clock;
  TimerWheel wheel(&clock);
  int fired = 0;
  std::vector<std::unique_ptr<Timer>> timers;
  for (int i = 0; i < n; ++i) {
    timers.push_back(std::make_unique<Timer>([&] { ++fired; }));
  }
  for (auto _ : state) {
    for (int i = 0; i < n; ++i) {
      wheel.Arm(timers[i].get(), clock.Now() + absl::Milliseconds(1 + i % 5000));
    }
    for (int step = 0; step < 110; ++step) {
      clock.Advance(absl::Milliseconds(50));
      wheel.Advance();
    }
  }
  state.SetItemsProcessed(state.iterations() * n);
  benchmark::DoNotOptimize(fired);
}
BENCHMARK(BM_InsertAndExpire)->Arg(1000)->Arg(100000);

}  // namespace
}  // namespace relay::net

BENCHMARK_MAIN();
