/* Duplicate acquirer requests: a request whose connection,
 * DE11 and DE7 equal those of a request still in flight to an issuer is
 * answered 94 (duplicate transmission) by the switch instead of being
 * forwarded a second time. The requests in flight are chained in buckets
 * by a hash of that key; the chain entries are confirmed against the
 * request's own echo fields. Parked requests (limited uses awaiting
 * durability) are not in the table yet.
 *
 * Bounds: the chains run through the requests themselves (struct req's
 * dup_next), so the table holds at most max_pending entries, one per
 * request in flight, and never drops one: nothing here needs a size key
 * or an eviction counter of its own (limits.max_pending and
 * tokswitch_pending_full_total cover it). The bucket array is the power of two
 * at or above max_pending. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "dup.h"
#include "engine_int.h"

#define NO_REQ UINT32_MAX
#define ECHO_IDX_DE7 3

int engine__dup_init(struct tsw_engine *e)
{
	uint32_t n = 1, i;

	while (n < e->cfg.max_pending)
		n <<= 1;
	e->dup_heads = malloc(sizeof(*e->dup_heads) * n);
	if (!e->dup_heads)
		return -ENOMEM;
	for (i = 0; i < n; i++)
		e->dup_heads[i] = NO_REQ;
	e->dup_mask = n - 1;
	return 0;
}

void engine__dup_free(struct tsw_engine *e)
{
	free(e->dup_heads);
	e->dup_heads = NULL;
}

static uint64_t key_hash(uint32_t slot, uint32_t gen, const uint8_t *de11, size_t de11_len,
			 const uint8_t *de7, size_t de7_len)
{
	uint8_t buf[2 * sizeof(uint32_t) + 2 * 256];
	size_t n = 0;

	/* the echo keeps fields of at most 255 bytes; longer ones are cut
	 * here and told apart by the comparison of the chain entries */
	if (de11_len > 255)
		de11_len = 255;
	if (de7_len > 255)
		de7_len = 255;
	memcpy(buf, &slot, sizeof(slot));
	memcpy(buf + sizeof(slot), &gen, sizeof(gen));
	n = 2 * sizeof(uint32_t);
	buf[n++] = (uint8_t)de11_len;
	memcpy(buf + n, de11, de11_len);
	n += de11_len;
	if (de7_len)
		memcpy(buf + n, de7, de7_len);
	n += de7_len;
	return XXH3_64bits(buf, n);
}

static bool field_eq(const struct echo *ec, unsigned idx, const uint8_t *p, size_t n)
{
	return ec->len[idx] == n && (n == 0 || memcmp(ec->data + ec->off[idx], p, n) == 0);
}

bool engine__dup_in_flight(const struct tsw_engine *e, uint32_t slot, const struct tsw_iso_msg *m)
{
	const uint8_t *de11 = NULL, *de7 = NULL;
	size_t de11_len = 0, de7_len = 0;
	uint32_t gen = e->conns[slot].gen, i;
	uint64_t h;

	if (!e->dup_heads || !tsw_iso_has(m, 11))
		return false;
	de11 = tsw_iso_ptr(m, 11);
	de11_len = m->f[11].len;
	if (tsw_iso_has(m, 7)) {
		de7 = tsw_iso_ptr(m, 7);
		de7_len = m->f[7].len;
	}
	h = key_hash(slot, gen, de11, de11_len, de7, de7_len);
	for (i = e->dup_heads[h & e->dup_mask]; i != NO_REQ; i = e->reqs[i].dup_next) {
		const struct req *r = &e->reqs[i];

		if (r->dup_hash == h && r->acq_slot == slot && r->acq_gen == gen &&
		    field_eq(&r->echo, ECHO_IDX_DE11, de11, de11_len) &&
		    field_eq(&r->echo, ECHO_IDX_DE7, de7, de7_len))
			return true;
	}
	return false;
}

void engine__dup_add(struct tsw_engine *e, struct req *r)
{
	const struct echo *ec = &r->echo;
	uint32_t b;

	if (!e->dup_heads)
		return;
	r->dup_hash = key_hash(r->acq_slot, r->acq_gen, ec->data + ec->off[ECHO_IDX_DE11],
			       ec->len[ECHO_IDX_DE11], ec->data + ec->off[ECHO_IDX_DE7],
			       ec->len[ECHO_IDX_DE7]);
	b = (uint32_t)(r->dup_hash & e->dup_mask);
	r->dup_next = e->dup_heads[b];
	e->dup_heads[b] = req_index(e, r);
	r->in_dup = true;
}

void engine__dup_remove(struct tsw_engine *e, struct req *r)
{
	uint32_t *p, idx = req_index(e, r);

	if (!r->in_dup)
		return;
	r->in_dup = false;
	for (p = &e->dup_heads[r->dup_hash & e->dup_mask]; *p != NO_REQ; p = &e->reqs[*p].dup_next)
		if (*p == idx) {
			*p = r->dup_next;
			return;
		}
}
