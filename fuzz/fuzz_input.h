// FuzzInput: splits one fuzzer input into parameters and a byte stream. Parameters are
// taken from the end of the input and the stream is the front, so a seed that is a real
// stream of frames (with no parameter bytes) is still a meaningful input: missing
// parameter bytes read as zero. Like libFuzzer's FuzzedDataProvider, but also usable by
// the gcc build, which replays the seeds without libFuzzer (fuzz/replay_main.cc).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/string_view.h"

namespace relay::fuzz {

class FuzzInput {
 public:
  FuzzInput(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  // An integer in [lo, hi] from the bytes at the end (0 -> lo when they run out).
  uint64_t Range(uint64_t lo, uint64_t hi) {
    uint64_t v = 0;
    for (uint64_t span = hi - lo; span > 0 && size_ > 0; span >>= 8) {
      v = (v << 8) | data_[--size_];
    }
    if (hi - lo == UINT64_MAX) {
      return v;
    }
    return lo + v % (hi - lo + 1);
  }
  bool Bool() { return Range(0, 1) == 1; }
  // The rest, from the front.
  absl::string_view Rest() const {
    return absl::string_view(reinterpret_cast<const char*>(data_), size_);
  }
  // Up to `n` bytes from the front.
  absl::string_view Take(size_t n) {
    n = n < size_ ? n : size_;
    absl::string_view out(reinterpret_cast<const char*>(data_), n);
    data_ += n;
    size_ -= n;
    return out;
  }
  size_t remaining() const { return size_; }

 private:
  const uint8_t* data_;
  size_t size_;
};

// Aborts with a message when a fuzz property is broken (a finding); on in every build.
#define FUZZ_CHECK(cond)                                                               \
  do {                                                                                 \
    if (!(cond)) {                                                                     \
      fprintf(stderr, "%s:%d: fuzz property broken: %s\n", __FILE__, __LINE__, #cond); \
      abort();                                                                         \
    }                                                                                  \
  } while (false)

}  // namespace relay::fuzz
