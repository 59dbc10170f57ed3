// The commands README.md shows a newcomer, run as a newcomer would: --help and --version
// of each program, the usage errors of relay-server's flags (one exit code, a message
// that names the flag, the value and what is expected), flag files, plain seconds for
// durations, --pidfile, and relay-node's echo to a sender that cannot be reached.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/testing/free_ports.h"
#include "tests/testing/relay_process.h"

namespace relay::testing {
namespace {

constexpr int kUsage = 2;

class ProgramHelpTest : public ::testing::TestWithParam<const char*> {};

TEST_P(ProgramHelpTest, HelpExitsZeroAndShowsNoBuildPath) {
  std::string out;
  EXPECT_EQ(RelayProcess::RunProgram(GetParam(), {"--help"}, &out), 0) << out;
  EXPECT_TRUE(absl::StartsWith(out, absl::StrCat(GetParam(), ": "))) << out;
  EXPECT_NE(out.find("Flags:"), std::string::npos) << out;
  EXPECT_NE(out.find("Exit codes:"), std::string::npos) << out;
  EXPECT_EQ(out.find(".cc"), std::string::npos) << "a source path leaked into --help:\n" << out;
  EXPECT_EQ(out.find("/build"), std::string::npos) << out;
  EXPECT_EQ(RelayProcess::RunProgram(GetParam(), {"--version"}, &out), 0);
  EXPECT_TRUE(absl::StartsWith(out, absl::StrCat(GetParam(), " 0."))) << out;
  EXPECT_EQ(RelayProcess::RunProgram(GetParam(), {"--no_such_flag=1"}, &out), kUsage);
  EXPECT_NE(out.find("unknown flag --no_such_flag=1"), std::string::npos) << out;
}

INSTANTIATE_TEST_SUITE_P(Programs, ProgramHelpTest,
                         ::testing::Values("relay-server", "relay-node", "relay-load"));

struct BadFlag {
  std::string arg;
  std::string message;  // what stderr must say
};

TEST(ReadmeCommandsTest, EveryBadServerFlagNamesFlagValueAndExpectationWithExitTwo) {
  const std::vector<BadFlag> cases = {
      {"--port_range=9-1", "--port_range=9-1: LO (9) is above HI (1); expected LO <= HI"},
      {"--port_range=0-5", "--port_range=0-5: LO and HI must be ports in 1..65535"},
      {"--keepalive_timeout=10x", "--keepalive_timeout=10x: expected a duration such as 30s"},
      {"--lease_ttl=-1s", "--lease_ttl=-1s: must not be negative"},
      {"--stage_budget=1000", "--stage_budget=1000: expected at least 17825802"},
      {"--threads=abc", "--threads=abc: expected an integer"},
      {"--threads=5000", "--threads=5000: expected 0 (one per CPU) to 128"},
      {"--listen=foo", "--listen=foo: expected HOST:PORT"},
      {"--forward=fast", "--forward=fast: expected splice or copy"},
      {"--max_frame_bytes=0", "--max_frame_bytes=0: expected 1 to 1073741824"},
      {"--listen", "--listen: missing value"},
      {"stray", "unexpected argument 'stray'"},
  };
  for (const BadFlag& c : cases) {
    std::string out;
    EXPECT_EQ(RelayProcess::RunToCompletion({c.arg}, &out), kUsage) << c.arg << ": " << out;
    EXPECT_NE(out.find("relay-server: " + c.message), std::string::npos) << c.arg << ": " << out;
    EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << "one line per error: " << out;
  }
}

TEST(ReadmeCommandsTest, DurationsTakePlainSecondsAndFlagFilesWork) {
  const uint16_t port = PickFreePortRange(1);
  const std::string flagfile = absl::StrCat("/tmp/relay-flags-", getpid(), ".conf");
  const std::string pidfile = absl::StrCat("/tmp/relay-pid-", getpid(), ".pid");
  std::ofstream(flagfile) << "# an example flag file\n\n--keepalive_timeout=10\n"
                          << "--port_range=" << port << "-" << port << "\n--pidfile=" << pidfile
                          << "\n";
  RelayProcess relay;
  ASSERT_TRUE(relay.Start({"--flagfile=" + flagfile, "--threads=1"}));
  std::ifstream in(pidfile);
  int pid = 0;
  in >> pid;
  EXPECT_EQ(pid, relay.pid()) << "--pidfile names this relay";
  EXPECT_EQ(relay.Stop(), 0);
  EXPECT_NE(access(pidfile.c_str(), F_OK), 0) << "the pid file is removed at a clean exit";

  std::ofstream(flagfile) << "port_range=1-2\n";
  std::string out;
  EXPECT_EQ(RelayProcess::RunToCompletion({"--flagfile=" + flagfile}, &out), kUsage);
  EXPECT_NE(out.find("is not a flag (expected --flag=value)"), std::string::npos) << out;
  unlink(flagfile.c_str());

  // relay-load --seconds=1 (plain seconds) runs.
  EXPECT_EQ(RelayProcess::RunProgram("relay-load",
                                     {"--direct", "--seconds=1", "--frame_bytes=1024",
                                      "--progress=false", "--threads=1"},
                                     &out),
            0)
      << out;
  EXPECT_NE(out.find("bad frames"), std::string::npos) << out;
}

TEST(ReadmeCommandsTest, EchoToASenderWithoutAddressExplainsItself) {
  RelayProcess relay;
  const uint16_t lo = PickFreePortRange(2);
  ASSERT_TRUE(relay.Start({absl::StrCat("--port_range=", lo, "-", lo + 1), "--quiet"}));
  BackgroundProgram echo;
  ASSERT_TRUE(
      echo.Start("relay-node", {absl::StrCat("--relay=127.0.0.1:", relay.port()), "--echo"}));
  ASSERT_TRUE(echo.WaitForOutput(absl::StrCat("127.0.0.1:"), absl::Seconds(10))) << echo.Output();
  const std::string address = echo.Output().substr(0, echo.Output().find('\n'));
  std::string out;
  EXPECT_EQ(
      RelayProcess::RunProgram("relay-node", {"send", "--to=" + address, "--text=hello"}, &out), 0)
      << out;
  ASSERT_TRUE(echo.WaitForOutput("not echoed", absl::Seconds(10))) << echo.Output();
  const std::string said = echo.Output();
  EXPECT_NE(said.find("text=\"hello\""), std::string::npos) << said;
  EXPECT_NE(said.find("it sent without --relay"), std::string::npos) << said;
  EXPECT_EQ(said.find("echo failed"), std::string::npos) << said;
  EXPECT_EQ(relay.Stop(), 0);
}

// relay-load --sender_notsent_lowat (docs/BENCHMARKS.md: where 16 merged senders' work
// runs on loopback): senders with a low mark still deliver every frame whole.
TEST(ReadmeCommandsTest, RelayLoadSendersWithANotSentLowMarkDeliverEveryFrame) {
  RelayProcess relay;
  const uint16_t lo = PickFreePortRange(4);
  ASSERT_TRUE(relay.Start({absl::StrCat("--port_range=", lo, "-", lo + 3), "--quiet"}));
  std::string out;
  ASSERT_EQ(RelayProcess::RunProgram(
                "relay-load",
                {absl::StrCat("--relay=127.0.0.1:", relay.port()), "--senders=4", "--seconds=1",
                 "--json", "--progress=false", "--sender_notsent_lowat=16384"},
                &out),
            0)
      << out;
  EXPECT_NE(out.find("\"lost_frames\":0,"), std::string::npos) << out;
  EXPECT_NE(out.find("\"cut_frames\":0,"), std::string::npos) << out;
  EXPECT_EQ(out.find("\"frames\":0,"), std::string::npos) << out;  // some were measured
  EXPECT_EQ(relay.Stop(), 0);
}

// The number after "key": in relay-load's --json line, or -1.
double JsonNumber(const std::string& json, const std::string& key) {
  const size_t at = json.find(absl::StrCat("\"", key, "\":"));
  return at == std::string::npos ? -1 : std::atof(json.c_str() + at + key.size() + 3);
}

// relay-load --warmup (README, docs/BENCHMARKS.md: every make bench row starts after one):
// the warm-up's frames flow and are checked, but neither they nor their latency count.
TEST(ReadmeCommandsTest, RelayLoadWarmupIsNotCounted) {
  std::string out;
  ASSERT_EQ(
      RelayProcess::RunProgram("relay-load",
                               {"--direct", "--rate=2000", "--frame_bytes=1024", "--warmup=1s",
                                "--seconds=1", "--json", "--progress=false", "--threads=1"},
                               &out),
      0)
      << out;
  EXPECT_EQ(JsonNumber(out, "warmup_s"), 1.0) << out;
  const double measured = JsonNumber(out, "frames");
  const double received = JsonNumber(out, "frames_received");
  // 2,000 frames/s: about 2,000 in the warm-up and 2,000 measured.
  EXPECT_GT(measured, 1000) << out;
  EXPECT_GT(received, 1.6 * measured) << "the warm-up's frames were counted: " << out;
  EXPECT_EQ(JsonNumber(out, "latency_samples"), measured) << out;
  EXPECT_EQ(JsonNumber(out, "lost_frames"), 0) << out;
  EXPECT_EQ(RelayProcess::RunProgram("relay-load", {"--direct", "--warmup=-1s"}, &out), kUsage);
  EXPECT_NE(out.find("--warmup=-1s"), std::string::npos) << out;
}

// relay-load: what was not measured is null in --json; a relay that dies mid-run is an
// error (exit 1, the reason), not a result.
TEST(ReadmeCommandsTest, RelayLoadReportsNullsAndFailsWhenTheRelayDies) {
  RelayProcess relay;
  const uint16_t lo = PickFreePortRange(4);
  ASSERT_TRUE(relay.Start({absl::StrCat("--port_range=", lo, "-", lo + 3), "--quiet"}));
  const std::string flag = absl::StrCat("--relay=127.0.0.1:", relay.port());
  std::string out;
  ASSERT_EQ(RelayProcess::RunProgram(
                "relay-load",
                {flag, "--seconds=1", "--json", "--progress=false", "--frame_bytes=1024"}, &out),
            0)
      << out;
  EXPECT_NE(out.find("\"p99_us\":null"), std::string::npos) << out;
  EXPECT_NE(out.find("\"relay_cpu_s\":null"), std::string::npos) << out;
  EXPECT_NE(out.find("\"cut_frames\":0"), std::string::npos) << out;

  BackgroundProgram load;
  ASSERT_TRUE(load.Start("relay-load", {flag, "--seconds=20", "--progress=true",
                                        absl::StrCat("--relay_pid=", relay.pid())}));
  ASSERT_TRUE(load.WaitForOutput("relay-load: t=1s", absl::Seconds(10))) << load.Output();
  ASSERT_EQ(kill(relay.pid(), SIGKILL), 0);
  EXPECT_EQ(relay.Stop(), -1);  // reaped: gone
  EXPECT_EQ(load.Wait(absl::Seconds(10)), 1) << load.Output();
  EXPECT_NE(load.Output().find("no result"), std::string::npos) << load.Output();
}

TEST(ReadmeCommandsTest, RelayLoadFailsWhenTheRelayStopsTakingBytes) {
  // A frozen relay (here: stopped with SIGSTOP) loses no frame written whole; its senders
  // are stuck inside a frame instead. relay-load must call that a stall, not a result.
  RelayProcess relay;
  const uint16_t lo = PickFreePortRange(4);
  ASSERT_TRUE(relay.Start({absl::StrCat("--port_range=", lo, "-", lo + 3), "--quiet"}));
  BackgroundProgram load;
  ASSERT_TRUE(load.Start("relay-load",
                         {absl::StrCat("--relay=127.0.0.1:", relay.port()), "--seconds=2",
                          "--progress=true", "--frame_bytes=4194304"}));  // more than the buffers
  ASSERT_TRUE(load.WaitForOutput("relay-load: t=1s", absl::Seconds(10))) << load.Output();
  ASSERT_EQ(kill(relay.pid(), SIGSTOP), 0);
  EXPECT_EQ(load.Wait(absl::Seconds(30)), 1) << load.Output();
  // Almost always the freeze catches the sender inside a frame: a stall. When the buffers
  // filled exactly at a frame's end (seen once in an ASan run), the sender wrote that frame
  // whole and has none begun, and the frozen relay holds it: reported as a frame that
  // never arrived. Either way a failure with no result, never a measurement.
  const std::string out = load.Output();
  const bool stall =
      out.find("could not finish the frame they were writing") != std::string::npos &&
      out.find("(a stall); no result") != std::string::npos;
  const bool held =
      out.find("frames the senders wrote whole never reached their node") != std::string::npos;
  EXPECT_TRUE(stall || held) << out;
  EXPECT_EQ(out.find("frames sent/received"), std::string::npos) << "no result table: " << out;
  ASSERT_EQ(kill(relay.pid(), SIGCONT), 0);
  EXPECT_EQ(relay.Stop(), 0);
}

}  // namespace
}  // namespace relay::testing
