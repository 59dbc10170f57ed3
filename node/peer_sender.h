// PeerSender: a node's messages to other nodes' proxy addresses. One pooled TCP
// connection per address, reused for every message to it and closed after idle_timeout
// unused (or when the relay closes it); written by a thread of its own, so Send() never
// blocks: it queues the frame and the completion runs when it is written or failed.
// Queued bytes are bounded: past max_queued_bytes Send() refuses at once
// (ResourceExhausted), which is the caller's back-pressure.
//
// A frame is written whole or reported failed. If the connection breaks, the frame being
// written fails (its start may have reached the relay, which drops a partial frame), and
// the frames queued behind it are sent on a new connection.
//
// Thread: Send() and the counters from any thread; completions run on the sender's
// thread (keep them short). The destructor fails what is still queued (Cancelled) and
// joins the thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "core/host_port.h"

namespace relay::node {

class PeerSender {
 public:
  struct Options {
    absl::Duration connect_timeout = absl::Seconds(10);
    absl::Duration idle_timeout = absl::Seconds(30);  // below the relay's peer idle timeout
    size_t max_queued_bytes = 64u << 20;
  };
  using Done = std::function<void(absl::Status)>;

  explicit PeerSender(Options options);
  ~PeerSender();
  PeerSender(const PeerSender&) = delete;
  PeerSender& operator=(const PeerSender&) = delete;

  // Queues one whole frame for `to`. `done` (may be empty) gets the outcome.
  absl::Status Send(const HostPort& to, std::string frame, Done done);

  uint64_t connections_opened() const { return connections_opened_.load(); }
  // Pooled connections the other side closed (the relay's peer idle timeout, a drain).
  uint64_t connections_closed_by_peer() const { return connections_closed_by_peer_.load(); }
  size_t queued_bytes() const;

 private:
  struct Item {
    HostPort to;
    std::string frame;
    size_t written = 0;
    Done done;
  };
  struct Peer;
  struct Peers;
  // The sender's thread: takes what Send() queued, tends connections, writes, until the
  // destructor stops it (then everything queued fails).
  void Run();
  // Completes `item` (outside any lock) and gives its bytes back.
  void Finish(Item& item, absl::Status status);
  void FailAll(Peer& peer, const absl::Status& status);
  // The connection is gone: the frame in progress fails, the rest go on a new one.
  void DropConnection(Peer& peer, const std::string& why);
  // Moves queued frames to their peers; false once stopping.
  bool TakeArrived(Peers& peers);
  // Connects where frames wait, fails connects past their deadline, closes idle ones.
  void TendConnections(Peers& peers);
  // Waits (bounded) for the sockets and the wake-up pipe; writes where it can.
  void PollPeers(Peers& peers);
  // After poll: a connect finished, or the relay closed an idle connection. True if
  // frames may be written now.
  bool ConnectionUsable(Peer& peer, short revents);
  void WriteQueued(Peer& peer);

  const Options options_;
  mutable std::mutex mu_;
  std::deque<Item> inbox_;   // handed to the thread
  size_t queued_bytes_ = 0;  // every frame not yet completed
  bool stop_ = false;
  int wake_[2] = {-1, -1};
  std::atomic<uint64_t> connections_opened_{0};
  std::atomic<uint64_t> connections_closed_by_peer_{0};
  std::thread thread_;
};

}  // namespace relay::node
