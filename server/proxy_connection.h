// ProxyConnection: one peer connected to a node's proxy address. It reads frames and
// stages them, whole, so the node's main connection only ever receives whole frames
// (shared/PROTOCOL.md section 7). It keeps the frame position, the staging budget and the
// deadlines; its StagingBuffer (server/staging_buffer.h) holds and moves the bytes.
//
// How a frame moves (--forward=splice, the default: zero-copy):
//   1. At a frame boundary, peek (MSG_PEEK) at up to 64 KiB of the socket into the
//      reactor's scratch buffer and check every header found there (network id, length).
//      After a large frame only the 10 header bytes are peeked.
//   2. splice() exactly the peeked whole frames (plus the start of a frame whose header
//      was seen) from the socket into this connection's staging pipes: many small frames
//      move in one syscall; a large frame's body moves without being peeked.
//   3. When frames are complete, ask the MainConnection to commit them; it splices them
//      from the pipes into the node's socket as one uninterrupted run.
// Small frames (under 32 KiB) of a sender slower than the relay (its last read drained the
// socket) are staged by copy instead, whenever nothing is staged (PreferCopy): two
// syscalls a frame (recvmsg, sendmsg) instead of three, the relay's delay at light load.
// --forward=copy stages everything that way: in user-space blocks (StagingBuffer): one recvmsg()
// takes the rest of the current frame and up to 64 KiB after it, and ScanPiece finds the frames in
// what was read, so no peek is needed; a read may end inside a header, whose bytes are kept
// (pos_.header_have) and count as a frame begun. When the block pool is used up staging goes on in
// pipes (a header cut in two first waits for a block, retried after
// --accept_backoff).
//
// The reader is a state machine. Where it stands in the sender's stream: at a frame
// boundary, or inside a frame (pos_.frame_left bytes still to come). Why it stopped reading
// before the socket was empty (wait_):
//   kNode    its own staged frames fill its cap (--stage_bytes, or one larger frame):
//            they must drain into the node first;
//   kBudget  the session's share or the reactor's staging memory is used up
//            (StageBudget); woken when memory frees;
//   kPipe    no pipe could be made (fd limit): retried after --accept_backoff;
//   kPaused  a live upgrade paused it at a frame boundary (PauseAtBoundary).
// Memory is charged to the session's StageAccount byte for byte as bytes are staged, and
// given back as they are written to the node: a declared frame length reserves nothing.
//
// Receive buffer: each peer socket gets --peer_receive_buffer, so what peers can queue in
// the kernel is bounded.
//
// Deadlines (one timer): inside a frame, the sender must keep up a minimum rate: the
// frame's deadline is its start + --frame_timeout + bytes received / --frame_min_rate, so
// a header alone is dropped after --frame_timeout and a trickle falls behind (single
// bytes buy almost nothing); and whatever the frame's size, no byte may be missing for
// --frame_stall_timeout (a large frame's credit never lets its sender go silent while it
// holds its node's share). Time the relay itself stops reading (waiting for the node to
// read, for staging memory or for a pipe) does not count. At
// a frame boundary, a sender silent for --peer_idle_timeout is closed.
// A sender that dies or is dropped mid-frame leaves only its partial frame behind: the
// complete frames before it are delivered, the partial bytes are dropped with the pipe.
//
// Thread: lives on its session's reactor only. Owned by its Session; destroyed deferred.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <memory>

#include "absl/container/inlined_vector.h"
#include "absl/time/time.h"
#include "core/frame_header.h"
#include "core/frame_scan.h"
#include "core/stage_budget.h"
#include "net/reactor.h"
#include "net/timer_wheel.h"
#include "net/unique_fd.h"
#include "server/staging_buffer.h"

namespace relay {

class Session;
class Shard;

class ProxyConnection final : public net::EventHandler, public StageWaiter {
 public:
  // `source_ip`: the peer's IPv4 address, counted against the per-IP peer limit by the
  // caller; released when this connection is destroyed.
  ProxyConnection(Shard* shard, Session* session, net::UniqueFd fd, uint64_t source_ip);
  ~ProxyConnection() override;

  // Registers with the reactor. Returns false if that failed (the caller drops it).
  bool Start();
  void OnEvents(uint32_t events) override;
  void OnStageAvailable() override;

  // --- Used by MainConnection while committing ---
  // Whole frames staged and not yet claimed by a commit.
  uint64_t complete_bytes() const { return complete_bytes_; }
  // Claims every complete frame for one commit; returns the byte count.
  uint64_t BeginCommit();
  // Moves up to `committing()` bytes (at most `max_bytes`) from staging into `out_fd`.
  using CommitResult = StagingBuffer::WriteResult;
  CommitResult CommitTo(int out_fd, uint64_t max_bytes);
  uint64_t committing() const { return committing_; }
  bool commit_started() const { return commit_started_; }
  // The main connection was replaced in the middle of this commit: the rest of the frame
  // cannot go to the new one. Drops this connection (counted).
  void AbortCommit();
  // The commit did not start (no byte written): give the frames back for the next main.
  void ReturnCommit();
  // Gathered writes (MainConnection::WriteGathered): several connections' commits in one
  // sendmsg(). CanGather: whole frames wait, all of them in blocks, no commit begun.
  bool CanGather() const;
  // Appends the committing bytes (up to `max_bytes`) as iovecs; returns how many.
  uint64_t AppendCommitted(iovec* iov, size_t* count, size_t max_count, uint64_t max_bytes) const;
  // `bytes` of the commit were written to the node by a gathered write.
  void CommitWritten(uint64_t bytes);

  bool queued = false;  // on a MainConnection's commit queue
  ProxyConnection* queue_next = nullptr;

  // The relay is draining: no new frame from this peer. At a frame boundary it closes
  // now; inside a frame, as soon as that frame is whole. Its complete frames still go out.
  void StopAtBoundary();
  // Closes the socket. Staged complete frames are still delivered; the session deletes
  // this object once nothing is left to deliver. Idempotent.
  void Close();
  // Closes and drops everything staged (the session is ending): gives the staging memory
  // back now and never touches the session again. Idempotent.
  void Discard();
  bool closed() const { return !fd_.valid(); }
  // Live upgrade (server/upgrade.h): read on to the end of the current frame, then begin
  // no new one until Resume(). The connection stays open.
  void PauseAtBoundary() { paused_ = true; }
  void Resume();
  // Paused at a frame boundary with nothing staged or owed to the node: the connection
  // is just its socket and can be handed over.
  bool AtRest() const {
    return !closed() && !pos_.in_frame() && staged_.bytes() == 0 && committing_ == 0 &&
           complete_bytes_ == 0 && !queued;
  }
  int fd() const { return fd_.get(); }
  uint64_t source_ip() const { return source_ip_; }
  // Nothing left to deliver and the socket is closed: safe to delete.
  bool finished() const { return closed() && complete_bytes_ == 0 && committing_ == 0; }

 private:
  enum class Wait : uint8_t { kNone, kNode, kBudget, kPipe, kPaused };
  // What one read step did.
  enum class Step : uint8_t {
    kProgress,     // moved bytes; go on
    kSocketEmpty,  // nothing more to read now (readable_ cleared)
    kStopped,      // stopped for wait_ (or a budget spent)
    kGone,         // the connection closed (and may have been reaped): touch nothing
  };
  using StageResult = StagingBuffer::StageResult;

  void ReadSome();
  // At a frame boundary while draining (closes: kGone) or paused for a live upgrade
  // (kStopped): true, with *step set.
  bool BeginsNoFrame(Step* step);
  Step ReadAtBoundary(uint64_t* budget);
  Step ReadFrameBody(uint64_t* budget);
  // Staging by copy: reads into blocks first (the body of the current frame and what
  // follows it, up to the cap), then finds the frames in what was read (no peek).
  Step ReadCopied(uint64_t* budget);
  // Finds the frames in `n` bytes just read into blocks from `mark`. False if a header
  // was refused (the connection is closed).
  bool ScanCopied(StagingBuffer::Mark mark, uint64_t n);
  // Takes staging memory for up to `want` bytes; 0 (and waiting for memory) if none.
  uint64_t GrantStage(uint64_t want);
  void WaitForStage();
  // After a stage attempt: the sender went away (kGone) or the socket is empty
  // (kSocketEmpty): true, with *step set.
  bool ReadEnded(const StageResult& r, Step* step);
  // After a stage attempt: why it moved less than `granted` (wait_), or kProgress (also
  // after a short grant: the next Grant waits, knowing whether this connection heads a
  // frame).
  Step AfterStage(const StageResult& r, uint64_t granted);
  // Stages up to `len` bytes: by copy into blocks or by splice into pipes (choosing which
  // when nothing is staged).
  StageResult StageIn(uint64_t len, bool known_available);
  // Whether the next bytes go by copy (--forward=copy).
  bool PreferCopy() const;
  // Accounting after bytes of the commit were written (counters, budget, wake-up).
  void AfterWrite(uint64_t bytes);
  // Frame state after bytes of a peeked window were staged (CountMovedFrames).
  void AccountPeeked(const MovedFrames& m);
  void BeginPartialFrame(uint64_t frame_size, uint64_t left);
  // When the current frame must be whole: its start + --frame_timeout + the bytes
  // received so far / --frame_min_rate (a sender below the minimum rate falls behind).
  // ... or sooner, --frame_stall_timeout after the last byte of the frame arrived.
  absl::Time FrameDeadline() const;
  absl::Time RateDeadline() const;
  void OnDeadline();
  // The frame missed its deadline: counted, logged, its sender dropped.
  void DropLateFrame(absl::Time now);
  // No staging buffer could be had (a pipe: fd limit; a block, for a header cut in two):
  // retried after --accept_backoff (counted as proxy_pipe_waits).
  void WaitForPipe();
  void OnPipeRetry();
  // The sender closed or reset: deliver what is whole, drop the partial frame.
  void OnPeerGone();
  // Closes for a reason (frame deadline, idle...) and reaps if nothing is left.
  void Drop();
  void ProtocolError(FrameError error);
  void FrameCompleted(uint64_t bytes, uint64_t frames);
  void NotifyMain();
  void ReleaseStage(uint64_t bytes);

  Shard* shard_;
  Session* session_;
  net::UniqueFd fd_;
  uint64_t source_ip_;
  uint64_t handle_ = 0;
  bool registered_ = false;
  bool readable_ = false;
  bool peer_closed_ = false;  // EPOLLRDHUP seen
  Wait wait_ = Wait::kNone;
  StageBudget::Limit grant_limit_ = StageBudget::Limit::kNone;  // of the last grant
  absl::Time now_;                                              // read once per ReadSome

  StagingBuffer staged_;           // every staged byte, all charged to the session's account
  net::Timer deadline_;            // frame deadline, or idle deadline at a boundary
  net::Timer pipe_retry_;          // armed while wait_ == kPipe
  uint64_t committing_ = 0;        // claimed by the current commit (at the front)
  uint64_t complete_bytes_ = 0;    // whole frames after those, not yet claimed
  StreamPosition pos_;             // where the reader stands among the frames
  absl::Time frame_start_;         // when its first byte was staged
  absl::Time frame_progress_;      // when its last byte was staged
  bool commit_started_ = false;    // bytes of the current commit already written
  bool stop_at_boundary_ = false;  // draining: close at the next frame boundary
  bool paused_ = false;            // live upgrade: begin no new frame
  bool slow_sender_ = false;       // its last read drained the socket (PreferCopy)
};

}  // namespace relay
