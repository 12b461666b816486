/* The software backend's insides: shared by soft.c (objects, keys, cache),
 * cipher.c (EVP), des.c (TDES over ready key schedules), emv.c
 * (cryptograms), pin.c (PIN blocks) and tavv.c (the token cryptogram's
 * layout). The functions here work on clear key bytes;
 * only soft.c hands keys out, as struct soft_key behind struct
 * tsw_hsm_key. */
#ifndef TSW_HSM_INTERNAL_H
#define TSW_HSM_INTERNAL_H

#include <openssl/des.h>
#include <openssl/evp.h>
#include <stdint.h>

#include "tsw/hsm.h"

#define TDES_BLOCK 8u
#define AES_BLOCK 16u
#define TDES2_KEY_BYTES 16u

/* One cipher context per AES key size and session for the format 4 PIN
 * blocks, keyed anew for each use (EVP_CipherInit_ex with a NULL cipher
 * only sets the key schedule; AES in EVP uses AES-NI). TDES keys do not
 * use EVP: see tdes2_ks. */
enum soft_cipher { CIPHER_AES128_ECB, CIPHER_AES256_ECB, CIPHER_MAX };

/* One AES-CMAC context per key size and session (the token cryptogram). */
enum soft_cmac { CMAC_AES128, CMAC_AES256, CMAC_MAX };

struct soft_session {
	struct tsw_hsm_session base;
	EVP_CIPHER_CTX *ctx[CIPHER_MAX];
	EVP_MAC_CTX *cmac[CMAC_MAX];
};

/* A TDES2 key (K1 K2 K1) ready to use: the DES key schedules of K1 and K2
 * (OpenSSL's DES_key_schedule, 128 bytes each), so that an operation runs
 * no key schedule for a key it already holds. Key material like the key
 * itself: kept in the locked mappings or on the stack, wiped after. */
struct tdes2_ks {
	DES_key_schedule k1, k2;
};

struct soft_key {
	struct tsw_hsm_key base;
	uint32_t serial;    /* never reused: names the key in the ICC cache */
	bool cached;	    /* an ICC master key derived under it was cached */
	uint32_t next_free; /* free list link (slot index + 1, 0 = end) */
	uint8_t len;
	uint8_t bytes[TSW_HSM_KEY_BYTES_MAX];
	struct tdes2_ks ks;  /* TDES keys: K1's and K2's schedules; AES: zero */
	DES_key_schedule k3; /* TDES3 keys: K3's; others: zero */
};

/* des.c: TDES over ready schedules (no EVP: see des.c). */
void hsm__tdes2_ks_set(const uint8_t key[TDES2_KEY_BYTES], struct tdes2_ks *ret_ks);
/* The schedules of k's bytes (TDES2 or TDES3) into its slot. */
void hsm__tdes_key_set(struct soft_key *k);
/* ECB under the TDES2 or TDES3 key k, by its slot's schedules. */
void hsm__tdes_ecb(const struct soft_key *k, int enc, const uint8_t *in, size_t len, uint8_t *out);
void hsm__tdes2_ks_wipe(struct tdes2_ks *ks);
/* ECB over len bytes (a multiple of 8); enc 1/0. in may be out. */
void hsm__tdes2_ecb(const struct tdes2_ks *ks, int enc, const uint8_t *in, size_t len,
		    uint8_t *out);
/* ISO/IEC 9797-1 MAC algorithm 3 under ks (K1 K2) over the padded
 * message full[0..full_len) || last (full_len a multiple of 8). */
void hsm__tdes2_mac3(const struct tdes2_ks *ks, const uint8_t *full, size_t full_len,
		     const uint8_t last[TDES_BLOCK], uint8_t ret_mac[TDES_BLOCK]);

/* cipher.c */
size_t hsm__alg_key_len(enum tsw_hsm_alg alg);
/* ECB over len bytes (a multiple of the block) with key of alg (AES-128
 * or AES-256); enc 1/0. */
int hsm__soft_ecb(struct soft_session *s, enum tsw_hsm_alg alg, const uint8_t *key, int enc,
		  const uint8_t *in, size_t len, uint8_t *out);
/* The first 8 bytes of AES-CMAC under key (alg AES-128 or AES-256) over
 * data[0..len), in the session's context for alg. */
int hsm__soft_cmac8(struct soft_session *s, enum tsw_hsm_alg alg, const uint8_t *key,
		    const uint8_t *data, size_t len, uint8_t ret_mac[8]);
/* Key check value (TSW_HSM_KCV_BYTES_MAX): see include/tsw/hsm.h. Uses no
 * session: called once per import. */
int hsm__soft_kcv(enum tsw_hsm_alg alg, const uint8_t *key, uint8_t *ret_kcv, uint8_t *ret_len);

/* emv.c: every key is TDES2, given by its schedules. */
void hsm__emv_icc_mk(const struct tdes2_ks *imk, const char *pan, size_t pan_len, uint8_t psn,
		     uint8_t ret_mk[16]);
int hsm__emv_session_key(const struct tdes2_ks *mk, const struct tsw_hsm_arqc_input *in,
			 uint8_t ret_sk[16]);
void hsm__emv_retail_mac(const struct tdes2_ks *key, enum tsw_hsm_pad pad, const uint8_t *data,
			 size_t len, uint8_t ret_mac[8]);
/* The ARQC of in under the ICC master key mk. */
int hsm__emv_arqc(const struct tdes2_ks *mk, const struct tsw_hsm_arqc_input *in,
		  uint8_t ret_arqc[8]);
int hsm__emv_arpc(const struct tdes2_ks *mk, const struct tsw_hsm_arqc_input *in,
		  const struct tsw_hsm_arpc_params *p, uint8_t *out, size_t *ret_len);

/* pin.c: k is a ZPK (checked by the caller). */
int hsm__pin_form(struct soft_session *s, const struct soft_key *k, const char *pan, size_t pan_len,
		  const char *pin, size_t pin_len, uint8_t *out);
/* Format 4 with the given 8 bytes of random fill (tests use it to compare
 * with an independently computed block). */
int hsm__pin_form4_fill(struct soft_session *s, const struct soft_key *k, const char *pan,
			size_t pan_len, const char *pin, size_t pin_len, const uint8_t fill[8],
			uint8_t *out);
int hsm__pin_verify(struct soft_session *s, const struct soft_key *k, const char *pan,
		    size_t pan_len, const uint8_t *block, const char *pin, size_t pin_len);
int hsm__pin_translate(struct soft_session *s, const struct soft_key *src, const char *src_pan,
		       size_t src_pan_len, const struct soft_key *dst, const char *dst_pan,
		       size_t dst_pan_len, const uint8_t *in, uint8_t *out);

/* tavv.c: the message the token cryptogram's MAC covers (in checked by
 * the caller); returns its length. */
#define HSM_TAVV_MSG_MAX                                                                           \
	(8 + 2 + 1 + TSW_HSM_PAN_DIGITS_MAX + 12 + 3 + 1 + TSW_HSM_TAVV_MERCHANT_MAX)
size_t hsm__tavv_message(const struct tsw_hsm_tavv_input *in, uint8_t buf[HSM_TAVV_MSG_MAX]);

/* soft.c, for the unit tests: hsm__pin_form4_fill() on a soft key (arguments
 * unchecked: k an AES ZPK, digits valid). */
int tsw_hsm_soft_pin_form4_fill(struct tsw_hsm_session *sb, const struct tsw_hsm_key *k,
				const char *pan, size_t pan_len, const char *pin, size_t pin_len,
				const uint8_t fill[8], uint8_t *out);

#endif
