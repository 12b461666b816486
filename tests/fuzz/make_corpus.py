#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into corpus/<target>/ (run
from anywhere). Each target's input layout is described at the top of its
tests/fuzz/fuzz_<target>.c. Files written here are named after what they
hold; crash inputs found by fuzzing are added by hand as crash-<what>, and
minimised fuzzing corpora (libFuzzer -merge=1) keep their hash names:
neither is touched here.
"""
import pathlib
import struct

HERE = pathlib.Path(__file__).resolve().parent
OUT = HERE / "corpus"
CONF = HERE.parent.parent / "config"
VECTORS = HERE.parent / "unit" / "iso8583" / "vectors"

LL = {2: 2, 32: 2, 35: 2, 44: 2}
LLL = {48: 3, 55: 3, 54: 3}


def body(mti, fields, hexbm=False):
    bm = [0, 0]
    for f in fields:
        bm[(f - 1) // 64] |= 1 << (63 - (f - 1) % 64)
    if bm[1]:
        bm[0] |= 1 << 63
    out = mti.encode()
    for w in range(2 if bm[1] else 1):
        out += (b"%016X" % bm[w]) if hexbm else struct.pack(">Q", bm[w])
    for f in sorted(fields):
        v = fields[f]
        v = v if isinstance(v, bytes) else v.encode()
        p = LL.get(f) or LLL.get(f) or 0
        if p:
            out += b"%0*d" % (p, len(v))
        out += v
    return out


def bin2(b):
    return struct.pack(">H", len(b)) + b


def ascii4(b):
    return b"%04d" % len(b) + b


AUTH = {
    2: "4895370012345678", 3: "000000", 4: "000000012500", 7: "1123101530",
    11: "123456", 14: "2712", 18: "5411", 22: "071", 32: "123456",
    35: "4895370012345678=27121011234500000", 37: "332710123456",
    41: "TERM0001", 42: "MERCHANT0000001",
    48: "1008DEVICE0111080A1B2C3D3016489537001234567831042712",
    49: "978",
    55: bytes.fromhex("9f2608010203040506070 89f360200 2a820219 80".replace(" ", "")),
}
RESP = {2: "4895370012345678", 3: "000000", 4: "000000012500", 11: "123456",
        38: "A1B2C3", 39: "00", 41: "TERM0001"}
DECLINE = {2: "4895370012345678", 11: "123456", 39: "14", 44: "TOKEN_UNKNOWN"}
ECHO = {7: "1123101530", 11: "000001", 70: "301"}
REVERSAL = dict(AUTH)
REVERSAL[90] = "010012345611231015300000012345600000000000"

seeds = {}
a = body("0100", AUTH)
seeds["default-0100"] = bytes([0, 255]) + bin2(a)
seeds["default-0100-split7"] = bytes([0, 6]) + bin2(a)
seeds["default-stream-keepalive"] = bytes([0, 12]) + bin2(a) + b"\0\0" + bin2(body("0110", RESP)) \
    + b"\0\0" + bin2(body("0110", DECLINE))
seeds["default-0800-echo"] = bytes([0, 3]) + bin2(body("0800", ECHO))
seeds["default-0400-reversal"] = bytes([0, 100]) + bin2(body("0400", REVERSAL))
zero2 = b"0800" + struct.pack(">QQ", (1 << 63) | (1 << 57), 0) + b"1123101530"
seeds["default-secondary-zero"] = bytes([0, 255]) + bin2(zero2)
seeds["default-max-header"] = bytes([0, 1]) + struct.pack(">H", 8192) + b"0100"
seeds["default-too-big"] = bytes([0, 0]) + struct.pack(">H", 8193)
seeds["default-truncated-field"] = bytes([0, 255]) + bin2(a[:-5])
seeds["default-trailing"] = bytes([0, 255]) + bin2(a + b"00")
seeds["default-bad-ll"] = bytes([0, 255]) + bin2(a[:12] + b"9" + a[13:])
seeds["default-de48-malformed"] = bytes([0, 255]) + bin2(body("0100", {3: "000000", 48: "30994895"}))
seeds["default-tlv-malformed"] = bytes([0, 255]) + bin2(body("0100", {55: b"\x9f\x26\x85\x01"}))
seeds["ascii4-0100"] = bytes([1, 255]) + ascii4(a)
seeds["ascii4-stream"] = bytes([1, 4]) + b"0000" + ascii4(body("0110", RESP)) + b"0000"
seeds["ascii4-bad-header"] = bytes([1, 255]) + b"00x1abcd"
seeds["hex-auth"] = bytes([2, 0]) + body("0100", {k: v for k, v in AUTH.items() if k != 55},
                                         hexbm=True)
seeds["hex-lowercase-bitmap"] = bytes([2, 0]) + b"0800" + b"0220000000000000" + b"1123101530" \
    + b"000001"
seeds["empty"] = bytes([0, 0])
for f in sorted(VECTORS.glob("*.dat")):
    seeds["hex-moov-" + f.stem] = bytes([2, 0]) + f.read_bytes()

corpora = {"frame": seeds}



# ---- engine targets (fuzz_engine.h) ----
def luhn(d):
    total = 0
    for i, c in enumerate(reversed(d)):
        v = int(c)
        if i % 2 == 0:
            v *= 2
            if v > 9:
                v -= 9
        total += v
    return str((10 - total % 10) % 10)


def number(prefix, i):
    d = prefix + str(i).zfill(15 - len(prefix))
    return d + luhn(d)


FE_OK, FE_SUSPENDED, FE_AMOUNT, FE_T4T, FE_LIMITED = range(5)
TOKENS = [number("4000", i + 1) for i in range(5)]
PANS = [number("512345", i + 1) for i in range(5)]
P_DEFAULT, P_ASCII4, P_SMALL, P_ASCII4_LARGE = range(4)
HEADER = {P_DEFAULT: bin2, P_SMALL: bin2, P_ASCII4: ascii4, P_ASCII4_LARGE: ascii4}


def sel(acq, iss, silent=False, standin=False):
    return acq | iss << 2 | (0x10 if silent else 0) | (0x20 if standin else 0)


def auth(tok, stan, **extra):
    f = {2: TOKENS[tok], 3: "000000", 4: "000000000500", 7: "1123031500", 11: stan,
         12: "031500", 13: "1123", 14: "3012", 22: "051",
         35: TOKENS[tok] + "=30121010000012300000", 37: "123456789012", 41: "TERM0001",
         42: "MERCHANT0000001", 49: "840"}
    for k, v in extra.items():
        k = int(k[1:])
        if v is None:
            f.pop(k, None)
        else:
            f[k] = v
    return f


def bcd(digits):
    if len(digits) % 2:
        digits += "F"
    return bytes.fromhex(digits)


DE55_LEAK = (b"\x9f\x26\x08" + bytes(8) + b"\x5a\x08" + bcd(PANS[FE_OK])
             + b"\x57\x13" + bcd(PANS[FE_OK] + "D30121010000012300000")[:19]
             + b"\x5f\x24\x03\x30\x12\x31")
acq = {}
for prof, name in ((P_DEFAULT, "default"), (P_ASCII4, "ascii4"), (P_SMALL, "small"),
                   (P_ASCII4_LARGE, "ascii4-9999")):
    h = HEADER[prof]
    acq[f"{name}-0100"] = bytes([sel(prof, prof), 255]) + h(body("0100", auth(FE_OK, "000101")))
    stream = b"".join(h(body("0100", auth(t, "%06d" % (200 + t)))) for t in range(5))
    acq[f"{name}-stream-every-token"] = bytes([sel(prof, prof), 6]) + stream
acq["default-to-ascii4"] = bytes([sel(P_DEFAULT, P_ASCII4), 255]) \
    + bin2(body("0100", auth(FE_T4T, "000301")))
acq["ascii4-to-small"] = bytes([sel(P_ASCII4, P_SMALL), 40]) \
    + ascii4(body("0100", auth(FE_OK, "000302", f48="1008DEVICE01" + "1" * 800)))
acq["ascii4-9999-near-limit"] = bytes([sel(P_ASCII4_LARGE, P_ASCII4_LARGE), 255]) \
    + ascii4(body("0100", auth(FE_OK, "000303", f48="1199" + "9" * 99 + "1099" + "Z" * 99
                                 + "12" + "00" * 0 + "")))
acq["default-silent-timeouts"] = bytes([sel(P_DEFAULT, P_DEFAULT, silent=True), 255]) \
    + bin2(body("0100", auth(FE_OK, "000401"))) + bin2(body("0100", auth(FE_AMOUNT, "000402")))
acq["default-standin"] = bytes([sel(P_DEFAULT, P_DEFAULT, silent=True, standin=True), 255]) \
    + bin2(body("0100", auth(FE_OK, "000403")))
acq["default-keepalive-partial"] = bytes([sel(P_DEFAULT, P_DEFAULT), 3]) + b"\0\0" \
    + bin2(body("0100", auth(FE_OK, "000501"))) + b"\0\0" \
    + bin2(body("0100", auth(FE_OK, "000502")))[:40]
acq["default-0800"] = bytes([sel(P_DEFAULT, P_DEFAULT), 255]) + bin2(body("0800", ECHO))
acq["default-0400"] = bytes([sel(P_DEFAULT, P_DEFAULT), 255]) \
    + bin2(body("0100", auth(FE_OK, "000601"))) \
    + bin2(body("0400", auth(FE_OK, "000602", f90="010000060111231031500000012345600000000000")))
acq["default-de55-pan"] = bytes([sel(P_DEFAULT, P_DEFAULT), 255]) \
    + bin2(body("0100", auth(FE_OK, "000701", f55=DE55_LEAK)))
acq["default-raw-pan"] = bytes([sel(P_DEFAULT, P_DEFAULT), 255]) \
    + bin2(body("0100", {**auth(FE_OK, "000702"), 2: PANS[FE_OK]}))
acq["default-response-mti"] = bytes([sel(P_DEFAULT, P_DEFAULT), 255]) + bin2(body("0110", RESP))
acq["default-too-big"] = bytes([sel(P_SMALL, P_SMALL), 255]) + struct.pack(">H", 1025) + b"0100"
acq["ascii4-bad-header"] = bytes([sel(P_ASCII4, P_ASCII4), 255]) + b"00x1abcd"
acq["default-duplicate-stan"] = bytes([sel(P_DEFAULT, P_DEFAULT), 255]) \
    + bin2(body("0100", auth(FE_OK, "000801"))) * 2
corpora["acquirer"] = acq

# fuzz_issuer.c: 4 requests (switch STANs 000002..000005 after the
# sign-on's 000001), for FE_OK, FE_T4T, FE_AMOUNT, FE_OK.
ISS_TOKENS = [FE_OK, FE_T4T, FE_AMOUNT, FE_OK]


def answer(i, rc="00", mti="0110", **extra):
    f = {2: PANS[ISS_TOKENS[i]], 3: "000000", 4: "000000000500", 7: "1123031500",
         11: "%06d" % (i + 2), 37: "123456789012", 38: "AB1234", 39: rc, 41: "TERM0001",
         42: "MERCHANT0000001", 49: "840"}
    for k, v in extra.items():
        k = int(k[1:])
        if v is None:
            f.pop(k, None)
        else:
            f[k] = v
    return body(mti, f)


iss = {}
for prof, name in ((P_DEFAULT, "default"), (P_ASCII4, "ascii4"), (P_SMALL, "small"),
                   (P_ASCII4_LARGE, "ascii4-9999")):
    h = HEADER[prof]
    iss[f"{name}-all-approved"] = bytes([sel(prof, prof), 255]) \
        + b"".join(h(answer(i)) for i in range(4))
    iss[f"{name}-split"] = bytes([sel(prof, prof), 4]) \
        + b"".join(h(answer(i, rc="05" if i % 2 else "00")) for i in range(4))
iss["default-to-ascii4"] = bytes([sel(P_DEFAULT, P_ASCII4), 255]) + ascii4(answer(0)) \
    + ascii4(answer(2, rc="51"))
iss["default-de55-pan"] = bytes([sel(P_DEFAULT, P_DEFAULT), 255]) \
    + bin2(answer(0, f55=DE55_LEAK))
iss["default-de35-pan"] = bytes([sel(P_DEFAULT, P_DEFAULT), 255]) \
    + bin2(answer(1, f35=PANS[FE_T4T] + "=30121010000012300000"))
iss["default-pan-in-de44"] = bytes([sel(P_DEFAULT, P_DEFAULT), 255]) \
    + bin2(answer(0, f44="X" + PANS[FE_OK]))
iss["default-late-duplicate"] = bytes([sel(P_DEFAULT, P_DEFAULT), 255]) + bin2(answer(0)) * 2 \
    + bin2(answer(3, rc="91"))
iss["default-wrong-stan"] = bytes([sel(P_DEFAULT, P_DEFAULT), 255]) \
    + bin2(answer(0, f11="999999"))
iss["default-0810-echo"] = bytes([sel(P_DEFAULT, P_DEFAULT), 255]) \
    + bin2(body("0800", {7: "1123101530", 11: "000777", 70: "301"})) \
    + bin2(body("0810", {7: "1123101530", 11: "000001", 39: "00", 70: "001"}))
iss["default-garbage-then-answer"] = bytes([sel(P_DEFAULT, P_DEFAULT), 255]) \
    + bin2(b"0110\xff\xff") + bin2(answer(2))
iss["default-bad-header"] = bytes([sel(P_ASCII4, P_ASCII4), 255]) + b"12x4" + answer(0)

corpora["issuer"] = iss

# ---- DE55 BER-TLV (fuzz_tlv.c): the bytes of DE55 ----
corpora["tlv"] = {
    "emv-arqc": bytes.fromhex("9f2608a1b2c3d4e5f60718 9f2701 80 9f100706010a03a00000"
                              " 9f3704deadbeef 9f3602002a 950500000000 00 9a03231123"
                              " 9c0100 9f02060000000005 00 5f2a020840 82021980"
                              .replace(" ", "")),
    "pan-tags": DE55_LEAK + b"\x9f\x6b\x13" + bcd(PANS[FE_OK] + "D3012101000001230")[:19],
    "long-lengths": b"\x9f\x10\x81\x80" + bytes(128) + b"\x70\x82\x01\x00" + bytes(256)
                    + b"\x71\x83\x00\x00\x02ab",
    "padding": b"\x00\x00\x82\x02\x19\x80\x00\x00\x00",
    "constructed": b"\x70\x0c\x5a\x08" + bcd(PANS[FE_OK]) + b"\x82\x00",
    "tag-too-long": b"\x9f\xff\xff\xff\x01\x00",
    "len-indefinite": b"\x9f\x26\x80\x00",
    "len-4-bytes": b"\x9f\x26\x84\x00\x00\x00\x01\x00",
    "value-past-end": b"\x9f\x26\x08\x01\x02",
    "empty": b"",
}

# ---- HTTP requests (fuzz_http.c): the bytes a client sends ----
corpora["http"] = {
    "metrics": b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9583\r\nUser-Agent: Prometheus/2.45\r\n"
               b"Accept: text/plain;version=0.0.4\r\nAuthorization: Bearer abc\r\n\r\n",
    "healthz-1.0": b"GET /healthz HTTP/1.0\r\n\r\n",
    "readyz-query": b"GET /readyz?verbose=1 HTTP/1.1\r\n\r\n",
    "post": b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
    "body-after-head": b"GET /metrics HTTP/1.1\r\n\r\nGET /x HTTP/1.1\r\n\r\n",
    "long-path": b"GET /" + b"a" * 200 + b" HTTP/1.1\r\n\r\n",
    "no-version": b"GET /metrics\r\n\r\n",
    "http2": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "incomplete": b"GET /metrics HTTP/1.1\r\nHost: x\r\n",
    "lf-only": b"GET /metrics HTTP/1.1\n\n",
}

# ---- config files (fuzz_config.c): the file's bytes ----
cfg = {"tokswitch.conf": (CONF / "tokswitch.conf").read_bytes()}
cfg["minimal"] = b"[server]\nvault = /v\nkey_file = /k\nno_state = true\n" \
    b"[issuer]\nhost = 127.0.0.1:9000\n"
cfg["issuers-routes"] = (b"[server]\nvault=/v\nkey_file=/k\nstate=/s\nworkers=4\n"
                         b"[issuer]\nhost = 10.0.0.1:9000, 10.0.0.2:9000\n"
                         b"host = [::1]:9001\ntimeout_ms = 1500\n"
                         b"[route]\n4000 = 0\n6011 = 1\ndefault = 0\n")
cfg["standin"] = (b"[standin]\nenabled = true\nmax_amount = 5000\nmodes = chip|contactless\n"
                  b"min_assurance = 5\non_timeout = yes\nwindow_s = 3600\n")
cfg["limits"] = (b"[limits]\nmax_frame = 9999\nmax_pending = 1024\nout_buf_bytes = 65536\n"
                 b"in_buf_bytes = 131072\nacq_reversal_memory = 3\n[server]\n"
                 b"profile = ascii4\nissuer_profile = ascii4\n")
cfg["bad-values"] = (b"[limits]\nmax_conns = -1\n[server]\nio = fast\nlisten = nohost\n"
                     b"key_file = secretsecretsecret\n")
cfg["unknown"] = b"[nosuch]\nkey = value-that-is-secret\n"
cfg["syntax"] = b"[server\nlisten\n= 1\n"
cfg["state"] = (b"[state]\nqueue_size = 4096\nmap_size_mb = 64\nsaf_lease_ms = 100\n"
                b"[issuer]\ntimeout_ms = 2000\n[server]\nstate = /s\nvault=/v\nkey_file=/k\n")
corpora["config"] = cfg

# ---- CSV import (fuzz_csv.c): the file's bytes ----
HDR = (b"token,pan,pan_expiry,token_expiry,status,trid,assurance_level,pos_modes,"
       b"merchant_ids,max_uses,amount_limit,currency,device_required,original_token,par,"
       b"token_ref,device_ref,valid_from,valid_until\n")


def row(i, **kw):
    f = {"token": number("4000", 100 + i), "pan": number("512345", 100 + i),
         "pan_expiry": "2911", "token_expiry": "3012", "status": "active",
         "trid": "12345678901", "assurance_level": "7", "pos_modes": "chip|contactless",
         "merchant_ids": "MERCHANT0000001|M2:12345:5411", "max_uses": "0",
         "amount_limit": "0", "currency": "", "device_required": "0", "original_token": "",
         "par": "PAR0000000000000000000000001", "token_ref": "TREF%d" % i, "device_ref": "",
         "valid_from": "0", "valid_until": "0"}
    f.update(kw)
    return ",".join(f.values()).encode() + b"\n"


corpora["csv"] = {
    "all-columns": HDR + row(1) + row(2, status="suspended", max_uses="3")
    + row(3, amount_limit="1000", currency="840", device_required="1", device_ref="DEV-1"),
    "minimal": b"token,pan,pan_expiry,token_expiry\n" + number("4000", 201).encode() + b","
    + number("512345", 201).encode() + b",2911,3012\n",
    "crlf-blank": HDR.replace(b"\n", b"\r\n") + b"\n" + row(4).replace(b"\n", b"\r\n") + b"\n",
    "bad-fields": HDR + row(5, pan_expiry="13") + row(6, status="gone") + row(7, trid="1")
    + row(8, pos_modes="teleport") + row(9, valid_from="x") + row(10, currency="8400"),
    "t4t": HDR + row(11) + row(12, original_token=number("4000", 111)),
    "wrong-count": HDR + b"1,2,3\n",
    "pan-in-token-range": HDR + row(13, pan=number("4000", 999)),
    "long-line": HDR + row(14, par="P" * 5000),
    "bad-header": b"token,pan,token\n1,2,3\n",
    "no-newline": b"token,pan,pan_expiry,token_expiry\n" + number("4000", 301).encode() + b","
    + number("512345", 301).encode() + b",2911,3012",
}

# ---- key files (fuzz_keys.c): the file's bytes ----
K1, K2, K3 = "11" * 32, "a2" * 32, "3C" * 32
corpora["keys"] = {
    "one-key": f"# tokswitch vault keys\nhmac {K1}\npan 1 {K2}\n".encode(),
    "rotated": f"hmac {K1}\npan 1 {K2}\npan 2 {K3}\npan 7 {K1}\n".encode(),
    "out-of-order": f"hmac {K1}\npan 9 {K2}\npan 3 {K3}\n".encode(),
    "tabs-crlf": f"hmac\t{K1}\r\npan\t1\t{K2}\r\n".encode(),
    "duplicate-id": f"hmac {K1}\npan 1 {K2}\npan 1 {K3}\n".encode(),
    "no-hmac": f"pan 1 {K2}\n".encode(),
    "short-key": f"hmac {K1}\npan 1 {K2[:-2]}\n".encode(),
    "bad-hex": f"hmac {K1[:-1]}g\npan 1 {K2}\n".encode(),
    "id-zero": f"hmac {K1}\npan 0 {K2}\n".encode(),
    "two-hmac": f"hmac {K1}\nhmac {K3}\npan 1 {K2}\n".encode(),
    "empty": b"",
}

# ---- stored SAF items (fuzz_saf.c): the value as LMDB holds it ----
msg = body("0400", REVERSAL)
tok = TOKENS[FE_LIMITED].encode()
corpora["saf"] = {
    "format1": struct.pack("<II", 0, len(msg)) + msg,
    "format2-use": struct.pack("<IIIB19sQ", 1, len(msg), 0, len(tok), tok, 1764750000000) + msg,
    "format2-advice": struct.pack("<IIIB19sQ", 0, len(msg), 1, 0, b"", 1764750000000) + msg,
    "format1-one-byte": struct.pack("<II", 3, 1) + b"x",
    "len-zero": struct.pack("<II", 0, 0),
    "len-too-big": struct.pack("<II", 0, 8193) + bytes(8193),
    "size-between": struct.pack("<II", 0, 4) + bytes(20),
    "token-len-too-big": struct.pack("<IIIB19sQ", 0, 1, 0, 20, b"", 0) + b"x",
    "short": b"\x01\x00\x00",
}

for target, items in corpora.items():
    d = OUT / target
    d.mkdir(parents=True, exist_ok=True)
    for name, data in items.items():
        (d / name).write_bytes(data)
    print(f"{len(items)} seeds in {d}")
