/* Log-linear latency histograms with one writer: the workers' shards
 * (tsw/metrics.h) and the state writer thread (tsw/state.h) each keep
 * theirs, the control plane reads them while they are written.
 *
 * Buckets. 1-2-5 steps from 0.5 us to 10 s: bucket i holds values below
 * tsw_hist_bound_ns[i]; the last bucket is +Inf. tsw_hist_bound_us[]
 * holds the same bounds in microseconds (a double: 0.5 us) for the
 * control plane's le labels; its last entry is +Inf. Both tables are
 * constant (src/common/hist.c): read them from any thread.
 *
 * Threads. One writer per histogram: only its owner's thread calls
 * tsw_hist_add_ns(), which does relaxed atomic loads and stores (no
 * read-modify-write: with one writer none is needed; on x86-64 they are
 * plain moves). Any other thread reads with tsw_hist_load(): no field is
 * torn, the fields are not one snapshot (count may be ahead of or behind
 * the buckets by the observation being added).
 *
 * Errors. Nothing here fails or allocates.
 */
#ifndef TSW_HIST_H
#define TSW_HIST_H

#include <stdint.h>

enum { TSW_HIST_BUCKETS = 24 };
extern const uint64_t tsw_hist_bound_ns[TSW_HIST_BUCKETS];
extern const double tsw_hist_bound_us[TSW_HIST_BUCKETS];

/* tsw_hist_bucket()'s table: see src/common/hist.c */
extern const uint8_t tsw_hist_first[65];

struct tsw_hist {
	uint64_t bucket[TSW_HIST_BUCKETS];
	uint64_t count;
	uint64_t sum_us;
};

static inline void tsw_hist_bump(uint64_t *c, uint64_t n)
{
	__atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}

/* The bucket of a value in ns: the first i with ns < tsw_hist_bound_ns[i]
 * (TSW_HIST_BUCKETS - 1 past the last finite bound). Constant time (the
 * bit length picks the one bound to compare with): this runs on every
 * authorization. Pure, any thread. */
static inline unsigned tsw_hist_bucket(uint64_t ns)
{
	unsigned len = ns ? 64 - (unsigned)__builtin_clzll(ns) : 0;
	unsigned i = tsw_hist_first[len];

	return i + (ns >= tsw_hist_bound_ns[i]);
}

/* Adds one value in nanoseconds to h (sum_us keeps whole microseconds,
 * truncated). Only h's one writer may call it. Constant time, never
 * fails. */
static inline void tsw_hist_add_ns(struct tsw_hist *h, uint64_t ns)
{
	unsigned i = tsw_hist_bucket(ns);

	tsw_hist_bump(&h->bucket[i], 1);
	tsw_hist_bump(&h->count, 1);
	tsw_hist_bump(&h->sum_us, ns / 1000);
}

/* Adds one value in microseconds; as tsw_hist_add_ns(). */
static inline void tsw_hist_add(struct tsw_hist *h, uint64_t us)
{
	tsw_hist_add_ns(h, us * 1000);
}

/* Copies h into *ret field by field with relaxed atomic loads: any
 * thread, while h lives. Never fails. */
static inline void tsw_hist_load(const struct tsw_hist *h, struct tsw_hist *ret)
{
	for (unsigned i = 0; i < TSW_HIST_BUCKETS; i++)
		ret->bucket[i] = __atomic_load_n(&h->bucket[i], __ATOMIC_RELAXED);
	ret->count = __atomic_load_n(&h->count, __ATOMIC_RELAXED);
	ret->sum_us = __atomic_load_n(&h->sum_us, __ATOMIC_RELAXED);
}

#endif
