"""PromQL names: a lexer and the walk that picks out the metric names an expression reads, for
scripts/validate-monitoring.py (which checks them against a live Tern's /metrics)."""

import re

# Series Prometheus makes itself for every target, and those of its own alerting.
SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_samples_post_metric_relabeling",
             "scrape_series_added", "ALERTS", "ALERTS_FOR_STATE"}
# PromQL keywords that are neither metric nor function names (matched case-insensitively).
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or",
            "unless", "atan2", "inf", "nan"}
# Keywords followed by a parenthesised list of label names.
LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
# An identifier followed by one of these is an aggregation operator (`sum by (x) (...)`).
GROUPING_KEYWORDS = {"by", "without"}
# Grafana's interval variables as values promtool accepts; other variables appear in label values only.
GRAFANA_DURATIONS = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}

# ---------------------------------------------------------------------------------------------
# PromQL: a lexer and the walk that picks out metric names.

TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<number>(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(?:(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*)?)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>==|!=|=~|!~|<=|>=|[-+*/%^<>=(){}\[\],@])
""", re.VERBOSE)


def lex(expr):
    """[(kind, text)], without spaces and comments; raises ValueError on a character PromQL lacks."""
    tokens, pos = [], 0
    while pos < len(expr):
        m = TOKEN.match(expr, pos)
        if not m:
            raise ValueError(f"unexpected {expr[pos:pos + 20]!r} at {pos}")
        pos = m.end()
        if m.lastgroup not in ("space", "comment"):
            tokens.append((m.lastgroup, m.group()))
    return tokens


def unquote(s):
    body = s[1:-1]
    return body if s[0] == "`" else re.sub(r"\\(.)", r"\1", body)


def metric_names(expr):
    """The metric names an expression reads: identifiers that are not function or aggregation names
    (followed by "("), keywords, label names (inside {} and in by/without/on/ignoring/group_x lists)
    or anything inside [] (ranges, subquery steps); plus the values of {__name__="..."}."""
    tokens = lex(expr)
    names = []
    i, braces, brackets = 0, 0, 0
    while i < len(tokens):
        kind, text = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else (None, None)
        if text == "{" and kind == "op":
            braces += 1
        elif text == "}" and kind == "op":
            braces -= 1
        elif text == "[" and kind == "op":
            brackets += 1
        elif text == "]" and kind == "op":
            brackets -= 1
        elif kind == "ident" and braces > 0:
            # A label name; {__name__="x"} names metric x.
            if text == "__name__" and nxt[1] == "=" and i + 2 < len(tokens) and tokens[i + 2][0] == "string":
                names.append(unquote(tokens[i + 2][1]))
        elif kind == "ident" and brackets == 0:
            low = text.lower()
            if low in LABEL_LIST_KEYWORDS and nxt[1] == "(":
                # Skip the label list up to its closing parenthesis.
                j = i + 2
                while j < len(tokens) and tokens[j][1] != ")":
                    j += 1
                i = j
            elif low in KEYWORDS or nxt[1] == "(" or (nxt[0] == "ident" and nxt[1].lower() in GROUPING_KEYWORDS):
                pass  # keyword, function, or aggregation operator (its grouping before or after the parentheses)
            else:
                names.append(text)
        i += 1
    if braces != 0 or brackets != 0:
        raise ValueError("unbalanced {} or []")
    return names


def grafana_to_promql(expr):
    """A panel query with Grafana's variables replaced: intervals by durations, anything else (used
    in label matchers, e.g. instance=~"$instance") by ".*"."""
    def repl(m):
        name = m.group(1) or m.group(2) or m.group(3)
        return GRAFANA_DURATIONS.get(name, ".*")
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]", repl, expr)


def template_query_exprs(query):
    """PromQL inside a Grafana Prometheus variable query: label_values(expr, label),
    query_result(expr), or label_values(label) (no metric)."""
    if isinstance(query, dict):
        query = query.get("query", "")
    query = (query or "").strip()
    m = re.fullmatch(r"label_values\((.*),\s*\w+\s*\)", query, re.S)
    if m:
        return [m.group(1)]
    m = re.fullmatch(r"query_result\((.*)\)", query, re.S)
    if m:
        return [m.group(1)]
    return []


def unknown_names(names, exported, recorded):
    """The names that are neither exported, recorded by a rule nor Prometheus' own."""
    out = []
    for n in names:
        if n in exported or n in recorded or n in SYNTHETIC:
            continue
        base = re.sub(r"_(bucket|sum|count)$", "", n)
        if base != n and exported.get(base) in ("histogram", "summary"):
            continue
        out.append(n)
    return sorted(set(out))
