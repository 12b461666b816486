/* Field rewrites for the issuer leg and back (internal to src/engine). */
#ifndef TSW_ENGINE_REWRITE_H
#define TSW_ENGINE_REWRITE_H

#include <stddef.h>
#include <stdint.h>

#include "tsw/iso8583.h"
#include "tsw/token.h"

/* DE48 tags the switch adds on the issuer leg (docs/engine.md). */
#define TSW_DE48_TOKEN_FIRST 30
#define TSW_DE48_TOKEN_LAST 36

/* Copies the subelements of in except tags 30-36 into out. Returns 0,
 * -TSW_E_BAD_TLV (in malformed), -TSW_E_NO_SPACE. */
int engine__de48_strip_token_tags(const uint8_t *in, size_t in_len, uint8_t *out, size_t cap,
				  size_t *ret_len);

/* The issuer leg's DE48: the acquirer's subelements minus 30-36 (all of
 * them dropped when malformed), then 30 token, 31 token expiry, 32 TRID,
 * 33 assurance level, 34 token reference, 35 PAR, 36 original token's
 * reference (empty values left out). Returns 0 or -TSW_E_NO_SPACE. */
int engine__de48_for_issuer(const uint8_t *acq, size_t acq_len, const struct tsw_token *t,
			    uint8_t *out, size_t cap, size_t *ret_len);

/* DE35 "token=YYMM rest" -> "PAN=PANEXPIRY rest". Returns 0,
 * -TSW_E_BAD_INPUT (no separator), -TSW_E_NO_SPACE. */
int engine__de35_to_pan(const uint8_t *in, size_t in_len, const char *pan, size_t pan_len,
			const char *pan_expiry, uint8_t *out, size_t cap, size_t *ret_len);

#endif
