/* The sans-I/O switch engine: acquirer connections, the per-request
 * pipeline (frame -> decode -> parse -> vault -> decide -> decline or
 * forward), issuer answers back to the acquirer, timeouts.
 *
 * One instance per worker thread. No syscalls (the wall clock is read
 * through the vDSO), no locks, no allocation after tsw_engine_new(), no
 * logging. docs/engine.md describes the pipeline.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "acq_reversal.h"
#include "answer_guard.h"
#include "dup.h"
#include "engine_int.h"
#include "rewrite.h"
#include "use.h"
#include "tsw/authz.h"
#include "tsw/error.h"
#include "tsw/vault.h"

const uint8_t tsw_engine_echo_fields[TSW_ENGINE_ECHO_FIELDS] = {2,  3,	4,  7,	11, 12,
								13, 37, 41, 42, 49};
#define ECHO_IDX_DE11 4

static int64_t wall_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts.tv_sec;
}

unsigned mti_class(const char mti[4])
{
	if (mti[0] != '0')
		return TSW_MTI_OTHER;
	if (mti[1] == '1' && mti[2] == '0')
		return TSW_MTI_0100;
	if (mti[1] == '2' && mti[2] == '0')
		return TSW_MTI_0200;
	if ((mti[1] == '1' || mti[1] == '2') && mti[2] == '2')
		return TSW_MTI_0120;
	if (mti[1] == '4' && mti[2] == '0')
		return TSW_MTI_0400;
	if (mti[1] == '4' && mti[2] == '2')
		return TSW_MTI_0420;
	if (mti[1] == '8' && mti[2] == '0')
		return TSW_MTI_0800;
	return TSW_MTI_OTHER;
}

void count_answer(struct tsw_engine *e, unsigned cls, const char *rc)
{
	e->m->requests[cls][tsw_metrics_rc_index(rc)]++;
}

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
static int conn_write(struct tsw_engine *e, uint32_t slot, const struct tsw_iso_msg *base,
		      const struct tsw_iso_edit *ed, unsigned n_ed)
{
	struct acq_conn *c = &e->conns[slot];
	const struct tsw_iso_profile *p = e->cfg.acq_profile;
	size_t cap;
	uint8_t *body;
	int n;

	body = outbuf_frame_begin(&c->out, p, p->max_frame, &cap);
	if (!body) {
		n = -TSW_E_NO_SPACE;
		goto err_full;
	}
	n = tsw_iso_encode(p, base, ed, n_ed, body, cap);
	if (n == -TSW_E_NO_SPACE && cap < p->max_frame)
		goto err_full;
	if (n < 0)
		return n;
	n = outbuf_frame_commit(&c->out, p, (size_t)n);
	if (n < 0)
		return n;
	engine_mark_dirty(e, TSW_EP_ACQ, slot);
	return 0;

err_full:
	e->m->slow_consumer_closes++;
	conn_queue_close(e, slot);
	return n;
}

int answer_local(struct tsw_engine *e, uint32_t slot, const struct echo *ec, const char *rc,
		 const char *reason)
{
	struct tsw_iso_edit ed[TSW_ENGINE_ECHO_FIELDS + 3];
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
	count_answer(e, mti_class(ec->mti), rc);
	return conn_write(e, slot, NULL, ed, n);
}

static int decline(struct tsw_engine *e, uint32_t slot, const struct echo *ec,
		   enum tsw_authz_reason reason)
{
	e->m->declines[reason]++;
	return answer_local(e, slot, ec, tsw_authz_rc(reason), tsw_authz_reason_name(reason));
}

static bool must_hold(const struct tsw_engine *e, const struct acq_conn *c)
{
	return c->inflight >= e->cfg.max_inflight_per_conn ||
	       outbuf_pending(&c->out) > c->out.cap / 2;
}

/* ---- vault reader ---- */

static int reader_ensure(struct tsw_engine *e)
{
	int r;

	if (e->reader_live)
		return 0;
	r = tsw_vault_reader_renew(e->reader);
	if (r < 0)
		return r;
	e->reader_live = true;
	return 0;
}

/* ---- the request pipeline ---- */

/* One request on its way through the pipeline. The echo fields are not
 * copied up front: a decline builds them on the stack from msg, a forward
 * straight into its pending slot (one copy of ~200 bytes, not two). */
struct pipeline {
	uint32_t slot;
	const struct tsw_iso_msg *msg;
	struct tsw_authz_req req;
	uint64_t start_ns;
	uint64_t ticket;
	bool has_ticket;
};

static void release_ticket(struct tsw_engine *e, struct pipeline *pl)
{
	if (pl->has_ticket) {
		use_release(e, pl->ticket);
		pl->has_ticket = false;
	}
}

static int pl_decline(struct tsw_engine *e, struct pipeline *pl, enum tsw_authz_reason reason)
{
	struct echo ec;

	release_ticket(e, pl);
	echo_from_msg(&ec, pl->msg);
	return decline(e, pl->slot, &ec, reason);
}

static void fmt_stan(uint32_t stan, char out[6])
{
	int i;

	for (i = 5; i >= 0; i--) {
		out[i] = (char)('0' + stan % 10);
		stan /= 10;
	}
}

static int forward(struct tsw_engine *e, struct pipeline *pl, const struct tsw_token *t)
{
	const struct tsw_iso_msg *m = pl->msg;
	const struct tsw_iso_profile *ip = e->cfg.iss_profile;
	struct acq_conn *c = &e->conns[pl->slot];
	struct tsw_iso_edit ed[7];
	uint8_t de48[TSW_ENGINE_DE48_MAX];
	uint8_t de35[TSW_ENGINE_DE35_MAX];
	char pan[TSW_PAN_MAX_DIGITS];
	char de90[TSW_ENGINE_DE90_LEN];
	char stan[6];
	struct issuer_link *l;
	struct req *r;
	size_t de48_len = 0, de35_len = 0, cap;
	uint8_t *body;
	unsigned n = 0;
	int pan_len, iss, ret;
	enum tsw_authz_reason fail = TSW_AUTHZ_SYSTEM;

	/* the answer goes back with the acquirer's DE11 */
	if (!tsw_iso_has(m, 11) || m->f[11].len == 0 || m->f[11].len > 255)
		return pl_decline(e, pl, TSW_AUTHZ_FORMAT);

	pan_len = tsw_vault_decrypt_pan(e->reader, t, pan, sizeof(pan));
	if (pan_len < 0) {
		e->m->vault_errors++;
		return pl_decline(e, pl, TSW_AUTHZ_SYSTEM);
	}
	iss = engine_route(e, pan, (size_t)pan_len);
	if (iss < 0) {
		e->m->no_route++;
		goto err_wipe;
	}
	l = &e->links[iss];
	if (l->state != LINK_SIGNED_ON) {
		fail = TSW_AUTHZ_ISSUER_UNAVAILABLE;
		goto err_wipe;
	}
	r = req_alloc(e);
	if (!r) {
		e->m->pending_full++;
		goto err_wipe;
	}
	ret = pending_insert(e, r, (uint16_t)iss);
	if (ret < 0) {
		e->m->pending_full++;
		goto err_free_req;
	}
	fmt_stan((uint32_t)r->key, stan);
	echo_from_msg(&r->echo, m);
	if (!r->echo.len[ECHO_IDX_DE11]) {
		/* the fields before it filled the echo space (a custom profile) */
		fail = TSW_AUTHZ_FORMAT;
		goto err_remove;
	}

	if (tsw_iso_has(m, 48))
		ret = de48_for_issuer(tsw_iso_ptr(m, 48), m->f[48].len, t, de48, sizeof(de48),
				      &de48_len);
	else
		ret = de48_for_issuer(NULL, 0, t, de48, sizeof(de48), &de48_len);
	if (ret < 0)
		goto err_remove;
	if (tsw_iso_has(m, 35)) {
		ret = de35_to_pan(tsw_iso_ptr(m, 35), m->f[35].len, pan, (size_t)pan_len,
				  t->pan_expiry, de35, sizeof(de35), &de35_len);
		if (ret < 0) {
			fail = TSW_AUTHZ_FORMAT;
			goto err_remove;
		}
		ed[n++] =
		    (struct tsw_iso_edit){.field = 35, .len = (uint16_t)de35_len, .data = de35};
	}
	ed[n++] = (struct tsw_iso_edit){
	    .field = 2, .len = (uint16_t)pan_len, .data = (const uint8_t *)pan};
	if (strlen(t->pan_expiry) == 4)
		ed[n++] = (struct tsw_iso_edit){
		    .field = 14, .len = 4, .data = (const uint8_t *)t->pan_expiry};
	ed[n++] = (struct tsw_iso_edit){.field = 11, .len = 6, .data = (const uint8_t *)stan};
	ed[n++] = (struct tsw_iso_edit){.field = 48, .len = (uint16_t)de48_len, .data = de48};
	/* an acquirer's reversal names the original by the switch STAN */
	if (tsw_authz_class_of(m->mti) == TSW_AUTHZ_CLASS_REVERSAL &&
	    acq_rev_de90(e, t->token, t->token_len, m, de90)) {
		ed[n++] = (struct tsw_iso_edit){
		    .field = 90, .len = TSW_ENGINE_DE90_LEN, .data = (const uint8_t *)de90};
		e->m->acq_reversals_matched++;
	}

	body = outbuf_frame_begin(&l->out, ip, ip->max_frame, &cap);
	if (!body) {
		e->m->link_out_full++;
		fail = TSW_AUTHZ_ISSUER_UNAVAILABLE;
		goto err_remove;
	}
	r->pan_len = (uint8_t)pan_len;
	r->pan_fp = pan_fp(e->pan_fp_seed, pan, (size_t)pan_len);
	if (pan_len >= 4) /* the vault holds 12..19-digit PANs */
		memcpy(r->pan_last4, pan + pan_len - 4, 4);
	ret = tsw_iso_encode(ip, m, ed, n, body, cap);
	explicit_bzero(pan, sizeof(pan));
	explicit_bzero(de35, sizeof(de35));
	if (ret == -TSW_E_NO_SPACE && cap < ip->max_frame) {
		e->m->link_out_full++;
		fail = TSW_AUTHZ_ISSUER_UNAVAILABLE;
		goto err_remove;
	}
	if (ret < 0 || outbuf_frame_commit(&l->out, ip, (size_t)ret) < 0) {
		fail = TSW_AUTHZ_FORMAT;
		goto err_remove;
	}
	l->last_tx_ns = e->now_ns;
	engine_mark_dirty(e, TSW_EP_LINK, (uint32_t)iss);

	r->kind = REQ_ACQ;
	r->acq_slot = pl->slot;
	r->acq_gen = c->gen;
	r->mti_class = (uint8_t)mti_class(m->mti);
	r->start_ns = pl->start_ns;
	r->fwd_ns = e->now_ns;
	r->deadline_ns = e->now_ns + (uint64_t)e->cfg.issuer_timeout_ms * NS_PER_MS;
	r->ticket = pl->ticket;
	r->has_ticket = pl->has_ticket;
	/* the whole array (fixed size: two moves, not a rep movsb) */
	_Static_assert(sizeof(r->token) <= sizeof(t->token), "token arrays");
	memcpy(r->token, t->token, sizeof(r->token));
	r->token_len = t->token_len;
	r->has_token_expiry = strlen(t->token_expiry) == 4;
	if (r->has_token_expiry)
		memcpy(r->token_expiry, t->token_expiry, 4);
	heap_push(e, r);
	dup_add(e, r);
	if (r->mti_class == TSW_MTI_0100 || r->mti_class == TSW_MTI_0200)
		acq_rev_remember(e, t->token, t->token_len, m, (uint32_t)r->key);
	c->inflight++;
	l->pending++;
	e->m->inflight++;
	e->m->forwarded++;
	return 0;

err_remove:
	pending_remove(e, r);
err_free_req:
	req_free(e, r);
err_wipe:
	explicit_bzero(pan, sizeof(pan));
	explicit_bzero(de35, sizeof(de35));
	return pl_decline(e, pl, fail);
}

static int lookup(struct tsw_engine *e, const char *tok, size_t len, struct tsw_token *ret,
		  bool *ret_found)
{
	int r;

	e->m->vault_lookups++;
	r = tsw_vault_lookup(e->reader, tok, len, ret);
	if (r == -TSW_E_NOT_FOUND) {
		*ret_found = false;
		return 0;
	}
	if (r < 0) {
		e->m->vault_errors++;
		return r;
	}
	*ret_found = true;
	return 0;
}

/* Runs the decision for a parsed request and forwards or declines it.
 * Called again for a parked request once its use is durable. */
static int decide_and_route(struct tsw_engine *e, struct pipeline *pl)
{
	struct tsw_token t, orig;
	struct tsw_authz_ctx ctx;
	bool found = false, orig_found = false;
	enum tsw_authz_reason reason;
	int r;

	tsw_authz_ctx_init(&ctx, e->wall_s);
	ctx.in_token_range =
	    tsw_vault_in_token_range(e->vault, pl->req.token.ptr, pl->req.token.len);
	if (reader_ensure(e) < 0) {
		e->m->vault_errors++;
		return pl_decline(e, pl, TSW_AUTHZ_SYSTEM);
	}
	if (ctx.in_token_range) {
		r = lookup(e, pl->req.token.ptr, pl->req.token.len, &t, &found);
		if (r < 0)
			return pl_decline(e, pl, TSW_AUTHZ_SYSTEM);
		if (found && t.original_token[0]) {
			r = lookup(e, t.original_token, strlen(t.original_token), &orig,
				   &orig_found);
			if (r < 0)
				return pl_decline(e, pl, TSW_AUTHZ_SYSTEM);
		}
		if (found && tsw_authz_needs_device(&t, &pl->req)) {
			r = tsw_vault_device_bound(e->reader, t.token, t.token_len,
						   pl->req.device_id.ptr, pl->req.device_id.len);
			ctx.device_bound = (int8_t)(r < 0 ? -1 : r);
		}
	}
	reason = tsw_authz_decide(found ? &t : NULL, orig_found ? &orig : NULL, &pl->req, &ctx);
	if (reason != TSW_AUTHZ_FORWARD)
		return pl_decline(e, pl, reason);
	if (!pl->has_ticket && tsw_authz_needs_use(&t, &pl->req)) {
		bool durable = false;

		r = use_reserve(e, &t, &pl->ticket, &durable);
		if (r == -TSW_E_FULL)
			return pl_decline(e, pl, TSW_AUTHZ_DOMAIN_USES);
		if (r < 0)
			return pl_decline(e, pl, TSW_AUTHZ_SYSTEM);
		pl->has_ticket = true;
		if (!durable) {
			r = park(e, pl->slot, pl->msg, pl->ticket, pl->start_ns);
			if (r < 0)
				return pl_decline(e, pl, TSW_AUTHZ_SYSTEM);
			return 0;
		}
	}
	return forward(e, pl, &t);
}

int engine_request(struct tsw_engine *e, uint32_t slot, const struct tsw_iso_msg *m,
		   uint64_t start_ns, const uint64_t *ticket)
{
	struct pipeline pl;

	/* not zeroed as a whole: tsw_authz_parse fills req on success, and
	 * req is not read otherwise */
	pl.slot = slot;
	pl.msg = m;
	pl.start_ns = start_ns;
	pl.ticket = ticket ? *ticket : 0;
	pl.has_ticket = ticket != NULL;
	if (tsw_authz_parse(m, &pl.req) < 0) {
		e->m->format_errors++;
		return pl_decline(e, &pl, TSW_AUTHZ_FORMAT);
	}
	return decide_and_route(e, &pl);
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

static bool is_digits(const uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (p[i] < '0' || p[i] > '9')
			return false;
	return true;
}

/* A message that does not decode: answered 30 when its MTI (a request)
 * and DE11 can be read, else the connection is closed. */
static int undecodable(struct tsw_engine *e, uint32_t slot, const uint8_t *frame, size_t len,
		       const struct tsw_iso_msg *m)
{
	struct echo ec;

	e->m->format_errors++;
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
	e->m->declines[TSW_AUTHZ_FORMAT]++;
	return answer_local(e, slot, &ec, tsw_authz_rc(TSW_AUTHZ_FORMAT),
			    tsw_authz_reason_name(TSW_AUTHZ_FORMAT));
}

static int acq_frame(struct tsw_engine *e, uint32_t slot, const uint8_t *frame, size_t len)
{
	struct tsw_iso_msg m;
	struct echo ec;
	int r;

	r = tsw_iso_decode(e->cfg.acq_profile, frame, len, &m);
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
			e->m->duplicates_refused++;
			return answer_local(e, slot, &ec, TSW_ENGINE_RC_DUPLICATE, NULL);
		}
		return engine_request(e, slot, &m, e->now_ns, NULL);
	case TSW_AUTHZ_CLASS_OTHER:
	case TSW_AUTHZ_CLASS_MAX:
		break;
	}
	/* an MTI the switch does not serve: answered 30 when it is a
	 * request, else (a response, say) the peer is confused: close */
	e->m->format_errors++;
	if (m.mti[2] != '0' && m.mti[2] != '2')
		return -TSW_E_BAD_INPUT;
	echo_from_msg(&ec, &m);
	e->m->declines[TSW_AUTHZ_FORMAT]++;
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
		e->m->stash_overflows++;
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
				e->m->backpressure_pauses++;
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
			e->m->frames_refused++;
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

int tsw_engine_acq_open(struct tsw_engine *e, uint64_t now_ns)
{
	struct acq_conn *c;
	uint32_t slot;

	if (!e->n_free_conns) {
		e->m->conns_refused++;
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
	c->fr.acc_len = 0;
	c->fr.need = 0;
	c->fr.have_hdr = 0;
	outbuf_reset(&c->out);
	e->m->conns_open++;
	e->m->conns_accepted++;
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
	e->m->bytes_in += len;
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
	/* requests still pending complete on the issuer side; the generation
	 * tells their answers that this connection is gone */
	c->gen++;
	c->state = ACQ_FREE;
	c->inflight = 0;
	c->stash_off = c->stash_len = 0;
	outbuf_reset(&c->out);
	e->free_conns[e->n_free_conns++] = slot;
	e->m->conns_open--;
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

/* ---- answers from issuers ---- */

static void hist_us(struct tsw_hist *h, uint64_t from_ns, uint64_t to_ns)
{
	tsw_hist_add_ns(h, to_ns > from_ns ? to_ns - from_ns : 0);
}

/* Finishes a forwarded request that got no answer (timeout, link down):
 * 91 to the acquirer, the use given back, a reversal queued for an
 * authorization whose outcome at the issuer is unknown. */
void req_fail(struct tsw_engine *e, struct req *r, int timed_out)
{
	struct issuer_link *l = &e->links[r->link];

	pending_remove(e, r);
	heap_remove(e, r);
	if (l->pending)
		l->pending--;
	if (timed_out)
		expired_remember(e, r->key, r->kind == REQ_SAF ? r->saf_id : 0);
	if (r->kind == REQ_SAF) {
		saf_failed(e, r);
		req_free(e, r);
		return;
	}
	if (timed_out)
		e->m->timeouts++;
	if (r->has_ticket)
		use_release(e, r->ticket);
	e->m->inflight--;
	if (e->conns[r->acq_slot].state == ACQ_OPEN && e->conns[r->acq_slot].gen == r->acq_gen) {
		decline(e, r->acq_slot, &r->echo, TSW_AUTHZ_ISSUER_UNAVAILABLE);
		conn_request_done(e, r->acq_slot, r->acq_gen);
	} else {
		e->m->answers_conn_gone++;
		e->m->declines[TSW_AUTHZ_ISSUER_UNAVAILABLE]++;
	}
	if (r->mti_class == TSW_MTI_0100 || r->mti_class == TSW_MTI_0200)
		saf_put(e, r);
	req_free(e, r);
}

static bool contains(const uint8_t *hay, size_t n, const uint8_t *needle, size_t k)
{
	return k > 0 && memmem(hay, n, needle, k) != NULL;
}

/* The issuer's DE2 is the request's PAN (as it nearly always is): the
 * fingerprint scan already looks for it, no second search needed. */
static bool is_request_pan(const struct tsw_engine *e, const struct req *r,
			   const struct tsw_iso_msg *m)
{
	return m->f[2].len == r->pan_len &&
	       pan_fp(e->pan_fp_seed, (const char *)tsw_iso_ptr(m, 2), r->pan_len) == r->pan_fp;
}

/* The issuer's answer rewritten for the acquirer: DE2 the token again
 * (absent when the issuer left it out), DE14 the token expiry, DE34/35/
 * 36/45/102/103 removed, DE11 the acquirer's, DE48 tags 30-36 removed.
 * Returns 1 when the issuer's answer went out, 0 when a 96 replaced it
 * (it does not re-encode, or the PAN was found in it), -1 when nothing
 * could be written (the slow consumer is closed). */
static int deliver_answer(struct tsw_engine *e, struct req *r, const struct tsw_iso_msg *m,
			  const char *rc)
{
	struct acq_conn *c = &e->conns[r->acq_slot];
	struct tsw_iso_edit ed[6 + TSW_ENGINE_ANSWER_DROP];
	uint8_t de48[TSW_ENGINE_DE48_MAX];
	size_t de48_len = 0;
	uint32_t tail_before;
	unsigned n = 0;
	int ret;

	if (tsw_iso_has(m, 2))
		ed[n++] = (struct tsw_iso_edit){
		    .field = 2, .len = r->token_len, .data = (const uint8_t *)r->token};
	if (tsw_iso_has(m, 14))
		ed[n++] = (struct tsw_iso_edit){
		    .field = 14,
		    .len = r->has_token_expiry ? 4 : 0,
		    .data = r->has_token_expiry ? (const uint8_t *)r->token_expiry : NULL};
	n += answer_drop_edits(m, ed + n);
	ed[n++] = (struct tsw_iso_edit){
	    .field = 11, .len = 6, .data = r->echo.data + r->echo.off[ECHO_IDX_DE11]};
	if (tsw_iso_has(m, 48)) {
		ret = de48_strip_token_tags(tsw_iso_ptr(m, 48), m->f[48].len, de48, sizeof(de48),
					    &de48_len);
		if (ret < 0 || de48_len == 0)
			ed[n++] = (struct tsw_iso_edit){.field = 48, .len = 0, .data = NULL};
		else
			ed[n++] = (struct tsw_iso_edit){
			    .field = 48, .len = (uint16_t)de48_len, .data = de48};
	}
	tail_before = c->out.tail;
	ret = conn_write(e, r->acq_slot, m, ed, n);
	if (ret < 0) {
		if (ret != -TSW_E_NO_SPACE) {
			/* the issuer's answer does not re-encode: 96 instead */
			e->m->issuer_format_errors++;
			decline(e, r->acq_slot, &r->echo, TSW_AUTHZ_SYSTEM);
			return 0;
		}
		return -1;
	}
	/* the acquirer side never gets a PAN: neither the request's PAN
	 * (whether or not the issuer sent DE2) nor the issuer's DE2 may
	 * appear anywhere in what was written */
	if (pan_fp_scan(e->pan_fp_seed, r->pan_fp, r->pan_len, r->pan_last4, c->out.data + tail_before,
			c->out.tail - tail_before) ||
	    (tsw_iso_has(m, 2) && !is_request_pan(e, r, m) &&
	     contains(c->out.data + tail_before, c->out.tail - tail_before, tsw_iso_ptr(m, 2),
		      m->f[2].len))) {
		explicit_bzero(c->out.data + tail_before, c->out.tail - tail_before);
		c->out.tail = tail_before;
		e->m->pan_leaks_blocked++;
		decline(e, r->acq_slot, &r->echo, TSW_AUTHZ_SYSTEM);
		return 0;
	}
	count_answer(e, r->mti_class, rc);
	return 1;
}

void engine_issuer_answer(struct tsw_engine *e, uint32_t link, const struct tsw_iso_msg *m)
{
	struct issuer_link *l = &e->links[link];
	const char *rc = "96";
	char rcbuf[3];
	struct req *r;
	uint64_t saf_id = 0;
	uint32_t stan = 0;
	unsigned i;
	bool approved;

	if (tsw_iso_has(m, 39) && m->f[39].len == 2) {
		memcpy(rcbuf, tsw_iso_ptr(m, 39), 2);
		rcbuf[2] = 0;
		rc = rcbuf;
	}
	if (!tsw_iso_has(m, 11) || m->f[11].len != 6 || !is_digits(tsw_iso_ptr(m, 11), 6)) {
		e->m->unmatched_answers++;
		return;
	}
	for (i = 0; i < 6; i++)
		stan = stan * 10 + (uint32_t)(tsw_iso_ptr(m, 11)[i] - '0');
	r = pending_find(e, (uint64_t)link << 32 | stan);
	if (!r) {
		if (expired_take(e, (uint64_t)link << 32 | stan, &saf_id)) {
			e->m->late_answers++;
			if (saf_id)
				saf_late_answer(e, saf_id, rc);
		} else {
			e->m->unmatched_answers++;
		}
		return;
	}
	if (r->kind == REQ_ACQ && !answer_matches(r, m, rc)) {
		/* the STAN matches but the echoed fields do not: an answer to
		 * another request; r waits for its own answer or its timeout */
		e->m->unmatched_answers++;
		return;
	}
	pending_remove(e, r);
	heap_remove(e, r);
	if (l->pending)
		l->pending--;
	if (r->kind == REQ_SAF) {
		saf_answered(e, r, rc);
		req_free(e, r);
		return;
	}
	hist_us(&e->m->issuer_rtt, r->fwd_ns, e->now_ns);
	hist_us(&e->m->internal, r->start_ns, r->fwd_ns);
	approved = rc_approved(rc);
	e->m->inflight--;
	if (e->conns[r->acq_slot].state == ACQ_OPEN && e->conns[r->acq_slot].gen == r->acq_gen) {
		/* approved at the issuer but answered 96: the use is given
		 * back and the approval reversed */
		if (deliver_answer(e, r, m, rc) == 0 && approved) {
			approved = false;
			if (r->mti_class == TSW_MTI_0100 || r->mti_class == TSW_MTI_0200)
				saf_put(e, r);
		}
		conn_request_done(e, r->acq_slot, r->acq_gen);
	} else {
		e->m->answers_conn_gone++;
	}
	if (r->has_ticket) {
		if (approved) {
			use_commit(e, r->ticket);
			acq_rev_use_consumed(e, r);
		} else {
			use_release(e, r->ticket);
		}
	}
	/* the issuer reversed an approval that consumed a limited use: given
	 * back once, whether or not the acquirer still hears the answer (a
	 * full queue keeps the use spent: never a double spend) */
	if ((r->mti_class == TSW_MTI_0400 || r->mti_class == TSW_MTI_0420) && rc[0] == '0' &&
	    rc[1] == '0' && rc[2] == 0 && e->state && acq_rev_take_use(e, r))
		tsw_state_return_use(e->state, r->token, r->token_len);
	req_free(e, r);
}

/* ---- lifecycle, loop, timers ---- */

static uint32_t or_default(uint32_t v, uint32_t def)
{
	return v ? v : def;
}

static int check_config(const struct tsw_engine_config *cfg)
{
	uint32_t i;

	if (!cfg->acq_profile || !cfg->iss_profile || cfg->max_conns == 0 ||
	    cfg->max_pending == 0 || cfg->n_issuers > TSW_ISSUERS_MAX ||
	    cfg->n_routes > TSW_ROUTES_MAX)
		return -TSW_E_CONFIG;
	if (cfg->acq_profile->header == TSW_ISO_HDR_NONE ||
	    cfg->iss_profile->header == TSW_ISO_HDR_NONE)
		return -TSW_E_CONFIG;
	for (i = 0; i < cfg->n_routes; i++)
		if (cfg->routes[i].issuer >= cfg->n_issuers)
			return -TSW_E_CONFIG;
	/* each worker stamps its own DE11 span, and the pending table never
	 * holds more requests than that span has STANs (0 is never used) */
	if (cfg->n_workers > TSW_ENGINE_STAN_SPACE / 2 ||
	    cfg->worker_id >= (cfg->n_workers ? cfg->n_workers : TSW_ENGINE_STAN_WORKERS_DEFAULT) ||
	    cfg->max_pending > stan_span(cfg) - 1)
		return -TSW_E_CONFIG;
	if (cfg->reconnect_min_ms && cfg->reconnect_max_ms &&
	    cfg->reconnect_min_ms > cfg->reconnect_max_ms)
		return -TSW_E_CONFIG;
	/* direct-mapped tables: the slot is the hash masked */
	if ((cfg->acq_reversal_memory & (cfg->acq_reversal_memory - 1)) ||
	    cfg->acq_reversal_memory > TSW_ENGINE_TABLE_MEMORY_MAX ||
	    (cfg->expired_stan_memory & (cfg->expired_stan_memory - 1)) ||
	    cfg->expired_stan_memory > TSW_ENGINE_TABLE_MEMORY_MAX)
		return -TSW_E_CONFIG;
	return 0;
}

static void apply_defaults(struct tsw_engine_config *c)
{
	uint32_t frame = c->acq_profile->max_frame + 4;
	uint32_t iframe = c->iss_profile->max_frame + 4;

	c->max_inflight_per_conn = or_default(c->max_inflight_per_conn, 256);
	c->issuer_timeout_ms =
	    or_default(c->issuer_timeout_ms, TSW_ENGINE_ISSUER_TIMEOUT_DEFAULT_MS);
	c->echo_interval_ms = or_default(c->echo_interval_ms, TSW_ENGINE_ECHO_DEFAULT_MS);
	c->reconnect_min_ms = or_default(c->reconnect_min_ms, TSW_ENGINE_RECONNECT_MIN_DEFAULT_MS);
	c->reconnect_max_ms = or_default(c->reconnect_max_ms, TSW_ENGINE_RECONNECT_MAX_DEFAULT_MS);
	if (c->reconnect_max_ms < c->reconnect_min_ms)
		c->reconnect_max_ms = c->reconnect_min_ms;
	c->in_buf_bytes = or_default(c->in_buf_bytes, TSW_ENGINE_IN_BUF_DEFAULT);
	c->max_parked = or_default(c->max_parked, TSW_ENGINE_PARKED_DEFAULT);
	c->saf_inflight_max = or_default(c->saf_inflight_max, TSW_ENGINE_SAF_INFLIGHT_DEFAULT);
	c->saf_poll_ms = or_default(c->saf_poll_ms, TSW_ENGINE_SAF_POLL_DEFAULT_MS);
	c->saf_retry_min_ms = or_default(c->saf_retry_min_ms, TSW_ENGINE_SAF_RETRY_MIN_DEFAULT_MS);
	c->saf_retry_max_ms = or_default(c->saf_retry_max_ms, TSW_ENGINE_SAF_RETRY_MAX_DEFAULT_MS);
	c->acq_reversal_memory =
	    or_default(c->acq_reversal_memory, TSW_ENGINE_ACQ_REV_MEMORY_DEFAULT);
	c->expired_stan_memory =
	    or_default(c->expired_stan_memory, TSW_ENGINE_EXPIRED_MEMORY_DEFAULT);
	if (c->saf_retry_max_ms < c->saf_retry_min_ms)
		c->saf_retry_max_ms = c->saf_retry_min_ms;
	/* an answer must always fit: two frames at least */
	if (c->out_buf_bytes < 2 * frame)
		c->out_buf_bytes = 2 * frame;
	if (c->link_buf_bytes < 2 * iframe)
		c->link_buf_bytes = c->out_buf_bytes * 4 > TSW_ENGINE_LINK_BUF_MIN
					? c->out_buf_bytes * 4
					: TSW_ENGINE_LINK_BUF_MIN;
	if (c->in_buf_bytes < frame)
		c->in_buf_bytes = frame;
}

int tsw_engine_new(const struct tsw_engine_config *cfg, struct tsw_vault *vault,
		   struct tsw_state *state, struct tsw_metrics_shard *metrics,
		   struct tsw_engine **ret_engine)
{
	struct tsw_engine *e;
	uint32_t i;
	int r;

	if (!vault || !metrics)
		return -EINVAL;
	r = check_config(cfg);
	if (r < 0)
		return r;
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->cfg = *cfg;
	apply_defaults(&e->cfg);
	e->vault = vault;
	e->state = state;
	e->m = metrics;
	e->n_links = cfg->n_issuers;
	e->rng = 0x9e3779b97f4a7c15ull ^ ((uint64_t)cfg->worker_id << 32) ^ (uint64_t)wall_now();
	e->wall_s = wall_now();
	e->pan_fp_seed = pan_fp_seed_new();

	r = tsw_vault_reader_open(vault, &e->reader);
	if (r < 0)
		goto err_free;
	r = -ENOMEM;
	e->conns = calloc(e->cfg.max_conns, sizeof(*e->conns));
	e->free_conns = malloc(sizeof(*e->free_conns) * e->cfg.max_conns);
	e->close_q = malloc(sizeof(*e->close_q) * e->cfg.max_conns);
	e->dirty_cap = e->cfg.max_conns + TSW_ISSUERS_MAX;
	e->dirty = malloc(sizeof(*e->dirty) * e->dirty_cap);
	if (!e->conns || !e->free_conns || !e->close_q || !e->dirty)
		goto err_free;
	for (i = 0; i < e->cfg.max_conns; i++) {
		struct acq_conn *c = &e->conns[i];

		if (tsw_iso_framer_init(&c->fr, e->cfg.acq_profile) < 0 ||
		    outbuf_init(&c->out, e->cfg.out_buf_bytes) < 0)
			goto err_free;
		c->stash = malloc(e->cfg.in_buf_bytes);
		if (!c->stash)
			goto err_free;
		e->free_conns[e->cfg.max_conns - 1 - i] = i;
	}
	e->n_free_conns = e->cfg.max_conns;
	for (i = 0; i < e->n_links; i++) {
		struct issuer_link *l = &e->links[i];

		if (tsw_iso_framer_init(&l->fr, e->cfg.iss_profile) < 0 ||
		    outbuf_init(&l->out, e->cfg.link_buf_bytes) < 0)
			goto err_free;
		l->state = LINK_DOWN;
		l->backoff_ms = e->cfg.reconnect_min_ms;
		e->m->link_up[i] = 0;
	}
	r = pending_init(e);
	if (r < 0)
		goto err_free;
	r = dup_init(e);
	if (r < 0)
		goto err_free;
	r = acq_rev_init(e);
	if (r < 0)
		goto err_free;
	r = saf_buffers_alloc(e);
	if (r < 0)
		goto err_free;
	r = park_init(e);
	if (r < 0)
		goto err_free;
	*ret_engine = e;
	return 0;

err_free:
	tsw_engine_free(e);
	return r;
}

void tsw_engine_free(struct tsw_engine *e)
{
	uint32_t i;

	if (!e)
		return;
	if (e->conns)
		for (i = 0; i < e->cfg.max_conns; i++) {
			if (e->conns[i].fr.acc)
				tsw_iso_framer_free(&e->conns[i].fr);
			outbuf_free(&e->conns[i].out);
			free(e->conns[i].stash);
		}
	for (i = 0; i < e->n_links; i++) {
		if (e->links[i].fr.acc)
			tsw_iso_framer_free(&e->links[i].fr);
		if (e->links[i].out.data)
			explicit_bzero(e->links[i].out.data, e->links[i].out.cap);
		outbuf_free(&e->links[i].out);
	}
	park_free(e);
	pending_free(e);
	dup_free(e);
	acq_rev_free(e);
	saf_buffers_free(e);
	free(e->conns);
	free(e->free_conns);
	free(e->close_q);
	free(e->dirty);
	if (e->reader) {
		if (e->reader_live)
			tsw_vault_reader_reset(e->reader);
		tsw_vault_reader_close(e->reader);
	}
	free(e);
}

void tsw_engine_loop_begin(struct tsw_engine *e, uint64_t now_ns)
{
	e->now_ns = now_ns;
	e->wall_s = wall_now();
	if (e->reader_live)
		tsw_vault_reader_reset(e->reader);
	e->reader_live = false;
	if (reader_ensure(e) < 0)
		e->m->vault_errors++;
	park_poll(e);
}

void tsw_engine_loop_end(struct tsw_engine *e)
{
	if (e->reader_live)
		tsw_vault_reader_reset(e->reader);
	e->reader_live = false;
}

uint64_t tsw_engine_next_deadline(const struct tsw_engine *e)
{
	uint64_t d = UINT64_MAX, sd;
	const struct req *top = heap_top(e);
	uint32_t i;

	if (top)
		d = top->deadline_ns;
	for (i = 0; i < e->n_links; i++) {
		uint64_t ld = link_next_deadline(e, i);

		if (ld < d)
			d = ld;
	}
	if (e->cfg.idle_timeout_ms && e->next_idle_scan_ns < d && e->m->conns_open)
		d = e->next_idle_scan_ns;
	sd = saf_next_deadline(e);
	if (sd < d)
		d = sd;
	if (park_pending(e)) {
		uint64_t pd = e->now_ns + TSW_ENGINE_PARK_POLL_NS;

		if (pd < d)
			d = pd;
	}
	return d;
}

static void idle_scan(struct tsw_engine *e, uint64_t now_ns)
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
			e->m->conns_idle_closed++;
			conn_queue_close(e, i);
		}
	}
}

void tsw_engine_tick(struct tsw_engine *e, uint64_t now_ns)
{
	struct req *r;
	uint32_t i;

	e->now_ns = now_ns;
	e->wall_s = wall_now();
	while ((r = heap_top(e)) && r->deadline_ns <= now_ns)
		req_fail(e, r, 1);
	for (i = 0; i < e->n_links; i++)
		link_tick(e, i);
	if (now_ns >= e->saf_next_poll_ns)
		saf_poll(e);
	idle_scan(e, now_ns);
	park_poll(e);
}

uint32_t tsw_engine_inflight(const struct tsw_engine *e)
{
	/* reversals in flight are in the state's queue: not waited for */
	return e->reqs_used - e->saf_inflight + park_pending(e);
}

int tsw_engine_reconfigure(struct tsw_engine *e, const struct tsw_engine_config *cfg)
{
	struct tsw_engine_config c = e->cfg;
	uint32_t i;
	int r;

	r = check_config(cfg);
	if (r < 0)
		return r;
	if (cfg->n_issuers != e->cfg.n_issuers)
		return -TSW_E_CONFIG;
	for (i = 0; i < cfg->n_issuers; i++)
		if (strcmp(cfg->issuers[i].host, e->cfg.issuers[i].host) != 0 ||
		    cfg->issuers[i].port != e->cfg.issuers[i].port)
			return -TSW_E_CONFIG;
	c.n_routes = cfg->n_routes;
	memcpy(c.routes, cfg->routes, sizeof(c.routes));
	c.max_inflight_per_conn = cfg->max_inflight_per_conn;
	c.issuer_timeout_ms = cfg->issuer_timeout_ms;
	c.idle_timeout_ms = cfg->idle_timeout_ms;
	c.echo_interval_ms = cfg->echo_interval_ms;
	c.reconnect_min_ms = cfg->reconnect_min_ms;
	c.reconnect_max_ms = cfg->reconnect_max_ms;
	c.saf_inflight_max = cfg->saf_inflight_max;
	c.saf_poll_ms = cfg->saf_poll_ms;
	c.saf_retry_min_ms = cfg->saf_retry_min_ms;
	c.saf_retry_max_ms = cfg->saf_retry_max_ms;
	apply_defaults(&c);
	/* buffer sizes and table capacities stay as allocated */
	c.out_buf_bytes = e->cfg.out_buf_bytes;
	c.link_buf_bytes = e->cfg.link_buf_bytes;
	c.in_buf_bytes = e->cfg.in_buf_bytes;
	c.max_parked = e->cfg.max_parked;
	c.acq_reversal_memory = e->cfg.acq_reversal_memory;
	c.expired_stan_memory = e->cfg.expired_stan_memory;
	e->cfg = c;
	return 0;
}
