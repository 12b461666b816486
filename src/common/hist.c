/* The latency histograms' bucket bounds (tsw/hist.h). */
#include <math.h>

#include "tsw/hist.h"

/* Log-linear: 1-2-5 steps from 0.5 us to 10 s, then +Inf (a worker's
 * internal latency is around a microsecond: a 10 us floor would put
 * every sample in the first bucket; a state commit's fsync is
 * milliseconds, a slow disk's seconds). */
const uint64_t tsw_hist_bound_ns[TSW_HIST_BUCKETS] = {
    500,       1000,	  2000,	     5000,	 10000,	     20000,	 50000,	      100000,
    200000,    500000,	  1000000,   2000000,	 5000000,    10000000,	 20000000,    50000000,
    100000000, 200000000, 500000000, 1000000000, 2000000000, 5000000000, 10000000000, UINT64_MAX,
};

const double tsw_hist_bound_us[TSW_HIST_BUCKETS] = {
    0.5,    1,	    2,	    5,	     10,      20,      50,	 100,
    200,    500,    1000,   2000,    5000,    10000,   20000,	 50000,
    100000, 200000, 500000, 1000000, 2000000, 5000000, 10000000, INFINITY,
};

/* For each bit length n of a value (0 for 0, 1..64), how many bounds
 * are at or below 2^(n-1) (0 for n = 0): every bound is at least twice
 * the one before, so at most one more lies below 2^n, and the value's
 * bucket is this entry or the next (tsw_hist_bucket). Length 64 (values from 2^63 ns) names
 * bucket 22, whose bound every such value passes: bucket 23, +Inf, never
 * the sentinel UINT64_MAX. tests/unit/engine/test_histogram.c checks the
 * table against the bounds. */
const uint8_t tsw_hist_first[65] = {
    0,	0,  0,	0,  0,	0,  0,	0,  0,	0,  1,	2,  3,	3,  4,	5,  6,	7,  8,	9,  10, 11,
    12, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 21, 22, 23, 23, 23, 23, 23, 23, 23, 23, 23,
    23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 22,
};
