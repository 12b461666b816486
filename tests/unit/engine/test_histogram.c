/* Latency histogram buckets: bounds from 0.5 us to 10 s, the ns and us
 * tables agree, and each value lands in its bucket. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "tsw/hist.h"
#include "tsw/metrics.h"

/* histogram bounds from 0.5 us to 10 s, both tables agree */
Test(histogram, histogram_bounds_start_at_half_a_microsecond)
{
	static const struct {
		uint64_t ns;
		unsigned bucket;
	} cases[] = {{0, 0},
		     {499, 0},
		     {500, 1},
		     {999, 1},
		     {1000, 2},
		     {1500, 2},
		     {9999999999ull, 22},
		     {10000000000ull, 23},
		     {UINT64_MAX - 1, 23}};
	unsigned i;

	cr_assert_eq(tsw_hist_bound_ns[0], 500);
	cr_assert_eq(tsw_hist_bound_ns[TSW_HIST_BUCKETS - 2], 10000000000ull);
	for (i = 0; i + 1 < TSW_HIST_BUCKETS; i++) {
		cr_assert_eq((uint64_t)(tsw_hist_bound_us[i] * 1000), tsw_hist_bound_ns[i], "%u",
			     i);
		if (i)
			cr_assert_gt(tsw_hist_bound_ns[i], tsw_hist_bound_ns[i - 1]);
	}
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct tsw_hist h;

		memset(&h, 0, sizeof(h));
		tsw_hist_add_ns(&h, cases[i].ns);
		cr_assert_eq(h.bucket[cases[i].bucket], 1, "%llu ns",
			     (unsigned long long)cases[i].ns);
	}
}

/* the bucket by definition: the first bound above ns */
static unsigned bucket_by_scan(uint64_t ns)
{
	unsigned i = 0;

	while (i < TSW_HIST_BUCKETS - 1 && ns >= tsw_hist_bound_ns[i])
		i++;
	return i;
}

static void bucket_agrees(uint64_t ns)
{
	cr_assert_eq(tsw_hist_bucket(ns), bucket_by_scan(ns), "%llu ns: %u, not %u",
		     (unsigned long long)ns, tsw_hist_bucket(ns), bucket_by_scan(ns));
}

/* the constant-time bucket agrees with the bounds at every edge: each
 * bound and its neighbours, each power of two and its neighbours, the
 * extremes, and a spread of values between */
Test(histogram, constant_time_bucket_is_the_first_bound_above)
{
	uint64_t x = 0x9e3779b97f4a7c15ull;

	for (unsigned i = 0; i + 1 < TSW_HIST_BUCKETS; i++) {
		bucket_agrees(tsw_hist_bound_ns[i] - 1);
		bucket_agrees(tsw_hist_bound_ns[i]);
		bucket_agrees(tsw_hist_bound_ns[i] + 1);
	}
	for (unsigned b = 0; b < 64; b++) {
		uint64_t p = 1ull << b;

		bucket_agrees(p - 1);
		bucket_agrees(p);
		bucket_agrees(p + 1);
	}
	bucket_agrees(0);
	bucket_agrees(UINT64_MAX);
	cr_assert_eq(tsw_hist_bucket(UINT64_MAX), TSW_HIST_BUCKETS - 1);
	for (unsigned i = 0; i < 100000; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		bucket_agrees(x >> (i % 64)); /* every magnitude */
	}
}
