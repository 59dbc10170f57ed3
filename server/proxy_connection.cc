#include "server/proxy_connection.h"

#include <errno.h>
#include <sys/ioctl.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "core/frame_header.h"
#include "core/log.h"
#include "net/socket_ops.h"
#include "server/main_connection.h"
#include "server/session.h"
#include "server/shard.h"

namespace relay {
namespace {

// Bytes staged per connection per loop turn before other connections get a go.
constexpr uint64_t kReadBudget = 1u << 20;
// After a frame this large, peek only at the next header instead of a 64 KiB window.
constexpr uint32_t kLargeFrame = 16 * 1024;
// Hard cap on staging pipes per connection (each is two fds).
constexpr size_t kMaxPipesPerConnection = 256;

}  // namespace

ProxyConnection::ProxyConnection(Shard* shard, Session* session, net::UniqueFd fd)
    : shard_(shard),
      session_(session),
      fd_(std::move(fd)),
      stall_timer_([this] { OnStallTimer(); }) {}

ProxyConnection::~ProxyConnection() {
  shard_->CancelWaitForStage(this);
  shard_->ReleaseStage(reserved_);
  if (registered_) {
    shard_->reactor()->Unregister(handle_, fd_.get());
  }
  for (net::Pipe& pipe : pipes_) {
    shard_->reactor()->pipes().Release(std::move(pipe));  // dirty ones are closed
  }
}

bool ProxyConnection::Start() {
  absl::StatusOr<uint64_t> handle =
      shard_->reactor()->Register(fd_.get(), EPOLLIN | EPOLLRDHUP, this);
  if (!handle.ok()) {
    return false;
  }
  handle_ = *handle;
  registered_ = true;
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

uint64_t ProxyConnection::StageLimitFor(uint64_t frame_size) const {
  return std::max<uint64_t>(shard_->context().config.stage_bytes, frame_size);
}

void ProxyConnection::ReadSome() {
  const RelayConfig& config = shard_->context().config;
  uint8_t* scratch = shard_->reactor()->scratch();
  uint64_t budget = kReadBudget;
  while (readable_ && !closed() && budget > 0) {
    bool socket_empty = false;
    bool eof = false;
    int error = 0;
    if (frame_left_ == 0) {
      // At a frame boundary: look at the headers before moving anything.
      const uint64_t cap = config.stage_bytes;
      const uint64_t room = stage_bytes_ < cap ? cap - stage_bytes_ : 0;
      if (room <= kFrameHeaderSize && stage_bytes_ > 0) {
        blocked_ = true;
        break;
      }
      const size_t want = last_length_ >= kLargeFrame
                              ? kFrameHeaderSize
                              : static_cast<size_t>(std::clamp<uint64_t>(
                                    room, kFrameHeaderSize, net::Reactor::kScratchBytes));
      const net::IoResult peek = net::Recv(fd_.get(), scratch, want, /*peek=*/true);
      if (peek.status == net::IoStatus::kAgain) {
        readable_ = false;
        break;
      }
      if (peek.status != net::IoStatus::kOk) {
        OnPeerGone();
        return;
      }
      const size_t n = peek.bytes;
      uint64_t plan = 0;
      uint64_t planned_reserve = 0;
      bool beyond_window = false;
      uint64_t budget_need = 0;
      while (plan + kFrameHeaderSize <= n) {
        const FrameHeader h = DecodeFrameHeader(scratch + plan);
        const FrameError fe = CheckFrameHeader(h, config.network_id, config.max_frame_bytes);
        if (fe != FrameError::kOk) {
          if (plan == 0) {
            ProtocolError(fe);
            return;
          }
          break;  // deliver the good frames before it first
        }
        last_length_ = h.length;
        const uint64_t total = h.frame_size();
        const bool fits = stage_bytes_ + plan + total <= cap || stage_bytes_ + plan == 0;
        if (!fits) {
          break;
        }
        // A frame is staged only with its whole size reserved from the reactor's budget,
        // so any frame begun can be finished and staging memory stays bounded.
        if (!shard_->ReserveStage(total)) {
          budget_need = total;
          break;
        }
        planned_reserve = plan + total;
        if (plan + total <= n) {
          plan += total;
          continue;
        }
        // Its header is here, its body beyond the window: move the body in the same
        // splice (as much as the socket has, within this turn's budget) instead of
        // moving the header alone first.
        plan += std::min<uint64_t>(total, budget);
        beyond_window = plan > n;
        break;
      }
      if (plan == 0) {
        if (budget_need > 0) {
          shard_->WaitForStage(this, budget_need);  // called back when frames drain
          break;
        }
        if (n >= kFrameHeaderSize) {
          blocked_ = true;  // the next frame needs the staged ones gone first
          break;
        }
        if (peer_closed_) {
          OnPeerGone();  // the sender left inside a header
          return;
        }
        readable_ = false;  // a header in pieces: the next segment wakes us
        break;
      }
      // Bytes past the peeked window may not have arrived yet: then an EAGAIN must be
      // told apart from a full pipe by asking the socket.
      const uint64_t moved =
          SpliceIn(plan, /*known_available=*/!beyond_window, &socket_empty, &eof, &error);
      const uint64_t started = AccountPeeked(scratch, n, moved);
      reserved_ += started;
      shard_->ReleaseStage(planned_reserve - started);  // frames not begun
      budget -= std::min(budget, moved);
      if (socket_empty) {
        readable_ = false;
      } else if (moved < plan && !eof && error == 0) {
        blocked_ = true;  // out of pipes
      }
    } else {
      const uint64_t want = std::min(frame_left_, budget);
      const uint64_t moved = SpliceIn(want, /*known_available=*/false, &socket_empty, &eof, &error);
      frame_left_ -= moved;
      budget -= std::min(budget, moved);
      if (moved > 0 && frame_left_ > 0) {
        NoteFrameProgress();
      }
      if (frame_left_ == 0) {
        FrameCompleted(frame_size_, 1);
      }
      if (socket_empty) {
        readable_ = false;
      } else if (moved < want && !eof && error == 0) {
        blocked_ = true;  // out of pipes
      }
    }
    if (eof || error != 0) {
      OnPeerGone();
      return;
    }
    if (blocked_) {
      break;
    }
  }
  if (blocked_ && committing_ == 0 && complete_bytes_ == 0) {
    // Nothing staged can drain, so this connection could never move again: the frame
    // does not fit in the pipes we may use (pipe sizes capped by the kernel).
    shard_->stats().Add(Counter::kProxyStageFailures);
    RELAY_LOG_ONCE(ERROR) << "a frame could not be staged in the pipes allowed per "
                             "connection (raise fs.pipe-max-size or lower --max_frame_bytes);"
                             " sender dropped (counted as proxy_stage_failures); pipes="
                          << pipes_.size() << " staged=" << stage_bytes_
                          << " frame_left=" << frame_left_ << " frame_size=" << frame_size_;
    Close();
    session_->ReapIfFinished(this);
    return;
  }
  NotifyMain();
  if (readable_ && !blocked_ && budget == 0 && !closed()) {
    shard_->reactor()->MarkReady(this);
  }
}

uint64_t ProxyConnection::SpliceIn(uint64_t len, bool known_available, bool* socket_empty,
                                   bool* eof, int* error) {
  if (shard_->context().config.forward_mode == ForwardMode::kCopy) {
    return CopyIn(len, socket_empty, eof, error);
  }
  net::PipePool& pool = shard_->reactor()->pipes();
  const uint64_t limit = StageLimitFor(stage_bytes_ + len);
  // Pipes hold fewer bytes than their capacity when TCP hands over small segments (one
  // slot per segment), so allow a few times the nominal count, within reason.
  const size_t nominal = limit / std::max<size_t>(pool.pipe_bytes(), 4096) + 1;
  const size_t max_pipes = std::min<size_t>(4 + 4 * nominal, kMaxPipesPerConnection);
  uint64_t moved = 0;
  while (moved < len) {
    if (pipes_.empty() || pipes_.back().full) {
      if (pipes_.size() >= max_pipes) {
        break;
      }
      net::Pipe pipe;
      absl::Status status = pool.Acquire(&pipe);
      if (!status.ok()) {
        shard_->stats().Add(Counter::kProxyStageFailures);
        RELAY_LOG_ONCE(ERROR) << "no pipe for staging: " << status.message()
                              << " (counted as proxy_stage_failures)";
        break;
      }
      pipe.copy_mode = copy_next_pipe_;
      copy_next_pipe_ = false;
      pipes_.push_back(std::move(pipe));
    }
    net::Pipe& tail = pipes_.back();
    if (tail.copy_mode) {
      // recv() + write(): write() packs bytes into whole pages, so a copy-mode pipe holds
      // about its full capacity however small the segments.
      const size_t used = (tail.bytes + 4095) / 4096 * 4096;
      const uint64_t room = tail.capacity > used ? tail.capacity - used : 0;
      if (room == 0) {
        tail.full = true;
        continue;
      }
      size_t n =
          static_cast<size_t>(std::min<uint64_t>({len - moved, room, net::Reactor::kScratchBytes}));
      if (n > 4096) {
        n &= ~size_t{4095};  // whole pages: write() then fills slots completely
      }
      uint8_t* buf = shard_->reactor()->copy_buffer();
      const net::IoResult r = net::Recv(fd_.get(), buf, n);
      if (r.status == net::IoStatus::kAgain) {
        *socket_empty = true;
        break;
      }
      if (r.status == net::IoStatus::kEof) {
        *eof = true;
        break;
      }
      if (r.status == net::IoStatus::kError) {
        *error = r.error;
        break;
      }
      if (!WriteToPipes(buf, r.bytes)) {
        *error = ENOBUFS;  // bytes taken from the socket that no pipe can hold
        break;
      }
      moved += r.bytes;
      shard_->stats().Add(Counter::kProxyCopiedBytes, r.bytes);
      continue;
    }
    const net::IoResult r = net::Splice(fd_.get(), tail.write_end.get(), len - moved);
    if (r.status == net::IoStatus::kOk) {
      tail.bytes += r.bytes;
      stage_bytes_ += r.bytes;
      moved += r.bytes;
      continue;
    }
    if (r.status == net::IoStatus::kEof) {
      *eof = true;
      break;
    }
    if (r.status == net::IoStatus::kError) {
      *error = r.error;
      break;
    }
    // EAGAIN: either the socket is empty or the pipe is full. An empty pipe is never
    // full; bytes we peeked are known to be there; otherwise ask the socket.
    if (tail.bytes == 0) {
      *socket_empty = true;
      break;
    }
    if (!known_available) {
      int pending = 0;
      if (ioctl(fd_.get(), FIONREAD, &pending) != 0 || pending <= 0) {
        *socket_empty = true;
        break;
      }
    }
    tail.full = true;
    // Full while holding under a quarter of its capacity: TCP is handing over tiny
    // segments, one pipe slot each. Stage the next pipe by copy, packed into pages.
    copy_next_pipe_ = tail.bytes * 4 <= tail.capacity;
  }
  return moved;
}

bool ProxyConnection::WriteToPipes(const uint8_t* buf, size_t n) {
  // Partial pages from earlier writes and reads can leave a pipe fewer free slots than
  // its byte count suggests, so a write may be short: the rest goes to a fresh pipe,
  // which always takes 64 KiB (16 whole pages). That may exceed the pipe cap by one.
  while (n > 0) {
    net::Pipe& tail = pipes_.back();
    const net::IoResult w = net::Write(tail.write_end.get(), buf, n);
    if (w.status == net::IoStatus::kOk) {
      tail.bytes += w.bytes;
      stage_bytes_ += w.bytes;
      buf += w.bytes;
      n -= w.bytes;
      if (n == 0) {
        break;
      }
    } else if (w.status != net::IoStatus::kAgain) {
      return false;
    }
    tail.full = true;
    net::Pipe pipe;
    if (!shard_->reactor()->pipes().Acquire(&pipe).ok()) {
      shard_->stats().Add(Counter::kProxyStageFailures);
      return false;
    }
    pipe.copy_mode = true;
    pipes_.push_back(std::move(pipe));
  }
  return true;
}

uint64_t ProxyConnection::AccountPeeked(const uint8_t* peeked, size_t peeked_len, uint64_t moved) {
  uint64_t started = 0;
  uint64_t pos = 0;
  uint64_t complete = 0;
  uint64_t frames = 0;
  while (pos < moved && pos + kFrameHeaderSize <= peeked_len) {
    const uint64_t total = DecodeFrameHeader(peeked + pos).frame_size();
    if (pos + total <= moved) {
      complete += total;
      ++frames;
      pos += total;
      started = pos;
    } else {
      frame_size_ = total;
      frame_left_ = pos + total - moved;
      started = pos + total;
      NoteFrameProgress();
      break;
    }
  }
  if (frames > 0) {
    FrameCompleted(complete, frames);
  }
  return started;
}

void ProxyConnection::NoteFrameProgress() {
  shard_->reactor()->timers().Extend(&stall_timer_, shard_->reactor()->clock()->Now() +
                                                        shard_->context().config.keepalive_timeout);
}

void ProxyConnection::OnStallTimer() {
  if (closed() || frame_left_ == 0) {
    return;
  }
  if (blocked_ || waiting_for_stage) {
    NoteFrameProgress();  // waiting on the node, not on the sender
    return;
  }
  shard_->stats().Add(Counter::kProxyStalledFrames);
  RELAY_LOG_ONCE(WARNING) << "a sender sent nothing for the keepalive timeout in the middle "
                             "of a frame; dropped (counted as proxy_stalled_frames)";
  OnPeerGone();
}

void ProxyConnection::FrameCompleted(uint64_t bytes, uint64_t frames) {
  complete_bytes_ += bytes;
  shard_->stats().Add(Counter::kFramesForwarded, frames);
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

uint64_t ProxyConnection::CopyIn(uint64_t len, bool* socket_empty, bool* eof, int* error) {
  if (copy_cap_ - copy_tail_ < len) {
    const size_t used = copy_tail_ - copy_head_;
    if (copy_cap_ - used < len) {
      const size_t cap = std::max<size_t>(used + len, 2 * copy_cap_);
      auto bigger = std::make_unique<char[]>(cap);
      memcpy(bigger.get(), copy_buf_.get() + copy_head_, used);
      copy_buf_ = std::move(bigger);
      copy_cap_ = cap;
    } else {
      memmove(copy_buf_.get(), copy_buf_.get() + copy_head_, used);
    }
    copy_head_ = 0;
    copy_tail_ = used;
  }
  uint64_t moved = 0;
  while (moved < len) {
    const net::IoResult r =
        net::Recv(fd_.get(), copy_buf_.get() + copy_tail_, static_cast<size_t>(len - moved));
    if (r.status == net::IoStatus::kOk) {
      copy_tail_ += r.bytes;
      stage_bytes_ += r.bytes;
      moved += r.bytes;
    } else {
      *socket_empty = r.status == net::IoStatus::kAgain;
      *eof = r.status == net::IoStatus::kEof;
      *error = r.status == net::IoStatus::kError ? r.error : 0;
      break;
    }
  }
  return moved;
}

ProxyConnection::CommitResult ProxyConnection::CopyOut(int out_fd, uint64_t max_bytes) {
  CommitResult res;
  while (committing_ > 0 && res.bytes < max_bytes) {
    const size_t want = static_cast<size_t>(std::min(committing_, max_bytes - res.bytes));
    const net::IoResult r = net::Send(out_fd, copy_buf_.get() + copy_head_, want);
    if (r.status == net::IoStatus::kOk) {
      copy_head_ += r.bytes;
      stage_bytes_ -= r.bytes;
      committing_ -= r.bytes;
      res.bytes += r.bytes;
      commit_started_ = true;
    } else if (r.status == net::IoStatus::kAgain) {
      res.out_blocked = true;
      break;
    } else {
      res.error = r.status == net::IoStatus::kError ? r.error : EPIPE;
      break;
    }
  }
  if (copy_head_ == copy_tail_) {
    copy_head_ = copy_tail_ = 0;
  }
  return res;
}

ProxyConnection::CommitResult ProxyConnection::CommitTo(int out_fd, uint64_t max_bytes) {
  CommitResult res;
  if (copy_buf_ != nullptr) {
    res = CopyOut(out_fd, max_bytes);
  }
  while (committing_ > 0 && res.bytes < max_bytes && !pipes_.empty()) {
    net::Pipe& head = pipes_.front();
    if (head.bytes == 0) {
      shard_->reactor()->pipes().Release(std::move(head));
      pipes_.erase(pipes_.begin());
      continue;
    }
    const uint64_t want = std::min({head.bytes, committing_, max_bytes - res.bytes});
    // More of this run follows at once: let TCP fill whole segments.
    const bool more = committing_ > want;
    const net::IoResult r = net::Splice(head.read_end.get(), out_fd, want, more);
    if (r.status == net::IoStatus::kOk) {
      head.bytes -= r.bytes;
      stage_bytes_ -= r.bytes;
      committing_ -= r.bytes;
      res.bytes += r.bytes;
      commit_started_ = true;
      if (head.bytes == 0 && pipes_.size() > 1) {
        shard_->reactor()->pipes().Release(std::move(head));
        pipes_.erase(pipes_.begin());
      }
      continue;
    }
    if (r.status == net::IoStatus::kAgain) {
      res.out_blocked = true;  // the pipe holds bytes, so the socket is full
    } else {
      res.error = r.status == net::IoStatus::kError ? r.error : EPIPE;
    }
    break;
  }
  if (committing_ == 0) {
    commit_started_ = false;
  }
  shard_->stats().Add(Counter::kBytesForwarded, res.bytes);
  reserved_ -= res.bytes;
  shard_->ReleaseStage(res.bytes);
  if (stage_bytes_ == 0) {
    ReleaseEmptyPipes();
  }
  if (res.bytes > 0 && blocked_ && !closed()) {
    blocked_ = false;
    shard_->reactor()->MarkReady(this);  // room again: read on next turn
  }
  return res;
}

void ProxyConnection::ReleaseEmptyPipes() {
  for (net::Pipe& pipe : pipes_) {
    shard_->reactor()->pipes().Release(std::move(pipe));
  }
  pipes_.clear();
}

void ProxyConnection::AbortCommit() {
  shard_->stats().Add(Counter::kProxyAbortedCommits);
  RELAY_LOG_ONCE(WARNING) << "a node's main connection was replaced in the middle of a "
                             "frame; that sender was dropped (counted as "
                             "proxy_aborted_commits)";
  committing_ = 0;
  complete_bytes_ = 0;
  commit_started_ = false;
  Close();
  session_->ReapIfFinished(this);
}

void ProxyConnection::ReturnCommit() {
  complete_bytes_ += committing_;
  committing_ = 0;
  commit_started_ = false;
}

void ProxyConnection::OnPeerGone() {
  if (frame_left_ > 0 || stage_bytes_ > committing_ + complete_bytes_) {
    shard_->stats().Add(Counter::kProxyTruncatedFrames);
  }
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
  RELAY_LOG_ONCE(WARNING) << "proxy connection sent a bad frame header (" << FrameErrorName(fe)
                          << "); that connection closed (counted as proxy_protocol_errors)";
  Close();
  NotifyMain();
  session_->ReapIfFinished(this);
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
  shard_->stats().Add(Counter::kProxyClosed);
}

}  // namespace relay
