#!/usr/bin/env python3
"""Fault scenario: stand-in while the issuer is down, against one I/O backend.

    fault_standin.py --build BUILD_DIR --source SOURCE_DIR --io uring|uv [NAME...]

tokswitch runs with --state and [standin] on, its issuer on a port nobody
listens on. A contactless authorization under the floor is approved by
the switch (DE39 00, DE44 STANDIN, its own DE38), one above it is 91.
Then a test double issuer starts on that port: the 0120 advice of the
approval reaches it, with the PAN and the stand-in's approval code,
exactly once: once its 0130 is in, no second copy comes. Prints TAP.
"""
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import tswtest as T  # noqa: E402

args, TOKSWITCH, TOKVAULT, PROFILE, TMP = T.suite_setup("standin")
VAULT = os.path.join(TMP, "vault")
KEY = os.path.join(TMP, "key")
TOKEN = T.luhn_complete("400000000000021")
PAN = T.luhn_complete("541300000000021")
FLOOR = 1000
# a silence this long after the 0130 shows no copy is coming: several SAF
# polls and retry backoffs of the configuration below
QUIET_S = 1.5

CONF = """[server]
workers = 2
drain_timeout_ms = 5000
[issuer]
timeout_ms = 500
reconnect_min_ms = 20
reconnect_max_ms = 100
echo_interval_ms = 60000
[saf]
poll_ms = 50
retry_min_ms = 200
retry_max_ms = 400
[standin]
enabled = true
max_amount = %d
modes = contactless, chip
""" % FLOOR


run = T.run


def make_vault():
    T.make_vault(TOKVAULT, VAULT, KEY, [dict(token=TOKEN, pan=PAN)], "3012",
                 os.path.join(TMP, "tokens.csv"))


def auth(stan, amount):
    return "0100", {2: TOKEN, 3: "000000", 4: "%012d" % amount, 7: "1123120000",
                    11: "%06d" % stan, 14: "3012", 22: "071", 37: "RRN%09d" % stan,
                    41: "TERM0001", 42: "MERCHANT0000001", 49: "840"}


def assert_eq(a, b, what):
    if a != b:
        raise AssertionError("%s: %r != %r" % (what, a, b))


def advices(issuer):
    with issuer.lock:
        return [f for mti, f in issuer.requests if mti == "0120"]


def test_issuer_down_standin_under_the_floor_and_its_advice_delivered_exactly_once():
    d = tempfile.mkdtemp(dir=TMP)
    port = T.free_port()
    state = os.path.join(d, "state")
    os.mkdir(state)
    conf = os.path.join(d, "tokswitch.conf")
    with open(conf, "w") as f:
        f.write(CONF)
    sw = T.Switch(TOKSWITCH, ["-c", conf, "--vault", VAULT, "--key-file", KEY, "--state", state,
                              "--issuer", "127.0.0.1:%d" % port, "--listen", "127.0.0.1:0",
                              "--metrics", "127.0.0.1:0", "--io", args.io],
                  os.path.join(d, "stderr.log"))
    issuer, c = None, None
    try:
        c = T.Conn(sw.acq, PROFILE)
        c.request(*auth(301, FLOOR // 2))
        mti, f = c.answer()
        assert_eq(mti, "0110", "MTI")
        assert_eq((f[39], f.get(44)), (b"00", b"STANDIN"), "stand-in approval")
        code = f.get(38, b"")
        assert_eq((len(code), code[:1]), (6, b"S"), "the switch's own approval code")
        assert_eq((f[2], f[11]), (TOKEN.encode(), b"000301"), "token and acquirer DE11")

        c.request(*auth(302, FLOOR + 1))
        _, f = c.answer()
        assert_eq((f[39], f.get(44)), (b"91", b"ISSUER_UNAVAILABLE"), "above the floor")
        assert_eq(sw.metric('tokswitch_standin_total{result="approved"}'), 1.0, "approved")
        assert_eq(sw.metric('tokswitch_standin_total{result="declined_amount"}'), 1.0, "declined")
        assert_eq(sw.metric("tokswitch_standin_advices_queued_total"), 1.0, "advices queued")
        assert_eq(sw.metric("tokswitch_state_saf_depth"), 1.0, "one advice in the queue")
        # the operator sees how long the issuer has owed its advice
        T.wait_for(lambda: sw.metric('tokswitch_state_saf_oldest_age_seconds{kind="advice"}') > 0, 5,
                   "the oldest advice's age")
        assert_eq(sw.metric('tokswitch_state_saf_oldest_age_seconds{kind="reversal"}'), 0.0,
                  "no reversal queued")

        # the issuer comes back on its port: the advice reaches it
        issuer = T.FakeIssuer(PROFILE, port=port)
        T.wait_for(lambda: advices(issuer), 15, "the 0120 at the issuer")
        adv = advices(issuer)[0]
        assert_eq(adv[2], PAN.encode(), "the advice carries the PAN")
        assert_eq((adv[38], adv[39], adv[4]), (code, b"00", b"%012d" % (FLOOR // 2)),
                  "DE38, DE39, DE4")
        assert_eq(adv[90][:10], b"0100000301", "DE90 names the original")
        assert_eq(T.de48_parse(adv[48]).get(30), TOKEN, "DE48 tag 30 carries the token")
        T.wait_for(lambda: sw.metric("tokswitch_saf_acked_total") >= 1, 10, "the 0130 settles it")
        # nothing more may come: the wait below must run out
        try:
            issuer.wait_requests(2, timeout=QUIET_S)
            raise AssertionError("a second request after the 0130: %r" %
                                 [m for m, _ in issuer.requests])
        except TimeoutError:
            pass
        assert_eq(len(advices(issuer)), 1, "exactly one advice")
        assert_eq(sw.metric("tokswitch_state_saf_depth"), 0.0, "the queue is empty")
        assert_eq(sw.metric('tokswitch_state_saf_oldest_age_seconds{kind="advice"}'), 0.0,
                  "no advice owed any more")
        if T.log_leaks(c.raw, [PAN]):
            raise AssertionError("a PAN reached the acquirer side: " +
                                 ", ".join(T.log_leaks(c.raw, [PAN])))
    finally:
        if c:
            c.close()
        rc = sw.stop()
        if issuer:
            issuer.stop()
    log = sw.log()
    if PAN in log or TOKEN in log:
        raise AssertionError("a PAN or an unmasked token in the switch's log")
    report = sw.sanitizer_report()
    if report:
        raise AssertionError("sanitizer: " + report)
    assert_eq(rc, 0, "exit status after SIGTERM")


TESTS = [(n[len("test_"):], f) for n, f in list(globals().items())
         if n.startswith("test_") and callable(f)]

if __name__ == "__main__":
    try:
        make_vault()
        rc = T.run_tap(TESTS, args.only)
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
    sys.exit(rc)
