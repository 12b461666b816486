/* The request pipeline: parse -> vault -> decide -> engine__decline or forward
 * to the issuer (or engine__park until a limited use is durable). */
#include <errno.h>
#include <string.h>

#include "acq_reversal.h"
#include "answer_guard.h"
#include "card_crypto.h"
#include "dup.h"
#include "engine_int.h"
#include "held_approval.h"
#include "rewrite.h"
#include "standin.h"
#include "use.h"
#include "tsw/authz.h"
#include "tsw/error.h"
#include "tsw/hsm.h"
#include "tsw/vault.h"

/* ---- vault reader ---- */

int engine__reader_ensure(struct tsw_engine *e)
{
	int r;

	if (e->reader_live)
		return 0;
	r = tsw_vault_reader_renew(e->reader);
	if (r < 0)
		return r;
	e->reader_live = true;
	r = tsw_vault_take_key_error(e->vault);
	if (r < 0) {
		TSW_COUNT(e->m->vault_keys_refused);
		engine_event(e, TSW_EV_VAULT_KEYS_REFUSED, .err = r);
	}
	return 0;
}

/* ---- the request pipeline ---- */

/* One request on its way through the pipeline. The echo fields are not
 * copied up front: a engine__decline builds them on the stack from msg, a forward
 * straight into its pending slot (one copy of ~200 bytes, not two). */
struct pipeline {
	uint32_t slot;
	const struct tsw_iso_msg *msg;
	struct tsw_authz_req req;
	uint64_t start_ns;
	uint64_t ticket;
	bool has_ticket;
	bool counter_done;	/* its cryptogram's counter was accepted before it waited */
	bool record_pending;	/* forwarded before rec_ticket is durable (held_approval.c) */
	uint64_t rec_ticket;	/* the later of its use's and its counter's tickets */
	struct card_check card; /* what its cryptogram checks left (card_crypto.c) */
};

/* Gives back what a request that goes no further holds: its use, and
 * the key reference of a verified ARQC. */
static void release_ticket(struct tsw_engine *e, struct pipeline *pl)
{
	if (pl->has_ticket) {
		engine__use_release(e, pl->ticket);
		pl->has_ticket = false;
	}
	engine__card_arpc_drop(&pl->card.arpc);
}

static int pl_decline(struct tsw_engine *e, struct pipeline *pl, enum tsw_authz_reason reason)
{
	struct echo ec;

	release_ticket(e, pl);
	engine__echo_from_msg(&ec, pl->msg);
	return engine__decline(e, pl->slot, &ec, reason);
}

static void fmt_stan(uint32_t stan, char out[6])
{
	int i;

	for (i = 5; i >= 0; i--) {
		out[i] = (char)('0' + stan % 10);
		stan /= 10;
	}
}

/* What r keeps of the request in pl (token t, MTI class cls) for its
 * answer, its reversal or a stand-in; the echo fields are copied apart. */
static void req_fill(struct tsw_engine *e, struct req *r, const struct pipeline *pl,
		     const struct tsw_token *t, unsigned cls)
{
	r->kind = REQ_ACQ;
	r->acq_slot = pl->slot;
	r->acq_gen = e->conns[pl->slot].gen;
	r->mti_class = (uint8_t)cls;
	r->start_ns = pl->start_ns;
	r->ticket = pl->ticket;
	r->has_ticket = pl->has_ticket;
	/* the whole array (fixed size: two moves, not a rep movsb) */
	_Static_assert(sizeof(r->token) <= sizeof(t->token), "token arrays");
	memcpy(r->token, t->token, sizeof(r->token));
	r->token_len = t->token_len;
	r->has_token_expiry = strlen(t->token_expiry) == 4;
	if (r->has_token_expiry)
		memcpy(r->token_expiry, t->token_expiry, 4);
	r->pos_mode = pl->req.has_pos_mode ? pl->req.pos_mode : TSW_POS_MODE_MAX;
	r->assurance = t->assurance_level;
	r->has_pin = tsw_iso_has(pl->msg, 52);
}

/* The issuer (index iss) has no signed-on link: a 0100/0200 is approved
 * by stand-in when the rules allow it (standin.c), else declined 91 as
 * without stand-in. */
static int stand_in(struct tsw_engine *e, struct pipeline *pl, const struct tsw_token *t,
		    uint32_t iss, unsigned cls)
{
	struct req *r = engine__req_alloc(e);
	uint32_t link;

	if (!r) {
		/* nowhere to hold it until its advice is durable */
		TSW_COUNT(e->m->pending_full);
		TSW_COUNT(e->m->standin[TSW_STANDIN_DECLINED_UNQUEUED]);
		engine_event(e, TSW_EV_STANDIN, .why = "declined_unqueued");
		return pl_decline(e, pl, TSW_AUTHZ_ISSUER_UNAVAILABLE);
	}
	engine__echo_from_msg(&r->echo, pl->msg);
	if (!r->echo.len[ECHO_IDX_DE11]) {
		engine__req_free(e, r);
		return pl_decline(e, pl, TSW_AUTHZ_FORMAT);
	}
	req_fill(e, r, pl, t, cls);
	/* its advice goes to the issuer: any of its links names it */
	for (link = 0; link + 1 < e->n_links && link_issuer(e, link) != iss; link++)
		;
	r->link = (uint16_t)link;
	if (!engine__standin_try(e, r)) {
		engine__req_free(e, r);
		return pl_decline(e, pl, TSW_AUTHZ_ISSUER_UNAVAILABLE);
	}
	/* held until its advice is durable: in flight on its connection,
	 * and a repeat of it meanwhile is a duplicate (94) */
	e->conns[pl->slot].inflight++;
	engine__dup_add(e, r);
	return 0;
}

/* A reversal whose DE95 (replacement amounts) names a transaction amount
 * above zero reverses part of the sale: the rest stands, and so does the
 * limited use it spent. */
static bool keeps_part_of_sale(const struct tsw_iso_msg *m)
{
	const uint8_t *p;

	if (tsw_authz_class_of(m->mti) != TSW_AUTHZ_CLASS_REVERSAL || !tsw_iso_has(m, 95))
		return false;
	p = tsw_iso_ptr(m, 95);
	for (size_t i = 0; i < m->f[95].len && i < 12; i++)
		if (p[i] != '0')
			return true;
	return false;
}

/* The largest issuer-bound body: the profile's frame, within what its
 * length header can say. */
static uint32_t issuer_body_max(const struct tsw_iso_profile *p)
{
	uint32_t h = tsw_iso_header_max(p);

	return p->max_frame < h ? p->max_frame : h;
}

/* A record (the token's, or its original's) that fails authentication:
 * nothing of it is used; 96, counted and logged with the token masked. */
static int integrity_decline(struct tsw_engine *e, struct pipeline *pl, const char *token,
			     size_t len)
{
	TSW_COUNT(e->m->vault_integrity_failures);
	engine_event(e, TSW_EV_VAULT_INTEGRITY, .slot = pl->slot, .token = token, .token_len = len);
	return pl_decline(e, pl, TSW_AUTHZ_VAULT_INTEGRITY);
}

/* The issuer's copy of a request: the edits engine__link_write applies to the
 * acquirer's message and the buffers they point into. pan and de35 hold
 * the PAN in clear: forward wipes them, in one place, on every way out. */
struct issuer_copy {
	char pan[TSW_PAN_MAX_DIGITS];
	uint8_t de35[TSW_ENGINE_DE35_MAX];
	uint8_t de48[TSW_ENGINE_DE48_MAX];
	char de90[TSW_ENGINE_DE90_LEN];
	uint8_t de52[TSW_HSM_PIN_BLOCK_MAX]; /* translated for the issuer */
	char stan[6];
	struct tsw_iso_edit ed[8];
	unsigned n;
	int pan_len;
	struct acq_rev_match rev_match;
};

static void count_pending_full(struct tsw_engine *e)
{
	TSW_COUNT(e->m->pending_full);
	engine_event(e, TSW_EV_PENDING_FULL, .n1 = e->cfg.max_pending);
}

/* DE52 for issuer iss: an authorization's PIN block translated from the
 * token to the PAN (ic->de52); any other message's removed (no PIN
 * belongs in it, and the acquirer's block is never the issuer's). 0, or
 * -EPERM with the reason of the decline in *ret_reason. */
static int issuer_pin(struct tsw_engine *e, const struct pipeline *pl, const struct tsw_token *t,
		      uint32_t iss, struct issuer_copy *ic, enum tsw_authz_reason *ret_reason)
{
	const struct tsw_iso_msg *m = pl->msg;
	size_t len = 0;

	if (!tsw_iso_has(m, 52))
		return 0;
	if (pl->req.msg_class == TSW_AUTHZ_CLASS_AUTH) {
		*ret_reason = engine__card_pin(e, m, &pl->req, t, ic->pan, (size_t)ic->pan_len, iss,
					       ic->de52, &len);
		if (*ret_reason != TSW_AUTHZ_FORWARD)
			return -EPERM;
	}
	ic->ed[ic->n++] =
	    (struct tsw_iso_edit){.field = 52, .len = (uint16_t)len, .data = len ? ic->de52 : NULL};
	return 0;
}

/* Fills ic's edits: DE35 and DE2 the PAN, DE14 its expiry, DE11 the
 * switch STAN (ic->stan), DE48 the token data, DE52 translated for
 * issuer iss and, for an acquirer's reversal of an original the switch
 * knows, DE90 naming it by the switch STAN. 0, or a negative errno with
 * the reason of the engine__decline in *ret_reason. */
static int issuer_edits(struct tsw_engine *e, const struct pipeline *pl, const struct tsw_token *t,
			uint32_t iss, struct issuer_copy *ic, enum tsw_authz_reason *ret_reason)
{
	const struct tsw_iso_msg *m = pl->msg;
	size_t de48_len = 0, de35_len = 0;
	unsigned n = 0;
	int ret;

	if (tsw_iso_has(m, 48))
		ret = engine__de48_for_issuer(tsw_iso_ptr(m, 48), m->f[48].len, t, ic->de48,
					      sizeof(ic->de48), &de48_len);
	else
		ret = engine__de48_for_issuer(NULL, 0, t, ic->de48, sizeof(ic->de48), &de48_len);
	if (ret < 0) {
		*ret_reason = TSW_AUTHZ_SYSTEM;
		return ret;
	}
	if (tsw_iso_has(m, 35)) {
		ret = engine__de35_to_pan(tsw_iso_ptr(m, 35), m->f[35].len, ic->pan,
					  (size_t)ic->pan_len, t->pan_expiry, ic->de35,
					  sizeof(ic->de35), &de35_len);
		if (ret < 0) {
			*ret_reason = TSW_AUTHZ_FORMAT;
			return ret;
		}
		ic->ed[n++] =
		    (struct tsw_iso_edit){.field = 35, .len = (uint16_t)de35_len, .data = ic->de35};
	}
	ic->ed[n++] = (struct tsw_iso_edit){
	    .field = 2, .len = (uint16_t)ic->pan_len, .data = (const uint8_t *)ic->pan};
	if (strlen(t->pan_expiry) == 4)
		ic->ed[n++] = (struct tsw_iso_edit){
		    .field = 14, .len = 4, .data = (const uint8_t *)t->pan_expiry};
	ic->ed[n++] =
	    (struct tsw_iso_edit){.field = 11, .len = 6, .data = (const uint8_t *)ic->stan};
	ic->ed[n++] =
	    (struct tsw_iso_edit){.field = 48, .len = (uint16_t)de48_len, .data = ic->de48};
	/* an acquirer's reversal names the original by the switch STAN */
	ic->rev_match = (struct acq_rev_match){0};
	if (tsw_authz_class_of(m->mti) == TSW_AUTHZ_CLASS_REVERSAL &&
	    engine__acq_rev_de90(e, pl->slot, t->token, t->token_len, m, ic->de90,
				 &ic->rev_match)) {
		ic->ed[n++] = (struct tsw_iso_edit){
		    .field = 90, .len = TSW_ENGINE_DE90_LEN, .data = (const uint8_t *)ic->de90};
		TSW_COUNT(e->m->acq_reversals_matched);
	}
	ic->n = n;
	return issuer_pin(e, pl, t, iss, ic, ret_reason);
}

/* The reason of the engine__decline when engine__link_write refused r's issuer copy with
 * ret. */
static enum tsw_authz_reason write_refused(struct tsw_engine *e, uint32_t link,
					   const struct tsw_token *t, const struct req *r, int ret)
{
	if (ret == -TSW_E_FRAME_TOO_BIG) {
		/* the PAN, DE14 and DE48 token data made the issuer's copy
		 * longer than the acquirer's: above the issuer profile's
		 * frame, or what its length header can say. Never cut
		 * (the issuer would read the rest as messages of their
		 * own): the switch's failure, not the acquirer's */
		TSW_COUNT(e->m->issuer_frames_too_big);
		engine_event(e, TSW_EV_ISSUER_FRAME_TOO_BIG, .link = link, .token = t->token,
			     .token_len = t->token_len, .echo = &r->echo,
			     .n1 = issuer_body_max(e->iss_profile));
		return TSW_AUTHZ_SYSTEM;
	}
	return ret == -TSW_E_NO_SPACE ? TSW_AUTHZ_ISSUER_UNAVAILABLE : TSW_AUTHZ_FORMAT;
}

/* r went to the issuer on link: it waits for the answer (or its timeout),
 * a repeat of it is a duplicate, an acquirer's reversal can find it. */
static void track_forwarded(struct tsw_engine *e, const struct pipeline *pl,
			    const struct tsw_token *t, const struct issuer_copy *ic, struct req *r,
			    uint32_t link, unsigned cls, uint64_t rev_key)
{
	engine__link_track(e, r);
	req_fill(e, r, pl, t, cls);
	r->sent_to_issuer = true;
	/* the issuer copy is in the link's output: the forward latency ends */
	r->fwd_ns = e->clock_ns(e->clock_arg);
	hist_between(&e->m->request_forward, r->start_ns, r->fwd_ns);
	r->deadline_ns = e->now_ns + (uint64_t)e->cfg.issuer_timeout_ms * NS_PER_MS;
	engine__heap_push(e, r);
	engine__dup_add(e, r);
	r->acq_rev_key = rev_key;
	r->partial_reversal = rev_key && keeps_part_of_sale(pl->msg);
	r->rev_match = ic->rev_match;
	if (cls == TSW_MTI_0100 || cls == TSW_MTI_0200)
		engine__acq_rev_remember(e, rev_key, pl->msg, (uint32_t)r->key);
	e->conns[pl->slot].inflight++;
	e->links[link].pending++;
	TSW_GAUGE_INC(e->m->inflight);
	TSW_COUNT(e->m->forwarded);
}

/* Sends the issuer's copy of the request (its PAN in ic) on link, in a
 * pending slot of its own. 0, or a negative errno with the reason of the
 * engine__decline in *ret_reason (nothing of the request is kept). */
static int send_to_issuer(struct tsw_engine *e, struct pipeline *pl, const struct tsw_token *t,
			  struct issuer_copy *ic, uint32_t link, unsigned cls, uint64_t rev_key,
			  enum tsw_authz_reason *ret_reason)
{
	enum tsw_authz_reason reason = TSW_AUTHZ_SYSTEM;
	struct req *r;
	int ret;

	r = engine__req_alloc(e);
	if (!r) {
		count_pending_full(e);
		ret = -ENOBUFS;
		goto err;
	}
	ret = engine__pending_insert(e, r, (uint16_t)link);
	if (ret < 0) {
		count_pending_full(e);
		goto err_free_req;
	}
	/* a place for its approval to wait for the state's commit */
	if (pl->record_pending) {
		ret = engine__approval_slot_take(e, r, pl->rec_ticket);
		if (ret < 0)
			goto err_remove;
	}
	fmt_stan((uint32_t)r->key, ic->stan);
	engine__echo_from_msg(&r->echo, pl->msg);
	if (!r->echo.len[ECHO_IDX_DE11]) {
		/* the fields before it filled the echo space (a custom profile) */
		reason = TSW_AUTHZ_FORMAT;
		ret = -EMSGSIZE;
		goto err_remove;
	}
	ret = issuer_edits(e, pl, t, link_issuer(e, link), ic, &reason);
	if (ret < 0)
		goto err_remove;
	r->pan_len = (uint8_t)ic->pan_len;
	r->pan_fp = engine__pan_fp(e->pan_fp_seed, ic->pan, (size_t)ic->pan_len);
	if (ic->pan_len >= 4) /* the vault holds 12..19-digit PANs */
		memcpy(r->pan_last4, ic->pan + ic->pan_len - 4, 4);
	ret = engine__link_write(e, link, pl->msg, ic->ed, ic->n);
	if (ret < 0) {
		reason = write_refused(e, link, t, r, ret);
		goto err_remove;
	}
	track_forwarded(e, pl, t, ic, r, link, cls, rev_key);
	/* its answer owes the card a tag 91 */
	r->arpc = pl->card.arpc;
	pl->card.arpc.keys = NULL;
	return 0;

err_remove:
	engine__pending_remove(e, r);
err_free_req:
	engine__req_free(e, r);
err:
	*ret_reason = reason;
	return ret;
}

static int forward(struct tsw_engine *e, struct pipeline *pl, const struct tsw_token *t)
{
	const struct tsw_iso_msg *m = pl->msg;
	enum tsw_authz_reason fail = TSW_AUTHZ_SYSTEM;
	struct issuer_copy ic;
	uint64_t rev_key = 0;
	bool stand_in_now = false;
	int iss, link, ret = -1;
	unsigned cls;

	/* the answer goes back with the acquirer's DE11 */
	if (!tsw_iso_has(m, 11) || m->f[11].len == 0 || m->f[11].len > 255)
		return pl_decline(e, pl, TSW_AUTHZ_FORMAT);
	cls = engine__mti_class(m->mti);
	if (cls == TSW_MTI_0100 || cls == TSW_MTI_0200 || cls == TSW_MTI_0400 ||
	    cls == TSW_MTI_0420)
		rev_key = engine__acq_rev_key(e, pl->slot, t->token, t->token_len, m);

	ic.pan_len = tsw_vault_decrypt_pan(e->reader, t, ic.pan, sizeof(ic.pan));
	if (ic.pan_len == -TSW_E_INTEGRITY)
		return integrity_decline(e, pl, t->token, t->token_len);
	if (ic.pan_len < 0) {
		TSW_COUNT(e->m->vault_errors);
		return pl_decline(e, pl, TSW_AUTHZ_SYSTEM);
	}
	iss = engine__route(e, ic.pan, (size_t)ic.pan_len);
	if (iss < 0) {
		TSW_COUNT(e->m->no_route);
	} else {
		link = engine__pick_link(e, (uint32_t)iss);
		if (link >= 0)
			ret = send_to_issuer(e, pl, t, &ic, (uint32_t)link, cls, rev_key, &fail);
		else if (engine__standin_wanted(e, cls, false))
			stand_in_now = true;
		else
			fail = TSW_AUTHZ_ISSUER_UNAVAILABLE;
	}
	explicit_bzero(ic.pan, sizeof(ic.pan));
	explicit_bzero(ic.de35, sizeof(ic.de35));
	if (tsw_iso_has(m, 52))
		explicit_bzero(ic.de52, sizeof(ic.de52));
	if (stand_in_now) {
		/* the switch approves for the issuer: no issuer answer to
		 * authenticate to the card */
		engine__card_arpc_drop(&pl->card.arpc);
		return stand_in(e, pl, t, (uint32_t)iss, cls);
	}
	if (ret < 0)
		return pl_decline(e, pl, fail);
	return 0;
}

/* verified: the record is authenticated now (the original of a
 * token-for-token token: its policy decides, its PAN is never opened);
 * else decoded only, authenticated by the decrypt before any forward */
static int lookup(struct tsw_engine *e, const char *tok, size_t len, bool verified,
		  struct tsw_token *ret, bool *ret_found)
{
	int r;

	TSW_COUNT(e->m->vault_lookups);
	r = verified ? tsw_vault_lookup(e->reader, tok, len, ret)
		     : tsw_vault_peek(e->reader, tok, len, ret);
	if (r == -TSW_E_NOT_FOUND) {
		*ret_found = false;
		return 0;
	}
	if (r == -TSW_E_INTEGRITY)
		return r; /* counted by the caller, which knows the request */
	if (r < 0) {
		TSW_COUNT(e->m->vault_errors);
		return r;
	}
	*ret_found = true;
	return 0;
}

/* After the domain rules: the cryptogram, then the limited use (a
 * request that fails any check must not consume a use). What they
 * recorded in the state may not be durable yet: the request goes on and
 * its approval waits for the commit (held_approval.c), or, with
 * state.forward_before_durable off, the request waits, parked. *ret_go:
 * it may go to the issuer now; else it was answered or parked, and the
 * return is what that returned. */
static int gate(struct tsw_engine *e, struct pipeline *pl, const struct tsw_token *t, bool *ret_go)
{
	/* what it did before it waited stays done: a use reserved then is
	 * still its own (a reload may now ask a counter of it too) */
	struct resume rs = {.counter_done = pl->counter_done,
			    .use_reserved = pl->has_ticket,
			    .use_ticket = pl->ticket};
	enum tsw_authz_reason reason;
	bool durable = true;
	int r;

	*ret_go = false;
	reason = engine__card_check(e, t, &pl->req, pl->msg, pl->counter_done, &pl->card);
	if (reason != TSW_AUTHZ_FORWARD)
		return pl_decline(e, pl, reason);
	if (pl->card.has_ticket) {
		rs.wait_ticket = pl->card.ticket;
		rs.counter_done = true;
		durable = tsw_state_durable(e->state, pl->card.ticket);
	}
	if (!pl->has_ticket && tsw_authz_needs_use(t, &pl->req)) {
		r = engine__use_reserve(e, t, &pl->ticket, &durable);
		if (r == -TSW_E_FULL)
			return pl_decline(e, pl, TSW_AUTHZ_DOMAIN_USES);
		if (r == -ENOSPC) /* writer degraded, or token table full */
			return pl_decline(e, pl, TSW_AUTHZ_STATE_UNAVAILABLE);
		if (r < 0)
			return pl_decline(e, pl, TSW_AUTHZ_SYSTEM);
		pl->has_ticket = true;
		/* a later ticket: durable, it makes the counter's durable too */
		rs.use_ticket = rs.wait_ticket = pl->ticket;
		rs.use_reserved = true;
	}
	if (!durable && e->cfg.state_forward_before_durable) {
		pl->record_pending = true;
		pl->rec_ticket = rs.wait_ticket;
	} else if (!durable) {
		/* verified again when it runs again: the keys may change */
		engine__card_arpc_drop(&pl->card.arpc);
		r = engine__park(e, pl->slot, pl->msg, &rs, pl->start_ns);
		if (r < 0)
			return pl_decline(e, pl, TSW_AUTHZ_SYSTEM);
		return 0;
	}
	*ret_go = true;
	return 0;
}

/* The vault's records for the request: the token's (*found) and, for a
 * token-for-token token, its original's (*orig_found), and the device
 * binding in ctx. 0, or what declining it returned (*ret_done). */
static int records(struct tsw_engine *e, struct pipeline *pl, struct tsw_token *t, bool *found,
		   struct tsw_token *orig, bool *orig_found, struct tsw_authz_ctx *ctx,
		   bool *ret_done)
{
	int r;

	*ret_done = true;
	r = lookup(e, pl->req.token.ptr, pl->req.token.len, false, t, found);
	/* a card's record writes the state (its ATC, under its atc_epoch)
	 * before the forward would authenticate it: authenticate it now */
	if (r == 0 && *found && (t->cvn || e->card_keys))
		r = lookup(e, pl->req.token.ptr, pl->req.token.len, true, t, found);
	if (r == -TSW_E_INTEGRITY)
		return integrity_decline(e, pl, pl->req.token.ptr, pl->req.token.len);
	if (r < 0)
		return pl_decline(e, pl, TSW_AUTHZ_SYSTEM);
	if (*found && t->original_token[0]) {
		r = lookup(e, t->original_token, strlen(t->original_token), true, orig, orig_found);
		if (r == -TSW_E_INTEGRITY)
			return integrity_decline(e, pl, t->original_token,
						 strlen(t->original_token));
		if (r < 0)
			return pl_decline(e, pl, TSW_AUTHZ_SYSTEM);
	}
	if (*found && tsw_authz_needs_device(t, &pl->req)) {
		r = tsw_vault_device_bound(e->reader, t->token, t->token_len, pl->req.device_id.ptr,
					   pl->req.device_id.len);
		ctx->device_bound = (int8_t)(r < 0 ? -1 : r);
	}
	*ret_done = false;
	return 0;
}

/* Runs the decision for a parsed request and forwards or declines it.
 * Called again for a parked request once what it waited for is durable. */
static int decide_and_route(struct tsw_engine *e, struct pipeline *pl)
{
	struct tsw_token t, orig;
	struct tsw_authz_ctx ctx;
	bool found = false, orig_found = false, done, go;
	enum tsw_authz_reason reason;
	int r;

	tsw_authz_ctx_init(&ctx, e->wall_s);
	ctx.in_token_range =
	    tsw_vault_in_token_range(e->vault, pl->req.token.ptr, pl->req.token.len);
	if (engine__reader_ensure(e) < 0) {
		TSW_COUNT(e->m->vault_errors);
		return pl_decline(e, pl, TSW_AUTHZ_SYSTEM);
	}
	if (ctx.in_token_range) {
		r = records(e, pl, &t, &found, &orig, &orig_found, &ctx, &done);
		if (done)
			return r;
	}
	reason = tsw_authz_decide(found ? &t : NULL, orig_found ? &orig : NULL, &pl->req, &ctx);
	if (reason != TSW_AUTHZ_FORWARD)
		return pl_decline(e, pl, reason);
	r = gate(e, pl, &t, &go);
	if (!go)
		return r;
	return forward(e, pl, &t);
}

int engine__request(struct tsw_engine *e, uint32_t slot, const struct tsw_iso_msg *m,
		    uint64_t start_ns, const struct resume *rs)
{
	struct pipeline pl;

	/* not zeroed as a whole: tsw_authz_parse fills req on success, and
	 * req is not read otherwise */
	pl.slot = slot;
	pl.msg = m;
	pl.start_ns = start_ns;
	pl.has_ticket = rs && rs->use_reserved;
	pl.ticket = pl.has_ticket ? rs->use_ticket : 0;
	pl.counter_done = rs && rs->counter_done;
	pl.record_pending = false;
	pl.card.arpc.keys = NULL;
	if (tsw_authz_parse(m, &pl.req) < 0) {
		TSW_COUNT(e->m->format_errors);
		return pl_decline(e, &pl, TSW_AUTHZ_FORMAT);
	}
	return decide_and_route(e, &pl);
}
