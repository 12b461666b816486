/* The request parser of the metrics responder: http_parse.h. */
#include <errno.h>
#include <string.h>

#include "http_parse.h"

int http_parse_request(const char *buf, size_t len, struct http_request *ret_req)
{
	const char *sp1, *sp2;
	char *q;
	size_t ml, pl, i;

	/* look for the end of the headers; the body of a GET is ignored */
	for (i = 3; i < len; i++)
		if (buf[i - 3] == '\r' && buf[i - 2] == '\n' && buf[i - 1] == '\r' &&
		    buf[i] == '\n')
			break;
	if (i >= len)
		return 0;

	/* request line: METHOD SP PATH SP VERSION */
	sp1 = memchr(buf, ' ', len);
	sp2 = sp1 ? memchr(sp1 + 1, ' ', len - (size_t)(sp1 + 1 - buf)) : NULL;
	if (!sp1 || !sp2)
		return -EINVAL;
	ml = (size_t)(sp1 - buf);
	pl = (size_t)(sp2 - sp1 - 1);
	if (ml >= HTTP_METHOD_MAX || pl >= HTTP_PATH_MAX || strncmp(sp2 + 1, "HTTP/1.", 7) != 0)
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
