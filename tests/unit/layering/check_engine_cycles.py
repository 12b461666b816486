#!/usr/bin/env python3
"""Fails when the files of src/engine call each other in a circle.

docs/engine.md gives the engine's file map: the backend's entry points sit
on top, the per-request pipeline under them, the buffers, tables and
helpers at the bottom, and calls go down. The compiler does not check
that; this test does, from the objects themselves: for each object of
libtsw_engine it reads the symbols the object defines and the ones it
leaves undefined (nm), draws an edge file -> file for every undefined
symbol another object defines, and fails on any cycle.

One edge set is allowed, named in ALLOWED: a request parked until its
limited use is durable re-enters request handling when the state says so
(use.c park_poll -> request.c engine_request), and request.c parks
requests in use.c. Every allowed edge must exist (a stale allowance
fails too), and the graph without them must have no cycle.

Usage: check_engine_cycles.py [--nm NM] LIBRARY.a   checks the library's objects
       check_engine_cycles.py --self-test           checks that a made-up cycle
                                                    is caught and a clean graph
                                                    passes
"""
import collections
import os
import re
import subprocess
import sys

# (from file, to file): the parked-request re-entry, the one cycle kept.
ALLOWED = {
    ("use.c", "request.c"),
}

# nm -A -P: "ARCHIVE[MEMBER]: NAME TYPE VALUE SIZE" (or "FILE: NAME TYPE ...")
line_re = re.compile(r"^(?P<obj>.*?):\s+(?P<sym>\S+)\s+(?P<type>[A-Za-z])(\s|$)")
member_re = re.compile(r"\[(?P<member>[^\]]+)\]$")


def source_name(obj):
    """The engine source file an object was built from ('x.c.o' -> 'x.c')."""
    m = member_re.search(obj)
    name = os.path.basename(m.group("member") if m else obj)
    return name[:-2] if name.endswith(".o") else name


def parse(nm_text):
    """Returns (defined symbol -> file, file -> set of undefined symbols)."""
    defs = {}
    undef = collections.defaultdict(set)
    for line in nm_text.splitlines():
        m = line_re.match(line)
        if not m:
            continue
        f = source_name(m.group("obj"))
        sym, typ = m.group("sym"), m.group("type")
        undef.setdefault(f, set())
        if typ == "U":
            undef[f].add(sym)
        elif typ.isupper() and typ not in "NW":
            defs[sym] = f
    return defs, undef


def graph(nm_text):
    """file -> {file it uses: symbols it uses there}."""
    defs, undef = parse(nm_text)
    g = {f: collections.defaultdict(set) for f in undef}
    for f, syms in undef.items():
        for s in syms:
            to = defs.get(s)
            if to is not None and to != f:
                g[f][to].add(s)
    return g


def cycles(g, allowed):
    """The strongly connected components of more than one file (or a file
    using itself) left once the allowed edges are taken out (Tarjan)."""
    adj = {f: [t for t in sorted(g[f]) if (f, t) not in allowed] for f in g}
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in adj[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(adj):
        if v not in index:
            visit(v)
    return out


def check(nm_text, allowed):
    """Returns (files, edges, errors)."""
    g = graph(nm_text)
    errors = []
    for f, t in sorted(allowed):
        if t not in g.get(f, {}):
            errors.append(f"allowed edge {f} -> {t} does not exist (remove it from ALLOWED)")
    for comp in cycles(g, allowed):
        members = set(comp)
        edges = [f"{f} -> {t} ({', '.join(sorted(g[f][t]))})"
                 for f in comp for t in sorted(g[f])
                 if t in members and (f, t) not in allowed]
        errors.append("cycle between " + ", ".join(comp) + ":\n  " + "\n  ".join(edges))
    n_edges = sum(len(v) for v in g.values())
    return len(g), n_edges, errors


def print_graph(nm_text):
    g = graph(nm_text)
    for f in sorted(g):
        for t in sorted(g[f]):
            mark = "  (allowed: parked re-entry)" if (f, t) in ALLOWED else ""
            print(f"  {f} -> {t}{mark}")


def nm_of(nm, lib):
    return subprocess.run([nm, "-A", "-P", lib], check=True, capture_output=True,
                          text=True).stdout


def fake_nm(objs):
    """nm -A -P text for made-up objects: {file: (defined, undefined)}."""
    lines = []
    for f, (defined, used) in objs.items():
        member = f"libx.a[libx.a.p/{f}.o]"
        lines += [f"{member}: {s} T 0 10" for s in defined]
        lines += [f"{member}: {s} t 0 10" for s in ("static_helper",)]
        lines += [f"{member}: {s} U" for s in used]
    return "\n".join(lines) + "\n"


# (name, objects, allowed edges, text an error must contain or None)
SELF_TEST = [
    ("clean layers", {
        "input.c": (["tsw_input"], ["request", "reply"]),
        "request.c": (["request"], ["reply", "memcpy"]),
        "reply.c": (["reply"], ["memcpy"]),
    }, set(), None),
    ("two files in a circle", {
        "input.c": (["tsw_input", "done"], ["request"]),
        "request.c": (["request"], ["done"]),
    }, set(), "cycle between input.c, request.c"),
    ("a circle through three files", {
        "a.c": (["fa"], ["fb"]),
        "b.c": (["fb"], ["fc"]),
        "c.c": (["fc"], ["fa"]),
    }, set(), "cycle between a.c, b.c, c.c"),
    ("the allowed re-entry", {
        "use.c": (["park", "park_poll"], ["engine_request"]),
        "request.c": (["engine_request"], ["park"]),
    }, {("use.c", "request.c")}, None),
    ("a second circle beside the allowed one", {
        "use.c": (["park", "park_poll"], ["engine_request"]),
        "request.c": (["engine_request"], ["park", "conn_done"]),
        "conn.c": (["conn_done"], ["engine_request"]),
    }, {("use.c", "request.c")}, "cycle between conn.c, request.c"),
    ("a stale allowance", {
        "use.c": (["park"], []),
        "request.c": (["engine_request"], ["park"]),
    }, {("use.c", "request.c")}, "allowed edge use.c -> request.c does not exist"),
    ("data counts as a use", {
        "reply.c": (["echo_fields"], ["feed"]),
        "input.c": (["feed"], ["echo_fields"]),
    }, set(), "cycle between input.c, reply.c"),
]


def self_test():
    failures = []
    for name, objs, allowed, want in SELF_TEST:
        _, _, errors = check(fake_nm(objs), allowed)
        if want is None and errors:
            failures.append(f"{name}: expected no error, got {errors}")
        elif want is not None and (len(errors) != 1 or want not in errors[0]):
            failures.append(f"{name}: expected '{want}', got {errors}")
    for f in failures:
        print(f)
    print(f"self-test: {len(SELF_TEST)} cases, {len(failures)} failures")
    return 1 if failures else 0


def main():
    args = sys.argv[1:]
    if args == ["--self-test"]:
        return self_test()
    nm = "nm"
    if len(args) == 3 and args[0] == "--nm":
        nm, args = args[1], args[2:]
    if len(args) != 1:
        print(__doc__)
        return 2
    text = nm_of(nm, args[0])
    files, edges, errors = check(text, ALLOWED)
    print_graph(text)
    for e in errors:
        print(e)
    print(f"checked {files} objects, {edges} file edges, {len(errors)} errors")
    return 1 if errors or files == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
