#!/usr/bin/env bash
# Tern against coturn, side by side, and the hot-path micro-benchmark. Writes BENCHMARKS.md.
#   Benchmarks/run.sh            full run (about 15 minutes on 2 vCPUs)
#   Benchmarks/run.sh --quick    fewer cases, shorter runs
set -euo pipefail
cd "$(dirname "$0")/.."
command -v swift >/dev/null || export PATH=/opt/swift/usr/bin:$PATH
need=()
for p in coturn util-linux python3; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then apt-get install -y "${need[@]}"; else sudo apt-get install -y "${need[@]}"; fi
fi
# coturn's Debian package starts a system turnserver on 3478; the benchmark uses its own on 34780.
swift build -c release --product tern
(cd Benchmarks && swift build -c release --product tern-load && swift build -c release --product bare-forwarder)
python3 Benchmarks/run.py "$@"
