// Live upgrade: a new relay-server process takes over from the running one with no main
// connection closed, no proxy address changed and no frame lost or cut (docs/DEPLOY.md).
//
// The running relay listens on a Unix socket (--upgrade_socket, mode 0600). The new
// process is started with --take_over=PATH (by hand, or by the old one on SIGUSR2, which
// is what `systemctl reload` sends). Then:
//   1. new -> old: a hello (kHelloMagic). The old one checks the caller's uid.
//   2. The old relay freezes (RelayServer::FreezeForHandover): no new nodes, peers or
//      frames; every peer stops at a frame boundary, every frame already begun and every
//      queued reply is written to its node; then each reactor stops inside a task.
//   3. old -> new: one parcel (net/fd_passing.h): the state (proto/handover.proto:
//      leases, sessions, main connections with their unparsed input, the relay key) and
//      every fd (main listeners, proxy listeners, main and peer connections, the
//      instance lock, this Unix socket's listener).
//   4. The new process adopts it all (RelayServer::Create with the state), then
//      new -> old 'K' (ready) or 'E' + reason (refused: it exits).
//   5. old -> new 'G'; the old process exits at once (_exit: it closes nothing that
//      matters, the new one holds every socket), the new one starts its reactors.
// Anything failing before 5 (no 'K' within kReadyTimeout, a refusal, a dead new process)
// thaws the old relay: it runs on as before, and the new process exits without having
// started.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "net/unique_fd.h"
#include "server/relay_server.h"

namespace relay {

inline constexpr char kHelloMagic[8] = {'R', 'L', 'Y', 'T', 'A', 'K', 'E', '1'};
inline constexpr uint32_t kHandoverVersion = 1;
// How long a caller of the upgrade socket may take to send its hello (a new relay-server
// sends it at once).
inline constexpr absl::Duration kHelloTimeout = absl::Seconds(1);
// How long the old process waits for the new one to adopt the state.
inline constexpr absl::Duration kReadyTimeout = absl::Seconds(60);

// The running relay's side: the Unix socket new processes connect to.
class UpgradeSocket {
 public:
  // Binds `path` (mode 0600). A leftover socket file that nothing listens on is replaced;
  // one that a live process listens on is refused (another relay uses it).
  static absl::StatusOr<std::unique_ptr<UpgradeSocket>> Create(const std::string& path);
  // The listener handed over by the previous process.
  static std::unique_ptr<UpgradeSocket> Adopt(net::UniqueFd listener, std::string path);
  // Removes the socket file at a clean stop (after a hand-over the old process _exits
  // without running this: the new one keeps the file).
  ~UpgradeSocket();

  int fd() const { return listener_.get(); }
  const std::string& path() const { return path_; }
  // The next caller that has spoken: accepts every waiting connection (the listener is
  // non-blocking) and returns the first with bytes to read; callers silent for
  // kHelloTimeout since they were accepted are closed, so none holds the upgrade path
  // (before: 10 s each, and a real upgrade queued behind a few failed). Empty when no
  // caller is left.
  net::UniqueFd Accept();

 private:
  struct Caller {
    net::UniqueFd fd;
    absl::Time deadline;
  };
  UpgradeSocket(net::UniqueFd listener, std::string path)
      : listener_(std::move(listener)), path_(std::move(path)) {}
  net::UniqueFd listener_;
  std::string path_;
  std::vector<Caller> callers_;  // accepted, not yet spoken
};

// Old side, on a connection accepted from the upgrade socket: the whole hand-over. On
// success returns the new process's pid: the caller must _exit(0) at once, closing
// nothing. On failure the relay has thawed and runs on (the error says why).
// `freeze_timeout`: --upgrade_timeout.
absl::StatusOr<pid_t> HandOver(RelayServer& server, const UpgradeSocket& upgrade_socket,
                               net::UniqueFd conn, absl::Duration freeze_timeout);

// New side: connects to the old relay at `path` and receives its state.
struct Takeover {
  net::UniqueFd conn;  // to the old process
  HandedOver handed;
  net::UniqueFd upgrade_listener;
  absl::Time frozen_at;  // when the old process stopped forwarding
  std::string old_version;
};
absl::StatusOr<Takeover> ReceiveTakeover(const std::string& path);
// The state is adopted: tells the old process and waits for its go. Only after OK may
// the reactors start. On failure the old process runs on: exit without starting.
absl::Status ConfirmTakeover(int conn);
// The state could not be adopted: tells the old process why (it thaws).
void RefuseTakeover(int conn, const std::string& reason);

// SIGUSR2: starts this program again (the binary now at its path, the same arguments,
// plus --take_over=PATH). Returns the child's pid.
absl::StatusOr<pid_t> SpawnSuccessor(const std::vector<std::string>& argv,
                                     const std::string& upgrade_path);

}  // namespace relay
