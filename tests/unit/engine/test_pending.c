/* The pending table against a reference model: random inserts, finds and
 * deletes (backward-shift deletion must keep every other key findable),
 * STANs never reused while in flight, consecutive STANs on a few cache
 * lines, the deadline heap in order. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "engine_int.h"
#include "tsw/error.h"

#define N 256

static struct tsw_metrics_shard shard;

static struct tsw_engine *mk(void)
{
	struct tsw_engine *e = calloc(1, sizeof(*e));

	cr_assert(e);
	memset(&shard, 0, sizeof(shard));
	e->m = &shard;
	tsw_config_defaults(&e->cfg);
	e->cfg.max_pending = N;
	cr_assert_eq(engine__pending_init(e), 0);
	return e;
}

Test(pending, random_operations_match_a_reference)
{
	struct tsw_engine *e = mk();
	struct req *live[N];
	unsigned n_live = 0, step;
	uint64_t x = 12345;

	for (step = 0; step < 20000; step++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		if (n_live < N && (x % 3 != 0 || n_live == 0)) {
			struct req *r = engine__req_alloc(e);

			cr_assert(r);
			cr_assert_eq(engine__pending_insert(e, r, (uint16_t)(x % 3)), 0);
			live[n_live++] = r;
		} else {
			unsigned k = (unsigned)(x >> 8) % n_live;

			engine__pending_remove(e, live[k]);
			cr_assert_null(engine__pending_find(e, live[k]->key));
			engine__req_free(e, live[k]);
			live[k] = live[--n_live];
		}
		if (step % 97 == 0) {
			unsigned i;

			for (i = 0; i < n_live; i++)
				cr_assert_eq(engine__pending_find(e, live[i]->key), live[i],
					     "key lost at step %u", step);
		}
	}
	engine__pending_free(e);
	free(e);
}

/* The keys in flight are a window of consecutive STANs: they must land on
 * a few cache lines (groups of 8 slots, 128 bytes), not one random line
 * each of a table that is megabytes large at the server's max_pending. */
Test(pending, consecutive_stans_share_cache_lines)
{
	struct tsw_engine *e = calloc(1, sizeof(*e));
	enum { KEYS = 64, LINE = 128 };
	uintptr_t lines[KEYS];
	unsigned i, j, n_lines = 0;

	cr_assert(e);
	memset(&shard, 0, sizeof(shard));
	e->m = &shard;
	tsw_config_defaults(&e->cfg);
	e->cfg.max_pending = 65536;
	cr_assert_eq(engine__pending_init(e), 0);
	cr_assert_eq((uintptr_t)e->table % LINE, 0, "table not aligned to the line pair");
	for (i = 0; i < KEYS; i++) {
		struct req *r = engine__req_alloc(e);
		uint32_t s;

		cr_assert(r);
		cr_assert_eq(engine__pending_insert(e, r, 0), 0);
		for (s = 0; s <= e->table_mask; s++)
			if (e->table[s].req != UINT32_MAX && e->table[s].key == r->key)
				break;
		cr_assert_leq(s, e->table_mask);
		lines[i] = (uintptr_t)&e->table[s] / LINE;
		for (j = 0; j < n_lines && lines[j] != lines[i]; j++)
			;
		if (j == n_lines)
			lines[n_lines++] = lines[i];
	}
	/* 64 consecutive STANs: 8 or 9 groups (the window may start mid-group) */
	cr_assert_leq(n_lines, 10, "%u lines for %u consecutive keys", n_lines, KEYS);
	engine__pending_free(e);
	free(e);
}

Test(pending, pool_exhaustion_returns_null)
{
	struct tsw_engine *e = mk();
	unsigned i;

	for (i = 0; i < N; i++)
		cr_assert(engine__req_alloc(e));
	cr_assert_null(engine__req_alloc(e));
	engine__pending_free(e);
	free(e);
}

Test(pending, stan_skips_values_in_flight)
{
	struct tsw_engine *e = mk();
	struct req *a = engine__req_alloc(e), *b;
	uint32_t s;

	cr_assert_eq(engine__pending_insert(e, a, 0), 0);
	/* wind the generator back so the next STAN would collide */
	e->stan_seq = (uint32_t)a->key - 1;
	b = engine__req_alloc(e);
	cr_assert_eq(engine__pending_insert(e, b, 0), 0);
	cr_assert_neq(b->key, a->key);
	/* the same STAN on another link is a different key */
	e->stan_seq = (uint32_t)a->key - 1;
	s = engine__stan_next(e, 1);
	cr_assert_eq(s, (uint32_t)a->key);
	/* worker id is the high digit */
	e->worker_id = 3;
	s = engine__stan_next(e, 0);
	cr_assert_eq(s / TSW_ENGINE_STAN_SPAN, 3);
	engine__pending_free(e);
	free(e);
}

Test(pending, heap_pops_in_deadline_order)
{
	struct tsw_engine *e = mk();
	uint64_t last = 0, x = 99;
	unsigned i;
	struct req *r, *mid = NULL;

	for (i = 0; i < 100; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		r = engine__req_alloc(e);
		r->deadline_ns = x % 1000000;
		engine__heap_push(e, r);
		if (i == 50)
			mid = r;
	}
	engine__heap_remove(e, mid);
	for (i = 0; i < 99; i++) {
		r = engine__heap_top(e);
		cr_assert(r);
		cr_assert_neq(r, mid);
		cr_assert_geq(r->deadline_ns, last);
		last = r->deadline_ns;
		engine__heap_remove(e, r);
	}
	cr_assert_null(engine__heap_top(e));
	engine__pending_free(e);
	free(e);
}

Test(pending, late_answer_memory)
{
	struct tsw_engine *e = mk();
	uint64_t saf_id = 1;

	engine__expired_remember(e, 42, 0);
	cr_assert(engine__expired_take(e, 42, &saf_id));
	cr_assert_eq(saf_id, 0, "a request, not a reversal");
	cr_assert_not(engine__expired_take(e, 42, &saf_id));
	cr_assert_not(engine__expired_take(e, 43, &saf_id));
	engine__expired_remember(e, 44, 777);
	cr_assert(engine__expired_take(e, 44, &saf_id));
	cr_assert_eq(saf_id, 777, "the reversal it carried");
	engine__pending_free(e);
	free(e);
}
