/* ISO 9564-1 PIN blocks: format 0 under TDES (8 bytes) and format 4 under
 * AES (16 bytes, ISO 9564-1:2017). The clear PIN field of a block lives in
 * one stack buffer per call (`clear`), wiped before every return. */
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <string.h>

#include "internal.h"
#include "tsw/error.h"

#define F0_BYTES 8u
#define F4_BYTES 16u
#define F0_PAN_DIGITS 12u /* rightmost, before the check digit */
#define F4_PAN_DIGITS_MIN 12u
#define F4_FILL_OFF 8u /* bytes 8..15 of the format 4 PIN field: random */
#define F0_CONTROL 0x0u
#define F4_CONTROL 0x4u
#define F0_PAD 0xfu
#define F4_PAD 0xau

static bool is_aes(const struct soft_key *k)
{
	return k->base.info.alg == TSW_HSM_AES128 || k->base.info.alg == TSW_HSM_AES256;
}

/* ECB under k: AES through the session's EVP context, TDES over the
 * schedules the key's slot holds (no key schedule per call). */
static int ecb(struct soft_session *s, const struct soft_key *k, int enc, const uint8_t *in,
	       size_t len, uint8_t *out)
{
	if (is_aes(k))
		return hsm__soft_ecb(s, (enum tsw_hsm_alg)k->base.info.alg, k->bytes, enc, in, len,
				     out);
	hsm__tdes_ecb(k, enc, in, len, out);
	return 0;
}

static uint8_t nib(const uint8_t *b, size_t i)
{
	return i % 2 ? b[i / 2] & 0x0f : b[i / 2] >> 4;
}

static void set_nib(uint8_t *b, size_t i, uint8_t v)
{
	b[i / 2] = i % 2 ? (uint8_t)((b[i / 2] & 0xf0) | v) : (uint8_t)((b[i / 2] & 0x0f) | v << 4);
}

/* Format 0 PAN field: 0000, then the 12 rightmost PAN digits before the
 * check digit (zeros on the left of a 12-digit PAN). */
static void f0_pan_field(const char *pan, size_t pan_len, uint8_t out[F0_BYTES])
{
	size_t body = pan_len - 1; /* without the check digit */

	memset(out, 0, F0_BYTES);
	for (size_t i = 0; i < F0_PAN_DIGITS; i++) {
		/* nibble 4 + i holds digit body - 12 + i, zero when before the PAN */
		if (body + i >= F0_PAN_DIGITS)
			set_nib(out, 4 + i, (uint8_t)(pan[body + i - F0_PAN_DIGITS] - '0'));
	}
}

/* Format 4 PAN field: M (PAN length - 12), the PAN (left-padded with
 * zeros to 12 digits), zeros to 32 nibbles. */
static void f4_pan_field(const char *pan, size_t pan_len, uint8_t out[F4_BYTES])
{
	size_t m = pan_len > F4_PAN_DIGITS_MIN ? pan_len - F4_PAN_DIGITS_MIN : 0;
	size_t pad = pan_len < F4_PAN_DIGITS_MIN ? F4_PAN_DIGITS_MIN - pan_len : 0;

	memset(out, 0, F4_BYTES);
	set_nib(out, 0, (uint8_t)m);
	for (size_t i = 0; i < pan_len; i++)
		set_nib(out, 1 + pad + i, (uint8_t)(pan[i] - '0'));
}

/* The first 16 nibbles of a PIN field: control, length, digits, pad. */
static void pin_field(uint8_t control, uint8_t pad, const char *pin, size_t pin_len,
		      uint8_t out[F0_BYTES])
{
	set_nib(out, 0, control);
	set_nib(out, 1, (uint8_t)pin_len);
	for (size_t i = 0; i < 14; i++)
		set_nib(out, 2 + i, i < pin_len ? (uint8_t)(pin[i] - '0') : pad);
}

/* Checks the first 16 nibbles of a PIN field. 0, or -TSW_E_PIN_FORMAT
 * when nibbles 0..3 are wrong, or at_tail when only the rest is (format
 * 0: those nibbles do not depend on the PAN). */
static int pin_field_check(const uint8_t *f, uint8_t control, uint8_t pad, int at_tail)
{
	uint8_t n = nib(f, 1);

	if (nib(f, 0) != control || n < TSW_HSM_PIN_DIGITS_MIN || n > TSW_HSM_PIN_DIGITS_MAX ||
	    nib(f, 2) > 9 || nib(f, 3) > 9)
		return -TSW_E_PIN_FORMAT;
	for (size_t i = 2; i < 16; i++) {
		uint8_t v = nib(f, i);

		if (i < 2u + n ? v > 9 : v != pad)
			return at_tail;
	}
	return 0;
}

/* clear (16 bytes, format 4) -> block: E(E(clear) xor PAN field). */
static int f4_encrypt(struct soft_session *s, const struct soft_key *k, const char *pan,
		      size_t pan_len, uint8_t *clear, uint8_t *out)
{
	uint8_t pf[F4_BYTES], t[F4_BYTES];
	int r;

	f4_pan_field(pan, pan_len, pf);
	r = ecb(s, k, 1, clear, F4_BYTES, t);
	if (r < 0)
		return r;
	for (size_t i = 0; i < F4_BYTES; i++)
		t[i] ^= pf[i];
	return ecb(s, k, 1, t, F4_BYTES, out);
}

/* Decrypts block into clear (the PIN field) and checks its format. */
static int decode(struct soft_session *s, const struct soft_key *k, const char *pan, size_t pan_len,
		  const uint8_t *block, uint8_t *clear)
{
	uint8_t pf[F4_BYTES];
	int r;

	if (!is_aes(k)) {
		r = ecb(s, k, 0, block, F0_BYTES, clear);
		if (r < 0)
			return r;
		f0_pan_field(pan, pan_len, pf);
		for (size_t i = 0; i < F0_BYTES; i++)
			clear[i] ^= pf[i];
		return pin_field_check(clear, F0_CONTROL, F0_PAD, -TSW_E_PIN_PAN);
	}
	r = ecb(s, k, 0, block, F4_BYTES, clear);
	if (r < 0)
		return r;
	f4_pan_field(pan, pan_len, pf);
	for (size_t i = 0; i < F4_BYTES; i++)
		clear[i] ^= pf[i];
	r = ecb(s, k, 0, clear, F4_BYTES, clear);
	if (r < 0)
		return r;
	/* a wrong PAN garbles every nibble alike: no PAN-free part to tell by */
	return pin_field_check(clear, F4_CONTROL, F4_PAD, -TSW_E_PIN_FORMAT);
}

/* clear (the PIN field) -> block bound to pan under k. */
static int encode(struct soft_session *s, const struct soft_key *k, const char *pan, size_t pan_len,
		  uint8_t *clear, uint8_t *out)
{
	uint8_t pf[F0_BYTES];

	if (is_aes(k))
		return f4_encrypt(s, k, pan, pan_len, clear, out);
	/* format 0 xors the PAN field into the clear field in place: the
	 * buffer is the caller's to wipe */
	f0_pan_field(pan, pan_len, pf);
	for (size_t i = 0; i < F0_BYTES; i++)
		clear[i] ^= pf[i];
	return ecb(s, k, 1, clear, F0_BYTES, out);
}

int hsm__pin_form4_fill(struct soft_session *s, const struct soft_key *k, const char *pan,
			size_t pan_len, const char *pin, size_t pin_len, const uint8_t fill[8],
			uint8_t *out)
{
	uint8_t clear[F4_BYTES], block[F4_BYTES];
	int r;

	pin_field(F4_CONTROL, F4_PAD, pin, pin_len, clear);
	memcpy(clear + F4_FILL_OFF, fill, 8);
	r = f4_encrypt(s, k, pan, pan_len, clear, block);
	OPENSSL_cleanse(clear, sizeof(clear));
	if (r == 0)
		memcpy(out, block, F4_BYTES);
	return r;
}

int hsm__pin_form(struct soft_session *s, const struct soft_key *k, const char *pan, size_t pan_len,
		  const char *pin, size_t pin_len, uint8_t *out)
{
	uint8_t clear[F4_BYTES], block[F4_BYTES];
	int r;

	if (is_aes(k)) {
		if (RAND_bytes(block, 8) != 1)
			return -EIO;
		return hsm__pin_form4_fill(s, k, pan, pan_len, pin, pin_len, block, out);
	}
	pin_field(F0_CONTROL, F0_PAD, pin, pin_len, clear);
	r = encode(s, k, pan, pan_len, clear, block);
	OPENSSL_cleanse(clear, sizeof(clear));
	if (r == 0)
		memcpy(out, block, F0_BYTES);
	return r;
}

int hsm__pin_verify(struct soft_session *s, const struct soft_key *k, const char *pan,
		    size_t pan_len, const uint8_t *block, const char *pin, size_t pin_len)
{
	uint8_t clear[F4_BYTES], want[F0_BYTES];
	int r;

	r = decode(s, k, pan, pan_len, block, clear);
	if (r < 0)
		goto out;
	pin_field(is_aes(k) ? F4_CONTROL : F0_CONTROL, is_aes(k) ? F4_PAD : F0_PAD, pin, pin_len,
		  want);
	r = CRYPTO_memcmp(clear, want, F0_BYTES) == 0 ? 0 : -TSW_E_PIN_FORMAT;
out:
	OPENSSL_cleanse(clear, sizeof(clear));
	OPENSSL_cleanse(want, sizeof(want));
	return r;
}

int hsm__pin_translate(struct soft_session *s, const struct soft_key *src, const char *src_pan,
		       size_t src_pan_len, const struct soft_key *dst, const char *dst_pan,
		       size_t dst_pan_len, const uint8_t *in, uint8_t *out)
{
	uint8_t clear[F4_BYTES], block[F4_BYTES];
	size_t len = is_aes(dst) ? F4_BYTES : F0_BYTES;
	int r;

	if (is_aes(src) != is_aes(dst))
		return -TSW_E_BAD_INPUT;
	r = decode(s, src, src_pan, src_pan_len, in, clear);
	if (r < 0)
		goto out;
	/* format 4: a fresh fill, so the issuer's block says nothing about
	 * the acquirer's */
	if (is_aes(dst) && RAND_bytes(clear + F4_FILL_OFF, 8) != 1) {
		r = -EIO;
		goto out;
	}
	r = encode(s, dst, dst_pan, dst_pan_len, clear, block);
	if (r == 0)
		memcpy(out, block, len);
out:
	OPENSSL_cleanse(clear, sizeof(clear));
	OPENSSL_cleanse(block, sizeof(block));
	return r;
}
