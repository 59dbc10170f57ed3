// Passing file descriptors between processes over a Unix stream socket (SCM_RIGHTS,
// unix(7)): what a relay uses to hand its listeners and connections to the process that
// replaces it (server/upgrade.h).
//
// A "parcel" is one blob of bytes plus any number of fds. On the wire: a 12-byte header
// (u64 blob length, u32 fd count), the blob, then the fds in batches of kFdsPerMessage,
// each batch attached to one byte of data (the kernel caps fds per message at
// SCM_MAX_FD = 253). Received fds are close-on-exec (MSG_CMSG_CLOEXEC).
//
// Thread: blocking calls on a blocking socket; any thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "net/unique_fd.h"

namespace relay::net {

inline constexpr size_t kFdsPerMessage = 250;

// Sends `blob` and `fds` (the fds stay open here: the receiver gets duplicates).
absl::Status SendParcel(int sock, const std::string& blob, const std::vector<int>& fds);

struct Parcel {
  std::string blob;
  std::vector<UniqueFd> fds;
};
// Receives one parcel, refusing a blob over `max_blob` bytes or more than `max_fds` fds.
// Gives up at `deadline` (DeadlineExceeded).
absl::StatusOr<Parcel> ReceiveParcel(int sock, size_t max_blob, size_t max_fds,
                                     absl::Time deadline);

// Sends / receives exactly `len` bytes (a short exchange around a parcel), bounded by
// `deadline` on receive.
absl::Status SendAll(int sock, const void* data, size_t len);
absl::Status ReceiveAll(int sock, void* data, size_t len, absl::Time deadline);

// The uid of the process at the other end of a Unix socket (SO_PEERCRED), -1 if unknown.
int64_t PeerUid(int sock);

}  // namespace relay::net
