#include "benchmark/benchmark.h"
#include "core/frame_header.h"

namespace relay {
namespace {

void BM_EncodeFrameHeader(benchmark::State& state) {
  uint8_t buf[kFrameHeaderSize];
  FrameHeader h{kDefaultNetworkId, 0, 1024};
  for (auto _ : state) {
    EncodeFrameHeader(h, buf);
    benchmark::DoNotOptimize(buf);
    ++h.length;
  }
}
BENCHMARK(BM_EncodeFrameHeader);

void BM_DecodeAndCheckFrameHeader(benchmark::State& state) {
  uint8_t buf[kFrameHeaderSize];
  EncodeFrameHeader(FrameHeader{kDefaultNetworkId, 0, 1024}, buf);
  for (auto _ : state) {
    benchmark::DoNotOptimize(buf);
    const FrameHeader h = DecodeFrameHeader(buf);
    benchmark::DoNotOptimize(CheckFrameHeader(h, kDefaultNetworkId, 16u << 20));
  }
}
BENCHMARK(BM_DecodeAndCheckFrameHeader);

}  // namespace
}  // namespace relay

BENCHMARK_MAIN();
