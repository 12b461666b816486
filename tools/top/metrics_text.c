/* Prometheus text format reader: only sample lines, cut in place. */
#include "metrics_text.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define SAMPLES_FIRST_CAP 256

static bool is_name_start(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
}

static bool is_name_char(char c)
{
	return is_name_start(c) || (c >= '0' && c <= '9');
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

/* The '}' that closes the label text starting at p (quotes and their
 * backslash escapes honoured), or NULL. */
static char *labels_end(char *p)
{
	bool quoted = false;

	for (; *p; p++) {
		if (quoted && *p == '\\' && p[1]) {
			p++;
		} else if (*p == '"') {
			quoted = !quoted;
		} else if (!quoted && *p == '}') {
			return p;
		}
	}
	return NULL;
}

/* A value ("+Inf", "NaN", "1e-06", ...) then at most a timestamp. */
static bool parse_value(char *p, double *ret)
{
	char *end;
	double v;

	while (is_blank(*p))
		p++;
	if (!*p)
		return false;
	v = strtod(p, &end);
	if (end == p || (*end && !is_blank(*end)))
		return false;
	p = end;
	while (is_blank(*p))
		p++;
	if (*p) { /* a timestamp: an integer in milliseconds, ignored */
		if (*p == '-')
			p++;
		if (*p < '0' || *p > '9')
			return false;
		while (*p >= '0' && *p <= '9')
			p++;
		while (is_blank(*p))
			p++;
		if (*p)
			return false;
	}
	*ret = v;
	return true;
}

/* One line (NUL-terminated, in place) into ret; false when it is not a
 * sample. */
static bool parse_line(char *line, struct top_sample *ret)
{
	char *p = line, *name, *labels = NULL;
	double v;

	if (!is_name_start(*p))
		return false;
	name = p;
	while (is_name_char(*p))
		p++;
	if (*p == '{') {
		char *close = labels_end(p + 1);

		if (!close)
			return false;
		*p = '\0';
		labels = p + 1;
		*close = '\0';
		p = close + 1;
		if (!is_blank(*p))
			return false;
	} else if (!is_blank(*p)) {
		return false;
	} else {
		*p++ = '\0';
	}
	if (!parse_value(p, &v))
		return false;
	ret->name = name;
	ret->labels = labels ? labels : "";
	ret->value = v;
	return true;
}

static int push(struct top_scrape *s, size_t *cap, const struct top_sample *smp)
{
	if (s->n == *cap) {
		size_t ncap = *cap ? *cap * 2 : SAMPLES_FIRST_CAP;
		struct top_sample *n = realloc(s->samples, ncap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		s->samples = n;
		*cap = ncap;
	}
	s->samples[s->n++] = *smp;
	return 0;
}

int top_scrape_parse(const char *body, size_t len, struct top_scrape *ret)
{
	struct top_scrape s = {0};
	size_t cap = 0;
	char *line, *next;

	s.text = malloc(len + 1);
	if (!s.text)
		return -ENOMEM;
	memcpy(s.text, body, len);
	s.text[len] = '\0';
	for (line = s.text; line; line = next) {
		struct top_sample smp;

		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		while (is_blank(*line))
			line++;
		if (!*line || *line == '#')
			continue;
		if (!parse_line(line, &smp)) {
			s.bad_lines++;
			continue;
		}
		if (push(&s, &cap, &smp) < 0) {
			top_scrape_free(&s);
			return -ENOMEM;
		}
	}
	*ret = s;
	return 0;
}

void top_scrape_free(struct top_scrape *s)
{
	free(s->samples);
	free(s->text);
	memset(s, 0, sizeof(*s));
}

const struct top_sample *top_scrape_find(const struct top_scrape *s, const char *name,
					 const char *labels)
{
	for (size_t i = 0; i < s->n; i++) {
		if (!strcmp(s->samples[i].name, name) && !strcmp(s->samples[i].labels, labels))
			return &s->samples[i];
	}
	return NULL;
}

/* Copies the quoted value at p (just past its opening quote) into buf,
 * unescaped; *ret_end is set past its closing quote. */
static int copy_value(const char *p, char *buf, size_t size, const char **ret_end)
{
	size_t n = 0;
	bool fits = true;

	for (; *p && *p != '"'; p++) {
		char c = *p;

		if (c == '\\') {
			c = *++p;
			if (c == 'n')
				c = '\n';
			else if (c != '\\' && c != '"')
				return -EINVAL;
		}
		if (n + 1 < size)
			buf[n++] = c;
		else
			fits = false;
	}
	if (*p != '"')
		return -EINVAL;
	*ret_end = p + 1;
	if (!fits) {
		if (size)
			buf[0] = '\0';
		return -ENOSPC;
	}
	buf[n] = '\0';
	return (int)n;
}

int top_label_get(const char *labels, const char *key, char *buf, size_t size)
{
	const char *p = labels;
	size_t klen = strlen(key);
	char scratch[1];

	while (*p) {
		const char *k = p, *end;
		int rc;
		bool match;

		while (is_name_char(*p))
			p++;
		if (p == k || p[0] != '=' || p[1] != '"')
			return -EINVAL;
		match = (size_t)(p - k) == klen && !memcmp(k, key, klen);
		rc = match ? copy_value(p + 2, buf, size, &end)
			   : copy_value(p + 2, scratch, sizeof(scratch), &end);
		if (match || rc == -EINVAL)
			return rc;
		p = end;
		if (*p == ',')
			p++;
		while (*p == ' ')
			p++;
	}
	return -ENOENT;
}
