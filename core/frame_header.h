// FrameHeader: the 10-byte header in front of every frame (shared/PROTOCOL.md section 2).
//
//   network_id u32 BE | compress_info u16 BE | length u32 BE | payload (length bytes)
//
// Pure functions, no allocation, safe from any thread. The forwarding path calls
// DecodeFrameHeader + CheckFrameHeader once per frame on bytes it peeked from a socket.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace relay {

inline constexpr size_t kFrameHeaderSize = 10;
inline constexpr uint32_t kDefaultNetworkId = 1564141146;

// compress_info algorithms (PROTOCOL section 2).
enum class CompressAlgorithm : uint8_t {
  kNone = 0,
  kBzip2 = 1,
  kGzip = 2,
  kZlib = 3,
  kLzw = 4,
  kFlate = 5,
};

struct FrameHeader {
  uint32_t network_id = 0;
  uint16_t compress_info = 0;
  uint32_t length = 0;

  bool compressed() const { return (compress_info >> 8) == 1; }
  uint8_t algorithm() const { return static_cast<uint8_t>(compress_info & 0xff); }
  // Header plus payload.
  uint64_t frame_size() const { return kFrameHeaderSize + static_cast<uint64_t>(length); }
};

// Why a header was refused. kOk means the frame may be accepted.
enum class FrameError : uint8_t {
  kOk = 0,
  kBadNetworkId,  // network_id differs from the relay's
  kZeroLength,    // length == 0
  kTooLong,       // length above the configured maximum
};

// Returns a short stable name ("bad_network_id", ...) for logs and counters.
std::string_view FrameErrorName(FrameError error);

// Reads a header from exactly kFrameHeaderSize bytes at `bytes`.
inline FrameHeader DecodeFrameHeader(const uint8_t* bytes) {
  FrameHeader h;
  h.network_id = (uint32_t{bytes[0]} << 24) | (uint32_t{bytes[1]} << 16) |
                 (uint32_t{bytes[2]} << 8) | uint32_t{bytes[3]};
  h.compress_info = static_cast<uint16_t>((uint32_t{bytes[4]} << 8) | uint32_t{bytes[5]});
  h.length = (uint32_t{bytes[6]} << 24) | (uint32_t{bytes[7]} << 16) | (uint32_t{bytes[8]} << 8) |
             uint32_t{bytes[9]};
  return h;
}

// Writes `h` as exactly kFrameHeaderSize bytes at `out`.
inline void EncodeFrameHeader(const FrameHeader& h, uint8_t* out) {
  out[0] = static_cast<uint8_t>(h.network_id >> 24);
  out[1] = static_cast<uint8_t>(h.network_id >> 16);
  out[2] = static_cast<uint8_t>(h.network_id >> 8);
  out[3] = static_cast<uint8_t>(h.network_id);
  out[4] = static_cast<uint8_t>(h.compress_info >> 8);
  out[5] = static_cast<uint8_t>(h.compress_info);
  out[6] = static_cast<uint8_t>(h.length >> 24);
  out[7] = static_cast<uint8_t>(h.length >> 16);
  out[8] = static_cast<uint8_t>(h.length >> 8);
  out[9] = static_cast<uint8_t>(h.length);
}

// Checks a decoded header against the relay's network id and maximum payload size.
// Returns kOk or the first rule it breaks. compress_info is not checked: the relay forwards
// payloads verbatim and never decompresses data frames (PROTOCOL section 7).
inline FrameError CheckFrameHeader(const FrameHeader& h, uint32_t network_id,
                                   uint32_t max_payload) {
  if (h.network_id != network_id) {
    return FrameError::kBadNetworkId;
  }
  if (h.length == 0) {
    return FrameError::kZeroLength;
  }
  if (h.length > max_payload) {
    return FrameError::kTooLong;
  }
  return FrameError::kOk;
}

}  // namespace relay
