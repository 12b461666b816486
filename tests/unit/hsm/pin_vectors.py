#!/usr/bin/env python3
"""Recomputes the ISO 9564 vectors of test_pin.c and the key check values of
test_keys.c with python3 `cryptography` (not run by the tests: the figures
are written into them). The block layouts are written here from ISO 9564-1,
independently of src/hsm/pin.c; one format 0 result was also checked with
`openssl enc -des-ede -nopad` on the command line."""
import warnings
warnings.simplefilter("ignore")  # two-key TDES is deprecated in cryptography
from cryptography.hazmat.primitives.ciphers import Cipher, modes, algorithms
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.cmac import CMAC
def ecb(alg, data, enc=True):
    c = Cipher(alg, modes.ECB()); o = c.encryptor() if enc else c.decryptor()
    return o.update(data) + o.finalize()
def xor(a,b): return bytes(x^y for x,y in zip(a,b))
def f0(pin, pan, key):
    p = bytes.fromhex(("0%X" % len(pin) + pin).ljust(16, "F"))
    body = pan[:-1][-12:].rjust(12, "0")
    a = bytes.fromhex("0000" + body)
    return ecb(TripleDES(key), xor(p, a))
def f4(pin, pan, key, fill):
    p = bytes.fromhex(("4%X" % len(pin) + pin).ljust(16, "A")) + fill
    m = max(0, len(pan)-12)
    a = bytes.fromhex((("%X" % m) + pan.rjust(12, "0")).ljust(32, "0"))
    i1 = ecb(algorithms.AES(key), p)
    return ecb(algorithms.AES(key), xor(i1, a))
zpk_a = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
zpk_i = bytes.fromhex("89ABCDEF0123456776543210FEDCBA98")
zpk_a3 = bytes.fromhex("0123456789ABCDEFFEDCBA987654321011223344556677 88".replace(" ",""))
aes_a = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
aes_i = bytes.fromhex("F0E0D0C0B0A090807060504030201000F0E0D0C0B0A090807060504030201000")
tok, pan = "4895370000000015", "4111111111111111"
fill = bytes.fromhex("1122334455667788")
print("f0 tok acq", f0("1234", tok, zpk_a).hex().upper())
print("f0 pan iss", f0("1234", pan, zpk_i).hex().upper())
print("f0 pan iss 12digit pin", f0("123456789012", pan, zpk_i).hex().upper())
print("f0 19-digit pan tdes3", f0("98765", "6011000990139424123", zpk_a3).hex().upper())
print("f4 tok acq", f4("1234", tok, aes_a, fill).hex().upper())
print("f4 pan iss 256", f4("1234", pan, aes_i, fill).hex().upper())
print("f4 19 digit", f4("98765", "6011000990139424123", aes_a, fill).hex().upper())
print("f4 12 digit pan", f4("1234", "411111111111", aes_a, fill).hex().upper())
for k in (aes_a, aes_i):
    c = CMAC(algorithms.AES(k)); c.update(bytes(16)); print("aes kcv", c.finalize()[:5].hex().upper())
for k in (zpk_a, zpk_i, zpk_a3):
    print("tdes kcv", ecb(TripleDES(k), bytes(8))[:3].hex().upper())
# malformed clear fields, encrypted as the format would be
def f0raw(clear_hex, pan, key):
    body = pan[:-1][-12:].rjust(12, "0")
    return ecb(TripleDES(key), xor(bytes.fromhex(clear_hex), bytes.fromhex("0000" + body))).hex().upper()
def f4raw(clear_hex, pan, key):
    m = max(0, len(pan)-12)
    a = bytes.fromhex((("%X" % m) + pan.rjust(12, "0")).ljust(32, "0"))
    i1 = ecb(algorithms.AES(key), bytes.fromhex(clear_hex))
    return ecb(algorithms.AES(key), xor(i1, a)).hex().upper()
for c in ("141234FFFFFFFFFF", "031234FFFFFFFFFF", "0D1234FFFFFFFFFF", "041A34FFFFFFFFFF", "041234FFFFFFFFFE", "04123AFFFFFFFFFF"):
    print("f0bad", c, f0raw(c, tok, zpk_a))
for c in ("341234AAAAAAAAAA1122334455667788", "4D1234AAAAAAAAAA1122334455667788", "441234AAAAAAAAAB1122334455667788", "44123AAAAAAAAAAA1122334455667788"):
    print("f4bad", c, f4raw(c, tok, aes_a))
