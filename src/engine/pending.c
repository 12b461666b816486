/* The pending table: requests in flight to issuers, keyed by (link, the
 * switch's STAN), open addressing with linear probing and backward-shift
 * deletion (no tombstones), XXH3 of the key; a binary min-heap over
 * deadlines for timeouts; a direct-mapped memory of timed-out keys so a
 * late answer is told from an unknown one (cfg.expired_stan_memory
 * entries, a power of two; a key pushed out by a newer one before its
 * late answer came is counted in expired_stans_evicted: that answer is
 * then counted unmatched, and its STAN may be handed out again, where the
 * echoed DE4/DE37/DE41 check keeps the answer from the new request).
 *
 * Locality: STANs are handed out in sequence, so the requests in flight
 * are a window of consecutive keys. XXH3 places groups of
 * 2^TSW_PENDING_GROUP_BITS consecutive keys, and a key's slot is its
 * group's slot plus its offset in the group: the keys in flight touch a few
 * cache lines instead of one random line each of a table that is
 * megabytes large (the insert, the STAN probe, the answer's find and the
 * delete were each a cache miss under load).
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* XXH3 inlined: the key is 8 bytes, a call into the library costs more
 * than the hash */
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "dup.h"
#include "card_crypto.h"
#include "engine_int.h"
#include "held_approval.h"
#include "tsw/error.h"

#define NO_REQ UINT32_MAX
/* Consecutive keys placed together: 8 slots of 16 bytes, the 128-byte
 * pair of cache lines that the adjacent-line prefetcher fetches as one.
 * Larger groups save little more and lengthen the backward-shift scan of
 * a delete (it walks the rest of the group's keys in flight). */
#define TSW_PENDING_GROUP_BITS 3u
#define TSW_PENDING_TABLE_ALIGN 128u

static uint32_t pow2_at_least(uint32_t n)
{
	uint32_t p = 1;

	while (p < n)
		p <<= 1;
	return p;
}

int engine__pending_init(struct tsw_engine *e)
{
	uint32_t n = e->cfg.max_pending, tsize, emem, i;

	e->n_reqs = n;
	e->reqs = calloc(n, sizeof(*e->reqs));
	tsize = pow2_at_least(n) * 2;
	/* aligned_alloc wants a size that is a multiple of the alignment */
	e->table = aligned_alloc(TSW_PENDING_TABLE_ALIGN,
				 (sizeof(*e->table) * tsize + TSW_PENDING_TABLE_ALIGN - 1) /
				     TSW_PENDING_TABLE_ALIGN * TSW_PENDING_TABLE_ALIGN);
	e->heap = malloc(sizeof(*e->heap) * n);
	emem = e->cfg.expired_stan_memory;
	e->expired = calloc(emem, sizeof(*e->expired));
	if (!e->reqs || !e->table || !e->heap || !e->expired)
		return -ENOMEM;
	e->expired_mask = emem - 1;
	TSW_GAUGE_SET(e->m->expired_stans_capacity, emem);
	e->table_mask = tsize - 1;
	for (i = 0; i < tsize; i++)
		e->table[i].req = NO_REQ;
	for (i = 0; i < n; i++)
		e->reqs[i].next_free = i + 1 < n ? i + 1 : NO_REQ;
	e->free_req = 0;
	e->heap_len = 0;
	return 0;
}

void engine__pending_free(struct tsw_engine *e)
{
	free(e->reqs);
	free(e->table);
	free(e->heap);
	free(e->expired);
}

struct req *engine__req_alloc(struct tsw_engine *e)
{
	struct req *r;

	if (e->free_req == NO_REQ)
		return NULL;
	r = &e->reqs[e->free_req];
	e->free_req = r->next_free;
	memset(r, 0, offsetof(struct req, echo));
	r->echo.len[0] = 0;
	r->in_use = true;
	r->heap_idx = NO_REQ;
	e->reqs_used++;
	return r;
}

void engine__req_free(struct tsw_engine *e, struct req *r)
{
	if (r->appr_slot)
		engine__approval_slot_drop(e, r);
	engine__dup_remove(e, r);
	engine__card_arpc_drop(&r->arpc);
	r->in_use = false;
	r->next_free = e->free_req;
	e->free_req = req_index(e, r);
	e->reqs_used--;
}

static uint32_t slot_of(const struct tsw_engine *e, uint64_t key)
{
	uint64_t group = key >> TSW_PENDING_GROUP_BITS;
	uint32_t h = (uint32_t)XXH3_64bits(&group, sizeof(group)) << TSW_PENDING_GROUP_BITS;

	return (h | (uint32_t)(key & ((1u << TSW_PENDING_GROUP_BITS) - 1))) & e->table_mask;
}

struct req *engine__pending_find(struct tsw_engine *e, uint64_t key)
{
	uint32_t i = slot_of(e, key);

	while (e->table[i].req != NO_REQ) {
		if (e->table[i].key == key)
			return &e->reqs[e->table[i].req];
		i = (i + 1) & e->table_mask;
	}
	return NULL;
}

/* Inserts key -> r; refuses a key already in flight (never overwrites). */
static int table_put(struct tsw_engine *e, uint64_t key, uint32_t req)
{
	uint32_t home = slot_of(e, key), i = home;

	while (e->table[i].req != NO_REQ) {
		if (e->table[i].key == key)
			return -TSW_E_EXISTS;
		i = (i + 1) & e->table_mask;
	}
	e->table[i].key = key;
	e->table[i].req = req;
	e->table[i].home = home;
	return 0;
}

static void table_del(struct tsw_engine *e, uint64_t key)
{
	uint32_t i = slot_of(e, key), j, k;

	while (e->table[i].req != NO_REQ && e->table[i].key != key)
		i = (i + 1) & e->table_mask;
	if (e->table[i].req == NO_REQ)
		return;
	/* backward-shift: move later members of the cluster into the hole
	 * when their home slot does not lie cyclically in (i, j] */
	j = i;
	for (;;) {
		e->table[i].req = NO_REQ;
		for (;;) {
			j = (j + 1) & e->table_mask;
			if (e->table[j].req == NO_REQ)
				return;
			k = e->table[j].home;
			if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
				continue;
			break;
		}
		e->table[i] = e->table[j];
		i = j;
	}
}

static struct expired_key *expired_slot(const struct tsw_engine *e, uint64_t key)
{
	return &e->expired[XXH3_64bits(&key, sizeof(key)) & e->expired_mask];
}

static bool expired_has(const struct tsw_engine *e, uint64_t key)
{
	const struct expired_key *s = expired_slot(e, key);

	return key != 0 && s->key == key;
}

static uint32_t span_of(uint32_t n_workers)
{
	return TSW_ENGINE_STAN_SPACE / (n_workers ? n_workers : TSW_ENGINE_STAN_WORKERS_DEFAULT);
}

uint32_t engine__stan_span(const struct tsw_engine_config *cfg)
{
	return span_of(cfg->n_workers);
}

/* Worker w of n owns STANs [w * span, (w + 1) * span), span = 10^6 / n
 * (0 is never used). A STAN in flight or remembered as timed out (a late
 * answer may still come) is skipped. */
uint32_t engine__stan_next(struct tsw_engine *e, uint16_t link)
{
	uint32_t span = span_of(e->n_workers);
	uint32_t base = e->worker_id * span;
	uint32_t tries;

	for (tries = 0; tries < span; tries++) {
		uint32_t stan;
		uint64_t key;

		e->stan_seq = e->stan_seq + 1 >= span ? 1 : e->stan_seq + 1;
		stan = base + e->stan_seq;
		key = (uint64_t)link << 32 | stan;
		if (!engine__pending_find(e, key) && !expired_has(e, key))
			return stan;
	}
	return 0;
}

int engine__pending_insert(struct tsw_engine *e, struct req *r, uint16_t link)
{
	uint32_t stan = engine__stan_next(e, link);
	int ret;

	if (!stan)
		return -TSW_E_FULL;
	r->link = link;
	r->key = (uint64_t)link << 32 | stan;
	ret = table_put(e, r->key, req_index(e, r));
	if (ret < 0)
		return ret;
	return 0;
}

int engine__pending_rekey(struct tsw_engine *e, struct req *r, uint16_t link)
{
	uint64_t key = (uint64_t)link << 32 | (uint32_t)r->key;

	if (engine__pending_find(e, key) || expired_has(e, key))
		return -TSW_E_FULL;
	table_del(e, r->key);
	r->link = link;
	r->key = key;
	return table_put(e, key, req_index(e, r)); /* a slot was just freed */
}

void engine__pending_remove(struct tsw_engine *e, struct req *r)
{
	table_del(e, r->key);
}

/* binary min-heap of (deadline, req index); reqs[].heap_idx is each
 * request's position */
static bool less(const struct tsw_engine *e, uint32_t a, uint32_t b)
{
	return e->heap[a].deadline_ns < e->heap[b].deadline_ns;
}

static void hswap(struct tsw_engine *e, uint32_t a, uint32_t b)
{
	struct heap_ent t = e->heap[a];

	e->heap[a] = e->heap[b];
	e->heap[b] = t;
	e->reqs[e->heap[a].req].heap_idx = a;
	e->reqs[e->heap[b].req].heap_idx = b;
}

static void sift_up(struct tsw_engine *e, uint32_t i)
{
	while (i > 0 && less(e, i, (i - 1) / 2)) {
		hswap(e, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

static void sift_down(struct tsw_engine *e, uint32_t i)
{
	for (;;) {
		uint32_t l = 2 * i + 1, r = l + 1, m = i;

		if (l < e->heap_len && less(e, l, m))
			m = l;
		if (r < e->heap_len && less(e, r, m))
			m = r;
		if (m == i)
			return;
		hswap(e, i, m);
		i = m;
	}
}

void engine__heap_push(struct tsw_engine *e, struct req *r)
{
	uint32_t i = e->heap_len++;

	e->heap[i].deadline_ns = r->deadline_ns;
	e->heap[i].req = req_index(e, r);
	r->heap_idx = i;
	sift_up(e, i);
}

void engine__heap_remove(struct tsw_engine *e, struct req *r)
{
	uint32_t i = r->heap_idx;

	if (i == NO_REQ)
		return;
	r->heap_idx = NO_REQ;
	e->heap_len--;
	if (i == e->heap_len)
		return;
	e->heap[i] = e->heap[e->heap_len];
	e->reqs[e->heap[i].req].heap_idx = i;
	sift_up(e, i);
	sift_down(e, e->reqs[e->heap[i].req].heap_idx);
}

struct req *engine__heap_top(const struct tsw_engine *e)
{
	return e->heap_len ? &e->reqs[e->heap[0].req] : NULL;
}

void engine__expired_remember(struct tsw_engine *e, uint64_t key, uint64_t saf_id)
{
	struct expired_key *s = expired_slot(e, key);

	if (s->key && s->key != key)
		TSW_COUNT(e->m->expired_stans_evicted);
	s->key = key;
	s->saf_id = saf_id;
}

bool engine__expired_take(struct tsw_engine *e, uint64_t key, uint64_t *ret_saf_id)
{
	struct expired_key *s = expired_slot(e, key);

	if (s->key != key || key == 0)
		return false;
	*ret_saf_id = s->saf_id;
	s->key = 0;
	s->saf_id = 0;
	return true;
}
