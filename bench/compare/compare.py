#!/usr/bin/python3
"""Side-by-side comparison: tokbench -> {direct, haproxy, tokswitch uring,
tokswitch uv} -> issuer-sim, interleaved runs, medians and ratios.

Usage: bench/compare/compare.py [--build DIR] [--runs N] [--duration S]
                                [--tokens N] [--out FILE.md]
       bench/compare/compare.py --svg-only RESULTS [--out FILE.svg]

A run writes the table (FILE.md, by default bench/results/compare-DATE.md),
its medians as JSON (FILE.json) and a chart of them (FILE.svg: throughput
per path, latency percentiles per path). --svg-only draws the chart again
from a run's FILE.json or FILE.md without running anything, next to it
unless --out says where.

CPU placement on a 2-core machine: the middle hop (haproxy or tokswitch,
one thread/worker each) runs on CPU 1; tokbench and issuer-sim share CPU 0.
"direct" has no middle hop. CPU per authorization of the middle hop comes
from /proc/PID/stat (utime + stime) over the measured interval.

The benchmark is never part of the test suites: it runs by hand (the unit
test compare-svg only draws a chart from fixed figures, the way --svg-only
does).
"""
import argparse
import datetime
import json
import math
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port():
    # Only for haproxy, which cannot report a port it chose itself. A tiny
    # race with other processes is acceptable in a hand-run benchmark.
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start(cmd, cpu, pattern=None, timeout=15.0, env=None):
    """Starts cmd pinned to cpu; when pattern is given, waits (with a
    deadline) for a stdout line matching it and returns (proc, match)."""
    full = ["taskset", "-c", str(cpu)] + cmd
    p = subprocess.Popen(full, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         text=True, env=env)
    if pattern is None:
        return p, None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = p.stdout.readline()
        if not line:
            break
        m = re.search(pattern, line)
        if m:
            return p, m
    p.kill()
    raise RuntimeError(f"{cmd[0]} did not print {pattern!r} in {timeout}s")


def stop(p):
    if p and p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def wait_port(port, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)  # polling a port with a deadline, not a fixed wait
    raise RuntimeError(f"port {port} never opened")


class Setup:
    def __init__(self, args, tmp):
        self.a = args
        self.tmp = tmp
        b = args.build
        self.tokvault = os.path.join(b, "tools/tokvault/tokvault")
        self.sim = os.path.join(b, "tools/issuer-sim/issuer-sim")
        self.bench = os.path.join(b, "bench/tokbench/tokbench")
        self.switch = os.path.join(b, "src/tokswitch")
        self.vault = os.path.join(tmp, "vault")
        self.key = os.path.join(tmp, "vault.key")
        self.tokens = os.path.join(tmp, "tokens.csv")

    def make_vault(self):
        subprocess.run([self.tokvault, "--vault", self.vault, "--key-file", self.key, "demo",
                        "--count", str(self.a.tokens), "--out", self.tokens],
                       check=True, stdout=subprocess.DEVNULL)

    def hop(self, kind, issuer_port):
        """Starts the middle hop; returns (proc or None, target port)."""
        if kind == "direct":
            return None, issuer_port
        if kind == "haproxy":
            port = free_port()
            cfg = os.path.join(self.tmp, "haproxy.cfg")
            with open(cfg, "w") as f:
                f.write(f"""global
    nbthread 1
    maxconn 4096
defaults
    mode tcp
    timeout connect 2s
    timeout client 60s
    timeout server 60s
listen tsw
    bind 127.0.0.1:{port}
    server issuer 127.0.0.1:{issuer_port}
""")
            p, _ = start(["haproxy", "-f", cfg, "-db"], cpu=1)
            wait_port(port)
            return p, port
        io = kind.split("-", 1)[1]
        state = tempfile.mkdtemp(dir=self.tmp)
        p, m = start([self.switch, "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0",
                      "--issuer", f"127.0.0.1:{issuer_port}", "--vault", self.vault,
                      "--state", state, "--key-file", self.key, "--workers", "1",
                      "--io", io], cpu=1,
                     pattern=r"listening acquirer=[^:]+:(\d+)")
        if not self.wait_ready(m):
            stop(p)
            raise RuntimeError("tokswitch never became ready")
        return p, int(m.group(1))

    def wait_ready(self, m):
        # /readyz turns 200 once the issuer link is signed on.
        line = m.string
        mm = re.search(r"metrics=([^:\s]+):(\d+)", line)
        if not mm:
            return False
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                s = socket.create_connection((mm.group(1), int(mm.group(2))), timeout=1)
                s.sendall(b"GET /readyz HTTP/1.0\r\n\r\n")
                status = s.recv(64).split(b"\r\n", 1)[0]
                s.close()
                if b" 200" in status:
                    return True
            except OSError:
                pass
            time.sleep(0.05)  # polling /readyz with a deadline, not a fixed wait
        return False

    def run_bench(self, port, mode, kind):
        out = os.path.join(self.tmp, "bench.json")
        cmd = [self.bench, "--target", f"127.0.0.1:{port}", "--tokens", self.tokens,
               "--duration", str(self.a.duration), "--warmup", "1", "--json", out,
               "--connections", "16"]
        if kind in ("direct", "haproxy"):
            cmd += ["--expect", "issuer"]
        if mode.startswith("depth"):
            cmd += ["--depth", mode[5:]]
        else:
            cmd += ["--rate", str(int(mode[4:]))]
        p = subprocess.run(["taskset", "-c", "0"] + cmd, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=self.a.duration + 60)
        if p.returncode != 0:
            raise RuntimeError(f"tokbench failed ({p.returncode}) on {kind} {mode}")
        with open(out) as f:
            return json.load(f)


def one(setup, kind, mode):
    sim, m = start([setup.sim, "--listen", "127.0.0.1:0"], cpu=0,
                   pattern=r"listening issuer=[^:]+:(\d+)")
    hop = None
    try:
        hop, port = setup.hop(kind, int(m.group(1)))
        c0 = cpu_seconds(hop.pid) if hop else 0.0
        r = setup.run_bench(port, mode, kind)
        c1 = cpu_seconds(hop.pid) if hop else 0.0
        n = max(1, r["count"] + r.get("warmup_count", 0))
        r["cpu_us_per_auth"] = (c1 - c0) * 1e6 / n if hop else float("nan")
        return r
    finally:
        stop(hop)
        stop(sim)


# The medians a run reports for each path and mode, with the tokbench JSON
# field each comes from; the table has some of them, the JSON all.
FIGURES = ["achieved_rate", "cpu_us_per_auth", "p50_us", "p90_us", "p99_us", "p99_9_us",
           "wrong"]
PERCENTILES = [("p50", "p50_us"), ("p90", "p90_us"), ("p99", "p99_us"), ("p99.9", "p99_9_us")]
TABLE_HEADER = "| path | auth/s | vs haproxy | CPU us/auth (hop) | p50 us | p99 us | wrong |"
# the table's columns after the path (the ratio is computed, not kept)
TABLE_COLUMNS = ["achieved_rate", None, "cpu_us_per_auth", "p50_us", "p99_us", "wrong"]


def summarize(results, kinds, modes, title, note):
    """The medians of the runs in results ({(kind, mode): [tokbench JSON]})
    as a summary: {"title", "note", "kinds", "modes", "paths": {mode: {kind:
    {figure: median}}}}, NaN where no run gave the figure."""
    def med(k, mode, key):
        v = [r[key] for r in results.get((k, mode), []) if key in r and r[key] == r[key]]
        return statistics.median(v) if v else float("nan")

    return {"title": title, "note": note, "kinds": list(kinds), "modes": list(modes),
            "paths": {mode: {k: {f: med(k, mode, f) for f in FIGURES} for k in kinds}
                      for mode in modes}}


def table(summary):
    """The Markdown table of a summary (what compare-DATE.md holds)."""
    lines = [f"# {summary['title']}", "", summary["note"], ""]
    for mode in summary["modes"]:
        paths = summary["paths"][mode]
        lines += [f"## {mode}", "", TABLE_HEADER, "|---|---|---|---|---|---|---|"]
        base = paths.get("haproxy", {}).get("achieved_rate", float("nan"))
        for k in summary["kinds"]:
            f = paths[k]
            rate = f["achieved_rate"]
            lines.append(f"| {k} | {rate:.0f} | {rate / base:.2f}x | "
                         f"{f['cpu_us_per_auth']:.1f} | {f['p50_us']:.0f} | "
                         f"{f['p99_us']:.0f} | {f['wrong']:.0f} |")
        lines.append("")
    return "\n".join(lines)


def parse_table(text):
    """A summary from a compare-DATE.md table: the figures its columns hold
    (auth/s, CPU us/auth, p50, p99, wrong), NaN for the others."""
    summary = {"title": "", "note": "", "kinds": [], "modes": [], "paths": {}}
    mode = None
    for line in text.splitlines():
        if line.startswith("# ") and not summary["title"]:
            summary["title"] = line[2:].strip()
        elif line.startswith("Machine:") and not summary["note"]:
            summary["note"] = line.strip()
        elif line.startswith("## "):
            mode = line[3:].strip()
            summary["modes"].append(mode)
            summary["paths"][mode] = {}
        elif mode and line.startswith("| ") and not line.startswith("| path "):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) != 1 + len(TABLE_COLUMNS):
                raise ValueError(f"a row of {mode} has {len(cells)} cells: {line}")
            figures = {f: float("nan") for f in FIGURES}
            for name, cell in zip(TABLE_COLUMNS, cells[1:]):
                if name:
                    figures[name] = float(cell)
            summary["paths"][mode][cells[0]] = figures
            if cells[0] not in summary["kinds"]:
                summary["kinds"].append(cells[0])
    if not summary["modes"] or not summary["kinds"]:
        raise ValueError("no comparison table in it")
    return summary


def load_summary(path):
    """A summary from a run's FILE.json (all figures) or FILE.md (the table)."""
    with open(path) as f:
        text = f.read()
    if not path.endswith(".json"):
        return parse_table(text)
    summary = json.loads(text)
    for mode in summary["paths"].values():
        for figures in mode.values():
            for f, v in figures.items():
                figures[f] = float("nan") if v is None else v
    return summary


def dump_summary(summary, path):
    """Writes summary as JSON, a figure no run gave (NaN) as null."""
    out = dict(summary)
    out["paths"] = {mode: {k: {f: (None if v != v else v) for f, v in figures.items()}
                           for k, figures in paths.items()}
                    for mode, paths in summary["paths"].items()}
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


def render_svg(summary, path):
    """Draws summary into the SVG file path: one panel of throughput per path
    (a bar per path in each mode), then one panel per mode of latency
    percentiles per path (a line per path, log scale). Text stays text and
    every series is a group whose id names it (throughput-MODE-PATH,
    latency-MODE-PATH), so the file can be searched and checked."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    matplotlib.rcParams["svg.fonttype"] = "none"
    matplotlib.rcParams["svg.hashsalt"] = "tokswitch-compare"  # same input, same file
    modes, kinds = summary["modes"], summary["kinds"]
    ncols = 2
    nrows = (len(modes) + 1 + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.4 * ncols, 4.2 * nrows), squeeze=False)
    cells = [ax for row in axes for ax in row]
    colors = {k: f"C{i}" for i, k in enumerate(kinds)}

    ax = cells[0]
    width = 0.8 / max(1, len(kinds))
    for i, k in enumerate(kinds):
        for j, mode in enumerate(modes):
            rate = summary["paths"][mode][k]["achieved_rate"]
            if rate != rate:
                continue
            bar = ax.bar(j + (i - (len(kinds) - 1) / 2) * width, rate, width, color=colors[k],
                         label=k if j == 0 else None)
            bar.patches[0].set_gid(f"throughput-{mode}-{k}")
    ax.set_xticks(range(len(modes)), modes)
    ax.set_ylabel("authorizations/s (median)")
    ax.set_title("Throughput per path")
    ax.legend(fontsize="small")

    def have(f, key):
        v = f.get(key, float("nan"))
        return v == v and v > 0

    # the percentiles some path has (a table has p50 and p99, a JSON all four)
    shown = [(name, key) for name, key in PERCENTILES
             if any(have(summary["paths"][m][k], key) for m in modes for k in kinds)]
    for n, mode in enumerate(modes, 1):
        ax = cells[n]
        for k in kinds:
            f = summary["paths"][mode][k]
            pts = [(x, f[key]) for x, (_, key) in enumerate(shown) if have(f, key)]
            if not pts:
                continue
            line, = ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o",
                            color=colors[k], label=k)
            line.set_gid(f"latency-{mode}-{k}")
        ax.set_xticks(range(len(shown)), [name for name, _ in shown])
        ax.set_yscale("log")
        # plain microseconds, minor ticks labelled at 2 and 5 of each decade
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(FuncFormatter(
            lambda v, _: f"{v:g}" if round(v / 10 ** math.floor(math.log10(v))) in (2, 5)
            else ""))
        ax.set_ylabel("latency us (median of runs)")
        ax.set_title(f"Latency percentiles per path, {mode}")
        ax.legend(fontsize="small")
    for ax in cells[len(modes) + 1:]:
        ax.set_visible(False)
    fig.suptitle(summary["title"])
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)


def svg_only(results, out):
    try:
        summary = load_summary(results)
    except (OSError, ValueError, KeyError) as e:
        sys.exit(f"compare.py: {results}: {e}")
    out = out or os.path.splitext(results)[0] + ".svg"
    render_svg(summary, out)
    print(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build-bench"))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=100000)
    ap.add_argument("--kinds", default="direct,haproxy,tokswitch-uring,tokswitch-uv")
    ap.add_argument("--out", default=None)
    ap.add_argument("--svg-only", metavar="RESULTS", default=None,
                    help="draw the chart of a run's FILE.json or FILE.md; run nothing")
    a = ap.parse_args()
    if a.svg_only:
        svg_only(a.svg_only, a.out)
        return
    kinds = a.kinds.split(",")

    with tempfile.TemporaryDirectory() as tmp:
        s = Setup(a, tmp)
        s.make_vault()
        results = {}
        modes = ["depth1", "depth8"]
        for mode in modes:
            for i in range(a.runs):
                for k in kinds:  # interleaved: A B C D A B C D ...
                    r = one(s, k, mode)
                    results.setdefault((k, mode), []).append(r)
                    print(f"{mode} run {i + 1} {k}: {r['achieved_rate']:.0f}/s "
                          f"p99 {r['p99_us']:.0f}us", file=sys.stderr)
        # open loop at half of haproxy's maximum (depth 8 median)
        hap = [r["achieved_rate"] for r in results.get(("haproxy", "depth8"), [])]
        if hap:
            mode = f"rate{int(statistics.median(hap) / 2)}"
            modes.append(mode)
            for i in range(a.runs):
                for k in kinds:
                    r = one(s, k, mode)
                    results.setdefault((k, mode), []).append(r)
                    print(f"{mode} run {i + 1} {k}: p99 {r['p99_us']:.0f}us", file=sys.stderr)

    summary = summarize(
        results, kinds, modes, f"tokswitch side-by-side, {datetime.date.today().isoformat()}",
        f"Machine: {platform.node()}, {os.cpu_count()} CPUs, {platform.platform()}. "
        f"{a.runs} interleaved runs of {a.duration} s each, medians; 16 connections; "
        f"{a.tokens} demo tokens. Middle hop on CPU 1, client + issuer-sim on CPU 0.")
    text = table(summary)
    out = a.out or os.path.join(ROOT, "bench", "results",
                                f"compare-{datetime.date.today().isoformat()}.md")
    stem = os.path.splitext(out)[0]
    with open(out, "w") as f:
        f.write(text + "\n")
    dump_summary(summary, stem + ".json")
    render_svg(summary, stem + ".svg")
    print(text)


if __name__ == "__main__":
    main()
