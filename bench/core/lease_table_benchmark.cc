#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "base/clock.h"
#include "core/lease_table.h"

namespace relay {
namespace {

void BM_LeaseLookup(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  PortPool pool(1, 60000);
  LeaseTable table(&pool, absl::Minutes(180));
  std::vector<std::string> ids;
  for (int i = 0; i < n; ++i) {
    std::string id(32, '\0');
    for (int b = 0; b < 4; ++b) {
      id[b] = static_cast<char>((i * 2654435761u) >> (8 * b));
    }
    id[4] = static_cast<char>(i & 0xff);
    id[5] = static_cast<char>(i >> 8);
    ids.push_back(id);
    table.CreateLive(id, *pool.Allocate());
  }
  FakeClock clock;
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(table.Find(ids[i], clock.Now()));
    i = (i + 1) % ids.size();
  }
}
BENCHMARK(BM_LeaseLookup)->Arg(100)->Arg(10000)->Arg(50000);

}  // namespace
}  // namespace relay

BENCHMARK_MAIN();
