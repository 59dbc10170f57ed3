#!/usr/bin/env bash
# make bench-publish: publishes the run `make bench` left in $BENCH_OUT (build/bench):
# copies its data (runs.jsonl, run.json, micro.txt) and chart into docs/bench/, and
# regenerates docs/BENCHMARKS.md from bench/BENCHMARKS.md.in, whose {{name}} placeholders
# are values of that run (bench/report.py). A test (ctest bench_doc) checks that the
# published document is what its data gives, so the text can never drift from the tables.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${BENCH_OUT:-build/bench}
for f in runs.jsonl run.json micro.txt; do
  [ -s "$out/$f" ] || { echo "bench-publish: $out/$f is missing: run make bench first" >&2; exit 1; }
done
grep -q '"sections":"headline pairs small hostcc lowmark latency matrix scale"' "$out/run.json" || {
  echo "bench-publish: $out is a partial run (SECTIONS); publish a full make bench run" >&2
  exit 1
}
# The published runs of other scripts (make fleet's, the sockmap experiment's) render
# with this one.
for f in fleet.jsonl sockmap.jsonl; do
  [ -f "docs/bench/$f" ] && [ ! -f "$out/$f" ] && cp "docs/bench/$f" "$out/$f"
done
# Render first: a template naming a value the run lacks fails before anything is touched.
python3 bench/report.py --data "$out" --render bench/BENCHMARKS.md.in --write "$out/BENCHMARKS.md"
mkdir -p docs/bench
rm -f docs/bench/runs.jsonl docs/bench/run.json docs/bench/micro.txt docs/bench/throughput.png
cp "$out/runs.jsonl" "$out/run.json" "$out/micro.txt" docs/bench/
[ -f "$out/throughput.png" ] && cp "$out/throughput.png" docs/bench/
python3 bench/report.py --data docs/bench --render bench/BENCHMARKS.md.in --write docs/BENCHMARKS.md
echo "bench-publish: docs/BENCHMARKS.md and docs/bench/ now show the run in $out" >&2
