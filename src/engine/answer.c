/* Answers from issuers: matched to their pending request, rewritten
 * for the acquirer (token back, PAN-leak guard) and delivered; requests
 * that got no answer (timeout, link down) failed. */
#include <string.h>

#include "acq_reversal.h"
#include "answer_guard.h"
#include "delivery.h"
#include "card_crypto.h"
#include "engine_int.h"
#include "held_approval.h"
#include "rewrite.h"
#include "standin.h"
#include "use.h"
#include "tsw/authz.h"
#include "tsw/error.h"
#include "tsw/token.h"

/* The shortest card number (the vault holds 12-19 digits). */
#define PAN_MIN_DIGITS 12

static bool moves_money(const struct req *r)
{
	return r->mti_class == TSW_MTI_0100 || r->mti_class == TSW_MTI_0200;
}

/* Answers r locally with reason; when a reversal was just queued for it
 * (id), only once that reversal is durable (delivery.c). */
static void answer_after(struct tsw_engine *e, struct req *r, enum tsw_authz_reason reason,
			 int put, uint64_t id)
{
	if (put == 0 && !tsw_state_saf_durable(e->state, id)) {
		engine__held_answer(e, r, reason, id);
		return;
	}
	engine__decline(e, r->acq_slot, &r->echo, reason);
	engine__conn_request_done(e, r->acq_slot, r->acq_gen);
	engine__req_free(e, r);
}

/* Finishes a forwarded request that got no answer (timeout, link down):
 * a reversal queued for an authorization whose outcome at the issuer is
 * unknown, then 91 to the acquirer once that reversal is durable. The
 * issuer may have approved it: a limited use stays spent, and the
 * reversal's acceptance gives it back (a request that never reached the
 * issuer gives it back now). A reversal the queue refuses (full, no
 * state) does not hold the 91 back: saf_dropped counts it, and the use
 * stays spent. */
void engine__req_fail(struct tsw_engine *e, struct req *r, int timed_out)
{
	struct issuer_link *l = &e->links[r->link];
	uint64_t id = 0;
	int put = -1;

	engine__pending_remove(e, r);
	engine__heap_remove(e, r);
	if (l->pending)
		l->pending--;
	if (timed_out)
		engine__expired_remember(e, r->key, r->kind == REQ_SAF ? r->saf_id : 0);
	if (r->kind == REQ_SAF) {
		engine__saf_failed(e, r);
		engine__req_free(e, r);
		return;
	}
	if (timed_out)
		TSW_COUNT(e->m->timeouts);
	TSW_GAUGE_DEC(e->m->inflight);
	/* stand-in at the timeout: an advice instead of the reversal, and
	 * the approval once that advice is durable */
	if (timed_out && engine__standin_wanted(e, r->mti_class, true) && req_conn_alive(e, r) &&
	    engine__standin_try(e, r))
		return;
	if (moves_money(r) && r->sent_to_issuer) {
		if (r->has_ticket)
			engine__use_commit(e, r->ticket);
		put = engine__saf_put(e, r, r->has_ticket, &id);
	} else if (r->has_ticket) {
		engine__use_release(e, r->ticket);
	}
	if (req_conn_alive(e, r)) {
		answer_after(e, r, TSW_AUTHZ_ISSUER_UNAVAILABLE, put, id);
		return;
	}
	TSW_COUNT(e->m->answers_conn_gone);
	TSW_COUNT(e->m->declines[TSW_AUTHZ_ISSUER_UNAVAILABLE]);
	engine__req_free(e, r);
}

static bool contains(const uint8_t *hay, size_t n, const uint8_t *needle, size_t k)
{
	return k > 0 && memmem(hay, n, needle, k) != NULL;
}

/* The PAN of fingerprint fp (len digits, last4) in p[0, n): as ASCII
 * digits or as packed BCD (either alignment, any padding, track 2). */
static bool pan_in(const struct tsw_engine *e, uint64_t fp, size_t len, const char last4[4],
		   const uint8_t *p, size_t n)
{
	return engine__pan_fp_scan(e->pan_fp_seed, fp, len, last4, p, n) ||
	       engine__pan_fp_scan_bcd(e->pan_fp_seed, fp, len, last4, p, n);
}

/* The issuer's DE2 is the request's PAN (as it nearly always is): the
 * fingerprint scan already looks for it, no second search needed. */
static bool is_request_pan(const struct tsw_engine *e, const struct req *r,
			   const struct tsw_iso_msg *m)
{
	return m->f[2].len == r->pan_len &&
	       engine__pan_fp(e->pan_fp_seed, (const char *)tsw_iso_ptr(m, 2), r->pan_len) ==
		   r->pan_fp;
}

/* The issuer's DE2 when it is another card number (a reissue it knows
 * of): found in ASCII or BCD like the request's PAN. A DE2 that is not
 * a card number (not 12-19 digits) is looked for as it is. */
static bool other_pan_in(const struct tsw_engine *e, const struct tsw_iso_msg *m, const uint8_t *p,
			 size_t n)
{
	const uint8_t *d = tsw_iso_ptr(m, 2);
	size_t len = m->f[2].len;

	if (len < PAN_MIN_DIGITS || len > TSW_PAN_MAX_DIGITS || !is_digits(d, len))
		return contains(p, n, d, len);
	return pan_in(e, engine__pan_fp(e->pan_fp_seed, (const char *)d, len), len,
		      (const char *)d + len - 4, p, n);
}

/* The card-data tags, and the issuer's own tag 91 where the switch
 * writes the one its ARPC makes. */
static const uint32_t card_tags_and_91[TSW_ENGINE_DE55_CARD_TAGS + 1] = {0x5a, 0x57, 0x5f24, 0x9f6b,
									 0x91};

/* r's tag 91, answered rc, after buf[0..*len): counted either way. */
static void append_arpc(struct tsw_engine *e, const struct req *r, const char *rc, uint8_t *buf,
			size_t cap, size_t *len)
{
	if (engine__card_arpc_append(e, r->token, r->token_len, &r->arpc, rc, buf, cap, len) < 0)
		TSW_COUNT(e->m->arpc_failures);
	else
		TSW_COUNT(e->m->arpcs);
}

/* DE55 on its way to the acquirer, in the issuer profile's binary form:
 * the EMV tags that carry card data are dropped at any depth (a changed
 * copy in buf, *ret_len bytes; 0: DE55 removed); a DE55 that is not
 * BER-TLV cannot be checked and is removed whole. An answer to a
 * verified ARQC gets the switch's tag 91 (ARPC) in place of any the
 * issuer sent, in a DE55 of its own when the answer had none. Returns
 * true when DE55 changes. */
static bool de55_for_acquirer(struct tsw_engine *e, const struct req *r,
			      const struct tsw_iso_msg *m, const char *rc, uint8_t *buf, size_t cap,
			      size_t *ret_len)
{
	const struct tsw_iso_field_spec *fs = &e->iss_profile->fields[55];
	bool arpc = r->arpc.keys != NULL;
	size_t room;
	unsigned dropped = 0;
	int n;

	if (!arpc && !tsw_iso_has(m, 55))
		return false; /* the common case */
	/* tag 91 only where DE55 can still hold it, on the issuer's side
	 * (read) and the acquirer's (written) */
	room = cap < fs->max_len ? cap : fs->max_len;
	if (room > e->acq_profile->fields[55].max_len)
		room = e->acq_profile->fields[55].max_len;
	if (fs->type != TSW_ISO_B || fs->hex) {
		/* hex or text chip data: the ASCII scan reads its digits */
		if (arpc)
			TSW_COUNT(e->m->arpc_failures);
		return false;
	}
	*ret_len = 0;
	if (!tsw_iso_has(m, 55)) {
		append_arpc(e, r, rc, buf, room, ret_len);
		return *ret_len > 0;
	}
	n = tsw_tlv_copy_except(tsw_iso_ptr(m, 55), m->f[55].len,
				arpc ? card_tags_and_91 : tsw_engine_de55_card_tags,
				TSW_ENGINE_DE55_CARD_TAGS + arpc, buf, cap, &dropped);
	if (n < 0) {
		TSW_COUNT(e->m->de55_dropped);
		n = 0;
	} else if (!dropped && !arpc) {
		return false;
	}
	TSW_COUNT_ADD(e->m->de55_tags_stripped, dropped);
	*ret_len = (size_t)n;
	if (arpc)
		append_arpc(e, r, rc, buf, room, ret_len);
	return true;
}

/* r's answer is in its acquirer's output now: the delivery latency from
 * the answer's input (now_ns), and the whole time inside the switch. */
static void delivered(struct tsw_engine *e, const struct req *r)
{
	uint64_t now = e->clock_ns(e->clock_arg);
	uint64_t fwd = r->fwd_ns > r->start_ns ? r->fwd_ns - r->start_ns : 0;
	uint64_t dlv = now > e->now_ns ? now - e->now_ns : 0;

	tsw_hist_add_ns(&e->m->answer_delivery, dlv);
	tsw_hist_add_ns(&e->m->internal, fwd + dlv);
}

/* The issuer's answer rewritten for the acquirer: DE2 the token again
 * (absent when the issuer left it out), DE14 the token expiry, DE34/35/
 * 36/45/102/103 removed, DE11 the acquirer's, DE48 tags 30-36 removed.
 * Returns 1 when the issuer's answer went out, 0 when it must be
 * replaced by a 96 (it does not re-encode, or the PAN was found in it:
 * nothing of it stays in the buffer; the caller answers), -1 when
 * nothing could be written (the slow consumer is closed). */
static int deliver_answer(struct tsw_engine *e, struct req *r, const struct tsw_iso_msg *m,
			  const char *rc)
{
	struct acq_conn *c = &e->conns[r->acq_slot];
	struct tsw_iso_edit ed[8 + TSW_ENGINE_ANSWER_DROP];
	uint8_t de48[TSW_ENGINE_DE48_MAX];
	uint8_t de55[TSW_ENGINE_DE55_MAX];
	size_t de48_len = 0, de55_len = 0;
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
	n += engine__answer_drop_edits(m, ed + n);
	ed[n++] = (struct tsw_iso_edit){
	    .field = 11, .len = 6, .data = r->echo.data + r->echo.off[ECHO_IDX_DE11]};
	if (tsw_iso_has(m, 48)) {
		ret = engine__de48_strip_token_tags(tsw_iso_ptr(m, 48), m->f[48].len, de48,
						    sizeof(de48), &de48_len);
		if (ret < 0 || de48_len == 0)
			ed[n++] = (struct tsw_iso_edit){.field = 48, .len = 0, .data = NULL};
		else
			ed[n++] = (struct tsw_iso_edit){
			    .field = 48, .len = (uint16_t)de48_len, .data = de48};
	}
	if (de55_for_acquirer(e, r, m, rc, de55, sizeof(de55), &de55_len))
		ed[n++] = (struct tsw_iso_edit){
		    .field = 55, .len = (uint16_t)de55_len, .data = de55_len ? de55 : NULL};
	/* no 2-byte DE39: the acquirer gets the code the switch counted */
	if (!tsw_iso_has(m, 39) || m->f[39].len != 2)
		ed[n++] = (struct tsw_iso_edit){.field = 39, .len = 2, .data = (const uint8_t *)rc};
	tail_before = c->out.tail;
	ret = engine__conn_write(e, r->acq_slot, m, ed, n);
	if (ret < 0) {
		if (ret != -TSW_E_NO_SPACE) {
			/* the issuer's answer does not re-encode: 96 instead */
			TSW_COUNT(e->m->issuer_format_errors);
			return 0;
		}
		return -1;
	}
	/* the acquirer side never gets a PAN: neither the request's PAN
	 * (whether or not the issuer sent DE2) nor the issuer's DE2 may
	 * appear anywhere in what was written, in ASCII or in BCD */
	if (pan_in(e, r->pan_fp, r->pan_len, r->pan_last4, c->out.data + tail_before,
		   c->out.tail - tail_before) ||
	    (tsw_iso_has(m, 2) && !is_request_pan(e, r, m) &&
	     other_pan_in(e, m, c->out.data + tail_before, c->out.tail - tail_before))) {
		explicit_bzero(c->out.data + tail_before, c->out.tail - tail_before);
		c->out.tail = tail_before;
		TSW_COUNT(e->m->pan_leaks_blocked);
		return 0;
	}
	engine__count_answer(e, r->mti_class, rc);
	delivered(e, r);
	return 1;
}

/* An MTI's 4 digits as a number (the decoder checked they are digits). */
static uint64_t mti_number(const char mti[4])
{
	uint64_t v = 0;

	for (unsigned i = 0; i < 4; i++)
		v = v * 10 + (uint64_t)(mti[i] - '0');
	return v;
}

/* The request in flight on link that m answers, or NULL: an answer
 * without a 6-digit DE11, a late answer (its SAF item hears rc), one
 * matching no request, or one whose MTI or echoed fields say it answers
 * another message (that request waits for its own answer or timeout). */
static struct req *answered_request(struct tsw_engine *e, uint32_t link,
				    const struct tsw_iso_msg *m, const char *rc)
{
	uint64_t saf_id = 0;
	uint32_t stan = 0;
	struct req *r;

	if (!tsw_iso_has(m, 11) || m->f[11].len != 6 || !is_digits(tsw_iso_ptr(m, 11), 6)) {
		TSW_COUNT(e->m->unmatched_answers);
		return NULL;
	}
	for (unsigned i = 0; i < 6; i++)
		stan = stan * 10 + (uint32_t)(tsw_iso_ptr(m, 11)[i] - '0');
	r = engine__pending_find(e, (uint64_t)link << 32 | stan);
	if (!r) {
		if (engine__expired_take(e, (uint64_t)link << 32 | stan, &saf_id)) {
			TSW_COUNT(e->m->late_answers);
			if (saf_id)
				engine__saf_late_answer(e, saf_id, rc);
		} else {
			TSW_COUNT(e->m->unmatched_answers);
		}
		return NULL;
	}
	if (!engine__answer_mti_matches(r->echo.mti, m->mti)) {
		/* a 0410 must not settle a 0100: an answer to another
		 * message; r waits for its own answer or its timeout */
		TSW_COUNT(e->m->answer_mti_mismatches);
		engine_event_req(e, TSW_EV_ANSWER_MTI_MISMATCH, r,
				 .n2 = mti_number(r->echo.mti) * 10000 + mti_number(m->mti));
		return NULL;
	}
	if (r->kind == REQ_ACQ && !engine__answer_matches(r, m, rc)) {
		/* the STAN matches but the echoed fields do not: an answer to
		 * another request; r waits for its own answer or its timeout */
		TSW_COUNT(e->m->unmatched_answers);
		return NULL;
	}
	return r;
}

/* What the issuer's answer rc (m) settles of acquirer request r: its
 * limited use, its approval code, a use the issuer's reversal gives
 * back. True when r is an approval the acquirer must get
 * (money moved): reversed if it does not. */
static bool settle_answer(struct tsw_engine *e, struct req *r, const struct tsw_iso_msg *m,
			  const char *rc)
{
	bool approved, owes;

	approved = engine__rc_approved(rc);
	/* an approval the acquirer does not get is reversed: money moved */
	owes = approved && moves_money(r);
	/* the issuer has the money now: the use is spent until a reversal
	 * of the approval is acknowledged */
	if (r->has_ticket) {
		if (approved)
			engine__use_commit(e, r->ticket);
		else
			engine__use_release(e, r->ticket);
	}
	if (owes && tsw_iso_has(m, 38) && m->f[38].len == sizeof(r->approval_code)) {
		memcpy(r->approval_code, tsw_iso_ptr(m, 38), sizeof(r->approval_code));
		r->has_approval_code = true;
	}
	/* the issuer reversed an approval that consumed a limited use: given
	 * back once, whether or not the acquirer still hears the answer (a
	 * full queue keeps the use spent: never a double spend) */
	if ((r->mti_class == TSW_MTI_0400 || r->mti_class == TSW_MTI_0420) && rc[0] == '0' &&
	    rc[1] == '0' && rc[2] == 0 && e->state && !r->partial_reversal &&
	    engine__acq_rev_take_use(e, r))
		tsw_state_return_use(e->state, r->token, r->token_len);
	return owes;
}

/* r's acquirer (its connection is alive) gets reason (96) instead of the
 * issuer's answer; when that answer was an approval (owes) it is
 * reversed, and the 96 waits for that reversal's commit. */
static void answer_instead(struct tsw_engine *e, struct req *r, enum tsw_authz_reason reason,
			   bool owes)
{
	uint64_t id = 0;
	int put = -1;

	if (owes) {
		put = engine__saf_put(e, r, r->has_ticket, &id);
		if (put == 0)
			TSW_COUNT(e->m->answers_undelivered_reversed);
		else
			TSW_COUNT(e->m->answers_undelivered_unqueued);
		engine_event_req(e, TSW_EV_APPROVAL_UNDELIVERED, r,
				 .why = put == 0 ? "reversed" : "unqueued");
	}
	answer_after(e, r, reason, put, id);
}

/* The answer goes to the acquirer of r (its connection is alive); an
 * approval (owes) it does not get is reversed. */
static void answer_acquirer(struct tsw_engine *e, struct req *r, const struct tsw_iso_msg *m,
			    const char *rc, bool owes)
{
	switch (deliver_answer(e, r, m, rc)) {
	case 1:
		if (!owes) {
			engine__conn_request_done(e, r->acq_slot, r->acq_gen);
			engine__req_free(e, r);
			return;
		}
		/* an acquirer reversal of this original gives the use back
		 * (acq_reversal.c), unless the approval never leaves */
		if (r->has_ticket)
			engine__acq_rev_use_consumed(e, r);
		/* where the approval ends in the output, before the
		 * connection goes on with input that waited behind it */
		engine__unsent_track(e, r);
		engine__conn_request_done(e, r->acq_slot, r->acq_gen);
		return;
	case 0:
		answer_instead(e, r, TSW_AUTHZ_SYSTEM, owes);
		return;
	default:
		/* nothing could be written: the slow consumer is closed */
		if (owes)
			engine__reverse_undelivered(e, r, r->has_ticket);
		engine__conn_request_done(e, r->acq_slot, r->acq_gen);
		engine__req_free(e, r);
		return;
	}
}

/* engine__answer_finish, inlined into the common path */
static inline void finish_answer(struct tsw_engine *e, struct req *r, const struct tsw_iso_msg *m,
				 const char *rc)
{
	bool owes = settle_answer(e, r, m, rc);

	if (!req_conn_alive(e, r)) {
		TSW_COUNT(e->m->answers_conn_gone);
		if (owes)
			engine__reverse_undelivered(e, r, r->has_ticket);
		engine__req_free(e, r);
		return;
	}
	answer_acquirer(e, r, m, rc, owes);
}

void engine__issuer_answer(struct tsw_engine *e, uint32_t link, const struct tsw_iso_msg *m)
{
	struct issuer_link *l = &e->links[link];
	const char *rc = "96";
	char rcbuf[3];
	struct req *r;

	if (tsw_iso_has(m, 39) && m->f[39].len == 2) {
		memcpy(rcbuf, tsw_iso_ptr(m, 39), 2);
		rcbuf[2] = 0;
		rc = rcbuf;
	}
	r = answered_request(e, link, m, rc);
	if (!r)
		return;
	engine__pending_remove(e, r);
	engine__heap_remove(e, r);
	if (l->pending)
		l->pending--;
	if (r->kind == REQ_SAF) {
		engine__saf_answered(e, r, rc);
		engine__req_free(e, r);
		return;
	}
	/* the issuer's round trip ends here, before any wait for a record */
	hist_between(&e->m->issuer_rtt, r->fwd_ns, e->now_ns);
	TSW_GAUGE_DEC(e->m->inflight);
	/* an approval waits for the use or ATC it spent to be on disk */
	if (engine__approval_must_wait(e, r, rc) && req_conn_alive(e, r)) {
		engine__approval_hold(e, r, m, rc);
		return;
	}
	finish_answer(e, r, m, rc);
}

void engine__answer_finish(struct tsw_engine *e, struct req *r, const struct tsw_iso_msg *m,
			   const char *rc)
{
	finish_answer(e, r, m, rc);
}

void engine__approval_poll(struct tsw_engine *e)
{
	struct held_answer h;
	uint32_t cursor = 0;
	struct req *r;

	while ((r = engine__approval_next(e, &cursor, &h))) {
		if (h.deliver)
			engine__answer_finish(e, r, h.m, h.rc);
		else
			engine__answer_refused(e, r, h.m, h.rc, TSW_AUTHZ_STATE_UNAVAILABLE);
	}
}

void engine__answer_refused(struct tsw_engine *e, struct req *r, const struct tsw_iso_msg *m,
			    const char *rc, enum tsw_authz_reason reason)
{
	bool owes = settle_answer(e, r, m, rc);

	if (!req_conn_alive(e, r)) {
		TSW_COUNT(e->m->answers_conn_gone);
		TSW_COUNT(e->m->declines[reason]);
		if (owes)
			engine__reverse_undelivered(e, r, r->has_ticket);
		engine__req_free(e, r);
		return;
	}
	answer_instead(e, r, reason, owes);
}
