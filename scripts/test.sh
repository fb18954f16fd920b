#!/usr/bin/env bash
# Installs missing test dependencies (coturn provides the turnutils_* interop clients),
# builds everything including tests, and runs the whole suite. Arguments go to `swift test`
# (for example: --filter TernCoreTests).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

start=$SECONDS
trap 'echo "test.sh: finished in $((SECONDS - start))s"' EXIT

# haproxy and nginx (with its stream module) stand in front of Tern in the PROXY protocol tests.
packages=(libssl-dev libsystemd-dev libbpf-dev bpftool pkg-config coturn chromium chromium-driver libnss3-tools systemd nftables iproute2
          haproxy nginx libnginx-mod-stream)

missing=()
for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "test.sh: installing ${missing[*]}" >&2
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "test.sh: need root or sudo to install ${missing[*]}" >&2; exit 1; }
        sudo=(sudo)
    fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
    # Only the turnutils_* tools are wanted. Debian does not start the daemon without systemd,
    # but if the package did start one it would hold port 3478: stop it.
    if [[ " ${missing[*]} " == *" coturn "* ]]; then
        "${sudo[@]}" pkill -x turnserver || true
    fi
    # The same for the proxies: the tests start their own, on loopback, from their own configs.
    for daemon in haproxy nginx; do
        if [[ " ${missing[*]} " == *" $daemon "* ]]; then "${sudo[@]}" pkill -x "$daemon" || true; fi
    done
fi
if pgrep -x turnserver >/dev/null 2>&1; then
    echo "test.sh: warning: a turnserver process is running and may hold port 3478" >&2
fi

if ! command -v swift >/dev/null && [ -x /opt/swift/usr/bin/swift ]; then
    export PATH="/opt/swift/usr/bin:$PATH"
fi
command -v swift >/dev/null || { echo "test.sh: swift not found (install Swift 6.3 or add it to PATH)" >&2; exit 1; }

swift build --build-tests
swift test "$@"

# The whole suite (no arguments) also fuzzes each libFuzzer target for a bounded time: 60 s each in
# CI, 20 s locally (FUZZ_SECONDS overrides). A crash fails the run and leaves its input in
# Fuzz/Regressions/, which the suite above replays from then on.
if [ $# -eq 0 ]; then
    # The deployments: the Kubernetes manifests (kubernetes-validate, cross-checks, and the
    # ConfigMap's config through this build's `tern check-config`), always; the Debian package
    # (release build, lintian, install/serve/purge in a fresh debootstrap'ed Debian 12 root) in CI,
    # locally with PACKAGE_TEST=1 (a few minutes: the release build and, the first time, debootstrap).
    TERN_BIN="$(swift build --show-bin-path)/tern" scripts/validate-kubernetes.sh
    # The fleet's monitoring: the Grafana dashboard's structure, the Prometheus rules (promtool check
    # and unit tests), and every metric either names checked against a live Tern's /metrics.
    TERN_BIN="$(swift build --show-bin-path)/tern" scripts/validate-monitoring.sh
    if [ "${CI:-}" = "true" ] || [ "${PACKAGE_TEST:-0}" = "1" ]; then
        scripts/test-deb.sh
    fi
    if [ "${CI:-}" = "true" ]; then default_fuzz=60; else default_fuzz=20; fi
    Fuzz/run.sh "${FUZZ_SECONDS:-$default_fuzz}"
    # Unit and integration tests under ASan (+LeakSanitizer) and TSan: always in CI (about 20
    # minutes on 2 cores, mostly the two instrumented builds), locally with SANITIZERS=1.
    if [ "${CI:-}" = "true" ] || [ "${SANITIZERS:-0}" = "1" ]; then
        scripts/sanitizers.sh
    fi
fi
