/* The block cipher calls through OpenSSL EVP: TDES and AES in ECB for
 * PIN blocks, AES-CMAC for the token cryptogram and AES key check values,
 * TDES for TDES key check values. (The cryptograms' TDES is in des.c.) */
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

int hsm__soft_cmac8(struct soft_session *s, enum tsw_hsm_alg alg, const uint8_t *key,
		    const uint8_t *data, size_t len, uint8_t ret_mac[8])
{
	EVP_MAC_CTX *c = s->cmac[alg == TSW_HSM_AES256 ? CMAC_AES256 : CMAC_AES128];
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
