#!/usr/bin/env bash
# Checks the Kubernetes deployment in deploy/kubernetes/ without a cluster or a container engine:
#   1. installs kubernetes-validate and the prometheus-operator models (pinned) into a venv,
#      unless that venv already holds them;
#   2. kubernetes-validate --strict against Kubernetes $K8S_VERSION for every built-in manifest;
#      the PodMonitor (a CRD) against the models cloudcoil.models.prometheus_operator generates
#      from prometheus-operator's CRDs;
#   3. cross-checks in scripts/validate-kubernetes.py (kustomization lists every file, the
#      DaemonSet's grace period exceeds the config's drain timeout, hostNetwork, dnsPolicy, probes,
#      security context, Secret references, PodMonitor, Containerfile), and renders the
#      kustomization with `kubectl kustomize` when kubectl is installed;
#   4. `tern check-config` on the ConfigMap's config.json with generated test secrets, with
#      $TERN_BIN (default .build/debug/tern) when that binary exists.
# Exits non-zero on any failure. The image itself is not built here (no container engine in CI).
set -euo pipefail
cd "$(dirname "$0")/.."

K8S_VERSION=1.35.0                   # the Kubernetes version the manifests are validated against
KUBERNETES_VALIDATE_VERSION=1.37.0   # kubernetes-validate on PyPI (schemas for 1.25 ... 1.37)
PROMETHEUS_OPERATOR_MODELS_VERSION=0.80.1.0   # cloudcoil.models.prometheus_operator: prometheus-operator v0.80.1's CRDs
TERN_BIN=${TERN_BIN:-.build/debug/tern}
DIR=deploy/kubernetes

start=$(date +%s)
pins="kubernetes-validate==$KUBERNETES_VALIDATE_VERSION cloudcoil.models.prometheus_operator==$PROMETHEUS_OPERATOR_MODELS_VERSION PyYAML"
venv=${TERN_K8S_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/tern/validate-kubernetes-venv}
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.tern-pins" 2>/dev/null)" != "$pins" ]; then
    echo "== installing into $venv: $pins"
    rm -rf "$venv"
    python3 -m venv "$venv"
    # shellcheck disable=SC2086
    timeout 600 "$venv/bin/pip" install --quiet --disable-pip-version-check $pins
    echo "$pins" > "$venv/.tern-pins"
fi
echo "== kubernetes-validate $("$venv/bin/kubernetes-validate" --version), Kubernetes $K8S_VERSION"

kubectl=$(command -v kubectl || true)
status=0
"$venv/bin/python" scripts/validate-kubernetes.py --dir "$DIR" --kubernetes-version "$K8S_VERSION" \
    --kubernetes-validate "$venv/bin/kubernetes-validate" --tern-bin "$TERN_BIN" --kubectl "$kubectl" || status=$?
echo "validate-kubernetes: $(( $(date +%s) - start )) s"
exit "$status"
