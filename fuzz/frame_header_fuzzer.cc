// Fuzz target: the frame header codec (core/frame_header.h) and the main connection's
// control-frame splitter (core/frame_scan.h ScanControlFrame) on arbitrary bytes.
// Properties: decode/encode round-trips byte for byte; the checks agree with the fields;
// a scanned frame lies inside the input and is exactly header + length.
#include <cstring>

#include "core/frame_header.h"
#include "core/frame_scan.h"
#include "fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace relay;
  fuzz::FuzzInput in(data, size);
  const uint32_t max_payload = static_cast<uint32_t>(in.Range(1, 1u << 20));
  const absl::string_view bytes = in.Rest();
  if (bytes.size() >= kFrameHeaderSize) {
    const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
    const FrameHeader h = DecodeFrameHeader(p);
    uint8_t again[kFrameHeaderSize];
    EncodeFrameHeader(h, again);
    FUZZ_CHECK(memcmp(again, p, kFrameHeaderSize) == 0);
    FUZZ_CHECK(h.frame_size() == kFrameHeaderSize + uint64_t{h.length});
    FUZZ_CHECK(h.compressed() == ((p[4]) == 1));
    FUZZ_CHECK(h.algorithm() == p[5]);
    const FrameError e = CheckFrameHeader(h, kDefaultNetworkId, max_payload);
    FUZZ_CHECK(!FrameErrorName(e).empty());
    FUZZ_CHECK((e == FrameError::kOk) ==
               (h.network_id == kDefaultNetworkId && h.length > 0 && h.length <= max_payload));
  }
  const ControlFrameScan scan = ScanControlFrame(bytes, kDefaultNetworkId, max_payload);
  switch (scan.kind) {
    case ControlFrameScan::Kind::kFrame:
      FUZZ_CHECK(scan.error == FrameError::kOk);
      FUZZ_CHECK(scan.consumed == kFrameHeaderSize + scan.header.length);
      FUZZ_CHECK(scan.consumed <= bytes.size());
      FUZZ_CHECK(scan.payload.data() == bytes.data() + kFrameHeaderSize);
      FUZZ_CHECK(scan.payload.size() == scan.header.length && scan.header.length <= max_payload);
      break;
    case ControlFrameScan::Kind::kNeedMore:
      FUZZ_CHECK(bytes.size() < kFrameHeaderSize ||
                 (scan.error == FrameError::kOk && bytes.size() < scan.header.frame_size()));
      break;
    case ControlFrameScan::Kind::kTooLarge:
      FUZZ_CHECK(scan.header.length > max_payload);
      break;
    case ControlFrameScan::Kind::kBadHeader:
      FUZZ_CHECK(scan.error == FrameError::kBadNetworkId || scan.error == FrameError::kZeroLength);
      break;
  }
  return 0;
}
