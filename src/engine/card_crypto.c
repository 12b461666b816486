/* Card cryptography in the pipeline: a request's cryptogram (the EMV
 * ARQC of DE55 for chip and contactless, the token cryptogram of DE48
 * tag 11 for e-commerce and card-on-file) checked under the keys of the
 * token's range, its counter through the state's replay check, the tag 91
 * its answer owes, and the DE52 PIN block translated from the token to the
 * PAN. When each applies and what it answers: docs/decisions.md
 * "Cryptograms" and "PIN blocks"; the wire forms: docs/wire.md. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "card_crypto.h"
#include "engine_int.h"
#include "tsw/error.h"
#include "tsw/hsm.h"
#include "tsw/state.h"

/* The record's PSN (0..99) in the card's BCD form. */
static uint8_t psn_bcd(uint8_t psn)
{
	return (uint8_t)((psn / 10) << 4 | psn % 10);
}

static enum tsw_authz_reason counted(struct tsw_engine *e, const struct tsw_token *t,
				     enum tsw_card_check_result res)
{
	TSW_COUNT(e->m->card_checks[res]);
	if (res != TSW_CARD_CHECK_OK)
		engine_event(e, TSW_EV_CRYPTOGRAM_DECLINED, .why = tsw_metrics_card_check_name(res),
			     .token = t->token, .token_len = t->token_len);
	switch (res) {
	case TSW_CARD_CHECK_OK:
		return TSW_AUTHZ_FORWARD;
	case TSW_CARD_CHECK_ATC_REPLAY:
		return TSW_AUTHZ_ATC_REPLAY;
	case TSW_CARD_CHECK_ATC_WINDOW:
		return TSW_AUTHZ_ATC_WINDOW;
	case TSW_CARD_CHECK_STATE:
		return TSW_AUTHZ_STATE_UNAVAILABLE;
	case TSW_CARD_CHECK_MISSING:
	case TSW_CARD_CHECK_MALFORMED:
	case TSW_CARD_CHECK_MISMATCH:
	case TSW_CARD_CHECK_NO_KEY:
	case TSW_CARD_CHECK_WRONG:
	case TSW_CARD_CHECK_RESULT_MAX:
		break;
	}
	return TSW_AUTHZ_CRYPTOGRAM;
}

/* The token's counter through the state's replay check: accepted, it is
 * the token's last from now on, durable once out->ticket is. */
static enum tsw_card_check_result record_counter(struct tsw_engine *e, const struct tsw_token *t,
						 bool tavv, uint32_t counter,
						 struct card_check *out)
{
	uint64_t ticket;
	int r;

	if (!e->state)
		return TSW_CARD_CHECK_STATE; /* --no-state: nowhere to keep it */
	/* the token cryptogram's counter is the token's, not the device's:
	 * a re-personalization (atc_epoch) resets only the ATC */
	r = tavv ? tsw_state_tavv_check(e->state, t->token, t->token_len, counter,
					e->cfg.cryptogram_atc_window, &ticket)
		 : tsw_state_atc_check(e->state, t->token, t->token_len, t->atc_epoch, counter,
				       e->cfg.cryptogram_atc_window, &ticket);
	if (r == -TSW_E_EXISTS)
		return TSW_CARD_CHECK_ATC_REPLAY;
	if (r == -TSW_E_ATC_WINDOW)
		return TSW_CARD_CHECK_ATC_WINDOW;
	if (r < 0)
		return TSW_CARD_CHECK_STATE;
	out->ticket = ticket;
	out->has_ticket = true;
	return TSW_CARD_CHECK_OK;
}

/* A chip or contactless authorization of a token that names a CVN. */
static bool wants_arqc(const struct tsw_token *t, const struct tsw_authz_req *q)
{
	return t->cvn && q->msg_class == TSW_AUTHZ_CLASS_AUTH && q->has_pos_mode &&
	       (q->pos_mode == TSW_POS_CHIP || q->pos_mode == TSW_POS_CONTACTLESS);
}

/* The newest cryptogram.max_keys_tried keys of run: every key tried is a
 * verification a forged cryptogram costs the switch. *ret_untried: older
 * keys are left out. */
static struct card_keys_run keys_to_try(const struct tsw_engine *e, struct card_keys_run run,
					bool *ret_untried)
{
	*ret_untried = run.n > e->cfg.cryptogram_max_keys_tried;
	if (*ret_untried)
		run.n = e->cfg.cryptogram_max_keys_tried;
	return run;
}

/* A check failed under the keys tried while n_keys were active. */
static void untried_keys_hit(struct tsw_engine *e, uint32_t n_keys)
{
	TSW_COUNT(e->m->cryptogram_keys_untried);
	engine_event(e, TSW_EV_KEYS_TRIED_LIMIT, .n1 = e->cfg.cryptogram_max_keys_tried,
		     .n2 = n_keys);
}

/* The ARQC of DE55 under the keys of the token's range, newest first:
 * the index in e->card_keys of the one it verifies under, or the result
 * that declines it. */
static enum tsw_card_check_result verify_arqc(struct tsw_engine *e, const struct tsw_token *t,
					      const struct tsw_hsm_arqc_input *in,
					      uint32_t *ret_key)
{
	struct card_keys_run all =
	    engine__card_keys_for_token(e->card_keys, TSW_VAULT_KEY_IMK_AC, t->token, t->token_len);
	bool untried;
	struct card_keys_run run = keys_to_try(e, all, &untried);

	if (!run.n || !e->hsm_s)
		return TSW_CARD_CHECK_NO_KEY;
	for (uint32_t i = run.first; i < run.first + run.n; i++) {
		int r = tsw_hsm_arqc_verify(e->hsm_s, engine__card_key(e->card_keys, i), t->token,
					    t->token_len, psn_bcd(t->psn), in);

		if (r == 0) {
			*ret_key = i;
			return TSW_CARD_CHECK_OK;
		}
		if (r != -TSW_E_CRYPTOGRAM)
			return TSW_CARD_CHECK_NO_KEY; /* the HSM cannot: full, or failing */
	}
	if (untried)
		untried_keys_hit(e, all.n);
	return TSW_CARD_CHECK_WRONG;
}

/* digits[0..len) right-aligned in a BCD field of n bytes equals bcd. */
static bool bcd_equals(const uint8_t *bcd, size_t n, const char *digits, size_t len)
{
	for (size_t i = 0; i < 2 * n; i++) {
		size_t pad = 2 * n - len;
		unsigned want = i < pad ? 0 : (unsigned)(digits[i - pad] - '0');
		unsigned got = i % 2 ? bcd[i / 2] & 0x0f : bcd[i / 2] >> 4;

		if (got != want)
			return false;
	}
	return true;
}

/* The card signed what the issuer is asked to approve: 9F02 is DE4 and
 * 5F2A DE49 (when DE49 is there: else the issuer's own currency). The
 * issuer cannot check the ARQC; the switch must. */
static bool signed_what_is_asked(const struct tsw_hsm_arqc_input *in, const struct tsw_authz_req *q,
				 const struct tsw_iso_msg *m)
{
	size_t alen = tsw_iso_has(m, 4) ? m->f[4].len : 0;

	if (alen == 0 || alen > 12 ||
	    !bcd_equals(in->amount, 6, (const char *)tsw_iso_ptr(m, 4), alen))
		return false;
	return q->currency.len != 3 || bcd_equals(in->currency, 2, q->currency.ptr, 3);
}

/* The parsed DE55 is an ARQC of this card for this request: 9F27 says
 * ARQC (an AAC or TC is the card's own offline decline or approval), a
 * 5F34 is the record's PSN (the sender does not choose the key), and
 * amount and currency are the request's. */
static enum tsw_card_check_result arqc_fits(const struct tsw_token *t,
					    const struct tsw_authz_req *q,
					    const struct tsw_iso_msg *m,
					    const struct tsw_hsm_arqc_input *in)
{
	if ((in->cid & 0xc0) != 0x80)
		return TSW_CARD_CHECK_MALFORMED;
	if (in->has_psn && in->psn != psn_bcd(t->psn))
		return TSW_CARD_CHECK_WRONG;
	if (!signed_what_is_asked(in, q, m))
		return TSW_CARD_CHECK_MISMATCH;
	return TSW_CARD_CHECK_OK;
}

static enum tsw_card_check_result check_arqc(struct tsw_engine *e, const struct tsw_token *t,
					     const struct tsw_authz_req *q,
					     const struct tsw_iso_msg *m, bool counter_done,
					     struct card_check *out)
{
	struct tsw_hsm_arqc_input in;
	enum tsw_card_check_result res;
	uint32_t key;

	if (!q->has_chip_data)
		return TSW_CARD_CHECK_MISSING;
	/* another CVN than the record's (the DE55 of another device) does not
	 * parse: its 9F10 names its own */
	if (tsw_hsm_de55_parse((const uint8_t *)q->chip_data.ptr, q->chip_data.len, t->cvn, &in,
			       NULL) < 0)
		return TSW_CARD_CHECK_MALFORMED;
	res = arqc_fits(t, q, m, &in);
	if (res != TSW_CARD_CHECK_OK)
		return res;
	res = verify_arqc(e, t, &in, &key);
	if (res != TSW_CARD_CHECK_OK)
		return res;
	if (!counter_done) {
		res = record_counter(e, t, false, (uint32_t)in.atc[0] << 8 | in.atc[1], out);
		if (res != TSW_CARD_CHECK_OK)
			return res;
	}
	out->arpc = (struct card_arpc){
	    .keys = engine__card_keys_get(e->card_keys),
	    .key = key,
	    .cvn = in.cvn,
	    .psn = in.has_psn ? in.psn : psn_bcd(t->psn),
	};
	memcpy(out->arpc.arqc, in.arqc, sizeof(in.arqc));
	memcpy(out->arpc.atc, in.atc, sizeof(in.atc));
	memcpy(out->arpc.un, in.un, sizeof(in.un));
	return TSW_CARD_CHECK_OK;
}

/* The keys of the token cryptogram an e-commerce or card-on-file
 * authorization of t needs: its range's tavv keys (none: not required). */
static struct card_keys_run tavv_keys(const struct tsw_engine *e, const struct tsw_token *t,
				      const struct tsw_authz_req *q)
{
	if (!e->card_keys || q->msg_class != TSW_AUTHZ_CLASS_AUTH || !q->has_pos_mode ||
	    (q->pos_mode != TSW_POS_ECOMMERCE && q->pos_mode != TSW_POS_COF))
		return (struct card_keys_run){0};
	return engine__card_keys_for_token(e->card_keys, TSW_VAULT_KEY_TAVV, t->token,
					   t->token_len);
}

/* What the MAC of DE48 tag 11 covers, from q and m (DE4 as 12 digits,
 * whatever the profile's length, in amount). False: no usable DE4. */
static bool tavv_input(const struct tsw_token *t, const struct tsw_authz_req *q,
		       const struct tsw_iso_msg *m, char amount[12], struct tsw_hsm_tavv_input *in)
{
	size_t alen = tsw_iso_has(m, 4) ? m->f[4].len : 0;

	if (alen == 0 || alen > 12)
		return false;
	memset(amount, '0', 12);
	memcpy(amount + 12 - alen, tsw_iso_ptr(m, 4), alen);
	in->token = t->token;
	in->token_len = t->token_len;
	in->amount = amount;
	in->currency = q->currency.len == 3 ? q->currency.ptr : NULL;
	in->merchant = q->merchant_id.ptr;
	in->merchant_len = q->merchant_id.len;
	return true;
}

/* DE48 tag 11 of q under the keys run, newest first, then its counter. */
static enum tsw_card_check_result check_tavv(struct tsw_engine *e, const struct tsw_token *t,
					     const struct tsw_authz_req *q,
					     const struct tsw_iso_msg *m, struct card_keys_run run,
					     bool counter_done, struct card_check *out)
{
	uint8_t mac[TSW_HSM_TAVV_MAC_BYTES];
	struct tsw_hsm_tavv_input in;
	char amount[12];
	int r = -TSW_E_CRYPTOGRAM;
	uint32_t n_keys = run.n;
	bool untried;

	if (!q->cryptogram.ptr)
		return TSW_CARD_CHECK_MISSING;
	if (tsw_hsm_tavv_parse(q->cryptogram.ptr, q->cryptogram.len, &in.counter, mac) < 0 ||
	    !tavv_input(t, q, m, amount, &in))
		return TSW_CARD_CHECK_MALFORMED;
	if (!e->hsm_s)
		return TSW_CARD_CHECK_NO_KEY;
	run = keys_to_try(e, run, &untried);
	for (uint32_t i = run.first; i < run.first + run.n && r == -TSW_E_CRYPTOGRAM; i++)
		r = tsw_hsm_tavv_verify(e->hsm_s, engine__card_key(e->card_keys, i), &in, mac);
	if (r == -TSW_E_CRYPTOGRAM) {
		if (untried)
			untried_keys_hit(e, n_keys);
		return TSW_CARD_CHECK_WRONG;
	}
	if (r < 0)
		return r == -TSW_E_BAD_INPUT ? TSW_CARD_CHECK_MALFORMED : TSW_CARD_CHECK_NO_KEY;
	return counter_done ? TSW_CARD_CHECK_OK : record_counter(e, t, true, in.counter, out);
}

/* Which cryptogram the request needs (*ret_needed), and its check. */
static enum tsw_card_check_result check_any(struct tsw_engine *e, const struct tsw_token *t,
					    const struct tsw_authz_req *q,
					    const struct tsw_iso_msg *m, bool counter_done,
					    struct card_check *out, bool *ret_needed)
{
	struct card_keys_run run;

	*ret_needed = true;
	if (wants_arqc(t, q))
		return check_arqc(e, t, q, m, counter_done, out);
	run = tavv_keys(e, t, q);
	if (run.n)
		return check_tavv(e, t, q, m, run, counter_done, out);
	*ret_needed = false;
	return TSW_CARD_CHECK_OK;
}

enum tsw_authz_reason engine__card_check_needed(struct tsw_engine *e, const struct tsw_token *t,
						const struct tsw_authz_req *q,
						const struct tsw_iso_msg *m, bool counter_done,
						struct card_check *out)
{
	enum tsw_card_check_result res;
	bool needed;

	res = check_any(e, t, q, m, counter_done, out, &needed);
	if (!needed)
		return TSW_AUTHZ_FORWARD;
	/* a request verified again after its wait was counted the first time */
	if (counter_done && res == TSW_CARD_CHECK_OK)
		return TSW_AUTHZ_FORWARD;
	return counted(e, t, res);
}

/* Visa's card status update for method 2: byte 2 bit 8, the issuer
 * approves; nothing else is asked of the card. */
static void csu_for(const char rc[2], uint8_t csu[4])
{
	memset(csu, 0, 4);
	if (rc[0] == '0' && rc[1] == '0')
		csu[1] = 0x80;
}

int engine__card_arpc_append(struct tsw_engine *e, const char *token, size_t token_len,
			     const struct card_arpc *a, const char rc[2], uint8_t *buf, size_t cap,
			     size_t *len)
{
	struct tsw_hsm_arqc_input in = {.cvn = a->cvn, .has_psn = true, .psn = a->psn};
	struct tsw_hsm_arpc_params p = {.arc = {(uint8_t)rc[0], (uint8_t)rc[1]}};
	uint8_t v[TSW_HSM_ARPC_DATA_MAX];
	size_t vlen;
	int r;

	memcpy(in.arqc, a->arqc, sizeof(in.arqc));
	memcpy(in.atc, a->atc, sizeof(in.atc));
	memcpy(in.un, a->un, sizeof(in.un));
	/* the ARPC reads none of the CVR or 9F10: their lengths only pass
	 * the input checks */
	in.cvr_len = a->cvn == TSW_HSM_CVN_VISA_10 ? 4 : 6;
	in.iad_len = 1;
	csu_for(rc, p.csu);
	r = tsw_hsm_arpc(e->hsm_s, engine__card_key(a->keys, a->key), token, token_len, a->psn, &in,
			 &p, v, &vlen);
	if (r < 0)
		return r;
	if (*len + 2 + vlen > cap)
		return -TSW_E_NO_SPACE;
	buf[(*len)++] = 0x91;
	buf[(*len)++] = (uint8_t)vlen;
	memcpy(buf + *len, v, vlen);
	*len += vlen;
	return 0;
}

/* One translation under acquirer key k: the result. */
static enum tsw_pin_result translate_under(struct tsw_engine *e, const struct tsw_hsm_key *k,
					   const struct tsw_hsm_key *dst, const struct tsw_token *t,
					   const char *pan, size_t pan_len, const uint8_t *in,
					   size_t len, uint8_t *out)
{
	int r;

	if (tsw_hsm_pin_block_len(k) != len || tsw_hsm_pin_block_len(dst) != len)
		return TSW_PIN_FORMAT; /* the profile's DE52 is of the other format */
	r = tsw_hsm_pin_translate(e->hsm_s, k, t->token, t->token_len, dst, pan, pan_len, in, out);
	if (r == 0)
		return TSW_PIN_OK;
	return r == -TSW_E_PIN_PAN ? TSW_PIN_PAN : TSW_PIN_FORMAT;
}

static enum tsw_pin_result pin_translate(struct tsw_engine *e, const struct tsw_iso_msg *m,
					 const struct tsw_authz_req *q, const struct tsw_token *t,
					 const char *pan, size_t pan_len, uint32_t iss,
					 uint8_t *out)
{
	struct card_keys_run acq, dst;
	enum tsw_pin_result res = TSW_PIN_FORMAT;
	uint32_t n_acq;
	bool untried;
	char scope[12];
	int sl = snprintf(scope, sizeof(scope), "%u", iss);
	size_t len = m->f[52].len;

	acq = engine__card_keys_for_scope(e->card_keys, TSW_VAULT_KEY_ZPK_ACQUIRER,
					  q->acquirer_id.ptr, q->acquirer_id.len);
	dst =
	    engine__card_keys_for_scope(e->card_keys, TSW_VAULT_KEY_ZPK_ISSUER, scope, (size_t)sl);
	if (!acq.n || !e->hsm_s)
		return TSW_PIN_NO_ACQUIRER_KEY;
	if (!dst.n)
		return TSW_PIN_NO_ISSUER_KEY;
	if (len != e->iss_profile->fields[52].max_len)
		return TSW_PIN_FORMAT;
	n_acq = acq.n;
	acq = keys_to_try(e, acq, &untried);
	/* rotation: the acquirer may still use an older key; the issuer
	 * gets the newest. Every key in the bound is tried: a wrong key reads a format 0
	 * block as bound to another account about 1.4 % of the time, so PAN
	 * is the answer only when no key opens it */
	for (uint32_t i = acq.first; i < acq.first + acq.n && res != TSW_PIN_OK; i++) {
		enum tsw_pin_result r = translate_under(
		    e, engine__card_key(e->card_keys, i), engine__card_key(e->card_keys, dst.first),
		    t, pan, pan_len, tsw_iso_ptr(m, 52), len, out);

		if (r == TSW_PIN_OK || r == TSW_PIN_PAN)
			res = r;
	}
	if (res != TSW_PIN_OK && untried)
		untried_keys_hit(e, n_acq);
	return res;
}

enum tsw_authz_reason engine__card_pin(struct tsw_engine *e, const struct tsw_iso_msg *m,
				       const struct tsw_authz_req *q, const struct tsw_token *t,
				       const char *pan, size_t pan_len, uint32_t iss, uint8_t *out,
				       size_t *ret_len)
{
	enum tsw_pin_result res = pin_translate(e, m, q, t, pan, pan_len, iss, out);

	TSW_COUNT(e->m->pin_translations[res]);
	if (res != TSW_PIN_OK) {
		engine_event(e, TSW_EV_PIN_BLOCK_REFUSED, .why = tsw_metrics_pin_name(res),
			     .token = t->token, .token_len = t->token_len);
		return TSW_AUTHZ_PIN_BLOCK;
	}
	*ret_len = m->f[52].len;
	return TSW_AUTHZ_FORWARD;
}
