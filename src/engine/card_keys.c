/* The card keys the workers use (imk-ac, zpk-acquirer, zpk-issuer, tavv):
 * one immutable set loaded from the vault's key store into the HSM, shared
 * by every worker, replaced whole at a reload and freed by its last
 * reference, so that a request in flight keeps the key its cryptogram
 * verified under even when a reload retires it meanwhile.
 *
 * Lookups are binary searches over one array sorted by (kind, scope
 * length, scope, newest first): a kind and scope give a run of keys, the
 * newest first, which is the order rotation wants (docs/hsm.md). */
#include <errno.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "card_crypto.h"
#include "tsw/error.h"
#include "tsw/hsm.h"
#include "tsw/vault.h"

struct card_key {
	uint8_t kind; /* enum tsw_vault_key_kind */
	uint8_t scope_len;
	char scope[TSW_VAULT_KEY_SCOPE_MAX];
	uint64_t added;
	uint32_t order; /* in the store's (kind, id) order: breaks ties of added */
	struct tsw_hsm_key *key;
};

struct tsw_card_keys {
	uint32_t refs; /* atomic */
	uint32_t n;
	struct card_key keys[];
};

static int cmp_scope(uint8_t ka, const char *sa, size_t la, uint8_t kb, const char *sb, size_t lb)
{
	if (ka != kb)
		return ka < kb ? -1 : 1;
	if (la != lb)
		return la < lb ? -1 : 1;
	return memcmp(sa, sb, la);
}

static int cmp_key(const void *a, const void *b)
{
	const struct card_key *x = a, *y = b;
	int c = cmp_scope(x->kind, x->scope, x->scope_len, y->kind, y->scope, y->scope_len);

	if (c)
		return c;
	/* newest first; keys added in the same second by id, the later
	 * first, so that every load orders them alike */
	if (x->added != y->added)
		return x->added > y->added ? -1 : 1;
	return x->order > y->order ? -1 : x->order < y->order;
}

static const enum tsw_hsm_kind hsm_kind[TSW_VAULT_KEY_KIND_MAX] = {
    [TSW_VAULT_KEY_IMK_AC] = TSW_HSM_IMK_AC,
    [TSW_VAULT_KEY_ZPK_ACQUIRER] = TSW_HSM_ZPK_ACQUIRER,
    [TSW_VAULT_KEY_ZPK_ISSUER] = TSW_HSM_ZPK_ISSUER,
    [TSW_VAULT_KEY_TAVV] = TSW_HSM_TAVV,
};

static void keys_free(struct tsw_card_keys *k)
{
	struct tsw_hsm_key **all = malloc((k->n ? k->n : 1) * sizeof(*all));

	/* the whole set at once: the HSM wipes what its IMKs left in the ICC
	 * key cache in one pass */
	for (uint32_t i = 0; all && i < k->n; i++)
		all[i] = k->keys[i].key;
	if (all)
		tsw_hsm_keys_free(all, k->n);
	for (uint32_t i = 0; !all && i < k->n; i++)
		tsw_hsm_key_free(k->keys[i].key);
	free(all);
	free(k);
}

/* Imports vk into h as the set's next key. */
static int import_one(struct tsw_hsm *h, const struct tsw_vault_key *vk, struct card_key *ck)
{
	const struct tsw_vault_key_info *in = &vk->info;
	size_t sl = strlen(in->scope);
	int r;

	if (in->kind >= TSW_VAULT_KEY_KIND_MAX || sl > sizeof(ck->scope))
		return -TSW_E_CORRUPT;
	/* the vault's algorithms are in the order of the HSM's */
	r = tsw_hsm_key_import(h, hsm_kind[in->kind], (enum tsw_hsm_alg)in->alg, vk->bytes, vk->len,
			       &ck->key);
	if (r < 0)
		return r;
	ck->kind = in->kind;
	ck->scope_len = (uint8_t)sl;
	memcpy(ck->scope, in->scope, sl);
	ck->added = in->added;
	return 0;
}

int tsw_card_keys_load(struct tsw_vault *v, struct tsw_hsm *h, struct tsw_card_keys **ret_keys)
{
	struct tsw_vault_key *vk;
	struct tsw_card_keys *k = NULL;
	size_t n = 0;
	int r;

	/* the clear copies: wiped below on every path */
	vk = calloc(TSW_VAULT_HSM_KEYS_MAX, sizeof(*vk));
	if (!vk)
		return -ENOMEM;
	r = tsw_vault_key_load(v, vk, TSW_VAULT_HSM_KEYS_MAX, &n);
	if (r < 0)
		goto out;
	k = calloc(1, sizeof(*k) + n * sizeof(k->keys[0]));
	if (!k) {
		r = -ENOMEM;
		goto out;
	}
	k->refs = 1;
	for (size_t i = 0; i < n; i++) {
		r = import_one(h, &vk[i], &k->keys[k->n]);
		if (r < 0)
			goto out;
		k->keys[k->n].order = k->n;
		k->n++;
	}
	qsort(k->keys, k->n, sizeof(k->keys[0]), cmp_key);
	*ret_keys = k;
	k = NULL;
	r = 0;
out:
	OPENSSL_cleanse(vk, TSW_VAULT_HSM_KEYS_MAX * sizeof(*vk));
	free(vk);
	if (k)
		keys_free(k);
	return r;
}

uint32_t tsw_card_keys_count(const struct tsw_card_keys *k)
{
	return k ? k->n : 0;
}

struct tsw_card_keys *engine__card_keys_get(struct tsw_card_keys *k)
{
	if (k)
		__atomic_add_fetch(&k->refs, 1, __ATOMIC_RELAXED);
	return k;
}

void tsw_card_keys_put(struct tsw_card_keys *k)
{
	/* the last reference frees: acquire what the others released */
	if (k && __atomic_sub_fetch(&k->refs, 1, __ATOMIC_ACQ_REL) == 0)
		keys_free(k);
}

/* The run of keys of kind with exactly this scope, newest first. */
static struct card_keys_run find(const struct tsw_card_keys *k, uint8_t kind, const char *scope,
				 size_t len)
{
	size_t lo = 0, hi = k->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct card_key *c = &k->keys[mid];

		if (cmp_scope(c->kind, c->scope, c->scope_len, kind, scope, len) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	hi = lo;
	while (hi < k->n && cmp_scope(k->keys[hi].kind, k->keys[hi].scope, k->keys[hi].scope_len,
				      kind, scope, len) == 0)
		hi++;
	return (struct card_keys_run){.first = (uint32_t)lo, .n = (uint32_t)(hi - lo)};
}

struct card_keys_run engine__card_keys_for_token(const struct tsw_card_keys *k,
						 enum tsw_vault_key_kind kind, const char *token,
						 size_t len)
{
	struct card_keys_run run = {0};

	if (!k)
		return run;
	/* the longest range prefix that has keys of the kind wins */
	for (size_t l = len < TSW_VAULT_KEY_SCOPE_MAX ? len : TSW_VAULT_KEY_SCOPE_MAX; l > 0; l--) {
		run = find(k, (uint8_t)kind, token, l);
		if (run.n)
			break;
	}
	return run;
}

struct card_keys_run engine__card_keys_for_scope(const struct tsw_card_keys *k,
						 enum tsw_vault_key_kind kind, const char *scope,
						 size_t len)
{
	if (!k || len == 0 || len > TSW_VAULT_KEY_SCOPE_MAX)
		return (struct card_keys_run){0};
	return find(k, (uint8_t)kind, scope, len);
}

const struct tsw_hsm_key *engine__card_key(const struct tsw_card_keys *k, uint32_t i)
{
	return k->keys[i].key;
}
