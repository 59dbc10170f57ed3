// frame_scan: how the two stream readers split a byte stream into frames, as pure
// functions (no sockets, no allocation), so the splitting can be unit-tested and fuzzed
// apart from the I/O around it (fuzz/).
//
//   ScanControlFrame   MainConnection: the next whole control frame in its buffered input.
//   PlanStage          ProxyConnection at a frame boundary: how many bytes of a peeked
//                      window to move into the staging pipes (whole frames, plus the start
//                      of one whose header is in the window).
//   CountMovedFrames   ProxyConnection after a move: which frames of the window are now
//                      whole, and how much of a partial one is still in the socket (from
//                      the plan when the move took its whole frames, else by a walk).
//   ScanPiece          ProxyConnection staging by copy (reads first, looks after): where
//                      the frames are in bytes already read, given in pieces of any size
//                      (a header may be cut between two reads).
//
// Safe from any thread.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"
#include "core/frame_header.h"

namespace relay {

// The front of a main connection's buffered input.
struct ControlFrameScan {
  enum class Kind : uint8_t {
    kNeedMore,   // not a whole frame yet (a header in pieces, or its payload still coming)
    kFrame,      // a whole frame: header, payload, consumed
    kBadHeader,  // a header that breaks a rule other than the size (error): close
    kTooLarge,   // a header announcing more than max_payload (header.length): refuse
  };
  Kind kind = Kind::kNeedMore;
  FrameError error = FrameError::kOk;
  FrameHeader header;
  absl::string_view payload;  // kFrame: the payload bytes, inside `buffered`
  size_t consumed = 0;        // kFrame: header + payload
};

inline ControlFrameScan ScanControlFrame(absl::string_view buffered, uint32_t network_id,
                                         uint32_t max_payload) {
  ControlFrameScan scan;
  if (buffered.size() < kFrameHeaderSize) {
    return scan;
  }
  scan.header = DecodeFrameHeader(reinterpret_cast<const uint8_t*>(buffered.data()));
  scan.error = CheckFrameHeader(scan.header, network_id, max_payload);
  if (scan.error == FrameError::kTooLong) {
    scan.kind = ControlFrameScan::Kind::kTooLarge;
    return scan;
  }
  if (scan.error != FrameError::kOk) {
    scan.kind = ControlFrameScan::Kind::kBadHeader;
    return scan;
  }
  if (buffered.size() < scan.header.frame_size()) {
    return scan;  // bounded by max_payload
  }
  scan.kind = ControlFrameScan::Kind::kFrame;
  scan.payload = buffered.substr(kFrameHeaderSize, scan.header.length);
  scan.consumed = static_cast<size_t>(scan.header.frame_size());
  return scan;
}

// What a proxy connection at a frame boundary moves from a peeked window.
struct StagePlan {
  uint64_t bytes = 0;                  // to move now; 0: nothing (see error / needs_room)
  bool beyond_window = false;          // the last frame's body goes past the peeked bytes
  FrameError error = FrameError::kOk;  // the window's first header is refused (bytes == 0)
  bool needs_room = false;   // a good header is there but must wait for staged frames to drain
  uint32_t last_length = 0;  // payload length of the last good header looked at
  // What `bytes` holds, so that a move of all of it needs no second walk (MovedFrames):
  uint64_t frames = 0;        // whole frames inside the window, from its start
  uint64_t frames_bytes = 0;  // ... their sizes
  uint64_t tail_size = 0;     // the frame after them that goes past the window (0: none)
};

// `window`/`n`: the peeked bytes at a frame boundary. `staged`: bytes already staged;
// `cap`: the staging cap (a larger frame is staged alone); `budget`: most bytes to move
// for a frame that goes beyond the window. `last_length`: carried from the previous call.
// Whole frames in the window are taken up to the cap; a bad header after good frames ends
// the plan (those frames are delivered first; the next plan reports it).
inline StagePlan PlanStage(const uint8_t* window, size_t n, uint32_t network_id,
                           uint32_t max_payload, uint64_t staged, uint64_t cap, uint64_t budget,
                           uint32_t last_length) {
  StagePlan plan;
  plan.last_length = last_length;
  while (plan.bytes + kFrameHeaderSize <= n) {
    const FrameHeader h = DecodeFrameHeader(window + plan.bytes);
    const FrameError error = CheckFrameHeader(h, network_id, max_payload);
    if (error != FrameError::kOk) {
      if (plan.bytes == 0) {
        plan.error = error;
      }
      break;
    }
    plan.last_length = h.length;
    const uint64_t total = h.frame_size();
    if (staged + plan.bytes + total > cap && staged + plan.bytes > 0) {
      break;  // a larger frame is staged alone
    }
    if (plan.bytes + total <= n) {
      plan.bytes += total;
      ++plan.frames;
      continue;
    }
    plan.frames_bytes = plan.bytes;
    plan.tail_size = total;
    plan.bytes += std::min<uint64_t>(total, budget);
    plan.beyond_window = plan.bytes > n;
    break;
  }
  if (plan.tail_size == 0) {
    plan.frames_bytes = plan.bytes;
  }
  plan.needs_room = plan.bytes == 0 && plan.error == FrameError::kOk && n >= kFrameHeaderSize;
  return plan;
}

// After `moved` bytes of a planned window were staged.
struct MovedFrames {
  uint64_t complete_bytes = 0;  // whole frames among the moved bytes
  uint64_t frames = 0;
  uint64_t partial_size = 0;  // the frame cut by the end of the move (0: none), header included
  uint64_t partial_left = 0;  // its bytes still in the socket
};

// Walks the window's headers: `moved` must not exceed the plan PlanStage made of it.
inline MovedFrames CountMovedFrames(const uint8_t* window, size_t n, uint64_t moved) {
  MovedFrames out;
  uint64_t pos = 0;
  while (pos < moved && pos + kFrameHeaderSize <= n) {
    const uint64_t total = DecodeFrameHeader(window + pos).frame_size();
    if (pos + total > moved) {
      out.partial_size = total;
      out.partial_left = pos + total - moved;
      break;
    }
    out.complete_bytes += total;
    ++out.frames;
    pos += total;
  }
  return out;
}

// The same from the plan itself when the move took at least its whole frames (the usual
// case: one walk over the headers per window instead of two); a shorter move walks again.
inline MovedFrames CountMovedFrames(const StagePlan& plan, const uint8_t* window, size_t n,
                                    uint64_t moved) {
  if (moved < plan.frames_bytes) {
    return CountMovedFrames(window, n, moved);
  }
  MovedFrames out;
  out.frames = plan.frames;
  out.complete_bytes = plan.frames_bytes;
  const uint64_t tail = moved - plan.frames_bytes;  // of the frame past the window
  if (tail == plan.tail_size && tail > 0) {
    ++out.frames;
    out.complete_bytes += tail;
  } else if (tail > 0) {
    out.partial_size = plan.tail_size;
    out.partial_left = plan.tail_size - tail;
  }
  return out;
}

// Where a reader stands in a sender's stream of frames (ProxyConnection).
struct StreamPosition {
  uint64_t frame_left = 0;   // bytes of the current frame still to come (0: at a boundary)
  uint64_t frame_size = 0;   // size of the current frame, header included
  uint32_t last_length = 0;  // payload length of the last header seen
  uint8_t header_have = 0;   // at a boundary: bytes of the next header seen
  uint8_t header[kFrameHeaderSize] = {};  // ... and those bytes
  // Inside a frame, or inside the header of one.
  bool in_frame() const { return frame_left > 0 || header_have > 0; }
};

// What ScanPiece found in one piece.
struct PieceScan {
  uint64_t complete_bytes = 0;  // frames made whole by this piece (their sizes)
  uint64_t frames = 0;
  bool began = false;                  // the frame (or header) the piece ends in began in it
  FrameError error = FrameError::kOk;  // a refused header; nothing after it is looked at
  uint64_t error_at = 0;               // offset in the piece just past the refused header
};

// Advances `pos` over `n` bytes that follow it in the stream. Frames whose last byte is in
// the piece are counted whole; a header cut by the end of the piece is kept in `pos`.
inline PieceScan ScanPiece(const uint8_t* p, size_t n, StreamPosition* pos, uint32_t network_id,
                           uint32_t max_payload) {
  PieceScan out;
  size_t at = 0;
  while (at < n) {
    if (pos->frame_left > 0) {
      const uint64_t take = std::min<uint64_t>(pos->frame_left, n - at);
      pos->frame_left -= take;
      at += static_cast<size_t>(take);
      if (pos->frame_left == 0) {
        out.complete_bytes += pos->frame_size;
        ++out.frames;
        out.began = false;
      }
      continue;
    }
    const size_t take = std::min<size_t>(kFrameHeaderSize - pos->header_have, n - at);
    if (pos->header_have == 0) {
      out.began = true;
    }
    std::copy(p + at, p + at + take, pos->header + pos->header_have);
    pos->header_have = static_cast<uint8_t>(pos->header_have + take);
    at += take;
    if (pos->header_have < kFrameHeaderSize) {
      break;  // cut by the end of the piece
    }
    const FrameHeader h = DecodeFrameHeader(pos->header);
    const FrameError error = CheckFrameHeader(h, network_id, max_payload);
    if (error != FrameError::kOk) {
      out.error = error;
      out.error_at = at;
      break;
    }
    pos->header_have = 0;
    pos->last_length = h.length;
    pos->frame_size = h.frame_size();
    pos->frame_left = h.length;  // never 0: a zero length is refused
  }
  return out;
}

}  // namespace relay
