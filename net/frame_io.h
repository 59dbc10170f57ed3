// Blocking reads of whole frames off a socket, for tools, the node library's handshake and
// tests (never the relay's reactors, which do not block): exactly the bytes of one frame
// are read, header then payload, so what follows it stays in the socket for the next
// reader.
//
// Stateless; any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/frame_header.h"

namespace relay::net {

// Reads exactly `n` bytes from `fd` (blocking or not) by `deadline`. DeadlineExceeded,
// or Unavailable on EOF or an error, with how far it got.
absl::StatusOr<std::string> ReadExactly(int fd, size_t n, absl::Time deadline);

// Reads one whole frame: its header into *header, its payload into *payload. A header
// announcing an empty payload or more than `max_payload` bytes is DataLoss (its payload is
// not read).
absl::Status ReadFrame(int fd, absl::Time deadline, uint32_t max_payload, FrameHeader* header,
                       std::string* payload);

}  // namespace relay::net
