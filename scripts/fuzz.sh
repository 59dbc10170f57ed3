#!/usr/bin/env bash
# make fuzz: builds the libFuzzer targets (clang, ASan+UBSan, assertions on) in
# build-fuzz/ and runs each for FUZZ_SECONDS (default 60) on its corpus, which starts as
# the seeds of fuzz/seeds.cc (real frames) and grows in build-fuzz/corpus/<target>/.
# Prints executions, speed and corpus size per target; a crash or a broken property
# leaves its input in build-fuzz/findings/ and fails the run. Replay a finding with
# build/bin/fuzz_<target>_replay FILE (any compiler) or build-fuzz/bin/fuzz_<target> FILE.
#   FUZZ_SECONDS=600 make fuzz        longer runs
#   FUZZ_TARGETS="proxy_stream" ...   some targets only
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh clang libclang-rt-dev
SECONDS_EACH=${FUZZ_SECONDS:-60}
TARGETS=${FUZZ_TARGETS:-"frame_header control_message main_stream proxy_stream"}
JOBS=${JOBS:-$(nproc)}
B=build-fuzz
CXX=clang++ BUILD=$B BUILD_TYPE=Debug JOBS=$JOBS \
  CXXFLAGS="-O1 -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all" \
  LDFLAGS="-fsanitize=address,undefined" \
  CMAKE_ARGS="-DRELAY_FUZZ=ON -DRELAY_BUILD_TESTS=OFF -DRELAY_BUILD_BENCH=OFF" \
  scripts/build.sh fuzz-write-seeds $(for t in $TARGETS; do echo "fuzz_$t"; done)
mkdir -p $B/corpus $B/findings
"$B/bin/fuzz-write-seeds" $B/corpus  # the seeds join whatever corpus is there
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
report=$B/fuzz-report.txt
: >"$report"
failed=0
for t in $TARGETS; do
  log=$B/fuzz_$t.log
  if "$B/bin/fuzz_$t" -max_total_time="$SECONDS_EACH" -print_final_stats=1 -timeout=10 \
      -rss_limit_mb=2048 -artifact_prefix="$B/findings/$t-" "$B/corpus/$t" >"$log" 2>&1; then
    result="no finding"
  else
    result="FINDING (see $log and $B/findings/)"
    failed=1
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  corpus=$(ls "$B/corpus/$t" | wc -l)
  printf 'fuzz %-16s %12s execs in %ss (%s/s), corpus %s inputs: %s\n' \
    "$t" "${execs:-?}" "$SECONDS_EACH" "${speed:-?}" "$corpus" "$result" | tee -a "$report"
done
exit $failed
