// Fuzz target: a main connection's input stream, split into frames the way
// MainConnection::ParseFrames does (core/frame_scan.h), delivered in arbitrary pieces.
// Property: however the bytes arrive, the frames found, their payloads, and where and why
// the stream is refused are exactly those of the whole stream read at once; the buffered
// input never holds more than one partial frame (max_payload + header).
#include <string>
#include <vector>

#include "core/frame_scan.h"
#include "fuzz/fuzz_input.h"

namespace {

using relay::ControlFrameScan;

struct Event {
  ControlFrameScan::Kind kind;
  size_t offset;  // where in the stream the frame (or refused header) starts
  size_t size;    // kFrame: header + payload
  bool operator==(const Event& o) const {
    return kind == o.kind && offset == o.offset && size == o.size;
  }
};

// Scans from `*offset` in `buffered` (stream position `base` + index) until a frame is
// incomplete or the stream is refused. Returns false once refused.
bool Drain(absl::string_view buffered, size_t* offset, size_t base, uint32_t max_payload,
           absl::string_view stream, std::vector<Event>* events) {
  for (;;) {
    const ControlFrameScan s =
        relay::ScanControlFrame(buffered.substr(*offset), relay::kDefaultNetworkId, max_payload);
    if (s.kind == ControlFrameScan::Kind::kNeedMore) {
      FUZZ_CHECK(buffered.size() - *offset < relay::kFrameHeaderSize + uint64_t{max_payload});
      return true;
    }
    events->push_back(Event{s.kind, base + *offset, s.consumed});
    if (s.kind != ControlFrameScan::Kind::kFrame) {
      return false;
    }
    // The payload is the stream's own bytes at that place.
    FUZZ_CHECK(s.payload ==
               stream.substr(base + *offset + relay::kFrameHeaderSize, s.header.length));
    *offset += s.consumed;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  relay::fuzz::FuzzInput in(data, size);
  const uint32_t max_payload = static_cast<uint32_t>(in.Range(1, 70000));
  std::vector<size_t> pieces;
  for (int i = 0; i < 16; ++i) {
    pieces.push_back(static_cast<size_t>(in.Range(1, 4096)));
  }
  const absl::string_view stream = in.Rest();

  std::vector<Event> whole;
  size_t offset = 0;
  Drain(stream, &offset, 0, max_payload, stream, &whole);

  // The same stream in pieces, with the buffer compacted as MainConnection does.
  std::vector<Event> split;
  std::string buffer;
  size_t buffer_base = 0;  // stream position of buffer[0]
  size_t off = 0;
  size_t pos = 0;
  for (size_t i = 0; pos < stream.size(); ++i) {
    const size_t n = std::min(pieces[i % pieces.size()], stream.size() - pos);
    buffer.append(stream.data() + pos, n);
    pos += n;
    if (!Drain(buffer, &off, buffer_base, max_payload, stream, &split)) {
      break;
    }
    buffer.erase(0, off);
    buffer_base += off;
    off = 0;
  }
  FUZZ_CHECK(split == whole);
  return 0;
}
