/* Quantiles of a Prometheus histogram, from its cumulative buckets or
 * from the difference of two scrapes (what happened in between). */
#ifndef TOP_HISTOGRAM_H
#define TOP_HISTOGRAM_H

#include <stddef.h>

#include "metrics_text.h"

/* The most buckets a histogram may have (tokswitch has 24: 0.5 us to 10
 * s in 1-2-5 steps, and +Inf). */
#define TOP_HIST_BUCKETS_MAX 64

/* One cumulative bucket: observations <= le (le is +INFINITY for +Inf). */
struct top_bucket {
	double le;
	double count;
};

struct top_hist {
	struct top_bucket b[TOP_HIST_BUCKETS_MAX];
	size_t n; /* in ascending le; the last one is +Inf */
};

/* The buckets of histogram family (`tokswitch_issuer_rtt_seconds`: its
 * `_bucket{le="..."}` samples, without other labels) into ret, sorted
 * by le. Returns 0, -ENOENT when the scrape has none, -EINVAL when one
 * is malformed, there is no +Inf bucket or the counts fall as le rises,
 * -E2BIG above TOP_HIST_BUCKETS_MAX buckets (ret untouched on error). */
int top_hist_read(const struct top_scrape *s, const char *family, struct top_hist *ret);

/* What now holds beyond before (the observations between two scrapes)
 * into ret. Returns 0, -EINVAL when their bucket bounds differ, -ERANGE
 * when a count fell (the switch restarted between them); ret untouched
 * on error. */
int top_hist_delta(const struct top_hist *now, const struct top_hist *before, struct top_hist *ret);

/* The q-quantile (0 <= q <= 1) as Prometheus' histogram_quantile()
 * computes it: the bucket holding rank q * total, linearly interpolated
 * between its lower bound (the previous le, 0 for the first) and its
 * le; in the +Inf bucket, the highest finite le. NAN without
 * observations. */
double top_hist_quantile(const struct top_hist *h, double q);

#endif
