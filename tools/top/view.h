/* The screen of tokswitch-top: lines of plain text made from the last
 * two scrapes of /metrics. The same lines go to a terminal (drawn in
 * place) and to stdout (--once). */
#ifndef TOP_VIEW_H
#define TOP_VIEW_H

#include <stddef.h>

#include "metrics_text.h"

#define TOP_SCREEN_LINES_MAX 96
#define TOP_SCREEN_LINE_BYTES 200
/* switch declines shown, the highest rates first */
#define TOP_DECLINES_SHOWN 5

struct top_screen {
	size_t n;
	char line[TOP_SCREEN_LINES_MAX][TOP_SCREEN_LINE_BYTES];
};

/* What one screen is made from. */
struct top_view {
	const struct top_scrape *now;
	const struct top_scrape *before; /* the scrape before, or NULL (first screen) */
	double dt_s;			 /* seconds between them (monotonic clock) */
	const char *addr;		 /* the endpoint, as given */
	double interval_s;
	unsigned long scrape_no; /* scrapes so far, this one included */
	const char *error;	 /* why the latest scrape failed (now is older), or NULL */
};

/* A limit of the switch: the config key and the counter that rises
 * when it is hit (labels: exact label text, "" for none). */
struct top_limit {
	const char *key;
	const char *series;
	const char *labels;
};

/* Every limit the screen watches (a static table). */
const struct top_limit *top_view_limits(size_t *ret_n);

/* The screen for v into ret (every field of ret rewritten). A series
 * the scrape lacks shows as "-", and so does a rate without a scrape
 * before. Latency quantiles come from the bucket differences between
 * the two scrapes; on the first screen, or when the counts fell (a
 * restart), from the cumulative buckets ("since start"). */
void top_view_render(const struct top_view *v, struct top_screen *ret);

#endif
