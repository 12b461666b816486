/* Acquirer connections: open, input framed and held back under
 * backpressure, close, idle scan; each frame decoded and dispatched
 * (network messages answered here, requests to the pipeline in
 * request.c); the answers the switch writes to them itself, built from
 * the echo fields of a request. */
#include <errno.h>
#include <string.h>

#include "answer_guard.h"
#include "delivery.h"
#include "dup.h"
#include "engine_int.h"
#include "use.h"
#include "tsw/authz.h"
#include "tsw/error.h"

const uint8_t tsw_engine_echo_fields[TSW_ENGINE_ECHO_FIELDS] = {2,  3,	4,  7,	11, 12,
								13, 37, 41, 42, 49};

void echo_from_msg(struct echo *ec, const struct tsw_iso_msg *m)
{
	unsigned i, off = 0;

	memcpy(ec->mti, m->mti, 4);
	for (i = 0; i < TSW_ENGINE_ECHO_FIELDS; i++) {
		unsigned f = tsw_engine_echo_fields[i];
		unsigned n = m->f[f].len;

		ec->len[i] = 0;
		if (!tsw_iso_has(m, f) || n == 0 || n > 255 || off + n > TSW_ENGINE_ECHO_BYTES)
			continue;
		memcpy(ec->data + off, tsw_iso_ptr(m, f), n);
		ec->off[i] = (uint8_t)off;
		ec->len[i] = (uint8_t)n;
		off += n;
	}
}

static unsigned echo_edits(const struct echo *ec, struct tsw_iso_edit *ed)
{
	unsigned i, n = 0;

	for (i = 0; i < TSW_ENGINE_ECHO_FIELDS; i++) {
		if (!ec->len[i])
			continue;
		ed[n].field = tsw_engine_echo_fields[i];
		ed[n].len = ec->len[i];
		ed[n].data = ec->data + ec->off[i];
		n++;
	}
	return n;
}

static void conn_queue_close(struct tsw_engine *e, uint32_t slot)
{
	struct acq_conn *c = &e->conns[slot];

	if (c->close_queued)
		return;
	c->close_queued = true;
	e->close_q[(e->close_head + e->close_len) % e->cfg.max_conns] = slot;
	e->close_len++;
}

/* Appends one encoded frame to an acquirer connection; a peer that does
 * not read its answers (no room left) is closed. */
int conn_write(struct tsw_engine *e, uint32_t slot, const struct tsw_iso_msg *base,
	       const struct tsw_iso_edit *ed, unsigned n_ed)
{
	struct acq_conn *c = &e->conns[slot];
	int r;

	r = outbuf_encode(&c->out, e->acq_profile, base, ed, n_ed);
	if (r == -TSW_E_NO_SPACE) {
		TSW_COUNT(e->m->slow_consumer_closes);
		if (!c->close_queued)
			engine_event(e, TSW_EV_SLOW_CONSUMER, .slot = slot, .n1 = c->out.cap);
		conn_queue_close(e, slot);
	}
	if (r < 0)
		return r;
	engine_mark_dirty(e, TSW_EP_ACQ, slot);
	return 0;
}

/* A local answer to ec: its echo fields, DE39 rc, DE44 reason and DE38
 * code when not NULL. */
static int answer_with(struct tsw_engine *e, uint32_t slot, const struct echo *ec, const char *rc,
		       const char *reason, const char *code)
{
	struct tsw_iso_edit ed[TSW_ENGINE_ECHO_FIELDS + 4];
	char mti[4];
	unsigned n;

	memcpy(mti, ec->mti, 4);
	mti[2] = (char)(mti[2] + 1); /* request -> response, advice -> advice response */
	if (mti[3] == '1')
		mti[3] = '0'; /* a repeat (0101, 0401) is answered 0110, 0410 */
	n = echo_edits(ec, ed);
	ed[n++] = (struct tsw_iso_edit){.field = 0, .len = 4, .data = (const uint8_t *)mti};
	ed[n++] = (struct tsw_iso_edit){.field = 39, .len = 2, .data = (const uint8_t *)rc};
	if (reason)
		ed[n++] = (struct tsw_iso_edit){
		    .field = 44, .len = (uint16_t)strlen(reason), .data = (const uint8_t *)reason};
	if (code)
		ed[n++] =
		    (struct tsw_iso_edit){.field = 38, .len = 6, .data = (const uint8_t *)code};
	count_answer(e, mti_class(ec->mti), rc);
	return conn_write(e, slot, NULL, ed, n);
}

int answer_local(struct tsw_engine *e, uint32_t slot, const struct echo *ec, const char *rc,
		 const char *reason)
{
	return answer_with(e, slot, ec, rc, reason, NULL);
}

int answer_standin(struct tsw_engine *e, uint32_t slot, const struct echo *ec, const char code[6])
{
	return answer_with(e, slot, ec, tsw_authz_rc(TSW_AUTHZ_STANDIN),
			   tsw_authz_reason_name(TSW_AUTHZ_STANDIN), code);
}

int decline(struct tsw_engine *e, uint32_t slot, const struct echo *ec,
	    enum tsw_authz_reason reason)
{
	TSW_COUNT(e->m->declines[reason]);
	return answer_local(e, slot, ec, tsw_authz_rc(reason), tsw_authz_reason_name(reason));
}

static bool must_hold(const struct tsw_engine *e, const struct acq_conn *c)
{
	return c->inflight >= e->cfg.max_inflight_per_conn ||
	       outbuf_pending(&c->out) > c->out.cap / 2;
}

static int answer_network(struct tsw_engine *e, uint32_t slot, const struct tsw_iso_msg *m)
{
	static const uint8_t fields[] = {7, 11, 70};
	struct tsw_iso_edit ed[5];
	char mti[4];
	unsigned i, n = 0;

	memcpy(mti, m->mti, 4);
	mti[2] = '1';
	if (mti[3] == '1')
		mti[3] = '0'; /* 0801 -> 0810 */
	ed[n++] = (struct tsw_iso_edit){.field = 0, .len = 4, .data = (const uint8_t *)mti};
	for (i = 0; i < sizeof(fields); i++)
		if (tsw_iso_has(m, fields[i]))
			ed[n++] = (struct tsw_iso_edit){.field = fields[i],
							.len = m->f[fields[i]].len,
							.data = tsw_iso_ptr(m, fields[i])};
	ed[n++] = (struct tsw_iso_edit){.field = 39, .len = 2, .data = (const uint8_t *)"00"};
	count_answer(e, TSW_MTI_0800, "00");
	return conn_write(e, slot, NULL, ed, n);
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
	return answer_local(e, slot, &ec, tsw_authz_rc(TSW_AUTHZ_FORMAT),
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
		return answer_network(e, slot, &m);
	case TSW_AUTHZ_CLASS_AUTH:
	case TSW_AUTHZ_CLASS_ADVICE:
	case TSW_AUTHZ_CLASS_REVERSAL:
		if (dup_in_flight(e, slot, &m)) {
			/* the same DE11 and DE7 on this connection are in
			 * flight: 94, never a second forward */
			echo_from_msg(&ec, &m);
			TSW_COUNT(e->m->duplicates_refused);
			return answer_local(e, slot, &ec, TSW_ENGINE_RC_DUPLICATE, NULL);
		}
		return engine_request(e, slot, &m, e->now_ns, NULL);
	case TSW_AUTHZ_CLASS_OTHER:
	case TSW_AUTHZ_CLASS_MAX:
		break;
	}
	/* an MTI the switch does not serve: answered 30 when it is a
	 * request, else (a response, say) the peer is confused: close */
	TSW_COUNT(e->m->format_errors);
	if (m.mti[2] != '0' && m.mti[2] != '2')
		return -TSW_E_BAD_INPUT;
	echo_from_msg(&ec, &m);
	TSW_COUNT(e->m->declines[TSW_AUTHZ_FORMAT]);
	return answer_local(e, slot, &ec, tsw_authz_rc(TSW_AUTHZ_FORMAT),
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

void engine_resume(struct tsw_engine *e, uint32_t slot)
{
	struct acq_conn *c = &e->conns[slot];

	if (c->state != ACQ_OPEN || c->feeding)
		return;
	if (must_hold(e, c))
		return;
	c->was_paused = false;
	if (c->stash_len > c->stash_off && feed(e, slot, c->stash, c->stash_len) < 0)
		conn_queue_close(e, slot);
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
	outbuf_reset(&c->out);
	TSW_GAUGE_INC(e->m->conns_open);
	TSW_COUNT(e->m->conns_accepted);
	return (int)slot;
}

int tsw_engine_acq_input(struct tsw_engine *e, uint32_t slot, const uint8_t *data, size_t len,
			 uint64_t now_ns)
{
	struct acq_conn *c;

	if (slot >= e->cfg.max_conns || e->conns[slot].state != ACQ_OPEN)
		return -EINVAL;
	c = &e->conns[slot];
	e->now_ns = now_ns;
	c->last_active_ns = now_ns;
	TSW_COUNT_ADD(e->m->bytes_in, len);
	if (c->stash_len > c->stash_off || must_hold(e, c)) {
		int r = stash_append(e, c, data, len);

		if (r == 0)
			engine_resume(e, slot); /* goes on at once if it may */
		return r;
	}
	return feed(e, slot, data, len);
}

bool tsw_engine_acq_paused(const struct tsw_engine *e, uint32_t slot)
{
	const struct acq_conn *c;

	if (slot >= e->cfg.max_conns)
		return false;
	c = &e->conns[slot];
	return c->state == ACQ_OPEN && (must_hold(e, c) || c->stash_len > c->stash_off);
}

void tsw_engine_acq_close(struct tsw_engine *e, uint32_t slot)
{
	struct acq_conn *c;

	if (slot >= e->cfg.max_conns || e->conns[slot].state != ACQ_OPEN)
		return;
	c = &e->conns[slot];
	/* approvals still in the output buffer never reach the acquirer */
	unsent_abandon(e, slot);
	/* requests still pending complete on the issuer side; the generation
	 * tells their answers that this connection is gone */
	c->gen++;
	c->state = ACQ_FREE;
	c->inflight = 0;
	c->stash_off = c->stash_len = 0;
	outbuf_reset(&c->out);
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
	pending = outbuf_pending(&c->out);
	if (sent > pending)
		sent = pending;
	/* the buffer is reset by the close: only the stream offset moves */
	c->out.pos += sent;
	TSW_COUNT_ADD(e->m->bytes_out, sent);
	unsent_sent(e, slot);
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

void conn_request_done(struct tsw_engine *e, uint32_t slot, uint32_t gen)
{
	struct acq_conn *c = &e->conns[slot];

	if (c->state != ACQ_OPEN || c->gen != gen)
		return;
	if (c->inflight)
		c->inflight--;
	engine_resume(e, slot);
}

void idle_scan(struct tsw_engine *e, uint64_t now_ns)
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
			conn_queue_close(e, i);
		}
	}
}
