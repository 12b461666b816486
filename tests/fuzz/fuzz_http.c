/* Fuzz target: the metrics responder's request parser
 * (http_parse_request, src/ctl/http_parse.c).
 *
 * Input: the bytes a client sends, in one exact-size buffer (no NUL
 * after it: an overread trips ASan). Checked invariants, each a trap:
 * - the head is complete exactly when the input holds CRLF CRLF;
 * - a parsed method and path are NUL-terminated within their arrays,
 *   the path holds no '?', and both are copied from the request line;
 * - bytes after the first CRLF CRLF do not change the result, and every
 *   prefix that ends before it is "incomplete": the responder may parse
 *   after every read, however the bytes were split.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/ctl/http_parse.h"
#include "fuzz_util.h"

#define HTTP_PREFIX_CHECKS 64 /* prefixes parsed per input (bounded time) */

static void check_parsed(const uint8_t *data, size_t size, const struct http_request *req)
{
	size_t ml = strnlen(req->method, sizeof(req->method));
	size_t pl = strnlen(req->path, sizeof(req->path));

	fuzz_check(ml < sizeof(req->method) && pl < sizeof(req->path));
	fuzz_check(strchr(req->path, '?') == NULL);
	fuzz_check(ml < size && memcmp(req->method, data, ml) == 0 && data[ml] == ' ');
	fuzz_check(ml + 1 + pl <= size && memcmp(req->path, data + ml + 1, pl) == 0);
}

static int parse_copy(const uint8_t *data, size_t len, struct http_request *ret)
{
	char *copy = malloc(len ? len : 1);
	int r;

	fuzz_check(copy != NULL);
	memcpy(copy, data, len);
	r = http_parse_request(copy, len, ret);
	free(copy);
	return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *end = memmem(data, size, "\r\n\r\n", 4);
	size_t head = end ? (size_t)(end - data) + 4 : 0;
	struct http_request req, again;
	int r, r2;

	memset(&req, 0x5a, sizeof(req));
	r = parse_copy(data, size, &req);
	fuzz_check(r == 0 || r == 1 || r == -EINVAL);
	fuzz_check((r == 0) == (end == NULL));
	if (r == 1)
		check_parsed(data, size, &req);
	if (!end)
		return 0;
	/* the head alone answers the same */
	memset(&again, 0x5a, sizeof(again));
	r2 = parse_copy(data, head, &again);
	fuzz_check(r2 == r);
	if (r == 1)
		fuzz_check(strcmp(req.method, again.method) == 0 &&
			   strcmp(req.path, again.path) == 0);
	/* any shorter read is incomplete */
	for (size_t i = 0; i < HTTP_PREFIX_CHECKS && i < head; i++) {
		size_t cut = head - 1 - (i * head) / HTTP_PREFIX_CHECKS;

		fuzz_check(parse_copy(data, cut, &again) == 0);
	}
	return 0;
}
