#!/usr/bin/python3
"""bench/compare/compare.py's chart, from a fixed small result set (nothing
is run: no tokbench, no haproxy): the SVG is well-formed XML with a bar per
path and mode for throughput and a latency line per path and mode, each
named; the table parses back to the same figures; --svg-only draws from a
run's JSON or its Markdown table next to it."""
import math
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

SOURCE = sys.argv[1]
COMPARE = os.path.join(SOURCE, "bench", "compare", "compare.py")
sys.path.insert(0, os.path.dirname(COMPARE))
import compare  # noqa: E402

SVG = "{http://www.w3.org/2000/svg}"
KINDS = ["direct", "haproxy", "tokswitch-uring"]
MODES = ["depth1", "rate1000"]


def run(rate, p50, cpu=5.0, wrong=0):
    """One tokbench --json, the fields compare.py reads."""
    return {"achieved_rate": rate, "p50_us": p50, "p90_us": p50 * 2, "p99_us": p50 * 4,
            "p99_9_us": p50 * 8, "wrong": wrong, "cpu_us_per_auth": cpu}


# three runs per path and mode; medians: rate 300/200/100 at depth1
RESULTS = {
    ("direct", "depth1"): [run(290, 10, math.nan), run(300, 11, math.nan),
                           run(310, 12, math.nan)],
    ("haproxy", "depth1"): [run(150, 20), run(200, 21), run(250, 22)],
    ("tokswitch-uring", "depth1"): [run(100, 30, 7.0), run(90, 31, 7.0), run(110, 29, 7.0)],
    ("direct", "rate1000"): [run(1000, 5, math.nan)] * 3,
    ("haproxy", "rate1000"): [run(1000, 6)] * 3,
    ("tokswitch-uring", "rate1000"): [run(1000, 7, 6.0, wrong=1)] * 3,
}


def summary():
    return compare.summarize(RESULTS, KINDS, MODES, "test comparison", "Machine: test.")


def svg_series(path):
    """(ids of every element, every text) of the SVG at path; fails on a file
    that is not well-formed SVG."""
    root = ET.parse(path).getroot()
    assert root.tag == SVG + "svg", root.tag
    ids = {e.get("id") for e in root.iter() if e.get("id")}
    texts = ["".join(e.itertext()).strip() for e in root.iter(SVG + "text")]
    return ids, texts


def case_medians():
    s = summary()
    d1 = s["paths"]["depth1"]
    assert d1["direct"]["achieved_rate"] == 300, d1
    assert d1["haproxy"]["achieved_rate"] == 200, d1
    assert d1["tokswitch-uring"]["p99_us"] == 120, d1
    assert math.isnan(d1["direct"]["cpu_us_per_auth"]), "no hop, no CPU figure"
    assert s["paths"]["rate1000"]["tokswitch-uring"]["wrong"] == 1


def case_svg_names_every_series():
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "c.svg")
        compare.render_svg(summary(), path)
        ids, texts = svg_series(path)
    for k in KINDS:
        assert texts.count(k) == 1 + len(MODES), f"{k} in each legend: {texts}"
        for m in MODES:
            assert f"throughput-{m}-{k}" in ids, f"no throughput bar {m} {k}"
            assert f"latency-{m}-{k}" in ids, f"no latency line {m} {k}"
    for want in ["Throughput per path", "Latency percentiles per path, depth1",
                 "Latency percentiles per path, rate1000", "test comparison",
                 "p50", "p90", "p99", "p99.9"]:
        assert want in texts, f"{want!r} not in {texts}"


def case_missing_figure_draws_no_series():
    s = summary()
    s["paths"]["depth1"]["haproxy"] = {f: math.nan for f in compare.FIGURES}
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "c.svg")
        compare.render_svg(s, path)
        ids, _ = svg_series(path)
    assert "throughput-depth1-haproxy" not in ids and "latency-depth1-haproxy" not in ids
    assert "throughput-rate1000-haproxy" in ids and "latency-rate1000-haproxy" in ids


def case_table_parses_back():
    s = summary()
    back = compare.parse_table(compare.table(s))
    assert back["kinds"] == KINDS and back["modes"] == MODES, back
    assert back["title"] == "test comparison", back["title"]
    for m in MODES:
        for k in KINDS:
            for f in ["achieved_rate", "p50_us", "p99_us", "wrong"]:
                assert back["paths"][m][k][f] == round(s["paths"][m][k][f]), (m, k, f)
            assert math.isnan(back["paths"][m][k]["p90_us"]), "the table has no p90"


def case_svg_only_from_json_and_table():
    with tempfile.TemporaryDirectory() as d:
        stem = os.path.join(d, "compare-test")
        compare.dump_summary(summary(), stem + ".json")
        with open(stem + ".json") as f:
            assert "NaN" not in f.read(), "strict JSON: a missing figure is null"
        with open(stem + ".md", "w") as f:
            f.write(compare.table(summary()) + "\n")
        for src in [stem + ".json", stem + ".md"]:
            out = os.path.join(d, "chart.svg")
            p = subprocess.run([COMPARE, "--svg-only", src, "--out", out],
                               capture_output=True, text=True, timeout=120)
            assert p.returncode == 0, p.stderr
            ids, texts = svg_series(out)
            assert "latency-rate1000-tokswitch-uring" in ids, src
            # the JSON has all four percentiles, the table p50 and p99
            assert ("p90" in texts) == src.endswith(".json"), (src, texts)
            assert "p99" in texts, (src, texts)
            os.unlink(out)
        p = subprocess.run([COMPARE, "--svg-only", stem + ".json"], capture_output=True,
                           text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        assert p.stdout.strip() == stem + ".svg", p.stdout
        svg_series(stem + ".svg")
        with open(os.path.join(d, "empty.md"), "w") as f:
            f.write("# nothing\n")
        p = subprocess.run([COMPARE, "--svg-only", os.path.join(d, "empty.md")],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode != 0 and "no comparison table" in p.stderr, p.stderr


CASES = [case_medians, case_svg_names_every_series, case_missing_figure_draws_no_series,
         case_table_parses_back, case_svg_only_from_json_and_table]


def main():
    failed = 0
    print("1..%d" % len(CASES))
    for i, case in enumerate(CASES, 1):
        name = case.__name__[5:].replace("_", " ")
        try:
            case()
            print(f"ok {i} - {name}")
        except Exception as e:  # a failed assert or a crash: the case fails
            failed += 1
            print(f"not ok {i} - {name}: {type(e).__name__}: {e}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
