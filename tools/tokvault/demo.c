/* tokvault demo: a synthetic vault with a realistic mix of tokens and the
 * CSV the bench client (tokbench) reads, one row per token:
 *   token,token_expiry,pos_mode,merchant_id,acquirer_id,mcc,device_ref,trid,
 *   amount_limit,currency,expect_rc,cvn,psn
 * Tokens ascend (stride plus random jitter) so the writer appends. With
 * --cvn-pct some tokens require an ARQC (cvn, psn; a chip or contactless
 * pos_mode) and the key store gets the demo's keys: one imk-ac for the
 * range, one zpk-acquirer per DE32 the CSV can produce, one zpk-issuer
 * for issuer 0. */
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tokvault.h"
#include "tsw/error.h"
#include "tsw/luhn.h"

#define DEMO_BIN_DEFAULT "489537"
#define DEMO_TOKEN_LEN 16
#define DEMO_PAN_PREFIX "41111"
#define DEMO_PAN_LEN 16
#define DEMO_CURRENCY "840"
#define DEMO_PER_MILLE_PLAIN 700
#define DEMO_PER_MILLE_RESTRICTED 800
#define DEMO_PER_MILLE_DEVICE 880
#define DEMO_PER_MILLE_AMOUNT 950
#define DEMO_PER_MILLE_LIMITED 970
#define DEMO_PER_MILLE_SUSPENDED 990
#define DEMO_OUT_BUF_BYTES (1u << 20)
#define DEMO_LINE_MAX 256
#define DEMO_PCT 100u

/* The acquirers (DE32) merchant-bound demo tokens name; the first is also
 * what tokbench sends for a row without one, so one zpk-acquirer per entry
 * covers every request the CSV makes. */
static const char *const acquirers[] = {"100001", "210002", "320003", "430004",
					"540005", "650006", "760007", "870008"};
#define DEMO_N_ACQUIRERS (sizeof(acquirers) / sizeof(acquirers[0]))
/* --cvn-pct without --cvn: the versions in turn */
static const uint8_t cvns[] = {10, 18, 16, 20};
#define DEMO_ISSUER_INDEX "0"

static const char *const mode_names[TSW_POS_MODE_MAX] = {"contactless", "chip",	  "ecommerce",
							 "cof",		"manual", "magstripe"};
static const char *const trids[] = {"40010030273", "40010075001", "40010043095", "50110030273"};
static const char *const mccs[] = {"5411", "5812", "5999", "4111"};

struct rng {
	uint64_t s;
};

static uint64_t next(struct rng *g)
{
	/* xorshift64*: fast and plenty for synthetic data */
	g->s ^= g->s >> 12;
	g->s ^= g->s << 25;
	g->s ^= g->s >> 27;
	return g->s * 0x2545F4914F6CDD1Dull;
}

static void put_number(char *out, uint64_t v, unsigned width)
{
	for (unsigned i = width; i > 0; i--) {
		out[i - 1] = (char)('0' + v % 10);
		v /= 10;
	}
}

static void put_hex(char *out, uint64_t v, unsigned width)
{
	for (unsigned i = width; i > 0; i--) {
		out[i - 1] = "0123456789abcdef"[v & 15];
		v >>= 4;
	}
}

/* Appends s and a separator to the CSV line at *pos. */
static void put_field(char *line, size_t *pos, const char *s, char sep)
{
	size_t n = strlen(s);

	memcpy(line + *pos, s, n);
	line[*pos + n] = sep;
	*pos += n + 1;
}

static void reject_count(void *ctx, unsigned long line, int err, const char *reason)
{
	unsigned long *n = ctx;

	(void)err;
	if (++*n <= 10)
		fprintf(stderr, "row %lu: %s\n", line, reason);
}

/* Where the demo's tokens are drawn: bin, then body random-ish digits
 * (ascending by stride), then the Luhn digit. */
struct demo_range {
	char bin[DEMO_TOKEN_LEN]; /* a copy: the vault's BIN lives in its stats */
	unsigned blen, body;
	uint64_t stride;
};

/* The CSV columns of one row that are not read off the record. */
struct demo_csv {
	const char *mode, *merchant, *acq, *mcc, *expect;
	char merchant_buf[TSW_MERCHANT_ID_LEN + 1];
};

/* Checks the vault is empty, picks the BIN (bin, else the vault's first
 * range, else the default), sizes the stride for count tokens and adds
 * the BIN range. Returns 0, or EXIT_FAILURE after saying why. */
static int demo_range_pick(struct tsw_vault *v, unsigned long count, const char *bin,
			   struct demo_range *ret_range)
{
	struct tsw_vault_stats st;
	uint64_t space = 1;
	unsigned blen, body;
	int r;

	r = tsw_vault_stats(v, &st);
	if (r < 0) {
		fprintf(stderr, "tokvault: demo: %s\n", tsw_strerror(r));
		return EXIT_FAILURE;
	}
	if (st.tokens) {
		fprintf(stderr, "tokvault: demo: vault is not empty (%llu tokens): use a new dir\n",
			(unsigned long long)st.tokens);
		return EXIT_FAILURE;
	}
	if (!bin)
		bin = st.n_bins ? st.bins[0] : DEMO_BIN_DEFAULT;
	blen = (unsigned)strlen(bin);
	if (blen + 4 > DEMO_TOKEN_LEN) {
		fprintf(stderr, "tokvault: demo: --token-bin too long\n");
		return EXIT_FAILURE;
	}
	body = DEMO_TOKEN_LEN - blen - 1;
	for (unsigned i = 0; i < body; i++)
		space *= 10;
	if (count > space / 2) {
		fprintf(stderr, "tokvault: demo: --count above what the range holds\n");
		return EXIT_FAILURE;
	}
	r = tsw_vault_add_token_bin(v, bin, blen);
	if (r < 0) {
		fprintf(stderr, "tokvault: demo: token bin: %s\n", tsw_strerror(r));
		return EXIT_FAILURE;
	}
	*ret_range = (struct demo_range){.blen = blen, .body = body, .stride = space / count};
	memcpy(ret_range->bin, bin, blen + 1);
	return 0;
}

/* Token i of the range, its card (PAN, expiry, PAR) and the fields every
 * demo token has. */
static void demo_identity(struct tsw_vault_row *row, struct rng *g, const struct demo_range *rg,
			  unsigned long i)
{
	struct tsw_token *t = &row->token;
	uint64_t card = i * 2 / 3; /* about 1.5 tokens per card */

	memcpy(t->token, rg->bin, rg->blen);
	put_number(t->token + rg->blen, i * rg->stride + next(g) % rg->stride, rg->body);
	t->token[DEMO_TOKEN_LEN - 1] = tsw_luhn_check_digit(t->token, DEMO_TOKEN_LEN - 1);
	memcpy(row->pan, DEMO_PAN_PREFIX, strlen(DEMO_PAN_PREFIX));
	put_number(row->pan + strlen(DEMO_PAN_PREFIX), card,
		   DEMO_PAN_LEN - (unsigned)strlen(DEMO_PAN_PREFIX) - 1);
	row->pan[DEMO_PAN_LEN - 1] = tsw_luhn_check_digit(row->pan, DEMO_PAN_LEN - 1);
	row->pan_len = DEMO_PAN_LEN;
	memcpy(t->pan_expiry, "29", 2);
	put_number(t->pan_expiry + 2, card % 12 + 1, 2);
	put_number(t->token_expiry, 28 + i % 4, 2);
	put_number(t->token_expiry + 2, i % 12 + 1, 2);
	memcpy(t->trid, trids[i % 4], TSW_TRID_LEN);
	t->assurance_level = (uint8_t)(20 + i % 4 * 10);
	memcpy(t->token_ref, "DNITHE", 6);
	put_hex(t->token_ref + 6, i * 0x9E3779B97F4A7C15ull, 16);
	memcpy(t->par, "V001", 4);
	put_number(t->par + 4, card, TSW_PAR_LEN - 4);
	memcpy(t->currency, DEMO_CURRENCY, 4);
}

/* Two presentment modes and one to three merchants (the first with an
 * acquirer and MCC for odd pm); the CSV names the first of each. */
static void demo_restrict(struct tsw_token *t, struct rng *g, unsigned pm, struct demo_csv *csv)
{
	unsigned m1 = (unsigned)(next(g) % TSW_POS_MODE_MAX);
	unsigned m2 = (unsigned)(next(g) % TSW_POS_MODE_MAX);

	t->pos_modes = (1u << m1) | (1u << m2);
	csv->mode = mode_names[m1];
	t->n_merchants = (uint8_t)(1 + next(g) % 3);
	for (unsigned k = 0; k < t->n_merchants; k++) {
		struct tsw_token_merchant *m = &t->merchants[k];

		snprintf(m->merchant_id, sizeof(m->merchant_id), "MERCH%07llu",
			 (unsigned long long)(next(g) % 10000000));
		if (k == 0 && pm % 2) {
			snprintf(m->acquirer_id, sizeof(m->acquirer_id), "%s",
				 acquirers[next(g) % DEMO_N_ACQUIRERS]);
			memcpy(m->mcc, mccs[pm % 4], 5);
		}
	}
	memcpy(csv->merchant_buf, t->merchants[0].merchant_id, sizeof(csv->merchant_buf));
	csv->merchant = csv->merchant_buf;
	csv->acq = t->merchants[0].acquirer_id;
	csv->mcc = t->merchants[0].mcc;
}

/* The token's kind by pm (per mille): plain, restricted, device-bound,
 * amount-limited, limited-use, suspended or deleted, and the answer
 * tokbench is to expect. */
static void demo_controls(struct tsw_vault_row *row, struct rng *g, unsigned pm,
			  struct demo_csv *csv)
{
	struct tsw_token *t = &row->token;

	if (pm < DEMO_PER_MILLE_PLAIN) {
		/* any merchant, every mode */
	} else if (pm < DEMO_PER_MILLE_RESTRICTED) {
		demo_restrict(t, g, pm, csv);
	} else if (pm < DEMO_PER_MILLE_DEVICE) {
		t->device_required = 1;
		snprintf(row->device_ref, sizeof(row->device_ref), "dev-%016llx",
			 (unsigned long long)next(g));
	} else if (pm < DEMO_PER_MILLE_AMOUNT) {
		t->amount_limit = 5000 + next(g) % 45000;
	} else if (pm < DEMO_PER_MILLE_LIMITED) {
		t->max_uses = 1 + (uint32_t)(next(g) % 5);
		csv->expect = "00|65";
	} else if (pm < DEMO_PER_MILLE_SUSPENDED) {
		t->status = TSW_TOKEN_SUSPENDED;
		csv->expect = "62";
	} else {
		t->status = TSW_TOKEN_DELETED;
		csv->expect = "14";
	}
}

/* A token that requires an ARQC: its version (opts->cvn, else the four in
 * turn), a PSN, and a presentment mode that needs the cryptogram (added
 * to a restricted token's modes, so the CSV's mode stays allowed). */
static void demo_card(struct tsw_token *t, struct rng *g, const struct demo_opts *opts,
		      unsigned long i, struct demo_csv *csv)
{
	unsigned mode = next(g) % 2 ? TSW_POS_CONTACTLESS : TSW_POS_CHIP;

	t->cvn = opts->cvn ? opts->cvn : cvns[i % sizeof(cvns)];
	t->psn = (uint8_t)(next(g) % (TSW_TOKEN_PSN_MAX + 1));
	if (t->pos_modes)
		t->pos_modes |= (uint8_t)(1u << mode);
	csv->mode = mode_names[mode];
}

/* Writes the row's line of the token list. */
static void demo_csv_line(FILE *out, const struct tsw_vault_row *row, const struct demo_csv *csv)
{
	const struct tsw_token *t = &row->token;
	char line[DEMO_LINE_MAX], amount[24], cvn[4] = "", psn[4] = "";
	size_t pos = 0;

	snprintf(amount, sizeof(amount), "%llu", (unsigned long long)t->amount_limit);
	if (t->cvn) {
		snprintf(cvn, sizeof(cvn), "%u", t->cvn);
		snprintf(psn, sizeof(psn), "%02u", t->psn);
	}
	put_field(line, &pos, t->token, ',');
	put_field(line, &pos, t->token_expiry, ',');
	put_field(line, &pos, csv->mode, ',');
	put_field(line, &pos, csv->merchant, ',');
	put_field(line, &pos, csv->acq, ',');
	put_field(line, &pos, csv->mcc, ',');
	put_field(line, &pos, row->device_ref, ',');
	put_field(line, &pos, t->trid, ',');
	put_field(line, &pos, t->amount_limit ? amount : "0", ',');
	put_field(line, &pos, t->currency, ',');
	put_field(line, &pos, csv->expect, ',');
	put_field(line, &pos, cvn, ',');
	put_field(line, &pos, psn, '\n');
	fwrite(line, 1, pos, out);
}

/* Makes count tokens into one bulk write and their lines into out.
 * row is the caller's, so that it wipes the last PAN. Returns 0 or the
 * first error of the batch. */
static int demo_tokens(struct tsw_vault *v, const struct demo_opts *opts,
		       const struct demo_range *rg, struct rng *g, FILE *out,
		       struct tsw_vault_row *row, struct tsw_vault_import_stats *ret_stats,
		       unsigned long *rejects, unsigned long *ret_cards)
{
	struct tsw_vault_batch *b = NULL;
	int r, fr;

	r = tsw_vault_batch_begin(v, 0, reject_count, rejects, &b);
	if (r < 0)
		return r;
	for (unsigned long i = 0; i < opts->count; i++) {
		unsigned pm = (unsigned)(next(g) % 1000);
		struct demo_csv csv = {.mode = mode_names[next(g) % TSW_POS_MODE_MAX],
				       .merchant = "",
				       .acq = "",
				       .mcc = "",
				       .expect = "00"};

		memset(row, 0, sizeof(*row));
		demo_identity(row, g, rg, i);
		demo_controls(row, g, pm, &csv);
		if (opts->cvn_pct && next(g) % DEMO_PCT < opts->cvn_pct) {
			demo_card(&row->token, g, opts, i, &csv);
			++*ret_cards;
		}
		demo_csv_line(out, row, &csv);
		r = tsw_vault_batch_add(b, row, i + 1);
		if (r < 0)
			break;
	}
	fr = tsw_vault_batch_finish(b, ret_stats);
	return r == 0 ? fr : r;
}

/* Adds one key of fresh random bytes (wiped at once) and prints its check
 * value, never the key. Returns 0, or EXIT_FAILURE after saying why. */
static int demo_key_add(struct tsw_vault *v, enum tsw_vault_key_kind kind, const char *id,
			const char *scope, enum tsw_vault_key_alg alg)
{
	struct tsw_vault_key_info in = {.kind = (uint8_t)kind, .alg = (uint8_t)alg}, got;
	uint8_t bytes[TSW_VAULT_KEY_BYTES_MAX];
	size_t len = tsw_vault_key_alg_len(alg);
	int r = -EIO;

	snprintf(in.id, sizeof(in.id), "%s", id);
	snprintf(in.scope, sizeof(in.scope), "%s", scope);
	if (RAND_bytes(bytes, (int)len) == 1)
		r = tsw_vault_key_add(v, &in, bytes, len, &got);
	OPENSSL_cleanse(bytes, sizeof(bytes));
	if (r < 0) {
		fprintf(stderr, "tokvault: demo: key %s %s: %s\n", tsw_vault_key_kind_name(kind),
			id,
			r == -TSW_E_EXISTS ? "the store has that id already: use a new dir"
					   : tsw_strerror(r));
		return EXIT_FAILURE;
	}
	printf("demo: key %s %s scope=%s alg=%s kcv=", tsw_vault_key_kind_name(kind), got.id,
	       got.scope, tsw_vault_key_alg_name(alg));
	for (unsigned i = 0; i < got.kcv_len; i++)
		printf("%02X", got.kcv[i]);
	printf("\n");
	return 0;
}

/* The demo's keys: imk-ac for the range, a zpk-acquirer per demo DE32,
 * the zpk-issuer of issuer 0 (zone keys of opts->zpk_alg). */
static int demo_keys(struct tsw_vault *v, const struct demo_range *rg, const struct demo_opts *opts)
{
	char id[TSW_VAULT_KEY_ID_MAX + 1];

	if (demo_key_add(v, TSW_VAULT_KEY_IMK_AC, "demo-imk-ac", rg->bin, TSW_VAULT_KEY_TDES2))
		return EXIT_FAILURE;
	for (size_t i = 0; i < DEMO_N_ACQUIRERS; i++) {
		snprintf(id, sizeof(id), "demo-zpk-acq-%s", acquirers[i]);
		if (demo_key_add(v, TSW_VAULT_KEY_ZPK_ACQUIRER, id, acquirers[i], opts->zpk_alg))
			return EXIT_FAILURE;
	}
	return demo_key_add(v, TSW_VAULT_KEY_ZPK_ISSUER, "demo-zpk-iss-" DEMO_ISSUER_INDEX,
			    DEMO_ISSUER_INDEX, opts->zpk_alg);
}

int demo_run(struct tsw_vault *v, const struct demo_opts *opts)
{
	struct tsw_vault_import_stats is = {0};
	struct tsw_vault_row row;
	struct demo_range rg;
	struct timespec t0, t1;
	struct rng g;
	unsigned long rejects = 0, cards = 0;
	char *obuf = NULL;
	FILE *out = NULL;
	double s;
	int r;

	if (RAND_bytes((uint8_t *)&g.s, sizeof(g.s)) != 1)
		return EXIT_FAILURE;
	g.s |= 1;
	if (demo_range_pick(v, opts->count, opts->bin, &rg) != 0)
		return EXIT_FAILURE;
	if ((opts->cvn_pct || opts->keys) && demo_keys(v, &rg, opts) != 0)
		return EXIT_FAILURE;
	out = fopen(opts->out_path, "w");
	if (!out) {
		fprintf(stderr, "tokvault: demo: %s: %s\n", opts->out_path, strerror(errno));
		return EXIT_FAILURE;
	}
	obuf = malloc(DEMO_OUT_BUF_BYTES);
	if (obuf)
		setvbuf(out, obuf, _IOFBF, DEMO_OUT_BUF_BYTES);
	fprintf(out, "token,token_expiry,pos_mode,merchant_id,acquirer_id,mcc,device_ref,trid,"
		     "amount_limit,currency,expect_rc,cvn,psn\n");
	clock_gettime(CLOCK_MONOTONIC, &t0);
	r = demo_tokens(v, opts, &rg, &g, out, &row, &is, &rejects, &cards);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	OPENSSL_cleanse(&row, sizeof(row));
	if (fclose(out) != 0 && r == 0)
		r = -errno;
	free(obuf);
	if (r < 0) {
		fprintf(stderr, "tokvault: demo: %s\n", tsw_strerror(r));
		return EXIT_FAILURE;
	}
	s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	printf("demo: tokens=%lu rejected=%lu cryptogram=%lu bin=%s seconds=%.2f rate=%.0f/s "
	       "list=%s\n",
	       is.imported, is.rejected, cards, rg.bin, s, s > 0 ? (double)is.imported / s : 0,
	       opts->out_path);
	return is.rejected ? EXIT_FAILURE : 0;
}
