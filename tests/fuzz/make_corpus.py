#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_frame into corpus/ (run from anywhere).

Input layout (fuzz_frame.c): byte 0 profile (0 default, 1 ascii4,
2 hexbitmap), byte 1 chunk size - 1, then the stream. Crash inputs found
by fuzzing are added to corpus/ by hand as crash-<what>.
"""
import pathlib
import struct

HERE = pathlib.Path(__file__).resolve().parent
OUT = HERE / "corpus"
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

OUT.mkdir(exist_ok=True)
for name, data in seeds.items():
    (OUT / name).write_bytes(data)
print(f"{len(seeds)} seeds in {OUT}")
