#include "net/frame_io.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>

#include "absl/strings/str_cat.h"
#include "base/log.h"
#include "net/socket_ops.h"

namespace relay::net {

absl::StatusOr<std::string> ReadExactly(int fd, size_t n, absl::Time deadline) {
  std::string out(n, '\0');
  size_t got = 0;
  while (got < n) {
    if (!WaitForFd(fd, POLLIN, deadline)) {
      return absl::DeadlineExceededError(absl::StrCat("read ", got, " of ", n, " bytes"));
    }
    const ssize_t r = ::recv(fd, out.data() + got, n - got, MSG_DONTWAIT);
    if (r == 0) {
      return absl::UnavailableError(absl::StrCat("EOF after ", got, " of ", n, " bytes"));
    }
    if (r < 0) {
      if (errno == EAGAIN || errno == EINTR) {
        continue;
      }
      return absl::UnavailableError(ErrnoText(errno));
    }
    got += static_cast<size_t>(r);
  }
  return out;
}

absl::Status ReadFrame(int fd, absl::Time deadline, uint32_t max_payload, FrameHeader* header,
                       std::string* payload) {
  absl::StatusOr<std::string> head = ReadExactly(fd, kFrameHeaderSize, deadline);
  if (!head.ok()) {
    return head.status();
  }
  *header = DecodeFrameHeader(reinterpret_cast<const uint8_t*>(head->data()));
  if (header->length == 0 || header->length > max_payload) {
    return absl::DataLossError(absl::StrCat("a frame header announcing ", header->length,
                                            " payload bytes (1 to ", max_payload, " expected)"));
  }
  absl::StatusOr<std::string> body = ReadExactly(fd, header->length, deadline);
  if (!body.ok()) {
    return body.status();
  }
  *payload = std::move(*body);
  return absl::OkStatus();
}

}  // namespace relay::net
