#!/usr/bin/env python3
"""Fault scenario: the state directory's filesystem fills up.

    fault_state_full.py --build BUILD_DIR --source SOURCE_DIR --io uring|uv [NAME...]

The state (--state) lives on a tmpfs of a few MiB mounted by the test (it
needs root, as in CI; without it the whole file is skipped). Reversals
are queued first, then a filler file takes the rest of the filesystem:
the state's writer degrades with a log line, /readyz says so, ordinary
authorizations are still approved, limited-use ones are declined 96
STATE_UNAVAILABLE at once (not after the issuer timeout), the queued
reversals are still delivered and acknowledged. Removing the filler
brings it back by itself: a log line, /readyz clean, limited uses
approved again. Prints TAP.
"""
import errno
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import tswtest as T  # noqa: E402

args, TOKSWITCH, TOKVAULT, PROFILE, TMP = T.suite_setup("fault-state")
VAULT = os.path.join(TMP, "vault")
KEY = os.path.join(TMP, "key")
MNT = os.path.join(TMP, "statefs")
FS_SIZE = "4m"            # the state's filesystem
ISSUER_TIMEOUT_MS = 1500
FAST_S = 0.5              # "at once": well under the issuer timeout
LIMITED = 400             # limited-use tokens that grow the counts until the disk is short
EXPIRY = "3012"


def _tok(n):
    return T.luhn_complete("4000%011d" % n)


def _pan(n):
    return T.luhn_complete("5413%011d" % (n * 7919))


OK = dict(token=_tok(1), pan=_pan(1))
LIMITED_TOKENS = [dict(token=_tok(100 + i), pan=_pan(100 + i)) for i in range(LIMITED)]
ALL = [OK] + LIMITED_TOKENS


run = T.run


def make_vault():
    T.make_vault(TOKVAULT, VAULT, KEY,
                 [OK] + [dict(t, max_uses=5) for t in LIMITED_TOKENS], EXPIRY,
                 os.path.join(TMP, "tokens.csv"))


STAN = [0]


def auth(token):
    STAN[0] = STAN[0] % 999999 + 1
    stan = STAN[0]
    return "0100", {2: token, 3: "000000", 4: "000000001000", 7: "1123120000",
                    11: "%06d" % stan, 14: EXPIRY, 22: "071", 37: "RRN%09d" % stan,
                    41: "TERM0001", 42: "MERCHANT0000001", 49: "840"}


class SilentIssuer(T.FakeIssuer):
    """A FakeIssuer that records, but never answers, the MTIs in silent."""

    def __init__(self, profile):
        self.silent = set()
        super().__init__(profile)

    def _answer_for(self, mti, f):
        if mti in self.silent:
            return b""  # sendall(b"") sends nothing
        return super()._answer_for(mti, f)

    def reversals(self):
        with self.lock:
            return [f for mti, f in self.requests if mti == "0400"]


CONF = """[server]
workers = 2
drain_timeout_ms = 5000
[issuer]
timeout_ms = %d
reconnect_min_ms = 20
reconnect_max_ms = 200
echo_interval_ms = 60000
[saf]
poll_ms = 20
retry_min_ms = 100
retry_max_ms = 200
[state]
retry_max_ms = 200
""" % ISSUER_TIMEOUT_MS


class Env:
    """The switch with its state on the test's tmpfs, and one issuer."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(dir=TMP)
        self.issuer = SilentIssuer(PROFILE)
        conf = os.path.join(self.dir, "tokswitch.conf")
        with open(conf, "w") as f:
            f.write(CONF)
        self.state = os.path.join(MNT, "state")
        os.mkdir(self.state)
        argv = ["-c", conf, "--vault", VAULT, "--key-file", KEY, "--listen", "127.0.0.1:0",
                "--metrics", "127.0.0.1:0", "--io", args.io, "--issuer", self.issuer.addr,
                "--state", self.state]
        self.sw = T.Switch(TOKSWITCH, argv, os.path.join(self.dir, "stderr.log"))
        self.conns = []
        self.sw.wait_ready()

    def conn(self):
        c = T.Conn(self.sw.acq, PROFILE)
        self.conns.append(c)
        return c

    def ask(self, conn, mti_fields):
        conn.request(*mti_fields)
        return conn.answer()

    def close(self):
        for c in self.conns:
            c.close()
        self.issuer.silent = set()
        rc = self.sw.stop()
        self.issuer.stop()
        log = self.sw.log()
        with open(self.sw.stderr_path, "rb") as f:
            leaks = T.log_leaks(f.read(), [t[k] for t in ALL for k in ("pan", "token")])
        if leaks:
            raise AssertionError("the switch's log holds " + ", ".join(leaks))
        report = self.sw.sanitizer_report()
        if report:
            raise AssertionError("sanitizer: " + report)
        if rc != 0:
            raise AssertionError("tokswitch exited %r after SIGTERM: %s" % (rc, log[-1500:]))

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        try:
            self.close()
        except AssertionError:
            if exc_type is None:  # report the test's own failure first
                raise


def assert_eq(a, b, what=""):
    if a != b:
        raise AssertionError("%s: %r != %r" % (what, a, b))


def fill(path):
    """Writes path until the filesystem refuses another byte."""
    with open(path, "wb", buffering=0) as f:
        for chunk in (1 << 16, 4096, 512, 1):
            block = b"\0" * chunk
            while True:
                try:
                    if f.write(block) != chunk:
                        break
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
    st = os.statvfs(os.path.dirname(path))
    assert_eq(st.f_bavail, 0, "free blocks after the filler")


# --- tests -----------------------------------------------------------------

def test_state_disk_full_degrades_then_recovers_by_itself():
    filler = os.path.join(MNT, "filler")
    with Env() as e:
        c = e.conn()
        # reversals owed before the disk fills: three silent timeouts
        e.issuer.silent = {"0100", "0400"}
        frames = [auth(OK["token"]) for _ in range(3)]
        for mti, f in frames:
            c.request(mti, f)
        got = [c.answer(timeout=ISSUER_TIMEOUT_MS / 1000 + 5)[1] for _ in frames]
        assert_eq(sorted(f[39] for f in got), [b"91"] * 3, "timeouts")
        T.wait_for(lambda: e.sw.metric("tokswitch_state_saf_depth") == 3, 10, "3 reversals queued")
        T.wait_for(lambda: len(e.issuer.reversals()) >= 3, 10, "reversals sent, unanswered")
        e.issuer.silent = {"0400"}  # authorizations are answered again

        fill(filler)
        # limited uses of new tokens grow the counts: the first write
        # the disk cannot take degrades the writer; nothing is answered
        # other than approved or STATE_UNAVAILABLE
        answered = None
        for i, t in enumerate(LIMITED_TOKENS):
            _, f = e.ask(c, auth(t["token"]))
            if (f[39], f.get(44)) == (b"96", b"STATE_UNAVAILABLE"):
                answered = i
                break
            assert_eq(f[39], b"00", "limited use %d before the writer degraded" % i)
        if answered is None:
            raise AssertionError("%d new limited-use tokens and the state never degraded"
                                 % LIMITED)
        used = LIMITED_TOKENS[:answered]
        fresh = LIMITED_TOKENS[answered + 1:]

        line = T.wait_for(lambda: [l for l in e.sw.log().splitlines()
                                   if "event=state_writer_degraded" in l], 5, "degraded line")
        assert_eq(len(line), 1, "one degraded line")
        assert "reason=disk_full" in line[0] and 'error="No space left on device"' in line[0], \
            line[0]
        code, body = e.sw.http("/readyz")
        assert_eq((code, body), (200, "degraded: state writer: disk full\n"), "/readyz")
        assert_eq(e.sw.metric("tokswitch_state_writer_degraded"), 1.0, "gauge")

        # ordinary authorizations flow
        for _ in range(5):
            _, f = e.ask(c, auth(OK["token"]))
            assert_eq(f[39], b"00", "ordinary authorization while degraded")
        # limited uses, new tokens and one used before (none when the very
        # first limited use degraded the writer), declined at once
        asked = fresh[:5] + used[:1]
        for t in asked:
            t0 = time.monotonic()
            _, f = e.ask(c, auth(t["token"]))
            took = time.monotonic() - t0
            assert_eq((f[39], f.get(44)), (b"96", b"STATE_UNAVAILABLE"), "limited use")
            if took >= FAST_S:
                raise AssertionError("answered in %.2f s (issuer timeout %.1f s)"
                                     % (took, ISSUER_TIMEOUT_MS / 1000))
        # the first refusal, and every one asked since
        assert_eq(e.sw.metric('tokswitch_declines_total{reason="STATE_UNAVAILABLE"}'),
                  float(1 + len(asked)), "declines")
        assert e.sw.metric("tokswitch_state_reserve_refused_total") >= len(asked)

        # the reversals owed from before are delivered and acked: their
        # deletes commit while the disk is still full
        e.issuer.silent = set()
        T.wait_for(lambda: e.sw.metric("tokswitch_state_saf_depth") == 0, 15, "reversals acked")
        assert e.sw.metric("tokswitch_saf_acked_total") >= 3
        T.wait_for(lambda: e.sw.metric("tokswitch_state_writer_freeing_commits_total") >= 1, 5,
                   "the acks committed")
        originals = {bytes(f.get(90, b"")) for f in e.issuer.reversals()}
        assert_eq(len(originals), 3, "one reversal per timed-out request (DE90)")
        for f in e.issuer.reversals():
            assert_eq(f[2], OK["pan"].encode(), "reversal to the issuer carries the PAN")
        assert_eq(e.sw.http("/readyz")[1], "degraded: state writer: disk full\n",
                  "still degraded: the disk is full")

        # space returns: recovery by itself
        os.unlink(filler)
        T.wait_for(lambda: "event=state_writer_recovered" in e.sw.log(), 10, "recovered line")
        assert_eq(e.sw.http("/readyz"), (200, "ready\n"), "/readyz clean")
        assert_eq(e.sw.metric("tokswitch_state_writer_degraded"), 0.0, "gauge")
        for t in fresh[5:10]:
            _, f = e.ask(c, auth(t["token"]))
            assert_eq(f[39], b"00", "limited use after the recovery")
        assert_eq(len([l for l in e.sw.log().splitlines()
                       if "event=state_writer_degraded" in l]), 1, "degraded lines")


TESTS = [(n[len("test_"):], f) for n, f in list(globals().items())
         if n.startswith("test_") and callable(f)]


def mount():
    os.mkdir(MNT)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % FS_SIZE, "tmpfs",
                        MNT], capture_output=True, text=True)
    return p.returncode == 0, p.stderr.strip()


def unmount():
    if subprocess.run(["umount", MNT], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", MNT], capture_output=True)


if __name__ == "__main__":
    rc = 0
    try:
        ok, why = mount()
        if not ok:
            print("1..0 # SKIP cannot mount a tmpfs for the state (root needed): %s" % why,
                  flush=True)
        else:
            try:
                make_vault()
                rc = T.run_tap(TESTS, args.only)
            finally:
                unmount()
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
    sys.exit(rc)
