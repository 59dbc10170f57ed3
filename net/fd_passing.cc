#include "net/fd_passing.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/log.h"

namespace relay::net {
namespace {

constexpr size_t kHeaderBytes = 12;

absl::Status Errno(const char* what, int error) {
  return absl::Status(absl::ErrnoToStatusCode(error), absl::StrCat(what, ": ", ErrnoText(error)));
}

// Waits until `sock` is readable or `deadline` passes.
absl::Status WaitReadable(int sock, absl::Time deadline) {
  for (;;) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      return absl::DeadlineExceededError("timed out waiting for the other process");
    }
    pollfd p = {sock, POLLIN, 0};
    const int r = poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
    if (r > 0) {
      return absl::OkStatus();
    }
    if (r < 0 && errno != EINTR) {
      return Errno("poll", errno);
    }
  }
}

}  // namespace

absl::Status SendAll(int sock, const void* data, size_t len) {
  const char* p = static_cast<const char*>(data);
  while (len > 0) {
    const ssize_t n = ::send(sock, p, len, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return Errno("send", errno);
    }
    p += n;
    len -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status ReceiveAll(int sock, void* data, size_t len, absl::Time deadline) {
  char* p = static_cast<char*>(data);
  while (len > 0) {
    absl::Status ready = WaitReadable(sock, deadline);
    if (!ready.ok()) {
      return ready;
    }
    const ssize_t n = ::recv(sock, p, len, 0);
    if (n == 0) {
      return absl::UnavailableError("the other process closed the socket");
    }
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) {
        continue;
      }
      return Errno("recv", errno);
    }
    p += n;
    len -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status SendParcel(int sock, const std::string& blob, const std::vector<int>& fds) {
  uint8_t header[kHeaderBytes];
  const uint64_t blob_len = blob.size();
  const uint32_t fd_count = static_cast<uint32_t>(fds.size());
  memcpy(header, &blob_len, 8);
  memcpy(header + 8, &fd_count, 4);
  absl::Status status = SendAll(sock, header, sizeof(header));
  if (status.ok()) {
    status = SendAll(sock, blob.data(), blob.size());
  }
  for (size_t i = 0; status.ok() && i < fds.size(); i += kFdsPerMessage) {
    const size_t n = std::min(kFdsPerMessage, fds.size() - i);
    char byte = 'F';
    iovec iov = {&byte, 1};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kFdsPerMessage)];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * n);
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int) * n);
    memcpy(CMSG_DATA(cmsg), fds.data() + i, sizeof(int) * n);
    for (;;) {
      const ssize_t sent = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
      if (sent == 1) {
        break;
      }
      if (sent < 0 && errno == EINTR) {
        continue;
      }
      status = Errno("sendmsg(SCM_RIGHTS)", sent < 0 ? errno : EIO);
      break;
    }
  }
  return status;
}

absl::StatusOr<Parcel> ReceiveParcel(int sock, size_t max_blob, size_t max_fds,
                                     absl::Time deadline) {
  uint8_t header[kHeaderBytes];
  absl::Status status = ReceiveAll(sock, header, sizeof(header), deadline);
  if (!status.ok()) {
    return status;
  }
  uint64_t blob_len = 0;
  uint32_t fd_count = 0;
  memcpy(&blob_len, header, 8);
  memcpy(&fd_count, header + 8, 4);
  if (blob_len > max_blob || fd_count > max_fds) {
    return absl::InvalidArgumentError(
        absl::StrCat("parcel too large: ", blob_len, " bytes, ", fd_count, " fds"));
  }
  Parcel parcel;
  parcel.blob.resize(blob_len);
  status = ReceiveAll(sock, parcel.blob.data(), blob_len, deadline);
  if (!status.ok()) {
    return status;
  }
  parcel.fds.reserve(fd_count);
  while (parcel.fds.size() < fd_count) {
    status = WaitReadable(sock, deadline);
    if (!status.ok()) {
      return status;
    }
    char byte = 0;
    iovec iov = {&byte, 1};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kFdsPerMessage)];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    const ssize_t n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
      continue;
    }
    if (n < 0) {
      return Errno("recvmsg(SCM_RIGHTS)", errno);
    }
    if (n == 0) {
      return absl::UnavailableError("the other process closed the socket while sending fds");
    }
    // Take every fd the kernel installed (even on a protocol error, so none leaks).
    size_t got = 0;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) {
        continue;
      }
      const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t k = 0; k < count; ++k) {
        int fd;
        memcpy(&fd, CMSG_DATA(c) + k * sizeof(int), sizeof(int));
        parcel.fds.emplace_back(fd);
        ++got;
      }
    }
    if ((msg.msg_flags & MSG_CTRUNC) != 0 || got == 0 || byte != 'F') {
      return absl::DataLossError("fd batch truncated or malformed (MSG_CTRUNC: out of fds?)");
    }
    if (parcel.fds.size() > fd_count) {
      return absl::DataLossError("more fds than announced");
    }
  }
  return parcel;
}

int64_t PeerUid(int sock) {
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return -1;
  }
  return cred.uid;
}

}  // namespace relay::net
