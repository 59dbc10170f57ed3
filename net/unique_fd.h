// UniqueFd: a move-only owner of one file descriptor; closes it in its destructor.
//
// Not thread-safe by itself: an fd has one owner at a time, and ownership may move
// between threads (a main connection handed to another reactor moves its UniqueFd).
#pragma once

#include <unistd.h>

#include <utility>

namespace relay::net {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { Reset(); }
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.Release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) {
      Reset(other.Release());
    }
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  explicit operator bool() const { return valid(); }

  // Gives up ownership without closing; returns the fd.
  int Release() { return std::exchange(fd_, -1); }
  // Closes the current fd (if any) and takes `fd`.
  void Reset(int fd = -1) {
    if (fd_ >= 0) {
      ::close(fd_);
    }
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

}  // namespace relay::net
