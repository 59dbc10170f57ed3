#!/usr/bin/env python3
"""Where the relay's thread spends its samples, by kernel path (bench/perf.sh calls it).

  perf script -i perf.data -F ip,sym | perf_split.py

Reads the call stacks of `perf script` (leaf first, a blank line between samples) and
prints the share of all samples under each path. The one that matters on loopback is the
transmit inside a read (recvmsg() or splice()): a read opens the receive window, so the
relay's thread sends an ACK, and loopback delivers it at once, in that same thread, to
the sender's socket, which then transmits the data it had queued; loopback queues those
segments into the relay's socket. On a real network everything after the ACK runs on the
sender's host; here it is billed to the relay. Standard library only.
"""

import sys


def stacks(lines):
    cur = []
    for line in lines:
        s = line.strip()
        if not s:
            if cur:
                yield cur
                cur = []
            continue
        parts = s.split(None, 1)
        cur.append(parts[1] if len(parts) > 1 else parts[0])
    if cur:
        yield cur


READS = ("tcp_recvmsg", "tcp_splice_read")  # recvmsg(), and splice() from a socket


def under(stack, outers, inner):
    """True if `inner` runs inside one of `outers` (closer to the leaf) in this stack."""
    for outer in outers:
        if outer in stack and inner in stack[:stack.index(outer)]:
            return True
    return False


def main():
    all_stacks = list(stacks(sys.stdin))
    n = len(all_stacks)
    if n == 0:
        print("perf_split: no samples")
        return 1
    rows = [
        ("reading from peers (recvmsg, splice into pipes)",
         lambda s: any(r in s for r in READS)),
        ("  its transmit: ACKs, and on loopback the senders' work they trigger",
         lambda s: under(s, READS, "__tcp_transmit_skb")),
        ("    of which the senders' own data transmit (tcp_write_xmit)",
         lambda s: under(s, READS, "tcp_write_xmit")),
        ("  its copy into the relay's buffers (recvmsg)",
         lambda s: under(s, READS, "skb_copy_datagram_iter")),
        ("writing to nodes (sendmsg, splice from pipes)", lambda s: "tcp_sendmsg" in s),
        ("epoll_wait", lambda s: "do_epoll_wait" in s),
        ("outside system calls (relay-server's own code, interrupts)",
         lambda s: "entry_SYSCALL_64_after_hwframe" not in s),
    ]
    print("share of %d samples" % n)
    for name, pred in rows:
        print("%5.1f %%  %s" % (100.0 * sum(1 for s in all_stacks if pred(s)) / n, name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
