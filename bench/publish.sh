#!/usr/bin/env bash
# make bench-publish: copies the run `make bench` left in $BENCH_OUT (build/bench) into
# docs/bench/ and splices its tables into docs/BENCHMARKS.md between the bench:begin and
# bench:end markers. The narrative around them is written by hand from that run.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${BENCH_OUT:-build/bench}
for f in generated.md headline.jsonl latency.jsonl matrix.jsonl scale.jsonl micro.txt; do
  [ -s "$out/$f" ] || { echo "bench-publish: $out/$f is missing: run make bench first" >&2; exit 1; }
done
mkdir -p docs/bench
cp "$out"/generated.md "$out"/*.jsonl "$out"/micro.txt docs/bench/
rm -f docs/bench/results.jsonl
[ -f "$out/throughput.png" ] && cp "$out/throughput.png" docs/bench/
doc=docs/BENCHMARKS.md
awk -v gen="$out/generated.md" '
  /<!-- bench:begin -->/ { print; while ((getline l < gen) > 0) print l; skip = 1; next }
  /<!-- bench:end -->/ { skip = 0 }
  !skip { print }' "$doc" > "$doc.new"
mv "$doc.new" "$doc"
echo "bench-publish: $doc and docs/bench/ now show the run in $out" >&2
