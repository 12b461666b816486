/* A small HTTP/1.0 GET client for the switch's metrics endpoint. */
#ifndef TOP_HTTP_GET_H
#define TOP_HTTP_GET_H

#include <stddef.h>

/* The largest answer read (head and body): a tokswitch scrape is about
 * 30 KiB; one far above this is not the switch's. */
#define TOP_HTTP_RESPONSE_MAX_BYTES (4u << 20)
/* From the connect to the end of the answer. */
#define TOP_HTTP_TIMEOUT_MS 2000

/* GETs path from addr ("HOST:PORT", "[V6]:PORT"), with `Authorization:
 * Bearer TOKEN` when token is not NULL. On 200 sets *ret_body (malloc'd,
 * NUL-terminated, the caller frees) and *ret_len and returns 0. Else
 * returns -EINVAL (addr is not HOST:PORT, or the answer is not HTTP),
 * -EPROTO (a status other than 200: *ret_status says which), -EMSGSIZE
 * (above TOP_HTTP_RESPONSE_MAX_BYTES), -ETIMEDOUT (TOP_HTTP_TIMEOUT_MS
 * passed), -ENOMEM, or the connect's or read's -errno (-ECONNREFUSED);
 * err (size bytes) says what, with addr. Outputs untouched on error. */
int top_http_get(const char *addr, const char *path, const char *token, char **ret_body,
		 size_t *ret_len, int *ret_status, char *err, size_t size);

#endif
