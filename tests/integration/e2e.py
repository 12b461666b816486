#!/usr/bin/env python3
"""End-to-end tests of tokswitch over loopback, against one I/O backend.

    e2e.py --build BUILD_DIR --source SOURCE_DIR --io uring|uv [NAME...]

Makes a vault with tokvault in a temp dir, runs a test double issuer
(tests/lib/tswtest.py FakeIssuer), starts tokswitch on port 0, reads its
listening line and drives it with ISO 8583 messages. Prints TAP.
"""
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import promql_names as P  # noqa: E402
import tswtest as T  # noqa: E402

args, TOKSWITCH, TOKVAULT, PROFILE, TMP = T.suite_setup("e2e")
VAULT = os.path.join(TMP, "vault")
KEY = os.path.join(TMP, "key")
EXPIRY = "3012"

# token -> (pan, extra CSV columns)
def _tok(n):
    return T.luhn_complete("4000%011d" % n)


def _pan(n):
    return T.luhn_complete("5413%011d" % (n * 7919))


TOKENS = {
    "ok": dict(n=1),
    "suspended": dict(n=2, status="suspended"),
    "deleted": dict(n=3, status="deleted"),
    "expired": dict(n=4, token_expiry="2001"),
    "merchant": dict(n=5, merchant_ids="MERCHANT0000009"),
    "pos": dict(n=6, pos_modes="chip"),
    "device": dict(n=7, device_required="1"),
    "trid": dict(n=8, trid="40010030273"),
    "amount": dict(n=9, amount_limit="1000"),
    "uses": dict(n=10, max_uses="1"),
    "live": dict(n=11),
    "live2": dict(n=12),
    # its TRID marks its record in data.mdb for the tampering test
    "tamper": dict(n=13, status="suspended", trid="40010099991"),
}
for name, t in TOKENS.items():
    t["token"] = _tok(t["n"])
    t["pan"] = _pan(t["n"])

run = T.run


def tokvault(*verb):
    return run([TOKVAULT, "--vault", VAULT, "--key-file", KEY] + list(verb))


def make_vault():
    T.make_vault(TOKVAULT, VAULT, KEY, TOKENS.values(), EXPIRY, os.path.join(TMP, "tokens.csv"))
    tokvault("bind-device", TOKENS["device"]["token"], "DEVICE-A")


STAN = [0]


def auth(token, amount="000000001000", stan=None, mti="0100", expiry=EXPIRY, extra=None):
    if stan is None:
        STAN[0] = STAN[0] % 999999 + 1
        stan = STAN[0]
    return T.auth_msg(token, stan, amount=amount, mti=mti, expiry=expiry, extra=extra)


def write_conf(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


# a claimed reversal's lease must outlast the issuer timeout: Env sets it
BASE_CONF = T.SWITCH_CONF.replace("[limits]\n", "[state]\nsaf_lease_ms = %(lease)d\n[limits]\n")


class Env:
    """One switch (and by default one issuer) for a test. The switch runs
    with a state directory of its own unless state=False; no_state=True
    passes --no-state; log_format="json" passes --log-format json (and the
    close checks that every line of the log is a JSON object)."""

    def __init__(self, issuer=True, issuer_port=None, timeout_ms=2000, max_conns=256,
                 workers=None, state=True, no_state=False, extra_conf="", io=None,
                 preexec_fn=None, more_issuers=(), issuers_in_file=False, log_format=None,
                 issuer_wire=None):
        self.dir = tempfile.mkdtemp(dir=TMP)
        self.issuer = T.FakeIssuer(issuer_wire or PROFILE) if issuer else None
        self.log_format = log_format
        iss_addr = self.issuer.addr if issuer else "127.0.0.1:%d" % issuer_port
        hosts = [iss_addr] + list(more_issuers)
        # a claimed reversal's lease must outlast the issuer timeout
        conf = BASE_CONF % dict(timeout=timeout_ms, max_conns=max_conns,
                                lease=max(30000, timeout_ms + 10000))
        if issuers_in_file:
            conf += "[issuer]\n" + "".join("host = %s\n" % h for h in hosts)
        self.conf = write_conf(os.path.join(self.dir, "tokswitch.conf"), conf + extra_conf)
        argv = ["-c", self.conf, "--vault", VAULT, "--key-file", KEY, "--listen", "127.0.0.1:0",
                "--metrics", "127.0.0.1:0", "--io", io or args.io]
        if not issuers_in_file:
            for h in hosts:
                argv += ["--issuer", h]
        if workers:
            argv += ["--workers", str(workers)]
        if state:
            os.mkdir(os.path.join(self.dir, "state"))
            argv += ["--state", os.path.join(self.dir, "state")]
        if no_state:
            argv += ["--no-state"]
        if log_format:
            argv += ["--log-format", log_format]
        self.sw = T.Switch(TOKSWITCH, argv, os.path.join(self.dir, "stderr.log"),
                           preexec_fn=preexec_fn)
        self.conns = []
        if issuer:
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
        if self.issuer:
            self.issuer.release()  # a held reversal would make the drain wait
        rc = self.sw.stop()
        if self.issuer:
            self.issuer.stop()
        with open(self.sw.stderr_path, "rb") as f:
            raw = f.read()
        leaks = T.log_leaks(raw, [t["pan"] for t in TOKENS.values()] +
                            [t["token"] for t in TOKENS.values()])
        if leaks:
            raise AssertionError("the switch's log holds " + ", ".join(leaks))
        report = self.sw.sanitizer_report()
        if report:
            raise AssertionError("sanitizer: " + report)
        if self.log_format == "json":
            for line in raw.decode().splitlines():
                obj = json.loads(line)
                assert_eq(list(obj)[:3], ["ts", "level", "event"], "keys of " + line)
        if rc != 0:
            raise AssertionError("tokswitch exited %r after SIGTERM: %s" % (rc, self.sw.log()[-1500:]))

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


def assert_no_pan(conn):
    leaks = T.log_leaks(conn.raw, [t["pan"] for t in TOKENS.values()])
    if leaks:
        raise AssertionError("a PAN reached the acquirer side: " + ", ".join(leaks))


# --- tests -----------------------------------------------------------------

def test_backend_is_the_one_asked_for():
    with Env() as e:
        T.wait_for(lambda: "event=started" in e.sw.log(), 5, "started log line")
        if "io=%s" % args.io not in e.sw.log():
            raise AssertionError("started line does not say io=%s" % args.io)


def test_auto_falls_back_to_uv_when_io_uring_is_blocked():
    with Env(io="auto", preexec_fn=T.block_io_uring) as e:
        log = e.sw.log()
        assert "event=io_uring_unavailable" in log and "fallback=uv" in log, log
        T.wait_for(lambda: "event=started" in e.sw.log(), 5, "started log line")
        assert "io=uv" in e.sw.log()
        _, f = e.ask(e.conn(), auth(TOKENS["ok"]["token"]))
        assert_eq(f[39], b"00", "served by the fallback")
    # asked for io_uring explicitly: refused at start instead
    p = subprocess.run([TOKSWITCH, "--vault", VAULT, "--key-file", KEY, "--listen", "127.0.0.1:0",
                        "--metrics", "127.0.0.1:0", "--io", "uring", "--no-state"],
                       capture_output=True,
                       text=True, preexec_fn=T.block_io_uring, timeout=20)
    assert_eq(p.returncode, 1, "exit status with --io uring")
    assert "event=start_failed what=worker" in p.stderr, p.stderr


def test_approve_pan_to_issuer_token_to_acquirer():
    with Env() as e:
        c = e.conn()
        tok = TOKENS["ok"]
        mti, f = e.ask(c, auth(tok["token"], stan=4242))
        assert_eq(mti, "0110", "MTI")
        assert_eq(f[39], b"00", "DE39")
        assert_eq(f[2], tok["token"].encode(), "DE2 back to the token")
        assert_eq(f[11], b"004242", "acquirer's DE11 restored")
        assert 35 not in f, "DE35 never reaches the acquirer"
        e.issuer.wait_requests(1)
        imti, isf = e.issuer.requests[-1]
        assert_eq(isf[2], tok["pan"].encode(), "issuer sees the PAN")
        assert_eq(isf[14], b"2912", "issuer sees the PAN expiry")
        assert_eq(T.de48_parse(isf[48]).get(30), tok["token"], "DE48 tag 30 carries the token")
        assert_no_pan(c)


DECLINES = [
    # (case, token or literal, request extras, DE39, DE44)
    ("unknown token", T.luhn_complete("400099999999999"), {}, b"14", b"TOKEN_UNKNOWN"),
    ("not Luhn-valid", None, {}, b"14", b"TOKEN_UNKNOWN"),
    ("outside every token BIN range", T.luhn_complete("499912345678901"), {}, b"14",
     b"TOKEN_UNKNOWN"),
    ("deleted", "deleted", {}, b"14", b"TOKEN_DELETED"),
    ("suspended", "suspended", {}, b"62", b"TOKEN_SUSPENDED"),
    ("expired", "expired", {14: "2001"}, b"54", b"TOKEN_EXPIRED"),
    ("DE14 not the token expiry", "ok", {14: "2801"}, b"54", b"TOKEN_EXPIRED"),
    ("merchant outside the domain", "merchant", {}, b"57", b"DOMAIN_MERCHANT"),
    ("presentment mode not allowed", "pos", {}, b"57", b"DOMAIN_POS_MODE"),
    ("device not bound", "device", {48: T.de48({10: "DEVICE-B"})}, b"57", b"DOMAIN_DEVICE"),
    ("token requestor mismatch", "trid", {48: T.de48({12: "40010099999"})}, b"57",
     b"DOMAIN_REQUESTOR"),
    ("amount above the limit", "amount", {4: "000000001001"}, b"61", b"DOMAIN_AMOUNT"),
]


def test_every_decline_reason_answered_locally():
    with Env() as e:
        c = e.conn()
        for case, tok, extra, rc, reason in DECLINES:
            if tok is None:
                token = TOKENS["ok"]["token"][:-1] + str((int(TOKENS["ok"]["token"][-1]) + 1) % 10)
            else:
                token = TOKENS[tok]["token"] if tok in TOKENS else tok
            mti, f = e.ask(c, auth(token, extra=extra))
            assert_eq((f.get(39), f.get(44)), (rc, reason), case)
            assert_eq(mti, "0110", case)
        # the device case with the bound device goes through
        mti, f = e.ask(c, auth(TOKENS["device"]["token"], extra={48: T.de48({10: "DEVICE-A"})}))
        assert_eq(f[39], b"00", "bound device approved")
        assert_eq(len(e.issuer.requests), 1, "declines never reach the issuer")
        assert_no_pan(c)


def test_no_route_for_the_pan_declined_96():
    with Env(extra_conf="[route]\n4111 = 0\n") as e:
        c = e.conn()
        _, f = e.ask(c, auth(TOKENS["ok"]["token"]))
        assert_eq((f[39], f.get(44)), (b"96", b"SYSTEM"), "PAN 5413... has no route")
        assert_eq(len(e.issuer.requests), 0, "nothing forwarded")
        T.wait_for(lambda: e.sw.metric("tokswitch_no_route_total") >= 1, 5, "counted")
        assert_no_pan(c)


def test_limited_use_exhausted_declined_65():
    with Env() as e:
        c = e.conn()
        _, f = e.ask(c, auth(TOKENS["uses"]["token"]))
        assert_eq(f[39], b"00", "first use")
        _, f = e.ask(c, auth(TOKENS["uses"]["token"]))
        assert_eq((f[39], f.get(44)), (b"65", b"DOMAIN_USES"), "second use")


def test_issuer_decline_passed_through():
    with Env() as e:
        c = e.conn()
        _, f = e.ask(c, auth(TOKENS["ok"]["token"], amount="000000000051"))
        assert_eq(f[39], b"51", "issuer's DE39")
        assert_no_pan(c)


def test_pipelined_requests_answered_out_of_order():
    with Env(workers=1) as e:
        c = e.conn()
        e.issuer.hold()
        n = 8
        data = b"".join(T.encode(PROFILE, *auth(TOKENS["ok"]["token"], stan=100 + i))
                        for i in range(n))
        c.send(data)  # one segment, many requests
        e.issuer.wait_held(n)
        e.issuer.release(reverse=True)
        got = [c.answer() for _ in range(n)]
        stans = [int(f[11]) for _, f in got]
        assert_eq(sorted(stans), list(range(100, 100 + n)), "every request answered once")
        assert_eq(stans, list(reversed(range(100, 100 + n))), "answers in the issuer's order")
        for _, f in got:
            assert_eq(f[39], b"00", "DE39")
            assert_eq(f[2], TOKENS["ok"]["token"].encode(), "token")
        assert_no_pan(c)


def test_backpressure_stops_reading_without_dropping():
    with Env(workers=1, extra_conf="[limits]\nmax_inflight_per_conn = 2\n") as e:
        c = e.conn()
        e.issuer.hold()
        n = 10
        c.send(b"".join(T.encode(PROFILE, *auth(TOKENS["ok"]["token"], stan=200 + i))
                        for i in range(n)))
        e.issuer.wait_held(2)
        T.wait_for(lambda: e.sw.metric("tokswitch_backpressure_pauses_total") >= 1, 5,
                   "pause counted")
        assert_eq(len(e.issuer.requests), 2, "requests forwarded while paused")
        e.issuer.release()
        got = sorted(int(c.answer()[1][11]) for _ in range(n))
        assert_eq(got, list(range(200, 200 + n)), "every request answered, none dropped")


def test_flood_while_paused_never_drops_or_closes():
    # far more input than the stash holds arrives while the connection is
    # held (receives already under way when reading stops): all answered
    conf = ("[limits]\nmax_inflight_per_conn = 2\nmax_frame = 512\nin_buf_bytes = 1024\n"
            "out_buf_bytes = 2048\n[io]\nrecv_buf_bytes = 512\n")
    with Env(workers=1, extra_conf=conf) as e:
        c = e.conn()
        n = 5000
        data = b"".join(T.encode(PROFILE, *auth(TOKENS["ok"]["token"], stan=10000 + i))
                        for i in range(n))
        errs = []

        def writer():
            try:
                c.send(data)
            except OSError as ex:
                errs.append(ex)

        t = threading.Thread(target=writer, daemon=True)
        t.start()
        got = sorted(int(c.answer(timeout=20)[1][11]) for _ in range(n))
        t.join(20)
        assert_eq(errs, [], "writer")
        assert_eq(got, list(range(10000, 10000 + n)), "every request answered, none dropped")
        assert_eq(e.sw.metric("tokswitch_stash_overflows_total"), 0, "stash overflows")
        assert_eq(e.sw.metric("tokswitch_connections_open"), 1, "connection still open")
        T.wait_for(lambda: e.sw.metric("tokswitch_recv_bufs_held") == 0, 5, "held buffers recycled")


def test_many_paused_connections_holding_every_receive_buffer():
    # 12 connections flood at once while the issuer holds its answers: they
    # pause, and with 8 receive buffers in all, the ones already read can
    # hold every buffer. The issuer link must still get its answers in, and
    # every connection must be answered in full once they come.
    conf = ("[limits]\nmax_inflight_per_conn = 2\nmax_frame = 512\nin_buf_bytes = 1024\n"
            "out_buf_bytes = 2048\n[io]\nrecv_buf_bytes = 512\nrecv_bufs = 8\n")
    with Env(workers=1, extra_conf=conf) as e:
        n_conns, n = 24, 200
        conns = [e.conn() for _ in range(n_conns)]
        e.issuer.hold()
        errs = []

        def writer(k, c):
            data = b"".join(T.encode(PROFILE, *auth(TOKENS["ok"]["token"], stan=k * 1000 + i))
                            for i in range(n))
            try:
                c.send(data)
            except OSError as ex:
                errs.append(ex)

        threads = [threading.Thread(target=writer, args=(k, c), daemon=True)
                   for k, c in enumerate(conns)]
        for t in threads:
            t.start()
        e.issuer.wait_held(2 * n_conns)
        T.wait_for(lambda: e.sw.metric("tokswitch_backpressure_pauses_total") >= n_conns, 10,
                   "every connection paused")
        e.issuer.release()
        for k, c in enumerate(conns):
            got = sorted(int(c.answer(timeout=20)[1][11]) for _ in range(n))
            assert_eq(got, [k * 1000 + i for i in range(n)], "connection %d answered in full" % k)
        for t in threads:
            t.join(20)
        assert_eq(errs, [], "writers")
        assert_eq(e.sw.metric("tokswitch_connections_open"), float(n_conns), "connections still open")
        assert_eq(e.sw.metric("tokswitch_stash_overflows_total"), 0, "stash overflows")
        T.wait_for(lambda: e.sw.metric("tokswitch_recv_bufs_held") == 0, 5, "held buffers recycled")


def test_paused_connection_closed_then_slot_reused():
    with Env(workers=1, extra_conf="[limits]\nmax_inflight_per_conn = 2\n") as e:
        a = e.conn()
        e.issuer.hold()
        a.send(b"".join(T.encode(PROFILE, *auth(TOKENS["ok"]["token"], stan=300 + i))
                        for i in range(6)))
        e.issuer.wait_held(2)
        T.wait_for(lambda: e.sw.metric("tokswitch_backpressure_pauses_total") >= 1, 5, "paused")
        a.close()  # closed while paused, with requests at the issuer
        e.issuer.release()  # (a paused connection is not read: its close is seen on resume)
        T.wait_for(lambda: e.sw.metric("tokswitch_connections_open") == 0, 5, "closed")
        for i in range(3):  # new connections reuse the endpoint slots
            b = e.conn()
            _, f = e.ask(b, auth(TOKENS["ok"]["token"], stan=400 + i))
            assert_eq((f[39], int(f[11])), (b"00", 400 + i), "new connection %d" % i)
        T.wait_for(lambda: e.sw.metric("tokswitch_answers_conn_gone_total") >= 2, 5,
                   "answers for the closed connection dropped and counted")


def test_idle_connection_closed_after_idle_timeout():
    with Env(extra_conf="[limits]\nidle_timeout_ms = 200\n") as e:
        busy, idle = e.conn(), e.conn()
        _, f = e.ask(busy, auth(TOKENS["ok"]["token"]))
        assert_eq(f[39], b"00", "served")
        if not idle.closed_by_peer(timeout=5):
            raise AssertionError("idle connection still open")
        T.wait_for(lambda: e.sw.metric("tokswitch_connections_idle_closed_total") >= 1, 5, "counted")


def test_many_connections():
    with Env() as e:
        conns = [e.conn() for _ in range(64)]
        for i, c in enumerate(conns):
            c.request(*auth(TOKENS["ok"]["token"], stan=1000 + i))
        for i, c in enumerate(conns):
            _, f = c.answer()
            assert_eq((f[39], int(f[11])), (b"00", 1000 + i), "connection %d" % i)
            assert_no_pan(c)
        T.wait_for(lambda: e.sw.metric("tokswitch_connections_accepted_total") >= 64, 5,
                   "64 connections counted")


def test_smallest_ring_with_more_completions_than_it_holds():
    # ring_entries 8: the completion queue holds 32. 96 connections send at
    # once, so completions overflow it (the kernel keeps them and refuses
    # submissions with EBUSY until the loop has reaped): every request is
    # answered, nothing closed.
    with Env(workers=1, extra_conf="[io]\nring_entries = 8\n") as e:
        conns = [e.conn() for _ in range(96)]
        frames = [T.encode(PROFILE, *auth(TOKENS["ok"]["token"], stan=2000 + i))
                  for i in range(len(conns))]
        for _ in range(3):
            for c, fr in zip(conns, frames):
                c.send(fr)
            for i, c in enumerate(conns):
                _, f = c.answer(timeout=10)
                assert_eq((f[39], int(f[11])), (b"00", 2000 + i), "connection %d" % i)
        assert_eq(e.sw.metric("tokswitch_connections_open"), 96.0, "connections open")


def test_issuer_timeout_91_then_reversal_to_the_issuer():
    with Env(timeout_ms=300, extra_conf="[saf]\npoll_ms = 20\n") as e:
        c = e.conn()
        e.issuer.hold()
        _, f = e.ask(c, auth(TOKENS["ok"]["token"], stan=555))
        assert_eq((f[39], f.get(44), f[11]), (b"91", b"ISSUER_UNAVAILABLE", b"000555"), "timeout")
        e.issuer.wait_requests(2)
        mti, rf = e.issuer.requests[1]
        assert_eq(mti, "0400", "a reversal follows the timed-out request")
        assert_eq(rf[2], TOKENS["ok"]["pan"].encode(), "reversal carries the PAN to the issuer")
        e.issuer.release()
        T.wait_for(lambda: e.sw.metric("tokswitch_saf_acked_total") >= 1, 10, "reversal acked")
        assert_no_pan(c)
        # the event log says what happened to the reversal, by its id
        T.wait_for(lambda: T.log_events(e.sw.log(), "saf_acked"), 5, "saf_acked line")
        log = e.sw.log()
        sent, acked = T.log_events(log, "saf_sent"), T.log_events(log, "saf_acked")
        assert sent and sent[0]["id"] == acked[0]["id"] and sent[0]["link"] == "0", log
        assert_eq(acked[0]["rc"], "00", "the issuer's DE39 on the ack line")


def test_issuer_down_at_start_91_then_recovery():
    port = T.free_port()
    with Env(issuer=False, issuer_port=port) as e:
        c = e.conn()
        _, f = e.ask(c, auth(TOKENS["ok"]["token"]))
        assert_eq((f[39], f.get(44)), (b"91", b"ISSUER_UNAVAILABLE"), "issuer down")
        assert_eq(e.sw.http("/readyz")[0], 503, "not ready without issuer")
        T.wait_for(lambda: T.log_events(e.sw.log(), "issuer_reconnect_backoff"), 5,
                   "the reconnect backoff logged")
        ev = T.log_events(e.sw.log(), "issuer_reconnect_backoff")[0]
        assert ev["link"] == "0" and int(ev["retry_in_ms"]) <= 200, ev
        e.issuer = T.FakeIssuer(PROFILE, port=port)
        e.sw.wait_ready(15)
        _, f = e.ask(c, auth(TOKENS["ok"]["token"]))
        assert_eq(f[39], b"00", "after recovery")


def test_issuer_restart_mid_run():
    with Env() as e:
        c = e.conn()
        _, f = e.ask(c, auth(TOKENS["ok"]["token"]))
        assert_eq(f[39], b"00", "before")
        port = e.issuer.port
        e.issuer.stop()
        T.wait_for(lambda: e.sw.http("/readyz")[0] == 503, 10, "not ready after issuer stop")
        _, f = e.ask(c, auth(TOKENS["ok"]["token"]))
        assert_eq(f[39], b"91", "while the issuer is down")
        e.issuer = T.FakeIssuer(PROFILE, port=port)
        e.sw.wait_ready(15)
        _, f = e.ask(c, auth(TOKENS["ok"]["token"]))
        assert_eq(f[39], b"00", "after the restart")
        assert_no_pan(c)


def test_sigterm_drains_in_flight_and_exits_0():
    with Env() as e:
        c = e.conn()
        e.issuer.hold()
        c.request(*auth(TOKENS["ok"]["token"], stan=777))
        e.issuer.wait_held(1)
        e.sw.signal(signal.SIGTERM)
        T.wait_for(lambda: "event=draining" in e.sw.log(), 5, "draining log line")
        # new connections are refused once draining started
        def refused():
            host, port = e.sw.acq.rsplit(":", 1)
            try:
                s = socket.create_connection((host, int(port)), timeout=1)
            except OSError:
                return True
            s.close()
            return False
        T.wait_for(refused, 5, "listener closed")
        e.issuer.release()
        _, f = c.answer()
        assert_eq((f[39], int(f[11])), (b"00", 777), "in-flight request finished")
        assert_eq(e.sw.wait_exit(10), 0, "exit status")
        assert "event=drained" in e.sw.log()


def test_sigterm_drain_deadline_cuts_off():
    with Env(extra_conf="[server]\ndrain_timeout_ms = 300\n", timeout_ms=30000) as e:
        c = e.conn()
        e.issuer.hold()
        c.request(*auth(TOKENS["ok"]["token"]))
        e.issuer.wait_held(1)
        t0 = time.monotonic()
        e.sw.signal(signal.SIGTERM)
        assert_eq(e.sw.wait_exit(10), 0, "exit status")
        if time.monotonic() - t0 > 5:
            raise AssertionError("drain deadline not honoured")
        assert "event=drain_timeout" in e.sw.log()


def test_sighup_reloads_limits_and_refuses_a_bad_file():
    with Env(timeout_ms=30000) as e:
        c = e.conn()
        # a bad file is refused with file and line, the switch keeps running
        good = open(e.conf).read()
        write_conf(e.conf, good + "[issuer]\ntimeout_ms = soon\n")
        e.sw.signal(signal.SIGHUP)
        T.wait_for(lambda: "event=reload_refused" in e.sw.log(), 5, "reload_refused")
        line = [l for l in e.sw.log().splitlines() if "reload_refused" in l][0]
        bad_line = len(good.splitlines()) + 2
        assert "line=%d" % bad_line in line and e.conf in line, line
        _, f = e.ask(c, auth(TOKENS["ok"]["token"]))
        assert_eq(f[39], b"00", "still serving")
        # a good one lowers the issuer timeout for new requests
        write_conf(e.conf, good.replace("timeout_ms = 30000", "timeout_ms = 200"))
        e.sw.signal(signal.SIGHUP)
        T.wait_for(lambda: "event=config_reloaded" in e.sw.log(), 5, "config_reloaded")
        e.issuer.hold()
        t0 = time.monotonic()
        _, f = e.ask(c, auth(TOKENS["ok"]["token"]))
        assert_eq((f[39], f.get(44)), (b"91", b"ISSUER_UNAVAILABLE"), "timed out")
        if time.monotonic() - t0 > 5:
            raise AssertionError("the reloaded timeout was not applied")
        T.wait_for(lambda: e.sw.metric("tokswitch_timeouts_total") >= 1, 5, "timeout counted")


def test_table_sizes_from_the_config_and_restart_only_on_reload():
    with Env(workers=2, extra_conf="acq_reversal_memory = 64\nexpired_stan_memory = 32\n") as e:
        # [limits] is the last section of BASE_CONF: the keys land there
        assert_eq(e.sw.metric("tokswitch_acq_reversals_capacity"), 128.0, "2 workers x 64")
        assert_eq(e.sw.metric("tokswitch_expired_stans_capacity"), 64.0, "2 workers x 32")
        good = open(e.conf).read()
        write_conf(e.conf, good.replace("acq_reversal_memory = 64", "acq_reversal_memory = 256"))
        e.sw.signal(signal.SIGHUP)
        T.wait_for(lambda: "event=config_reloaded" in e.sw.log(), 5, "config_reloaded")
        T.wait_for(lambda: "event=reload_needs_restart" in e.sw.log(), 5, "restart warning")
        line = [l for l in e.sw.log().splitlines() if "reload_needs_restart" in l][0]
        assert "acq_reversal_memory" in line and "expired_stan_memory" not in line, line
        assert_eq(e.sw.metric("tokswitch_acq_reversals_capacity"), 128.0, "kept until restart")
        c = e.conn()
        _, f = e.ask(c, auth(TOKENS["ok"]["token"]))
        assert_eq(f[39], b"00", "still serving")


def test_sighup_reloads_routes():
    second = T.FakeIssuer(PROFILE)
    try:
        with Env(more_issuers=[second.addr], issuers_in_file=True,
                 extra_conf="[route]\ndefault = 0\n") as e:
            c = e.conn()
            _, f = e.ask(c, auth(TOKENS["ok"]["token"]))
            assert_eq((f[39], len(e.issuer.requests), len(second.requests)), (b"00", 1, 0),
                      "default route to issuer 0")
            # PANs of the test vault start 5413: route them to issuer 1
            with open(e.conf, "a") as conf:
                conf.write("5413 = 1\n")
            e.sw.signal(signal.SIGHUP)
            T.wait_for(lambda: "event=config_reloaded" in e.sw.log(), 5, "config_reloaded")
            T.wait_for(lambda: second.signons >= 2, 10, "issuer 1 links signed on")
            _, f = e.ask(c, auth(TOKENS["ok"]["token"]))
            assert_eq((f[39], len(e.issuer.requests), len(second.requests)), (b"00", 1, 1),
                      "the BIN route now goes to issuer 1" + e.sw.log())
            assert_eq(second.requests[0][1][2], TOKENS["ok"]["pan"].encode(), "PAN to issuer 1")
            # a changed issuer host list needs a restart: refused, old routes stay
            with open(e.conf, "a") as conf:
                conf.write("[issuer]\nhost = 127.0.0.1:1\n")
            e.sw.signal(signal.SIGHUP)
            T.wait_for(lambda: "issuer host list changed" in e.sw.log(), 5, "reload_refused")
            _, f = e.ask(c, auth(TOKENS["ok"]["token"]))
            assert_eq((f[39], len(second.requests)), (b"00", 2), "still routed to issuer 1")
    finally:
        second.stop()


def test_token_suspended_while_running_declined_next():
    with Env() as e:
        c = e.conn()
        tok = TOKENS["live"]["token"]
        _, f = e.ask(c, auth(tok))
        assert_eq(f[39], b"00", "before")
        tokvault("suspend", tok)
        _, f = e.ask(c, auth(tok))
        assert_eq((f[39], f.get(44)), (b"62", b"TOKEN_SUSPENDED"), "after tokvault suspend")
        tokvault("resume", tok)
        _, f = e.ask(c, auth(tok))
        assert_eq(f[39], b"00", "after tokvault resume")


# offsets in the vault record (src/vault/internal.h struct rec)
REC_STATUS, REC_TRID = 1, 18


def _status_bytes(path, marker):
    """Offsets of the status byte of every copy of the record marked by
    its TRID (LMDB leaves older copies in free pages: edit them all)."""
    with open(path, "rb") as fh:
        data = fh.read()
    out, at = [], data.find(marker)
    while at >= 0:
        out.append(at - REC_TRID + REC_STATUS)
        at = data.find(marker, at + 1)
    assert out, "the record's TRID is in data.mdb"
    for o in out:
        assert_eq(data[o], 1, "the record's status byte (suspended)")
    return out


def _poke(path, offsets, value):
    with open(path, "r+b") as fh:
        for o in offsets:
            fh.seek(o)
            fh.write(bytes([value]))


def test_edited_vault_record_declined_96_vault_integrity():
    """Whoever can write data.mdb sets a suspended token's status to active
    in place: the switch refuses the record instead of approving it."""
    tok = TOKENS["tamper"]["token"]
    path = os.path.join(VAULT, "data.mdb")
    at = _status_bytes(path, b"40010099991")
    with Env() as e:
        c = e.conn()
        _, f = e.ask(c, auth(tok))
        assert_eq((f[39], f.get(44)), (b"62", b"TOKEN_SUSPENDED"), "before the edit")
        try:
            _poke(path, at, 0)
            _, f = e.ask(c, auth(tok))
            assert_eq((f[39], f.get(44)), (b"96", b"VAULT_INTEGRITY"), "after the edit")
        finally:
            _poke(path, at, 1)
        assert_eq(len(e.issuer.requests), 0, "nothing reached the issuer")
        assert_eq(e.sw.metric("tokswitch_vault_integrity_failures_total"), 1.0, "metric")
        assert_eq(e.sw.metric('tokswitch_declines_total{reason="VAULT_INTEGRITY"}'), 1.0, "declines")
        # logged by the worker after its loop iteration, maybe after the answer
        T.wait_for(lambda: "event=vault_integrity" in e.sw.log(), 5.0, "a vault_integrity line")
        line = [ln for ln in e.sw.log().splitlines() if "event=vault_integrity" in ln][0]
        assert "token=400000******" in line, line
        _, f = e.ask(c, auth(tok))
        assert_eq((f[39], f.get(44)), (b"62", b"TOKEN_SUSPENDED"), "restored")


def test_max_connections_refused_others_unaffected():
    with Env(max_conns=4, workers=1) as e:
        conns = [e.conn() for _ in range(4)]
        for c in conns:
            _, f = e.ask(c, auth(TOKENS["ok"]["token"]))
            assert_eq(f[39], b"00", "within the limit")
        extra = e.conn()
        if not extra.closed_by_peer():
            raise AssertionError("connection above max_conns not closed")
        _, f = e.ask(conns[0], auth(TOKENS["ok"]["token"]))
        assert_eq(f[39], b"00", "others unaffected")
        T.wait_for(lambda: e.sw.metric("tokswitch_connections_refused_total") >= 1, 5,
                   "refusal counted")
        T.wait_for(lambda: T.log_events(e.sw.log(), "max_conns_reached"), 5, "refusal logged")
        ev = T.log_events(e.sw.log(), "max_conns_reached")[0]
        assert_eq((ev["level"], ev["max_conns"], ev["worker"]), ("warn", "4", "0"), "event")


def test_oversized_frame_closes_only_that_connection():
    with Env() as e:
        good, bad = e.conn(), e.conn()
        bad.send(struct.pack(">H", 9000) + b"0100" + b"x" * 100)
        if not bad.closed_by_peer():
            raise AssertionError("frame above max_frame did not close the connection")
        _, f = e.ask(good, auth(TOKENS["ok"]["token"]))
        assert_eq(f[39], b"00", "other connection unaffected")
        T.wait_for(lambda: e.sw.metric("tokswitch_frames_refused_total") >= 1, 5, "counted")


def test_malformed_input_30_or_close():
    with Env() as e:
        good, fmt, junk = e.conn(), e.conn(), e.conn()
        # MTI and DE11 readable, DE49 not numeric: answered 30 FORMAT
        _, f = e.ask(fmt, auth(TOKENS["ok"]["token"], stan=31, extra={49: "ABC"}))
        assert_eq((f[39], f.get(44), f[11]), (b"30", b"FORMAT", b"000031"), "format error")
        # no readable MTI: the connection is closed
        junk.send(struct.pack(">H", 6) + b"\x00\xffxyz!")
        if not junk.closed_by_peer():
            raise AssertionError("unreadable message did not close the connection")
        _, f = e.ask(good, auth(TOKENS["ok"]["token"]))
        assert_eq(f[39], b"00", "other connections unaffected")
        _, f = e.ask(fmt, auth(TOKENS["ok"]["token"]))
        assert_eq(f[39], b"00", "the 30 connection stays usable")


def test_network_management_0800_answered_0810():
    with Env() as e:
        c = e.conn()
        c.request("0800", {7: "1123120000", 11: "000099", 70: "301"})
        mti, f = c.answer()
        assert_eq((mti, f.get(39), f.get(11)), ("0810", b"00", b"000099"), "echo")


def test_metrics_health_and_404():
    with Env() as e:
        c = e.conn()
        e.ask(c, auth(TOKENS["ok"]["token"]))
        e.ask(c, auth(TOKENS["suspended"]["token"]))
        assert_eq(e.sw.http("/healthz")[0], 200, "/healthz")
        assert_eq(e.sw.http("/readyz")[0], 200, "/readyz")
        assert_eq(e.sw.http("/nope")[0], 404, "unknown path")
        code, body = e.sw.http("/metrics")
        assert_eq(code, 200, "/metrics")
        want = ['tokswitch_requests_total{mti="0100",rc="00"} ',
                'tokswitch_requests_total{mti="0100",rc="62"} ',
                'tokswitch_declines_total{reason="TOKEN_SUSPENDED"} 1',
                'tokswitch_issuer_rtt_seconds_bucket{le="+Inf"} ',
                "tokswitch_issuer_rtt_seconds_count ", "tokswitch_internal_latency_seconds_sum ",
                "tokswitch_connections_open ", "tokswitch_inflight ", "tokswitch_ready 1",
                "tokswitch_durable 1",
                "tokswitch_log_events_suppressed_total ", "tokswitch_log_events_dropped_total 0",
                'tokswitch_issuer_links_signed_on{link="0",issuer="0",host="%s"} 2' % e.issuer.addr,
                # the version --version prints, the backend the started line names
                'tokswitch_build_info{version="%s",io_backend="%s"} 1\n' % (version(), args.io)]
        for w in want:
            assert w in body, "missing in /metrics: " + w
        for t in TOKENS.values():
            assert t["pan"] not in body and t["token"] not in body, "PAN or token in /metrics"


def version():
    """The version tokswitch --version prints ("tokswitch 0.1.0 (io: ...)")."""
    return run([TOKSWITCH, "--version"]).stdout.split()[1]


def promtool_check(body):
    """promtool check metrics on body (stdin): its output, empty when it
    finds nothing (it lints names, types, units and the format)."""
    promtool = shutil.which("promtool")
    if not promtool:
        raise AssertionError("promtool not found: tools/install-deps installs prometheus")
    p = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True,
                       text=True, timeout=30)
    return (p.stdout + p.stderr).strip(), p.returncode


class Load:
    """Approvals on conns connections of e until the block ends (answered:
    how many so far); an error of a load thread fails the block."""

    def __init__(self, e, conns=3):
        self.e, self.stop, self.answered, self.errors = e, threading.Event(), [0], []
        self.threads = [threading.Thread(target=self.run) for _ in range(conns)]

    def run(self):
        try:
            c = T.Conn(self.e.sw.acq, PROFILE)
            while not self.stop.is_set():
                c.request(*auth(TOKENS["live"]["token"]))
                c.answer()
                self.answered[0] += 1
            c.close()
        except Exception as ex:  # reported when the block ends
            self.errors.append(ex)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, exc_type, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(20)
        if exc_type is None:
            assert not self.errors, self.errors


def test_promtool_check_metrics_passes_on_a_live_scrape_under_load():
    with Env(timeout_ms=300, workers=2, extra_conf="[saf]\npoll_ms = 20\n") as e:
        with Load(e) as load:
            answered = load.answered
            c = e.conn()
            # declines: the switch's own (62, 14) and the issuer's (51)
            assert_eq(e.ask(c, auth(TOKENS["suspended"]["token"]))[1][39], b"62", "suspended")
            assert_eq(e.ask(c, auth(T.luhn_complete("400099999999999")))[1][39], b"14",
                      "unknown token")
            assert_eq(e.ask(c, auth(TOKENS["ok"]["token"], amount="000000000051"))[1][39],
                      b"51", "issuer decline")
            # a timeout (91) and the reversal it leaves, while the load runs on
            e.issuer.hold()
            assert_eq(e.ask(c, auth(TOKENS["ok"]["token"]))[1][39], b"91", "timeout")
            e.issuer.release()
            T.wait_for(lambda: answered[0] >= 50, 20, "approvals under load")
            for _ in range(3):  # scrapes taken while requests flow
                code, body = e.sw.http("/metrics")
                assert_eq(code, 200, "/metrics")
                out, rc = promtool_check(body)
                assert_eq((rc, out), (0, ""), "promtool check metrics")
        T.wait_for(lambda: e.sw.metric("tokswitch_saf_acked_total") >= 1, 10, "reversal acked")
        _, body = e.sw.http("/metrics")
        assert_eq(promtool_check(body), ("", 0), "promtool check metrics after the load")
        # the scrape it passed holds what the load did
        get = lambda n: T.metric_value(body, n)  # noqa: E731
        assert get('tokswitch_requests_total{mti="0100",rc="00"}') >= 50, "approvals"
        assert get('tokswitch_requests_total{mti="0100",rc="91"}') >= 1, "the timeout's 91"
        assert get('tokswitch_declines_total{reason="TOKEN_SUSPENDED"}') == 1, "decline"
        assert get('tokswitch_declines_total{reason="TOKEN_UNKNOWN"}') == 1, "decline"
        assert get('tokswitch_requests_total{mti="0100",rc="51"}') == 1, "issuer decline"
        assert get("tokswitch_timeouts_total") >= 1, "timeouts"
        assert get("tokswitch_state_saf_puts_total") >= 1, "the reversal queued"
        assert get("tokswitch_issuer_rtt_seconds_count") >= 50, "round trips"
        assert "\ntsw_" not in body and not body.startswith("tsw_"), "an old tsw_ name"


def test_alert_and_dashboard_series_exist_in_a_live_scrape_under_load():
    """Every series contrib/prometheus/alerts.yml and contrib/grafana/
    tokswitch.json query is one the switch exports: a rename of either
    side fails here (histograms count by their _bucket, _sum, _count)."""
    files = {"alerts.yml": P.alert_exprs(os.path.join(args.source, "contrib", "prometheus",
                                                       "alerts.yml")),
             "tokswitch.json": P.dashboard_exprs(os.path.join(args.source, "contrib", "grafana",
                                                              "tokswitch.json"))}
    with Env(workers=2) as e:
        with Load(e) as load:
            c = e.conn()
            assert_eq(e.ask(c, auth(TOKENS["suspended"]["token"]))[1][39], b"62", "a decline")
            # a limited use: its reservation is a group commit of the state
            assert_eq(e.ask(c, auth(TOKENS["uses"]["token"]))[1][39], b"00", "a limited use")
            T.wait_for(lambda: load.answered[0] >= 50, 20, "approvals under load")
            code, body = e.sw.http("/metrics")
            assert_eq(code, 200, "/metrics")
    assert T.metric_value(body, "tokswitch_request_forward_seconds_count") >= 50, "forwards"
    assert T.metric_value(body, "tokswitch_answer_delivery_seconds_count") >= 50, "deliveries"
    assert T.metric_value(body, "tokswitch_state_commit_duration_seconds_count") >= 1, "commits"
    for name, exprs in files.items():
        names = set()
        for _, expr in exprs:
            names |= P.expr_names(expr)
        assert len(names) >= 20, "%s: %d names read" % (name, len(names))
        assert_eq(P.missing_from_scrape(names, body), [], name + ": series not in the scrape")
    # the check itself: a renamed series is reported
    assert_eq(P.missing_from_scrape({"tokswitch_timeouts_total", "tokswitch_timeout_total"},
                                    body), ["tokswitch_timeout_total"], "a renamed series")


def documented_series():
    """{name: type} of the metrics table of docs/operations.md."""
    return T.documented_series(args.source)


def test_operations_md_lists_every_series_with_its_type():
    with Env() as e:
        e.ask(e.conn(), auth(TOKENS["ok"]["token"]))
        _, body = e.sw.http("/metrics")
    exported = dict(line.split()[2:4] for line in body.splitlines()
                    if line.startswith("# TYPE "))
    # the cluster's series too: zeros on a node without --cluster
    documented = documented_series()
    assert_eq(sorted(set(exported) - set(documented)), [], "exported, not in the table")
    assert_eq(sorted(set(documented) - set(exported)), [], "in the table, not exported")
    for name, kind in exported.items():
        assert_eq(documented[name], kind, "the type of " + name)


def test_metrics_token_required_probes_open_and_a_loose_file_refused():
    token = "e2e-" + os.urandom(12).hex()
    path = os.path.join(TMP, "metrics.token")
    with open(path, "w") as f:
        f.write(token + "\n")
    os.chmod(path, 0o600)
    with Env(extra_conf="[metrics]\ntoken_file = %s\n" % path) as e:
        assert_eq(e.sw.http("/metrics")[0], 401, "no token")
        assert_eq(e.sw.http("/metrics", headers="Authorization: Bearer x%s\r\n" % token)[0],
                  401, "wrong token")
        code, body = e.sw.http("/metrics", headers="Authorization: Bearer %s\r\n" % token)
        assert_eq(code, 200, "the token")
        assert "\ntokswitch_http_unauthorized_total 2\n" in body, body[-2000:]
        assert token not in body
        assert_eq(e.sw.http("/healthz")[0], 200, "/healthz stays open")
        assert_eq(e.sw.http("/readyz")[0], 200, "/readyz stays open")
        T.wait_for(lambda: T.log_events(e.sw.log(), "http_unauthorized"), 5, "a log line")
        assert token not in e.sw.log(), "the token in the log"
    # readable by the group: the switch refuses to start, naming the file
    os.chmod(path, 0o640)
    conf = write_conf(os.path.join(TMP, "token.conf"), "[metrics]\ntoken_file = %s\n" % path)
    p = run([TOKSWITCH, "-c", conf, "--vault", VAULT, "--key-file", KEY, "--io", args.io,
             "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0", "--no-state"], check=False)
    assert p.returncode != 0, "started with a group-readable token file"
    assert "what=metrics_token" in p.stderr and path in p.stderr, p.stderr
    os.unlink(path)


def test_process_never_dumps_core():
    # keys and decrypted PANs live in this process: no core file may hold them
    with Env() as e:
        pid = e.sw.proc.pid
        with open("/proc/%d/limits" % pid) as f:
            core = [l for l in f if l.startswith("Max core file size")]
        assert_eq(len(core), 1, "core limit line")
        assert_eq(core[0].split()[4:6], ["0", "0"], "RLIMIT_CORE soft and hard")


NOBODY = 65534


def as_nobody():
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def nobody_copy():
    """A copy of the vault and key file in a new dir outside TMP, all owned
    by NOBODY (the owner check refuses them to anyone else but root), with
    the programs and the default profile beside them: the build and
    source trees may lie in a directory NOBODY cannot enter (a clone in a
    mktemp -d directory is 0700)."""
    d = tempfile.mkdtemp(prefix="tsw-nobody-")
    shutil.copytree(VAULT, os.path.join(d, "vault"))
    shutil.copy2(KEY, os.path.join(d, "key"))
    for root, dirs, files in os.walk(d):
        for n in [root] + [os.path.join(root, x) for x in dirs + files]:
            os.chown(n, NOBODY, NOBODY)
    for exe in (TOKSWITCH, TOKVAULT):
        shutil.copy2(exe, os.path.join(d, os.path.basename(exe)))
    shutil.copy2(os.path.join(args.source, "config", "default.spec"),
                 os.path.join(d, "default.spec"))
    return d


def assert_not_dumpable_no_core(pid, what):
    # a process that is not dumpable has its /proc files owned by root,
    # whoever runs it: so the test runs it as another user
    with open("/proc/%d/status" % pid) as f:
        uids = [l.split()[1:] for l in f if l.startswith("Uid:")]
    assert_eq(uids, [[str(NOBODY)] * 4], what + ": runs as nobody")
    assert_eq(os.stat("/proc/%d/status" % pid).st_uid, 0, what + ": not dumpable")
    with open("/proc/%d/limits" % pid) as f:
        core = [l for l in f if l.startswith("Max core file size")]
    assert_eq(len(core), 1, what + ": core limit line")
    assert_eq(core[0].split()[4:6], ["0", "0"], what + ": RLIMIT_CORE soft and hard")


def test_switch_and_tokvault_not_dumpable_without_core_limit():
    d = nobody_copy()
    try:
        vault, key = os.path.join(d, "vault"), os.path.join(d, "key")
        spec = os.path.join(d, "default.spec")
        conf = write_conf(os.path.join(d, "tokswitch.conf"),
                          BASE_CONF % dict(timeout=2000, max_conns=16, lease=30000) +
                          "[server]\nprofile = %s\nissuer_profile = %s\n" % (spec, spec))
        os.chown(conf, NOBODY, NOBODY)
        sw = T.Switch(os.path.join(d, "tokswitch"), ["-c", conf, "--vault", vault, "--key-file", key,
                                  "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0",
                                  "--io", args.io, "--issuer", "127.0.0.1:%d" % T.free_port(),
                                  "--state", os.path.join(d, "state")],
                      os.path.join(d, "switch.log"), preexec_fn=as_nobody)
        try:
            assert_not_dumpable_no_core(sw.proc.pid, "tokswitch")
        finally:
            assert_eq(sw.stop(), 0, "tokswitch exit status")
        # tokvault waits for the PAN on a pipe the test holds open
        pan = T.luhn_complete("541333%09d" % 4242)
        base = [os.path.join(d, "tokvault"), "--vault", vault, "--key-file", key]
        p = subprocess.Popen(base + ["provision", "--pan", "-", "--pan-expiry", "3012"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, preexec_fn=as_nobody)
        try:
            data = os.path.join(vault, "data.mdb")

            def vault_open():
                assert p.poll() is None, "tokvault exited: %r" % (p.communicate(),)
                fds = "/proc/%d/fd" % p.pid
                return any(os.path.realpath(os.path.join(fds, n)) == data
                           for n in os.listdir(fds))
            T.wait_for(vault_open, 10, "tokvault has the vault open")
            assert_not_dumpable_no_core(p.pid, "tokvault")
            out, err = p.communicate((pan + "\n").encode(), timeout=30)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        assert_eq(p.returncode, 0, "tokvault provision: " + err.decode())
        token = out.decode().strip()
        assert pan.encode() not in out + err, "tokvault printed the PAN"
        show = subprocess.run(base + ["show", token], capture_output=True, text=True,
                              timeout=30, preexec_fn=as_nobody)
        assert_eq(show.returncode, 0, "show: " + show.stderr)
        assert "pan=%s******%s" % (pan[:6], pan[-4:]) in show.stdout, show.stdout
        assert pan not in show.stdout + show.stderr, "show printed the PAN"
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_vault_or_state_open_to_others_refused_naming_the_path():
    base = [TOKSWITCH, "--io", args.io, "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0",
            "--issuer", "127.0.0.1:%d" % T.free_port()]
    sdir = tempfile.mkdtemp(dir=TMP)
    state = os.path.join(sdir, "state")
    os.mkdir(state)
    os.chmod(state, 0o770)
    p = run(base + ["--vault", VAULT, "--key-file", KEY, "--state", state], check=False,
            timeout=20)
    assert p.returncode != 0, "started with a group-writable state dir"
    failed = T.log_events(p.stderr, "start_failed")
    assert_eq(len(failed), 1, "start_failed events: " + p.stderr)
    assert_eq(failed[0].get("what"), "state", p.stderr)
    assert failed[0].get("problem", "").startswith(state + ": mode 0770"), p.stderr
    d = nobody_copy()
    try:
        vault = os.path.join(d, "vault")
        p = run(base + ["--vault", vault, "--key-file", os.path.join(d, "key"), "--no-state"],
                check=False, timeout=20)
        assert p.returncode != 0, "started with another user's vault"
        failed = T.log_events(p.stderr, "start_failed")
        assert_eq(len(failed), 1, "start_failed events: " + p.stderr)
        assert failed[0].get("problem", "").startswith(vault + ": owned by uid 65534"), \
            p.stderr
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_bad_config_refused_with_file_and_line():
    conf = write_conf(os.path.join(TMP, "bad.conf"), "[server]\nworkers = 2\n[limits]\n"
                      "max_conns = lots\n")
    p = run([TOKSWITCH, "-c", conf, "--vault", VAULT, "--key-file", KEY, "--io", args.io],
            check=False)
    assert_eq(p.returncode, 2, "exit status")
    assert "%s:4:" % conf in p.stderr and "max_conns" in p.stderr, p.stderr
    p = run([TOKSWITCH, "--vault", VAULT, "--key-file", KEY, "--io", "nope"], check=False)
    assert_eq(p.returncode, 2, "bad flag value")



def test_pending_table_above_the_stan_span_refused():
    # 40 workers split 10^6 switch STANs into 24999 each: 32768 pending do not fit
    p = run([TOKSWITCH, "--vault", VAULT, "--key-file", KEY, "--io", args.io, "--workers", "40",
             "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0", "--no-state"], check=False)
    assert_eq(p.returncode, 2, "exit status")
    assert "limits.max_pending 32768" in p.stderr and "24999" in p.stderr, p.stderr

def test_state_directory_required_naming_both_flags():
    base = [TOKSWITCH, "--vault", VAULT, "--key-file", KEY, "--io", args.io,
            "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0"]
    sdir = tempfile.mkdtemp(dir=TMP)
    conf = write_conf(os.path.join(sdir, "both.conf"),
                      "[server]\nstate = %s\nno_state = true\n" % sdir)
    for case, extra in (("neither", []), ("both flags", ["--state", sdir, "--no-state"]),
                        ("both in the file", ["-c", conf])):
        p = run(base + extra, check=False, timeout=20)  # a switch that starts never exits
        assert_eq(p.returncode, 2, case + ": exit status")
        human = [l for l in p.stderr.splitlines() if not l.startswith("ts=")]
        assert_eq(len(human), 1, case + ": one line for the operator: " + p.stderr)
        assert "--state" in human[0] and "--no-state" in human[0], human[0]
        refused = T.log_events(p.stderr, "config_refused")
        assert_eq(len(refused), 1, case + ": config_refused events: " + p.stderr)
        assert "listening" not in p.stdout, case


def test_no_state_runs_with_a_warning_and_tokswitch_durable_0():
    with Env(state=False, no_state=True, timeout_ms=300) as e:
        warn = T.log_events(e.sw.log(), "no_durable_state")
        assert_eq(len(warn), 1, "one warning at start")
        assert_eq(warn[0]["level"], "warn", "level")
        assert "reversal" in warn[0]["lost"] and "limited-use" in warn[0]["lost"], warn[0]
        assert_eq(e.sw.metric("tokswitch_durable"), 0.0, "tokswitch_durable")
        c = e.conn()
        _, f = e.ask(c, auth(TOKENS["ok"]["token"]))
        assert_eq(f[39], b"00", "served without a state")
        _, f = e.ask(c, auth(TOKENS["uses"]["token"]))
        assert_eq(f[39], b"96", "a limited-use token needs the state")
        # the reversal a timeout owes cannot be kept: logged, never silent
        e.issuer.hold()
        _, f = e.ask(c, auth(TOKENS["ok"]["token"], stan=4711))
        assert_eq(f[39], b"91", "timed out")
        T.wait_for(lambda: T.log_events(e.sw.log(), "saf_put_refused"), 5, "refusal logged")
        ev = T.log_events(e.sw.log(), "saf_put_refused")[0]
        assert_eq((ev["level"], ev["reason"], ev["stan"]), ("error", "no_state", "004711"),
                  "saf_put_refused")
        tok = TOKENS["ok"]["token"]
        assert_eq(ev["token"], tok[:6] + "*" * (len(tok) - 10) + tok[-4:], "masked token")
    # the file says it as well
    with Env(state=False, extra_conf="[server]\nno_state = true\n") as e:
        assert_eq(e.sw.metric("tokswitch_durable"), 0.0, "tokswitch_durable with no_state in the file")
        assert_eq(len(T.log_events(e.sw.log(), "no_durable_state")), 1, "warning")


def test_json_log_lines_are_objects_with_escaped_values():
    with Env(log_format="json", max_conns=1, workers=1) as e:
        keep = e.conn()
        _, f = e.ask(keep, auth(TOKENS["ok"]["token"]))
        assert_eq(f[39], b"00", "served")
        if not e.conn().closed_by_peer():
            raise AssertionError("connection above max_conns not closed")
        T.wait_for(lambda: '"event":"max_conns_reached"' in e.sw.log(), 5, "engine event")
        # a key with a quote and a backslash in its name: the reason quotes it
        good = open(e.conf).read()
        write_conf(e.conf, good + 'wr"ong\\key = 1\n')
        e.sw.signal(signal.SIGHUP)
        T.wait_for(lambda: '"event":"reload_refused"' in e.sw.log(), 5, "reload_refused")
        lines = [json.loads(l) for l in e.sw.log().splitlines()]
        by = {}
        for obj in lines:
            assert_eq(list(obj)[:3], ["ts", "level", "event"], "leading keys")
            by.setdefault(obj["event"], obj)
        assert_eq((by["started"]["workers"], by["started"]["io"]), (1, args.io), "started")
        assert 'unknown key limits.wr"ong\\key' in by["reload_refused"]["reason"], by
        assert_eq(by["reload_refused"]["line"], len(good.splitlines()) + 1, "line number")
        assert_eq((by["max_conns_reached"]["level"], by["max_conns_reached"]["max_conns"]),
                  ("warn", 1), "engine event")


def test_limit_events_rate_limited_with_the_suppressed_count():
    conf = "[server]\nlog_event_burst = 2\nlog_event_interval_ms = 300\n"
    n = 10
    with Env(max_conns=1, workers=1, extra_conf=conf) as e:
        keep = e.conn()
        _, f = e.ask(keep, auth(TOKENS["ok"]["token"]))
        assert_eq(f[39], b"00", "served")
        # all at once: the backend may have no room left for them either,
        # and every one must still be counted and reported
        extra = [e.conn() for _ in range(n)]
        for i, c in enumerate(extra):
            if not c.closed_by_peer():
                raise AssertionError("connection %d above max_conns not closed" % i)
        T.wait_for(lambda: e.sw.metric("tokswitch_connections_refused_total") == n, 5, "counted")

        def logged():
            # a line of its own per event (it has the event's fields), the
            # others counted in suppressed=N of a later line
            evs = T.log_events(e.sw.log(), "max_conns_reached")
            return (sum(1 for ev in evs if "max_conns" in ev) +
                    sum(int(ev.get("suppressed", 0)) for ev in evs))
        # the count comes with the next event of the kind, or in a line of
        # its own once the interval is over
        T.wait_for(lambda: logged() == n, 5, "every refusal logged or counted")
        evs = T.log_events(e.sw.log(), "max_conns_reached")
        own = sum(1 for ev in evs if "max_conns" in ev)
        assert own < n and any(int(ev.get("suppressed", 0)) for ev in evs), evs
        assert_eq(e.sw.metric("tokswitch_log_events_suppressed_total"), float(n - own),
                  "suppressed metric")


def test_signon_refused_logged_then_signed_on():
    iss = T.FakeIssuer(PROFILE)
    iss.signon_rc = "05"
    with Env(issuer=False, issuer_port=iss.port, timeout_ms=300, workers=1) as e:
        e.issuer = iss
        T.wait_for(lambda: T.log_events(e.sw.log(), "issuer_signon_refused"), 10,
                   "sign-on refusal logged")
        ev = T.log_events(e.sw.log(), "issuer_signon_refused")[0]
        assert_eq((ev["level"], ev["link"], ev["rc"], ev["retry_in_ms"]), ("warn", "0", "05", "300"),
                  "issuer_signon_refused")
        assert_eq(e.sw.http("/readyz")[0], 503, "not ready while refused")
        iss.signon_rc = "00"
        e.sw.wait_ready(10)
        _, f = e.ask(e.conn(), auth(TOKENS["ok"]["token"]))
        assert_eq(f[39], b"00", "served once signed on")


def tlv(tag, value):
    """One BER-TLV object (short length)."""
    t = bytes.fromhex("%x" % tag if tag > 0xff else "%02x" % tag)
    return t + bytes([len(value)]) + value


def test_chip_data_loses_card_tags_and_a_bcd_pan_is_answered_96():
    with Env() as e:
        c = e.conn()
        pan = TOKENS["ok"]["pan"]
        arqc, iad = tlv(0x9f26, bytes(range(1, 9))), tlv(0x91, b"\x11" * 8)
        e.issuer.answer_extra = {55: tlv(0x5a, T.bcd(pan)) + arqc +
                                 tlv(0x57, T.bcd(pan + "D2912201")) +
                                 tlv(0x5f24, b"\x29\x12\x31") + iad}
        _, f = e.ask(c, auth(TOKENS["ok"]["token"]))
        assert_eq(f[39], b"00", "approved")
        # compared, never printed: the unstripped field holds the PAN
        assert f.get(55) == arqc + iad, "DE55 still has %d bytes, not 9F26 and 91 alone: %s" % (
            len(f.get(55, b"")), ", ".join(T.log_leaks(f.get(55, b""), [pan])) or "no PAN")
        T.wait_for(lambda: e.sw.metric("tokswitch_answer_de55_tags_stripped_total") == 3, 5,
                   "stripped tags counted")
        # the PAN in BCD in a tag that stays (issuer application data),
        # starting in a low nibble: 96, and the approval is reversed
        e.issuer.answer_extra = {55: arqc + tlv(0x9f10, T.bcd(pan, "0", low_first=True))}
        _, f = e.ask(c, auth(TOKENS["ok"]["token"], stan=5501))
        assert_eq((f[39], f.get(44), f[11]), (b"96", b"SYSTEM", b"005501"), "BCD PAN")
        T.wait_for(lambda: e.sw.metric("tokswitch_pan_leaks_blocked_total") == 1, 5, "counted")
        T.wait_for(lambda: any(m == "0400" for m, _ in e.issuer.requests), 10,
                   "the approval reversed at the issuer")
        # not BER-TLV: the answer goes without DE55
        e.issuer.answer_extra = {55: b"\x9f\x26\x08\x01"}
        _, f = e.ask(c, auth(TOKENS["ok"]["token"]))
        assert_eq((f[39], 55 in f), (b"00", False), "malformed DE55 removed")
        T.wait_for(lambda: e.sw.metric("tokswitch_answer_de55_dropped_total") == 1, 5, "counted")
        assert_no_pan(c)


# --- frames that an ascii4 issuer header cannot carry ------------------------

ASCII4 = T.Profile(os.path.join(args.source, "config", "ascii4.spec"))
# a PAN the vault does not hold, put in a request by the acquirer
SMUGGLED_PAN = T.luhn_complete("54139999999999")
SMUGGLED_STAN = "777777"
# ans fields that carry the padding of a large request
FILLERS = [47, 56, 57, 58, 59, 60, 61, 62, 63, 106, 107, 108]


def smuggled_0100():
    """A complete 0100 with a raw PAN and a STAN of the acquirer's choosing,
    all of it printable (a bitmap byte of 0x20 or 0x70), so that it fits an
    ans field."""
    body = T.encode_body(PROFILE, "0100", {
        2: SMUGGLED_PAN, 3: "000000", 4: "000009999900", 11: SMUGGLED_STAN, 19: "840", 27: "1",
        35: SMUGGLED_PAN + "=2912", 43: "SMUGGLED".ljust(40), 51: "840", 59: "X"})
    assert all(0x20 <= b <= 0x7e for b in body), "not printable"
    return body


def sized_request(acq_len, delta, stan, carrier_len=600):
    """(mti, fields) of an authorization of the ok token whose body is
    acq_len bytes (its issuer copy acq_len + delta), padded with ans
    fields. DE46 carries, at the place where an issuer that reads the
    copy's length header modulo 10000 looks for its next frame, a complete
    0100 with a header of its own, then a header that swallows the rest."""
    mti, f = auth(TOKENS["ok"]["token"], stan=stan)
    f[46] = "Z" * carrier_len
    f[105] = "F"  # a secondary bitmap whatever the padding takes
    base = T.encode_body(PROFILE, mti, f)
    at = base.index(b"Z" * carrier_len)  # where DE46's value starts
    fill = acq_len - len(base)
    for fld in FILLERS:
        if fill <= 0:
            break
        take = min(fill, 3 + 999)
        if 0 < fill - take < 4:
            take -= 4  # the next field needs its prefix and a byte
        f[fld] = "F" * (take - 3)
        fill -= take
    assert fill == 0, "fillers too short for %d bytes" % acq_len
    iss_len = acq_len + delta
    k = iss_len % 10000  # what the header said when it wrapped
    inner = smuggled_0100()
    if at <= k and k + 8 + len(inner) <= at + carrier_len:
        rest = iss_len - (k + 8 + len(inner))
        carrier = ("Z" * (k - at)).encode() + b"%04d" % len(inner) + inner + b"%04d" % rest
        f[46] = (carrier + b"Z" * (carrier_len - len(carrier))).decode()
    body = T.encode_body(PROFILE, mti, f)
    assert_eq(len(body), acq_len, "request size")
    return mti, f


def rewrite_growth(e, c):
    """Bytes the rewrite adds to a request of the ok token (DE48 token
    data): measured, the issuer records what it got."""
    mti, f = sized_request(2000, 0, stan=901)
    n = len(e.issuer.frames)
    _, a = e.ask(c, (mti, f))
    assert_eq(a[39], b"00", "a request that fits")
    return len(e.issuer.frames[n]) - 2000


def smuggled_at_issuer(issuer):
    return [rf for _, rf in issuer.requests if rf.get(2) == SMUGGLED_PAN.encode() or
            rf.get(11) == SMUGGLED_STAN.encode()]


def test_max_frame_above_an_ascii4_header_refused_at_start_and_on_reload():
    attack = "[server]\nissuer_profile = ascii4\n[limits]\nmax_frame = 12000\n"
    iss = T.FakeIssuer(ASCII4)
    try:
        try:
            with Env(issuer=False, issuer_port=iss.port, extra_conf=attack) as e:
                # it started: show what a 4-digit header written modulo
                # 10000 lets through
                e.issuer = iss
                e.sw.wait_ready()
                c = e.conn()
                delta = rewrite_growth(e, c)
                c.request(*sized_request(10000 + 200 - delta, delta, stan=902))
                T.wait_for(lambda: smuggled_at_issuer(iss) or len(iss.bad_frames) >= 2, 10,
                           "the issuer to read the copy")
                raise AssertionError(
                    "started with limits.max_frame 12000 and an ascii4 issuer header: the issuer "
                    "read %d requests it took for separate messages (%d with the acquirer's "
                    "PAN and STAN) and %d broken frames" % (
                        len(iss.requests) - 1, len(smuggled_at_issuer(iss)), len(iss.bad_frames)))
        except RuntimeError as ex:  # tokswitch exited before it listened
            refused = str(ex)
        assert "limits.max_frame 12000" in refused and "server.issuer_profile" in refused and \
            "ascii4" in refused and "9999" in refused, refused
        # a reload that asks for it is refused too, naming the same
        with Env(issuer=False, issuer_port=iss.port,
                 extra_conf="[server]\nissuer_profile = ascii4\n[limits]\nmax_frame = 9999\n") as e:
            e.issuer = iss
            e.sw.wait_ready()
            with open(e.conf, "a") as conf:
                conf.write("[limits]\nmax_frame = 12000\n")
            e.sw.signal(signal.SIGHUP)
            T.wait_for(lambda: T.log_events(e.sw.log(), "reload_refused"), 5, "reload_refused")
            ev = T.log_events(e.sw.log(), "reload_refused")[0]
            assert "limits.max_frame 12000" in ev["reason"] and "ascii4" in ev["reason"], ev
            _, f = e.ask(e.conn(), auth(TOKENS["ok"]["token"]))
            assert_eq(f[39], b"00", "still serving")
    finally:
        iss.stop()


def test_profile_without_a_length_header_refused_at_start_naming_the_key():
    # hexbitmap (the moov vectors' dialect) has no length header: a TCP
    # stream cannot be framed by it, so neither side may use it
    d = tempfile.mkdtemp(dir=TMP)
    try:
        for key in ("profile", "issuer_profile"):
            conf = write_conf(os.path.join(d, key + ".conf"), "[server]\n%s = hexbitmap\n" % key)
            p = run([TOKSWITCH, "-c", conf, "--vault", VAULT, "--key-file", KEY, "--io", args.io,
                     "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0",
                     "--issuer", "127.0.0.1:%d" % T.free_port(), "--no-state"],
                    check=False, timeout=20)  # a switch that starts never exits
            assert_eq(p.returncode, 2, key + ": exit status")
            assert "listening" not in p.stdout, key
            refused = T.log_events(p.stderr, "config_refused")
            assert_eq(len(refused), 1, key + ": config_refused events: " + p.stderr)
            reason = refused[0]["reason"]
            assert "server." + key + " hexbitmap" in reason and "length header" in reason, reason
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_issuer_copy_too_long_for_the_ascii4_header_answered_96():
    conf = "[server]\nissuer_profile = ascii4\n[limits]\nmax_frame = 9999\n"
    with Env(issuer_wire=ASCII4, extra_conf=conf) as e:
        c = e.conn()
        delta = rewrite_growth(e, c)
        assert delta > 0, "the rewrite adds DE48 token data"
        # the largest copy the issuer header can say goes through
        _, f = e.ask(c, sized_request(9999 - delta, delta, stan=903))
        assert_eq(f[39], b"00", "a copy of 9999 bytes")
        assert_eq(len(e.issuer.frames[-1]), 9999, "what the issuer got")
        # the acquirer's largest request, whose copy the header cannot say
        n = len(e.issuer.frames)
        _, f = e.ask(c, sized_request(9999, delta, stan=904))
        assert_eq((f[39], f.get(44)), (b"96", b"SYSTEM"), "too long for the issuer")
        assert_eq(f[11], b"000904", "the acquirer's DE11")
        T.wait_for(lambda: e.sw.metric("tokswitch_issuer_frames_too_big_total") == 1, 5, "counted")
        T.wait_for(lambda: T.log_events(e.sw.log(), "issuer_frame_too_big"), 5, "logged")
        ev = T.log_events(e.sw.log(), "issuer_frame_too_big")[0]
        tok = TOKENS["ok"]["token"]
        assert_eq((ev["stan"], ev["token"], ev["max_frame"]),
                  ("000904", tok[:6] + "*" * (len(tok) - 10) + tok[-4:], "9999"), "event")
        # the issuer got nothing of it, the link is still good
        _, f = e.ask(c, auth(TOKENS["ok"]["token"]))
        assert_eq(f[39], b"00", "served after it")
        assert_eq((len(e.issuer.frames), e.issuer.bad_frames), (n + 1, []), "at the issuer")
        assert_no_pan(c)


def test_log_scan_finds_pans_in_ascii_and_packed_bcd():
    pan = TOKENS["ok"]["pan"]
    masked = pan[:6] + "*" * (len(pan) - 10) + pan[-4:]
    clean = ("ts=2026-01-01T00:00:00.000Z level=info event=started token=%s\n" % masked).encode()
    assert_eq(T.log_leaks(clean, [pan]), [], "a masked number is no leak")
    assert_eq(T.log_leaks(clean + pan.encode(), [pan]), [masked + " in ASCII"], "ASCII")
    odd = T.luhn_complete("54130000000012")  # 15 digits: a padding nibble either way
    for digits in (pan, odd):
        for pad in "F0":
            for low_first in (False, True):
                planted = clean + T.bcd(digits, pad, low_first) + b"\n" + clean
                case = "%s pad %s low_first %s" % (len(digits), pad, low_first)
                assert T.find_bcd(planted, digits) == len(clean), case
                assert_eq(len(T.log_leaks(planted, [digits])), 1, case)
    # one digit off is not found
    other = pan[:-1] + str((int(pan[-1]) + 1) % 10)
    assert_eq(T.find_bcd(clean + T.bcd(other) + clean, pan), -1, "another number")


TESTS = [(n[len("test_"):], f) for n, f in list(globals().items())
         if n.startswith("test_") and callable(f)]

if __name__ == "__main__":
    try:
        make_vault()
        rc = T.run_tap(TESTS, args.only)
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
    sys.exit(rc)
