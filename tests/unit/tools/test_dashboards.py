#!/usr/bin/env python3
"""contrib/prometheus/alerts.yml and contrib/grafana/tokswitch.json, without
a switch: promtool check rules and promtool test rules (alerts_test.yml)
pass; every alert has for:, a severity and both annotations; every limit
counter of docs/operations.md has an alert; the dashboard is Grafana JSON
over a datasource variable with p50 and p99 of every histogram, and each
of its queries parses; every name either file uses is a documented series
(e2e.py checks them against a live scrape too).

Usage: test_dashboards.py SOURCE_ROOT     (TAP on stdout)"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

SOURCE = sys.argv[1]
sys.path.insert(0, os.path.join(SOURCE, "tests", "lib"))
import promql_names as P  # noqa: E402

ALERTS = os.path.join(SOURCE, "contrib", "prometheus", "alerts.yml")
ALERTS_TEST = os.path.join(SOURCE, "contrib", "prometheus", "alerts_test.yml")
DASHBOARD = os.path.join(SOURCE, "contrib", "grafana", "tokswitch.json")
OPERATIONS = os.path.join(SOURCE, "docs", "operations.md")
SEVERITIES = {"critical", "warning", "info"}


def promtool(*argv, cwd=None):
    exe = shutil.which("promtool")
    assert exe, "promtool not found: tools/install-deps installs prometheus"
    p = subprocess.run([exe, *argv], capture_output=True, text=True, timeout=120, cwd=cwd)
    return p.returncode, (p.stdout + p.stderr).strip()


def doc_table_rows(start_marker):
    """The rows (lists of cells) of the first table after start_marker in
    docs/operations.md, up to the next heading."""
    with open(OPERATIONS) as f:
        doc = f.read()
    start = doc.index(start_marker)
    end = doc.index("\n## ", start)
    return [[c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            for line in doc[start:end].splitlines() if line.startswith("| `")]


def documented_series():
    """{name: type} of the metrics table (as e2e.py reads it)."""
    series = {}
    for cols in doc_table_rows("\nMetrics: every series"):
        for name in re.findall(r"`(\w+)[{`]", cols[0]):
            series[name] = cols[1]
    return series


def documented_scrape():
    """The documented series as the # TYPE lines of a scrape."""
    return "".join("# TYPE %s %s\n" % kv for kv in documented_series().items())


def rules():
    with open(ALERTS) as f:
        return [r for g in yaml.safe_load(f)["groups"] for r in g["rules"]]


def dashboard():
    with open(DASHBOARD) as f:
        return json.load(f)


def test_promtool_check_rules_passes():
    rc, out = promtool("check", "rules", ALERTS)
    assert rc == 0 and "SUCCESS" in out, out


def test_promtool_test_rules_passes():
    rc, out = promtool("test", "rules", os.path.basename(ALERTS_TEST),
                       cwd=os.path.dirname(ALERTS_TEST))
    assert rc == 0 and "SUCCESS" in out, out


def test_unit_tests_see_issuer_down_and_state_degraded_fire_and_stay_quiet():
    with open(ALERTS_TEST) as f:
        doc = yaml.safe_load(f)
    assert doc["rule_files"] == ["alerts.yml"], doc["rule_files"]
    seen = {}
    for t in doc["tests"]:
        for a in t.get("alert_rule_test", []):
            fired = bool(a.get("exp_alerts"))
            seen.setdefault(a["alertname"], set()).add(fired)
    for name in ("TokswitchIssuerDown", "TokswitchStateWriterDegraded",
                 "TokswitchPanLeakBlocked", "TokswitchIssuerTimeouts",
                 "TokswitchSafReversalOld"):
        assert seen.get(name) == {True, False}, "%s: fires and stays quiet: %s" % (
            name, seen.get(name))
    names = {r.get("alert") for r in rules()}
    assert set(seen) <= names, "tests of unknown alerts: %s" % sorted(set(seen) - names)


def test_every_alert_has_for_severity_summary_and_description():
    alerts = [r for r in rules() if "alert" in r]
    assert len(alerts) >= 20, len(alerts)
    names = [r["alert"] for r in alerts]
    assert len(names) == len(set(names)), "an alert name twice"
    for r in alerts:
        assert re.fullmatch(r"\d+[smh]", str(r.get("for", ""))), "%s: for" % r["alert"]
        assert r.get("labels", {}).get("severity") in SEVERITIES, "%s: severity" % r["alert"]
        ann = r.get("annotations", {})
        for k in ("summary", "description"):
            assert len(ann.get(k, "")) > 20, "%s: %s" % (r["alert"], k)


def test_every_limit_counter_has_an_alert():
    types = documented_series()
    counters = set()
    for cols in doc_table_rows("### Limits: key, default"):
        counters |= {n for n in re.findall(r"`(tokswitch_\w+)", cols[-1])
                     if types.get(n) == "counter"}
    assert len(counters) >= 30, sorted(counters)
    alerted = set()
    for _, expr in P.alert_exprs(ALERTS):
        alerted |= P.expr_names(expr)
    assert not counters - alerted, "limits without an alert: %s" % sorted(counters - alerted)


def test_operations_md_says_what_each_alert_means_and_each_limit_is_a_key():
    with open(OPERATIONS) as f:
        doc = f.read()
    start = doc.index("\n## Dashboard and alerts")
    section = doc[start:doc.index("\n## ", start + 1)]
    for r in rules():
        if "limit" not in r.get("labels", {}) or not r["alert"].startswith("TokswitchLimit"):
            assert "`%s`" % r["alert"] in section, "docs: no row for " + r["alert"]
    keys = set()
    for cols in doc_table_rows("### Limits: key, default"):
        keys |= set(re.findall(r"`([a-z_]+\.[a-z_]+)`", cols[0]))
    for r in rules():
        key = r.get("labels", {}).get("limit")
        if key:
            assert key in keys, "%s: limit %s is no key of the limits table" % (r["alert"], key)


def test_alert_and_dashboard_series_are_documented():
    body = documented_scrape()
    for path, exprs in ((ALERTS, P.alert_exprs(ALERTS)), (DASHBOARD, P.dashboard_exprs(DASHBOARD))):
        names = set()
        for _, e in exprs:
            names |= P.expr_names(e)
        assert len(names) >= 20, (path, sorted(names))
        missing = P.missing_from_scrape(names, body)
        assert not missing, "%s: not in docs/operations.md: %s" % (path, missing)


def test_name_extraction_keeps_series_and_nothing_else():
    expr = ('histogram_quantile(0.99, sum by (instance, le) (rate(tokswitch_x_seconds_bucket'
            '{instance=~"$instance",rc="00"}[$__rate_interval]))) > on(job) group_left(version) '
            'tokswitch_build_info unless ignoring(le) up offset 5m or vector(1) and bool_x_total')
    assert P.expr_names(expr) == {"tokswitch_x_seconds_bucket", "tokswitch_build_info", "up",
                                  "bool_x_total"}, P.expr_names(expr)
    body = ("# TYPE a_seconds histogram\n# TYPE b_total counter\n")
    assert P.missing_from_scrape({"a_seconds_bucket", "a_seconds_count", "b_total", "up"},
                                 body) == []
    # a renamed series, a histogram's bare name, a counter's _bucket: missing
    assert P.missing_from_scrape({"b_renamed_total", "a_seconds", "b_total_bucket"}, body) == [
        "a_seconds", "b_renamed_total", "b_total_bucket"]


def test_dashboard_is_grafana_json_over_a_datasource_variable():
    d = dashboard()
    assert d["schemaVersion"] >= 37, d["schemaVersion"]
    assert d["uid"] and d["title"]
    var = [v for v in d["templating"]["list"] if v["type"] == "datasource"]
    assert len(var) == 1 and var[0]["query"] == "prometheus", var
    ds = "${%s}" % var[0]["name"]
    panels = P.dashboard_panels(d)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "a panel id twice"
    for p in panels:
        g = p["gridPos"]
        assert g["w"] > 0 and g["h"] > 0 and g["x"] + g["w"] <= 24, p["title"]
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == ds, p["title"]
        assert p["targets"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), "%s: a refId twice" % p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == ds and t["expr"].strip(), p["title"]


def test_dashboard_has_p50_and_p99_of_every_histogram_and_every_limit():
    exprs = [e for _, e in P.dashboard_exprs(DASHBOARD)]
    hists = [n for n, t in documented_series().items() if t == "histogram"]
    assert len(hists) >= 5, hists
    for h in hists:
        for q in ("0.5", "0.99"):
            pat = r"histogram_quantile\(%s,.*\b%s_bucket\b" % (re.escape(q), h)
            assert any(re.search(pat, e) for e in exprs), "no p%s of %s" % (q[2:] or "50", h)
    used = set()
    for e in exprs:
        used |= P.expr_names(e)
    limits = {n for r in rules() if "limit" in r.get("labels", {}) for n in P.expr_names(r["expr"])}
    assert not limits - used, "limits not on the dashboard: %s" % sorted(limits - used)
    for want in ("tokswitch_requests_total", "tokswitch_declines_total",
                 "tokswitch_issuer_links_signed_on", "tokswitch_state_saf_depth",
                 "tokswitch_state_saf_oldest_age_seconds", "tokswitch_standin_total",
                 "tokswitch_state_writer_degraded"):
        assert want in used, "not on the dashboard: " + want


def test_dashboard_queries_parse():
    """Each query as a recording rule (Grafana's variables filled in), so
    that promtool's PromQL parser reads it."""
    grafana_vars = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h",
                    "$instance": ".*"}
    rules_doc = {"groups": [{"name": "dashboard", "rules": []}]}
    for i, (title, expr) in enumerate(P.dashboard_exprs(DASHBOARD)):
        for k, v in grafana_vars.items():
            expr = expr.replace(k, v)
        assert "$" not in expr, "%s: an unknown variable: %s" % (title, expr)
        rules_doc["groups"][0]["rules"].append({"record": "dashboard:q%d" % i, "expr": expr})
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "dashboard-rules.yml")
        with open(path, "w") as f:
            yaml.safe_dump(rules_doc, f)
        rc, out = promtool("check", "rules", path)
    assert rc == 0 and "SUCCESS" in out, out


TESTS = [(n[len("test_"):], f) for n, f in list(globals().items())
         if n.startswith("test_") and callable(f)]


def main():
    failed = 0
    print("1..%d" % len(TESTS))
    for i, (name, f) in enumerate(TESTS, 1):
        try:
            f()
            print("ok %d - %s" % (i, name))
        except Exception as ex:  # each failure is reported, the others still run
            failed += 1
            print("not ok %d - %s" % (i, name))
            for line in ("%s: %s" % (type(ex).__name__, ex)).splitlines():
                print("# " + line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
