#include "server/main_connection.h"

#include <errno.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/string_view.h"
#include "base/log.h"
#include "core/control_codec.h"
#include "core/frame_header.h"
#include "core/frame_scan.h"
#include "core/signing.h"
#include "net/socket_ops.h"
#include "server/proxy_connection.h"
#include "server/session.h"
#include "server/shard.h"

namespace relay {
namespace {

constexpr int kReadsPerTurn = 16;
// Control frames handled per connection per turn. A node sends a few a minute; a flood
// from many connections then costs each reactor turn at most this many per connection,
// and the rest wait in in_ (the socket unread) for the next turn, so forwarding on the
// same reactor is never more than one short turn behind.
constexpr int kFramesPerTurn = 8;

// Control replies a node may leave unread before it is dropped as not reading: a few of
// the largest replies (a MetricRequest echo is about its request's size).
size_t MaxPendingControl(const RelayConfig& config) {
  return 4 * size_t{config.max_control_bytes} + 64 * 1024;
}

}  // namespace

MainConnection::MainConnection(Shard* shard, net::UniqueFd fd, uint64_t source_ip,
                               uint64_t next_nonce, absl::Time last_activity, bool seen_frame)
    : shard_(shard),
      fd_(std::move(fd)),
      seen_frame_(seen_frame),
      source_ip_(source_ip),
      next_nonce_(next_nonce),
      last_activity_(last_activity),
      keepalive_timer_([this] { OnKeepaliveTimer(); }),
      write_timer_([this] { OnWriteTimer(); }),
      soft_timer_([this] { OnSoftLimitTimer(); }),
      throttle_timer_([this] { OnThrottleTimer(); }) {}

MainConnection::~MainConnection() {
  Unregister();
  shard_->ReleaseControlBytes(held_input_);
  shard_->source_limits().Release(SourceLimits::kMain, source_ip_);
}

std::string MainConnection::PeerName() const { return net::PeerName(fd_.get()); }

bool MainConnection::Start() {
  absl::StatusOr<uint64_t> handle =
      shard_->reactor()->Register(fd_.get(), EPOLLIN | EPOLLOUT | EPOLLRDHUP, this);
  if (!handle.ok()) {
    return false;
  }
  handle_ = *handle;
  registered_ = true;
  const RelayConfig& config = shard_->context().config;
  shard_->reactor()->timers().Arm(
      &keepalive_timer_, last_activity_ + (seen_frame_ ? config.keepalive_timeout
                                                       : std::min(config.first_frame_timeout,
                                                                  config.keepalive_timeout)));
  return true;
}

void MainConnection::Unregister() {
  if (registered_) {
    shard_->reactor()->Unregister(handle_, fd_.get());
    registered_ = false;
  }
}

void MainConnection::OnEvents(uint32_t events) {
  if (closed()) {
    return;
  }
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
    readable_ = true;
  }
  if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) {
    writable_ = true;
  }
  if (parse_later_ && !Held(kNoParse)) {
    ProcessInput();  // whole frames left by the last turn's budget
  }
  if (readable_ && !Held(kNoRead) && !parse_later_ && !closed()) {
    ReadSome();
  }
  if (!closed()) {
    Flush();
  }
}

void MainConnection::SetPending(std::string input, std::string output) {
  in_ = std::move(input);
  in_off_ = 0;
  out_ = std::move(output);
  out_off_ = 0;
}

void MainConnection::Thaw() {
  holds_ &= ~kFrozen;
  if (!closed()) {
    ProcessInput();  // what arrived before the freeze
  }
  if (!closed()) {
    shard_->reactor()->MarkReady(this);  // what arrived during it
  }
}

void MainConnection::ProcessInput() {
  int budget = kFramesPerTurn;
  ParseFrames(&budget);
  if (!closed() && !closing() && !AccountHeldInput()) {
    return;
  }
  if (!closed() && readable_ && !parse_later_ && !Held(kNoRead)) {
    shard_->reactor()->MarkReady(this);  // the socket was left unread while frames waited
  }
  if (!closed()) {
    Flush();
  }
}

void MainConnection::ReadSome() {
  // Read into the reactor's scratch buffer and keep only the bytes received: an idle
  // node's connection then holds no read buffer at all (memory per session).
  uint8_t* scratch = shard_->reactor()->scratch();
  int budget = kFramesPerTurn;
  for (int i = 0; i < kReadsPerTurn; ++i) {
    net::IoResult r = net::Recv(fd_.get(), scratch, net::Reactor::kScratchBytes);
    switch (r.status) {
      case net::IoStatus::kOk:
        break;
      case net::IoStatus::kAgain:
        readable_ = false;
        return;
      case net::IoStatus::kEof:
        Close("node closed the connection");
        return;
      case net::IoStatus::kError:
        Close("read failed");
        return;
    }
    in_.append(reinterpret_cast<const char*>(scratch), r.bytes);
    ParseFrames(&budget);
    if (closed() || closing() || !AccountHeldInput() || Held(kThrottled) || parse_later_) {
      return;
    }
  }
  shard_->reactor()->MarkReady(this);  // read budget spent; more may be waiting
}

void MainConnection::ParseFrames(int* budget) {
  const ServerContext& ctx = shard_->context();
  parse_later_ = false;
  while (!closed() && !Held(kNoParse) && in_.size() - in_off_ >= kFrameHeaderSize) {
    if (*budget == 0 || !shard_->TakeControlFrameSlot()) {
      ParseNextTurn();  // this turn's share (the connection's or the reactor's) is spent
      break;
    }
    const ControlFrameScan scan = ScanControlFrame(absl::string_view(in_).substr(in_off_),
                                                   ctx.config.network_id, ctx.max_control_bytes);
    if (scan.kind == ControlFrameScan::Kind::kNeedMore) {
      break;  // wait for the rest; bounded by max_control_bytes
    }
    if (scan.kind != ControlFrameScan::Kind::kFrame) {
      RefuseHeader(scan);
      return;
    }
    if (!TakeControlToken()) {
      break;  // over --control_rate: the frame waits in in_, and the socket unread
    }
    in_off_ += scan.consumed;
    --*budget;
    if (!HandleFrame(scan)) {
      return;  // closed, closing or moved to another shard
    }
  }
  if (out_.size() - out_off_ > MaxPendingControl(ctx.config)) {
    shard_->stats().Add(Counter::kMainSlowReader);
    RELAY_LOG_LIMITED(WARNING) << "node " << PeerName() << " left " << out_.size() - out_off_
                               << " bytes of control replies unread; connection closed "
                                  "(counted as main_slow_reader)";
    Close("node does not read its control replies");
    return;
  }
  if (in_off_ == in_.size()) {
    std::string().swap(in_);  // nothing pending: give the memory back
    in_off_ = 0;
  } else if (in_off_ > 0 && in_off_ * 2 >= in_.size()) {
    in_.erase(0, in_off_);
    in_off_ = 0;
  }
}

void MainConnection::RefuseHeader(const ControlFrameScan& scan) {
  if (scan.kind == ControlFrameScan::Kind::kTooLarge) {
    RefuseLargeControl(scan.header.length);
    return;
  }
  shard_->stats().Add(Counter::kMainProtocolErrors);
  RELAY_LOG_LIMITED(WARNING) << "main connection from " << PeerName()
                             << " sent a bad frame header (" << FrameErrorName(scan.error)
                             << ", length " << scan.header.length
                             << "); connection closed (counted as main_protocol_errors)";
  Close("bad frame header");
}

bool MainConnection::HandleFrame(const ControlFrameScan& scan) {
  const ServerContext& ctx = shard_->context();
  ShardStats& stats = shard_->stats();
  if (scan.header.compressed()) {
    stats.Add(Counter::kCompressedControl);
    RELAY_LOG_LIMITED(WARNING) << "ignoring a compressed control message (algorithm "
                               << int{scan.header.algorithm()}
                               << "; counted as compressed_control)";
    return true;
  }
  absl::StatusOr<wire::Message> msg = ctx.codec->Parse(scan.payload);
  if (!msg.ok()) {
    stats.Add(Counter::kMainProtocolErrors);
    RELAY_LOG_LIMITED(WARNING) << "invalid control message from " << PeerName() << ": "
                               << msg.status().message()
                               << "; connection closed (counted as main_protocol_errors)";
    Close("invalid control message");
    return false;
  }
  Signature signature = Signature::kUnchecked;
  if (!CheckSignature(*msg, scan, &signature)) {
    return false;  // waits for the signature budget, or refused
  }
  stats.Add(Counter::kControlMessages);
  ++frames_from_node_;
  bytes_from_node_ += scan.consumed;
  seen_frame_ = true;
  last_activity_ = shard_->reactor()->clock()->Now();
  shard_->reactor()->timers().Extend(&keepalive_timer_,
                                     last_activity_ + ctx.config.keepalive_timeout);
  if (ctx.codec->AppendStatelessReply(*msg, next_nonce_, &out_)) {
    ++next_nonce_;
    return true;
  }
  return Dispatch(*msg, signature);
}

bool MainConnection::Dispatch(const wire::Message& msg, Signature signature) {
  switch (msg.opcode()) {
    case kOpProxyRequest: {
      // Moved to another shard, or closed: stop.
      const bool answered =
          shard_->OnProxyRequest(this, msg, signature) == Shard::RequestOutcome::kAnswered;
      if (answered && !msg.signature().empty()) {
        verified_key_ = msg.sender().net_key();  // a signed claim accepted: checked
      }
      return answered;
    }
    case kOpDisconnect:
      shard_->stats().Add(Counter::kDisconnectsReceived);
      Close("node sent Disconnect");
      return false;
    default:
      shard_->stats().Add(Counter::kUnknownOpcodes);
      return true;
  }
}

bool MainConnection::CheckSignature(const wire::Message& msg, const ControlFrameScan& scan,
                                    Signature* signature) {
  const RelayConfig& config = shard_->context().config;
  const bool unsigned_message = msg.signature().empty();
  if (!unsigned_message && !verified_key_.empty() && msg.sender().net_key() == verified_key_) {
    *signature = Signature::kValid;  // the key this connection proved: no check again
    return true;
  }
  const bool check =
      !unsigned_message && (config.require_signatures || msg.opcode() == kOpProxyRequest);
  if (check && !TakeSignatureToken()) {
    in_off_ -= scan.consumed;    // parsed again when its token is due
    control_token_owed_ = true;  // its control token is paid
    return false;
  }
  if (!config.require_signatures) {
    return true;  // a signed claim is checked by CheckClaim, after the IP's claim rate
  }
  // Every control message must be validly signed (PROTOCOL section 6).
  if (check) {
    shard_->stats().Add(Counter::kSignatureChecks);
    *signature = VerifyMessage(msg).ok() ? Signature::kValid : Signature::kInvalid;
  }
  if (*signature == Signature::kValid) {
    verified_key_ = msg.sender().net_key();
    return true;
  }
  shard_->stats().Add(unsigned_message ? Counter::kUnsignedRefused : Counter::kBadSignatures);
  RELAY_LOG_LIMITED(WARNING) << "main connection from " << PeerName() << " sent an "
                             << (unsigned_message ? "unsigned" : "invalidly signed")
                             << " control message under --require_signatures; "
                                "Disconnect sent, connection closed";
  SendControl(kOpDisconnect, wire::Disconnect(), nullptr);
  CloseAfterFlush();
  return false;
}

double MainConnection::ControlLevel(absl::Time now) const {
  const RelayConfig& config = shard_->context().config;
  return control_bucket_.Level(config.control_rate, config.control_burst, now);
}

void MainConnection::RestoreControlLevel(double level, absl::Time now) {
  const RelayConfig& config = shard_->context().config;
  if (config.control_rate > 0 && level < config.control_burst) {
    control_bucket_.Restore(level, config.control_burst, now);
  }
}

bool MainConnection::TakeControlToken() {
  if (control_token_owed_) {
    control_token_owed_ = false;  // queued for by the throttle that just ended
    return true;
  }
  const RelayConfig& config = shard_->context().config;
  const absl::Time now = shard_->reactor()->clock()->Now();
  absl::Duration wait;
  const char* limit = nullptr;
  const bool own_rate = config.control_rate > 0;
  if (own_rate && !control_bucket_.Take(config.control_rate, config.control_burst, now, &wait)) {
    limit = "--control_rate";
  } else if (!shard_->source_limits().AllowControl(source_ip_, now, &wait)) {
    // In the IP's queue: its token (and the connection's own) are this message's once
    // `wait` is over, so each throttled connection of the IP wakes once, in turn.
    limit = "--control_per_ip";
    control_token_owed_ = true;
  } else {
    return true;
  }
  holds_ |= kThrottled;
  shard_->stats().Add(Counter::kMainControlThrottled);
  RELAY_LOG_LIMITED(WARNING) << "main connection from " << PeerName()
                             << " sends control messages faster than " << limit
                             << " allows; not read until it does (counted as "
                                "main_control_throttled)";
  shard_->reactor()->timers().Arm(&throttle_timer_, now + wait);
  return false;
}

bool MainConnection::TakeSignatureToken() {
  SignatureBudget& budget = shard_->signature_budget();
  const uint64_t turn = shard_->reactor()->turn();
  if (signature_token_owed_) {  // queued for by the throttle that just ended
    if (!budget.Redeem(turn)) {
      ParseNextTurn();
      return false;
    }
    signature_token_owed_ = false;
    return true;
  }
  const absl::Time now = shard_->reactor()->clock()->Now();
  absl::Duration wait;
  switch (budget.Take(source_ip_, now, turn, &wait)) {
    case SignatureBudget::Grant::kNow:
      return true;
    case SignatureBudget::Grant::kNextTurn:
      ParseNextTurn();
      return false;
    case SignatureBudget::Grant::kQueued:
      break;
  }
  signature_token_owed_ = true;
  holds_ |= kThrottled;
  shard_->stats().Add(Counter::kSignatureWaits);
  RELAY_LOG_LIMITED(WARNING) << "the reactor's --signature_budget is spent and " << PeerName()
                             << "'s source sent many signed messages this second: its next "
                                "one waits (counted as signature_waits)";
  shard_->reactor()->timers().Arm(&throttle_timer_, now + wait);
  return false;
}

void MainConnection::ParseNextTurn() {
  parse_later_ = true;
  shard_->reactor()->MarkReady(this);
}

void MainConnection::OnThrottleTimer() {
  holds_ &= ~kThrottled;
  if (closed() || Held(kFrozen)) {
    return;  // Thaw() reads and parses what waits
  }
  ProcessInput();
  if (!closed() && !Held(kThrottled)) {
    shard_->reactor()->MarkReady(this);  // the socket was left unread
  }
}

void MainConnection::SendControl(uint32_t opcode, const google::protobuf::MessageLite& inner,
                                 const wire::Message* request) {
  shard_->context().codec->AppendMessage(opcode, inner, next_nonce_++,
                                         request ? request->request_nonce() : 0, request != nullptr,
                                         &out_);
}

void MainConnection::CloseAfterFlush() {
  holds_ |= kClosing;
  Flush();
}

bool MainConnection::AccountHeldInput() {
  const uint64_t held = in_.size() - in_off_;
  if (held > held_input_ && !shard_->HoldControlBytes(held - held_input_)) {
    shard_->stats().Add(Counter::kMainControlBudget);
    RELAY_LOG_LIMITED(WARNING) << "main connection from " << PeerName()
                               << " closed: partial control frames of this reactor would "
                                  "exceed --control_budget (counted as main_control_budget)";
    Close("control budget");
    return false;
  }
  if (held < held_input_) {
    shard_->ReleaseControlBytes(held_input_ - held);
  }
  held_input_ = held;
  return true;
}

void MainConnection::RefuseLargeControl(uint32_t length) {
  shard_->stats().Add(Counter::kMainControlTooLarge);
  RELAY_LOG_LIMITED(WARNING) << "main connection from " << PeerName() << " sent a " << length
                             << "-byte control frame (--max_control_bytes="
                             << shard_->context().config.max_control_bytes
                             << "); Disconnect sent, connection closed (counted as "
                                "main_control_too_large)";
  SendControl(kOpDisconnect, wire::Disconnect(), nullptr);
  CloseAfterFlush();
}

void MainConnection::OnKeepaliveTimer() {
  if (!seen_frame_) {
    shard_->stats().Add(Counter::kFirstFrameTimeouts);
    Close("no valid frame within --first_frame_timeout");
    return;
  }
  shard_->stats().Add(Counter::kKeepaliveTimeouts);
  Close("keepalive timeout");
}

net::UniqueFd MainConnection::TakeFd() {
  Unregister();
  handed_off_ = true;  // the connection lives on elsewhere: not counted as closed
  return std::move(fd_);
}

uint64_t MainConnection::TakeSourceIp() { return std::exchange(source_ip_, 0); }

std::string MainConnection::TakeInput() {
  std::string rest = in_.substr(in_off_);
  in_.clear();
  in_off_ = 0;
  return rest;
}

std::string MainConnection::TakeOutput() {
  std::string rest = out_.substr(out_off_);
  out_.clear();
  out_off_ = 0;
  return rest;
}

void MainConnection::Abort(const char* reason) {
  if (fd_.valid()) {
    net::SetAbortiveClose(fd_.get());
  }
  Close(reason);
}

void MainConnection::Close(const char* reason) {
  if (close_done_) {
    return;
  }
  close_done_ = true;
  close_reason_ = reason;
  if (session_ != nullptr && session_->main() == this && !handed_off_) {
    RELAY_LOG_SESSION << "session end: node " << PeerName() << " id "
                      << IdPrefix(session_->connection_id()) << " port "
                      << shard_->PortName(session_->address(), session_->port()) << " after "
                      << absl::FormatDuration(
                             absl::Trunc(shard_->reactor()->clock()->Now() - session_->started_at,
                                         absl::Milliseconds(1)))
                      << ": " << reason << "; " << written_ << " bytes to the node";
  }
  Unregister();
  fd_.Reset();
  shard_->reactor()->timers().Cancel(&keepalive_timer_);
  shard_->reactor()->timers().Cancel(&write_timer_);
  shard_->reactor()->timers().Cancel(&soft_timer_);
  shard_->reactor()->timers().Cancel(&throttle_timer_);
  if (locked_ != nullptr) {
    ProxyConnection* conn = locked_;
    locked_ = nullptr;
    conn->ReturnCommit();
  }
  while (PopQueueHead() != nullptr) {
  }
  if (!handed_off_) {
    shard_->stats().Add(Counter::kMainClosed);
  }
  shard_->OnMainClosed(this);
}

}  // namespace relay
