/* A vault of numbered tokens for tests and benchmarks (see testvault.h). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "testvault.h"
#include "tsw/luhn.h"

#define TESTVAULT_PATH_MAX PATH_MAX

void testvault_number(char out[17], const char *prefix, unsigned i)
{
	snprintf(out, 17, "%s%0*u", prefix, (int)(15 - strlen(prefix)), i);
	out[15] = tsw_luhn_check_digit(out, 15);
	out[16] = 0;
}

static int import_rows(struct tsw_vault *v, unsigned n_tokens, const struct tsw_token *tmpl,
		       testvault_fill_fn fill, void *arg, tsw_vault_reject_fn on_reject,
		       struct tsw_vault_import_stats *ret_stats)
{
	struct tsw_vault_import_stats st;
	struct tsw_vault_batch *b;
	int r, r_add = 0;

	r = tsw_vault_batch_begin(v, 0, on_reject, NULL, &b);
	if (r < 0)
		return r;
	for (unsigned i = 0; i < n_tokens && r_add == 0; i++) {
		struct tsw_vault_row row;

		memset(&row, 0, sizeof(row));
		if (tmpl)
			row.token = *tmpl;
		testvault_number(row.token.token, TESTVAULT_TOKEN_BIN, i + 1);
		row.token.token_len = 16;
		testvault_number(row.pan, TESTVAULT_PAN_PREFIX, i + 1);
		row.pan_len = 16;
		if (fill)
			fill(arg, i, &row);
		r_add = tsw_vault_batch_add(b, &row, i + 1);
	}
	r = tsw_vault_batch_finish(b, &st);
	if (r_add < 0)
		return r_add;
	if (r < 0)
		return r;
	if (ret_stats)
		*ret_stats = st;
	return 0;
}

int testvault_create(const char *dir, unsigned n_tokens, const struct tsw_token *tmpl,
		     testvault_fill_fn fill, void *arg, tsw_vault_reject_fn on_reject,
		     struct tsw_vault **ret_vault, struct tsw_vault_import_stats *ret_stats)
{
	char vdir[TESTVAULT_PATH_MAX], key[TESTVAULT_PATH_MAX];
	struct tsw_vault *v;
	int r;

	if (snprintf(vdir, sizeof(vdir), "%s/vault", dir) >= (int)sizeof(vdir) ||
	    snprintf(key, sizeof(key), "%s/key", dir) >= (int)sizeof(key))
		return -ENAMETOOLONG;
	r = tsw_vault_open(vdir, key, TSW_VAULT_CREATE, &v);
	if (r < 0)
		return r;
	r = tsw_vault_add_token_bin(v, TESTVAULT_TOKEN_BIN, strlen(TESTVAULT_TOKEN_BIN));
	if (r < 0)
		goto err_close;
	r = import_rows(v, n_tokens, tmpl, fill, arg, on_reject, ret_stats);
	if (r < 0)
		goto err_close;
	*ret_vault = v;
	return 0;

err_close:
	tsw_vault_close(v);
	return r;
}
