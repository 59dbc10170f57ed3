// MainConnection: a node's long-lived TCP connection to the relay. It reads control
// messages (shared/PROTOCOL.md section 4) and writes two things: the relay's control
// replies, and the frames its session's peers send (committed by ProxyConnections).
//
// Writing keeps frames whole: the connection is either idle, or "locked" to one
// committer (the control reply buffer, or one ProxyConnection's claimed run of whole
// frames) until that run is fully written; only then does the next committer, in FIFO
// order, get its turn. Writes splice() from the committer's pipes (no user-space copy), or
// sendmsg() from its copy blocks; the whole frames of several queued committers whose
// bytes sit in blocks go out in one sendmsg(), in queue order (WriteGathered).
// When the node's socket is full, everything waits (EPOLLOUT) and the peers stop reading
// once their staging is full: TCP flow control pushes back on the senders.
//
// Limits (docs/RELIABILITY.md): a new connection must send a valid control frame within
// --first_frame_timeout, then one per --keepalive_timeout; a control frame is at most
// --max_control_bytes and the partial control frames of a reactor share
// --control_budget; a node that takes no byte for --node_write_timeout while data waits
// for it, or whose queue stays above --node_queue_soft_bytes for --node_queue_soft_time
// (Redis's soft output limit), is closed, and its session's staged bytes go with it.
//
// Files: the input side (reading, parsing, control limits, close) in main_connection.cc;
// the output side (control replies, the commit queue, write deadlines) in
// main_connection_output.cc.
//
// Thread: one reactor. Owned by its Shard; destroyed deferred. May be handed, before it
// belongs to a session, to another reactor (its fd and unread input move; this object
// is dropped).
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "core/claim_check.h"
#include "core/frame_scan.h"
#include "core/token_bucket.h"
#include "net/reactor.h"
#include "net/timer_wheel.h"
#include "net/unique_fd.h"
#include "proto/relay.pb.h"

namespace relay {

class ProxyConnection;
class Session;
class Shard;

class MainConnection final : public net::EventHandler {
 public:
  // `next_nonce`: the message_nonce of the next message the relay sends on it (a
  // connection handed from another shard keeps counting).
  // `source_ip` is already counted against --max_mains_per_ip by the caller; this object
  // releases it (or hands it on with the fd). `seen_frame`: a valid frame already came
  // (a connection handed from another shard), so the first-frame deadline is over.
  MainConnection(Shard* shard, net::UniqueFd fd, uint64_t source_ip, uint64_t next_nonce,
                 absl::Time last_activity, bool seen_frame);
  ~MainConnection() override;

  bool Start();
  void OnEvents(uint32_t events) override;

  // Appends a control message from the relay and writes what it can.
  void SendControl(uint32_t opcode, const google::protobuf::MessageLite& inner,
                   const wire::Message* request);
  // Input that was read, and replies not yet written, on another shard before a
  // hand-off. Call before anything else is sent.
  void SetPending(std::string input, std::string output);
  // Processes pending input and reads on.
  void ProcessInput();
  // Stops reading and closes once the queued control replies are written (or the
  // keepalive timeout passes).
  void CloseAfterFlush();

  // A ProxyConnection has complete frames to commit.
  void Enqueue(ProxyConnection* conn);
  // Moves the commit queue (and a not-yet-started commit) to `next` (session takeover).
  void GiveQueueTo(MainConnection* next);
  // Removes `conn` from the queue (it is being destroyed).
  void Forget(ProxyConnection* conn);

  // Closes the connection (idempotent); ends its session if it still owns one. `reason`
  // must outlive the connection (a string literal): close_reason_ keeps the pointer.
  void Close(const char* reason);
  // Close with a reset (SO_LINGER 0): for a node that does not read, whose send buffer
  // would otherwise keep the kernel's socket (and its memory) alive behind a FIN that
  // can never be sent.
  void Abort(const char* reason);
  bool closed() const { return close_done_ || !fd_.valid(); }
  // Closing after its output is written (CloseAfterFlush).
  bool closing() const { return Held(kClosing); }
  // Control replies, a commit in progress, or senders queued: bytes still to write.
  bool HasPendingOutput() const;
  // The node's socket took everything so far (no EAGAIN pending).
  bool writable() const { return writable_ && !closed(); }

  // Live upgrade (server/upgrade.h): a frozen connection reads nothing and parses
  // nothing (its replies and committed frames still go out); Thaw() resumes it.
  void Freeze() { holds_ |= kFrozen; }
  void Thaw();
  // Frozen with nothing left to write, and not closing: its state can be handed over
  // (the fd, the unparsed input, the counters below).
  bool AtRest() const { return Held(kFrozen) && !closed() && !closing() && !HasPendingOutput(); }
  int fd() const { return fd_.get(); }
  absl::string_view unparsed_input() const { return absl::string_view(in_).substr(in_off_); }
  bool seen_frame() const { return seen_frame_; }

  // Hands the fd, its IP count, unread input and unwritten replies to another shard (see
  // Shard::HandOff).
  net::UniqueFd TakeFd();
  uint64_t TakeSourceIp();
  std::string TakeInput();
  std::string TakeOutput();

  Session* session() const { return session_; }
  // While a claim waits for a port from another reactor, no more input is parsed.
  void set_claim_pending(bool pending) {
    holds_ = pending ? (holds_ | kClaimPending) : (holds_ & ~kClaimPending);
  }
  void set_session(Session* s) { session_ = s; }
  uint64_t next_nonce() const { return next_nonce_; }
  uint64_t source_ip() const { return source_ip_; }
  // "ip:port" of the node, for log lines.
  std::string PeerName() const;
  absl::Time last_activity() const { return last_activity_; }
  // Valid control frames (and their bytes) the node sent on this connection.
  uint64_t frames_from_node() const { return frames_from_node_; }
  uint64_t bytes_from_node() const { return bytes_from_node_; }
  // Carries those counts over from the connection's previous owner (another reactor, or
  // the process before a live upgrade).
  void AddFromNode(uint64_t frames, uint64_t bytes) {
    frames_from_node_ += frames;
    bytes_from_node_ += bytes;
  }
  // Its control-message bucket (--control_rate, --control_burst): the tokens it holds at
  // `now`, and the same carried over from its previous owner, so that moving a
  // connection (to another reactor, or to the next process) never refills it.
  double ControlLevel(absl::Time now) const;
  void RestoreControlLevel(double level, absl::Time now);

 private:
  // Why the connection reads or parses nothing now: one set of reasons (as Envoy's
  // read-disable count), each set and cleared by its owner.
  enum Hold : uint8_t {
    kClosing = 1,       // CloseAfterFlush: no more input, close once out_ is written
    kFrozen = 2,        // live upgrade: no reading, no parsing
    kThrottled = 4,     // --control_rate, --control_per_ip: no reading or parsing now
    kClaimPending = 8,  // a claim waits for a port from another reactor: no parsing
  };
  static constexpr uint8_t kNoRead = kClosing | kFrozen | kThrottled;
  static constexpr uint8_t kNoParse = kNoRead | kClaimPending;
  bool Held(uint8_t reasons) const { return (holds_ & reasons) != 0; }
  // What one write step did.
  enum class WriteStep : uint8_t { kWrote, kBlocked, kClosed };

  void ReadSome();
  // Parses whole frames in in_, at most *budget of them (counted down); stops early if
  // the connection closes or moves. Frames left over the budget set parse_later_ and
  // wait for the next turn.
  void ParseFrames(int* budget);
  // A header that breaks the rules: too large (Disconnect, then close) or bad (close).
  void RefuseHeader(const ControlFrameScan& scan);
  // One whole control frame: parsed, checked, answered. False if parsing must stop (the
  // connection closed, is closing, or moved to another shard).
  bool HandleFrame(const ControlFrameScan& scan);
  // A message that needs more than a stateless reply (a claim, a Disconnect); false as
  // HandleFrame.
  bool Dispatch(const wire::Message& msg, Signature signature);
  // The signature of `msg` (the frame `scan`), in *signature: a message signed by the
  // key the connection already proved is valid unchecked; one that needs a check waits
  // for the reactor's signature budget (false: the frame is put back, the connection
  // throttled). Under --require_signatures every message is checked here, and false
  // (Disconnect sent, closing) refuses an unsigned or invalidly signed one; without it,
  // a signed claim is checked by the shard (after the IP's claim rate).
  bool CheckSignature(const wire::Message& msg, const ControlFrameScan& scan, Signature* signature);
  // --signature_budget: true if a check may run now; if not, throttled until the timer
  // (the queued token is then owed: signature_token_owed_), or, when the reactor's turn
  // has done its share of checks, parsed again next turn.
  bool TakeSignatureToken();
  // Whole frames wait in in_ for the next reactor turn (parse_later_).
  void ParseNextTurn();
  void Flush();
  // Flush's body: control replies, then the queued senders' runs, within kWriteBudget
  // (flushing_, set around it, guards against re-entry).
  void WriteOutput();
  // Writes the whole frames of the first queued connections whose frames sit in copy
  // blocks with one sendmsg(), so merging senders costs no syscall per sender. Returns
  // false (nothing done) when fewer than two qualify.
  bool WriteGathered(uint64_t* budget);
  // Begins the commits of the queue's first connections whose frames sit in blocks (up to
  // `budget` bytes), appending their iovecs; returns how many; *total their bytes.
  size_t GatherCommits(ProxyConnection** conns, iovec* iov, size_t* count, uint64_t* total,
                       uint64_t budget);
  WriteStep WriteControlReplies(uint64_t* budget);
  WriteStep WriteLockedRun(uint64_t* budget);
  // The queue's first connection, taken off the queue; nullptr if it is empty.
  ProxyConnection* PopQueueHead();
  // A connection's run is written: back to the queue's tail if it has more frames, else
  // reaped if it is finished.
  void AfterRun(ProxyConnection* conn);
  // After a flush: arms or moves the write-progress and soft-limit timers.
  void WatchQueue(bool progress);
  void OnKeepaliveTimer();
  void OnWriteTimer();
  void OnSoftLimitTimer();
  // --control_rate, --control_per_ip: true if one more control message may be handled
  // now; if not, stops reading and parsing (throttled_) until the throttle timer says one
  // may. Over --control_per_ip the IP's token is queued for (control_token_owed_).
  bool TakeControlToken();
  void OnThrottleTimer();
  // Tells the shard how many bytes of partial control frames this connection holds.
  // Returns false (and closes) if the reactor's --control_budget would be exceeded.
  bool AccountHeldInput();
  // A control frame over --max_control_bytes: Disconnect, then close.
  void RefuseLargeControl(uint32_t length);
  void Unregister();

  Shard* shard_;
  net::UniqueFd fd_;
  uint64_t handle_ = 0;
  bool registered_ = false;
  bool readable_ = false;
  bool writable_ = true;
  bool close_done_ = false;
  bool handed_off_ = false;
  bool parse_later_ = false;  // whole frames wait in in_ for the next turn's budget
  uint8_t holds_ = 0;         // Hold reasons
  // Throttled by --control_per_ip: the tokens (the IP's and its own) for the message that
  // waits are already taken; it is handled when the throttle timer fires.
  bool control_token_owed_ = false;
  bool signature_token_owed_ = false;   // ... and the signature budget's token
  std::string verified_key_;            // the net_key this connection proved by a signature
  const char* close_reason_ = nullptr;  // why Close() ran (a literal): for debuggers, core dumps
  bool flushing_ = false;               // inside Flush (guards against re-entry)
  bool seen_frame_;                     // a valid control frame arrived
  uint64_t source_ip_;
  uint64_t held_input_ = 0;  // bytes of in_ counted in the shard's control budget
  uint64_t written_ = 0;     // bytes written to the node so far
  uint64_t frames_from_node_ = 0;
  uint64_t bytes_from_node_ = 0;
  std::string in_;
  size_t in_off_ = 0;
  std::string out_;  // control replies, whole frames
  size_t out_off_ = 0;
  uint64_t next_nonce_;
  absl::Time last_activity_;
  net::Timer keepalive_timer_;  // first-frame deadline, then keepalive deadline
  net::Timer write_timer_;      // armed while data waits and the node takes none
  net::Timer soft_timer_;       // armed while the queue is above the soft limit
  net::Timer throttle_timer_;   // armed while throttled_
  TokenBucket control_bucket_;  // its control messages: --control_rate, --control_burst
  Session* session_ = nullptr;

  ProxyConnection* locked_ = nullptr;  // committer whose run is being written
  ProxyConnection* queue_head_ = nullptr;
  ProxyConnection* queue_tail_ = nullptr;
};

}  // namespace relay
