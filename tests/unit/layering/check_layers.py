#!/usr/bin/env python3
"""Fails when a module includes a header of a module at or above its layer.

STYLE.md: each src/ folder is a static library, and a module includes only
the headers of modules below it (engine may use authz and vault; authz never
uses engine; io/ never decides anything). Meson does not enforce that; this
test does, for src/ and for the public headers in include/tsw/.

Usage: check_layers.py SOURCE_ROOT      checks the tree
       check_layers.py --self-test      checks that made-up violations are
                                        caught and a clean tree passes
"""
import pathlib
import re
import sys
import tempfile

# header -> owning module
OWNER = {
    "error.h": "common", "log.h": "common", "config.h": "common", "luhn.h": "common",
    "harden.h": "common", "hist.h": "common",
    "iso8583.h": "iso8583",
    "token.h": "vault", "vault.h": "vault",
    "authz.h": "authz",
    "state.h": "state",
    "hsm.h": "hsm",
    "cluster.h": "cluster",
    "engine.h": "engine", "metrics.h": "engine",
    "io.h": "io",
    "ctl.h": "ctl", "service.h": "ctl",
}
# state (limited-use counts, ATCs, the SAF queue) sits beside authz: authz
# is pure and never uses it; the engine uses both. hsm (card cryptography)
# sits there too: it uses common and iso8583's TLV reader, never the vault
# (the engine hands it the keys the vault stores). cluster (NATS JetStream)
# replicates vault changes: it uses the vault, and the vault never uses it.
RANK = {"common": 0, "iso8583": 1, "vault": 1, "authz": 2, "state": 2, "hsm": 2, "cluster": 2, "engine": 3,
        "io": 4, "ctl": 4, "main": 5}
# io/ moves bytes for the engine and decides nothing.
FORBIDDEN = {"io": {"vault", "authz", "state", "hsm", "cluster"}, "hsm": {"vault"}}

inc_re = re.compile(r'^\s*#\s*include\s+"tsw/([^"]+)"', re.M)


def check(path, module, errors):
    for hdr in inc_re.findall(path.read_text(errors="replace")):
        owner = OWNER.get(hdr)
        if owner is None:
            errors.append(f"{path}: includes tsw/{hdr}, which has no owner in check_layers.py")
            continue
        if owner == module:
            continue
        if RANK[owner] >= RANK[module] or owner in FORBIDDEN.get(module, ()):
            errors.append(f"{path}: module {module} may not include tsw/{hdr} (module {owner})")


def scan(root):
    """Returns (files checked, violations) for the tree at root."""
    errors = []
    checked = 0
    for p in sorted((root / "src").rglob("*.[ch]")):
        parts = p.relative_to(root / "src").parts
        module = parts[0] if len(parts) > 1 else "main"
        if module not in RANK:
            errors.append(f"{p}: unknown module folder {module}")
            continue
        checked += 1
        check(p, module, errors)
    for p in sorted((root / "include" / "tsw").glob("*.h")):
        owner = OWNER.get(p.name)
        if owner is None:
            errors.append(f"{p}: public header without an owner in check_layers.py")
            continue
        checked += 1
        check(p, owner, errors)
    return checked, errors


# (file under a made-up tree, its text, the violation it must produce or None)
SELF_TEST = [
    ("src/authz/decide.c", '#include "tsw/state.h"\n', "module authz may not include tsw/state.h"),
    ("src/state/state.c", '#include "tsw/engine.h"\n', "module state may not include tsw/engine.h"),
    ("src/state/saf.c", '#include "tsw/authz.h"\n', "module state may not include tsw/authz.h"),
    ("src/io/worker.c", '#include "tsw/state.h"\n', "module io may not include tsw/state.h"),
    ("src/io/uring.c", '#include "tsw/hsm.h"\n', "module io may not include tsw/hsm.h"),
    ("src/hsm/soft.c", '#include "tsw/vault.h"\n', "module hsm may not include tsw/vault.h"),
    ("src/hsm/emv.c", '#include "tsw/state.h"\n', "module hsm may not include tsw/state.h"),
    ("src/authz/decide2.c", '#include "tsw/hsm.h"\n', "module authz may not include tsw/hsm.h"),
    ("src/common/log.c", '  #  include "tsw/iso8583.h"\n', "module common may not include"),
    ("src/vault/vault.c", '#include "tsw/nosuch.h"\n', "which has no owner"),
    ("src/extra/x.c", "", "unknown module folder extra"),
    ("include/tsw/new.h", "", "public header without an owner"),
    ("include/tsw/luhn.h", '#include "tsw/error.h"\n', None),
    ("src/engine/use.c", '#include "tsw/state.h"\n#include "tsw/luhn.h"\n', None),
    ("src/hsm/de55.c", '#include "tsw/iso8583.h"\n#include "tsw/error.h"\n', None),
    ("src/engine/crypto.c", '#include "tsw/hsm.h"\n', None),
    ("src/ctl/metrics_text.c", '#include "tsw/state.h"\n#include "tsw/metrics.h"\n', None),
    ("src/main.c", '#include "tsw/ctl.h"\n#include "tsw/io.h"\n', None),
]


def write_tree(root, cases):
    for rel, text, _ in cases:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def self_test():
    failures = []
    with tempfile.TemporaryDirectory() as d:
        clean = pathlib.Path(d) / "clean"
        write_tree(clean, [c for c in SELF_TEST if c[2] is None])
        checked, errors = scan(clean)
        if errors or checked == 0:
            failures.append(f"clean tree: {checked} checked, errors {errors}")
        for case in SELF_TEST:
            if case[2] is None:
                continue
            tree = pathlib.Path(d) / f"case{SELF_TEST.index(case)}"
            write_tree(tree, [case])
            _, errors = scan(tree)
            if len(errors) != 1 or case[2] not in errors[0]:
                failures.append(f"{case[0]}: expected '{case[2]}', got {errors}")
    for f in failures:
        print(f)
    print(f"self-test: {len(SELF_TEST)} cases, {len(failures)} failures")
    return 1 if failures else 0


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    if sys.argv[1] == "--self-test":
        return self_test()
    checked, errors = scan(pathlib.Path(sys.argv[1]))
    for e in errors:
        print(e)
    print(f"checked {checked} files, {len(errors)} layering violations")
    return 1 if errors or checked == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
