/* Store-and-forward reversals and advices. An authorization whose
 * outcome at the issuer is unknown (it timed out, or its link went down)
 * is owed a reversal 0400; one the switch approved by stand-in is owed an
 * advice 0120/0220 (standin.c). The engine puts either in TOKEN form into
 * the state's durable SAF queue (tsw/state.h: no PAN is ever stored),
 * under the issuer's index, claims due items of an issuer through any of
 * its links that is signed on, rewrites each to the
 * PAN as it sends it (vault lookup and decrypt, as the forward path
 * does), and acks it at the issuer's answer (0410, 0130/0230) or gives it
 * back with a backoff. docs/engine.md, "Timeouts and reversals" and
 * "Stand-in", has the rules.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine_int.h"
#include "rewrite.h"
#include "tsw/error.h"
#include "tsw/state.h"
#include "tsw/vault.h"

/* DE90 original data elements: MTI 4, STAN 6, DE7 10, acquiring
 * institution 11, forwarding institution 11 (zeros: not kept). */
#define DE90_LEN 42
#define DE90_OFF_STAN 4
#define DE90_OFF_DE7 10
/* The doubling of the retry backoff stops here (the max caps it anyway). */
#define SAF_BACKOFF_SHIFT_MAX 20u

enum saf_outcome {
	SAF_SENT,
	SAF_DROP,      /* can never be sent: token gone, stored form unreadable */
	SAF_RETRY,     /* this one failed: due again after its backoff */
	SAF_LINK_FULL, /* the link or the pending table has no room: stop for now */
	SAF_OUTCOME_MAX
};

int engine__saf_buffers_alloc(struct tsw_engine *e)
{
	e->saf_items = calloc(TSW_ENGINE_SAF_CLAIM_BATCH, sizeof(*e->saf_items));
	e->saf_buf = malloc(TSW_STATE_SAF_MSG_MAX);
	if (!e->saf_items || !e->saf_buf)
		return -ENOMEM;
	return 0;
}

void engine__saf_buffers_free(struct tsw_engine *e)
{
	free(e->saf_items);
	free(e->saf_buf);
}

/* The queue is shared by every worker: only worker 0 reports its depth,
 * so the control plane's sum over shards is right. */
static void saf_gauge(struct tsw_engine *e)
{
	struct tsw_state_stats ss;

	if (!e->state || e->worker_id != 0)
		return;
	tsw_state_stats(e->state, &ss);
	TSW_GAUGE_SET(e->m->saf_depth, ss.saf_depth);
}

static uint64_t backoff_ms(const struct tsw_engine *e, uint32_t attempts)
{
	uint32_t shift = attempts < SAF_BACKOFF_SHIFT_MAX ? attempts : SAF_BACKOFF_SHIFT_MAX;
	uint64_t d = (uint64_t)e->cfg.saf_retry_min_ms << shift;

	return d < e->cfg.saf_retry_max_ms ? d : e->cfg.saf_retry_max_ms;
}

static void give_back(struct tsw_engine *e, uint64_t id, uint64_t delay_ms)
{
	engine_event(e, TSW_EV_SAF_RETRIED, .id = id, .n1 = delay_ms);
	if (tsw_state_saf_retry(e->state, id, tsw_state_now_ms(e->state) + delay_ms) == 0)
		TSW_COUNT(e->m->saf_retried);
}

static void drop(struct tsw_engine *e, uint64_t id)
{
	engine_event(e, TSW_EV_SAF_DROPPED, .id = id, .why = "token_gone_or_unreadable");
	if (tsw_state_saf_settle(e->state, id) == 0)
		TSW_COUNT(e->m->saf_dropped);
}

/* Puts r's token form: mti, the echo fields but DE2, DE2 the token,
 * DE14 its expiry, DE38 r's approval code when it has one, DE39 rc when
 * not NULL, DE90 naming the original. Not counted: the callers count. */
static int put_token_form(struct tsw_engine *e, const struct req *r, const char *mti,
			  const char *rc, bool return_use, uint64_t *ret_id)
{
	const struct echo *ec = &r->echo;
	struct tsw_iso_edit ed[TSW_ENGINE_ECHO_FIELDS + 6];
	char de90[DE90_LEN];
	unsigned i, n = 0;
	uint32_t flags;
	uint64_t id;
	int len, ret;

	if (!e->state)
		return -ENOTSUP;
	/* DE90 names the original as the issuer saw it: the switch's STAN
	 * and the DE7 that went out with it (forwarded unchanged); one the
	 * issuer never saw (a stand-in for a link that was down) by the
	 * acquirer's DE11 */
	memset(de90, '0', sizeof(de90));
	memcpy(de90, ec->mti, 4);
	if (r->kind == REQ_ACQ && !r->sent_to_issuer) {
		if (ec->len[ECHO_IDX_DE11] == 6)
			memcpy(de90 + DE90_OFF_STAN, ec->data + ec->off[ECHO_IDX_DE11], 6);
	} else {
		engine__fmt6((uint32_t)r->key, de90 + DE90_OFF_STAN);
	}
	for (i = 0; i < TSW_ENGINE_ECHO_FIELDS; i++) {
		unsigned f = tsw_engine_echo_fields[i];

		if (!ec->len[i] || f == 2)
			continue;
		if (f == 7 && ec->len[i] == 10)
			memcpy(de90 + DE90_OFF_DE7, ec->data + ec->off[i], 10);
		ed[n++] = (struct tsw_iso_edit){
		    .field = (uint16_t)f, .len = ec->len[i], .data = ec->data + ec->off[i]};
	}
	ed[n++] = (struct tsw_iso_edit){.field = 0, .len = 4, .data = (const uint8_t *)mti};
	ed[n++] = (struct tsw_iso_edit){
	    .field = 2, .len = r->token_len, .data = (const uint8_t *)r->token};
	if (r->has_token_expiry)
		ed[n++] = (struct tsw_iso_edit){
		    .field = 14, .len = 4, .data = (const uint8_t *)r->token_expiry};
	/* the reversal of an approval names its approval code */
	if (r->has_approval_code)
		ed[n++] = (struct tsw_iso_edit){
		    .field = 38, .len = 6, .data = (const uint8_t *)r->approval_code};
	if (rc)
		ed[n++] = (struct tsw_iso_edit){.field = 39, .len = 2, .data = (const uint8_t *)rc};
	ed[n++] =
	    (struct tsw_iso_edit){.field = 90, .len = DE90_LEN, .data = (const uint8_t *)de90};
	/* the token form is the acquirer-side message, in the acquirer's profile */
	len = tsw_iso_encode(e->acq_profile, NULL, ed, n, e->saf_buf, TSW_STATE_SAF_MSG_MAX);
	if (len <= 0)
		return len < 0 ? len : -TSW_E_BAD_INPUT;
	/* -EAGAIN: the queue is full (the state counts saf_full); -ENOSPC:
	 * its writer is degraded */
	/* an advice; a reversal of an advised stand-in approval goes only
	 * after its advice (the issuer books the approval first) */
	flags = mti[2] == '2' ? TSW_STATE_SAF_ADVICE
		: r->advised  ? TSW_STATE_SAF_AFTER_ADVICE
			      : 0;
	ret = tsw_state_saf_put_use(e->state, link_issuer(e, r->link), flags, e->saf_buf, (size_t)len,
				    return_use ? r->token : NULL, return_use ? r->token_len : 0, &id);
	if (ret < 0)
		return ret;
	e->saf_last_id = id;
	e->saf_next_poll_ns = 0; /* the next tick sends it when its link is up */
	saf_gauge(e);
	*ret_id = id;
	return 0;
}

int engine__saf_put(struct tsw_engine *e, const struct req *r, bool return_use, uint64_t *ret_id)
{
	int ret = put_token_form(e, r, "0400", NULL, return_use, ret_id);

	if (ret < 0) {
		TSW_COUNT(e->m->saf_dropped);
		engine_event_req(e, TSW_EV_SAF_PUT_REFUSED, r, .err = ret);
	}
	return ret;
}

int engine__saf_put_advice(struct tsw_engine *e, const struct req *r, uint64_t *ret_id)
{
	/* an authorization is advised 0120, a financial request 0220 */
	const char *mti = r->mti_class == TSW_MTI_0200 ? "0220" : "0120";

	int ret = put_token_form(e, r, mti, "00", false, ret_id);

	if (ret < 0)
		engine_event_req(e, TSW_EV_SAF_PUT_REFUSED, r, .err = ret, .why = "advice");
	return ret;
}

/* The issuer's copy of a reversal or advice: the edits engine__link_write
 * builds it from and the buffers they point into. */
struct saf_copy {
	struct tsw_iso_edit ed[TSW_ISO_FIELDS + 1];
	uint8_t de48[TSW_ENGINE_DE48_MAX];
	char de7[10], stan[6];
	unsigned n;
};

/* Fills sc from the stored token form m: every stored field as it is
 * (the issuer leg is built from edits alone: the two profiles may differ
 * in framing and bitmap), then the issuer-side values: DE2 the PAN, DE7
 * now, DE11 the switch STAN (key), DE14 the PAN expiry, DE48 the token
 * data. 0 or a negative errno. */
static int saf_issuer_copy(const struct tsw_engine *e, const struct tsw_iso_msg *m,
			   const struct tsw_token *t, const char *pan, int pan_len, uint64_t key,
			   struct saf_copy *sc)
{
	size_t de48_len = 0;
	unsigned f, n = 0;
	int ret;

	if (tsw_iso_has(m, 48))
		ret = engine__de48_for_issuer(tsw_iso_ptr(m, 48), m->f[48].len, t, sc->de48,
					      sizeof(sc->de48), &de48_len);
	else
		ret = engine__de48_for_issuer(NULL, 0, t, sc->de48, sizeof(sc->de48), &de48_len);
	if (ret < 0)
		return ret;
	sc->ed[n++] = (struct tsw_iso_edit){.field = 0, .len = 4, .data = (const uint8_t *)m->mti};
	for (f = 2; f < TSW_ISO_FIELDS; f++) {
		if (!tsw_iso_has(m, f) || f == 2 || f == 7 || f == 11 || f == 14 || f == 35 ||
		    f == 48)
			continue;
		sc->ed[n++] = (struct tsw_iso_edit){
		    .field = (uint16_t)f, .len = m->f[f].len, .data = tsw_iso_ptr(m, f)};
	}
	engine__fmt6((uint32_t)key, sc->stan);
	engine__fmt_de7(e->wall_s, sc->de7);
	sc->ed[n++] = (struct tsw_iso_edit){
	    .field = 2, .len = (uint16_t)pan_len, .data = (const uint8_t *)pan};
	sc->ed[n++] =
	    (struct tsw_iso_edit){.field = 7, .len = 10, .data = (const uint8_t *)sc->de7};
	sc->ed[n++] =
	    (struct tsw_iso_edit){.field = 11, .len = 6, .data = (const uint8_t *)sc->stan};
	if (strlen(t->pan_expiry) == 4)
		sc->ed[n++] = (struct tsw_iso_edit){
		    .field = 14, .len = 4, .data = (const uint8_t *)t->pan_expiry};
	if (de48_len)
		sc->ed[n++] =
		    (struct tsw_iso_edit){.field = 48, .len = (uint16_t)de48_len, .data = sc->de48};
	sc->n = n;
	return 0;
}

/* r (item it, stored form m) went to the issuer on link: it waits for
 * the answer or its timeout. */
static void saf_track_sent(struct tsw_engine *e, uint32_t link, struct req *r,
			   const struct tsw_iso_msg *m, const struct tsw_saf_item *it)
{
	r->kind = REQ_SAF;
	r->saf_id = it->id;
	r->saf_attempts = it->attempts;
	/* a reversal of an approval names its code; one of an unknown
	 * outcome (a timeout) does not */
	r->has_approval_code = tsw_iso_has(m, 38);
	r->mti_class = (uint8_t)engine__mti_class(m->mti); /* 0400, or a stand-in's 0120/0220 */
	memcpy(r->echo.mti, m->mti, 4);		   /* its answer must be the response to it */
	r->fwd_ns = r->start_ns = e->now_ns;
	r->deadline_ns = e->now_ns + (uint64_t)e->cfg.issuer_timeout_ms * NS_PER_MS;
	engine__heap_push(e, r);
	e->links[link].pending++;
	e->links[link].saf_inflight++;
	e->saf_inflight++;
	TSW_GAUGE_INC(e->m->saf_inflight);
	TSW_COUNT(e->m->saf_sent);
	engine_event(e, TSW_EV_SAF_SENT, .link = link, .id = it->id, .n1 = it->attempts + 1);
}

/* Rewrites one claimed reversal to the PAN and sends it on link. */
static enum saf_outcome saf_send(struct tsw_engine *e, uint32_t link, const struct tsw_saf_item *it)
{
	struct saf_copy sc;
	struct tsw_iso_msg m;
	struct tsw_token t;
	char pan[TSW_PAN_MAX_DIGITS];
	enum saf_outcome out;
	struct req *r;
	int pan_len, ret;

	if (tsw_iso_decode(e->acq_profile, it->msg, it->len, &m) < 0 || !tsw_iso_has(&m, 2) ||
	    m.f[2].len == 0 || m.f[2].len > TSW_TOKEN_MAX_DIGITS)
		return SAF_DROP;
	TSW_COUNT(e->m->vault_lookups);
	/* authenticated by the decrypt below */
	ret = tsw_vault_peek(e->reader, (const char *)tsw_iso_ptr(&m, 2), m.f[2].len, &t);
	if (ret == -TSW_E_NOT_FOUND)
		return SAF_DROP;
	if (ret < 0) {
		TSW_COUNT(e->m->vault_errors);
		return SAF_RETRY;
	}
	pan_len = tsw_vault_decrypt_pan(e->reader, &t, pan, sizeof(pan));
	if (pan_len < 0) {
		TSW_COUNT(e->m->vault_errors);
		out = SAF_RETRY;
		goto out_wipe;
	}
	r = engine__req_alloc(e);
	if (!r) {
		out = SAF_LINK_FULL;
		goto out_wipe;
	}
	if (engine__pending_insert(e, r, (uint16_t)link) < 0) {
		engine__req_free(e, r);
		out = SAF_LINK_FULL;
		goto out_wipe;
	}
	out = SAF_RETRY;
	if (saf_issuer_copy(e, &m, &t, pan, pan_len, r->key, &sc) < 0)
		goto out_remove;
	ret = engine__link_write(e, link, NULL, sc.ed, sc.n);
	if (ret == -TSW_E_NO_SPACE) {
		out = SAF_LINK_FULL;
		goto out_remove;
	}
	if (ret < 0) {
		TSW_COUNT(e->m->issuer_format_errors);
		goto out_remove;
	}
	saf_track_sent(e, link, r, &m, it);
	out = SAF_SENT;
	goto out_wipe;

out_remove:
	engine__pending_remove(e, r);
	engine__req_free(e, r);
out_wipe:
	explicit_bzero(pan, sizeof(pan));
	explicit_bzero(&t, sizeof(t));
	return out;
}

/* Reversals this worker may still send on link now. */
static uint32_t room(const struct tsw_engine *e, const struct issuer_link *l)
{
	uint32_t share = e->n_reqs / TSW_ENGINE_SAF_PENDING_SHARE;
	uint32_t free_reqs = e->n_reqs - e->reqs_used;
	uint32_t n;

	if (l->saf_inflight >= e->cfg.saf_inflight_max || e->saf_inflight >= share)
		return 0;
	n = e->cfg.saf_inflight_max - l->saf_inflight;
	if (n > share - e->saf_inflight)
		n = share - e->saf_inflight;
	if (n > free_reqs)
		n = free_reqs;
	return n < TSW_ENGINE_SAF_CLAIM_BATCH ? n : TSW_ENGINE_SAF_CLAIM_BATCH;
}

/* Claims the due reversals of the link's issuer and sends them on the
 * link (signed on): another host of the same issuer serves as well as the
 * one that carried the original. */
static void poll_link(struct tsw_engine *e, uint32_t link)
{
	struct issuer_link *l = &e->links[link];
	bool full = false;

	while (!full && l->state == LINK_SIGNED_ON) {
		uint32_t want = room(e, l);
		size_t k, n = 0;

		if (!want ||
		    tsw_state_saf_claim_route(e->state, e->worker_id, link_issuer(e, link),
					      want, e->saf_items, &n) < 0)
			return;
		for (k = 0; k < n; k++) {
			const struct tsw_saf_item *it = &e->saf_items[k];

			switch (full ? SAF_LINK_FULL : saf_send(e, link, it)) {
			case SAF_SENT:
				break;
			case SAF_DROP:
				drop(e, it->id);
				break;
			case SAF_RETRY:
				give_back(e, it->id, backoff_ms(e, it->attempts));
				break;
			case SAF_LINK_FULL:
			case SAF_OUTCOME_MAX:
				/* local congestion, not the reversal's fault */
				full = true;
				give_back(e, it->id, e->cfg.saf_retry_min_ms);
				break;
			}
		}
		if (n < want)
			return;
	}
}

void engine__saf_poll(struct tsw_engine *e)
{
	uint32_t link;

	if (!e->state)
		return;
	e->saf_next_poll_ns = e->now_ns + (uint64_t)e->cfg.saf_poll_ms * NS_PER_MS;
	for (link = 0; link < e->n_links; link++) {
		if (e->links[link].state != LINK_SIGNED_ON)
			continue;
		if (!e->reader_live) {
			if (tsw_vault_reader_renew(e->reader) < 0) {
				TSW_COUNT(e->m->vault_errors);
				break;
			}
			e->reader_live = true;
		}
		poll_link(e, link);
	}
	saf_gauge(e);
}

static void untrack(struct tsw_engine *e, const struct req *r)
{
	struct issuer_link *l = &e->links[r->link];

	if (l->saf_inflight)
		l->saf_inflight--;
	if (e->saf_inflight)
		e->saf_inflight--;
	if (e->m->saf_inflight)
		TSW_GAUGE_DEC(e->m->saf_inflight);
}

/* 91 / 96 (or no DE39): the issuer could not process the reversal;
 * anything else (00, 25 original not found, ...) settles it. */
static bool wants_repeat(const char *rc)
{
	return strcmp(rc, "91") == 0 || strcmp(rc, "96") == 0;
}

/* The item leaves the queue; only a reversal the issuer accepted (00)
 * shows it gave the money back, so only that gives its limited use back,
 * and 25 (original not found) to the reversal of a request whose outcome
 * the switch never saw (a timeout): the issuer never had that money. A
 * declined one keeps it spent, 25 to a reversal of a seen approval too
 * (a late answer counts as a seen approval: the request is gone, and keeping the use is the safe side). */
static int settle(struct tsw_state *st, uint64_t id, const char *rc, bool approval_seen)
{
	if (strcmp(rc, "00") == 0 || (strcmp(rc, "25") == 0 && !approval_seen))
		return tsw_state_saf_ack(st, id);
	return tsw_state_saf_settle(st, id);
}

void engine__saf_answered(struct tsw_engine *e, struct req *r, const char *rc)
{
	untrack(e, r);
	if (wants_repeat(rc)) {
		give_back(e, r->saf_id, backoff_ms(e, r->saf_attempts));
		return;
	}
	/* not found: another worker's lease had run out and it got the
	 * answer first; the reversal is settled either way */
	engine_event(e, TSW_EV_SAF_ACKED, .link = r->link, .id = r->saf_id, .rc = rc);
	if (settle(e->state, r->saf_id, rc, r->has_approval_code) == 0) {
		TSW_COUNT(e->m->saf_acked);
		if (strcmp(rc, "00") != 0)
			TSW_COUNT(e->m->saf_declined);
	}
	saf_gauge(e);
}

void engine__saf_late_answer(struct tsw_engine *e, uint64_t id, const char *rc)
{
	/* it was given back at its timeout: the issuer has it now, so it
	 * leaves the queue unless the answer asks for a repeat (whoever
	 * holds it by now, the ack counts) */
	if (wants_repeat(rc))
		return;
	engine_event(e, TSW_EV_SAF_ACKED, .id = id, .rc = rc, .why = "late");
	if (settle(e->state, id, rc, true) == 0) {
		TSW_COUNT(e->m->saf_acked);
		if (strcmp(rc, "00") != 0)
			TSW_COUNT(e->m->saf_declined);
	}
	saf_gauge(e);
}

void engine__saf_failed(struct tsw_engine *e, struct req *r)
{
	untrack(e, r);
	give_back(e, r->saf_id, backoff_ms(e, r->saf_attempts));
}

uint64_t engine__saf_next_deadline(const struct tsw_engine *e)
{
	uint32_t link;

	if (!e->state)
		return UINT64_MAX;
	for (link = 0; link < e->n_links; link++)
		if (e->links[link].state == LINK_SIGNED_ON)
			return e->saf_next_poll_ns;
	return UINT64_MAX;
}
