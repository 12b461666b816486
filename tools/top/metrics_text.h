/* The Prometheus text exposition format, as far as tokswitch-top reads
 * it: `name{labels} value [timestamp]` sample lines; `#` lines (HELP,
 * TYPE, comments) and blank lines are skipped. */
#ifndef TOP_METRICS_TEXT_H
#define TOP_METRICS_TEXT_H

#include <stddef.h>

/* One sample. name and labels point into the scrape's own copy of the
 * text and live as long as the scrape; labels is what stood between the
 * braces, as written (`rc="00",mti="0100"`), "" when there were none. */
struct top_sample {
	const char *name;
	const char *labels;
	double value;
};

struct top_scrape {
	char *text; /* the body, cut into NUL-terminated names and labels */
	struct top_sample *samples;
	size_t n;
	size_t bad_lines; /* sample lines that did not parse (skipped) */
};

/* Parses len bytes of body (need not be NUL-terminated) into ret, which
 * the caller frees with top_scrape_free(). A line that is not a sample
 * is counted in ret->bad_lines and skipped. Returns 0, or -ENOMEM
 * (ret untouched). */
int top_scrape_parse(const char *body, size_t len, struct top_scrape *ret);

/* Frees what top_scrape_parse() allocated; s may be zeroed (no-op). */
void top_scrape_free(struct top_scrape *s);

/* The sample of series name with exactly the label text labels ("" for
 * none), or NULL. The pointer lives as long as s. */
const struct top_sample *top_scrape_find(const struct top_scrape *s, const char *name,
					 const char *labels);

/* The value of label key in a sample's label text, unescaped (\\, \",
 * \n), into buf (size bytes, NUL-terminated). Returns its length, -ENOENT
 * when the label is not there, -ENOSPC when it does not fit (buf holds
 * ""), -EINVAL when the label text is malformed. */
int top_label_get(const char *labels, const char *key, char *buf, size_t size);

#endif
