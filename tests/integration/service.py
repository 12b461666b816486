#!/usr/bin/env python3
"""tokswitch as a service: what it tells systemd (the notify protocol, on a
datagram socket the test binds as systemd would), the unit file, the man
pages and the Debian package.

- READY=1 only once every worker listens and its issuer signed on (STATUS=
  says what it waits for until then); WATCHDOG=1 every half WATCHDOG_USEC;
  RELOADING=1 then READY=1 around a SIGHUP; STOPPING=1 at SIGTERM.
- Without NOTIFY_SOCKET it runs as before (every other suite).
- tools/package builds the .deb; extracted into a scratch root its
  programs run from the installed paths, its unit passes systemd-analyze
  verify and its exposure stays low, its man pages lint clean.
Prints TAP.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import tswtest as T  # noqa: E402

args, TOKSWITCH, TOKVAULT, PROFILE, TMP = T.suite_setup("service")
VAULT = os.path.join(TMP, "vault")
KEY = os.path.join(TMP, "key")
TOKEN = T.luhn_complete("400000000000031")
PAN = T.luhn_complete("541300000000031")
WATCHDOG_USEC = 400000  # pings every 200 ms
# the unit's sandbox may cost at most this much exposure
# (systemd-analyze security: 0 best, 10 worst; ~1.2 as shipped)
MAX_EXPOSURE = 2.0


def assert_eq(a, b, what):
    if a != b:
        raise AssertionError("%s: %r != %r" % (what, a, b))


class Notify:
    """The service manager's end of NOTIFY_SOCKET: every datagram, in order."""

    def __init__(self, d):
        self.path = os.path.join(d, "notify.sock")
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.s.bind(self.path)
        self.s.setblocking(False)
        self.msgs = []

    def _drain(self):
        while True:
            try:
                self.msgs.append(self.s.recv(4096).decode())
            except BlockingIOError:
                return

    def has(self, line):
        self._drain()
        return [m for m in self.msgs if line in m.split("\n")]

    def wait(self, line, timeout, what):
        T.wait_for(lambda: self.has(line), timeout, what)

    def index(self, line, after=-1):
        """Index of the first message after `after` with line, or -1."""
        self._drain()
        for i in range(after + 1, len(self.msgs)):
            if line in self.msgs[i].split("\n"):
                return i
        return -1

    def close(self):
        self.s.close()


def start(d, notify, issuer_port, extra_env=None):
    env = dict(os.environ, NOTIFY_SOCKET=notify.path, WATCHDOG_USEC=str(WATCHDOG_USEC))
    env.pop("WATCHDOG_PID", None)
    if extra_env:
        env.update(extra_env)
    state = os.path.join(d, "state")
    os.makedirs(state, mode=0o700, exist_ok=True)
    conf = os.path.join(d, "tokswitch.conf")
    with open(conf, "w") as f:
        f.write("[issuer]\nreconnect_min_ms = 20\nreconnect_max_ms = 100\n")
    argv = ["-c", conf, "--vault", VAULT, "--key-file", KEY, "--state", state,
            "--issuer", "127.0.0.1:%d" % issuer_port, "--listen", "127.0.0.1:0",
            "--metrics", "127.0.0.1:0", "--io", args.io, "--workers", "2"]
    return T.Switch(TOKSWITCH, argv, os.path.join(d, "stderr.log"), env=env)


def test_ready_only_once_signed_on_then_watchdog_reload_and_stop():
    d = tempfile.mkdtemp(dir=TMP)
    notify = Notify(d)
    port = T.free_port()
    sw = start(d, notify, port)
    issuer = None
    try:
        notify.wait("STATUS=waiting for every worker to listen and its issuers to sign on", 5,
                    "the waiting status")
        # listening, but no issuer: not ready (bounded wait for a READY=1
        # that must not come)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            assert not notify.has("READY=1"), "READY=1 before the issuer signed on"
            time.sleep(0.05)
        assert_eq(sw.http("/readyz")[0], 503, "/readyz agrees")

        issuer = T.FakeIssuer(PROFILE, port=port)
        notify.wait("READY=1", 10, "READY=1 after the sign-on")
        assert_eq(sw.http("/readyz")[0], 200, "ready when systemd is told so")
        ready = notify.index("READY=1")
        assert "STATUS=serving" in notify.msgs[ready].split("\n"), notify.msgs[ready]

        # the watchdog is fed every half period while the workers answer
        t0 = time.monotonic()
        T.wait_for(lambda: len(notify.has("WATCHDOG=1")) >= 5, 10, "five WATCHDOG=1")
        took = time.monotonic() - t0
        assert took < 5 * WATCHDOG_USEC / 1e6, "five pings took %.2f s" % took

        # a reload: RELOADING=1, then READY=1 again
        sw.signal(signal.SIGHUP)
        notify.wait("RELOADING=1", 5, "RELOADING=1")
        rel = notify.index("RELOADING=1")
        assert re.search(r"^MONOTONIC_USEC=\d+$", notify.msgs[rel], re.M), notify.msgs[rel]
        T.wait_for(lambda: notify.index("READY=1", rel) > rel, 5, "READY=1 after the reload")
        T.wait_for(lambda: T.log_events(sw.log(), "config_reloaded"), 5, "the reload itself")

        sw.signal(signal.SIGTERM)
        notify.wait("STOPPING=1", 5, "STOPPING=1 at the drain")
        assert_eq(sw.wait_exit(), 0, "exit status after the drain")
        pings = len(notify.has("WATCHDOG=1"))
        stop = notify.index("STOPPING=1")
        assert notify.index("WATCHDOG=1", stop) < 0, "the watchdog is fed after STOPPING=1"
        assert pings >= 5
        assert not T.log_leaks(sw.log().encode(), [PAN]), "PAN in the log"
    finally:
        sw.kill()
        if issuer:
            issuer.stop()
        notify.close()


def test_without_watchdog_no_pings():
    d = tempfile.mkdtemp(dir=TMP)
    notify = Notify(d)
    issuer = T.FakeIssuer(PROFILE)
    sw = start(d, notify, issuer.port, extra_env={"WATCHDOG_USEC": "0"})
    try:
        notify.wait("READY=1", 10, "READY=1")
        sw.wait_ready()
        # bounded: three watchdog periods of the other test
        deadline = time.monotonic() + 3 * WATCHDOG_USEC / 1e6
        while time.monotonic() < deadline:
            assert not notify.has("WATCHDOG=1"), "WATCHDOG=1 without WatchdogSec"
            time.sleep(0.05)
        assert_eq(sw.stop(), 0, "exit status")
        assert notify.has("STOPPING=1")
    finally:
        sw.kill()
        issuer.stop()
        notify.close()
    p = subprocess.run([TOKSWITCH, "--version"], capture_output=True, text=True, timeout=10)
    assert_eq(p.returncode, 0, "--version")
    assert re.match(r"^tokswitch \d+\.\d+\.\d+ ", p.stdout), p.stdout


def package():
    """Builds the .deb once (tools/package) and extracts it; (deb, root)."""
    if not hasattr(package, "done"):
        out = os.path.join(TMP, "package")
        p = subprocess.run([os.path.join(args.source, "tools", "package"), out],
                           capture_output=True, text=True, timeout=900)
        if p.returncode != 0:
            raise AssertionError("tools/package failed: " + p.stderr[-3000:])
        deb = p.stdout.strip().splitlines()[-1]
        root = os.path.join(TMP, "root")
        subprocess.run(["dpkg-deb", "-x", deb, root], check=True, timeout=60)
        package.done = (deb, root)
    return package.done


def test_package_installs_and_its_programs_run_from_the_installed_paths():
    deb, root = package()
    assert os.path.basename(deb).startswith("tokswitch_") and deb.endswith(".deb"), deb
    info = subprocess.run(["dpkg-deb", "-f", deb, "Package", "Version", "Depends"],
                          capture_output=True, text=True, check=True).stdout
    assert "Package: tokswitch" in info and "libsystemd0" in info and "liblmdb0" in info, info
    p = subprocess.run([os.path.join(root, "usr/bin/tokswitch"), "--version"],
                       capture_output=True, text=True, timeout=10)
    assert_eq(p.returncode, 0, "installed tokswitch --version")
    assert p.stdout.startswith("tokswitch "), p.stdout
    p = subprocess.run([os.path.join(root, "usr/bin/tokvault"), "--help"],
                       capture_output=True, text=True, timeout=10)
    assert_eq(p.returncode, 0, "installed tokvault --help")
    assert "usage: tokvault" in p.stdout + p.stderr
    for prog in ("tokbench", "issuer-sim", "tokswitch-top"):
        assert os.access(os.path.join(root, "usr/bin", prog), os.X_OK), prog
    for spec in ("default.spec", "ascii4.spec"):
        assert os.path.isfile(os.path.join(root, "usr/share/tokswitch", spec)), spec
    # the dashboard and the alerts, as in the source tree
    for installed, src in (("grafana/tokswitch.json", "contrib/grafana/tokswitch.json"),
                           ("prometheus/alerts.yml", "contrib/prometheus/alerts.yml")):
        with open(os.path.join(root, "usr/share/tokswitch", installed), "rb") as f, \
                open(os.path.join(args.source, src), "rb") as g:
            assert f.read() == g.read(), installed
    conf = open(os.path.join(root, "etc/tokswitch/tokswitch.conf")).read()
    for line in ("state = /var/lib/tokswitch/state", "vault = /var/lib/tokswitch/vault",
                 "key_file = /etc/tokswitch/keys/vault.key"):
        assert re.search("^" + re.escape(line) + "$", conf, re.M), line
    # the packaged configuration is one the switch accepts as far as
    # parsing goes (the paths do not exist here: it stops at the vault)
    p = subprocess.run([os.path.join(root, "usr/bin/tokswitch"), "-c",
                        os.path.join(root, "etc/tokswitch/tokswitch.conf")],
                       capture_output=True, text=True, timeout=20)
    assert "bad configuration" not in p.stderr, p.stderr[-2000:]
    ctl = subprocess.run(["dpkg-deb", "-e", deb, os.path.join(TMP, "DEBIAN")], check=True)
    assert_eq(ctl.returncode, 0, "control files")
    postinst = os.path.join(TMP, "DEBIAN", "postinst")
    assert_eq(subprocess.run(["sh", "-n", postinst]).returncode, 0, "postinst syntax")
    assert "adduser --system" in open(postinst).read()
    assert_eq(open(os.path.join(TMP, "DEBIAN", "conffiles")).read().split(),
              ["/etc/tokswitch/tokswitch.conf"], "conffiles")


def test_unit_verifies_and_its_sandbox_exposure_is_low():
    _, root = package()
    unit = os.path.join(root, "usr/lib/systemd/system/tokswitch.service")
    text = open(unit).read()
    for want in ("Type=notify", "WatchdogSec=", "ExecReload=/bin/kill -HUP $MAINPID",
                 "StateDirectory=tokswitch", "ProtectSystem=strict", "NoNewPrivileges=yes",
                 "MemoryDenyWriteExecute=yes", "LimitCORE=0", "LimitMEMLOCK=",
                 "SystemCallFilter=@system-service io_uring_setup io_uring_enter "
                 "io_uring_register"):
        assert want in text, want
    # verify checks that ExecStart exists and that the Documentation= man
    # pages resolve: point both at the scratch root
    d = tempfile.mkdtemp(dir=TMP)
    local = os.path.join(d, "tokswitch.service")
    with open(local, "w") as f:
        f.write(text.replace("/usr/bin/tokswitch", os.path.join(root, "usr/bin/tokswitch")))
    env = dict(os.environ, MANPATH=os.path.join(root, "usr/share/man"))
    p = subprocess.run(["systemd-analyze", "verify", local], capture_output=True, text=True,
                       env=env, timeout=60)
    assert_eq((p.returncode, p.stderr.strip()), (0, ""), "systemd-analyze verify")
    p = subprocess.run(["systemd-analyze", "security", "--offline=yes", local],
                       capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for \S+: ([\d.]+)", p.stdout + p.stderr)
    assert m, p.stdout[-1000:] + p.stderr[-1000:]
    exposure = float(m.group(1))
    print("# systemd-analyze security exposure %.1f" % exposure, flush=True)
    assert exposure <= MAX_EXPOSURE, "exposure %.1f" % exposure


def test_man_pages_lint_clean():
    _, root = package()
    pages = []
    for sec in ("man1", "man5", "man8"):
        for name in sorted(os.listdir(os.path.join(root, "usr/share/man", sec))):
            pages.append(os.path.join(root, "usr/share/man", sec, name))
    names = sorted(os.path.basename(p) for p in pages)
    assert_eq(names, ["issuer-sim.1", "tokbench.1", "tokswitch-top.1", "tokswitch.8",
                      "tokswitch.conf.5", "tokvault.8"], "man pages")
    for page in pages:
        p = subprocess.run(["mandoc", "-T", "lint", "-W", "warning", page],
                           capture_output=True, text=True, timeout=30)
        assert_eq((p.returncode, p.stdout + p.stderr), (0, ""), "mandoc lint " + page)


def main():
    T.make_vault(TOKVAULT, VAULT, KEY, [dict(token=TOKEN, pan=PAN)], "3012",
                 os.path.join(TMP, "tokens.csv"))
    try:
        return T.run_tap([
            ("ready_only_once_signed_on_then_watchdog_reload_and_stop",
             test_ready_only_once_signed_on_then_watchdog_reload_and_stop),
            ("without_watchdog_no_pings", test_without_watchdog_no_pings),
            ("package_installs_and_its_programs_run_from_the_installed_paths",
             test_package_installs_and_its_programs_run_from_the_installed_paths),
            ("unit_verifies_and_its_sandbox_exposure_is_low",
             test_unit_verifies_and_its_sandbox_exposure_is_low),
            ("man_pages_lint_clean", test_man_pages_lint_clean),
        ], args.only)
    finally:
        shutil.rmtree(TMP, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
