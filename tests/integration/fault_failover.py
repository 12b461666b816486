#!/usr/bin/env python3
"""Fault test: issuer failover, against one I/O backend.

    fault_failover.py --build BUILD_DIR --source SOURCE_DIR --io uring|uv [NAME...]

One issuer with two hosts (two FakeIssuers, `--issuer A,B`), a scripted
pipelined load over several acquirer connections, and one host killed in
the middle of it. What the hosts received decides: every request is
answered 00 or 91, the only 91s are requests the killed host had received,
each of those gets exactly one reversal, delivered by the surviving host
and naming the original as the killed host saw it, and the gauges return
to 0. Prints TAP.
"""
import os
import shutil
import signal
import sys
import tempfile
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import tswtest as T  # noqa: E402

args, TOKSWITCH, TOKVAULT, PROFILE, TMP = T.suite_setup("failover")
VAULT = os.path.join(TMP, "vault")
KEY = os.path.join(TMP, "key")

N_TOKENS = 16
TOKENS = [(T.luhn_complete("4000%011d" % (i + 1)), T.luhn_complete("5413%011d" % (i + 7919)))
          for i in range(N_TOKENS)]

# the load: connections x requests each, at most DEPTH unanswered per connection
CONNS = 8
PER_CONN = 750
DEPTH = 8
ANSWER_TIMEOUT_S = 15.0

CONF = """[server]
workers = 2
drain_timeout_ms = 5000
[issuer]
timeout_ms = 3000
reconnect_min_ms = 20
reconnect_max_ms = 200
echo_interval_ms = 60000
[saf]
poll_ms = 50
retry_min_ms = 200
retry_max_ms = 1000
"""


def make_vault():
    T.make_vault(TOKVAULT, VAULT, KEY, [dict(token=t, pan=p) for t, p in TOKENS], "3012",
                 os.path.join(TMP, "tokens.csv"))


def auth(tok, conn_no, seq):
    """A 0100 whose DE37 names it uniquely across the whole load."""
    rrn = "%03d%09d" % (conn_no, seq)
    return rrn, T.encode(PROFILE, "0100", {
        2: tok, 3: "000000", 4: "000000001000", 7: "1123120000", 11: "%06d" % (seq + 1),
        14: "3012", 22: "071", 37: rrn, 41: "TERM%04d" % conn_no, 42: "MERCHANT0000001",
        49: "840"})


class Switch:
    """tokswitch with a state directory, stopped and checked on exit."""

    def __init__(self, argv, conf=CONF):
        self.dir = tempfile.mkdtemp(dir=TMP)
        self.conf = os.path.join(self.dir, "tokswitch.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        os.mkdir(os.path.join(self.dir, "state"))
        self.sw = T.Switch(TOKSWITCH, ["-c", self.conf, "--vault", VAULT, "--key-file", KEY,
                                       "--state", os.path.join(self.dir, "state"),
                                       "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0",
                                       "--io", args.io] + argv,
                           os.path.join(self.dir, "stderr.log"))

    def __enter__(self):
        return self.sw

    def __exit__(self, exc_type, *exc):
        rc = self.sw.stop()
        log = self.sw.log()
        if exc_type is not None:
            return
        with open(self.sw.stderr_path, "rb") as f:
            leaks = T.log_leaks(f.read(), [d for pair in TOKENS for d in pair])
        if leaks:
            raise AssertionError("the switch's log holds " + ", ".join(leaks))
        report = self.sw.sanitizer_report()
        if report:
            raise AssertionError("sanitizer: " + report)
        if rc != 0:
            raise AssertionError("tokswitch exited %r after SIGTERM: %s" % (rc, log[-1500:]))


def signed_on(sw, link, host):
    return sw.metric('tokswitch_issuer_links_signed_on{link="%d",issuer="0",host="%s"}'
                     % (link, host.addr))


def originals(host):
    with host.lock:
        return {f[37].decode(): f for mti, f in host.requests if mti == "0100"}


def reversals(host):
    with host.lock:
        return [f for mti, f in host.requests if mti == "0400"]


class Load:
    """CONNS threads, each a pipelined acquirer connection: up to DEPTH
    requests out, one answer read for each, PER_CONN requests in all."""

    def __init__(self, acq):
        self.lock = threading.Lock()
        self.answers = {}  # rrn -> [DE39 of each answer]
        self.n_answered = 0
        self.errors = []
        self.threads = [threading.Thread(target=self._run, args=(acq, i), daemon=True)
                        for i in range(CONNS)]
        for t in self.threads:
            t.start()

    def answered(self):
        with self.lock:
            return self.n_answered

    def _run(self, acq, conn_no):
        try:
            c = T.Conn(acq, PROFILE)
            by_stan, sent = {}, 0
            while sent < PER_CONN or by_stan:
                burst = b""
                while sent < PER_CONN and len(by_stan) < DEPTH:
                    rrn, frame = auth(TOKENS[(conn_no + sent) % N_TOKENS][0], conn_no, sent)
                    by_stan[b"%06d" % (sent + 1)] = rrn
                    burst += frame
                    sent += 1
                if burst:
                    c.send(burst)
                mti, f = c.answer(ANSWER_TIMEOUT_S)
                rrn = by_stan.pop(f[11], None)
                if mti != "0110" or rrn is None or f.get(37, b"").decode() != rrn:
                    raise AssertionError("unexpected answer %s DE11 %r" % (mti, f.get(11)))
                with self.lock:
                    self.answers.setdefault(rrn, []).append(f[39].decode())
                    self.n_answered += 1
            c.close()
        except Exception as e:  # reported by join()
            with self.lock:
                self.errors.append("connection %d: %r" % (conn_no, e))

    def join(self):
        for t in self.threads:
            t.join(ANSWER_TIMEOUT_S * 4)
        if any(t.is_alive() for t in self.threads):
            raise AssertionError("a load connection did not finish")
        if self.errors:
            raise AssertionError("; ".join(self.errors))


def test_one_host_killed_under_load_the_other_carries_it():
    killed, survivor = T.FakeIssuer(PROFILE), T.FakeIssuer(PROFILE)
    try:
        with Switch(["--issuer", "%s,%s" % (killed.addr, survivor.addr)]) as sw:
            sw.wait_ready()
            T.wait_for(lambda: signed_on(sw, 0, killed) == 2 and signed_on(sw, 1, survivor) == 2,
                       10, "both hosts signed on by both workers")
            load = Load(sw.acq)
            T.wait_for(lambda: load.answered() >= CONNS * PER_CONN // 3, 60, "a third answered")
            # the host stops answering, then dies: what it holds is in flight
            # on its links when they go down (at least one request)
            killed.hold()
            killed.wait_held(1)
            killed.stop(drain=True)
            load.join()

            total = CONNS * PER_CONN
            if len(load.answers) != total or any(len(a) != 1 for a in load.answers.values()):
                raise AssertionError("%d of %d requests answered, some more than once"
                                     % (len(load.answers), total))
            rcs = {rrn: a[0] for rrn, a in load.answers.items()}
            other = {rc for rc in rcs.values()} - {"00", "91"}
            assert not other, "answers other than 00 and 91: %r" % other
            on_killed, on_survivor = originals(killed), originals(survivor)
            assert on_killed and on_survivor, "the load went to both hosts before the kill"
            both = set(on_killed) & set(on_survivor)
            assert not both, "%d requests went to both hosts" % len(both)
            r91 = {rrn for rrn, rc in rcs.items() if rc == "91"}
            assert r91, "the requests the killed host held are answered 91"
            stray = r91 - set(on_killed)
            assert not stray, "91 for %d requests the killed host never had" % len(stray)

            # exactly one reversal for each 91, by the survivor, naming the
            # original as the killed host saw it
            T.wait_for(lambda: len(reversals(survivor)) >= len(r91), 20,
                       "%d reversals at the surviving host" % len(r91))
            T.wait_for(lambda: sw.metric("tokswitch_saf_depth") == 0 and
                       sw.metric("tokswitch_saf_inflight") == 0 and sw.metric("tokswitch_inflight") == 0 and
                       sw.metric("tokswitch_parked") == 0,
                       20, "queue empty, nothing in flight")
            revs = reversals(survivor)
            by_rrn = {}
            for f in revs:
                by_rrn.setdefault(f[37].decode(), []).append(f)
            assert_eq(set(by_rrn), r91, "reversed requests are the 91s")
            for rrn, fs in by_rrn.items():
                assert_eq(len(fs), 1, "reversals of %s" % rrn)
                orig = on_killed[rrn]
                want = b"0100" + orig[11] + orig[7] + b"0" * 22
                assert_eq(fs[0][90], want, "DE90 of the reversal of %s" % rrn)
                assert_eq(fs[0][2], orig[2], "the reversal carries the PAN the issuer saw")
            # another worker may have sent one to the dying host before its own
            # link there saw the end: never answered, it went again to the survivor
            late = {f[37].decode() for f in reversals(killed)} - r91
            assert not late, "reversals of %d other requests at the killed host" % len(late)
            assert_eq(sw.metric("tokswitch_saf_acked_total"), float(len(r91)), "acked")
            print("# %d requests, %d to the killed host (%d answered 91), %d to the survivor, "
                  "%d moved before they were sent" % (total, len(on_killed), len(r91),
                                                       len(on_survivor),
                                                       sw.metric("tokswitch_issuer_requests_rerouted_total")),
                  flush=True)

            assert_eq(signed_on(sw, 0, killed), 0.0, "the killed host's links are down")
            assert_eq(signed_on(sw, 1, survivor), 2.0, "the survivor's are signed on")
            assert_eq(sw.http("/readyz")[0], 200, "ready: the issuer has a signed-on host")
            assert "event=issuer_link_down" in sw.log() and \
                "issuer=0 host=%s" % killed.addr in sw.log(), "link down logged"
    finally:
        killed.stop()
        survivor.stop()


def test_host_list_on_one_line_and_a_changed_list_refused_on_reload():
    a, b = T.FakeIssuer(PROFILE), T.FakeIssuer(PROFILE)
    try:
        hosts = CONF + "[issuer]\nhost = %s , %s\n" % (a.addr, b.addr)
        sw_ctx = Switch([], conf=hosts)
        with sw_ctx as sw:
            sw.wait_ready()
            T.wait_for(lambda: signed_on(sw, 0, a) == 2 and signed_on(sw, 1, b) == 2, 10,
                       "one issuer, two hosts, both signed on")
            assert "issuers=1 " in sw.log(), "one issuer"
            c = T.Conn(sw.acq, PROFILE)
            _, frame = auth(TOKENS[0][0], 0, 0)
            c.send(frame)
            _, f = c.answer()
            assert_eq(f[39], b"00", "served")
            # the same hosts as two issuers is another list: a restart is needed
            with open(sw_ctx.conf, "w") as conf:
                conf.write(CONF + "[issuer]\nhost = %s\nhost = %s\n" % (a.addr, b.addr))
            sw.signal(signal.SIGHUP)
            T.wait_for(lambda: "issuer host list changed" in sw.log(), 5, "reload_refused")
            _, frame = auth(TOKENS[1][0], 0, 1)
            c.send(frame)
            _, f = c.answer()
            assert_eq(f[39], b"00", "still serving with the old list")
            assert_eq(signed_on(sw, 1, b), 2.0, "link 1 still serves issuer 0")
            c.close()
    finally:
        a.stop()
        b.stop()


def assert_eq(a, b, what=""):
    if a != b:
        raise AssertionError("%s: %r != %r" % (what, a, b))


TESTS = [(n[len("test_"):], f) for n, f in list(globals().items())
         if n.startswith("test_") and callable(f)]

if __name__ == "__main__":
    try:
        make_vault()
        rc = T.run_tap(TESTS, args.only)
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
    sys.exit(rc)
