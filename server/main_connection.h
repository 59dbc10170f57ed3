// MainConnection: a node's long-lived TCP connection to the relay. It reads control
// messages (shared/PROTOCOL.md section 4) and writes two things: the relay's control
// replies, and the frames its session's peers send (committed by ProxyConnections).
//
// Writing keeps frames whole: the connection is either idle, or "locked" to one
// committer (the control reply buffer, or one ProxyConnection's claimed run of whole
// frames) until that run is fully written; only then does the next committer, in FIFO
// order, get its turn. Writes splice() from the committer's pipes: no user-space copy.
// When the node's socket is full, everything waits (EPOLLOUT) and the peers stop reading
// once their staging is full: TCP flow control pushes back on the senders.
//
// Thread: one reactor. Owned by its Shard; destroyed deferred. May be handed, before it
// belongs to a session, to another reactor (its fd and unread input move; this object
// is dropped).
#pragma once

#include <cstdint>
#include <string>

#include "absl/time/time.h"
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
  MainConnection(Shard* shard, net::UniqueFd fd, uint64_t next_nonce, absl::Time last_activity);
  ~MainConnection() override;

  bool Start();
  void OnEvents(uint32_t events) override;

  // Appends a control message from the relay and writes what it can.
  void SendControl(uint32_t opcode, const google::protobuf::MessageLite& inner,
                   const wire::Message* request);
  // Input that was read on another shard before a hand-off.
  void SetPendingInput(std::string input);
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

  // Closes the connection (idempotent); ends its session if it still owns one.
  void Close(const char* reason);
  bool closed() const { return close_done_ || !fd_.valid(); }

  // Hands the fd and unread input to another shard (see Shard::HandOff).
  net::UniqueFd TakeFd();
  std::string TakeInput();

  Session* session() const { return session_; }
  void set_session(Session* s) { session_ = s; }
  uint64_t next_nonce() const { return next_nonce_; }
  absl::Time last_activity() const { return last_activity_; }

 private:
  void ReadSome();
  // Parses whole frames in in_; stops early if the connection closes or moves.
  void ParseFrames();
  void Flush();
  void FlushLocked();  // Flush's body; flushing_ guards against re-entry
  void OnKeepaliveTimer();
  void Unregister();

  Shard* shard_;
  net::UniqueFd fd_;
  uint64_t handle_ = 0;
  bool registered_ = false;
  bool readable_ = false;
  bool writable_ = true;
  bool close_done_ = false;
  const char* close_reason_ = nullptr;  // why Close() ran: for debuggers and core dumps
  bool closing_ = false;
  bool flushing_ = false;  // CloseAfterFlush: no more input, close once out_ is written
  std::string in_;
  size_t in_off_ = 0;
  std::string out_;  // control replies, whole frames
  size_t out_off_ = 0;
  uint64_t next_nonce_;
  absl::Time last_activity_;
  net::Timer keepalive_timer_;
  Session* session_ = nullptr;

  ProxyConnection* locked_ = nullptr;  // committer whose run is being written
  bool control_locked_ = false;        // a control reply is partly written
  ProxyConnection* queue_head_ = nullptr;
  ProxyConnection* queue_tail_ = nullptr;
};

}  // namespace relay
