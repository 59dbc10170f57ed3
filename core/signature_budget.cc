#include "core/signature_budget.h"

#include <algorithm>

namespace relay {

bool SignatureBudget::TakeTurnSlot(uint64_t turn) {
  if (turn != turn_) {
    turn_ = turn;
    turn_checks_ = 0;
  }
  if (turn_checks_ >= std::min(kChecksPerTurn, std::max(1.0, limits_.rate / 100))) {
    return false;
  }
  ++turn_checks_;
  return true;
}

bool SignatureBudget::Redeem(uint64_t turn) { return limits_.rate <= 0 || TakeTurnSlot(turn); }

SignatureBudget::Grant SignatureBudget::Take(uint64_t source, absl::Time now, uint64_t turn,
                                             absl::Duration* wait) {
  if (limits_.rate <= 0) {
    return Grant::kNow;
  }
  if (!TakeTurnSlot(turn)) {
    return Grant::kNextTurn;
  }
  const int64_t second = absl::ToInt64Seconds(now - absl::UnixEpoch());
  if (second != second_) {
    second_ = second;
    used_.clear();  // bounded by the sources of one second, which hold connections
  }
  uint32_t& used = used_[source];
  const double burst = std::max(1.0, limits_.rate / 100);
  const double reserve_rate = limits_.rate / 4;
  if (bucket_.Take(limits_.rate, burst, now, wait) ||
      (used < limits_.light_per_second &&
       reserve_.Take(reserve_rate, std::max(1.0, reserve_rate / 100), now, wait))) {
    ++used;
    return Grant::kNow;
  }
  --turn_checks_;  // no check this turn: the slot is free again
  ++used;
  bucket_.TakeOrQueue(limits_.rate, burst, now, wait);
  return Grant::kQueued;
}

}  // namespace relay
