#include "core/frame_header.h"

namespace relay {

std::string_view FrameErrorName(FrameError error) {
  switch (error) {
    case FrameError::kOk:
      return "ok";
    case FrameError::kBadNetworkId:
      return "bad_network_id";
    case FrameError::kZeroLength:
      return "zero_length";
    case FrameError::kTooLong:
      return "too_long";
  }
  return "unknown";
}

}  // namespace relay
