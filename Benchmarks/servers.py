"""The servers under test (Tern in user space, Tern with the TC offload, coturn, the bare forwarder)
and one run of the load generator against one of them (or against nothing: the generator alone)."""
import json, os, shutil, signal, subprocess, sys, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "Benchmarks")
TERN = os.environ.get("TERN_BIN") or os.path.join(ROOT, ".build", "release", "tern")
LOAD = os.path.join(BENCH, ".build", "release", "tern-load")
FORWARDER = os.path.join(BENCH, ".build", "release", "bare-forwarder")
TURNSERVER = shutil.which("turnserver") or "/usr/bin/turnserver"
SERVER_CPU, LOAD_CPU = "0", "1"
PORT = 34780
ADMIN_PORT = 34788
SINK_PORT = 34790
RELAY_RANGE = (10000, 29999)  # below the ephemeral range, so the generator's sockets never collide
LABELS = {"tern": "Tern", "tern-offload": "Tern offload", "coturn": "coturn", "forwarder": "bare forwarder"}
# Extra Tern config (run.py --tern-config-json), deep-merged into both Tern servers' config, to compare variants.
TERN_EXTRA = {}


def deep_merge(base, extra):
    """`extra` merged into `base` (in place): dicts merge key by key, anything else replaces."""
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            deep_merge(base[k], v)
        else:
            base[k] = v
    return base


def log(*a):
    print(*a, file=sys.stderr, flush=True)


class Server:
    """One server process pinned to SERVER_CPU."""

    def __init__(self, name, argv, tmp, ready_delay=1.0, admin=False):
        self.name = name
        self.admin = admin
        self.log_path = os.path.join(tmp, f"{name}.stderr")
        with open(self.log_path, "wb") as err:
            self.proc = subprocess.Popen(["taskset", "-c", SERVER_CPU] + argv, stdout=subprocess.DEVNULL, stderr=err,
                                         start_new_session=True)
        if admin:
            self.wait_admin()
        else:
            time.sleep(ready_delay)
        if self.proc.poll() is not None:
            raise RuntimeError(f"{name} exited at start ({self.proc.returncode}): {' '.join(argv)}\n{self.stderr_tail()}")

    def stderr_tail(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    @property
    def pid(self):
        return self.proc.pid

    def wait_admin(self, seconds=20):
        """Polls GET /stats until the admin endpoint answers (the listeners are up by then)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start ({self.proc.returncode}): {self.stderr_tail()}")
            try:
                self.stats()
                time.sleep(0.3)
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"{self.name}: no answer from the admin endpoint on {ADMIN_PORT} within {seconds} s")

    def stats(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{ADMIN_PORT}/stats", timeout=5) as r:
            return json.load(r)

    def kernel_counters(self):
        return dict((self.stats().get("offload") or {}).get("kernel") or {}) if self.admin else None

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


class Generator:
    """No server: `tern-load --mode direct` sends the same load straight to its own sink sockets."""
    name = "generator alone"
    pid = 0
    admin = False

    def kernel_counters(self):
        return None


def tern_config(offload):
    config = {
        "realm": "bench", "workers": 1,
        "listeners": [{"transport": "udp", "address": "127.0.0.1", "port": PORT}],
        "relay": {"ipv4": "127.0.0.1", "portRange": list(RELAY_RANGE)},
        "auth": {"users": {"bench": "bench"}},
        "peers": {"allow": ["127.0.0.0/8"]},
        # coturn runs with its quotas off (--user-quota 0 --total-quota 0): Tern's abuse limits are off too.
        "limits": {"allocationsPerUser": 100000, "allocationsPerIP": 100000, "allocationsTotal": 100000,
                   "allocationRatePerIP": 1000000, "unauthenticatedRatePerIP": 1000000,
                   "bandwidthPerAllocation": 0, "bandwidthPerUser": 0, "maxLifetime": 3600},
        # Both Tern cases answer /stats on loopback (idle in between): the offload case checks that the
        # classifier is attached, and both report what the kernel relayed.
        "admin": {"enabled": True, "address": "127.0.0.1", "port": ADMIN_PORT},
        "log": {"level": "warning"},
        "drain": {"timeoutSeconds": 0},
    }
    deep_merge(config, json.loads(json.dumps(TERN_EXTRA)))
    if offload:
        config.setdefault("io", {})["offload"] = "tc"
    return config


def start_tern(tmp, offload=False):
    name = "tern-offload" if offload else "tern"
    path = os.path.join(tmp, f"{name}.json")
    with open(path, "w") as f:
        json.dump(tern_config(offload), f)
    server = Server(name, [TERN, "serve", "--config", path], tmp, admin=True)
    o = server.stats().get("offload") or {}
    log(f"  offload: mode {o.get('mode')} active {o.get('active')} attachment {o.get('attachment')} "
        f"interfaces {o.get('interfaces')} {o.get('unavailableReason') or ''}")
    if offload and not o.get("active"):
        server.stop()
        raise RuntimeError(f"Tern offload is NOT active (io.offload \"tc\"): {o.get('unavailableReason') or o}")
    if not offload and o.get("active"):
        server.stop()
        raise RuntimeError("Tern user space reports the offload active")
    return server


def start_coturn(tmp):
    return Server("coturn", [
        TURNSERVER, "-n", "--no-cli", "--no-tls", "--no-dtls", "--no-tcp-relay",
        "--listening-ip", "127.0.0.1", "--listening-port", str(PORT), "--relay-ip", "127.0.0.1",
        "--min-port", str(RELAY_RANGE[0]), "--max-port", str(RELAY_RANGE[1]),
        "--lt-cred-mech", "--user", "bench:bench", "--realm", "bench",
        "--relay-threads", "1", "--allow-loopback-peers", "--user-quota", "0", "--total-quota", "0",
        "--no-stdout-log", "--log-file", os.path.join(tmp, "coturn.log"), "--pidfile", os.path.join(tmp, "coturn.pid"),
        "--stale-nonce", "0", "--max-allocate-lifetime", "3600",
    ], tmp, ready_delay=1.5)


def start_forwarder(tmp):
    return Server("forwarder", [FORWARDER, str(PORT), str(SINK_PORT)], tmp, ready_delay=0.3)


STARTERS = {"tern": start_tern, "tern-offload": lambda tmp: start_tern(tmp, offload=True),
            "coturn": start_coturn, "forwarder": start_forwarder}


def load(server, *, duration, gso, mode="turn", allocations=1, size=100, rate=50000, idle=False, mix=False, peer_batch=1,
         two_way=False):
    """One tern-load run; returns its JSON, with what the kernel's classifier counted over it (Tern).
    `two_way`: the smooth two-way load with an echoing peer, `rate` per leg; `gso` then sends each pair
    as one UDP GSO send."""
    if isinstance(server, Generator):
        mode = "direct"
    sink_port = SINK_PORT if mode == "raw" else 0
    argv = ["taskset", "-c", LOAD_CPU, LOAD, "--server", f"127.0.0.1:{PORT}", "--mode", mode,
            "--allocations", str(allocations), "--size", str(size), "--rate", str(rate),
            "--duration", str(duration), "--sink-port", str(sink_port)]
    if server.pid:
        argv += ["--server-pid", str(server.pid)]
    if gso and not mix:
        argv.append("--gso")
    if two_way:
        argv.append("--two-way")
    if idle:
        argv.append("--idle")
    if mix:
        argv += ["--mix", "--peer-batch", str(peer_batch)]
    before = server.kernel_counters()
    out = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    line = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "{}"
    result = json.loads(line)
    if out.returncode != 0 or "error" in result:
        raise RuntimeError(f"tern-load failed against {server.name}: {line} {out.stderr[-500:]}")
    if before is not None and not idle:
        after = server.kernel_counters()
        kernel = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        result["kernel"] = kernel
        relayed = kernel.get("relayed_to_peer", 0) + kernel.get("relayed_to_client", 0)
        result["kernel_share"] = round(relayed / result["received"], 4) if result.get("received") else 0
    return result
