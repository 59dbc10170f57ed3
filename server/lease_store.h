// LeaseStore: the leases on disk (--state_dir), so a relay that crashes or restarts gives
// every node that comes back within its lease time its old address, and never gives a
// remembered port to another node.
//
// Files in the state directory (created 0700):
//   leases.snapshot      every lease at one moment: written to a temporary file, fsync'ed,
//                        renamed over the old one (so it is always whole); its header says
//                        which journal it is followed by
//   leases.journal.<N>   every change since (appended with write(): a crash of the process
//                        loses nothing the kernel has; fdatasync'ed every --state_sync_interval
//                        by a thread of the store, so a power loss loses at most about that)
// Each record: u32 length, u32 CRC-32 of the payload, the payload. On load, a record cut
// short at the end of the last journal (a torn write) is ignored with a warning; any other
// damage refuses the state (Open fails, naming the file) unless `discard_corrupt`, which
// moves the files aside (*.corrupt) and starts empty.
// Compaction: when a journal holds many more records than there are leases, the store
// thread starts journal N+1, writes a snapshot of the leases as of that switch, then
// deletes journal N. A crash at any step loads correctly (snapshot, then every journal
// from the one the snapshot names).
//
// A full disk: an append that fails is cut off the journal, and the store stops writing
// (writable() false: the relay refuses claims) until its thread manages to write a
// snapshot of the state as it is then; the files on disk meanwhile still hold every
// lease acknowledged before the failure, and leases that ended since are still there
// (kept, not lost: their ports stay withheld after a crash).
//
// Thread: LeaseChanged/LeaseEnded from any reactor thread (a mutex guards the file and the
// in-memory copy; called on claims and session ends, never per frame; the fsync runs on
// the store's own thread, outside the mutex). Open/Start/Close from the controlling thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/clock.h"
#include "core/lease_table.h"

namespace relay {

struct StoredLease {
  std::string id;  // connection id
  uint16_t port = 0;
  std::string owner_key;  // bound key, or empty
  uint64_t fresh_claim_ms = 0;
  int64_t expires_unix_ms = 0;  // wall clock; 0: live when written (its node was attached)
  // The advertised IP of its proxy address (several --advertise_host); empty: the first.
  std::string address;
};

class LeaseStore final : public LeaseObserver {
 public:
  struct Options {
    std::string dir;
    bool discard_corrupt = false;
    absl::Duration sync_interval = absl::Seconds(1);
    const Clock* clock = MonotonicClock::Get();
    // The advertised IP of each proxy address (Lease::address indexes it). With more
    // than one, every record names its address, so reordering the list is harmless.
    std::vector<std::string> addresses;
  };
  // Creates the directory if missing and reads the state. Errors name the file and what
  // is wrong with it.
  static absl::StatusOr<std::unique_ptr<LeaseStore>> Open(Options options);
  ~LeaseStore() override;

  // The leases read at Open, in no order.
  const std::vector<StoredLease>& loaded() const { return loaded_; }
  // Files moved aside by discard_corrupt (for the log), else empty.
  const std::vector<std::string>& discarded() const { return discarded_; }

  // Starts recording with `initial` as the leases now (those restored), written as a
  // fresh snapshot; starts the sync thread.
  absl::Status Start(const std::vector<StoredLease>& initial);
  // Stops the thread and writes a last snapshot. Later changes are ignored. Idempotent.
  void Close();

  void LeaseChanged(const Lease& lease) override;
  void LeaseEnded(absl::string_view id) override;

  // Writes that failed (disk full, ...).
  uint64_t write_errors() const { return write_errors_.load(std::memory_order_relaxed); }
  // False from a failed write until a snapshot of the state as it is now has been
  // written (retried every sync_interval by the store's thread). Meanwhile changes are
  // kept in memory only, and the relay acknowledges no claim (Shard::LeasesDurable): a
  // claim acknowledged is on disk, so after a crash its port goes to nobody else.
  bool writable() const { return !failing_.load(std::memory_order_relaxed); }
  uint64_t snapshots() const { return snapshots_.load(std::memory_order_relaxed); }

 private:
  explicit LeaseStore(Options options) : options_(std::move(options)) {}
  absl::Status Load();
  // Appends a record (requires mu_); on failure cuts the journal back and fails.
  void Append(const std::string& record);
  // Enters the failing state (logs once, wakes the thread to retry).
  void Fail(absl::string_view what);
  // Writes the state now as a snapshot followed by a new journal (requires mu_): true
  // and writable again if it could.
  bool Recover();
  // Writes `leases` as the snapshot that journal `next_journal` follows.
  absl::Status WriteSnapshot(const std::vector<StoredLease>& leases, uint64_t next_journal);
  // Opens journal `seq` for appending (requires mu_).
  absl::Status OpenJournal(uint64_t seq);
  void SyncLoop();
  void Compact();

  const Options options_;
  std::vector<StoredLease> loaded_;
  std::vector<std::string> discarded_;

  std::mutex mu_;
  absl::flat_hash_map<std::string, StoredLease> leases_;  // the state now
  int journal_fd_ = -1;
  uint64_t journal_seq_ = 0;
  uint64_t journal_records_ = 0;
  uint64_t journal_bytes_ = 0;  // its length: a failed append is cut back to it
  bool dirty_ = false;
  bool open_ = false;
  bool stop_ = false;
  std::condition_variable wake_;
  std::thread thread_;
  std::atomic<uint64_t> write_errors_{0};
  std::atomic<bool> failing_{false};
  std::atomic<uint64_t> snapshots_{0};
};

}  // namespace relay
