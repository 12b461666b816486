#!/usr/bin/env python3
"""End-to-end tests of the switch's card cryptography over loopback,
against one I/O backend:

    e2e_crypto.py --build BUILD_DIR --source SOURCE_DIR --io uring|uv [NAME...]

EMV cryptograms (ARQC in DE55, the ATC replay check, tag 91 in answers),
PIN block translation (DE52, ISO 9564 formats 0 and 4) and the e-commerce
token cryptogram (DE48 tag 11), as the contract of the switch describes
them (docs/hsm.md, docs/wire.md). The card, the terminal and the issuer's
checks are played by tests/lib/emvcard.py, written independently of
src/hsm; its first test checks it against the EMV vectors. Each test makes
a vault of its own (tokens with cvn/psn, keys with `tokvault key-add`),
runs a test double issuer (tswtest.FakeIssuer) and a tokswitch on port 0.
When a switch stops, its log is scanned for every PAN and token (ASCII and
packed BCD), every key (hex, either case, and raw) and every PIN. Prints TAP.
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import emvcard as E  # noqa: E402
import tswtest as T  # noqa: E402

args, TOKSWITCH, TOKVAULT, PROFILE, TMP = T.suite_setup("e2e_crypto")
PIN16 = T.Profile(os.path.join(args.source, "config", "pin16.spec"))
PIN16.name = "pin16"  # its profile directive: what [server] profile names
EXPIRY = "3012"
COLUMNS = T.VAULT_COLUMNS + ["cvn", "psn"]
# DE22 (PAN entry mode, then PIN entry capability)
CHIP, CONTACTLESS, CONTACTLESS_MSD, MANUAL, ECOM, COF = "051", "071", "911", "011", "812", "101"
# what the switch must never log: filled as tests make keys and PINs
SECRETS = {"keys": [], "pins": []}

run = T.run


def assert_eq(a, b, what=""):
    if a != b:
        raise AssertionError("%s: %r != %r" % (what, a, b))


def token_in(prefix, n):
    """A 16-digit Luhn-valid token starting with prefix."""
    return T.luhn_complete(prefix + "%0*d" % (15 - len(prefix), n))


def pan_for(n):
    return T.luhn_complete("5413%011d" % (n * 7919))


class Vault:
    """A vault of its own for a test: tokens {name: dict(n=, prefix=, and
    CSV columns)}, token BIN range 4000."""
    count = 0

    def __init__(self, tokens):
        Vault.count += 1
        self.dir = tempfile.mkdtemp(dir=TMP, prefix="vault")
        self.path = os.path.join(self.dir, "vault")
        self.key = os.path.join(self.dir, "key")
        self.tokens = {}
        for name, t in tokens.items():
            t = dict(t)
            n = Vault.count * 100 + t.pop("n")
            t["token"] = token_in(t.pop("prefix", "40001"), n)
            t["pan"] = pan_for(n)
            self.tokens[name] = t
        T.make_vault(TOKVAULT, self.path, self.key, self.tokens.values(), EXPIRY,
                     os.path.join(self.dir, "tokens.csv"), columns=COLUMNS)

    def tok(self, name):
        return self.tokens[name]["token"]

    def pan(self, name):
        return self.tokens[name]["pan"]

    def tokvault(self, *verb, stdin=None):
        p = subprocess.run([TOKVAULT, "--vault", self.path, "--key-file", self.key] + list(verb),
                           input=stdin, capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            raise RuntimeError("tokvault %s failed (%d): %s" % (verb[0], p.returncode, p.stderr))
        return p.stdout

    def tokvault_fails(self, *verb):
        """tokvault verb must fail: its stderr."""
        p = subprocess.run([TOKVAULT, "--vault", self.path, "--key-file", self.key] + list(verb),
                           capture_output=True, text=True, timeout=60)
        if p.returncode == 0:
            raise AssertionError("tokvault %s succeeded: %s" % (verb[0], p.stdout))
        return p.stderr

    def key_add(self, kind, kid, scope, key, alg=None):
        """Adds key (bytes) of kind with scope ("--range", "4000") and checks
        the KCV tokvault prints against the one computed here."""
        SECRETS["keys"].append(key)
        argv = ["key-add", kind, kid] + list(scope) + (["--alg", alg] if alg else [])
        out = self.tokvault(*argv, stdin=key.hex() + "\n")
        aes = alg in ("aes128", "aes256") or kind == "tavv" or len(key) == 32
        want = (E.kcv_aes(key) if aes else E.kcv_tdes(key)).hex().upper()
        assert "kcv=" + want in out, "tokvault key-add %s %s printed %r, KCV %s" % (
            kind, kid, out, want)
        assert key.hex() not in out.lower(), "tokvault printed the key"
        return key


def new_key(n=16):
    return os.urandom(n)


def no_leaks(raw, vault):
    """Reasons the bytes raw hold a secret of vault or of SECRETS."""
    found = T.log_leaks(raw, [t["pan"] for t in vault.tokens.values()] +
                        [t["token"] for t in vault.tokens.values()])
    low = raw.lower()
    for i, k in enumerate(SECRETS["keys"]):
        if k.hex().encode() in low:
            found.append("key %d (KCV-less) in hex" % i)
        if k in raw:
            found.append("key %d raw" % i)
    for i, pin in enumerate(SECRETS["pins"]):
        if pin.encode() in raw:
            found.append("PIN %d in ASCII" % i)
        if ("%X%s" % (len(pin), pin)).encode() in raw.upper():
            found.append("PIN %d as a PIN field" % i)
    return found


class Env:
    """One switch and one issuer on vault, state of its own, log level
    debug (the most lines to scan). wire: the profile of both sides."""

    def __init__(self, vault, wire=None, extra_conf="", timeout_ms=2000):
        self.vault = vault
        self.wire = wire or PROFILE
        self.dir = tempfile.mkdtemp(dir=TMP)
        self.issuer = T.FakeIssuer(self.wire)
        conf = T.SWITCH_CONF % dict(timeout=timeout_ms, max_conns=64)
        if wire is not None:
            conf += "[server]\nprofile = %s\nissuer_profile = %s\n" % (wire.name, wire.name)
        self.conf = os.path.join(self.dir, "tokswitch.conf")
        with open(self.conf, "w") as f:
            f.write(conf + extra_conf)
        os.mkdir(os.path.join(self.dir, "state"))
        argv = ["-c", self.conf, "--vault", vault.path, "--key-file", vault.key,
                "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0", "--io", args.io,
                "--issuer", self.issuer.addr, "--state", os.path.join(self.dir, "state"),
                "--log-level", "debug"]
        self.sw = T.Switch(TOKSWITCH, argv, os.path.join(self.dir, "stderr.log"))
        self.conns = []
        self.stan = 0
        self.sw.wait_ready()
        self.c = self.conn()

    def conn(self):
        c = T.Conn(self.sw.acq, self.wire)
        self.conns.append(c)
        return c

    def ask(self, token, de22=CHIP, de55=None, extra=None, mti="0100", amount="000000001000"):
        """Sends an authorization of token and returns (mti, fields) of
        the answer."""
        self.stan += 1
        f = {22: de22}
        if de55 is not None:
            f[55] = de55
        f.update(extra or {})
        self.c.request(*T.auth_msg(token, self.stan, amount=amount, mti=mti, expiry=EXPIRY,
                                   extra=f))
        return self.c.answer()

    def chip(self, card, atc, de22=CHIP, extra=None, **card_kw):
        """A chip request of card with a good cryptogram for ATC atc:
        (answer fields, the card's tags, the DE55 sent)."""
        de55, tags = card.de55(atc=atc, **card_kw)
        return self.ask(card.token, de22=de22, de55=de55, extra=extra)[1], tags, de55

    def seen(self):
        return len(self.issuer.requests)

    def reload(self):
        """SIGHUP, then waits for the reload to be logged."""
        n = self.sw.log().count("event=config_reloaded")
        self.sw.signal(signal.SIGHUP)
        T.wait_for(lambda: self.sw.log().count("event=config_reloaded") > n, 10,
                   "config_reloaded after SIGHUP")

    def close(self):
        for c in self.conns:
            c.close()
        self.issuer.release()
        rc = self.sw.stop()
        self.issuer.stop()
        with open(self.sw.stderr_path, "rb") as f:
            raw = f.read()
        leaks = no_leaks(raw, self.vault)
        if leaks:
            raise AssertionError("the switch's log holds " + ", ".join(leaks))
        acq = T.log_leaks(b"".join(c.raw for c in self.conns),
                          [t["pan"] for t in self.vault.tokens.values()])
        if acq:
            raise AssertionError("a PAN reached the acquirer side: " + ", ".join(acq))
        report = self.sw.sanitizer_report()
        if report:
            raise AssertionError("sanitizer: " + report)
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


def tags91(f):
    """The values of tag 91 in an answer's DE55 (empty when none)."""
    if 55 not in f:
        return []
    return [v for t, v in E.tlv_parse(f[55]) if t == 0x91]


def assert_approved_with_91(f, card, tags, de39="00", what=""):
    assert_eq(f.get(39), de39.encode(), what + ": DE39")
    got = tags91(f)
    want = card.tag91(tags, de39)
    assert_eq([g.hex().upper() for g in got], [want.hex().upper()],
              what + ": tag 91 (the ARPC of the card's ARQC for ARC %s)" % de39)


def assert_declined(f, rc, reason, what):
    assert_eq((f.get(39), f.get(44)), (rc, reason), what)
    assert_eq(tags91(f), [], what + ": a local answer carries no tag 91")


def flip(b, bit=0):
    """b with one bit flipped."""
    out = bytearray(b)
    out[bit // 8] ^= 0x80 >> (bit % 8)
    return bytes(out)


def with_tag(de55_tags, tag, value):
    t = dict(de55_tags)
    if value is None:
        del t[tag]
    else:
        t[tag] = value
    return E.de55_of(t)


# --- tests -----------------------------------------------------------------

def test_emvcard_matches_every_vector():
    E.self_test()


def test_key_add_prints_the_kcv_and_import_keeps_cvn_and_psn():
    v = Vault({"c10": dict(n=1, cvn=10, psn="00"), "c16": dict(n=2, cvn=16, psn="03"),
               "c18": dict(n=3, cvn=18, psn="99"), "c20": dict(n=4, cvn=20, psn="01"),
               "plain": dict(n=5)})
    for name, cvn, psn in (("c10", "10", "00"), ("c16", "16", "03"), ("c18", "18", "99"),
                           ("c20", "20", "01"), ("plain", "none", "00")):
        out = v.tokvault("show", v.tok(name))
        lines = out.split()
        assert "cvn=%s" % cvn in lines and "psn=%s" % psn in lines, "show %s: %s" % (name, out)
    keys = [("imk-ac", "IMK1", ("--range", "40001"), new_key(16), None),
            ("zpk-acquirer", "ZA1", ("--acquirer", "12345678"), new_key(16), None),
            ("zpk-acquirer", "ZA2", ("--acquirer", "87654321"), new_key(16), "aes128"),
            ("zpk-issuer", "ZI1", ("--issuer", "0"), new_key(24), None),
            ("zpk-issuer", "ZI2", ("--issuer", "1"), new_key(32), None),
            ("tavv", "TV1", ("--range", "40003"), new_key(16), None)]
    for kind, kid, scope, key, alg in keys:
        v.key_add(kind, kid, scope, key, alg)
    listing = v.tokvault("key-list")
    for kind, kid, scope, key, alg in keys:
        assert any("kind=%s" % kind in l and "id=%s" % kid in l for l in listing.splitlines()), \
            "key-list lacks %s %s: %s" % (kind, kid, listing)
        assert key.hex() not in listing.lower(), "key-list shows a key"


def chip_vault():
    v = Vault({"c10": dict(n=1, cvn=10, psn="00"), "c16": dict(n=2, cvn=16, psn="03"),
               "c18": dict(n=3, cvn=18, psn="01"), "c20": dict(n=4, cvn=20, psn="00"),
               "plain": dict(n=5)})
    imk = v.key_add("imk-ac", "IMK1", ("--range", "40001"), new_key())
    return v, imk


def card_of(v, imk, name, psn=None):
    t = v.tokens[name]
    return E.Card(imk, t["token"], int(t["cvn"]), int(t["psn"]) if psn is None else psn)


def test_chip_arqc_of_each_cvn_forwarded_and_answered_with_tag_91():
    v, imk = chip_vault()
    with Env(v) as e:
        for i, name in enumerate(("c10", "c16", "c18", "c20")):
            card = card_of(v, imk, name)
            # the PSN from 5F34 for two of them, from the record for the others
            de55, tags = card.de55(atc=1, with_psn=i % 2 == 1)
            mti, f = e.ask(card.token, de55=de55)
            assert_eq(mti, "0110", name)
            assert_approved_with_91(f, card, tags, "00", "CVN %d approval" % card.cvn)
            assert_eq(f[2], card.token.encode(), name + ": DE2 back to the token")
            imti, isf = e.issuer.requests[-1]
            assert_eq((imti, isf[2]), ("0100", v.pan(name).encode()), name + " at the issuer")
            assert_eq(isf.get(55), de55, name + ": DE55 reaches the issuer as sent")
            # an issuer decline carries a 91 for its ARC too
            e.issuer.answer_extra = {39: "05"}
            f, tags, _ = e.chip(card, 2)
            assert_approved_with_91(f, card, tags, "05", "CVN %d issuer decline" % card.cvn)
            # an issuer's own 91 is replaced, not repeated
            e.issuer.answer_extra = {55: E.tlv(0x91, b"\x11" * 10) + E.tlv(0x9F36, b"\x00\x02")}
            f, tags, _ = e.chip(card, 3)
            assert_approved_with_91(f, card, tags, "00", "CVN %d issuer sent a 91" % card.cvn)
            e.issuer.answer_extra = {}
        assert_eq(e.seen(), 12, "every request forwarded")
        # a financial request (0200) is checked like an authorization
        card = card_of(v, imk, "c18")
        de55, tags = card.de55(atc=4)
        mti, f = e.ask(card.token, de55=de55, mti="0200")
        assert_eq(mti, "0210", "0200 answered")
        assert_approved_with_91(f, card, tags, "00", "0200")
        _, tags = card.de55(atc=5)
        _, f = e.ask(card.token, de55=with_tag(tags, 0x9F26, flip(tags[0x9F26], 20)), mti="0200")
        assert_declined(f, b"63", b"CRYPTOGRAM", "0200 forged")
        assert_eq(e.seen(), 13, "the forged 0200 never at the issuer")


def test_chip_arqc_with_5f34_must_name_the_records_psn():
    v, imk = chip_vault()
    with Env(v) as e:
        # the record says 03: 5F34 03 is that device, with or without 5F34
        card = card_of(v, imk, "c16")
        f, tags, _ = e.chip(card, 1, with_psn=True)
        assert_approved_with_91(f, card, tags, "00", "5F34 03")
        f, tags, _ = e.chip(card, 2, with_psn=False)
        assert_approved_with_91(f, card, tags, "00", "no 5F34: the record's 03")
        # a device personalised with PSN 07 is another card: the sender
        # does not choose the key its cryptogram is checked under
        other = card_of(v, imk, "c16", psn=7)
        f, tags, _ = e.chip(other, 3, with_psn=True)
        assert_declined(f, b"63", b"CRYPTOGRAM", "5F34 07, the record's 03")
        assert_eq(e.seen(), 2, "the decline never reached the issuer")


def test_edited_record_of_a_card_refused_before_its_atc_is_recorded():
    """Whoever can write data.mdb edits a card's record (its atc_epoch, say):
    the record is authenticated before the state records anything for it,
    so an edited epoch can never lock the card out by a replay."""
    v = Vault({"card": dict(n=1, cvn=18, psn="01", trid="40010099992")})
    imk = v.key_add("imk-ac", "IMK1", ("--range", "40001"), new_key())
    path = os.path.join(v.path, "data.mdb")
    with open(path, "rb") as fh:
        data = fh.read()
    at, offsets = data.find(b"40010099992"), []
    while at >= 0:
        offsets.append(at + 10)  # the TRID's last digit: still a record that decodes
        at = data.find(b"40010099992", at + 1)
    assert offsets, "the record's TRID is in data.mdb"
    with Env(v) as e:
        card = card_of(v, imk, "card")
        with open(path, "r+b") as fh:
            for o in offsets:
                fh.seek(o)
                fh.write(b"3")
        f, _, _ = e.chip(card, 1)
        assert_declined(f, b"96", b"VAULT_INTEGRITY", "an edited card record")
        assert_eq(e.seen(), 0, "nothing reached the issuer")
        assert_eq(e.sw.metric("tokswitch_state_atc_ok_total"), 0.0, "no ATC recorded for it")
        assert_eq(e.sw.metric('tokswitch_cryptogram_checks_total{result="ok"}'), 0.0, "not checked")


def test_bad_cryptograms_declined_63_never_reaching_the_issuer():
    v, imk = chip_vault()
    with Env(v) as e:
        for name in ("c10", "c16", "c18", "c20"):
            card = card_of(v, imk, name)
            # the "generated on phone B" case: a good DE55 of another token
            other = E.Card(imk, v.tok("c20" if name != "c20" else "c16"), card.cvn, card.psn)
            _, tags = card.de55(atc=50)
            bad = {
                "one bit flipped in the ARQC": with_tag(tags, 0x9F26, flip(tags[0x9F26], 37)),
                "the last bit of the ARQC": with_tag(tags, 0x9F26, flip(tags[0x9F26], 63)),
                "the amount changed after the card signed": with_tag(
                    tags, 0x9F02, bytes.fromhex("000000001001")),
                "another token's DE55": other.de55(atc=50)[0],
                "no DE55": None,
                "DE55 not BER-TLV": b"\x9f\x26\x08\x01\x02",
                "no 9F37": with_tag(tags, 0x9F37, None),
                "no 9F26": with_tag(tags, 0x9F26, None),
                "9F36 of 3 bytes": with_tag(tags, 0x9F36, b"\x00\x00\x32"),
                "9F10 of another CVN": with_tag(tags, 0x9F10, E.iad(
                    {10: 18, 18: 10, 16: 20, 20: 16}[card.cvn], E.cvr_of(card.cvn, tags[0x9F10]))),
            }
            for case, de55 in bad.items():
                before = e.seen()
                _, f = e.ask(card.token, de55=de55)
                assert_declined(f, b"63", b"CRYPTOGRAM", "CVN %d, %s" % (card.cvn, case))
                assert_eq(e.seen(), before, "CVN %d, %s: never at the issuer" % (card.cvn, case))
            # a forged ATC 50 moved nothing: a good ATC 5 is accepted
            f, tags, _ = e.chip(card, 5)
            assert_approved_with_91(f, card, tags, "00", "CVN %d after the forgeries" % card.cvn)
        assert_eq(e.seen(), 4, "only the good ones forwarded")


def test_no_imk_for_the_range_declined_cryptogram():
    v = Vault({"far": dict(n=1, prefix="40009", cvn=18, psn="00")})
    imk = v.key_add("imk-ac", "IMK1", ("--range", "40001"), new_key())
    with Env(v) as e:
        card = E.Card(imk, v.tok("far"), 18, 0)
        f = e.chip(card, 1)[0]
        assert_declined(f, b"63", b"CRYPTOGRAM", "no imk-ac for 40009")
        assert_eq(e.seen(), 0, "never at the issuer")


def test_atc_replay_and_window():
    v, imk = chip_vault()
    with Env(v) as e:
        card = card_of(v, imk, "c18")
        f, tags, de55 = e.chip(card, 1)
        assert_approved_with_91(f, card, tags, "00", "ATC 1")
        _, f = e.ask(card.token, de55=de55)
        assert_declined(f, b"63", b"ATC_REPLAY", "the same DE55 again")
        de55, _ = card.de55(atc=1)  # a fresh cryptogram (new UN), same ATC
        _, f = e.ask(card.token, de55=de55)
        assert_declined(f, b"63", b"ATC_REPLAY", "ATC 1 again with a new cryptogram")
        f = e.chip(card, 1 + 101)[0]
        assert_declined(f, b"63", b"ATC_WINDOW", "101 ahead of the last ATC")
        f, tags, _ = e.chip(card, 1 + 100)
        assert_approved_with_91(f, card, tags, "00", "100 ahead: inside the window")
        f = e.chip(card, 50)[0]
        assert_declined(f, b"63", b"ATC_REPLAY", "below the last ATC")
        assert_eq(e.seen(), 2, "declines never reach the issuer")


def test_atc_window_from_the_config():
    v, imk = chip_vault()
    with Env(v, extra_conf="[cryptogram]\natc_window = 5\n") as e:
        card = card_of(v, imk, "c10")
        f = e.chip(card, 7)[0]
        assert_declined(f, b"63", b"ATC_WINDOW", "7 ahead of 0, window 5")
        f, tags, _ = e.chip(card, 5)
        assert_approved_with_91(f, card, tags, "00", "5 ahead of 0")


def test_limited_use_token_keeps_its_use_when_the_cryptogram_fails():
    v = Vault({"lu": dict(n=1, cvn=20, psn="00", max_uses=2)})
    imk = v.key_add("imk-ac", "IMK1", ("--range", "40001"), new_key())
    with Env(v) as e:
        card = card_of(v, imk, "lu")
        for atc in (9, 9):
            _, tags = card.de55(atc=atc)
            _, f = e.ask(card.token, de55=with_tag(tags, 0x9F26, flip(tags[0x9F26], 5)))
            assert_declined(f, b"63", b"CRYPTOGRAM", "forged")
        f, tags, de55 = e.chip(card, 1)
        assert_approved_with_91(f, card, tags, "00", "first use after the forgeries")
        _, f = e.ask(card.token, de55=de55)
        assert_declined(f, b"63", b"ATC_REPLAY", "replay")
        f, tags, _ = e.chip(card, 2)
        assert_approved_with_91(f, card, tags, "00", "second use: no decline took one")
        f = e.chip(card, 3)[0]
        assert_eq((f.get(39), f.get(44)), (b"65", b"DOMAIN_USES"), "third use")
        assert_eq(e.seen(), 2, "two forwarded")


def test_repersonalize_makes_atc_1_acceptable_again_on_the_new_device_only():
    v, imk = chip_vault()
    with Env(v) as e:
        old = card_of(v, imk, "c16")  # PSN 03
        for atc in (1, 5):
            f, tags, _ = e.chip(old, atc)
            assert_approved_with_91(f, old, tags, "00", "ATC %d" % atc)
        f = e.chip(old, 1)[0]
        assert_declined(f, b"63", b"ATC_REPLAY", "ATC 1 before repersonalize")
        # made by the old device, never sent: its ATCs are below the new
        # device's future ones once the counter starts over
        kept = [old.de55(atc=a, with_psn=p)[0] for a, p in ((2, False), (3, True))]
        out = v.tokvault("repersonalize", old.token)  # while the switch runs
        assert "new PSN 04" in out, out
        assert_eq(v.tokvault("show", old.token).count("psn=04"), 1, "the record's new PSN")
        _, f = e.ask(old.token, de55=kept[0])
        assert_declined(f, b"63", b"CRYPTOGRAM", "the old device's ATC 2 (old ICC key)")
        _, f = e.ask(old.token, de55=kept[1])
        assert_declined(f, b"63", b"CRYPTOGRAM", "the old device's ATC 3 naming PSN 03")
        new = card_of(v, imk, "c16", psn=4)
        f, tags, de55 = e.chip(new, 1)
        assert_approved_with_91(f, new, tags, "00", "ATC 1 of the new device")
        _, f = e.ask(new.token, de55=de55)
        assert_declined(f, b"63", b"ATC_REPLAY", "ATC 1 twice in the new epoch")
        assert_eq(e.seen(), 3, "forwarded")
        for psn in ("04", "03", "00"):  # the current one, and earlier devices'
            out = v.tokvault_fails("repersonalize", "--psn", psn, old.token)
            assert "not above the token's PSN" in out, out


def test_contactless_checked_like_chip_other_modes_refused_advices_not_checked():
    v, imk = chip_vault()
    with Env(v) as e:
        card = card_of(v, imk, "c10")
        atc = 0
        for de22 in (CONTACTLESS, CONTACTLESS_MSD):
            atc += 1
            f, tags, _ = e.chip(card, atc, de22=de22)
            assert_approved_with_91(f, card, tags, "00", "DE22 %s" % de22)
            atc += 1
            _, tags = card.de55(atc=atc)
            _, f = e.ask(card.token, de22=de22,
                         de55=with_tag(tags, 0x9F26, flip(tags[0x9F26], 11)))
            assert_declined(f, b"63", b"CRYPTOGRAM", "DE22 %s forged" % de22)
            _, f = e.ask(card.token, de22=de22)
            assert_declined(f, b"63", b"CRYPTOGRAM", "DE22 %s without DE55" % de22)
        assert_eq(e.seen(), 2, "contactless declines never reach the issuer")
        # a cvn token whose record lists no modes takes chip and contactless
        # only: another mode would go without a cryptogram
        for de22 in (MANUAL, ECOM, COF):
            _, f = e.ask(card.token, de22=de22)
            assert_declined(f, b"57", b"DOMAIN_POS_MODE", "DE22 %s of a cvn token" % de22)
        assert_eq(e.seen(), 2, "manual, e-commerce and card-on-file never reach the issuer")
        # an advice is never checked
        _, f = e.ask(card.token, mti="0120")
        assert_eq((f.get(39), e.seen()), (b"00", 3), "0120 chip advice without DE55 forwarded")
        # a token without cvn needs no DE55 in chip mode
        _, f = e.ask(v.tok("plain"))
        assert_eq((f.get(39), tags91(f)), (b"00", []), "chip request of a token without cvn")


def test_key_rotation_with_reload():
    v = Vault({"rot": dict(n=1, prefix="40002", cvn=18, psn="00")})
    old = v.key_add("imk-ac", "IMK-OLD", ("--range", "40002"), new_key())
    new = new_key()
    with Env(v) as e:
        tok = v.tok("rot")
        c_old, c_new = E.Card(old, tok, 18, 0), E.Card(new, tok, 18, 0)
        f, tags, _ = e.chip(c_old, 1)
        assert_approved_with_91(f, c_old, tags, "00", "the old key")
        f = e.chip(c_new, 2)[0]
        assert_declined(f, b"63", b"CRYPTOGRAM", "a key the vault does not have yet")
        v.key_add("imk-ac", "IMK-NEW", ("--range", "40002"), new)
        e.reload()
        for atc, card, what in ((3, c_new, "the new key"), (4, c_old, "the old key, still active")):
            f, tags, _ = e.chip(card, atc)
            assert_approved_with_91(f, card, tags, "00", what + " after the reload")
        v.tokvault("key-retire", "imk-ac", "IMK-OLD")
        e.reload()
        f = e.chip(c_old, 5)[0]
        assert_declined(f, b"63", b"CRYPTOGRAM", "the retired key after the reload")
        f, tags, _ = e.chip(c_new, 6)
        assert_approved_with_91(f, c_new, tags, "00", "the new key after the retirement")
        assert_eq(e.seen(), 4, "forwarded")


# --- PIN blocks ------------------------------------------------------------

ACQ, ACQ_NOKEY, ACQ_AES = "12345678", "55555", "333"


def pin_vault(aes):
    """Tokens and zone PIN keys: TDES (format 0) or AES (format 4)."""
    v = Vault({"p": dict(n=1), "q": dict(n=2)})
    if aes:
        acq = v.key_add("zpk-acquirer", "ZA", ("--acquirer", ACQ), new_key(16), "aes128")
        iss = v.key_add("zpk-issuer", "ZI", ("--issuer", "0"), new_key(32))
    else:
        acq = v.key_add("zpk-acquirer", "ZA", ("--acquirer", ACQ), new_key(16))
        iss = v.key_add("zpk-issuer", "ZI", ("--issuer", "0"), new_key(24))
        # an acquirer of the other family than the issuer
        v.key_add("zpk-acquirer", "ZAES", ("--acquirer", ACQ_AES), new_key(16), "aes128")
    return v, acq, iss


def pin_of(n):
    """A PIN of 8, 10 or 12 digits: long enough that a log scan for it
    cannot hit a timestamp or a pid by chance."""
    pin = "739514" + "%02d" % n + "2073"[: n % 3 * 2]
    SECRETS["pins"].append(pin)
    return pin


def check_pin_translation(aes):
    v, acq, iss = pin_vault(aes)
    form = (lambda k, pin, pan: E.pin_block4(k, pin, pan)) if aes else E.pin_block0
    decode = E.pin_decode4 if aes else E.pin_decode0
    size = 16 if aes else 8
    with Env(v, wire=PIN16 if aes else None) as e:
        tok, pan = v.tok("p"), v.pan("p")
        for i in range(3):
            pin = pin_of(i + (10 if aes else 0))
            block = form(acq, pin, tok)
            _, f = e.ask(tok, extra={32: ACQ, 52: block})
            assert_eq(f.get(39), b"00", "PIN %d" % i)
            isf = e.issuer.requests[-1][1]
            assert 52 in isf, "the issuer got no DE52"
            assert_eq(len(isf[52]), size, "the issuer's DE52 size: the format is kept")
            assert isf[52] != block, "the acquirer's block reached the issuer"
            assert_eq(decode(iss, isf[52], pan), pin,
                      "the issuer's block, under the issuer key, bound to the PAN")
            try:
                decode(iss, isf[52], tok)
            except ValueError:
                pass
            else:
                raise AssertionError("the issuer's block is still bound to the token")
        forwarded = e.seen()
        pin = pin_of(20 if aes else 21)
        garbage = bytes.fromhex("0123456789ABCDEF" * (size // 8))
        try:
            decode(acq, garbage, tok)
        except ValueError:
            pass
        else:
            raise AssertionError("the garbage block is well formed: pick another")
        bad = [("no key for the acquirer's DE32", {32: ACQ_NOKEY, 52: form(acq, pin, tok)}),
               ("no DE32", {52: form(acq, pin, tok)}),
               ("a garbage block", {32: ACQ, 52: garbage}),
               ("a block bound to the PAN", {32: ACQ, 52: form(acq, pin, pan)}),
               ("a block bound to another token", {32: ACQ, 52: form(acq, pin, v.tok("q"))}),
               ("a block under another key", {32: ACQ, 52: form(new_key(16), pin, tok)})]
        if not aes:
            bad.append(("an AES acquirer key and a TDES issuer key",
                        {32: ACQ_AES, 52: form(acq, pin, tok)}))
        for case, extra in bad:
            _, f = e.ask(tok, extra=extra)
            assert_eq((f.get(39), f.get(44)), (b"96", b"PIN_BLOCK"), case)
            assert_eq(e.seen(), forwarded, case + ": never at the issuer")
        # no DE52: nothing to translate
        _, f = e.ask(tok, extra={32: ACQ})
        assert_eq((f.get(39), 52 in e.issuer.requests[-1][1]), (b"00", False), "no DE52")


def test_pin_format0_token_to_pan_translated():
    check_pin_translation(aes=False)


def test_pin_format4_aes_pin16_profile_translated():
    check_pin_translation(aes=True)


def test_pin_without_issuer_key_declined_96():
    v = Vault({"p": dict(n=1)})
    acq = v.key_add("zpk-acquirer", "ZA", ("--acquirer", ACQ), new_key(16))
    with Env(v) as e:
        pin = pin_of(30)
        _, f = e.ask(v.tok("p"), extra={32: ACQ, 52: E.pin_block0(acq, pin, v.tok("p"))})
        assert_eq((f.get(39), f.get(44), e.seen()), (b"96", b"PIN_BLOCK", 0), "no zpk-issuer")


def test_pin_and_arqc_in_one_request():
    v, imk = chip_vault()
    acq = v.key_add("zpk-acquirer", "ZA", ("--acquirer", ACQ), new_key(16))
    iss = v.key_add("zpk-issuer", "ZI", ("--issuer", "0"), new_key(16))
    with Env(v) as e:
        card = card_of(v, imk, "c20")
        pin = pin_of(31)
        f, tags, de55 = e.chip(card, 1, extra={32: ACQ, 52: E.pin_block0(acq, pin, card.token)})
        assert_approved_with_91(f, card, tags, "00", "chip and PIN")
        isf = e.issuer.requests[-1][1]
        assert_eq((isf.get(55), E.pin_decode0(iss, isf[52], v.pan("c20"))), (de55, pin),
                  "DE55 as sent, DE52 translated")


# --- the e-commerce token cryptogram (DE48 tag 11) -----------------------------

def test_tavv_required_for_ecommerce_and_card_on_file_of_a_range_with_a_key():
    v = Vault({"w": dict(n=1, prefix="40003"), "x": dict(n=2, prefix="40001")})
    key = v.key_add("tavv", "TV1", ("--range", "40003"), new_key(16))
    with Env(v) as e:
        tok = v.tok("w")
        amount = "000000001000"

        def cryptogram(counter, **kw):
            return E.tavv(key, counter, tok, kw.get("de4", amount), "840", "MERCHANT0000001")

        def ask(value, de22=ECOM, **kw):
            extra = {48: T.de48({11: value})} if value is not None else {}
            return e.ask(tok, de22=de22, extra=extra, amount=kw.get("amount", amount))[1]

        f = ask(cryptogram(1))
        assert_eq(f.get(39), b"00", "a valid TAVV, counter 1")
        assert_eq(T.de48_parse(e.issuer.requests[-1][1][48]).get(11), cryptogram(1),
                  "DE48 tag 11 reaches the issuer")
        forwarded = e.seen()
        for case, value, rc, reason, kw in (
                ("the same TAVV again", cryptogram(1), b"63", b"ATC_REPLAY", {}),
                ("one hex digit changed", cryptogram(2)[:-1] + (
                    "0" if cryptogram(2)[-1] != "0" else "1"), b"63", b"CRYPTOGRAM", {}),
                ("no tag 11", None, b"63", b"CRYPTOGRAM", {}),
                ("19 hex digits", cryptogram(2)[:-1], b"63", b"CRYPTOGRAM", {}),
                ("not hex", "Z" + cryptogram(2)[1:], b"63", b"CRYPTOGRAM", {}),
                ("signed for another amount", cryptogram(2, de4="000000002000"), b"63",
                 b"CRYPTOGRAM", {}),
                ("101 ahead of the counter", cryptogram(1 + 101), b"63", b"ATC_WINDOW", {}),
                ("card-on-file without tag 11", None, b"63", b"CRYPTOGRAM", {"de22": COF})):
            f = ask(value, **kw)
            assert_eq((f.get(39), f.get(44)), (rc, reason), case)
            assert_eq(e.seen(), forwarded, case + ": never at the issuer")
        f = ask(cryptogram(2).lower())
        assert_eq(f.get(39), b"00", "counter 2 in lower case")
        f = ask(cryptogram(3), de22=COF)
        assert_eq(f.get(39), b"00", "card-on-file, counter 3")
        f = ask(None, de22=CHIP)
        assert_eq(f.get(39), b"00", "chip: no TAVV asked")
        f = ask(cryptogram(2))
        assert_eq((f.get(39), f.get(44)), (b"63", b"ATC_REPLAY"), "counter 2 after 3")
        # a token of a range without a tavv key needs none
        _, f = e.ask(v.tok("x"), de22=ECOM)
        assert_eq(f.get(39), b"00", "no tavv key for 40001")


# --- counters ----------------------------------------------------------------

def test_metrics_count_checks_and_translations_by_result():
    v, imk = chip_vault()
    acq = v.key_add("zpk-acquirer", "ZA", ("--acquirer", ACQ), new_key(16))
    v.key_add("zpk-issuer", "ZI", ("--issuer", "0"), new_key(16))
    with Env(v) as e:
        card = card_of(v, imk, "c18")
        _, tags, de55 = e.chip(card, 1)
        e.ask(card.token, de55=de55)
        e.ask(card.token)
        e.ask(card.token, de55=with_tag(tags, 0x9F26, flip(tags[0x9F26], 1)))
        pin = pin_of(40)
        e.ask(v.tok("plain"), extra={32: ACQ, 52: E.pin_block0(acq, pin, v.tok("plain"))})
        e.ask(v.tok("plain"), extra={32: ACQ_NOKEY, 52: E.pin_block0(acq, pin, v.tok("plain"))})
        want = {'tokswitch_cryptogram_checks_total{result="ok"}': 1,
                'tokswitch_cryptogram_checks_total{result="atc_replay"}': 1,
                'tokswitch_cryptogram_checks_total{result="missing"}': 1,
                'tokswitch_cryptogram_checks_total{result="wrong"}': 1,
                'tokswitch_pin_translations_total{result="ok"}': 1,
                'tokswitch_pin_translations_total{result="no_acquirer_key"}': 1}
        for name, n in want.items():
            T.wait_for(lambda: e.sw.metric(name) == n, 5, "%s == %d" % (name, n))
        assert e.sw.metric("tokswitch_hsm_keys") >= 3, "tokswitch_hsm_keys counts the loaded keys"


def test_log_scan_finds_keys_and_pins():
    v = Vault({"s": dict(n=1)})
    key = new_key(16)
    SECRETS["keys"].append(key)
    pin = pin_of(50)
    clean = b"ts=x level=info event=started token=400012******1234\n"
    assert_eq(no_leaks(clean, v), [], "a clean line")
    assert no_leaks(clean + key.hex().upper().encode(), v), "a key in upper-case hex"
    assert no_leaks(clean + key, v), "a raw key"
    assert no_leaks(clean + pin.encode(), v), "a PIN"
    assert no_leaks(clean + v.pan("s").encode(), v), "a PAN"
    SECRETS["keys"].remove(key)


TESTS = [(n[len("test_"):], f) for n, f in list(globals().items())
         if n.startswith("test_") and callable(f)]

if __name__ == "__main__":
    try:
        rc = T.run_tap(TESTS, args.only)
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
    sys.exit(rc)
