/* Masked one-line rendering of a decoded message, for logs. */
#include <stdbool.h>
#include <stdio.h>

#include "tsw/iso8583.h"
#include "tsw/log.h"

/* Longest number put_pan masks with tsw_mask_pan(): an LL field's value
 * (99) and its NUL. Longer values (none in a sane profile) are starred
 * whole. */
#define PAN_MASK_BUF 100

struct sink {
	char *out;
	size_t cap, len;
	bool cut;
};

static void put(struct sink *s, char c)
{
	if (s->len + 1 < s->cap)
		s->out[s->len++] = c;
	else
		s->cut = true;
}

static void put_str(struct sink *s, const char *str)
{
	while (*str)
		put(s, *str++);
}

static void put_uint(struct sink *s, unsigned v)
{
	char tmp[16];

	snprintf(tmp, sizeof(tmp), "%u", v);
	put_str(s, tmp);
}

static void put_raw(struct sink *s, const uint8_t *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		put(s, (char)v[i]);
}

static void put_stars(struct sink *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		put(s, '*');
}

/* tsw_mask_pan(): first 6 and last 4 kept when the number is longer than
 * 10, else all '*' */
static void put_pan(struct sink *s, const uint8_t *v, size_t n)
{
	char masked[PAN_MASK_BUF];

	if (n >= sizeof(masked) ||
	    tsw_mask_pan((const char *)v, (unsigned)n, masked, sizeof(masked)) < 0) {
		put_stars(s, n);
		return;
	}
	put_raw(s, (const uint8_t *)masked, n);
}

static void put_length_only(struct sink *s, size_t n)
{
	put(s, '[');
	put_uint(s, (unsigned)n);
	put(s, ']');
}

/* Track 2: the PAN part masked like DE2; expiry, service code and
 * discretionary data after the separator hidden whole. */
static void put_track2(struct sink *s, const uint8_t *v, size_t n)
{
	size_t sep = 0;

	while (sep < n && v[sep] != '=' && v[sep] != 'D')
		sep++;
	put_pan(s, v, sep);
	if (sep < n) {
		put(s, (char)v[sep]);
		put_stars(s, n - sep - 1);
	}
}

static bool de48_tag_secret(unsigned tag)
{
	return tag == 11 || (tag >= 30 && tag <= 36);
}

/* "tag=value;tag=value", token subelements masked; malformed: length only */
static void put_de48(struct sink *s, const uint8_t *v, size_t n)
{
	struct tsw_de48_iter it = {.p = v, .len = n, .off = 0};
	const uint8_t *val;
	size_t vlen;
	unsigned tag;
	int r;
	bool first = true;

	while ((r = tsw_de48_next(&it, &tag, &val, &vlen)) == 1) {
		if (!first)
			put(s, ';');
		first = false;
		put(s, (char)('0' + tag / 10));
		put(s, (char)('0' + tag % 10));
		put(s, '=');
		if (tag == 30)
			put_pan(s, val, vlen);
		else if (de48_tag_secret(tag))
			put_stars(s, vlen);
		else
			put_raw(s, val, vlen);
	}
	if (r < 0) {
		if (!first)
			put(s, ';');
		put_str(s, "malformed");
		put_length_only(s, n);
	}
}

static void put_field(struct sink *s, const struct tsw_iso_profile *p, const struct tsw_iso_msg *m,
		      unsigned f)
{
	const uint8_t *v = tsw_iso_ptr(m, f);
	size_t n = m->f[f].len;

	switch (f) {
	case 2:	  /* PAN or token */
	case 34:  /* PAN, extended */
	case 102: /* account identification 1 */
	case 103: /* account identification 2 */
		put_pan(s, v, n);
		return;
	case 14: /* expiry */
		put_stars(s, n);
		return;
	case 35:
		put_track2(s, v, n);
		return;
	case 36: /* track 3 */
	case 45: /* track 1 */
	case 52: /* PIN block */
	case 53: /* security control */
	case 55: /* chip data */
		put_length_only(s, n);
		return;
	case 48:
		put_de48(s, v, n);
		return;
	default:
		break;
	}
	if (p->fields[f].type == TSW_ISO_B)
		put_length_only(s, n);
	else
		put_raw(s, v, n);
}

size_t tsw_iso_format_masked(const struct tsw_iso_profile *p, const struct tsw_iso_msg *m,
			     char *out, size_t cap)
{
	struct sink s = {.out = out, .cap = cap, .len = 0, .cut = false};

	if (cap == 0)
		return 0;
	put_str(&s, "mti=");
	put_raw(&s, (const uint8_t *)m->mti, sizeof(m->mti));
	for (unsigned f = 2; f < TSW_ISO_FIELDS; f++) {
		if (!tsw_iso_has(m, f) || !p->fields[f].defined)
			continue;
		put_str(&s, " f");
		put_uint(&s, f);
		put(&s, '=');
		put_field(&s, p, m, f);
	}
	if (s.cut) {
		for (size_t i = 0; i < 3 && s.len > i; i++)
			out[s.len - 1 - i] = '.';
	}
	out[s.len] = '\0';
	return s.len;
}
