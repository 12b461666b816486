#include "tokens.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ring.h"
#include "tsw/error.h"
#include "tsw/token.h"

#define DEFAULT_ACQUIRER "100001"
#define DEFAULT_MCC "5999"
#define DEFAULT_CURRENCY "840"

enum col {
	COL_TOKEN,
	COL_TOKEN_EXPIRY,
	COL_POS_MODE,
	COL_MERCHANT_ID,
	COL_ACQUIRER_ID,
	COL_MCC,
	COL_DEVICE_REF,
	COL_TRID,
	COL_AMOUNT_LIMIT,
	COL_CURRENCY,
	COL_EXPECT_RC,
	COL_CVN,
	COL_PSN,
	COL_MAX
};

static const char *const col_names[COL_MAX] = {
    "token", "token_expiry", "pos_mode", "merchant_id", "acquirer_id", "mcc", "device_ref",
    "trid",  "amount_limit", "currency", "expect_rc",	"cvn",	       "psn",
};

static const struct {
	const char *name;
	const char *de22;
} pos_modes[] = {
    {"contactless", "071"}, {"chip", "051"},   {"ecommerce", "812"},
    {"cof", "102"},	    {"manual", "012"}, {"magstripe", "902"},
};

static bool all_digits(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

int bench_pos_mode(const char *name, size_t len, char ret_de22[3])
{
	for (size_t i = 0; i < sizeof(pos_modes) / sizeof(pos_modes[0]); i++) {
		if (strlen(pos_modes[i].name) == len && memcmp(pos_modes[i].name, name, len) == 0) {
			memcpy(ret_de22, pos_modes[i].de22, 3);
			return 0;
		}
	}
	return -TSW_E_BAD_INPUT;
}

int bench_expect_parse(const char *s, size_t len, struct bench_expect *ret)
{
	struct bench_expect e = {0};
	size_t i = 0;

	if (len == 0)
		return -TSW_E_BAD_INPUT;
	while (i < len) {
		if (len - i < 2 || e.n == BENCH_EXPECT_MAX)
			return -TSW_E_BAD_INPUT;
		e.rc[e.n][0] = s[i];
		e.rc[e.n][1] = s[i + 1];
		e.n++;
		i += 2;
		if (i < len) {
			if (s[i] != '|' || i + 1 == len)
				return -TSW_E_BAD_INPUT;
			i++;
		}
	}
	*ret = e;
	return 0;
}

bool bench_expect_match(const struct bench_expect *e, const char rc[2])
{
	if (e->n == 0)
		return true;
	for (unsigned i = 0; i < e->n; i++)
		if (e->rc[i][0] == rc[0] && e->rc[i][1] == rc[1])
			return true;
	return false;
}

/* Splits a CSV line (no quoting: the demo file has none) into at most max
 * fields; returns the count. */
static unsigned split(char *line, char **f, size_t *flen, unsigned max)
{
	unsigned n = 0;
	char *p = line;

	for (;;) {
		char *c = strchr(p, ',');

		if (n == max)
			return n + 1; /* too many: reported by the caller */
		f[n] = p;
		flen[n] = c ? (size_t)(c - p) : strlen(p);
		n++;
		if (!c)
			return n;
		p = c + 1;
	}
}

/* The cvn and psn columns: empty or absent, no cryptogram. */
static int parse_card(const int *col_of, char **f, const size_t *flen, unsigned nf,
		      struct bench_token *t)
{
	int c;

	if ((c = col_of[COL_CVN]) >= 0 && (unsigned)c < nf && flen[c]) {
		if (flen[c] != 2 || !all_digits(f[c], 2))
			return -TSW_E_BAD_INPUT;
		t->cvn = (uint8_t)((f[c][0] - '0') * 10 + (f[c][1] - '0'));
		if (t->cvn == 0 || !TSW_TOKEN_CVN_VALID(t->cvn))
			return -TSW_E_BAD_INPUT;
	}
	if ((c = col_of[COL_PSN]) >= 0 && (unsigned)c < nf && flen[c]) {
		if (flen[c] != 2 || !all_digits(f[c], 2))
			return -TSW_E_BAD_INPUT;
		t->psn = (uint8_t)((f[c][0] - '0') * 10 + (f[c][1] - '0'));
	}
	return 0;
}

static int parse_row(const int *col_of, char **f, const size_t *flen, unsigned nf, uint64_t *rng,
		     struct bench_token *t)
{
	const char *v;
	size_t n;
	int c;

	memset(t, 0, sizeof(*t));
#define FIELD(col) ((c = col_of[col]) >= 0 && (unsigned)c < nf)
	if (!FIELD(COL_TOKEN))
		return -TSW_E_BAD_INPUT;
	v = f[c];
	n = flen[c];
	if (n < 12 || n > BENCH_TOKEN_MAX || !all_digits(v, n))
		return -TSW_E_BAD_INPUT;
	memcpy(t->token, v, n);
	t->token_len = (uint8_t)n;

	if (FIELD(COL_TOKEN_EXPIRY) && flen[c]) {
		if (flen[c] != 4 || !all_digits(f[c], 4))
			return -TSW_E_BAD_INPUT;
		memcpy(t->expiry, f[c], 4);
		t->has_expiry = true;
	}
	memcpy(t->pos, "071", 3);
	if (FIELD(COL_POS_MODE) && flen[c] && bench_pos_mode(f[c], flen[c], t->pos) < 0)
		return -TSW_E_BAD_INPUT;

	memset(t->merchant, ' ', sizeof(t->merchant));
	if (FIELD(COL_MERCHANT_ID) && flen[c]) {
		if (flen[c] > BENCH_MERCHANT_LEN)
			return -TSW_E_BAD_INPUT;
		memcpy(t->merchant, f[c], flen[c]);
		t->merchant_bound = true;
	} else {
		static const char alnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

		for (size_t i = 0; i < BENCH_MERCHANT_LEN; i++)
			t->merchant[i] = alnum[ring_rand(rng) % (sizeof(alnum) - 1)];
	}
	if (FIELD(COL_ACQUIRER_ID) && flen[c]) {
		if (flen[c] > BENCH_ACQUIRER_MAX || !all_digits(f[c], flen[c]))
			return -TSW_E_BAD_INPUT;
		memcpy(t->acquirer, f[c], flen[c]);
		t->acquirer_len = (uint8_t)flen[c];
	} else {
		memcpy(t->acquirer, DEFAULT_ACQUIRER, strlen(DEFAULT_ACQUIRER));
		t->acquirer_len = (uint8_t)strlen(DEFAULT_ACQUIRER);
	}
	memcpy(t->mcc, DEFAULT_MCC, 4);
	if (FIELD(COL_MCC) && flen[c]) {
		if (flen[c] != 4 || !all_digits(f[c], 4))
			return -TSW_E_BAD_INPUT;
		memcpy(t->mcc, f[c], 4);
	}
	if (FIELD(COL_DEVICE_REF) && flen[c]) {
		if (flen[c] > BENCH_DEVICE_MAX)
			return -TSW_E_BAD_INPUT;
		memcpy(t->device, f[c], flen[c]);
		t->device_len = (uint8_t)flen[c];
	}
	if (FIELD(COL_TRID) && flen[c]) {
		if (flen[c] > BENCH_TRID_MAX || !all_digits(f[c], flen[c]))
			return -TSW_E_BAD_INPUT;
		memcpy(t->trid, f[c], flen[c]);
		t->trid_len = (uint8_t)flen[c];
	}
	if (FIELD(COL_AMOUNT_LIMIT) && flen[c]) {
		char buf[24];

		if (flen[c] > 12 || !all_digits(f[c], flen[c]))
			return -TSW_E_BAD_INPUT;
		memcpy(buf, f[c], flen[c]);
		buf[flen[c]] = '\0';
		t->amount_limit = strtoull(buf, NULL, 10);
	}
	memcpy(t->currency, DEFAULT_CURRENCY, 3);
	if (FIELD(COL_CURRENCY) && flen[c]) {
		if (flen[c] != 3 || !all_digits(f[c], 3))
			return -TSW_E_BAD_INPUT;
		memcpy(t->currency, f[c], 3);
	}
	t->expect = (struct bench_expect){.n = 1, .rc = {{'0', '0'}}};
	if (FIELD(COL_EXPECT_RC) && flen[c] && bench_expect_parse(f[c], flen[c], &t->expect) < 0)
		return -TSW_E_BAD_INPUT;
	return parse_card(col_of, f, flen, nf, t);
#undef FIELD
}

int bench_tokens_load(const char *path, uint64_t *rng, struct bench_tokens *ret, unsigned *ret_line)
{
	struct bench_tokens out = {0};
	char line[BENCH_CSV_LINE_MAX];
	char *f[COL_MAX + 16];
	size_t flen[COL_MAX + 16], cap = 0;
	int col_of[COL_MAX];
	unsigned lineno = 0, nf;
	FILE *fp;
	int r = 0;

	*ret_line = 0;
	fp = fopen(path, "re");
	if (!fp)
		return -errno;
	for (int i = 0; i < COL_MAX; i++)
		col_of[i] = -1;
	while (fgets(line, sizeof(line), fp)) {
		size_t n = strlen(line);

		lineno++;
		if (n == sizeof(line) - 1 && line[n - 1] != '\n')
			goto err_bad;
		line[strcspn(line, "\r\n")] = '\0';
		if (!line[0])
			continue;
		nf = split(line, f, flen, COL_MAX + 16);
		if (nf > COL_MAX + 16)
			goto err_bad;
		if (lineno == 1) {
			for (unsigned i = 0; i < nf; i++)
				for (int k = 0; k < COL_MAX; k++)
					if (strlen(col_names[k]) == flen[i] &&
					    memcmp(col_names[k], f[i], flen[i]) == 0)
						col_of[k] = (int)i;
			if (col_of[COL_TOKEN] < 0)
				goto err_bad;
			continue;
		}
		if (out.n == cap) {
			size_t ncap = cap ? cap * 2 : 1024;
			struct bench_token *t = realloc(out.t, ncap * sizeof(*t));

			if (!t) {
				r = -ENOMEM;
				goto err_free;
			}
			out.t = t;
			cap = ncap;
		}
		if (parse_row(col_of, f, flen, nf, rng, &out.t[out.n]) < 0)
			goto err_bad;
		out.n++;
	}
	if (ferror(fp)) {
		r = -EIO;
		goto err_free;
	}
	if (out.n == 0) {
		lineno = lineno ? lineno : 1;
		goto err_bad;
	}
	fclose(fp);
	*ret = out;
	return 0;

err_bad:
	r = -TSW_E_BAD_INPUT;
	*ret_line = lineno;
err_free:
	free(out.t);
	fclose(fp);
	return r;
}

void bench_tokens_free(struct bench_tokens *t)
{
	free(t->t);
	t->t = NULL;
	t->n = 0;
}
