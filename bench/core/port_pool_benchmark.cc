#include "benchmark/benchmark.h"
#include "core/port_pool.h"

namespace relay {
namespace {

void BM_AllocateRelease(benchmark::State& state) {
  PortPool pool(20000, 29999);
  for (auto _ : state) {
    std::optional<uint16_t> p = pool.Allocate();
    benchmark::DoNotOptimize(p);
    pool.Release(*p);
  }
}
BENCHMARK(BM_AllocateRelease);

// Every thread allocates and releases from one shared pool: the contended case.
void BM_AllocateReleaseContended(benchmark::State& state) {
  static PortPool* shared_pool = new PortPool(20000, 29999);  // shared by all runs
  for (auto _ : state) {
    std::optional<uint16_t> p = shared_pool->Allocate();
    benchmark::DoNotOptimize(p);
    if (p) {
      shared_pool->Release(*p);
    }
  }
}
BENCHMARK(BM_AllocateReleaseContended)->Threads(1)->Threads(2)->Threads(4)->UseRealTime();

}  // namespace
}  // namespace relay

BENCHMARK_MAIN();
