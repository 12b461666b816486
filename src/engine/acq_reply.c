/* The acquirer reply side: every frame the switch writes to an acquirer
 * connection goes through engine__conn_write (a peer that does not read its
 * answers is queued for close); the answers the switch makes itself
 * (declines, stand-in approvals, 0810 to a network message) are built
 * from the echo fields kept of a request (DESIGN.md: never DE35). The
 * end of a request (engine__conn_request_done) is noted here too: one fewer in
 * flight, and the connection's input goes on once the engine returns to
 * the backend (acq_input.c decides). Calls go down only: outbuf.c, the
 * dirty queue, metrics.c, event.c.
 */
#include <string.h>

#include "engine_int.h"
#include "tsw/authz.h"
#include "tsw/error.h"

void engine__echo_from_msg(struct echo *ec, const struct tsw_iso_msg *m)
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

void engine__conn_queue_close(struct tsw_engine *e, uint32_t slot)
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
int engine__conn_write(struct tsw_engine *e, uint32_t slot, const struct tsw_iso_msg *base,
		       const struct tsw_iso_edit *ed, unsigned n_ed)
{
	struct acq_conn *c = &e->conns[slot];
	int r;

	r = engine__outbuf_encode(&c->out, e->acq_profile, base, ed, n_ed);
	if (r == -TSW_E_NO_SPACE) {
		TSW_COUNT(e->m->slow_consumer_closes);
		if (!c->close_queued)
			engine_event(e, TSW_EV_SLOW_CONSUMER, .slot = slot, .n1 = c->out.cap);
		engine__conn_queue_close(e, slot);
	}
	if (r < 0)
		return r;
	engine__mark_dirty(e, TSW_EP_ACQ, slot);
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
	engine__count_answer(e, engine__mti_class(ec->mti), rc);
	return engine__conn_write(e, slot, NULL, ed, n);
}

int engine__answer_local(struct tsw_engine *e, uint32_t slot, const struct echo *ec, const char *rc,
			 const char *reason)
{
	return answer_with(e, slot, ec, rc, reason, NULL);
}

int engine__answer_standin(struct tsw_engine *e, uint32_t slot, const struct echo *ec,
			   const char code[6])
{
	return answer_with(e, slot, ec, tsw_authz_rc(TSW_AUTHZ_STANDIN),
			   tsw_authz_reason_name(TSW_AUTHZ_STANDIN), code);
}

int engine__decline(struct tsw_engine *e, uint32_t slot, const struct echo *ec,
		    enum tsw_authz_reason reason)
{
	TSW_COUNT(e->m->declines[reason]);
	return engine__answer_local(e, slot, ec, tsw_authz_rc(reason),
				    tsw_authz_reason_name(reason));
}

int engine__answer_network(struct tsw_engine *e, uint32_t slot, const struct tsw_iso_msg *m)
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
	engine__count_answer(e, TSW_MTI_0800, "00");
	return engine__conn_write(e, slot, NULL, ed, n);
}

void engine__conn_request_done(struct tsw_engine *e, uint32_t slot, uint32_t gen)
{
	struct acq_conn *c = &e->conns[slot];

	if (c->state != ACQ_OPEN || c->gen != gen)
		return;
	if (c->inflight)
		c->inflight--;
	engine__acq_resume_later(e, slot);
}

void engine__acq_resume_later(struct tsw_engine *e, uint32_t slot)
{
	struct acq_conn *c = &e->conns[slot];

	if (c->resume_due)
		return;
	c->resume_due = true;
	c->resume_next = 0;
	if (e->resume_tail)
		e->conns[e->resume_tail - 1].resume_next = slot + 1;
	else
		e->resume_head = slot + 1;
	e->resume_tail = slot + 1;
}
