#!/usr/bin/env python3
"""Checks deploy/kubernetes/ (run through scripts/validate-kubernetes.sh, which sets up the venv).

1. kubernetes-validate --strict against one Kubernetes version for every manifest of a built-in
   kind (Namespace, ConfigMap, DaemonSet, PodDisruptionBudget).
2. The PodMonitor (a Prometheus Operator CRD, which kubernetes-validate has no schema for) against
   the pydantic models that cloudcoil.models.prometheus_operator generates from the operator's CRDs,
   plus a check that no key was dropped as unknown (the models ignore extra keys).
3. The kustomization lists exactly the manifest files; the DaemonSet, ConfigMap, Secret references,
   PodMonitor, PodDisruptionBudget and Containerfile agree with each other and with the brief.
4. The ConfigMap's config.json passes `tern check-config` (with TERN_BIN, when that binary exists),
   its /etc/tern/secrets/ files replaced by generated test secrets.

Every failure is reported; the exit status is 1 if any check failed.
"""

import argparse
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile

import yaml

from checker import Checker


SECRETS_DIR = "/etc/tern/secrets/"
CONFIG_PATH = "/etc/tern/config.json"
ADMIN_PORT = 8478
COMMAND = ["/usr/bin/tern", "serve", "--config", CONFIG_PATH]
BUILTIN_KINDS = {"Namespace", "ConfigMap", "DaemonSet", "PodDisruptionBudget"}


def dig(obj, *path, default=None):
    """obj[path[0]][path[1]]..., or default when a step is missing or not a dict/list."""
    for step in path:
        if isinstance(obj, dict) and step in obj:
            obj = obj[step]
        elif isinstance(obj, list) and isinstance(step, int) and -len(obj) <= step < len(obj):
            obj = obj[step]
        else:
            return default
    return obj


def load_manifests(directory, c):
    """{file name: [documents]} for every *.yaml but the kustomization."""
    manifests = {}
    for name in sorted(os.listdir(directory)):
        if not name.endswith((".yaml", ".yml")) or name == "kustomization.yaml":
            continue
        path = os.path.join(directory, name)
        try:
            with open(path) as f:
                docs = [d for d in yaml.safe_load_all(f) if d is not None]
        except yaml.YAMLError as e:
            c.check(False, f"{name} parses as YAML", str(e))
            continue
        c.check(len(docs) > 0 and all(isinstance(d, dict) and d.get("apiVersion") and d.get("kind")
                                      and dig(d, "metadata", "name") for d in docs),
                f"{name} parses as YAML; every document has apiVersion, kind and metadata.name")
        manifests[name] = docs
    return manifests


def kubernetes_validate(directory, manifests, version, kv_bin, c):
    """One kubernetes-validate run over every file of built-in kinds (it loads its schemas once)."""
    names = [n for n, docs in manifests.items() if {d.get("kind") for d in docs} <= BUILTIN_KINDS]
    cmd = [kv_bin, "--strict", "--kubernetes-version", version] + [os.path.join(directory, n) for n in names]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        out, rc = (r.stdout + r.stderr).strip(), r.returncode
    except subprocess.TimeoutExpired:
        out, rc = "timed out after 300 s", None
    lines = out.splitlines()
    c.check(rc == 0, f"kubernetes-validate --strict -k {version} exits 0 on {len(names)} files", out if rc != 0 else "")
    for n in names:
        mine = [l for l in lines if os.path.join(directory, n) + " " in l + " "]
        kinds = ", ".join(sorted({d["kind"] for d in manifests[n]}))
        # It passes a kind it has no schema for with a warning: only "passed" lines count.
        ok = (len(mine) == len(manifests[n]) and all(" passed for resource " in l for l in mine))
        c.check(ok, f"kubernetes-validate --strict -k {version} {n} ({kinds})", "\n".join(mine) or "no output for it")


def unknown_keys(given, dumped, path=""):
    """Keys of `given` that are missing from `dumped` (what the model dropped as unknown)."""
    missing = []
    if isinstance(given, dict):
        if not isinstance(dumped, dict):
            return [path or "."]
        for k, v in given.items():
            if k not in dumped:
                missing.append(f"{path}.{k}" if path else k)
            else:
                missing += unknown_keys(v, dumped[k], f"{path}.{k}" if path else k)
    elif isinstance(given, list):
        if not isinstance(dumped, list) or len(dumped) != len(given):
            return [path or "."]
        for i, (g, d) in enumerate(zip(given, dumped)):
            missing += unknown_keys(g, d, f"{path}[{i}]")
    return missing


def check_podmonitor(pm, c):
    try:
        from cloudcoil.models.prometheus_operator.v1 import PodMonitor
    except ImportError as e:
        c.check(False, "PodMonitor schema available (cloudcoil.models.prometheus_operator)", str(e))
        return
    try:
        model = PodMonitor.model_validate(pm)
        dumped = model.model_dump(by_alias=True, exclude_unset=True, mode="json")
        c.check(True, "podmonitor.yaml validates against the prometheus-operator PodMonitor model")
        extra = unknown_keys(pm, dumped)
        c.check(not extra, "podmonitor.yaml has no key unknown to the PodMonitor CRD", ", ".join(extra))
    except Exception as e:  # pydantic.ValidationError, and anything the models raise
        c.check(False, "podmonitor.yaml validates against the prometheus-operator PodMonitor model", str(e))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--kubernetes-version", required=True)
    ap.add_argument("--kubernetes-validate", required=True, help="path of the kubernetes-validate executable")
    ap.add_argument("--tern-bin", required=True)
    ap.add_argument("--kubectl", default="", help="kubectl to render the kustomization with, if any")
    args = ap.parse_args()
    c = Checker()
    d = args.dir

    print(f"== manifests in {d}")
    manifests = load_manifests(d, c)

    print(f"== kubernetes-validate against Kubernetes {args.kubernetes_version}")
    kubernetes_validate(d, manifests, args.kubernetes_version, args.kubernetes_validate, c)

    by_kind = {}
    for name, docs in manifests.items():
        for doc in docs:
            by_kind.setdefault(doc["kind"], []).append((name, doc))

    def one(kind):
        found = by_kind.get(kind, [])
        c.check(len(found) == 1, f"exactly one {kind}", f"found {len(found)}")
        return found[0][1] if found else {}

    print("== kustomization.yaml")
    try:
        with open(os.path.join(d, "kustomization.yaml")) as f:
            kz = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as e:
        kz = {}
        c.check(False, "kustomization.yaml parses", str(e))
    c.check(kz.get("kind") == "Kustomization" and kz.get("namespace") == "tern",
            "kustomization.yaml is a Kustomization with namespace tern")
    listed = kz.get("resources") or []
    files = sorted(manifests)
    c.check(len(listed) == len(set(listed)), "kustomization.yaml lists no resource twice", str(listed))
    c.check(set(listed) == set(files), "kustomization.yaml lists every manifest file and nothing else",
            f"not listed: {sorted(set(files) - set(listed))}; listed but absent: {sorted(set(listed) - set(files))}")

    print("== no Secret committed")
    c.check("Secret" not in by_kind, "no Secret manifest in deploy/kubernetes (it is created with kubectl)",
            ", ".join(n for n, _ in by_kind.get("Secret", [])))
    c.check(not any(k in kz for k in ("secretGenerator",)), "kustomization.yaml has no secretGenerator")

    print("== namespace")
    ns = one("Namespace")
    c.check(dig(ns, "metadata", "name") == "tern", "the Namespace is tern")
    wrong = [f"{n}: {doc['kind']}/{doc['metadata']['name']}" for n, docs in manifests.items() for doc in docs
             if doc.get("kind") != "Namespace" and dig(doc, "metadata", "namespace") not in (None, "tern")]
    c.check(not wrong, "every namespaced object is in namespace tern", ", ".join(wrong))

    print("== ConfigMap config.json")
    cm = one("ConfigMap")
    config = None
    try:
        config = json.loads(dig(cm, "data", "config.json", default=""))
        c.check(isinstance(config, dict), "the ConfigMap's config.json is a JSON object")
    except ValueError as e:
        c.check(False, "the ConfigMap's config.json is JSON", str(e))
    config = config if isinstance(config, dict) else {}
    listeners = {(l.get("transport"), l.get("address"), l.get("port")) for l in config.get("listeners", [])}
    c.check({("udp", "0.0.0.0", 3478), ("tcp", "0.0.0.0", 3478)} <= listeners, "listeners udp and tcp on 0.0.0.0:3478",
            str(sorted(listeners, key=str)))
    disc = dig(config, "relay", "discoverExternal")
    c.check(isinstance(disc, list) and len(disc) > 0 and all(isinstance(s, str) and ":" in s for s in disc),
            "relay.discoverExternal is a list of HOST:PORT", repr(disc))
    pr = dig(config, "relay", "portRange")
    c.check(isinstance(pr, list) and len(pr) == 2 and all(isinstance(x, int) for x in pr),
            "relay.portRange is [min, max]", repr(pr))
    admin = config.get("admin", {})
    c.check(admin.get("port") == ADMIN_PORT and admin.get("address") == "0.0.0.0",
            f"admin listens on 0.0.0.0:{ADMIN_PORT} (kubelet probes reach the node address)",
            f"{admin.get('address')}:{admin.get('port')}")

    # Every secret in the config is a {"file": "/etc/tern/secrets/<key>"} reference.
    refs = []
    literal = []
    for where, value in ([(f"auth.secrets[{i}]", v) for i, v in enumerate(dig(config, "auth", "secrets", default=[]))]
                         + [(f"auth.users.{k}", v) for k, v in dig(config, "auth", "users", default={}).items()]
                         + [("admin.token", admin.get("token"))]):
        if isinstance(value, dict) and set(value) == {"file"} and str(value["file"]).startswith(SECRETS_DIR):
            refs.append((where, value["file"][len(SECRETS_DIR):]))
        elif value is not None:
            literal.append(where)
    c.check(not literal, "no secret is written into the ConfigMap (all are {\"file\": \"/etc/tern/secrets/...\"})",
            ", ".join(literal))
    secret_keys = {k for _, k in refs}
    c.check(("auth.secrets[0]", "turn-secret") in refs, "auth.secrets[0] is the file /etc/tern/secrets/turn-secret")
    c.check(("auth.secrets[1]", "turn-secret-previous") in refs,
            "auth.secrets[1] is the file /etc/tern/secrets/turn-secret-previous (verifies during a rotation)")
    c.check(("admin.token", "admin-token") in refs, "admin.token is the file /etc/tern/secrets/admin-token")
    drain = dig(config, "drain", "timeoutSeconds")
    c.check(isinstance(drain, int) and drain > 0, "drain.timeoutSeconds is set", repr(drain))

    print("== DaemonSet")
    ds = one("DaemonSet")
    pod = dig(ds, "spec", "template", "spec", default={})
    labels = dig(ds, "spec", "template", "metadata", "labels", default={})
    sel = dig(ds, "spec", "selector", "matchLabels", default={})
    c.check(sel and all(labels.get(k) == v for k, v in sel.items()), "the DaemonSet's selector matches its pod labels")
    c.check(pod.get("hostNetwork") is True, "hostNetwork: true")
    c.check(pod.get("dnsPolicy") == "ClusterFirstWithHostNet", "dnsPolicy: ClusterFirstWithHostNet", repr(pod.get("dnsPolicy")))
    grace = pod.get("terminationGracePeriodSeconds")
    c.check(isinstance(grace, int) and isinstance(drain, int) and grace > drain,
            f"terminationGracePeriodSeconds ({grace}) > drain.timeoutSeconds ({drain})")
    us = dig(ds, "spec", "updateStrategy", default={})
    c.check(us.get("type") == "RollingUpdate" and dig(us, "rollingUpdate", "maxUnavailable") == 1,
            "updateStrategy RollingUpdate, maxUnavailable 1")
    containers = pod.get("containers", [])
    c.check(len(containers) == 1, "one container", str(len(containers)))
    ctr = containers[0] if containers else {}
    c.check(ctr.get("command") == COMMAND and not ctr.get("args"), f"command is {' '.join(COMMAND)}", repr(ctr.get("command")))
    c.check(str(ctr.get("image", "")).startswith("tern:"), "image is tern:<version> (the kustomization sets the registry)",
            repr(ctr.get("image")))
    c.check(not dig(ctr, "lifecycle", "preStop"), "no preStop hook (SIGTERM drains)")
    ports = {p.get("name"): p for p in ctr.get("ports", [])}

    def port_number(p):
        return ports[p]["containerPort"] if isinstance(p, str) and p in ports else p

    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = dig(ctr, probe, "httpGet", default={})
        c.check(get.get("path") == path and port_number(get.get("port")) == ADMIN_PORT,
                f"{probe} is httpGet {path} on port {ADMIN_PORT}", repr(get))
    res = ctr.get("resources", {})
    c.check(dig(res, "requests", "cpu") and dig(res, "requests", "memory"), "resource requests for cpu and memory")
    c.check(dig(res, "limits", "memory") and not dig(res, "limits", "cpu"), "a memory limit and no CPU limit")

    psc, csc = pod.get("securityContext", {}), ctr.get("securityContext", {})
    uid, gid = psc.get("runAsUser"), psc.get("runAsGroup")
    c.check(psc.get("runAsNonRoot") is True and isinstance(uid, int) and uid > 0 and isinstance(gid, int) and gid > 0,
            "runAsNonRoot with a fixed non-root uid and gid", f"uid {uid} gid {gid}")
    c.check(psc.get("fsGroup") == gid, "fsGroup is the gid (the volumes are readable by it)", repr(psc.get("fsGroup")))
    c.check(dig(psc, "seccompProfile", "type") == "RuntimeDefault" or dig(csc, "seccompProfile", "type") == "RuntimeDefault",
            "seccompProfile RuntimeDefault")
    c.check(csc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem")
    c.check(csc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation: false")
    c.check(dig(csc, "capabilities", "drop") == ["ALL"] and dig(csc, "capabilities", "add", default=[]) in ([], ["NET_BIND_SERVICE"]),
            "capabilities drop ALL, add only NET_BIND_SERVICE", repr(csc.get("capabilities")))
    c.check(not csc.get("privileged"), "not privileged")

    volumes = {v.get("name"): v for v in pod.get("volumes", [])}
    mounts = {m.get("mountPath"): m for m in ctr.get("volumeMounts", [])}
    cfg_mount = mounts.get(CONFIG_PATH) or mounts.get(os.path.dirname(CONFIG_PATH))
    cfg_vol = volumes.get(cfg_mount.get("name")) if cfg_mount else None
    c.check(bool(cfg_vol) and dig(cfg_vol, "configMap", "name") == dig(cm, "metadata", "name"),
            f"the ConfigMap is mounted at {CONFIG_PATH}")
    sec_mount = mounts.get(SECRETS_DIR.rstrip("/"))
    sec_vol = volumes.get(sec_mount.get("name")) if sec_mount else None
    secret_name = dig(sec_vol, "secret", "secretName")
    c.check(bool(secret_name) and not sec_mount.get("subPath"),
            f"a Secret is mounted as a directory (no subPath) at {SECRETS_DIR}", repr(sec_mount))
    items = dig(sec_vol, "secret", "items")
    if items is not None:
        provided = {i.get("path") for i in items}
        c.check(secret_keys <= provided, "the Secret's items provide every file the config names",
                f"config names {sorted(secret_keys)}, items give {sorted(provided)}")
    for vol, what in ((cfg_vol, "configMap"), (sec_vol, "secret")):
        mode = dig(vol, what, "defaultMode")
        c.check(mode is None or (mode & 0o040), f"the {what} volume is readable by the group (fsGroup)", oct(mode or 0))

    print("== PodDisruptionBudget")
    pdb = one("PodDisruptionBudget")
    c.check(dig(pdb, "spec", "maxUnavailable") == 1, "maxUnavailable: 1")
    psel = dig(pdb, "spec", "selector", "matchLabels", default={})
    c.check(psel and all(labels.get(k) == v for k, v in psel.items()), "its selector matches the DaemonSet's pods")

    print("== PodMonitor (monitoring.coreos.com/v1)")
    pm = one("PodMonitor")
    c.check(pm.get("apiVersion") == "monitoring.coreos.com/v1", "apiVersion monitoring.coreos.com/v1")
    check_podmonitor(pm, c)
    msel = dig(pm, "spec", "selector", "matchLabels", default={})
    c.check(msel and all(labels.get(k) == v for k, v in msel.items()), "its selector matches the DaemonSet's pods")
    eps = dig(pm, "spec", "podMetricsEndpoints", default=[])
    ep = eps[0] if eps else {}
    c.check(len(eps) == 1 and ep.get("path") == "/metrics" and port_number(ep.get("port")) == ADMIN_PORT,
            f"one endpoint: /metrics on the container port {ADMIN_PORT}", repr(ep))
    auth = ep.get("authorization", {})
    c.check(auth.get("type") == "Bearer" and dig(auth, "credentials", "name") == secret_name
            and dig(auth, "credentials", "key") == "admin-token",
            f"Bearer authorization from Secret {secret_name}, key admin-token", repr(auth))

    print("== Containerfile")
    try:
        with open(os.path.join(d, "Containerfile")) as f:
            cf = f.read()
    except OSError as e:
        cf = ""
        c.check(False, "deploy/kubernetes/Containerfile exists", str(e))
    c.check(re.search(r"^FROM debian:12-slim\s*$", cf, re.M) is not None, "FROM debian:12-slim")
    c.check(re.search(r"apt-get install -y .*\./tern_\*\.deb", cf) is not None, "installs the .deb with apt-get")
    c.check("rm -f /etc/tern/turn-secret" in cf, "removes the secret the package's postinst generates")
    user = re.findall(r"^USER\s+(\S+)\s*$", cf, re.M)
    c.check(user == [f"{uid}:{gid}"], f"USER {uid}:{gid}, the DaemonSet's runAsUser:runAsGroup", repr(user))

    if args.kubectl:
        print(f"== {args.kubectl} kustomize")
        try:
            r = subprocess.run([args.kubectl, "kustomize", d], capture_output=True, text=True, timeout=60)
            ok = r.returncode == 0
            rendered = [x for x in yaml.safe_load_all(r.stdout) if x] if ok else []
            kinds = sorted(x.get("kind") for x in rendered)
            expected = sorted(doc["kind"] for docs in manifests.values() for doc in docs)
            c.check(ok and kinds == expected, "the kustomization renders every resource", r.stderr.strip() or repr(kinds))
            images = [dig(x, "spec", "template", "spec", "containers", 0, "image") for x in rendered if x.get("kind") == "DaemonSet"]
            c.check(len(images) == 1 and "/" in str(images[0]), "the rendered DaemonSet's image names a registry", repr(images))
        except (subprocess.TimeoutExpired, yaml.YAMLError) as e:
            c.check(False, "the kustomization renders", str(e))
    else:
        print("== kubectl kustomize: skipped (no kubectl on PATH)")

    print(f"== tern check-config on the ConfigMap's config.json ({args.tern_bin})")
    if not (os.path.isfile(args.tern_bin) and os.access(args.tern_bin, os.X_OK)):
        print(f"  skip  {args.tern_bin} does not exist (set TERN_BIN or build tern first)")
    elif config:
        tmp = tempfile.mkdtemp(prefix="tern-k8s-")
        try:
            text = dig(cm, "data", "config.json")
            for key in sorted(secret_keys):
                fd = os.open(os.path.join(tmp, key), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(secrets.token_hex(24) + "\n")  # a trailing newline, as files often have
            text = text.replace(SECRETS_DIR, tmp + "/")
            path = os.path.join(tmp, "config.json")
            with open(path, "w") as f:
                f.write(text)
            try:
                r = subprocess.run([args.tern_bin, "check-config", path], capture_output=True, text=True, timeout=60)
                out = (r.stdout + r.stderr).strip()
                c.check(r.returncode == 0, "tern check-config accepts it (secrets from generated test files)", out)
                if r.returncode == 0:
                    print("        " + out.replace("\n", "\n        "))
            except subprocess.TimeoutExpired:
                c.check(False, "tern check-config accepts it", "timed out after 60 s")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    print()
    if c.failed:
        print(f"validate-kubernetes: FAILED {len(c.failed)} of {c.passed + len(c.failed)} checks:")
        for f in c.failed:
            print(f"  - {f}")
        return 1
    print(f"validate-kubernetes: OK, all {c.passed} checks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
