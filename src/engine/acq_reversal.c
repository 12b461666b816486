/* Acquirer reversals (review item 6). The issuer saw the switch's STAN on
 * the original, never the acquirer's, so a reversal's DE90 must name the
 * original by the switch STAN. Each forwarded original is remembered
 * under a hash of (token, acquirer DE11, DE7, DE41) in a bounded
 * direct-mapped table (no connection in the key: a reversal may come on
 * another connection); a reversal whose DE90 names a remembered original
 * gets DE90 rewritten, an unknown one is forwarded as it came. A 64-bit
 * hash collision (2^-64) would rewrite to another original's STAN. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "acq_reversal.h"
#include "engine_int.h"

struct acq_rev_ent {
	uint64_t hash; /* 0: empty */
	uint32_t stan;
	char de7[10];
};

/* Up to 19 token digits, DE11 6, DE7 10, DE41 8 (longer values are cut,
 * the same way on both sides). */
#define KEY_MAX 64u

static uint64_t key_of(const char *token, size_t token_len, const uint8_t *de11, size_t de11_len,
		       const uint8_t *de7, size_t de7_len, const struct tsw_iso_msg *m)
{
	uint8_t buf[4 + 4 * KEY_MAX];
	const uint8_t *de41 = tsw_iso_has(m, 41) ? tsw_iso_ptr(m, 41) : NULL;
	size_t de41_len = de41 ? m->f[41].len : 0, n = 0;
	const struct {
		const uint8_t *p;
		size_t len;
	} parts[] = {{(const uint8_t *)token, token_len},
		     {de11, de11_len},
		     {de7, de7_len},
		     {de41, de41_len}};
	size_t i;
	uint64_t h;

	for (i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
		size_t k = parts[i].len < KEY_MAX ? parts[i].len : KEY_MAX;

		buf[n++] = (uint8_t)k;
		if (k)
			memcpy(buf + n, parts[i].p, k);
		n += k;
	}
	h = XXH3_64bits(buf, n);
	return h ? h : 1;
}

int acq_rev_init(struct tsw_engine *e)
{
	e->acq_rev = calloc(TSW_ENGINE_ACQ_REV_MEMORY, sizeof(*e->acq_rev));
	return e->acq_rev ? 0 : -ENOMEM;
}

void acq_rev_free(struct tsw_engine *e)
{
	free(e->acq_rev);
	e->acq_rev = NULL;
}

void acq_rev_remember(struct tsw_engine *e, const char *token, size_t token_len,
		      const struct tsw_iso_msg *m, uint32_t stan)
{
	struct acq_rev_ent *s;
	uint64_t h;

	if (!e->acq_rev || !tsw_iso_has(m, 11) || !tsw_iso_has(m, 7) || m->f[7].len != 10)
		return;
	h = key_of(token, token_len, tsw_iso_ptr(m, 11), m->f[11].len, tsw_iso_ptr(m, 7), 10, m);
	s = &e->acq_rev[h % TSW_ENGINE_ACQ_REV_MEMORY];
	s->hash = h;
	s->stan = stan;
	memcpy(s->de7, tsw_iso_ptr(m, 7), 10);
}

int acq_rev_de90(struct tsw_engine *e, const char *token, size_t token_len,
		 const struct tsw_iso_msg *m, char out[TSW_ENGINE_DE90_LEN])
{
	const struct acq_rev_ent *s;
	const uint8_t *de90;
	uint64_t h;

	if (!e->acq_rev || !tsw_iso_has(m, 90) || m->f[90].len != TSW_ENGINE_DE90_LEN)
		return 0;
	de90 = tsw_iso_ptr(m, 90);
	h = key_of(token, token_len, de90 + TSW_ENGINE_DE90_OFF_STAN, 6,
		   de90 + TSW_ENGINE_DE90_OFF_DE7, 10, m);
	s = &e->acq_rev[h % TSW_ENGINE_ACQ_REV_MEMORY];
	if (s->hash != h)
		return 0;
	memcpy(out, de90, TSW_ENGINE_DE90_LEN);
	fmt6(s->stan, out + TSW_ENGINE_DE90_OFF_STAN);
	memcpy(out + TSW_ENGINE_DE90_OFF_DE7, s->de7, 10);
	return 1;
}
