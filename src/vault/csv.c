/* CSV import: the header row names the columns; each data row becomes a
 * tsw_vault_row handed to a batch. Fields are plain (no quoting); a bad
 * field rejects its row with a reason that never carries the value. */
#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "tsw/error.h"

/* the longest line, its newline included; a longer one is rejected */
#define CSV_LINE_MAX 4096
#define CSV_FIELDS_MAX 32
#define STR_(x) #x
#define STR(x) STR_(x)

enum col {
	COL_TOKEN,
	COL_PAN,
	COL_PAN_EXPIRY,
	COL_TOKEN_EXPIRY,
	COL_STATUS,
	COL_TRID,
	COL_ASSURANCE_LEVEL,
	COL_POS_MODES,
	COL_MERCHANT_IDS,
	COL_MAX_USES,
	COL_AMOUNT_LIMIT,
	COL_CURRENCY,
	COL_DEVICE_REQUIRED,
	COL_ORIGINAL_TOKEN,
	COL_PAR,
	COL_TOKEN_REF,
	COL_DEVICE_REF,
	COL_VALID_FROM,
	COL_VALID_UNTIL,
	COL_CVN,
	COL_PSN,
	COL_MAX
};

static const char *const col_names[COL_MAX] = {
    [COL_TOKEN] = "token",
    [COL_PAN] = "pan",
    [COL_PAN_EXPIRY] = "pan_expiry",
    [COL_TOKEN_EXPIRY] = "token_expiry",
    [COL_STATUS] = "status",
    [COL_TRID] = "trid",
    [COL_ASSURANCE_LEVEL] = "assurance_level",
    [COL_POS_MODES] = "pos_modes",
    [COL_MERCHANT_IDS] = "merchant_ids",
    [COL_MAX_USES] = "max_uses",
    [COL_AMOUNT_LIMIT] = "amount_limit",
    [COL_CURRENCY] = "currency",
    [COL_DEVICE_REQUIRED] = "device_required",
    [COL_ORIGINAL_TOKEN] = "original_token",
    [COL_PAR] = "par",
    [COL_TOKEN_REF] = "token_ref",
    [COL_DEVICE_REF] = "device_ref",
    [COL_VALID_FROM] = "valid_from",
    [COL_VALID_UNTIL] = "valid_until",
    [COL_CVN] = "cvn",
    [COL_PSN] = "psn",
};

static const char *const pos_names[TSW_POS_MODE_MAX] = {
    [TSW_POS_CONTACTLESS] = "contactless", [TSW_POS_CHIP] = "chip",
    [TSW_POS_ECOMMERCE] = "ecommerce",	   [TSW_POS_COF] = "cof",
    [TSW_POS_MANUAL] = "manual",	   [TSW_POS_MAGSTRIPE] = "magstripe",
};

struct field {
	const char *s;
	size_t len;
};

/* Splits line in place at commas. Returns the field count or -1. */
static int split(char *line, size_t len, struct field *f, int max)
{
	int n = 0;
	size_t start = 0;

	while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		line[--len] = '\0';
	for (size_t i = 0; i <= len; i++) {
		if (i < len && line[i] != ',')
			continue;
		if (n >= max)
			return -1;
		f[n].s = line + start;
		f[n].len = i - start;
		n++;
		start = i + 1;
	}
	return n;
}

static bool copy_str(char *dst, size_t cap, struct field f)
{
	if (f.len >= cap)
		return false;
	memcpy(dst, f.s, f.len);
	dst[f.len] = '\0';
	return true;
}

static bool parse_u64(struct field f, uint64_t max, uint64_t *ret)
{
	uint64_t v = 0;

	if (f.len == 0) {
		*ret = 0;
		return true;
	}
	if (f.len > 20)
		return false;
	for (size_t i = 0; i < f.len; i++) {
		unsigned d = (unsigned)(f.s[i] - '0');

		if (d > 9 || __builtin_mul_overflow(v, 10, &v) ||
		    __builtin_add_overflow(v, d, &v) || v > max)
			return false;
	}
	*ret = v;
	return true;
}

static bool parse_pos_modes(struct field f, uint32_t *ret)
{
	uint32_t modes = 0;
	size_t start = 0;

	for (size_t i = 0; f.len && i <= f.len; i++) {
		size_t n;
		int m;

		if (i < f.len && f.s[i] != '|')
			continue;
		n = i - start;
		for (m = 0; m < TSW_POS_MODE_MAX; m++)
			if (strlen(pos_names[m]) == n && memcmp(pos_names[m], f.s + start, n) == 0)
				break;
		if (m == TSW_POS_MODE_MAX)
			return false;
		modes |= 1u << m;
		start = i + 1;
	}
	*ret = modes;
	return true;
}

/* "MID" or "MID:ACQUIRER:MCC", |-separated. */
static bool parse_merchants(struct field f, struct tsw_token *t)
{
	size_t start = 0;

	t->n_merchants = 0;
	for (size_t i = 0; f.len && i <= f.len; i++) {
		struct tsw_token_merchant *m;
		struct field part[3];
		char item[TSW_MERCHANT_ID_LEN + TSW_ACQUIRER_ID_MAX + 8];
		int np;

		if (i < f.len && f.s[i] != '|')
			continue;
		if (t->n_merchants >= TSW_TOKEN_MERCHANTS_MAX || i - start >= sizeof(item))
			return false;
		memcpy(item, f.s + start, i - start);
		item[i - start] = '\0';
		start = i + 1;
		m = &t->merchants[t->n_merchants++];
		memset(m, 0, sizeof(*m));
		np = 0;
		for (char *p = item, *q; np < 3; p = q + 1) {
			q = strchr(p, ':');
			part[np].s = p;
			part[np].len = q ? (size_t)(q - p) : strlen(p);
			np++;
			if (!q)
				break;
		}
		if (np == 2 || !copy_str(m->merchant_id, sizeof(m->merchant_id), part[0]))
			return false;
		if (np == 3 && (!copy_str(m->acquirer_id, sizeof(m->acquirer_id), part[1]) ||
				!copy_str(m->mcc, sizeof(m->mcc), part[2])))
			return false;
	}
	return true;
}

/* Fills row from the fields; returns a reason on failure. */
static const char *parse_row(const int *col_of, const struct field *f, struct tsw_vault_row *row)
{
	struct tsw_token *t = &row->token;
	uint64_t u = 0;
	struct field none = {"", 0};
#define F(c) (col_of[c] >= 0 ? f[col_of[c]] : none)

	memset(row, 0, sizeof(*row));
	if (!copy_str(t->token, sizeof(t->token), F(COL_TOKEN)))
		return "token: too long";
	if (!copy_str(row->pan, sizeof(row->pan), F(COL_PAN)))
		return "pan: too long";
	row->pan_len = (uint8_t)F(COL_PAN).len;
	if (!copy_str(t->pan_expiry, sizeof(t->pan_expiry), F(COL_PAN_EXPIRY)))
		return "pan_expiry: not YYMM";
	if (!copy_str(t->token_expiry, sizeof(t->token_expiry), F(COL_TOKEN_EXPIRY)))
		return "token_expiry: not YYMM";
	{
		struct field s = F(COL_STATUS);

		if (s.len == 0 || (s.len == 6 && memcmp(s.s, "active", 6) == 0))
			t->status = TSW_TOKEN_ACTIVE;
		else if (s.len == 9 && memcmp(s.s, "suspended", 9) == 0)
			t->status = TSW_TOKEN_SUSPENDED;
		else if (s.len == 7 && memcmp(s.s, "deleted", 7) == 0)
			t->status = TSW_TOKEN_DELETED;
		else
			return "status: not active|suspended|deleted";
	}
	if (!copy_str(t->trid, sizeof(t->trid), F(COL_TRID)))
		return "trid: not 11 digits";
	if (!parse_u64(F(COL_ASSURANCE_LEVEL), 99, &u))
		return "assurance_level: not 0-99";
	t->assurance_level = (uint8_t)u;
	if (!parse_pos_modes(F(COL_POS_MODES), &t->pos_modes))
		return "pos_modes: unknown mode";
	if (!parse_merchants(F(COL_MERCHANT_IDS), t))
		return "merchant_ids: malformed or too many";
	if (!parse_u64(F(COL_MAX_USES), UINT32_MAX, &u))
		return "max_uses: not a number";
	t->max_uses = (uint32_t)u;
	if (!parse_u64(F(COL_AMOUNT_LIMIT), UINT64_MAX, &t->amount_limit))
		return "amount_limit: not a number";
	if (!copy_str(t->currency, sizeof(t->currency), F(COL_CURRENCY)))
		return "currency: not 3 digits";
	if (!parse_u64(F(COL_DEVICE_REQUIRED), 1, &u))
		return "device_required: not 0|1";
	t->device_required = (uint8_t)u;
	if (!copy_str(t->original_token, sizeof(t->original_token), F(COL_ORIGINAL_TOKEN)))
		return "original_token: too long";
	if (!copy_str(t->par, sizeof(t->par), F(COL_PAR)))
		return "par: too long";
	if (!copy_str(t->token_ref, sizeof(t->token_ref), F(COL_TOKEN_REF)))
		return "token_ref: too long";
	if (!copy_str(row->device_ref, sizeof(row->device_ref), F(COL_DEVICE_REF)))
		return "device_ref: too long";
	if (!parse_u64(F(COL_VALID_FROM), UINT32_MAX, &u))
		return "valid_from: not unix seconds";
	t->valid_from = (uint32_t)u;
	if (!parse_u64(F(COL_VALID_UNTIL), UINT32_MAX, &u))
		return "valid_until: not unix seconds";
	t->valid_until = (uint32_t)u;
	if (!parse_u64(F(COL_CVN), UINT8_MAX, &u) || !TSW_TOKEN_CVN_VALID(u))
		return "cvn: not empty, 10, 16, 18 or 20";
	t->cvn = (uint8_t)u;
	if (F(COL_PSN).len != 0 && F(COL_PSN).len != 2)
		return "psn: not two digits";
	if (!parse_u64(F(COL_PSN), TSW_TOKEN_PSN_MAX, &u))
		return "psn: not two digits";
	t->psn = (uint8_t)u;
	return NULL;
#undef F
}

static int parse_header(char *line, size_t len, int *col_of, int *ret_n)
{
	struct field f[CSV_FIELDS_MAX];
	int n = split(line, len, f, CSV_FIELDS_MAX);

	if (n <= 0)
		return -TSW_E_BAD_INPUT;
	for (int c = 0; c < COL_MAX; c++)
		col_of[c] = -1;
	for (int i = 0; i < n; i++) {
		int c;

		for (c = 0; c < COL_MAX; c++)
			if (strlen(col_names[c]) == f[i].len &&
			    memcmp(col_names[c], f[i].s, f[i].len) == 0)
				break;
		if (c == COL_MAX || col_of[c] >= 0)
			return -TSW_E_BAD_INPUT; /* unknown or repeated column */
		col_of[c] = i;
	}
	for (int c = COL_TOKEN; c <= COL_TOKEN_EXPIRY; c++)
		if (col_of[c] < 0)
			return -TSW_E_BAD_INPUT;
	*ret_n = n;
	return 0;
}

/* Reads one line of in into buf (CSV_LINE_MAX + 1 bytes): newline kept,
 * NUL-terminated, NUL bytes inside kept (the length says where it ends).
 * A longer line is read on to its end without being stored, so neither
 * memory nor a reallocated copy of a PAN grows with it. Returns the
 * length, 0 at the end of input, -E2BIG (a line over CSV_LINE_MAX bytes,
 * consumed; buf holds its start) or -EIO. */
static ssize_t read_line(FILE *in, char *buf)
{
	size_t n = 0;
	int c;

	while ((c = getc_unlocked(in)) != EOF) {
		if (n == CSV_LINE_MAX) {
			while (c != '\n' && c != EOF)
				c = getc_unlocked(in);
			return ferror(in) ? -EIO : -E2BIG;
		}
		buf[n++] = (char)c;
		if (c == '\n')
			break;
	}
	if (ferror(in))
		return -EIO;
	buf[n] = '\0';
	return (ssize_t)n;
}

int tsw_vault_import_csv(struct tsw_vault *v, FILE *in, tsw_vault_reject_fn on_reject, void *ctx,
			 struct tsw_vault_import_stats *ret_stats)
{
	int col_of[COL_MAX];
	struct tsw_vault_batch *b = NULL;
	struct tsw_vault_row row;
	char line[CSV_LINE_MAX + 1];
	ssize_t len;
	unsigned long lineno = 1, rows = 0;
	int n_cols = 0, r;

	if (v->flags & TSW_VAULT_RDONLY)
		return -EROFS;
	memset(&row, 0, sizeof(row));
	len = read_line(in, line);
	if (len == -EIO) {
		r = -EIO;
		goto out_wipe;
	}
	if (len <= 0) {
		r = -TSW_E_BAD_INPUT;
		goto out_wipe;
	}
	r = parse_header(line, (size_t)len, col_of, &n_cols);
	if (r < 0)
		goto out_wipe;
	r = tsw_vault_batch_begin(v, 0, on_reject, ctx, &b);
	if (r < 0)
		goto out_wipe;
	while ((len = read_line(in, line)) != 0) {
		struct field f[CSV_FIELDS_MAX];
		const char *why;
		int n;

		if (len == -EIO) {
			r = -EIO;
			break;
		}
		lineno++;
		if (len == 1 && line[0] == '\n')
			continue;
		rows++;
		if (len == -E2BIG) {
			why = "line longer than " STR(CSV_LINE_MAX) " bytes";
			OPENSSL_cleanse(line, CSV_LINE_MAX);
		} else {
			n = split(line, (size_t)len, f, CSV_FIELDS_MAX);
			why = n != n_cols ? "wrong number of fields" : parse_row(col_of, f, &row);
			OPENSSL_cleanse(line, (size_t)len);
		}
		if (why) {
			if (on_reject)
				on_reject(ctx, lineno, -TSW_E_BAD_INPUT, why);
			continue;
		}
		r = tsw_vault_batch_add(b, &row, lineno);
		if (r < 0)
			break;
	}
	{
		struct tsw_vault_import_stats st;
		int fr = tsw_vault_batch_finish(b, &st);

		if (r == 0)
			r = fr;
		st.rows = rows;
		st.rejected = st.rows - st.imported;
		if (ret_stats)
			*ret_stats = st;
	}
out_wipe:
	OPENSSL_cleanse(&row, sizeof(row));
	OPENSSL_cleanse(line, sizeof(line));
	return r;
}
