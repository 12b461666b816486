#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tsw/error.h"
#include "tsw/log.h"

enum tsw_log_level tsw_log_level = TSW_LOG_INFO;
enum tsw_log_format tsw_log_format = TSW_LOG_TEXT;

static const char *const level_names[TSW_LOG_MAX] = {
    [TSW_LOG_DEBUG] = "debug", [TSW_LOG_INFO] = "info", [TSW_LOG_WARN] = "warn",
    [TSW_LOG_ERROR] = "error", [TSW_LOG_CRIT] = "crit",
};

static const char *const format_names[TSW_LOG_FORMAT_MAX] = {
    [TSW_LOG_TEXT] = "text",
    [TSW_LOG_JSON] = "json",
};

/* Room kept at the end of a JSON line for ,"truncated":true}\n */
#define JSON_TAIL_RESERVE 24u
/* The longest bare value read as a JSON number (fits an int64). */
#define JSON_INT_DIGITS_MAX 18u

/* ---- an output buffer that stops at its end ---- */

struct out {
	char *p;
	size_t cap, len; /* cap: bytes usable, the NUL excluded */
	bool full;
};

static void put(struct out *o, const char *s, size_t n)
{
	if (o->full || n > o->cap - o->len) {
		o->full = true;
		return;
	}
	memcpy(o->p + o->len, s, n);
	o->len += n;
}

static void put_s(struct out *o, const char *s)
{
	put(o, s, strlen(s));
}

static void put_ts(struct out *o, const struct timespec *ts)
{
	char b[32];
	struct tm tm;
	int n;

	gmtime_r(&ts->tv_sec, &tm);
	n = snprintf(b, sizeof(b), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
		     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		     ts->tv_nsec / 1000000);
	put(o, b, n > 0 ? (size_t)n : 0);
}

/* ---- text ---- */

/* One line whatever the caller passed: a control character (a newline in
 * an unquoted value) would start a forged line. */
static void put_text_fields(struct out *o, const char *s)
{
	for (; *s && !o->full; s++) {
		unsigned char c = (unsigned char)*s;

		put(o, c < 0x20 || c == 0x7f ? "?" : s, 1);
	}
}

static void render_text(struct out *o, const struct timespec *ts, const char *level,
			const char *event, const char *fields)
{
	put_s(o, "ts=");
	put_ts(o, ts);
	put_s(o, " level=");
	put_s(o, level);
	put_s(o, " event=");
	put_s(o, event);
	if (fields && fields[0]) {
		put_s(o, " ");
		put_text_fields(o, fields);
	}
}

/* ---- JSON ---- */

/* Length of the well-formed UTF-8 sequence at s (n bytes left), 0 if
 * there is none. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	size_t len, i;
	unsigned char lo = 0x80, hi = 0xbf;

	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		len = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4;
	else
		return 0;
	if (len > n)
		return 0;
	/* no overlong forms, no surrogates, nothing above U+10FFFF */
	if (s[0] == 0xe0)
		lo = 0xa0;
	else if (s[0] == 0xed)
		hi = 0x9f;
	else if (s[0] == 0xf0)
		lo = 0x90;
	else if (s[0] == 0xf4)
		hi = 0x8f;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return len;
}

static void put_json_byte(struct out *o, unsigned char c)
{
	char b[8];

	switch (c) {
	case '"':
		put_s(o, "\\\"");
		return;
	case '\\':
		put_s(o, "\\\\");
		return;
	case '\n':
		put_s(o, "\\n");
		return;
	case '\r':
		put_s(o, "\\r");
		return;
	case '\t':
		put_s(o, "\\t");
		return;
	default:
		break;
	}
	if (c < 0x20 || c == 0x7f) {
		snprintf(b, sizeof(b), "\\u%04x", c);
		put_s(o, b);
		return;
	}
	if (c >= 0x80) {
		put_s(o, "\\ufffd");
		return;
	}
	put(o, (const char *)&c, 1);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* s[0..n) as the inside of a JSON string; unescape: s is the inside of a
 * quoted logfmt value (tsw_log_quote()'s escapes are undone first). */
static void put_json_chars(struct out *o, const char *s, size_t n, bool unescape)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0;

	while (i < n && !o->full) {
		size_t k;

		if (unescape && u[i] == '\\' && i + 1 < n) {
			char e = s[i + 1];

			i += 2;
			if (e == 'n') {
				put_json_byte(o, '\n');
			} else if (e == 'r') {
				put_json_byte(o, '\r');
			} else if (e == 't') {
				put_json_byte(o, '\t');
			} else if (e == 'x' && i + 2 <= n && hexval(s[i]) >= 0 &&
				   hexval(s[i + 1]) >= 0) {
				/* \xHH is a single byte: never half of a UTF-8 sequence */
				put_json_byte(
				    o, (unsigned char)(hexval(s[i]) * 16 + hexval(s[i + 1])));
				i += 2;
			} else {
				put_json_byte(o, (unsigned char)e);
			}
			continue;
		}
		if (u[i] >= 0x80 && (k = utf8_len(u + i, n - i)) > 0) {
			put(o, s + i, k);
			i += k;
			continue;
		}
		put_json_byte(o, u[i]);
		i++;
	}
}

static void put_json_str(struct out *o, const char *s, size_t n, bool unescape)
{
	put_s(o, "\"");
	put_json_chars(o, s, n, unescape);
	put_s(o, "\"");
}

/* A bare logfmt value that JSON takes as the same number. */
static bool is_json_int(const char *s, size_t n)
{
	size_t i = 0;

	if (n && s[0] == '-')
		i = 1;
	if (i == n || n - i > JSON_INT_DIGITS_MAX)
		return false;
	if (s[i] == '0')
		return n - i == 1;
	for (; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

/* Parses the logfmt fields and writes each as ,"key":value. A line too
 * long for the buffer keeps its whole fields and says it was cut. */
static void put_json_fields(struct out *o, const char *s)
{
	size_t cap = o->cap, mark;

	o->cap = cap > JSON_TAIL_RESERVE ? cap - JSON_TAIL_RESERVE : 0;
	if (o->len > o->cap)
		o->full = true;
	mark = o->len;
	while (*s && !o->full) {
		const char *key, *val;
		size_t klen, vlen;

		while (*s == ' ')
			s++;
		if (!*s)
			break;
		key = s;
		while (*s && *s != '=' && *s != ' ')
			s++;
		klen = (size_t)(s - key);
		put_s(o, ",");
		put_json_str(o, key, klen, false);
		put_s(o, ":");
		if (*s != '=') {
			put_s(o, "true"); /* logfmt: a bare key is a flag */
		} else if (*++s == '"') {
			val = ++s;
			while (*s && *s != '"') {
				if (*s == '\\' && s[1])
					s++;
				s++;
			}
			vlen = (size_t)(s - val);
			if (*s == '"')
				s++;
			put_json_str(o, val, vlen, true);
		} else {
			val = s;
			while (*s && *s != ' ')
				s++;
			vlen = (size_t)(s - val);
			if (is_json_int(val, vlen))
				put(o, val, vlen);
			else
				put_json_str(o, val, vlen, false);
		}
		if (!o->full)
			mark = o->len;
	}
	o->cap = cap;
	if (o->full) {
		o->full = false;
		o->len = mark;
		put_s(o, ",\"truncated\":true");
	}
}

static void render_json(struct out *o, const struct timespec *ts, const char *level,
			const char *event, const char *fields)
{
	put_s(o, "{\"ts\":\"");
	put_ts(o, ts);
	put_s(o, "\",\"level\":\"");
	put_s(o, level);
	put_s(o, "\",\"event\":");
	put_json_str(o, event, strlen(event), false);
	if (fields)
		put_json_fields(o, fields);
	put_s(o, "}");
}

size_t tsw_log_render(char *buf, size_t cap, enum tsw_log_format format, const struct timespec *ts,
		      enum tsw_log_level level, const char *event, const char *fields)
{
	struct out o = {.p = buf};
	const char *lvl = level < TSW_LOG_MAX ? level_names[level] : "?";

	if (cap < 64)
		return 0;
	/* the newline and the NUL always fit */
	o.cap = cap - 2;
	if (format == TSW_LOG_JSON)
		render_json(&o, ts, lvl, event, fields);
	else
		render_text(&o, ts, lvl, event, fields);
	buf[o.len++] = '\n';
	buf[o.len] = '\0';
	return o.len;
}

void tsw_log(enum tsw_log_level level, const char *event, const char *fmt, ...)
{
	char fields[TSW_LOG_LINE_MAX], line[2 * TSW_LOG_LINE_MAX];
	enum tsw_log_format format = __atomic_load_n(&tsw_log_format, __ATOMIC_RELAXED);
	struct timespec ts;
	va_list ap;
	size_t n;

	if (!tsw_log_enabled(level))
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	fields[0] = '\0';
	if (fmt && fmt[0]) {
		va_start(ap, fmt);
		vsnprintf(fields, sizeof(fields), fmt, ap);
		va_end(ap);
	}
	n = tsw_log_render(line, format == TSW_LOG_JSON ? sizeof(line) : TSW_LOG_LINE_MAX, format,
			   &ts, level, event, fields);
	/* One write per line: atomic for pipes and files below PIPE_BUF. */
	if (write(STDERR_FILENO, line, n) < 0)
		return;
}

const char *tsw_log_quote(const char *s, char *buf, size_t cap)
{
	size_t n = 0;

	if (!cap)
		return buf;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		char e[5];
		size_t k;

		if (c == '"' || c == '\\') {
			e[0] = '\\';
			e[1] = (char)c;
			k = 2;
		} else if (c == '\n' || c == '\r' || c == '\t') {
			e[0] = '\\';
			e[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
			k = 2;
		} else if (c < 0x20 || c == 0x7f) {
			snprintf(e, sizeof(e), "\\x%02x", c);
			k = 4;
		} else {
			e[0] = (char)c;
			k = 1;
		}
		if (k > cap - 1 - n)
			break;
		memcpy(buf + n, e, k);
		n += k;
	}
	buf[n] = '\0';
	return buf;
}

int tsw_log_level_parse(const char *s, enum tsw_log_level *ret_level)
{
	for (int i = 0; i < TSW_LOG_MAX; i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*ret_level = (enum tsw_log_level)i;
			return 0;
		}
	}
	return -TSW_E_CONFIG;
}

int tsw_log_format_parse(const char *s, enum tsw_log_format *ret_format)
{
	for (int i = 0; i < TSW_LOG_FORMAT_MAX; i++) {
		if (strcmp(s, format_names[i]) == 0) {
			*ret_format = (enum tsw_log_format)i;
			return 0;
		}
	}
	return -TSW_E_CONFIG;
}

const char *tsw_log_format_name(enum tsw_log_format format)
{
	return format < TSW_LOG_FORMAT_MAX ? format_names[format] : "?";
}

int tsw_mask_pan(const char *digits, unsigned len, char *out, unsigned cap)
{
	if (cap < len + 1)
		return -TSW_E_NO_SPACE;
	for (unsigned i = 0; i < len; i++)
		out[i] = (len > 10 && (i < 6 || i >= len - 4)) ? digits[i] : '*';
	out[len] = '\0';
	return 0;
}
