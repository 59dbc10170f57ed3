// ProxyConnection: one peer connected to a node's proxy address. It reads frames and
// stages them, whole, in pipes, so the node's main connection only ever receives whole
// frames (shared/PROTOCOL.md section 7).
//
// How a frame moves (zero-copy):
//   1. At a frame boundary, peek (MSG_PEEK) at up to 64 KiB of the socket into the
//      reactor's scratch buffer and check every header found there (network id, length).
//      After a large frame only the 10 header bytes are peeked.
//   2. splice() exactly the peeked whole frames (plus the start of a frame whose header
//      was seen) from the socket into this connection's staging pipes: many small frames
//      move in one syscall; a large frame's body moves without being peeked.
//   3. When frames are complete, ask the MainConnection to commit them; it splices them
//      from the pipes into the node's socket as one uninterrupted run.
// Tiny TCP segments take one pipe slot each, so a pipe can fill up holding a few bytes;
// when that happens the next pipe is filled by recv()+write() instead, which packs bytes
// into whole pages (counted as proxy_copied_bytes). Large segments are always spliced.
// A sender that dies mid-frame leaves only its partial frame in the pipe: the complete
// frames before it are delivered, the partial bytes are dropped with the pipe. A sender
// that stalls mid-frame blocks nobody: only whole frames are ever committed.
// Backpressure: staged bytes are capped (one pipe's worth, or one large frame alone); a
// connection at the cap stops reading until the main connection drains it.
//
// Thread: lives on its session's reactor only. Owned by its Session; destroyed deferred.
#pragma once

#include <cstdint>
#include <memory>

#include "absl/container/inlined_vector.h"
#include "core/frame_header.h"
#include "net/pipe_pool.h"
#include "net/reactor.h"
#include "net/timer_wheel.h"
#include "net/unique_fd.h"

namespace relay {

class Session;
class Shard;

class ProxyConnection final : public net::EventHandler {
 public:
  ProxyConnection(Shard* shard, Session* session, net::UniqueFd fd);
  ~ProxyConnection() override;

  // Registers with the reactor. Returns false if that failed (the caller drops it).
  bool Start();
  void OnEvents(uint32_t events) override;

  // --- Used by MainConnection while committing ---
  // Whole frames staged and not yet claimed by a commit.
  uint64_t complete_bytes() const { return complete_bytes_; }
  // Claims every complete frame for one commit; returns the byte count.
  uint64_t BeginCommit();
  // Moves up to `committing()` bytes from the staging pipes into `out_fd`.
  struct CommitResult {
    uint64_t bytes = 0;
    bool out_blocked = false;  // the socket is full (EAGAIN)
    int error = 0;             // errno from writing to the main connection
  };
  CommitResult CommitTo(int out_fd, uint64_t max_bytes);
  uint64_t committing() const { return committing_; }
  bool commit_started() const { return commit_started_; }
  // The main connection was replaced in the middle of this commit: the rest of the frame
  // cannot go to the new one. Drops this connection (counted).
  void AbortCommit();
  // The commit did not start (no byte written): give the frames back for the next main.
  void ReturnCommit();

  bool queued = false;             // on a MainConnection's commit queue
  bool waiting_for_stage = false;  // on the shard's list of peers waiting for budget
  ProxyConnection* queue_next = nullptr;

  // Closes the socket. Staged complete frames are still delivered; the session deletes
  // this object once nothing is left to deliver. Idempotent.
  void Close();
  bool closed() const { return !fd_.valid(); }
  // Nothing left to deliver and the socket is closed: safe to delete.
  bool finished() const { return closed() && complete_bytes_ == 0 && committing_ == 0; }

 private:
  void ReadSome();
  // Splices up to `len` bytes into the staging pipes. Returns the bytes moved; sets
  // `socket_empty` when the socket had no more data and `blocked` when no pipe room.
  uint64_t SpliceIn(uint64_t len, bool known_available, bool* socket_empty, bool* eof, int* error);
  // --forward=copy: stages in a user-space buffer with recv(), commits with send().
  uint64_t CopyIn(uint64_t len, bool* socket_empty, bool* eof, int* error);
  CommitResult CopyOut(int out_fd, uint64_t max_bytes);
  // Appends bytes read by copy to the staging pipes (opening one more if the tail fills).
  // Returns false if no pipe could be had: those bytes are lost with the connection.
  bool WriteToPipes(const uint8_t* buf, size_t n);
  // Recomputes frame state after `moved` bytes of the `peeked` window were staged.
  // Returns where the last frame that got any byte ends (what must stay reserved).
  uint64_t AccountPeeked(const uint8_t* peeked, size_t peeked_len, uint64_t moved);
  // No byte of the current frame arrived for the keepalive timeout: drop the sender.
  void OnStallTimer();
  void NoteFrameProgress();
  // The sender closed or reset: deliver what is whole, drop the partial frame.
  void OnPeerGone();
  void ProtocolError(FrameError error);
  void FrameCompleted(uint64_t bytes, uint64_t frames);
  void NotifyMain();
  uint64_t StageLimitFor(uint64_t frame_size) const;
  void ReleaseEmptyPipes();

  Shard* shard_;
  Session* session_;
  net::UniqueFd fd_;
  uint64_t handle_ = 0;
  bool registered_ = false;
  bool readable_ = false;
  bool peer_closed_ = false;  // EPOLLRDHUP seen
  bool blocked_ = false;      // stopped reading for lack of staging room

  absl::InlinedVector<net::Pipe, 2> pipes_;  // FIFO: committed bytes leave from front
  uint64_t stage_bytes_ = 0;                 // bytes in pipes_
  uint64_t reserved_ = 0;                    // taken from the shard's staging budget (frames begun)
  net::Timer stall_timer_;                   // armed while a frame is half received
  uint64_t committing_ = 0;                  // claimed by the current commit (at the front)
  uint64_t complete_bytes_ = 0;              // whole frames after those, not yet claimed
  uint64_t frame_left_ = 0;                  // bytes of the current frame still in the socket
  uint64_t frame_size_ = 0;                  // size of the current (partial) frame, header included
  uint32_t last_length_ = 0;                 // payload length of the last header seen
  bool commit_started_ = false;              // bytes of the current commit already written
  // --forward=copy only (benchmarks): the staging buffer, bytes [copy_head_, copy_tail_).
  std::unique_ptr<char[]> copy_buf_;
  size_t copy_cap_ = 0;
  size_t copy_head_ = 0;
  size_t copy_tail_ = 0;
  bool copy_next_pipe_ = false;  // the last pipe filled up fragmented (tiny segments)
};

}  // namespace relay
