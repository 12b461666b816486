/* TDES for the cryptogram path over ready key schedules: OpenSSL's DES
 * block functions (libcrypto's DES_*, deprecated in OpenSSL 3 but kept by
 * it, and the only way to key DES once and use the schedule many times:
 * an EVP context re-runs the key schedule and its parameter lookups on
 * every EVP_CipherInit_ex, and keeps the schedule in OpenSSL's heap). The
 * schedules live where the caller puts them: the key slots and the ICC
 * master key cache (locked, dump-excluded) or the stack (wiped after). */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/crypto.h>
#include <openssl/des.h>
#include <string.h>

#include "internal.h"

void hsm__tdes2_ks_set(const uint8_t key[TDES2_KEY_BYTES], struct tdes2_ks *ret_ks)
{
	/* DES ignores parity: the derived keys carry odd parity, imported
	 * ones need not */
	DES_set_key_unchecked((const_DES_cblock *)key, &ret_ks->k1);
	DES_set_key_unchecked((const_DES_cblock *)(key + TDES_BLOCK), &ret_ks->k2);
}

void hsm__tdes2_ks_wipe(struct tdes2_ks *ks)
{
	OPENSSL_cleanse(ks, sizeof(*ks));
}

void hsm__tdes2_ecb(const struct tdes2_ks *ks, int enc, const uint8_t *in, size_t len, uint8_t *out)
{
	/* the DES functions take their schedules without const; they only
	 * read them */
	DES_key_schedule *k1 = (DES_key_schedule *)&ks->k1, *k2 = (DES_key_schedule *)&ks->k2;

	for (size_t i = 0; i < len; i += TDES_BLOCK)
		DES_ecb3_encrypt((const_DES_cblock *)(in + i), (DES_cblock *)(out + i), k1, k2, k1,
				 enc ? DES_ENCRYPT : DES_DECRYPT);
}

void hsm__tdes2_mac3(const struct tdes2_ks *ks, const uint8_t *full, size_t full_len,
		     const uint8_t last[TDES_BLOCK], uint8_t ret_mac[TDES_BLOCK])
{
	DES_key_schedule *k1 = (DES_key_schedule *)&ks->k1;
	DES_cblock h = {0};

	/* single-DES CBC under K1 over the blocks before the last, then the
	 * last, chained, through TDES (E K1, D K2, E K1): the same as CBC
	 * under K1 over every block followed by D K2, E K1 */
	for (size_t i = 0; i < full_len; i += TDES_BLOCK) {
		for (size_t j = 0; j < TDES_BLOCK; j++)
			h[j] ^= full[i + j];
		DES_ecb_encrypt(&h, &h, k1, DES_ENCRYPT);
	}
	for (size_t j = 0; j < TDES_BLOCK; j++)
		h[j] ^= last[j];
	hsm__tdes2_ecb(ks, 1, h, TDES_BLOCK, ret_mac);
	OPENSSL_cleanse(h, sizeof(h));
}
