// SessionKeeper: keeps a run's node sessions alive as real nodes do, and measures them.
// One thread of its own:
//   - sends every session's Keepalive once per --keepalive_interval, the sessions spread
//     evenly over the interval (real nodes do not beat in step, and a burst of thousands
//     would measure the burst);
//   - reads the idle sessions' answers and times each Keepalive's round trip;
//   - notices a session lost: its relay closed it, or it left kMaxMissedKeepalives in a
//     row unanswered (the node library's max_missed_keepalives).
// Without --failover a lost session is an error of the run. With it, the node moves along
// its relay list, as the node library does: a pool of threads connects it again
// (node::NodeClient, trying the relays in its order) and the time from the loss to its
// new proxy address is measured. Node k's order is the first relay, then the others
// rotated by k: a dead relay's nodes spread evenly over the rest, as nodes behind one DNS
// name do.
//
// A measured node's main connection is read by a LoadWorker (its data frames); the keeper
// only sends its Keepalives, and re-homes it (as an idle node: its senders knew the old
// address) when the worker reports it closed (MeasuredLost).
//
// Thread: Add*() and Start() from the thread that runs the load; MeasuredLost() from any
// thread; Stop() from the first thread; the result after Stop().
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tools/load/load_generator.h"
#include "tools/load/load_worker.h"

namespace relay::load {

struct KeeperResult {
  // Over the measured seconds: Keepalives sent by idle nodes, those answered, and the
  // answers' round trips.
  uint64_t keepalives_sent = 0;
  uint64_t keepalives_answered = 0;
  std::vector<uint64_t> keepalive_rtt_ns;
  // Sessions lost without --failover (an error of the run).
  uint64_t lost = 0;
  // --failover: nodes that found a new relay, each one's nanoseconds from the loss to its
  // new address, and nodes that found none before the run ended (an error).
  uint64_t rehomed = 0;
  std::vector<uint64_t> rehome_ns;
  uint64_t rehome_failed = 0;
};

class SessionKeeper {
 public:
  // A node the relay does not answer this many Keepalives in a row is lost.
  static constexpr int kMaxMissedKeepalives = 3;
  // How long a node keeps looking for a new relay after its own was lost.
  static constexpr absl::Duration kRehomeDeadline = absl::Seconds(60);

  SessionKeeper(const LoadOptions& options, const LoadShared* shared);
  ~SessionKeeper();  // Stop()
  SessionKeeper(const SessionKeeper&) = delete;
  SessionKeeper& operator=(const SessionKeeper&) = delete;

  // Takes an idle node's main connection (on the first relay). Returns the node's index.
  int AddIdle(int fd);
  // A measured node's main connection, which a LoadWorker reads and owns: Keepalives only.
  int AddMeasured(int fd);
  void Start();
  // A worker saw measured node `node`'s main connection closed by the relay.
  void MeasuredLost(int node);
  // Stops the Keepalives, lets the re-homes in flight finish (bounded by
  // kRehomeDeadline after their loss), joins the threads.
  void Stop();
  const KeeperResult& result() const { return result_; }

 private:
  struct Node {
    int fd = -1;
    bool idle = true;               // false: a measured node whose worker reads the connection
    bool alive = true;              // false while it looks for a new relay
    uint32_t relay = 0;             // position in its relay order
    int missed = 0;                 // Keepalives in a row without an answer
    int64_t keepalive_sent_ns = 0;  // the unanswered Keepalive, 0 if none
    bool sent_measuring = false;    // it was sent in the measured seconds
    int64_t lost_ns = 0;
    std::string in;  // an answer not yet whole
  };
  struct Loss {
    int node;
    uint32_t relay;  // the position lost
    int64_t lost_ns;
  };
  struct Rehomed {
    int node;
    int fd;  // -1: no relay took it in time
    uint32_t relay;
    uint64_t ns;  // from the loss to the new address
  };

  int AddNode(int fd, bool idle);
  void Loop();
  // Sends the Keepalives due by `now`, in the nodes' spread order.
  void SendDue(int64_t now);
  // Reads an idle node's answers; false if its connection ended.
  bool Read(Node& n, int64_t now);
  void Lost(int node, int64_t now);
  // Takes the connections the re-home threads found, and the workers' reports.
  void Adopt();
  void RehomeLoop();
  // Connects `node` to the relays after `relay` in its order; the new fd, or -1.
  int Rehome(int node, uint32_t relay, int64_t lost_ns, uint32_t* now_at);
  HostPort RelayOf(int node, uint32_t position) const;

  const LoadOptions& o_;
  const LoadShared* shared_;
  const std::string keepalive_;
  int ep_ = -1;
  std::vector<Node> nodes_;
  int64_t start_ns_ = 0;
  uint64_t next_beat_ = 0;  // sequence number of the next Keepalive (node = seq % count)
  std::atomic<bool> stop_{false};
  std::thread thread_;
  KeeperResult result_;

  // Between the keeper, the workers and the re-home threads.
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Loss> to_rehome_;
  std::vector<int> measured_lost_;  // from workers
  std::vector<Rehomed> rehomed_;    // from re-home threads
  int rehoming_ = 0;                // nodes queued or being re-homed
  bool rehome_stop_ = false;
  std::vector<std::thread> rehome_threads_;
};

}  // namespace relay::load
