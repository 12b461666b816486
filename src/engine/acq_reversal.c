/* Acquirer reversals (review item 6). The issuer saw the switch's STAN on
 * the original, never the acquirer's, so a reversal's DE90 must name the
 * original by the switch STAN. Each forwarded original is remembered
 * under a hash of (token, acquirer DE11, DE7, DE41) in a bounded
 * direct-mapped table (no connection in the key: a reversal may come on
 * another connection); a reversal whose DE90 names a remembered original
 * gets DE90 rewritten, an unknown one is forwarded as it came. A 64-bit
 * hash collision (2^-64) would rewrite to another original's STAN.
 *
 * Limited uses. An original whose approval consumed a limited use
 * (acq_rev_use_consumed) is flagged; a reversal that names it leaves a
 * link under its own key (token, its DE11, DE7, DE41) in the second half
 * of the table, and when the issuer answers that reversal 00,
 * acq_rev_take_use finds the original through the link, clears the flag
 * and the engine gives the use back once: a repeated reversal (0401,
 * 0421) finds the flag cleared. An original or link pushed out of the
 * table gives nothing back (the use stays spent: never a double spend).
 *
 * Size: cfg.acq_reversal_memory originals (a power of two: the slot is
 * the hash masked) plus as many links. An original pushed out by another
 * one is counted in acq_reversals_evicted: its reversal is then forwarded
 * with DE90 as it came. Links are not counted: one is needed only while
 * its reversal is in flight, and most are overwritten long after. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "acq_reversal.h"
#include "engine_int.h"

/* [0, size): originals; [size, 2 * size): reversal links. */
struct acq_rev_ent {
	uint64_t hash;	    /* 0: empty */
	uint64_t orig_hash; /* a link: the original's hash */
	uint32_t stan;
	char de7[10];
	bool use_consumed; /* an original: its approval consumed a limited use */
};

/* Up to 19 token digits, DE11 6, DE7 10, DE41 8 (longer values are cut,
 * the same way on both sides). */
#define KEY_MAX 64u

static uint64_t key_of(const char *token, size_t token_len, const uint8_t *de11, size_t de11_len,
		       const uint8_t *de7, size_t de7_len, const uint8_t *de41, size_t de41_len)
{
	uint8_t buf[4 + 4 * KEY_MAX];
	size_t n = 0;
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

static uint64_t key_of_msg(const char *token, size_t token_len, const uint8_t *de11,
			   size_t de11_len, const uint8_t *de7, const struct tsw_iso_msg *m)
{
	const uint8_t *de41 = tsw_iso_has(m, 41) ? tsw_iso_ptr(m, 41) : NULL;

	return key_of(token, token_len, de11, de11_len, de7, 10, de41, de41 ? m->f[41].len : 0);
}

/* The key of the acquirer message r was forwarded for, from its echo
 * fields (the same bytes the message had); 0 when DE11 or DE7 is missing. */
static unsigned echo_idx(unsigned field)
{
	unsigned i;

	for (i = 0; i < TSW_ENGINE_ECHO_FIELDS; i++)
		if (tsw_engine_echo_fields[i] == field)
			break;
	return i;
}

static uint64_t key_of_req(const struct req *r)
{
	const struct echo *ec = &r->echo;
	unsigned i7 = echo_idx(7), i11 = echo_idx(11), i41 = echo_idx(41);
	size_t de41_len;

	if (i7 >= TSW_ENGINE_ECHO_FIELDS || i11 >= TSW_ENGINE_ECHO_FIELDS ||
	    i41 >= TSW_ENGINE_ECHO_FIELDS || !ec->len[i11] || ec->len[i7] != 10)
		return 0;
	de41_len = ec->len[i41];
	return key_of(r->token, r->token_len, ec->data + ec->off[i11], ec->len[i11],
		      ec->data + ec->off[i7], 10, de41_len ? ec->data + ec->off[i41] : NULL,
		      de41_len);
}

static struct acq_rev_ent *orig_slot(const struct tsw_engine *e, uint64_t h)
{
	return &e->acq_rev[h & e->acq_rev_mask];
}

static struct acq_rev_ent *link_slot(const struct tsw_engine *e, uint64_t k)
{
	return &e->acq_rev[(size_t)e->acq_rev_mask + 1 + (k & e->acq_rev_mask)];
}

int acq_rev_init(struct tsw_engine *e)
{
	uint32_t n = e->cfg.acq_reversal_memory ? e->cfg.acq_reversal_memory
						: TSW_ENGINE_ACQ_REV_MEMORY_DEFAULT;

	e->acq_rev = calloc(2 * (size_t)n, sizeof(*e->acq_rev));
	if (!e->acq_rev)
		return -ENOMEM;
	e->acq_rev_mask = n - 1;
	e->m->acq_reversals_capacity = n;
	return 0;
}

void acq_rev_free(struct tsw_engine *e)
{
	free(e->acq_rev);
	e->acq_rev = NULL;
}

uint64_t acq_rev_key(const struct tsw_engine *e, const char *token, size_t token_len,
		     const struct tsw_iso_msg *m)
{
	uint64_t h;

	if (!e->acq_rev || !tsw_iso_has(m, 11) || !tsw_iso_has(m, 7) || m->f[7].len != 10)
		return 0;
	h = key_of_msg(token, token_len, tsw_iso_ptr(m, 11), m->f[11].len, tsw_iso_ptr(m, 7), m);
	/* the slot is written when the original is forwarded, after the
	 * decrypt and the encode: its cache miss overlaps them */
	__builtin_prefetch(orig_slot(e, h), 1);
	return h;
}

void acq_rev_remember(struct tsw_engine *e, uint64_t h, const struct tsw_iso_msg *m, uint32_t stan)
{
	struct acq_rev_ent *s;

	if (!h)
		return;
	s = orig_slot(e, h);
	if (s->hash && s->hash != h)
		e->m->acq_reversals_evicted++;
	s->hash = h;
	s->stan = stan;
	s->use_consumed = false;
	memcpy(s->de7, tsw_iso_ptr(m, 7), 10);
}

int acq_rev_de90(struct tsw_engine *e, const char *token, size_t token_len,
		 const struct tsw_iso_msg *m, char out[TSW_ENGINE_DE90_LEN])
{
	const struct acq_rev_ent *s;
	struct acq_rev_ent *link;
	const uint8_t *de90;
	uint64_t h, k;

	if (!e->acq_rev || !tsw_iso_has(m, 90) || m->f[90].len != TSW_ENGINE_DE90_LEN)
		return 0;
	de90 = tsw_iso_ptr(m, 90);
	h = key_of_msg(token, token_len, de90 + TSW_ENGINE_DE90_OFF_STAN, 6,
		       de90 + TSW_ENGINE_DE90_OFF_DE7, m);
	s = orig_slot(e, h);
	if (s->hash != h)
		return 0;
	/* the reversal's answer finds the original through its own key */
	if (tsw_iso_has(m, 11) && m->f[11].len && tsw_iso_has(m, 7) && m->f[7].len == 10) {
		k = key_of_msg(token, token_len, tsw_iso_ptr(m, 11), m->f[11].len,
			       tsw_iso_ptr(m, 7), m);
		link = link_slot(e, k);
		link->hash = k;
		link->orig_hash = h;
	}
	memcpy(out, de90, TSW_ENGINE_DE90_LEN);
	fmt6(s->stan, out + TSW_ENGINE_DE90_OFF_STAN);
	memcpy(out + TSW_ENGINE_DE90_OFF_DE7, s->de7, 10);
	return 1;
}

void acq_rev_use_consumed(struct tsw_engine *e, const struct req *r)
{
	struct acq_rev_ent *s;
	uint64_t h;

	if (!e->acq_rev)
		return;
	h = key_of_req(r);
	if (!h)
		return;
	s = orig_slot(e, h);
	if (s->hash == h)
		s->use_consumed = true;
}

bool acq_rev_disown_use(struct tsw_engine *e, const struct req *r)
{
	struct acq_rev_ent *s;
	uint64_t h;

	if (!e->acq_rev)
		return true;
	h = key_of_req(r);
	if (!h)
		return true;
	s = orig_slot(e, h);
	if (s->hash != h)
		return true;
	if (!s->use_consumed)
		return false;
	s->use_consumed = false;
	return true;
}

bool acq_rev_take_use(struct tsw_engine *e, const struct req *r)
{
	const struct acq_rev_ent *link;
	struct acq_rev_ent *s;
	uint64_t k;

	if (!e->acq_rev)
		return false;
	k = key_of_req(r);
	if (!k)
		return false;
	link = link_slot(e, k);
	if (link->hash != k)
		return false;
	s = orig_slot(e, link->orig_hash);
	if (s->hash != link->orig_hash || !s->use_consumed)
		return false;
	s->use_consumed = false;
	return true;
}
