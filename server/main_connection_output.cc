// MainConnection's output side: the control replies and the commit queue of its
// session's peers, written to the node whole run by whole run (WriteOutput), several
// copy-staged runs in one sendmsg() (WriteGathered), and the deadlines of a node that does
// not read (--node_write_timeout, --node_queue_soft_bytes). Declared in
// server/main_connection.h; its input side is server/main_connection.cc.
#include <algorithm>
#include <string>

#include "base/log.h"
#include "net/socket_ops.h"
#include "server/main_connection.h"
#include "server/proxy_connection.h"
#include "server/session.h"
#include "server/shard.h"

namespace relay {
namespace {

// Bytes written to one main connection per loop turn before other connections get a go.
constexpr uint64_t kWriteBudget = 4u << 20;
// One gathered write (WriteGathered) covers at most this many connections and buffers.
constexpr size_t kMaxGather = 64;
constexpr size_t kMaxGatherIov = 128;

}  // namespace

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
  while (ProxyConnection* conn = PopQueueHead()) {
    next->Enqueue(conn);
  }
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

ProxyConnection* MainConnection::PopQueueHead() {
  ProxyConnection* conn = queue_head_;
  if (conn == nullptr) {
    return nullptr;
  }
  queue_head_ = conn->queue_next;
  if (queue_head_ == nullptr) {
    queue_tail_ = nullptr;
  }
  conn->queued = false;
  conn->queue_next = nullptr;
  return conn;
}

void MainConnection::AfterRun(ProxyConnection* conn) {
  if (conn->complete_bytes() > 0) {
    Enqueue(conn);  // to the tail: senders take turns, a run at a time
  } else if (session_ != nullptr) {
    session_->ReapIfFinished(conn);
  }
}

size_t MainConnection::GatherCommits(ProxyConnection** conns, iovec* iov, size_t* count,
                                     uint64_t* total, uint64_t budget) {
  size_t n = 0;
  for (ProxyConnection* c = queue_head_;
       c != nullptr && n < kMaxGather && *count < kMaxGatherIov && *total < budget;
       c = c->queue_next) {
    if (!c->CanGather()) {
      break;
    }
    c->BeginCommit();
    conns[n++] = c;
    const uint64_t added = c->AppendCommitted(iov, count, kMaxGatherIov, budget - *total);
    *total += added;
    if (added < c->committing()) {
      break;  // the rest of it does not fit this write
    }
  }
  return n;
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
  iovec iov[kMaxGatherIov];
  size_t count = 0;
  uint64_t total = 0;
  const size_t n = GatherCommits(conns, iov, &count, &total, *budget);
  const net::IoResult r =
      n >= 2 ? net::SendV(fd_.get(), iov, count) : net::IoResult{net::IoStatus::kAgain, 0, 0};
  if (n < 2 || r.status != net::IoStatus::kOk) {
    for (size_t i = 0; i < n; ++i) {
      conns[i]->ReturnCommit();  // nothing written: all still queued, in order
    }
    if (n >= 2 && r.status == net::IoStatus::kAgain) {
      writable_ = false;
    } else if (n >= 2) {
      Close("write failed");
    }
    return n >= 2;  // else the usual one-connection commit
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
    PopQueueHead();  // c: the written ones lead the queue
    c->CommitWritten(take);
    if (c->committing() > 0) {
      locked_ = c;
    } else {
      AfterRun(c);
    }
  }
  return true;
}

MainConnection::WriteStep MainConnection::WriteControlReplies(uint64_t* budget) {
  const net::IoResult r = net::Send(fd_.get(), out_.data() + out_off_, out_.size() - out_off_);
  if (r.status == net::IoStatus::kAgain) {
    writable_ = false;
    return WriteStep::kBlocked;
  }
  if (r.status != net::IoStatus::kOk) {
    Close("write failed");
    return WriteStep::kClosed;
  }
  out_off_ += r.bytes;
  written_ += r.bytes;
  *budget -= std::min<uint64_t>(*budget, r.bytes);
  if (out_off_ == out_.size()) {
    std::string().swap(out_);
    out_off_ = 0;
  }
  return WriteStep::kWrote;
}

MainConnection::WriteStep MainConnection::WriteLockedRun(uint64_t* budget) {
  ProxyConnection* conn = locked_;
  const ProxyConnection::CommitResult res = conn->CommitTo(fd_.get(), *budget);
  *budget -= std::min(*budget, res.bytes);
  written_ += res.bytes;
  if (res.error != 0) {
    Close("write failed");
    return WriteStep::kClosed;
  }
  if (conn->committing() == 0) {
    locked_ = nullptr;
    AfterRun(conn);
  }
  if (res.out_blocked) {
    writable_ = false;
    return WriteStep::kBlocked;
  }
  return WriteStep::kWrote;
}

void MainConnection::WriteOutput() {
  uint64_t budget = kWriteBudget;
  while (writable_ && budget > 0 && !closed()) {
    WriteStep step = WriteStep::kWrote;
    if (locked_ != nullptr) {
      step = WriteLockedRun(&budget);
    } else if (out_off_ < out_.size()) {
      step = WriteControlReplies(&budget);
    } else if (closing()) {
      Close("refused");
      return;
    } else if (queue_head_ == nullptr) {
      return;
    } else if (!WriteGathered(&budget)) {
      ProxyConnection* conn = PopQueueHead();
      if (conn->BeginCommit() > 0) {
        locked_ = conn;  // its run goes out next, whole, before any other
      }
    }
    if (step == WriteStep::kClosed) {
      return;
    }
  }
  if (writable_ && budget == 0) {
    shard_->reactor()->MarkReady(this);
  }
}

}  // namespace relay
