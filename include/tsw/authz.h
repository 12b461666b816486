/* Authorization decisions: token domain restriction controls.
 *
 * tsw_authz_parse() turns a decoded ISO 8583 request into plain fields;
 * tsw_authz_decide() is a pure function of (token record, request, now)
 * that says forward or decline with the reason. Limited-use counts and the
 * last ATC per token live in the switch's own state environment
 * (include/tsw/state.h). DESIGN.md "Decisions and response codes" is the
 * table this implements.
 */
#ifndef TSW_AUTHZ_H
#define TSW_AUTHZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tsw/token.h"

struct tsw_iso_msg;

/* Outcome reasons, each with its DE39 and DE44 text (tsw_authz_rc(),
 * tsw_authz_reason_name()). TSW_AUTHZ_FORWARD is not a decline. */
enum tsw_authz_reason {
	TSW_AUTHZ_FORWARD,
	TSW_AUTHZ_TOKEN_UNKNOWN,      /* 14 */
	TSW_AUTHZ_TOKEN_DELETED,      /* 14 */
	TSW_AUTHZ_TOKEN_SUSPENDED,    /* 62 */
	TSW_AUTHZ_TOKEN_EXPIRED,      /* 54 */
	TSW_AUTHZ_DOMAIN_MERCHANT,    /* 57 */
	TSW_AUTHZ_DOMAIN_POS_MODE,    /* 57 */
	TSW_AUTHZ_DOMAIN_DEVICE,      /* 57 */
	TSW_AUTHZ_DOMAIN_REQUESTOR,   /* 57 */
	TSW_AUTHZ_DOMAIN_AMOUNT,      /* 61 */
	TSW_AUTHZ_DOMAIN_USES,        /* 65 */
	TSW_AUTHZ_CRYPTOGRAM,         /* 63 */
	TSW_AUTHZ_FORMAT,             /* 30 */
	TSW_AUTHZ_ISSUER_UNAVAILABLE, /* 91 */
	TSW_AUTHZ_SYSTEM,             /* 96 */
	TSW_AUTHZ_REASON_MAX
};

/* "14", "62", ...; "00" for FORWARD. Static strings. */
const char *tsw_authz_rc(enum tsw_authz_reason r);
/* "TOKEN_UNKNOWN", ... as sent in DE44; "FORWARD" for FORWARD. */
const char *tsw_authz_reason_name(enum tsw_authz_reason r);

#endif
