// compression: the payload compression of shared/PROTOCOL.md section 2 (compress_info =
// (1 << 8) | algorithm). Nodes compress large messages; the relay never looks inside.
//
// Supported: zlib (3, RFC 1950, what Go's compress/zlib writes), gzip (2, RFC 1952) and
// flate (5, raw RFC 1951). bzip2 (1) and lzw (4) are refused with Unimplemented (no node
// we know sends them; the frame is dropped and counted by the caller).
//
// Decompression is bounded: output beyond `max_bytes` is refused (a few KiB of zeros can
// inflate to gigabytes). Pure functions; any thread.
#pragma once

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/frame_header.h"

namespace relay {

// compress_info for a payload compressed with `algorithm`.
inline uint16_t CompressInfo(CompressAlgorithm algorithm) {
  return static_cast<uint16_t>((1u << 8) | static_cast<uint8_t>(algorithm));
}

absl::StatusOr<std::string> Compress(CompressAlgorithm algorithm, absl::string_view data);
absl::StatusOr<std::string> Decompress(CompressAlgorithm algorithm, absl::string_view data,
                                       size_t max_bytes);

}  // namespace relay
