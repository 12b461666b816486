/* The backend's report that an endpoint's bytes left: the output buffer
 * gives them up (outbuf.c), approvals in them count as delivered
 * (delivery.c), and an acquirer connection that held its input while its
 * output was above half full goes on (acq_input.c). Above every other
 * file on the output side, so that the buffer never calls up into the
 * connection code.
 */
#include <stddef.h>

#include "delivery.h"
#include "engine_int.h"

void tsw_engine_sent(struct tsw_engine *e, struct tsw_endpoint ep, size_t n)
{
	struct outbuf *b = ep_buf(e, ep);

	if (!b)
		return;
	/* issuer-leg bytes hold PANs: wiped once sent */
	n = engine__outbuf_consume(b, n, ep.kind == TSW_EP_LINK);
	TSW_COUNT_ADD(e->m->bytes_out, n);
	engine__mark_dirty(e, ep.kind, ep.slot);
	if (ep.kind == TSW_EP_ACQ) {
		engine__unsent_sent(e, ep.slot);
		engine__resume(e, ep.slot);
		acq_resume_due(e);
	}
}
