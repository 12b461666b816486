/* Per-endpoint output buffers and the dirty queue the backend drains.
 *
 * Bytes [head, tail) wait for the backend; tsw_engine_out() hands them out
 * and marks them busy until tsw_engine_sent(), so a send in flight (async
 * in io_uring and libuv) never sees its bytes move. Appends go after tail;
 * the buffer is compacted only when nothing is busy.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "delivery.h"
#include "engine_int.h"
#include "tsw/error.h"

int outbuf_init(struct outbuf *b, uint32_t cap)
{
	memset(b, 0, sizeof(*b));
	b->data = malloc(cap);
	if (!b->data)
		return -ENOMEM;
	b->cap = cap;
	return 0;
}

void outbuf_free(struct outbuf *b)
{
	free(b->data);
	b->data = NULL;
}

void outbuf_reset(struct outbuf *b)
{
	/* pos goes on: offsets handed out before stay behind the new bytes */
	b->head = b->tail = b->busy = 0;
}

uint32_t outbuf_pending(const struct outbuf *b)
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

int outbuf_encode(struct outbuf *b, const struct tsw_iso_profile *p, const struct tsw_iso_msg *base,
		  const struct tsw_iso_edit *ed, unsigned n)
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

int outbuf_put(struct outbuf *b, const uint8_t *data, uint32_t len)
{
	if (b->cap - b->tail < len)
		compact(b);
	if (b->cap - b->tail < len)
		return -TSW_E_NO_SPACE;
	memcpy(b->data + b->tail, data, len);
	b->tail += len;
	return 0;
}

void outbuf_unput(struct outbuf *b, uint32_t len)
{
	b->tail -= len;
	explicit_bzero(b->data + b->tail, len);
}

static struct outbuf *ep_buf(struct tsw_engine *e, struct tsw_endpoint ep)
{
	if (ep.kind == TSW_EP_ACQ) {
		if (ep.slot >= e->cfg.max_conns)
			return NULL;
		return &e->conns[ep.slot].out;
	}
	if (ep.kind == TSW_EP_LINK && ep.slot < e->n_links)
		return &e->links[ep.slot].out;
	return NULL;
}

void engine_mark_dirty(struct tsw_engine *e, uint8_t kind, uint32_t slot)
{
	struct tsw_endpoint ep = {.kind = kind, .slot = slot};
	struct outbuf *b = ep_buf(e, ep);

	if (!b || b->queued || b->busy || b->tail == b->head)
		return;
	/* the ring holds every endpoint at most once, so it never overflows */
	e->dirty[(e->dirty_head + e->dirty_len) % e->dirty_cap] = ep;
	e->dirty_len++;
	b->queued = true;
}

bool tsw_engine_next_dirty(struct tsw_engine *e, struct tsw_endpoint *ret_ep)
{
	while (e->dirty_len) {
		struct tsw_endpoint ep = e->dirty[e->dirty_head];
		struct outbuf *b = ep_buf(e, ep);

		e->dirty_head = (e->dirty_head + 1) % e->dirty_cap;
		e->dirty_len--;
		if (!b)
			continue;
		b->queued = false;
		if (b->busy || b->tail == b->head)
			continue;
		*ret_ep = ep;
		return true;
	}
	return false;
}

void tsw_engine_out(struct tsw_engine *e, struct tsw_endpoint ep, const uint8_t **ret_data,
		    size_t *ret_len)
{
	struct outbuf *b = ep_buf(e, ep);

	if (!b) {
		*ret_data = NULL;
		*ret_len = 0;
		return;
	}
	b->busy = b->tail - b->head;
	*ret_data = b->data + b->head;
	*ret_len = b->busy;
}

void tsw_engine_sent(struct tsw_engine *e, struct tsw_endpoint ep, size_t n)
{
	struct outbuf *b = ep_buf(e, ep);

	if (!b)
		return;
	if (n > b->tail - b->head)
		n = b->tail - b->head;
	/* issuer-leg bytes hold PANs: wiped once sent */
	if (ep.kind == TSW_EP_LINK)
		explicit_bzero(b->data + b->head, n);
	b->head += (uint32_t)n;
	b->pos += n;
	b->busy = 0;
	TSW_COUNT_ADD(e->m->bytes_out, n);
	if (b->head == b->tail)
		b->head = b->tail = 0;
	else
		compact(b);
	engine_mark_dirty(e, ep.kind, ep.slot);
	if (ep.kind == TSW_EP_ACQ) {
		unsent_sent(e, ep.slot);
		engine_resume(e, ep.slot);
	}
}
