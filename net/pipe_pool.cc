#include "net/pipe_pool.h"

#include <utility>

#include "net/socket_ops.h"

namespace relay::net {

PipePool::PipePool(size_t pipe_bytes, size_t max_idle)
    : pipe_bytes_(pipe_bytes), max_idle_(max_idle) {
  idle_.reserve(max_idle);
}

absl::Status PipePool::Acquire(Pipe* pipe) {
  if (!idle_.empty()) {
    *pipe = std::move(idle_.back());
    idle_.pop_back();
    return absl::OkStatus();
  }
  Pipe fresh;
  absl::Status status = MakePipe(pipe_bytes_, &fresh.read_end, &fresh.write_end, &fresh.capacity);
  if (!status.ok()) {
    return status;
  }
  ++created_;
  *pipe = std::move(fresh);
  return absl::OkStatus();
}

void PipePool::Release(Pipe&& pipe) {
  if (!pipe.valid()) {
    return;
  }
  if (pipe.bytes != 0) {
    ++killed_dirty_;
    pipe.read_end.Reset();
    pipe.write_end.Reset();
    return;
  }
  if (idle_.size() < max_idle_) {
    pipe.full = false;
    pipe.filled_by_write = false;
    idle_.push_back(std::move(pipe));
  }
  // else: `pipe` closes when it goes out of scope
  Pipe drop = std::move(pipe);
}

}  // namespace relay::net
