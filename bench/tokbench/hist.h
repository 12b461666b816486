/* Log-linear latency histogram (HdrHistogram-like, 64 sub-buckets per power
 * of two: values are kept within 1.6%). Fixed size, no allocation. */
#ifndef TSW_BENCH_HIST_H
#define TSW_BENCH_HIST_H

#include <stdint.h>

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

/* Bucket index of v, and the largest value a bucket holds (for tests). */
unsigned hist_index(uint64_t v);
uint64_t hist_upper(unsigned idx);

#endif
