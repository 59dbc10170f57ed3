#include "net/block_pool.h"

#include <utility>

namespace relay::net {

BlockPool::BlockPool(size_t max_idle, size_t max_in_use)
    : max_idle_(max_idle), max_in_use_(max_in_use) {
  idle_.reserve(max_idle);
}

bool BlockPool::Acquire(Block* block) {
  if (in_use_ >= max_in_use_) {
    return false;
  }
  if (!idle_.empty()) {
    block->data = std::move(idle_.back());
    idle_.pop_back();
  } else {
    block->data.reset(new uint8_t[kBlockBytes]);  // not value-initialized: no memset
    ++created_;
  }
  block->head = block->tail = 0;
  ++in_use_;
  return true;
}

void BlockPool::Release(Block&& block) {
  if (block.data == nullptr) {
    return;
  }
  --in_use_;
  if (idle_.size() < max_idle_) {
    idle_.push_back(std::move(block.data));
  }
  block.data.reset();  // freed here when the cache is full
  block.head = block.tail = 0;
}

}  // namespace relay::net
