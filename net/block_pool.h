// BlockPool: a per-reactor cache of fixed-size user-space buffers for staging frames by
// copy (recv() into a block, send() out of it) instead of splice(). The counterpart of
// PipePool for the copy path: a connection holds blocks only while bytes are staged in
// them and gives them back as they drain, so in a steady flow the same few blocks go
// round hot in the cache and nothing is allocated per frame.
//
// Bounds: at most `max_in_use` blocks are out at once (Acquire then fails and the caller
// stages by splice instead), and at most `max_idle` are kept for reuse.
//
// Thread: owned by one reactor and used only on its thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace relay::net {

struct Block {
  std::unique_ptr<uint8_t[]> data;
  uint32_t head = 0;  // first staged byte
  uint32_t tail = 0;  // one past the last staged byte
  uint32_t staged() const { return tail - head; }
};

class BlockPool {
 public:
  // Below glibc's mmap threshold (128 KiB), so a new block comes from the heap, not a
  // fresh mapping; and it holds a 64 KiB frame with its header.
  static constexpr uint32_t kBlockBytes = 96 * 1024;

  BlockPool(size_t max_idle, size_t max_in_use);
  BlockPool(const BlockPool&) = delete;
  BlockPool& operator=(const BlockPool&) = delete;

  // Fills *block with an empty block. False when `max_in_use` are out.
  bool Acquire(Block* block);
  // Takes a block back (its bytes are dropped): kept if the cache has room, freed if not.
  void Release(Block&& block);

  size_t in_use() const { return in_use_; }
  size_t idle() const { return idle_.size(); }
  uint64_t created() const { return created_; }
  void set_max_in_use(size_t n) { max_in_use_ = n; }

 private:
  size_t max_idle_;
  size_t max_in_use_;
  size_t in_use_ = 0;
  std::vector<std::unique_ptr<uint8_t[]>> idle_;
  uint64_t created_ = 0;
};

}  // namespace relay::net
