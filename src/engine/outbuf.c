/* Output buffers: bytes [head, tail) wait for the backend, [head, head +
 * busy) are with it (a send in flight) and never move. Appends go after
 * tail; the buffer is compacted only when nothing is busy. A pure
 * buffer: which endpoint owns it and who waits on it is dirty.c's and
 * sent.c's.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine_int.h"
#include "tsw/error.h"

int engine__outbuf_init(struct outbuf *b, uint32_t cap)
{
	memset(b, 0, sizeof(*b));
	b->data = malloc(cap);
	if (!b->data)
		return -ENOMEM;
	b->cap = cap;
	return 0;
}

void engine__outbuf_free(struct outbuf *b)
{
	free(b->data);
	b->data = NULL;
}

void engine__outbuf_reset(struct outbuf *b)
{
	/* pos goes on: offsets handed out before stay behind the new bytes */
	b->head = b->tail = b->busy = 0;
}

uint32_t engine__outbuf_pending(const struct outbuf *b)
{
	return b->tail - b->head;
}

static void compact(struct outbuf *b)
{
	uint32_t old_tail = b->tail;

	if (b->busy || b->head == 0)
		return;
	memmove(b->data, b->data + b->head, b->tail - b->head);
	b->tail -= b->head;
	b->head = 0;
	/* the bytes past the new tail are copies of what moved (issuer-link
	 * buffers hold PANs): wiped, on every buffer since it is cheap */
	explicit_bzero(b->data + b->tail, old_tail - b->tail);
}

/* Room for one frame of up to max_body bytes: the body pointer (header
 * space before it) or NULL when not even a header fits. */
static uint8_t *frame_begin(struct outbuf *b, const struct tsw_iso_profile *p, size_t max_body,
			    size_t *ret_cap)
{
	size_t hdr = tsw_iso_header_size(p);
	size_t room = b->cap - b->tail;

	if (room < hdr + max_body) {
		compact(b);
		room = b->cap - b->tail;
	}
	if (room <= hdr)
		return NULL;
	room -= hdr;
	*ret_cap = room < max_body ? room : max_body;
	return b->data + b->tail + hdr;
}

int engine__outbuf_encode(struct outbuf *b, const struct tsw_iso_profile *p,
			  const struct tsw_iso_msg *base, const struct tsw_iso_edit *ed, unsigned n)
{
	size_t hdr = tsw_iso_header_size(p), cap = 0;
	uint8_t *body = frame_begin(b, p, p->max_frame, &cap);
	int len, r;

	if (!body)
		return -TSW_E_NO_SPACE;
	len = tsw_iso_encode(p, base, ed, n, body, cap);
	if (len == -TSW_E_NO_SPACE && cap == p->max_frame)
		len = -TSW_E_FRAME_TOO_BIG; /* no room would ever be enough */
	r = len < 0 ? len : tsw_iso_header_write(p, (size_t)len, body - hdr);
	if (r < 0) {
		/* no part of a frame stays past the tail (issuer frames
		 * carry the PAN) */
		explicit_bzero(body, cap);
		return r;
	}
	b->tail += (uint32_t)(hdr + (size_t)len);
	return 0;
}

int engine__outbuf_put(struct outbuf *b, const uint8_t *data, uint32_t len)
{
	if (b->cap - b->tail < len)
		compact(b);
	if (b->cap - b->tail < len)
		return -TSW_E_NO_SPACE;
	memcpy(b->data + b->tail, data, len);
	b->tail += len;
	return 0;
}

void engine__outbuf_unput(struct outbuf *b, uint32_t len)
{
	b->tail -= len;
	explicit_bzero(b->data + b->tail, len);
}

size_t engine__outbuf_consume(struct outbuf *b, size_t n, bool wipe)
{
	if (n > b->tail - b->head)
		n = b->tail - b->head;
	if (wipe)
		explicit_bzero(b->data + b->head, n);
	b->head += (uint32_t)n;
	b->pos += n;
	b->busy = 0;
	if (b->head == b->tail)
		b->head = b->tail = 0;
	else
		compact(b);
	return n;
}
