// What a proxy connection's reader costs per peeked window of small frames (core/frame_scan.h):
// PlanStage walks the headers of a 64 KiB window; the frames it moved are then counted
// from the plan (BM_PlanAndCount, what the relay does) or by a second walk
// (BM_PlanAndWalk, what it did before). Arg: the frames' payload bytes.
#include <string>

#include "benchmark/benchmark.h"
#include "core/frame_scan.h"

namespace relay {
namespace {

constexpr size_t kWindow = 64 * 1024;

// A peeked window: frames of `payload` bytes, the last one cut by the window's end.
std::string Window(uint32_t payload) {
  std::string w;
  while (w.size() < kWindow) {
    std::string f(kFrameHeaderSize + payload, 'p');
    EncodeFrameHeader(FrameHeader{kDefaultNetworkId, 0, payload},
                      reinterpret_cast<uint8_t*>(f.data()));
    w += f;
  }
  w.resize(kWindow);
  return w;
}

template <bool kWalkAgain>
void PlanAndCount(benchmark::State& state) {
  const std::string w = Window(static_cast<uint32_t>(state.range(0)));
  const uint8_t* p = reinterpret_cast<const uint8_t*>(w.data());
  uint64_t frames = 0;
  for (auto _ : state) {
    const StagePlan plan =
        PlanStage(p, w.size(), kDefaultNetworkId, 16u << 20, 0, 1u << 20, 1u << 20, 0);
    const MovedFrames m = kWalkAgain ? CountMovedFrames(p, w.size(), plan.bytes)
                                     : CountMovedFrames(plan, p, w.size(), plan.bytes);
    benchmark::DoNotOptimize(m);
    frames += m.frames;
  }
  state.SetItemsProcessed(static_cast<int64_t>(frames));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * w.size()));
}

void BM_PlanAndCount(benchmark::State& state) { PlanAndCount<false>(state); }
void BM_PlanAndWalk(benchmark::State& state) { PlanAndCount<true>(state); }
BENCHMARK(BM_PlanAndCount)->Arg(64)->Arg(1024);
BENCHMARK(BM_PlanAndWalk)->Arg(64)->Arg(1024);

}  // namespace
}  // namespace relay

BENCHMARK_MAIN();
