/* The token list `tokvault demo --out` writes: a CSV whose header names the
 * columns token,token_expiry,pos_mode,merchant_id,acquirer_id,mcc,
 * device_ref,trid,amount_limit,currency,expect_rc,cvn,psn (only token is
 * required; columns may come in any order; a list older than cvn and psn
 * reads as tokens that need no cryptogram). */
#ifndef TSW_BENCH_TOKENS_H
#define TSW_BENCH_TOKENS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BENCH_TOKEN_MAX 19
#define BENCH_MERCHANT_LEN 15 /* DE42, space padded */
#define BENCH_ACQUIRER_MAX 11 /* DE32 */
#define BENCH_DEVICE_MAX 64   /* DE48 tag 10 */
#define BENCH_TRID_MAX 11     /* DE48 tag 12 */
#define BENCH_EXPECT_MAX 4    /* alternatives in expect_rc ("00|65") */
#define BENCH_CSV_LINE_MAX 1024

struct bench_expect {
	uint8_t n; /* 0: any answer is right */
	char rc[BENCH_EXPECT_MAX][2];
};

struct bench_token {
	char token[BENCH_TOKEN_MAX];
	uint8_t token_len;
	char expiry[4];
	bool has_expiry;
	char pos[3]; /* DE22 */
	char merchant[BENCH_MERCHANT_LEN];
	bool merchant_bound; /* merchant_id given: the token is bound to it */
	char acquirer[BENCH_ACQUIRER_MAX];
	uint8_t acquirer_len;
	char mcc[4];
	char device[BENCH_DEVICE_MAX];
	uint8_t device_len;
	char trid[BENCH_TRID_MAX];
	uint8_t trid_len;
	uint64_t amount_limit; /* minor units, 0: none */
	char currency[3];
	struct bench_expect expect;
	uint8_t cvn; /* 0, or the ARQC version: 10, 16, 18, 20 */
	uint8_t psn; /* 0..99 */
};

struct bench_tokens {
	struct bench_token *t;
	uint32_t n;
};

/* Maps a presentment mode name (contactless chip ecommerce cof manual
 * magstripe) to its DE22 value. Returns 0 or -TSW_E_BAD_INPUT. */
int bench_pos_mode(const char *name, size_t len, char ret_de22[3]);

/* Parses "00" or "00|65". Returns 0 or -TSW_E_BAD_INPUT. */
int bench_expect_parse(const char *s, size_t len, struct bench_expect *ret);

/* True when rc is one of e's codes (or e accepts any). */
bool bench_expect_match(const struct bench_expect *e, const char rc[2]);

/* Loads path. Empty merchant_id gets a random 15-character id (rng), empty
 * acquirer_id and mcc the defaults, empty currency 840. Returns 0, -errno
 * (file), -TSW_E_BAD_INPUT (no token column, a malformed value; *ret_line
 * then names the 1-based line) or -ENOMEM. The caller frees with
 * bench_tokens_free(). */
int bench_tokens_load(const char *path, uint64_t *rng, struct bench_tokens *ret,
		      unsigned *ret_line);

void bench_tokens_free(struct bench_tokens *t);

#endif
