// relay-attack: plays one hostile client against a relay for a bounded time, so that
// bench/attack.sh (make attack) can measure what innocent nodes see meanwhile. For load
// tests of your own relay on loopback or your own test hosts only.
//
// Attacks (--attack=NAME), each kept up for --seconds (connections the relay closes are
// opened again):
//   header_only   --conns connections to proxy ports, each sending only a frame header
//                 that announces a --max_frame byte frame
//   slowloris     the same, then one byte per second
//   idle          --conns main connections and --conns peer connections that send nothing
//   control_hold  --conns main connections, each holding 64 KiB - 1 of a control frame
//   non_reading   --nodes nodes that never read, each with 4 peers pushing 64 KiB frames
//   pool_burn     new identities claiming proxy addresses as fast as the relay answers
//   takeover      one identity claimed from two connections, back and forth
//   bad_utf8      connections whose ProxyRequest carries an address that is not UTF-8
//   admin_idle    --conns idle connections to the admin endpoint (--admin), and 20 more
//                 sending a request head a byte a second
//   stall_inside  on every proxy port, two peers each send all of a --max_frame byte frame
//                 but its last byte and go silent; again when the relay drops them
//   control_flood --conns main connections, each streaming one validly signed keepalive
//                 over and over (signed once) and reading the replies
//   signed_flood  the same from --sources source addresses (127.0.1.1 on), each message
//                 signed by another of 256 keys: under --require_signatures each costs the
//                 relay a signature check, the attacker nothing
// Proxy ports are found by scanning --port_range on the relay's host (all are public).
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <atomic>
#include <cstdio>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/command_line.h"
#include "base/log.h"
#include "core/config.h"
#include "core/control_codec.h"
#include "core/frame_header.h"
#include "core/identity.h"
#include "core/signing.h"
#include "net/frame_io.h"
#include "net/socket_ops.h"

ABSL_FLAG(std::string, relay, "127.0.0.1:6008", "The relay's main address, HOST:PORT.");
ABSL_FLAG(std::string, attack, "", "Which attack (see --help).");
ABSL_FLAG(absl::Duration, seconds, absl::Seconds(10), "How long to keep the attack up.");
ABSL_FLAG(int, conns, 300, "Connections, for the attacks that hold connections.");
ABSL_FLAG(int, nodes, 4, "Nodes, for non_reading.");
ABSL_FLAG(uint32_t, max_frame, 16u << 20, "Length the header_only frames announce.");
ABSL_FLAG(std::string, port_range, "20000-29999", "Where to look for proxy ports.");
ABSL_FLAG(uint32_t, network_id, relay::kDefaultNetworkId, "Network id.");
ABSL_FLAG(std::string, admin, "", "The relay's admin endpoint, HOST:PORT (admin_idle).");
ABSL_FLAG(int, sources, 250, "Source addresses of signed_flood (127.0.1.1 on).");
ABSL_FLAG(std::string, source, "127.0.0.2",
          "Loopback address the attack comes from (another client IP than the innocents').");

namespace {

constexpr relay::ProgramInfo kProgram = {
    "relay-attack",
    "hostile clients against a relay, for measuring isolation (make attack).",
    "  relay-attack --relay=127.0.0.1:6008 --attack=header_only --seconds=10 --conns=300",
    "tools/relay_attack.cc",
    "0 the attack ran for --seconds, 1 the relay could not be reached, 2 usage error.",
};

std::atomic<bool> g_stop{false};
std::atomic<uint64_t> g_actions{0};  // connections opened, claims sent...

relay::HostPort g_relay;
uint32_t g_network_id = relay::kDefaultNetworkId;

std::string Frame(const std::string& payload, uint32_t length_override = 0) {
  std::string out(relay::kFrameHeaderSize, '\0');
  relay::FrameHeader h;
  h.network_id = g_network_id;
  h.compress_info = 0;
  h.length = length_override != 0 ? length_override : static_cast<uint32_t>(payload.size());
  relay::EncodeFrameHeader(h, reinterpret_cast<uint8_t*>(out.data()));
  return out + payload;
}

std::string ControlFrame(uint32_t opcode, const relay::wire::ID& sender) {
  relay::wire::Message m;
  *m.mutable_sender() = sender;
  m.set_opcode(opcode);
  m.set_netid(g_network_id);
  m.set_request_nonce(1);
  m.set_message(opcode == relay::kOpProxyRequest ? relay::wire::ProxyRequest().SerializeAsString()
                                                 : "");
  return Frame(m.SerializeAsString());
}

// The wire ID of `id`, at a placeholder address.
relay::wire::ID IdOf(const relay::Identity& id) { return id.Sender("tcp://0.0.0.0:0"); }

relay::wire::ID FreshId() { return IdOf(relay::Identity::Generate()); }

std::string g_source;

// A blocking connection from `source` (--source) to host:port (bounded by a 2 s timeout).
relay::net::UniqueFd Connect(const std::string& host, uint16_t port,
                             const std::string& source = g_source) {
  relay::net::UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  absl::StatusOr<relay::net::SocketAddress> src = relay::net::MakeAddress(source, 0);
  absl::StatusOr<relay::net::SocketAddress> dst = relay::net::MakeAddress(host, port);
  if (!fd || !src.ok() || !dst.ok() || ::bind(fd.get(), src->get(), src->len) != 0) {
    return relay::net::UniqueFd();
  }
  timeval tv{2, 0};
  setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  if (::connect(fd.get(), dst->get(), dst->len) != 0) {
    return relay::net::UniqueFd();
  }
  g_actions.fetch_add(1);
  return fd;
}

bool SendAll(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n <= 0) {
      return false;
    }
    off += static_cast<size_t>(n);
  }
  return true;
}

// Claims an address with `sender` on a new main connection; returns the proxy port (0 on
// refusal) and leaves the connection in *fd.
uint16_t Claim(const relay::wire::ID& sender, relay::net::UniqueFd* fd) {
  *fd = Connect(g_relay.host, g_relay.port);
  if (!*fd || !SendAll(fd->get(), ControlFrame(relay::kOpProxyRequest, sender))) {
    return 0;
  }
  relay::FrameHeader header;
  std::string payload;
  if (!relay::net::ReadFrame(fd->get(), absl::Now() + absl::Seconds(5), 1u << 20, &header, &payload)
           .ok()) {
    return 0;
  }
  relay::wire::Message m;
  relay::wire::ProxyResponse r;
  if (!m.ParseFromString(payload) || m.opcode() != relay::kOpProxyResponse ||
      !r.ParseFromString(m.message())) {
    return 0;
  }
  const std::string& a = r.proxy_address();
  return static_cast<uint16_t>(std::stoi(a.substr(a.rfind(':') + 1)));
}

std::vector<uint16_t> ScanProxyPorts() {
  uint16_t lo = 0, hi = 0;
  std::vector<uint16_t> ports;
  if (!relay::ParsePortRange(absl::GetFlag(FLAGS_port_range), &lo, &hi).ok()) {
    return ports;
  }
  for (uint32_t p = lo; p <= hi; ++p) {
    absl::StatusOr<relay::net::UniqueFd> fd = relay::net::ConnectWithTimeout(
        g_relay.host, static_cast<uint16_t>(p), absl::Milliseconds(200));
    if (fd.ok()) {
      ports.push_back(static_cast<uint16_t>(p));
    }
  }
  return ports;
}

// Keeps `count` connections to `ports` open, each set up by `open(fd)`; reopens the ones
// the relay closes; calls `tick(fd)` on each once a second.
template <typename Open, typename Tick>
void HoldConnections(const std::vector<uint16_t>& ports, int count, Open open, Tick tick) {
  std::vector<relay::net::UniqueFd> conns(static_cast<size_t>(count));
  absl::Time next_tick = absl::Now();
  while (!g_stop.load()) {
    for (size_t i = 0; i < conns.size() && !g_stop.load(); ++i) {
      if (conns[i].valid()) {
        char c;
        const ssize_t n = ::recv(conns[i].get(), &c, 1, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN)) {
          conns[i].Reset();  // closed by the relay: open another
        }
      }
      if (!conns[i].valid()) {
        const uint16_t port = ports.empty() ? g_relay.port : ports[i % ports.size()];
        conns[i] = Connect(g_relay.host, port);
        if (conns[i].valid() && !open(conns[i].get())) {
          conns[i].Reset();
        }
      }
    }
    if (absl::Now() >= next_tick) {
      for (relay::net::UniqueFd& fd : conns) {
        if (fd.valid()) {
          tick(fd.get());
        }
      }
      next_tick += absl::Seconds(1);
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
}

// A keepalive signed by a new key.
std::string SignedKeepalive() {
  relay::Identity id = relay::Identity::Generate();
  relay::wire::Message m;
  *m.mutable_sender() = IdOf(id);
  m.set_opcode(relay::kOpKeepalive);
  m.set_netid(g_network_id);
  m.set_request_nonce(1);
  RELAY_CHECK(relay::SignMessage(id.secret_key(), &m).ok());
  return Frame(m.SerializeAsString());
}

// --conns main connections streaming signed keepalives (`keys` keys in turn), 64 KiB of
// them per write, and draining the replies (so the relay never drops them as slow
// readers); from `sources` source addresses (127.0.1.1 on), or --source if 0.
void ControlFlood(int conns, int keys, int sources) {
  std::vector<std::string> messages;
  for (int k = 0; k < keys; ++k) {
    messages.push_back(SignedKeepalive());
  }
  std::string batch;
  for (size_t k = 0; batch.size() + messages[k % keys].size() <= 64 * 1024; ++k) {
    batch += messages[k % keys];
  }
  auto source = [sources](size_t i) {
    return sources == 0 ? g_source : absl::StrCat("127.0.1.", 1 + i % sources);
  };
  std::vector<relay::net::UniqueFd> fds(static_cast<size_t>(conns));
  std::vector<size_t> offs(fds.size(), 0);
  char sink[64 * 1024];
  while (!g_stop.load()) {
    for (size_t i = 0; i < fds.size() && !g_stop.load(); ++i) {
      if (!fds[i].valid()) {
        fds[i] = Connect(g_relay.host, g_relay.port, source(i));
        offs[i] = 0;
        continue;
      }
      const int fd = fds[i].get();
      ssize_t n;
      while ((n = ::recv(fd, sink, sizeof(sink), MSG_DONTWAIT)) > 0) {
      }
      if (n == 0 || (n < 0 && errno != EAGAIN)) {
        fds[i].Reset();  // closed by the relay: open another
        continue;
      }
      n = ::send(fd, batch.data() + offs[i], batch.size() - offs[i], MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n > 0) {
        offs[i] = (offs[i] + static_cast<size_t>(n)) % batch.size();
        g_actions.fetch_add(1);
      }
    }
    absl::SleepFor(absl::Milliseconds(1));
  }
}

void NonReading(int nodes) {
  std::vector<std::thread> threads;
  for (int n = 0; n < nodes; ++n) {
    threads.emplace_back([] {
      while (!g_stop.load()) {
        relay::net::UniqueFd main;
        const uint16_t port = Claim(FreshId(), &main);
        if (port == 0) {
          absl::SleepFor(absl::Milliseconds(200));
          continue;
        }
        std::vector<std::thread> pushers;
        for (int p = 0; p < 4; ++p) {
          pushers.emplace_back([port] {
            relay::net::UniqueFd fd = Connect(g_relay.host, port);
            const std::string frame = Frame(std::string(64 * 1024, 'x'));
            while (fd.valid() && !g_stop.load() && SendAll(fd.get(), frame)) {
            }
          });
        }
        // Never read `main`; wait until the relay drops it (or the attack ends).
        while (!g_stop.load()) {
          pollfd p{main.get(), POLLRDHUP, 0};
          if (poll(&p, 1, 100) == 1) {
            break;
          }
        }
        main.Reset();
        for (std::thread& t : pushers) {
          t.join();
        }
      }
    });
  }
  for (std::thread& t : threads) {
    t.join();
  }
}

// The attacks (--attack), each run until g_stop with `conns` connections where it uses
// them.
void HeaderOnly(int conns, bool trickle) {
  const std::string header = Frame("", absl::GetFlag(FLAGS_max_frame));
  HoldConnections(
      ScanProxyPorts(), conns, [&](int fd) { return SendAll(fd, header); },
      [trickle](int fd) {
        if (trickle) {
          SendAll(fd, "x");
        }
      });
}

void StallInside(int) {
  const std::string frame =
      Frame(std::string(absl::GetFlag(FLAGS_max_frame) - 1, 's'), absl::GetFlag(FLAGS_max_frame));
  std::vector<std::thread> threads;
  for (uint16_t port : ScanProxyPorts()) {
    threads.emplace_back([port, &frame] {
      while (!g_stop.load()) {
        relay::net::UniqueFd fds[2];
        for (relay::net::UniqueFd& fd : fds) {
          fd = Connect(g_relay.host, port);
          if (fd.valid()) {
            SendAll(fd.get(), frame);  // short when the relay holds it back (2 s timeout)
          }
        }
        for (relay::net::UniqueFd& fd : fds) {
          while (fd.valid() && !g_stop.load()) {
            pollfd p{fd.get(), POLLRDHUP, 0};
            if (poll(&p, 1, 100) == 1) {
              break;
            }
          }
        }
      }
    });
  }
  for (std::thread& t : threads) {
    t.join();
  }
}

void AdminIdle(int conns) {
  absl::StatusOr<relay::HostPort> admin = relay::ParseHostPort(absl::GetFlag(FLAGS_admin));
  if (!admin.ok()) {
    fprintf(stderr, "relay-attack: admin_idle needs --admin=HOST:PORT\n");
    return;
  }
  std::thread slow([&] {
    HoldConnections(
        std::vector<uint16_t>(1, admin->port), 20,
        [](int fd) { return SendAll(fd, "GET /metrics HTTP/1.1\r\nX-Slow: "); },
        [](int fd) { SendAll(fd, "x"); });
  });
  HoldConnections(
      std::vector<uint16_t>(1, admin->port), conns, [](int) { return true; }, [](int) {});
  slow.join();
}

void Idle(int conns) {
  std::vector<uint16_t> ports = ScanProxyPorts();
  std::thread mains([conns] {
    HoldConnections(
        {}, conns, [](int) { return true; }, [](int) {});
  });
  HoldConnections(
      ports, conns, [](int) { return true; }, [](int) {});
  mains.join();
}

void ControlHold(int conns) {
  const std::string partial =
      (Frame("", 64 * 1024 - relay::kFrameHeaderSize) + std::string(64 * 1024, 'c'))
          .substr(0, 64 * 1024 - 1);
  HoldConnections(
      {}, conns, [&](int fd) { return SendAll(fd, partial); }, [](int) {});
}

void PoolBurn(int) {
  while (!g_stop.load()) {
    relay::net::UniqueFd fd;
    Claim(FreshId(), &fd);
  }
}

void TakeoverStorm(int) {
  const relay::wire::ID id = FreshId();
  while (!g_stop.load()) {
    relay::net::UniqueFd a, b;
    Claim(id, &a);
    Claim(id, &b);
  }
}

void BadUtf8(int) {
  relay::wire::ID id = FreshId();
  id.set_address("tcp://\xc3\x28:1");
  const std::string frame = ControlFrame(relay::kOpProxyRequest, id);
  while (!g_stop.load()) {
    relay::net::UniqueFd fd = Connect(g_relay.host, g_relay.port);
    if (fd.valid()) {
      SendAll(fd.get(), frame);
      relay::net::WaitForFd(fd.get(), POLLIN, absl::Now() + absl::Seconds(1));
    }
  }
}

struct Attack {
  const char* name;
  std::function<void(int conns)> run;
};

const std::vector<Attack>& Attacks() {
  static const std::vector<Attack>* attacks = new std::vector<Attack>{
      {"header_only", [](int conns) { HeaderOnly(conns, false); }},
      {"slowloris", [](int conns) { HeaderOnly(conns, true); }},
      {"idle", Idle},
      {"control_hold", ControlHold},
      {"non_reading", [](int) { NonReading(absl::GetFlag(FLAGS_nodes)); }},
      {"pool_burn", PoolBurn},
      {"takeover", TakeoverStorm},
      {"bad_utf8", BadUtf8},
      {"control_flood", [](int conns) { ControlFlood(conns, 1, 0); }},
      {"signed_flood",
       [](int conns) { ControlFlood(conns, 256, std::max(1, absl::GetFlag(FLAGS_sources))); }},
      {"stall_inside", StallInside},
      {"admin_idle", AdminIdle},
  };
  return *attacks;
}

// The attack named by --attack; exits with a usage error if there is none.
const Attack& ChosenAttack() {
  const std::string name = absl::GetFlag(FLAGS_attack);
  std::vector<std::string> names;
  for (const Attack& a : Attacks()) {
    if (name == a.name) {
      return a;
    }
    names.push_back(a.name);
  }
  relay::ExitUsage(kProgram,
                   absl::StrCat("--attack=", name, ": expected ", absl::StrJoin(names, ", ")));
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> positional = relay::ParseCommandLineOrExit(argc, argv, kProgram);
  if (!positional.empty()) {
    relay::ExitUsage(kProgram, absl::StrCat("unexpected argument '", positional[0], "'"));
  }
  absl::StatusOr<relay::HostPort> hp = relay::ParseHostPort(absl::GetFlag(FLAGS_relay));
  if (!hp.ok()) {
    relay::ExitUsage(kProgram, absl::StrCat("--relay=", absl::GetFlag(FLAGS_relay), ": ",
                                            hp.status().message()));
  }
  const Attack& attack = ChosenAttack();
  g_relay = *hp;
  g_source = absl::GetFlag(FLAGS_source);
  g_network_id = absl::GetFlag(FLAGS_network_id);
  signal(SIGPIPE, SIG_IGN);
  rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
  if (!Connect(g_relay.host, g_relay.port)) {
    fprintf(stderr, "relay-attack: cannot reach %s\n", absl::GetFlag(FLAGS_relay).c_str());
    return 1;
  }
  const absl::Duration seconds = absl::GetFlag(FLAGS_seconds);
  std::thread timer([seconds] {
    absl::SleepFor(seconds);
    g_stop.store(true);
  });
  attack.run(absl::GetFlag(FLAGS_conns));
  timer.join();
  printf("attack %s: %lu connections or claims in %s\n", attack.name,
         static_cast<unsigned long>(g_actions.load()), absl::FormatDuration(seconds).c_str());
  return 0;
}
