// The kernel half of the sockmap experiment (issue 33): a stream parser that cuts a
// sender's bytes into whole relay frames (10-byte header: network id u32 BE, compress
// info u16 BE, length u32 BE), and a verdict that checks the network id and redirects the
// whole frame to the egress of the sender's partner socket (the "main connection").
// VERDICT_ONLY builds the variant without a parser: every skb is redirected as it comes
// (no frame boundaries, no check): the speed limit of the redirect itself.
#include <linux/bpf.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define NETWORK_ID 1564141146u
#define HEADER 10
#define MAX_FRAME (16u << 20)

struct {
  __uint(type, BPF_MAP_TYPE_SOCKMAP);
  __uint(max_entries, 1024);
  __type(key, __u32);
  __type(value, __u64);
} peers SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_SOCKMAP);
  __uint(max_entries, 1024);
  __type(key, __u32);
  __type(value, __u64);
} mains SEC(".maps");

// socket cookie of a peer -> index of its main in `mains`
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1024);
  __type(key, __u64);
  __type(value, __u32);
} route SEC(".maps");

// 0: frames redirected, 1: bytes, 2: dropped (bad network id or no route)
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 3);
  __type(key, __u32);
  __type(value, __u64);
} counts SEC(".maps");

static __always_inline void count(__u32 k, __u64 v) {
  __u64* c = bpf_map_lookup_elem(&counts, &k);
  if (c) *c += v;
}

#ifndef VERDICT_ONLY
SEC("sk_skb/stream_parser")
int parse_frame(struct __sk_buff* skb) {
  __u8 h[HEADER];
  if (bpf_skb_load_bytes(skb, 0, h, HEADER) < 0) return 0;  // header incomplete: wait
  __u32 id = ((__u32)h[0] << 24) | ((__u32)h[1] << 16) | ((__u32)h[2] << 8) | h[3];
  __u32 len = ((__u32)h[6] << 24) | ((__u32)h[7] << 16) | ((__u32)h[8] << 8) | h[9];
  if (id != NETWORK_ID || len == 0 || len > MAX_FRAME) {
    count(2, 1);
    return -74;  // -EBADMSG: strparser aborts the stream, the socket gets an error
  }
  return HEADER + len;
}
#endif

SEC("sk_skb/stream_verdict")
int route_frame(struct __sk_buff* skb) {
  __u64 cookie = bpf_get_socket_cookie(skb);
  __u32* main = bpf_map_lookup_elem(&route, &cookie);
  if (!main) {
    count(2, 1);
    return SK_DROP;
  }
  count(0, 1);
  count(1, skb->len);
  return bpf_sk_redirect_map(skb, &mains, *main, 0);
}

char LICENSE[] SEC("license") = "GPL";
