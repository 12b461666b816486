/* Opening the vault, its metadata (format, key check values, token BIN
 * ranges, a generation counter), and the read side the switch uses. */
#include <errno.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "tsw/error.h"
#include "tsw/harden.h"

#define META_FORMAT "format"
#define META_GEN "gen"
#define META_BINS "bins"
#define META_KEY_CURRENT "key:current"
#define META_KCV_HMAC "kcv:hmac" /* index key 1 (the only one before index rekeys) */
#define META_KCV_HMAC_ID "kcv:hmac:%u"
#define META_INDEX_KEY "index:key"   /* u32: absent = 1 */
#define META_INDEX_NEXT "index:next" /* u32: the key of a rebuild in progress */
#define META_INDEX_DB "index:db"     /* u32: the live pair, absent = 0 */
#define META_KCV_PAN "kcv:pan:%u"
#define META_NAME_MAX 32
#define VAULT_DIR_MODE 0700
#define VAULT_FILE_MODE 0600
#define SORT_MEM_RAM_DIVISOR 4 /* default sort memory: at most RAM / this */

struct tsw_vault_reader {
	struct tsw_vault *v;
	MDB_txn *txn;
	MDB_cursor *devices;
	bool active;
	uint64_t gen_txnid; /* snapshot in which the metadata generation was last checked */
	struct pan_crypto crypto;
};

/* ---- metadata ---- */

static int meta_get(struct tsw_vault *v, MDB_txn *txn, const char *name, MDB_val *ret)
{
	MDB_val k = {.mv_size = strlen(name), .mv_data = (void *)name};

	return mdb_to_errno(mdb_get(txn, v->dbi_meta, &k, ret));
}

static int meta_put(struct tsw_vault *v, MDB_txn *txn, const char *name, const void *data,
		    size_t len)
{
	MDB_val k = {.mv_size = strlen(name), .mv_data = (void *)name};
	MDB_val d = {.mv_size = len, .mv_data = (void *)data};

	return mdb_to_errno(vault__put(v, txn, v->dbi_meta, &k, &d, 0));
}

int vault__meta_get_u32(struct tsw_vault *v, MDB_txn *txn, const char *name, uint32_t *ret)
{
	MDB_val d;
	int r = meta_get(v, txn, name, &d);

	if (r < 0)
		return r;
	if (d.mv_size != sizeof(uint32_t))
		return -TSW_E_CORRUPT;
	memcpy(ret, d.mv_data, sizeof(*ret));
	return 0;
}

static int meta_get_gen(struct tsw_vault *v, MDB_txn *txn, uint64_t *ret)
{
	MDB_val d;
	int r = meta_get(v, txn, META_GEN, &d);

	if (r < 0)
		return r;
	if (d.mv_size != sizeof(uint64_t))
		return -TSW_E_CORRUPT;
	memcpy(ret, d.mv_data, sizeof(*ret));
	return 0;
}

int vault__meta_bump_gen(struct tsw_vault *v, MDB_txn *txn)
{
	uint64_t gen = 0;
	int r = meta_get_gen(v, txn, &gen);

	if (r < 0 && r != -TSW_E_NOT_FOUND)
		return r;
	gen++;
	return meta_put(v, txn, META_GEN, &gen, sizeof(gen));
}

int vault__kcv_register(struct tsw_vault *v, MDB_txn *txn, uint32_t id,
			const uint8_t key[KEY_BYTES])
{
	char name[META_NAME_MAX];
	uint8_t kcv[KCV_BYTES];
	int r;

	snprintf(name, sizeof(name), META_KCV_PAN, id);
	vault__keyring_kcv(key, kcv);
	r = meta_put(v, txn, name, kcv, sizeof(kcv));
	if (r < 0)
		return r;
	return meta_put(v, txn, META_KEY_CURRENT, &id, sizeof(id));
}

/* The check value stored under name against key: 0 it matches, 1 none
 * stored (a key the vault never used), -TSW_E_BAD_KEY it differs. */
static int kcv_check_named(struct tsw_vault *v, MDB_txn *txn, const char *name,
			   const uint8_t key[KEY_BYTES])
{
	uint8_t kcv[KCV_BYTES];
	MDB_val d;
	int r;

	r = meta_get(v, txn, name, &d);
	if (r == -TSW_E_NOT_FOUND)
		return 1;
	if (r < 0)
		return r;
	vault__keyring_kcv(key, kcv);
	if (d.mv_size != KCV_BYTES || CRYPTO_memcmp(d.mv_data, kcv, KCV_BYTES) != 0)
		return -TSW_E_BAD_KEY;
	return 0;
}

static int kcv_forget_named(struct tsw_vault *v, MDB_txn *txn, const char *name)
{
	MDB_val k = {.mv_size = strlen(name), .mv_data = (void *)name};
	int rc = vault__del(v, txn, v->dbi_meta, &k, NULL);

	return rc == MDB_NOTFOUND ? 0 : mdb_to_errno(rc);
}

int vault__kcv_check(struct tsw_vault *v, MDB_txn *txn, uint32_t id, const uint8_t key[KEY_BYTES])
{
	char name[META_NAME_MAX];

	snprintf(name, sizeof(name), META_KCV_PAN, id);
	return kcv_check_named(v, txn, name, key);
}

int vault__kcv_forget(struct tsw_vault *v, MDB_txn *txn, uint32_t id)
{
	char name[META_NAME_MAX];

	snprintf(name, sizeof(name), META_KCV_PAN, id);
	return kcv_forget_named(v, txn, name);
}

int vault__meta_set_format(struct tsw_vault *v, MDB_txn *txn, uint32_t format)
{
	return meta_put(v, txn, META_FORMAT, &format, sizeof(format));
}

/* keyring_check_fn for a reload: against the check values in txn */
struct reload_check {
	struct tsw_vault *v;
	MDB_txn *txn;
};

static int reload_check(void *ctx, uint32_t id, const uint8_t key[KEY_BYTES])
{
	struct reload_check *rc = ctx;

	return vault__kcv_check(rc->v, rc->txn, id, key);
}

static void index_kcv_name(uint32_t id, char name[META_NAME_MAX])
{
	if (id == 1)
		snprintf(name, META_NAME_MAX, "%s", META_KCV_HMAC);
	else
		snprintf(name, META_NAME_MAX, META_KCV_HMAC_ID, id);
}

int vault__index_kcv_register(struct tsw_vault *v, MDB_txn *txn, uint32_t id,
			      const uint8_t key[KEY_BYTES])
{
	char name[META_NAME_MAX];
	uint8_t kcv[KCV_BYTES];

	index_kcv_name(id, name);
	vault__keyring_kcv(key, kcv);
	return meta_put(v, txn, name, kcv, sizeof(kcv));
}

int vault__index_kcv_check(struct tsw_vault *v, MDB_txn *txn, uint32_t id,
			   const uint8_t key[KEY_BYTES])
{
	char name[META_NAME_MAX];

	index_kcv_name(id, name);
	return kcv_check_named(v, txn, name, key);
}

int vault__index_kcv_forget(struct tsw_vault *v, MDB_txn *txn, uint32_t id)
{
	char name[META_NAME_MAX];

	index_kcv_name(id, name);
	return kcv_forget_named(v, txn, name);
}

static int meta_get_u32_or(struct tsw_vault *v, MDB_txn *txn, const char *name, uint32_t dflt,
			   uint32_t *ret)
{
	int r = vault__meta_get_u32(v, txn, name, ret);

	if (r == -TSW_E_NOT_FOUND) {
		*ret = dflt;
		return 0;
	}
	return r;
}

int vault__index_state_get(struct tsw_vault *v, MDB_txn *txn, struct index_state *ret)
{
	struct index_state st;
	int r = meta_get_u32_or(v, txn, META_INDEX_KEY, 1, &st.key_id);

	if (r == 0)
		r = meta_get_u32_or(v, txn, META_INDEX_NEXT, 0, &st.next_id);
	if (r == 0)
		r = meta_get_u32_or(v, txn, META_INDEX_DB, 0, &st.db);
	if (r == 0 && st.db > 1)
		r = -TSW_E_CORRUPT;
	if (r == 0)
		*ret = st;
	return r;
}

int vault__index_state_put(struct tsw_vault *v, MDB_txn *txn, const struct index_state *st)
{
	int r = meta_put(v, txn, META_INDEX_KEY, &st->key_id, sizeof(st->key_id));

	if (r == 0)
		r = meta_put(v, txn, META_INDEX_DB, &st->db, sizeof(st->db));
	if (r == 0 && st->next_id)
		r = meta_put(v, txn, META_INDEX_NEXT, &st->next_id, sizeof(st->next_id));
	if (r == 0 && !st->next_id) {
		MDB_val k = {.mv_size = strlen(META_INDEX_NEXT),
			     .mv_data = (void *)META_INDEX_NEXT};
		int rc = vault__del(v, txn, v->dbi_meta, &k, NULL);

		r = rc == MDB_NOTFOUND ? 0 : mdb_to_errno(rc);
	}
	return r;
}

int vault__index_guard(struct tsw_vault *v, MDB_txn *txn)
{
	struct index_state st;
	int r = vault__index_state_get(v, txn, &st);

	if (r < 0)
		return r;
	if (st.next_id || st.key_id != v->index_key_id || st.db != v->index_db)
		return -EBUSY;
	return 0;
}

int vault__index_pair_open(struct tsw_vault *v, MDB_txn *txn, uint32_t p)
{
	int rc = mdb_dbi_open(txn, p ? "index2" : "index",
			      MDB_CREATE | MDB_DUPSORT | MDB_DUPFIXED | MDB_INTEGERDUP,
			      &v->pair_index[p]);

	if (rc == 0)
		rc = mdb_dbi_open(txn, p ? "cards2" : "cards", MDB_CREATE, &v->pair_cards[p]);
	if (rc == 0)
		v->has_pair[p] = true;
	return mdb_to_errno(rc);
}

/* Every key the vault has a check value for must match; the vault's
 * current key and index key must be in the file. Sets the key ring's
 * current index key and the live index pair. */
static int keys_verify(struct tsw_vault *v, MDB_txn *txn)
{
	struct index_state ist;
	uint8_t kcv[KCV_BYTES];
	uint32_t current = 0;
	int slot = -1;
	MDB_val d;
	int r;

	r = vault__index_state_get(v, txn, &ist);
	if (r < 0)
		return r;
	for (uint32_t i = 0; i < v->keys->n_hmac; i++) {
		r = vault__index_kcv_check(v, txn, v->keys->hmac[i].id, v->keys->hmac[i].key);
		if (r < 0)
			return r;
		if (v->keys->hmac[i].id == ist.key_id) {
			if (r == 1)
				return -TSW_E_CORRUPT; /* the vault's own index key has none */
			slot = (int)i;
		}
	}
	if (slot < 0)
		return -TSW_E_BAD_KEY;
	if (!v->has_pair[ist.db])
		return -TSW_E_CORRUPT;
	v->keys->hmac_current = (uint32_t)slot;
	v->index_key_id = ist.key_id;
	v->index_db = ist.db;
	v->dbi_index = v->pair_index[ist.db];
	v->dbi_cards = v->pair_cards[ist.db];
	for (uint32_t i = 0; i < v->keys->n_pan; i++) {
		char name[META_NAME_MAX];

		snprintf(name, sizeof(name), META_KCV_PAN, v->keys->pan[i].id);
		r = meta_get(v, txn, name, &d);
		if (r == -TSW_E_NOT_FOUND)
			continue; /* a key the vault never used */
		if (r < 0)
			return r;
		vault__keyring_kcv(v->keys->pan[i].key, kcv);
		if (d.mv_size != KCV_BYTES || CRYPTO_memcmp(d.mv_data, kcv, KCV_BYTES) != 0)
			return -TSW_E_BAD_KEY;
	}
	r = vault__meta_get_u32(v, txn, META_KEY_CURRENT, &current);
	if (r < 0)
		return r == -TSW_E_NOT_FOUND ? -TSW_E_CORRUPT : r;
	if (vault__keyring_slot(v->keys, current) < 0)
		return -TSW_E_BAD_KEY;
	return 0;
}

static int meta_init(struct tsw_vault *v, MDB_txn *txn)
{
	uint32_t format = VAULT_FORMAT;
	uint32_t slot = v->keys->current;
	int r;

	r = meta_put(v, txn, META_FORMAT, &format, sizeof(format));
	if (r < 0)
		return r;
	r = vault__index_kcv_register(v, txn, v->keys->hmac[0].id, v->keys->hmac[0].key);
	if (r < 0)
		return r;
	r = vault__kcv_register(v, txn, v->keys->pan[slot].id, v->keys->pan[slot].key);
	if (r < 0)
		return r;
	r = meta_put(v, txn, META_BINS, "", 0);
	if (r < 0)
		return r;
	return vault__meta_bump_gen(v, txn);
}

static int bins_load(struct tsw_vault *v, MDB_txn *txn, struct bin_set **ret)
{
	struct bin_set *b;
	MDB_val d;
	int r = meta_get(v, txn, META_BINS, &d);

	if (r < 0)
		return r == -TSW_E_NOT_FOUND ? -TSW_E_CORRUPT : r;
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	for (size_t off = 0; off < d.mv_size;) {
		const char *p = (const char *)d.mv_data + off;
		size_t n = strnlen(p, d.mv_size - off);

		if (n < TSW_VAULT_BIN_MIN_DIGITS || n > TSW_VAULT_BIN_MAX_DIGITS ||
		    off + n >= d.mv_size || b->n >= TSW_VAULT_BINS_MAX) {
			free(b);
			return -TSW_E_CORRUPT;
		}
		memcpy(b->prefix[b->n], p, n);
		b->len[b->n++] = (uint8_t)n;
		off += n + 1;
	}
	*ret = b;
	return 0;
}

/* Re-reads bins and keys when the metadata generation moved. */
static int vault_refresh(struct tsw_vault *v, MDB_txn *txn, uint64_t gen)
{
	struct bin_set *b = NULL;
	int r = 0;

	pthread_mutex_lock(&v->refresh_lock);
	if (__atomic_load_n(&v->meta_gen, __ATOMIC_ACQUIRE) >= gen)
		goto out_unlock;
	r = bins_load(v, txn, &b);
	if (r < 0)
		goto out_unlock;
	b->older = __atomic_load_n(&v->bins, __ATOMIC_ACQUIRE);
	__atomic_store_n(&v->bins, b, __ATOMIC_RELEASE);
	{
		struct reload_check rc = {.v = v, .txn = txn};
		uint32_t current = 0;

		/* a key file that fails the check values is refused whole: the
		 * keys in use stay, and records under the new key read as
		 * failing authentication until it is fixed (the next metadata
		 * change or a restart tries again); the caller learns it from
		 * tsw_vault_take_key_error */
		if (vault__meta_get_u32(v, txn, META_KEY_CURRENT, &current) == 0 &&
		    vault__keyring_slot(v->keys, current) < 0) {
			int kr = vault__keyring_reload(v->keys, v->key_file, reload_check, &rc);

			if (kr == 0 && vault__keyring_slot(v->keys, current) < 0)
				kr = -TSW_E_BAD_KEY; /* the file lacks the current key */
			if (kr < 0)
				__atomic_store_n(&v->key_error, kr, __ATOMIC_RELEASE);
		}
	}
	__atomic_store_n(&v->meta_gen, gen, __ATOMIC_RELEASE);
out_unlock:
	pthread_mutex_unlock(&v->refresh_lock);
	return r;
}

static int open_dbis(struct tsw_vault *v, MDB_txn *txn, bool create)
{
	unsigned c = create ? MDB_CREATE : 0;
	int rc;

	rc = mdb_dbi_open(txn, "meta", c, &v->dbi_meta);
	if (rc == 0)
		rc = mdb_dbi_open(txn, "tokens", c | MDB_INTEGERKEY, &v->dbi_tokens);
	if (rc == 0)
		rc = mdb_dbi_open(txn, "index", c | MDB_DUPSORT | MDB_DUPFIXED | MDB_INTEGERDUP,
				  &v->pair_index[0]);
	if (rc == 0)
		rc = mdb_dbi_open(txn, "cards", c, &v->pair_cards[0]);
	if (rc == 0)
		rc =
		    mdb_dbi_open(txn, "devices", c | MDB_INTEGERKEY | MDB_DUPSORT, &v->dbi_devices);
	if (rc == MDB_NOTFOUND || rc == MDB_INCOMPATIBLE)
		return -TSW_E_CORRUPT;
	if (rc)
		return mdb_to_errno(rc);
	v->has_pair[0] = true;
	/* the key store: a writer makes it, a reader finds it or not */
	rc = mdb_dbi_open(txn, VAULT_DB_HSM_KEYS, (v->flags & TSW_VAULT_RDONLY) ? 0 : MDB_CREATE,
			  &v->dbi_hsm_keys);
	if (rc == 0)
		v->has_hsm_keys = true;
	else if (rc != MDB_NOTFOUND)
		return rc == MDB_INCOMPATIBLE ? -TSW_E_CORRUPT : mdb_to_errno(rc);
	/* the second pair exists once an index rekey made it */
	rc = mdb_dbi_open(txn, "index2", MDB_DUPSORT | MDB_DUPFIXED | MDB_INTEGERDUP,
			  &v->pair_index[1]);
	if (rc == 0)
		rc = mdb_dbi_open(txn, "cards2", 0, &v->pair_cards[1]);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc)
		return rc == MDB_INCOMPATIBLE ? -TSW_E_CORRUPT : mdb_to_errno(rc);
	v->has_pair[1] = true;
	return 0;
}

/* Reads the vault's format and settles what this open may do with it: a
 * new vault gets the current format, a format-2 vault opened for writing
 * is marked current, anything newer or unknown is refused. */
static int format_settle(struct tsw_vault *v, MDB_txn *txn, bool create, bool rdonly,
			 uint32_t *ret_format)
{
	uint32_t format = 0;
	int r;

	r = vault__meta_get_u32(v, txn, META_FORMAT, &format);
	if (r == -TSW_E_NOT_FOUND && create) {
		r = meta_init(v, txn);
		if (r < 0)
			return r;
		format = VAULT_FORMAT;
	} else if (r == -TSW_E_NOT_FOUND) {
		r = -TSW_E_CORRUPT;
		return r;
	} else if (r < 0) {
		return r;
	}
	if (format > VAULT_FORMAT) {
		r = -TSW_E_VERSION;
		return r;
	}
	if (format == VAULT_FORMAT_1 && !(v->flags & TSW_VAULT_FORMAT1_OK)) {
		r = -TSW_E_NEEDS_UPGRADE;
		return r;
	}
	if (format != VAULT_FORMAT && format != VAULT_FORMAT_2 && format != VAULT_FORMAT_1) {
		r = -TSW_E_CORRUPT;
		return r;
	}
	if (format == VAULT_FORMAT_2 && !rdonly) {
		/* a writer may add version 3 records and keys: a build that
		 * knows only format 2 refuses the vault from now on
		 * (-TSW_E_VERSION) instead of reading such records as corrupt.
		 * Version 2 records stay as they are (tokvault upgrade rewrites
		 * them); this build reads both. */
		r = vault__meta_set_format(v, txn, VAULT_FORMAT);
		if (r < 0)
			return r;
		format = VAULT_FORMAT;
	}
	*ret_format = format;
	return 0;
}

static int env_setup(struct tsw_vault *v, const char *dir, bool create)
{
	bool rdonly = v->flags & TSW_VAULT_RDONLY;
	uint32_t format = 0;
	uint64_t gen = 0;
	MDB_txn *txn = NULL;
	int rc, r;

	rc = mdb_env_create(&v->env);
	if (rc)
		return mdb_to_errno(rc);
	mdb_env_set_maxdbs(v->env, VAULT_MAX_DBS);
	mdb_env_set_mapsize(v->env, TSW_VAULT_MAP_SIZE_BYTES);
	rc = mdb_env_open(v->env, dir, MDB_NOTLS | MDB_NORDAHEAD | (rdonly ? MDB_RDONLY : 0),
			  VAULT_FILE_MODE);
	if (rc)
		return rc == ENOENT ? -ENOENT : mdb_to_errno(rc);
	rc = mdb_txn_begin(v->env, NULL, rdonly ? MDB_RDONLY : 0, &txn);
	if (rc)
		return mdb_to_errno(rc);
	if (create) {
		/* only an empty environment becomes a vault: never write into
		 * another program's LMDB files */
		MDB_dbi main_dbi;
		MDB_stat st;

		rc = mdb_dbi_open(txn, NULL, 0, &main_dbi);
		if (rc == 0)
			rc = mdb_stat(txn, main_dbi, &st);
		if (rc) {
			r = mdb_to_errno(rc);
			goto out_abort;
		}
		create = st.ms_entries == 0;
	}
	r = open_dbis(v, txn, create);
	if (r < 0)
		goto out_abort;
	r = format_settle(v, txn, create, rdonly, &format);
	if (r < 0)
		goto out_abort;
	v->format = format;
	r = keys_verify(v, txn);
	if (r < 0)
		goto out_abort;
	r = meta_get_gen(v, txn, &gen);
	if (r < 0)
		goto out_abort;
	r = bins_load(v, txn, &v->bins);
	if (r < 0)
		goto out_abort;
	v->meta_gen = gen;
	return mdb_to_errno(mdb_txn_commit(txn));
out_abort:
	mdb_txn_abort(txn);
	return r;
}

/* TSW_VAULT_SORT_MEM_DEFAULT_BYTES, or a quarter of the machine's memory
 * when that is less: a big import on a small host sorts in passes
 * instead of running out of memory. */
static size_t default_sort_mem(void)
{
	long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
	size_t quarter;

	if (pages <= 0 || page <= 0)
		return TSW_VAULT_SORT_MEM_DEFAULT_BYTES;
	quarter = (size_t)pages / SORT_MEM_RAM_DIVISOR * (size_t)page;
	if (quarter < TSW_VAULT_SORT_MEM_MIN_BYTES)
		return TSW_VAULT_SORT_MEM_MIN_BYTES;
	return quarter < TSW_VAULT_SORT_MEM_DEFAULT_BYTES ? quarter
							  : TSW_VAULT_SORT_MEM_DEFAULT_BYTES;
}

int tsw_vault_check_files(const char *dir, const char *key_file, char *why, size_t cap)
{
	int r;

	if (why && cap)
		why[0] = '\0';
	r = tsw_harden_check_env_dir(dir, why, cap);
	if (r == -ENOENT)
		r = 0;
	if (r == 0)
		r = tsw_harden_check_path(key_file, TSW_HARDEN_SECRET, why, cap);
	if (r == -ENOENT) {
		r = 0;
		if (why && cap)
			why[0] = '\0';
	}
	return r;
}

int tsw_vault_open(const char *dir, const char *key_file, unsigned flags,
		   struct tsw_vault **ret_vault)
{
	bool create = (flags & TSW_VAULT_CREATE) && !(flags & TSW_VAULT_RDONLY);
	char data_path[PATH_MAX];
	struct stat st;
	bool exists;
	struct tsw_vault *v;
	int r;

	if (!dir || !key_file || !ret_vault)
		return -EINVAL;
	if ((size_t)snprintf(data_path, sizeof(data_path), "%s/data.mdb", dir) >= sizeof(data_path))
		return -ENAMETOOLONG;
	if (create && mkdir(dir, VAULT_DIR_MODE) < 0 && errno != EEXIST)
		return -errno;
	/* nobody else may swap or edit the records the switch trusts */
	r = tsw_harden_check_env_dir(dir, NULL, 0);
	if (r < 0)
		return r;
	exists = stat(data_path, &st) == 0;
	if (!exists && !create)
		return -ENOENT;
	if (exists && st.st_size == 0)
		return -TSW_E_CORRUPT;

	v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->flags = flags;
	v->sort_mem = default_sort_mem();
	v->chunk_rows = TSW_VAULT_CHUNK_ROWS_DEFAULT;
	pthread_mutex_init(&v->refresh_lock, NULL);
	v->key_file = strdup(key_file);
	if (!v->key_file) {
		r = -ENOMEM;
		goto out_close;
	}
	/* An existing vault never gets a fresh key file: it could not match. */
	r = vault__keyring_load(key_file, create && !exists, &v->keys, &v->keys_locked);
	if (r < 0)
		goto out_close;
	r = env_setup(v, dir, create);
	if (r < 0)
		goto out_close;
	*ret_vault = v;
	return 0;
out_close:
	tsw_vault_close(v);
	return r;
}

void tsw_vault_close(struct tsw_vault *v)
{
	struct bin_set *b;

	if (!v)
		return;
	if (v->env)
		mdb_env_close(v->env);
	vault__keyring_free(v->keys);
	vault__capture_free(v);
	b = v->bins;
	while (b) {
		struct bin_set *older = b->older;

		free(b);
		b = older;
	}
	free(v->key_file);
	pthread_mutex_destroy(&v->refresh_lock);
	free(v);
}

int tsw_vault_set_sort_mem(struct tsw_vault *v, size_t bytes)
{
	if (bytes < TSW_VAULT_SORT_MEM_MIN_BYTES || bytes > TSW_VAULT_SORT_MEM_MAX_BYTES)
		return -EINVAL;
	v->sort_mem = bytes;
	return 0;
}

int tsw_vault_set_chunk_rows(struct tsw_vault *v, unsigned rows)
{
	if (rows < 1 || rows > TSW_VAULT_CHUNK_ROWS_MAX)
		return -EINVAL;
	v->chunk_rows = rows;
	return 0;
}

int tsw_vault_set_import_rate(struct tsw_vault *v, uint64_t rows_per_s)
{
	if (rows_per_s > TSW_VAULT_IMPORT_RATE_MAX)
		return -EINVAL;
	v->import_rate = rows_per_s;
	return 0;
}

bool tsw_vault_in_token_range(const struct tsw_vault *v, const char *token, size_t len)
{
	const struct bin_set *b = __atomic_load_n(&v->bins, __ATOMIC_ACQUIRE);

	if (!b)
		return false;
	for (unsigned i = 0; i < b->n; i++)
		if (b->len[i] <= len && memcmp(b->prefix[i], token, b->len[i]) == 0)
			return true;
	return false;
}

int tsw_vault_add_token_bin(struct tsw_vault *v, const char *prefix, size_t len)
{
	char buf[TSW_VAULT_BINS_MAX * (TSW_VAULT_BIN_MAX_DIGITS + 1)];
	struct bin_set *b = NULL;
	size_t off = 0;
	MDB_txn *txn = NULL;
	int r;

	if (v->flags & TSW_VAULT_RDONLY)
		return -EROFS;
	if (len < TSW_VAULT_BIN_MIN_DIGITS || len > TSW_VAULT_BIN_MAX_DIGITS)
		return -TSW_E_BAD_INPUT;
	for (size_t i = 0; i < len; i++)
		if (prefix[i] < '0' || prefix[i] > '9')
			return -TSW_E_BAD_INPUT;
	r = vault__txn_begin(v, &txn);
	if (r < 0)
		return r;
	r = bins_load(v, txn, &b);
	if (r < 0)
		goto out_abort;
	for (unsigned i = 0; i < b->n; i++) {
		if (b->len[i] == len && memcmp(b->prefix[i], prefix, len) == 0)
			goto out_abort; /* r == 0: already there */
		memcpy(buf + off, b->prefix[i], b->len[i]);
		buf[off + b->len[i]] = '\0';
		off += b->len[i] + 1u;
	}
	if (b->n >= TSW_VAULT_BINS_MAX) {
		r = -TSW_E_FULL;
		goto out_abort;
	}
	memcpy(buf + off, prefix, len);
	buf[off + len] = '\0';
	off += len + 1;
	r = meta_put(v, txn, META_BINS, buf, off);
	if (r == 0)
		r = vault__meta_bump_gen(v, txn);
	if (r < 0)
		goto out_abort;
	free(b);
	b = NULL;
	r = vault__txn_commit(v, txn);
	txn = NULL;
	if (r < 0)
		return r;
	/* refresh our own cache */
	r = mdb_to_errno(mdb_txn_begin(v->env, NULL, MDB_RDONLY, &txn));
	if (r < 0)
		return r;
	{
		uint64_t gen = 0;

		r = meta_get_gen(v, txn, &gen);
		if (r == 0)
			r = vault_refresh(v, txn, gen);
	}
out_abort:
	free(b);
	if (txn)
		mdb_txn_abort(txn);
	return r;
}

/* ---- readers ---- */

int tsw_vault_reader_open(struct tsw_vault *v, struct tsw_vault_reader **ret_reader)
{
	struct tsw_vault_reader *rd = calloc(1, sizeof(*rd));
	int r;

	if (!rd)
		return -ENOMEM;
	rd->v = v;
	vault__crypto_init(&rd->crypto, v->keys);
	r = mdb_to_errno(mdb_txn_begin(v->env, NULL, MDB_RDONLY, &rd->txn));
	if (r < 0)
		goto out_free;
	r = mdb_to_errno(mdb_cursor_open(rd->txn, v->dbi_devices, &rd->devices));
	if (r < 0)
		goto out_abort;
	mdb_txn_reset(rd->txn);
	*ret_reader = rd;
	return 0;
out_abort:
	mdb_txn_abort(rd->txn);
out_free:
	vault__crypto_free(&rd->crypto);
	free(rd);
	return r;
}

void tsw_vault_reader_close(struct tsw_vault_reader *r)
{
	if (!r)
		return;
	mdb_cursor_close(r->devices);
	mdb_txn_abort(r->txn);
	vault__crypto_free(&r->crypto);
	free(r);
}

int tsw_vault_reader_renew(struct tsw_vault_reader *rd)
{
	struct tsw_vault *v = rd->v;
	uint64_t gen = 0, txnid;
	int r;

	if (rd->active)
		mdb_txn_reset(rd->txn);
	rd->active = false;
	r = mdb_to_errno(mdb_txn_renew(rd->txn));
	if (r < 0)
		return r;
	rd->active = true;
	txnid = mdb_txn_id(rd->txn);
	r = mdb_to_errno(mdb_cursor_renew(rd->txn, rd->devices));
	/* the generation only moves in a write, and every write commits a
	 * new snapshot: the same snapshot needs no second look */
	if (r == 0 && txnid != rd->gen_txnid) {
		r = meta_get_gen(v, rd->txn, &gen);
		if (r == 0 && gen > __atomic_load_n(&v->meta_gen, __ATOMIC_ACQUIRE))
			r = vault_refresh(v, rd->txn, gen);
		if (r == 0)
			rd->gen_txnid = txnid;
	}
	if (r < 0)
		tsw_vault_reader_reset(rd);
	return r;
}

void tsw_vault_reader_reset(struct tsw_vault_reader *r)
{
	if (r->active)
		mdb_txn_reset(r->txn);
	r->active = false;
}

int tsw_vault_take_key_error(struct tsw_vault *v)
{
	if (__atomic_load_n(&v->key_error, __ATOMIC_ACQUIRE) == 0)
		return 0;
	return __atomic_exchange_n(&v->key_error, 0, __ATOMIC_ACQ_REL);
}

void vault__set_format(struct tsw_vault *v, uint32_t format)
{
	__atomic_store_n(&v->format, format, __ATOMIC_RELEASE);
}

bool vault__format1(const struct tsw_vault *v)
{
	return __atomic_load_n(&v->format, __ATOMIC_ACQUIRE) == VAULT_FORMAT_1;
}

/* The stored record of token (*ret_key its LMDB key, *ret_val its bytes
 * in the map), prefetched; -TSW_E_NOT_FOUND also for a record of the same
 * value under another digit count. */
static int find_record(struct tsw_vault_reader *r, const char *token, size_t len,
		       uint64_t *ret_key, MDB_val *ret_val)
{
	MDB_val k = {.mv_size = sizeof(*ret_key), .mv_data = ret_key};
	int rc;

	if (!r->active)
		return -EINVAL;
	if (vault__token_key(token, len, ret_key) < 0)
		return -TSW_E_NOT_FOUND;
	rc = mdb_get(r->txn, r->v->dbi_tokens, &k, ret_val);
	if (rc)
		return mdb_to_errno(rc);
	/* start every cache line of the record at once, not one by one */
	for (size_t off = 0; off < ret_val->mv_size; off += 64)
		__builtin_prefetch((const char *)ret_val->mv_data + off);
	if (ret_val->mv_size >= sizeof(struct rec) &&
	    ((const struct rec *)ret_val->mv_data)->token_len != len)
		return -TSW_E_NOT_FOUND; /* same value, other digit count */
	return 0;
}

int tsw_vault_lookup(struct tsw_vault_reader *r, const char *token, size_t len,
		     struct tsw_token *ret_token)
{
	uint64_t key;
	MDB_val d;
	int n = find_record(r, token, len, &key, &d);

	if (n < 0)
		return n;
	/* nothing of a record is used before all of it is authenticated */
	n = vault__rec_open(&r->crypto, d.mv_data, d.mv_size, key, vault__format1(r->v), NULL, 0);
	if (n < 0)
		return n == -TSW_E_NOT_FOUND ? -TSW_E_INTEGRITY : n;
	return vault__rec_decode(d.mv_data, d.mv_size, key, ret_token);
}

int tsw_vault_peek(struct tsw_vault_reader *r, const char *token, size_t len,
		   struct tsw_token *ret_token)
{
	uint64_t key;
	MDB_val d;
	int n = find_record(r, token, len, &key, &d);

	return n < 0 ? n : vault__rec_decode(d.mv_data, d.mv_size, key, ret_token);
}

int tsw_vault_authenticated(struct tsw_vault_reader *r, const char *token, size_t len)
{
	uint64_t key;
	MDB_val d;
	int n = find_record(r, token, len, &key, &d);

	if (n < 0)
		return n;
	n = vault__rec_open(&r->crypto, d.mv_data, d.mv_size, key, vault__format1(r->v), NULL, 0);
	if (n < 0)
		return n;
	return ((const struct rec *)d.mv_data)->version != REC_VERSION_1;
}

int tsw_vault_decrypt_pan(struct tsw_vault_reader *r, const struct tsw_token *t, char *out,
			  size_t cap)
{
	uint8_t rec[REC_MAX_BYTES];
	uint64_t key;
	size_t size;
	int n;

	if (vault__token_key(t->token, t->token_len, &key) < 0 ||
	    t->n_merchants > TSW_TOKEN_MERCHANTS_MAX || t->sealed_len > TSW_SEALED_PAN_MAX)
		return -TSW_E_INTEGRITY;
	/* the record as stored: decode and encode are inverse for every
	 * record the vault wrote, so its seal opens only for the fields the
	 * lookup authenticated */
	size = vault__rec_encode_as(t, t->rec_version ? t->rec_version : REC_VERSION, rec);
	n = vault__rec_open(&r->crypto, rec, size, key, vault__format1(r->v), out, cap);
	return n;
}

int tsw_vault_device_bound(struct tsw_vault_reader *r, const char *token, size_t token_len,
			   const char *device_ref, size_t ref_len)
{
	uint64_t key;
	MDB_val k = {.mv_size = sizeof(key), .mv_data = &key};
	MDB_val d = {.mv_size = ref_len, .mv_data = (void *)device_ref};
	int rc;

	if (!r->active)
		return -EINVAL;
	if (vault__token_key(token, token_len, &key) < 0 || ref_len == 0 ||
	    ref_len > TSW_DEVICE_REF_MAX)
		return 0;
	rc = mdb_cursor_get(r->devices, &k, &d, MDB_GET_BOTH);
	if (rc == MDB_NOTFOUND)
		return 0;
	return rc ? mdb_to_errno(rc) : 1;
}
