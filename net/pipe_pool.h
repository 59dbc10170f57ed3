// PipePool: a per-reactor cache of pipes for splice() (after HAProxy's pipe.c).
//
// A Pipe counts the bytes known to sit in it: that is how an EAGAIN from splice() is
// told apart (pipe full vs. socket empty) and how the pool knows a returned pipe is dirty.
// Release() keeps an empty pipe for reuse (up to `max_idle`) and closes a pipe that still
// holds bytes, since those bytes belong to a frame nobody will finish.
//
// Thread: owned by one reactor and used only on its thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "net/unique_fd.h"

namespace relay::net {

struct Pipe {
  UniqueFd read_end;
  UniqueFd write_end;
  size_t capacity = 0;           // F_GETPIPE_SZ after sizing (an upper bound on bytes inside)
  size_t bytes = 0;              // bytes known to be inside
  bool full = false;             // splice() into it returned EAGAIN with bytes inside
  bool filled_by_write = false;  // filled by write() rather than splice() (see ProxyConnection)
  bool valid() const { return read_end.valid(); }
};

class PipePool {
 public:
  // `pipe_bytes`: capacity asked for each pipe (F_SETPIPE_SZ); `max_idle`: empty pipes kept.
  PipePool(size_t pipe_bytes, size_t max_idle);
  PipePool(const PipePool&) = delete;
  PipePool& operator=(const PipePool&) = delete;

  // Fills *pipe with an empty pipe, from the cache when it has one. Returns an error only
  // when a new pipe cannot be made (EMFILE, ENFILE).
  absl::Status Acquire(Pipe* pipe);
  // Takes a pipe back: cached if empty and the cache has room, closed otherwise.
  void Release(Pipe&& pipe);

  size_t idle() const { return idle_.size(); }
  uint64_t created() const { return created_; }
  uint64_t killed_dirty() const { return killed_dirty_; }
  size_t pipe_bytes() const { return pipe_bytes_; }

 private:
  size_t pipe_bytes_;
  size_t max_idle_;
  std::vector<Pipe> idle_;
  uint64_t created_ = 0;
  uint64_t killed_dirty_ = 0;
};

}  // namespace relay::net
