/* Card cryptography keys a test tool holds in a software HSM of its own:
 * loaded from a vault's key store (read only, beside a running switch),
 * or added one by one (tests). tokbench plays the card and the terminal
 * with them (ARQC, acquirer PIN blocks), issuer-sim the issuer (its PIN
 * blocks). The clear bytes exist only while being imported. */
#ifndef TSW_TOOLS_CARDKEYS_H
#define TSW_TOOLS_CARDKEYS_H

#include <stddef.h>
#include <stdint.h>

#include "tsw/hsm.h"
#include "tsw/vault.h"

struct cardkey {
	uint8_t kind; /* enum tsw_vault_key_kind */
	char scope[TSW_VAULT_KEY_SCOPE_MAX + 1];
	uint8_t scope_len;
	uint64_t added; /* unix seconds: the newest of a scope wins */
	struct tsw_hsm_key *key;
};

struct cardkeys {
	struct tsw_hsm *hsm;
	struct tsw_hsm_session *s; /* one thread uses it: the tool's loop */
	struct cardkey k[TSW_VAULT_HSM_KEYS_MAX];
	size_t n;
};

/* Opens the software HSM and a session, no keys yet. Returns 0 or the
 * errors of tsw_hsm_soft_open() / tsw_hsm_session_open(). ck is large:
 * allocate it. */
int cardkeys_open(struct cardkeys *ck);

/* Imports bytes[0..len) as a key of kind (imk-ac, zpk-acquirer or
 * zpk-issuer; tavv is -TSW_E_BAD_INPUT: no tool plays it) and alg for
 * scope. The caller wipes bytes. Returns 0, -TSW_E_FULL,
 * -TSW_E_BAD_INPUT or the errors of tsw_hsm_key_import(). */
int cardkeys_add(struct cardkeys *ck, enum tsw_vault_key_kind kind, enum tsw_vault_key_alg alg,
		 const char *scope, uint64_t added, const uint8_t *bytes, size_t len);

/* Opens the vault at dir read only, loads every active key
 * (tsw_vault_key_load) and imports those cardkeys_add() takes (tavv keys
 * are left out), wiping the loaded copies at once. Returns the number of
 * keys imported (0: the store has none the tools use), or the errors of
 * tsw_vault_open() and tsw_vault_key_load(), -ENOMEM. */
int cardkeys_load(struct cardkeys *ck, const char *dir, const char *key_file);

/* Frees every key, the session and the HSM (wiped). */
void cardkeys_close(struct cardkeys *ck);

/* The newest key of kind whose scope is the longest prefix of
 * digits[0..len) (imk-ac: the token's range); NULL when none. */
const struct tsw_hsm_key *cardkeys_by_prefix(const struct cardkeys *ck,
					     enum tsw_vault_key_kind kind, const char *digits,
					     size_t len);

/* The newest key of kind whose scope is exactly scope[0..len) (a DE32 for
 * zpk-acquirer, an issuer index for zpk-issuer); NULL when none. */
const struct tsw_hsm_key *cardkeys_by_scope(const struct cardkeys *ck, enum tsw_vault_key_kind kind,
					    const char *scope, size_t len);

#endif
