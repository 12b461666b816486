/* The block cipher calls, all through OpenSSL EVP: TDES and AES in ECB
 * for derivations and PIN blocks, single-DES CBC for the retail MAC, and
 * AES-CMAC for the token cryptogram and AES key check values. */
#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <string.h>

#include "internal.h"
#include "tsw/error.h"

size_t hsm__alg_key_len(enum tsw_hsm_alg alg)
{
	switch (alg) {
	case TSW_HSM_TDES2:
		return 16;
	case TSW_HSM_TDES3:
		return 24;
	case TSW_HSM_AES128:
		return 16;
	case TSW_HSM_AES256:
		return 32;
	case TSW_HSM_ALG_MAX:
		break;
	}
	return 0;
}

static enum soft_cipher ecb_cipher(enum tsw_hsm_alg alg)
{
	switch (alg) {
	case TSW_HSM_TDES2:
		return CIPHER_TDES2_ECB;
	case TSW_HSM_TDES3:
		return CIPHER_TDES3_ECB;
	case TSW_HSM_AES128:
		return CIPHER_AES128_ECB;
	case TSW_HSM_AES256:
	case TSW_HSM_ALG_MAX:
		break;
	}
	return CIPHER_AES256_ECB;
}

int hsm__soft_ecb(struct soft_session *s, enum tsw_hsm_alg alg, const uint8_t *key, int enc,
		  const uint8_t *in, size_t len, uint8_t *out)
{
	EVP_CIPHER_CTX *c = s->ctx[ecb_cipher(alg)];
	int n = 0;

	if (!EVP_CipherInit_ex(c, NULL, NULL, key, NULL, enc) ||
	    !EVP_CipherUpdate(c, out, &n, in, (int)len) || (size_t)n != len)
		return -EIO;
	return 0;
}

/* A single-DES key as the context wants it: itself, or K K K for TDES. */
static const uint8_t *des_key(const struct soft_session *s, const uint8_t *key, uint8_t k3[24])
{
	if (!s->des_via_tdes)
		return key;
	memcpy(k3, key, 8);
	memcpy(k3 + 8, key, 8);
	memcpy(k3 + 16, key, 8);
	return k3;
}

int hsm__soft_mac3(struct soft_session *s, const uint8_t key[16], const uint8_t *full,
		   size_t full_len, const uint8_t last[8], uint8_t ret_mac[8])
{
	static const uint8_t zero_iv[TDES_BLOCK];
	EVP_CIPHER_CTX *cbc = s->ctx[CIPHER_DES_CBC];
	uint8_t k3[24], buf[64], h[TDES_BLOCK] = {0};
	int n, r = -EIO;

	/* single-DES CBC under K1 over the blocks before the last (the
	 * context carries the chain from one update to the next); the last
	 * one, chained, through TDES (E K1, D K2, E K1): the same as CBC under
	 * K1 over every block followed by D K2, E K1, in one key schedule
	 * fewer EVP calls (each costs about as much as a DES block here) */
	if (full_len > 0 && !EVP_CipherInit_ex(cbc, NULL, NULL, des_key(s, key, k3), zero_iv, 1))
		goto out;
	while (full_len > 0) {
		size_t take = full_len < sizeof(buf) ? full_len : sizeof(buf);

		n = 0;
		if (!EVP_CipherUpdate(cbc, buf, &n, full, (int)take) || (size_t)n != take)
			goto out;
		memcpy(h, buf + take - TDES_BLOCK, TDES_BLOCK);
		full += take;
		full_len -= take;
	}
	for (size_t i = 0; i < TDES_BLOCK; i++)
		h[i] ^= last[i];
	r = hsm__soft_ecb(s, TSW_HSM_TDES2, key, 1, h, TDES_BLOCK, ret_mac);
out:
	OPENSSL_cleanse(k3, sizeof(k3));
	OPENSSL_cleanse(buf, sizeof(buf));
	OPENSSL_cleanse(h, sizeof(h));
	return r;
}

int hsm__soft_cmac8(struct soft_session *s, enum tsw_hsm_alg alg, const uint8_t *key,
		    const uint8_t *data, size_t len, uint8_t ret_mac[8])
{
	EVP_MAC_CTX *c = s->cmac[alg == TSW_HSM_AES256];
	uint8_t out[AES_BLOCK];
	size_t n = 0;
	int r = -EIO;

	/* the context was bound to its cipher when the session opened: a key
	 * alone re-keys it without allocating */
	if (EVP_MAC_init(c, key, hsm__alg_key_len(alg), NULL) && EVP_MAC_update(c, data, len) &&
	    EVP_MAC_final(c, out, &n, sizeof(out)) && n == AES_BLOCK) {
		memcpy(ret_mac, out, 8);
		r = 0;
	}
	OPENSSL_cleanse(out, sizeof(out));
	return r;
}

static int aes_cmac_kcv(enum tsw_hsm_alg alg, const uint8_t *key, uint8_t out[AES_BLOCK])
{
	static const uint8_t zeros[AES_BLOCK];
	char cipher[16];
	OSSL_PARAM params[2];
	EVP_MAC *mac = EVP_MAC_fetch(NULL, "CMAC", NULL);
	EVP_MAC_CTX *ctx = NULL;
	size_t n = 0;
	int r = -EIO;

	if (!mac)
		return -EIO;
	strcpy(cipher, alg == TSW_HSM_AES128 ? "AES-128-CBC" : "AES-256-CBC");
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_CIPHER, cipher, 0);
	params[1] = OSSL_PARAM_construct_end();
	ctx = EVP_MAC_CTX_new(mac);
	if (ctx && EVP_MAC_init(ctx, key, hsm__alg_key_len(alg), params) &&
	    EVP_MAC_update(ctx, zeros, sizeof(zeros)) && EVP_MAC_final(ctx, out, &n, AES_BLOCK) &&
	    n == AES_BLOCK)
		r = 0;
	EVP_MAC_CTX_free(ctx);
	EVP_MAC_free(mac);
	return r;
}

int hsm__soft_kcv(enum tsw_hsm_alg alg, const uint8_t *key, uint8_t *ret_kcv, uint8_t *ret_len)
{
	static const uint8_t zeros[TDES_BLOCK];
	uint8_t out[AES_BLOCK];
	EVP_CIPHER_CTX *c;
	int n = 0, r;

	switch (alg) {
	case TSW_HSM_TDES2:
	case TSW_HSM_TDES3:
		c = EVP_CIPHER_CTX_new();
		r = -EIO;
		if (c &&
		    EVP_EncryptInit_ex(
			c, alg == TSW_HSM_TDES2 ? EVP_des_ede_ecb() : EVP_des_ede3_ecb(), NULL, key,
			NULL) &&
		    EVP_CIPHER_CTX_set_padding(c, 0) &&
		    EVP_EncryptUpdate(c, out, &n, zeros, sizeof(zeros)) && n == TDES_BLOCK)
			r = 0;
		EVP_CIPHER_CTX_free(c);
		if (r < 0)
			return r;
		memcpy(ret_kcv, out, 3);
		*ret_len = 3;
		return 0;
	case TSW_HSM_AES128:
	case TSW_HSM_AES256:
		r = aes_cmac_kcv(alg, key, out);
		if (r < 0)
			return r;
		memcpy(ret_kcv, out, 5);
		*ret_len = 5;
		return 0;
	case TSW_HSM_ALG_MAX:
		break;
	}
	return -TSW_E_BAD_INPUT;
}
