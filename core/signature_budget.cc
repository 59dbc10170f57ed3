#include "core/signature_budget.h"

#include <algorithm>

namespace relay {

bool SignatureBudget::Take(uint64_t source, absl::Time now, absl::Duration* wait) {
  if (limits_.rate <= 0) {
    return true;
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
    return true;
  }
  ++used;
  bucket_.TakeOrQueue(limits_.rate, burst, now, wait);
  return false;
}

}  // namespace relay
