#!/usr/bin/env python3
"""Checks the monitoring files against a running Tern (run through scripts/validate-monitoring.sh).

1. deploy/grafana/tern.json: valid JSON with the structure Grafana needs (schemaVersion, the
   `datasource` and `instance` template variables, unique panel ids, gridPos inside 24 columns
   without overlaps, every query panel's datasource the variable, every target an expr).
2. deploy/prometheus/tern-rules.yml: `promtool check rules`, and `promtool test rules` on its unit
   tests; every dashboard query is also parsed by promtool (as a recording rule in a scratch file,
   with Grafana's variables replaced by values), so a PromQL syntax error in a panel fails too.
3. Every metric name in every PromQL expression (rules, alerts, panel targets, template variable
   queries) is exported by a real `tern serve` started here on 127.0.0.1 with ephemeral ports: names
   recorded by the rules file count as known, `up` and Prometheus' other scrape series too, and the
   histogram/summary suffixes _bucket/_sum/_count count through their base name. One `tern probe`
   (Binding, Allocate, relayed datagrams, Refresh) runs first, because tern_requests_total has no
   series before the first request.

Names listed in TERN_MONITORING_PENDING (comma-separated: metrics that are being added to Tern) are
reported but do not fail; the default is strict. Exits 1 when any check failed.
"""

import argparse
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

import yaml

from checker import Checker
from promql_names import grafana_to_promql, metric_names, template_query_exprs, unknown_names


QUERY_PANEL_TYPES = {"timeseries", "stat", "gauge", "bargauge", "table", "barchart", "heatmap", "piechart",
                     "state-timeline", "status-history", "histogram"}
DATASOURCE_UID = "${datasource}"
SCHEMA_VERSION_RANGE = (36, 41)


def self_test(c):
    """The name walk on expressions that exercise each rule of it; a bogus name must be reported."""
    cases = {
        'sum by (instance, direction) (rate(tern_relayed_packets_total{direction!="x"}[5m]))':
            ["tern_relayed_packets_total"],
        "instance:a:sum / on (instance) group_left(version) max by (instance) (b) > bool 0":
            ["instance:a:sum", "b"],
        'sum(x offset 1h) without (job) unless on(instance) y[10m:1m] @ end()': ["x", "y"],
        'label_replace(z, "dst", "$1", "src", "(.*)") and {__name__="w", job="j"}': ["z", "w"],
        "count(count by (version) (tern_build_info)) > 1e3 or vector(Inf) # comment up": ["tern_build_info"],
        "histogram_quantile(0.9, sum by (le) (rate(h_bucket[$__rate_interval])))": ["h_bucket"],
        "SUM BY (instance) (a) AND ON (instance) b": ["a", "b"],
    }
    for expr, want in cases.items():
        got = metric_names(grafana_to_promql(expr))
        c.check(got == want, f"self-test: names of {expr!r}", f"got {got}, want {want}")
    exported = {"tern_a_total": "counter", "h": "histogram"}
    missing = unknown_names(["tern_a_total", "h_bucket", "h_count", "tern_bogus_metric"], exported, set())
    c.check(missing == ["tern_bogus_metric"], "self-test: a name no Tern exports is reported",
            f"reported {missing}")


# ---------------------------------------------------------------------------------------------
# The files.

def load_rules(path, c):
    """[(where, expr)] of every rule, and the set of recorded names."""
    with open(path) as f:
        doc = yaml.safe_load(f)
    exprs, recorded = [], set()
    groups = doc.get("groups") if isinstance(doc, dict) else None
    if not c.check(isinstance(groups, list) and groups, f"{path} has groups"):
        return exprs, recorded
    for g in groups:
        for r in g.get("rules", []):
            name = r.get("record") or r.get("alert")
            exprs.append((f"{g['name']}/{name}", str(r.get("expr", ""))))
            if "record" in r:
                recorded.add(r["record"])
    records = [r for g in groups for r in g.get("rules", []) if "record" in r]
    alerts = [r for g in groups for r in g.get("rules", []) if "alert" in r]
    bad = [r["record"] for r in records if not re.fullmatch(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", r["record"])]
    c.check(not bad, f"{len(records)} recording rules named level:metric:operation", ", ".join(bad))
    bad = [a["alert"] for a in alerts
           if not (a.get("labels", {}).get("severity") in ("critical", "warning", "info")
                   and a.get("annotations", {}).get("summary") and a.get("annotations", {}).get("description"))]
    c.check(not bad, f"{len(alerts)} alerts have a severity, a summary and a description", ", ".join(bad))
    return exprs, recorded


def all_panels(panels):
    for p in panels:
        yield p
        yield from all_panels(p.get("panels", []))


def check_dashboard(path, c):
    """Structure checks; returns [(where, expr as written)] of every query."""
    try:
        with open(path) as f:
            d = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        c.check(False, f"{path} parses as JSON", str(e))
        return []
    c.check(True, f"{path} parses as JSON")
    sv = d.get("schemaVersion")
    c.check(isinstance(sv, int) and SCHEMA_VERSION_RANGE[0] <= sv <= SCHEMA_VERSION_RANGE[1],
            f"schemaVersion {sv} in {SCHEMA_VERSION_RANGE[0]}...{SCHEMA_VERSION_RANGE[1]}")
    c.check(isinstance(d.get("title"), str) and d["title"] and isinstance(d.get("uid"), str) and d["uid"]
            and len(d["uid"]) <= 40, "title and uid (at most 40 characters) set")
    c.check(d.get("id") is None, "no numeric id (Grafana assigns one on import)")

    variables = {v.get("name"): v for v in d.get("templating", {}).get("list", [])}
    ds = variables.get("datasource", {})
    c.check(ds.get("type") == "datasource" and ds.get("query") == "prometheus",
            "template variable `datasource` of type datasource, query prometheus")
    exprs = []
    inst = variables.get("instance", {})
    inst_exprs = template_query_exprs(inst.get("query"))
    c.check(inst.get("type") == "query" and len(inst_exprs) == 1
            and (inst.get("datasource") or {}).get("uid") == DATASOURCE_UID,
            "template variable `instance`: label_values(...) on ${datasource}",
            f"query {inst.get('query')!r}")
    for name, v in variables.items():
        if v.get("type") == "query":
            exprs += [(f"variable {name}", e) for e in template_query_exprs(v.get("query"))]

    panels = list(all_panels(d.get("panels", [])))
    ids = [p.get("id") for p in panels]
    c.check(all(isinstance(i, int) for i in ids) and len(ids) == len(set(ids)),
            f"{len(panels)} panels, unique integer ids", f"ids {ids}")
    bad_grid, cells = [], {}
    for p in panels:
        g = p.get("gridPos", {})
        if not (all(isinstance(g.get(k), int) for k in "hwxy") and g["w"] > 0 and g["h"] > 0
                and g["x"] >= 0 and g["y"] >= 0 and g["x"] + g["w"] <= 24):
            bad_grid.append(p.get("id"))
            continue
        if p in d.get("panels", []):  # top-level panels share one grid
            for y in range(g["y"], g["y"] + g["h"]):
                for x in range(g["x"], g["x"] + g["w"]):
                    if (x, y) in cells:
                        bad_grid.append(f"{p.get('id')} overlaps {cells[(x, y)]}")
                    cells[(x, y)] = p.get("id")
    c.check(not bad_grid, "every panel has a gridPos inside 24 columns, none overlapping",
            ", ".join(map(str, sorted(set(map(str, bad_grid))))))

    bad_ds, bad_targets, unfiltered = [], [], []
    query_panels = [p for p in panels if p.get("type") != "row"]
    for p in query_panels:
        pid = p.get("id")
        if p.get("type") not in QUERY_PANEL_TYPES:
            bad_targets.append(f"{pid}: type {p.get('type')}")
            continue
        if (p.get("datasource") or {}).get("uid") != DATASOURCE_UID or p["datasource"].get("type") != "prometheus":
            bad_ds.append(pid)
        targets = p.get("targets") or []
        refs = [t.get("refId") for t in targets]
        if not targets or len(refs) != len(set(refs)) or not all(refs):
            bad_targets.append(f"{pid}: targets/refIds")
        for t in targets:
            expr = t.get("expr")
            if not isinstance(expr, str) or not expr.strip():
                bad_targets.append(f"{pid}/{t.get('refId')}: no expr")
                continue
            if (t.get("datasource") or {}).get("uid", DATASOURCE_UID) != DATASOURCE_UID:
                bad_ds.append(f"{pid}/{t.get('refId')}")
            if "$instance" not in expr and "${instance}" not in expr and not re.search(r"\bfleet(_\w+)?:", expr):
                unfiltered.append(f"{pid}/{t.get('refId')}")
            exprs.append((f"panel {pid} ({p.get('title')}) {t.get('refId')}", expr))
    c.check(not bad_ds, f"{len(query_panels)} query panels and their targets use datasource uid {DATASOURCE_UID}",
            ", ".join(map(str, bad_ds)))
    c.check(not bad_targets, "every query panel has targets, each with an expr and a unique refId",
            ", ".join(bad_targets))
    c.check(not unfiltered, "every query is filtered by $instance or reads a fleet: rule", ", ".join(unfiltered))
    return exprs


def promtool_checks(promtool, rules, rules_test, dashboard_exprs, c):
    r = subprocess.run([promtool, "check", "rules", rules], capture_output=True, text=True)
    c.check(r.returncode == 0, f"promtool check rules {rules}", (r.stdout + r.stderr).strip())
    if rules_test:
        r = subprocess.run([promtool, "test", "rules", rules_test], capture_output=True, text=True)
        c.check(r.returncode == 0, f"promtool test rules {rules_test}", (r.stdout + r.stderr).strip())
    # The dashboard's queries, each as a recording rule of a scratch file: promtool parses them.
    rules_doc = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}:check", "expr": grafana_to_promql(e)} for i, (_, e) in enumerate(dashboard_exprs)]}]}
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        json.dump(rules_doc, f)
    try:
        r = subprocess.run([promtool, "check", "rules", f.name], capture_output=True, text=True)
        c.check(r.returncode == 0, f"promtool parses the dashboard's {len(dashboard_exprs)} queries",
                (r.stdout + r.stderr).strip())
    finally:
        os.unlink(f.name)


# ---------------------------------------------------------------------------------------------
# A real Tern.

def wait_for(cond, timeout, step=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(step)
    return None


def http_get(url, timeout=5):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""
    except OSError:
        return None, ""


def scrape_tern(tern_bin, c):
    """{metric name: type} from /metrics of a `tern serve` started here, after one `tern probe`."""
    secret = secrets.token_hex(16)
    config = {
        "listeners": [{"transport": "udp", "address": "127.0.0.1", "port": 0},
                      {"transport": "tcp", "address": "127.0.0.1", "port": 0}],
        "auth": {"secrets": [secret]},
        "admin": {"address": "127.0.0.1", "port": 0},
        "workers": 2,
        "log": {"level": "info"},
    }
    tmp = tempfile.mkdtemp(prefix="tern-monitoring-")
    config_path, log_path = os.path.join(tmp, "config.json"), os.path.join(tmp, "tern.log")
    with open(config_path, "w") as f:
        json.dump(config, f)
    os.chmod(config_path, 0o600)
    log = open(log_path, "w")
    proc = subprocess.Popen([tern_bin, "serve", "--config", config_path], stdout=log, stderr=log,
                            stdin=subprocess.DEVNULL)
    exported = {}
    try:
        def addresses():
            # The log lines "... address=127.0.0.1:PORT ... admin listening" and
            # "... listeners=udp 127.0.0.1:PORT, tcp ... tern listening" (metadata before the message).
            admin = udp = None
            for line in open(log_path).read().splitlines():
                if line.endswith("admin listening"):
                    admin = re.search(r"\baddress=(\S+)", line)
                elif line.endswith("tern listening"):
                    udp = re.search(r"\blisteners=(?:[^=]*?)\budp (127\.0\.0\.1:\d+)", line)
            return (admin.group(1), udp.group(1)) if admin and udp else None
        found = wait_for(lambda: proc.poll() is not None or addresses(), 30)
        if not c.check(found is not None and proc.poll() is None and addresses(),
                       f"{tern_bin} serve started (127.0.0.1, ephemeral ports)", open(log_path).read()[-2000:]):
            return None
        admin, udp = addresses()
        c.check(wait_for(lambda: http_get(f"http://{admin}/readyz")[0] == 200, 20) is not None,
                f"/readyz answers 200 on {admin}")
        # tern_requests_total has no series before the first request: one probe (Binding, Allocate,
        # relayed datagrams, Refresh to 0) makes them, and shows the relay works.
        probe = subprocess.run([tern_bin, "probe", f"turn:{udp}", "--secret", secret, "--count", "20"],
                               capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        c.check(probe.returncode == 0, f"tern probe turn:{udp} (one allocation relaying)",
                (probe.stdout + probe.stderr)[-2000:])
        status, text = http_get(f"http://{admin}/metrics")
        if not c.check(status == 200 and text, f"GET /metrics on {admin}", f"status {status}"):
            return None
        for line in text.splitlines():
            m = re.match(r"# TYPE (\S+) (\S+)", line)
            if m:
                exported[m.group(1)] = m.group(2)
            elif line and not line.startswith("#"):
                exported.setdefault(re.match(r"[^{\s]+", line).group(), "untyped")
        c.check(len(exported) > 0, f"/metrics exports {len(exported)} metric names")
        return exported
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
        for p in (config_path, log_path):
            os.unlink(p)
        os.rmdir(tmp)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rules", default="deploy/prometheus/tern-rules.yml")
    ap.add_argument("--rules-test", default="deploy/prometheus/tern-rules.test.yml")
    ap.add_argument("--dashboard", default="deploy/grafana/tern.json")
    ap.add_argument("--promtool", default="promtool")
    ap.add_argument("--tern-bin", required=True)
    args = ap.parse_args()
    pending = {n.strip() for n in os.environ.get("TERN_MONITORING_PENDING", "").split(",") if n.strip()}

    c = Checker()
    print("== the name walk")
    self_test(c)
    print(f"== {args.dashboard}")
    dashboard_exprs = check_dashboard(args.dashboard, c)
    print(f"== {args.rules}")
    rule_exprs, recorded = load_rules(args.rules, c)
    promtool_checks(args.promtool, args.rules, args.rules_test,
                    [(w, e) for w, e in dashboard_exprs if w.startswith("panel")], c)

    print("== metric names")
    names_by_expr, parse_errors = {}, []
    for where, expr in rule_exprs + dashboard_exprs:
        try:
            names_by_expr[(where, expr)] = metric_names(grafana_to_promql(expr))
        except ValueError as e:
            parse_errors.append(f"{where}: {e}")
    c.check(not parse_errors, f"{len(rule_exprs) + len(dashboard_exprs)} expressions tokenized", "; ".join(parse_errors))
    names = sorted({n for ns in names_by_expr.values() for n in ns})
    raw = [n for n in names if n not in recorded]
    print(f"  {len(names)} names: {len(raw)} scraped, {len(names) - len(raw)} recorded by the rules")
    unused = sorted(recorded - set(names))
    if unused:
        print(f"  note: recorded but never read: {', '.join(unused)}")

    print(f"== {args.tern_bin}")
    exported = scrape_tern(args.tern_bin, c)
    if exported is not None:
        missing = unknown_names(names, exported, recorded)
        allowed = [n for n in missing if n in pending]
        failing = [n for n in missing if n not in pending]
        for n in missing:
            users = [w for (w, _), ns in names_by_expr.items() if n in ns]
            tag = "pending (TERN_MONITORING_PENDING)" if n in pending else "NOT EXPORTED"
            print(f"  {tag}: {n}, in {'; '.join(users[:4])}{' ...' if len(users) > 4 else ''}")
        c.check(not failing, f"every scraped name is exported by Tern ({len(raw) - len(missing)} of {len(raw)})",
                ", ".join(failing))
        stale = sorted(pending - set(missing))
        if stale:
            print(f"  note: TERN_MONITORING_PENDING names that Tern exports now: {', '.join(stale)}")

    total = len(rule_exprs) + len(dashboard_exprs)
    if c.failed:
        print(f"validate-monitoring: FAILED {len(c.failed)} of {c.passed + len(c.failed)} checks: {'; '.join(c.failed)}")
        return 1
    pend = [n for n in names if n in pending and exported is not None and n not in exported]
    print(f"validate-monitoring: {total} expressions, {len(names)} metric names "
          f"({len(raw)} scraped, {len(names) - len(raw)} recorded), "
          + (f"all exported but {len(pend)} pending: {', '.join(pend)}" if pend else "all exported")
          + f"; {c.passed} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
