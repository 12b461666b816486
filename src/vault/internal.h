/* Private to src/vault: the vault handle, the key ring, PAN crypto, the
 * on-disk record layout and the LMDB error mapping. */
#ifndef TSW_VAULT_INTERNAL_H
#define TSW_VAULT_INTERNAL_H

#include <lmdb.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "tsw/token.h"
#include "tsw/vault.h"

#define VAULT_FORMAT 1u
#define VAULT_MAX_DBS 8
#define KEY_BYTES 32
#define KCV_BYTES 8
#define NONCE_BYTES 12
#define TAG_BYTES 16
#define CARD_KEY_BYTES 16 /* truncated HMAC-SHA-256 of the PAN: the index key */
#define KEY_FILE_MAX_BYTES 4096

/* Lives in one mlock'ed, MADV_DONTDUMP page. Slots are append-only: a
 * slot is filled before n_pan is published (release), so readers index
 * it without a lock. */
struct keyring {
	uint8_t hmac_key[KEY_BYTES];
	uint32_t n_pan;
	uint32_t current; /* slot used for new writes */
	struct {
		uint32_t id;
		uint8_t key[KEY_BYTES];
	} pan[TSW_VAULT_KEYS_MAX];
};

struct bin_set {
	unsigned n;
	uint8_t len[TSW_VAULT_BINS_MAX];
	char prefix[TSW_VAULT_BINS_MAX][TSW_VAULT_BIN_MAX_DIGITS + 1];
	struct bin_set *older; /* kept until close: readers may still use it */
};

struct tsw_vault {
	MDB_env *env;
	MDB_dbi dbi_tokens;  /* u64 token value (MDB_INTEGERKEY) -> record */
	MDB_dbi dbi_index;   /* card key -> u64 token values (dupsort) */
	MDB_dbi dbi_cards;   /* card key -> card state (u8 flags) */
	MDB_dbi dbi_devices; /* u64 token value -> device refs (dupsort) */
	MDB_dbi dbi_meta;    /* names -> metadata */
	unsigned flags;
	char *key_file;
	struct keyring *keys;
	bool keys_locked;
	struct bin_set *bins; /* atomic pointer */
	uint64_t meta_gen;    /* atomic: generation the cached metadata reflects */
	pthread_mutex_t refresh_lock;
	size_t sort_mem; /* bytes a bulk write may sort in memory */
};

/* ---- LMDB errors ---- */
int mdb_to_errno(int rc);

/* ---- keys.c ---- */
/* Loads key_file into a locked key ring; with create, writes a fresh one
 * (O_EXCL, 0600) when absent. */
int keyring_load(const char *key_file, bool create, struct keyring **ret_keys, bool *ret_locked);
void keyring_free(struct keyring *k);
/* Re-reads key_file and appends the slots it has that k lacks. */
int keyring_reload(struct keyring *k, const char *key_file);
/* Appends a fresh key to k and rewrites key_file atomically (0600). */
int keyring_add_key(struct keyring *k, const char *key_file, uint32_t *ret_id);
int keyring_slot(const struct keyring *k, uint32_t id);
void keyring_kcv(const uint8_t key[KEY_BYTES], uint8_t out[KCV_BYTES]);

/* ---- crypto.c ---- */
struct pan_crypto {
	const struct keyring *keys;
	EVP_CIPHER_CTX *dec[TSW_VAULT_KEYS_MAX];
	EVP_CIPHER_CTX *enc;
	int enc_slot;
	EVP_MAC_CTX *mac;
};
int crypto_init(struct pan_crypto *c, const struct keyring *keys);
void crypto_free(struct pan_crypto *c);
/* Seals pan under the current key with nonce (NULL: fresh random). */
int crypto_seal(struct pan_crypto *c, const char *token, size_t token_len, const char *pan,
		size_t pan_len, const uint8_t *nonce, uint8_t *out, uint8_t *ret_len,
		uint32_t *ret_key_id);
int crypto_open(struct pan_crypto *c, uint32_t key_id, const char *token, size_t token_len,
		const uint8_t *sealed, size_t sealed_len, char *out, size_t cap);
int crypto_card_key(struct pan_crypto *c, const char *pan, size_t pan_len,
		    uint8_t out[CARD_KEY_BYTES]);

/* ---- record.c ---- */
#define REC_VERSION 1
#define REC_F_DEVICE_REQUIRED 0x01
#define REC_F_CARD_SUSPENDED 0x02
#define REC_MERCHANT_ID_LEN 15
#define REC_ACQUIRER_ID_LEN 11
#define REC_MCC_LEN 4

struct rec_merchant {
	char merchant_id[REC_MERCHANT_ID_LEN];
	char acquirer_id[REC_ACQUIRER_ID_LEN];
	char mcc[REC_MCC_LEN];
} __attribute__((packed));

/* Version 1, little-endian, strings NUL-padded (merchant ids space-padded
 * as on the wire). Fields are only ever appended, with a new version. */
struct rec {
	uint8_t version;
	uint8_t status;
	uint8_t token_len;
	uint8_t flags;
	uint8_t assurance_level;
	uint8_t original_assurance_level;
	uint8_t original_len;
	uint8_t pos_modes;
	uint8_t n_merchants;
	uint8_t sealed_len;
	char token_expiry[4];
	char pan_expiry[4];
	char trid[TSW_TRID_LEN];
	char original_trid[TSW_TRID_LEN];
	char currency[3];
	char par[TSW_PAR_LEN];
	uint32_t key_id;
	uint32_t atc_epoch;
	uint32_t max_uses;
	uint32_t valid_from;
	uint32_t valid_until;
	uint64_t amount_limit;
	uint64_t card_id;
	uint64_t original_token;
	char token_ref[TSW_TOKEN_REF_MAX];
	char original_token_ref[TSW_TOKEN_REF_MAX];
	uint8_t sealed[TSW_SEALED_PAN_MAX];
	struct rec_merchant merchants[];
} __attribute__((packed));

#define REC_MAX_BYTES (sizeof(struct rec) + TSW_TOKEN_MERCHANTS_MAX * sizeof(struct rec_merchant))

/* digits -> value; -TSW_E_BAD_INPUT unless 13..19 digits. */
int token_key(const char *token, size_t len, uint64_t *ret_key);
/* value, len -> digits with leading zeros, NUL-terminated. */
void token_digits(uint64_t key, unsigned len, char *out);
size_t rec_size(const struct rec *r);
/* Encodes t into out (REC_MAX_BYTES); returns the size. */
size_t rec_encode(const struct tsw_token *t, uint8_t *out);
/* Checks the layout and decodes; key is the LMDB key. */
int rec_decode(const void *data, size_t size, uint64_t key, struct tsw_token *ret_token);
/* Checks a record's layout without decoding. */
int rec_check(const void *data, size_t size);

/* ---- vault.c ---- */
int meta_get_u32(struct tsw_vault *v, MDB_txn *txn, const char *name, uint32_t *ret);
int meta_bump_gen(struct tsw_vault *v, MDB_txn *txn);
int kcv_register(struct tsw_vault *v, MDB_txn *txn, uint32_t id, const uint8_t key[KEY_BYTES]);

/* ---- write.c ---- */
/* Validates a row (everything but uniqueness). reason: static text. */
int row_check(const struct tsw_vault *v, const struct tsw_vault_row *row, const char **ret_reason);
/* Writes one encoded record (its card flag set from the card's state),
 * its index entry and an optional device binding in txn. put_flags: 0 or
 * MDB_APPEND. -TSW_E_EXISTS when the token is taken. */
int put_rec(struct tsw_vault *v, MDB_txn *txn, uint64_t key, uint8_t *rec, size_t rec_len,
	    const uint8_t card_key[CARD_KEY_BYTES], const char *device_ref, unsigned put_flags,
	    const char **ret_reason);
/* Seals row's PAN into t (a copy of row->token with token digits set),
 * computes card key and card id. */
int row_seal(struct pan_crypto *c, const struct tsw_vault_row *row, const uint8_t *nonce,
	     struct tsw_token *t, uint8_t card_key[CARD_KEY_BYTES]);
#define CARD_F_SUSPENDED 0x01
/* The card's state flags (0 when the card has none). */
int card_flags(struct tsw_vault *v, MDB_txn *txn, const uint8_t card_key[CARD_KEY_BYTES],
	       uint8_t *ret_flags);
/* Fills the original_* fields of a token-for-token row from its original. */
int link_original(struct tsw_vault *v, MDB_txn *txn, struct tsw_token *t, const char **ret_reason);

#endif
