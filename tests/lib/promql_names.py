"""The metric names that PromQL expressions reference, and which of them a
scrape lacks: used to check contrib/prometheus/alerts.yml and
contrib/grafana/tokswitch.json against a live /metrics (e2e.py) and by the
unit test of those files (tests/unit/tools/test_dashboards.py).

Not a PromQL parser: it removes what cannot be a metric name (strings,
label matchers, range and subquery brackets, grouping label lists,
Grafana variables, numbers and durations) and keeps the identifiers that
are not followed by "(" (functions, aggregations) and are no keyword."""
import json
import re

import yaml

KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool",
            "and", "or", "unless", "offset", "inf", "nan", "atan2"}
# series Prometheus makes itself for every target, not in any /metrics
SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
HIST_SUFFIXES = ("_bucket", "_sum", "_count")

_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def expr_names(expr):
    """The metric names expr selects (a set)."""
    s = re.sub(r"\$\{[^}]*\}|\$\w+", " ", expr)           # Grafana variables
    s = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', " ", s)  # strings
    s = re.sub(r"\{[^}]*\}", " ", s)                       # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)                      # ranges, subqueries
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    s = re.sub(r"\b\d[\w.]*", " ", s)                      # numbers, durations
    names = set()
    for m in _IDENT.finditer(s):
        word = m.group(0)
        if word.lower() in KEYWORDS or re.match(r"\s*\(", s[m.end():]):
            continue
        names.add(word)
    return names


def alert_exprs(path):
    """[(alert or record name, expr)] of a Prometheus rules file."""
    with open(path) as f:
        doc = yaml.safe_load(f)
    return [(r.get("alert") or r.get("record"), r["expr"])
            for g in doc["groups"] for r in g["rules"]]


def dashboard_panels(doc):
    """Every panel of a Grafana dashboard, those inside collapsed rows too."""
    out = []
    for p in doc.get("panels", []):
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def dashboard_exprs(path):
    """[(panel title, expr)] of every Prometheus target of a dashboard, and
    of its query variables (the selector of label_values(SELECTOR, label)
    or the whole query)."""
    with open(path) as f:
        doc = json.load(f)
    out = [(p.get("title", ""), t["expr"])
           for p in dashboard_panels(doc) for t in p.get("targets", []) if "expr" in t]
    for v in doc.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        m = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", q)
        out.append(("variable " + v["name"], m.group(1) if m else q))
    return out


def scrape_families(body):
    """{family: type} from the # TYPE lines of a Prometheus text scrape."""
    return dict(line.split()[2:4] for line in body.splitlines() if line.startswith("# TYPE "))


def missing_from_scrape(names, body):
    """The names (sorted) no series of the scrape answers: a histogram's
    _bucket, _sum and _count exist when its family does; a histogram's
    bare name selects nothing and is missing; any other name needs its own
    family (# TYPE line)."""
    fam = scrape_families(body)
    missing = []
    for n in sorted(names):
        if n in SYNTHETIC:
            continue
        base = next((n[:-len(s)] for s in HIST_SUFFIXES if n.endswith(s)), None)
        if base is not None and fam.get(base) == "histogram":
            continue
        if n in fam and fam[n] != "histogram":
            continue
        missing.append(n)
    return missing
