/* The write set of a vault write transaction, for replication: while a
 * change hook is set (tsw_vault_set_change_hook), every put, delete and
 * drop the vault does goes through the helpers below, which also append
 * it to a capture buffer; the commit seals the buffer (AES-256-GCM under
 * a key derived from the vault's current PAN key) and hands it to the
 * hook before LMDB commits, and aborts the transaction when the hook
 * refuses. A node applies a sealed change in one transaction of its own,
 * with the sequence it came with (tsw_vault_change_apply).
 *
 * Plain change (sealed as a whole, little-endian):
 *	"TSWC" version(1) 0 0 0  n_ops(u32)
 *	then n_ops times: op(u8) db(u8) 0 0  key_len(u32) data_len(u32) key data
 * Sealed change:
 *	"TSWS" version(1) 0 0 0  key_id(u32)  nonce(12)  ciphertext  tag(16)
 * with the first 12 bytes as associated data. */
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "tsw/error.h"

#define PLAIN_MAGIC "TSWC"
#define SEALED_MAGIC "TSWS"
#define CHANGE_VERSION 1
#define PLAIN_HEADER_BYTES 12
#define OP_HEADER_BYTES 12
#define SEALED_HEADER_BYTES 12
#define SEALED_OVERHEAD (SEALED_HEADER_BYTES + NONCE_BYTES + TAG_BYTES)
#define CAPTURE_INITIAL_BYTES 4096
#define META_CLUSTER_SEQ "cluster:seq"
/* The label the change key is derived under (HMAC-SHA-256 of it under a
 * PAN key): never the PAN key itself, so no ciphertext under one key
 * meets another use of it. */
static const char change_key_label[] = "tokswitch vault change seal 1";

enum change_op { OP_PUT = 1, OP_DEL = 2, OP_DEL_DUP = 3, OP_DROP = 4 };

/* The databases a change may name, by a stable number. */
enum change_db {
	DB_META,
	DB_TOKENS,
	DB_INDEX,
	DB_CARDS,
	DB_INDEX2,
	DB_CARDS2,
	DB_DEVICES,
	DB_HSMKEYS,
	DB_MAX
};

static void put_u32(uint8_t *p, uint32_t x)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(x >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int db_of(const struct tsw_vault *v, MDB_dbi dbi)
{
	if (dbi == v->dbi_meta)
		return DB_META;
	if (dbi == v->dbi_tokens)
		return DB_TOKENS;
	if (dbi == v->pair_index[0])
		return DB_INDEX;
	if (dbi == v->pair_cards[0])
		return DB_CARDS;
	if (v->has_pair[1] && dbi == v->pair_index[1])
		return DB_INDEX2;
	if (v->has_pair[1] && dbi == v->pair_cards[1])
		return DB_CARDS2;
	if (dbi == v->dbi_devices)
		return DB_DEVICES;
	if (v->has_hsm_keys && dbi == v->dbi_hsm_keys)
		return DB_HSMKEYS;
	return -1;
}

static int capture_reserve(struct change_capture *c, size_t more)
{
	size_t want = c->len + more, cap = c->cap ? c->cap : CAPTURE_INITIAL_BYTES;
	uint8_t *p;

	if (want <= c->cap)
		return 0;
	while (cap < want)
		cap *= 2;
	p = malloc(cap);
	if (!p)
		return -ENOMEM;
	/* records are in here: the old copy is wiped, never left to realloc */
	if (c->buf) {
		memcpy(p, c->buf, c->len);
		OPENSSL_cleanse(c->buf, c->cap);
		free(c->buf);
	}
	c->buf = p;
	c->cap = cap;
	return 0;
}

static void capture_op(struct tsw_vault *v, enum change_op op, MDB_dbi dbi, const MDB_val *k,
		       const MDB_val *d)
{
	struct change_capture *c = &v->capture;
	size_t klen = k ? k->mv_size : 0, dlen = d ? d->mv_size : 0;
	int db = db_of(v, dbi);
	uint8_t *p;

	if (!v->change_fn || c->failed || c->too_big)
		return;
	/* past what may be published: the commit refuses it anyway, so the
	 * capture stops growing (a bulk transaction could be gigabytes) */
	if (c->len + OP_HEADER_BYTES + klen + dlen + SEALED_OVERHEAD > v->change_max_bytes) {
		c->too_big = true;
		return;
	}
	if (db < 0 || capture_reserve(c, OP_HEADER_BYTES + klen + dlen) < 0) {
		c->failed = true; /* the commit refuses: a change must not go half */
		return;
	}
	p = c->buf + c->len;
	p[0] = (uint8_t)op;
	p[1] = (uint8_t)db;
	p[2] = p[3] = 0;
	put_u32(p + 4, (uint32_t)klen);
	put_u32(p + 8, (uint32_t)dlen);
	if (klen)
		memcpy(p + OP_HEADER_BYTES, k->mv_data, klen);
	if (dlen)
		memcpy(p + OP_HEADER_BYTES + klen, d->mv_data, dlen);
	c->len += OP_HEADER_BYTES + klen + dlen;
	c->n_ops++;
}

int vault__put(struct tsw_vault *v, MDB_txn *txn, MDB_dbi dbi, MDB_val *k, MDB_val *d,
	       unsigned flags)
{
	int rc = mdb_put(txn, dbi, k, d, flags);

	if (rc == 0)
		capture_op(v, OP_PUT, dbi, k, d);
	return rc;
}

/* Callers pass the key the cursor is at, also with MDB_CURRENT (never a
 * pointer into the page the put may rewrite): it is what a replica needs. */
int vault__cursor_put(struct tsw_vault *v, MDB_cursor *cur, MDB_val *k, MDB_val *d, unsigned flags)
{
	int rc = mdb_cursor_put(cur, k, d, flags);

	if (rc == 0)
		capture_op(v, OP_PUT, mdb_cursor_dbi(cur), k, d);
	return rc;
}

int vault__del(struct tsw_vault *v, MDB_txn *txn, MDB_dbi dbi, MDB_val *k, MDB_val *d)
{
	int rc = mdb_del(txn, dbi, k, d);

	if (rc == 0)
		capture_op(v, d ? OP_DEL_DUP : OP_DEL, dbi, k, d);
	return rc;
}

int vault__drop(struct tsw_vault *v, MDB_txn *txn, MDB_dbi dbi)
{
	int rc = mdb_drop(txn, dbi, 0);

	if (rc == 0)
		capture_op(v, OP_DROP, dbi, NULL, NULL);
	return rc;
}

static void capture_reset(struct change_capture *c)
{
	if (c->buf)
		OPENSSL_cleanse(c->buf, c->len);
	c->len = PLAIN_HEADER_BYTES;
	c->n_ops = 0;
	c->failed = false;
	c->too_big = false;
}

int vault__txn_begin(struct tsw_vault *v, MDB_txn **ret_txn)
{
	if (v->change_fn) {
		if (capture_reserve(&v->capture, PLAIN_HEADER_BYTES) < 0)
			return -ENOMEM;
		capture_reset(&v->capture);
	}
	return mdb_to_errno(mdb_txn_begin(v->env, NULL, 0, ret_txn));
}

/* The change key: HMAC-SHA-256(PAN key, label). */
static int change_key(const struct keyring *k, uint32_t key_id, uint8_t out[KEY_BYTES])
{
	unsigned len = KEY_BYTES;
	int slot = vault__keyring_slot(k, key_id);

	if (slot < 0)
		return -TSW_E_NOT_FOUND;
	if (!HMAC(EVP_sha256(), k->pan[slot].key, KEY_BYTES, (const uint8_t *)change_key_label,
		  sizeof(change_key_label) - 1, out, &len))
		return -ENOMEM;
	return 0;
}

static int gcm(bool enc, const uint8_t key[KEY_BYTES], const uint8_t *nonce, const uint8_t *aad,
	       size_t aad_len, const uint8_t *in, size_t len, uint8_t *out, uint8_t *tag)
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int n = 0, ok;

	if (!ctx)
		return -ENOMEM;
	ok = EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, nonce, enc) == 1 &&
	     EVP_CipherUpdate(ctx, NULL, &n, aad, (int)aad_len) == 1 &&
	     (len == 0 || EVP_CipherUpdate(ctx, out, &n, in, (int)len) == 1) &&
	     (enc || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_BYTES, tag) == 1) &&
	     EVP_CipherFinal_ex(ctx, out + len, &n) == 1 &&
	     (!enc || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_BYTES, tag) == 1);
	EVP_CIPHER_CTX_free(ctx);
	return ok ? 0 : enc ? -ENOMEM : -TSW_E_INTEGRITY;
}

/* Seals plain[0, len) into a malloc'ed *ret_sealed under the current PAN
 * key's change key. */
static int change_seal(struct tsw_vault *v, const uint8_t *plain, size_t len, uint8_t **ret_sealed,
		       size_t *ret_len)
{
	uint32_t key_id = v->keys->pan[__atomic_load_n(&v->keys->current, __ATOMIC_ACQUIRE)].id;
	uint8_t key[KEY_BYTES], *s = malloc(len + SEALED_OVERHEAD);
	int r;

	if (!s)
		return -ENOMEM;
	memcpy(s, SEALED_MAGIC, 4);
	s[4] = CHANGE_VERSION;
	s[5] = s[6] = s[7] = 0;
	put_u32(s + 8, key_id);
	r = change_key(v->keys, key_id, key);
	if (r == 0 && RAND_bytes(s + SEALED_HEADER_BYTES, NONCE_BYTES) != 1)
		r = -EIO;
	if (r == 0)
		r = gcm(true, key, s + SEALED_HEADER_BYTES, s, SEALED_HEADER_BYTES, plain, len,
			s + SEALED_HEADER_BYTES + NONCE_BYTES,
			s + SEALED_HEADER_BYTES + NONCE_BYTES + len);
	OPENSSL_cleanse(key, sizeof(key));
	if (r < 0) {
		free(s);
		return r;
	}
	*ret_sealed = s;
	*ret_len = len + SEALED_OVERHEAD;
	return 0;
}

/* Opens a sealed change into a malloc'ed *ret_plain (wiped and freed by
 * the caller). */
static int change_open(struct tsw_vault *v, const uint8_t *s, size_t len, uint8_t **ret_plain,
		       size_t *ret_len)
{
	uint8_t key[KEY_BYTES], tag[TAG_BYTES], *p;
	size_t n;
	int r;

	if (len < SEALED_OVERHEAD || memcmp(s, SEALED_MAGIC, 4) != 0 || s[4] != CHANGE_VERSION)
		return -TSW_E_INTEGRITY;
	n = len - SEALED_OVERHEAD;
	p = malloc(n + 1);
	if (!p)
		return -ENOMEM;
	memcpy(tag, s + len - TAG_BYTES, TAG_BYTES);
	/* a key id this key file lacks opens nothing either */
	r = change_key(v->keys, get_u32(s + 8), key) == 0 ? 0 : -TSW_E_INTEGRITY;
	if (r == 0)
		r = gcm(false, key, s + SEALED_HEADER_BYTES, s, SEALED_HEADER_BYTES,
			s + SEALED_HEADER_BYTES + NONCE_BYTES, n, p, tag);
	OPENSSL_cleanse(key, sizeof(key));
	if (r < 0) {
		OPENSSL_cleanse(p, n);
		free(p);
		return r;
	}
	*ret_plain = p;
	*ret_len = n;
	return 0;
}

static int seq_get(struct tsw_vault *v, MDB_txn *txn, uint64_t *ret_seq)
{
	MDB_val k = {.mv_size = strlen(META_CLUSTER_SEQ), .mv_data = (void *)META_CLUSTER_SEQ};
	MDB_val d;
	int rc = mdb_get(txn, v->dbi_meta, &k, &d);

	if (rc == MDB_NOTFOUND) {
		*ret_seq = 0;
		return 0;
	}
	if (rc)
		return mdb_to_errno(rc);
	if (d.mv_size != sizeof(uint64_t))
		return -TSW_E_CORRUPT;
	memcpy(ret_seq, d.mv_data, sizeof(*ret_seq));
	return 0;
}

/* Not captured: the sequence is each replica's own bookkeeping. */
static int seq_put(struct tsw_vault *v, MDB_txn *txn, uint64_t seq)
{
	MDB_val k = {.mv_size = strlen(META_CLUSTER_SEQ), .mv_data = (void *)META_CLUSTER_SEQ};
	MDB_val d = {.mv_size = sizeof(seq), .mv_data = &seq};

	return mdb_to_errno(mdb_put(txn, v->dbi_meta, &k, &d, 0));
}

/* Seals the captured write set and offers it to the hook; on its ack
 * the sequence it got is stored in txn. */
static int publish(struct tsw_vault *v, MDB_txn *txn)
{
	struct change_capture *c = &v->capture;
	struct tsw_vault_change ch = {0};
	uint64_t seq = 0;
	uint8_t *sealed = NULL;
	int r;

	if (c->failed)
		return -ENOMEM;
	if (c->too_big)
		return -EMSGSIZE;
	if (c->n_ops == 0)
		return 0; /* nothing changed: nothing to replicate */
	memcpy(c->buf, PLAIN_MAGIC, 4);
	c->buf[4] = CHANGE_VERSION;
	c->buf[5] = c->buf[6] = c->buf[7] = 0;
	put_u32(c->buf + 8, c->n_ops);
	if (c->len + SEALED_OVERHEAD > v->change_max_bytes)
		return -EMSGSIZE;
	r = seq_get(v, txn, &ch.prev_seq);
	if (r == 0)
		r = change_seal(v, c->buf, c->len, &sealed, &ch.len);
	if (r < 0)
		return r;
	ch.sealed = sealed;
	for (size_t i = 0; i < NONCE_BYTES; i++)
		snprintf(ch.id + 2 * i, 3, "%02x", sealed[SEALED_HEADER_BYTES + i]);
	r = v->change_fn(v->change_ctx, &ch, &seq);
	free(sealed);
	if (r < 0)
		return r;
	return seq_put(v, txn, seq);
}

int vault__txn_commit(struct tsw_vault *v, MDB_txn *txn)
{
	int r = v->change_fn ? publish(v, txn) : 0;

	if (v->change_fn)
		capture_reset(&v->capture);
	if (r < 0) {
		mdb_txn_abort(txn);
		return r;
	}
	return mdb_to_errno(mdb_txn_commit(txn));
}

unsigned vault__chunk_rows(const struct tsw_vault *v, unsigned rows)
{
	return v->change_fn && rows > TSW_VAULT_CHANGE_CHUNK_ROWS ? TSW_VAULT_CHANGE_CHUNK_ROWS
								  : rows;
}

int tsw_vault_set_change_hook(struct tsw_vault *v, tsw_vault_change_fn fn, void *ctx,
			      size_t max_bytes)
{
	if (v->flags & TSW_VAULT_RDONLY)
		return -EROFS;
	if (fn && max_bytes < SEALED_OVERHEAD + PLAIN_HEADER_BYTES + OP_HEADER_BYTES)
		return -EINVAL;
	v->change_fn = fn;
	v->change_ctx = ctx;
	v->change_max_bytes = max_bytes;
	return 0;
}

void vault__capture_free(struct tsw_vault *v)
{
	if (v->capture.buf) {
		OPENSSL_cleanse(v->capture.buf, v->capture.cap);
		free(v->capture.buf);
	}
	memset(&v->capture, 0, sizeof(v->capture));
}

/* The handle of db in txn (the second index pair is opened, made when
 * absent: an index rekey elsewhere made it). */
static int db_handle(struct tsw_vault *v, MDB_txn *txn, unsigned db, MDB_dbi *ret)
{
	int r;

	switch (db) {
	case DB_META:
		*ret = v->dbi_meta;
		return 0;
	case DB_TOKENS:
		*ret = v->dbi_tokens;
		return 0;
	case DB_INDEX:
		*ret = v->pair_index[0];
		return 0;
	case DB_CARDS:
		*ret = v->pair_cards[0];
		return 0;
	case DB_DEVICES:
		*ret = v->dbi_devices;
		return 0;
	case DB_HSMKEYS:
		if (!v->has_hsm_keys)
			return -TSW_E_CORRUPT;
		*ret = v->dbi_hsm_keys;
		return 0;
	case DB_INDEX2:
	case DB_CARDS2:
		if (!v->has_pair[1]) {
			r = vault__index_pair_open(v, txn, 1);
			if (r < 0)
				return r;
		}
		*ret = db == DB_INDEX2 ? v->pair_index[1] : v->pair_cards[1];
		return 0;
	default:
		return -TSW_E_CORRUPT;
	}
}

/* Replays one op; an op that finds nothing to delete is no error (the
 * result, an absent key, is what the origin had). */
static int replay_op(MDB_txn *txn, unsigned op, MDB_dbi dbi, MDB_val *k, MDB_val *d)
{
	int rc;

	switch (op) {
	case OP_PUT:
		rc = mdb_put(txn, dbi, k, d, 0);
		return rc == MDB_KEYEXIST ? 0 : mdb_to_errno(rc);
	case OP_DEL:
	case OP_DEL_DUP:
		rc = mdb_del(txn, dbi, k, op == OP_DEL_DUP ? d : NULL);
		return rc == MDB_NOTFOUND ? 0 : mdb_to_errno(rc);
	case OP_DROP:
		return mdb_to_errno(mdb_drop(txn, dbi, 0));
	default:
		return -TSW_E_CORRUPT;
	}
}

static int replay(struct tsw_vault *v, MDB_txn *txn, const uint8_t *p, size_t len)
{
	uint32_t n_ops;
	size_t off = PLAIN_HEADER_BYTES;

	if (len < PLAIN_HEADER_BYTES || memcmp(p, PLAIN_MAGIC, 4) != 0 || p[4] != CHANGE_VERSION)
		return -TSW_E_CORRUPT;
	n_ops = get_u32(p + 8);
	for (uint32_t i = 0; i < n_ops; i++) {
		MDB_val k, d;
		MDB_dbi dbi;
		size_t klen, dlen;
		int r;

		if (len - off < OP_HEADER_BYTES)
			return -TSW_E_CORRUPT;
		klen = get_u32(p + off + 4);
		dlen = get_u32(p + off + 8);
		if (klen > len - off - OP_HEADER_BYTES || dlen > len - off - OP_HEADER_BYTES - klen)
			return -TSW_E_CORRUPT;
		r = db_handle(v, txn, p[off + 1], &dbi);
		if (r < 0)
			return r;
		k = (MDB_val){.mv_size = klen, .mv_data = (void *)(p + off + OP_HEADER_BYTES)};
		d = (MDB_val){.mv_size = dlen,
			      .mv_data = (void *)(p + off + OP_HEADER_BYTES + klen)};
		r = replay_op(txn, p[off], dbi, &k, &d);
		if (r < 0)
			return r;
		off += OP_HEADER_BYTES + klen + dlen;
	}
	return off == len ? 0 : -TSW_E_CORRUPT;
}

/* Opens and replays one change in txn. */
static int apply_in(struct tsw_vault *v, MDB_txn *txn, const uint8_t *sealed, size_t len)
{
	uint8_t *plain = NULL;
	size_t plain_len = 0;
	int r = change_open(v, sealed, len, &plain, &plain_len);

	if (r < 0)
		return r;
	r = replay(v, txn, plain, plain_len);
	OPENSSL_cleanse(plain, plain_len);
	free(plain);
	return r;
}

int tsw_vault_changes_apply(struct tsw_vault *v, const struct tsw_vault_sealed *c, size_t n,
			    size_t *ret_applied)
{
	uint64_t have = 0;
	size_t applied = 0;
	MDB_txn *txn;
	int r;

	if (v->flags & TSW_VAULT_RDONLY)
		return -EROFS;
	for (size_t i = 0; i < n; i++)
		if (c[i].seq == 0 || (i > 0 && c[i].seq <= c[i - 1].seq))
			return -EINVAL;
	r = mdb_to_errno(mdb_txn_begin(v->env, NULL, 0, &txn));
	if (r < 0)
		return r;
	r = seq_get(v, txn, &have);
	for (size_t i = 0; i < n && r == 0; i++) {
		if (c[i].seq <= have)
			continue;
		r = apply_in(v, txn, c[i].bytes, c[i].len);
		if (r == 0) {
			have = c[i].seq;
			applied++;
		}
	}
	if (r == 0 && applied == 0) {
		mdb_txn_abort(txn);
		*ret_applied = 0;
		return 0;
	}
	if (r == 0)
		r = seq_put(v, txn, have);
	if (r < 0) {
		mdb_txn_abort(txn);
		return r;
	}
	r = mdb_to_errno(mdb_txn_commit(txn));
	if (r == 0)
		*ret_applied = applied;
	return r;
}

int tsw_vault_change_apply(struct tsw_vault *v, const uint8_t *sealed, size_t len, uint64_t seq)
{
	struct tsw_vault_sealed c = {.bytes = sealed, .len = len, .seq = seq};
	size_t applied = 0;
	int r = tsw_vault_changes_apply(v, &c, 1, &applied);

	return r < 0 ? r : applied ? 0 : 1;
}

int tsw_vault_change_seq(struct tsw_vault *v, uint64_t *ret_seq)
{
	MDB_txn *txn;
	uint64_t seq = 0;
	int r = mdb_to_errno(mdb_txn_begin(v->env, NULL, MDB_RDONLY, &txn));

	if (r < 0)
		return r;
	r = seq_get(v, txn, &seq);
	mdb_txn_abort(txn);
	if (r == 0)
		*ret_seq = seq;
	return r;
}

/* The databases a digest covers, in its order. */
static int digest_db(struct tsw_vault *v, MDB_txn *txn, EVP_MD_CTX *md, unsigned db)
{
	static const char seq_name[] = META_CLUSTER_SEQ;
	MDB_cursor *cur;
	MDB_val k, d;
	MDB_dbi dbi;
	uint8_t hdr[OP_HEADER_BYTES];
	int rc, r;

	if (db == DB_HSMKEYS && !v->has_hsm_keys)
		return 0;
	if ((db == DB_INDEX2 || db == DB_CARDS2) && !v->has_pair[1])
		return 0;
	r = db_handle(v, txn, db, &dbi);
	if (r < 0)
		return r;
	r = mdb_to_errno(mdb_cursor_open(txn, dbi, &cur));
	if (r < 0)
		return r;
	for (rc = mdb_cursor_get(cur, &k, &d, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT)) {
		if (db == DB_META && k.mv_size == sizeof(seq_name) - 1 &&
		    memcmp(k.mv_data, seq_name, k.mv_size) == 0)
			continue; /* each replica's own bookkeeping */
		hdr[0] = 0;
		hdr[1] = (uint8_t)db;
		hdr[2] = hdr[3] = 0;
		put_u32(hdr + 4, (uint32_t)k.mv_size);
		put_u32(hdr + 8, (uint32_t)d.mv_size);
		if (EVP_DigestUpdate(md, hdr, sizeof(hdr)) != 1 ||
		    EVP_DigestUpdate(md, k.mv_data, k.mv_size) != 1 ||
		    EVP_DigestUpdate(md, d.mv_data, d.mv_size) != 1) {
			rc = ENOMEM;
			break;
		}
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : mdb_to_errno(rc);
}

int tsw_vault_digest(struct tsw_vault *v, uint8_t out[TSW_VAULT_DIGEST_BYTES], uint64_t *ret_seq)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned len = TSW_VAULT_DIGEST_BYTES;
	uint64_t seq = 0;
	MDB_txn *txn;
	int r;

	if (!md)
		return -ENOMEM;
	r = mdb_to_errno(mdb_txn_begin(v->env, NULL, MDB_RDONLY, &txn));
	if (r < 0)
		goto out_free;
	r = EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 ? 0 : -ENOMEM;
	for (unsigned db = 0; db < DB_MAX && r == 0; db++)
		r = digest_db(v, txn, md, db);
	if (r == 0)
		r = seq_get(v, txn, &seq);
	mdb_txn_abort(txn);
	if (r == 0 && EVP_DigestFinal_ex(md, out, &len) != 1)
		r = -ENOMEM;
	if (r == 0 && ret_seq)
		*ret_seq = seq;
out_free:
	EVP_MD_CTX_free(md);
	return r;
}
