#include "node/node_client.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <future>
#include <memory>
#include <random>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "base/log.h"
#include "core/compression.h"
#include "core/control_codec.h"
#include "core/frame_stream.h"
#include "core/signing.h"
#include "net/frame_io.h"
#include "net/socket_ops.h"

namespace relay::node {
namespace {

// The largest frame payload the node reads: a message never needs more than
// max_message_bytes (the relay forwards at most its --max_frame_bytes, 16 MiB by default).
uint32_t FramePayloadLimit(size_t max_message_bytes) {
  return static_cast<uint32_t>(std::min<size_t>(max_message_bytes, UINT32_MAX));
}

}  // namespace

absl::StatusOr<HostPort> ParsePeerAddress(absl::string_view address) {
  absl::ConsumePrefix(&address, "tcp://");
  return ParseHostPort(address);
}

NodeClient::NodeClient(Identity identity, NodeOptions options)
    : identity_(std::move(identity)),
      options_(std::move(options)),
      spread_(std::random_device{}()) {
  RELAY_CHECK(pipe2(wake_pipe_, O_NONBLOCK | O_CLOEXEC) == 0);
}

void NodeClient::ResolveRelays(std::vector<std::string>* errors) {
  std::vector<HostPort> targets;
  for (const HostPort& relay : options_.relays) {
    if (!IsHostName(relay.host)) {
      targets.push_back(relay);
      continue;
    }
    absl::StatusOr<std::vector<std::string>> ips =
        options_.resolve ? options_.resolve(relay.host) : net::ResolveHost(relay.host);
    if (!ips.ok() || ips->empty()) {
      errors->push_back(absl::StrCat(FormatHostPort(relay.host, relay.port), ": ",
                                     ips.ok() ? "no address" : ips.status().message()));
      continue;
    }
    for (size_t k = 0; k < ips->size(); ++k) {
      targets.push_back(HostPort{(*ips)[(spread_ + k) % ips->size()], relay.port});
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  targets_ = std::move(targets);
}

PeerSender& NodeClient::Sender() {
  // Made on the first send: a node that only receives (relay-load's thousands of idle
  // sessions) has no sender thread.
  std::call_once(sender_once_, [this] {
    PeerSender::Options sender;
    sender.connect_timeout = options_.io_timeout;
    sender.idle_timeout = options_.peer_idle_timeout;
    sender.max_queued_bytes = options_.max_send_queue_bytes;
    sender_ = std::make_unique<PeerSender>(sender);
  });
  return *sender_;
}

uint64_t NodeClient::peer_connections_opened() { return Sender().connections_opened(); }

uint64_t NodeClient::peer_connections_closed_by_relay() {
  return Sender().connections_closed_by_peer();
}

NodeClient::~NodeClient() {
  Stop();
  close(wake_pipe_[0]);
  close(wake_pipe_[1]);
}

std::string NodeClient::proxy_address() const {
  std::lock_guard<std::mutex> lock(mu_);
  return proxy_address_;
}

std::string NodeClient::BuildFrame(uint32_t opcode, const std::string& inner,
                                   const std::string& address, bool reply_flag) {
  wire::Message msg;
  msg.set_message(inner);
  *msg.mutable_sender() = identity_.Sender(address);
  msg.set_message_nonce(nonce_.fetch_add(1));
  msg.set_opcode(opcode);
  msg.set_netid(options_.network_id);
  msg.set_reply_flag(reply_flag);
  RELAY_CHECK(SignMessage(identity_.secret_key(), &msg).ok());
  std::string body = msg.SerializeAsString();
  uint16_t compress_info = 0;
  if (options_.compress_threshold > 0 && body.size() >= options_.compress_threshold) {
    absl::StatusOr<std::string> packed = Compress(options_.compress_algorithm, body);
    if (packed.ok() && packed->size() < body.size()) {
      body = std::move(*packed);
      compress_info = CompressInfo(options_.compress_algorithm);
    }
  }
  std::string frame(kFrameHeaderSize, '\0');
  EncodeFrameHeader(
      FrameHeader{options_.network_id, compress_info, static_cast<uint32_t>(body.size())},
      reinterpret_cast<uint8_t*>(frame.data()));
  return frame + body;
}

uint64_t NodeClient::NextClaimTime() {
  last_claim_ms_ = std::max<uint64_t>(last_claim_ms_ + 1,
                                      static_cast<uint64_t>(absl::ToUnixMillis(absl::Now())));
  return last_claim_ms_;
}

absl::Status NodeClient::CheckRelayAnswer(const HostPort& relay, const wire::Message& msg,
                                          uint64_t claim_time_ms) {
  const bool signed_ok = !msg.signature().empty() && VerifyMessage(msg).ok();
  if (options_.relay_keys.empty()) {
    relay_key_ = signed_ok ? msg.sender().net_key() : std::string();
    return absl::OkStatus();
  }
  const std::string where = absl::StrCat("relay ", FormatHostPort(relay.host, relay.port));
  if (!signed_ok) {
    return absl::PermissionDeniedError(
        absl::StrCat(where, " did not sign its answer: not a pinned relay (--relay_key)"));
  }
  const std::string& key = msg.sender().net_key();
  if (std::find(options_.relay_keys.begin(), options_.relay_keys.end(), key) ==
      options_.relay_keys.end()) {
    return absl::PermissionDeniedError(absl::StrCat(
        where, " presented key ", absl::BytesToHexString(key), ", not a pinned one (--relay_key)"));
  }
  if (msg.opcode() == kOpProxyResponse) {
    wire::ProxyResponse response;
    if (!response.ParseFromString(msg.message()) || response.claim_time_ms() != claim_time_ms) {
      return absl::PermissionDeniedError(
          absl::StrCat(where, "'s signed answer does not echo this claim (a replayed answer?)"));
    }
  }
  relay_key_ = key;
  return absl::OkStatus();
}

bool NodeClient::FromRelay(const wire::Message& m) const {
  if (m.sender().address() != relay_address_) {
    return false;
  }
  if (relay_key_.empty()) {
    return true;  // a relay that does not sign: the address is all there is
  }
  return m.sender().net_key() == relay_key_ && VerifyMessage(m).ok();
}

absl::StatusOr<std::string> NodeClient::TryRelay(const HostPort& relay, absl::Duration timeout) {
  absl::StatusOr<net::UniqueFd> fd = net::ConnectWithTimeout(relay.host, relay.port, timeout);
  if (!fd.ok()) {
    return fd.status();
  }
  const absl::Time deadline = absl::Now() + timeout;
  wire::ProxyRequest request;
  if (options_.fresh_claims) {
    request.set_claim_relay(absl::StrCat("tcp://", FormatHostPort(relay.host, relay.port)));
    request.set_claim_time_ms(NextClaimTime());
  }
  absl::Status status = net::WriteAllUntil(
      fd->get(),
      BuildFrame(kOpProxyRequest, request.SerializeAsString(), options_.local_address, false),
      deadline);
  if (!status.ok()) {
    return status;
  }
  for (;;) {
    FrameHeader header;
    std::string payload;
    status = net::ReadFrame(fd->get(), deadline, 1u << 20, &header, &payload);
    if (!status.ok()) {
      return status;
    }
    wire::Message msg;
    if (!msg.ParseFromString(payload)) {
      return absl::DataLossError("the relay sent something that is not a Message");
    }
    if (msg.opcode() != kOpDisconnect && msg.opcode() != kOpProxyResponse) {
      continue;
    }
    status = CheckRelayAnswer(relay, msg, request.claim_time_ms());
    if (!status.ok()) {
      return status;
    }
    if (msg.opcode() == kOpDisconnect) {
      return absl::FailedPreconditionError(absl::StrCat(
          "relay ", FormatHostPort(relay.host, relay.port),
          " refused the request (no free proxy port, or the claim was refused: see its log)"));
    }
    wire::ProxyResponse response;
    response.ParseFromString(msg.message());
    relay_address_ = msg.sender().address();
    main_ = std::move(*fd);
    return response.proxy_address();
  }
}

absl::StatusOr<std::string> NodeClient::Connect(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  std::mt19937_64 rng(std::random_device{}());
  absl::Duration backoff = options_.initial_backoff;
  std::vector<std::string> errors;
  while (!stop_.load()) {
    errors.clear();
    ResolveRelays(&errors);
    for (size_t k = 0; k < targets_.size(); ++k) {
      const size_t index = (start_at_ + k) % targets_.size();
      const HostPort relay = targets_[index];
      absl::StatusOr<std::string> address = TryRelay(relay, options_.io_timeout);
      if (address.ok()) {
        std::lock_guard<std::mutex> lock(mu_);
        proxy_address_ = *address;
        attached_ = index;
        return *address;
      }
      if (absl::IsFailedPrecondition(address.status())) {
        return address.status();
      }
      errors.push_back(
          absl::StrCat(FormatHostPort(relay.host, relay.port), ": ", address.status().message()));
    }
    // Jittered exponential backoff: a random wait in [backoff/2, backoff].
    const double jitter = 0.5 + 0.5 * std::uniform_real_distribution<double>(0, 1)(rng);
    const absl::Duration wait = backoff * jitter;
    if (absl::Now() + wait >= deadline) {
      break;
    }
    pollfd p{wake_pipe_[0], POLLIN, 0};
    poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(wait)));
    backoff = std::min(backoff * 2, options_.max_backoff);
  }
  return absl::UnavailableError(
      absl::StrCat("cannot reach any relay (", absl::StrJoin(errors, "; "), ")"));
}

void NodeClient::Start(NodeCallbacks callbacks) {
  callbacks_ = std::move(callbacks);
  NodeEvent first;
  first.kind = NodeEvent::Kind::kAddress;
  first.relay = current_relay();
  first.address = proxy_address();
  Emit(std::move(first));
  dispatcher_ = std::thread([this] { Dispatch(); });
  dispatcher_id_ = dispatcher_.get_id();
  thread_ = std::thread([this] { Loop(); });
}

void NodeClient::Stop() {
  stop_.store(true);
  char c = 1;
  ssize_t ignored = write(wake_pipe_[1], &c, 1);
  (void)ignored;
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    queue_cv_.notify_all();
  }
  {
    // The loop thread never calls Stop, so joining it is safe from any thread.
    std::lock_guard<std::mutex> lock(stop_mu_);
    if (thread_.joinable()) {
      thread_.join();
    }
    if (main_.valid()) {
      // The loop is gone: end the session cleanly (the relay remembers the lease).
      net::WriteAllUntil(main_.get(), BuildFrame(kOpDisconnect, "", options_.local_address, false),
                         absl::Now() + absl::Milliseconds(200))
          .IgnoreError();
      main_.Reset();
    }
  }
  // From a callback (the dispatcher thread) the dispatcher ends when the callback
  // returns; whoever calls Stop next (the destructor at the latest) joins it.
  if (dispatcher_.joinable() && std::this_thread::get_id() != dispatcher_id_ &&
      !dispatcher_joined_.exchange(true)) {
    dispatcher_.join();
  }
}

void NodeClient::Emit(NodeEvent event) {
  std::lock_guard<std::mutex> lock(queue_mu_);
  Queued q;
  q.is_event = true;
  q.event = std::move(event);
  queue_.push_back(std::move(q));
  queue_cv_.notify_all();
}

void NodeClient::Deliver(ReceivedMessage message) {
  std::lock_guard<std::mutex> lock(queue_mu_);
  queued_bytes_ += message.frame_bytes;
  Queued q;
  q.message = std::move(message);
  queue_.push_back(std::move(q));
  queue_cv_.notify_all();
}

bool NodeClient::QueueFull() {
  std::lock_guard<std::mutex> lock(queue_mu_);
  return queued_bytes_ > options_.max_queued_bytes;
}

void NodeClient::Dispatch() {
  for (;;) {
    Queued q;
    {
      std::unique_lock<std::mutex> lock(queue_mu_);
      queue_cv_.wait(lock, [this] { return stop_.load() || !queue_.empty(); });
      if (stop_.load()) {
        return;
      }
      q = std::move(queue_.front());
      queue_.pop_front();
      if (!q.is_event) {
        queued_bytes_ -= q.message.frame_bytes;
      }
    }
    if (q.is_event) {
      if (callbacks_.on_event) {
        callbacks_.on_event(q.event);
      }
    } else if (callbacks_.on_message) {
      callbacks_.on_message(q.message);
    }
  }
}

void NodeClient::ReportAttached(size_t previous_relay, const std::string& previous_address) {
  if (attached_ != previous_relay) {
    NodeEvent moved;
    moved.kind = NodeEvent::Kind::kRelayMoved;
    moved.relay = current_relay();
    Emit(std::move(moved));
  }
  NodeEvent address;
  address.kind = NodeEvent::Kind::kAddress;
  address.relay = current_relay();
  address.address = proxy_address();
  address.changed = address.address != previous_address;
  Emit(std::move(address));
}

bool NodeClient::TryMoveBack() {
  const size_t previous = attached_;
  const std::string previous_address = proxy_address();
  for (size_t i = 0; i < previous && !stop_.load(); ++i) {
    // A probe must not disturb the session it may replace: on failure the current
    // relay's address and key stay as they were.
    const std::string relay_address = relay_address_;
    const std::string relay_key = relay_key_;
    absl::StatusOr<std::string> address =
        TryRelay(targets_[i], std::min(options_.io_timeout, absl::Seconds(2)));
    if (!address.ok()) {
      relay_address_ = relay_address;
      relay_key_ = relay_key;
      continue;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      proxy_address_ = *address;
      attached_ = i;
    }
    relay_moves_.fetch_add(1);
    RELAY_LOG(INFO) << "moved back to relay " << current_relay() << " (earlier in the list)";
    ReportAttached(previous, previous_address);
    return true;
  }
  return false;
}

bool NodeClient::SleepUnlessStopped(absl::Duration wait) {
  pollfd p{wake_pipe_[0], POLLIN, 0};
  poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(wait)));
  return !stop_.load();
}

void NodeClient::Loop() {
  std::mt19937_64 rng(std::random_device{}());
  absl::Duration backoff = options_.initial_backoff;
  auto jittered = [&] {
    return backoff * (0.5 + 0.5 * std::uniform_real_distribution<double>(0, 1)(rng));
  };
  while (!stop_.load()) {
    const absl::Time served_since = absl::Now();
    const std::string reason = Serve();
    if (stop_.load()) {
      break;
    }
    main_.Reset();
    const size_t previous_relay = attached_;
    const std::string previous_address = proxy_address();
    NodeEvent lost;
    lost.kind = NodeEvent::Kind::kRelayLost;
    lost.relay = current_relay();
    lost.reason = reason;
    Emit(std::move(lost));
    // The connection dropped: reconnect with the same identity (same lease, same address).
    // A session that ended soon after it began (taken over by another process holding
    // our key, or refused) is not retried at once: two processes with one key would
    // otherwise take the session from each other in a tight loop.
    if (absl::Now() - served_since >= kStableSession) {
      backoff = options_.initial_backoff;
    } else {
      takeovers_or_quick_drops_.fetch_add(1);
      if (!SleepUnlessStopped(jittered())) {
        break;
      }
      backoff = std::min(backoff * 2, options_.max_backoff);
    }
    for (;;) {
      absl::StatusOr<std::string> address = Connect(absl::Hours(24 * 365));
      if (address.ok() || stop_.load()) {
        break;
      }
      RELAY_LOG(WARNING) << "reconnect failed: " << address.status().message();
      if (!SleepUnlessStopped(jittered())) {
        break;
      }
      backoff = std::min(backoff * 2, options_.max_backoff);
    }
    if (!stop_.load()) {
      reconnects_.fetch_add(1);
      ReportAttached(previous_relay, previous_address);
    }
  }
}

std::string NodeClient::current_relay() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (proxy_address_.empty() || attached_ >= targets_.size()) {
    return "";
  }
  const HostPort& r = targets_[attached_];
  return FormatHostPort(r.host, r.port);
}

bool NodeClient::KeepaliveIfDue(ServeState* state, std::string* why) {
  if (absl::Now() < state->next_keepalive) {
    return true;
  }
  if (options_.max_missed_keepalives > 0 && state->unanswered >= options_.max_missed_keepalives) {
    // Frozen, or cut off without a reset: the TCP connection looks fine but nothing comes
    // back. Move on, starting with the next relay in the list.
    relay_moves_.fetch_add(1);
    start_at_ = (attached_ + 1) % targets_.size();
    RELAY_LOG(WARNING) << "relay " << current_relay() << " answered none of the last "
                       << state->unanswered << " Keepalives; moving to the next relay";
    *why = absl::StrCat("answered none of ", state->unanswered, " Keepalives");
    return false;
  }
  if (!net::WriteAllUntil(main_.get(), BuildFrame(kOpKeepalive, "", options_.local_address, false),
                          absl::Now() + options_.io_timeout)
           .ok()) {
    *why = "a Keepalive could not be written";
    return false;
  }
  state->next_keepalive = absl::Now() + options_.keepalive_interval;
  ++state->unanswered;
  return true;
}

bool NodeClient::ReadFrames(ServeState* state, std::string* why) {
  char tmp[65536];
  const ssize_t n = ::recv(main_.get(), tmp, sizeof(tmp), MSG_DONTWAIT);
  if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
    *why = n == 0 ? "the relay closed the connection" : ErrnoText(errno);  // reconnect
    return false;
  }
  if (n < 0) {
    return true;
  }
  state->stream.Append(absl::string_view(tmp, static_cast<size_t>(n)));
  FrameStream::Frame frame;
  FrameStream::Result taken;
  while ((taken = state->stream.Take(&frame)) == FrameStream::Result::kFrame) {
    if (!Receive(frame, &state->unanswered, why)) {
      return false;
    }
  }
  if (taken == FrameStream::Result::kBad) {
    *why = absl::StrCat("the relay sent a bad frame header (",
                        std::string(FrameErrorName(state->stream.error())), ")");
    return false;
  }
  return true;
}

std::string NodeClient::Serve() {
  const bool may_move_back = options_.move_back_interval > absl::ZeroDuration();
  ServeState state{FrameStream(options_.network_id, FramePayloadLimit(options_.max_message_bytes)),
                   absl::Now() + options_.keepalive_interval, 0};
  absl::Time next_move_back = absl::Now() + options_.move_back_interval;
  bool stalled = false;
  std::string why;
  while (!stop_.load() && main_.valid()) {
    if (may_move_back && attached_ > 0 && absl::Now() >= next_move_back) {
      next_move_back = absl::Now() + options_.move_back_interval;
      if (TryMoveBack()) {
        // A new main connection (the old one closed with its session): start afresh.
        state.stream.Clear();
        state.unanswered = 0;
        state.next_keepalive = absl::Now() + options_.keepalive_interval;
        continue;
      }
    }
    // Callbacks behind by max_queued_bytes: stop reading (Keepalives still go out).
    const bool full = QueueFull();
    if (full && !stalled) {
      dispatch_stalls_.fetch_add(1);
    }
    stalled = full;
    absl::Time wake = state.next_keepalive;
    if (may_move_back && attached_ > 0) {
      wake = std::min(wake, next_move_back);
    }
    const absl::Duration left = std::max(wake - absl::Now(), absl::ZeroDuration());
    pollfd p[2] = {{main_.get(), static_cast<short>(full ? 0 : POLLIN), 0},
                   {wake_pipe_[0], POLLIN, 0}};
    poll(p, 2,
         static_cast<int>(
             absl::ToInt64Milliseconds(full ? std::min(left, absl::Milliseconds(20)) : left)) +
             1);
    if (!KeepaliveIfDue(&state, &why)) {
      return why;
    }
    if (!full && (p[0].revents & (POLLIN | POLLHUP | POLLERR)) && !ReadFrames(&state, &why)) {
      return why;
    }
  }
  return stop_.load() ? "stopped" : "the connection was lost";
}

bool NodeClient::Receive(const FrameStream::Frame& frame, int* unanswered, std::string* why) {
  ReceivedMessage received;
  received.frame_bytes = frame.size;
  bool parsed = false;
  if (!frame.header.compressed()) {
    parsed = received.message.ParseFromArray(frame.payload.data(),
                                             static_cast<int>(frame.payload.size()));
  } else {
    absl::StatusOr<std::string> inflated =
        Decompress(static_cast<CompressAlgorithm>(frame.header.algorithm()), frame.payload,
                   options_.max_message_bytes);
    parsed = inflated.ok() && received.message.ParseFromString(*inflated);
  }
  if (!parsed) {
    undecodable_messages_.fetch_add(1);
    return true;  // not a Message: nothing to show
  }
  const wire::Message& m = received.message;
  if (m.sender().address() == relay_address_) {
    if (!FromRelay(m)) {
      forged_relay_messages_.fetch_add(1);  // a peer posing as the relay
      return true;
    }
    if (m.opcode() == kOpDisconnect) {
      *why = "the relay sent a Disconnect";
      return false;
    }
    if (m.opcode() == kOpKeepaliveResponse) {
      *unanswered = 0;
    }
    return true;  // KeepaliveResponse, ProxyResponse, Pong, MetricResponse
  }
  received.payload = m.message();
  if (m.opcode() == kOpBytes) {
    wire::Bytes bytes;
    if (bytes.ParseFromString(m.message())) {
      received.payload = bytes.data();
    }
  }
  Deliver(std::move(received));
  return true;
}

absl::Status NodeClient::SendTo(const std::string& address, uint32_t opcode,
                                const std::string& inner, bool reply_flag) {
  auto result = std::make_shared<std::promise<absl::Status>>();
  std::future<absl::Status> written = result->get_future();
  absl::Status queued = Queue(address, opcode, inner, reply_flag,
                              [result](absl::Status s) { result->set_value(std::move(s)); });
  if (!queued.ok()) {
    return queued;
  }
  if (written.wait_for(absl::ToChronoNanoseconds(2 * options_.io_timeout + absl::Seconds(1))) !=
      std::future_status::ready) {
    return absl::DeadlineExceededError(absl::StrCat("sending to ", address, " timed out"));
  }
  return written.get();
}

absl::Status NodeClient::Queue(const std::string& address, uint32_t opcode,
                               const std::string& inner, bool reply_flag,
                               std::function<void(absl::Status)> done) {
  absl::StatusOr<HostPort> to = ParsePeerAddress(address);
  if (!to.ok()) {
    return to.status();
  }
  const std::string own = proxy_address();
  const std::string sender = own.empty() ? options_.local_address : absl::StrCat("tcp://", own);
  return Sender().Send(*to, BuildFrame(opcode, inner, sender, reply_flag), std::move(done));
}

absl::Status NodeClient::SendBytes(const std::string& address, const std::string& data,
                                   bool reply_flag) {
  wire::Bytes bytes;
  bytes.set_data(data);
  return SendTo(address, kOpBytes, bytes.SerializeAsString(), reply_flag);
}

absl::Status NodeClient::SendBytesAsync(const std::string& address, const std::string& data,
                                        std::function<void(absl::Status)> done, bool reply_flag) {
  wire::Bytes bytes;
  bytes.set_data(data);
  return Queue(address, kOpBytes, bytes.SerializeAsString(), reply_flag, std::move(done));
}

}  // namespace relay::node
