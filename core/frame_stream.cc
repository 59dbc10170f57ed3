#include "core/frame_stream.h"

namespace relay {

void FrameStream::Append(absl::string_view bytes) {
  if (off_ > 0) {
    buf_.erase(0, off_);  // what was taken goes before the buffer grows
    off_ = 0;
  }
  buf_.append(bytes.data(), bytes.size());
}

FrameStream::Result FrameStream::Take(Frame* frame) {
  if (error_ != FrameError::kOk) {
    return Result::kBad;
  }
  if (buffered() < kFrameHeaderSize) {
    return Result::kNeedMore;
  }
  const FrameHeader h = DecodeFrameHeader(reinterpret_cast<const uint8_t*>(buf_.data() + off_));
  error_ = CheckFrameHeader(h, network_id_, max_payload_);
  if (error_ != FrameError::kOk) {
    return Result::kBad;
  }
  if (buffered() < h.frame_size()) {
    return Result::kNeedMore;
  }
  frame->header = h;
  frame->size = static_cast<size_t>(h.frame_size());
  frame->payload = absl::string_view(buf_).substr(off_ + kFrameHeaderSize, h.length);
  off_ += frame->size;
  return Result::kFrame;
}

void FrameStream::Clear() {
  std::string().swap(buf_);
  off_ = 0;
  error_ = FrameError::kOk;
}

}  // namespace relay
