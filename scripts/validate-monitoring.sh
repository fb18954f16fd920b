#!/usr/bin/env bash
# Checks the fleet monitoring files, deploy/prometheus/ and deploy/grafana/ (docs/scale-out.md):
#   1. installs promtool (Debian package `prometheus`, without its recommends) when it is missing,
#      and finds a python3 with PyYAML (the system's, else a venv with it pinned);
#   2. scripts/validate-monitoring.py: the dashboard's structure; `promtool check rules` on the rules
#      and on every dashboard query, `promtool test rules` on the rules' unit tests; then a real
#      `$TERN_BIN serve` on 127.0.0.1 (ephemeral ports, one `tern probe` through it) and every
#      metric name of every expression checked against its /metrics.
# TERN_BIN defaults to .build/debug/tern and must exist. TERN_MONITORING_PENDING="name,name" lets
# named metrics be missing from /metrics (while they are being added to Tern); the default is strict.
# Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

PYYAML_VERSION=6.0.3
TERN_BIN=${TERN_BIN:-.build/debug/tern}
start=$(date +%s)

if [ ! -x "$TERN_BIN" ]; then
    echo "validate-monitoring: $TERN_BIN not found: build first (swift build), or set TERN_BIN" >&2
    exit 1
fi

# promtool: Debian's `prometheus` package (promtool is in it; --no-install-recommends leaves out
# the node exporter). The package enables prometheus.service: where systemd runs, a package this
# script installed is stopped and disabled again, so no Prometheus server is left listening.
if ! command -v promtool >/dev/null; then
    echo "== installing promtool (Debian package prometheus)" >&2
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "validate-monitoring: need root or sudo to install prometheus (promtool)" >&2; exit 1; }
        sudo=(sudo)
    fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus
    if [ -d /run/systemd/system ]; then
        "${sudo[@]}" systemctl disable --now prometheus.service || true
    fi
fi
echo "== $(promtool --version 2>&1 | head -1)"

python=python3
if ! python3 -c 'import yaml' 2>/dev/null; then
    venv=${TERN_MONITORING_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/tern/validate-monitoring-venv}
    if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import yaml' 2>/dev/null; then
        echo "== installing PyYAML==$PYYAML_VERSION into $venv"
        rm -rf "$venv"
        python3 -m venv "$venv"
        timeout 600 "$venv/bin/pip" install --quiet --disable-pip-version-check "PyYAML==$PYYAML_VERSION"
    fi
    python=$venv/bin/python
fi

status=0
"$python" scripts/validate-monitoring.py --tern-bin "$TERN_BIN" --promtool "$(command -v promtool)" || status=$?
echo "validate-monitoring: $(( $(date +%s) - start )) s"
exit "$status"
