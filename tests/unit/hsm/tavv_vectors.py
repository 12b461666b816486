#!/usr/bin/env python3
"""Computes the token cryptogram (DE48 tag 11) vectors of test_tavv.c with
python3 `cryptography` (not run by the tests: the figures are written into
them). The message layout is written here from docs/wire.md ("DE48 tag 11"),
independently of src/hsm/tavv.c:

  "TSWTAVV1" || counter (2 bytes, big endian) || token length (1 byte)
  || token || DE4 (12 digits) || DE49 (3 digits, "000" when absent)
  || DE42 length after trimming trailing spaces (1 byte) || DE42 trimmed

and the value is the counter as 4 hex digits, then the first 8 bytes of
AES-CMAC under the tavv key over that message as 16 hex digits."""
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.cmac import CMAC


def message(counter, token, amount, currency, merchant):
    de42 = (merchant or "").rstrip(" ")
    return (b"TSWTAVV1" + counter.to_bytes(2, "big") + bytes([len(token)])
            + token.encode() + amount.encode() + (currency or "000").encode()
            + bytes([len(de42)]) + de42.encode())


def tavv(key, counter, token, amount, currency, merchant):
    c = CMAC(algorithms.AES(key))
    c.update(message(counter, token, amount, currency, merchant))
    return "%04X" % counter + c.finalize()[:8].hex().upper()


aes128 = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
aes256 = bytes.fromhex("F0E0D0C0B0A090807060504030201000F0E0D0C0B0A090807060504030201000")
cases = [
    ("aes128, DE42 space-padded", aes128, 1, "4895370000000015", "000000012500", "840",
     "MERCHANT0001   "),
    ("aes256, no DE49, no DE42, counter FFFF", aes256, 0xFFFF, "4895370000000015123",
     "000000000100", None, None),
    ("aes128, 15-character DE42 with a space inside", aes128, 0x0100, "489537000000",
     "999999999999", "978", "SHOP 42 LONDON1"),
    ("aes256, counter 0", aes256, 0, "4111111111111111", "000000000000", "036", "X"),
]
for name, key, counter, token, amount, currency, merchant in cases:
    print("%-42s %s  message %s" % (name, tavv(key, counter, token, amount, currency, merchant),
                                    message(counter, token, amount, currency, merchant).hex()))
# the check value of each key, as tokvault prints it (AES-CMAC of 16 zeros)
for k in (aes128, aes256):
    c = CMAC(algorithms.AES(k)); c.update(bytes(16)); print("kcv", c.finalize()[:5].hex().upper())
