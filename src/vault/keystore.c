/* The key store: card cryptography keys (IMKs, zone PIN keys, token
 * cryptogram keys) in the "hsmkeys" database, each sealed like a PAN
 * (AES-256-GCM under the vault's current PAN key, crypto.c) with every
 * other byte of its record and its LMDB key as associated data.
 *
 * LMDB key: the kind (one byte), then the id. Value: struct krec, fixed
 * size. The check value is computed here with OpenSSL, by tsw_hsm's
 * convention (the vault sits below src/hsm and may not use it; the unit
 * test checks both agree). */
#include <endian.h>
#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <stddef.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "tsw/error.h"

#define KREC_VERSION 1
#define KREC_SEALED_MAX (NONCE_BYTES + TSW_VAULT_KEY_BYTES_MAX + TAG_BYTES)
#define KEY_LMDB_MAX (1 + TSW_VAULT_KEY_ID_MAX)
#define ISSUER_INDEX_MAX 255u
#define ACQUIRER_ID_DIGITS_MAX 11u /* DE32 */
#define DES_PARITY_MASK 0xFEu	   /* the low bit of each DES key byte is parity */
#define TDES_HALF 8u
#define KCV_TDES_BYTES 3u
#define KCV_AES_BYTES 5u
#define AES_BLOCK_BYTES 16u

_Static_assert(VAULT_SEAL_PLAIN_MAX >= TSW_VAULT_KEY_BYTES_MAX, "a key fits the seal");

/* Little-endian, fixed size: every byte outside sealed[0..sealed_len)
 * is associated data of the seal. */
struct krec {
	uint8_t version;
	uint8_t kind;
	uint8_t alg;
	uint8_t state;
	uint8_t scope_len;
	uint8_t kcv_len;
	uint8_t sealed_len;
	uint8_t reserved;
	char scope[TSW_VAULT_KEY_SCOPE_MAX];
	uint8_t kcv[TSW_VAULT_KCV_MAX];
	uint8_t pad[3];
	uint32_t key_id; /* the PAN key that seals it */
	uint64_t added;
	uint64_t retired;
	uint8_t sealed[KREC_SEALED_MAX];
} __attribute__((packed));

_Static_assert(sizeof(struct krec) == 108, "docs/vault.md gives the record's size");

/* Told apart from a token record's associated data in any case (another
 * database, another layout), but never to be confused with one. */
static const char AAD_LABEL[] = "tokswitch key store v1";

static const char *const kind_names[TSW_VAULT_KEY_KIND_MAX] = {"imk-ac", "zpk-acquirer",
							       "zpk-issuer", "tavv"};
static const char *const alg_names[TSW_VAULT_KEY_ALG_MAX] = {"tdes2", "tdes3", "aes128",
							     "aes256"};
static const char *const state_names[TSW_VAULT_KEY_STATE_MAX] = {"active", "retired"};
static const uint8_t alg_len[TSW_VAULT_KEY_ALG_MAX] = {16, 24, 16, 32};
/* bit (1 << alg) per kind */
static const uint8_t kind_algs[TSW_VAULT_KEY_KIND_MAX] = {
    [TSW_VAULT_KEY_IMK_AC] = 1u << TSW_VAULT_KEY_TDES2,
    [TSW_VAULT_KEY_ZPK_ACQUIRER] = 0x0f,
    [TSW_VAULT_KEY_ZPK_ISSUER] = 0x0f,
    [TSW_VAULT_KEY_TAVV] = 1u << TSW_VAULT_KEY_AES128 | 1u << TSW_VAULT_KEY_AES256,
};

const char *tsw_vault_key_kind_name(enum tsw_vault_key_kind kind)
{
	return (unsigned)kind < TSW_VAULT_KEY_KIND_MAX ? kind_names[kind] : "?";
}

const char *tsw_vault_key_alg_name(enum tsw_vault_key_alg alg)
{
	return (unsigned)alg < TSW_VAULT_KEY_ALG_MAX ? alg_names[alg] : "?";
}

const char *tsw_vault_key_state_name(enum tsw_vault_key_state state)
{
	return (unsigned)state < TSW_VAULT_KEY_STATE_MAX ? state_names[state] : "?";
}

static int name_index(const char *const *names, unsigned n, const char *name)
{
	for (unsigned i = 0; name && i < n; i++)
		if (strcmp(names[i], name) == 0)
			return (int)i;
	return -TSW_E_BAD_INPUT;
}

int tsw_vault_key_kind_parse(const char *name, enum tsw_vault_key_kind *ret_kind)
{
	int i = name_index(kind_names, TSW_VAULT_KEY_KIND_MAX, name);

	if (i < 0)
		return i;
	*ret_kind = (enum tsw_vault_key_kind)i;
	return 0;
}

int tsw_vault_key_alg_parse(const char *name, enum tsw_vault_key_alg *ret_alg)
{
	int i = name_index(alg_names, TSW_VAULT_KEY_ALG_MAX, name);

	if (i < 0)
		return i;
	*ret_alg = (enum tsw_vault_key_alg)i;
	return 0;
}

size_t tsw_vault_key_alg_len(enum tsw_vault_key_alg alg)
{
	return (unsigned)alg < TSW_VAULT_KEY_ALG_MAX ? alg_len[alg] : 0;
}

static bool id_ok(const char *id, size_t len)
{
	if (len < 1 || len > TSW_VAULT_KEY_ID_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = id[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

static bool digits(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return len > 0;
}

/* A range prefix (1..12 digits), a DE32 (1..11 digits), an issuer index
 * (0..255, no leading zero). */
static bool scope_ok(enum tsw_vault_key_kind kind, const char *scope, size_t len)
{
	unsigned n = 0;

	if (!digits(scope, len))
		return false;
	switch (kind) {
	case TSW_VAULT_KEY_IMK_AC:
	case TSW_VAULT_KEY_TAVV:
		return len <= TSW_VAULT_BIN_MAX_DIGITS;
	case TSW_VAULT_KEY_ZPK_ACQUIRER:
		return len <= ACQUIRER_ID_DIGITS_MAX;
	case TSW_VAULT_KEY_ZPK_ISSUER:
		if (len > 3 || (len > 1 && scope[0] == '0'))
			return false;
		for (size_t i = 0; i < len; i++)
			n = n * 10 + (unsigned)(scope[i] - '0');
		return n <= ISSUER_INDEX_MAX;
	case TSW_VAULT_KEY_KIND_MAX:
		break;
	}
	return false;
}

/* Two DES keys that differ only in parity bits are one key. */
static bool des_same(const uint8_t *a, const uint8_t *b)
{
	unsigned diff = 0;

	for (unsigned i = 0; i < TDES_HALF; i++)
		diff |= (unsigned)(a[i] ^ b[i]) & DES_PARITY_MASK;
	return diff == 0;
}

static bool weak_key(enum tsw_vault_key_alg alg, const uint8_t *k, size_t len)
{
	unsigned any = 0;

	for (size_t i = 0; i < len; i++)
		any |= k[i];
	if (any == 0)
		return true;
	if (alg == TSW_VAULT_KEY_TDES2 || alg == TSW_VAULT_KEY_TDES3) {
		if (des_same(k, k + TDES_HALF))
			return true;
		if (alg == TSW_VAULT_KEY_TDES3 && des_same(k + TDES_HALF, k + 2 * TDES_HALF))
			return true;
	}
	return false;
}

/* tsw_hsm's check value: TDES E(K, 0^8), 3 bytes; AES CMAC(K, 0^16), 5
 * bytes (ANSI X9.24-1:2017). */
static int key_kcv(enum tsw_vault_key_alg alg, const uint8_t *key, uint8_t *ret_kcv,
		   uint8_t *ret_len)
{
	static const uint8_t zeros[AES_BLOCK_BYTES];
	uint8_t out[AES_BLOCK_BYTES + 16];
	int r = -EIO;

	if (alg == TSW_VAULT_KEY_TDES2 || alg == TSW_VAULT_KEY_TDES3) {
		EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
		int n = 0;

		if (c &&
		    EVP_EncryptInit_ex(c,
				       alg == TSW_VAULT_KEY_TDES2 ? EVP_des_ede_ecb()
								  : EVP_des_ede3_ecb(),
				       NULL, key, NULL) == 1 &&
		    EVP_CIPHER_CTX_set_padding(c, 0) == 1 &&
		    EVP_EncryptUpdate(c, out, &n, zeros, TDES_HALF) == 1 && n == TDES_HALF)
			r = 0;
		EVP_CIPHER_CTX_free(c);
		*ret_len = KCV_TDES_BYTES;
	} else {
		EVP_MAC *mac = EVP_MAC_fetch(NULL, "CMAC", NULL);
		EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
		char cipher[16];
		OSSL_PARAM params[2];
		size_t n = 0;

		strcpy(cipher, alg == TSW_VAULT_KEY_AES128 ? "AES-128-CBC" : "AES-256-CBC");
		params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_CIPHER, cipher, 0);
		params[1] = OSSL_PARAM_construct_end();
		if (ctx && EVP_MAC_init(ctx, key, alg_len[alg], params) == 1 &&
		    EVP_MAC_update(ctx, zeros, sizeof(zeros)) == 1 &&
		    EVP_MAC_final(ctx, out, &n, sizeof(out)) == 1 && n == AES_BLOCK_BYTES)
			r = 0;
		EVP_MAC_CTX_free(ctx);
		EVP_MAC_free(mac);
		*ret_len = KCV_AES_BYTES;
	}
	if (r == 0)
		memcpy(ret_kcv, out, *ret_len);
	OPENSSL_cleanse(out, sizeof(out));
	return r;
}

static size_t lmdb_key(enum tsw_vault_key_kind kind, const char *id, size_t id_len,
		       uint8_t out[KEY_LMDB_MAX])
{
	out[0] = (uint8_t)kind;
	memcpy(out + 1, id, id_len);
	return 1 + id_len;
}

static unsigned krec_aad(const struct krec *r, const MDB_val *k, struct aad out[4])
{
	size_t seal_off = offsetof(struct krec, sealed), end = seal_off + r->sealed_len;

	out[0] = (struct aad){.ptr = AAD_LABEL, .len = sizeof(AAD_LABEL)};
	out[1] = (struct aad){.ptr = k->mv_data, .len = k->mv_size};
	out[2] = (struct aad){.ptr = r, .len = seal_off};
	out[3] = (struct aad){.ptr = (const uint8_t *)r + end, .len = sizeof(*r) - end};
	return 4;
}

/* Layout check of a stored value under LMDB key k. */
static int krec_check(const MDB_val *k, const MDB_val *d)
{
	const struct krec *r = d->mv_data;

	if (k->mv_size < 2 || k->mv_size > KEY_LMDB_MAX || d->mv_size != sizeof(*r) ||
	    r->version != KREC_VERSION || r->kind != ((const uint8_t *)k->mv_data)[0] ||
	    r->kind >= TSW_VAULT_KEY_KIND_MAX || r->alg >= TSW_VAULT_KEY_ALG_MAX ||
	    r->state >= TSW_VAULT_KEY_STATE_MAX || r->scope_len > TSW_VAULT_KEY_SCOPE_MAX ||
	    r->kcv_len > TSW_VAULT_KCV_MAX ||
	    r->sealed_len != NONCE_BYTES + alg_len[r->alg] + TAG_BYTES)
		return -TSW_E_CORRUPT;
	return 0;
}

static void krec_info(const MDB_val *k, const struct krec *r, struct tsw_vault_key_info *ret)
{
	memset(ret, 0, sizeof(*ret));
	ret->kind = ((const uint8_t *)k->mv_data)[0];
	memcpy(ret->id, (const uint8_t *)k->mv_data + 1, k->mv_size - 1);
	if (!r)
		return;
	ret->alg = r->alg;
	ret->state = r->state;
	ret->kcv_len = r->kcv_len;
	memcpy(ret->kcv, r->kcv, r->kcv_len);
	memcpy(ret->scope, r->scope, r->scope_len);
	ret->sealed_by = le32toh(r->key_id);
	ret->added = le64toh(r->added);
	ret->retired = le64toh(r->retired);
}

/* Seals bytes into r (its other fields set) under the current key. */
static int krec_seal(struct pan_crypto *c, struct krec *r, const MDB_val *k, const uint8_t *bytes)
{
	struct aad aad[4];
	uint32_t id = 0;
	int slot = vault__crypto_current_slot(c, &id);
	unsigned n;

	r->key_id = htole32(id);
	r->sealed_len = (uint8_t)(NONCE_BYTES + alg_len[r->alg] + TAG_BYTES);
	memset(r->sealed, 0, sizeof(r->sealed));
	n = krec_aad(r, k, aad);
	return vault__seal(c, slot, aad, n, bytes, alg_len[r->alg], NULL, r->sealed);
}

/* Authenticates the stored value d under k and decrypts the key into out
 * (TSW_VAULT_KEY_BYTES_MAX). Returns its length, -TSW_E_CORRUPT,
 * -TSW_E_INTEGRITY, -TSW_E_NOT_FOUND (sealing key unknown), -ENOMEM. */
static int krec_open(struct pan_crypto *c, const MDB_val *k, const MDB_val *d, uint8_t *out)
{
	struct krec r;
	struct aad aad[4];
	unsigned n;
	int r_len;

	if (krec_check(k, d) < 0)
		return -TSW_E_CORRUPT;
	memcpy(&r, d->mv_data, sizeof(r)); /* aligned, and stable while we read it */
	n = krec_aad(&r, k, aad);
	r_len = vault__open(c, le32toh(r.key_id), aad, n, r.sealed, r.sealed_len, out,
			    TSW_VAULT_KEY_BYTES_MAX);
	OPENSSL_cleanse(&r, sizeof(r));
	return r_len;
}

static int begin(struct tsw_vault *v, bool write, MDB_txn **ret_txn)
{
	if (write && (v->flags & TSW_VAULT_RDONLY))
		return -EROFS;
	if (write)
		return vault__txn_begin(v, ret_txn);
	return mdb_to_errno(mdb_txn_begin(v->env, NULL, MDB_RDONLY, ret_txn));
}

/* The database handle, opened (without creating it) by a handle that
 * found none at open: a read-only vault opened before the first key. */
static int keys_dbi(struct tsw_vault *v, MDB_dbi *ret)
{
	MDB_txn *txn;
	int rc, r = 0;

	if (__atomic_load_n(&v->has_hsm_keys, __ATOMIC_ACQUIRE)) {
		*ret = v->dbi_hsm_keys;
		return 0;
	}
	pthread_mutex_lock(&v->refresh_lock);
	if (!v->has_hsm_keys) {
		rc = mdb_txn_begin(v->env, NULL, MDB_RDONLY, &txn);
		if (rc == 0) {
			rc = mdb_dbi_open(txn, VAULT_DB_HSM_KEYS, 0, &v->dbi_hsm_keys);
			if (rc == 0)
				rc = mdb_txn_commit(txn);
			else
				mdb_txn_abort(txn);
		}
		if (rc == 0)
			__atomic_store_n(&v->has_hsm_keys, true, __ATOMIC_RELEASE);
		else
			r = rc == MDB_NOTFOUND ? -TSW_E_NOT_FOUND : mdb_to_errno(rc);
	}
	pthread_mutex_unlock(&v->refresh_lock);
	if (r == 0)
		*ret = v->dbi_hsm_keys;
	return r;
}

int tsw_vault_key_add(struct tsw_vault *v, const struct tsw_vault_key_info *in,
		      const uint8_t *bytes, size_t len, struct tsw_vault_key_info *ret_info)
{
	uint8_t kbuf[KEY_LMDB_MAX];
	size_t id_len, scope_len;
	struct pan_crypto c;
	struct krec rec;
	MDB_val k, d;
	MDB_stat st;
	MDB_txn *txn;
	MDB_dbi dbi;
	int r;

	if (!in || !bytes || in->kind >= TSW_VAULT_KEY_KIND_MAX || in->alg >= TSW_VAULT_KEY_ALG_MAX ||
	    !(kind_algs[in->kind] & (1u << in->alg)) || len != alg_len[in->alg])
		return -TSW_E_BAD_INPUT;
	id_len = strnlen(in->id, sizeof(in->id));
	scope_len = strnlen(in->scope, sizeof(in->scope));
	if (!id_ok(in->id, id_len) || !scope_ok(in->kind, in->scope, scope_len) ||
	    weak_key(in->alg, bytes, len))
		return -TSW_E_BAD_INPUT;
	if (v->flags & TSW_VAULT_RDONLY)
		return -EROFS;
	r = keys_dbi(v, &dbi);
	if (r < 0)
		return r == -TSW_E_NOT_FOUND ? -TSW_E_CORRUPT : r;
	memset(&rec, 0, sizeof(rec));
	rec.version = KREC_VERSION;
	rec.kind = in->kind;
	rec.alg = in->alg;
	rec.state = TSW_VAULT_KEY_ACTIVE;
	rec.scope_len = (uint8_t)scope_len;
	memcpy(rec.scope, in->scope, scope_len);
	rec.added = htole64((uint64_t)time(NULL));
	r = key_kcv(in->alg, bytes, rec.kcv, &rec.kcv_len);
	if (r < 0)
		return r;
	k = (MDB_val){.mv_size = lmdb_key(in->kind, in->id, id_len, kbuf), .mv_data = kbuf};
	r = begin(v, true, &txn);
	if (r < 0)
		return r;
	vault__crypto_init(&c, v->keys);
	r = mdb_to_errno(mdb_stat(txn, dbi, &st));
	if (r == 0 && st.ms_entries >= TSW_VAULT_HSM_KEYS_MAX)
		r = -TSW_E_FULL;
	if (r == 0)
		r = krec_seal(&c, &rec, &k, bytes);
	if (r == 0) {
		d = (MDB_val){.mv_size = sizeof(rec), .mv_data = &rec};
		r = vault__put(v, txn, dbi, &k, &d, MDB_NOOVERWRITE);
		r = r == MDB_KEYEXIST ? -TSW_E_EXISTS : mdb_to_errno(r);
	}
	if (r == 0)
		r = vault__meta_bump_gen(v, txn);
	vault__crypto_free(&c);
	if (r < 0) {
		mdb_txn_abort(txn);
	} else {
		r = vault__txn_commit(v, txn);
		if (r == 0 && ret_info)
			krec_info(&k, &rec, ret_info);
	}
	OPENSSL_cleanse(&rec, sizeof(rec));
	return r;
}

int tsw_vault_key_retire(struct tsw_vault *v, enum tsw_vault_key_kind kind, const char *id,
			 size_t id_len, struct tsw_vault_key_info *ret_info)
{
	uint8_t kbuf[KEY_LMDB_MAX], bytes[TSW_VAULT_KEY_BYTES_MAX];
	struct pan_crypto c;
	struct krec rec;
	MDB_val k, d;
	MDB_txn *txn;
	MDB_dbi dbi;
	int r, n;

	if ((unsigned)kind >= TSW_VAULT_KEY_KIND_MAX || !id || !id_ok(id, id_len))
		return -TSW_E_BAD_INPUT;
	if (v->flags & TSW_VAULT_RDONLY)
		return -EROFS;
	r = keys_dbi(v, &dbi);
	if (r < 0)
		return r;
	k = (MDB_val){.mv_size = lmdb_key(kind, id, id_len, kbuf), .mv_data = kbuf};
	r = begin(v, true, &txn);
	if (r < 0)
		return r;
	vault__crypto_init(&c, v->keys);
	r = mdb_get(txn, dbi, &k, &d);
	r = r == MDB_NOTFOUND ? -TSW_E_NOT_FOUND : mdb_to_errno(r);
	if (r < 0)
		goto out;
	n = krec_open(&c, &k, &d, bytes);
	if (n < 0) {
		/* no verb seals an edited record again: that would make the
		 * edit authentic */
		r = n == -TSW_E_NOT_FOUND || n == -TSW_E_CORRUPT ? -TSW_E_INTEGRITY : n;
		goto out;
	}
	memcpy(&rec, d.mv_data, sizeof(rec));
	if (rec.state == TSW_VAULT_KEY_RETIRED) {
		r = -EALREADY;
		goto out;
	}
	rec.state = TSW_VAULT_KEY_RETIRED;
	rec.retired = htole64((uint64_t)time(NULL));
	r = krec_seal(&c, &rec, &k, bytes);
	if (r == 0) {
		d = (MDB_val){.mv_size = sizeof(rec), .mv_data = &rec};
		r = mdb_to_errno(vault__put(v, txn, dbi, &k, &d, 0));
	}
	if (r == 0)
		r = vault__meta_bump_gen(v, txn);
out:
	OPENSSL_cleanse(bytes, sizeof(bytes));
	vault__crypto_free(&c);
	if (r < 0) {
		mdb_txn_abort(txn);
	} else {
		r = vault__txn_commit(v, txn);
		if (r == 0 && ret_info)
			krec_info(&k, &rec, ret_info);
	}
	OPENSSL_cleanse(&rec, sizeof(rec));
	return r;
}

/* Walks the store in a read transaction: each() gets the record, whether
 * it opened (err) and its bytes (valid only for err 0; wiped after). */
typedef int (*walk_fn)(void *ctx, const MDB_val *k, const struct krec *r, int err,
		       const uint8_t *bytes, size_t len);

static int walk(struct tsw_vault *v, walk_fn each, void *ctx)
{
	uint8_t bytes[TSW_VAULT_KEY_BYTES_MAX];
	MDB_cursor *cur = NULL;
	struct pan_crypto c;
	MDB_txn *txn;
	MDB_val k, d;
	MDB_dbi dbi;
	int r, rc = MDB_NOTFOUND;

	r = keys_dbi(v, &dbi);
	if (r == -TSW_E_NOT_FOUND)
		return 0; /* no key was ever added */
	if (r < 0)
		return r;
	r = begin(v, false, &txn);
	if (r < 0)
		return r;
	vault__crypto_init(&c, v->keys);
	r = mdb_to_errno(mdb_cursor_open(txn, dbi, &cur));
	while (r == 0 && (rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT)) == 0) {
		int n = krec_open(&c, &k, &d, bytes);
		struct krec rec;

		if (n == -TSW_E_CORRUPT) {
			r = each(ctx, &k, NULL, n, NULL, 0);
			continue;
		}
		memcpy(&rec, d.mv_data, sizeof(rec));
		if (n < 0 && n != -TSW_E_INTEGRITY && n != -TSW_E_NOT_FOUND)
			r = n;
		else
			r = each(ctx, &k, &rec, n < 0 ? n : 0, bytes, n < 0 ? 0 : (size_t)n);
		OPENSSL_cleanse(bytes, sizeof(bytes));
		OPENSSL_cleanse(&rec, sizeof(rec));
	}
	if (r == 0 && rc != MDB_NOTFOUND)
		r = mdb_to_errno(rc);
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	vault__crypto_free(&c);
	return r;
}

struct list_ctx {
	tsw_vault_key_fn fn;
	void *ctx;
};

static int list_one(void *ctx, const MDB_val *k, const struct krec *r, int err,
		    const uint8_t *bytes, size_t len)
{
	struct list_ctx *l = ctx;
	struct tsw_vault_key_info info;

	(void)bytes;
	(void)len;
	if (k->mv_size < 2 || k->mv_size > KEY_LMDB_MAX) {
		memset(&info, 0, sizeof(info));
		info.kind = TSW_VAULT_KEY_KIND_MAX;
	} else {
		krec_info(k, r, &info);
	}
	return l->fn(l->ctx, &info, err);
}

int tsw_vault_key_list(struct tsw_vault *v, tsw_vault_key_fn fn, void *ctx)
{
	struct list_ctx l = {.fn = fn, .ctx = ctx};

	if (!fn)
		return -TSW_E_BAD_INPUT;
	return walk(v, list_one, &l);
}

struct load_ctx {
	struct tsw_vault_key *keys;
	size_t cap, n;
};

static int load_one(void *ctx, const MDB_val *k, const struct krec *r, int err,
		    const uint8_t *bytes, size_t len)
{
	struct load_ctx *l = ctx;
	struct tsw_vault_key *out;
	uint8_t kcv[TSW_VAULT_KCV_MAX];
	uint8_t kcv_len = 0;

	if (err < 0)
		return err == -TSW_E_NOT_FOUND || err == -TSW_E_CORRUPT ? err : -TSW_E_INTEGRITY;
	if (r->state != TSW_VAULT_KEY_ACTIVE)
		return 0;
	if (l->n >= l->cap)
		return -TSW_E_NO_SPACE;
	/* the seal covers the check value too; checking it again costs one
	 * block and shows the bytes are the key the operator added */
	if (len != alg_len[r->alg] || key_kcv(r->alg, bytes, kcv, &kcv_len) < 0 ||
	    kcv_len != r->kcv_len || CRYPTO_memcmp(kcv, r->kcv, kcv_len) != 0)
		return -TSW_E_INTEGRITY;
	out = &l->keys[l->n++];
	krec_info(k, r, &out->info);
	out->len = (uint8_t)len;
	memcpy(out->bytes, bytes, len);
	return 0;
}

int tsw_vault_key_load(struct tsw_vault *v, struct tsw_vault_key *keys, size_t cap,
		       size_t *ret_n)
{
	struct load_ctx l = {.keys = keys, .cap = cap};
	int r;

	if ((!keys && cap) || !ret_n)
		return -TSW_E_BAD_INPUT;
	r = walk(v, load_one, &l);
	if (r < 0) {
		if (keys)
			OPENSSL_cleanse(keys, cap * sizeof(*keys));
		return r;
	}
	*ret_n = l.n;
	return 0;
}

int vault__keystore_users(struct tsw_vault *v, MDB_txn *txn, uint32_t key_id, uint64_t *ret_n)
{
	MDB_cursor *cur = NULL;
	uint64_t n = 0;
	MDB_val k, d;
	int r, rc;

	if (!__atomic_load_n(&v->has_hsm_keys, __ATOMIC_ACQUIRE)) {
		*ret_n = 0;
		return 0;
	}
	r = mdb_to_errno(mdb_cursor_open(txn, v->dbi_hsm_keys, &cur));
	while (r == 0 && (rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT)) == 0)
		/* the stored key id, authenticated or not */
		if (d.mv_size == sizeof(struct krec) &&
		    le32toh(((const struct krec *)d.mv_data)->key_id) == key_id)
			n++;
	mdb_cursor_close(cur);
	*ret_n = n;
	return r;
}

int vault__keystore_reseal(struct tsw_vault *v, MDB_txn *txn, struct pan_crypto *c,
			   uint64_t *ret_sealed, uint64_t *ret_failed)
{
	uint8_t bytes[TSW_VAULT_KEY_BYTES_MAX];
	uint64_t sealed = 0, failed = 0;
	MDB_cursor *cur = NULL;
	uint32_t current = 0;
	MDB_val k, d;
	int r, rc = MDB_NOTFOUND;

	*ret_sealed = *ret_failed = 0;
	if (!__atomic_load_n(&v->has_hsm_keys, __ATOMIC_ACQUIRE))
		return 0;
	vault__crypto_current_slot(c, &current);
	r = mdb_to_errno(mdb_cursor_open(txn, v->dbi_hsm_keys, &cur));
	while (r == 0 && (rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT)) == 0) {
		uint8_t kbuf[KEY_LMDB_MAX];
		struct krec rec;
		MDB_val nk, nd;
		int n;

		if (d.mv_size == sizeof(struct krec) &&
		    le32toh(((const struct krec *)d.mv_data)->key_id) == current)
			continue;
		n = krec_open(c, &k, &d, bytes);
		if (n < 0) {
			/* left as it is, as a token record failing authentication */
			failed++;
			continue;
		}
		memcpy(&rec, d.mv_data, sizeof(rec));
		memcpy(kbuf, k.mv_data, k.mv_size);
		nk = (MDB_val){.mv_size = k.mv_size, .mv_data = kbuf};
		r = krec_seal(c, &rec, &nk, bytes);
		OPENSSL_cleanse(bytes, sizeof(bytes));
		if (r == 0) {
			nd = (MDB_val){.mv_size = sizeof(rec), .mv_data = &rec};
			r = mdb_to_errno(vault__cursor_put(v, cur, &nk, &nd, MDB_CURRENT));
			sealed++;
		}
		OPENSSL_cleanse(&rec, sizeof(rec));
	}
	if (r == 0 && rc != MDB_NOTFOUND)
		r = mdb_to_errno(rc);
	mdb_cursor_close(cur);
	OPENSSL_cleanse(bytes, sizeof(bytes));
	*ret_sealed = sealed;
	*ret_failed = failed;
	return r;
}
