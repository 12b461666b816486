"""Helpers for the end-to-end tests of tokswitch: an ISO 8583 codec driven
by a field-spec profile (config/*.spec), a test double issuer that records
what it receives and answers on command, process helpers that wait on
conditions with deadlines (never a bare sleep), and a tiny TAP runner.
"""
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback


# --- codec -----------------------------------------------------------------

class Profile:
    """Field table and length header (bin2 or ascii4) of a config/*.spec
    file with a binary bitmap."""

    def __init__(self, path):
        self.fields = {}
        self.header = "bin2"
        for line in open(path):
            line = line.split("#", 1)[0].strip()
            parts = line.split()
            if len(parts) == 2 and parts[0] == "header":
                self.header = parts[1]
            if len(parts) < 4 or not parts[0].isdigit():
                continue
            num, typ, kind, size = int(parts[0]), parts[1], parts[2], int(parts[3])
            self.fields[num] = (typ, kind, size)


def _enc_field(spec, value):
    typ, kind, size = spec
    raw = value if isinstance(value, bytes) else str(value).encode()
    if kind == "fixed":
        if len(raw) != size:
            raise ValueError("fixed field length %d != %d" % (len(raw), size))
        return raw
    width = 2 if kind == "LL" else 3
    return ("%0*d" % (width, len(raw))).encode() + raw


def frame(profile, body):
    """body with the profile's length header in front."""
    if profile.header == "ascii4":
        if len(body) > 9999:
            raise ValueError("an ascii4 header cannot say %d" % len(body))
        return b"%04d" % len(body) + body
    return struct.pack(">H", len(body)) + body


def split_frame(profile, buf):
    """(body, rest) of the first whole frame of buf, (None, buf) when it is
    not all there yet. Raises ValueError on a header that is not one."""
    hs = 4 if profile.header == "ascii4" else 2
    if len(buf) < hs:
        return None, buf
    if hs == 4:
        if not buf[:4].isdigit():
            raise ValueError("ascii4 header is not 4 digits")
        ln = int(buf[:4])
    else:
        ln = struct.unpack(">H", buf[:2])[0]
    if len(buf) < hs + ln:
        return None, buf
    return buf[hs:hs + ln], buf[hs + ln:]


def encode_body(profile, mti, fields):
    """mti: 4 chars; fields: {num: str|bytes}. Returns the message body."""
    nums = sorted(fields)
    bitmap = [0, 0]
    if any(n > 64 for n in nums):
        bitmap[0] |= 1 << 63
    for n in nums:
        bitmap[(n - 1) // 64] |= 1 << (63 - (n - 1) % 64)
    body = mti.encode() + struct.pack(">Q", bitmap[0])
    if bitmap[0] >> 63:
        body += struct.pack(">Q", bitmap[1])
    for n in nums:
        body += _enc_field(profile.fields[n], fields[n])
    return body


def encode(profile, mti, fields):
    """mti: 4 chars; fields: {num: str|bytes}. Returns a framed message."""
    return frame(profile, encode_body(profile, mti, fields))


def decode(profile, body):
    """body without the length header -> (mti, {num: bytes})."""
    mti = body[:4].decode()
    bm = [struct.unpack(">Q", body[4:12])[0], 0]
    off = 12
    if bm[0] >> 63:
        bm[1] = struct.unpack(">Q", body[12:20])[0]
        off = 20
    out = {}
    for n in range(2, 129):
        if not (bm[(n - 1) // 64] >> (63 - (n - 1) % 64)) & 1:
            continue
        typ, kind, size = profile.fields[n]
        if kind == "fixed":
            ln = size
        else:
            width = 2 if kind == "LL" else 3
            ln = int(body[off:off + width])
            off += width
        out[n] = body[off:off + ln]
        off += ln
    if off != len(body):
        raise ValueError("trailing bytes")
    return mti, out


def de48(subs):
    """{tag: value} -> DE48 text (2-digit tag, 2-digit length, value)."""
    return "".join("%02d%02d%s" % (t, len(v), v) for t, v in sorted(subs.items()))


def de48_parse(raw):
    s, out = raw.decode(), {}
    while s:
        t, ln = int(s[:2]), int(s[2:4])
        out[t] = s[4:4 + ln]
        s = s[4 + ln:]
    return out


def luhn_complete(prefix_digits):
    """Appends the Luhn check digit."""
    total = 0
    for i, ch in enumerate(reversed(prefix_digits)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return prefix_digits + str((10 - total % 10) % 10)


class Conn:
    """A blocking acquirer (or issuer) connection with frame reads."""

    def __init__(self, addr, profile, timeout=10.0):
        host, port = addr.rsplit(":", 1)
        self.s = socket.create_connection((host, int(port)), timeout=timeout)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.p = profile
        self.buf = b""
        self.raw = b""  # every byte received, for leak scans

    def send(self, data):
        self.s.sendall(data)

    def request(self, mti, fields):
        self.send(encode(self.p, mti, fields))

    def read_frame(self, timeout=10.0):
        """Returns the body of the next frame, or None on EOF."""
        deadline = time.monotonic() + timeout
        while True:
            body, self.buf = split_frame(self.p, self.buf)
            if body is not None:
                if not body:
                    continue
                return body
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no frame within %.1f s" % timeout)
            self.s.settimeout(left)
            try:
                chunk = self.s.recv(65536)
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            self.buf += chunk
            self.raw += chunk

    def answer(self, timeout=10.0):
        body = self.read_frame(timeout)
        if body is None:
            raise EOFError("connection closed")
        return decode(self.p, body)

    def closed_by_peer(self, timeout=5.0):
        """True when the peer closes (EOF or reset) within timeout."""
        try:
            return self.read_frame(timeout) is None
        except TimeoutError:
            return False

    def close(self):
        self.s.close()


# --- suites ------------------------------------------------------------------

def load_test_env(build):
    """Puts the test environment tests/meson.build defines (the built
    programs' paths TSW_TOKSWITCH, TSW_TOKVAULT, ..., the sanitizer options)
    into os.environ, from the test-env file it writes into the build's
    tests/ folder; a variable meson test already set is left as it is."""
    path = os.path.join(build, "tests", "test-env")
    with open(path) as f:
        for line in f:
            name, sep, value = line.rstrip("\n").partition("=")
            if sep:
                os.environ.setdefault(name, value)


def suite_setup(name):
    """The command line every integration suite takes (--build --source
    --io uring|uv [NAME...]): returns (args, tokswitch, tokvault, the
    default profile, a new temp dir)."""
    import argparse
    import tempfile
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--io", required=True, choices=["uring", "uv"])
    ap.add_argument("only", nargs="*")
    args = ap.parse_args()
    load_test_env(args.build)
    return (args, os.environ["TSW_TOKSWITCH"], os.environ["TSW_TOKVAULT"],
            Profile(os.path.join(args.source, "config", "default.spec")),
            tempfile.mkdtemp(prefix="tsw-%s-%s-" % (name, args.io)))


# --- test data ---------------------------------------------------------------

def run(cmd, check=True, timeout=60):
    """Runs cmd to completion (at most timeout s: raises then); raises with
    its stderr when check and it fails."""
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(cmd), p.returncode, p.stderr))
    return p


# a switch config for tests: two workers, fast issuer reconnects, no echo
# (% timeout and max_conns; more sections may follow)
SWITCH_CONF = """[server]
workers = 2
drain_timeout_ms = 5000
[issuer]
timeout_ms = %(timeout)d
reconnect_min_ms = 20
reconnect_max_ms = 200
echo_interval_ms = 60000
[limits]
max_conns = %(max_conns)d
"""


VAULT_COLUMNS = ["token", "pan", "pan_expiry", "token_expiry", "status", "trid", "pos_modes",
                 "merchant_ids", "max_uses", "amount_limit", "device_required"]


def make_vault(tokvault, vault, key, tokens, token_expiry, csv_path, token_bin="4000",
               columns=VAULT_COLUMNS):
    """A new vault holding tokens (dicts with token, pan and any other of
    columns; active, PAN expiry 2912 unless they say otherwise)."""
    run([tokvault, "--vault", vault, "--key-file", key, "init", "--token-bin", token_bin])
    with open(csv_path, "w") as f:
        f.write(",".join(columns) + "\n")
        for t in tokens:
            row = dict(pan_expiry="2912", token_expiry=token_expiry, status="active")
            row.update(t)
            f.write(",".join(str(row.get(c, "")) for c in columns) + "\n")
    run([tokvault, "--vault", vault, "--key-file", key, "import", csv_path])


def auth_msg(token, stan, amount="000000001000", mti="0100", expiry="3012", extra=None,
             de7="1123120000"):
    """(mti, fields) of an authorization from the acquirer side; expiry
    None leaves DE14 out."""
    f = {2: token, 3: "000000", 4: amount, 7: de7, 11: "%06d" % stan, 14: expiry,
         22: "071", 37: "RRN%09d" % stan, 41: "TERM0001", 42: "MERCHANT0000001", 49: "840"}
    if expiry is None:
        del f[14]
    if extra:
        f.update(extra)
    return mti, f


# --- the test double issuer ------------------------------------------------

class FakeIssuer:
    """Answers 0800 with 0810 00, authorizations with DE39 by rule (amount
    ending in 51 -> 51, else 00), echoing DE2 (the PAN, as real issuers do)
    and DE11. Records every request. hold() keeps answers until release()."""

    def __init__(self, profile, port=0):
        self.p = profile
        self.lock = threading.Condition()
        self.requests = []    # (mti, fields) of every non-0800 request
        self.frames = []      # ... and its body as it came
        self.bad_frames = []  # bodies that did not decode (a broken header: the rest)
        self.signons = 0
        self.held = []        # (conn, frame) waiting for release
        self.holding = False
        self.signon_rc = "00"  # DE39 of the 0810 to a sign-on (0800 DE70 001)
        self.answer_extra = {}  # fields added to every authorization answer
        self.reverse = False
        self.conns = []
        self.serving = set()  # sockets whose _serve thread still runs
        self.stopped = False
        self.draining = False  # stop(drain=True): read and record, answer nothing
        self.ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", port))
        self.ls.listen(64)
        self.port = self.ls.getsockname()[1]
        self.addr = "127.0.0.1:%d" % self.port
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                s, _ = self.ls.accept()
            except OSError:
                return
            with self.lock:
                if self.stopped:
                    s.close()
                    return
                self.conns.append(s)
                self.serving.add(s)
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def _answer_for(self, mti, f):
        if mti == "0800":
            rc = self.signon_rc if f.get(70, b"001") == b"001" else "00"
            out = {7: f.get(7, b"0101000000"), 11: f[11], 39: rc, 70: f.get(70, b"001")}
            return encode(self.p, "0810", {k: v for k, v in out.items()})
        rc = "51" if f.get(4, b"").endswith(b"51") else "00"
        out = {39: rc, 11: f[11]}
        for k in (2, 3, 4, 7, 14, 37, 41, 42, 49):
            if k in f:
                out[k] = f[k]
        if rc == "00":
            out[38] = "A1B2C3"
        out.update(self.answer_extra)
        resp = "%04d" % (int(mti) + 10)
        return encode(self.p, resp, out)

    def _serve(self, s):
        try:
            self._serve_frames(s)
        finally:
            s.close()
            with self.lock:
                self.serving.discard(s)
                self.lock.notify_all()

    def _serve_frames(self, s):
        buf = b""
        while True:
            try:
                chunk = s.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                return
            buf += chunk
            while True:
                try:
                    body, buf = split_frame(self.p, buf)
                except ValueError:
                    with self.lock:  # a broken stream: a real host closes it
                        self.bad_frames.append(buf)
                        self.lock.notify_all()
                    return
                if body is None:
                    break
                if not body:
                    continue
                try:
                    mti, f = decode(self.p, body)
                except (ValueError, KeyError, IndexError, struct.error):
                    with self.lock:  # answered by nobody, kept for the test
                        self.bad_frames.append(body)
                        self.lock.notify_all()
                    continue
                frame = self._answer_for(mti, f)
                with self.lock:
                    if mti == "0800":
                        self.signons += 1
                    else:
                        self.requests.append((mti, f))
                        self.frames.append(body)
                    hold = self.holding and mti != "0800"
                    if hold:
                        self.held.append((s, frame))
                    draining = self.draining
                    self.lock.notify_all()
                if not hold and not draining:
                    try:
                        s.sendall(frame)
                    except OSError:
                        if not self.draining:  # killed meanwhile: keep reading
                            return

    def hold(self):
        with self.lock:
            self.holding = True

    def release(self, reverse=False):
        with self.lock:
            self.holding = False
            held, self.held = self.held, []
        if reverse:
            held.reverse()
        for s, frame in held:
            try:
                s.sendall(frame)
            except OSError:
                pass

    def wait_requests(self, n, timeout=10.0):
        deadline = time.monotonic() + timeout
        with self.lock:
            while len(self.requests) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("issuer saw %d of %d requests" % (len(self.requests), n))
                self.lock.wait(left)

    def wait_held(self, n, timeout=10.0):
        deadline = time.monotonic() + timeout
        with self.lock:
            while len(self.held) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("issuer holds %d of %d" % (len(self.held), n))
                self.lock.wait(left)

    def stop(self, drain=False, timeout=10.0):
        """Closes the listener and every connection. drain=True kills the
        host without losing sight of what it was sent: it answers nothing
        more (held answers are dropped), ends its side of each connection
        (FIN) and keeps reading and recording until the peer closes, so
        self.requests holds every request the switch wrote to it. (A crashed
        host's kernel would discard the unread tail with a reset.)"""
        with self.lock:
            self.stopped = True
            self.draining = drain
            if drain:
                self.holding = False
                self.held = []
            conns, self.conns = self.conns, []
        try:
            self.ls.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        except OSError:
            pass
        self.ls.close()
        for s in conns:
            try:
                s.shutdown(socket.SHUT_WR if drain else socket.SHUT_RDWR)
            except OSError:
                pass
            if not drain:
                s.close()
        if drain:
            deadline = time.monotonic() + timeout
            with self.lock:
                while self.serving & set(conns):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError("the peer kept %d connections open"
                                           % len(self.serving & set(conns)))
                    self.lock.wait(left)


def free_port():
    """A port nothing listens on right now (for 'issuer down' tests)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# --- leak scans ------------------------------------------------------------

def _bcd_needles(digits):
    """(lead, core, tail) for both nibble alignments of digits in packed BCD:
    core holds the bytes made of two digits each; lead and tail are the
    digits that share a byte with a padding nibble (None: none)."""
    out = []
    for start in (0, 1):  # the first digit in the high nibble, or the low one
        lead = digits[0] if start else None
        rest = digits[1:] if start else digits
        tail = rest[-1] if len(rest) % 2 else None
        core = bytes.fromhex(rest[:len(rest) - len(rest) % 2])
        out.append((lead, core, tail))
    return out


def find_bcd(data, digits):
    """Offset of digits packed as BCD in data at either nibble alignment,
    whatever the padding nibble beside it (F, 0 or a neighbouring digit),
    or -1. digits: a PAN or token as text."""
    for lead, core, tail in _bcd_needles(digits):
        at = data.find(core)
        while at >= 0:
            start = at - (1 if lead is not None else 0)
            end = at + len(core)
            ok = start >= 0
            if ok and lead is not None:
                ok = (data[start] & 0x0F) == int(lead)
            if ok and tail is not None:
                ok = end < len(data) and (data[end] >> 4) == int(tail)
            if ok:
                return start
            at = data.find(core, at + 1)
    return -1


def bcd(digits, pad="F", low_first=False):
    """digits packed as BCD, padded with the nibble pad to whole bytes;
    low_first: the first digit goes in the low nibble of the first byte."""
    s = (pad + digits) if low_first else digits
    if len(s) % 2:
        s += pad
    return bytes.fromhex(s)


def log_leaks(data, secrets):
    """What of secrets (PANs, tokens: digit strings) appears in the raw
    bytes data, in ASCII or packed BCD: a list of reasons, empty when
    clean. The reasons name the form and a masked number, never the
    number itself."""
    found = []
    for d in secrets:
        masked = d[:6] + "*" * (len(d) - 10) + d[-4:]
        if d.encode() in data:
            found.append("%s in ASCII" % masked)
        if find_bcd(data, d) >= 0:
            found.append("%s in packed BCD" % masked)
    return found


def parse_logfmt(line):
    """One text-format log line (key=value, values with spaces quoted with
    backslash escapes) -> {key: str}."""
    out, i, n = {}, 0, len(line)
    while i < n:
        while i < n and line[i] == " ":
            i += 1
        j = i
        while j < n and line[j] not in "= ":
            j += 1
        key = line[i:j]
        if j >= n or line[j] == " ":
            if key:
                out[key] = "true"
            i = j
            continue
        j += 1
        if j < n and line[j] == '"':
            j += 1
            val = []
            while j < n and line[j] != '"':
                if line[j] == "\\" and j + 1 < n:
                    j += 1
                    val.append({"n": "\n", "t": "\t", "r": "\r"}.get(line[j], line[j]))
                else:
                    val.append(line[j])
                j += 1
            out[key] = "".join(val)
            i = j + 1
        else:
            k = j
            while k < n and line[k] != " ":
                k += 1
            out[key] = line[j:k]
            i = k
    return out


def log_events(log, event):
    """The lines of a text-format log whose event is event, parsed."""
    return [f for f in (parse_logfmt(l) for l in log.splitlines()) if f.get("event") == event]


# --- processes -------------------------------------------------------------

def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise TimeoutError("timed out waiting for " + what)
        # back-off between probes of an external condition
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def block_io_uring():
    """preexec_fn: a seccomp filter that fails io_uring_setup with ENOSYS, as
    container runtimes do. Everything else is allowed."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)

    class SockFilter(ctypes.Structure):
        _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                    ("k", ctypes.c_uint32)]

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(SockFilter))]

    nr_io_uring_setup = 425  # the same on every 64-bit architecture (generic table)
    prog = (SockFilter * 4)(
        SockFilter(0x20, 0, 0, 0),                  # ld [nr]
        SockFilter(0x15, 0, 1, nr_io_uring_setup),  # jeq io_uring_setup
        SockFilter(0x06, 0, 0, 0x00050000 | 38),    # ret ERRNO(ENOSYS)
        SockFilter(0x06, 0, 0, 0x7fff0000),         # ret ALLOW
    )
    fprog = SockFprog(4, prog)
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
    if libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:  # PR_SET_SECCOMP, FILTER
        raise OSError(ctypes.get_errno(), "PR_SET_SECCOMP")


def documented_series(source):
    """{name: type} of the metrics table of docs/operations.md (the rows
    after "Metrics: every series", up to the next section)."""
    with open(os.path.join(source, "docs", "operations.md")) as f:
        doc = f.read()
    start = doc.index("\nMetrics: every series")
    table = doc[start:doc.index("\n## ", start)]
    series = {}
    for line in table.splitlines():
        if not line.startswith("| `"):
            continue
        cols = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        for name in re.findall(r"`(\w+)[{`]", cols[0]):
            if name in series:
                raise AssertionError("%s twice in docs/operations.md" % name)
            series[name] = cols[1]
    return series


def metric_value(body, name_with_labels):
    """The value of series name_with_labels in the Prometheus text body
    (see Switch.metric)."""
    for line in body.splitlines():
        if line.startswith(name_with_labels + " "):
            return float(line.split()[-1])
    name = name_with_labels.split("{", 1)[0]
    families = [name] + [name[:-len(s)] for s in ("_bucket", "_count", "_sum") if name.endswith(s)]
    if not any("\n# TYPE %s " % f in "\n" + body for f in families):
        raise KeyError("no series %s in /metrics" % name)
    return 0.0


class Switch:
    """A running tokswitch: reads the listening line with a deadline."""

    def __init__(self, exe, args, stderr_path, timeout=20.0, preexec_fn=None, env=None):
        self.stderr_path = stderr_path
        self.err = open(stderr_path, "wb")
        self.proc = subprocess.Popen([exe] + args, stdout=subprocess.PIPE, stderr=self.err,
                                     preexec_fn=preexec_fn, env=env)
        line = b""
        deadline = time.monotonic() + timeout
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self.kill()
                raise RuntimeError("tokswitch did not start: " + self.log()[-2000:])
            r, _, _ = select.select([self.proc.stdout], [], [], left)
            if r:
                ch = os.read(self.proc.stdout.fileno(), 1)
                if not ch:
                    continue
                line += ch
        parts = dict(kv.split("=", 1) for kv in line.decode().split()[1:])
        self.acq = parts["acquirer"]
        self.metrics = parts["metrics"]
        self.line = line.decode()

    def log(self):
        if not self.err.closed:
            self.err.flush()
        return open(self.stderr_path, "rb").read().decode(errors="replace")

    def http(self, path, timeout=5.0, headers=""):
        """GET path from the metrics endpoint; headers: more header
        lines, each ending in CRLF. Returns (status, body)."""
        host, port = self.metrics.rsplit(":", 1)
        s = socket.create_connection((host, int(port)), timeout=timeout)
        s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (path, headers)).encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split()[1]), body.decode()

    def metric(self, name_with_labels):
        """The value of one series; 0 when its family is exported without
        it (a label set not counted yet). A name the scrape does not
        declare at all raises: a test must not read a renamed series as 0."""
        _, body = self.http("/metrics")
        return metric_value(body, name_with_labels)

    def wait_ready(self, timeout=10.0):
        wait_for(lambda: self.http("/readyz")[0] == 200, timeout, "/readyz 200")

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout=20.0):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.err.close()

    def stop(self):
        """SIGTERM, then the exit status (None when it had to be killed)."""
        rc = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(20)
            except subprocess.TimeoutExpired:
                pass
        else:
            rc = self.proc.returncode
        self.kill()
        return rc

    def sanitizer_report(self):
        log = self.log()
        for needle in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                       "WARNING: ThreadSanitizer"):
            if needle in log:
                return log[log.index(needle):][:3000]
        return None


# --- TAP -------------------------------------------------------------------

class Skip(Exception):
    """Raised by a test that cannot run here (a program it drives is not
    installed): reported "ok N - name # SKIP why", which tools/count-tests
    counts as a skip, never a pass (and as a failure with --require-all)."""


def run_tap(tests, only=None):
    """tests: [(name, fn)]. Prints TAP; returns the exit status."""
    if only:
        tests = [t for t in tests if any(o in t[0] for o in only)]
    print("1..%d" % len(tests), flush=True)
    failed = 0
    for i, (name, fn) in enumerate(tests, 1):
        t0 = time.monotonic()
        try:
            fn()
            print("ok %d - %s (%.2fs)" % (i, name, time.monotonic() - t0), flush=True)
        except Skip as e:
            print("ok %d - %s # SKIP %s" % (i, name, e), flush=True)
        except Exception as e:  # every failure is reported, none stops the run
            failed += 1
            print("not ok %d - %s" % (i, name), flush=True)
            for line in traceback.format_exc().splitlines():
                print("# " + line, flush=True)
            sys.stderr.write("%s failed: %s\n" % (name, e))
    return 1 if failed else 0
