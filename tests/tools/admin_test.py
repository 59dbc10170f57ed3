#!/usr/bin/python3
"""The admin endpoint scraped as an operator's tools do (ctest "admin"): a real HTTP client
(urllib), Prometheus' own text parser (python3-prometheus-client), and values checked
against traffic this test sends and counts itself.

Usage: tests/tools/admin_test.py BUILD_DIR
"""
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

NETWORK_ID = 1564141146
BUILD = os.path.abspath(sys.argv[1])
BIN = os.path.join(BUILD, "bin")
procs = []


def fail(message):
    print("admin: FAIL: " + message, file=sys.stderr)
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, what, seconds=10):
    deadline = time.time() + seconds
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    fail("timed out waiting for " + what)


def get(port, path):
    """(status, content type, body) of GET path, through urllib (a real HTTP client)."""
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as r:
            return r.status, r.headers.get("Content-Type"), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read().decode()


def metrics(port):
    """{name: {labels tuple: value}}, parsed by prometheus_client (which rejects bad text)."""
    status, ctype, body = get(port, "/metrics")
    check(status == 200, "/metrics answered %d" % status)
    check(ctype.startswith("text/plain; version=0.0.4"), "/metrics content type " + ctype)
    out = {}
    for family in text_string_to_metric_families(body):
        check(family.documentation, family.name + " has no HELP")
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            out.setdefault(sample.name, {})[labels] = sample.value
    return out


def total(m, name):
    check(name in m, name + " missing from /metrics")
    return sum(m[name].values())


def frame(payload):
    return struct.pack(">IHI", NETWORK_ID, 0, len(payload)) + payload


def main():
    work = tempfile.mkdtemp(prefix="relay-admin-")
    relay_port = free_port()
    log_path = os.path.join(work, "relay.log")
    # A free range of 8 ports: probe a base whose 8 ports are all free.
    base = None
    for _ in range(200):
        b = free_port()
        if b + 8 > 65535:
            continue
        try:
            socks = []
            for p in range(b, b + 8):
                s = socket.socket()
                s.bind(("127.0.0.1", p))
                socks.append(s)
            base = b
        except OSError:
            pass
        for s in socks:
            s.close()
        if base:
            break
    check(base, "no free port range")
    log = open(log_path, "w")
    relay = subprocess.Popen(
        [os.path.join(BIN, "relay-server"), "--listen=127.0.0.1:%d" % relay_port,
         "--port_range=%d-%d" % (base, base + 7), "--threads=2", "--admin_listen=127.0.0.1:0"],
        stderr=log)
    procs.append(relay)

    def admin_port():
        with open(log_path) as f:
            for line in f:
                if "admin endpoint on http://127.0.0.1:" in line:
                    return int(line.split("http://127.0.0.1:")[1].split("/")[0])
        return None

    port = wait_for(admin_port, "the admin endpoint's log line")

    # /healthz; unknown paths and methods are refused.
    check(get(port, "/healthz")[:3:2] == (200, "ok\n"), "/healthz is not ok")
    check(get(port, "/nope")[0] == 404, "/nope is not 404")
    req = urllib.request.Request("http://127.0.0.1:%d/metrics" % port, data=b"x", method="POST")
    try:
        urllib.request.urlopen(req, timeout=5)
        fail("POST was accepted")
    except urllib.error.HTTPError as e:
        check(e.code == 405, "POST answered %d" % e.code)
    check(get(port, "/sessions?limit=x")[0] == 400, "a bad limit is not 400")
    check(get(port, "/sessions?after=0.x")[0] == 400, "a bad cursor is not 400")

    m0 = metrics(port)
    check(total(m0, "relay_sessions") == 0, "sessions before any node")
    check(total(m0, "relay_up") == 1, "relay_up")
    check(total(m0, "relay_ports_free") == 8, "ports_free")

    # A node (relay-node) and one peer sending 100 frames of 500 bytes.
    node = subprocess.Popen([os.path.join(BIN, "relay-node"), "--relay=127.0.0.1:%d" % relay_port],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    procs.append(node)
    address = node.stdout.readline().strip()
    check(address.startswith("127.0.0.1:"), "relay-node printed no address: %r" % address)
    host, proxy_port = address.rsplit(":", 1)
    peer = socket.create_connection((host, int(proxy_port)), timeout=5)
    frames, payload = 100, b"p" * 500
    for _ in range(frames):
        peer.sendall(frame(payload))
    wait_for(lambda: total(metrics(port), "relay_frames_forwarded_total") >= frames,
             "100 frames forwarded")
    m1 = metrics(port)
    check(total(m1, "relay_frames_forwarded_total") == frames, "frames_forwarded")
    wait_for(lambda: total(metrics(port), "relay_bytes_forwarded_total") == frames * 510,
             "bytes_forwarded == 100 x 510")
    m1 = metrics(port)
    check(total(m1, "relay_sessions") == 1, "one live session")
    check(total(m1, "relay_main_connections") == 1, "one main connection")
    check(total(m1, "relay_peer_connections") == 1, "one peer connection")
    check(total(m1, "relay_ports_free") == 7, "ports_free after one lease")
    check(total(m1, "relay_main_accepted_total") - total(m1, "relay_main_closed_total") == 1,
          "main_accepted - main_closed == main connections open")
    check(total(m1, "relay_sessions_started_total") - total(m1, "relay_sessions_ended_total") == 1,
          "sessions_started - sessions_ended == live sessions")
    check(total(m1, "relay_proxy_accepted_total") - total(m1, "relay_proxy_closed_total") == 1,
          "proxy_accepted - proxy_closed == peer connections open")
    check(total(m1, "relay_reactor_loop_seconds_count") > 0, "loop histogram counts turns")
    check(len(m1["relay_reactor_loop_seconds_bucket"]) == 2 * 13, "13 buckets x 2 reactors")

    status, ctype, body = get(port, "/sessions")
    check(status == 200 and ctype == "application/json", "/sessions")
    sessions = json.loads(body)
    check(sessions["sessions_total"] == 1 and len(sessions["sessions"]) == 1, body)
    s = sessions["sessions"][0]
    check(s["proxy_address"] == address, "proxy_address " + s["proxy_address"])
    check(s["peers"] == 1, "peers")
    check(s["frames_to_node"] == frames and s["bytes_to_node"] == frames * 510, body)
    check(s["frames_from_node"] >= 1 and s["bytes_from_node"] > 0, "its ProxyRequest counted")
    check(s["node"].startswith("127.0.0.1:") and len(s["id"]) == 8, body)
    check(s["age_s"] >= 0 and s["idle_s"] >= 0, body)
    check(json.loads(get(port, "/sessions?limit=0")[2])["sessions"] == [], "limit=0")

    # The peer leaves, then the node: the gauges follow, counters only grow.
    peer.close()
    wait_for(lambda: total(metrics(port), "relay_peer_connections") == 0, "peer gone")
    node.terminate()
    node.wait(timeout=10)
    wait_for(lambda: total(metrics(port), "relay_sessions") == 0, "session ended")
    m2 = metrics(port)
    check(total(m2, "relay_leases_remembered") == 1, "the lease is remembered")
    check(total(m2, "relay_main_accepted_total") == total(m2, "relay_main_closed_total"),
          "every accepted main connection closed")
    check(total(m2, "relay_sessions_started_total") == total(m2, "relay_sessions_ended_total"),
          "every session ended")
    check(total(m2, "relay_proxy_accepted_total") == total(m2, "relay_proxy_closed_total"),
          "every peer closed")
    check(total(m2, "relay_frames_forwarded_total") == frames, "counters do not move back")

    # Counters move while traffic flows (not only when connections close): relay-load's
    # own count of frames received equals what the relay says it forwarded.
    load = subprocess.run(
        [os.path.join(BIN, "relay-load"), "--relay=127.0.0.1:%d" % relay_port, "--senders=2",
         "--frame_bytes=1000", "--seconds=1", "--progress=false", "--json"],
        capture_output=True, text=True, timeout=60)
    check(load.returncode == 0, "relay-load: " + load.stderr)
    result = json.loads(load.stdout)
    m3 = metrics(port)
    check(total(m3, "relay_frames_forwarded_total") - frames == result["frames_received"],
          "frames_forwarded %d vs relay-load %d" % (total(m3, "relay_frames_forwarded_total") -
                                                     frames, result["frames_received"]))
    check(total(m3, "relay_admin_requests_total") > 10, "admin requests counted")
    check(total(m3, "relay_admin_errors_total") == 4, "404, 405 and two 400s counted as errors")

    relay.terminate()
    check(relay.wait(timeout=30) == 0, "relay exit status")
    print("admin: ok (%d frames checked, %d from relay-load)" % (frames, result["frames_received"]))


if __name__ == "__main__":
    try:
        main()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
