/* HTTP/1.x request heads for the metrics endpoint: the end-of-head search
 * (incremental: each byte is looked at a bounded number of times however
 * the head is cut into reads) and the parse of a complete head. Pure: no
 * I/O, no allocation, never reads past the length it is given and never
 * needs a NUL. */
#include <errno.h>
#include <string.h>

#include "tsw/ctl.h"

static const char HEAD_END[] = "\r\n\r\n";
enum { HEAD_END_LEN = sizeof(HEAD_END) - 1 };

size_t tsw_http_head_end(struct tsw_http_head_scan *s, const char *buf, size_t len)
{
	size_t i;

	/* Resume HEAD_END_LEN - 1 bytes before the end of the last search:
	 * the blank line may have been cut by the previous read. */
	for (i = s->pos; i + HEAD_END_LEN <= len; i++) {
		const char *cr = memchr(buf + i, '\r', len - i);

		if (!cr)
			break;
		i = (size_t)(cr - buf);
		if (i + HEAD_END_LEN > len)
			break;
		if (memcmp(cr, HEAD_END, HEAD_END_LEN) == 0)
			return i + HEAD_END_LEN;
	}
	if (len >= HEAD_END_LEN - 1 && i < len - (HEAD_END_LEN - 1))
		i = len - (HEAD_END_LEN - 1);
	if (i > s->pos)
		s->pos = i;
	return 0;
}

static bool is_tchar(unsigned char ch)
{
	/* RFC 9110 token characters */
	if ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'))
		return true;
	return ch && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

static bool eq_nocase(const char *a, size_t alen, const char *lit)
{
	size_t n = strlen(lit);

	if (alen != n)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char x = (unsigned char)a[i], y = (unsigned char)lit[i];

		if (x >= 'A' && x <= 'Z')
			x = (unsigned char)(x - 'A' + 'a');
		if (x != y)
			return false;
	}
	return true;
}

/* The next line of buf[pos..len), without its CRLF: a bare CR or LF in
 * it is refused (the head's framing must be unambiguous). */
static int next_line(const char *buf, size_t len, size_t *pos, const char **ret_line,
		     size_t *ret_len)
{
	const char *p = buf + *pos;
	const char *lf = memchr(p, '\n', len - *pos);
	size_t n;

	if (!lf || lf == p || lf[-1] != '\r')
		return -EINVAL;
	n = (size_t)(lf - p) - 1;
	if (memchr(p, '\r', n))
		return -EINVAL;
	*ret_line = p;
	*ret_len = n;
	*pos += n + 2;
	return 0;
}

static int parse_request_line(const char *l, size_t n, struct tsw_http_request *r)
{
	const char *sp1 = memchr(l, ' ', n), *sp2, *q;
	size_t vlen;

	if (!sp1 || sp1 == l)
		return -EINVAL;
	for (const char *p = l; p < sp1; p++)
		if (!is_tchar((unsigned char)*p))
			return -EINVAL;
	sp2 = memchr(sp1 + 1, ' ', n - (size_t)(sp1 + 1 - l));
	if (!sp2 || sp2 == sp1 + 1)
		return -EINVAL;
	for (const char *p = sp1 + 1; p < sp2; p++)
		if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f)
			return -EINVAL;
	vlen = n - (size_t)(sp2 + 1 - l);
	if (vlen != 8 || memcmp(sp2 + 1, "HTTP/1.", 7) != 0 || (sp2[8] != '0' && sp2[8] != '1'))
		return -EINVAL;
	r->method = l;
	r->method_len = (size_t)(sp1 - l);
	r->path = sp1 + 1;
	q = memchr(r->path, '?', (size_t)(sp2 - r->path));
	r->path_len = (size_t)((q ? q : sp2) - r->path);
	return 0;
}

static const char *trim_ows(const char *p, const char *end, const char **ret_end)
{
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	*ret_end = end;
	return p;
}

/* Authorization: Bearer TOKEN (RFC 6750 2.1; the scheme is case-blind). */
static void parse_authorization(const char *v, const char *end, struct tsw_http_request *r)
{
	static const char scheme[] = "bearer";
	const char *t;

	r->has_authorization = true;
	if ((size_t)(end - v) <= sizeof(scheme) - 1 || !eq_nocase(v, sizeof(scheme) - 1, scheme) ||
	    (v[sizeof(scheme) - 1] != ' ' && v[sizeof(scheme) - 1] != '\t'))
		return;
	t = trim_ows(v + sizeof(scheme) - 1, end, &end);
	if (t == end)
		return;
	r->bearer = t;
	r->bearer_len = (size_t)(end - t);
}

int tsw_http_parse(const char *buf, size_t len, struct tsw_http_request *ret_req)
{
	struct tsw_http_request r = {0};
	const char *l;
	size_t n, pos = 0;

	if (next_line(buf, len, &pos, &l, &n) < 0 || parse_request_line(l, n, &r) < 0)
		return -EINVAL;
	for (;;) {
		const char *colon, *v, *vend;

		if (pos >= len || next_line(buf, len, &pos, &l, &n) < 0)
			return -EINVAL; /* no blank line: not a complete head */
		if (n == 0)
			break;
		colon = memchr(l, ':', n);
		if (!colon || colon == l)
			return -EINVAL;
		for (const char *p = l; p < colon; p++)
			if (!is_tchar((unsigned char)*p))
				return -EINVAL;
		v = trim_ows(colon + 1, l + n, &vend);
		if (eq_nocase(l, (size_t)(colon - l), "authorization")) {
			/* two of them: which one counts is anyone's guess */
			if (r.has_authorization)
				return -EINVAL;
			parse_authorization(v, vend, &r);
		}
	}
	if (pos != len)
		return -EINVAL;
	*ret_req = r;
	return 0;
}
