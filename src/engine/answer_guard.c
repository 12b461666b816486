/* Guards on an issuer's answer before it reaches the acquirer:
 * - its MTI must be the response to the request's;
 * - the fields that carry card data are dropped from every answer, and
 *   the EMV tags that do from its DE55;
 * - the whole encoded answer is scanned for the PAN of the request, as
 *   ASCII digits and as packed BCD (docs/wire.md). The
 *   PAN itself is not kept while a request is in flight: forward() stores
 *   a keyed 64-bit fingerprint (XXH3 seeded with a per-engine random
 *   secret), its length and last 4 digits; the scan finds every place the
 *   last 4 digits occur and hashes the run of that many ASCII digits that
 *   ends there. This is cheaper than re-reading the vault
 *   and decrypting at answer time (no vault access, no failure mode when
 *   the token changed meanwhile); a false positive (2^-64) costs a 96;
 * - an answer's echoed DE4/DE37/DE41 must equal the request's;
 * - which response codes are approvals (a limited use is committed).
 */
#include <string.h>
#include <sys/random.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "answer_guard.h"
#include "engine_int.h"
#include "tsw/token.h"

/* Card data that never goes back to the acquirer, whatever the issuer
 * sends: DE2 and DE14 are rewritten to the token, DE48 stripped of the
 * token tags elsewhere. */
const uint8_t tsw_engine_answer_drop[TSW_ENGINE_ANSWER_DROP] = {34, 35, 36, 45, 102, 103};

unsigned engine__answer_drop_edits(const struct tsw_iso_msg *m, struct tsw_iso_edit *ed)
{
	unsigned i, n = 0;

	for (i = 0; i < TSW_ENGINE_ANSWER_DROP; i++)
		if (tsw_iso_has(m, tsw_engine_answer_drop[i]))
			ed[n++] = (struct tsw_iso_edit){
			    .field = tsw_engine_answer_drop[i], .len = 0, .data = NULL};
	return n;
}

uint64_t engine__pan_fp_seed_new(void)
{
	uint64_t s = 0;

	/* getrandom of 8 bytes from an initialised pool does not fail short;
	 * a failure leaves a weaker (still per-process) seed */
	if (getrandom(&s, sizeof(s), GRND_NONBLOCK) != (ssize_t)sizeof(s))
		s ^= (uint64_t)(uintptr_t)&s * 0x9e3779b97f4a7c15ull;
	return s;
}

uint64_t engine__pan_fp(uint64_t seed, const char *pan, size_t len)
{
	return XXH3_64bits_withSeed(pan, len, seed);
}

static bool all_digits(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] < '0' || p[i] > '9')
			return false;
	return true;
}

/* The window of pan_len bytes that ends with the 4 bytes at j (a match of
 * the last 4 digits): the PAN when it is all digits and hashes to fp. */
static bool window_is_pan(uint64_t seed, uint64_t fp, size_t pan_len, const uint8_t *p, size_t j)
{
	const uint8_t *w;

	if (j + 4 < pan_len)
		return false;
	w = p + j + 4 - pan_len;
	return all_digits(w, pan_len) && XXH3_64bits_withSeed(w, pan_len, seed) == fp;
}

/* 16 bytes from p, unaligned. */
typedef uint8_t v16u8 __attribute__((vector_size(16)));

static v16u8 load16(const uint8_t *p)
{
	v16u8 v;

	memcpy(&v, p, sizeof(v));
	return v;
}

/* Finds every place the last 4 digits occur, 16 positions per step (GCC
 * vector extensions: SSE2 on x86-64, NEON on arm64, plain code elsewhere;
 * hand-written because no library offers a multi-position 4-byte search),
 * and fingerprints only the window that ends there. An answer is a few
 * hundred bytes, nearly all digits: a compare per position, not a hash. */
bool engine__pan_fp_scan(uint64_t seed, uint64_t fp, size_t pan_len, const char last4[4],
			 const uint8_t *p, size_t n)
{
	v16u8 b0, b1, b2, b3;
	size_t j = 0;

	if (pan_len < 4 || n < pan_len)
		return false;
	b0 = (v16u8){0} + (uint8_t)last4[0];
	b1 = (v16u8){0} + (uint8_t)last4[1];
	b2 = (v16u8){0} + (uint8_t)last4[2];
	b3 = (v16u8){0} + (uint8_t)last4[3];
	/* a match at j needs p[j, j + 4): vectors cover j .. j + 15 */
	for (; j + 16 + 3 <= n; j += 16) {
		v16u8 m = (load16(p + j) == b0) & (load16(p + j + 1) == b1) &
			  (load16(p + j + 2) == b2) & (load16(p + j + 3) == b3);
		uint64_t lo, hi;

		memcpy(&lo, &m, 8);
		memcpy(&hi, (const uint8_t *)&m + 8, 8);
		if (!(lo | hi))
			continue;
		for (unsigned k = 0; k < 16; k++)
			if (m[k] && window_is_pan(seed, fp, pan_len, p, j + k))
				return true;
	}
	for (; j + 4 <= n; j++)
		if (memcmp(p + j, last4, 4) == 0 && window_is_pan(seed, fp, pan_len, p, j))
			return true;
	return false;
}

/* The window of pan_len nibbles of p that ends at nibble end (nibble 2j
 * is the high half of p[j]): the PAN when every nibble is a digit and
 * their text hashes to fp. */
static bool nibbles_are_pan(uint64_t seed, uint64_t fp, size_t pan_len, const uint8_t *p,
			    size_t end)
{
	char d[TSW_PAN_MAX_DIGITS];
	size_t start, i;
	bool hit;

	if (end + 1 < pan_len || pan_len > sizeof(d))
		return false;
	start = end + 1 - pan_len;
	for (i = 0; i < pan_len; i++) {
		size_t k = start + i;
		uint8_t v = k % 2 ? p[k / 2] & 0x0f : p[k / 2] >> 4;

		if (v > 9)
			return false;
		d[i] = (char)('0' + v);
	}
	hit = XXH3_64bits_withSeed(d, pan_len, seed) == fp;
	explicit_bzero(d, sizeof(d));
	return hit;
}

/* Whether the last 4 digits (d) end at byte j of p in BCD: "ab cd" at
 * p[j], p[j + 1], or ".a bc d." over p[j, j + 3); then whether the whole
 * PAN is there. */
static bool bcd_hit_at(uint64_t seed, uint64_t fp, size_t pan_len, const uint8_t d[4],
		       const uint8_t *p, size_t n, size_t j)
{
	if (j + 1 < n && p[j] == (uint8_t)(d[0] << 4 | d[1]) &&
	    p[j + 1] == (uint8_t)(d[2] << 4 | d[3]) &&
	    nibbles_are_pan(seed, fp, pan_len, p, 2 * j + 3))
		return true;
	return j + 2 < n && (p[j] & 0x0f) == d[0] && p[j + 1] == (uint8_t)(d[1] << 4 | d[2]) &&
	       p[j + 2] >> 4 == d[3] && nibbles_are_pan(seed, fp, pan_len, p, 2 * j + 4);
}

/* Packed BCD, two digits a byte: the last 4 digits either fill two bytes
 * (ab cd: the PAN ends on a byte) or straddle three (.a bc d.). Whatever
 * pads the PAN (F, 0) or follows it (the D of track 2) is not looked at,
 * so one search covers every form. 16 positions per step, as for ASCII:
 * a hash only where the last 4 digits are. */
bool engine__pan_fp_scan_bcd(uint64_t seed, uint64_t fp, size_t pan_len, const char last4[4],
			     const uint8_t *p, size_t n)
{
	v16u8 ab, cd, bc, d0, d3;
	uint8_t d[4];
	size_t j = 0;

	if (pan_len < 4 || 2 * n < pan_len)
		return false;
	for (unsigned i = 0; i < 4; i++) {
		if (last4[i] < '0' || last4[i] > '9')
			return false;
		d[i] = (uint8_t)(last4[i] - '0');
	}
	ab = (v16u8){0} + (uint8_t)(d[0] << 4 | d[1]);
	cd = (v16u8){0} + (uint8_t)(d[2] << 4 | d[3]);
	bc = (v16u8){0} + (uint8_t)(d[1] << 4 | d[2]);
	d0 = (v16u8){0} + d[0];
	d3 = (v16u8){0} + d[3];
	/* a candidate at j reads p[j, j + 3): vectors cover j .. j + 15 */
	for (; j + 16 + 2 <= n; j += 16) {
		v16u8 x0 = load16(p + j), x1 = load16(p + j + 1), x2 = load16(p + j + 2);
		v16u8 m = ((x0 == ab) & (x1 == cd)) |
			  ((x1 == bc) & ((x0 & 0x0f) == d0) & ((x2 >> 4) == d3));
		uint64_t lo, hi;

		memcpy(&lo, &m, 8);
		memcpy(&hi, (const uint8_t *)&m + 8, 8);
		if (!(lo | hi))
			continue;
		for (unsigned k = 0; k < 16; k++)
			if (m[k] && bcd_hit_at(seed, fp, pan_len, d, p, n, j + k))
				return true;
	}
	for (; j + 1 < n; j++)
		if ((p[j + 1] == cd[0] || p[j + 1] == bc[0]) &&
		    bcd_hit_at(seed, fp, pan_len, d, p, n, j))
			return true;
	return false;
}

bool engine__answer_mti_matches(const char req[4], const char ans[4])
{
	/* same version and class, the function's response (0100 -> 0110,
	 * 0120 -> 0130, 0400 -> 0410); a repeat (0101, 0401, 0121) is
	 * answered like the original, or with its own origin digit (0411) */
	return ans[0] == req[0] && ans[1] == req[1] && req[2] <= '8' && ans[2] == req[2] + 1 &&
	       (req[2] - '0') % 2 == 0 && (req[3] == '0' || req[3] == '1') &&
	       (ans[3] == '0' || ans[3] == req[3]);
}

const uint32_t tsw_engine_de55_card_tags[TSW_ENGINE_DE55_CARD_TAGS] = {
    0x5a,   /* application PAN */
    0x57,   /* track 2 equivalent data */
    0x5f24, /* application expiration date */
    0x9f6b, /* track 2 data (contactless) */
};

bool engine__rc_approved(const char *rc)
{
	static const char *const approvals[] = {"00", "08", "10", "11", "16"};
	size_t i;

	for (i = 0; i < sizeof(approvals) / sizeof(approvals[0]); i++)
		if (rc[0] == approvals[i][0] && rc[1] == approvals[i][1] && rc[2] == 0)
			return true;
	return false;
}

/* Echo index of the fields compared (tsw_engine_echo_fields order). */
static const struct {
	uint8_t field, idx;
} match_fields[] = {{4, 2}, {37, 7}, {41, 8}};

bool engine__answer_matches(const struct req *r, const struct tsw_iso_msg *m, const char *rc)
{
	size_t i;

	for (i = 0; i < sizeof(match_fields) / sizeof(match_fields[0]); i++) {
		unsigned f = match_fields[i].field, k = match_fields[i].idx;

		if (!tsw_iso_has(m, f))
			continue;
		/* a partial approval carries the approved amount in DE4 */
		if (f == 4 && strcmp(rc, "10") == 0)
			continue;
		if (!r->echo.len[k] || m->f[f].len != r->echo.len[k] ||
		    memcmp(tsw_iso_ptr(m, f), r->echo.data + r->echo.off[k], r->echo.len[k]) != 0)
			return false;
	}
	return true;
}
