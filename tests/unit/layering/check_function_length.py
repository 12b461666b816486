#!/usr/bin/env python3
"""Fails when a function definition in src/ is longer than 80 lines.

A function that does one thing fits on a screen; one that routes, fills a
table, encodes and cleans up in a single body hides which part owns which
decision. The code is formatted kernel-style (.clang-format: BreakBeforeBraces
Linux), so a function body opens with a `{` alone at column 0 and closes with
the next `}` at column 0; the length counts both brace lines. A definition
whose `{` is not at column 0 cannot be measured and is reported too.

Usage: check_function_length.py SOURCE_ROOT   checks every .c file in src/
       check_function_length.py --self-test   checks that a made-up 81-line
                                              function is caught and an
                                              80-line one passes
Prints FILE:LINE NAME LENGTH for each function over the limit.
"""
import pathlib
import re
import sys
import tempfile

MAX_LINES = 80

ident_call_re = re.compile(r"([A-Za-z_]\w*)\s*\($")
# a definition with its brace on the signature's line: `int f(void) {`
same_line_brace_re = re.compile(r"^[A-Za-z_][^;=]*\)\s*\{\s*$")


def strip_attributes(sig):
    """sig without __attribute__((...)) groups (their parentheses nest)."""
    out = []
    i = 0
    while i < len(sig):
        if sig.startswith("__attribute__", i):
            j = sig.find("(", i)
            if j < 0:
                break
            depth = 0
            while j < len(sig):
                depth += sig[j] == "("
                depth -= sig[j] == ")"
                j += 1
                if depth == 0:
                    break
            i = j
            continue
        out.append(sig[i])
        i += 1
    return "".join(out)


def function_name(sig):
    """The name of the function a signature defines, or None when the text
    before the `{` is not a function's signature (a data initializer)."""
    sig = strip_attributes(re.sub(r"/\*.*?\*/", " ", sig)).strip()
    if not sig.endswith(")") or "(" not in sig:
        return None
    # the name is the identifier before the first parenthesis at depth 0
    depth = 0
    for i, ch in enumerate(sig):
        if ch == "(":
            if depth == 0:
                m = ident_call_re.search(sig[: i + 1])
                return m.group(1) if m else None
            depth += 1
        elif ch == ")":
            depth -= 1
    return None


def signature_before(lines, i):
    """The signature lines just above line i (the `{`): up to a blank line,
    a preprocessor line, the end of a comment or of a statement."""
    sig = []
    k = i - 1
    while k >= 0:
        s = lines[k].rstrip()
        if not s or s.startswith("#") or s.endswith(("*/", ";", "}")) or s.startswith("}"):
            break
        sig.insert(0, s)
        if re.match(r"[A-Za-z_]", s):  # the signature's first line is at column 0
            break
        k -= 1
    return " ".join(sig)


def scan_file(path, display, errors):
    """Appends 'FILE:LINE NAME LENGTH' for each over-long function in path;
    returns how many functions it measured."""
    lines = path.read_text(errors="replace").split("\n")
    measured = 0
    i = 0
    while i < len(lines):
        line = lines[i]
        if same_line_brace_re.match(line) and function_name(line[: line.rindex("{")]):
            errors.append(f"{display}:{i + 1} {function_name(line[: line.rindex('{')])} "
                          "opening brace not alone at column 0: cannot be measured")
        if not line.startswith("{"):
            i += 1
            continue
        j = i + 1
        while j < len(lines) and not lines[j].startswith("}"):
            j += 1
        name = function_name(signature_before(lines, i))
        if j == len(lines):
            errors.append(f"{display}:{i + 1} {name or '?'} no closing brace at column 0")
            break
        if name is not None:
            measured += 1
            length = j - i + 1
            if length > MAX_LINES:
                errors.append(f"{display}:{i + 1} {name} {length}")
        i = j + 1
    return measured


def scan(root):
    """Returns (functions measured, over-long functions) for the tree at root."""
    errors = []
    measured = 0
    for p in sorted((root / "src").rglob("*.c")):
        measured += scan_file(p, p.relative_to(root), errors)
    return measured, errors


def function_text(name, length, attribute=False):
    """A made-up definition of `length` lines from `{` to `}`."""
    head = "__attribute__((format(printf, 1, 2))) " if attribute else ""
    body = [f"\tx += {i};" for i in range(length - 3)]
    return (f"/* {name} */\n{head}static int {name}(const char *fmt,\n\t\tint x, ...)\n{{\n"
            + "\n".join(body) + "\n\treturn x;\n}\n\n")


# (file under a made-up tree, its text, the line each error must start with)
SELF_TEST = [
    ("src/engine/long.c", function_text("long_one", MAX_LINES + 1),
     [f"src/engine/long.c:4 long_one {MAX_LINES + 1}"]),
    ("src/engine/fits.c", function_text("fits", MAX_LINES), []),
    ("src/engine/attr.c", function_text("add", MAX_LINES + 5, attribute=True),
     [f"src/engine/attr.c:4 add {MAX_LINES + 5}"]),
    ("src/vault/two.c",
     "static const int table[] = {\n\t1,\n};\n\n" + function_text("short_one", 10)
     + function_text("long_two", 200),
     [f"src/vault/two.c:{5 + 3 + 10 + 1 + 3} long_two 200"]),
    ("src/common/brace.c", "int f(void) {\n\treturn 0;\n}\n\n" + function_text("ok", 5),
     ["src/common/brace.c:1 f opening brace not alone"]),
]


def self_test():
    failures = []
    with tempfile.TemporaryDirectory() as d:
        for n, (rel, text, expected) in enumerate(SELF_TEST):
            tree = pathlib.Path(d) / f"case{n}"
            (tree / rel).parent.mkdir(parents=True)
            (tree / rel).write_text(text)
            measured, errors = scan(tree)
            ok = len(errors) == len(expected) and all(
                e.startswith(x) for e, x in zip(errors, expected))
            if not ok or measured == 0:
                failures.append(f"{rel}: expected {expected}, got {errors} ({measured} measured)")
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
    measured, errors = scan(pathlib.Path(sys.argv[1]))
    for e in errors:
        print(e)
    print(f"measured {measured} functions, {len(errors)} over {MAX_LINES} lines")
    return 1 if errors or measured == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
