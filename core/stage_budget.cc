#include "core/stage_budget.h"

#include <algorithm>

#include "core/log.h"

namespace relay {
namespace {

// What one woken waiter is expected to take: wake about as many waiters as the freed
// memory can serve (a herd would only fight over it), at least one.
constexpr uint64_t kWakeStep = 64 * 1024;

// Wakes the first waiter of `first`, or else of `then` (one of them is not empty).
void WakeFirst(StageWaitList& first, StageWaitList& then) {
  (first.empty() ? then : first).PopFront()->OnStageAvailable();
}

}  // namespace

void StageWaitList::PushBack(StageWaiter* w) {
  RELAY_DCHECK(w->list_ == nullptr);
  w->list_ = this;
  w->prev_ = tail_;
  w->next_ = nullptr;
  (tail_ != nullptr ? tail_->next_ : head_) = w;
  tail_ = w;
  ++size_;
}

void StageWaitList::Remove(StageWaiter* w) {
  RELAY_DCHECK(w->list_ == this);
  (w->prev_ != nullptr ? w->prev_->next_ : head_) = w->next_;
  (w->next_ != nullptr ? w->next_->prev_ : tail_) = w->prev_;
  w->list_ = nullptr;
  w->prev_ = w->next_ = nullptr;
  --size_;
}

StageWaiter* StageWaitList::PopFront() {
  StageWaiter* w = head_;
  if (w != nullptr) {
    Remove(w);
  }
  return w;
}

uint64_t StageBudget::ReactorRoom(bool headroom) const {
  const uint64_t limit =
      headroom ? limits_.total : limits_.total - std::min(limits_.headroom, limits_.total);
  return used_ < limit ? limit - used_ : 0;
}

uint64_t StageBudget::Grant(StageAccount* account, StageWaiter* waiter, uint64_t want,
                            bool node_draining, Limit* limit) {
  const bool head = account->head == waiter;
  const uint64_t reserved = head ? 0 : account->head_need;
  const uint64_t session_cap = limits_.per_session;
  uint64_t session_room =
      account->used + reserved < session_cap ? session_cap - account->used - reserved : 0;
  if (head) {
    // The head may finish its frame beyond the share: others' partial frames can fill
    // the share before a frame becomes the head, and then none of them could ever finish.
    session_room = std::max(session_room, account->head_need);
  }
  // The headroom serves a small session up to `small_session` bytes, and the head of a
  // session whose node is taking data.
  uint64_t reactor_room = ReactorRoom(head && node_draining);
  if (!(head && node_draining) && account->used < limits_.small_session) {
    reactor_room =
        std::min(ReactorRoom(true), reactor_room + (limits_.small_session - account->used));
  }
  uint64_t granted = std::min({want, session_room, reactor_room});
  if (granted < want && head && reactor_room < session_room &&
      (reactor_head_ == nullptr || reactor_head_ == waiter)) {
    // The reactor is full and this is a session head: it becomes the reactor's head and
    // gets the rest of its frame, beyond the total if need be, so one frame finishes.
    const uint64_t cap = limits_.total + limits_.overdraft;
    const uint64_t frame_rest =
        std::min({want, session_room, account->head_need, used_ < cap ? cap - used_ : 0});
    if (frame_rest > granted) {
      reactor_head_ = waiter;
      const uint64_t beyond = used_ + frame_rest > limits_.total
                                  ? used_ + frame_rest - std::max(used_, limits_.total)
                                  : 0;
      overdraft_granted_ += beyond;
      granted = frame_rest;
    }
  }
  if (account->used == 0 && granted > 0) {
    ++staging_sessions_;
  }
  account->used += granted;
  used_ += granted;
  if (granted > 0 && waiter->list_ != nullptr) {
    // It got memory without being woken (it ran for another reason, e.g. more bytes
    // arrived): it no longer waits. Left on its list, it would take the wake-up meant
    // for a peer that does (a head left vacant with its one wake-up spent on a peer that
    // was not waiting froze a session under TSan's timing).
    waiter->list_->Remove(waiter);
  }
  if (limit != nullptr) {
    *limit = granted == want                ? Limit::kNone
             : session_room <= reactor_room ? Limit::kSession
                                            : Limit::kReactor;
  }
  return granted;
}

bool StageBudget::ClaimHead(StageAccount* account, StageWaiter* waiter, uint64_t need) {
  if (account->head == nullptr) {
    account->head = waiter;
    account->head_need = need;
  } else if (account->head == waiter) {
    account->head_need = need;
  }
  return account->head == waiter;
}

void StageBudget::YieldReactorHead(StageWaiter* waiter) {
  if (reactor_head_ != waiter) {
    return;
  }
  reactor_head_ = nullptr;
  WakeNextHead();
}

void StageBudget::WakeNextHead() {
  // Only a session head (a partial frame) can take the role: wake the first waiting one.
  if (reactor_head_ == nullptr && !head_waiters_.empty()) {
    head_waiters_.PopFront()->OnStageAvailable();
  }
}

void StageBudget::DropHead(StageAccount* account, StageWaiter* waiter) {
  YieldReactorHead(waiter);
  const bool was_head = account->head == waiter;
  if (!was_head && account->head != nullptr) {
    return;
  }
  account->head = nullptr;
  account->head_need = 0;
  // The next head: a peer waiting inside a frame (it claims the role when it runs, and
  // may then finish beyond the share). Also when the role was already vacant: the peer
  // woken to take it may be this one, leaving before it ran (its connection closed), and
  // its wake-up must pass on, or the share could stay full of partial frames with nobody
  // woken to finish one (one extra wake-up at most: the peer woken claims the role).
  if (!account->frame_waiters.empty()) {
    account->frame_waiters.PopFront()->OnStageAvailable();
  }
  if (!was_head) {
    return;
  }
  // Peers of this session held back by the reservation may go on (a bounded number
  // now; later releases wake the rest).
  for (int i = 0; i < 16 && !account->waiters.empty(); ++i) {
    account->waiters.PopFront()->OnStageAvailable();
  }
}

void StageBudget::Unused(StageAccount* account, uint64_t bytes) {
  RELAY_DCHECK(bytes <= account->used && bytes <= used_);
  account->used -= bytes;
  used_ -= bytes;
  if (account->used == 0 && bytes > 0) {
    --staging_sessions_;
  }
}

void StageBudget::Release(StageAccount* account, uint64_t bytes) {
  Unused(account, bytes);
  if (bytes == 0) {
    return;
  }
  // The reactor's head first, if it waits: finishing its frame is what frees memory when
  // partial frames hold the rest. With the role free, the first waiting session head.
  if (reactor_head_ != nullptr && reactor_head_->list_ == &head_waiters_) {
    head_waiters_.Remove(reactor_head_);
    reactor_head_->OnStageAvailable();
  }
  WakeNextHead();
  // The session's own waiters next, those inside a frame first: its drained bytes are
  // its share.
  for (uint64_t woken = 0;
       woken < bytes && !(account->frame_waiters.empty() && account->waiters.empty());
       woken += kWakeStep) {
    WakeFirst(account->frame_waiters, account->waiters);
  }
  // Then as many reactor waiters as the free memory can serve, partial frames first.
  const uint64_t free = available();
  for (uint64_t woken = 0; woken < free && !(head_waiters_.empty() && reactor_waiters_.empty());
       woken += kWakeStep) {
    WakeFirst(head_waiters_, reactor_waiters_);
  }
}

void StageBudget::Wait(StageAccount* account, StageWaiter* waiter, Limit limit, bool in_frame) {
  if (waiter->waiting()) {
    return;
  }
  if (limit == Limit::kSession) {
    (in_frame ? account->frame_waiters : account->waiters).PushBack(waiter);
  } else {
    // Session heads wait apart: they are the ones that can take the reactor's head role.
    (account->head == waiter ? head_waiters_ : reactor_waiters_).PushBack(waiter);
  }
}

void StageBudget::Cancel(StageWaiter* waiter) {
  if (waiter->list_ != nullptr) {
    waiter->list_->Remove(waiter);
  }
  YieldReactorHead(waiter);  // going away: the next partial frame may take the role
}

}  // namespace relay
