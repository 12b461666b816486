/* Vault micro-benchmarks.
 *
 *   bench_vault lookup --vault DIR --key-file FILE --tokens TOKENS.csv [--ops N]
 *	random lookups and PAN decrypts over the tokens of a demo list (warm
 *	map: one pass over every token first); prints mean and percentiles.
 *   bench_vault make-csv --count N --out FILE.csv [--bin PREFIX] [--skip N]
 *	an import file in random token order (for `tokvault import` rates);
 *	--skip N: rows N.. of the same permutation (tokens and cards no
 *	other file without it has: a second import into a filled vault).
 *
 * Output: one "key=value" line per measurement. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lmdb.h>

#include "tsw/error.h"
#include "tsw/luhn.h"
#include "tsw/vault.h"

#define OPS_DEFAULT 2000000u
#define SAMPLE_EVERY 16	  /* per-op timing on every 16th op, for percentiles */
#define RENEW_EVERY 64	  /* a worker renews once per loop iteration */
#define DECRYPT_SET 65536 /* records decrypted round robin */
#define LINE_MAX_BYTES 512

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t rng_next(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545F4914F6CDD1Dull;
}

static const char *opt(int argc, char **argv, const char *name)
{
	for (int i = 0; i + 1 < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return argv[i + 1];
	return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static void report(const char *what, uint64_t total_ns, uint64_t ops, uint32_t *samples, size_t n)
{
	qsort(samples, n, sizeof(*samples), cmp_u32);
	printf("%s ops=%llu mean_ns=%.0f p50_ns=%u p99_ns=%u p999_ns=%u\n", what,
	       (unsigned long long)ops, (double)total_ns / (double)ops, samples[n / 2],
	       samples[n * 99 / 100], samples[n * 999 / 1000]);
}

struct token_list {
	char (*tok)[TSW_TOKEN_MAX_DIGITS + 1];
	uint8_t *len;
	size_t n;
};

static int load_tokens(const char *path, struct token_list *l)
{
	char line[LINE_MAX_BYTES];
	size_t cap = 1 << 16;
	FILE *f = fopen(path, "r");

	if (!f)
		return -errno;
	l->tok = malloc(cap * sizeof(*l->tok));
	l->len = malloc(cap);
	l->n = 0;
	if (!fgets(line, sizeof(line), f)) /* header */
		goto out;
	while (l->tok && l->len && fgets(line, sizeof(line), f)) {
		size_t n = strcspn(line, ",\n");

		if (n < TSW_TOKEN_MIN_DIGITS || n > TSW_TOKEN_MAX_DIGITS)
			continue;
		if (l->n == cap) {
			cap *= 2;
			l->tok = realloc(l->tok, cap * sizeof(*l->tok));
			l->len = realloc(l->len, cap);
			if (!l->tok || !l->len)
				break;
		}
		memcpy(l->tok[l->n], line, n);
		l->tok[l->n][n] = '\0';
		l->len[l->n++] = (uint8_t)n;
	}
out:
	fclose(f);
	return l->tok && l->len && l->n ? 0 : -ENOMEM;
}

/* The floor: a bare mdb_get of the same keys (8-byte integer keys), no
 * decoding. */
static void bare_get(const char *dir, char (*tok)[TSW_TOKEN_MAX_DIGITS + 1], const uint8_t *len,
		     uint64_t ops)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	uint64_t t0, sum = 0;

	if (mdb_env_create(&env) || mdb_env_set_maxdbs(env, 8) ||
	    mdb_env_open(env, dir, MDB_RDONLY | MDB_NOTLS | MDB_NORDAHEAD, 0600) ||
	    mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) ||
	    mdb_dbi_open(txn, "tokens", MDB_INTEGERKEY, &dbi)) {
		fprintf(stderr, "bench_vault: bare env failed\n");
		return;
	}
	t0 = now_ns();
	for (uint64_t i = 0; i < ops; i++) {
		uint64_t k = 0;
		MDB_val key = {.mv_size = sizeof(k), .mv_data = &k}, d;

		for (unsigned j = 0; j < len[i]; j++)
			k = k * 10 + (unsigned)(tok[i][j] - '0');
		if (mdb_get(txn, dbi, &key, &d) == 0)
			sum += d.mv_size;
	}
	printf("bare_mdb_get ops=%llu mean_ns=%.0f (bytes=%llu)\n", (unsigned long long)ops,
	       (double)(now_ns() - t0) / (double)ops, (unsigned long long)sum);
	mdb_txn_abort(txn);
	mdb_env_close(env);
}

static int bench_lookup(int argc, char **argv)
{
	const char *dir = opt(argc, argv, "--vault"), *key = opt(argc, argv, "--key-file");
	const char *tokens = opt(argc, argv, "--tokens"), *ops_s = opt(argc, argv, "--ops");
	uint64_t ops = ops_s ? strtoull(ops_s, NULL, 10) : OPS_DEFAULT;
	struct tsw_vault *v = NULL;
	struct tsw_vault_reader *rd = NULL;
	struct token_list l = {0};
	struct tsw_token t, *set;
	uint32_t *idx, *samples;
	char(*op_tok)[TSW_TOKEN_MAX_DIGITS + 1];
	uint8_t *op_len;
	size_t n_samples = 0;
	uint64_t seed = 0x9E3779B97F4A7C15ull, t0, total = 0, found = 0;
	char pan[TSW_PAN_MAX_DIGITS];
	int r;

	if (!dir || !key || !tokens) {
		fprintf(stderr, "usage: bench_vault lookup --vault DIR --key-file FILE "
				"--tokens TOKENS.csv [--ops N]\n");
		return 2;
	}
	r = load_tokens(tokens, &l);
	if (r == 0)
		r = tsw_vault_open(dir, key, TSW_VAULT_RDONLY, &v);
	if (r == 0)
		r = tsw_vault_reader_open(v, &rd);
	if (r == 0)
		r = tsw_vault_reader_renew(rd);
	if (r < 0) {
		fprintf(stderr, "bench_vault: %s\n", tsw_strerror(r));
		return 1;
	}
	idx = malloc(ops * sizeof(*idx));
	op_tok = malloc(ops * sizeof(*op_tok));
	op_len = malloc(ops);
	if (!op_tok || !op_len)
		return 1;
	samples = malloc((ops / SAMPLE_EVERY + 1) * sizeof(*samples));
	set = malloc(DECRYPT_SET * sizeof(*set));
	if (!idx || !samples || !set)
		return 1;
	/* the tokens of every op laid out in order, as requests would bring
	 * them: the list itself is not what is measured */
	for (uint64_t i = 0; i < ops; i++) {
		idx[i] = (uint32_t)(rng_next(&seed) % l.n);
		memcpy(op_tok[i], l.tok[idx[i]], sizeof(op_tok[i]));
		op_len[i] = l.len[idx[i]];
	}
	/* warm the map: touch every token once */
	for (size_t i = 0; i < l.n; i++)
		found += tsw_vault_lookup(rd, l.tok[i], l.len[i], &t) == 0;
	printf("tokens=%zu found_warm=%llu\n", l.n, (unsigned long long)found);

	/* plain lookups, one read transaction */
	t0 = now_ns();
	for (uint64_t i = 0; i < ops; i++)
		tsw_vault_lookup(rd, op_tok[i], op_len[i], &t);
	total = now_ns() - t0;
	for (uint64_t i = 0; i < ops; i += SAMPLE_EVERY) {
		uint64_t s = now_ns();

		tsw_vault_lookup(rd, op_tok[i], op_len[i], &t);
		samples[n_samples++] = (uint32_t)(now_ns() - s);
	}
	report("lookup", total, ops, samples, n_samples);

	/* as a worker does it: renew every RENEW_EVERY lookups */
	t0 = now_ns();
	for (uint64_t i = 0; i < ops; i++) {
		if (i % RENEW_EVERY == 0) {
			tsw_vault_reader_reset(rd);
			tsw_vault_reader_renew(rd);
		}
		tsw_vault_lookup(rd, op_tok[i], op_len[i], &t);
	}
	total = now_ns() - t0;
	printf("lookup_with_renew_every_%d mean_ns=%.0f\n", RENEW_EVERY,
	       (double)total / (double)ops);

	/* PAN decrypt of looked-up records */
	for (size_t i = 0; i < DECRYPT_SET; i++)
		if (tsw_vault_lookup(rd, l.tok[idx[i % ops]], l.len[idx[i % ops]], &set[i]) < 0)
			set[i] = set[0];
	n_samples = 0;
	t0 = now_ns();
	for (uint64_t i = 0; i < ops; i++)
		tsw_vault_decrypt_pan(rd, &set[i % DECRYPT_SET], pan, sizeof(pan));
	total = now_ns() - t0;
	for (uint64_t i = 0; i < ops; i += SAMPLE_EVERY) {
		uint64_t s = now_ns();

		tsw_vault_decrypt_pan(rd, &set[i % DECRYPT_SET], pan, sizeof(pan));
		samples[n_samples++] = (uint32_t)(now_ns() - s);
	}
	report("decrypt", total, ops, samples, n_samples);
	memset(pan, 0, sizeof(pan));
	tsw_vault_reader_close(rd);
	tsw_vault_close(v);
	/* LMDB allows one open of an environment per process: after close */
	bare_get(dir, op_tok, op_len, ops);
	free(idx);
	free(op_tok);
	free(op_len);
	free(samples);
	free(set);
	free(l.tok);
	free(l.len);
	return 0;
}

static int make_csv(int argc, char **argv)
{
	const char *count_s = opt(argc, argv, "--count"), *out = opt(argc, argv, "--out");
	const char *bin = opt(argc, argv, "--bin"), *skip_s = opt(argc, argv, "--skip");
	uint64_t n = count_s ? strtoull(count_s, NULL, 10) : 0, seed = 12345, space = 1000000000u;
	uint64_t skip = skip_s ? strtoull(skip_s, NULL, 10) : 0;
	FILE *f;

	if (!n || !out || n + skip > space / 2) {
		fprintf(stderr, "usage: bench_vault make-csv --count N --out FILE [--bin 6DIGITS] "
				"[--skip N]\n");
		return 2;
	}
	if (!bin)
		bin = "489537";
	if (strlen(bin) != 6)
		return 2;
	f = fopen(out, "w");
	if (!f)
		return 1;
	fprintf(f, "token,pan,pan_expiry,token_expiry,status,trid,pos_modes,merchant_ids,"
		   "amount_limit,currency\n");
	/* a multiplicative permutation of [0, space): distinct, random order */
	for (uint64_t i = skip; i < skip + n; i++) {
		char tok[40], pan[40];
		uint64_t body = (i * 387420489u + 7) % space; /* 3^18: coprime to 10^9 */
		uint64_t card = i * 2 / 3;

		snprintf(tok, sizeof(tok), "%s%09llu0", bin, (unsigned long long)(body % space));
		tok[15] = tsw_luhn_check_digit(tok, 15);
		snprintf(pan, sizeof(pan), "41111%010llu0",
			 (unsigned long long)(card % 10000000000ull));
		pan[15] = tsw_luhn_check_digit(pan, 15);
		fprintf(f, "%s,%s,2912,2811,active,40010030273,%s,%s,%s,840\n", tok, pan,
			i % 10 ? "" : "contactless|chip", i % 10 ? "" : "MERCH0000001",
			i % 20 ? "" : "5000");
		(void)rng_next(&seed);
	}
	return fclose(f) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "lookup") == 0)
		return bench_lookup(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "make-csv") == 0)
		return make_csv(argc - 1, argv + 1);
	fprintf(stderr, "usage: bench_vault lookup|make-csv ...\n");
	return 2;
}
