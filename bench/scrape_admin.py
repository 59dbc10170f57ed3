#!/usr/bin/env python3
"""Scrapes a relay's admin endpoint as an operator's monitoring would, while a process
runs: every second /metrics and every page of /sessions (following "next").

  scrape_admin.py ADMIN_PORT WHILE_PID

Stops when WHILE_PID has exited (bounded: at most an hour); prints one JSON line: scrapes,
pages, sessions listed, the slowest scrape in seconds, errors.
"""
import json
import os
import sys
import time
import urllib.request


def get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
        return answer.read()


def main():
    port, pid = int(sys.argv[1]), int(sys.argv[2])
    deadline = time.monotonic() + 3600
    scrapes = pages = listed = errors = 0
    slowest = 0.0
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        start = time.monotonic()
        try:
            get(port, "/metrics")
            after = ""
            while True:
                page = json.loads(get(port, f"/sessions?limit=1000{after}"))
                pages += 1
                listed += len(page["sessions"])
                if page["next"] is None:
                    break
                after = "&after=" + page["next"]
            scrapes += 1
        except (OSError, ValueError):
            errors += 1
        took = time.monotonic() - start
        slowest = max(slowest, took)
        time.sleep(max(0.0, 1.0 - took))
    print(json.dumps({"scrapes": scrapes, "pages": pages, "listed": listed,
                      "slowest_scrape_s": round(slowest, 3), "errors": errors}))


if __name__ == "__main__":
    main()
