/* Guards on an issuer's answer before it reaches the acquirer (review
 * items 1, 2, 5):
 * - the fields that carry card data are dropped from every answer;
 * - the whole encoded answer is scanned for the PAN of the request. The
 *   PAN itself is not kept while a request is in flight: forward() stores
 *   a keyed 64-bit fingerprint (XXH3 seeded with a per-engine random
 *   secret) and its length, and the scan hashes every run of that many
 *   ASCII digits in the answer. This is cheaper than re-reading the vault
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

/* Card data that never goes back to the acquirer, whatever the issuer
 * sends: DE2 and DE14 are rewritten to the token, DE48 stripped of the
 * token tags elsewhere. */
const uint8_t tsw_engine_answer_drop[TSW_ENGINE_ANSWER_DROP] = {34, 35, 36, 45, 102, 103};

unsigned answer_drop_edits(const struct tsw_iso_msg *m, struct tsw_iso_edit *ed)
{
	unsigned i, n = 0;

	for (i = 0; i < TSW_ENGINE_ANSWER_DROP; i++)
		if (tsw_iso_has(m, tsw_engine_answer_drop[i]))
			ed[n++] = (struct tsw_iso_edit){
			    .field = tsw_engine_answer_drop[i], .len = 0, .data = NULL};
	return n;
}

uint64_t pan_fp_seed_new(void)
{
	uint64_t s = 0;

	/* getrandom of 8 bytes from an initialised pool does not fail short;
	 * a failure leaves a weaker (still per-process) seed */
	if (getrandom(&s, sizeof(s), GRND_NONBLOCK) != (ssize_t)sizeof(s))
		s ^= (uint64_t)(uintptr_t)&s * 0x9e3779b97f4a7c15ull;
	return s;
}

uint64_t pan_fp(uint64_t seed, const char *pan, size_t len)
{
	return XXH3_64bits_withSeed(pan, len, seed);
}

static bool digit(uint8_t c)
{
	return c >= '0' && c <= '9';
}

bool pan_fp_scan(uint64_t seed, uint64_t fp, size_t pan_len, const char last4[4],
		 const uint8_t *p, size_t n)
{
	size_t i = 0;

	if (pan_len < 4)
		return false;
	while (i < n) {
		size_t run = i, j;

		while (run < n && digit(p[run]))
			run++;
		/* digits [i, run): every window of pan_len inside it */
		for (j = i; j + pan_len <= run; j++)
			if (memcmp(p + j + pan_len - 4, last4, 4) == 0 &&
			    XXH3_64bits_withSeed(p + j, pan_len, seed) == fp)
				return true;
		i = run + 1;
	}
	return false;
}

bool rc_approved(const char *rc)
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

bool answer_matches(const struct req *r, const struct tsw_iso_msg *m, const char *rc)
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
