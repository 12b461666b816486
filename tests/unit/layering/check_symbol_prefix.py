#!/usr/bin/env python3
"""Fails when a static library exports a symbol without its library's prefix.

Every src/ folder builds as one static library (libtsw_<module>.a). Its
public API is named tsw_<module>_<verb> (STYLE.md); what the files of one
library share among themselves, and nobody else may call, is named
<module>__<name>, with a double underscore, as libuv names its internals
uv__. Two libraries that each export a bare saf_put link by accident into
one program and the linker keeps whichever comes first; a prefix per
library makes that impossible and tells a reader at the call site whose
function it is.

Usage: check_symbol_prefix.py LIBRARY.a...   checks every global symbol
                                             each library defines
       check_symbol_prefix.py --self-test    checks that made-up exports
                                             are judged right
"""
import pathlib
import re
import subprocess
import sys

# libtsw_iso8583.a shares its internals as iso__: the module's name in
# its public API is tsw_iso_.
PREFIX_OF = {"iso8583": "iso"}

# nm letters of symbols a library defines and other objects can bind to
GLOBAL_KINDS = set("TDBRCVWGSU") - {"U"}


def internal_prefix(lib_path):
    m = re.match(r"libtsw_(\w+)\.a$", pathlib.Path(lib_path).name)
    if not m:
        raise SystemExit(f"{lib_path}: not a libtsw_<module>.a")
    module = m.group(1)
    return PREFIX_OF.get(module, module)


def defined_globals(nm_output):
    """Names of the global symbols nm lists as defined."""
    names = set()
    for line in nm_output.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in GLOBAL_KINDS:
            names.add(parts[2])
    return names


def bad_symbols(prefix, names):
    # names starting with "__" are the toolchain's, not ours: ASan adds an
    # __odr_asan.<global> indicator beside each exported global
    ok = ("tsw_", prefix + "__", "__")
    return sorted(n for n in names if not n.startswith(ok))


def check(libs):
    failed = 0
    for lib in libs:
        out = subprocess.run(["nm", "-g", "--defined-only", lib], check=True,
                             capture_output=True, text=True).stdout
        prefix = internal_prefix(lib)
        for name in bad_symbols(prefix, defined_globals(out)):
            print(f"{pathlib.Path(lib).name}: {name} has neither tsw_ nor {prefix}__")
            failed += 1
    if failed:
        print(f"{failed} symbol(s) without their library's prefix: make them static, "
              "or name them tsw_<module>_ (public) or <module>__ (internal)")
        return 1
    print(f"{len(libs)} libraries: every exported symbol carries its prefix")
    return 0


def self_test():
    nm = ("\nengine.o:\n0000000000000000 T tsw_engine_new\n0000000000000010 T engine__decline\n"
          "0000000000000020 t fmt6\n                 U memcpy\n0000000000000030 T saf_put\n"
          "0000000000000040 B engine_count\n0000000000000050 R state__format\n")
    names = defined_globals(nm)
    assert "fmt6" not in names, "a static function is not exported"
    assert "memcpy" not in names, "an undefined symbol is not the library's"
    bad = bad_symbols("engine", names)
    assert bad == ["engine_count", "saf_put", "state__format"], bad
    assert internal_prefix("/b/src/iso8583/libtsw_iso8583.a") == "iso"
    assert internal_prefix("libtsw_engine.a") == "engine"
    assert bad_symbols("iso", {"iso__field", "tsw_iso_encode"}) == []
    assert bad_symbols("common", {"__odr_asan.tsw_log_level"}) == []
    print("self-test passed")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--self-test"]:
        sys.exit(self_test())
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    sys.exit(check(sys.argv[1:]))
