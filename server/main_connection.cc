#include "server/main_connection.h"

#include <errno.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/string_view.h"
#include "core/control_codec.h"
#include "core/frame_header.h"
#include "core/frame_scan.h"
#include "core/log.h"
#include "core/signing.h"
#include "net/socket_ops.h"
#include "server/proxy_connection.h"
#include "server/session.h"
#include "server/shard.h"

namespace relay {
namespace {

constexpr int kReadsPerTurn = 16;
// Bytes written to one main connection per loop turn before other connections get a go.
constexpr uint64_t kWriteBudget = 4u << 20;
// One gathered write (WriteGathered) covers at most this many connections and buffers.
constexpr size_t kMaxGather = 64;
constexpr size_t kMaxGatherIov = 128;

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
  if (readable_ && !closing_ && !frozen_ && !throttled_) {
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
  frozen_ = false;
  if (!closed()) {
    ProcessInput();  // what arrived before the freeze
  }
  if (!closed()) {
    shard_->reactor()->MarkReady(this);  // what arrived during it
  }
}

void MainConnection::ProcessInput() {
  ParseFrames();
  if (!closed() && !closing_ && !AccountHeldInput()) {
    return;
  }
  if (!closed()) {
    Flush();
  }
}

void MainConnection::ReadSome() {
  // Read into the reactor's scratch buffer and keep only the bytes received: an idle
  // node's connection then holds no read buffer at all (memory per session).
  uint8_t* scratch = shard_->reactor()->scratch();
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
    ParseFrames();
    if (closed() || closing_ || !AccountHeldInput() || throttled_) {
      return;
    }
  }
  shard_->reactor()->MarkReady(this);  // read budget spent; more may be waiting
}

void MainConnection::ParseFrames() {
  const ServerContext& ctx = shard_->context();
  ShardStats& stats = shard_->stats();
  while (!closed() && !closing_ && !claim_pending_ && !frozen_ && !throttled_ &&
         in_.size() - in_off_ >= kFrameHeaderSize) {
    const ControlFrameScan scan = ScanControlFrame(absl::string_view(in_).substr(in_off_),
                                                   ctx.config.network_id, ctx.max_control_bytes);
    const FrameHeader& h = scan.header;
    if (scan.kind == ControlFrameScan::Kind::kTooLarge) {
      RefuseLargeControl(h.length);
      return;
    }
    if (scan.kind == ControlFrameScan::Kind::kBadHeader) {
      stats.Add(Counter::kMainProtocolErrors);
      RELAY_LOG_LIMITED(WARNING) << "main connection from " << PeerName()
                                 << " sent a bad frame header (" << FrameErrorName(scan.error)
                                 << ", length " << h.length
                                 << "); connection closed (counted as main_protocol_errors)";
      Close("bad frame header");
      return;
    }
    if (scan.kind == ControlFrameScan::Kind::kNeedMore) {
      break;  // wait for the rest; bounded by max_control_bytes
    }
    if (!TakeControlToken()) {
      break;  // over --control_rate: the frame waits in in_, and the socket unread
    }
    const absl::string_view payload = scan.payload;
    in_off_ += scan.consumed;
    if (h.compressed()) {
      stats.Add(Counter::kCompressedControl);
      RELAY_LOG_LIMITED(WARNING) << "ignoring a compressed control message (algorithm "
                                 << int{h.algorithm()} << "; counted as compressed_control)";
      continue;
    }
    absl::StatusOr<wire::Message> msg = ctx.codec->Parse(payload);
    if (!msg.ok()) {
      stats.Add(Counter::kMainProtocolErrors);
      RELAY_LOG_LIMITED(WARNING) << "invalid control message from " << PeerName() << ": "
                                 << msg.status().message()
                                 << "; connection closed (counted as main_protocol_errors)";
      Close("invalid control message");
      return;
    }
    bool verified = false;
    if (ctx.config.require_signatures) {
      // Every control message must be validly signed (PROTOCOL section 6).
      const bool unsigned_message = msg->signature().empty();
      if (unsigned_message || !VerifyMessage(*msg).ok()) {
        stats.Add(unsigned_message ? Counter::kUnsignedRefused : Counter::kBadSignatures);
        RELAY_LOG_LIMITED(WARNING) << "main connection from " << PeerName() << " sent an "
                                   << (unsigned_message ? "unsigned" : "invalidly signed")
                                   << " control message under --require_signatures; "
                                      "Disconnect sent, connection closed";
        SendControl(kOpDisconnect, wire::Disconnect(), nullptr);
        CloseAfterFlush();
        return;
      }
      verified = true;
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
      continue;
    }
    switch (msg->opcode()) {
      case kOpProxyRequest:
        if (shard_->OnProxyRequest(this, *msg, verified) != Shard::RequestOutcome::kAnswered) {
          return;  // moved to another shard, or closed
        }
        break;
      case kOpDisconnect:
        stats.Add(Counter::kDisconnectsReceived);
        Close("node sent Disconnect");
        return;
      default:
        stats.Add(Counter::kUnknownOpcodes);
        break;
    }
  }
  if (out_.size() - out_off_ > MaxPendingControl(ctx.config)) {
    stats.Add(Counter::kMainSlowReader);
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
  throttled_ = true;
  shard_->stats().Add(Counter::kMainControlThrottled);
  RELAY_LOG_LIMITED(WARNING) << "main connection from " << PeerName()
                             << " sends control messages faster than " << limit
                             << " allows; not read until it does (counted as "
                                "main_control_throttled)";
  shard_->reactor()->timers().Arm(&throttle_timer_, now + wait);
  return false;
}

void MainConnection::OnThrottleTimer() {
  throttled_ = false;
  if (closed() || frozen_) {
    return;  // Thaw() reads and parses what waits
  }
  ProcessInput();
  if (!closed() && !throttled_) {
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
  closing_ = true;
  Flush();
}

void MainConnection::Enqueue(ProxyConnection* conn) {
  if (conn->queued || closed()) {
    return;
  }
  conn->queued = true;
  conn->queue_next = nullptr;
  if (queue_tail_ != nullptr) {
    queue_tail_->queue_next = conn;
  } else {
    queue_head_ = conn;
  }
  queue_tail_ = conn;
  if (writable_ && locked_ == nullptr && !flushing_) {
    if (session_ != nullptr) {
      // Write now: with hundreds of senders, waiting for the end of the turn would stage
      // every sender's run before the node's socket gets a byte (pipeline bubbles).
      Flush();
    } else {
      // Mid-takeover (the session is not attached yet): a write error now would close
      // this connection under the caller. Write at the end of the turn.
      shard_->reactor()->MarkReady(this);
    }
  }
}

void MainConnection::Forget(ProxyConnection* conn) {
  if (locked_ == conn) {
    locked_ = nullptr;
  }
  if (!conn->queued) {
    return;
  }
  ProxyConnection* prev = nullptr;
  for (ProxyConnection* p = queue_head_; p != nullptr; prev = p, p = p->queue_next) {
    if (p == conn) {
      (prev ? prev->queue_next : queue_head_) = p->queue_next;
      if (queue_tail_ == p) {
        queue_tail_ = prev;
      }
      break;
    }
  }
  conn->queued = false;
  conn->queue_next = nullptr;
}

void MainConnection::GiveQueueTo(MainConnection* next) {
  if (locked_ != nullptr) {
    ProxyConnection* conn = locked_;
    locked_ = nullptr;
    if (conn->commit_started()) {
      conn->AbortCommit();  // its frame is half on the old socket; drop that sender
    } else {
      conn->ReturnCommit();
      next->Enqueue(conn);
    }
  }
  while (queue_head_ != nullptr) {
    ProxyConnection* conn = queue_head_;
    queue_head_ = conn->queue_next;
    conn->queued = false;
    conn->queue_next = nullptr;
    next->Enqueue(conn);
  }
  queue_tail_ = nullptr;
}

void MainConnection::Flush() {
  flushing_ = true;
  const uint64_t before = written_;
  WriteOutput();
  flushing_ = false;
  WatchQueue(written_ != before);
}

bool MainConnection::HasPendingOutput() const {
  return out_off_ < out_.size() || locked_ != nullptr || queue_head_ != nullptr;
}

void MainConnection::WatchQueue(bool progress) {
  if (closed()) {
    return;
  }
  const RelayConfig& config = shard_->context().config;
  net::TimerWheel& timers = shard_->reactor()->timers();
  if (!HasPendingOutput()) {
    if (write_timer_.armed()) {
      timers.Cancel(&write_timer_);
    }
  } else if (!writable_) {
    // The node's socket is full: it must take bytes within --node_write_timeout.
    if (!write_timer_.armed()) {
      timers.Arm(&write_timer_, shard_->reactor()->clock()->Now() + config.node_write_timeout);
    } else if (progress) {
      timers.Extend(&write_timer_, shard_->reactor()->clock()->Now() + config.node_write_timeout);
    }
  }
  const uint64_t queued = (out_.size() - out_off_) + (session_ ? session_->queued_bytes() : 0);
  if (queued > config.node_queue_soft_bytes) {
    if (!soft_timer_.armed()) {
      timers.Arm(&soft_timer_, shard_->reactor()->clock()->Now() + config.node_queue_soft_time);
    }
  } else if (soft_timer_.armed()) {
    timers.Cancel(&soft_timer_);
  }
}

void MainConnection::OnWriteTimer() {
  if (closed() || !HasPendingOutput()) {
    return;
  }
  shard_->stats().Add(Counter::kNodeWriteTimeouts);
  RELAY_LOG_LIMITED(WARNING) << "node " << PeerName() << " took no byte for "
                             << absl::FormatDuration(shard_->context().config.node_write_timeout)
                             << " while data waited for it; closed, its staged frames dropped "
                                "(--node_write_timeout; counted as node_write_timeouts)";
  Abort("node takes no data");
}

void MainConnection::OnSoftLimitTimer() {
  const RelayConfig& config = shard_->context().config;
  const uint64_t queued = (out_.size() - out_off_) + (session_ ? session_->queued_bytes() : 0);
  if (closed() || queued <= config.node_queue_soft_bytes) {
    return;
  }
  shard_->stats().Add(Counter::kNodeQueueSoftLimit);
  RELAY_LOG_LIMITED(WARNING) << "node " << PeerName() << " kept more than "
                             << config.node_queue_soft_bytes << " bytes queued for "
                             << absl::FormatDuration(config.node_queue_soft_time)
                             << "; closed (--node_queue_soft_bytes; counted as "
                                "node_queue_soft_limit)";
  Abort("node reads too slowly");
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

bool MainConnection::WriteGathered(uint64_t* budget) {
  // One write for several connections needs the first two to gather; otherwise the
  // caller's one-connection commit, with no commit begun here and handed back.
  if (queue_head_ == nullptr || queue_head_->queue_next == nullptr || !queue_head_->CanGather() ||
      !queue_head_->queue_next->CanGather()) {
    return false;
  }
  // The queue's first connections whose whole frames sit in copy blocks, in queue order.
  ProxyConnection* conns[kMaxGather];
  size_t n = 0;
  iovec iov[kMaxGatherIov];
  size_t count = 0;
  uint64_t total = 0;
  for (ProxyConnection* c = queue_head_;
       c != nullptr && n < kMaxGather && count < kMaxGatherIov && total < *budget;
       c = c->queue_next) {
    if (!c->CanGather()) {
      break;
    }
    c->BeginCommit();
    conns[n++] = c;
    const uint64_t added = c->AppendCommitted(iov, &count, kMaxGatherIov, *budget - total);
    total += added;
    if (added < c->committing()) {
      break;  // the rest of it does not fit this write
    }
  }
  net::IoResult r{net::IoStatus::kAgain, 0, 0};
  if (n >= 2) {
    r = net::SendV(fd_.get(), iov, count);
  }
  if (n < 2 || r.status != net::IoStatus::kOk) {
    for (size_t i = 0; i < n; ++i) {
      conns[i]->ReturnCommit();  // nothing written: all still queued, in order
    }
    if (n < 2) {
      return false;  // the usual one-connection commit
    }
    if (r.status == net::IoStatus::kAgain) {
      writable_ = false;
    } else {
      Close("write failed");
    }
    return true;
  }
  written_ += r.bytes;
  *budget -= std::min<uint64_t>(*budget, r.bytes);
  if (r.bytes < total) {
    writable_ = false;  // the socket took less than offered: it is full
  }
  // Hand the written bytes out in queue order: whole commits leave the queue (and come
  // back to its tail if more frames wait), a partly written one holds the connection
  // until it is done, the rest stay queued as they were.
  uint64_t left = r.bytes;
  for (size_t i = 0; i < n; ++i) {
    ProxyConnection* c = conns[i];
    const uint64_t take = std::min(left, c->committing());
    if (take == 0) {
      c->ReturnCommit();
      continue;
    }
    left -= take;
    queue_head_ = c->queue_next;
    if (queue_head_ == nullptr) {
      queue_tail_ = nullptr;
    }
    c->queued = false;
    c->queue_next = nullptr;
    c->CommitWritten(take);
    if (c->committing() > 0) {
      locked_ = c;
    } else if (c->complete_bytes() > 0) {
      Enqueue(c);  // to the tail: senders take turns, a run at a time
    } else if (session_ != nullptr) {
      session_->ReapIfFinished(c);
    }
  }
  return true;
}

void MainConnection::WriteOutput() {
  uint64_t budget = kWriteBudget;
  while (writable_ && budget > 0 && !closed()) {
    if (locked_ == nullptr) {
      if (out_off_ < out_.size()) {
        net::IoResult r = net::Send(fd_.get(), out_.data() + out_off_, out_.size() - out_off_);
        if (r.status == net::IoStatus::kAgain) {
          writable_ = false;
          break;
        }
        if (r.status != net::IoStatus::kOk) {
          Close("write failed");
          return;
        }
        out_off_ += r.bytes;
        written_ += r.bytes;
        budget -= std::min<uint64_t>(budget, r.bytes);
        if (out_off_ == out_.size()) {
          std::string().swap(out_);
          out_off_ = 0;
        }
        continue;
      }
      if (closing_) {
        Close("refused");
        return;
      }
      ProxyConnection* conn = queue_head_;
      if (conn == nullptr) {
        return;
      }
      if (WriteGathered(&budget)) {
        continue;
      }
      queue_head_ = conn->queue_next;
      if (queue_head_ == nullptr) {
        queue_tail_ = nullptr;
      }
      conn->queued = false;
      conn->queue_next = nullptr;
      if (conn->BeginCommit() == 0) {
        continue;
      }
      locked_ = conn;
    }
    ProxyConnection* conn = locked_;
    const ProxyConnection::CommitResult res = conn->CommitTo(fd_.get(), budget);
    budget -= std::min(budget, res.bytes);
    written_ += res.bytes;
    if (res.error != 0) {
      Close("write failed");
      return;
    }
    if (conn->committing() == 0) {
      locked_ = nullptr;
      if (conn->complete_bytes() > 0) {
        Enqueue(conn);  // to the tail: senders take turns, a run at a time
      } else if (session_ != nullptr) {
        session_->ReapIfFinished(conn);
      }
    }
    if (res.out_blocked) {
      writable_ = false;
    }
  }
  if (writable_ && budget == 0) {
    shard_->reactor()->MarkReady(this);
  }
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
  while (queue_head_ != nullptr) {
    ProxyConnection* conn = queue_head_;
    queue_head_ = conn->queue_next;
    conn->queued = false;
    conn->queue_next = nullptr;
  }
  queue_tail_ = nullptr;
  if (!handed_off_) {
    shard_->stats().Add(Counter::kMainClosed);
  }
  shard_->OnMainClosed(this);
}

}  // namespace relay
