#include "hist.h"

#include <errno.h>
#include <math.h>
#include <string.h>

unsigned hist_index(uint64_t v)
{
	unsigned e;

	if (v < HIST_SUB)
		return (unsigned)v;
	e = 63u - (unsigned)__builtin_clzll(v);
	return ((e - HIST_SUB_BITS + 1u) << HIST_SUB_BITS) +
	       (unsigned)((v >> (e - HIST_SUB_BITS)) & (HIST_SUB - 1u));
}

uint64_t hist_upper(unsigned idx)
{
	unsigned e, sub;
	uint64_t low;

	if (idx < HIST_SUB)
		return idx;
	e = (idx >> HIST_SUB_BITS) + HIST_SUB_BITS - 1u;
	sub = idx & (HIST_SUB - 1u);
	low = (uint64_t)(HIST_SUB + sub) << (e - HIST_SUB_BITS);
	return low + (((uint64_t)1 << (e - HIST_SUB_BITS)) - 1u);
}

void hist_reset(struct hist *h)
{
	memset(h, 0, sizeof(*h));
	h->min = UINT64_MAX;
}

void hist_add(struct hist *h, uint64_t v)
{
	h->bucket[hist_index(v)]++;
	h->count++;
	h->sum += v;
	if (v < h->min)
		h->min = v;
	if (v > h->max)
		h->max = v;
}

void hist_merge(struct hist *dst, const struct hist *src)
{
	for (unsigned i = 0; i < HIST_BUCKETS; i++)
		dst->bucket[i] += src->bucket[i];
	dst->count += src->count;
	dst->sum += src->sum;
	if (src->min < dst->min)
		dst->min = src->min;
	if (src->max > dst->max)
		dst->max = src->max;
}

uint64_t hist_quantile(const struct hist *h, double q)
{
	uint64_t rank, seen = 0, up;

	if (h->count == 0)
		return 0;
	rank = (uint64_t)ceil(q * (double)h->count);
	if (rank < 1)
		rank = 1;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		seen += h->bucket[i];
		if (seen >= rank) {
			up = hist_upper(i);
			return up < h->max ? up : h->max;
		}
	}
	return h->max;
}

/* Smallest value bucket idx holds (buckets are contiguous). */
static uint64_t hist_lower(unsigned idx)
{
	return idx == 0 ? 0 : hist_upper(idx - 1) + 1u;
}

/* The value HdrHistogram stands for a bucket's values in its mean and
 * standard deviation (medianEquivalentValue). */
static double hist_mid(unsigned idx)
{
	uint64_t low = hist_lower(idx);

	return (double)(low + ((hist_upper(idx) - low + 1u) >> 1));
}

/* The next percentile level after level: HdrHistogram keeps ticks_per_half
 * equal steps in each half of the distance left to 100 %, so the step halves
 * at 50 %, 75 %, 87.5 %, ... */
static double next_level(double level, unsigned ticks_per_half)
{
	double halvings = floor(log(100.0 / (100.0 - level)) / log(2.0)) + 1.0;

	/* Only a count beyond 2^50 brings level this close to 100; cap the
	 * power so the step stays a finite, positive number. */
	if (!(halvings < 62.0))
		halvings = 62.0;
	return level + 100.0 / ((double)ticks_per_half * pow(2.0, halvings));
}

static void write_rows(const struct hist *h, FILE *f, unsigned ticks_per_half, double scale)
{
	double level = 0.0, total = (double)h->count;
	uint64_t cum = 0;
	unsigned last = 0;

	for (unsigned i = 0; i < HIST_BUCKETS && cum < h->count; i++) {
		if (!h->bucket[i])
			continue;
		cum += h->bucket[i];
		last = i;
		/* as HdrHistogram's percentile iterator: one row per level this
		 * bucket reaches, and the last bucket only at its first */
		while (100.0 * (double)cum / total >= level) {
			fprintf(f, "%12.3f %2.12f %10llu %14.2f\n", (double)hist_upper(i) / scale,
				level / 100.0, (unsigned long long)cum,
				1.0 / (1.0 - level / 100.0));
			level = next_level(level, ticks_per_half);
			if (cum == h->count)
				break;
		}
	}
	if (h->count)
		fprintf(f, "%12.3f %2.12f %10llu\n", (double)hist_upper(last) / scale, 1.0,
			(unsigned long long)h->count);
}

int hist_write_hgrm(const struct hist *h, FILE *f, unsigned ticks_per_half, double scale)
{
	double mean = 0.0, var = 0.0, max = 0.0;

	fprintf(f, "%12s %14s %10s %14s\n\n", "Value", "Percentile", "TotalCount",
		"1/(1-Percentile)");
	write_rows(h, f, ticks_per_half ? ticks_per_half : HIST_HGRM_TICKS, scale);
	if (h->count) {
		for (unsigned i = 0; i < HIST_BUCKETS; i++)
			mean += hist_mid(i) * (double)h->bucket[i];
		mean /= (double)h->count;
		for (unsigned i = 0; i < HIST_BUCKETS; i++)
			var += (hist_mid(i) - mean) * (hist_mid(i) - mean) * (double)h->bucket[i];
		var /= (double)h->count;
		max = (double)hist_upper(hist_index(h->max));
	}
	fprintf(f, "#[Mean    = %12.3f, StdDeviation   = %12.3f]\n", mean / scale,
		sqrt(var) / scale);
	fprintf(f, "#[Max     = %12.3f, Total count    = %12llu]\n", max / scale,
		(unsigned long long)h->count);
	/* HdrHistogram's first bucket holds 2 * sub-bucket-half values at unit 1,
	 * each later one a power of two in HIST_SUB steps: ours in its terms */
	fprintf(f, "#[Buckets = %12u, SubBuckets     = %12u]\n", HIST_BUCKETS / HIST_SUB - 1u,
		2u * HIST_SUB);
	return ferror(f) ? -EIO : 0;
}
