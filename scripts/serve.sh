#!/usr/bin/env bash
# Installs missing build dependencies, builds Tern in release mode, and runs `tern serve`.
# Arguments are passed to `tern serve` (for example: --config config.example.json).
# Without --config, Tern serves STUN on UDP and TCP port 3478 on all addresses.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

packages=(libssl-dev libsystemd-dev libbpf-dev pkg-config)

missing=()
for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "serve.sh: installing ${missing[*]}" >&2
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "serve.sh: need root or sudo to install ${missing[*]}" >&2; exit 1; }
        sudo=(sudo)
    fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
fi

if ! command -v swift >/dev/null && [ -x /opt/swift/usr/bin/swift ]; then
    export PATH="/opt/swift/usr/bin:$PATH"
fi
command -v swift >/dev/null || { echo "serve.sh: swift not found (install Swift 6.3 or add it to PATH)" >&2; exit 1; }

swift build -c release --product tern
exec .build/release/tern serve "$@"
