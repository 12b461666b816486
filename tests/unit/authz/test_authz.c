/* Decision table (DESIGN.md "Decisions and response codes"), precedence,
 * request parsing. No codec needed: messages are laid out by hand. */
#include <criterion/criterion.h>
#include <string.h>
#include <time.h>

#include "tsw/authz.h"
#include "tsw/error.h"
#include "tsw/iso8583.h"

/* 2025-07-15 12:00:00 UTC */
#define NOW 1752580800
#define NOW_YYMM 2507

#define TOKEN "4895370000000015" /* Luhn-valid */
#define TOKEN_BAD_LUHN "4895370000000016"
#define ORIGINAL "4895370000000023" /* Luhn-valid */
#define TRID "40010030273"
#define MERCHANT "SHOP0001       " /* DE42, 15, space-padded */

static void token_init(struct tsw_token *t, const char *digits)
{
	memset(t, 0, sizeof(*t));
	strcpy(t->token, digits);
	t->token_len = (uint8_t)strlen(digits);
	t->status = TSW_TOKEN_ACTIVE;
	strcpy(t->token_expiry, "2712");
	strcpy(t->pan_expiry, "2801");
	strcpy(t->trid, TRID);
}

static struct tsw_authz_str s(const char *v)
{
	return (struct tsw_authz_str){v, (uint16_t)strlen(v)};
}

static void req_init(struct tsw_authz_req *r)
{
	memset(r, 0, sizeof(*r));
	r->msg_class = TSW_AUTHZ_CLASS_AUTH;
	r->token = s(TOKEN);
	r->expiry = s("2712");
	r->has_amount = true;
	r->amount = 1000;
	r->currency = s("978");
	r->mcc = s("5411");
	r->acquirer_id = s("123456");
	r->merchant_id = s("SHOP0001"); /* parse trims trailing spaces */
	r->has_pos_mode = true;
	r->pos_mode = TSW_POS_CONTACTLESS;
}

static void ctx_init(struct tsw_authz_ctx *c)
{
	tsw_authz_ctx_init(c, NOW);
	c->in_token_range = true;
}

/* One row of the decision table: a change to the baseline token/request
 * that passes, and the reason it must produce. */
struct row {
	const char *rule;
	void (*setup)(struct tsw_token *t, struct tsw_token *orig, bool *use_orig,
		      struct tsw_authz_req *r, struct tsw_authz_ctx *c);
	bool unknown; /* decide with t == NULL */
	enum tsw_authz_reason want;
};

#define SETUP(name)                                                                                \
	static void name(struct tsw_token *t, struct tsw_token *o, bool *uo,                       \
			 struct tsw_authz_req *r, struct tsw_authz_ctx *c)
#define UNUSED (void)t, (void)o, (void)uo, (void)r, (void)c

SETUP(nothing)
{
	UNUSED;
}
SETUP(bad_luhn)
{
	UNUSED;
	r->token = s(TOKEN_BAD_LUHN);
}
SETUP(out_of_range)
{
	UNUSED;
	c->in_token_range = false;
}
SETUP(deleted)
{
	UNUSED;
	t->status = TSW_TOKEN_DELETED;
}
SETUP(suspended)
{
	UNUSED;
	t->status = TSW_TOKEN_SUSPENDED;
}
SETUP(card_suspended)
{
	UNUSED;
	t->card_suspended = 1;
}
SETUP(expired)
{
	UNUSED;
	strcpy(t->token_expiry, "2506");
}
SETUP(expires_this_month)
{
	UNUSED;
	strcpy(t->token_expiry, "2507");
	r->expiry = s("2507");
}
SETUP(expiry_unreadable)
{
	UNUSED;
	strcpy(t->token_expiry, "27x2");
}
SETUP(de14_mismatch)
{
	UNUSED;
	r->expiry = s("2711");
}
SETUP(de14_absent)
{
	UNUSED;
	r->expiry = (struct tsw_authz_str){NULL, 0};
}
SETUP(not_yet_valid)
{
	UNUSED;
	t->valid_from = NOW + 1;
}
SETUP(no_longer_valid)
{
	UNUSED;
	t->valid_until = NOW - 1;
}
SETUP(inside_window)
{
	UNUSED;
	t->valid_from = NOW - 10;
	t->valid_until = NOW + 10;
}
SETUP(other_trid)
{
	UNUSED;
	r->trid = s("40010030274");
}
SETUP(same_trid)
{
	UNUSED;
	r->trid = s(TRID);
}
SETUP(mode_not_allowed)
{
	UNUSED;
	t->pos_modes = 1u << TSW_POS_ECOMMERCE | 1u << TSW_POS_COF;
}
SETUP(mode_allowed)
{
	UNUSED;
	t->pos_modes = 1u << TSW_POS_CONTACTLESS | 1u << TSW_POS_CHIP;
}
SETUP(one_merchant)
{
	UNUSED;
	t->n_merchants = 1;
	strcpy(t->merchants[0].merchant_id, MERCHANT);
}
SETUP(other_merchant)
{
	one_merchant(t, o, uo, r, c);
	r->merchant_id = s("SHOP0002");
}
SETUP(no_merchant)
{
	one_merchant(t, o, uo, r, c);
	r->merchant_id = (struct tsw_authz_str){NULL, 0};
}
SETUP(second_merchant)
{
	one_merchant(t, o, uo, r, c);
	t->n_merchants = 2;
	strcpy(t->merchants[1].merchant_id, "SHOP0002       ");
	r->merchant_id = s("SHOP0002");
}
SETUP(acquirer_mismatch)
{
	one_merchant(t, o, uo, r, c);
	strcpy(t->merchants[0].acquirer_id, "654321");
}
SETUP(acquirer_match)
{
	one_merchant(t, o, uo, r, c);
	strcpy(t->merchants[0].acquirer_id, "123456");
}
SETUP(mcc_mismatch)
{
	one_merchant(t, o, uo, r, c);
	strcpy(t->merchants[0].mcc, "5812");
}
SETUP(mcc_only_entry_match)
{
	UNUSED;
	t->n_merchants = 1;
	strcpy(t->merchants[0].mcc, "5411");
	r->merchant_id = s("ANYSHOP");
}
SETUP(mcc_only_entry_mismatch)
{
	mcc_only_entry_match(t, o, uo, r, c);
	r->mcc = s("5999");
}
SETUP(device_missing)
{
	UNUSED;
	t->device_required = 1;
	c->device_bound = 1;
}
SETUP(device_not_bound)
{
	UNUSED;
	t->device_required = 1;
	r->device_id = s("dev-1");
	c->device_bound = 0;
}
SETUP(device_bound)
{
	UNUSED;
	t->device_required = 1;
	r->device_id = s("dev-1");
	c->device_bound = 1;
}
SETUP(device_lookup_failed)
{
	UNUSED;
	t->device_required = 1;
	r->device_id = s("dev-1");
	c->device_bound = -5;
}
SETUP(over_limit)
{
	UNUSED;
	t->amount_limit = 999;
}
SETUP(at_limit)
{
	UNUSED;
	t->amount_limit = 1000;
}
SETUP(other_currency)
{
	UNUSED;
	strcpy(t->currency, "840");
}
SETUP(same_currency)
{
	UNUSED;
	strcpy(t->currency, "978");
	t->amount_limit = 5000;
}
SETUP(no_currency_sent)
{
	UNUSED;
	strcpy(t->currency, "978");
	r->currency = (struct tsw_authz_str){NULL, 0};
}
SETUP(limited_use)
{
	UNUSED;
	t->max_uses = 1;
}
/* precedence */
SETUP(suspended_and_expired)
{
	suspended(t, o, uo, r, c);
	expired(t, o, uo, r, c);
}
SETUP(deleted_and_suspended)
{
	UNUSED;
	t->status = TSW_TOKEN_DELETED;
	t->card_suspended = 1;
}
SETUP(deleted_and_expired)
{
	deleted(t, o, uo, r, c);
	expired(t, o, uo, r, c);
}
SETUP(expired_and_wrong_merchant)
{
	other_merchant(t, o, uo, r, c);
	expired(t, o, uo, r, c);
}
SETUP(suspended_and_over_limit)
{
	suspended(t, o, uo, r, c);
	over_limit(t, o, uo, r, c);
}
SETUP(requestor_and_mode)
{
	other_trid(t, o, uo, r, c);
	mode_not_allowed(t, o, uo, r, c);
}
SETUP(mode_and_merchant)
{
	mode_not_allowed(t, o, uo, r, c);
	other_merchant(t, o, uo, r, c);
}
SETUP(merchant_and_device)
{
	other_merchant(t, o, uo, r, c);
	device_not_bound(t, o, uo, r, c);
}
SETUP(device_and_amount)
{
	device_not_bound(t, o, uo, r, c);
	over_limit(t, o, uo, r, c);
}
SETUP(bad_luhn_and_suspended)
{
	bad_luhn(t, o, uo, r, c);
	suspended(t, o, uo, r, c);
}
/* reversals and advices */
SETUP(reversal_suspended)
{
	suspended(t, o, uo, r, c);
	r->msg_class = TSW_AUTHZ_CLASS_REVERSAL;
}
SETUP(advice_suspended)
{
	suspended(t, o, uo, r, c);
	r->msg_class = TSW_AUTHZ_CLASS_ADVICE;
}
SETUP(reversal_deleted_expired_over_limit)
{
	deleted_and_expired(t, o, uo, r, c);
	over_limit(t, o, uo, r, c);
	r->msg_class = TSW_AUTHZ_CLASS_REVERSAL;
}
SETUP(reversal_bad_luhn)
{
	bad_luhn(t, o, uo, r, c);
	r->msg_class = TSW_AUTHZ_CLASS_REVERSAL;
}
SETUP(reversal_out_of_range)
{
	UNUSED;
	c->in_token_range = false;
	r->msg_class = TSW_AUTHZ_CLASS_REVERSAL;
}
SETUP(advice_unknown)
{
	UNUSED;
	r->msg_class = TSW_AUTHZ_CLASS_ADVICE;
}
SETUP(network)
{
	UNUSED;
	r->msg_class = TSW_AUTHZ_CLASS_NETWORK;
}
SETUP(other_class)
{
	UNUSED;
	r->msg_class = TSW_AUTHZ_CLASS_OTHER;
}
/* token-for-token */
SETUP(t4t_ok)
{
	UNUSED;
	strcpy(t->original_token, ORIGINAL);
	token_init(o, ORIGINAL);
	*uo = true;
}
SETUP(t4t_original_missing)
{
	UNUSED;
	strcpy(t->original_token, ORIGINAL);
}
SETUP(t4t_original_suspended)
{
	t4t_ok(t, o, uo, r, c);
	o->status = TSW_TOKEN_SUSPENDED;
}
SETUP(t4t_original_card_suspended)
{
	t4t_ok(t, o, uo, r, c);
	o->card_suspended = 1;
}
SETUP(t4t_original_deleted)
{
	t4t_ok(t, o, uo, r, c);
	o->status = TSW_TOKEN_DELETED;
}
SETUP(t4t_original_expired)
{
	t4t_ok(t, o, uo, r, c);
	strcpy(o->token_expiry, "2412");
}
SETUP(t4t_original_deleted_own_expired)
{
	t4t_original_deleted(t, o, uo, r, c);
	expired(t, o, uo, r, c);
}
SETUP(t4t_reversal_original_suspended)
{
	t4t_original_suspended(t, o, uo, r, c);
	r->msg_class = TSW_AUTHZ_CLASS_REVERSAL;
}
SETUP(t4t_reversal_original_missing)
{
	t4t_original_missing(t, o, uo, r, c);
	r->msg_class = TSW_AUTHZ_CLASS_REVERSAL;
}

static const struct row rows[] = {
    {"ordinary token forwarded", nothing, false, TSW_AUTHZ_FORWARD},
    {"unknown token", nothing, true, TSW_AUTHZ_TOKEN_UNKNOWN},
    {"not Luhn-valid", bad_luhn, false, TSW_AUTHZ_TOKEN_UNKNOWN},
    {"outside every token BIN range", out_of_range, false, TSW_AUTHZ_TOKEN_UNKNOWN},
    {"deleted", deleted, false, TSW_AUTHZ_TOKEN_DELETED},
    {"suspended", suspended, false, TSW_AUTHZ_TOKEN_SUSPENDED},
    {"card suspended", card_suspended, false, TSW_AUTHZ_TOKEN_SUSPENDED},
    {"expired", expired, false, TSW_AUTHZ_TOKEN_EXPIRED},
    {"valid through its expiry month", expires_this_month, false, TSW_AUTHZ_FORWARD},
    {"unreadable expiry fails closed", expiry_unreadable, false, TSW_AUTHZ_TOKEN_EXPIRED},
    {"DE14 not the token expiry", de14_mismatch, false, TSW_AUTHZ_TOKEN_EXPIRED},
    {"DE14 absent", de14_absent, false, TSW_AUTHZ_FORWARD},
    {"before validity window", not_yet_valid, false, TSW_AUTHZ_TOKEN_EXPIRED},
    {"after validity window", no_longer_valid, false, TSW_AUTHZ_TOKEN_EXPIRED},
    {"inside validity window", inside_window, false, TSW_AUTHZ_FORWARD},
    {"requestor mismatch", other_trid, false, TSW_AUTHZ_DOMAIN_REQUESTOR},
    {"requestor match", same_trid, false, TSW_AUTHZ_FORWARD},
    {"POS mode not allowed", mode_not_allowed, false, TSW_AUTHZ_DOMAIN_POS_MODE},
    {"POS mode allowed", mode_allowed, false, TSW_AUTHZ_FORWARD},
    {"merchant bound, same DE42", one_merchant, false, TSW_AUTHZ_FORWARD},
    {"merchant bound, other DE42", other_merchant, false, TSW_AUTHZ_DOMAIN_MERCHANT},
    {"merchant bound, DE42 absent", no_merchant, false, TSW_AUTHZ_DOMAIN_MERCHANT},
    {"second merchant entry matches", second_merchant, false, TSW_AUTHZ_FORWARD},
    {"DE32 not the merchant's acquirer", acquirer_mismatch, false, TSW_AUTHZ_DOMAIN_MERCHANT},
    {"DE32 the merchant's acquirer", acquirer_match, false, TSW_AUTHZ_FORWARD},
    {"DE18 not the merchant's MCC", mcc_mismatch, false, TSW_AUTHZ_DOMAIN_MERCHANT},
    {"MCC-only entry, same DE18", mcc_only_entry_match, false, TSW_AUTHZ_FORWARD},
    {"MCC-only entry, other DE18", mcc_only_entry_mismatch, false, TSW_AUTHZ_DOMAIN_MERCHANT},
    {"device required, no device id", device_missing, false, TSW_AUTHZ_DOMAIN_DEVICE},
    {"device not bound", device_not_bound, false, TSW_AUTHZ_DOMAIN_DEVICE},
    {"device bound", device_bound, false, TSW_AUTHZ_FORWARD},
    {"device lookup failed", device_lookup_failed, false, TSW_AUTHZ_SYSTEM},
    {"amount above limit", over_limit, false, TSW_AUTHZ_DOMAIN_AMOUNT},
    {"amount at limit", at_limit, false, TSW_AUTHZ_FORWARD},
    {"currency not the token's", other_currency, false, TSW_AUTHZ_DOMAIN_AMOUNT},
    {"currency the token's", same_currency, false, TSW_AUTHZ_FORWARD},
    {"currency restricted, DE49 absent", no_currency_sent, false, TSW_AUTHZ_DOMAIN_AMOUNT},
    {"limited use is forwarded (state decides)", limited_use, false, TSW_AUTHZ_FORWARD},
    {"suspended beats expired", suspended_and_expired, false, TSW_AUTHZ_TOKEN_SUSPENDED},
    {"deleted beats suspended", deleted_and_suspended, false, TSW_AUTHZ_TOKEN_DELETED},
    {"deleted beats expired", deleted_and_expired, false, TSW_AUTHZ_TOKEN_DELETED},
    {"expired beats merchant", expired_and_wrong_merchant, false, TSW_AUTHZ_TOKEN_EXPIRED},
    {"suspended beats amount", suspended_and_over_limit, false, TSW_AUTHZ_TOKEN_SUSPENDED},
    {"requestor beats POS mode", requestor_and_mode, false, TSW_AUTHZ_DOMAIN_REQUESTOR},
    {"POS mode beats merchant", mode_and_merchant, false, TSW_AUTHZ_DOMAIN_POS_MODE},
    {"merchant beats device", merchant_and_device, false, TSW_AUTHZ_DOMAIN_MERCHANT},
    {"device beats amount", device_and_amount, false, TSW_AUTHZ_DOMAIN_DEVICE},
    {"unknown beats suspended", bad_luhn_and_suspended, false, TSW_AUTHZ_TOKEN_UNKNOWN},
    {"reversal of a suspended token forwarded", reversal_suspended, false, TSW_AUTHZ_FORWARD},
    {"advice of a suspended token forwarded", advice_suspended, false, TSW_AUTHZ_FORWARD},
    {"reversal skips status, expiry and domain", reversal_deleted_expired_over_limit, false,
     TSW_AUTHZ_FORWARD},
    {"reversal of a non-Luhn token declined", reversal_bad_luhn, false, TSW_AUTHZ_TOKEN_UNKNOWN},
    {"reversal outside token ranges declined", reversal_out_of_range, false,
     TSW_AUTHZ_TOKEN_UNKNOWN},
    {"advice of an unknown token declined", advice_unknown, true, TSW_AUTHZ_TOKEN_UNKNOWN},
    {"network management is not decided", network, false, TSW_AUTHZ_FORMAT},
    {"other MTI is not decided", other_class, false, TSW_AUTHZ_FORMAT},
    {"token-for-token, original fine", t4t_ok, false, TSW_AUTHZ_FORWARD},
    {"token-for-token, original not found", t4t_original_missing, false, TSW_AUTHZ_TOKEN_UNKNOWN},
    {"token-for-token, original suspended", t4t_original_suspended, false,
     TSW_AUTHZ_TOKEN_SUSPENDED},
    {"token-for-token, original's card suspended", t4t_original_card_suspended, false,
     TSW_AUTHZ_TOKEN_SUSPENDED},
    {"token-for-token, original deleted", t4t_original_deleted, false, TSW_AUTHZ_TOKEN_DELETED},
    {"token-for-token, original expired", t4t_original_expired, false, TSW_AUTHZ_TOKEN_EXPIRED},
    {"original deleted beats own expiry", t4t_original_deleted_own_expired, false,
     TSW_AUTHZ_TOKEN_DELETED},
    {"reversal of token-for-token, original suspended", t4t_reversal_original_suspended, false,
     TSW_AUTHZ_FORWARD},
    {"reversal of token-for-token, original not found", t4t_reversal_original_missing, false,
     TSW_AUTHZ_TOKEN_UNKNOWN},
};

Test(decide, table_of_rows_and_precedence)
{
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		const struct row *row = &rows[i];
		struct tsw_token t, orig;
		struct tsw_authz_req req;
		struct tsw_authz_ctx ctx;
		bool use_orig = false;
		enum tsw_authz_reason got;

		token_init(&t, TOKEN);
		memset(&orig, 0, sizeof(orig));
		req_init(&req);
		ctx_init(&ctx);
		row->setup(&t, &orig, &use_orig, &req, &ctx);
		got =
		    tsw_authz_decide(row->unknown ? NULL : &t, use_orig ? &orig : NULL, &req, &ctx);
		cr_expect_eq(got, row->want, "%s: got %s, want %s", row->rule,
			     tsw_authz_reason_name(got), tsw_authz_reason_name(row->want));
	}
}

Test(decide, baseline_rows_are_not_vacuous)
{
	/* every decline row must flip to FORWARD on the baseline: guards
	 * against a setup() that does nothing */
	struct tsw_token t;
	struct tsw_authz_req req;
	struct tsw_authz_ctx ctx;

	token_init(&t, TOKEN);
	req_init(&req);
	ctx_init(&ctx);
	cr_assert_eq(tsw_authz_decide(&t, NULL, &req, &ctx), TSW_AUTHZ_FORWARD);
	ctx.in_token_range = false;
	cr_assert_eq(tsw_authz_decide(&t, NULL, &req, &ctx), TSW_AUTHZ_TOKEN_UNKNOWN);
}

Test(decide, needs_use_only_for_authorizations_of_limited_tokens)
{
	struct tsw_token t;
	struct tsw_authz_req req;

	token_init(&t, TOKEN);
	req_init(&req);
	cr_assert_not(tsw_authz_needs_use(&t, &req));
	t.max_uses = 3;
	cr_assert(tsw_authz_needs_use(&t, &req));
	req.msg_class = TSW_AUTHZ_CLASS_REVERSAL;
	cr_assert_not(tsw_authz_needs_use(&t, &req), "a reversal consumes no use");
}

Test(decide, needs_device_only_with_a_device_id)
{
	struct tsw_token t;
	struct tsw_authz_req req;

	token_init(&t, TOKEN);
	req_init(&req);
	t.device_required = 1;
	cr_assert_not(tsw_authz_needs_device(&t, &req));
	req.device_id = s("dev-1");
	cr_assert(tsw_authz_needs_device(&t, &req));
	t.device_required = 0;
	cr_assert_not(tsw_authz_needs_device(&t, &req));
}

Test(reason, codes_and_names_match_design_table)
{
	static const struct {
		enum tsw_authz_reason r;
		const char *rc, *name;
	} want[] = {
	    {TSW_AUTHZ_FORWARD, "00", "FORWARD"},
	    {TSW_AUTHZ_STANDIN, "00", "STANDIN"},
	    {TSW_AUTHZ_TOKEN_UNKNOWN, "14", "TOKEN_UNKNOWN"},
	    {TSW_AUTHZ_TOKEN_DELETED, "14", "TOKEN_DELETED"},
	    {TSW_AUTHZ_TOKEN_SUSPENDED, "62", "TOKEN_SUSPENDED"},
	    {TSW_AUTHZ_TOKEN_EXPIRED, "54", "TOKEN_EXPIRED"},
	    {TSW_AUTHZ_DOMAIN_MERCHANT, "57", "DOMAIN_MERCHANT"},
	    {TSW_AUTHZ_DOMAIN_POS_MODE, "57", "DOMAIN_POS_MODE"},
	    {TSW_AUTHZ_DOMAIN_DEVICE, "57", "DOMAIN_DEVICE"},
	    {TSW_AUTHZ_DOMAIN_REQUESTOR, "57", "DOMAIN_REQUESTOR"},
	    {TSW_AUTHZ_DOMAIN_AMOUNT, "61", "DOMAIN_AMOUNT"},
	    {TSW_AUTHZ_DOMAIN_USES, "65", "DOMAIN_USES"},
	    {TSW_AUTHZ_CRYPTOGRAM, "63", "CRYPTOGRAM"},
	    {TSW_AUTHZ_FORMAT, "30", "FORMAT"},
	    {TSW_AUTHZ_ISSUER_UNAVAILABLE, "91", "ISSUER_UNAVAILABLE"},
	    {TSW_AUTHZ_SYSTEM, "96", "SYSTEM"},
	    {TSW_AUTHZ_STATE_UNAVAILABLE, "96", "STATE_UNAVAILABLE"},
	    {TSW_AUTHZ_VAULT_INTEGRITY, "96", "VAULT_INTEGRITY"},
	    {TSW_AUTHZ_ATC_REPLAY, "63", "ATC_REPLAY"},
	    {TSW_AUTHZ_ATC_WINDOW, "63", "ATC_WINDOW"},
	    {TSW_AUTHZ_PIN_BLOCK, "96", "PIN_BLOCK"},
	};

	cr_assert_eq(sizeof(want) / sizeof(want[0]), TSW_AUTHZ_REASON_MAX);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		cr_expect_str_eq(tsw_authz_rc(want[i].r), want[i].rc);
		cr_expect_str_eq(tsw_authz_reason_name(want[i].r), want[i].name);
	}
	cr_expect_str_eq(tsw_authz_rc(TSW_AUTHZ_REASON_MAX), "96");
	cr_expect_str_eq(tsw_authz_reason_name((enum tsw_authz_reason)200), "SYSTEM");
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		cr_expect_eq(tsw_authz_is_decline(want[i].r),
			     want[i].r != TSW_AUTHZ_FORWARD && want[i].r != TSW_AUTHZ_STANDIN, "%s",
			     want[i].name);
}

Test(yymm, matches_gmtime_across_month_and_year_edges)
{
	static const int64_t times[] = {
	    0,
	    951782400 /* 2000-02-29 */,
	    951868799,
	    1704067199 /* 2023-12-31 23:59:59 */,
	    1704067200,
	    NOW,
	    4102444800 /* 2100-01-01 */,
	};

	for (size_t i = 0; i < sizeof(times) / sizeof(times[0]); i++) {
		time_t tt = (time_t)times[i];
		struct tm tm;

		gmtime_r(&tt, &tm);
		cr_expect_eq(tsw_authz_yymm(times[i]), (tm.tm_year % 100) * 100 + tm.tm_mon + 1,
			     "t=%lld", (long long)times[i]);
	}
	/* a day-by-day sweep over four years */
	for (int64_t t = 1700000000; t < 1700000000 + 4 * 366 * 86400LL; t += 86400 - 7) {
		time_t tt = (time_t)t;
		struct tm tm;

		gmtime_r(&tt, &tm);
		cr_assert_eq(tsw_authz_yymm(t), (tm.tm_year % 100) * 100 + tm.tm_mon + 1);
	}
}

Test(class, mti_to_class)
{
	static const struct {
		const char *mti;
		enum tsw_authz_class c;
	} cases[] = {
	    {"0100", TSW_AUTHZ_CLASS_AUTH},	{"0101", TSW_AUTHZ_CLASS_AUTH},
	    {"0200", TSW_AUTHZ_CLASS_AUTH},	{"0120", TSW_AUTHZ_CLASS_ADVICE},
	    {"0220", TSW_AUTHZ_CLASS_ADVICE},	{"0400", TSW_AUTHZ_CLASS_REVERSAL},
	    {"0420", TSW_AUTHZ_CLASS_REVERSAL}, {"0421", TSW_AUTHZ_CLASS_REVERSAL},
	    {"0800", TSW_AUTHZ_CLASS_NETWORK},	{"0110", TSW_AUTHZ_CLASS_OTHER},
	    {"0410", TSW_AUTHZ_CLASS_OTHER},	{"0300", TSW_AUTHZ_CLASS_OTHER},
	    {"1100", TSW_AUTHZ_CLASS_OTHER},	{"0102", TSW_AUTHZ_CLASS_OTHER},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_expect_eq(tsw_authz_class_of(cases[i].mti), cases[i].c, "%s", cases[i].mti);
}

/* ---- parse: messages laid out by hand (views into one buffer) ---- */

struct fv {
	unsigned f;
	const char *v;
};

struct built {
	uint8_t buf[512];
	struct tsw_iso_msg m;
};

static void build(struct built *b, const char *mti, const struct fv *fields, size_t n)
{
	size_t off = 0;

	memset(b, 0, sizeof(*b));
	memcpy(b->m.mti, mti, 4);
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(fields[i].v);
		unsigned f = fields[i].f;

		cr_assert_lt(off + len, sizeof(b->buf));
		memcpy(b->buf + off, fields[i].v, len);
		b->m.f[f].off = (uint16_t)off;
		b->m.f[f].len = (uint16_t)len;
		b->m.bitmap[(f - 1) / 64] |= 1ull << (63 - (f - 1) % 64);
		off += len;
	}
	b->m.buf = b->buf;
	b->m.len = (uint32_t)off;
}

#define AUTH_FIELDS(de2, de4, de22, de48)                                                          \
	{2, de2}, {3, "000000"}, {4, de4}, {14, "2712"}, {18, "5411"}, {22, de22}, {32, "123456"}, \
	    {42, MERCHANT}, {48, de48},                                                            \
	{                                                                                          \
		49, "978"                                                                          \
	}

Test(parse, full_authorization)
{
	const struct fv f[] = {AUTH_FIELDS(TOKEN, "000000001234", "071",
					   "1005dev-1"
					   "1104abcd"
					   "12"
					   "11" TRID "9903xyz"),
			       {55, "\x9f\x36\x02\x00\x01"}};
	struct built b;
	struct tsw_authz_req r;

	build(&b, "0100", f, sizeof(f) / sizeof(f[0]));
	cr_assert_eq(tsw_authz_parse(&b.m, &r), 0);
	cr_expect_eq(r.msg_class, TSW_AUTHZ_CLASS_AUTH);
	cr_expect_eq(r.token.len, 16);
	cr_expect_eq(memcmp(r.token.ptr, TOKEN, 16), 0);
	cr_expect(r.has_amount);
	cr_expect_eq(r.amount, 1234);
	cr_expect(r.has_pos_mode);
	cr_expect_eq(r.pos_mode, TSW_POS_CONTACTLESS);
	cr_expect_eq(r.merchant_id.len, 8, "DE42 trailing spaces trimmed");
	cr_expect_eq(r.device_id.len, 5);
	cr_expect_eq(memcmp(r.device_id.ptr, "dev-1", 5), 0);
	cr_expect_eq(r.cryptogram.len, 4);
	cr_expect_eq(r.trid.len, 11);
	cr_expect_eq(memcmp(r.trid.ptr, TRID, 11), 0);
	cr_expect_eq(r.expiry.len, 4);
	cr_expect_eq(r.currency.len, 3);
	cr_expect_eq(r.mcc.len, 4);
	cr_expect_eq(r.acquirer_id.len, 6);
	cr_expect(r.has_chip_data);
	cr_expect(r.proc_code.ptr != NULL);
}

Test(parse, entry_modes_map_to_pos_modes)
{
	static const struct {
		const char *de22;
		int mode; /* -1: FORMAT */
	} cases[] = {
	    {"011", TSW_POS_MANUAL},
	    {"021", TSW_POS_MAGSTRIPE},
	    {"901", TSW_POS_MAGSTRIPE},
	    {"051", TSW_POS_CHIP},
	    {"071", TSW_POS_CONTACTLESS},
	    {"911", TSW_POS_CONTACTLESS},
	    {"101", TSW_POS_COF},
	    {"812", TSW_POS_ECOMMERCE},
	    {"001", -1},
	    {"031", -1},
	    {"991", -1},
	    {"0a1", -1},
	    {"0", -1},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct fv f[] = {AUTH_FIELDS(TOKEN, "000000001000", cases[i].de22, "")};
		struct built b;
		struct tsw_authz_req r;
		int rc;

		build(&b, "0100", f, sizeof(f) / sizeof(f[0]));
		rc = tsw_authz_parse(&b.m, &r);
		if (cases[i].mode < 0) {
			cr_expect_lt(rc, 0, "DE22 %s must be FORMAT", cases[i].de22);
		} else {
			cr_expect_eq(rc, 0, "DE22 %s", cases[i].de22);
			cr_expect_eq(r.pos_mode, cases[i].mode, "DE22 %s", cases[i].de22);
		}
	}
}

/* Bad requests: each must fail to parse (a FORMAT decline, never a
 * forward), and leave the output untouched. */
struct bad {
	const char *rule;
	const char *mti;
	struct fv f[12];
	size_t n;
	int want;
};

static const struct bad bads[] = {
    {"missing DE2",
     "0100",
     {{3, "000000"}, {4, "000000001000"}, {22, "071"}, {42, MERCHANT}},
     4,
     -TSW_E_BAD_INPUT},
    {"DE2 too short",
     "0100",
     {AUTH_FIELDS("489537000001", "000000001000", "071", "")},
     10,
     -TSW_E_BAD_INPUT},
    {"DE2 too long",
     "0100",
     {AUTH_FIELDS("48953700000000000001", "000000001000", "071", "")},
     10,
     -TSW_E_BAD_INPUT},
    {"DE2 not digits",
     "0100",
     {AUTH_FIELDS("48953700000000D5", "000000001000", "071", "")},
     10,
     -TSW_E_NOT_NUMERIC},
    {"DE22 absent",
     "0100",
     {{2, TOKEN}, {3, "000000"}, {4, "000000001000"}, {42, MERCHANT}},
     4,
     -TSW_E_BAD_INPUT},
    {"DE22 unknown code",
     "0100",
     {AUTH_FIELDS(TOKEN, "000000001000", "031", "")},
     10,
     -TSW_E_BAD_INPUT},
    {"DE4 non-numeric",
     "0100",
     {AUTH_FIELDS(TOKEN, "0000000010O0", "071", "")},
     10,
     -TSW_E_NOT_NUMERIC},
    {"DE4 absent", "0100", {{2, TOKEN}, {3, "000000"}, {22, "071"}}, 3, -TSW_E_BAD_INPUT},
    {"DE48 length past the end",
     "0100",
     {AUTH_FIELDS(TOKEN, "000000001000", "071", "1009dev")},
     10,
     -TSW_E_BAD_TLV},
    {"DE48 tag not digits",
     "0100",
     {AUTH_FIELDS(TOKEN, "000000001000", "071", "1x03dev")},
     10,
     -TSW_E_BAD_TLV},
    {"DE48 truncated header",
     "0100",
     {AUTH_FIELDS(TOKEN, "000000001000", "071", "1003dev10")},
     10,
     -TSW_E_BAD_TLV},
    {"DE48 TRID not 11 digits",
     "0100",
     {AUTH_FIELDS(TOKEN, "000000001000", "071", "1205abcde")},
     10,
     -TSW_E_BAD_TLV},
    {"DE49 not digits",
     "0200",
     {{2, TOKEN}, {4, "000000001000"}, {22, "051"}, {49, "EUR"}},
     4,
     -TSW_E_NOT_NUMERIC},
    {"DE14 wrong length",
     "0100",
     {{2, TOKEN}, {4, "000000001000"}, {22, "051"}, {14, "271"}},
     4,
     -TSW_E_BAD_INPUT},
    {"reversal without DE2", "0400", {{4, "000000001000"}}, 1, -TSW_E_BAD_INPUT},
    {"advice without DE4", "0120", {{2, TOKEN}}, 1, -TSW_E_BAD_INPUT},
    {"response MTI from the acquirer",
     "0110",
     {{2, TOKEN}, {4, "000000001000"}},
     2,
     -TSW_E_BAD_INPUT},
};

Test(parse, bad_requests_are_format_errors)
{
	for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
		struct built b;
		struct tsw_authz_req r;

		memset(&r, 0xa5, sizeof(r));
		build(&b, bads[i].mti, bads[i].f, bads[i].n);
		cr_expect_eq(tsw_authz_parse(&b.m, &r), bads[i].want, "%s", bads[i].rule);
		cr_expect_eq(r.msg_class, 0xa5, "%s: output touched on failure", bads[i].rule);
	}
}

Test(parse, reversal_and_advice_need_only_de2_and_de4)
{
	static const char *const mtis[] = {"0400", "0420", "0120"};

	for (size_t i = 0; i < 3; i++) {
		/* DE22 unknown and DE48 broken: ignored, not FORMAT */
		const struct fv f[] = {{2, TOKEN}, {4, "000000005000"}, {22, "031"}, {48, "10"}};
		struct built b;
		struct tsw_authz_req r;

		build(&b, mtis[i], f, 2);
		cr_assert_eq(tsw_authz_parse(&b.m, &r), 0, "%s minimal", mtis[i]);
		cr_expect_eq(r.amount, 5000);
		cr_expect_not(r.has_pos_mode);
		build(&b, mtis[i], f, 4);
		cr_assert_eq(tsw_authz_parse(&b.m, &r), 0, "%s with broken optional fields",
			     mtis[i]);
		cr_expect_not(r.has_pos_mode);
		cr_expect_null(r.device_id.ptr);
		cr_expect_neq(r.msg_class, TSW_AUTHZ_CLASS_AUTH);
	}
}

Test(parse, network_management_needs_nothing)
{
	struct built b;
	struct tsw_authz_req r;
	const struct fv f[] = {{70, "301"}};

	build(&b, "0800", f, 1);
	cr_assert_eq(tsw_authz_parse(&b.m, &r), 0);
	cr_expect_eq(r.msg_class, TSW_AUTHZ_CLASS_NETWORK);
}

Test(parse, parsed_request_decides_end_to_end)
{
	const struct fv f[] = {AUTH_FIELDS(TOKEN, "000000001000", "071",
					   "12"
					   "11" TRID)};
	struct built b;
	struct tsw_authz_req r;
	struct tsw_token t;
	struct tsw_authz_ctx c;

	build(&b, "0100", f, sizeof(f) / sizeof(f[0]));
	cr_assert_eq(tsw_authz_parse(&b.m, &r), 0);
	token_init(&t, TOKEN);
	t.n_merchants = 1;
	strcpy(t.merchants[0].merchant_id, MERCHANT);
	strcpy(t.merchants[0].acquirer_id, "123456");
	strcpy(t.merchants[0].mcc, "5411");
	t.pos_modes = 1u << TSW_POS_CONTACTLESS;
	t.amount_limit = 1000;
	strcpy(t.currency, "978");
	ctx_init(&c);
	cr_expect_eq(tsw_authz_decide(&t, NULL, &r, &c), TSW_AUTHZ_FORWARD);
	t.amount_limit = 999;
	cr_expect_eq(tsw_authz_decide(&t, NULL, &r, &c), TSW_AUTHZ_DOMAIN_AMOUNT);
}
