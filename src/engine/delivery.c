/* What the acquirer is owed, and when.
 *
 * Held answers. A request that timed out or whose link went down owes
 * the issuer a reversal (saf.c). Its 91 must not reach the acquirer
 * before that reversal is on disk: a crash in between would leave the
 * issuer holding money nobody ever reverses. So the request stays
 * allocated, out of the pending table, in a FIFO until the state's group
 * commit makes its SAF item durable (the state's eventfd wakes the
 * worker; engine__held_poll runs every loop iteration and tick). FIFO order
 * holds both ways: this engine's puts get growing ids and the state
 * commits in id order, and every wait starts later than the one before.
 * A writer that does not commit within saf_durable_wait_ms (a stalled
 * disk) does not keep the acquirer waiting past it: the answer goes,
 * counted in answers_held_timeouts.
 *
 * Stand-in approvals (standin.c) wait in the same FIFO for their advice:
 * an approval never goes out before the advice that reports it to the
 * issuer is on disk; when the wait runs out the acquirer gets 91 instead
 * and the advice is followed by a reversal (engine__standin_release, here with
 * the FIFO that releases it: standin.c decides, this file delivers).
 *
 * Unsent approvals. An approval written to an acquirer's output buffer
 * has moved money at the issuer; if the connection closes before those
 * bytes leave the buffer (the peer went away, a slow consumer was
 * closed), the sale never happened on the acquirer's side. Each such
 * request is kept, in its connection's FIFO, with the absolute output
 * position of its answer's end, until tsw_engine_sent() passes it; at a
 * close, whatever is left is reversed. Bytes the kernel took before the
 * close are taken as delivered: reversing an approval the acquirer did
 * get would be the worse error, and an acquirer that did not get it
 * reverses it itself. Bytes of a send still in flight at the close are
 * not: the backend closes when the peer has gone (or is cut off), and
 * what it sends then is never read.
 */
#include <string.h>

#include "acq_reversal.h"
#include "delivery.h"
#include "dup.h"
#include "engine_int.h"
#include "use.h"
#include "tsw/authz.h"
#include "tsw/state.h"

#define NO_REQ UINT32_MAX

void engine__held_answer(struct tsw_engine *e, struct req *r, enum tsw_authz_reason reason,
			 uint64_t id)
{
	uint32_t idx = req_index(e, r);

	r->hold_id = id;
	r->hold_reason = (uint8_t)reason;
	r->hold_until_ns = e->now_ns + (uint64_t)e->cfg.saf_durable_wait_ms * NS_PER_MS;
	r->list_next = NO_REQ;
	if (e->held_tail != NO_REQ)
		e->reqs[e->held_tail].list_next = idx;
	else
		e->held_head = idx;
	e->held_tail = idx;
	e->n_held++;
	TSW_GAUGE_INC(e->m->answers_held);
}

static struct req *held_pop(struct tsw_engine *e)
{
	struct req *r = &e->reqs[e->held_head];

	e->held_head = r->list_next;
	if (e->held_head == NO_REQ)
		e->held_tail = NO_REQ;
	e->n_held--;
	TSW_GAUGE_DEC(e->m->answers_held);
	return r;
}

/* The stand-in approval will not reach the acquirer, but its advice is
 * queued (and will tell the issuer of an approval): the use is spent as
 * for any approval, and a reversal follows the advice (its ack gives the
 * use back). */
static void reverse_standin(struct tsw_engine *e, struct req *r)
{
	if (r->has_ticket)
		engine__use_commit(e, r->ticket);
	engine__reverse_undelivered(e, r, r->has_ticket);
	engine__req_free(e, r);
}

void engine__standin_release(struct tsw_engine *e, struct req *r, bool durable, bool alive)
{
	if (!alive) {
		TSW_COUNT(e->m->answers_conn_gone);
		reverse_standin(e, r);
		return;
	}
	if (!durable) {
		/* the writer did not commit the advice in time: no approval
		 * may go out before it is on disk */
		engine__decline(e, r->acq_slot, &r->echo, TSW_AUTHZ_ISSUER_UNAVAILABLE);
		engine__standin_decided(e, r, TSW_STANDIN_DECLINED_UNQUEUED);
		engine__conn_request_done(e, r->acq_slot, r->acq_gen);
		reverse_standin(e, r);
		return;
	}
	if (engine__answer_standin(e, r->acq_slot, &r->echo, r->approval_code) < 0) {
		/* not written: the slow consumer is closed */
		engine__conn_request_done(e, r->acq_slot, r->acq_gen);
		reverse_standin(e, r);
		return;
	}
	engine__standin_decided(e, r, TSW_STANDIN_APPROVED);
	if (r->has_ticket) {
		engine__use_commit(e, r->ticket);
		/* an acquirer reversal of a forwarded original gives it back */
		engine__acq_rev_use_consumed(e, r);
	}
	/* where the approval ends in the output, before the connection
	 * goes on with input that waited behind it */
	engine__unsent_track(e, r);
	engine__conn_request_done(e, r->acq_slot, r->acq_gen);
}

void engine__held_poll(struct tsw_engine *e)
{
	while (e->n_held) {
		struct req *r = &e->reqs[e->held_head];
		enum tsw_authz_reason reason = (enum tsw_authz_reason)r->hold_reason;

		if (!tsw_state_saf_durable(e->state, r->hold_id)) {
			if (e->now_ns < r->hold_until_ns)
				return;
			TSW_COUNT(e->m->answers_held_timeouts);
			engine_event(e, TSW_EV_ANSWER_HELD_TIMEOUT, .slot = r->acq_slot,
				     .id = r->hold_id, .n2 = e->cfg.saf_durable_wait_ms);
		}
		held_pop(e);
		if (reason == TSW_AUTHZ_STANDIN) {
			engine__standin_release(e, r, tsw_state_saf_durable(e->state, r->hold_id),
						req_conn_alive(e, r));
			continue;
		}
		if (req_conn_alive(e, r)) {
			engine__decline(e, r->acq_slot, &r->echo, reason);
			engine__conn_request_done(e, r->acq_slot, r->acq_gen);
		} else {
			TSW_COUNT(e->m->answers_conn_gone);
			TSW_COUNT(e->m->declines[reason]);
		}
		engine__req_free(e, r);
	}
}

uint32_t engine__held_pending(const struct tsw_engine *e)
{
	return e->n_held;
}

void engine__held_drop_all(struct tsw_engine *e)
{
	while (e->n_held) {
		struct req *r = held_pop(e);

		if (r->hold_reason == TSW_AUTHZ_STANDIN) {
			engine__standin_release(e, r, false, false);
			continue;
		}
		TSW_COUNT(e->m->answers_conn_gone);
		engine__req_free(e, r);
	}
}

void engine__reverse_undelivered(struct tsw_engine *e, const struct req *r, bool return_use)
{
	uint64_t id;

	if (engine__saf_put(e, r, return_use, &id) == 0) {
		TSW_COUNT(e->m->answers_undelivered_reversed);
		engine_event_req(e, TSW_EV_APPROVAL_UNDELIVERED, r, .why = "reversed");
	} else {
		TSW_COUNT(e->m->answers_undelivered_unqueued);
		engine_event_req(e, TSW_EV_APPROVAL_UNDELIVERED, r, .why = "unqueued");
	}
}

void engine__unsent_track(struct tsw_engine *e, struct req *r)
{
	struct acq_conn *c = &e->conns[r->acq_slot];
	uint32_t idx = req_index(e, r);

	/* answered: a repeat of the request is no longer a duplicate */
	engine__dup_remove(e, r);
	r->out_end = c->out.pos + engine__outbuf_pending(&c->out);
	r->list_next = NO_REQ;
	if (c->unsent_tail != NO_REQ)
		e->reqs[c->unsent_tail].list_next = idx;
	else
		c->unsent_head = idx;
	c->unsent_tail = idx;
}

static struct req *unsent_pop(struct tsw_engine *e, struct acq_conn *c)
{
	struct req *r = &e->reqs[c->unsent_head];

	c->unsent_head = r->list_next;
	if (c->unsent_head == NO_REQ)
		c->unsent_tail = NO_REQ;
	return r;
}

void engine__unsent_sent(struct tsw_engine *e, uint32_t slot)
{
	struct acq_conn *c = &e->conns[slot];

	while (c->unsent_head != NO_REQ && e->reqs[c->unsent_head].out_end <= c->out.pos)
		engine__req_free(e, unsent_pop(e, c));
}

void engine__unsent_abandon(struct tsw_engine *e, uint32_t slot)
{
	struct acq_conn *c = &e->conns[slot];

	while (c->unsent_head != NO_REQ) {
		struct req *r = unsent_pop(e, c);
		/* the use was committed at the approval; the acquirer's own
		 * reversal may already have given it back (acq_reversal.c) */
		bool return_use = r->has_ticket && engine__acq_rev_disown_use(e, r);

		engine__reverse_undelivered(e, r, return_use);
		engine__req_free(e, r);
	}
}
