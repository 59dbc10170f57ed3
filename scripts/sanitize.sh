#!/usr/bin/env bash
# make sanitize: every test again, in three more builds, each in its own folder:
#   build-asan   Debug (assertions on) with AddressSanitizer + UndefinedBehaviorSanitizer
#   build-tsan   Debug with ThreadSanitizer
#   build-clang  clang++, release flags
# -Werror stays on everywhere (TSan keeps only gcc's atomic_thread_fence warning, which
# abseil's headers trigger, as a warning). Any sanitizer report fails the run; the one
# TSan suppression (scripts/tsan.supp) covers abseil's uninstrumented Status refcount.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh clang
JOBS=${JOBS:-$(nproc)}
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/scripts/tsan.supp

run() {  # name, build type (compiler flags from CXXFLAGS/LDFLAGS, compiler from CXX)
  local name=$1 type=$2
  echo "== sanitize: $name" >&2
  BUILD=build-$name BUILD_TYPE=$type JOBS=$JOBS CMAKE_ARGS="-DRELAY_BUILD_BENCH=OFF" \
    scripts/build.sh
  (cd "build-$name" && ctest --output-on-failure -j "$JOBS" --timeout 600)
}

CXXFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=all" \
  LDFLAGS="-fsanitize=address,undefined" run asan Debug
CXXFLAGS="-fsanitize=thread -Wno-error=tsan" LDFLAGS="-fsanitize=thread" run tsan Debug
CXX=clang++ run clang RelWithDebInfo
echo "sanitize: asan, tsan and clang builds passed every test"
