/* The acquirer input side: connections opened and closed, input framed
 * and each frame decoded and dispatched (network messages answered,
 * undecodable ones refused, requests to the pipeline in request.c), and
 * back-pressure, decided here alone: a connection holds its input in the
 * stash while it has max_inflight_per_conn requests in flight or its
 * output is above half full; the backend is told to hold what arrives
 * (tsw_engine_acq_hold) and when to release it (tsw_engine_next_release).
 * The pipeline only notes that a request is done (acq_reply.c); the
 * stash is fed from here before the engine returns to the backend, so
 * nothing below calls back into input. Replies go out through
 * acq_reply.c.
 */
#include <errno.h>
#include <string.h>

#include "answer_guard.h"
#include "delivery.h"
#include "dup.h"
#include "engine_int.h"
#include "use.h"
#include "tsw/authz.h"
#include "tsw/error.h"

static bool must_hold(const struct tsw_engine *e, const struct acq_conn *c)
{
	return c->inflight >= e->cfg.max_inflight_per_conn ||
	       engine__outbuf_pending(&c->out) > c->out.cap / 2;
}

/* A message that does not decode: answered 30 when its MTI (a request)
 * and DE11 can be read, else the connection is closed. */
static int undecodable(struct tsw_engine *e, uint32_t slot, const uint8_t *frame, size_t len,
		       const struct tsw_iso_msg *m)
{
	struct echo ec;

	TSW_COUNT(e->m->format_errors);
	memset(&ec, 0, sizeof(ec));
	if (len < 4 || !is_digits(frame, 4) || (frame[2] != '0' && frame[2] != '2'))
		return -TSW_E_BAD_INPUT;
	memcpy(ec.mti, frame, 4);
	/* the decoder filled the views of the fields before the one at fault */
	if (m->err_field <= 11 || !tsw_iso_has(m, 11) || m->f[11].len != 6 ||
	    (size_t)m->f[11].off + 6 > len || !is_digits(frame + m->f[11].off, 6))
		return -TSW_E_BAD_INPUT;
	memcpy(ec.data, frame + m->f[11].off, 6);
	ec.off[ECHO_IDX_DE11] = 0;
	ec.len[ECHO_IDX_DE11] = 6;
	TSW_COUNT(e->m->declines[TSW_AUTHZ_FORMAT]);
	return engine__answer_local(e, slot, &ec, tsw_authz_rc(TSW_AUTHZ_FORMAT),
				    tsw_authz_reason_name(TSW_AUTHZ_FORMAT));
}

static int acq_frame(struct tsw_engine *e, uint32_t slot, const uint8_t *frame, size_t len)
{
	struct tsw_iso_msg m;
	struct echo ec;
	int r;

	r = tsw_iso_decode(e->acq_profile, frame, len, &m);
	if (r < 0)
		return undecodable(e, slot, frame, len, &m);
	switch (tsw_authz_class_of(m.mti)) {
	case TSW_AUTHZ_CLASS_NETWORK:
		return engine__answer_network(e, slot, &m);
	case TSW_AUTHZ_CLASS_AUTH:
	case TSW_AUTHZ_CLASS_ADVICE:
	case TSW_AUTHZ_CLASS_REVERSAL:
		if (engine__dup_in_flight(e, slot, &m)) {
			/* the same DE11 and DE7 on this connection are in
			 * flight: 94, never a second forward */
			engine__echo_from_msg(&ec, &m);
			TSW_COUNT(e->m->duplicates_refused);
			return engine__answer_local(e, slot, &ec, TSW_ENGINE_RC_DUPLICATE, NULL);
		}
		return engine__request(e, slot, &m, e->now_ns, NULL);
	case TSW_AUTHZ_CLASS_OTHER:
	case TSW_AUTHZ_CLASS_MAX:
		break;
	}
	/* an MTI the switch does not serve: answered 30 when it is a
	 * request, else (a response, say) the peer is confused: close */
	TSW_COUNT(e->m->format_errors);
	if (m.mti[2] != '0' && m.mti[2] != '2')
		return -TSW_E_BAD_INPUT;
	engine__echo_from_msg(&ec, &m);
	TSW_COUNT(e->m->declines[TSW_AUTHZ_FORMAT]);
	return engine__answer_local(e, slot, &ec, tsw_authz_rc(TSW_AUTHZ_FORMAT),
				    tsw_authz_reason_name(TSW_AUTHZ_FORMAT));
}

/* ---- acquirer connections ---- */

static int stash_append(struct tsw_engine *e, struct acq_conn *c, const uint8_t *data, size_t len)
{
	if (c->stash_off) {
		memmove(c->stash, c->stash + c->stash_off, c->stash_len - c->stash_off);
		c->stash_len -= c->stash_off;
		c->stash_off = 0;
	}
	if (len > e->cfg.in_buf_bytes - c->stash_len) {
		TSW_COUNT(e->m->stash_overflows);
		engine_event(e, TSW_EV_STASH_OVERFLOW, .slot = (uint32_t)(c - e->conns),
			     .n1 = e->cfg.in_buf_bytes);
		return -TSW_E_FULL;
	}
	memcpy(c->stash + c->stash_len, data, len);
	c->stash_len += (uint32_t)len;
	return 0;
}

/* Feeds input to the framer frame by frame until it is used up or the
 * connection must hold (in-flight limit, output half full): the rest is
 * kept in the stash. data may be the stash itself. */
static int feed(struct tsw_engine *e, uint32_t slot, const uint8_t *data, size_t len)
{
	struct acq_conn *c = &e->conns[slot];
	bool from_stash = data == c->stash;
	size_t off = from_stash ? c->stash_off : 0;
	int r = 0;

	c->feeding = true;
	for (;;) {
		const uint8_t *frame;
		size_t flen;

		if (c->state != ACQ_OPEN || c->close_queued)
			break;
		if (must_hold(e, c)) {
			if (!c->was_paused) {
				c->was_paused = true;
				TSW_COUNT(e->m->backpressure_pauses);
			}
			if (from_stash)
				c->stash_off = (uint32_t)off;
			else
				r = stash_append(e, c, data + off, len - off);
			goto out;
		}
		r = tsw_iso_framer_next(&c->fr, data, len, &off, &frame, &flen);
		if (r == 0)
			break;
		if (r < 0) {
			TSW_COUNT(e->m->frames_refused);
			engine_event(e, TSW_EV_FRAME_REFUSED, .slot = slot, .why = "acquirer",
				     .err = r, .n1 = e->acq_profile->max_frame);
			goto out;
		}
		r = 0;
		if (flen == 0)
			continue; /* keep-alive */
		r = acq_frame(e, slot, frame, flen);
		if (r == -TSW_E_NO_SPACE)
			r = 0; /* the connection is queued for close */
		if (r < 0)
			goto out;
	}
	if (from_stash)
		c->stash_off = c->stash_len = 0;
out:
	c->feeding = false;
	return r;
}

/* The backend was told to hold the input of slot, and the connection
 * takes input again: it is told to release it (tsw_engine_next_release). */
static void release_later(struct tsw_engine *e, uint32_t slot)
{
	struct acq_conn *c = &e->conns[slot];

	c->hold_told = false;
	if (c->release_queued)
		return;
	c->release_queued = true;
	c->release_next = 0;
	if (e->release_tail)
		e->conns[e->release_tail - 1].release_next = slot + 1;
	else
		e->release_head = slot + 1;
	e->release_tail = slot + 1;
}

void engine__resume(struct tsw_engine *e, uint32_t slot)
{
	struct acq_conn *c = &e->conns[slot];

	if (c->state != ACQ_OPEN || c->feeding)
		return;
	if (must_hold(e, c))
		return;
	c->was_paused = false;
	if (c->stash_len > c->stash_off && feed(e, slot, c->stash, c->stash_len) < 0)
		engine__conn_queue_close(e, slot);
	if (c->hold_told && !tsw_engine_acq_paused(e, slot))
		release_later(e, slot);
}

void engine__acq_resume_due(struct tsw_engine *e)
{
	while (e->resume_head) {
		uint32_t slot = e->resume_head - 1;
		struct acq_conn *c = &e->conns[slot];

		e->resume_head = c->resume_next;
		if (!e->resume_head)
			e->resume_tail = 0;
		c->resume_due = false;
		engine__resume(e, slot);
	}
}

void tsw_engine_acq_refused(struct tsw_engine *e)
{
	TSW_COUNT(e->m->conns_refused);
	engine_event(e, TSW_EV_MAX_CONNS, .n1 = e->cfg.max_conns);
}

int tsw_engine_acq_open(struct tsw_engine *e, uint64_t now_ns)
{
	struct acq_conn *c;
	uint32_t slot;

	if (!e->n_free_conns) {
		tsw_engine_acq_refused(e);
		return -TSW_E_FULL;
	}
	slot = e->free_conns[--e->n_free_conns];
	c = &e->conns[slot];
	c->state = ACQ_OPEN;
	c->inflight = 0;
	c->stash_off = c->stash_len = 0;
	c->close_queued = false;
	c->was_paused = false;
	c->last_active_ns = now_ns;
	c->peer_id = 0;
	tsw_iso_framer_reset(&c->fr);
	engine__outbuf_reset(&c->out);
	TSW_GAUGE_INC(e->m->conns_open);
	TSW_COUNT(e->m->conns_accepted);
	return (int)slot;
}

int tsw_engine_acq_input(struct tsw_engine *e, uint32_t slot, const uint8_t *data, size_t len,
			 uint64_t now_ns)
{
	struct acq_conn *c;
	int r;

	if (slot >= e->cfg.max_conns || e->conns[slot].state != ACQ_OPEN)
		return -EINVAL;
	c = &e->conns[slot];
	e->now_ns = now_ns;
	c->last_active_ns = now_ns;
	TSW_COUNT_ADD(e->m->bytes_in, len);
	if (c->stash_len > c->stash_off || must_hold(e, c)) {
		r = stash_append(e, c, data, len);
		if (r == 0)
			engine__resume(e, slot); /* goes on at once if it may */
		acq_resume_due(e);
		return r;
	}
	r = feed(e, slot, data, len);
	acq_resume_due(e);
	return r;
}

bool tsw_engine_acq_paused(const struct tsw_engine *e, uint32_t slot)
{
	const struct acq_conn *c;

	if (slot >= e->cfg.max_conns)
		return false;
	c = &e->conns[slot];
	return c->state == ACQ_OPEN && (must_hold(e, c) || c->stash_len > c->stash_off);
}

bool tsw_engine_acq_hold(struct tsw_engine *e, uint32_t slot)
{
	if (!tsw_engine_acq_paused(e, slot))
		return false;
	/* a release is owed from now on: engine__resume sends it */
	e->conns[slot].hold_told = true;
	return true;
}

bool tsw_engine_next_release(struct tsw_engine *e, uint32_t *ret_slot)
{
	while (e->release_head) {
		uint32_t slot = e->release_head - 1;
		struct acq_conn *c = &e->conns[slot];

		e->release_head = c->release_next;
		if (!e->release_head)
			e->release_tail = 0;
		c->release_queued = false;
		if (c->state != ACQ_OPEN)
			continue;
		*ret_slot = slot;
		return true;
	}
	return false;
}

void tsw_engine_acq_close(struct tsw_engine *e, uint32_t slot)
{
	struct acq_conn *c;

	if (slot >= e->cfg.max_conns || e->conns[slot].state != ACQ_OPEN)
		return;
	c = &e->conns[slot];
	/* approvals still in the output buffer never reach the acquirer */
	engine__unsent_abandon(e, slot);
	/* requests still pending complete on the issuer side; the generation
	 * tells their answers that this connection is gone */
	c->gen++;
	c->state = ACQ_FREE;
	c->inflight = 0;
	c->stash_off = c->stash_len = 0;
	engine__outbuf_reset(&c->out);
	e->free_conns[e->n_free_conns++] = slot;
	TSW_GAUGE_DEC(e->m->conns_open);
}

void tsw_engine_acq_close_sent(struct tsw_engine *e, uint32_t slot, size_t sent)
{
	struct acq_conn *c;
	size_t pending;

	if (slot >= e->cfg.max_conns || e->conns[slot].state != ACQ_OPEN)
		return;
	c = &e->conns[slot];
	pending = engine__outbuf_pending(&c->out);
	if (sent > pending)
		sent = pending;
	/* the buffer is reset by the close: only the stream offset moves */
	c->out.pos += sent;
	TSW_COUNT_ADD(e->m->bytes_out, sent);
	engine__unsent_sent(e, slot);
	tsw_engine_acq_close(e, slot);
}

bool tsw_engine_next_close(struct tsw_engine *e, uint32_t *ret_slot)
{
	while (e->close_len) {
		uint32_t slot = e->close_q[e->close_head];
		struct acq_conn *c = &e->conns[slot];

		e->close_head = (e->close_head + 1) % e->cfg.max_conns;
		e->close_len--;
		if (!c->close_queued)
			continue;
		c->close_queued = false;
		if (c->state != ACQ_OPEN)
			continue;
		*ret_slot = slot;
		return true;
	}
	return false;
}

void engine__idle_scan(struct tsw_engine *e, uint64_t now_ns)
{
	uint64_t idle = (uint64_t)e->cfg.idle_timeout_ms * NS_PER_MS;
	uint32_t i;

	if (!idle || now_ns < e->next_idle_scan_ns)
		return;
	/* scanning every connection is O(max_conns): do it a few times per
	 * idle period, not per tick */
	e->next_idle_scan_ns = now_ns + idle / 4 + 1;
	for (i = 0; i < e->cfg.max_conns; i++) {
		struct acq_conn *c = &e->conns[i];

		if (c->state != ACQ_OPEN || c->inflight || c->close_queued)
			continue;
		if (now_ns - c->last_active_ns >= idle) {
			TSW_COUNT(e->m->conns_idle_closed);
			engine__conn_queue_close(e, i);
		}
	}
}
