// StagingBuffer: the bytes one peer connection has staged for its node, and the mechanics
// of moving them: stage from the peer's socket, commit to the node's socket, or hand them
// to a gathered write. What the bytes mean (frames, budgets, deadlines) is the
// ProxyConnection's; this class only holds and moves bytes, in order.
//
// Two kinds of storage, in FIFO order: user-space blocks from the reactor's BlockPool
// (copy staging, --forward=copy: recvmsg() in, sendmsg() out) first, then pipes from its
// PipePool (splice staging: splice() in and out, the payload never in user space). New
// bytes go into blocks while copy() is set, which the owner chooses whenever the buffer is
// empty; when every block of the pool is out, copy() clears and staging goes on in pipes,
// after the bytes in blocks (counted as proxy_copy_fallbacks).
//
// Tiny TCP segments take one pipe slot each, so a pipe can fill up holding a few bytes;
// when that happens the next pipe is filled by recv()+write() instead, which packs bytes
// into whole pages (counted as proxy_copied_bytes).
//
// Thread: its ProxyConnection's reactor only. Owned by the ProxyConnection; Clear() gives
// everything back to the pools (a pipe returned with bytes inside is closed by its pool).
#pragma once

#include <sys/uio.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "absl/container/inlined_vector.h"
#include "net/block_pool.h"
#include "net/pipe_pool.h"
#include "net/reactor.h"
#include "server/stats.h"

namespace relay {

class StagingBuffer {
 public:
  // What one stage attempt did.
  struct StageResult {
    uint64_t moved = 0;
    bool socket_empty = false;  // nothing more to read now
    bool eof = false;
    int error = 0;
    bool no_pipe = false;     // a pipe could not be made (fd limit)
    bool pipes_full = false;  // this buffer's pipes are at their cap
  };
  // What one commit attempt did.
  struct WriteResult {
    uint64_t bytes = 0;
    bool out_blocked = false;  // the socket is full (EAGAIN)
    int error = 0;             // errno from writing
  };
  // Where the bytes of the next CopyIn land, to find them again (ForEachPiece).
  struct Mark {
    size_t index;
    uint32_t offset;
  };

  StagingBuffer(net::Reactor* reactor, ShardStats* stats) : reactor_(reactor), stats_(stats) {}
  ~StagingBuffer() { Clear(); }
  StagingBuffer(const StagingBuffer&) = delete;
  StagingBuffer& operator=(const StagingBuffer&) = delete;

  uint64_t bytes() const { return bytes_; }
  size_t pipe_count() const { return pipes_.size(); }
  // New bytes go into blocks (copy staging). Set while empty; cleared at any time (the
  // bytes after stage in pipes, behind those in blocks: commits drain blocks first).
  bool copy() const { return copy_; }
  void set_copy(bool copy) { copy_ = copy; }
  // Every staged byte is in blocks (none in pipes), and there is at least one.
  bool OnlyInBlocks() const;

  // Stages up to `len` bytes from `fd`: into blocks while copy(), the rest (or all) into
  // pipes. `cap`: the connection's staging cap, which bounds its pipes. With
  // `known_available`, the socket is known to hold `len` bytes (an EAGAIN of splice then
  // means a full pipe, without asking the socket). `peer_closed`: a FIN is pending (a
  // short read then does not prove the socket empty).
  StageResult StageIn(int fd, uint64_t len, uint64_t cap, bool known_available, bool peer_closed);
  // Copy staging alone: recvmsg() of up to `len` bytes into blocks (clears copy() when the
  // pool has no block left; the result then moved what blocks could take).
  StageResult CopyIn(int fd, uint64_t len, bool peer_closed);
  Mark TailMark() const;
  // Calls fn(data, size) for each piece of the `n` bytes staged into blocks from `mark`,
  // in order, until fn returns false.
  template <typename F>
  void ForEachPiece(Mark mark, uint64_t n, F&& fn) const {
    for (size_t i = mark.index; n > 0 && i < blocks_.size(); ++i, mark.offset = 0) {
      const net::Block& b = blocks_[i];
      const size_t len = static_cast<size_t>(std::min<uint64_t>(n, b.tail - mark.offset));
      if (!fn(b.data.get() + mark.offset, len)) {
        return;
      }
      n -= len;
    }
  }

  // Writes up to min(`max_bytes`, `committing`) bytes from the front to `out_fd`:
  // sendmsg() from blocks, then splice() from pipes (MSG_MORE / SPLICE_F_MORE while more
  // of the `committing` bytes follow).
  WriteResult WriteTo(int out_fd, uint64_t committing, uint64_t max_bytes);
  // Gathered writes: appends iovecs for up to `max_bytes` front bytes in blocks (at most
  // `max_count` entries); returns how many bytes. Consume() them once written.
  uint64_t AppendFront(iovec* iov, size_t* count, size_t max_count, uint64_t max_bytes) const;
  void Consume(uint64_t bytes);
  // Gives every pipe and block back to the reactor's pools.
  void Clear();

 private:
  StageResult PipeIn(int fd, uint64_t len, uint64_t cap, bool known_available);
  // One recv()+write() into the tail pipe (tiny segments), within its free pages.
  // Returns false when the pipe is full (the caller opens the next).
  bool WriteIntoTailPipe(int fd, uint64_t len, StageResult* res);
  // One splice() into the tail pipe. False when it filled (the caller opens the next).
  bool SpliceIntoTailPipe(int fd, uint64_t len, bool known_available, StageResult* res);
  // Appends `n` bytes read into user space to the pipes (opening one more if the tail
  // fills). False if no pipe could be had: those bytes are lost with the connection.
  bool WriteToPipes(const uint8_t* buf, size_t n);
  // A fresh pipe at the tail, if fewer than `max_pipes` are held.
  bool AddPipe(size_t max_pipes, StageResult* res);
  WriteResult WriteBlocks(int out_fd, uint64_t committing, uint64_t max_bytes);
  WriteResult WritePipes(int out_fd, uint64_t committing, uint64_t max_bytes);

  net::Reactor* reactor_;
  ShardStats* stats_;
  absl::InlinedVector<net::Block, 2> blocks_;  // FIFO, all before any bytes in pipes_
  absl::InlinedVector<net::Pipe, 2> pipes_;    // FIFO: committed bytes leave from the front
  uint64_t bytes_ = 0;                         // in blocks and pipes
  bool copy_ = false;
  bool write_next_pipe_ = false;  // the last pipe filled up fragmented (tiny segments)
};

}  // namespace relay
