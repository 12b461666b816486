"""A small EMV card and terminal in Python, for the end-to-end tests of the
switch's card cryptography. Written from the standards, not from the
switch's C (src/hsm), so that the two check each other:

- EMV 4.3 Book 2 Annex A1.4.1: ICC master key derivation, option A
- EMV 4.3 Book 2 Annex A1.3: the common session key (Visa CVN 18,
  Mastercard CVN 20); Mastercard's CVN 16 session key (ATC and
  unpredictable number in the diversification data)
- ISO/IEC 9797-1 MAC algorithm 3 (the retail MAC), padding methods 1 and 2
- the ARQC over the data include/tsw/hsm.h tsw_hsm_arqc_verify documents
- ARPC method 1 (ARQC xor ARC, TDES) and method 2 (MAC over ARQC || CSU)
- DE55 as BER-TLV, with the 9F10 layouts the switch reads (src/hsm/de55.c)
- ISO 9564-1 PIN blocks, format 0 (TDES) and format 4 (AES)
- the token cryptogram of DE48 tag 11 (TAVV: AES-CMAC, /work crypto spec)

self_test() checks it against every figure of
shared/vectors/emv/arqc-vectors.md and raises AssertionError naming the
first one that does not match. `python3 emvcard.py` runs it.
"""
import os

from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

try:  # cryptography >= 43 keeps TDES among the "decrepit" algorithms
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
except ImportError:  # Debian 12's python3-cryptography (38)
    TripleDES = algorithms.TripleDES

BLOCK = 8
ZERO8 = bytes(BLOCK)


# --- block ciphers ---------------------------------------------------------

def _ecb(alg, data, decrypt=False):
    c = Cipher(alg, modes.ECB())
    op = c.decryptor() if decrypt else c.encryptor()
    return op.update(data) + op.finalize()


def tdes(key, data, decrypt=False):
    """TDES ECB (key 16 or 24 bytes; 16 is K1 K2 K1)."""
    if len(key) not in (16, 24):
        raise ValueError("TDES key of %d bytes" % len(key))
    if len(key) == 16:  # newer cryptography warns on 16-byte keys
        key = key + key[:8]
    return _ecb(TripleDES(key), data, decrypt)


def des(key8, data, decrypt=False):
    """Single DES ECB, as TDES with K1 = K2 (= K3)."""
    return _ecb(TripleDES(key8 * 3), data, decrypt)


def aes(key, data, decrypt=False):
    return _ecb(algorithms.AES(key), data, decrypt)


def xor(a, b):
    return bytes(x ^ y for x, y in zip(a, b))


def odd_parity(key):
    """Each byte's low bit set so that the byte has odd parity."""
    out = bytearray()
    for b in key:
        hi = b & 0xFE
        out.append(hi | (bin(hi).count("1") % 2 == 0))
    return bytes(out)


def kcv_tdes(key, n=3):
    """TDES key check value: TDES of 8 zero bytes, the first n bytes."""
    return tdes(key, ZERO8)[:n]


def kcv_aes(key, n=5):
    """AES key check value (ANSI X9.24-1:2017, CMAC method): the leftmost
    n bytes of AES-CMAC over 16 zero bytes."""
    c = cmac.CMAC(algorithms.AES(key))
    c.update(bytes(16))
    return c.finalize()[:n]


def aes_cmac(key, data):
    c = cmac.CMAC(algorithms.AES(key))
    c.update(data)
    return c.finalize()


# --- ISO/IEC 9797-1 ----------------------------------------------------------

def pad(data, method):
    """Padding method 1: zeros to a whole block (one zero block when data
    is empty); method 2: 0x80 then zeros to a whole block."""
    if method == 1:
        if not data:
            return ZERO8
        return data + bytes(-len(data) % BLOCK)
    if method == 2:
        data = data + b"\x80"
        return data + bytes(-len(data) % BLOCK)
    raise ValueError("padding method %r" % method)


def mac_alg3(key, data, method):
    """ISO/IEC 9797-1 MAC algorithm 3 under a 2-key TDES key: CBC single DES
    under K1 over the padded data, then the last output decrypted under K2
    and encrypted under K1. 8 bytes."""
    k1, k2 = key[:8], key[8:16]
    h, padded = ZERO8, pad(data, method)
    for i in range(0, len(padded), BLOCK):
        h = des(k1, xor(h, padded[i:i + BLOCK]))
    return des(k1, des(k2, h, decrypt=True))


# --- EMV keys ----------------------------------------------------------------

def icc_mk(imk, pan, psn):
    """EMV option A: Y = the rightmost 16 digits of PAN || PSN (two digits;
    left-padded with zeros when shorter) as BCD; MK = TDES(Y) || TDES(Y xor
    FF..FF) under the IMK, odd parity. psn: int 0..99."""
    digits = (pan + "%02d" % psn)[-16:].rjust(16, "0")
    y = bytes.fromhex(digits)
    return odd_parity(tdes(imk, y) + tdes(imk, xor(y, b"\xff" * 8)))


def session_key(mk, atc, un=None):
    """EMV common session key (Book 2 A1.3): R = ATC || 00 .. 00; the left
    half from R with byte 2 F0, the right half with byte 2 0F. Mastercard
    CVN 16 (un given): R = ATC || 00 00 || UN."""
    r = atc + bytes(2) + (un if un is not None else bytes(4))
    left = r[:2] + b"\xf0" + r[3:]
    right = r[:2] + b"\x0f" + r[3:]
    return odd_parity(tdes(mk, left) + tdes(mk, right))


def ac_key(mk, cvn, atc, un):
    """The key a CVN's cryptogram is a MAC under."""
    if cvn == 10:
        return mk
    if cvn == 16:
        return session_key(mk, atc, un)
    if cvn in (18, 20):
        return session_key(mk, atc)
    raise ValueError("CVN %r" % cvn)


# --- 9F10 issuer application data --------------------------------------------

def iad(cvn, cvr):
    """9F10 as the card would send it. Visa (CVN 10, 18): 06 (the length
    of what follows up to the CVR), DKI 01, the CVN, the CVR (4 bytes, its
    own length byte 03 first). Mastercard M/Chip (16, 20): DKI 01, the CVN,
    the 6-byte CVR, then 9 zero bytes (DAC, counters) and FF, 18 bytes as in
    the vectors."""
    if cvn in (10, 18):
        assert len(cvr) == 4 and cvr[0] == 3, "Visa CVR: 4 bytes, length byte 03 first"
        return bytes([6, 1, cvn]) + cvr
    if cvn in (16, 20):
        assert len(cvr) == 6, "Mastercard CVR: 6 bytes"
        return bytes([1, cvn]) + cvr + bytes(9) + b"\xff"
    raise ValueError("CVN %r" % cvn)


def cvr_of(cvn, iad_bytes):
    if cvn in (10, 18):
        return iad_bytes[3:7]
    return iad_bytes[2:8]


# the terminal data of the MAC input, in its order, with EMV lengths
MAC_TAGS = [(0x9F02, 6), (0x9F03, 6), (0x9F1A, 2), (0x95, 5), (0x5F2A, 2), (0x9A, 3),
            (0x9C, 1), (0x9F37, 4), (0x82, 2), (0x9F36, 2)]


def arqc_data(cvn, tags):
    """The MAC input of CVN cvn from tags ({tag: bytes}, 9F10 included):
    9F02 9F03 9F1A 95 5F2A 9A 9C 9F37 82 9F36, then the CVR (CVN 10: 4
    bytes; 16, 20: 6 bytes) or all of 9F10 (CVN 18); and the padding."""
    out = b""
    for tag, ln in MAC_TAGS:
        v = tags[tag]
        assert len(v) == ln, "tag %X: %d bytes, EMV says %d" % (tag, len(v), ln)
        out += v
    if cvn == 18:
        return out + tags[0x9F10], 2
    return out + cvr_of(cvn, tags[0x9F10]), 1 if cvn == 10 else 2


def arqc(mk, cvn, tags):
    key = ac_key(mk, cvn, tags[0x9F36], tags[0x9F37])
    data, method = arqc_data(cvn, tags)
    return mac_alg3(key, data, method)


def arpc1(key, arqc_bytes, arc):
    """ARPC method 1: TDES(ARQC xor (ARC || 00 * 6)); arc: 2 bytes."""
    return tdes(key, xor(arqc_bytes, arc + bytes(6)))


def arpc2(sk, arqc_bytes, csu, prop=b""):
    """ARPC method 2: the first 4 bytes of MAC algorithm 3 (padding 2) over
    ARQC || CSU || proprietary authentication data, under the session key."""
    return mac_alg3(sk, arqc_bytes + csu + prop, 2)[:4]


def tag91(mk, cvn, tags, de39):
    """The issuer authentication data the switch must send for an answer
    with DE39 de39 (2 chars): method 1 for CVN 10, 16, 20: ARPC || ARC,
    ARC = DE39's ASCII bytes, keyed with the ICC MK (10, 16) or the session
    key (20); method 2 for CVN 18: ARPC || CSU, CSU 00800000 on approval
    (DE39 00), else 00000000."""
    a = tags[0x9F26]
    if cvn == 18:
        csu = bytes.fromhex("00800000" if de39 == "00" else "00000000")
        return arpc2(session_key(mk, tags[0x9F36]), a, csu) + csu
    arc = de39.encode()
    key = mk if cvn in (10, 16) else session_key(mk, tags[0x9F36])
    return arpc1(key, a, arc) + arc


# --- BER-TLV -----------------------------------------------------------------

def tlv(tag, value):
    """One BER-TLV object: tag bytes as the number's big-endian bytes,
    definite length (short form, or 81 / 82 long form)."""
    t = tag.to_bytes((tag.bit_length() + 7) // 8 or 1, "big")
    n = len(value)
    if n < 0x80:
        ln = bytes([n])
    elif n < 0x100:
        ln = b"\x81" + bytes([n])
    else:
        ln = b"\x82" + n.to_bytes(2, "big")
    return t + ln + value


def tlv_parse(data):
    """Top-level BER-TLV objects of data -> [(tag, value)] in order.
    Raises ValueError on anything malformed."""
    out, i = [], 0
    while i < len(data):
        if data[i] in (0x00, 0xFF):  # padding between objects
            i += 1
            continue
        start = i
        i += 1
        if data[start] & 0x1F == 0x1F:
            while True:
                if i >= len(data):
                    raise ValueError("tag runs past the end")
                i += 1
                if not data[i - 1] & 0x80:
                    break
        tag = int.from_bytes(data[start:i], "big")
        if i >= len(data):
            raise ValueError("no length")
        n = data[i]
        i += 1
        if n & 0x80:
            k = n & 0x7F
            if k == 0 or k > 3 or i + k > len(data):
                raise ValueError("bad long length")
            n = int.from_bytes(data[i:i + k], "big")
            i += k
        if i + n > len(data):
            raise ValueError("value runs past the end")
        out.append((tag, data[i:i + n]))
        i += n
    return out


# DE55 tag order of a terminal (any order is valid BER-TLV)
DE55_ORDER = [0x9F26, 0x9F27, 0x9F10, 0x9F37, 0x9F36, 0x95, 0x9A, 0x9C, 0x9F02, 0x5F2A,
              0x82, 0x9F1A, 0x9F03, 0x5F34]


class Card:
    """A device personalised with token (its application PAN), PSN psn and
    the ICC master key derived from imk; makes the DE55 of a transaction."""

    def __init__(self, imk, token, cvn, psn=0):
        self.token, self.cvn, self.psn = token, cvn, psn
        self.mk = icc_mk(imk, token, psn)

    def tags(self, atc, amount="000000001000", currency="0840", country="0840",
             date="261203", un=None, tvr="0000000000", cvr=None, with_psn=False):
        """The card's and terminal's data of one transaction ({tag: bytes}),
        with the ARQC. amount: DE4's 12 digits."""
        if cvr is None:
            cvr = bytes.fromhex("03A0A000" if self.cvn in (10, 18) else "A00003220000")
        t = {0x9F02: bytes.fromhex(amount), 0x9F03: bytes(6), 0x9F1A: bytes.fromhex(country),
             0x95: bytes.fromhex(tvr), 0x5F2A: bytes.fromhex(currency),
             0x9A: bytes.fromhex(date), 0x9C: b"\x00",
             0x9F37: un if un is not None else os.urandom(4),
             0x82: bytes.fromhex("1980"), 0x9F36: atc.to_bytes(2, "big"),
             0x9F10: iad(self.cvn, cvr), 0x9F27: b"\x80"}
        if with_psn:
            t[0x5F34] = bytes.fromhex("%02d" % self.psn)
        t[0x9F26] = arqc(self.mk, self.cvn, t)
        return t

    def de55(self, atc, **kw):
        """(DE55 bytes, tags) for a transaction with ATC atc."""
        t = self.tags(atc, **kw)
        return de55_of(t), t

    def tag91(self, tags, de39):
        return tag91(self.mk, self.cvn, tags, de39)


def de55_of(tags):
    return b"".join(tlv(tag, tags[tag]) for tag in DE55_ORDER if tag in tags)


# --- ISO 9564-1 PIN blocks -----------------------------------------------------

def _pin_field(control, pin, fill_nibble):
    assert 4 <= len(pin) <= 12 and pin.isdigit(), "PIN of 4..12 digits"
    return bytes.fromhex("%X%X" % (control, len(pin)) + pin + fill_nibble * (14 - len(pin)))


def pan_field0(pan):
    """Format 0: 0000 then the 12 rightmost PAN digits before the check
    digit."""
    return bytes.fromhex("0000" + pan[:-1][-12:].rjust(12, "0"))


def pin_clear0(pin, pan):
    """The clear format 0 block: PIN field (0, length, PIN, F fill) xor
    the PAN field."""
    return xor(_pin_field(0, pin, "F"), pan_field0(pan))


def pin_block0(zpk, pin, pan):
    return tdes(zpk, pin_clear0(pin, pan))


def pin_decode0(zpk, block, pan):
    """PIN of a format 0 block under zpk bound to pan; raises ValueError
    when it is not a well-formed format 0 block for that PAN."""
    f = xor(tdes(zpk, block, decrypt=True), pan_field0(pan)).hex().upper()
    return _pin_check(f, "0", "F")


def _pin_check(f, control, fill):
    if f[0] != control:
        raise ValueError("control nibble %s, not %s" % (f[0], control))
    n = int(f[1], 16)
    if not 4 <= n <= 12:
        raise ValueError("PIN length %d" % n)
    pin = f[2:2 + n]
    if not pin.isdigit() or f[2 + n:16] != fill * (14 - n):
        raise ValueError("not a well-formed PIN field")
    return pin


def pan_field4(pan):
    """Format 4: M (PAN length - 12, 0 when shorter), the PAN (left-padded
    with zeros to 12 digits), zeros to 32 nibbles."""
    m = max(len(pan) - 12, 0)
    s = "%X" % m + pan.rjust(12, "0")
    return bytes.fromhex(s + "0" * (32 - len(s)))


def pin_block4(zpk, pin, pan, fill=None):
    """Format 4 (ISO 9564-1:2017) under an AES key: PIN field = 4, length,
    PIN, A fill to 16 nibbles, then 8 random bytes; block = E(E(PIN field)
    xor PAN field)."""
    field = _pin_field(4, pin, "A") + (fill if fill is not None else os.urandom(8))
    return aes(zpk, xor(aes(zpk, field), pan_field4(pan)))


def pin_decode4(zpk, block, pan):
    """PIN of a format 4 block under zpk bound to pan (ValueError when
    not well formed)."""
    field = aes(zpk, xor(aes(zpk, block, decrypt=True), pan_field4(pan)), decrypt=True)
    return _pin_check(field.hex().upper(), "4", "A")


# --- token cryptogram (DE48 tag 11) -------------------------------------------

def tavv(key, counter, token, de4, de49="840", de42=None):
    """20 hex digits: the counter (4 hex) then the first 8 bytes of AES-CMAC
    over "TSWTAVV1" || counter (2 bytes) || len(token) || token || DE4 ||
    DE49 ("000" when absent: pass None) || len(DE42 trimmed) || DE42
    trimmed of trailing spaces."""
    mid = (de42 or "").rstrip(" ").encode()
    data = (b"TSWTAVV1" + counter.to_bytes(2, "big") + bytes([len(token)]) + token.encode() +
            de4.encode() + (de49 if de49 is not None else "000").encode() +
            bytes([len(mid)]) + mid)
    return "%04X" % counter + aes_cmac(key, data)[:8].hex().upper()


# --- self test against shared/vectors/emv/arqc-vectors.md --------------------

def _check(what, got, want_hex):
    want = bytes.fromhex(want_hex)
    if got != want:
        raise AssertionError("emvcard vector %s: computed %s, the vector says %s"
                             % (what, got.hex().upper(), want_hex.upper()))


def self_test():
    """Every figure of arqc-vectors.md, plus the textbook format 0 PIN
    block. Raises AssertionError naming the first mismatch."""
    h = bytes.fromhex
    imk = h("0123456789ABCDEFFEDCBA9876543210")
    mk = icc_mk(imk, "1234567890123456", 0)
    _check("ICC MK KCV", tdes(mk, ZERO8)[:2], "BAB0")

    visa = {0x9F02: h("000000004000"), 0x9F03: h("000000000000"), 0x9F1A: h("0124"),
            0x95: h("8000048000"), 0x5F2A: h("0124"), 0x9A: h("191105"), 0x9C: h("01"),
            0x9F37: h("52BF4585"), 0x82: h("1800"), 0x9F36: h("001C")}
    # CVN 10: the CVR 03A06010 ends the data (a 9F10 06 01 0A 03A06010)
    t10 = {**visa, 0x9F10: h("06010A03A06010")}
    _check("CVN 10 MAC input end", arqc_data(10, t10)[0][-4:], "03A06010")
    t10[0x9F26] = arqc(mk, 10, t10)
    _check("CVN 10 ARQC", t10[0x9F26], "29CCA15AE665FA2E")
    _check("CVN 10 ARPC method 1 ARC 3030", arpc1(mk, t10[0x9F26], h("3030")),
           "28993816AFAE4AEB")
    _check("CVN 10 tag 91 for DE39 00", tag91(mk, 10, t10, "00"), "28993816AFAE4AEB3030")

    t18 = {**visa, 0x9F10: h("06011203A0B800")}
    sk = session_key(mk, t18[0x9F36])
    _check("CVN 18 session key KCV", tdes(sk, ZERO8)[:2], "22C8")
    t18[0x9F26] = arqc(mk, 18, t18)
    _check("CVN 18 ARQC", t18[0x9F26], "7A788EA6B8A3E733")
    _check("CVN 18 ARPC method 2 CSU 00000000", arpc2(sk, t18[0x9F26], h("00000000")),
           "9AF514C1")
    _check("CVN 18 tag 91 for a decline", tag91(mk, 18, t18, "05"), "9AF514C100000000")

    mc = {0x9F02: h("000000009999"), 0x9F03: h("000000000000"), 0x9F1A: h("0124"),
          0x95: h("8000000000"), 0x5F2A: h("0124"), 0x9A: h("209906"), 0x9C: h("00"),
          0x9F37: h("ABCDEF12"), 0x82: h("1800"), 0x9F36: h("001C")}
    t16 = {**mc, 0x9F10: h("0110A00003220000000000000000000000FF")}
    sk16 = session_key(mk, t16[0x9F36], t16[0x9F37])
    _check("CVN 16 session key KCV", tdes(sk16, ZERO8)[:2], "2FD5")
    t16[0x9F26] = arqc(mk, 16, t16)
    _check("CVN 16 ARQC", t16[0x9F26], "24CCF3DEE3158C70")
    _check("CVN 16 ARPC method 1 ARC 0010 (ICC MK)", arpc1(mk, t16[0x9F26], h("0010")),
           "73F6BBF389A6586C")

    t20 = {**mc, 0x9F10: h("0114A00003220000000000000000000000FF")}
    sk20 = session_key(mk, t20[0x9F36])
    _check("CVN 20 session key KCV", tdes(sk20, ZERO8)[:2], "22C8")
    t20[0x9F26] = arqc(mk, 20, t20)
    _check("CVN 20 ARQC", t20[0x9F26], "CD29615D6452E70E")
    _check("CVN 20 ARPC method 1 ARC 0010 (session key)", arpc1(sk20, t20[0x9F26], h("0010")),
           "DFD0956606B68D64")

    # the 9F10 layouts the card writes are the ones the vectors use
    _check("Visa 9F10 CVN 18", iad(18, h("03A0B800")), "06011203A0B800")
    _check("M/Chip 9F10 CVN 16", iad(16, h("A00003220000")),
           "0110A00003220000000000000000000000FF")
    # BER-TLV: two-byte tags, and a round trip of a DE55
    _check("TLV 9F36", tlv(0x9F36, h("001C")), "9F3602001C")
    parsed = dict(tlv_parse(de55_of(t20)))
    if parsed != t20:
        raise AssertionError("emvcard: DE55 does not parse back to its tags")

    # ISO 9564-1 format 0, the standard's example: PIN 1234, PAN
    # 43219876543210987: PIN field 041234FFFFFFFFFF xor PAN field
    # 0000987654321098 (the 12 digits before the check digit 7)
    _check("format 0 clear block", pin_clear0("1234", "43219876543210987"), "0412AC89ABCDEF67")
    zpk = h("0123456789ABCDEFFEDCBA9876543210")
    b0 = pin_block0(zpk, "1234", "43219876543210987")
    _check("format 0 block", tdes(zpk, b0, decrypt=True), "0412AC89ABCDEF67")
    if pin_decode0(zpk, b0, "43219876543210987") != "1234":
        raise AssertionError("emvcard: format 0 block does not decode")
    # format 4: PAN field M=4 for 16 digits ... 4321987654321098 ... zeros
    _check("format 4 PAN field", pan_field4("4321987654321098"),
           "44321987654321098000000000000000")
    _check("format 4 PAN field, 12 digits", pan_field4("432198765432"),
           "04321987654320000000000000000000")
    k4 = h("00112233445566778899AABBCCDDEEFF")
    fill = h("0102030405060708")
    b4 = pin_block4(k4, "1234", "4321987654321098", fill)
    inner = xor(aes(k4, b4, decrypt=True), pan_field4("4321987654321098"))
    _check("format 4 PIN field", aes(k4, inner, decrypt=True),
           "441234AAAAAAAAAA0102030405060708")
    if pin_decode4(k4, b4, "4321987654321098") != "1234":
        raise AssertionError("emvcard: format 4 block does not decode")
    for bad in (lambda: pin_decode0(zpk, b0, "43219876543210995"),
                lambda: pin_decode4(k4, b4, "4321987654321106")):
        try:
            bad()
        except ValueError:
            continue
        raise AssertionError("emvcard: a PIN block decoded under another PAN")
    # TAVV: the message layout, spelled out
    key = h("000102030405060708090A0B0C0D0E0F")
    msg = (b"TSWTAVV1" + b"\x00\x07" + b"\x10" + b"4000123412341234" + b"000000001000" + b"840" +
           b"\x0f" + b"MERCHANT0000001")
    want = "0007" + aes_cmac(key, msg)[:8].hex().upper()
    if tavv(key, 7, "4000123412341234", "000000001000", "840", "MERCHANT0000001  ") != want:
        raise AssertionError("emvcard: TAVV layout")


if __name__ == "__main__":
    self_test()
    print("emvcard: every vector matches")
