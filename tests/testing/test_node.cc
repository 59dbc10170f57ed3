#include "tests/testing/test_node.h"

#include <errno.h>
#include <poll.h>
#include <sys/random.h>
#include <sys/socket.h>

#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "base/log.h"
#include "core/control_codec.h"
#include "core/host_port.h"
#include "core/signing.h"
#include "net/frame_io.h"
#include "net/socket_ops.h"

namespace relay::testing {
namespace {

std::string RandomBytes(size_t n) {
  std::string s(n, '\0');
  size_t got = 0;
  while (got < n) {
    const ssize_t r = getrandom(s.data() + got, n - got, 0);
    if (r > 0) {
      got += static_cast<size_t>(r);
    }
  }
  return s;
}

}  // namespace

std::string MakeFrame(absl::string_view payload, uint32_t network_id, uint16_t compress_info) {
  std::string out(kFrameHeaderSize, '\0');
  FrameHeader h;
  h.network_id = network_id;
  h.compress_info = compress_info;
  h.length = static_cast<uint32_t>(payload.size());
  EncodeFrameHeader(h, reinterpret_cast<uint8_t*>(out.data()));
  out.append(payload.data(), payload.size());
  return out;
}

std::string MakeControlFrame(uint32_t opcode, const std::string& inner, const wire::ID& sender,
                             uint64_t request_nonce, uint32_t network_id,
                             const std::string& secret_key) {
  wire::Message msg;
  msg.set_message(inner);
  *msg.mutable_sender() = sender;
  msg.set_opcode(opcode);
  msg.set_netid(network_id);
  msg.set_request_nonce(request_nonce);
  if (!secret_key.empty()) {
    SignMessage(secret_key, &msg).IgnoreError();
  }
  return MakeFrame(msg.SerializeAsString(), network_id);
}

bool WriteAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

absl::StatusOr<Frame> ReadFrame(int fd, absl::Duration timeout) {
  Frame f;
  const absl::Status status =
      net::ReadFrame(fd, absl::Now() + timeout, 1u << 30, &f.header, &f.payload);
  if (!status.ok()) {
    return status;
  }
  return f;
}

bool WaitForClose(int fd, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  char buf[65536];
  for (;;) {
    if (!net::WaitForFd(fd, POLLIN, deadline)) {
      return false;
    }
    const ssize_t r = ::recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
      return true;
    }
  }
}

bool TakeWholeFrames(FrameStream* stream,
                     const std::function<void(const FrameHeader&, absl::string_view)>& on_frame) {
  FrameStream::Frame frame;
  FrameStream::Result taken;
  while ((taken = stream->Take(&frame)) == FrameStream::Result::kFrame) {
    on_frame(frame.header, frame.payload);
  }
  return taken != FrameStream::Result::kBad;
}

absl::StatusOr<net::UniqueFd> ConnectTo(const std::string& address) {
  absl::StatusOr<HostPort> hp = ParseHostPort(address);  // "ip:port" or "[v6]:port"
  if (!hp.ok()) {
    return hp.status();
  }
  return net::ConnectBlocking(hp->host, hp->port);
}

absl::Status ConnectTwo(const std::string& address, net::UniqueFd* a, net::UniqueFd* b) {
  for (net::UniqueFd* fd : {a, b}) {
    absl::StatusOr<net::UniqueFd> c = ConnectTo(address);
    if (!c.ok()) {
      return c.status();
    }
    *fd = std::move(*c);
  }
  return absl::OkStatus();
}

TestNode::TestNode(std::string connection_id) {
  id_.set_net_key(RandomBytes(32));
  id_.set_address(absl::StrCat("tcp://127.0.0.1:", 30000 + (RandomBytes(1)[0] & 0xff)));
  id_.set_id(RandomBytes(32));
  id_.set_connection_id(connection_id.empty() ? RandomBytes(32) : connection_id);
}

void TestNode::SignAs(const std::string& public_key, const std::string& secret_key,
                      const std::string& address) {
  id_.set_address(address);
  id_.set_net_key(public_key);
  id_.set_id(DeriveId(public_key));
  id_.set_connection_id(DeriveConnectionId(public_key, id_.address()));
  secret_key_ = secret_key;
}

absl::StatusOr<net::UniqueFd> ConnectFrom(const std::string& source, const std::string& host,
                                          uint16_t port) {
  net::UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  absl::StatusOr<net::SocketAddress> src = net::MakeAddress(source, 0);
  absl::StatusOr<net::SocketAddress> dst = net::MakeAddress(host, port);
  if (!fd || !src.ok() || !dst.ok()) {
    return absl::InvalidArgumentError("bad address");
  }
  if (::bind(fd.get(), src->get(), src->len) != 0 ||
      ::connect(fd.get(), dst->get(), dst->len) != 0) {
    return absl::UnavailableError(ErrnoText(errno));
  }
  return fd;
}

absl::Status TestNode::ConnectFrom(const std::string& source, const std::string& host,
                                   uint16_t port) {
  absl::StatusOr<net::UniqueFd> fd = testing::ConnectFrom(source, host, port);
  if (!fd.ok()) {
    return fd.status();
  }
  fd_ = std::move(*fd);
  return absl::OkStatus();
}

absl::Status TestNode::Connect(const std::string& host, uint16_t port) {
  absl::StatusOr<net::UniqueFd> fd = net::ConnectBlocking(host, port);
  if (!fd.ok()) {
    return fd.status();
  }
  fd_ = std::move(*fd);
  return absl::OkStatus();
}

absl::Status TestNode::Send(uint32_t opcode, const std::string& inner, uint64_t request_nonce) {
  if (!WriteAll(fd_.get(), MakeControlFrame(opcode, inner, id_, request_nonce, kDefaultNetworkId,
                                            secret_key_))) {
    return absl::UnavailableError(ErrnoText(errno));
  }
  return absl::OkStatus();
}

absl::StatusOr<wire::Message> TestNode::ReadMessage(absl::Duration timeout) {
  absl::StatusOr<Frame> frame = ReadFrame(fd_.get(), timeout);
  if (!frame.ok()) {
    return frame.status();
  }
  wire::Message msg;
  if (!msg.ParseFromString(frame->payload)) {
    return absl::DataLossError("not a Message");
  }
  return msg;
}

absl::StatusOr<Frame> TestNode::ReadDataFrame(absl::Duration timeout) {
  return ReadFrame(fd_.get(), timeout);
}

absl::StatusOr<std::string> TestNode::ConnectAndClaim(uint16_t relay_port) {
  absl::Status connected = Connect("127.0.0.1", relay_port);
  if (!connected.ok()) {
    return connected;
  }
  return RequestProxy();
}

absl::StatusOr<std::string> TestNode::RequestProxy(absl::Duration timeout) {
  const uint64_t nonce = nonce_++;
  wire::ProxyRequest request;
  absl::Status status = Send(kOpProxyRequest, request.SerializeAsString(), nonce);
  if (!status.ok()) {
    return status;
  }
  absl::StatusOr<wire::Message> msg = ReadMessage(timeout);
  if (!msg.ok()) {
    return msg.status();
  }
  if (msg->opcode() == kOpDisconnect) {
    return absl::FailedPreconditionError("disconnect");
  }
  if (msg->opcode() != kOpProxyResponse) {
    return absl::InternalError(absl::StrCat("unexpected opcode ", msg->opcode()));
  }
  wire::ProxyResponse response;
  response.ParseFromString(msg->message());
  return response.proxy_address();
}

}  // namespace relay::testing
