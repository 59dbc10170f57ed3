#include "server/staging_buffer.h"

#include <errno.h>

#include <algorithm>
#include <utility>

#include "base/log.h"
#include "net/socket_ops.h"

namespace relay {
namespace {

// Blocks filled or written by one recvmsg()/sendmsg() (a read turn stages at most 1 MiB).
constexpr size_t kMaxIov = 16;
// Hard cap on staging pipes per connection (each is two fds).
constexpr size_t kMaxPipes = 256;
constexpr size_t kPage = 4096;

// A read that moved nothing, as a stage result: EAGAIN is an empty socket, 0 the peer's
// FIN, anything else its errno. True if the read moved bytes.
bool ReadMoved(const net::IoResult& r, StagingBuffer::StageResult* res) {
  switch (r.status) {
    case net::IoStatus::kOk:
      return true;
    case net::IoStatus::kAgain:
      res->socket_empty = true;
      break;
    case net::IoStatus::kEof:
      res->eof = true;
      break;
    case net::IoStatus::kError:
      res->error = r.error;
      break;
  }
  return false;
}

// A write that moved nothing, as a write result: EAGAIN is a full socket.
void WriteFailed(const net::IoResult& r, StagingBuffer::WriteResult* res) {
  if (r.status == net::IoStatus::kAgain) {
    res->out_blocked = true;
  } else {
    res->error = r.status == net::IoStatus::kError ? r.error : EPIPE;
  }
}

}  // namespace

bool StagingBuffer::OnlyInBlocks() const {
  uint64_t in_blocks = 0;
  for (const net::Block& b : blocks_) {
    in_blocks += b.staged();
  }
  return !blocks_.empty() && in_blocks == bytes_;
}

StagingBuffer::StageResult StagingBuffer::StageIn(int fd, uint64_t len, uint64_t cap,
                                                  bool known_available, bool peer_closed) {
  if (!copy_) {
    return PipeIn(fd, len, cap, known_available);
  }
  StageResult res = CopyIn(fd, len, peer_closed);
  if (copy_ || res.moved == len || res.socket_empty || res.eof || res.error != 0) {
    return res;
  }
  // Out of blocks: the rest goes into pipes, after the bytes already in blocks.
  StageResult more = PipeIn(fd, len - res.moved, cap, known_available);
  more.moved += res.moved;
  return more;
}

StagingBuffer::StageResult StagingBuffer::PipeIn(int fd, uint64_t len, uint64_t cap,
                                                 bool known_available) {
  StageResult res;
  // Pipes hold fewer bytes than their capacity when TCP hands over small segments (one
  // slot per segment), so allow a few times the nominal count, within reason.
  const uint64_t limit = std::max<uint64_t>(cap, bytes_ + len);
  const size_t nominal = limit / std::max<size_t>(reactor_->pipes().pipe_bytes(), kPage) + 1;
  const size_t max_pipes = std::min<size_t>(4 + 4 * nominal, kMaxPipes);
  while (res.moved < len) {
    if ((pipes_.empty() || pipes_.back().full) && !AddPipe(max_pipes, &res)) {
      break;
    }
    const bool go_on = pipes_.back().filled_by_write
                           ? WriteIntoTailPipe(fd, len - res.moved, &res)
                           : SpliceIntoTailPipe(fd, len - res.moved, known_available, &res);
    if (!go_on) {
      break;
    }
  }
  return res;
}

bool StagingBuffer::AddPipe(size_t max_pipes, StageResult* res) {
  if (pipes_.size() >= max_pipes) {
    res->pipes_full = true;
    return false;
  }
  net::Pipe pipe;
  absl::Status status = reactor_->pipes().Acquire(&pipe);
  if (!status.ok()) {
    res->no_pipe = true;
    RELAY_LOG_LIMITED(ERROR) << "no pipe for staging: " << status.message()
                             << " (the open-files limit; senders wait and retry, counted as "
                                "proxy_pipe_waits)";
    return false;
  }
  pipe.filled_by_write = write_next_pipe_;
  write_next_pipe_ = false;
  pipes_.push_back(std::move(pipe));
  return true;
}

bool StagingBuffer::SpliceIntoTailPipe(int fd, uint64_t len, bool known_available,
                                       StageResult* res) {
  net::Pipe& tail = pipes_.back();
  const net::IoResult r = net::Splice(fd, tail.write_end.get(), len);
  if (r.status == net::IoStatus::kOk) {
    tail.bytes += r.bytes;
    bytes_ += r.bytes;
    res->moved += r.bytes;
    return true;
  }
  if (r.status != net::IoStatus::kAgain) {
    return ReadMoved(r, res);
  }
  // EAGAIN: either the socket is empty or the pipe is full. An empty pipe is never full;
  // bytes the caller peeked are known to be there; otherwise ask the socket.
  if (tail.bytes == 0 || (!known_available && net::BytesReadable(fd) <= 0)) {
    res->socket_empty = true;
    return false;
  }
  tail.full = true;
  // Full while holding under a quarter of its capacity: TCP is handing over tiny
  // segments, one pipe slot each. Fill the next pipe by copy, packed into pages.
  write_next_pipe_ = tail.bytes * 4 <= tail.capacity;
  return true;
}

bool StagingBuffer::WriteIntoTailPipe(int fd, uint64_t len, StageResult* res) {
  net::Pipe& tail = pipes_.back();
  // recv() + write(): write() packs bytes into whole pages, so such a pipe holds about its
  // full capacity however small the segments.
  const size_t used = (tail.bytes + kPage - 1) / kPage * kPage;
  const uint64_t room = tail.capacity > used ? tail.capacity - used : 0;
  if (room == 0) {
    tail.full = true;
    return true;
  }
  size_t n = static_cast<size_t>(std::min<uint64_t>({len, room, net::Reactor::kScratchBytes}));
  if (n > kPage) {
    n &= ~(kPage - 1);  // whole pages: write() then fills slots completely
  }
  uint8_t* buf = reactor_->copy_buffer();
  const net::IoResult r = net::Recv(fd, buf, n);
  if (!ReadMoved(r, res)) {
    return false;
  }
  if (!WriteToPipes(buf, r.bytes)) {
    res->error = ENOBUFS;  // bytes taken from the socket that no pipe can hold
    return false;
  }
  res->moved += r.bytes;
  stats_->Add(Counter::kProxyCopiedBytes, r.bytes);
  return true;
}

bool StagingBuffer::WriteToPipes(const uint8_t* buf, size_t n) {
  // Partial pages from earlier writes and reads can leave a pipe fewer free slots than
  // its byte count suggests, so a write may be short: the rest goes to a fresh pipe,
  // which always takes 64 KiB (16 whole pages). That may exceed the pipe cap by one.
  while (n > 0) {
    net::Pipe& tail = pipes_.back();
    const net::IoResult w = net::Write(tail.write_end.get(), buf, n);
    if (w.status == net::IoStatus::kOk) {
      tail.bytes += w.bytes;
      bytes_ += w.bytes;
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
    if (!reactor_->pipes().Acquire(&pipe).ok()) {
      stats_->Add(Counter::kProxyStageFailures);
      return false;
    }
    pipe.filled_by_write = true;
    pipes_.push_back(std::move(pipe));
  }
  return true;
}

StagingBuffer::StageResult StagingBuffer::CopyIn(int fd, uint64_t len, bool peer_closed) {
  StageResult res;
  net::BlockPool& pool = reactor_->blocks();
  // Room for `len` bytes: the tail block's and as many fresh blocks as needed, filled by
  // one recvmsg().
  iovec iov[kMaxIov];
  size_t count = 0;
  uint64_t room = 0;
  const size_t first = TailMark().index;
  for (size_t i = first; room < len && count < kMaxIov; ++i) {
    if (i == blocks_.size()) {
      net::Block block;
      if (!pool.Acquire(&block)) {
        copy_ = false;  // every block is out: stage the rest in pipes
        stats_->Add(Counter::kProxyCopyFallbacks);
        break;
      }
      blocks_.push_back(std::move(block));
    }
    net::Block& b = blocks_[i];
    const size_t n =
        static_cast<size_t>(std::min<uint64_t>(len - room, net::BlockPool::kBlockBytes - b.tail));
    iov[count++] = iovec{b.data.get() + b.tail, n};
    room += n;
  }
  if (room > 0) {
    const net::IoResult r = net::RecvV(fd, iov, count);
    if (ReadMoved(r, &res)) {
      res.moved = r.bytes;
      for (size_t i = first, left = r.bytes; left > 0; ++i) {
        const uint32_t n = static_cast<uint32_t>(
            std::min<uint64_t>(left, net::BlockPool::kBlockBytes - blocks_[i].tail));
        blocks_[i].tail += n;
        left -= n;
      }
      bytes_ += r.bytes;
      // It gave all it had (a FIN still has to be read): more arriving raises a new edge.
      res.socket_empty = r.bytes < room && !peer_closed;
    }
  }
  while (!blocks_.empty() && blocks_.back().staged() == 0) {
    pool.Release(std::move(blocks_.back()));  // fresh blocks nothing was read into
    blocks_.pop_back();
  }
  stats_->Add(Counter::kProxyCopiedBytes, res.moved);
  return res;
}

StagingBuffer::Mark StagingBuffer::TailMark() const {
  if (!blocks_.empty() && blocks_.back().tail < net::BlockPool::kBlockBytes) {
    return Mark{blocks_.size() - 1, blocks_.back().tail};
  }
  return Mark{blocks_.size(), 0};
}

StagingBuffer::WriteResult StagingBuffer::WriteTo(int out_fd, uint64_t committing,
                                                  uint64_t max_bytes) {
  WriteResult res;
  if (!blocks_.empty()) {
    res = WriteBlocks(out_fd, committing, max_bytes);  // blocks hold the oldest bytes
  }
  if (blocks_.empty() && !res.out_blocked && res.error == 0) {
    WriteResult more = WritePipes(out_fd, committing - res.bytes, max_bytes - res.bytes);
    more.bytes += res.bytes;
    res = more;
  }
  if (bytes_ == 0) {
    Clear();  // nothing staged: the (empty) pipes go back to the pool
  }
  return res;
}

StagingBuffer::WriteResult StagingBuffer::WriteBlocks(int out_fd, uint64_t committing,
                                                      uint64_t max_bytes) {
  WriteResult res;
  // The front blocks' bytes, written by one sendmsg() (a turn per kMaxIov blocks).
  while (res.bytes < committing && res.bytes < max_bytes && !blocks_.empty()) {
    iovec iov[kMaxIov];
    size_t count = 0;
    const uint64_t want =
        AppendFront(iov, &count, kMaxIov, std::min(committing - res.bytes, max_bytes - res.bytes));
    const net::IoResult r = net::SendV(out_fd, iov, count);
    if (r.status != net::IoStatus::kOk) {
      WriteFailed(r, &res);
      break;
    }
    Consume(r.bytes);
    res.bytes += r.bytes;
    if (r.bytes < want) {
      res.out_blocked = true;  // the socket took less than offered: it is full
      break;
    }
  }
  return res;
}

StagingBuffer::WriteResult StagingBuffer::WritePipes(int out_fd, uint64_t committing,
                                                     uint64_t max_bytes) {
  WriteResult res;
  while (res.bytes < committing && res.bytes < max_bytes && !pipes_.empty()) {
    net::Pipe& head = pipes_.front();
    if (head.bytes == 0) {
      reactor_->pipes().Release(std::move(head));
      pipes_.erase(pipes_.begin());
      continue;
    }
    const uint64_t left = committing - res.bytes;
    const uint64_t want = std::min({head.bytes, left, max_bytes - res.bytes});
    // More of this run follows at once: let TCP fill whole segments.
    const net::IoResult r = net::Splice(head.read_end.get(), out_fd, want, left > want);
    if (r.status != net::IoStatus::kOk) {
      WriteFailed(r, &res);  // EAGAIN: the pipe holds bytes, so the socket is full
      break;
    }
    head.bytes -= r.bytes;
    bytes_ -= r.bytes;
    res.bytes += r.bytes;
    if (head.bytes == 0 && pipes_.size() > 1) {
      reactor_->pipes().Release(std::move(head));
      pipes_.erase(pipes_.begin());
    }
  }
  return res;
}

uint64_t StagingBuffer::AppendFront(iovec* iov, size_t* count, size_t max_count,
                                    uint64_t max_bytes) const {
  uint64_t added = 0;
  for (size_t i = 0; i < blocks_.size() && *count < max_count && added < max_bytes; ++i) {
    const size_t n =
        static_cast<size_t>(std::min<uint64_t>(blocks_[i].staged(), max_bytes - added));
    iov[(*count)++] = iovec{blocks_[i].data.get() + blocks_[i].head, n};
    added += n;
  }
  return added;
}

void StagingBuffer::Consume(uint64_t bytes) {
  bytes_ -= bytes;
  while (bytes > 0) {
    net::Block& head = blocks_.front();
    const uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(bytes, head.staged()));
    head.head += n;
    bytes -= n;
    if (head.staged() == 0) {
      reactor_->blocks().Release(std::move(head));
      blocks_.erase(blocks_.begin());
    }
  }
  if (bytes_ == 0) {
    Clear();
  }
}

void StagingBuffer::Clear() {
  for (net::Pipe& pipe : pipes_) {
    reactor_->pipes().Release(std::move(pipe));  // dirty ones are closed
  }
  pipes_.clear();
  for (net::Block& block : blocks_) {
    reactor_->blocks().Release(std::move(block));
  }
  blocks_.clear();
  bytes_ = 0;
}

}  // namespace relay
