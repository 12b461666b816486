/* A vault of numbered tokens for the engine's tests and benchmarks
 * (tests/unit/engine/harness.c, bench/engine/bench_common.c): tokens
 * 4000... 1..n for PANs 512345... 1..n, in dir/vault with its key file
 * dir/key. Linked as the static library tsw_testvault, without Criterion:
 * callers check the returns their own way. */
#ifndef TSW_TESTS_TESTVAULT_H
#define TSW_TESTS_TESTVAULT_H

#include "tsw/vault.h"

#define TESTVAULT_TOKEN_BIN "4000"
#define TESTVAULT_PAN_PREFIX "512345"

/* Writes the 16-digit Luhn-valid number prefix, i zero-padded to 15
 * digits, check digit (tsw_luhn_check_digit) and a NUL into out. prefix
 * is at most 15 digits; i fits the digits left. */
void testvault_number(char out[17], const char *prefix, unsigned i);

/* Called for row i (0-based) after its token fields are copied from the
 * template and its numbers written: a test gives each token its own
 * status, limits or PAN. */
typedef void (*testvault_fill_fn)(void *arg, unsigned i, struct tsw_vault_row *row);

/* Creates the vault in dir (which exists) with the token BIN 4000 and
 * imports n_tokens rows in one batch: row i has the fields of tmpl (NULL:
 * zeroes), token testvault_number(4000, i + 1), PAN
 * testvault_number(512345, i + 1), then whatever fill (may be NULL)
 * changes. Rejected rows go to on_reject (may be NULL). On success
 * *ret_vault is open (tsw_vault_close) and *ret_stats (may be NULL) holds
 * the import's counts. Returns 0 or the first error of tsw_vault_open,
 * tsw_vault_add_token_bin, tsw_vault_batch_begin/_add/_finish (the vault
 * is closed then). */
int testvault_create(const char *dir, unsigned n_tokens, const struct tsw_token *tmpl,
		     testvault_fill_fn fill, void *arg, tsw_vault_reject_fn on_reject,
		     struct tsw_vault **ret_vault, struct tsw_vault_import_stats *ret_stats);

#endif
