#include "server/proxy_connection.h"

#include <errno.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "base/log.h"
#include "core/frame_header.h"
#include "core/frame_scan.h"
#include "net/socket_ops.h"
#include "server/main_connection.h"
#include "server/session.h"
#include "server/shard.h"

namespace relay {
namespace {

// Bytes staged per connection per loop turn before other connections get a go.
constexpr uint64_t kReadBudget = 1u << 20;
// After a frame this large, peek only at the next header instead of a 64 KiB window.
// Below it a window holds two or more frames, moved by one splice (fewer syscalls per
// frame; its measurement is in the commit that set it).
constexpr uint32_t kLargeFrame = 32 * 1024;
// Staging by copy reads this much past the current frame (the next frames, or the next
// header), within the staging cap.
constexpr uint64_t kCopyReadAhead = 64 * 1024;

}  // namespace

ProxyConnection::ProxyConnection(Shard* shard, Session* session, net::UniqueFd fd,
                                 uint64_t source_ip)
    : shard_(shard),
      session_(session),
      fd_(std::move(fd)),
      source_ip_(source_ip),
      staged_(shard->reactor(), &shard->stats()),
      deadline_([this] { OnDeadline(); }),
      pipe_retry_([this] { OnPipeRetry(); }) {}

ProxyConnection::~ProxyConnection() {
  Discard();
  shard_->source_limits().Release(SourceLimits::kPeer, source_ip_);
}

bool ProxyConnection::Start() {
  absl::StatusOr<uint64_t> handle =
      shard_->reactor()->Register(fd_.get(), EPOLLIN | EPOLLRDHUP, this);
  if (!handle.ok()) {
    return false;
  }
  handle_ = *handle;
  registered_ = true;
  shard_->reactor()->timers().Arm(
      &deadline_, shard_->reactor()->clock()->Now() + shard_->context().config.peer_idle_timeout);
  return true;
}

void ProxyConnection::OnEvents(uint32_t events) {
  if (closed()) {
    return;
  }
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
    readable_ = true;
  }
  if (events & (EPOLLRDHUP | EPOLLHUP)) {
    peer_closed_ = true;
  }
  ReadSome();
}

void ProxyConnection::OnStageAvailable() { shard_->reactor()->MarkReady(this); }

void ProxyConnection::ReadSome() {
  if (wait_ == Wait::kPipe && pipe_retry_.armed()) {
    return;  // the retry timer calls back
  }
  wait_ = Wait::kNone;
  now_ = shard_->reactor()->clock()->Now();
  uint64_t budget = kReadBudget;
  while (readable_ && !closed() && budget > 0) {
    if (staged_.bytes() == 0) {
      staged_.set_copy(PreferCopy());
    }
    // A header cut between two copy reads is finished by copy, whatever comes next.
    const bool copying = staged_.copy() || pos_.header_have > 0;
    const Step step = copying                ? ReadCopied(&budget)
                      : pos_.frame_left == 0 ? ReadAtBoundary(&budget)
                                             : ReadFrameBody(&budget);
    if (step == Step::kGone) {
      return;
    }
    if (step != Step::kProgress) {
      break;
    }
  }
  if (wait_ == Wait::kNode && committing_ == 0 && complete_bytes_ == 0) {
    // Nothing staged can drain, so this connection could never move again: the frame
    // does not fit in the pipes we may use (pipe sizes capped by the kernel).
    shard_->stats().Add(Counter::kProxyStageFailures);
    RELAY_LOG_LIMITED(ERROR) << "a frame from " << net::PeerName(fd_.get())
                             << " could not be staged in the pipes allowed per connection "
                                "(raise fs.pipe-max-size or lower --max_frame_bytes); sender "
                                "dropped (counted as proxy_stage_failures); pipes="
                             << staged_.pipe_count() << " staged=" << staged_.bytes()
                             << " frame_left=" << pos_.frame_left
                             << " frame_size=" << pos_.frame_size;
    Drop();
    return;
  }
  NotifyMain();
  if (stop_at_boundary_ && !pos_.in_frame() && !closed()) {
    Drop();  // the frame it was in is whole: no new one
    return;
  }
  if (readable_ && wait_ == Wait::kNone && budget == 0 && !closed()) {
    shard_->reactor()->MarkReady(this);
  }
}

bool ProxyConnection::BeginsNoFrame(Step* step) {
  if (stop_at_boundary_) {
    Drop();  // draining: no new frame begins
    *step = Step::kGone;
    return true;
  }
  if (paused_) {
    wait_ = Wait::kPaused;  // live upgrade: the next frame goes to the new process
    *step = Step::kStopped;
    return true;
  }
  return false;
}

ProxyConnection::Step ProxyConnection::ReadAtBoundary(uint64_t* budget) {
  if (Step step; BeginsNoFrame(&step)) {
    return step;
  }
  const RelayConfig& config = shard_->context().config;
  uint8_t* scratch = shard_->reactor()->scratch();
  const uint64_t cap = config.stage_bytes;
  const uint64_t staged = staged_.bytes();
  const uint64_t room = staged < cap ? cap - staged : 0;
  if (room <= kFrameHeaderSize && staged > 0) {
    wait_ = Wait::kNode;
    return Step::kStopped;
  }
  const size_t want = pos_.last_length >= kLargeFrame
                          ? kFrameHeaderSize
                          : static_cast<size_t>(std::clamp<uint64_t>(room, kFrameHeaderSize,
                                                                     net::Reactor::kScratchBytes));
  const net::IoResult peek = net::Recv(fd_.get(), scratch, want, /*peek=*/true);
  if (peek.status == net::IoStatus::kAgain) {
    readable_ = false;
    return Step::kSocketEmpty;
  }
  if (peek.status != net::IoStatus::kOk) {
    OnPeerGone();
    return Step::kGone;
  }
  // Plan what to move: the whole frames in the window, and the start of a frame whose
  // header is in it (its body in the same splice, as far as the socket has it).
  const size_t n = peek.bytes;
  slow_sender_ = n < want;  // the socket held less than the window: the sender lags
  const StagePlan plan = PlanStage(scratch, n, config.network_id, config.max_frame_bytes, staged,
                                   cap, *budget, pos_.last_length);
  pos_.last_length = plan.last_length;
  if (plan.error != FrameError::kOk) {
    ProtocolError(plan.error);
    return Step::kGone;
  }
  if (plan.needs_room) {
    wait_ = Wait::kNode;  // the next frame needs the staged ones gone first
    return Step::kStopped;
  }
  if (plan.bytes == 0) {
    if (peer_closed_) {
      OnPeerGone();  // the sender left inside a header
      return Step::kGone;
    }
    readable_ = false;  // a header in pieces: the next segment wakes us
    return Step::kSocketEmpty;
  }
  const uint64_t granted = GrantStage(plan.bytes);
  if (granted == 0) {
    return Step::kStopped;
  }
  // Bytes past the peeked window may not have arrived yet: then an EAGAIN must be told
  // apart from a full pipe by asking the socket.
  const StageResult r = StageIn(granted, /*known_available=*/!plan.beyond_window || granted <= n);
  shard_->stage_budget().Unused(&session_->stage_account(), granted - r.moved);
  AccountPeeked(CountMovedFrames(plan, scratch, n, r.moved));
  *budget -= std::min(*budget, r.moved);
  const Step step = AfterStage(r, granted);
  if (step == Step::kProgress && n < want && r.moved == n && !peer_closed_) {
    // The peek returned less than it asked for, so it saw all the socket held, and all of
    // that is staged: the socket is empty. Bytes arriving after the peek raise a new
    // edge, so skip the peek that would say EAGAIN: at a low rate that is one syscall of
    // four per frame, paid before the frame goes out (latency). A FIN must still be read.
    readable_ = false;
    return Step::kSocketEmpty;
  }
  return step;
}

ProxyConnection::Step ProxyConnection::ReadFrameBody(uint64_t* budget) {
  // Inside a frame: become the session's head if it has none (the rest of our frame is
  // then reserved for us).
  shard_->stage_budget().ClaimHead(&session_->stage_account(), this, pos_.frame_left);
  const uint64_t want = std::min(pos_.frame_left, *budget);
  const uint64_t granted = GrantStage(want);
  if (granted == 0) {
    return Step::kStopped;
  }
  const StageResult r = StageIn(granted, /*known_available=*/false);
  shard_->stage_budget().Unused(&session_->stage_account(), granted - r.moved);
  pos_.frame_left -= r.moved;
  *budget -= std::min(*budget, r.moved);
  if (pos_.frame_left == 0) {
    shard_->stage_budget().DropHead(&session_->stage_account(), this);
    FrameCompleted(pos_.frame_size, 1);
  } else if (r.moved > 0) {
    shard_->stage_budget().ClaimHead(&session_->stage_account(), this, pos_.frame_left);
    // Each byte buys 1/--frame_min_rate seconds (lazy: no wheel work).
    frame_progress_ = now_;
    shard_->reactor()->timers().Extend(&deadline_, FrameDeadline());
  }
  return AfterStage(r, granted);
}

ProxyConnection::Step ProxyConnection::ReadCopied(uint64_t* budget) {
  if (Step step; !pos_.in_frame() && BeginsNoFrame(&step)) {
    return step;
  }
  // What the current frame (or header) still needs, then what follows it up to the
  // staging cap: one recvmsg() takes the rest of a frame with the next header, or many
  // small frames, and no peek is needed to find them. Draining or pausing reads no
  // further than the current frame.
  uint64_t want = 0;
  if (pos_.frame_left > 0) {
    shard_->stage_budget().ClaimHead(&session_->stage_account(), this, pos_.frame_left);
    want = std::min(pos_.frame_left, *budget);
  } else if (pos_.header_have > 0) {
    // A frame begun: it may be the session's head (its need, until the header is whole).
    want = kFrameHeaderSize - pos_.header_have;
    shard_->stage_budget().ClaimHead(&session_->stage_account(), this, want);
  }
  if (want == pos_.frame_left && staged_.copy() && !paused_ && !stop_at_boundary_) {
    const uint64_t cap = shard_->context().config.stage_bytes;
    const uint64_t after = staged_.bytes() + want;
    want += std::min({after < cap ? cap - after : 0, kCopyReadAhead, *budget - want});
  }
  if (want == 0) {
    wait_ = Wait::kNode;  // at a boundary, the staged frames fill the cap: they go first
    return Step::kStopped;
  }
  const uint64_t granted = GrantStage(want);
  if (granted == 0) {
    return Step::kStopped;
  }
  const StagingBuffer::Mark mark = staged_.TailMark();  // where the bytes will land
  const StageResult r = staged_.CopyIn(fd_.get(), granted, peer_closed_);
  slow_sender_ = r.socket_empty;  // the read drained the socket: the sender lags
  shard_->stage_budget().Unused(&session_->stage_account(), granted - r.moved);
  *budget -= std::min(*budget, r.moved);
  if (r.moved > 0 && !ScanCopied(mark, r.moved)) {
    return Step::kGone;
  }
  if (Step step; ReadEnded(r, &step)) {
    return step;
  }
  if (r.moved == 0) {
    // Every block is out (CopyIn counted it): stage in pipes, which need a known frame
    // position; a header cut in two waits for a block (retried like a missing pipe).
    if (pos_.header_have > 0) {
      WaitForPipe();
      return Step::kStopped;
    }
    return pos_.frame_left == 0 ? ReadAtBoundary(budget) : ReadFrameBody(budget);
  }
  return Step::kProgress;  // a short grant waits at the next Grant
}

bool ProxyConnection::ScanCopied(StagingBuffer::Mark mark, uint64_t n) {
  const RelayConfig& config = shard_->context().config;
  const bool was_in_frame = pos_.in_frame();
  uint64_t complete_bytes = 0;
  uint64_t frames = 0;
  FrameError error = FrameError::kOk;
  staged_.ForEachPiece(mark, n, [&](const uint8_t* data, size_t len) {
    const PieceScan scan = ScanPiece(data, len, &pos_, config.network_id, config.max_frame_bytes);
    complete_bytes += scan.complete_bytes;
    frames += scan.frames;
    error = scan.error;
    return error == FrameError::kOk;
  });
  if (frames > 0) {
    shard_->stage_budget().DropHead(&session_->stage_account(), this);
    FrameCompleted(complete_bytes, frames);
  }
  if (error != FrameError::kOk) {
    ProtocolError(error);  // the frames before the bad header are still delivered
    return false;
  }
  if (pos_.in_frame()) {
    frame_progress_ = now_;
    if (frames > 0 || !was_in_frame) {
      frame_start_ = now_;  // a frame (or its header) began in this read
      shard_->reactor()->timers().Arm(&deadline_, FrameDeadline());
    } else {
      shard_->reactor()->timers().Extend(&deadline_, FrameDeadline());
    }
    if (pos_.frame_left > 0) {
      shard_->stage_budget().ClaimHead(&session_->stage_account(), this, pos_.frame_left);
      if (!PreferCopy()) {
        staged_.set_copy(false);  // a large frame's rest is spliced, after the blocks
      }
    }
  }
  return true;
}

uint64_t ProxyConnection::GrantStage(uint64_t want) {
  StageBudget& budget = shard_->stage_budget();
  const uint64_t overdraft_before = budget.overdraft_granted();
  set_large_partial(pos_.frame_left > 0 && pos_.frame_size >= StageBudget::kLargePartial);
  const uint64_t granted =
      budget.Grant(&session_->stage_account(), this, want, session_->NodeDraining(), &grant_limit_);
  if (budget.overdraft_granted() != overdraft_before) {
    shard_->stats().Add(Counter::kStageOverdraftBytes,
                        budget.overdraft_granted() - overdraft_before);
  }
  if (granted == 0) {
    WaitForStage();
  }
  return granted;
}

void ProxyConnection::WaitForStage() {
  if (!waiting()) {
    shard_->stats().Add(grant_limit_ == StageBudget::Limit::kReactor
                            ? Counter::kProxyStageWaits
                            : Counter::kProxySessionShareWaits);
  }
  shard_->stage_budget().Wait(&session_->stage_account(), this, grant_limit_, pos_.in_frame());
  wait_ = Wait::kBudget;
}

bool ProxyConnection::ReadEnded(const StageResult& r, Step* step) {
  if (r.eof || r.error != 0) {
    OnPeerGone();
    *step = Step::kGone;
    return true;
  }
  if (r.socket_empty) {
    readable_ = false;
    *step = Step::kSocketEmpty;
    return true;
  }
  return false;
}

ProxyConnection::Step ProxyConnection::AfterStage(const StageResult& r, uint64_t granted) {
  if (Step step; ReadEnded(r, &step)) {
    return step;
  }
  if (r.moved < granted) {
    if (r.no_pipe) {
      // Out of fds: wait and retry; the frames staged so far stay (never drop a peer for
      // a pipe it could not get).
      WaitForPipe();
    } else {
      wait_ = Wait::kNode;  // its pipes are at their cap
    }
    return Step::kStopped;
  }
  // A short grant: the rest waits for memory at the next Grant, which tells what it waits
  // for (a frame this connection has just begun makes it its session's head, which may
  // finish beyond a full budget; waiting here as a head would wait for a wake-up nobody
  // sends while partial frames hold all the memory).
  return Step::kProgress;
}

bool ProxyConnection::PreferCopy() const {
  // Under splice (the default), small frames of a sender slower than the relay (its last
  // read drained the socket) go by copy: recvmsg() and sendmsg(), two syscalls a frame
  // where splice needs three (peek, splice in, splice out), which at light load is most of
  // the relay's delay (docs/BENCHMARKS.md, "Side by side"). A sender that keeps its socket
  // full, or large frames, are spliced.
  return shard_->context().config.forward_mode == ForwardMode::kCopy ||
         (slow_sender_ && pos_.last_length < kLargeFrame);
}

ProxyConnection::StageResult ProxyConnection::StageIn(uint64_t len, bool known_available) {
  if (staged_.bytes() == 0) {
    staged_.set_copy(PreferCopy());
  }
  return staged_.StageIn(fd_.get(), len, shard_->context().config.stage_bytes, known_available,
                         peer_closed_);
}

void ProxyConnection::AccountPeeked(const MovedFrames& m) {
  if (m.partial_size > 0) {
    BeginPartialFrame(m.partial_size, m.partial_left);
  }
  if (m.frames > 0) {
    FrameCompleted(m.complete_bytes, m.frames);
  }
}

void ProxyConnection::BeginPartialFrame(uint64_t frame_size, uint64_t left) {
  pos_.frame_size = frame_size;
  pos_.frame_left = left;
  frame_start_ = frame_progress_ = now_;
  shard_->stage_budget().ClaimHead(&session_->stage_account(), this, left);
  shard_->reactor()->timers().Arm(&deadline_, FrameDeadline());
}

absl::Time ProxyConnection::RateDeadline() const {
  const RelayConfig& config = shard_->context().config;
  const double received = static_cast<double>(
      pos_.frame_left > 0 ? pos_.frame_size - pos_.frame_left : pos_.header_have);
  return frame_start_ + config.frame_timeout + absl::Seconds(received / config.frame_min_rate);
}

absl::Time ProxyConnection::FrameDeadline() const {
  return std::min(RateDeadline(), frame_progress_ + shard_->context().config.frame_stall_timeout);
}

void ProxyConnection::FrameCompleted(uint64_t bytes, uint64_t frames) {
  complete_bytes_ += bytes;
  shard_->stats().Add(Counter::kFramesForwarded, frames);
  session_->frames_to_node += frames;
  // Back at a boundary: the idle deadline (lazy: no wheel work while frames flow).
  shard_->reactor()->timers().Extend(&deadline_, now_ + shard_->context().config.peer_idle_timeout);
}

void ProxyConnection::DropLateFrame(absl::Time now) {
  shard_->stats().Add(Counter::kProxyFrameTimeouts);
  // (A header cut in two is a frame of unknown size: its missing bytes are the header's.)
  const bool header_only = pos_.frame_left == 0;
  const bool stalled = now >= frame_progress_ + shard_->context().config.frame_stall_timeout;
  if (stalled) {
    shard_->stats().Add(Counter::kProxyFrameStalls);
  }
  RELAY_LOG_LIMITED(WARNING) << "sender " << net::PeerName(fd_.get()) << " did not finish a "
                             << (header_only ? kFrameHeaderSize : pos_.frame_size) << "-byte frame"
                             << (header_only ? " header" : "") << " in time ("
                             << (header_only ? kFrameHeaderSize - pos_.header_have
                                             : pos_.frame_left)
                             << " bytes missing; "
                             << (stalled ? "none arrived for --frame_stall_timeout"
                                         : "--frame_timeout, --frame_min_rate")
                             << "); dropped (counted as proxy_frame_timeouts)";
  OnPeerGone();
}

void ProxyConnection::OnDeadline() {
  if (closed()) {
    return;
  }
  const RelayConfig& config = shard_->context().config;
  const absl::Time now = shard_->reactor()->clock()->Now();
  // The relay, not the sender, stopped reading: for its node to take the staged frames,
  // or for staging memory (the session's share or the reactor's budget, which others'
  // frames free), or for a pipe.
  const bool relay_stopped = (wait_ == Wait::kNode && committing_ + complete_bytes_ > 0) ||
                             wait_ == Wait::kBudget || wait_ == Wait::kPipe;
  if (pos_.in_frame()) {
    if (now < FrameDeadline()) {
      shard_->reactor()->timers().Arm(&deadline_, FrameDeadline());
      return;
    }
    if (relay_stopped) {
      // Not the sender's fault: its clock waits (--node_write_timeout bounds the node; the
      // budget's heads of line guarantee that memory frees).
      if (now >= RateDeadline()) {
        frame_start_ += now - RateDeadline() + config.frame_timeout;
      }
      frame_progress_ = now;
      shard_->reactor()->timers().Arm(&deadline_, FrameDeadline());
      return;
    }
    DropLateFrame(now);
    return;
  }
  if (wait_ != Wait::kNone) {
    shard_->reactor()->timers().Arm(&deadline_, now + config.peer_idle_timeout);
    return;
  }
  shard_->stats().Add(Counter::kProxyIdleTimeouts);
  Drop();
}

void ProxyConnection::WaitForPipe() {
  wait_ = Wait::kPipe;
  shard_->stats().Add(Counter::kProxyPipeWaits);
  shard_->reactor()->timers().Arm(&pipe_retry_, now_ + shard_->context().config.accept_backoff);
}

void ProxyConnection::OnPipeRetry() {
  if (!closed() && wait_ == Wait::kPipe) {
    wait_ = Wait::kNone;
    ReadSome();
  }
}

void ProxyConnection::NotifyMain() {
  if (complete_bytes_ > 0 && !queued && session_->main() != nullptr) {
    session_->main()->Enqueue(this);
  }
}

uint64_t ProxyConnection::BeginCommit() {
  committing_ = complete_bytes_;
  complete_bytes_ = 0;
  commit_started_ = false;
  return committing_;
}

ProxyConnection::CommitResult ProxyConnection::CommitTo(int out_fd, uint64_t max_bytes) {
  const CommitResult res = staged_.WriteTo(out_fd, committing_, max_bytes);
  committing_ -= res.bytes;
  commit_started_ |= res.bytes > 0;
  AfterWrite(res.bytes);
  return res;
}

void ProxyConnection::AfterWrite(uint64_t bytes) {
  if (committing_ == 0) {
    commit_started_ = false;
  }
  shard_->stats().Add(Counter::kBytesForwarded, bytes);
  session_->bytes_to_node += bytes;
  ReleaseStage(bytes);
  if (bytes > 0 && wait_ == Wait::kNode && !closed()) {
    wait_ = Wait::kNone;
    shard_->reactor()->MarkReady(this);  // room again: read on next turn
  }
}

bool ProxyConnection::CanGather() const {
  return complete_bytes_ > 0 && committing_ == 0 && staged_.OnlyInBlocks();
}

uint64_t ProxyConnection::AppendCommitted(iovec* iov, size_t* count, size_t max_count,
                                          uint64_t max_bytes) const {
  return staged_.AppendFront(iov, count, max_count, std::min(committing_, max_bytes));
}

void ProxyConnection::CommitWritten(uint64_t bytes) {
  staged_.Consume(bytes);
  committing_ -= bytes;
  commit_started_ = true;
  AfterWrite(bytes);
}

void ProxyConnection::ReleaseStage(uint64_t bytes) {
  if (bytes > 0) {
    shard_->stage_budget().Release(&session_->stage_account(), bytes);
  }
}

void ProxyConnection::AbortCommit() {
  shard_->stats().Add(Counter::kProxyAbortedCommits);
  RELAY_LOG_LIMITED(WARNING) << "a node's main connection was replaced in the middle of a "
                                "frame; that sender was dropped (counted as "
                                "proxy_aborted_commits)";
  committing_ = 0;
  complete_bytes_ = 0;
  commit_started_ = false;
  Drop();
}

void ProxyConnection::ReturnCommit() {
  complete_bytes_ += committing_;
  committing_ = 0;
  commit_started_ = false;
}

void ProxyConnection::OnPeerGone() {
  if (pos_.in_frame() || staged_.bytes() > committing_ + complete_bytes_) {
    shard_->stats().Add(Counter::kProxyTruncatedFrames);
  }
  Drop();
}

void ProxyConnection::Resume() {
  paused_ = false;
  if (!closed()) {
    shard_->reactor()->MarkReady(this);
  }
}

void ProxyConnection::StopAtBoundary() {
  stop_at_boundary_ = true;
  if (!closed() && !pos_.in_frame()) {
    Drop();
  }
}

void ProxyConnection::Drop() {
  Close();
  NotifyMain();  // complete frames still go out
  session_->ReapIfFinished(this);
}

void ProxyConnection::ProtocolError(FrameError fe) {
  ShardStats& stats = shard_->stats();
  stats.Add(Counter::kProxyProtocolErrors);
  stats.Add(fe == FrameError::kBadNetworkId ? Counter::kProxyBadNetworkId
            : fe == FrameError::kZeroLength ? Counter::kProxyZeroLength
                                            : Counter::kProxyTooLong);
  RELAY_LOG_LIMITED(WARNING) << "proxy connection from " << net::PeerName(fd_.get())
                             << " sent a bad frame header (" << FrameErrorName(fe)
                             << "); that connection closed (counted as proxy_protocol_errors)";
  Drop();
}

void ProxyConnection::Discard() {
  Close();
  shard_->stage_budget().DropHead(&session_->stage_account(), this);
  committing_ = complete_bytes_ = 0;
  ReleaseStage(staged_.bytes());
  staged_.Clear();
}

void ProxyConnection::Close() {
  if (closed()) {
    return;
  }
  if (registered_) {
    shard_->reactor()->Unregister(handle_, fd_.get());
    registered_ = false;
  }
  fd_.Reset();
  shard_->reactor()->timers().Cancel(&deadline_);
  shard_->reactor()->timers().Cancel(&pipe_retry_);
  shard_->stage_budget().Cancel(this);
  shard_->stats().Add(Counter::kProxyClosed);
}

}  // namespace relay
