/* Fuzz target: CSV import (tsw_vault_import_csv, src/vault/csv.c) into a
 * real vault made in a temp dir (remade every CSV_VAULT_INPUTS inputs so
 * it stays small).
 *
 * Input: the CSV file's bytes, read through fmemopen. Checked
 * invariants, each a trap:
 * - the import returns 0 or -TSW_E_BAD_INPUT (no or bad header);
 *   rows = imported + rejected, and each rejected line is a data line of
 *   the input, rejected once;
 * - no reason carries the PAN (or any field holding digits) of a row;
 * - every data row that was not rejected is in the vault: its token
 *   looks up and decrypts to the row's PAN.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "tsw/error.h"
#include "tsw/vault.h"

#define CSV_VAULT_INPUTS 2000 /* inputs per vault */
#define CSV_ROWS_MAX 4096     /* lines looked at per input (bounded time) */
#define CSV_FIELD_DIGITS 6    /* fields with this many digits are looked for in reasons */

static struct tsw_vault *vault;
static unsigned inputs;
static unsigned generation;
static char vdir[512], key_file[512];

struct rejects {
	unsigned long n_lines; /* lines of the input */
	unsigned long count;
	uint8_t seen[CSV_ROWS_MAX + 2];
	const uint8_t *data;
	size_t size;
};

static void open_vault(void)
{
	if (vault) {
		char cmd[1100];

		tsw_vault_close(vault);
		snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s'", vdir, key_file);
		(void)!system(cmd);
	}
	snprintf(vdir, sizeof(vdir), "%s/vault%u", fuzz_dir(), generation);
	snprintf(key_file, sizeof(key_file), "%s/key%u", fuzz_dir(), generation);
	generation++;
	if (tsw_vault_open(vdir, key_file, TSW_VAULT_CREATE, &vault) < 0 ||
	    tsw_vault_add_token_bin(vault, "4000", 4) < 0)
		abort();
	inputs = 0;
}

/* Fields of one line, split as csv.c does (trailing CR/LF dropped). */
static int split(const uint8_t *line, size_t len, const uint8_t **f, size_t *fl, int max)
{
	int n = 0;
	size_t start = 0;

	while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		len--;
	for (size_t i = 0; i <= len; i++) {
		if (i < len && line[i] != ',')
			continue;
		if (n == max)
			return -1;
		f[n] = line + start;
		fl[n] = i - start;
		n++;
		start = i + 1;
	}
	return n;
}

static size_t digits(const uint8_t *s, size_t n)
{
	size_t d = 0;

	for (size_t i = 0; i < n; i++)
		d += s[i] >= '0' && s[i] <= '9';
	return d;
}

/* Where the second line starts (size when there is none). */
static size_t line1_end(const uint8_t *data, size_t size)
{
	const uint8_t *nl = memchr(data, '\n', size);

	return nl ? (size_t)(nl - data) + 1 : size;
}

static void on_reject(void *ctx, unsigned long line, int err, const char *reason)
{
	struct rejects *rj = ctx;
	size_t rl = strlen(reason);

	(void)err;
	fuzz_check(line >= 2 && line <= rj->n_lines);
	if (line <= CSV_ROWS_MAX) {
		fuzz_check(!rj->seen[line]);
		rj->seen[line] = 1;
	}
	rj->count++;
	/* reasons are static strings: no field of any data row */
	for (size_t at = line1_end(rj->data, rj->size); at < rj->size;) {
		const uint8_t *nl = memchr(rj->data + at, '\n', rj->size - at);
		size_t end = nl ? (size_t)(nl - rj->data) : rj->size;
		const uint8_t *f[64];
		size_t fl[64];
		int n = split(rj->data + at, end - at, f, fl, 64);

		for (int i = 0; i < n; i++)
			if (digits(f[i], fl[i]) >= CSV_FIELD_DIGITS)
				fuzz_check(!fuzz_has(reason, rl, f[i], fl[i]));
		at = end + 1;
	}
}

static int column(const uint8_t **f, const size_t *fl, int n, const char *name)
{
	for (int i = 0; i < n; i++)
		if (fl[i] == strlen(name) && memcmp(f[i], name, fl[i]) == 0)
			return i;
	return -1;
}

/* Every data row not rejected is in the vault with its PAN. */
static void check_imported(const struct rejects *rj, int n_cols, int c_token, int c_pan)
{
	struct tsw_vault_reader *r;
	unsigned long lineno = 1;
	size_t at;
	const uint8_t *nl = memchr(rj->data, '\n', rj->size);

	if (!nl)
		return;
	fuzz_check(tsw_vault_reader_open(vault, &r) == 0);
	fuzz_check(tsw_vault_reader_renew(r) == 0);
	for (at = (size_t)(nl - rj->data) + 1; at < rj->size && lineno < CSV_ROWS_MAX;) {
		const uint8_t *f[64];
		size_t fl[64], end;
		struct tsw_token t;
		char pan[32];
		int n, len;

		nl = memchr(rj->data + at, '\n', rj->size - at);
		end = nl ? (size_t)(nl - rj->data) + 1 : rj->size;
		lineno++;
		if (end - at == 1 && rj->data[at] == '\n') {
			at = end;
			continue;
		}
		n = split(rj->data + at, end - at, f, fl, 64);
		at = end;
		if (rj->seen[lineno])
			continue;
		fuzz_check(n == n_cols);
		fuzz_check(tsw_vault_lookup(r, (const char *)f[c_token], fl[c_token], &t) == 0);
		len = tsw_vault_decrypt_pan(r, &t, pan, sizeof(pan));
		fuzz_check(len > 0 && (size_t)len == fl[c_pan] &&
			   memcmp(pan, f[c_pan], fl[c_pan]) == 0);
	}
	tsw_vault_reader_close(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rejects *rj = calloc(1, sizeof(*rj));
	struct tsw_vault_import_stats st;
	const uint8_t *f[64], *nl;
	size_t fl[64];
	FILE *in;
	int r, n_cols;

	fuzz_check(rj != NULL);
	if (!vault || inputs++ >= CSV_VAULT_INPUTS)
		open_vault();
	rj->data = data;
	rj->size = size;
	for (size_t i = 0; i < size; i++)
		rj->n_lines += data[i] == '\n';
	rj->n_lines += size && data[size - 1] != '\n';
	in = fmemopen((void *)data, size ? size : 1, "rb");
	fuzz_check(in != NULL);
	if (size == 0)
		fgetc(in); /* fmemopen needs one byte; an empty file is read as such */
	memset(&st, 0, sizeof(st));
	r = tsw_vault_import_csv(vault, in, on_reject, rj, &st);
	fclose(in);
	fuzz_check(r == 0 || r == -TSW_E_BAD_INPUT);
	if (r < 0) {
		fuzz_check(rj->count == 0);
		goto out;
	}
	fuzz_check(st.rows == st.imported + st.rejected && st.rejected == rj->count);
	if (rj->n_lines > CSV_ROWS_MAX)
		goto out;
	nl = memchr(data, '\n', size);
	n_cols = split(data, nl ? (size_t)(nl - data) + 1 : size, f, fl, 64);
	check_imported(rj, n_cols, column(f, fl, n_cols, "token"), column(f, fl, n_cols, "pan"));
out:
	free(rj);
	return 0;
}
