// The user-space half of the sockmap experiment (issue 33): a forwarder shaped like the
// haproxy row of make bench (relay-load --direct --via=LISTEN --sink=SINK): for each
// accepted sender it connects to the sink, puts the sender in `peers` (parser + verdict
// attached) and the sink connection in `mains`, and routes the one to the other. The
// kernel then moves every frame; this process only accepts and, at the end, prints the
// BPF counters. Built and run by bench/sockmap/measure.sh; not part of the product.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

static volatile sig_atomic_t stop = 0;
static void OnSignal(int) { stop = 1; }

static int Fail(const char* what) {
  perror(what);
  return 1;
}

int main(int argc, char** argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s BPF_OBJECT LISTEN_PORT SINK_PORT\n", argv[0]);
    return 2;
  }
  bpf_object* obj = bpf_object__open_file(argv[1], nullptr);
  if (!obj || bpf_object__load(obj) != 0) return Fail("bpf_object load");
  const int peers = bpf_object__find_map_fd_by_name(obj, "peers");
  const int mains = bpf_object__find_map_fd_by_name(obj, "mains");
  const int route = bpf_object__find_map_fd_by_name(obj, "route");
  const int counts = bpf_object__find_map_fd_by_name(obj, "counts");
  bpf_program* parser = bpf_object__find_program_by_name(obj, "parse_frame");
  bpf_program* verdict = bpf_object__find_program_by_name(obj, "route_frame");
  if (parser && bpf_prog_attach(bpf_program__fd(parser), peers, BPF_SK_SKB_STREAM_PARSER, 0))
    return Fail("attach parser");
  if (bpf_prog_attach(bpf_program__fd(verdict), peers,
                      parser ? BPF_SK_SKB_STREAM_VERDICT : BPF_SK_SKB_VERDICT, 0))
    return Fail("attach verdict");

  const int l = socket(AF_INET, SOCK_STREAM, 0);
  const int one = 1;
  setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(atoi(argv[2]));
  if (bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) || listen(l, 1024)) return Fail("listen");
  sockaddr_in s = a;
  s.sin_port = htons(atoi(argv[3]));
  struct sigaction sa {};
  sa.sa_handler = OnSignal;  // no SA_RESTART: accept() returns on SIGTERM
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  for (unsigned i = 0; !stop && i < 1024; ++i) {
    const int peer = accept(l, nullptr, nullptr);
    if (peer < 0) break;
    const int main = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(main, reinterpret_cast<sockaddr*>(&s), sizeof s)) return Fail("connect sink");
    setsockopt(main, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    uint64_t cookie = 0;
    socklen_t len = sizeof cookie;
    getsockopt(peer, SOL_SOCKET, SO_COOKIE, &cookie, &len);
    // The route first: the verdict may run as soon as the peer is in its map.
    const uint64_t main_fd = main, peer_fd = peer;  // the maps' values are 8 bytes
    if (bpf_map_update_elem(mains, &i, &main_fd, BPF_ANY) ||
        bpf_map_update_elem(route, &cookie, &i, BPF_ANY) ||
        bpf_map_update_elem(peers, &i, &peer_fd, BPF_ANY))
      return Fail("map update");
  }
  while (!stop) pause();
  uint64_t total[3] = {0, 0, 0};
  const int cpus = libbpf_num_possible_cpus();
  uint64_t* v = static_cast<uint64_t*>(calloc(cpus, sizeof(uint64_t)));
  for (uint32_t k = 0; k < 3; ++k) {
    if (bpf_map_lookup_elem(counts, &k, v) == 0)
      for (int c = 0; c < cpus; ++c) total[k] += v[c];
  }
  fprintf(stderr, "sockmap_fwd: frames=%lu bytes=%lu dropped=%lu\n", total[0], total[1], total[2]);
  return 0;
}
