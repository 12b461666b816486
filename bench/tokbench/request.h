/* Builds the 0100 authorization requests tokbench sends, and the answer it
 * expects for each, sans I/O. */
#ifndef TSW_BENCH_REQUEST_H
#define TSW_BENCH_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include "tokens.h"
#include "tsw/iso8583.h"

enum bench_expect_mode {
	BENCH_EXPECT_VAULT,  /* the switch's answer: the CSV's expect_rc */
	BENCH_EXPECT_ISSUER, /* issuer-sim direct: 00, or 51 for amounts ending in 51 */
	BENCH_EXPECT_ANY,    /* DE39 not checked */
	BENCH_EXPECT_MODE_MAX
};

/* What a request deliberately does wrong. */
enum bench_req_kind {
	BENCH_REQ_NORMAL,	  /* inside the token's domain */
	BENCH_REQ_WRONG_MERCHANT, /* 57 */
	BENCH_REQ_OVER_LIMIT,	  /* 61 */
	BENCH_REQ_WRONG_EXPIRY,	  /* 54 */
	BENCH_REQ_UNKNOWN_TOKEN,  /* 14: last digit changed, Luhn broken */
	BENCH_REQ_ISSUER_DECLINE, /* 51: amount ending in 51 */
	BENCH_REQ_KIND_MAX
};

/* What was sent, to check the answer against. */
struct bench_sent {
	char de2[BENCH_TOKEN_MAX];
	uint8_t de2_len;
	uint8_t kind; /* enum bench_req_kind */
	struct bench_expect expect;
};

/* Fields that change per request. */
struct bench_req_ctx {
	uint32_t stan;	  /* DE11, 0..999999 */
	uint64_t rrn;	  /* DE37, 12 digits */
	char de7[10];	  /* MMDDhhmmss, UTC */
	char terminal[8]; /* DE41 */
	uint64_t amount;  /* DE4; 0: bench_request_amount() picks it */
	/* card cryptography (card.h), sent when de52_len / de55_len > 0 */
	const uint8_t *de52, *de55;
	uint16_t de52_len, de55_len;
};

/* Picks a kind: NORMAL, or with probability decline_pct/100 a decline that
 * applies to t (vault mode: only for tokens expected to approve, "00").
 * Falls back to NORMAL when none applies. */
enum bench_req_kind bench_request_pick(const struct bench_token *t, enum bench_expect_mode mode,
				       double decline_pct, uint64_t *rng);

/* An amount for a request of kind to t: inside its limit (never ending in
 * 51, the issuer's decline) for most kinds, above it for OVER_LIMIT, one
 * ending in 51 for ISSUER_DECLINE. */
uint64_t bench_request_amount(const struct bench_token *t, enum bench_req_kind kind, uint64_t *rng);

/* Encodes the 0100 body for t into out (no length header). Returns its
 * length, or -TSW_E_NO_SPACE and the codec's other encode errors. Fills
 * *ret_sent. */
int bench_request_build(const struct tsw_iso_profile *p, const struct bench_token *t,
			enum bench_req_kind kind, enum bench_expect_mode mode,
			const struct bench_req_ctx *ctx, uint64_t *rng, uint8_t *out, size_t cap,
			struct bench_sent *ret_sent);

/* Formats v as width zero-padded digits (no NUL). */
void bench_digits(uint64_t v, char *out, unsigned width);

#endif
