/* Issuer approvals held until the state record they depend on is durable.
 *
 * A limited use (use.c) or a card's ATC (card_crypto.c) is recorded in
 * the state's memory when the request passes its checks, and on disk at
 * the writer's next group commit (one fsync for every update queued).
 * The request does not wait for that commit: it goes to the issuer at
 * once, so the commit and the issuer's round trip overlap. What waits is
 * the answer: an approval whose record is not yet durable is copied into
 * a slot taken when the request was forwarded (cfg.max_parked per worker)
 * and kept until the commit (the state's eventfd wakes the worker; this
 * runs every loop iteration and tick). A crash before the commit then
 * never leaves the acquirer holding an approval the restarted switch
 * knows nothing of: the acquirer got no answer, and its own reversal or
 * timeout covers whatever the issuer approved (docs/saf.md).
 *
 * When the record does not become durable (the writer degraded, or no
 * commit within saf_durable_wait_ms), the approval is not delivered: it
 * is reversed like any approval the acquirer never gets, and the acquirer
 * gets 96 STATE_UNAVAILABLE once that reversal is on disk (delivery.c).
 * A decline goes out at once: nothing moved at the issuer, and the use
 * it reserved is given back.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "answer_guard.h"
#include "engine_int.h"
#include "held_approval.h"
#include "tsw/authz.h"
#include "tsw/error.h"
#include "tsw/state.h"

struct appr_slot {
	uint8_t *frame;
	struct tsw_iso_msg m; /* the issuer's answer, decoded over frame */
	char rc[3];
};

int engine__approval_init(struct tsw_engine *e)
{
	uint32_t i, n = e->cfg.max_parked;

	e->appr_slots = calloc(n, sizeof(*e->appr_slots));
	e->appr_list = malloc(sizeof(*e->appr_list) * n);
	e->appr_free = malloc(sizeof(*e->appr_free) * n);
	if (!e->appr_slots || !e->appr_list || !e->appr_free)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		e->appr_slots[i].frame = malloc(e->iss_profile->max_frame);
		if (!e->appr_slots[i].frame)
			return -ENOMEM;
		e->appr_free[i] = n - 1 - i;
	}
	e->n_appr_free = n;
	e->n_appr_list = 0;
	return 0;
}

void engine__approval_free(struct tsw_engine *e)
{
	uint32_t i;

	if (e->appr_slots)
		for (i = 0; i < e->cfg.max_parked; i++) {
			/* a held answer's DE2 may be the PAN */
			if (e->appr_slots[i].frame)
				explicit_bzero(e->appr_slots[i].frame, e->appr_slots[i].m.len);
			free(e->appr_slots[i].frame);
		}
	free(e->appr_slots);
	free(e->appr_list);
	free(e->appr_free);
}

int engine__approval_slot_take(struct tsw_engine *e, struct req *r, uint64_t ticket)
{
	if (!e->n_appr_free) {
		TSW_COUNT(e->m->parked_full);
		engine_event(e, TSW_EV_PARKED_FULL, .n1 = e->cfg.max_parked);
		return -TSW_E_FULL;
	}
	r->appr_slot = e->appr_free[--e->n_appr_free] + 1;
	r->rec_ticket = ticket;
	return 0;
}

void engine__approval_slot_drop(struct tsw_engine *e, struct req *r)
{
	struct appr_slot *s;

	if (!r->appr_slot)
		return;
	s = &e->appr_slots[r->appr_slot - 1];
	/* an issuer's answer may carry the PAN (DE2) */
	explicit_bzero(s->frame, s->m.len);
	s->m.len = 0;
	e->appr_free[e->n_appr_free++] = r->appr_slot - 1;
	r->appr_slot = 0;
}

void engine__approval_hold(struct tsw_engine *e, struct req *r, const struct tsw_iso_msg *m,
			   const char *rc)
{
	struct appr_slot *s = &e->appr_slots[r->appr_slot - 1];

	/* the decoder bounds a frame by the profile's max_frame */
	memcpy(s->frame, m->buf, m->len);
	s->m = *m;
	s->m.buf = s->frame;
	memcpy(s->rc, rc, sizeof(s->rc));
	r->hold_until_ns = e->now_ns + (uint64_t)e->cfg.saf_durable_wait_ms * NS_PER_MS;
	e->appr_list[e->n_appr_list++] = req_index(e, r);
	TSW_GAUGE_INC(e->m->answers_awaiting_record);
}

/* What becomes of held r now: 1 delivered, -1 refused, 0 it waits on. */
static int held_outcome(struct tsw_engine *e, const struct req *r)
{
	if (!req_conn_alive(e, r) || tsw_state_durable(e->state, r->rec_ticket))
		return 1;
	if (tsw_state_degraded(e->state)) {
		engine_event_req(e, TSW_EV_APPROVAL_RECORD_UNWRITTEN, r, .why = "degraded");
		return -1;
	}
	if (e->now_ns < r->hold_until_ns)
		return 0;
	TSW_COUNT(e->m->answers_record_timeouts);
	engine_event_req(e, TSW_EV_APPROVAL_RECORD_UNWRITTEN, r, .why = "timeout",
			 .n2 = e->cfg.saf_durable_wait_ms);
	return -1;
}

struct req *engine__approval_next(struct tsw_engine *e, uint32_t *cursor, struct held_answer *ret)
{
	while (*cursor < e->n_appr_list) {
		struct req *r = &e->reqs[e->appr_list[*cursor]];
		struct appr_slot *s = &e->appr_slots[r->appr_slot - 1];
		int outcome = held_outcome(e, r);

		if (outcome == 0) {
			(*cursor)++;
			continue;
		}
		/* out of the list; the slot stays r's until r is freed (the
		 * answer's bytes are read until then) */
		e->appr_list[*cursor] = e->appr_list[--e->n_appr_list];
		TSW_GAUGE_DEC(e->m->answers_awaiting_record);
		ret->m = &s->m;
		ret->rc = s->rc;
		ret->deliver = outcome > 0;
		return r;
	}
	return NULL;
}
