// The real relay-server binary: flags, its key file, clean shutdown, and bounded memory
// under a flood.
#include <dirent.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/control_codec.h"
#include "core/signing.h"
#include "gtest/gtest.h"
#include "net/scheduler_slice.h"
#include "tests/testing/flat_json.h"
#include "tests/testing/free_ports.h"
#include "tests/testing/relay_process.h"
#include "tests/testing/test_node.h"

namespace relay::testing {
namespace {

std::string PortRangeFlag(int count) {
  const uint16_t lo = PickFreePortRange(count);
  return absl::StrCat("--port_range=", lo, "-", lo + count - 1);
}

// Every flag --help lists is documented for operators (README.md or docs/*.md), and
// --help lists the flags the README's table names.
TEST(RelayBinaryTest, EveryFlagInHelpIsDocumented) {
  std::string help;
  ASSERT_EQ(RelayProcess::RunToCompletion({"--help"}, &help), 0);
  std::string docs = ReadSourceFile("README.md");
  for (const char* doc : {"docs/DEPLOY.md", "docs/SECURITY.md", "docs/RELIABILITY.md"}) {
    docs += ReadSourceFile(doc);
  }
  std::vector<std::string> flags;
  for (absl::string_view line : absl::StrSplit(help, '\n')) {
    if (absl::StartsWith(line, "  --") && absl::StrContains(line, "=")) {
      flags.emplace_back(line.substr(2, line.find('=') - 2));
    }
  }
  EXPECT_GE(flags.size(), 14u) << help;
  for (const std::string& flag : flags) {
    EXPECT_TRUE(absl::StrContains(docs, "`" + flag)) << flag << " is in --help but in no doc";
  }
  for (const char* flag : {"--listen", "--advertise_host", "--port_range", "--network_id",
                           "--threads", "--keepalive_timeout", "--lease_ttl", "--max_frame_bytes",
                           "--stage_bytes", "--stage_budget", "--forward", "--quiet"}) {
    EXPECT_TRUE(absl::StrContains(help, absl::StrCat("  ", flag, "="))) << flag;
  }
}

// The key relay-server prints at start ("relay key <hex>"): the line comes just after
// the port starts accepting, so wait for it (bounded). "" if it never comes.
std::string PrintedKey(const RelayProcess& relay) {
  for (int i = 0; i < 500; ++i) {
    const std::string log = relay.Stderr();
    const size_t at = log.find("relay key ");
    if (at != std::string::npos && log.size() >= at + 10 + 64) {
      return log.substr(at + 10, 64);
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  return "";
}

TEST(RelayBinaryTest, KeyFileIsCreatedPrivateKeptAcrossRestartsAndRefusedWhenOthersCanRead) {
  char dir_template[] = "/tmp/relay-key-XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  const std::string dir = dir_template;
  const std::string key_file = dir + "/relay.key";
  std::string first_key;
  {
    RelayProcess relay;
    ASSERT_TRUE(relay.Start({"--threads=1", PortRangeFlag(2), "--key_file=" + key_file}));
    struct stat st;
    ASSERT_EQ(stat(key_file.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    first_key = PrintedKey(relay);
    ASSERT_EQ(first_key.size(), 64u) << relay.Stderr();
    // What the relay sends is signed by that key.
    TestNode node;
    ASSERT_TRUE(node.Connect("127.0.0.1", relay.port()).ok());
    ASSERT_TRUE(node.Send(kOpPing).ok());
    absl::StatusOr<wire::Message> pong = node.ReadMessage();
    ASSERT_TRUE(pong.ok());
    EXPECT_EQ(absl::BytesToHexString(pong->sender().net_key()), first_key);
    EXPECT_TRUE(VerifyMessage(*pong).ok());
    EXPECT_EQ(relay.Stop(), 0);
  }
  {
    RelayProcess relay;
    ASSERT_TRUE(relay.Start({"--threads=1", PortRangeFlag(2), "--key_file=" + key_file}));
    EXPECT_EQ(PrintedKey(relay), first_key) << "the same key after a restart";
    EXPECT_EQ(relay.Stop(), 0);
  }
  ASSERT_EQ(chmod(key_file.c_str(), 0644), 0);
  std::string output;
  EXPECT_EQ(
      RelayProcess::RunToCompletion({"--listen=127.0.0.1:0", "--key_file=" + key_file}, &output),
      1);
  EXPECT_NE(output.find("readable or writable by others (mode 644); run chmod 600"),
            std::string::npos)
      << output;
  unlink(key_file.c_str());
  rmdir(dir.c_str());
}

// --listen given twice (here: ours, then RelayProcess's own 127.0.0.1 one) listens on
// both; the first names the proxy addresses' family.
// A flag file of an earlier version still starts the relay (a restart or a live upgrade
// with it must not fail): retired flags are ignored and --forward=auto is read as splice,
// each with a warning that names it; the relay serves.
TEST(RelayBinaryTest, FlagsOfEarlierVersionsStartTheRelayWithAWarning) {
  char path[] = "/tmp/relay-flags-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  const std::string text = "--forward=auto\n--peer_bulk_receive_buffer=2097152\n";
  ASSERT_EQ(write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  close(fd);
  RelayProcess relay;
  ASSERT_TRUE(
      relay.Start({"--threads=1", std::string("--flagfile=") + path, "--bulk_receive_peers=8"}));
  unlink(path);
  std::string log;
  for (int i = 0; i < 500 && !absl::StrContains(log, "relay-server listening"); ++i) {
    absl::SleepFor(absl::Milliseconds(10));
    log = relay.Stderr();
  }
  EXPECT_TRUE(absl::StrContains(log, "--forward=auto is read as --forward=splice")) << log;
  EXPECT_TRUE(absl::StrContains(log, "--peer_bulk_receive_buffer=2097152 ignored")) << log;
  EXPECT_TRUE(absl::StrContains(log, "--bulk_receive_peers=8 ignored")) << log;
  EXPECT_EQ(relay.Stop(), 0);
}

TEST(RelayBinaryTest, ListenGivenTwiceListensOnBothAddresses) {
  RelayProcess relay;
  ASSERT_TRUE(relay.Start({"--listen=[::1]:0", PortRangeFlag(2)}));
  std::string log;  // the line comes once every reactor runs: after the port accepts
  for (int i = 0; i < 500 && log.find(" reactors;") == std::string::npos; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
    log = relay.Stderr();
  }
  const size_t at = log.find("relay-server listening on [::1]:");
  ASSERT_NE(at, std::string::npos) << log;
  EXPECT_NE(log.find(absl::StrCat(", 127.0.0.1:", relay.port(), " with"), at), std::string::npos)
      << log;
  EXPECT_NE(log.find("proxy addresses [::1]:"), std::string::npos) << log;
  TestNode node;
  absl::StatusOr<std::string> address = node.ConnectAndClaim(relay.port());
  ASSERT_TRUE(address.ok()) << address.status();
  EXPECT_EQ(address->rfind("[::1]:", 0), 0u) << *address;
  EXPECT_EQ(relay.Stop(), 0);
}

TEST(RelayBinaryTest, ASecondRelayOnAnOccupiedMainPortRefusesToStart) {
  RelayProcess relay;
  ASSERT_TRUE(relay.Start({"--threads=2", PortRangeFlag(2)}));
  for (const std::string host : {"127.0.0.1", "0.0.0.0"}) {
    std::string output;
    EXPECT_EQ(RelayProcess::RunToCompletion(
                  {absl::StrCat("--listen=", host, ":", relay.port()), PortRangeFlag(2)}, &output),
              1);
    EXPECT_NE(output.find("is already in use"), std::string::npos) << output;
  }
  // The first relay still serves.
  TestNode node;
  ASSERT_TRUE(node.Connect("127.0.0.1", relay.port()).ok());
  EXPECT_TRUE(node.RequestProxy().ok());
  EXPECT_EQ(relay.Stop(), 0);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

// Polls (bounded, 5 s) until the file at `path` contains `text`; returns its content.
std::string WaitForFileText(const std::string& path, const std::string& text) {
  std::string content = ReadFile(path);
  for (int i = 0; i < 500 && content.find(text) == std::string::npos; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
    content = ReadFile(path);
  }
  return content;
}

TEST(RelayBinaryTest, SighupReopensTheLogReloadsLogFlagsAndNeverStops) {
  char dir_template[] = "/tmp/relay-hup-XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  const std::string dir = dir_template;
  const std::string flags = dir + "/relay.conf", log = dir + "/relay.log";
  const std::string range = PortRangeFlag(2);
  std::ofstream(flags) << "--log_interval=10s\n" << range << "\n";
  RelayProcess relay;
  ASSERT_TRUE(relay.Start({"--threads=1", "--flagfile=" + flags, "--log_file=" + log}));
  // The line comes just after the port accepts: wait for it before moving the file.
  EXPECT_NE(WaitForFileText(log, "relay-server listening").find("relay-server listening"),
            std::string::npos);
  // logrotate moves the file away; the operator edits the flag file; SIGHUP.
  ASSERT_EQ(rename(log.c_str(), (log + ".1").c_str()), 0);
  std::ofstream(flags) << "--log_interval=5s\n--quiet\n--port_range=1000-1001\n";
  ASSERT_EQ(kill(relay.pid(), SIGHUP), 0);
  std::string text = WaitForFileText(log, "SIGHUP");
  EXPECT_NE(text.find("SIGHUP: log file reopened; reloaded: --log_interval=5s --quiet=true; "
                      "changed in the flag file but applied only by a restart: "
                      "--port_range=1000-1001"),
            std::string::npos)
      << text;
  TestNode node;  // still serving, on the old port range
  ASSERT_TRUE(node.Connect("127.0.0.1", relay.port()).ok());
  EXPECT_TRUE(node.RequestProxy().ok());
  // A flag file that no longer parses: nothing applied, the relay runs on.
  std::ofstream(flags) << "--log_interval=soon\n";
  ASSERT_EQ(kill(relay.pid(), SIGHUP), 0);
  text = WaitForFileText(log, "not reloaded");
  EXPECT_NE(text.find("SIGHUP: flag files not reloaded: --log_interval=soon"), std::string::npos)
      << text;
  EXPECT_EQ(relay.Stop(), 0);
  for (const std::string& f : {flags, log, log + ".1"}) {
    unlink(f.c_str());
  }
  rmdir(dir.c_str());
}

// A line per session start, takeover and end; a burst of sessions is capped per second
// with the rest counted.
TEST(RelayBinaryTest, SessionsAreLoggedWithinTheirRate) {
  RelayProcess relay;
  ASSERT_TRUE(relay.Start({"--threads=1", PortRangeFlag(30), "--log_sessions_per_second=3"}));
  {
    TestNode node;
    ASSERT_TRUE(node.Connect("127.0.0.1", relay.port()).ok());
    ASSERT_TRUE(node.RequestProxy().ok());
    ASSERT_TRUE(node.Send(kOpDisconnect).ok());
    EXPECT_TRUE(WaitForClose(node.fd(), absl::Seconds(5)));
  }
  std::string log = relay.Stderr();
  for (int i = 0; i < 500 && log.find("session end") == std::string::npos; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
    log = relay.Stderr();
  }
  EXPECT_NE(log.find("session start: node 127.0.0.1:"), std::string::npos) << log;
  EXPECT_NE(log.find("(new lease)"), std::string::npos) << log;
  EXPECT_NE(log.find(": node sent Disconnect; "), std::string::npos) << log;
  // A burst of 20 sessions within about a second: at most 3 lines per second.
  absl::SleepFor(absl::Milliseconds(1100));  // a fresh one-second window
  std::vector<std::unique_ptr<TestNode>> burst;
  const absl::Time start = absl::Now();
  for (int i = 0; i < 20; ++i) {
    burst.push_back(std::make_unique<TestNode>());
    ASSERT_TRUE(burst.back()->Connect("127.0.0.1", relay.port()).ok());
    ASSERT_TRUE(burst.back()->RequestProxy().ok());
  }
  const int windows = 1 + static_cast<int>(absl::ToDoubleSeconds(absl::Now() - start));
  absl::SleepFor(absl::Milliseconds(1100));
  TestNode late;  // its line reports how many were suppressed
  ASSERT_TRUE(late.Connect("127.0.0.1", relay.port()).ok());
  ASSERT_TRUE(late.RequestProxy().ok());
  for (int i = 0; i < 500 && relay.Stderr().find("suppressed") == std::string::npos; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  log = relay.Stderr();
  int starts = 0;
  for (size_t at = log.find("session start"); at != std::string::npos;
       at = log.find("session start", at + 1)) {
    ++starts;
  }
  EXPECT_LE(starts, 1 + 3 * (windows + 1) + 1) << log;  // first node, the burst, the late one
  EXPECT_NE(log.find("more like this suppressed"), std::string::npos) << log;
  EXPECT_EQ(relay.Stop(), 0);
}

TEST(RelayBinaryTest, JsonLogLinesAreEachOneJsonObject) {
  RelayProcess relay;
  ASSERT_TRUE(relay.Start({"--threads=1", PortRangeFlag(4), "--log_format=json"}));
  {
    TestNode node;  // a session start and end, and a bad frame's warning
    ASSERT_TRUE(node.Connect("127.0.0.1", relay.port()).ok());
    ASSERT_TRUE(node.RequestProxy().ok());
  }
  {
    TestNode bad;
    ASSERT_TRUE(bad.Connect("127.0.0.1", relay.port()).ok());
    ASSERT_TRUE(WriteAll(bad.fd(), MakeFrame("\"quoted\" \x01\xff", 12345)));
    EXPECT_TRUE(WaitForClose(bad.fd(), absl::Seconds(5)));
  }
  EXPECT_EQ(relay.Stop(), 0);
  int lines = 0;
  for (absl::string_view line : absl::StrSplit(relay.Stderr(), '\n', absl::SkipEmpty())) {
    std::map<std::string, std::string> object;
    ASSERT_TRUE(ParseFlatJson(line, &object)) << line;
    for (const char* field : {"time", "level", "source", "message"}) {
      EXPECT_EQ(object.count(field), 1u) << field << " in " << line;
    }
    ++lines;
  }
  EXPECT_GE(lines, 5) << relay.Stderr();  // configuration, listening, session, drain, counters
  EXPECT_NE(relay.Stderr().find("\"message\":\"session start: node 127.0.0.1:"), std::string::npos)
      << relay.Stderr();
}

// The relay's threads as /proc shows them: name (comm) and the scheduler slice the
// kernel reports (sched_getattr's sched_runtime; 0 on kernels without per-thread slices).
struct ThreadSlice {
  std::string name;
  uint64_t slice_ns = 0;
};
std::vector<ThreadSlice> ThreadSlices(pid_t pid) {
  std::vector<ThreadSlice> out;
  const std::string dir = absl::StrCat("/proc/", pid, "/task");
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) {
    return out;
  }
  while (dirent* e = readdir(d)) {
    const int tid = atoi(e->d_name);
    if (tid <= 0) {
      continue;
    }
    ThreadSlice t;
    std::ifstream comm(absl::StrCat(dir, "/", tid, "/comm"));
    std::getline(comm, t.name);
    absl::StatusOr<absl::Duration> slice = net::SchedulerSliceOf(tid);
    if (slice.ok()) {
      t.slice_ns = static_cast<uint64_t>(absl::ToInt64Nanoseconds(*slice));
    }
    out.push_back(t);
  }
  closedir(d);
  return out;
}

// --reactor_slice: every reactor thread is named reactor-N and carries the slice it asked
// for; with 0 the reactors keep the kernel's default, as the main thread does.
TEST(RelayBinaryTest, ReactorThreadsAreNamedAndAskForTheirSchedulerSlice) {
  for (const char* flag : {"--reactor_slice=300us", "--reactor_slice=0"}) {
    SCOPED_TRACE(flag);
    RelayProcess relay;
    ASSERT_TRUE(relay.Start({"--threads=2", PortRangeFlag(2), flag}));
    // Each reactor names itself once its slice is set, before its loop; bounded wait.
    std::vector<ThreadSlice> reactors;
    uint64_t main_slice = 0;
    for (int i = 0; i < 250 && reactors.size() < 2; ++i) {
      reactors.clear();
      for (const ThreadSlice& t : ThreadSlices(relay.pid())) {
        if (absl::StartsWith(t.name, "reactor-")) {
          reactors.push_back(t);
        } else if (t.name == "relay-server") {
          main_slice = t.slice_ns;
        }
      }
      if (reactors.size() < 2) {
        usleep(20 * 1000);
      }
    }
    ASSERT_EQ(reactors.size(), 2u);
    const bool kernel_has_slices = main_slice != 0;
    for (const ThreadSlice& t : reactors) {
      if (std::string(flag) == "--reactor_slice=0" || !kernel_has_slices) {
        EXPECT_EQ(t.slice_ns, main_slice) << t.name;
      } else {
        EXPECT_EQ(t.slice_ns, 300'000u) << t.name;
      }
    }
    EXPECT_EQ(relay.Stop(), 0) << relay.Stderr();
    if (!kernel_has_slices && std::string(flag) != "--reactor_slice=0") {
      EXPECT_NE(relay.Stderr().find("has no effect: this kernel has no per-thread slice"),
                std::string::npos);
    }
  }
}

TEST(RelayBinaryTest, ServesANodeAndStopsCleanlyOnSigterm) {
  RelayProcess relay;
  ASSERT_TRUE(relay.Start({"--threads=2", PortRangeFlag(4), "--advertise_host=127.0.0.1"}));
  std::string address;
  {
    TestNode node;
    absl::StatusOr<std::string> a = node.ConnectAndClaim(relay.port());
    ASSERT_TRUE(a.ok()) << a.status();
    address = *a;
    absl::StatusOr<net::UniqueFd> peer = ConnectTo(address);
    ASSERT_TRUE(peer.ok());
    ASSERT_TRUE(WriteAll(peer->get(), MakeFrame("through the binary")));
    absl::StatusOr<Frame> f = node.ReadDataFrame();
    ASSERT_TRUE(f.ok()) << f.status();
    EXPECT_EQ(f->payload, "through the binary");
    EXPECT_EQ(relay.Stop(), 0) << relay.Stderr();
  }
  EXPECT_NE(relay.Stderr().find("configuration: --accept_backoff=100ms"), std::string::npos)
      << "the effective configuration is logged at start";
  EXPECT_NE(relay.Stderr().find("draining"), std::string::npos);
  EXPECT_NE(relay.Stderr().find("drained in"), std::string::npos);
}

TEST(RelayBinaryTest, ANodeThatStopsReadingWhileFourSendersFloodKeepsMemoryBounded) {
  RelayProcess relay;
  // The node never reads: the drain at the end cannot deliver; it gives up after 1 s.
  ASSERT_TRUE(relay.Start({"--threads=2", PortRangeFlag(4), "--quiet", "--drain_timeout=1s"}));
  TestNode node;
  absl::StatusOr<std::string> address = node.ConnectAndClaim(relay.port());
  ASSERT_TRUE(address.ok());
  const long rss_before = relay.RssKib();
  ASSERT_GT(rss_before, 0);

  // The node now reads nothing. Four senders push 64 KiB frames for 3 seconds; each
  // write waits at most 50 ms for room, so the loop is bounded in time.
  std::atomic<long> sent_bytes{0};
  std::vector<std::thread> senders;
  const std::string frame = MakeFrame(std::string(65536, 'f'));
  const absl::Time end = absl::Now() + absl::Seconds(3);
  for (int s = 0; s < 4; ++s) {
    senders.emplace_back([&] {
      absl::StatusOr<net::UniqueFd> fd = ConnectTo(*address);
      if (!fd.ok()) {
        return;
      }
      size_t off = 0;
      while (absl::Now() < end) {
        pollfd p{fd->get(), POLLOUT, 0};
        if (poll(&p, 1, 50) <= 0) {
          continue;
        }
        const ssize_t n =
            ::send(fd->get(), frame.data() + off, frame.size() - off, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
          sent_bytes += n;
          off = (off + static_cast<size_t>(n)) % frame.size();
        } else if (n < 0 && errno != EAGAIN) {
          return;
        }
      }
    });
  }
  long rss_peak = rss_before;
  while (absl::Now() < end) {
    rss_peak = std::max(rss_peak, relay.RssKib());
    absl::SleepFor(absl::Milliseconds(50));
  }
  for (auto& t : senders) {
    t.join();
  }
  const long growth_kib = rss_peak - rss_before;
  RecordProperty("relay_rss_growth_kib", static_cast<int>(growth_kib));
  printf("relay RSS %ld KiB before, %ld KiB peak under the flood; senders pushed %ld MiB\n",
         rss_before, rss_peak, sent_bytes.load() >> 20);
  EXPECT_LT(growth_kib, 64 * 1024) << "relay RSS grew by " << growth_kib << " KiB";
  // Backpressure held the senders back: they could not push more than the kernel
  // buffers and the relay's bounded staging hold.
  EXPECT_LT(sent_bytes.load(), 256L << 20) << "senders were never pushed back";

  // The node can still read whole frames, and the relay still answers.
  for (int i = 0; i < 5; ++i) {
    absl::StatusOr<Frame> f = node.ReadDataFrame();
    ASSERT_TRUE(f.ok()) << f.status();
    EXPECT_EQ(f->payload.size(), 65536u);
    EXPECT_EQ(f->header.network_id, kDefaultNetworkId);
  }
  EXPECT_EQ(relay.Stop(), 0);
}

}  // namespace
}  // namespace relay::testing
