/* Histogram quantiles from bucket counts. */
#include "histogram.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_MAX_BYTES 128
#define LE_MAX_BYTES 32

static int by_le(const void *a, const void *b)
{
	double x = ((const struct top_bucket *)a)->le, y = ((const struct top_bucket *)b)->le;

	return (x > y) - (x < y);
}

/* The bucket's le, from its label text: only `le` may be there. */
static int bucket_le(const char *labels, double *ret)
{
	char le[LE_MAX_BYTES], *end;
	int rc = top_label_get(labels, "le", le, sizeof(le));

	if (rc <= 0)
		return -EINVAL;
	if (strncmp(labels, "le=", 3) || strchr(labels, ','))
		return -EINVAL;
	*ret = strtod(le, &end);
	if (*end || isnan(*ret))
		return -EINVAL;
	return 0;
}

int top_hist_read(const struct top_scrape *s, const char *family, struct top_hist *ret)
{
	char name[NAME_MAX_BYTES];
	struct top_hist h = {.n = 0};

	if ((size_t)snprintf(name, sizeof(name), "%s_bucket", family) >= sizeof(name))
		return -EINVAL;
	for (size_t i = 0; i < s->n; i++) {
		if (strcmp(s->samples[i].name, name))
			continue;
		if (h.n == TOP_HIST_BUCKETS_MAX)
			return -E2BIG;
		if (bucket_le(s->samples[i].labels, &h.b[h.n].le) < 0)
			return -EINVAL;
		h.b[h.n++].count = s->samples[i].value;
	}
	if (!h.n)
		return -ENOENT;
	qsort(h.b, h.n, sizeof(h.b[0]), by_le);
	if (!isinf(h.b[h.n - 1].le))
		return -EINVAL;
	for (size_t i = 1; i < h.n; i++) {
		if (h.b[i].le == h.b[i - 1].le || h.b[i].count < h.b[i - 1].count)
			return -EINVAL;
	}
	*ret = h;
	return 0;
}

int top_hist_delta(const struct top_hist *now, const struct top_hist *before, struct top_hist *ret)
{
	struct top_hist d = {.n = now->n};

	if (now->n != before->n)
		return -EINVAL;
	for (size_t i = 0; i < now->n; i++) {
		if (now->b[i].le != before->b[i].le)
			return -EINVAL;
		if (now->b[i].count < before->b[i].count)
			return -ERANGE;
		d.b[i].le = now->b[i].le;
		d.b[i].count = now->b[i].count - before->b[i].count;
	}
	*ret = d;
	return 0;
}

double top_hist_quantile(const struct top_hist *h, double q)
{
	double total, rank, lower = 0, below = 0;
	size_t i;

	if (!h->n || q < 0 || q > 1)
		return NAN;
	total = h->b[h->n - 1].count;
	if (total <= 0)
		return NAN;
	rank = q * total;
	for (i = 0; i < h->n - 1 && h->b[i].count < rank; i++)
		;
	if (i == h->n - 1) /* the +Inf bucket: its lower bound is all we know */
		return h->n >= 2 ? h->b[h->n - 2].le : NAN;
	if (i > 0) {
		lower = h->b[i - 1].le;
		below = h->b[i - 1].count;
	} else if (h->b[0].le <= 0) {
		return h->b[0].le;
	}
	if (h->b[i].count == below)
		return h->b[i].le;
	return lower + (h->b[i].le - lower) * (rank - below) / (h->b[i].count - below);
}
