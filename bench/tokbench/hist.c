#include "hist.h"

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
