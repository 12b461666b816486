/* The token vault: one LMDB environment of token records with encrypted
 * PANs (AES-256-GCM, token as associated data), a PAN -> tokens index keyed
 * by HMAC-SHA-256, device bindings, and token BIN ranges as metadata.
 *
 * The switch opens it read-only; tokvault writes it while the switch runs.
 * Each worker uses its own reader (one reusable LMDB read transaction and
 * one cipher context).
 */
#ifndef TSW_VAULT_H
#define TSW_VAULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tsw/token.h"

struct tsw_vault;
struct tsw_vault_reader;

enum {
	TSW_VAULT_RDONLY = 1u << 0,
	TSW_VAULT_CREATE = 1u << 1,
};

/* Opens the vault in dir with keys from key_file (mode 0600 or stricter,
 * else -TSW_E_BAD_KEY). Returns 0, -TSW_E_BAD_KEY, -TSW_E_VERSION,
 * -TSW_E_CORRUPT, -ENOENT, or another -errno. */
int tsw_vault_open(const char *dir, const char *key_file, unsigned flags,
		   struct tsw_vault **ret_vault);
/* Closes and wipes the keys. */
void tsw_vault_close(struct tsw_vault *v);

/* True when token (digits, len) lies in one of the vault's token BIN
 * ranges. Lock-free; reads metadata cached at open (and refreshed by
 * tsw_vault_reader_renew). */
bool tsw_vault_in_token_range(const struct tsw_vault *v, const char *token, size_t len);

/* A worker's reader. Returns 0 or -ENOMEM / -errno. */
int tsw_vault_reader_open(struct tsw_vault *v, struct tsw_vault_reader **ret_reader);
void tsw_vault_reader_close(struct tsw_vault_reader *r);
/* Renew once per loop iteration (sees every committed change), reset
 * before waiting (so the writer can reuse pages). */
int tsw_vault_reader_renew(struct tsw_vault_reader *r);
void tsw_vault_reader_reset(struct tsw_vault_reader *r);

/* Looks token up and copies the decoded record into *ret_token (caller
 * owned; no pointers into the map). Returns 0, -TSW_E_NOT_FOUND,
 * -TSW_E_CORRUPT. Requires a renewed reader. */
int tsw_vault_lookup(struct tsw_vault_reader *r, const char *token, size_t len,
		     struct tsw_token *ret_token);

/* Decrypts the PAN of a record returned by lookup into out (digits, not
 * NUL-terminated); the caller wipes out when done. Returns the PAN length,
 * or -TSW_E_DECRYPT, -TSW_E_NO_SPACE, -TSW_E_NOT_FOUND (key id unknown). */
int tsw_vault_decrypt_pan(struct tsw_vault_reader *r, const struct tsw_token *t, char *out,
			  size_t cap);

/* 1 when device_ref is bound to token, 0 when not, or a negative error. */
int tsw_vault_device_bound(struct tsw_vault_reader *r, const char *token, size_t token_len,
			   const char *device_ref, size_t ref_len);

#endif
