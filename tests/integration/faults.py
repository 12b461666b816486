#!/usr/bin/env python3
"""Fault suite: kills switches and issuers at the moments that decide
whether money is lost, and reads what the issuers received.

    faults.py --build BUILD_DIR --source SOURCE_DIR --io uring|uv [NAME...]

Every switch runs with --state DIR (the durable reversal queue). Each
scenario asserts that every reversal the switch owes reaches an issuer
that answers it exactly once, and that no reversal goes out that is not
owed. docs/saf.md "Fault suite" lists the scenarios. Prints TAP.
"""
import os
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import tswtest as T  # noqa: E402

args, TOKSWITCH, TOKVAULT, PROFILE, TMP = T.suite_setup("faults")
VAULT = os.path.join(TMP, "vault")
KEY = os.path.join(TMP, "key")
EXPIRY = "3012"

TOKENS = {"ok": dict(n=1), "once": dict(n=2, max_uses="1")}
# the load mixes plain tokens with limited-use ones (their approvals wait
# until the reserved use is durable)
for i in range(8):
    TOKENS["load%d" % i] = dict(n=10 + i, max_uses="1000000" if i % 2 else "")
# single-use tokens whose approvals are held while the state is stalled
for i in range(5):
    TOKENS["held%d" % i] = dict(n=30 + i, max_uses="1")
for name, t in TOKENS.items():
    t["token"] = T.luhn_complete("4000%011d" % t["n"])
    t["pan"] = T.luhn_complete("5413%011d" % (t["n"] * 7907))

CONF = T.SWITCH_CONF + "[saf]\npoll_ms = 20\n"


class Node:
    """One state directory and the switch processes run on it, one after
    another (restarts keep the state and the vault)."""

    def __init__(self, timeout_ms):
        self.dir = tempfile.mkdtemp(dir=TMP)
        self.state = os.path.join(self.dir, "state")
        os.mkdir(self.state)
        self.conf = os.path.join(self.dir, "tokswitch.conf")
        with open(self.conf, "w") as f:
            f.write(CONF % dict(timeout=timeout_ms, max_conns=256))
        self.runs = []
        self.ended = set()  # runs the test itself killed or stopped
        self.sw = None

    def start(self, issuer_addr, ready=True):
        argv = ["-c", self.conf, "--vault", VAULT, "--key-file", KEY, "--state", self.state,
                "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0", "--io", args.io,
                "--issuer", issuer_addr]
        log = os.path.join(self.dir, "stderr-%d.log" % len(self.runs))
        self.sw = T.Switch(TOKSWITCH, argv, log)
        self.runs.append(self.sw)
        if ready:
            self.sw.wait_ready(15)
        return self.sw

    def metric(self, name):
        return self.sw.metric(name)

    def wait_metric(self, name, want, timeout=10.0):
        try:
            T.wait_for(lambda: self.metric(name) == want, timeout, "%s == %r" % (name, want))
        except TimeoutError:
            raise AssertionError("%s is %r, want %r" % (name, self.metric(name), want))

    def kill(self):
        """SIGKILL the running switch."""
        self.sw.kill()
        self.ended.add(id(self.sw))

    def stop(self):
        """SIGTERM the running switch: it must drain and exit 0."""
        rc = self.sw.stop()
        self.ended.add(id(self.sw))
        assert_eq(rc, 0, "exit status after SIGTERM")

    def close(self):
        """Stops the running switch, then checks every run: none exited by
        itself, no PAN or unmasked token in a log, no sanitizer report."""
        if self.sw and self.sw.proc.poll() is None:
            self.stop()
        for sw in self.runs:
            rc = sw.proc.poll()
            sw.kill()
            if id(sw) not in self.ended:
                raise AssertionError("tokswitch exited by itself (%r): %s" %
                                     (rc, sw.log()[-1500:]))
            with open(sw.stderr_path, "rb") as f:
                leaks = T.log_leaks(f.read(), [t[k] for t in TOKENS.values()
                                               for k in ("pan", "token")])
            if leaks:
                raise AssertionError("%s holds %s" % (sw.stderr_path, ", ".join(leaks)))
            report = sw.sanitizer_report()
            if report:
                raise AssertionError("sanitizer: " + report)


def stop_all(*things):
    """finally: every issuer released and stopped, every node closed; the
    first error is raised once all of them were tried."""
    first = None
    for t in things:
        try:
            if isinstance(t, T.FakeIssuer):
                t.release()
                t.stop()
            elif t is not None:
                t.close()
        except Exception as ex:  # keep stopping the others
            first = first or ex
    if first:
        raise first


def assert_eq(a, b, what=""):
    if a != b:
        raise AssertionError("%s: %r != %r" % (what, a, b))


def original_key(f):
    """How the issuer names an original: its DE11 (the switch's STAN) and DE7."""
    return (f[11], f[7])


def reversal_key(f):
    """The original a reversal names: DE90 = MTI, STAN, DE7, 22 zeros."""
    de90 = f.get(90, b"")
    if len(de90) != 42 or de90[20:] != b"0" * 22:
        raise AssertionError("reversal DE90 malformed: %r" % de90)
    return (de90[4:10], de90[10:20])


def issuer_records(iss, mti):
    with iss.lock:
        return [f for m, f in iss.requests if m == mti]


def count_reversals(*issuers):
    """{original key: copies received} over every 0400 the issuers got."""
    got = {}
    for iss in issuers:
        for f in issuer_records(iss, "0400"):
            assert_eq(f[2][:4], b"5413", "a reversal reaches the issuer with the PAN")
            k = reversal_key(f)
            got[k] = got.get(k, 0) + 1
    return got


def de7(n):
    """A DE7 unique to the request n: the issuer's STANs restart with each
    switch process, so the STAN alone does not name an original."""
    return "%010d" % n


# --- scenarios -------------------------------------------------------------

def test_sigkill_right_after_91_reversal_delivered_once_after_restart():
    # Each round: a silent issuer, one auth, its 91 (timeout), SIGKILL at
    # once. A switch that answers 91 before the reversal is on disk loses
    # it in the window between the two. After the last round an answering
    # issuer must get every round's reversal, each exactly once. Copies
    # sent to the silent issuer before a kill were never answered, so the
    # switch owes them again: only the answering issuer's count is exact.
    rounds = 5
    node = Node(timeout_ms=250)
    silent = T.FakeIssuer(PROFILE)
    answering = None
    try:
        silent.hold()
        originals = []
        for i in range(rounds):
            sw = node.start(silent.addr)
            c = T.Conn(sw.acq, PROFILE)
            c.request(*T.auth_msg(TOKENS["ok"]["token"], 100 + i, de7=de7(7000 + i)))
            _, f = c.answer(timeout=5)
            node.kill()  # right after the 91
            c.close()
            assert_eq((f[39], f.get(44)), (b"91", b"ISSUER_UNAVAILABLE"), "round %d answer" % i)
            mine = [o for o in issuer_records(silent, "0100") if o[7] == de7(7000 + i).encode()]
            assert_eq(len(mine), 1, "round %d: the silent issuer got the original" % i)
            originals.append(original_key(mine[0]))
        assert_eq(len(set(originals)), rounds, "originals named apart")
        unowed = set(count_reversals(silent)) - set(originals)
        assert_eq(unowed, set(), "reversals the silent issuer got that name no original")
        silent.stop()
        answering = T.FakeIssuer(PROFILE)
        node.start(answering.addr)
        loaded = node.metric("tokswitch_state_saf_loaded")
        try:
            node.wait_metric("tokswitch_state_saf_depth", 0)
            node.wait_metric("tokswitch_saf_inflight", 0)
        except AssertionError as ex:
            raise AssertionError("%s (found %d of %d at start)" % (ex, loaded, rounds))
        got = count_reversals(answering)
        lost = [i for i, k in enumerate(originals) if got.get(k, 0) == 0]
        if lost:
            raise AssertionError("reversal lost for round(s) %s of %d: %d found in the queue "
                                 "at the last start" % (lost, rounds, loaded))
        assert_eq(got, {k: 1 for k in originals}, "each reversal exactly once, no other")
        assert_eq(node.metric("tokswitch_saf_acked_total"), rounds, "acked")
        assert_eq(len(issuer_records(answering, "0100")), 0, "no original resent")
    finally:
        stop_all(silent, answering, node)


class StateStall:
    """tests/lib/state-stall on a state directory: holds its LMDB writer
    lock, so the switch's group commits wait (a disk that does not
    answer), until release()."""

    def __init__(self, state_dir):
        exe = os.path.join(args.build, "tests", "lib", "state-stall")
        self.p = subprocess.Popen([exe, state_dir], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE)
        ready, _, _ = select.select([self.p.stdout], [], [], 10)
        line = self.p.stdout.readline() if ready else b""
        if line != b"stalled\n":
            self.p.kill()
            raise AssertionError("state-stall did not take the lock: %r" % line)

    def release(self):
        if self.p.poll() is None:
            self.p.stdin.close()
            self.p.wait(10)


def test_sigkill_while_approvals_wait_for_their_use_none_delivered_without_it():
    # Single-use tokens, their requests forwarded before the use is on
    # disk. Round A: the commit comes, the approvals are delivered, and
    # after a restart the use is spent (65). Round B: the state is stalled,
    # the issuer approves, the switch holds the approvals and is SIGKILLed:
    # the acquirer got nothing, and after the restart the use is not on
    # disk, so the next request of the token goes to the issuer again (the
    # acquirer reverses the one it never got an answer to).
    node = Node(timeout_ms=5000)
    iss = T.FakeIssuer(PROFILE)
    stall = None
    delivered, held = ["held0", "held1"], ["held2", "held3", "held4"]
    try:
        sw = node.start(iss.addr)
        c = T.Conn(sw.acq, PROFILE)
        stall = StateStall(node.state)
        for i, name in enumerate(delivered):
            c.request(*T.auth_msg(TOKENS[name]["token"], 500 + i, de7=de7(500 + i)))
        T.wait_for(lambda: len(issuer_records(iss, "0100")) == len(delivered), 5,
                   "forwarded while the state is stalled")
        node.wait_metric("tokswitch_answers_awaiting_record", len(delivered))
        stall.release()
        for name in delivered:
            _, f = c.answer(timeout=5)
            assert_eq(f[39], b"00", "approval once its use is durable")
        stall = StateStall(node.state)
        c2 = T.Conn(sw.acq, PROFILE)
        for i, name in enumerate(held):
            c2.request(*T.auth_msg(TOKENS[name]["token"], 510 + i, de7=de7(510 + i)))
        T.wait_for(lambda: len(issuer_records(iss, "0100")) == len(delivered) + len(held), 5,
                   "forwarded while the state is stalled")
        node.wait_metric("tokswitch_answers_awaiting_record", len(held))
        node.kill()
        stall.release()
        got = c2.read_frame(timeout=5)
        assert_eq((got, c2.raw), (None, b""), "bytes the acquirer got from a killed switch")
        c.close()
        c2.close()
        sw = node.start(iss.addr)
        c = T.Conn(sw.acq, PROFILE)
        for i, name in enumerate(delivered):
            c.request(*T.auth_msg(TOKENS[name]["token"], 520 + i, de7=de7(520 + i)))
            _, f = c.answer(timeout=5)
            assert_eq((f[39], f.get(44)), (b"65", b"DOMAIN_USES"),
                      "%s: a delivered approval's use is on disk" % name)
        for i, name in enumerate(held):
            c.request(*T.auth_msg(TOKENS[name]["token"], 530 + i, de7=de7(530 + i)))
            _, f = c.answer(timeout=5)
            assert_eq(f[39], b"00", "%s: the use of an approval never delivered" % name)
        c.close()
        assert_eq(len(issuer_records(iss, "0100")), 2 * len(held) + len(delivered),
                  "originals at the issuer")
    finally:
        if stall:
            stall.release()
        stop_all(iss, node)


class Load:
    """A scripted acquirer: conns pipelined connections (window requests
    in flight each), paced at rate requests/s in all, per_conn requests
    each. uid = conn * 100000 + n names a request everywhere: its DE7 and
    DE37 carry it, its DE11 (n) is unique on its connection."""

    def __init__(self, addr, conns=8, per_conn=900, window=16, rate=3000):
        self.conns = [T.Conn(addr, PROFILE) for _ in range(conns)]
        self.per_conn, self.window, self.rate = per_conn, window, rate
        self.answers = {}  # uid -> DE39

    def msg(self, j, n):
        uid = j * 100000 + n
        tok = TOKENS["load%d" % (uid % 8)]["token"]
        return T.encode(PROFILE, *T.auth_msg(tok, n, de7=de7(uid), extra={37: "%012d" % uid}))

    def run(self, events, deadline_s=20.0):
        """events: [(seconds after the start, fn)], each run once."""
        total = len(self.conns) * self.per_conn
        sent = [0] * len(self.conns)
        out = [0] * len(self.conns)
        events = sorted(events, key=lambda e: e[0])
        t0 = time.monotonic()
        while len(self.answers) < total:
            now = time.monotonic() - t0
            if now > deadline_s:
                raise AssertionError("%d of %d requests answered in %.0f s" %
                                     (len(self.answers), total, deadline_s))
            while events and events[0][0] <= now:
                events.pop(0)[1]()
            allowed = min(total, int(now * self.rate) + 1) - sum(sent)
            progress = True
            while allowed > 0 and progress:
                progress = False
                for j, c in enumerate(self.conns):
                    if allowed > 0 and sent[j] < self.per_conn and out[j] < self.window:
                        sent[j] += 1
                        out[j] += 1
                        allowed -= 1
                        progress = True
                        c.send(self.msg(j, sent[j]))
            r, _, _ = select.select([c.s for c in self.conns], [], [], 1.0 / self.rate)
            for j, c in enumerate(self.conns):
                if c.s in r:
                    for mti, f in self.read_ready(c):
                        uid = j * 100000 + int(f[11])
                        if uid in self.answers:
                            raise AssertionError("request %d answered twice" % uid)
                        self.answers[uid] = f[39]
                        out[j] -= 1
        return time.monotonic() - t0

    @staticmethod
    def read_ready(c):
        """The frames readable now on c (one recv), decoded."""
        chunk = c.s.recv(65536)
        if not chunk:
            raise AssertionError("the switch closed an acquirer connection")
        c.buf += chunk
        frames = []
        while len(c.buf) >= 2:
            ln = struct.unpack(">H", c.buf[:2])[0]
            if len(c.buf) < 2 + ln:
                break
            body, c.buf = c.buf[2:2 + ln], c.buf[2 + ln:]
            if ln:
                frames.append(T.decode(PROFILE, body))
        return frames

    def close(self):
        for c in self.conns:
            c.close()


def test_issuer_killed_under_load_every_91_reversed_once():
    # The issuer goes silent (its in-flight requests unanswered), dies with
    # them, and a new one comes up on the same port while the load goes on.
    node = Node(timeout_ms=2000)
    first = T.FakeIssuer(PROFILE)
    port = first.port
    box = {"second": None}
    load = None
    try:
        node.start(first.addr)
        load = Load(node.sw.acq)

        def bring_up():
            box["second"] = T.FakeIssuer(PROFILE, port=port)

        secs = load.run([(0.8, first.hold), (0.9, first.stop), (1.4, bring_up)])
        second = box["second"]
        total = len(load.conns) * load.per_conn
        rcs = {}
        for rc in load.answers.values():
            rcs[rc] = rcs.get(rc, 0) + 1
        assert set(rcs) <= {b"00", b"91"}, "answers other than 00 or 91: %r" % rcs
        if total / secs < 1000:
            raise AssertionError("load ran at %.0f/s, not a few thousand" % (total / secs))
        for name in ("tokswitch_inflight", "tokswitch_parked", "tokswitch_saf_depth", "tokswitch_saf_inflight",
                     "tokswitch_state_reservations"):
            node.wait_metric(name, 0)

        seen = {}  # uid -> original key, every original an issuer received
        for iss in (first, second):
            for f in issuer_records(iss, "0100"):
                uid = int(f[7])
                if uid in seen:
                    raise AssertionError("original %d forwarded twice" % uid)
                seen[uid] = original_key(f)
        owed = [u for u, rc in load.answers.items() if rc == b"91" and u in seen]
        if not owed:
            raise AssertionError("no 91 for a request the issuer received: nothing was tested")
        got = count_reversals(first, second)
        for k, n in got.items():
            uid = int(k[1])
            if load.answers.get(uid) != b"91":
                raise AssertionError("reversal of %d, answered %r to the acquirer" %
                                     (uid, load.answers.get(uid)))
            if uid in seen and seen[uid] != k:
                raise AssertionError("reversal of %d names STAN %r, the issuer saw %r" %
                                     (uid, k[0], seen[uid][0]))
            if n != 1:
                raise AssertionError("reversal of %d received %d times" % (uid, n))
        missing = [u for u in owed if seen[u] not in got]
        if missing:
            raise AssertionError("%d of %d owed reversals never arrived (e.g. %r)" %
                                 (len(missing), len(owed), missing[:5]))
        # the reversals of requests sent but never read by the dead issuer
        # are owed too (the switch cannot tell them apart): every one the
        # queue took was delivered and acked, none dropped
        assert_eq(node.metric("tokswitch_saf_acked_total"), len(got), "acked = reversals received")
        assert_eq(node.metric("tokswitch_state_saf_puts_total"), len(got), "queued = received")
        assert_eq(node.metric("tokswitch_saf_dropped_total"), 0, "dropped")
        print("# %d requests in %.1f s, %d answered 91, %d reversals owed to a received "
              "original, %d sent" % (total, secs, rcs.get(b"91", 0), len(owed), len(got)),
              flush=True)
    finally:
        if load:
            load.close()
        stop_all(first, box["second"], node)


def test_approval_to_a_closed_connection_reversed_once_and_use_given_back():
    node = Node(timeout_ms=5000)
    iss = T.FakeIssuer(PROFILE)
    try:
        sw = node.start(iss.addr)
        tok = TOKENS["once"]["token"]
        c = T.Conn(sw.acq, PROFILE)
        iss.hold()
        c.request(*T.auth_msg(tok, 301, de7=de7(301)))
        iss.wait_held(1)
        c.close()
        node.wait_metric("tokswitch_connections_open", 0)
        iss.release()  # approves (00) for an acquirer that is gone
        T.wait_for(lambda: node.metric("tokswitch_answers_conn_gone_total") >= 1, 5,
                   "the approval reached the switch")
        orig = original_key(issuer_records(iss, "0100")[0])
        try:
            T.wait_for(lambda: count_reversals(iss), 5, "a reversal of the undelivered approval")
        except TimeoutError:
            raise AssertionError("no reversal of an approval the acquirer never received")
        node.wait_metric("tokswitch_saf_depth", 0)
        node.wait_metric("tokswitch_saf_inflight", 0)
        assert_eq(count_reversals(iss), {orig: 1}, "exactly one reversal, naming the original")
        assert_eq(node.metric("tokswitch_saf_acked_total"), 1, "acked")
        T.wait_for(lambda: node.metric("tokswitch_state_uses_returned_total") >= 1, 5,
                   "the use given back")
        c2 = T.Conn(sw.acq, PROFILE)
        c2.request(*T.auth_msg(tok, 302, de7=de7(302)))
        _, f = c2.answer()
        c2.close()
        assert_eq((f[39], f.get(44)), (b"00", None), "the max_uses=1 token after the reversal")
        assert_eq(len(issuer_records(iss, "0100")), 2, "originals at the issuer")
        assert_eq(count_reversals(iss), {orig: 1}, "still exactly one reversal")
    finally:
        stop_all(iss, node)


def test_restarts_with_the_issuer_down_every_reversal_once():
    # Reversals are owed only for forwarded requests: an issuer receives
    # them and goes silent, the 91s come, then it is gone. Two restarts
    # (SIGTERM, then SIGKILL) with nobody listening; then an issuer comes up.
    n = 4
    node = Node(timeout_ms=300)
    port = T.free_port()
    first = T.FakeIssuer(PROFILE, port=port)
    back = None
    try:
        sw = node.start(first.addr)
        first.hold()
        c = T.Conn(sw.acq, PROFILE)
        c.send(b"".join(T.encode(PROFILE, *T.auth_msg(TOKENS["ok"]["token"], 400 + i,
                                                      de7=de7(400 + i))) for i in range(n)))
        answers = [c.answer(timeout=5)[1][39] for _ in range(n)]
        c.close()
        assert_eq(answers, [b"91"] * n, "answers")
        originals = [original_key(f) for f in issuer_records(first, "0100")]
        assert_eq(len(set(originals)), n, "originals the silent issuer received")
        node.wait_metric("tokswitch_state_saf_depth", n)
        first.stop()  # from here on nobody listens on the issuer's port
        node.stop()

        sw = node.start("127.0.0.1:%d" % port, ready=False)
        node.wait_metric("tokswitch_state_saf_loaded", n)
        assert_eq(sw.http("/readyz")[0], 503, "ready with the issuer down")
        node.stop()

        sw = node.start("127.0.0.1:%d" % port, ready=False)
        node.wait_metric("tokswitch_state_saf_loaded", n)
        node.kill()

        node.start("127.0.0.1:%d" % port, ready=False)
        node.wait_metric("tokswitch_state_saf_loaded", n)
        back = T.FakeIssuer(PROFILE, port=port)
        node.sw.wait_ready(15)
        node.wait_metric("tokswitch_state_saf_depth", 0)
        node.wait_metric("tokswitch_saf_inflight", 0)
        assert_eq(set(count_reversals(first)) - set(originals), set(),
                  "reversals the silent issuer got that name no original")
        assert_eq(count_reversals(back), {k: 1 for k in originals},
                  "every owed reversal exactly once")
        assert_eq(len(issuer_records(back, "0100")), 0, "no original resent")
        assert_eq(node.metric("tokswitch_saf_acked_total"), n, "acked")
    finally:
        stop_all(first, back, node)


TESTS = [(n[len("test_"):], f) for n, f in list(globals().items())
         if n.startswith("test_") and callable(f)]

if __name__ == "__main__":
    try:
        T.make_vault(TOKVAULT, VAULT, KEY, TOKENS.values(), EXPIRY, os.path.join(TMP, "tokens.csv"))
        rc = T.run_tap(TESTS, args.only)
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
    sys.exit(rc)
