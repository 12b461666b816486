/* Authorization decisions: token domain restriction controls.
 *
 * tsw_authz_parse() turns a decoded ISO 8583 request into plain fields;
 * tsw_authz_decide() is a pure function of (token record, request, now)
 * that says forward or decline with the reason. Limited-use counts and the
 * last ATC per token live in the switch's own state environment
 * (include/tsw/state.h). DESIGN.md "Decisions and response codes" is the
 * table this implements; docs/decisions.md gives the order of the checks
 * and why.
 *
 * Typical use in a worker (no allocation, no lock, no I/O):
 *
 *	struct tsw_authz_req req;
 *	if (tsw_authz_parse(&msg, &req) < 0)            -> decline FORMAT (30)
 *	lookup req.token in the vault (t, and t->original_token if set)
 *	tsw_authz_ctx_init(&ctx, now_unix_s);
 *	ctx.in_token_range = tsw_vault_in_token_range(v, req.token.ptr, req.token.len);
 *	if (t && tsw_authz_needs_device(t, &req))
 *		ctx.device_bound = tsw_vault_device_bound(...)  (1, 0 or <0)
 *	r = tsw_authz_decide(t_or_NULL, original_or_NULL, &req, &ctx);
 *	if (r == TSW_AUTHZ_FORWARD && tsw_authz_needs_use(t, &req))
 *		tsw_state_reserve(...)  (-TSW_E_FULL -> TSW_AUTHZ_DOMAIN_USES)
 */
#ifndef TSW_AUTHZ_H
#define TSW_AUTHZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tsw/token.h"

struct tsw_iso_msg;

/* Outcome reasons, each with its DE39 and DE44 text (tsw_authz_rc(),
 * tsw_authz_reason_name()). TSW_AUTHZ_FORWARD and TSW_AUTHZ_STANDIN are
 * not declines (tsw_authz_is_decline()). */
enum tsw_authz_reason {
	TSW_AUTHZ_FORWARD,
	TSW_AUTHZ_STANDIN,	      /* 00: the switch approved for an unavailable issuer */
	TSW_AUTHZ_TOKEN_UNKNOWN,      /* 14 */
	TSW_AUTHZ_TOKEN_DELETED,      /* 14 */
	TSW_AUTHZ_TOKEN_SUSPENDED,    /* 62 */
	TSW_AUTHZ_TOKEN_EXPIRED,      /* 54 */
	TSW_AUTHZ_DOMAIN_MERCHANT,    /* 57 */
	TSW_AUTHZ_DOMAIN_POS_MODE,    /* 57 */
	TSW_AUTHZ_DOMAIN_DEVICE,      /* 57 */
	TSW_AUTHZ_DOMAIN_REQUESTOR,   /* 57 */
	TSW_AUTHZ_DOMAIN_AMOUNT,      /* 61 */
	TSW_AUTHZ_DOMAIN_USES,	      /* 65 */
	TSW_AUTHZ_CRYPTOGRAM,	      /* 63 */
	TSW_AUTHZ_FORMAT,	      /* 30 */
	TSW_AUTHZ_ISSUER_UNAVAILABLE, /* 91 */
	TSW_AUTHZ_SYSTEM,	      /* 96 */
	TSW_AUTHZ_STATE_UNAVAILABLE,  /* 96: the state cannot record a limited use */
	TSW_AUTHZ_VAULT_INTEGRITY,    /* 96: the token's vault record fails authentication */
	TSW_AUTHZ_ATC_REPLAY, /* 63: the cryptogram's counter at or below the last accepted */
	TSW_AUTHZ_ATC_WINDOW, /* 63: ... or more than cryptogram.atc_window above it */
	TSW_AUTHZ_PIN_BLOCK,  /* 96: DE52 cannot be translated for the issuer */
	TSW_AUTHZ_REASON_MAX
};

/* "14", "62", ...; "00" for FORWARD; "96" for a value out of range.
 * Static strings, never NULL. */
const char *tsw_authz_rc(enum tsw_authz_reason r);
/* "TOKEN_UNKNOWN", ... as sent in DE44; "FORWARD" for FORWARD; "SYSTEM"
 * for a value out of range. Static strings, never NULL. */
const char *tsw_authz_reason_name(enum tsw_authz_reason r);
/* False for FORWARD and STANDIN (their DE39 is 00), true for every
 * reason that declines (and for a value out of range: SYSTEM). */
bool tsw_authz_is_decline(enum tsw_authz_reason r);

/* What kind of message a request is, from its MTI (version digit 0,
 * origin digit 0 or 1: repeats are classed like the original). */
enum tsw_authz_class {
	TSW_AUTHZ_CLASS_AUTH,	  /* x100, x200 requests (0100, 0101, 0200, 0201) */
	TSW_AUTHZ_CLASS_ADVICE,	  /* 0120, 0121, 0220, 0221 */
	TSW_AUTHZ_CLASS_REVERSAL, /* 0400, 0401, 0420, 0421 */
	TSW_AUTHZ_CLASS_NETWORK,  /* 0800, 0801: answered by the engine, never decided */
	TSW_AUTHZ_CLASS_OTHER,	  /* anything else (responses, 0300, ...) */
	TSW_AUTHZ_CLASS_MAX
};

/* Maps a 4-character MTI to its class. Never fails (OTHER). */
enum tsw_authz_class tsw_authz_class_of(const char mti[4]);

/* A field value inside the message buffer: ptr == NULL (len 0) when the
 * field is absent. Not NUL-terminated. */
struct tsw_authz_str {
	const char *ptr;
	uint16_t len;
};

/* DE48 subelement tags read from the acquirer (DESIGN.md). */
#define TSW_DE48_DEVICE_ID 10
#define TSW_DE48_CRYPTOGRAM 11
#define TSW_DE48_TRID 12

/* The fields the checks need, parsed from one request. Every
 * tsw_authz_str points into the buffer of the tsw_iso_msg it was parsed
 * from (m->buf) and is valid as long as that buffer is unchanged. */
struct tsw_authz_req {
	uint8_t msg_class;		  /* enum tsw_authz_class */
	uint8_t pos_mode;		  /* enum tsw_pos_mode, valid when has_pos_mode */
	bool has_pos_mode;		  /* DE22 present with a known PAN entry mode */
	bool has_amount;		  /* DE4 present */
	bool has_chip_data;		  /* DE55 present */
	uint64_t amount;		  /* DE4, minor units */
	struct tsw_authz_str token;	  /* DE2, 13-19 digits (always set on success) */
	struct tsw_authz_str expiry;	  /* DE14, YYMM (4 digits) */
	struct tsw_authz_str proc_code;	  /* DE3 */
	struct tsw_authz_str currency;	  /* DE49, 3 digits */
	struct tsw_authz_str mcc;	  /* DE18, 4 digits */
	struct tsw_authz_str acquirer_id; /* DE32 */
	struct tsw_authz_str merchant_id; /* DE42, trailing spaces trimmed */
	struct tsw_authz_str device_id;	  /* DE48 tag 10 */
	struct tsw_authz_str cryptogram;  /* DE48 tag 11 */
	struct tsw_authz_str trid;	  /* DE48 tag 12, 11 digits */
	struct tsw_authz_str chip_data;	  /* DE55 (opaque BER-TLV) */
};

/* Parses the request fields of a decoded message into *ret_req.
 *
 * Every class needs DE2 (13-19 digits) except NETWORK, which needs
 * nothing. AUTH, ADVICE and REVERSAL need DE4 (12 digits). AUTH also needs
 * DE22 with a known PAN entry mode (first two digits: 01 manual, 02/90
 * magstripe, 05 chip, 07/91 contactless, 10 card-on-file, 81 e-commerce),
 * well-formed DE48 subelements (tag 12, when present, 11 digits), and
 * DE14/DE18/DE49, when present, as 4/4/3 digits. ADVICE and REVERSAL read
 * DE22, DE48 and the other optional fields when they are well formed and
 * ignore them otherwise (they are forwarded as sent).
 *
 * Returns 0, or (each meaning a TSW_AUTHZ_FORMAT decline):
 * -TSW_E_BAD_INPUT  a required field is missing, DE2 has the wrong length,
 *                   DE22 holds an unknown entry mode, or the class is OTHER;
 * -TSW_E_NOT_NUMERIC a digit field holds something else;
 * -TSW_E_BAD_TLV    DE48 subelements are malformed.
 * *ret_req is untouched on failure. Pure: reads m and m->buf only. */
int tsw_authz_parse(const struct tsw_iso_msg *m, struct tsw_authz_req *ret_req);

/* What the decision needs besides the token and the request. */
struct tsw_authz_ctx {
	int64_t now;	     /* unix seconds (valid_from/valid_until) */
	uint16_t now_yymm;   /* current UTC month as YY * 100 + MM (expiry) */
	bool in_token_range; /* tsw_vault_in_token_range() of req->token */
	int8_t device_bound; /* read only when tsw_authz_needs_device(): 1 bound,
			      * 0 not bound, < 0 lookup failed (SYSTEM) */
};

/* Current UTC month of unix time now as YY * 100 + MM (2507 for July
 * 2025). Pure arithmetic, no libc time zone. */
uint16_t tsw_authz_yymm(int64_t now);

/* Fills ctx for now: now_yymm from tsw_authz_yymm(), in_token_range
 * false, device_bound -1 (the caller sets both). */
void tsw_authz_ctx_init(struct tsw_authz_ctx *ctx, int64_t now);

/* True when decide will read ctx->device_bound: an authorization of a
 * device-bound token that carries a device id (DE48 tag 10). The engine
 * then asks tsw_vault_device_bound(). */
bool tsw_authz_needs_device(const struct tsw_token *t, const struct tsw_authz_req *req);

/* True when a FORWARD for this request must first reserve a use
 * (tsw_state_reserve() with t->max_uses): an authorization of a
 * limited-use token. Limited-use counts are not decided by
 * tsw_authz_decide(); -TSW_E_FULL from the reservation is the
 * TSW_AUTHZ_DOMAIN_USES decline. */
bool tsw_authz_needs_use(const struct tsw_token *t, const struct tsw_authz_req *req);

/* Decides one request. t is the vault record of req->token (NULL when the
 * lookup found nothing); original is the record of t->original_token for
 * a token-for-token (NULL when t has none or it was not found). Pure: reads
 * its arguments only, keeps nothing.
 *
 * Checks, first failing one wins (docs/decisions.md says why):
 *  0. class NETWORK or OTHER: FORMAT (the engine handles those itself)
 *  1. t NULL, req->token not Luhn-valid (tsw_luhn_valid(), tsw/luhn.h),
 *     or outside every token BIN range: TOKEN_UNKNOWN; t names an
 *     original token that was not found: TOKEN_UNKNOWN
 *  -- ADVICE and REVERSAL stop here: FORWARD --
 *  2. status of t, then of the original: deleted TOKEN_DELETED,
 *     suspended or card suspended TOKEN_SUSPENDED
 *  3. t's expiry before this month, DE14 present and not t's expiry, or
 *     now outside t's validity window, or the original's expiry before
 *     this month: TOKEN_EXPIRED
 *  4. DE48 TRID present and not t's TRID: DOMAIN_REQUESTOR
 *  5. DE22 mode not in t's pos_modes: DOMAIN_POS_MODE
 *  6. merchant restrictions (DE42, and DE32/DE18 where an entry names
 *     them) not met by any entry: DOMAIN_MERCHANT
 *  7. device-bound token without DE48 device id, or not bound:
 *     DOMAIN_DEVICE (device lookup failed: SYSTEM)
 *  8. DE4 above the amount limit, or DE49 not the token's currency:
 *     DOMAIN_AMOUNT
 * Otherwise FORWARD (then see tsw_authz_needs_use()). */
enum tsw_authz_reason tsw_authz_decide(const struct tsw_token *t, const struct tsw_token *original,
				       const struct tsw_authz_req *req,
				       const struct tsw_authz_ctx *ctx);

#endif
