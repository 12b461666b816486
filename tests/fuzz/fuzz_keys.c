/* Fuzz target: the vault's key file loader (vault__keyring_load and
 * vault__keyring_reload, src/vault/keys.c).
 *
 * Input: the key file's bytes, written to a file of mode 0600. Checked
 * invariants, each a trap:
 * - a load fails with -TSW_E_BAD_KEY and nothing else, or gives a ring
 *   with 1..TSW_VAULT_INDEX_KEYS_MAX HMAC keys and 1..TSW_VAULT_KEYS_MAX
 *   PAN keys, each kind of distinct nonzero ids, the current PAN key the
 *   highest;
 * - the ring written back in the file's own format (hmac ID, then pan
 *   lines) loads to the same ring;
 * - reloading the same file into the ring succeeds and changes nothing;
 * - the same bytes in a file group or others can read are refused.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "internal.h"
#include "tsw/error.h"

static void hex(const uint8_t *k, char *out)
{
	for (size_t i = 0; i < KEY_BYTES; i++)
		snprintf(out + 2 * i, 3, "%02x", k[i]);
}

/* the reload's key check (the vault's check values): none here, and the
 * same file brings no new key to check anyway */
static int accept_all(void *ctx, uint32_t id, const uint8_t key[KEY_BYTES])
{
	(void)ctx;
	(void)id;
	(void)key;
	return 0;
}

static void check_ring(const struct keyring *k)
{
	fuzz_check(k->n_hmac >= 1 && k->n_hmac <= TSW_VAULT_INDEX_KEYS_MAX);
	for (uint32_t i = 0; i < k->n_hmac; i++) {
		fuzz_check(k->hmac[i].id != 0);
		for (uint32_t j = 0; j < i; j++)
			fuzz_check(k->hmac[i].id != k->hmac[j].id);
	}
	fuzz_check(k->n_pan >= 1 && k->n_pan <= TSW_VAULT_KEYS_MAX && k->current < k->n_pan);
	for (uint32_t i = 0; i < k->n_pan; i++) {
		fuzz_check(k->pan[i].id != 0 && k->pan[i].id <= k->pan[k->current].id);
		for (uint32_t j = 0; j < i; j++)
			fuzz_check(k->pan[i].id != k->pan[j].id);
	}
}

static bool same_ring(const struct keyring *a, const struct keyring *b)
{
	if (a->n_hmac != b->n_hmac || a->n_pan != b->n_pan || a->current != b->current)
		return false;
	for (uint32_t i = 0; i < a->n_hmac; i++)
		if (a->hmac[i].id != b->hmac[i].id ||
		    memcmp(a->hmac[i].key, b->hmac[i].key, KEY_BYTES))
			return false;
	for (uint32_t i = 0; i < a->n_pan; i++)
		if (a->pan[i].id != b->pan[i].id || memcmp(a->pan[i].key, b->pan[i].key, KEY_BYTES))
			return false;
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct keyring *k = NULL, *k2 = NULL, before;
	char text[KEY_FILE_MAX_BYTES * 2], h[2 * KEY_BYTES + 1];
	size_t len = 0;
	bool locked;
	const char *path;
	int r;

	path = fuzz_write("key", data, size, 0600);
	r = vault__keyring_load(path, false, &k, &locked);
	if (r < 0) {
		fuzz_check(r == -TSW_E_BAD_KEY && k == NULL);
		return 0;
	}
	check_ring(k);

	for (uint32_t i = 0; i < k->n_hmac; i++) {
		hex(k->hmac[i].key, h);
		len += (size_t)snprintf(text + len, sizeof(text) - len, "hmac %u %s\n",
					k->hmac[i].id, h);
	}
	for (uint32_t i = 0; i < k->n_pan; i++) {
		hex(k->pan[i].key, h);
		len += (size_t)snprintf(text + len, sizeof(text) - len, "pan %u %s\n", k->pan[i].id,
					h);
	}
	fuzz_check(len < sizeof(text));
	path = fuzz_write("key-again", text, len, 0600);
	fuzz_check(vault__keyring_load(path, false, &k2, &locked) == 0);
	fuzz_check(same_ring(k, k2));
	vault__keyring_free(k2);

	path = fuzz_write("key", data, size, 0600);
	before = *k;
	fuzz_check(vault__keyring_reload(k, path, accept_all, NULL) == 0);
	fuzz_check(same_ring(k, &before));

	path = fuzz_write("key-open", data, size, 0640);
	k2 = NULL;
	fuzz_check(vault__keyring_load(path, false, &k2, &locked) == -TSW_E_BAD_KEY && k2 == NULL);
	vault__keyring_free(k);
	return 0;
}
