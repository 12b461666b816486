#include "cardkeys.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "tsw/error.h"

int cardkeys_open(struct cardkeys *ck)
{
	struct tsw_hsm_soft_config cfg = {0};
	int r;

	memset(ck, 0, sizeof(*ck));
	r = tsw_hsm_soft_open(&cfg, &ck->hsm);
	if (r < 0)
		return r;
	r = tsw_hsm_session_open(ck->hsm, &ck->s);
	if (r < 0) {
		tsw_hsm_close(ck->hsm);
		ck->hsm = NULL;
	}
	return r;
}

/* The HSM's kind for a vault kind the tools use. */
static int hsm_kind(enum tsw_vault_key_kind kind, enum tsw_hsm_kind *ret)
{
	switch (kind) {
	case TSW_VAULT_KEY_IMK_AC:
		*ret = TSW_HSM_IMK_AC;
		return 0;
	case TSW_VAULT_KEY_ZPK_ACQUIRER:
		*ret = TSW_HSM_ZPK_ACQUIRER;
		return 0;
	case TSW_VAULT_KEY_ZPK_ISSUER:
		*ret = TSW_HSM_ZPK_ISSUER;
		return 0;
	case TSW_VAULT_KEY_TAVV:
	case TSW_VAULT_KEY_KIND_MAX:
		break;
	}
	return -TSW_E_BAD_INPUT;
}

int cardkeys_add(struct cardkeys *ck, enum tsw_vault_key_kind kind, enum tsw_vault_key_alg alg,
		 const char *scope, uint64_t added, const uint8_t *bytes, size_t len)
{
	struct cardkey *k;
	enum tsw_hsm_kind hk;
	size_t slen = strlen(scope);
	int r;

	if (ck->n == sizeof(ck->k) / sizeof(ck->k[0]))
		return -TSW_E_FULL;
	if (hsm_kind(kind, &hk) < 0 || alg >= TSW_VAULT_KEY_ALG_MAX || slen == 0 ||
	    slen > TSW_VAULT_KEY_SCOPE_MAX)
		return -TSW_E_BAD_INPUT;
	k = &ck->k[ck->n];
	/* enum tsw_vault_key_alg is in the order of enum tsw_hsm_alg */
	r = tsw_hsm_key_import(ck->hsm, hk, (enum tsw_hsm_alg)alg, bytes, len, &k->key);
	if (r < 0)
		return r;
	k->kind = (uint8_t)kind;
	memcpy(k->scope, scope, slen + 1);
	k->scope_len = (uint8_t)slen;
	k->added = added;
	ck->n++;
	return 0;
}

int cardkeys_load(struct cardkeys *ck, const char *dir, const char *key_file)
{
	const size_t cap = TSW_VAULT_HSM_KEYS_MAX;
	struct tsw_vault_key *keys;
	struct tsw_vault *v = NULL;
	size_t n = 0;
	int r, imported = 0;

	keys = calloc(cap, sizeof(*keys));
	if (!keys)
		return -ENOMEM;
	r = tsw_vault_open(dir, key_file, TSW_VAULT_RDONLY, &v);
	if (r < 0)
		goto out_free;
	r = tsw_vault_key_load(v, keys, cap, &n);
	tsw_vault_close(v);
	if (r < 0)
		goto out_free;
	for (size_t i = 0; i < n; i++) {
		const struct tsw_vault_key *k = &keys[i];

		if (k->info.kind == TSW_VAULT_KEY_TAVV)
			continue;
		r = cardkeys_add(ck, (enum tsw_vault_key_kind)k->info.kind,
				 (enum tsw_vault_key_alg)k->info.alg, k->info.scope, k->info.added,
				 k->bytes, k->len);
		if (r < 0)
			goto out_free;
		imported++;
	}
	r = imported;
out_free:
	OPENSSL_cleanse(keys, cap * sizeof(*keys));
	free(keys);
	return r;
}

void cardkeys_close(struct cardkeys *ck)
{
	for (size_t i = 0; i < ck->n; i++)
		tsw_hsm_key_free(ck->k[i].key);
	ck->n = 0;
	tsw_hsm_session_close(ck->s);
	tsw_hsm_close(ck->hsm);
	ck->s = NULL;
	ck->hsm = NULL;
}

/* Keeps the better of best and k: a longer scope, else a newer key. */
static const struct cardkey *better(const struct cardkey *best, const struct cardkey *k)
{
	if (!best || k->scope_len > best->scope_len ||
	    (k->scope_len == best->scope_len && k->added >= best->added))
		return k;
	return best;
}

const struct tsw_hsm_key *cardkeys_by_prefix(const struct cardkeys *ck,
					     enum tsw_vault_key_kind kind, const char *digits,
					     size_t len)
{
	const struct cardkey *best = NULL;

	for (size_t i = 0; i < ck->n; i++) {
		const struct cardkey *k = &ck->k[i];

		if (k->kind == kind && k->scope_len <= len &&
		    memcmp(k->scope, digits, k->scope_len) == 0)
			best = better(best, k);
	}
	return best ? best->key : NULL;
}

const struct tsw_hsm_key *cardkeys_by_scope(const struct cardkeys *ck, enum tsw_vault_key_kind kind,
					    const char *scope, size_t len)
{
	const struct cardkey *best = NULL;

	for (size_t i = 0; i < ck->n; i++) {
		const struct cardkey *k = &ck->k[i];

		if (k->kind == kind && k->scope_len == len && memcmp(k->scope, scope, len) == 0)
			best = better(best, k);
	}
	return best ? best->key : NULL;
}
