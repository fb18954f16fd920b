#!/usr/bin/env bash
# The unit and integration tests (everything but InteropTests, which runs the release-style binary
# with Chromium and coturn) under AddressSanitizer (with LeakSanitizer) and ThreadSanitizer, each
# in its own build directory. Called by scripts/test.sh in CI (CI=true) or with SANITIZERS=1.
#   scripts/sanitizers.sh [address] [thread]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
kinds=("$@")
[ ${#kinds[@]} -eq 0 ] && kinds=(address thread)
for kind in "${kinds[@]}"; do
    start=$SECONDS
    scratch=".build-$kind"
    swift build --build-tests --sanitize="$kind" --scratch-path "$scratch"
    # fast_unwind_on_malloc=0: full stacks for leaks, so the library suppressions can match.
    ASAN_OPTIONS="fast_unwind_on_malloc=0:detect_leaks=1" \
    LSAN_OPTIONS="suppressions=$PWD/scripts/lsan.supp:print_suppressions=0" \
    TSAN_OPTIONS="halt_on_error=1" \
        swift test --skip-build --sanitize="$kind" --scratch-path "$scratch" --skip InteropTests
    echo "sanitizers.sh: $kind: clean in $((SECONDS - start))s"
done
