/* The dirty queue the backend drains: every endpoint (acquirer
 * connection or issuer link) with bytes waiting is queued at most once;
 * tsw_engine_out() hands those bytes out and marks them busy until the
 * backend reports them sent (sent.c), so a send in flight (async in
 * io_uring and libuv) never sees its bytes move. The buffers themselves
 * are outbuf.c's.
 */
#include <stddef.h>

#include "engine_int.h"

void engine__mark_dirty(struct tsw_engine *e, uint8_t kind, uint32_t slot)
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
