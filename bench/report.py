#!/usr/bin/env python3
"""Turns one `make bench` run into what a reader sees (bench/run_bench.sh calls it).

  report.py --data DIR --out DIR
      DIR/runs.jsonl (one line per measurement), run.json, micro.txt ->
      generated.md (the tables), values.json (every number the narrative may quote),
      throughput.png (the charts, drawn by gnuplot when it is there).
  report.py --data DIR --render TEMPLATE [--write FILE | --check FILE]
      Fills the {{name}} placeholders of TEMPLATE (bench/BENCHMARKS.md.in) from the run in
      DIR and writes FILE, or fails if FILE differs from what the run gives (the test that
      docs/BENCHMARKS.md says what its data says). An unknown name is an error.

Every row was measured REPEAT times, each on a fresh forwarder; a cell shows the median
and, where it matters, the min-max spread. Standard library only.
"""

import argparse
import collections
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

PATHS = ["relay", "relay-splice", "relay-copy", "relay-verified", "haproxy", "direct"]
LABELS = {
    "relay": "relay (default)",
    "relay-splice": "relay, --forward=splice",
    "relay-copy": "relay, --forward=copy",
    "relay-verified": "relay (signatures + admin scraped)",
    "haproxy": "haproxy, tcp, forced splice",
    "direct": "direct: the ceiling (N\u2191 = off scale)",
}
COLOURS = {"relay": "#1f4fb4", "relay-splice": "#7fb2e5", "relay-copy": "#6cc26c",
           "haproxy": "#d62728", "direct": "#777777"}
FRAME_NAMES = {64: "64 B", 1024: "1 KiB", 16384: "16 KiB", 65536: "64 KiB", 1048576: "1 MiB"}


def frame_name(b):
    return FRAME_NAMES.get(b, "%d B" % b)


class Stat:
    """Median, min and max of one field over the repeats of a row (None if unmeasured)."""

    def __init__(self, values):
        v = [x for x in values if x is not None]
        self.n = len(v)
        self.med = statistics.median(v) if v else None
        self.lo = min(v) if v else None
        self.hi = max(v) if v else None


class Row:
    def __init__(self, key):
        self.key = key  # (section, name, nodes, senders, frame_bytes)
        self.runs = []
        self.failed = []

    def stat(self, field):
        return Stat([r.get(field) for r in self.runs])

    def total(self, field):
        return sum(int(r.get(field) or 0) for r in self.runs)


def load(data):
    rows = {}
    order = []
    with open(os.path.join(data, "runs.jsonl")) as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            if r.get("failed"):
                args = r.get("args", "")

                def arg(name, default):
                    m = re.search(r"--%s=(\d+)" % name, args)
                    return int(m.group(1)) if m else default

                key = (r["section"], r["name"], arg("nodes", 1), arg("senders", 1),
                       arg("frame_bytes", 65536))
            else:
                key = (r["section"], r["name"], r["nodes"], r["senders"], r["frame_bytes"])
            if key not in rows:
                rows[key] = Row(key)
                order.append(key)
            (rows[key].failed if r.get("failed") else rows[key].runs).append(r)
    with open(os.path.join(data, "run.json")) as f:
        meta = json.load(f)
    micro = ""
    if os.path.exists(os.path.join(data, "micro.txt")):
        with open(os.path.join(data, "micro.txt")) as f:
            micro = f.read()
    return rows, order, meta, micro


def fmt(x, digits=2):
    return "-" if x is None else "%.*f" % (digits, x)


def cell(s, digits=2):
    """median (min-max)"""
    if s.med is None:
        return "-"
    return "%.*f (%.*f-%.*f)" % (digits, s.med, digits, s.lo, digits, s.hi)


def minus(a, b):
    """a - b, or None when either is missing."""
    return None if a is None or b is None else a - b


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


class Report:
    def __init__(self, data):
        self.rows, self.order, self.meta, self.micro = load(data)
        # The relay as users run it: "relay" (its defaults); older runs had relay-splice.
        self.default = "relay" if any(k[1] == "relay" for k in self.rows) else "relay-splice"
        self.values = {}
        self.compute()

    def row(self, section, name, nodes, senders, frame):
        return self.rows.get((section, name, nodes, senders, frame))

    def med(self, section, name, nodes, senders, frame, field):
        r = self.row(section, name, nodes, senders, frame)
        return r.stat(field).med if r else None

    def put(self, name, value, digits=2):
        if isinstance(value, float) and digits == 0 and abs(value) >= 10000:
            self.values[name] = "{:,.0f}".format(value)  # 1,296,314 frames/s
        else:
            self.values[name] = fmt(value, digits) if isinstance(value, float) else str(value)

    def compute(self):
        m = self.meta
        self.put("date", m["date"])
        self.put("nproc", m["nproc"])
        self.put("kernel", m["kernel"])
        self.put("cpu", m.get("cpu") or "not recorded")
        self.put("commit", m["commit"])
        self.put("repeat", m["repeat"])
        self.put("latency_repeat", m.get("latency_repeat", m["repeat"]))
        self.put("run_seconds", m["run_seconds"])
        self.put("headline_seconds", m["headline_seconds"])
        # Traffic before each measurement, not counted (runs before 2026-11-27 had none).
        self.put("warmup", m.get("warmup", "0s"))
        self.put("haproxy_version", m.get("haproxy", "?"))
        # The loopback's TCP congestion control (runs before 2026-11-27T12:00Z: the host's,
        # not recorded) and the host's own (bench/loopback_ns.sh).
        self.put("tcp_congestion", m.get("tcp_congestion", "the host's (not recorded)"))
        self.put("host_tcp_congestion", m.get("host_tcp_congestion", "not recorded"))
        # Every headline and latency cell: h.<shape>.<path>.<field>[_lo|_hi].
        for (section, name, nodes, senders, frame), r in self.rows.items():
            if section == "headline":
                prefix = "h.%dx%d.%s" % (nodes, senders, name)
            elif section == "lowmark":
                prefix = "lm.%dx%d.%s" % (nodes, senders, name)
            elif section == "latency":
                prefix = "lat.%s" % name
            elif section == "matrix":
                prefix = "m.%dx%d.%d.%s" % (nodes, senders, frame, name)
            elif section in ("pairs", "hostcc"):
                prefix = "%s.%s" % (section, name)
            elif section in ("coldstart", "confirm"):
                continue  # sections of runs made while the relay chose copy or splice
            else:
                prefix = section
            for field, digits in [("gbit_per_s", 2), ("relay_cpu_s_per_gb", 2),
                                  ("load_cpu_s_per_gb", 2), ("host_cpu_s_per_gb", 2),
                                  ("frames_per_s", 0), ("p50_us", 0), ("p99_us", 0),
                                  ("p999_us", 0), ("max_us", 0), ("relay_rss_peak_kib", 0)]:
                s = r.stat(field)
                short = {"gbit_per_s": "gbit", "relay_cpu_s_per_gb": "cpu",
                         "load_cpu_s_per_gb": "load", "host_cpu_s_per_gb": "host",
                         "frames_per_s": "fps", "relay_rss_peak_kib": "rss"}.get(
                             field, field.replace("_us", ""))
                if s.med is not None:
                    self.put("%s.%s" % (prefix, short), s.med, digits)
                    self.put("%s.%s_lo" % (prefix, short), s.lo, digits)
                    self.put("%s.%s_hi" % (prefix, short), s.hi, digits)
        scale = self.row("scale", "scale", 0, 1, 65536)
        if scale and scale.runs:
            s = scale.runs[0]
            self.put("scale.idle", s.get("idle_nodes"))
            self.put("scale.setup_s", s.get("idle_setup_s") or 0.0, 2)
            self.put("scale.kib_per_session", s.get("relay_rss_per_idle_kib") or 0.0, 2)
        self.targets()

    def targets(self):
        """The targets of issue 12 and the older ones, each with its status."""
        t = []
        R = self.default
        # 1. One stream of 64 KiB frames: relay >= 1.2x haproxy at <= its CPU per GB.
        rg = self.med("headline", R, 1, 1, 65536, "gbit_per_s")
        hg = self.med("headline", "haproxy", 1, 1, 65536, "gbit_per_s")
        rc = self.med("headline", R, 1, 1, 65536, "relay_cpu_s_per_gb")
        hc = self.med("headline", "haproxy", 1, 1, 65536, "relay_cpu_s_per_gb")
        q = ratio(rg, hg)
        self.put("t.haproxy_ratio", q)
        self.put("t.haproxy_cpu_ratio", ratio(rc, hc))
        ok = q is not None and q >= 1.2 and rc is not None and hc is not None and rc <= hc
        measured = "%s vs %s Gbit/s (x%s), %s vs %s CPU s/GB" % (fmt(rg), fmt(hg), fmt(q),
                                                                  fmt(rc), fmt(hc))
        # Judged by the pairs where the run has them (section "pairs", bench/run_bench.sh):
        # the relay and haproxy one right after the other, the median of the pairs' ratios.
        for section in ("pairs", "hostcc"):
            pairs = self.haproxy_pairs(section)
            prefix = "t.%s_" % section
            if pairs is None:
                for k in ("n", "gbit_ratio", "gbit_lo", "gbit_hi", "cpu_ratio", "cpu_lo",
                          "cpu_hi", "wins", "host_ratio"):
                    self.put(prefix + k, "-")
                continue
            g, c = pairs
            self.put(prefix + "n", len(g))
            self.put(prefix + "gbit_ratio", statistics.median(g))
            self.put(prefix + "gbit_lo", g[0])
            self.put(prefix + "gbit_hi", g[-1])
            self.put(prefix + "cpu_ratio", statistics.median(c))
            self.put(prefix + "cpu_lo", c[0])
            self.put(prefix + "cpu_hi", c[-1])
            self.put(prefix + "wins", sum(1 for x in g if x >= 1.0))
            # The whole host's CPU per GB, relay's run over haproxy's, where measured.
            host = sorted(a["host_cpu_s_per_gb"] / b["host_cpu_s_per_gb"]
                          for _, a, b in self.haproxy_pair_runs(section)
                          if a.get("host_cpu_s_per_gb") and b.get("host_cpu_s_per_gb"))
            self.put(prefix + "host_ratio", statistics.median(host) if host else "-")
            text = ("over %d pairs, the median ratio: x%.2f the throughput (x%.2f-x%.2f) at "
                    "x%.2f the CPU per GB (x%.2f-x%.2f)" %
                    (len(g), statistics.median(g), g[0], g[-1], statistics.median(c), c[0],
                     c[-1]))
            if section == "pairs":
                ok = statistics.median(g) >= 1.2 and statistics.median(c) <= 1.0
                measured = "%s; the headline's medians: %s" % (text, measured)
            else:
                # Shown beside the verdict, which is judged under the run's own congestion
                # control (bench/loopback_ns.sh).
                measured += "; under the host's congestion control (%s), %s" % (
                    self.meta.get("host_tcp_congestion", "?"), text)
        t.append(("one stream of 64 KiB frames: relay >= 1.2x haproxy, CPU/GB <= haproxy's",
                  ok, measured))
        # 1b. Small frames against haproxy (issue 33), from the pairs of section "small":
        # at 1 KiB CPU/GB <= haproxy's, at 64 B <= x1.2, throughput >= haproxy's, on one
        # sender and on 16 into one node.
        for frame, cpu_max in ((1024, 1.0), (64, 1.2)):
            parts, all_ok = [], True
            for senders in (1, 16):
                pairs = self.haproxy_pairs("small", senders, frame)
                key = "t.small_%d_%d_" % (frame, senders)
                if pairs is None:
                    self.put(key + "gbit_ratio", "-")
                    self.put(key + "cpu_ratio", "-")
                    all_ok = False
                    continue
                g, c = pairs
                gm, cm = statistics.median(g), statistics.median(c)
                self.put(key + "gbit_ratio", gm)
                self.put(key + "cpu_ratio", cm)
                all_ok = all_ok and gm >= 1.0 and cm <= cpu_max
                runs = self.haproxy_pair_runs("small", senders, frame)
                rc = Stat([a.get("relay_cpu_s_per_gb") for _, a, _ in runs]).med
                hc = Stat([b.get("relay_cpu_s_per_gb") for _, _, b in runs]).med
                parts.append("1 x %d: CPU/GB x%.2f (x%.2f-x%.2f; %s vs %s s/GB), throughput "
                             "x%.2f (x%.2f-x%.2f)" % (senders, cm, c[0], c[-1], fmt(rc),
                                                      fmt(hc), gm, g[0], g[-1]))
            t.append(("%s frames against haproxy: CPU/GB <= x%.1f haproxy's, throughput >= "
                      "haproxy's (1 x 1 and 1 x 16)" % (frame_name(frame), cpu_max),
                      all_ok and bool(parts),
                      "; ".join(parts) + (" (median of pairs)" if parts else
                                          "not measured (section small)")))
        # 2. Sixteen merged senders >= one sender.
        g1 = rg
        g16 = self.med("headline", R, 1, 16, 65536, "gbit_per_s")
        q = ratio(g16, g1)
        self.put("t.merge_ratio", q)
        # The same with low-mark senders (section "lowmark"): on loopback the default
        # senders' transmit work runs in the forwarder's thread once it keeps their windows
        # full. Shown beside the target, which is judged on the default senders.
        l1 = self.med("lowmark", R, 1, 1, 65536, "gbit_per_s")
        l16 = self.med("lowmark", R, 1, 16, 65536, "gbit_per_s")
        lq = ratio(l16, l1)
        self.put("t.merge_ratio_lowmark", lq)
        lowmark = ""
        if lq is not None:
            lowmark = ("; with senders that keep their transmit in their own threads "
                       "(--sender_notsent_lowat=32768): %s vs %s Gbit/s (x%s)" %
                       (fmt(l16), fmt(l1), fmt(lq)))
        self.put("t.merge_status", "met" if q is not None and q >= 1.0 else "not met")
        t.append(("16 senders merged into one node >= 1 sender (64 KiB frames)",
                  q is not None and q >= 1.0,
                  "%s vs %s Gbit/s (x%s)%s" % (fmt(g16), fmt(g1), fmt(q), lowmark)))
        # 3. p99 added at 10k frames/s of 1 KiB, default threads.
        rp = self.med("latency", R, 1, 1, 1024, "p99_us")
        dp = self.med("latency", "direct", 1, 1, 1024, "p99_us")
        added = minus(rp, dp)
        self.put("t.p99_added", added, 0)
        self.put("t.p99_status", "met" if added is not None and added < 100 else "not met")
        # haproxy through the same hop, in the same run: what forwarding at all adds here.
        hp = self.med("latency", "haproxy", 1, 1, 1024, "p99_us")
        h_added = minus(hp, dp)
        self.put("t.p99_haproxy_added", h_added, 0)
        d50 = self.med("latency", "direct", 1, 1, 1024, "p50_us")
        self.put("t.p50_added", minus(self.med("latency", R, 1, 1, 1024, "p50_us"), d50), 0)
        self.put("t.p50_haproxy_added",
                 minus(self.med("latency", "haproxy", 1, 1, 1024, "p50_us"), d50), 0)
        r = self.row("latency", R, 1, 1, 1024)
        runs_ok = 0
        if r:
            d = self.row("latency", "direct", 1, 1, 1024)
            dmed = d.stat("p99_us").med if d else None
            runs_ok = sum(1 for x in r.runs
                          if dmed is not None and x.get("p99_us") is not None
                          and x["p99_us"] - dmed < 100)
            self.put("t.p99_runs_ok", "%d of %d" % (runs_ok, len(r.runs)))
        t.append(("p99 added at 10,000 frames/s of 1 KiB < 100 us (default threads)",
                  added is not None and added < 100,
                  "relay %s us vs direct %s us: +%s us (median of %s runs; %s runs under +100)%s" %
                  (fmt(rp, 0), fmt(dp, 0), fmt(added, 0), r.stat("p99_us").n if r else 0,
                   self.values.get("t.p99_runs_ok", "0"),
                   "" if h_added is None else
                   "; haproxy through the same hop: %s us, +%s us" % (fmt(hp, 0),
                                                                      fmt(h_added, 0)))))
        # 4. Copy against splice, a record (the default splices): the worst row of
        # --forward=splice over --forward=copy.
        splice_worst = None
        for (section, name, nodes, senders, frame), row in self.rows.items():
            if name != "relay-splice" or section not in ("headline", "matrix"):
                continue
            q = ratio(row.stat("gbit_per_s").med,
                      self.med(section, "relay-copy", nodes, senders, frame, "gbit_per_s"))
            if q is not None and (splice_worst is None or q < splice_worst[0]):
                splice_worst = (q, "%s %d x %d, %s" % (section, nodes, senders, frame_name(frame)))
        self.put("t.splice_copy_worst", splice_worst[0] if splice_worst else None)
        self.put("t.splice_copy_worst_row", splice_worst[1] if splice_worst else "-")
        # 5. >= 1 million frames/s of 1 KiB through the relay.
        f = self.med("matrix", R, 1, 1, 1024, "frames_per_s")
        t.append((">= 1 million 1 KiB frames/s through the relay (1 x 1)",
                  f is not None and f >= 1e6, "%s M frames/s" % fmt(f / 1e6 if f else None)))
        # 6. Idle sessions cost < 8 KiB of relay RSS each.
        k = self.values.get("scale.kib_per_session")
        t.append(("an idle session < 8 KiB of relay RSS", k is not None and float(k) < 8,
                  "%s KiB per session (%s sessions)" % (k, self.values.get("scale.idle"))))
        # 7. What signatures + a scraped admin endpoint cost (a record, not a target).
        for senders in (1, 16):
            v = self.med("headline", "relay-verified", 1, senders, 65536, "gbit_per_s")
            s = self.med("headline", "relay", 1, senders, 65536, "gbit_per_s")
            self.put("t.verified_ratio_%d" % senders, ratio(v, s))
        self.target_rows = t

    def haproxy_pair_runs(self, section="pairs", senders=1, frame=65536):
        """[(rep, relay's run, haproxy's run)] of the pairs on one node of 64 KiB frames
        (section "pairs", or "hostcc": the same under the host's congestion control; or
        "small", of `senders` and `frame`) in which both moved bytes, in the order they
        ran."""
        mine = self.row(section, self.default, 1, senders, frame)
        theirs = self.row(section, "haproxy", 1, senders, frame)
        if mine is None or theirs is None:
            return []
        h = {r["rep"]: r for r in theirs.runs}
        return sorted((r["rep"], r, h[r["rep"]]) for r in mine.runs
                      if r.get("gbit_per_s") and h.get(r["rep"], {}).get("gbit_per_s"))

    def haproxy_pairs(self, section="pairs", senders=1, frame=65536):
        """(sorted relay/haproxy throughput ratios, sorted CPU-per-GB ratios) of those
        pairs, or None if the run has none."""
        runs = self.haproxy_pair_runs(section, senders, frame)
        g = sorted(a["gbit_per_s"] / b["gbit_per_s"] for _, a, b in runs)
        c = sorted(a["relay_cpu_s_per_gb"] / b["relay_cpu_s_per_gb"] for _, a, b in runs
                   if a.get("relay_cpu_s_per_gb") and b.get("relay_cpu_s_per_gb"))
        return (g, c) if g and c else None

    def small_table(self, L):
        """Section "small": the relay and haproxy in pairs on 1 KiB and 64 B frames."""
        shapes = [(f, n) for f in (1024, 64) for n in (1, 16)
                  if self.haproxy_pairs("small", n, f) is not None]
        if not shapes:
            return
        L.append("### Small frames against haproxy, in pairs (%s s per run)" %
                 self.meta["headline_seconds"])
        L.append("")
        L.append("Each row: %s pairs of the default relay and haproxy, one right after the "
                 "other, each on a fresh forwarder, the order alternating; the ratios are the "
                 "median of the pairs' (relay / haproxy), with their min-max." %
                 self.meta.get("pairs_small", "?"))
        L.append("")
        L.append("| frames | nodes x senders | relay Gbit/s | haproxy Gbit/s | ratio | "
                 "relay CPU s/GB | haproxy CPU s/GB | ratio | host CPU s/GB, relay's / "
                 "haproxy's |")
        L.append("|---" * 9 + "|")
        for frame, senders in shapes:
            runs = self.haproxy_pair_runs("small", senders, frame)
            g, c = self.haproxy_pairs("small", senders, frame)

            def med(side, field):
                return fmt(Stat([run[side].get(field) for run in runs]).med)
            L.append("| %s | 1 x %d | %s | %s | x%.2f (x%.2f-x%.2f) | %s | %s | x%.2f "
                     "(x%.2f-x%.2f) | %s / %s |" % (
                         frame_name(frame), senders, med(1, "gbit_per_s"),
                         med(2, "gbit_per_s"), statistics.median(g), g[0], g[-1],
                         med(1, "relay_cpu_s_per_gb"), med(2, "relay_cpu_s_per_gb"),
                         statistics.median(c), c[0], c[-1], med(1, "host_cpu_s_per_gb"),
                         med(2, "host_cpu_s_per_gb")))
        L.append("")

    def failures(self):
        out = []
        for key in self.order:
            r = self.rows[key]
            for f in r.failed:
                out.append("%s %s: %s" % (key[0], f.get("args", ""), f.get("error", "")))
        return out

    def integrity(self):
        """Frames cut, corrupted or lost in any measurement: must be none."""
        bad = []
        for key in self.order:
            r = self.rows[key]
            for field in ("bad_frames", "cut_frames", "frames_lost"):
                n = r.total(field)
                if n:
                    bad.append("%s %s %dx%d %s: %s %d" % (key[0], key[1], key[2], key[3],
                                                          frame_name(key[4]), field, n))
        return bad

    # --- generated.md ---
    def markdown(self):
        m = self.meta
        L = []
        if m.get("netns"):
            cc = ("Every row ran in a private network namespace whose loopback used the "
                  "congestion control %s (the host's: %s)." %
                  (m.get("tcp_congestion"), m.get("host_tcp_congestion")))
        elif m.get("tcp_congestion"):
            cc = ("Every row ran on the host's loopback, congestion control %s." %
                  m.get("tcp_congestion"))
        else:
            cc = "Every row ran on the host's loopback (its congestion control not recorded)."
        L.append("Generated by `make bench` at %s from commit %s: nproc %s, kernel %s, "
                 "haproxy %s. %s Each row ran %s times, each time on a fresh forwarder; a "
                 "cell is the median, with the min-max of the runs in parentheses. Within a "
                 "repeat, the paths of a row ran one right after another. %s" %
                 (m["date"], m["commit"], m["nproc"], m["kernel"], m.get("haproxy", "?"), cc,
                  m["repeat"],
                  "Each measurement began after %s of its traffic, not counted "
                  "(`relay-load --warmup`), except the cold start's." % m["warmup"]
                  if m.get("warmup") else "Measurements began with the traffic (no warm-up)."))
        if m.get("same_relay"):
            L.append("")
            L.append("**SAME_RELAY=1**: each path's rows ran on one long-lived forwarder.")
        L.append("")
        L.append("### Targets")
        L.append("")
        L.append("| target | status | measured (medians) |")
        L.append("|---|---|---|")
        for name, ok, text in self.target_rows:
            L.append("| %s | %s | %s |" % (name, "**met**" if ok else "**not met**", text))
        L.append("")
        bad = self.integrity()
        L.append("Frames cut, corrupted or lost in any measurement: %s." %
                 ("; ".join(bad) if bad else "none"))
        fails = self.failures()
        if fails:
            L.append("")
            L.append("Measurements that failed (not in the medians): " + "; ".join(fails))
        L.append("")
        L.append("### Headline: 64 KiB frames, 1 node (%s s per run)" % m["headline_seconds"])
        L.append("")
        L.append("| path | nodes x senders | payload Gbit/s | CPU s/GB (forwarder) | "
                 "peak RSS KiB | runs |")
        L.append("|---|---|---|---|---|---|")
        for key in self.order:
            if key[0] != "headline":
                continue
            r = self.rows[key]
            cpu = "-" if key[1] == "direct" else cell(r.stat("relay_cpu_s_per_gb"))
            rss = "-" if key[1] == "direct" else fmt(r.stat("relay_rss_peak_kib").med, 0)
            L.append("| %s | %d x %d | %s | %s | %s | %d |" %
                     (key[1], key[2], key[3], cell(r.stat("gbit_per_s")), cpu, rss,
                      len(r.runs)))
        L.append("")
        for section in ("pairs", "hostcc"):
            pairs = self.haproxy_pairs(section)
            if pairs is None:
                continue
            if section == "pairs":
                L.append("### One stream against haproxy, in pairs (%s s per run)" %
                         m["headline_seconds"])
                L.append("")
                L.append("The one-stream target is judged here: the default relay and haproxy "
                         "one right after the other, each on a fresh forwarder (the relay "
                         "first in odd pairs, second in even ones); the median of the pairs' "
                         "ratios.")
            else:
                L.append("### The same pairs under the host's congestion control, %s (%s s "
                         "per run)" % (m.get("host_tcp_congestion"), m["headline_seconds"]))
                L.append("")
                L.append("The pairs above again, the namespace's loopback switched to the "
                         "host's own congestion control (\"Congestion control on loopback\"). "
                         "Not a target: what the comparison is on this host as it is.")
            L.append("")
            runs = self.haproxy_pair_runs(section)
            # Where the host's CPU went, in runs whose relay-load measured it.
            host = any(a.get("host_cpu_s_per_gb") for _, a, _ in runs)
            L.append("| pair | relay Gbit/s | haproxy Gbit/s | ratio | relay CPU s/GB | "
                     "haproxy CPU s/GB | ratio |" +
                     (" load CPU s/GB, relay's / haproxy's | host CPU s/GB, relay's / "
                      "haproxy's |" if host else ""))
            L.append("|---" * (9 if host else 7) + "|")

            def both(field, a, b):
                return " %s / %s |" % (fmt(a.get(field)), fmt(b.get(field))) if host else ""
            for rep, a, b in runs:
                L.append("| %d | %s | %s | x%s | %s | %s | x%s |%s%s" % (
                    rep, fmt(a.get("gbit_per_s")), fmt(b.get("gbit_per_s")),
                    fmt(ratio(a.get("gbit_per_s"), b.get("gbit_per_s"))),
                    fmt(a.get("relay_cpu_s_per_gb")), fmt(b.get("relay_cpu_s_per_gb")),
                    fmt(ratio(a.get("relay_cpu_s_per_gb"), b.get("relay_cpu_s_per_gb"))),
                    both("load_cpu_s_per_gb", a, b), both("host_cpu_s_per_gb", a, b)))
            g, c = pairs
            medians = [{f: Stat([run[side].get(f) for run in runs]).med
                        for f in ("load_cpu_s_per_gb", "host_cpu_s_per_gb")} for side in (1, 2)]
            L.append("| median | | | x%.2f | | | x%.2f |%s%s" % (
                statistics.median(g), statistics.median(c),
                both("load_cpu_s_per_gb", *medians), both("host_cpu_s_per_gb", *medians)))
            L.append("")
        self.small_table(L)
        lowmark = [key for key in self.order if key[0] == "lowmark"]
        if lowmark:
            L.append("### Headline again, senders with `--sender_notsent_lowat=32768` (%s s "
                     "per run)" % m["headline_seconds"])
            L.append("")
            L.append("Each sender socket with TCP_NOTSENT_LOWAT, so the senders transmit from "
                     "their own threads and not from inside the forwarder's reads (see "
                     "\"What the profile says\").")
            L.append("")
            L.append("| path | nodes x senders | payload Gbit/s | CPU s/GB (forwarder) | runs |")
            L.append("|---|---|---|---|---|")
            for key in lowmark:
                r = self.rows[key]
                L.append("| %s | %d x %d | %s | %s | %d |" %
                         (key[1], key[2], key[3], cell(r.stat("gbit_per_s")),
                          cell(r.stat("relay_cpu_s_per_gb")), len(r.runs)))
            L.append("")
        L.append("### Latency: 10,000 frames/s of 1 KiB, one-way (sender to node), "
                 "default threads (%s s per run)" % m["headline_seconds"])
        L.append("")
        L.append("| path | p50 us | p99 us | p99.9 us | max us | runs |")
        L.append("|---|---|---|---|---|---|")
        for key in self.order:
            if key[0] != "latency":
                continue
            r = self.rows[key]
            L.append("| %s | %s | %s | %s | %s | %d |" %
                     (key[1], cell(r.stat("p50_us"), 0), cell(r.stat("p99_us"), 0),
                      cell(r.stat("p999_us"), 0), cell(r.stat("max_us"), 0), len(r.runs)))
        L.append("")
        L.append("### Matrix: payload Gbit/s and forwarder CPU s/GB by frame size (%s s per "
                 "run)" % m["run_seconds"])
        shapes = []
        for key in self.order:
            if key[0] == "matrix" and (key[2], key[3]) not in shapes:
                shapes.append((key[2], key[3]))
        for nodes, senders in shapes:
            paths = [p for p in PATHS
                     if any(k[0] == "matrix" and k[1] == p and (k[2], k[3]) == (nodes, senders)
                            for k in self.rows)]
            fwd = [p for p in paths if p != "direct"]
            L.append("")
            L.append("**%d node%s x %d sender%s**" % (nodes, "s" if nodes > 1 else "", senders,
                                                       "s" if senders > 1 else ""))
            L.append("")
            L.append("| frame | " + " | ".join("%s Gbit/s" % p for p in paths) +
                     " | relay / best of splice, copy | " +
                     " | ".join("%s CPU s/GB" % p for p in fwd) + " |")
            L.append("|---" * (2 + len(paths) + len(fwd)) + "|")
            frames = sorted({k[4] for k in self.rows
                             if k[0] == "matrix" and (k[2], k[3]) == (nodes, senders)})
            for frame in frames:
                cells = []
                for p in paths:
                    r = self.row("matrix", p, nodes, senders, frame)
                    cells.append(cell(r.stat("gbit_per_s")) if r else "-")
                best = max(self.med("matrix", "relay-splice", nodes, senders, frame,
                                    "gbit_per_s") or 0,
                           self.med("matrix", "relay-copy", nodes, senders, frame,
                                    "gbit_per_s") or 0)
                q = ratio(self.med("matrix", "relay", nodes, senders, frame, "gbit_per_s"),
                          best or None)
                cpus = []
                for p in fwd:
                    r = self.row("matrix", p, nodes, senders, frame)
                    cpus.append(fmt(r.stat("relay_cpu_s_per_gb").med) if r else "-")
                L.append("| %s | %s | %s | %s |" % (frame_name(frame), " | ".join(cells), fmt(q),
                                                    " | ".join(cpus)))
        L.append("")
        self.host_cpu_table(L)
        L.append("Largest peak RSS of any matrix run, KiB: " + ", ".join(
            "%s %s" % (p, fmt(Stat([self.rows[k].stat("relay_rss_peak_kib").hi
                                    for k in self.rows if k[0] == "matrix" and k[1] == p]).hi, 0))
            for p in ("relay", "relay-splice", "relay-copy", "haproxy")) + ".")
        L.append("")
        L.append("### Scale: idle sessions")
        L.append("")
        if "scale.idle" in self.values:
            L.append("%s idle sessions set up in %s s; relay RSS %s KiB per session." %
                     (self.values["scale.idle"], self.values["scale.setup_s"],
                      self.values["scale.kib_per_session"]))
        else:
            L.append("(not measured)")
        L.append("")
        L.append("### Microbenchmarks")
        L.append("")
        L.append("```")
        L.append(self.micro.rstrip("\n"))
        L.append("```")
        L.append("")
        L.append("![throughput and CPU per GB against frame size, one panel per shape]"
                 "(bench/throughput.png)")
        return "\n".join(L) + "\n"

    def host_cpu_table(self, L):
        """The matrix's medians of the host's busy CPU per GB, and of the load generator's
        share of it, per path (runs made before relay-load measured them have none)."""
        keys = [k for k in self.order if k[0] == "matrix"]
        if not any(self.rows[k].stat("host_cpu_s_per_gb").med is not None for k in keys):
            return
        paths = [p for p in PATHS if any(k[1] == p for k in keys)]
        L.append("### Where the host's CPU goes (matrix medians)")
        L.append("")
        L.append("Every CPU of the host busy, per GB delivered (`host_cpu_s_per_gb`: "
                 "/proc/stat over the measured seconds: the forwarder, the load generator, "
                 "the kernel's softirq work), and in brackets the load generator's own share "
                 "(`load_cpu_s_per_gb`: its senders and nodes). The forwarder's own share is "
                 "in the tables above; on these two cores a path's throughput is about what "
                 "the host's CPU per GB allows.")
        L.append("")
        L.append("| nodes x senders, frame | " + " | ".join(paths) + " |")
        L.append("|---" * (1 + len(paths)) + "|")
        for (nodes, senders) in sorted({(k[2], k[3]) for k in keys}):
            for frame in sorted({k[4] for k in keys if (k[2], k[3]) == (nodes, senders)}):
                cells = []
                for p in paths:
                    r = self.row("matrix", p, nodes, senders, frame)
                    host = r.stat("host_cpu_s_per_gb").med if r else None
                    load = r.stat("load_cpu_s_per_gb").med if r else None
                    cells.append("-" if host is None else "%s (%s)" % (fmt(host), fmt(load)))
                L.append("| %d x %d, %s | %s |" % (nodes, senders, frame_name(frame),
                                                   " | ".join(cells)))
        L.append("")

    # --- the charts ---
    def chart(self, png):
        if shutil.which("gnuplot") is None:
            return False
        shapes = []
        for key in self.order:
            if key[0] == "matrix" and (key[2], key[3]) not in shapes:
                shapes.append((key[2], key[3]))
        if not shapes:
            return False
        tmp = tempfile.mkdtemp()
        styles = {"relay": 'lc rgb "%s" lw 3 pt 7 ps 0.9' % COLOURS["relay"],
                  "relay-splice": 'lc rgb "%s" lw 1.5 pt 6 ps 0.7' % COLOURS["relay-splice"],
                  "relay-copy": 'lc rgb "%s" lw 1.5 pt 4 ps 0.7' % COLOURS["relay-copy"],
                  "haproxy": 'lc rgb "%s" lw 2 pt 9 ps 0.9' % COLOURS["haproxy"],
                  "direct": 'lc rgb "%s" lw 1.5 dt 2' % COLOURS["direct"]}
        width = max(1100, 300 * len(shapes) + 100)
        script = ['set terminal pngcairo size %d,660 font "sans,10"' % width,
                  'set output "%s"' % png,
                  "set logscale x 2", "set grid", "set key off", "set clip two",
                  'set xtics ("64B" 64, "1K" 1024, "16K" 16384, "64K" 65536, "1M" 1048576)',
                  "set xrange [40:1600000]",
                  'set multiplot layout 2,%d title "relay throughput and CPU by frame size '
                  '(nproc %s, %s%s): median of %s runs, bars min-max" margins '
                  '0.06,0.99,0.08,0.84 spacing 0.06,0.12' %
                  (len(shapes), self.meta["nproc"], self.meta["date"][:10],
                   ", loopback " + self.meta["tcp_congestion"]
                   if self.meta.get("tcp_congestion") else "", self.meta["repeat"])]
        for metric, field, ylabel in (("gbit", "gbit_per_s", "payload Gbit/s"),
                                      ("cpu", "relay_cpu_s_per_gb", "forwarder CPU s per GB")):
            for i, (nodes, senders) in enumerate(shapes):
                plots = []
                fwd_pts = []  # (x, median, hi, path) of the forwarders: they set the scale
                direct_pts = []
                for p in ("relay-splice", "relay-copy", "haproxy", "relay", "direct"):
                    if metric == "cpu" and p == "direct":
                        continue
                    pts = []
                    for k, r in sorted(self.rows.items(), key=lambda kv: kv[0][4]):
                        if k[0] == "matrix" and k[1] == p and (k[2], k[3]) == (nodes, senders):
                            s = r.stat(field)
                            if s.med is not None:
                                pts.append((k[4], s.med, s.lo, s.hi))
                    if not pts:
                        continue
                    if p != "direct":
                        fwd_pts += [(x[0], x[1], x[3], p) for x in pts]
                    else:
                        direct_pts = [(x[0], x[1], "direct") for x in pts]
                    fn = os.path.join(tmp, "%s-%d-%d-%s.dat" % (metric, nodes, senders, p))
                    with open(fn, "w") as f:
                        for x in pts:
                            f.write("%d %g %g %g\n" % x)
                    title = LABELS[p]
                    if p == "direct":
                        plots.append('"%s" using 1:2 with lines %s title "%s"' %
                                     (fn, styles[p], title))
                    else:
                        plots.append('"%s" using 1:2:3:4 with yerrorlines %s title "%s"' %
                                     (fn, styles[p], title))
                if not plots:
                    continue
                script.append('set title "%d node%s x %d sender%s"' %
                              (nodes, "s" if nodes > 1 else "", senders, "s" if senders > 1 else ""))
                script.append('set ylabel "%s"' % (ylabel if i == 0 else ""))
                script.append('set xlabel "%s"' % ("frame payload" if metric == "cpu" else ""))
                # The scale: the forwarders, but not a point 5 times the panel's median
                # (a pathological row would flatten every other line). direct is a
                # reference, not the scale. Whatever runs off the top has its value written
                # under the top edge, in its colour.
                typical = statistics.median([x[1] for x in fwd_pts]) if fwd_pts else 0
                top = max([x[2] for x in fwd_pts if x[1] <= 5 * typical] or [1])
                ymax = top * 1.2
                script.append("set yrange [0:%g]" % ymax)
                script.append("unset label")
                off = [(x[0], x[1], x[3]) for x in fwd_pts if x[1] > ymax]
                if metric == "gbit":
                    off += [x for x in direct_pts if x[1] > ymax]
                last = max([x[0] for x in fwd_pts] or [0])
                for x, v, p in off:
                    script.append('set label "%s \u2191" at %d,%g %s font ",8" '
                                  'tc rgb "%s" noenhanced' %
                                  (("%.0f" if v >= 10 else "%.1f") % v, x, ymax * 0.95,
                                   "right" if x == last else "center",
                                   "#555555" if p == "direct" else COLOURS[p]))
                if metric == "gbit" and i == 0:
                    # One legend row above all panels (gnuplot's own key would sit in one
                    # panel): coloured labels in screen coordinates, drawn with this panel.
                    for j, p in enumerate(("relay", "relay-splice", "relay-copy", "haproxy",
                                           "direct")):
                        script.append('set label "%s %s" at screen %g,0.935 left font ",10" '
                                      'tc rgb "%s" noenhanced' %
                                      ("- -" if p == "direct" else "\u2014\u25cf\u2014",
                                       LABELS[p], 0.02 + 0.196 * j, COLOURS[p]))
                script.append("set key off")
                script.append("plot " + ", ".join(plots))
        script.append("unset multiplot")
        with open(os.path.join(tmp, "chart.gp"), "w") as f:
            f.write("\n".join(script) + "\n")
        try:
            subprocess.run(["gnuplot", os.path.join(tmp, "chart.gp")], check=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return True


def fleet_values(path):
    """The {{fleet...}} values: `make fleet`'s run (bench/fleet_report.py), if published."""
    if not os.path.exists(path):
        return {}
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import fleet_report
    runs = fleet_report.load(path)
    rep = fleet_report.Report(runs, markdown=True)
    rep.targets()
    rep.at_limit()
    rep.fleet()
    meta = next((r for r in runs if r["kind"] == "meta"), {})
    at_limit = [r for r in runs if r["kind"] == "at_limit"]
    most = max(r["idle_nodes"] for r in at_limit)
    large = next(r for r in at_limit if r["idle_nodes"] == most and r.get("scraped"))
    unscraped = next(r for r in at_limit if r["idle_nodes"] == most and not r.get("scraped"))
    killed = next(r for r in runs if r["kind"] == "fleet" and r["killed"])
    fleet = [r for r in runs if r["kind"] == "fleet"]
    return {
        "fleet.tables": "\n".join(rep.lines).rstrip("\n"),
        "fleet.date": meta.get("date", "?"),
        "fleet.commit": meta.get("commit", "?"),
        "fleet.nproc": str(meta.get("nproc", "?")),
        "fleet.kernel": meta.get("kernel", "?"),
        "fleet.fd_limit": str(meta.get("fd_limit", "?")),
        "fleet.sessions": str(large["idle_nodes"]),
        "fleet.kib_per_session": "%.2f" % large["relay_rss_per_idle_kib"],
        "fleet.keepalive_p99_ms": "%.2f" % (large["keepalive_p99_us"] / 1000),
        "fleet.stream_p99_us": "%.0f" % large["p99_us"],
        "fleet.stream_p99_unscraped_us": "%.0f" % unscraped["p99_us"],
        "fleet.relays": str(len(fleet)),
        "fleet.nodes": str(sum(r["per_relay"] for r in fleet)),
        "fleet.rehomed": str(killed["rehomed_nodes"]),
        "fleet.rehome_p99_s": "%.2f" % killed["rehome_p99_s"],
        "fleet.rehome_max_s": "%.2f" % killed["rehome_max_s"],
        "fleet.missed": ", ".join(rep.misses) if rep.misses else "none",
    }


def sockmap_values(path):
    """{{sockmap.table}}: the BPF sockmap experiment of issue 33 (docs/bench/sockmap.jsonl,
    written by bench/sockmap.sh in commit 2e871f8): the median of each forwarder's runs,
    and what the runs that lost frames lost."""
    if not os.path.exists(path):
        return {}
    runs = collections.OrderedDict()
    with open(path) as f:
        for line in f:
            d = json.loads(line)
            runs.setdefault((d["frame"], d["shape"], d["path"]), []).append(d["result"])
    names = {"relay": "relay", "haproxy": "haproxy", "sockmap": "sockmap, parser + verdict",
             "verdict": "sockmap, verdict only"}
    L = ["| frames | nodes x senders | forwarder | payload Gbit/s | its own CPU s/GB | "
         "host CPU s/GB | runs that lost frames |", "|---" * 7 + "|"]
    for (frame, shape, path), results in sorted(runs.items(),
                                                key=lambda kv: (-kv[0][0], kv[0][1])):
        ok = [r for r in results if "failed" not in r]
        lost = [r["failed"].split("relay-load: ")[-1].split(" frames")[0] for r in results
                if "failed" in r]
        own = "-" if path in ("sockmap", "verdict") else fmt(
            Stat([r.get("relay_cpu_s_per_gb") for r in ok]).med)
        L.append("| %s | %s | %s | %s | %s | %s | %s |" % (
            frame_name(frame), shape.replace("x", " x "), names.get(path, path),
            fmt(Stat([r.get("gbit_per_s") for r in ok]).med), own,
            fmt(Stat([r.get("host_cpu_s_per_gb") for r in ok]).med),
            "%d of %d (%s frames lost)" % (len(lost), len(results), ", ".join(lost))
            if lost else "none"))
    return {"sockmap.table": "\n".join(L)}


def render(template_path, values):
    with open(template_path) as f:
        text = f.read()
    missing = set()

    def sub(m):
        name = m.group(1)
        if name not in values:
            missing.add(name)
            return m.group(0)
        return values[name]

    text = re.sub(r"\{\{([A-Za-z0-9_.\-]+)\}\}", sub, text)
    if missing:
        sys.exit("report.py: %s names values the run does not have: %s" %
                 (template_path, ", ".join(sorted(missing))))
    return text


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--out")
    ap.add_argument("--render")
    ap.add_argument("--write")
    ap.add_argument("--check")
    a = ap.parse_args()
    rep = Report(a.data)
    generated = rep.markdown()
    values = dict(rep.values)
    values["generated"] = generated.rstrip("\n")
    values.update(fleet_values(os.path.join(a.data, "fleet.jsonl")))
    values.update(sockmap_values(os.path.join(a.data, "sockmap.jsonl")))
    if a.out:
        with open(os.path.join(a.out, "generated.md"), "w") as f:
            f.write(generated)
        with open(os.path.join(a.out, "values.json"), "w") as f:
            json.dump(rep.values, f, indent=1, sort_keys=True)
        drawn = rep.chart(os.path.join(a.out, "throughput.png"))
        print("bench: wrote %s/generated.md, values.json%s (make bench-publish copies the run "
              "into docs/)" % (a.out, ", throughput.png" if drawn else ""), file=sys.stderr)
    if a.render:
        text = render(a.render, values)
        if a.write:
            with open(a.write, "w") as f:
                f.write(text)
        if a.check:
            with open(a.check) as f:
                have = f.read()
            if have != text:
                import difflib
                diff = difflib.unified_diff(have.splitlines(), text.splitlines(), a.check,
                                            "rendered from " + a.data, lineterm="", n=1)
                sys.stderr.write("\n".join(list(diff)[:60]) + "\n")
                sys.exit("report.py: %s does not say what the run in %s says (regenerate it "
                         "with make bench-publish)" % (a.check, a.data))


if __name__ == "__main__":
    main()
