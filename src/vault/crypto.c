/* PAN sealing (AES-256-GCM, a fresh 96-bit random nonce per write, the
 * associated data given by the caller: the token digits and every other
 * byte of the record, record.c), the same for the key store's keys
 * (keystore.c), and the keyed PAN hash of the index.
 * Contexts are keyed once and reused: a seal or open only sets the nonce. */
#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <string.h>

#include "internal.h"
#include "tsw/error.h"

int vault__crypto_init(struct pan_crypto *c, const struct keyring *keys)
{
	memset(c, 0, sizeof(*c));
	c->keys = keys;
	c->enc_slot = -1;
	c->hmac_slot = (int)keys->hmac_current;
	return 0;
}

void vault__crypto_free(struct pan_crypto *c)
{
	for (size_t i = 0; i < TSW_VAULT_KEYS_MAX; i++)
		EVP_CIPHER_CTX_free(c->dec[i]);
	EVP_CIPHER_CTX_free(c->enc);
	EVP_MAC_CTX_free(c->mac);
	memset(c, 0, sizeof(*c));
}

static EVP_CIPHER_CTX *keyed_ctx(const uint8_t key[KEY_BYTES], bool enc)
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();

	if (!ctx)
		return NULL;
	if (EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_BYTES, NULL) != 1 ||
	    EVP_CipherInit_ex(ctx, NULL, NULL, key, NULL, enc) != 1) {
		EVP_CIPHER_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

int vault__crypto_current_slot(const struct pan_crypto *c, uint32_t *ret_id)
{
	uint32_t slot = __atomic_load_n(&c->keys->current, __ATOMIC_ACQUIRE);

	*ret_id = c->keys->pan[slot].id;
	return (int)slot;
}

/* The most associated data a seal carries: the token digits and a whole
 * record. */
#define AAD_GATHER_MAX (TSW_TOKEN_MAX_DIGITS + REC_MAX_BYTES)

/* Feeds the associated data in one update: GCM's result is the same for
 * the pieces one after the other as for their concatenation, and every
 * EVP update costs about as much again as the GHASH of a record (OpenSSL
 * 3.0's provider dispatch), so the pieces are gathered first. */
static int add_aad(EVP_CIPHER_CTX *ctx, bool enc, const struct aad *aad, unsigned n_aad)
{
	uint8_t buf[AAD_GATHER_MAX];
	const uint8_t *p = buf;
	size_t len = 0;
	int n = 0;

	if (n_aad == 1) {
		p = aad[0].ptr;
		len = aad[0].len;
	} else {
		for (unsigned i = 0; i < n_aad; i++) {
			if (aad[i].len > sizeof(buf) - len)
				return -EIO; /* larger than any record: a caller's error */
			if (aad[i].len)
				memcpy(buf + len, aad[i].ptr, aad[i].len);
			len += aad[i].len;
		}
	}
	if (!len)
		return 0;
	if ((enc ? EVP_EncryptUpdate(ctx, NULL, &n, p, (int)len)
		 : EVP_DecryptUpdate(ctx, NULL, &n, p, (int)len)) != 1)
		return -EIO;
	return 0;
}

int vault__seal(struct pan_crypto *c, int slot, const struct aad *aad, unsigned n_aad,
		const void *plain, size_t len, const uint8_t *nonce, uint8_t *out)
{
	int n = 0;

	if (len > VAULT_SEAL_PLAIN_MAX || slot < 0 ||
	    (uint32_t)slot >= __atomic_load_n(&c->keys->n_pan, __ATOMIC_ACQUIRE))
		return -TSW_E_BAD_INPUT;
	if (slot != c->enc_slot) {
		EVP_CIPHER_CTX_free(c->enc);
		c->enc = keyed_ctx(c->keys->pan[slot].key, true);
		c->enc_slot = c->enc ? slot : -1;
		if (!c->enc)
			return -ENOMEM;
	}
	if (nonce)
		memcpy(out, nonce, NONCE_BYTES);
	else if (RAND_bytes(out, NONCE_BYTES) != 1)
		return -EIO;
	if (EVP_EncryptInit_ex(c->enc, NULL, NULL, NULL, out) != 1 ||
	    add_aad(c->enc, true, aad, n_aad) < 0 ||
	    EVP_EncryptUpdate(c->enc, out + NONCE_BYTES, &n, plain, (int)len) != 1 ||
	    EVP_EncryptFinal_ex(c->enc, out + NONCE_BYTES + n, &n) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c->enc, EVP_CTRL_GCM_GET_TAG, TAG_BYTES, out + NONCE_BYTES + len) !=
		1)
		return -EIO;
	return 0;
}

int vault__crypto_seal(struct pan_crypto *c, int slot, const struct aad *aad, unsigned n_aad,
		       const char *pan, size_t pan_len, const uint8_t *nonce, uint8_t *out)
{
	if (pan_len > TSW_PAN_MAX_DIGITS)
		return -TSW_E_BAD_INPUT;
	return vault__seal(c, slot, aad, n_aad, pan, pan_len, nonce, out);
}

int vault__open(struct pan_crypto *c, uint32_t key_id, const struct aad *aad, unsigned n_aad,
		const uint8_t *sealed, size_t sealed_len, void *out, size_t cap)
{
	int slot = vault__keyring_slot(c->keys, key_id);
	size_t len;
	int n = 0, r = 0;

	if (slot < 0)
		return -TSW_E_NOT_FOUND;
	if (sealed_len < NONCE_BYTES + TAG_BYTES + 1 ||
	    sealed_len > NONCE_BYTES + VAULT_SEAL_PLAIN_MAX + TAG_BYTES)
		return -TSW_E_INTEGRITY;
	len = sealed_len - NONCE_BYTES - TAG_BYTES;
	if (cap < len)
		return -TSW_E_NO_SPACE;
	if (!c->dec[slot]) {
		c->dec[slot] = keyed_ctx(c->keys->pan[slot].key, false);
		if (!c->dec[slot])
			return -ENOMEM;
	}
	EVP_CIPHER_CTX *ctx = c->dec[slot];
	if (EVP_DecryptInit_ex(ctx, NULL, NULL, NULL, sealed) != 1 ||
	    add_aad(ctx, false, aad, n_aad) < 0 ||
	    EVP_DecryptUpdate(ctx, out, &n, sealed + NONCE_BYTES, (int)len) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_BYTES,
				(void *)(sealed + NONCE_BYTES + len)) != 1 ||
	    EVP_DecryptFinal_ex(ctx, (uint8_t *)out + n, &n) != 1)
		r = -TSW_E_INTEGRITY;
	if (r < 0) {
		OPENSSL_cleanse(out, len);
		return r;
	}
	return (int)len;
}

int vault__crypto_open(struct pan_crypto *c, uint32_t key_id, const struct aad *aad, unsigned n_aad,
		       const uint8_t *sealed, size_t sealed_len, char *out, size_t cap)
{
	if (vault__keyring_slot(c->keys, key_id) < 0)
		return -TSW_E_NOT_FOUND;
	if (sealed_len > TSW_SEALED_PAN_MAX)
		return -TSW_E_INTEGRITY;
	return vault__open(c, key_id, aad, n_aad, sealed, sealed_len, out, cap);
}

int vault__crypto_card_key(struct pan_crypto *c, const char *pan, size_t pan_len,
			   uint8_t out[CARD_KEY_BYTES])
{
	uint8_t md[EVP_MAX_MD_SIZE];
	size_t md_len = 0;

	if (!c->mac) {
		EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
		OSSL_PARAM params[] = {
		    OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
		    OSSL_PARAM_construct_end(),
		};

		if (!mac)
			return -ENOMEM;
		c->mac = EVP_MAC_CTX_new(mac);
		EVP_MAC_free(mac);
		if (!c->mac)
			return -ENOMEM;
		if (EVP_MAC_init(c->mac, c->keys->hmac[c->hmac_slot].key, KEY_BYTES, params) != 1) {
			EVP_MAC_CTX_free(c->mac);
			c->mac = NULL;
			return -EIO;
		}
	} else if (EVP_MAC_init(c->mac, NULL, 0, NULL) != 1) {
		return -EIO;
	}
	if (EVP_MAC_update(c->mac, (const uint8_t *)pan, pan_len) != 1 ||
	    EVP_MAC_final(c->mac, md, &md_len, sizeof(md)) != 1)
		return -EIO;
	memcpy(out, md, CARD_KEY_BYTES);
	OPENSSL_cleanse(md, sizeof(md));
	return 0;
}
