#include "net/reactor.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <future>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "net/socket_ops.h"

namespace relay::net {
namespace {

class FnTask : public Task {
 public:
  explicit FnTask(std::function<void()> fn) : fn_(std::move(fn)) {}
  void Run() override { fn_(); }

 private:
  std::function<void()> fn_;
};

std::unique_ptr<Task> MakeTask(std::function<void()> fn) {
  return std::make_unique<FnTask>(std::move(fn));
}

struct Loop {
  std::unique_ptr<Reactor> reactor;
  std::thread thread;
  ~Loop() {
    reactor->Stop();
    if (thread.joinable()) {
      thread.join();
    }
  }
};

std::vector<std::unique_ptr<Loop>> StartLoops(int n) {
  std::vector<std::unique_ptr<Loop>> loops;
  for (int i = 0; i < n; ++i) {
    auto loop = std::make_unique<Loop>();
    absl::StatusOr<std::unique_ptr<Reactor>> r =
        Reactor::Create(i, n, MonotonicClock::Get(), 64 * 1024);
    EXPECT_TRUE(r.ok());
    loop->reactor = std::move(*r);
    loops.push_back(std::move(loop));
  }
  for (auto& loop : loops) {
    Reactor* r = loop->reactor.get();
    loop->thread = std::thread([r] { r->Run(); });
  }
  return loops;
}

// splice() has no MSG_NOSIGNAL: writing into a closed socket or pipe raises SIGPIPE on the
// writing thread. A program that embeds the relay and keeps SIGPIPE's default action
// (death) must survive it: the loop thread blocks SIGPIPE and sees EPIPE.
TEST(ReactorTest, WritingIntoAClosedPipeOnTheLoopThreadGivesEpipeNotDeath) {
  signal(SIGPIPE, SIG_DFL);
  auto loops = StartLoops(1);
  std::promise<IoResult> done;
  loops[0]->reactor->PostExternal(MakeTask([&done] {
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    close(fds[0]);
    const IoResult r = Write(fds[1], "x", 1);
    close(fds[1]);
    done.set_value(r);
  }));
  const IoResult r = done.get_future().get();
  EXPECT_EQ(r.status, IoStatus::kError);
  EXPECT_EQ(r.error, EPIPE);
  signal(SIGPIPE, SIG_IGN);
}

TEST(ReactorTest, CrossReactorTasksArriveInOrderOnTheTargetThreadEvenPastTheRing) {
  auto loops = StartLoops(2);
  Reactor* source = loops[0]->reactor.get();
  Reactor* target = loops[1]->reactor.get();
  constexpr int kTasks = 20000;  // more than one ring holds: exercises the overflow list
  std::vector<int> seen;
  std::promise<bool> done;
  source->PostExternal(MakeTask([&] {
    for (int i = 0; i < kTasks; ++i) {
      source->Post(target, MakeTask([&, i] {
                     if (!target->InLoopThread()) {
                       seen.push_back(-1);
                     }
                     seen.push_back(i);
                     if (i == kTasks - 1) {
                       done.set_value(true);
                     }
                   }));
    }
  }));
  auto future = done.get_future();
  ASSERT_EQ(future.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  ASSERT_EQ(seen.size(), static_cast<size_t>(kTasks));
  for (int i = 0; i < kTasks; ++i) {
    ASSERT_EQ(seen[i], i);
  }
}

class PipeReader : public EventHandler {
 public:
  PipeReader(Reactor* r, int fd) : reactor_(r), fd_(fd) {}
  void OnEvents(uint32_t events) override {
    if (events == kReadyEvent) {
      ++ready_calls;
    }
    // Read at most 1 byte per call, then ask to be called back: the ready list must
    // deliver the rest even though epoll (edge-triggered) will not fire again.
    char c;
    if (Read(fd_, &c, 1).status == IoStatus::kOk) {
      data.push_back(c);
      if (data.size() == 5) {
        got_all.set_value(true);
      } else {
        reactor_->MarkReady(this);
      }
    }
  }
  Reactor* reactor_;
  int fd_;
  std::string data;
  int ready_calls = 0;
  std::promise<bool> got_all;
};

TEST(ReactorTest, EdgeTriggeredEventsAndTheReadyList) {
  auto loops = StartLoops(1);
  Reactor* r = loops[0]->reactor.get();
  int fds[2];
  ASSERT_EQ(pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
  UniqueFd read_end(fds[0]), write_end(fds[1]);
  PipeReader reader(r, read_end.get());
  std::promise<uint64_t> registered;
  r->PostExternal(
      MakeTask([&] { registered.set_value(*r->Register(read_end.get(), EPOLLIN, &reader)); }));
  const uint64_t handle = registered.get_future().get();
  ASSERT_EQ(::write(write_end.get(), "hello", 5), 5);  // one edge for five bytes
  auto future = reader.got_all.get_future();
  ASSERT_EQ(future.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_EQ(reader.data, "hello");
  EXPECT_EQ(reader.ready_calls, 4);
  std::promise<bool> unregistered;
  r->PostExternal(MakeTask([&] {
    r->Unregister(handle, read_end.get());
    unregistered.set_value(true);
  }));
  unregistered.get_future().get();
}

}  // namespace
}  // namespace relay::net
