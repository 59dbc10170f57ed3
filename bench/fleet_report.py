#!/usr/bin/env python3
"""The tables and verdicts of `make fleet` (bench/fleet.sh) from its fleet.jsonl.

  fleet_report.py FLEET_JSONL [--markdown]

Prints the tables (text, or markdown for docs/BENCHMARKS.md) and the targets met or
missed; exits 1 if a node or frame was lost where nothing may be lost (the survivors of
the fleet, one relay at its limit) or a node found no relay in time.
"""
import json
import sys

# Targets (issue 34): one relay at the host's limit, and a fleet that loses one relay.
RSS_KIB_PER_SESSION = 2.0
KEEPALIVE_P99_MS = 10.0
STREAM_P99_US = 1000.0
RESTART_S = 1.0
REHOME_S = 30.0


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def fmt(v, digits=1):
    return "-" if v is None else ("%.*f" % (digits, v) if isinstance(v, float) else str(v))


def ms(us):
    return None if us is None else us / 1000.0


class Report:
    def __init__(self, runs, markdown):
        self.runs = runs
        self.markdown = markdown
        self.lines = []
        self.misses = []    # targets missed (reported)
        self.failures = []  # losses (exit 1)

    def table(self, header, rows):
        if self.markdown:
            self.lines.append("| " + " | ".join(header) + " |")
            self.lines.append("|" + "---|" * len(header))
            for r in rows:
                self.lines.append("| " + " | ".join(r) + " |")
        else:
            widths = [max(len(x) for x in col) for col in zip(header, *rows)]
            for r in [header] + rows:
                self.lines.append("  ".join(x.rjust(w) for x, w in zip(r, widths)))
        self.lines.append("")

    def check(self, ok, what):
        if not ok:
            self.misses.append(what)
        return "met" if ok else "**missed**"

    def at_limit(self):
        runs = [r for r in self.runs if r["kind"] == "at_limit"]
        if not runs:
            return
        self.lines.append("One relay, its idle sessions and one measured stream of 10,000 "
                          "frames/s of 1 KiB (10 s after 1 s of warm-up):")
        self.lines.append("")
        rows = []
        for r in runs:
            scraped = r.get("scraped")
            rows.append([
                str(r["idle_nodes"]),
                "every second (%d pages)" % scraped["pages"] if scraped else "no",
                fmt(r["relay_rss_per_idle_kib"], 2), fmt(r["idle_setup_s"], 2),
                "%s / %s" % (r["keepalives_answered"], r["keepalives_sent"]),
                fmt(ms(r["keepalive_p99_us"]), 2),
                "%s / %s / %s" % (fmt(r["p50_us"], 0), fmt(r["p99_us"], 0), fmt(r["p999_us"], 0)),
                fmt(r["relay_cpu_s"], 2), str(r["lost_frames"])])
        self.table(["idle sessions", "admin scraped", "relay RSS KiB/session", "setup s",
                    "keepalives answered", "keepalive p99 ms", "stream us p50 / p99 / p99.9",
                    "relay CPU s", "frames lost"], rows)
        small, large = runs[0], runs[1] if len(runs) > 1 else None
        if large is not None:
            def ratio(key):
                a, b = small.get(key), large.get(key)
                return "x%.2f" % (b / a) if a and b else "-"
            self.lines.append(
                "%d vs %d sessions, same build and sitting: RSS per session %s, setup time per "
                "session %s, keepalive p99 %s, stream p99 %s." % (
                    large["idle_nodes"], small["idle_nodes"], ratio("relay_rss_per_idle_kib"),
                    "x%.2f" % ((large["idle_setup_s"] / large["idle_nodes"]) /
                               (small["idle_setup_s"] / small["idle_nodes"])),
                    ratio("keepalive_p99_us"), ratio("p99_us")))
            self.lines.append("")

    def targets(self):
        runs = [r for r in self.runs if r["kind"] == "at_limit"]
        large = [r for r in runs if r["idle_nodes"] == max(x["idle_nodes"] for x in runs)]
        restart = [r for r in self.runs if r["kind"] == "restart"]
        rows = []
        for r in large:
            tag = " (scraped)" if r.get("scraped") else ""
            rows.append(["relay RSS per idle session <= %.1f KiB%s" % (RSS_KIB_PER_SESSION, tag),
                         self.check(r["relay_rss_per_idle_kib"] <= RSS_KIB_PER_SESSION,
                                    "RSS per session" + tag),
                         "%s KiB" % fmt(r["relay_rss_per_idle_kib"], 2)])
            rows.append(["keepalive p99 < %.0f ms%s" % (KEEPALIVE_P99_MS, tag),
                         self.check((r["keepalive_p99_us"] or 1e9) < KEEPALIVE_P99_MS * 1000,
                                    "keepalive p99" + tag),
                         "%s ms" % fmt(ms(r["keepalive_p99_us"]), 2)])
            rows.append(["stream p99 < %.0f ms%s" % (STREAM_P99_US / 1000, tag),
                         self.check((r["p99_us"] or 1e9) < STREAM_P99_US, "stream p99" + tag),
                         "%s us" % fmt(r["p99_us"], 0)])
        for r in restart:
            rows.append(["restart with %d leases < %.0f s" % (r["leases"], RESTART_S),
                         self.check(r["listening_s"] < RESTART_S and r["leases"] > 0, "restart"),
                         "listening again after %s s" % fmt(r["listening_s"], 3)])
        fleet = [r for r in self.runs if r["kind"] == "fleet"]
        killed = [r for r in fleet if r["killed"]]
        survivors = [r for r in fleet if not r["killed"]]
        if killed:
            k = killed[0]
            rehomed = k["rehomed_nodes"] == k["per_relay"] + 1 and k["rehome_failed"] == 0
            if not rehomed:
                self.failures.append("%d of the dead relay's nodes found no relay" %
                                     (k["per_relay"] + 1 - k["rehomed_nodes"]))
            rows.append(["every node of the dead relay re-homed within %.0f s" % REHOME_S,
                         self.check(rehomed and (k["rehome_max_s"] or 1e9) <= REHOME_S, "re-home"),
                         "%d of %d, the last after %s s" % (k["rehomed_nodes"], k["per_relay"] + 1,
                                                            fmt(k["rehome_max_s"], 2))])
        if survivors:
            lost = sum(r["lost_connections"] + r["lost_frames"] + r["bad_frames"] +
                       r["rehomed_nodes"] for r in survivors)
            if lost:
                self.failures.append("%d connections, frames or nodes lost on the survivors" % lost)
            rows.append(["nothing lost on the survivors", self.check(lost == 0, "survivors"),
                         "%d connections, frames or nodes lost on %d relays" % (lost, len(survivors))])
            worst = lambda key: max((r[key] or 1e9) for r in fleet)
            rows.append(["on every relay of the fleet: RSS per idle session <= %.1f KiB" %
                         RSS_KIB_PER_SESSION,
                         self.check(worst("relay_rss_per_idle_kib") <= RSS_KIB_PER_SESSION,
                                    "fleet RSS per session"),
                         "at most %.2f KiB" % worst("relay_rss_per_idle_kib")])
            rows.append(["on every relay of the fleet: keepalive p99 < %.0f ms" % KEEPALIVE_P99_MS,
                         self.check(worst("keepalive_p99_us") < KEEPALIVE_P99_MS * 1000,
                                    "fleet keepalive p99"),
                         "at most %.2f ms" % (worst("keepalive_p99_us") / 1000)])
            streams = [r["p99_us"] for r in survivors]
            rows.append(["on every surviving relay: stream p99 < %.0f ms" % (STREAM_P99_US / 1000),
                         self.check(max(streams) < STREAM_P99_US, "fleet stream p99"),
                         "%.0f to %.0f us" % (min(streams), max(streams))])
        self.lines.append("Targets:")
        self.lines.append("")
        self.table(["target", "status", "measured"], rows)

    def fleet(self):
        fleet = [r for r in self.runs if r["kind"] == "fleet"]
        if not fleet:
            return
        self.lines.append(
            "A fleet of %d relays on one host (one reactor each), %d idle nodes and one stream of "
            "%s frames/s of 1 KiB on each, every node set up in %s s; then the first relay gets "
            "SIGKILL:" % (len(fleet), fleet[0]["per_relay"], fleet[0]["rate"],
                          fmt(fleet[0]["fleet_setup_s"], 1)))
        self.lines.append("")
        rows = []
        for r in fleet:
            rows.append([
                r["relay"] + (" (killed)" if r["killed"] else ""),
                fmt(r["relay_rss_per_idle_kib"], 2),
                fmt(ms(r["keepalive_p99_us"]), 2),
                "%s / %s" % (fmt(r["p50_us"], 0), fmt(r["p99_us"], 0)),
                str(r["rehomed_nodes"]),
                "-" if not r["rehomed_nodes"] else "%s / %s / %s" % (
                    fmt(r["rehome_p50_s"], 2), fmt(r["rehome_p99_s"], 2), fmt(r["rehome_max_s"], 2)),
                "%d / %d" % (r["lost_connections"], r["lost_frames"]),
                "-" if r.get("turns") is None else "%d of %d" % (r["turns_over_1ms"], r["turns"])])
        self.table(["relay", "RSS KiB/session", "keepalive p99 ms", "stream us p50 / p99",
                    "nodes re-homed", "re-home s p50 / p99 / max", "lost connections / frames",
                    "relay's loop turns over 1 ms"], rows)


def main():
    runs = load(sys.argv[1])
    report = Report(runs, "--markdown" in sys.argv)
    report.targets()
    report.at_limit()
    report.fleet()
    print("\n".join(report.lines))
    if report.misses:
        print("targets missed: " + ", ".join(report.misses))
    for r in runs:  # one relay at its limit loses nothing
        if r["kind"] == "at_limit" and (r["lost_frames"] or r["lost_connections"] or r["bad_frames"]):
            report.failures.append("frames or connections lost at %d sessions" % r["idle_nodes"])
    if report.failures:
        print("FAILED: " + "; ".join(report.failures))
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
