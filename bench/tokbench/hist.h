/* Log-linear latency histogram (HdrHistogram-like, 64 sub-buckets per power
 * of two: values are kept within 1.6%). Fixed size, no allocation. */
#ifndef TSW_BENCH_HIST_H
#define TSW_BENCH_HIST_H

#include <stdint.h>
#include <stdio.h>

#define HIST_SUB_BITS 6
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_BUCKETS ((64u - HIST_SUB_BITS + 1u) * HIST_SUB)

struct hist {
	uint64_t bucket[HIST_BUCKETS];
	uint64_t count, min, max, sum;
};

void hist_reset(struct hist *h);
void hist_add(struct hist *h, uint64_t v);
/* Adds every value of src to dst. */
void hist_merge(struct hist *dst, const struct hist *src);
/* Smallest recorded value v such that a share q (0..1) of values is <= v,
 * reported as its bucket's upper bound (never above max); 0 when empty. */
uint64_t hist_quantile(const struct hist *h, double q);

/* Percentile rows per half of the distance to 100 %, as HdrHistogram's
 * outputPercentileDistribution defaults to. */
#define HIST_HGRM_TICKS 5

/* Writes h in HdrHistogram's percentile-distribution text format (.hgrm, as
 * its outputPercentileDistribution prints it): the header, a row at every
 * percentile tick (ticks_per_half rows in each half of the distance left to
 * 100 %: value, percentile, total count, 1/(1-percentile)), then the
 * Mean/StdDeviation, Max/Total count and Buckets/SubBuckets footer. Values
 * are recorded ones divided by scale (1000 for nanoseconds written as
 * microseconds), each row giving its bucket's largest value as HdrHistogram
 * does; mean and standard deviation come from bucket midpoints, also as
 * HdrHistogram computes them. Buckets and SubBuckets describe this
 * histogram in HdrHistogram's terms (64 values per power of two is its
 * layout with 128 sub-buckets). Returns 0, or -EIO when f reports a write
 * error. */
int hist_write_hgrm(const struct hist *h, FILE *f, unsigned ticks_per_half, double scale);

/* Bucket index of v, and the largest value a bucket holds (for tests). */
unsigned hist_index(uint64_t v);
uint64_t hist_upper(unsigned idx);

#endif
