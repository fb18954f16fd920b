#!/usr/bin/env python3
"""Tern (user space), Tern with the kernel offload (io.offload "tc") and coturn on this machine, side
by side in one run, and against a bare forwarder.

Each server runs pinned to CPU 0 (`taskset -c 0`, one worker / one relay thread); the load generator
(`tern-load`, built from Benchmarks/) runs pinned to CPU 1. Cases:

  * the headline, two-way smooth load (`twoway`): K = 10, 100, 1000 allocations, 100 B, each allocation a
    jittered stream of singles and pairs from its client, and the peer echoes every datagram back through the
    server; fixed rates of 25,000 and 50,000 pkt/s each way (median of 3 runs by p50) and the highest loss-free
    rate each way;
  * fixed offered rates (K = 1, 100, 1000 allocations, 100 B and 1200 B): relayed packets/s, loss,
    latency p50/p99/p99.9, server CPU per relayed packet (/proc/PID/stat);
  * the highest loss-free rate (loss <= 0.1%) with K = 100, found by stepping the offered rate (for the
    offload up to the generator's ceiling, saying so when the generator and not loss stopped it);
  * saturation (the generator sends as fast as it can);
  * one allocation carrying a 1200 B stream (video-like);
  * the realistic mix: 1,000 allocations, each a jittered stream both ways (80% audio-like, 20%
    video-like), at fixed offered totals;
  * RSS per idle allocation with 10,000 allocations, and allocations set up per second.

Every case also records the whole machine's busy CPU time (/proc/stat) per relayed packet: with the
offload the relaying runs in softirq on whichever core received the packet, not in the server process.
The generator's own machine cost is measured alone (`--mode direct`: the same load straight to its sink
sockets) and every figure is also given net of it.

Writes BENCHMARKS.md and Benchmarks/results.json (or into --out DIR) and prints the summaries.
Usage: Benchmarks/run.sh [--quick] [--servers tern,tern-offload,coturn,forwarder] [--only CASES] ...
"""
import argparse, json, os, shutil, tempfile

import servers

from servers import BENCH, FORWARDER, LOAD, ROOT, STARTERS, TERN, TURNSERVER, Generator, load, log
import report

CASES = ["twoway", "fixed", "lossfree_100", "lossfree_1200", "saturation", "stream", "mix", "idle"]
SERVERS = ["tern", "tern-offload", "coturn", "forwarder"]


def arguments():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer cases (K = 1, 100; 2,000 idle), 2 s each")
    p.add_argument("--servers", default=",".join(SERVERS), help="comma-separated, from: " + ", ".join(SERVERS))
    p.add_argument("--only", default=",".join(CASES), help="comma-separated case groups, from: " + ", ".join(CASES))
    p.add_argument("--mix-rates", default="50000,100000", help="the mix's offered totals, both legs together (pkt/s)")
    p.add_argument("--mix-allocations", type=int, default=1000)
    p.add_argument("--mix-peer-batch", type=int, default=1,
                   help="the mix's peer sends its due datagrams in sendmmsg batches of up to this many (default 1: one "
                        "system call each; more is cheaper for the generator but adds the earlier datagrams' send time "
                        "to the later ones' latency)")
    p.add_argument("--twoway-allocations", help="the two-way cases' allocation counts (default 10,100,1000; 10,1000 with --quick)")
    p.add_argument("--twoway-rates", default="25000,50000", help="the two-way cases' fixed rates, pkt/s per leg (each way)")
    p.add_argument("--twoway-repeats", type=int, help="runs per fixed two-way case, the median by p50 reported (default 3, 1 with --quick)")
    p.add_argument("--duration", type=float, help="seconds per case (default 3, 1.5 with --quick)")
    p.add_argument("--lossfree-duration", type=float, help="seconds per step of a loss-free search (default: 2, or --duration if shorter)")
    p.add_argument("--tern-config-json", help="JSON deep-merged into both Tern servers' config (e.g. '{\"io\": {...}}'), to compare variants")
    p.add_argument("--label", help="appended to Tern's name in the report (with --tern-config-json)")
    p.add_argument("--gso", choices=["auto", "on", "off"], default="auto",
                   help="how the generator sends each burst of the burst cases (the mix never bursts): on, as one UDP GSO "
                        "send; off, as one sendmmsg of single datagrams. Over lo a GSO send reaches the TC classifier as one "
                        "GSO packet, which it leaves to user space, so the offload relays (almost) nothing with it. auto "
                        "(default): on for coturn, Tern and the forwarder (as before), off for Tern offload, and Tern "
                        "also runs the offload's comparison cases with it off")
    p.add_argument("--out", help="directory for BENCHMARKS.md and results.json (default: the repository's)")
    a = p.parse_args()
    a.servers = [s for s in a.servers.split(",") if s]
    a.only = set(c for c in a.only.split(",") if c)
    for s in a.servers:
        if s not in SERVERS:
            p.error(f"unknown server {s!r}")
    for c in a.only:
        if c not in CASES:
            p.error(f"unknown case group {c!r}")
    a.mix_rates = [int(r) for r in a.mix_rates.split(",") if r]
    a.duration = a.duration or (1.5 if a.quick else 3.0)
    a.lossfree_duration = a.lossfree_duration or min(2.0, a.duration)
    a.twoway_allocations = [int(k) for k in (a.twoway_allocations or ("10,1000" if a.quick else "10,100,1000")).split(",") if k]
    a.twoway_rates = [int(r) for r in a.twoway_rates.split(",") if r]
    a.twoway_repeats = a.twoway_repeats or (1 if a.quick else 3)
    a.tern_config = json.loads(a.tern_config_json) if a.tern_config_json else {}
    return a


def loss_free_rate(server, run, *, size, allocations, mode="turn", start=60000, step=20000, limit=600000, factor=None,
                   two_way=False):
    """The highest relayed rate with loss <= 0.1% while stepping the offered rate up by `step` (or, with
    `factor`, multiplying it by that, then one step halfway between the best clean rate and the next).
    Stops after two steps in a row that lost more, or that the generator itself could not offer, or at
    `limit`. The result says which (`stopped_by`: "loss", "generator" or "limit") and whether its own
    run was bounded by the generator (`generator_limited`); `steps` lists every step. `two_way`: the rate
    is per leg, loss is the worse leg's, and what the generator offered is the clients' leg."""
    best, steps, misses = None, [], []

    def attempt(rate):
        nonlocal best
        r = run(server, mode=mode, allocations=allocations, size=size, rate=rate, **({"two_way": True} if two_way else {}))
        if two_way:
            offered, loss = r["legs"]["to_peer"]["sent_pps"], max(leg["loss"] for leg in r["legs"].values())
        else:
            offered, loss = r["sent"] / r["send_s"], r["loss"]
        generator_limited = offered < 0.97 * rate
        clean = loss <= 0.001
        steps.append({"rate": rate, "generator_reached": round(offered), "relayed_pps": r["relayed_pps"], "loss": loss,
                      "kernel_share": r.get("kernel_share")})
        log(f"    {server.name} {size} B x{allocations} offered {rate}{' each way' if two_way else ''} (generator reached "
            f"{offered:.0f}): relayed {r['relayed_pps']:.0f}/s loss {100 * loss:.3f}%"
            + (f" kernel share {100 * r['kernel_share']:.1f}%" if "kernel_share" in r else ""))
        if clean and (best is None or r["relayed_pps"] > best["relayed_pps"]):
            best = dict(r, generator_limited=generator_limited)
        return clean, generator_limited

    rate, first_miss = start, None
    while rate <= limit and len(misses) < 2:
        clean, generator_limited = attempt(rate)
        if clean and not generator_limited:
            misses, first_miss = [], None
        else:
            misses.append("generator" if generator_limited and clean else "loss")
            first_miss = first_miss or rate
        rate = int(round(rate * factor, -3)) if factor else rate + step
    if factor and best is not None and first_miss and "loss" in misses:
        middle = int(round((best["offered_pps"] // (2 if two_way else 1) + first_miss) / 2, -3))
        if middle > best["offered_pps"] // (2 if two_way else 1) * 1.05:
            attempt(middle)
    if best is not None:
        # Loss while the generator also fell short counts as loss: the server dropped what it got.
        best["stopped_by"] = "limit" if len(misses) < 2 else ("generator" if "generator" in misses else "loss")
        best["steps"] = steps
    return best


def uses_gso(args, name):
    return args.gso == "on" or (args.gso == "auto" and name != "tern-offload")


def generator_key(spec):
    kind = "twoway" if spec.get("two_way") else "mix" if spec["mix"] else ("burst-gso" if spec["gso"] else "burst")
    return f"{kind}_{spec['allocations']}_{spec['size']}_{spec['rate']}"


def run_server(name, results, generator_needs, args, tmp):
    quick, groups = args.quick, args.only
    gso = uses_gso(args, name)
    r = results.setdefault(name, {})

    def run(server, gso=gso, **kw):
        return load(server, duration=kw.pop("duration", args.duration), gso=gso, **kw)

    def search_run(server, **kw):
        # Each step of a loss-free search runs --lossfree-duration seconds.
        return run(server, duration=args.lossfree_duration, **kw)

    def needs(result, rate, gso=gso, mix=False, allocations=1, size=100, two_way=False):
        # The same load with no server in between: what the generator itself costs the machine.
        spec = {"rate": rate, "gso": gso and not mix and not two_way, "mix": mix, "allocations": allocations, "size": size,
                "two_way": two_way}
        result["generator_key"] = generator_key(spec)
        generator_needs[result["generator_key"]] = spec

    def case(server, key, gen=None, gso=gso, **kw):
        r[key] = run(server, gso=gso, **kw)
        if gen is not None:
            needs(r[key], gen["rate"], gso=gso, mix=kw.get("mix", False), allocations=kw.get("allocations", 1), size=kw.get("size", 100))
        log(f"  {key}: {summary(r[key])}")

    log(f"== {name}")
    server = STARTERS[name](tmp)
    try:
        if name == "forwarder":
            for size in (100, 1200):
                if "fixed" in groups:
                    case(server, f"fixed_{size}_100", gen={"rate": 50000}, mode="raw", allocations=100, size=size, rate=50000)
                if f"lossfree_{size}" in groups:
                    best = r[f"lossfree_{size}"] = loss_free_rate(server, search_run, mode="raw", size=size, allocations=100)
                    if best:
                        needs(best, best["offered_pps"], allocations=100, size=size)
                    log(f"  lossfree_{size}: {summary(best)}")
            return
        if "twoway" in groups:
            run_twoway(server, r, needs, args)
        for size in (100, 1200):
            if "fixed" in groups:
                for k in ([1, 100] if quick else [1, 100, 1000]):
                    key = f"fixed_{size}_{k}"
                    if (size, k) == (100, 100):
                        # The latency target's case: p50 moves by 20-40 us between runs here, so it runs
                        # three times and the run with the median p50 is reported.
                        runs = sorted((run(server, allocations=k, size=size, rate=50000) for _ in range(3)), key=lambda x: x["p50_us"])
                        r[key] = dict(runs[1], p50_runs=[x["p50_us"] for x in runs])
                        needs(r[key], 50000, allocations=k, size=size)
                        log(f"  {key}: {summary(r[key])}")
                    else:
                        case(server, key, gen={"rate": 50000}, allocations=k, size=size, rate=50000)
            if f"lossfree_{size}" in groups:
                # The offload's search goes on up to the generator's ceiling (it stops there, and says so).
                limit = 1_200_000 if name == "tern-offload" else 600_000
                best = loss_free_rate(server, search_run, size=size, allocations=100, limit=limit)
                r[f"lossfree_{size}"] = best
                if best:
                    needs(best, best["offered_pps"], allocations=100, size=size)
                log(f"  lossfree_{size}: {summary(best)}")
            if "saturation" in groups:
                case(server, f"saturation_{size}", allocations=100, size=size, rate=0)
            if name == "tern" and gso and args.gso == "auto" and "tern-offload" in args.servers:
                # The offload's burst cases run without GSO (see --gso): the same cases for Tern in user
                # space under that same load, for the like-for-like ratios.
                if "fixed" in groups:
                    case(server, f"fixed_{size}_100_nogso", gen={"rate": 50000}, gso=False, allocations=100, size=size, rate=50000)
                if f"lossfree_{size}" in groups:
                    best = loss_free_rate(server, lambda s, **kw: search_run(s, gso=False, **kw), size=size, allocations=100)
                    r[f"lossfree_{size}_nogso"] = best
                    if best:
                        needs(best, best["offered_pps"], gso=False, allocations=100, size=size)
                    log(f"  lossfree_{size}_nogso: {summary(best)}")
        if "stream" in groups:
            case(server, "stream_1200", gen={"rate": 50000}, allocations=1, size=1200, rate=50000)
        if "mix" in groups:
            for rate in args.mix_rates:
                case(server, f"mix_{rate}", gen={"rate": rate}, mix=True, allocations=args.mix_allocations, rate=rate,
                     peer_batch=args.mix_peer_batch)
        if "idle" in groups:
            # Last: 10,000 idle allocations (coturn takes a while to end them all afterwards).
            r["idle"] = run(server, allocations=2000 if quick else 10000, idle=True)
            log(f"  idle: {r['idle']}")
    finally:
        server.stop()


def run_twoway(server, r, needs, args):
    """The headline: the two-way smooth load at fixed rates (`twoway_repeats` runs each: the run with the
    median p50, both legs' p50 added, with each latency figure and the server CPU replaced by its own median
    over the runs) and the highest loss-free rate each way, for every allocation count."""
    def run(srv, **kw):
        return load(srv, duration=kw.pop("duration", args.duration), gso=False, **kw)

    for k in args.twoway_allocations:
        for rate in args.twoway_rates:
            key = f"twoway_{k}_{rate}"
            runs = [run(server, two_way=True, allocations=k, size=100, rate=rate) for _ in range(args.twoway_repeats)]
            p50 = lambda x: x["legs"]["to_peer"]["p50_us"] + x["legs"]["to_client"]["p50_us"]
            runs.sort(key=p50)
            r[key] = dict(runs[len(runs) // 2])
            if len(runs) > 1:
                r[key]["p50_runs"] = [[x["legs"]["to_peer"]["p50_us"], x["legs"]["to_client"]["p50_us"]] for x in runs]
                r[key]["p99_runs"] = [[x["legs"]["to_peer"]["p99_us"], x["legs"]["to_client"]["p99_us"]] for x in runs]
                r[key]["cpu_s_per_mpkt_runs"] = [x.get("cpu_s_per_mpkt") for x in runs]
                # This VM stalls now and then for a millisecond or more: one stall in a run moves its p99 several
                # times over. Each latency figure and the CPU figure are therefore the median over the runs,
                # each taken on its own.
                median = lambda xs: sorted(xs)[len(xs) // 2]
                r[key]["legs"] = {leg: dict(v, **{p: median([x["legs"][leg][p] for x in runs]) for p in ("p50_us", "p99_us")})
                                  for leg, v in r[key]["legs"].items()}
                r[key]["round_trip"] = {p: median([x["round_trip"][p] for x in runs]) for p in r[key]["round_trip"]}
                if all(x.get("cpu_s_per_mpkt") is not None for x in runs):
                    r[key]["cpu_s_per_mpkt"] = median([x["cpu_s_per_mpkt"] for x in runs])
            needs(r[key], rate, allocations=k, size=100, two_way=True)
            log(f"  {key}: {summary(r[key])}")
        # The search starts at the highest fixed rate that was clean at this K (it has just been measured).
        clean = [rate for rate in args.twoway_rates
                 if max(leg["loss"] for leg in r[f"twoway_{k}_{rate}"]["legs"].values()) <= 0.001]
        limit = 400_000 if server.name == "tern-offload" else 300_000
        best = loss_free_rate(server, lambda s, **kw: run(s, duration=args.lossfree_duration, **kw), size=100, allocations=k,
                              start=max(clean, default=10000), factor=1.25, limit=limit, two_way=True)
        r[f"twoway_lossfree_{k}"] = best
        if best:
            needs(best, best["rate_per_leg"], allocations=k, size=100, two_way=True)
        log(f"  twoway_lossfree_{k}: {summary(best)}")


def summary(r):
    if not r:
        return "-"
    keys = ("offered_pps", "relayed_pps", "loss", "p50_us", "p99_us", "cpu_s_per_mpkt", "machine_us_per_pkt", "kernel_share",
            "stopped_by", "generator_limited", "generator_bound")
    s = {k: r[k] for k in keys if k in r}
    if "legs" in r:
        s["legs"] = {leg: {k: v[k] for k in ("sent_pps", "relayed_pps", "loss", "p50_us", "p99_us")} for leg, v in r["legs"].items()}
    if "round_trip" in r:
        s["round_trip"] = {k: r["round_trip"][k] for k in ("p50_us", "p99_us")}
    return json.dumps(s)


def run_generator(results, needs, args):
    """The generator alone, once per distinct load the cases above needed."""
    if not needs:
        return
    log("== generator alone (no server)")
    g = results.setdefault("generator", {})
    for key, spec in sorted(needs.items()):
        g[key] = load(Generator(), duration=args.duration, gso=spec["gso"], mix=spec["mix"], peer_batch=args.mix_peer_batch,
                      allocations=spec["allocations"], size=spec["size"], rate=spec["rate"], two_way=spec.get("two_way", False))
        log(f"  {key}: {summary(g[key])}")
    for name in SERVERS:
        for r in (results.get(name) or {}).values():
            base = g.get((r or {}).get("generator_key"))
            if r and base and "machine_us_per_pkt" in r and "machine_us_per_pkt" in base:
                r["generator_machine_us_per_pkt"] = base["machine_us_per_pkt"]
                r["machine_net_us_per_pkt"] = round(r["machine_us_per_pkt"] - base["machine_us_per_pkt"], 3)


def main():
    args = arguments()
    for path in (TERN, LOAD, FORWARDER, TURNSERVER):
        if not os.path.exists(path):
            raise SystemExit(f"missing {path}: run Benchmarks/run.sh, which builds it")
    servers.TERN_EXTRA.update(args.tern_config)
    if args.label:
        for name in ("tern", "tern-offload"):
            servers.LABELS[name] += f" {args.label}"
    tmp = tempfile.mkdtemp(prefix="tern-bench-")
    results = {"meta": {"quick": args.quick, "duration_s": args.duration, "gso": args.gso, "servers": args.servers,
                        "cases": sorted(args.only), "mix_rates": args.mix_rates, "mix_allocations": args.mix_allocations,
                        "mix_peer_batch": args.mix_peer_batch, "twoway_allocations": args.twoway_allocations,
                        "twoway_rates": args.twoway_rates, "twoway_repeats": args.twoway_repeats,
                        "lossfree_duration_s": args.lossfree_duration, "tern_config_extra": args.tern_config,
                        "label": args.label, "labels": dict(servers.LABELS),
                        "tern": TERN}}
    needs = {}
    try:
        for name in SERVERS:
            if name in args.servers:
                run_server(name, results, needs, args, tmp)
        run_generator(results, needs, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = args.out or None
    if out:
        os.makedirs(out, exist_ok=True)
    with open(os.path.join(out or BENCH, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    text = report.render(results)
    with open(os.path.join(out or ROOT, "BENCHMARKS.md"), "w") as f:
        f.write(text)
    print(report.summaries(text))
    log(report.twoway_text(results))


if __name__ == "__main__":
    main()
