/* The request parser of the metrics responder (http.c): pure, no I/O, so
 * it can be tested and fuzzed on bytes alone. Not a public header:
 * nothing outside src/ctl/ and its tests includes it. */
#ifndef TSW_CTL_HTTP_PARSE_H
#define TSW_CTL_HTTP_PARSE_H

#include <stddef.h>

#define HTTP_METHOD_MAX 8 /* bytes of the method, its NUL included */
#define HTTP_PATH_MAX 128 /* bytes of the path, its NUL included */

struct http_request {
	char method[HTTP_METHOD_MAX];
	char path[HTTP_PATH_MAX]; /* without its query ("?..." cut off) */
};

/* Parses the len bytes of a request received so far (buf need not be
 * NUL-terminated). Returns 0 while the head is incomplete (no CRLF CRLF
 * yet: read more), 1 with *ret_req filled when it is complete and its
 * request line (the head's first line) is METHOD SP PATH SP HTTP/1.x, or
 * -EINVAL (complete, but a bad request line: a method or path too long,
 * empty or holding a byte that is not visible ASCII: answer 400).
 * *ret_req is untouched unless 1 is returned. */
int http_parse_request(const char *buf, size_t len, struct http_request *ret_req);

#endif
