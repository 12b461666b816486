#include "request.h"

#include <string.h>

#include "ring.h"
#include "tsw/error.h"

#define AMOUNT_NO_LIMIT_MAX 99999u /* 999.99 in minor units when no limit */
#define DE48_MAX 999
#define DE48_TAG_DEVICE 10
#define DE48_TAG_TRID 12
#define WRONG_EXPIRY "0101"
#define OVER_LIMIT_SPREAD 1000 /* over_limit amounts: limit + 1 .. limit + this */

void bench_digits(uint64_t v, char *out, unsigned width)
{
	for (unsigned i = width; i > 0; i--) {
		out[i - 1] = (char)('0' + v % 10);
		v /= 10;
	}
}

static bool expects_only_approval(const struct bench_token *t)
{
	return t->expect.n == 1 && t->expect.rc[0][0] == '0' && t->expect.rc[0][1] == '0';
}

enum bench_req_kind bench_request_pick(const struct bench_token *t, enum bench_expect_mode mode,
				       double decline_pct, uint64_t *rng)
{
	enum bench_req_kind cand[BENCH_REQ_KIND_MAX];
	unsigned n = 0;

	if (decline_pct <= 0 || ring_rand_unit(rng) * 100.0 >= decline_pct)
		return BENCH_REQ_NORMAL;
	if (mode != BENCH_EXPECT_VAULT) {
		if (t->amount_limit && t->amount_limit < 51)
			return BENCH_REQ_NORMAL;
		return BENCH_REQ_ISSUER_DECLINE;
	}
	if (!expects_only_approval(t))
		return BENCH_REQ_NORMAL;
	if (t->merchant_bound)
		cand[n++] = BENCH_REQ_WRONG_MERCHANT;
	if (t->amount_limit)
		cand[n++] = BENCH_REQ_OVER_LIMIT;
	if (t->has_expiry)
		cand[n++] = BENCH_REQ_WRONG_EXPIRY;
	cand[n++] = BENCH_REQ_UNKNOWN_TOKEN;
	if (!t->amount_limit || t->amount_limit >= 51)
		cand[n++] = BENCH_REQ_ISSUER_DECLINE;
	return cand[ring_rand(rng) % n];
}

uint64_t bench_request_amount(const struct bench_token *t, enum bench_req_kind kind, uint64_t *rng)
{
	uint64_t hi = t->amount_limit ? t->amount_limit : AMOUNT_NO_LIMIT_MAX, a;

	switch (kind) {
	case BENCH_REQ_OVER_LIMIT:
		return t->amount_limit + 1 + ring_rand(rng) % OVER_LIMIT_SPREAD;
	case BENCH_REQ_ISSUER_DECLINE:
		/* hi >= 51 here: pick among 51, 151, ... <= hi */
		return (ring_rand(rng) % ((hi - 51) / 100 + 1)) * 100 + 51;
	case BENCH_REQ_NORMAL:
	case BENCH_REQ_WRONG_MERCHANT:
	case BENCH_REQ_WRONG_EXPIRY:
	case BENCH_REQ_UNKNOWN_TOKEN:
	case BENCH_REQ_KIND_MAX:
		break;
	}
	a = 1 + ring_rand(rng) % hi;
	if (a % 100 == 51)
		a--; /* never an issuer decline by accident */
	return a;
}

static void set_expect(struct bench_expect *e, const char *rc)
{
	*e = (struct bench_expect){.n = 1};
	e->rc[0][0] = rc[0];
	e->rc[0][1] = rc[1];
}

int bench_request_build(const struct tsw_iso_profile *p, const struct bench_token *t,
			enum bench_req_kind kind, enum bench_expect_mode mode,
			const struct bench_req_ctx *ctx, uint64_t *rng, uint8_t *out, size_t cap,
			struct bench_sent *ret_sent)
{
	struct tsw_iso_edit e[18];
	struct bench_sent sent;
	char de4[12], de11[6], de37[12], merchant[BENCH_MERCHANT_LEN];
	uint8_t de48[DE48_MAX];
	size_t n = 0, de48_len = 0;
	const char *expiry = t->expiry;
	int r;

	memset(&sent, 0, sizeof(sent));
	sent.kind = (uint8_t)kind;
	memcpy(sent.de2, t->token, t->token_len);
	sent.de2_len = t->token_len;
	memcpy(merchant, t->merchant, sizeof(merchant));
	bench_digits(ctx->amount ? ctx->amount : bench_request_amount(t, kind, rng), de4, 12);
	bench_digits(ctx->stan, de11, 6);
	bench_digits(ctx->rrn, de37, 12);

	switch (kind) {
	case BENCH_REQ_WRONG_MERCHANT:
		/* a bound merchant id never starts with "ZZWRONG" in the demo data */
		memcpy(merchant, "ZZWRONG", 7);
		bench_digits(ring_rand(rng) % 100000000u, merchant + 7, 8);
		set_expect(&sent.expect, "57");
		break;
	case BENCH_REQ_OVER_LIMIT:
		set_expect(&sent.expect, "61");
		break;
	case BENCH_REQ_WRONG_EXPIRY:
		expiry = WRONG_EXPIRY;
		set_expect(&sent.expect, "54");
		break;
	case BENCH_REQ_UNKNOWN_TOKEN:
		sent.de2[sent.de2_len - 1] =
		    (char)('0' + (sent.de2[sent.de2_len - 1] - '0' + 1) % 10);
		set_expect(&sent.expect, "14");
		break;
	case BENCH_REQ_ISSUER_DECLINE:
		set_expect(&sent.expect, "51");
		break;
	case BENCH_REQ_NORMAL:
	case BENCH_REQ_KIND_MAX:
		if (mode == BENCH_EXPECT_VAULT)
			sent.expect = t->expect;
		else
			set_expect(&sent.expect, "00");
		break;
	}
	if (mode == BENCH_EXPECT_ANY)
		sent.expect.n = 0;

	if (t->device_len) {
		r = tsw_de48_put(de48, sizeof(de48), &de48_len, DE48_TAG_DEVICE,
				 (const uint8_t *)t->device, t->device_len);
		if (r < 0)
			return r;
	}
	if (t->trid_len) {
		r = tsw_de48_put(de48, sizeof(de48), &de48_len, DE48_TAG_TRID,
				 (const uint8_t *)t->trid, t->trid_len);
		if (r < 0)
			return r;
	}

#define EDIT(f, l, d)                                                                              \
	(e[n++] = (struct tsw_iso_edit){                                                           \
	     .field = (f), .len = (uint16_t)(l), .data = (const uint8_t *)(d)})
	EDIT(0, 4, "0100");
	EDIT(2, sent.de2_len, sent.de2);
	EDIT(3, 6, "000000");
	EDIT(4, 12, de4);
	EDIT(7, 10, ctx->de7);
	EDIT(11, 6, de11);
	if (t->has_expiry)
		EDIT(14, 4, expiry);
	EDIT(18, 4, t->mcc);
	EDIT(22, 3, t->pos);
	EDIT(32, t->acquirer_len, t->acquirer);
	EDIT(37, 12, de37);
	EDIT(41, 8, ctx->terminal);
	EDIT(42, BENCH_MERCHANT_LEN, merchant);
	if (de48_len)
		EDIT(48, de48_len, de48);
	EDIT(49, 3, t->currency);
	if (ctx->de52_len)
		EDIT(52, ctx->de52_len, ctx->de52);
	if (ctx->de55_len)
		EDIT(55, ctx->de55_len, ctx->de55);
#undef EDIT
	r = tsw_iso_encode(p, NULL, e, n, out, cap);
	if (r < 0)
		return r;
	*ret_sent = sent;
	return r;
}
