#include "core/stage_budget.h"

#include <algorithm>

#include "base/log.h"

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
  return InUse() < limit ? limit - InUse() : 0;
}

uint64_t StageBudget::Grant(StageAccount* account, StageWaiter* waiter, uint64_t want,
                            bool node_draining, Limit* limit) {
  const bool head = account->head == waiter;
  bool finishing = head && waiter->finishing_ == account;
  uint64_t granted = 0;
  Limit why = Limit::kNone;
  if (!finishing) {
    const uint64_t reserved = head ? 0 : account->head_need;
    const bool partial = !head && waiter->large_partial_;
    const uint64_t session_cap = partial ? limits_.per_session / 2 : limits_.per_session;
    uint64_t session_room =
        account->used + reserved < session_cap ? session_cap - account->used - reserved : 0;
    if (head) {
      // The head may finish its frame beyond the share: others' partial frames can fill
      // the share before a frame becomes the head, and then none of them could finish.
      session_room = std::max(session_room, account->head_need);
    }
    // The headroom serves a small session up to `small_session` bytes, and the head of a
    // session whose node is taking data.
    uint64_t reactor_room = ReactorRoom(head && node_draining);
    if (!(head && node_draining) && account->used < limits_.small_session) {
      reactor_room =
          std::min(ReactorRoom(true), reactor_room + (limits_.small_session - account->used));
    }
    granted = std::min({want, session_room, reactor_room});
    why = granted == want                ? Limit::kNone
          : session_room <= reactor_room ? (partial ? Limit::kPartial : Limit::kSession)
                                         : Limit::kReactor;
    if (why == Limit::kReactor && head && granted < account->head_need) {
      // The reactor is full and this session head cannot finish its frame in it: it may
      // finish beyond the total if the rest of its frame fits in what the overdraft has
      // left (or, with no head finishing, whatever its size: see the header).
      if (account->head_need <= (InUse() < Cap() ? Cap() - InUse() : 0) || finishing_heads_ == 0) {
        AdmitFinishing(account, waiter);
        finishing = true;
      }
    }
  }
  if (finishing) {
    // Admitted: the rest of its frame is reserved (within the cap, unless the frame is
    // larger than the overdraft left when it was admitted).
    granted = std::min({want, account->head_need, used_ < Cap() ? Cap() - used_ : 0});
    why = granted == want ? Limit::kNone : Limit::kReactor;
  }
  if (used_ + granted > limits_.total) {
    overdraft_granted_ += used_ + granted - std::max(used_, limits_.total);
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
    *limit = why;
  }
  return granted;
}

void StageBudget::AdmitFinishing(StageAccount* account, StageWaiter* waiter) {
  waiter->finishing_ = account;
  reserved_ += account->head_need;
  ++finishing_heads_;
  WakeNextHead();  // the next head may fit in what is left
}

void StageBudget::EndFinishing(StageWaiter* waiter) {
  StageAccount* account = waiter->finishing_;
  if (account == nullptr) {
    return;
  }
  RELAY_DCHECK(account->head == waiter && reserved_ >= account->head_need);
  reserved_ -= account->head_need;
  --finishing_heads_;
  waiter->finishing_ = nullptr;
  if (waiter->list_ == &finishing_waiters_) {
    finishing_waiters_.Remove(waiter);
  }
  WakeNextHead();
}

bool StageBudget::ClaimHead(StageAccount* account, StageWaiter* waiter, uint64_t need) {
  if (account->head == nullptr) {
    account->head = waiter;
    account->head_need = need;
  } else if (account->head == waiter) {
    if (waiter->finishing_ == account) {
      reserved_ = reserved_ - account->head_need + need;  // the reservation stays exact
    }
    account->head_need = need;
  }
  return account->head == waiter;
}

void StageBudget::WakeNextHead() {
  // Only a session head (a partial frame) can finish beyond the total: wake the first
  // waiting one while the overdraft has room for any.
  if (!head_waiters_.empty() && InUse() < Cap()) {
    head_waiters_.PopFront()->OnStageAvailable();
  }
}

void StageBudget::DropHead(StageAccount* account, StageWaiter* waiter) {
  if (account->head == waiter) {
    EndFinishing(waiter);
  }
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
  if (!account->frame_waiters.empty() || !account->partial_waiters.empty()) {
    WakeFirst(account->frame_waiters, account->partial_waiters);
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
}

void StageBudget::Release(StageAccount* account, uint64_t bytes) {
  Unused(account, bytes);
  if (bytes == 0) {
    return;
  }
  // Finishing heads first, if any waits: finishing frames is what frees memory when
  // partial frames hold the rest. Then the first waiting session head, if it may fit.
  for (uint64_t woken = 0; woken < bytes && !finishing_waiters_.empty(); woken += kWakeStep) {
    finishing_waiters_.PopFront()->OnStageAvailable();
  }
  WakeNextHead();
  // The session's own waiters next, those inside a frame first: its drained bytes are
  // its share.
  for (uint64_t woken = 0;
       woken < bytes && !(account->frame_waiters.empty() && account->waiters.empty());
       woken += kWakeStep) {
    WakeFirst(account->frame_waiters, account->waiters);
  }
  // Large partial frames wait until their session is below half its share again.
  for (uint64_t woken = 0; woken < bytes && !account->partial_waiters.empty() &&
                           account->used + account->head_need < limits_.per_session / 2;
       woken += kWakeStep) {
    account->partial_waiters.PopFront()->OnStageAvailable();
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
  if (limit == Limit::kPartial) {
    account->partial_waiters.PushBack(waiter);
  } else if (limit == Limit::kSession) {
    (in_frame ? account->frame_waiters : account->waiters).PushBack(waiter);
  } else if (waiter->finishing_ != nullptr) {
    finishing_waiters_.PushBack(waiter);
  } else {
    // Session heads wait apart: they are the ones that can finish beyond the total.
    (account->head == waiter ? head_waiters_ : reactor_waiters_).PushBack(waiter);
  }
}

void StageBudget::Cancel(StageWaiter* waiter) {
  if (waiter->list_ != nullptr) {
    waiter->list_->Remove(waiter);
  }
  EndFinishing(waiter);  // going away: its reservation frees, the next head may finish
}

}  // namespace relay
