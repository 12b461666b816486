#!/usr/bin/env python3
"""tokswitch-top against a live switch over loopback.

    top.py --build BUILD_DIR --source SOURCE_DIR --io uring|uv [NAME...]

The live view runs in a detached tmux session of a fixed size (its own
server socket in the temp dir): the test reads the screen with
capture-pane, scrapes /metrics itself around it, and checks that the
figures on the screen are the scrape's (exactly once the load stopped,
within the scrapes before and after while it runs), a resized window
cuts it; `q`, SIGTERM and Ctrl-C (send-keys) end it with the terminal as
it was. --once is checked on a held issuer (a queue of reversals of a
known depth, then the link down), and the errors: no endpoint, one that
is silent, answers too much, not 200 or not HTTP, a token the endpoint
wants, tokswitch top without tokswitch-top. Prints TAP.
"""
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import tswtest as T  # noqa: E402

args, TOKSWITCH, TOKVAULT, PROFILE, TMP = T.suite_setup("top")
TOP = os.environ["TSW_TOKSWITCH_TOP"]
ISSUER_SIM = os.environ["TSW_ISSUER_SIM"]
TOKBENCH = os.environ["TSW_TOKBENCH"]
VAULT = os.path.join(TMP, "vault")
KEY = os.path.join(TMP, "key")
TOKENS_CSV = os.path.join(TMP, "tokens.csv")
INTERVAL = "0.5"
COLS, ROWS = 120, 40

# issuer timeouts short enough to leave reversals within a test; SAF
# retries quick, so that the queue drains once the load stops
CONF = T.SWITCH_CONF + "[saf]\npoll_ms = 20\nretry_min_ms = 20\nretry_max_ms = 200\n"


def assert_eq(a, b, what=""):
    if a != b:
        raise AssertionError("%s: %r != %r" % (what, a, b))


def make_vault():
    T.run([TOKVAULT, "--vault", VAULT, "--key-file", KEY, "demo", "--count", "500",
           "--out", TOKENS_CSV])


def start_issuer_sim(log_path, *more):
    """issuer-sim on a free port: (process, its HOST:PORT)."""
    err = open(log_path, "wb")
    p = subprocess.Popen([ISSUER_SIM, "--listen", "127.0.0.1:0"] + list(more),
                         stdout=subprocess.PIPE, stderr=err)
    err.close()
    line = b""
    while not line.endswith(b"\n"):
        r, _, _ = select.select([p.stdout], [], [], 20)
        ch = os.read(p.stdout.fileno(), 1) if r else b""
        if not ch:
            p.kill()
            p.wait()
            raise RuntimeError("issuer-sim did not start: " + open(log_path).read()[-1000:])
        line += ch
    return p, re.search(r"issuer=(\S+)", line.decode()).group(1)


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout:
        proc.stdout.close()


def start_switch(d, issuer, extra_conf="", timeout_ms=200, vault=VAULT, key=KEY):
    conf = os.path.join(d, "tokswitch.conf")
    with open(conf, "w") as f:
        f.write(CONF % dict(timeout=timeout_ms, max_conns=64) + extra_conf)
    state = os.path.join(d, "state")
    os.mkdir(state, 0o700)
    sw = T.Switch(TOKSWITCH, ["-c", conf, "--vault", vault, "--key-file", key, "--state", state,
                              "--issuer", issuer, "--listen", "127.0.0.1:0",
                              "--metrics", "127.0.0.1:0", "--io", args.io],
                  os.path.join(d, "tokswitch.log"))
    sw.wait_ready()
    return sw


def close_switch(sw):
    rc = sw.stop()
    report = sw.sanitizer_report()
    if report:
        raise AssertionError("sanitizer: " + report)
    assert_eq(rc, 0, "tokswitch's exit after SIGTERM")


class Tmux:
    """A tmux server of the test's own (socket in the temp dir, no
    config) with one detached session of COLS x ROWS running command."""

    def __init__(self, d, command):
        self.tmux = shutil.which("tmux")
        if not self.tmux:
            raise T.Skip("tmux is not installed (tools/install-deps installs it)")
        self.sock = os.path.join(d, "tmux.sock")
        self.env = {k: v for k, v in os.environ.items() if k != "TMUX"}
        self.env["TERM"] = "xterm"
        self.cmd("new-session", "-d", "-x", str(COLS), "-y", str(ROWS), command)

    def cmd(self, *a):
        p = subprocess.run([self.tmux, "-S", self.sock, "-f", "/dev/null"] + list(a),
                           capture_output=True, text=True, timeout=10, env=self.env)
        if p.returncode != 0:
            raise RuntimeError("tmux %s: %s" % (a[0], p.stderr.strip()))
        return p.stdout

    def screen(self):
        return self.cmd("capture-pane", "-p")

    def flag(self, name):
        return self.cmd("display-message", "-p", "#{%s}" % name).strip()

    def kill(self):
        subprocess.run([self.tmux, "-S", self.sock, "kill-server"], capture_output=True,
                       timeout=10, env=self.env)


# --- what the screen says ---------------------------------------------------

def scrape_no(screen):
    m = re.search(r"^tokswitch-top  scrape (\d+)  ", screen, re.M)
    return int(m.group(1)) if m else 0


def words(screen, prefix):
    """The words of the line whose words start with prefix."""
    for line in screen.splitlines():
        if line.split()[:len(prefix.split())] == prefix.split():
            return line.split()
    raise AssertionError("no line %r on the screen:\n%s" % (prefix, screen))


def section(screen, header):
    """The lines after the one that starts with header, to a blank line."""
    lines = screen.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(header):
            out = []
            for l in lines[i + 1:]:
                if not l.strip():
                    break
                out.append(l.strip())
            return out
    raise AssertionError("no section %r on the screen:\n%s" % (header, screen))


def field(screen, pattern):
    m = re.search(pattern, screen, re.M)
    if not m:
        raise AssertionError("no %r on the screen:\n%s" % (pattern, screen))
    return m.groups()


def requests(body, rc=None):
    """Authorizations (0100, 0200) in a scrape, of one rc or all."""
    total = 0
    for m in re.finditer(r'^tokswitch_requests_total\{mti="(\d+)",rc="(\d+)"\} (\S+)$', body,
                         re.M):
        if m.group(1) in ("0100", "0200") and (rc is None or m.group(2) == rc):
            total += float(m.group(3))
    return total


def scraped(sw):
    code, body = sw.http("/metrics")
    assert_eq(code, 200, "/metrics")
    return body


def screen_after(tm, n, what):
    """The first screen whose scrape number is at least n."""
    return T.wait_for(lambda: (lambda s: s if scrape_no(s) >= n else None)(tm.screen()), 20,
                      what)


def check_under_load(tm, sw, sim_addr):
    # both scrapes of the screen between s0 and s2 (two screens on)
    n0 = scrape_no(screen_after(tm, 2, "a screen with rates"))
    s0 = scraped(sw)
    screen = screen_after(tm, n0 + 2, "two more screens")
    s2 = scraped(sw)
    g0, g2 = (lambda n: T.metric_value(s0, n)), (lambda n: T.metric_value(s2, n))
    _, _, rate, total = words(screen, "00 approved")
    assert requests(s0, "00") <= float(total) <= requests(s2, "00"), (total, screen)
    assert float(rate) > 0, "approvals per second under load:\n" + screen
    _, rate, total = words(screen, "all")
    assert requests(s0) <= float(total) <= requests(s2), (total, screen)
    assert float(rate) > 0, screen
    link = words(screen, "0 0 " + sim_addr)
    assert_eq(link[3:5], ["up", "2/2"], "link state and workers signed on")
    inflight, t_rate, t_total = field(screen, r"in flight (\S+)\s+timeouts (\S+) per s, (\S+) in all")
    assert g0("tokswitch_timeouts_total") <= float(t_total) <= g2("tokswitch_timeouts_total")
    p50, p99, seen = field(screen, r"issuer round trip\s+([\d.]+ [um]?s)\s+([\d.]+ [um]?s)"
                                   r"\s+(\d+)  last interval")
    rtt = "tokswitch_issuer_rtt_seconds_count"
    assert 0 < int(seen) <= g2(rtt) - g0(rtt), (seen, screen)
    field(screen, r"switch-added\s+[\d.]+ [um]?s\s+[\d.]+ [um]?s\s+\d+  last interval")
    return screen


REST_S = 1.0  # what "at rest" asks: nothing that moves moved for this long


def quiet(sw, last):
    """The scrape, once everything that moves (all but the endpoint's own
    counters and the queue's ages) stayed as it is for REST_S with
    nothing in flight and nothing queued (the load ended, the SAF queue
    drained); else None. last: [lines, since] of the previous call."""
    body = scraped(sw)
    keep = [l for l in body.splitlines() if not l.startswith(("#", "tokswitch_http_",
                                                              "tokswitch_state_saf_oldest"))]
    if keep != last[0]:
        last[0], last[1] = keep, time.monotonic()
        return None
    if time.monotonic() - last[1] >= REST_S and \
            T.metric_value(body, "tokswitch_inflight") == 0 and \
            T.metric_value(body, "tokswitch_state_saf_depth") == 0:
        return body
    return None


def check_quiet(tm, sw):
    last = [None, 0]
    body = T.wait_for(lambda: quiet(sw, last), 60, "the switch at rest")
    n = scrape_no(tm.screen())
    screen = screen_after(tm, n + 2, "two screens at rest")
    before = last[0]
    assert quiet(sw, last) is not None, "the switch moved again: %s" % (
        sorted(set(last[0]) ^ set(before)))
    g = lambda n: T.metric_value(body, n)  # noqa: E731
    assert_eq(words(screen, "00 approved")[2:], ["0.0", "%.0f" % requests(body, "00")],
              "approvals at rest")
    assert_eq(words(screen, "all")[1:], ["0.0", "%.0f" % requests(body)], "all at rest")
    assert_eq(field(screen, r"in flight (\S+)\s+timeouts (\S+) per s, (\S+) in all"),
              ("0", "0.0", "%.0f" % g("tokswitch_timeouts_total")), "issuer leg at rest")
    assert_eq(field(screen, r"SAF\s+queued (\S+) of (\S+)\s+in engines (\S+)\s+in flight (\S+)"),
              ("0", "%.0f" % g("tokswitch_state_saf_capacity"), "0", "0"), "SAF at rest")
    assert_eq(field(screen, r"^STATE WRITER\s+(\S+)\s+held (\S+)\s+commit errors (\S+)"),
              ("ok", "0", "%.0f" % g("tokswitch_state_commit_errors_total")), "state writer")
    assert_eq(words(screen, "issuer round trip")[3:], ["-", "-", "0", "last", "interval"],
              "no round trips at rest")
    assert_eq(section(screen, "LIMITS HIT"), ["none"], "no limit hit at rest")


def test_live_view_under_load_then_at_rest_then_q_restores_the_terminal():
    d = tempfile.mkdtemp(dir=TMP)
    sim, sim_addr = start_issuer_sim(os.path.join(d, "issuer-sim.log"), "--drop-pct", "1")
    sw = start_switch(d, sim_addr)
    bench = tm = None
    try:
        with open(os.path.join(d, "tokbench.log"), "wb") as log:
            bench = subprocess.Popen([TOKBENCH, "--target", sw.acq, "--tokens", TOKENS_CSV,
                                      "--connections", "2", "--depth", "2", "--duration", "120",
                                      "--warmup", "0", "--expect", "any", "--quiet"],
                                     stdout=log, stderr=log)
        stty = [os.path.join(d, "stty." + w) for w in ("before", "after")]
        tm = Tmux(d, "stty -g > %s; %s --metrics %s --interval %s; echo \"top exited $?\"; "
                     "stty -g > %s; read line" % (stty[0], TOP, sw.metrics, INTERVAL, stty[1]))
        T.wait_for(lambda: tm.flag("alternate_on") == "1", 20, "the view on the alternate screen")
        assert_eq(tm.flag("cursor_flag"), "0", "cursor hidden while the view runs")
        check_under_load(tm, sw, sim_addr)
        stop(bench)
        check_quiet(tm, sw)
        # a smaller window: each line cut before the last column (no
        # wrap) and the screen to its height (no scroll), so the header
        # stays on the first row screen after screen
        tm.cmd("resize-window", "-x", "40", "-y", "20")
        n = scrape_no(tm.screen())
        screen = screen_after(tm, n + 2, "two screens at 40 x 20")
        lines = screen.splitlines()
        assert lines[0].startswith("tokswitch-top  "), screen
        assert_eq(len(lines), 20, "rows at 40 x 20")
        assert max(len(l) for l in lines) <= 39, "a line not cut:\n" + screen
        auth = lines.index("AUTHORIZATIONS (0100, 0200)  rc")
        assert lines[auth + 1].startswith("  00 approved"), "wrapped:\n" + screen
        tm.cmd("send-keys", "q")
        screen = T.wait_for(lambda: (lambda s: s if "top exited" in s else None)(tm.screen()),
                            20, "tokswitch-top to exit on q")
        assert "top exited 0" in screen, screen
        T.wait_for(lambda: os.path.exists(stty[1]) and open(stty[1]).read(), 10, "stty after")
        assert_eq(open(stty[1]).read(), open(stty[0]).read(), "terminal settings after q")
        assert_eq((tm.flag("alternate_on"), tm.flag("cursor_flag")), ("0", "1"),
                  "normal screen and cursor back")
        assert "AUTHORIZATIONS" not in screen, "the view left on the normal screen:\n" + screen
    finally:
        if tm:
            tm.kill()
        if bench:
            stop(bench)
        try:
            close_switch(sw)
        finally:
            stop(sim)


def test_sigterm_and_ctrl_c_restore_the_terminal():
    d = tempfile.mkdtemp(dir=TMP)
    sim, sim_addr = start_issuer_sim(os.path.join(d, "issuer-sim.log"))
    sw = start_switch(d, sim_addr)
    tm = None
    try:
        stty = [os.path.join(d, "stty." + w) for w in ("before", "term", "int")]
        pid = os.path.join(d, "top.pid")
        top = "%s --metrics %s --interval %s" % (TOP, sw.metrics, INTERVAL)
        # first the inner shell writes its pid and becomes tokswitch-top
        # (stopped by SIGTERM), then tokswitch-top again (stopped by
        # Ctrl-C); the pane's shell ignores SIGINT, the view catches it
        tm = Tmux(d, "trap '' INT; stty -g > %s; sh -c 'echo $$ > %s; exec %s'; "
                     "echo \"top exited $?\"; stty -g > %s; %s; echo \"top again exited $?\"; "
                     "stty -g > %s; read line" % (stty[0], pid, top, stty[1], top, stty[2]))
        T.wait_for(lambda: scrape_no(tm.screen()) >= 1, 20, "the view")
        os.kill(int(open(pid).read()), signal.SIGTERM)
        T.wait_for(lambda: os.path.exists(stty[1]) and open(stty[1]).read(), 20,
                   "tokswitch-top to exit on SIGTERM")
        assert_eq(open(stty[1]).read(), open(stty[0]).read(), "terminal settings after SIGTERM")
        T.wait_for(lambda: tm.flag("alternate_on") == "1" and scrape_no(tm.screen()) >= 1, 20,
                   "the view again")
        tm.cmd("send-keys", "C-c")
        screen = T.wait_for(lambda: (lambda s: s if "top again exited" in s else None)(
            tm.screen()), 20, "tokswitch-top to exit on Ctrl-C")
        assert "top exited 0" in screen and "top again exited 0" in screen, screen
        T.wait_for(lambda: os.path.exists(stty[2]) and open(stty[2]).read(), 10, "stty after")
        assert_eq(open(stty[2]).read(), open(stty[0]).read(), "terminal settings after Ctrl-C")
        assert_eq((tm.flag("alternate_on"), tm.flag("cursor_flag")), ("0", "1"),
                  "normal screen and cursor back")
    finally:
        if tm:
            tm.kill()
        try:
            close_switch(sw)
        finally:
            stop(sim)


def once(metrics, *more, env=None):
    return subprocess.run([TOP, "--metrics", metrics, "--interval", "0.2", "--once"] +
                          list(more), capture_output=True, text=True, timeout=30, env=env)


def test_once_prints_one_plain_screen_of_the_scrape():
    """A held issuer: each request times out (91) and leaves a reversal
    that waits in the queue, so the depth is exact; then the issuer goes
    away and its link shows down."""
    d = tempfile.mkdtemp(dir=TMP)
    vault, key = os.path.join(d, "vault"), os.path.join(d, "key")
    token = T.luhn_complete("400000000000001")
    T.make_vault(TOKVAULT, vault, key, [dict(token=token, pan=T.luhn_complete("541300000000001"))],
                 "3012", os.path.join(d, "tokens.csv"))
    issuer = T.FakeIssuer(PROFILE)
    issuer.hold()
    sw = start_switch(d, issuer.addr, vault=vault, key=key)
    try:
        c = T.Conn(sw.acq, PROFILE)
        for stan in range(1, 4):
            c.request(*T.auth_msg(token, stan))
            assert_eq(c.answer()[1][39], b"91", "held issuer: 91")
        c.close()
        T.wait_for(lambda: sw.metric("tokswitch_state_saf_depth") == 3, 20, "3 reversals queued")
        p = once(sw.metrics)
        body = scraped(sw)
        assert_eq((p.returncode, p.stderr), (0, ""), "--once")
        assert "\x1b" not in p.stdout, "an escape in --once output"
        out = p.stdout
        assert_eq(scrape_no(out), 2, "--once: two scrapes")
        assert "rates over the last 0.2" in out, out
        assert_eq(field(out, r"SAF\s+queued (\S+) of (\S+)"),
                  ("3", "%.0f" % T.metric_value(body, "tokswitch_state_saf_capacity")), "SAF")
        age = float(field(out, r"oldest reversal ([\d.]+) s")[0])
        assert 0 <= age <= T.metric_value(body, 'tokswitch_state_saf_oldest_age_seconds'
                                                '{kind="reversal"}') + 0.1, (age, out)
        assert_eq(words(out, "91 issuer unavailable")[4:], ["3"], "the 91s")
        assert_eq(words(out, "0 0 " + issuer.addr)[3:5], ["up", "2/2"], "link up")
        issuer.stop()
        T.wait_for(lambda: sw.metric('tokswitch_issuer_links_signed_on{link="0",issuer="0",'
                                     'host="%s"}' % issuer.addr) == 0, 20, "link down")
        out = once(sw.metrics).stdout
        assert_eq(words(out, "0 0 " + issuer.addr)[3:5], ["DOWN", "0/2"], "link down")
    finally:
        issuer.stop()
        close_switch(sw)


def test_unreachable_endpoint_exits_1_saying_so():
    port = T.free_port()
    for mode in (["--once"], []):
        p = subprocess.run([TOP, "--metrics", "127.0.0.1:%d" % port] + mode,
                           capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        assert_eq((p.returncode, p.stdout, p.stderr),
                  (1, "", "tokswitch-top: cannot read /metrics: 127.0.0.1:%d: Connection refused\n"
                   % port), "no endpoint " + " ".join(mode))
    p = subprocess.run([TOP, "--metrics", "nohostport", "--once"], capture_output=True,
                       text=True, timeout=30)
    assert_eq((p.returncode, p.stderr), (1, "tokswitch-top: cannot read /metrics: nohostport: "
                                            "not HOST:PORT, or the answer is not HTTP\n"), "bad")
    p = subprocess.run([TOP, "--interval", "0", "--once"], capture_output=True, text=True,
                       timeout=30)
    assert_eq(p.returncode, 2, "--interval 0")


def test_default_endpoint_is_the_switch_default():
    with open(os.path.join(args.source, "config", "tokswitch.conf")) as f:
        conf = f.read()
    server = conf[conf.index("\n[server]\n"):]
    default = re.search(r"^metrics = (\S+)$", server[:server.index("\n[", 1)], re.M).group(1)
    p = subprocess.run([TOP, "--help"], capture_output=True, text=True, timeout=30)
    assert_eq(p.returncode, 0, "--help")
    assert "--metrics HOST:PORT  the switch's metrics endpoint (default %s)" % default in \
        p.stdout, p.stdout


def test_token_the_endpoint_wants_sent_from_token_file():
    d = tempfile.mkdtemp(dir=TMP)
    tok = os.path.join(d, "metrics.token")
    fd = os.open(tok, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"s3cr3t-T0ken\n")
    os.close(fd)
    sim, sim_addr = start_issuer_sim(os.path.join(d, "issuer-sim.log"))
    sw = start_switch(d, sim_addr, extra_conf="[metrics]\ntoken_file = %s\n" % tok)
    try:
        p = once(sw.metrics)
        assert_eq((p.returncode, p.stdout, p.stderr),
                  (1, "", "tokswitch-top: cannot read /metrics: %s: HTTP 401: the endpoint "
                   "wants a token (--token-file)\n" % sw.metrics), "without the token")
        p = once(sw.metrics, "--token-file", tok)
        assert_eq(p.returncode, 0, p.stderr)
        assert_eq(words(p.stdout, "0 0 " + sim_addr)[3:5], ["up", "2/2"], "with the token")
        assert "s3cr3t" not in p.stdout + p.stderr, "the token printed"
    finally:
        try:
            close_switch(sw)
        finally:
            stop(sim)


def test_tokswitch_top_runs_tokswitch_top():
    d = tempfile.mkdtemp(dir=TMP)
    sim, sim_addr = start_issuer_sim(os.path.join(d, "issuer-sim.log"))
    sw = start_switch(d, sim_addr)
    try:
        # the build puts them in different folders: PATH finds it
        env = dict(os.environ, PATH=os.path.dirname(TOP) + os.pathsep + os.environ["PATH"])
        p = subprocess.run([TOKSWITCH, "top", "--metrics", sw.metrics, "--interval", "0.2",
                            "--once"], capture_output=True, text=True, timeout=30, env=env)
        assert_eq((p.returncode, p.stderr), (0, ""), "tokswitch top --once")
        assert_eq(words(p.stdout, "0 0 " + sim_addr)[3:5], ["up", "2/2"], "tokswitch top")
        # a host name, resolved (each of its addresses tried in turn)
        p = once("localhost:" + sw.metrics.rsplit(":", 1)[1])
        assert_eq((p.returncode, p.stderr), (0, ""), "--metrics localhost:PORT")
        env = dict(os.environ, PATH="/nonexistent")
        p = subprocess.run([TOKSWITCH, "top", "--once"], capture_output=True, text=True,
                           timeout=30, env=env)
        assert_eq(p.returncode, 1, "tokswitch top without tokswitch-top")
        assert "cannot run tokswitch-top" in p.stderr, p.stderr
    finally:
        try:
            close_switch(sw)
        finally:
            stop(sim)


class OneAnswer:
    """A loopback HTTP server of one connection at a time that sends
    answer (bytes) to whatever comes, or nothing at all (None: it holds
    the connection open until close())."""

    def __init__(self, answer):
        import socket
        import threading
        self.answer = answer
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(4)
        self.addr = "127.0.0.1:%d" % self.ls.getsockname()[1]
        self.held = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                s, _ = self.ls.accept()
            except OSError:
                return
            if self.answer is None:
                self.held.append(s)
                continue
            try:
                s.recv(65536)
                s.sendall(self.answer)
            except OSError:
                pass
            s.close()

    def close(self):
        import socket
        try:
            self.ls.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.ls.close()
        self.thread.join(10)
        for s in self.held:
            s.close()


def test_answer_too_large_silent_or_not_200_exits_1_saying_so():
    head = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n"
    most = 4 << 20  # TOP_HTTP_RESPONSE_MAX_BYTES
    cases = [
        (head + b"x 1\n" * ((most - len(head)) // 4), 0, None),
        (head + b"x 1\n" * ((most - len(head)) // 4) + b"#" * 4, 1,
         "%s: answer above 4194304 bytes"),
        (None, 1, "%s: no whole answer within 2000 ms"),
        (b"HTTP/1.0 503 Service Unavailable\r\n\r\nno", 1, "%s: HTTP 503"),
        (b"SSH-2.0-OpenSSH\r\n", 1, "%s: not HOST:PORT, or the answer is not HTTP"),
    ]
    for answer, rc, why in cases:
        srv = OneAnswer(answer)
        try:
            p = once(srv.addr)
        finally:
            srv.close()
        what = "answer of %s bytes" % (len(answer) if answer else None)
        assert_eq(p.returncode, rc, what + ": " + p.stderr)
        if why:
            assert_eq((p.stdout, p.stderr),
                      ("", "tokswitch-top: cannot read /metrics: " + why % srv.addr + "\n"), what)


TESTS = [(n[5:], f) for n, f in sorted(globals().items()) if n.startswith("test_")]

if __name__ == "__main__":
    rc = 1
    try:
        make_vault()
        rc = T.run_tap(TESTS, args.only)
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
    sys.exit(rc)
