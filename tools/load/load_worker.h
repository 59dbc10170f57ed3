// LoadWorker: one of relay-load's epoll loops. It owns some of the run's connections:
// senders, which push the shared batch of whole frames as fast as the path takes them (or
// stamped frames at a fixed rate, for latency), and node ends, which count whole frames
// as they arrive without copying them (a zero-copy stream parser: the load generator must
// not become the bottleneck it measures). Each finishes the frame it is in when the run
// ends, so every frame written whole can be accounted for at the nodes.
//
// Thread: Add() and Start() from the thread that runs the load; then the worker's own
// thread until Join(). The counters are read from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "core/frame_header.h"
#include "tools/load/load_generator.h"

namespace relay::load {

// Nanoseconds of CLOCK_MONOTONIC: the stamp of rate-mode frames.
int64_t MonoNs();
// The header of one load frame (kLoadFrameMarker).
std::string FrameHeaderBytes(uint32_t network_id, uint32_t length);

// What every worker of one run shares.
struct LoadShared {
  const LoadOptions* options = nullptr;
  std::string batch;  // whole frames back to back
  int64_t period_ns = 0;
  std::atomic<bool> stop{false};
  std::atomic<bool> stop_sending{false};  // senders finish their frame, then stop
  std::atomic<bool> measuring{false};
  uint64_t frame_size = 0;  // header + payload
  // --failover: a measured node's main connection was closed by its relay (node index);
  // null: that is a lost connection, an error of the run.
  std::function<void(int)> node_lost;
};

class LoadWorker {
 public:
  explicit LoadWorker(LoadShared* shared);
  ~LoadWorker();
  LoadWorker(const LoadWorker&) = delete;
  LoadWorker& operator=(const LoadWorker&) = delete;

  // Takes `fd` (a sender, or a node end that receives: `node` is its index in the
  // SessionKeeper, -1 for --direct's).
  void Add(int fd, bool sender, int node = -1);
  void Start();
  void Join();

  std::atomic<uint64_t> frames{0};  // measured data frames received
  std::atomic<uint64_t> bytes{0};   // and their payload bytes
  std::atomic<uint64_t> bad{0};
  // Connections the other side closed or reset before the run ended (a relay that died),
  // and node streams that ended inside a frame.
  std::atomic<uint64_t> lost{0};
  std::atomic<uint64_t> cut{0};
  // Every data frame received, measured or not, and (once stop_sending) the frames the
  // senders wrote whole and how many senders have not reached a frame boundary yet.
  std::atomic<uint64_t> received_frames{0};
  std::atomic<uint64_t> sent_frames{0};
  std::atomic<int> unfinished_senders{0};
  std::vector<uint64_t> latency_ns;  // read after Join()

 private:
  struct Conn {
    int fd = -1;
    bool sender = false;
    int node = -1;
    // Sender.
    bool finished = false;    // stopped at a frame boundary after the run (or lost)
    uint64_t sent_bytes = 0;  // frames written, header included
    size_t off = 0;           // position in the shared batch (throughput mode)
    std::string pending;      // stamped frames not yet written (rate mode)
    int64_t next_due_ns = 0;  // rate mode
    // Receiver: an incremental frame parser.
    uint8_t hdr[kFrameHeaderSize];
    size_t hdr_have = 0;
    uint64_t payload_left = 0;
    uint32_t length = 0;
    bool data = false;
    uint8_t ts[8];
    size_t ts_have = 0;
  };
  // Whole frames found in one read, for the counters.
  struct Parsed {
    uint64_t frames = 0;
    uint64_t bytes = 0;
  };

  void Loop();
  // The run is over: each sender completes the frame it is in, then stops.
  void FinishSenders(bool paced);
  // Rate mode: stamps the frames now due and writes them.
  void PaceSenders();
  void SendBatch(Conn& c);
  void Finish(Conn& c);
  void AppendStampedFrame(std::string* out);
  void Flush(Conn& c);
  // A sender's connection failed (reset by a dying relay): stop polling it, count it.
  void SenderLost(Conn& c);
  // Reads and parses once; returns true if a full buffer was read (more may be waiting).
  bool Receive(Conn& c);
  // Walks `n` bytes of a node's stream; counts whole data frames (and their latency while
  // `measuring`).
  Parsed Parse(Conn& c, const uint8_t* p, size_t n, bool measuring);
  // The header of a frame is whole: checks it and starts its payload.
  void BeginPayload(Conn& c);

  LoadShared* shared_;
  int ep_;
  std::vector<Conn> conns_;
  std::vector<uint8_t> buf_;
  std::thread thread_;
};

}  // namespace relay::load
