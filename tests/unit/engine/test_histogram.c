/* Latency histogram buckets: bounds from 0.5 us to 10 s, the ns and us
 * tables agree, and each value lands in its bucket. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

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
