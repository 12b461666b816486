/* Private to src/vault: the vault handle, the key ring, PAN crypto, the
 * on-disk record layout and the LMDB error mapping. */
#ifndef TSW_VAULT_INTERNAL_H
#define TSW_VAULT_INTERNAL_H

#include <lmdb.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "tsw/error.h"
#include "tsw/token.h"
#include "tsw/vault.h"

#define VAULT_FORMAT 3u   /* may hold version 3 records and the key store */
#define VAULT_FORMAT_2 2u /* every record authenticated, none of version 3 */
#define VAULT_FORMAT_1 1u /* records before version 2: tokvault upgrade */
#define VAULT_MAX_DBS 12
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
	/* PAN index keys (HMAC-SHA-256): the one the vault's index is keyed
	 * by (hmac_current, set from the vault at open), and a new one while
	 * tokvault rekey --index rebuilds the index under it */
	uint32_t n_hmac;
	uint32_t hmac_current;
	struct {
		uint32_t id;
		uint8_t key[KEY_BYTES];
	} hmac[TSW_VAULT_INDEX_KEYS_MAX];
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

/* The write set of the current write transaction (changes.c), kept
 * while a change hook is set: a plain change being built. */
struct change_capture {
	uint8_t *buf;
	size_t len, cap;
	uint32_t n_ops;
	bool failed;  /* out of memory or an unknown database: the commit refuses */
	bool too_big; /* larger than the hook takes: the commit refuses (-EMSGSIZE) */
};

struct tsw_vault {
	MDB_env *env;
	MDB_dbi dbi_tokens;  /* u64 token value (MDB_INTEGERKEY) -> record */
	MDB_dbi dbi_index;   /* card key -> u64 token values (dupsort) */
	MDB_dbi dbi_cards;   /* card key -> card state (u8 flags) */
	MDB_dbi dbi_devices; /* u64 token value -> device refs (dupsort) */
	MDB_dbi dbi_meta;    /* names -> metadata */
	/* the two index/cards pairs: the live one (index_db) and the one an
	 * index rekey rebuilds ("index2"/"cards2"; has_pair[1] once made) */
	MDB_dbi pair_index[2], pair_cards[2];
	bool has_pair[2];
	uint32_t index_db;     /* 0 or 1 */
	uint32_t index_key_id; /* the index key the live pair is keyed by */
	unsigned flags;
	uint32_t format; /* VAULT_FORMAT, or VAULT_FORMAT_1 until upgraded (atomic) */
	char *key_file;
	struct keyring *keys;
	bool keys_locked;
	struct bin_set *bins; /* atomic pointer */
	uint64_t meta_gen;    /* atomic: generation the cached metadata reflects */
	int key_error;	      /* atomic: a refused key reload, until taken */
	pthread_mutex_t refresh_lock;
	size_t sort_mem;      /* bytes a bulk write may sort in memory */
	unsigned chunk_rows;  /* rows per bulk-write transaction when a batch asks for 0 */
	uint64_t import_rate; /* rows a second a bulk write may commit; 0: unlimited */
	/* the key store (keystore.c): opened, or created, at open by a
	 * writer; a read-only handle opens it when it first needs it, once
	 * a writer made it (under refresh_lock; has_hsm_keys atomic) */
	MDB_dbi dbi_hsm_keys;
	bool has_hsm_keys;
	/* replication (changes.c): the hook every write commit goes through */
	tsw_vault_change_fn change_fn;
	void *change_ctx;
	size_t change_max_bytes;
	struct change_capture capture;
};

#define VAULT_DB_HSM_KEYS "hsmkeys"

/* ---- LMDB errors: the mapping every module shares (tsw/error.h) ---- */
static inline int mdb_to_errno(int rc)
{
	return tsw_lmdb_errno(rc);
}

/* ---- changes.c: every write of the vault goes through these ----
 * They return what LMDB returns (0, MDB_* or a positive errno) and, once
 * it succeeded, append the write to the capture while a change hook is
 * set. vault__txn_begin starts a write transaction (-errno) with an empty
 * capture; vault__txn_commit seals the capture and offers it to the hook
 * before it commits, and aborts txn when the hook refuses (its -errno). */
int vault__put(struct tsw_vault *v, MDB_txn *txn, MDB_dbi dbi, MDB_val *k, MDB_val *d,
	       unsigned flags);
int vault__cursor_put(struct tsw_vault *v, MDB_cursor *cur, MDB_val *k, MDB_val *d, unsigned flags);
int vault__del(struct tsw_vault *v, MDB_txn *txn, MDB_dbi dbi, MDB_val *k, MDB_val *d);
int vault__drop(struct tsw_vault *v, MDB_txn *txn, MDB_dbi dbi);
int vault__txn_begin(struct tsw_vault *v, MDB_txn **ret_txn);
int vault__txn_commit(struct tsw_vault *v, MDB_txn *txn);
/* rows per transaction, bounded while a hook is set (a change must fit
 * one message) */
unsigned vault__chunk_rows(const struct tsw_vault *v, unsigned rows);
void vault__capture_free(struct tsw_vault *v);

/* ---- keys.c ---- */
/* Loads key_file into a locked key ring; with create, writes a fresh one
 * (O_EXCL, 0600) when absent. */
int vault__keyring_load(const char *key_file, bool create, struct keyring **ret_keys,
			bool *ret_locked);
void vault__keyring_free(struct keyring *k);
/* Says whether a PAN key read from the key file may be used: 0 load it,
 * 1 skip it (the vault never used it), negative: refuse the reload. */
typedef int (*keyring_check_fn)(void *ctx, uint32_t id, const uint8_t key[KEY_BYTES]);
/* Re-reads key_file and appends the keys it has that k lacks, each
 * passed by check first; nothing is appended unless every new key passes
 * (-TSW_E_BAD_KEY, -TSW_E_FULL: k unchanged). */
int vault__keyring_reload(struct keyring *k, const char *key_file, keyring_check_fn check,
			  void *ctx);
/* Appends a fresh key (id: the highest + 1) to k and rewrites key_file
 * durably (0600; temp, fsync, rename, directory fsync) before it becomes
 * k's current key. -TSW_E_FULL when k holds TSW_VAULT_KEYS_MAX keys. */
int vault__keyring_add_key(struct keyring *k, const char *key_file, uint32_t *ret_id);
/* Rewrites key_file durably without PAN key id (k keeps it in memory).
 * -TSW_E_NOT_FOUND, -EBUSY (the current key). */
int vault__keyring_remove_key(struct keyring *k, const char *key_file, uint32_t id);
int vault__keyring_slot(const struct keyring *k, uint32_t id);
int vault__keyring_hmac_slot(const struct keyring *k, uint32_t id);
/* Appends a fresh index key (id: the highest + 1) and rewrites key_file
 * durably; k's current index key stays (the vault names it). */
int vault__keyring_add_hmac(struct keyring *k, const char *key_file, uint32_t *ret_id);
/* Rewrites key_file durably without index key id, and drops it from k
 * (-EBUSY for the current one). */
int vault__keyring_remove_hmac(struct keyring *k, const char *key_file, uint32_t id);
void vault__keyring_kcv(const uint8_t key[KEY_BYTES], uint8_t out[KCV_BYTES]);

/* ---- crypto.c ---- */
struct pan_crypto {
	const struct keyring *keys;
	EVP_CIPHER_CTX *dec[TSW_VAULT_KEYS_MAX];
	EVP_CIPHER_CTX *enc;
	int enc_slot;
	EVP_MAC_CTX *mac;
	int hmac_slot; /* the index key card keys are computed under */
};
/* One piece of associated data (several are authenticated in order). */
struct aad {
	const void *ptr;
	size_t len;
};
int vault__crypto_init(struct pan_crypto *c, const struct keyring *keys);
void vault__crypto_free(struct pan_crypto *c);
/* The slot (and *ret_id, its key id) new writes are sealed under. */
int vault__crypto_current_slot(const struct pan_crypto *c, uint32_t *ret_id);
/* Seals pan under the key in slot with nonce (NULL: fresh random) into
 * out: nonce, ciphertext, tag (NONCE_BYTES + pan_len + TAG_BYTES). */
int vault__crypto_seal(struct pan_crypto *c, int slot, const struct aad *aad, unsigned n_aad,
		       const char *pan, size_t pan_len, const uint8_t *nonce, uint8_t *out);
/* Opens a sealed PAN into out; returns its length, -TSW_E_INTEGRITY (tag
 * or associated data do not match), -TSW_E_NOT_FOUND (key id unknown),
 * -TSW_E_NO_SPACE, -ENOMEM. */
int vault__crypto_open(struct pan_crypto *c, uint32_t key_id, const struct aad *aad, unsigned n_aad,
		       const uint8_t *sealed, size_t sealed_len, char *out, size_t cap);
int vault__crypto_card_key(struct pan_crypto *c, const char *pan, size_t pan_len,
			   uint8_t out[CARD_KEY_BYTES]);
/* vault__crypto_seal() / vault__crypto_open() for any plaintext of up to
 * VAULT_SEAL_PLAIN_MAX bytes (the key store's keys): out holds
 * NONCE_BYTES + len + TAG_BYTES; open returns the plaintext length. */
#define VAULT_SEAL_PLAIN_MAX 32
int vault__seal(struct pan_crypto *c, int slot, const struct aad *aad, unsigned n_aad,
		const void *plain, size_t len, const uint8_t *nonce, uint8_t *out);
int vault__open(struct pan_crypto *c, uint32_t key_id, const struct aad *aad, unsigned n_aad,
		const uint8_t *sealed, size_t sealed_len, void *out, size_t cap);

/* ---- record.c ---- */
#define REC_VERSION 3	/* version 2 + the card cryptography tail (struct rec_tail) */
#define REC_VERSION_2 2 /* authenticated as a whole (record.c) */
#define REC_VERSION_1 1 /* vault format 1: only the PAN bound to the token */
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

/* Little-endian, strings NUL-padded (merchant ids space-padded
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

/* Version 3 appends this after the merchants. */
struct rec_tail {
	uint8_t cvn; /* 0: no cryptogram required; 10, 16, 18, 20 */
	uint8_t psn; /* PAN sequence number, 0..99 */
} __attribute__((packed));

#define REC_MAX_BYTES                                                                              \
	(sizeof(struct rec) + TSW_TOKEN_MERCHANTS_MAX * sizeof(struct rec_merchant) +              \
	 sizeof(struct rec_tail))

/* digits -> value; -TSW_E_BAD_INPUT unless 13..19 digits. */
int vault__token_key(const char *token, size_t len, uint64_t *ret_key);
/* value, len -> digits with leading zeros, NUL-terminated. */
void vault__token_digits(uint64_t key, unsigned len, char *out);
size_t vault__rec_size(const struct rec *r);
/* Encodes t into out (REC_MAX_BYTES) as a REC_VERSION record; returns
 * the size. */
size_t vault__rec_encode(const struct tsw_token *t, uint8_t *out);
/* vault__rec_encode() in the layout of version (1, 2 or 3): the record as a
 * vault of that version stored it. */
size_t vault__rec_encode_as(const struct tsw_token *t, unsigned version, uint8_t *out);
/* Checks the layout and decodes; key is the LMDB key. */
int vault__rec_decode(const void *data, size_t size, uint64_t key, struct tsw_token *ret_token);
/* Checks a record's layout without decoding (version 1, 2 or 3). */
int vault__rec_check(const void *data, size_t size);
/* Seals pan into the encoded record rec (size bytes; key: its token
 * value) under the current key, nonce NULL: fresh random; sets key id and
 * sealed length first (and version 2 on a version 1 record: the same
 * layout; 2 and 3 keep theirs), then authenticates the whole record.
 * Any later change to rec needs a new seal. */
int vault__rec_seal(struct pan_crypto *c, uint8_t *rec, size_t size, uint64_t key, const char *pan,
		    size_t pan_len, const uint8_t *nonce);
/* Authenticates the stored record and decrypts its PAN into out (NULL:
 * authenticate only). Version 1 records only with allow_v1 (vault format
 * 1): they bind nothing but the PAN. Returns the PAN length,
 * -TSW_E_INTEGRITY, -TSW_E_CORRUPT (layout), -TSW_E_NOT_FOUND (key id
 * unknown), -TSW_E_NO_SPACE, -ENOMEM. */
int vault__rec_open(struct pan_crypto *c, const uint8_t *rec, size_t size, uint64_t key,
		    bool allow_v1, char *out, size_t cap);
/* Gives a stored record new flags: authenticates it, then seals it again
 * (fresh nonce, current key). */
int vault__rec_set_flags(struct pan_crypto *c, uint8_t *rec, size_t size, uint64_t key,
			 bool allow_v1, uint8_t flags);

/* ---- vault.c ---- */
/* True while the vault is format 1 (version 1 records are readable). */
bool vault__format1(const struct tsw_vault *v);
void vault__set_format(struct tsw_vault *v, uint32_t format);
int vault__meta_set_format(struct tsw_vault *v, MDB_txn *txn, uint32_t format);
/* 0: key matches the vault's check value for id, 1: the vault has none
 * (never used the key), -TSW_E_BAD_KEY: it differs. */
int vault__kcv_check(struct tsw_vault *v, MDB_txn *txn, uint32_t id, const uint8_t key[KEY_BYTES]);
/* Drops the check value of a retired key. */
int vault__kcv_forget(struct tsw_vault *v, MDB_txn *txn, uint32_t id);

/* The index: its key id, the key of a rebuild in progress (0: none) and
 * the live pair, as txn has them. */
struct index_state {
	uint32_t key_id, next_id, db;
};
int vault__index_state_get(struct tsw_vault *v, MDB_txn *txn, struct index_state *ret);
int vault__index_state_put(struct tsw_vault *v, MDB_txn *txn, const struct index_state *st);
/* Refuses (-EBUSY) a write that touches the index while an index rekey
 * runs, or when one finished after this handle was opened. */
int vault__index_guard(struct tsw_vault *v, MDB_txn *txn);
/* Check value of index key id: register, check (as vault__kcv_check), forget. */
int vault__index_kcv_register(struct tsw_vault *v, MDB_txn *txn, uint32_t id,
			      const uint8_t key[KEY_BYTES]);
int vault__index_kcv_check(struct tsw_vault *v, MDB_txn *txn, uint32_t id,
			   const uint8_t key[KEY_BYTES]);
int vault__index_kcv_forget(struct tsw_vault *v, MDB_txn *txn, uint32_t id);
/* Opens (creating) the index/cards pair p in the write txn. */
int vault__index_pair_open(struct tsw_vault *v, MDB_txn *txn, uint32_t p);
int vault__meta_get_u32(struct tsw_vault *v, MDB_txn *txn, const char *name, uint32_t *ret);
int vault__meta_bump_gen(struct tsw_vault *v, MDB_txn *txn);
int vault__kcv_register(struct tsw_vault *v, MDB_txn *txn, uint32_t id,
			const uint8_t key[KEY_BYTES]);

/* ---- keystore.c ---- */
/* Key store records sealed under PAN key key_id (authenticated or not),
 * for keys retire. */
int vault__keystore_users(struct tsw_vault *v, MDB_txn *txn, uint32_t key_id, uint64_t *ret_n);
/* Seals every key store record that is not under c's current key again
 * under it (rekey); records failing authentication are left as they are
 * and counted in *ret_failed. */
int vault__keystore_reseal(struct tsw_vault *v, MDB_txn *txn, struct pan_crypto *c,
			   uint64_t *ret_sealed, uint64_t *ret_failed);

/* ---- write.c ---- */
/* Validates a row (everything but uniqueness). reason: static text. */
int vault__row_check(const struct tsw_vault *v, const struct tsw_vault_row *row,
		     const char **ret_reason);
/* Writes t as a new record (its card flag set from the card's state,
 * then encoded and sealed with pan into rec, REC_MAX_BYTES of scratch),
 * its index entry and an optional device binding in txn. put_flags: 0 or
 * MDB_APPEND. -TSW_E_EXISTS when the token is taken. */
int vault__put_rec(struct tsw_vault *v, struct pan_crypto *c, MDB_txn *txn, uint64_t key,
		   struct tsw_token *t, const char *pan, size_t pan_len,
		   const uint8_t card_key[CARD_KEY_BYTES], const char *device_ref,
		   unsigned put_flags, uint8_t *rec, const char **ret_reason);
/* Sets t's token length, card key and card id from row's PAN. */
int vault__row_card(struct pan_crypto *c, const struct tsw_vault_row *row, struct tsw_token *t,
		    uint8_t card_key[CARD_KEY_BYTES]);
/* Encodes t and seals pan into it (out: REC_MAX_BYTES); *ret_len: size. */
int vault__encode_sealed(struct pan_crypto *c, const struct tsw_token *t, uint64_t key,
			 const char *pan, size_t pan_len, const uint8_t *nonce, uint8_t *out,
			 size_t *ret_len);
/* Authenticates and decodes a stored record d (key: its token value),
 * its PAN into pan (TSW_PAN_MAX_DIGITS; NULL: not wanted). */
int vault__read_rec(struct tsw_vault *v, struct pan_crypto *c, const MDB_val *d, uint64_t key,
		    struct tsw_token *ret_token, char *pan, size_t *ret_pan_len);
#define CARD_F_SUSPENDED 0x01
/* The card's state flags (0 when the card has none). */
int vault__card_flags(struct tsw_vault *v, MDB_txn *txn, const uint8_t card_key[CARD_KEY_BYTES],
		      uint8_t *ret_flags);
/* Fills the original_* fields of a token-for-token row from its original. */
int vault__link_original(struct tsw_vault *v, MDB_txn *txn, struct tsw_token *t,
			 const char **ret_reason);

#endif
