#!/usr/bin/env bash
# Tern (user space), Tern with the kernel offload, and coturn, side by side; writes BENCHMARKS.md.
#   Benchmarks/run.sh            full run (about 18-20 minutes of cases on 2 vCPUs, after the builds)
#   Benchmarks/run.sh --quick    fewer cases, shorter runs
#   Benchmarks/run.sh --servers tern,tern-offload --only mix,lossfree_100 --out /tmp/bench
# TERN_BIN=/path/to/tern uses that binary (built with -c release) instead of building .build/release/tern.
# Needs root (or CAP_BPF + CAP_NET_ADMIN) for the offload case: it fails loudly if the offload is not active.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v swift >/dev/null || export PATH=/opt/swift/usr/bin:$PATH
need=()
for p in coturn util-linux python3; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then apt-get install -y "${need[@]}"; else sudo apt-get install -y "${need[@]}"; fi
fi
# coturn's Debian package starts a system turnserver on 3478; the benchmark uses its own on 34780.
if [ -z "${TERN_BIN:-}" ]; then swift build -c release --product tern; fi
(cd Benchmarks && swift build -c release --product tern-load && swift build -c release --product bare-forwarder)
python3 Benchmarks/run.py "$@"
