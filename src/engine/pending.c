/* The pending table: requests in flight to issuers, keyed by (link, the
 * switch's STAN), open addressing with linear probing and backward-shift
 * deletion (no tombstones), XXH3 of the key; a binary min-heap over
 * deadlines for timeouts; a direct-mapped memory of timed-out keys so a
 * late answer is told from an unknown one.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "engine_int.h"
#include "tsw/error.h"

#define NO_REQ UINT32_MAX

static uint32_t pow2_at_least(uint32_t n)
{
	uint32_t p = 1;

	while (p < n)
		p <<= 1;
	return p;
}

int pending_init(struct tsw_engine *e)
{
	uint32_t n = e->cfg.max_pending, tsize, i;

	e->n_reqs = n;
	e->reqs = calloc(n, sizeof(*e->reqs));
	tsize = pow2_at_least(n) * 2;
	e->table = malloc(sizeof(*e->table) * tsize);
	e->heap = malloc(sizeof(*e->heap) * n);
	e->expired = calloc(TSW_ENGINE_EXPIRED_MEMORY, sizeof(*e->expired));
	if (!e->reqs || !e->table || !e->heap || !e->expired)
		return -ENOMEM;
	e->table_mask = tsize - 1;
	for (i = 0; i < tsize; i++)
		e->table[i].req = NO_REQ;
	for (i = 0; i < n; i++)
		e->reqs[i].next_free = i + 1 < n ? i + 1 : NO_REQ;
	e->free_req = 0;
	e->heap_len = 0;
	return 0;
}

void pending_free(struct tsw_engine *e)
{
	free(e->reqs);
	free(e->table);
	free(e->heap);
	free(e->expired);
}

uint32_t req_index(const struct tsw_engine *e, const struct req *r)
{
	return (uint32_t)(r - e->reqs);
}

struct req *req_alloc(struct tsw_engine *e)
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

void req_free(struct tsw_engine *e, struct req *r)
{
	r->in_use = false;
	r->next_free = e->free_req;
	e->free_req = req_index(e, r);
	e->reqs_used--;
}

static uint32_t slot_of(const struct tsw_engine *e, uint64_t key)
{
	return (uint32_t)XXH3_64bits(&key, sizeof(key)) & e->table_mask;
}

struct req *pending_find(struct tsw_engine *e, uint64_t key)
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
	uint32_t i = slot_of(e, key);

	while (e->table[i].req != NO_REQ) {
		if (e->table[i].key == key)
			return -TSW_E_EXISTS;
		i = (i + 1) & e->table_mask;
	}
	e->table[i].key = key;
	e->table[i].req = req;
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
			k = slot_of(e, e->table[j].key);
			if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
				continue;
			break;
		}
		e->table[i] = e->table[j];
		i = j;
	}
}

uint32_t stan_next(struct tsw_engine *e, uint16_t link)
{
	uint32_t base = (e->cfg.worker_id % 10) * TSW_ENGINE_STAN_SPAN;
	uint32_t tries;

	for (tries = 0; tries < TSW_ENGINE_STAN_SPAN; tries++) {
		uint32_t stan;

		e->stan_seq = e->stan_seq + 1 >= TSW_ENGINE_STAN_SPAN ? 1 : e->stan_seq + 1;
		stan = base + e->stan_seq;
		if (stan == 0)
			continue;
		if (!pending_find(e, (uint64_t)link << 32 | stan))
			return stan;
	}
	return 0;
}

int pending_insert(struct tsw_engine *e, struct req *r, uint16_t link)
{
	uint32_t stan = stan_next(e, link);
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

void pending_remove(struct tsw_engine *e, struct req *r)
{
	table_del(e, r->key);
}

/* heap over req indices by deadline_ns */
static bool less(const struct tsw_engine *e, uint32_t a, uint32_t b)
{
	return e->reqs[e->heap[a]].deadline_ns < e->reqs[e->heap[b]].deadline_ns;
}

static void hswap(struct tsw_engine *e, uint32_t a, uint32_t b)
{
	uint32_t t = e->heap[a];

	e->heap[a] = e->heap[b];
	e->heap[b] = t;
	e->reqs[e->heap[a]].heap_idx = a;
	e->reqs[e->heap[b]].heap_idx = b;
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

void heap_push(struct tsw_engine *e, struct req *r)
{
	uint32_t i = e->heap_len++;

	e->heap[i] = req_index(e, r);
	r->heap_idx = i;
	sift_up(e, i);
}

void heap_remove(struct tsw_engine *e, struct req *r)
{
	uint32_t i = r->heap_idx;

	if (i == NO_REQ)
		return;
	r->heap_idx = NO_REQ;
	e->heap_len--;
	if (i == e->heap_len)
		return;
	e->heap[i] = e->heap[e->heap_len];
	e->reqs[e->heap[i]].heap_idx = i;
	sift_up(e, i);
	sift_down(e, e->reqs[e->heap[i]].heap_idx);
}

struct req *heap_top(const struct tsw_engine *e)
{
	return e->heap_len ? &e->reqs[e->heap[0]] : NULL;
}

void expired_remember(struct tsw_engine *e, uint64_t key, uint64_t saf_id)
{
	struct expired_key *s =
	    &e->expired[XXH3_64bits(&key, sizeof(key)) % TSW_ENGINE_EXPIRED_MEMORY];

	s->key = key;
	s->saf_id = saf_id;
}

bool expired_take(struct tsw_engine *e, uint64_t key, uint64_t *ret_saf_id)
{
	struct expired_key *s =
	    &e->expired[XXH3_64bits(&key, sizeof(key)) % TSW_ENGINE_EXPIRED_MEMORY];

	if (s->key != key || key == 0)
		return false;
	*ret_saf_id = s->saf_id;
	s->key = 0;
	s->saf_id = 0;
	return true;
}
