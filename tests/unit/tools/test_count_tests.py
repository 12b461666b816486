#!/usr/bin/env python3
"""tools/count-tests, the closing line of tools/test: a skipped test is
counted skipped, never passed, and a skipped integration scenario fails a
run that requires every one (CI)."""
import json
import os
import subprocess
import sys
import tempfile

SOURCE = sys.argv[1]
TOOL = os.path.join(SOURCE, "tools", "count-tests")


def entry(name, result, stdout):
    return json.dumps({"name": name, "result": result, "stdout": stdout})


# (what, testlog lines, --require-all, the closing line, exit status, on stderr)
CASES = [
    ("Criterion TAP: passed, skipped, failed",
     [entry("tokswitch:unit / ctl", "FAIL", "ok 1 - a\nok 2 - b # SKIP no ipv6\nnot ok 3 - c\n")],
     False, "1 passed, 1 failed, 1 skipped", 1, ""),
    ("a skip in a unit test passes the run",
     [entry("tokswitch:unit / ctl", "OK", "ok 1 - a\nok 2 - b # skip no ipv6\n")],
     True, "1 passed, 0 failed, 1 skipped", 0, ""),
    ("a whole file skipped is one skip, not a pass",
     [entry("tokswitch:integration+tsan / fault_state_full_uv", "SKIP",
            "1..0 # SKIP cannot mount a tmpfs (root needed)\n"),
      entry("tokswitch:fuzz / fuzz_frame_replay", "OK", "replayed 12 inputs\n")],
     False, "1 passed, 0 failed, 1 skipped", 0,
     "skipped, but must run: tokswitch:integration+tsan / fault_state_full_uv "
     "(cannot mount a tmpfs (root needed))"),
    ("required: a skipped scenario fails the run",
     [entry("tokswitch:integration / fault_state_full_uring", "SKIP", "1..0 # SKIP no root\n")],
     True, "0 passed, 1 failed, 1 skipped", 1, "must run"),
    ("required: one skipped e2e test fails it too",
     [entry("tokswitch:integration / e2e_uv", "OK", "1..2\nok 1 - a\nok 2 - b # SKIP why\n")],
     True, "1 passed, 1 failed, 1 skipped", 1, "e2e_uv (1 skipped)"),
    ("a crash outside any single test is a failure",
     [entry("tokswitch:unit / engine", "FAIL", "ok 1 - a\n")],
     False, "1 passed, 1 failed, 0 skipped", 1, ""),
    ("a timeout after a skip is still a failure",
     [entry("tokswitch:unit / engine", "TIMEOUT", "ok 1 - a # SKIP x\n")],
     False, "0 passed, 1 failed, 1 skipped", 1, ""),
    ("a plain program counts once by its result",
     [entry("tokswitch:unit+tsan / io_shards_race", "OK", "ok - uring: 3200 requests\n"),
      entry("tokswitch:unit / layering", "OK", "checked 74 files\n"),
      entry("tokswitch:unit / other", "FAIL", "boom\n")],
     False, "2 passed, 1 failed, 0 skipped", 1, ""),
]


def main():
    failed = 0
    print("1..%d" % len(CASES))
    with tempfile.TemporaryDirectory() as d:
        for i, (what, lines, require, want, want_rc, want_err) in enumerate(CASES, 1):
            path = os.path.join(d, "testlog.json")
            with open(path, "w") as f:
                f.write("\n".join(lines) + "\n")
            p = subprocess.run([TOOL, path] + (["--require-all"] if require else []),
                               capture_output=True, text=True, timeout=30)
            got = p.stdout.strip().splitlines()
            ok = (got[-1:] == [want] and p.returncode == want_rc and
                  (want_err in p.stderr if want_err else p.stderr == ""))
            if not ok:
                failed += 1
                print("not ok %d - %s" % (i, what))
                print("# want %r rc %d stderr %r; got %r rc %d stderr %r"
                      % (want, want_rc, want_err, got, p.returncode, p.stderr))
            else:
                print("ok %d - %s" % (i, what))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
