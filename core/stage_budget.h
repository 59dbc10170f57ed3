// StageBudget: the staging memory of one reactor (bytes peers have sent that wait in pipes
// for their node), shared so that no session can hold what the others need.
//
// - Memory is granted as bytes arrive, never for a frame's declared length: a sender that
//   announces a 16 MiB frame and sends 10 bytes holds 10 bytes.
// - Each session has an account capped at `per_session` bytes: peers of a node that does
//   not read stop at its share, and TCP pushes back on them.
// - The last `headroom` bytes of the reactor's `total` are kept for small sessions (those
//   holding less than `small_session`): even when big sessions have filled the rest,
//   every other node's traffic still gets staged.
// - Head of line: the oldest partial frame of a session (its "head") has the rest of its
//   frame reserved inside the session's share, so other peers of that session cannot
//   fill the share with partial frames of their own; the head may also use the headroom
//   while its node is taking data. The reservation starts only when a frame becomes the
//   head, and by then the others' partial frames may fill the share (many senders of
//   large frames do): so the head is granted the rest of its frame even beyond the share,
//   by at most that frame. Its frame completes, drains to the node and frees memory; the
//   next head comes from the peers waiting inside a frame, woken first. A head whose
//   sender stalls is dropped by its frame deadline (ProxyConnection), which frees the
//   reservation.
// - Partial large frames: a peer inside a frame of kLargePartial bytes or more, other
//   than the head, is granted memory only while its session holds less than half its
//   share (the head's reservation counted). However many such frames stall, the other
//   half stays for frames that finish (small frames, each peer's next one): peers that
//   send whole frames keep flowing while partial frames wait for their turn as head.
// - Head of line across sessions: when the reactor's memory is all taken (typically by
//   many sessions' partial frames, none of which can then finish), session heads are
//   let finish their frames beyond `total`, within `overdraft` (one largest frame): a
//   head is admitted when the rest of its frame fits in what is left of the overdraft
//   once the frames of the heads admitted before it are counted whole (their rests are
//   reserved), so every admitted head can finish and staging always makes progress; the
//   budget is exceeded by at most `overdraft`. The first head admitted with none
//   finishing always fits (a frame is at most the overdraft); so do as many more as the
//   overdraft holds (sixteen of 1 MiB frames with the default 16 MiB), so one head whose
//   sender is slow, or stalled by TCP, holds back its own frame only, not the reactor (a
//   single head at a time, as before, let one such sender stop a reactor's forwarding
//   for hundreds of milliseconds: docs/RELIABILITY.md). An admitted head finishes when its
//   frame is whole or its sender goes away (a trickling sender holds its reservation at
//   most until its frame deadline). Admitting a head wakes the next waiting one, while
//   the overdraft has room; a finishing head that waits for memory (only when its frame
//   is larger than what is left: settings where a frame exceeds the overdraft) is woken
//   first when memory frees.
// - Who waits, and in what order: a peer stopped by its session's share waits on that
//   session's account (inside a frame apart, woken first) and is woken when that
//   session's bytes drain or its head's frame is whole; a peer stopped by the
//   reactor-wide limit waits in a FIFO (session heads, inside a frame, in one of their
//   own, woken first) and is woken in arrival order as memory frees.
//
// Thread: one budget per reactor; every method runs on that reactor's thread. Accounts
// and waiters must outlive their membership (Cancel() before destroying a waiter; an
// account must be empty of waiters and bytes when destroyed).
#pragma once

#include <cstddef>
#include <cstdint>

namespace relay {

class StageBudget;

// Something that waits for staging memory (a proxy connection). Intrusive: no
// allocation to wait.
class StageWaiter {
 public:
  virtual ~StageWaiter() = default;
  // Memory may be available now: try again (called on the reactor thread, from a
  // Release; the waiter should defer its work, e.g. to the reactor's ready list).
  virtual void OnStageAvailable() = 0;
  bool waiting() const { return list_ != nullptr; }
  // Admitted to finish its frame beyond the reactor's total (see StageBudget).
  bool finishing() const { return finishing_ != nullptr; }
  // The waiter is inside a frame of at least StageBudget::kLargePartial bytes (see
  // StageBudget: such frames of peers other than the head share half a session's share).
  void set_large_partial(bool large) { large_partial_ = large; }

 private:
  friend class StageBudget;
  friend class StageWaitList;
  class StageWaitList* list_ = nullptr;
  StageWaiter* prev_ = nullptr;
  StageWaiter* next_ = nullptr;
  struct StageAccount* finishing_ = nullptr;  // the account it heads, while admitted
  bool large_partial_ = false;
};

// A FIFO of waiters (intrusive doubly linked list).
class StageWaitList {
 public:
  void PushBack(StageWaiter* w);
  void Remove(StageWaiter* w);
  StageWaiter* PopFront();
  bool empty() const { return head_ == nullptr; }
  size_t size() const { return size_; }

 private:
  StageWaiter* head_ = nullptr;
  StageWaiter* tail_ = nullptr;
  size_t size_ = 0;
};

// One session's share.
struct StageAccount {
  uint64_t used = 0;
  StageWaitList waiters;          // peers stopped by this account's cap at a frame boundary
  StageWaitList frame_waiters;    // ... inside a frame: the next head is one of them
  StageWaitList partial_waiters;  // ... inside large frames, at half the share (kPartial)
  StageWaiter* head = nullptr;    // the peer whose partial frame is reserved
  uint64_t head_need = 0;         // bytes of the head's frame not yet granted
};

class StageBudget {
 public:
  struct Limits {
    uint64_t total = 256ull << 20;        // --stage_budget
    uint64_t per_session = 32ull << 20;   // --session_stage_bytes
    uint64_t headroom = 64ull << 20;      // of total, kept for small sessions
    uint64_t small_session = 1ull << 20;  // below this a session may use the headroom
    uint64_t overdraft = 16ull << 20;     // beyond total, for finishing heads
  };
  // Why a grant came back short.
  enum class Limit { kNone, kSession, kPartial, kReactor };
  // Frames from this size on are "large" while partial (see the header).
  static constexpr uint64_t kLargePartial = 256 * 1024;

  explicit StageBudget(const Limits& limits) : limits_(limits) {}
  StageBudget(const StageBudget&) = delete;
  StageBudget& operator=(const StageBudget&) = delete;

  // Takes up to `want` bytes for `waiter` of `account`; returns how many (possibly 0).
  // `node_draining`: the session's node is taking data now (lets the head use the
  // headroom). *limit says what stopped a short grant. A waiter granted memory stops
  // waiting (it leaves its list).
  uint64_t Grant(StageAccount* account, StageWaiter* waiter, uint64_t want, bool node_draining,
                 Limit* limit = nullptr);
  // `waiter` is inside a frame with `need` bytes still to come: it becomes the account's
  // head if the account has none (the head calls it again as its frame arrives, to keep
  // the reservation exact). Returns true if it is the head.
  bool ClaimHead(StageAccount* account, StageWaiter* waiter, uint64_t need);
  // `waiter`'s frame is whole, or it is going away: it is no longer the head (nor
  // finishing).
  void DropHead(StageAccount* account, StageWaiter* waiter);
  // Gives back bytes taken by Grant and wakes waiters (see above).
  void Release(StageAccount* account, uint64_t bytes);
  // Gives back the unused part of a grant made in the same step (nobody is woken: the
  // memory was never really taken).
  void Unused(StageAccount* account, uint64_t bytes);
  // Waits for memory after a short grant: on the account's lists (kSession, kPartial) or the
  // reactor's FIFO (kReactor). `in_frame`: the waiter is inside a frame (it can become
  // its session's head). Idempotent while waiting.
  void Wait(StageAccount* account, StageWaiter* waiter, Limit limit, bool in_frame = false);
  // Stops waiting (a waiter being destroyed); gives up its reservation if it was
  // finishing. Safe if not waiting.
  void Cancel(StageWaiter* waiter);

  uint64_t used() const { return used_; }
  uint64_t available() const { return InUse() < limits_.total ? limits_.total - InUse() : 0; }
  // Heads admitted to finish their frames beyond `total`, and the rests of those frames.
  size_t finishing_heads() const { return finishing_heads_; }
  uint64_t reserved() const { return reserved_; }
  // Bytes granted to finishing heads beyond `total` (counted: stage_overdraft_bytes).
  uint64_t overdraft_granted() const { return overdraft_granted_; }
  size_t reactor_waiters() const {
    return reactor_waiters_.size() + head_waiters_.size() + finishing_waiters_.size();
  }
  const Limits& limits() const { return limits_; }

 private:
  // Memory taken, the finishing heads' reserved rests counted as taken.
  uint64_t InUse() const { return used_ + reserved_; }
  // What staging may never exceed: the total and one overdraft.
  uint64_t Cap() const { return limits_.total + limits_.overdraft; }
  // Room the reactor-wide limit leaves (the headroom only if `headroom`), the finishing
  // heads' reserved rests counted as used.
  uint64_t ReactorRoom(bool headroom) const;
  // `waiter` (the head of `account`) is admitted to finish its frame: its rest reserved.
  void AdmitFinishing(StageAccount* account, StageWaiter* waiter);
  // `waiter` no longer finishes (its frame is whole, or it goes away): its reservation
  // ends and the next head may be admitted.
  void EndFinishing(StageWaiter* waiter);
  // While the overdraft has room, wakes the first session head waiting for reactor
  // memory: it is admitted on its next Grant if its frame's rest fits. (A waiter at a
  // frame boundary cannot finish a frame, so waking one would end the chain of wake-ups
  // while partial frames hold all the memory.)
  void WakeNextHead();

  const Limits limits_;
  uint64_t used_ = 0;
  uint64_t reserved_ = 0;  // the finishing heads' frames, not yet granted
  size_t finishing_heads_ = 0;
  StageWaitList reactor_waiters_;    // stopped by the reactor's limit, at a frame boundary
  StageWaitList head_waiters_;       // ... inside a frame, as their session's head
  StageWaitList finishing_waiters_;  // ... finishing heads (woken first)
  uint64_t overdraft_granted_ = 0;
};

}  // namespace relay
