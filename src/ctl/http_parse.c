/* The request parser of the metrics responder: http_parse.h. */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "http_parse.h"

/* True when s[0..n) is visible ASCII: a NUL or control byte would cut or
 * bend what the method and path are compared as. */
static bool visible(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] >= 0x7f)
			return false;
	return true;
}

int http_parse_request(const char *buf, size_t len, struct http_request *ret_req)
{
	const char *sp1, *sp2, *eol;
	char *q;
	size_t ml, pl, i;

	/* look for the end of the headers; the body of a GET is ignored */
	for (i = 3; i < len; i++)
		if (buf[i - 3] == '\r' && buf[i - 2] == '\n' && buf[i - 1] == '\r' &&
		    buf[i] == '\n')
			break;
	if (i >= len)
		return 0;

	/* request line: METHOD SP PATH SP VERSION, the head's first line (it
	 * ends in CRLF: the head does); nothing after it is looked at */
	eol = memchr(buf, '\r', i);
	sp1 = memchr(buf, ' ', (size_t)(eol - buf));
	sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
	if (!sp1 || !sp2)
		return -EINVAL;
	ml = (size_t)(sp1 - buf);
	pl = (size_t)(sp2 - sp1 - 1);
	if (ml == 0 || pl == 0 || ml >= HTTP_METHOD_MAX || pl >= HTTP_PATH_MAX ||
	    (size_t)(eol - sp2 - 1) < 7 || memcmp(sp2 + 1, "HTTP/1.", 7) != 0 ||
	    !visible(buf, ml) || !visible(sp1 + 1, pl))
		return -EINVAL;
	memcpy(ret_req->method, buf, ml);
	ret_req->method[ml] = '\0';
	memcpy(ret_req->path, sp1 + 1, pl);
	ret_req->path[pl] = '\0';
	q = strchr(ret_req->path, '?');
	if (q)
		*q = '\0';
	return 1;
}
