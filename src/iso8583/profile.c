/* Field-spec profile loader: one text file per wire dialect (config/README.md). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsw/error.h"
#include "tsw/iso8583.h"

#define SPEC_LINE_MAX 256
#define SPEC_LL_MAX 99
#define SPEC_LLL_MAX 999
#define SPEC_BIN2_FRAME_MAX TSW_ISO_BIN2_BODY_MAX /* a 2-byte header and 16-bit views */
#define SPEC_NAME_LEN_MAX 255	    /* profile name given to load_named */

static const char *const type_names[TSW_ISO_TYPE_MAX] = {
    [TSW_ISO_N] = "n", [TSW_ISO_AN] = "an", [TSW_ISO_ANS] = "ans",
    [TSW_ISO_B] = "b", [TSW_ISO_Z] = "z",   [TSW_ISO_XN] = "xn",
};
static const char *const len_names[TSW_ISO_LEN_MAX] = {
    [TSW_ISO_FIXED] = "fixed",
    [TSW_ISO_LL] = "LL",
    [TSW_ISO_LLL] = "LLL",
};
static const char *const header_names[TSW_ISO_HDR_MAX] = {
    [TSW_ISO_HDR_BIN2] = "bin2",
    [TSW_ISO_HDR_ASCII4] = "ascii4",
    [TSW_ISO_HDR_NONE] = "none",
};
static const char *const bitmap_names[TSW_ISO_BITMAP_MAX] = {
    [TSW_ISO_BITMAP_BIN] = "binary",
    [TSW_ISO_BITMAP_HEX] = "hex",
};

const char *tsw_iso_header_name(const struct tsw_iso_profile *p)
{
	return p->header < TSW_ISO_HDR_MAX ? header_names[p->header] : "unknown";
}

static int lookup(const char *const *names, int n, const char *word)
{
	for (int i = 0; i < n; i++)
		if (names[i] && strcmp(names[i], word) == 0)
			return i;
	return -1;
}

/* Parses a decimal in [lo, hi]; returns 0 or -1. */
static int parse_uint(const char *s, unsigned long lo, unsigned long hi, unsigned long *ret)
{
	char *end;
	unsigned long v;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v < lo || v > hi)
		return -1;
	*ret = v;
	return 0;
}

/* Splits off the next whitespace-separated word; returns NULL at the end. */
static char *next_word(char **cursor)
{
	char *s = *cursor, *w;

	while (*s == ' ' || *s == '\t')
		s++;
	if (!*s)
		return NULL;
	w = s;
	while (*s && *s != ' ' && *s != '\t')
		s++;
	if (*s)
		*s++ = '\0';
	*cursor = s;
	return w;
}

static void trim_name(const char *s, char *out, size_t cap)
{
	size_t n;

	while (*s == ' ' || *s == '\t')
		s++;
	n = strlen(s);
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	if (n >= cap)
		n = cap - 1;
	memcpy(out, s, n);
	out[n] = '\0';
}

static int parse_field(struct tsw_iso_profile *p, char *cursor, const char *num, unsigned lineno,
		       unsigned *field_line)
{
	struct tsw_iso_field_spec *fs;
	unsigned long f, max;
	const char *w_type, *w_len, *w_max;
	int type, len_kind;
	unsigned long limit;

	if (parse_uint(num, 2, TSW_ISO_FIELDS - 1, &f))
		return -1; /* field 1 is the secondary bitmap: the codec owns it */
	fs = &p->fields[f];
	if (fs->defined)
		return -1;
	w_type = next_word(&cursor);
	w_len = next_word(&cursor);
	w_max = next_word(&cursor);
	if (!w_type || !w_len || !w_max)
		return -1;
	type = lookup(type_names, TSW_ISO_TYPE_MAX, w_type);
	len_kind = lookup(len_names, TSW_ISO_LEN_MAX, w_len);
	if (type < 0 || len_kind < 0)
		return -1;
	limit = len_kind == TSW_ISO_LL ? SPEC_LL_MAX : SPEC_LLL_MAX;
	if (parse_uint(w_max, 1, limit, &max))
		return -1;
	if (type == TSW_ISO_XN && (len_kind != TSW_ISO_FIXED || max < 2))
		return -1;
	fs->defined = 1;
	field_line[f] = lineno;
	fs->type = (uint8_t)type;
	fs->len_kind = (uint8_t)len_kind;
	fs->max_len = (uint16_t)max;
	trim_name(cursor, fs->name, sizeof(fs->name));
	return 0;
}

/* Fills the derived members once every line is read (the bitmap directive
 * may come after the fields). Returns the first field that cannot fit in a
 * frame, or 0. */
static unsigned finish(struct tsw_iso_profile *p)
{
	for (unsigned f = 2; f < TSW_ISO_FIELDS; f++) {
		struct tsw_iso_field_spec *fs = &p->fields[f];

		if (!fs->defined)
			continue;
		fs->hex = fs->type == TSW_ISO_B && p->bitmap == TSW_ISO_BITMAP_HEX;
		fs->prefix = fs->len_kind == TSW_ISO_LL ? 2 : fs->len_kind == TSW_ISO_LLL ? 3 : 0;
		fs->wire_max = (uint16_t)(fs->hex ? 2 * fs->max_len : fs->max_len);
		if (fs->len_kind == TSW_ISO_FIXED && fs->wire_max > p->max_frame)
			return f;
	}
	return 0;
}

static int parse_directive(struct tsw_iso_profile *p, const char *key, char *cursor, unsigned *seen)
{
	const char *val = next_word(&cursor);
	unsigned long v;
	int i;

	if (!val || next_word(&cursor))
		return -1;
	if (strcmp(key, "profile") == 0) {
		if (strlen(val) >= sizeof(p->name))
			return -1;
		strcpy(p->name, val);
		return 0;
	}
	if (strcmp(key, "header") == 0) {
		i = lookup(header_names, TSW_ISO_HDR_MAX, val);
		if (i < 0)
			return -1;
		p->header = (uint8_t)i;
		*seen |= 1;
		return 0;
	}
	if (strcmp(key, "bitmap") == 0) {
		i = lookup(bitmap_names, TSW_ISO_BITMAP_MAX, val);
		if (i < 0)
			return -1;
		p->bitmap = (uint8_t)i;
		*seen |= 2;
		return 0;
	}
	if (strcmp(key, "max_frame") == 0) {
		/* 20: the smallest message is an MTI and one bitmap */
		if (parse_uint(val, 20, SPEC_BIN2_FRAME_MAX, &v))
			return -1;
		p->max_frame = (uint32_t)v;
		return 0;
	}
	return -1;
}

static void default_name(const char *path, char *out, size_t cap)
{
	const char *base = strrchr(path, '/');
	size_t n;

	base = base ? base + 1 : path;
	n = strcspn(base, ".");
	if (n >= cap)
		n = cap - 1;
	memcpy(out, base, n);
	out[n] = '\0';
}

int tsw_iso_profile_load(const char *path, struct tsw_iso_profile *ret_profile, unsigned *ret_line)
{
	struct tsw_iso_profile *p;
	char line[SPEC_LINE_MAX];
	unsigned field_line[TSW_ISO_FIELDS] = {0};
	unsigned lineno = 0, seen = 0, bad_field;
	FILE *f;
	int r;

	if (ret_line)
		*ret_line = 0;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	f = fopen(path, "re");
	if (!f) {
		r = -errno;
		goto err_free;
	}
	default_name(path, p->name, sizeof(p->name));
	p->max_frame = TSW_ISO_MAX_FRAME_DEFAULT;

	while (fgets(line, sizeof(line), f)) {
		size_t n = strlen(line);
		char *cursor = line, *word;

		lineno++;
		if (n == sizeof(line) - 1 && line[n - 1] != '\n')
			goto err_bad_line; /* a line longer than SPEC_LINE_MAX */
		line[strcspn(line, "#\r\n")] = '\0';
		word = next_word(&cursor);
		if (!word)
			continue;
		if (word[0] >= '0' && word[0] <= '9')
			r = parse_field(p, cursor, word, lineno, field_line);
		else
			r = parse_directive(p, word, cursor, &seen);
		if (r < 0)
			goto err_bad_line;
	}
	if (ferror(f)) {
		r = -EIO;
		lineno = 0;
		goto err_close;
	}
	lineno++; /* faults found at the end point one past the last line */
	if (seen != 3)
		goto err_bad_line;
	if (p->max_frame > tsw_iso_header_max(p))
		goto err_bad_line;
	bad_field = finish(p);
	if (bad_field) {
		lineno = field_line[bad_field];
		goto err_bad_line;
	}
	fclose(f);
	memcpy(ret_profile, p, sizeof(*p));
	free(p);
	return 0;

err_bad_line:
	r = -TSW_E_BAD_PROFILE;
err_close:
	fclose(f);
	if (ret_line)
		*ret_line = lineno;
err_free:
	free(p);
	return r;
}

int tsw_iso_profile_load_spec(const char *name_or_path, struct tsw_iso_profile *ret_profile)
{
	if (name_or_path && strchr(name_or_path, '/'))
		return tsw_iso_profile_load(name_or_path, ret_profile, NULL);
	return tsw_iso_profile_load_named(NULL, name_or_path, ret_profile);
}

int tsw_iso_profile_load_named(const char *dir, const char *name,
			       struct tsw_iso_profile *ret_profile)
{
	char path[PATH_MAX];
	int n;

	if (!name || !*name || strchr(name, '/') || strlen(name) > SPEC_NAME_LEN_MAX)
		return -TSW_E_BAD_INPUT;
	if (!dir)
		dir = TSW_CONFIG_DIR;
	n = snprintf(path, sizeof(path), "%s/%s.spec", dir, name);
	if (n < 0 || (size_t)n >= sizeof(path))
		return -ENAMETOOLONG;
	return tsw_iso_profile_load(path, ret_profile, NULL);
}
