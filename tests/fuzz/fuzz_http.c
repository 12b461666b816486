/* Fuzz target: the metrics responder's request head parsing
 * (tsw_http_head_end, tsw_http_parse: src/ctl/http_parse.c).
 *
 * Input: the bytes a client sends, in one exact-size buffer (no NUL
 * after it: an overread trips ASan). Checked invariants, each a trap:
 * - the head ends right after the first CRLF CRLF, and the incremental
 *   search finds the same end however the bytes are split into reads;
 * - a parsed head's method starts the input and is followed by a space,
 *   its path lies inside the request line and holds no '?', and both
 *   are visible ASCII (the method non-empty, the path empty only for a
 *   target that is a query alone); a bearer token lies inside the head;
 * - the parse reads only the head: bytes after it change nothing.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "tsw/ctl.h"

#define HTTP_SPLITS 16 /* split patterns tried per input (bounded time) */

static void check_visible(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		fuzz_check(p[i] > ' ' && p[i] < 0x7f);
}

static void check_parsed(const char *buf, size_t head, const struct tsw_http_request *req)
{
	const char *line_end = memchr(buf, '\r', head);

	fuzz_check(line_end != NULL);
	fuzz_check(req->method == buf && req->method_len < head && buf[req->method_len] == ' ');
	fuzz_check(req->method_len > 0);
	check_visible(req->method, req->method_len);
	fuzz_check(req->path > req->method && req->path + req->path_len <= line_end);
	/* empty only when the target is a query alone ("?x": a 404) */
	fuzz_check(req->path_len > 0 || req->path[0] == '?');
	check_visible(req->path, req->path_len);
	fuzz_check(memchr(req->path, '?', req->path_len) == NULL);
	if (req->bearer)
		fuzz_check(req->has_authorization && req->bearer >= buf &&
			   req->bearer + req->bearer_len <= buf + head);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *end = memmem(data, size, "\r\n\r\n", 4);
	size_t want = end ? (size_t)(end - data) + 4 : 0;
	struct tsw_http_head_scan scan = {0};
	struct tsw_http_request req;
	char *buf = malloc(size ? size : 1);
	size_t head;
	int r;

	fuzz_check(buf != NULL);
	memcpy(buf, data, size);
	head = tsw_http_head_end(&scan, buf, size);
	fuzz_check(head == want);
	/* the same end, the bytes arriving in pieces */
	for (size_t k = 1; k <= HTTP_SPLITS && size; k++) {
		struct tsw_http_head_scan s = {0};
		size_t got = 0, step = 1 + (size * k) / (HTTP_SPLITS * 3 + 1) + (data[0] % k);

		for (size_t len = step < size ? step : size;; len = len + step < size ? len + step : size) {
			got = tsw_http_head_end(&s, buf, len);
			if (got || len == size)
				break;
		}
		fuzz_check(got == want);
	}
	if (head) {
		r = tsw_http_parse(buf, head, &req);
		fuzz_check(r == 0 || r == -EINVAL);
		if (r == 0)
			check_parsed(buf, head, &req);
		/* a copy holding the head alone parses the same */
		{
			char *h = malloc(head);
			struct tsw_http_request again;

			fuzz_check(h != NULL);
			memcpy(h, buf, head);
			fuzz_check(tsw_http_parse(h, head, &again) == r);
			if (r == 0)
				fuzz_check(again.method_len == req.method_len &&
					   again.path_len == req.path_len &&
					   memcmp(again.path, req.path, req.path_len) == 0);
			free(h);
		}
	}
	free(buf);
	return 0;
}
