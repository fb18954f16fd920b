#!/usr/bin/env bash
# Builds the libFuzzer targets (swiftc -sanitize=fuzzer,address) and runs each one for a bounded
# time from the committed corpus. A crash saves its input under Fuzz/Regressions/<target>/ (commit
# it: the test suite replays every file there) and makes this script fail.
#   Fuzz/run.sh [seconds per target, default $FUZZ_SECONDS or 60] [--merge]
#   --merge folds inputs that add coverage into Fuzz/Corpus/<target>/ (then commit them).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
seconds=${FUZZ_SECONDS:-60}
merge=0
for a in "$@"; do
    case "$a" in
        --merge) merge=1 ;;
        *) seconds=$a ;;
    esac
done
command -v swift >/dev/null || export PATH=/opt/swift/usr/bin:$PATH
# gold cannot link the instrumented objects (an internal error in its DWARF reader): use lld.
swift build -c release -Xswiftc -sanitize=fuzzer,address -Xswiftc -Xclang-linker -Xswiftc -fuse-ld=lld \
    --scratch-path ../.build-fuzz
bin=../.build-fuzz/release
status=0
for t in decode frame handle proxy; do
    work=$(mktemp -d)
    mkdir -p "Regressions/$t"
    # New inputs go to $work (the first corpus directory); the committed corpus is only read.
    if "$bin/fuzz-$t" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        -artifact_prefix="Regressions/$t/" "$work" "Corpus/$t" >"$work.log" 2>&1; then
        runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work.log" | grep -o '[0-9]*$' || echo "?")
        cov=$(grep -o 'cov: [0-9]*' "$work.log" | tail -1 || true)
        echo "fuzz-$t: ${seconds}s, $runs inputs, $cov, no crash"
    else
        echo "fuzz-$t: FAILED; the input is saved under Fuzz/Regressions/$t/" >&2
        tail -80 "$work.log" >&2
        status=1
    fi
    if [ "$merge" = 1 ]; then
        "$bin/fuzz-$t" -merge=1 "Corpus/$t" "$work" >/dev/null 2>&1 || true
    fi
    rm -rf "$work" "$work.log"
done
exit $status
