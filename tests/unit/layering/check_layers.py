#!/usr/bin/env python3
"""Fails when a module includes a header of a module at or above its layer.

STYLE.md: each src/ folder is a static library, and a module includes only
the headers of modules below it (engine may use authz and vault; authz never
uses engine; io/ never decides anything). Meson does not enforce that; this
test does, for src/ and for the public headers in include/tsw/.
"""
import pathlib
import re
import sys

root = pathlib.Path(sys.argv[1])

# header -> owning module
OWNER = {
    "error.h": "common", "log.h": "common", "config.h": "common",
    "iso8583.h": "iso8583",
    "token.h": "vault", "vault.h": "vault",
    "authz.h": "authz", "state.h": "authz",
    "engine.h": "engine", "metrics.h": "engine",
    "io.h": "io",
    "ctl.h": "ctl",
}
RANK = {"common": 0, "iso8583": 1, "vault": 1, "authz": 2, "engine": 3,
        "io": 4, "ctl": 4, "main": 5}
# io/ moves bytes for the engine and decides nothing.
FORBIDDEN = {"io": {"vault", "authz"}}

inc_re = re.compile(r'^\s*#\s*include\s+"tsw/([^"]+)"', re.M)
errors = []
checked = 0


def check(path, module):
    global checked
    checked += 1
    for hdr in inc_re.findall(path.read_text(errors="replace")):
        owner = OWNER.get(hdr)
        if owner is None:
            errors.append(f"{path}: includes tsw/{hdr}, which has no owner in check_layers.py")
            continue
        if owner == module:
            continue
        if RANK[owner] >= RANK[module] or owner in FORBIDDEN.get(module, ()):
            errors.append(f"{path}: module {module} may not include tsw/{hdr} (module {owner})")


for p in sorted((root / "src").rglob("*.[ch]")):
    parts = p.relative_to(root / "src").parts
    module = parts[0] if len(parts) > 1 else "main"
    if module not in RANK:
        errors.append(f"{p}: unknown module folder {module}")
        continue
    check(p, module)
for p in sorted((root / "include" / "tsw").glob("*.h")):
    owner = OWNER.get(p.name)
    if owner is None:
        errors.append(f"{p}: public header without an owner in check_layers.py")
        continue
    check(p, owner)

for e in errors:
    print(e)
print(f"checked {checked} files, {len(errors)} layering violations")
sys.exit(1 if errors or checked == 0 else 0)
