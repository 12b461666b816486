/* The TDRC decision: (token record, request, now) -> forward or decline.
 * Order of the checks and the reasons for it: docs/decisions.md. */
#include <string.h>

#include "tsw/authz.h"
#include "tsw/luhn.h"

/* clang-format off */
static const char *const reason_rc[TSW_AUTHZ_REASON_MAX] = {
	[TSW_AUTHZ_FORWARD] = "00",
	[TSW_AUTHZ_STANDIN] = "00",
	[TSW_AUTHZ_TOKEN_UNKNOWN] = "14",
	[TSW_AUTHZ_TOKEN_DELETED] = "14",
	[TSW_AUTHZ_TOKEN_SUSPENDED] = "62",
	[TSW_AUTHZ_TOKEN_EXPIRED] = "54",
	[TSW_AUTHZ_DOMAIN_MERCHANT] = "57",
	[TSW_AUTHZ_DOMAIN_POS_MODE] = "57",
	[TSW_AUTHZ_DOMAIN_DEVICE] = "57",
	[TSW_AUTHZ_DOMAIN_REQUESTOR] = "57",
	[TSW_AUTHZ_DOMAIN_AMOUNT] = "61",
	[TSW_AUTHZ_DOMAIN_USES] = "65",
	[TSW_AUTHZ_CRYPTOGRAM] = "63",
	[TSW_AUTHZ_FORMAT] = "30",
	[TSW_AUTHZ_ISSUER_UNAVAILABLE] = "91",
	[TSW_AUTHZ_SYSTEM] = "96",
	[TSW_AUTHZ_STATE_UNAVAILABLE] = "96",
	[TSW_AUTHZ_VAULT_INTEGRITY] = "96",
	[TSW_AUTHZ_ATC_REPLAY] = "63",
	[TSW_AUTHZ_ATC_WINDOW] = "63",
	[TSW_AUTHZ_PIN_BLOCK] = "96",
};

static const char *const reason_name[TSW_AUTHZ_REASON_MAX] = {
	[TSW_AUTHZ_FORWARD] = "FORWARD",
	[TSW_AUTHZ_STANDIN] = "STANDIN",
	[TSW_AUTHZ_TOKEN_UNKNOWN] = "TOKEN_UNKNOWN",
	[TSW_AUTHZ_TOKEN_DELETED] = "TOKEN_DELETED",
	[TSW_AUTHZ_TOKEN_SUSPENDED] = "TOKEN_SUSPENDED",
	[TSW_AUTHZ_TOKEN_EXPIRED] = "TOKEN_EXPIRED",
	[TSW_AUTHZ_DOMAIN_MERCHANT] = "DOMAIN_MERCHANT",
	[TSW_AUTHZ_DOMAIN_POS_MODE] = "DOMAIN_POS_MODE",
	[TSW_AUTHZ_DOMAIN_DEVICE] = "DOMAIN_DEVICE",
	[TSW_AUTHZ_DOMAIN_REQUESTOR] = "DOMAIN_REQUESTOR",
	[TSW_AUTHZ_DOMAIN_AMOUNT] = "DOMAIN_AMOUNT",
	[TSW_AUTHZ_DOMAIN_USES] = "DOMAIN_USES",
	[TSW_AUTHZ_CRYPTOGRAM] = "CRYPTOGRAM",
	[TSW_AUTHZ_FORMAT] = "FORMAT",
	[TSW_AUTHZ_ISSUER_UNAVAILABLE] = "ISSUER_UNAVAILABLE",
	[TSW_AUTHZ_SYSTEM] = "SYSTEM",
	[TSW_AUTHZ_STATE_UNAVAILABLE] = "STATE_UNAVAILABLE",
	[TSW_AUTHZ_VAULT_INTEGRITY] = "VAULT_INTEGRITY",
	[TSW_AUTHZ_ATC_REPLAY] = "ATC_REPLAY",
	[TSW_AUTHZ_ATC_WINDOW] = "ATC_WINDOW",
	[TSW_AUTHZ_PIN_BLOCK] = "PIN_BLOCK",
};
/* clang-format on */

const char *tsw_authz_rc(enum tsw_authz_reason r)
{
	if ((unsigned)r >= TSW_AUTHZ_REASON_MAX)
		return reason_rc[TSW_AUTHZ_SYSTEM];
	return reason_rc[r];
}

const char *tsw_authz_reason_name(enum tsw_authz_reason r)
{
	if ((unsigned)r >= TSW_AUTHZ_REASON_MAX)
		return reason_name[TSW_AUTHZ_SYSTEM];
	return reason_name[r];
}

bool tsw_authz_is_decline(enum tsw_authz_reason r)
{
	return r != TSW_AUTHZ_FORWARD && r != TSW_AUTHZ_STANDIN;
}

uint16_t tsw_authz_yymm(int64_t now)
{
	/* civil-from-days (proleptic Gregorian), as in Howard Hinnant's
	 * date algorithms: exact for every day of 1970..9999 */
	int64_t days = now >= 0 ? now / 86400 : (now - 86399) / 86400;
	int64_t z = days + 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153;
	int64_t m = mp < 10 ? mp + 3 : mp - 9;
	int64_t y = yoe + era * 400 + (m <= 2);

	return (uint16_t)((y % 100) * 100 + m);
}

void tsw_authz_ctx_init(struct tsw_authz_ctx *ctx, int64_t now)
{
	ctx->now = now;
	ctx->now_yymm = tsw_authz_yymm(now);
	ctx->in_token_range = false;
	ctx->device_bound = -1;
}

bool tsw_authz_needs_device(const struct tsw_token *t, const struct tsw_authz_req *req)
{
	return t->device_required && req->msg_class == TSW_AUTHZ_CLASS_AUTH &&
	       req->device_id.ptr != NULL;
}

bool tsw_authz_needs_use(const struct tsw_token *t, const struct tsw_authz_req *req)
{
	return t->max_uses > 0 && req->msg_class == TSW_AUTHZ_CLASS_AUTH;
}

/* YYMM of a record as a number; -1 when it is not 4 digits (an expiry we
 * cannot read is treated as expired: fail closed). */
static int yymm_of(const char *s)
{
	int v = 0;

	for (int i = 0; i < 4; i++) {
		unsigned d = (unsigned)(unsigned char)s[i] - '0';

		if (d > 9)
			return -1;
		v = v * 10 + (int)d;
	}
	return v;
}

/* The strings compared here are 3..19 bytes: a plain loop beats a call
 * into libc's memcmp/strnlen. */
static size_t len_of(const char *s, size_t cap)
{
	size_t n = 0;

	while (n < cap && s[n] != '\0')
		n++;
	return n;
}

static bool str_eq(struct tsw_authz_str a, const char *b, size_t b_len)
{
	unsigned diff = 0;

	if (a.ptr == NULL || a.len != b_len)
		return false;
	for (size_t i = 0; i < b_len; i++)
		diff |= (unsigned)(a.ptr[i] ^ b[i]);
	return diff == 0;
}

static size_t trimmed_len(const char *s, size_t cap)
{
	size_t n = len_of(s, cap);

	while (n > 0 && s[n - 1] == ' ')
		n--;
	return n;
}

static enum tsw_authz_reason status_check(const struct tsw_token *t)
{
	if (t->status == TSW_TOKEN_DELETED)
		return TSW_AUTHZ_TOKEN_DELETED;
	if (t->status != TSW_TOKEN_ACTIVE || t->card_suspended)
		return TSW_AUTHZ_TOKEN_SUSPENDED;
	return TSW_AUTHZ_FORWARD;
}

static bool expired(const struct tsw_token *t, const struct tsw_authz_ctx *ctx)
{
	int exp = yymm_of(t->token_expiry);

	return exp < 0 || exp < (int)ctx->now_yymm;
}

static bool window_ok(const struct tsw_token *t, const struct tsw_authz_ctx *ctx)
{
	if (t->valid_from != 0 && ctx->now < (int64_t)t->valid_from)
		return false;
	if (t->valid_until != 0 && ctx->now > (int64_t)t->valid_until)
		return false;
	return true;
}

static bool merchant_entry_matches(const struct tsw_token_merchant *e,
				   const struct tsw_authz_req *req)
{
	size_t n = trimmed_len(e->merchant_id, sizeof(e->merchant_id));

	/* an entry with no merchant id restricts only acquirer and/or MCC */
	if (n != 0 && !str_eq(req->merchant_id, e->merchant_id, n))
		return false;
	if (e->acquirer_id[0] != '\0' && !str_eq(req->acquirer_id, e->acquirer_id,
						 len_of(e->acquirer_id, sizeof(e->acquirer_id))))
		return false;
	if (e->mcc[0] != '\0' && !str_eq(req->mcc, e->mcc, len_of(e->mcc, sizeof(e->mcc))))
		return false;
	return true;
}

static bool merchant_ok(const struct tsw_token *t, const struct tsw_authz_req *req)
{
	unsigned n = t->n_merchants;

	if (n == 0)
		return true;
	if (n > TSW_TOKEN_MERCHANTS_MAX)
		n = TSW_TOKEN_MERCHANTS_MAX;
	for (unsigned i = 0; i < n; i++)
		if (merchant_entry_matches(&t->merchants[i], req))
			return true;
	return false;
}

/* The presentment modes a token accepts (bits; 0: all). A token that
 * names a CVN is a card whose cryptogram is checked chip and contactless:
 * those two only, unless its record lists others (a mode without a
 * cryptogram must be a choice, never the default). */
static unsigned modes_of(const struct tsw_token *t)
{
	if (t->pos_modes != 0 || t->cvn == 0)
		return t->pos_modes;
	return 1u << TSW_POS_CHIP | 1u << TSW_POS_CONTACTLESS;
}

static enum tsw_authz_reason domain_checks(const struct tsw_token *t,
					   const struct tsw_authz_req *req,
					   const struct tsw_authz_ctx *ctx)
{
	if (t->trid[0] != '\0' && req->trid.ptr != NULL &&
	    !str_eq(req->trid, t->trid, len_of(t->trid, sizeof(t->trid))))
		return TSW_AUTHZ_DOMAIN_REQUESTOR;

	if (modes_of(t) != 0 && (!req->has_pos_mode || !(modes_of(t) & (1u << req->pos_mode))))
		return TSW_AUTHZ_DOMAIN_POS_MODE;

	if (!merchant_ok(t, req))
		return TSW_AUTHZ_DOMAIN_MERCHANT;

	if (t->device_required) {
		if (req->device_id.ptr == NULL)
			return TSW_AUTHZ_DOMAIN_DEVICE;
		if (ctx->device_bound < 0)
			return TSW_AUTHZ_SYSTEM;
		if (ctx->device_bound == 0)
			return TSW_AUTHZ_DOMAIN_DEVICE;
	}

	if (t->amount_limit != 0 && (!req->has_amount || req->amount > t->amount_limit))
		return TSW_AUTHZ_DOMAIN_AMOUNT;
	if (t->currency[0] != '\0' &&
	    !str_eq(req->currency, t->currency, len_of(t->currency, sizeof(t->currency))))
		return TSW_AUTHZ_DOMAIN_AMOUNT;

	return TSW_AUTHZ_FORWARD;
}

enum tsw_authz_reason tsw_authz_decide(const struct tsw_token *t, const struct tsw_token *original,
				       const struct tsw_authz_req *req,
				       const struct tsw_authz_ctx *ctx)
{
	enum tsw_authz_reason r;

	switch ((enum tsw_authz_class)req->msg_class) {
	case TSW_AUTHZ_CLASS_AUTH:
	case TSW_AUTHZ_CLASS_ADVICE:
	case TSW_AUTHZ_CLASS_REVERSAL:
		break;
	case TSW_AUTHZ_CLASS_NETWORK:
	case TSW_AUTHZ_CLASS_OTHER:
	case TSW_AUTHZ_CLASS_MAX:
	default:
		return TSW_AUTHZ_FORMAT;
	}

	/* 1. the lookup: known, Luhn-valid, inside a token BIN range */
	if (t == NULL || !ctx->in_token_range || !tsw_luhn_valid(req->token.ptr, req->token.len))
		return TSW_AUTHZ_TOKEN_UNKNOWN;
	if (t->original_token[0] != '\0' && original == NULL)
		return TSW_AUTHZ_TOKEN_UNKNOWN;

	/* reversals and advices undo or report money already moved */
	if (req->msg_class != TSW_AUTHZ_CLASS_AUTH)
		return TSW_AUTHZ_FORWARD;

	/* 2. lifecycle status: the token, then the token it was made from */
	r = status_check(t);
	if (r != TSW_AUTHZ_FORWARD)
		return r;
	if (original != NULL) {
		r = status_check(original);
		if (r != TSW_AUTHZ_FORWARD)
			return r;
	}

	/* 3. expiry, DE14, validity window, the original's expiry */
	if (expired(t, ctx))
		return TSW_AUTHZ_TOKEN_EXPIRED;
	if (req->expiry.ptr != NULL && !str_eq(req->expiry, t->token_expiry, 4))
		return TSW_AUTHZ_TOKEN_EXPIRED;
	if (!window_ok(t, ctx))
		return TSW_AUTHZ_TOKEN_EXPIRED;
	if (original != NULL && expired(original, ctx))
		return TSW_AUTHZ_TOKEN_EXPIRED;

	/* 4..8. domain restriction controls */
	return domain_checks(t, req, ctx);
}
