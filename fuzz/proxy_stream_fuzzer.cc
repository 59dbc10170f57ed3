// Fuzz target: a proxy connection's readers (ProxyConnection::ReadAtBoundary and
// ReadFrameBody), as their pure parts PlanStage and CountMovedFrames, driven by a model of
// the socket: bytes arrive in arbitrary pieces, a splice moves any part of what was
// planned, the staging cap and per-turn budget vary, and the node drains staged frames
// whenever the reader waits for room.
// The copy reader (ReadCopied), which reads first and finds the frames after with
// ScanPiece, is driven over the same stream in pieces of any size.
// Properties (against a reference parse of the whole stream):
//   - the frames the reader completes are exactly the stream's frames, in order;
//   - no byte after a refused header is ever staged, and the refusal is reported at the
//     offset where the reference finds the bad header;
//   - nothing is staged beyond the cap except one frame alone (a larger frame);
//   - the reader always makes progress (never waits for room with nothing staged).
#include <algorithm>
#include <vector>

#include "core/frame_scan.h"
#include "fuzz/fuzz_input.h"

namespace {

using namespace relay;

constexpr size_t kWindow = 64 * 1024;        // net::Reactor::kScratchBytes
constexpr uint32_t kLargeFrame = 32 * 1024;  // as in proxy_connection.cc

struct Reference {
  std::vector<uint64_t> frame_ends;  // stream offsets just past each whole frame
  bool refused = false;
  uint64_t refused_at = 0;
};

Reference Parse(const uint8_t* s, size_t n, uint32_t max_payload) {
  Reference ref;
  uint64_t pos = 0;
  while (pos + kFrameHeaderSize <= n) {
    const FrameHeader h = DecodeFrameHeader(s + pos);
    if (CheckFrameHeader(h, kDefaultNetworkId, max_payload) != FrameError::kOk) {
      ref.refused = true;
      ref.refused_at = pos;
      break;
    }
    if (pos + h.frame_size() > n) {
      break;
    }
    pos += h.frame_size();
    ref.frame_ends.push_back(pos);
  }
  return ref;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::FuzzInput in(data, size);
  const uint32_t max_payload = static_cast<uint32_t>(in.Range(1, 200000));
  const uint64_t cap = in.Range(kFrameHeaderSize + 1, 300000);
  const uint64_t budget = in.Range(1, 1u << 20);
  uint64_t choices[32];
  for (uint64_t& c : choices) {
    c = in.Range(0, 1u << 20);
  }
  const absl::string_view stream_view = in.Rest();
  const auto* stream = reinterpret_cast<const uint8_t*>(stream_view.data());
  const size_t n = stream_view.size();
  const Reference ref = Parse(stream, n, max_payload);

  size_t arrived = std::min<size_t>(n, 1 + choices[0] % 4096);  // bytes in the socket so far
  uint64_t pos = 0;         // bytes the reader took from the socket
  uint64_t staged = 0;      // of those, not yet drained to the node
  uint64_t frame_left = 0;  // of the current frame, still in the socket
  uint64_t frame_end = 0;   // stream offset where the current partial frame ends
  uint32_t last_length = 0;
  size_t done = 0;  // reference frames completed
  bool refused = false;
  for (int step = 0, c = 1; step < 20000; ++step, c = (c + 1) % 32) {
    const uint64_t available = arrived - pos;
    if (available == 0) {
      if (arrived == n) {
        break;  // the sender is done
      }
      arrived = std::min<size_t>(n, arrived + 1 + choices[c] % 65536);
      continue;
    }
    if (frame_left > 0) {  // ReadFrameBody
      const uint64_t moved = std::min({frame_left, available, budget, 1 + choices[c] % 200000});
      frame_left -= moved;
      pos += moved;
      staged += moved;
      if (frame_left == 0) {
        FUZZ_CHECK(done < ref.frame_ends.size() && ref.frame_ends[done] == pos);
        FUZZ_CHECK(pos == frame_end);
        ++done;
      }
      continue;
    }
    // ReadAtBoundary.
    const uint64_t room = staged < cap ? cap - staged : 0;
    if (room <= kFrameHeaderSize && staged > 0) {
      staged = 0;  // the reader waits for the node; the node drains
      continue;
    }
    const size_t want =
        last_length >= kLargeFrame
            ? kFrameHeaderSize
            : static_cast<size_t>(std::clamp<uint64_t>(room, kFrameHeaderSize, kWindow));
    const size_t peeked = static_cast<size_t>(std::min<uint64_t>(want, available));
    const StagePlan plan = PlanStage(stream + pos, peeked, kDefaultNetworkId, max_payload, staged,
                                     cap, budget, last_length);
    last_length = plan.last_length;
    if (plan.error != FrameError::kOk) {
      FUZZ_CHECK(ref.refused && ref.refused_at == pos);
      FUZZ_CHECK(done == ref.frame_ends.size());
      refused = true;
      break;
    }
    if (plan.needs_room) {
      FUZZ_CHECK(staged > 0);  // else the reader could never move again
      staged = 0;
      continue;
    }
    if (plan.bytes == 0) {
      FUZZ_CHECK(peeked < kFrameHeaderSize);
      if (arrived == n) {
        break;  // the sender left inside a header
      }
      arrived = std::min<size_t>(n, arrived + 1 + choices[c] % 64);
      continue;
    }
    FUZZ_CHECK(plan.bytes <= peeked || plan.beyond_window);
    FUZZ_CHECK(staged == 0 || staged + plan.bytes <= cap);
    // The splice moves any part of the plan the socket has (a short move is normal).
    const uint64_t moved = std::min({plan.bytes, available, 1 + choices[c] % (plan.bytes + 1)});
    const MovedFrames m = CountMovedFrames(plan, stream + pos, peeked, moved);
    const MovedFrames walked = CountMovedFrames(stream + pos, peeked, moved);
    FUZZ_CHECK(m.frames == walked.frames && m.complete_bytes == walked.complete_bytes &&
               m.partial_size == walked.partial_size && m.partial_left == walked.partial_left);
    for (uint64_t f = 0; f < m.frames; ++f) {
      FUZZ_CHECK(done < ref.frame_ends.size());
      ++done;
    }
    FUZZ_CHECK(m.complete_bytes == (m.frames == 0 ? 0 : ref.frame_ends[done - 1] - pos));
    FUZZ_CHECK(m.complete_bytes + (m.partial_size - m.partial_left) == moved);
    if (m.partial_size > 0) {
      frame_left = m.partial_left;
      frame_end = pos + m.complete_bytes + m.partial_size;
      FUZZ_CHECK(frame_left > 0);
    }
    pos += moved;
    staged += moved;
  }
  // Every byte taken belongs to a frame the reference knows: never past a bad header.
  if (ref.refused) {
    FUZZ_CHECK(pos <= ref.refused_at);
  }
  FUZZ_CHECK(refused || done <= ref.frame_ends.size());

  // The copy reader (ProxyConnection::ReadCopied): it reads first, in pieces of any size
  // (a header may be cut between two reads), then finds the frames with ScanPiece.
  StreamPosition sp;
  uint64_t at = 0;
  uint64_t complete = 0;
  size_t found = 0;
  bool scan_refused = false;
  for (int c = 7; at < n; c = (c + 1) % 32) {
    const uint64_t piece = std::min<uint64_t>(n - at, 1 + choices[c] % 70000);
    const PieceScan s =
        ScanPiece(stream + at, static_cast<size_t>(piece), &sp, kDefaultNetworkId, max_payload);
    found += s.frames;
    complete += s.complete_bytes;
    FUZZ_CHECK(found <= ref.frame_ends.size());
    FUZZ_CHECK(complete == (found == 0 ? 0 : ref.frame_ends[found - 1]));
    if (s.error != FrameError::kOk) {
      // Refused exactly where the reference refuses, after all the frames before it.
      FUZZ_CHECK(ref.refused && at + s.error_at == ref.refused_at + kFrameHeaderSize);
      scan_refused = true;
      break;
    }
    at += piece;
  }
  FUZZ_CHECK(scan_refused == ref.refused);
  FUZZ_CHECK(found == ref.frame_ends.size());
  // Whatever follows the last whole frame is a frame (or a header) in progress.
  FUZZ_CHECK(scan_refused || sp.in_frame() == (complete < n));
  return 0;
}
