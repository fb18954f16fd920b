#!/usr/bin/env python3
"""Tern against coturn on this machine, side by side in one run, and against a bare forwarder.

Each server runs pinned to CPU 0 (`taskset -c 0`, one worker / one relay thread); the load generator
(`tern-load`, built from Benchmarks/) runs pinned to CPU 1. Cases:

  * fixed offered rates (K = 1, 100, 1000 allocations, 100 B and 1200 B): relayed packets/s, loss,
    latency p50/p99/p99.9, server CPU seconds per million relayed packets (/proc/PID/stat);
  * the highest loss-free rate (loss <= 0.1%) with K = 100, found by stepping the offered rate;
  * saturation (the generator sends as fast as it can);
  * one allocation carrying a 1200 B stream (video-like), where UDP GSO applies;
  * RSS per idle allocation with 10,000 allocations, and allocations set up per second.

Writes BENCHMARKS.md (the table, the ratios, the machine and the date) and prints the ratios.
Usage: Benchmarks/run.sh [--quick]
"""
import datetime, json, os, platform, shutil, signal, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "Benchmarks")
TERN = os.path.join(ROOT, ".build", "release", "tern")
LOAD = os.path.join(BENCH, ".build", "release", "tern-load")
FORWARDER = os.path.join(BENCH, ".build", "release", "bare-forwarder")
TURNSERVER = shutil.which("turnserver") or "/usr/bin/turnserver"
QUICK = "--quick" in sys.argv
DURATION = 2.0 if QUICK else 3.0
SERVER_CPU, LOAD_CPU = "0", "1"
PORT = 34780
RELAY_RANGE = (10000, 29999)  # below the ephemeral range, so the generator's sockets never collide


def log(*a):
    print(*a, file=sys.stderr, flush=True)


class Server:
    """One server process pinned to SERVER_CPU."""

    def __init__(self, name, argv, ready_delay=1.0):
        self.name = name
        self.proc = subprocess.Popen(["taskset", "-c", SERVER_CPU] + argv, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(ready_delay)
        if self.proc.poll() is not None:
            raise RuntimeError(f"{name} exited at start ({self.proc.returncode}): {' '.join(argv)}")

    @property
    def pid(self):
        return self.proc.pid

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def start_tern(tmp):
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
        "admin": {"enabled": False},
        "log": {"level": "warning"},
        "drain": {"timeoutSeconds": 0},
    }
    path = os.path.join(tmp, "tern.json")
    with open(path, "w") as f:
        json.dump(config, f)
    return Server("tern", [TERN, "serve", "--config", path])


def start_coturn(tmp):
    return Server("coturn", [
        TURNSERVER, "-n", "--no-cli", "--no-tls", "--no-dtls", "--no-tcp-relay",
        "--listening-ip", "127.0.0.1", "--listening-port", str(PORT), "--relay-ip", "127.0.0.1",
        "--min-port", str(RELAY_RANGE[0]), "--max-port", str(RELAY_RANGE[1]),
        "--lt-cred-mech", "--user", "bench:bench", "--realm", "bench",
        "--relay-threads", "1", "--allow-loopback-peers", "--user-quota", "0", "--total-quota", "0",
        "--no-stdout-log", "--log-file", os.path.join(tmp, "coturn.log"), "--pidfile", os.path.join(tmp, "coturn.pid"),
        "--stale-nonce", "0", "--max-allocate-lifetime", "3600",
    ], ready_delay=1.5)


def start_forwarder(sink_port):
    return Server("bare forwarder", [FORWARDER, str(PORT), str(sink_port)], ready_delay=0.3)


def load(server, *, mode="turn", allocations=1, size=100, rate=50000, idle=False, sink_port=0):
    argv = ["taskset", "-c", LOAD_CPU, LOAD, "--server", f"127.0.0.1:{PORT}", "--mode", mode,
            "--allocations", str(allocations), "--size", str(size), "--rate", str(rate),
            "--duration", str(DURATION), "--server-pid", str(server.pid), "--sink-port", str(sink_port), "--gso"]
    if idle:
        argv.append("--idle")
    out = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    line = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "{}"
    result = json.loads(line)
    if out.returncode != 0 or "error" in result:
        raise RuntimeError(f"tern-load failed against {server.name}: {line} {out.stderr[-500:]}")
    return result


def loss_free_rate(server, *, size, allocations, mode="turn", sink_port=0, start=60000, step=20000, limit=600000):
    """The highest relayed rate with loss <= 0.1% while stepping the offered rate up by `step`. Stops
    after two steps in a row that lost more, or that the generator itself could not offer (then the
    result is bounded by the generator, and says so with `generator_limited`)."""
    best = None
    rate = start
    misses = 0
    while rate <= limit and misses < 2:
        r = load(server, mode=mode, allocations=allocations, size=size, rate=rate, sink_port=sink_port)
        offered = r["sent"] / r["send_s"]
        generator_limited = offered < 0.97 * rate
        clean = r["loss"] <= 0.001
        log(f"    {server.name} {size} B x{allocations} offered {rate} (generator reached {offered:.0f}): "
            f"relayed {r['relayed_pps']:.0f}/s loss {100 * r['loss']:.3f}%")
        if clean and (best is None or r["relayed_pps"] > best["relayed_pps"]):
            best = dict(r, generator_limited=generator_limited)
        misses = misses + 1 if (not clean or generator_limited) else 0
        rate += step
    return best


def main():
    for path in (TERN, LOAD, FORWARDER):
        if not os.path.exists(path):
            sys.exit(f"missing {path}: run Benchmarks/run.sh, which builds it")
    tmp = tempfile.mkdtemp(prefix="tern-bench-")
    results = {"tern": {}, "coturn": {}, "forwarder": {}}
    sizes = [100, 1200]
    fixed_allocations = [1, 100] if QUICK else [1, 100, 1000]
    try:
        for name, starter in (("tern", start_tern), ("coturn", start_coturn)):
            log(f"== {name}")
            server = starter(tmp)
            try:
                r = results[name]
                for size in sizes:
                    for k in fixed_allocations:
                        key = f"fixed_{size}_{k}"
                        if (size, k) == (100, 100):
                            # The latency target's case: p50 moves by 20-40 us between runs here, so it
                            # runs three times and the run with the median p50 is reported.
                            runs = sorted((load(server, allocations=k, size=size, rate=50000) for _ in range(3)),
                                          key=lambda x: x["p50_us"])
                            r[key] = dict(runs[1], p50_runs=[x["p50_us"] for x in runs])
                        else:
                            r[key] = load(server, allocations=k, size=size, rate=50000)
                        log(f"  {key}: {r[key]}")
                    r[f"lossfree_{size}"] = loss_free_rate(server, size=size, allocations=100)
                    log(f"  lossfree_{size}: {r[f'lossfree_{size}']}")
                    r[f"saturation_{size}"] = load(server, allocations=100, size=size, rate=0)
                    log(f"  saturation_{size}: {r[f'saturation_{size}']}")
                r["stream_1200"] = load(server, allocations=1, size=1200, rate=50000)
                log(f"  stream_1200: {r['stream_1200']}")
                # Last: 10,000 idle allocations (coturn takes a while to end them all afterwards).
                idle_count = 2000 if QUICK else 10000
                r["idle"] = load(server, allocations=idle_count, idle=True)
                log(f"  idle: {r['idle']}")
            finally:
                server.stop()
        # The ceiling: the same generator through a forwarder that does no TURN work.
        log("== bare forwarder")
        sink_port = 34790
        server = start_forwarder(sink_port)
        try:
            r = results["forwarder"]
            for size in sizes:
                r[f"fixed_{size}_100"] = load(server, mode="raw", allocations=100, size=size, rate=50000, sink_port=sink_port)
                r[f"lossfree_{size}"] = loss_free_rate(server, mode="raw", size=size, allocations=100, sink_port=sink_port)
                log(f"  lossfree_{size}: {r[f'lossfree_{size}']}")
        finally:
            server.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    with open(os.path.join(BENCH, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    write_report(results)


def fmt(x, digits=0):
    return "-" if x is None else f"{x:,.{digits}f}"


def ratio(a, b, invert=False):
    if a is None or b is None or a == 0 or b == 0:
        return "-"
    return f"{(b / a if invert else a / b):.2f}x"


def write_report(results):
    t, c, f = results["tern"], results["coturn"], results["forwarder"]
    g = lambda d, k, m: (d.get(k) or {}).get(m)
    bound = lambda d, size: " (generator-bound)" if g(d, f"lossfree_{size}", "generator_limited") else ""
    machine = f"{platform.node()}, {os.cpu_count()} vCPU, {platform.processor() or platform.machine()}, Linux {platform.release()}"
    try:
        with open("/proc/cpuinfo") as ci:
            model = next((l.split(":", 1)[1].strip() for l in ci if l.startswith("model name")), "")
        machine += f", {model}"
    except OSError:
        pass
    coturn_version = subprocess.run([TURNSERVER, "--version"], capture_output=True, text=True).stdout.strip() or "?"
    lines = [
        "# Benchmarks: Tern against coturn",
        "",
        f"Run on {datetime.date.today().isoformat()} on {machine}; coturn {coturn_version}.",
        "Generated by `Benchmarks/run.sh`" + (" --quick" if QUICK else "") + " (one run, both servers under the same load, one after the other).",
        "Each server is pinned to CPU 0 with one worker (Tern `workers: 1`, coturn `--relay-threads 1`); the load",
        "generator (`Benchmarks/Sources/TernLoad`, not the server) is pinned to CPU 1. Every allocation has a channel",
        f"to a sink socket of the generator, which times each message (HdrHistogram). {DURATION:.0f} s per case. CPU is the server's",
        "utime+stime from /proc/PID/stat over the case; loss counts what the sink never got.",
        "",
        "## Summary (Tern / coturn)",
        "",
        "| Target | Tern | coturn | Ratio | Goal |",
        "|---|---|---|---|---|",
    ]
    for size in (100, 1200):
        lt, lc = g(t, f"lossfree_{size}", "relayed_pps"), g(c, f"lossfree_{size}", "relayed_pps")
        lines.append(f"| Highest loss-free rate, {size} B, 100 allocations (pkt/s) | {fmt(lt)}{bound(t, size)} | {fmt(lc)}{bound(c, size)} | {ratio(lt, lc)} | >= 1.5x |")
    for size in (100, 1200):
        ct, cc = g(t, f"fixed_{size}_100", "cpu_s_per_mpkt"), g(c, f"fixed_{size}_100", "cpu_s_per_mpkt")
        lines.append(f"| CPU per relayed packet at 50k pkt/s, {size} B, 100 allocations (us) | {fmt(ct, 2)} | {fmt(cc, 2)} | {ratio(ct, cc)} | <= 1.0x |")
    st, sc = g(t, "stream_1200", "cpu_s_per_mpkt"), g(c, "stream_1200", "cpu_s_per_mpkt")
    lines.append(f"| One allocation, 1200 B stream at 50k pkt/s: CPU per packet (us) | {fmt(st, 2)} | {fmt(sc, 2)} | {ratio(st, sc)} | <= 0.6x |")
    rt, rc = g(t, "idle", "rss_per_allocation_kib"), g(c, "idle", "rss_per_allocation_kib")
    lines.append(f"| RSS per idle allocation at {g(t, 'idle', 'allocations') or '-'} allocations (KiB) | {fmt(rt, 2)} | {fmt(rc, 2)} | {ratio(rt, rc)} | <= 4 KiB |")
    pt, pc = g(t, "fixed_100_100", "p50_us"), g(c, "fixed_100_100", "p50_us")
    runs = lambda d: "" if not g(d, "fixed_100_100", "p50_runs") else " (runs: " + ", ".join(fmt(x) for x in g(d, "fixed_100_100", "p50_runs")) + ")"
    lines.append(f"| Latency p50 at 50k pkt/s, 100 B, 100 allocations, median of 3 runs (us) | {fmt(pt)}{runs(t)} | {fmt(pc)}{runs(c)} | {ratio(pt, pc)} | <= 1.0x |")
    for size in (100, 1200):
        lt, lf = g(t, f"lossfree_{size}", "relayed_pps"), g(f, f"lossfree_{size}", "relayed_pps")
        share = "-" if not lt or not lf else f"{100 * lt / lf:.0f}%"
        lines.append(f"| Share of the bare forwarder's loss-free rate, {size} B | {fmt(lt)}{bound(t, size)} | forwarder {fmt(lf)}{bound(f, size)} | {share} | >= 85% |")
    ut, uc = g(t, "idle", "setup_per_s"), g(c, "idle", "setup_per_s")
    lines.append(f"| Allocations set up per second (Allocate with auth, in batches of 256) | {fmt(ut)} | {fmt(uc)} | {ratio(ut, uc)} | |")
    gen = max((r.get("sent", 0) / r["send_s"]) for d in (t, c, f) for k, r in d.items() if r and "send_s" in r)
    lines += ["", f"The generator's own ceiling on this machine (its fastest send rate in any case) was {gen:,.0f} messages/s. "
              "It sends each burst of up to 8 messages to one socket as one UDP GSO send, so that its core stays ahead of the "
              "server's (on 2 vCPUs the sender's core pays the kernel's loopback delivery into the receiving socket); the server "
              "still receives one datagram per message. The bare forwarder is the plain recvmmsg -> sendmmsg loop the issue "
              "describes, without GSO on its sends: Tern's GSO sends (equal-size runs to one peer) can take it past that ceiling."]
    lines += ["", "## Every case", "",
              "| Server | Case | Offered pkt/s | Relayed pkt/s | Loss | p50 us | p99 us | p99.9 us | CPU s / M pkt |",
              "|---|---|---|---|---|---|---|---|---|"]
    for name, label in (("tern", "Tern"), ("coturn", "coturn"), ("forwarder", "bare forwarder")):
        for key, r in results[name].items():
            if key == "idle" or not r:
                continue
            offered = "max" if r.get("offered_pps") == 0 else fmt(r.get("offered_pps"))
            lines.append(f"| {label} | {key} ({r.get('allocations')} alloc, {r.get('size')} B) | {offered} | {fmt(r.get('relayed_pps'))} | "
                         f"{100 * r.get('loss', 0):.3f}% | {fmt(r.get('p50_us'))} | {fmt(r.get('p99_us'))} | {fmt(r.get('p999_us'))} | {fmt(r.get('cpu_s_per_mpkt'), 2)} |")
    with open(os.path.join(ROOT, "BENCHMARKS.md"), "w") as out:
        out.write("\n".join(lines) + "\n")
    print("\n".join(lines[9:22]))


if __name__ == "__main__":
    main()
