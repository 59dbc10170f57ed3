// FrameStream: a byte stream read in pieces, split into whole frames (PROTOCOL section 2).
// Bytes are appended as they arrive and whole frames taken off the front; each header is
// checked (network id, length: CheckFrameHeader) as soon as it is whole, so a bad or
// oversized header is an error at once instead of a wait for gigabytes that never come.
//
// Who reads with it: the node library's main connection, the tests' nodes. The relay scans
// its own sockets with core/frame_scan.h (no buffering of data frames), and relay-load
// counts frames without keeping them (tools/load/load_worker.h); one frame read straight
// off a socket is net::ReadFrame (net/frame_io.h).
//
// Thread: one owner. A Frame's payload points into the stream: valid until the next call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "core/frame_header.h"

namespace relay {

class FrameStream {
 public:
  struct Frame {
    FrameHeader header;
    absl::string_view payload;
    size_t size = 0;  // header + payload
  };
  enum class Result : uint8_t {
    kFrame,     // *frame is the next whole frame, taken off the stream
    kNeedMore,  // no whole frame yet
    kBad,       // the next header breaks a rule (error()): the stream cannot go on
  };

  FrameStream(uint32_t network_id, uint32_t max_payload)
      : network_id_(network_id), max_payload_(max_payload) {}

  void Append(absl::string_view bytes);
  Result Take(Frame* frame);
  FrameError error() const { return error_; }
  // Bytes held: a partial frame, or whole frames not taken yet.
  size_t buffered() const { return buf_.size() - off_; }
  void Clear();

 private:
  uint32_t network_id_;
  uint32_t max_payload_;
  std::string buf_;
  size_t off_ = 0;  // bytes of buf_ already taken
  FrameError error_ = FrameError::kOk;
};

}  // namespace relay
