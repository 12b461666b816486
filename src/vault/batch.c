/* Bulk writes. The caller's thread validates and encrypts rows into a run
 * (fixed slots plus a record arena); a writer thread sorts the run by
 * token and commits it chunk by chunk (MDB_APPEND where the tokens come
 * after the vault's last one), while the caller fills the other run.
 * Rejections are reported on the caller's thread. */
#include <endian.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <stdio.h>
#include <time.h>

#include "internal.h"
#include "tsw/error.h"

#define NONCE_POOL_ROWS 4096

struct slot {
	uint64_t key;
	unsigned long line;
	uint8_t card_key[CARD_KEY_BYTES];
	uint32_t off; /* record, then device ref, in the arena */
	uint16_t rec_len;
	uint8_t dev_len;
	uint8_t indexed; /* needs its index entry */
};

struct reject {
	unsigned long line;
	int err;
	const char *reason;
};

struct sort_item {
	uint64_t key;
	uint64_t idx;
};

struct run {
	struct slot *slots;
	struct slot **order;
	struct sort_item *items, *scratch;
	unsigned n;
	uint8_t *arena;
	size_t used;
	struct reject *rejects;
	unsigned n_rejects;
	unsigned long imported;
	unsigned long chunks;
};

struct deferred {
	struct tsw_vault_row row;
	unsigned long line;
};

struct tsw_vault_batch {
	struct tsw_vault *v;
	unsigned chunk_rows;
	unsigned run_rows;  /* capacity of a run */
	unsigned run_limit; /* rows in the current run: doubles up to run_rows */
	size_t arena_bytes;
	tsw_vault_reject_fn on_reject;
	void *ctx;
	struct pan_crypto crypto;
	struct run runs[2];
	unsigned filling;
	struct deferred *deferred;
	size_t n_deferred, cap_deferred;
	uint8_t nonces[NONCE_POOL_ROWS * NONCE_BYTES];
	unsigned nonce_next;
	struct tsw_vault_import_stats stats;
	/* writer thread */
	pthread_t writer;
	bool writer_started;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct run *pending; /* handed to the writer, NULL when idle */
	bool stop;
	int err; /* first writer error */
};

static void reject(struct tsw_vault_batch *b, unsigned long line, int err, const char *reason)
{
	b->stats.rejected++;
	if (b->on_reject)
		b->on_reject(b->ctx, line, err, reason);
}

#define RADIX_BITS 11
#define RADIX_BUCKETS (1u << RADIX_BITS)

/* Stable LSD radix sort of a[0..n) by key (tmp: n scratch items). Digits
 * that are the same in every item (the token BIN) cost one counting pass
 * and no move. Returns the array that holds the result (a or tmp). */
static struct sort_item *radix_sort(struct sort_item *a, struct sort_item *tmp, size_t n)
{
	static _Thread_local size_t count[RADIX_BUCKETS];

	for (unsigned shift = 0; shift < 64; shift += RADIX_BITS) {
		size_t sum = 0;
		bool one_bucket = false;

		memset(count, 0, sizeof(count));
		for (size_t i = 0; i < n; i++)
			count[(a[i].key >> shift) & (RADIX_BUCKETS - 1)]++;
		for (unsigned b = 0; b < RADIX_BUCKETS; b++) {
			size_t c = count[b];

			if (c == n)
				one_bucket = true;
			count[b] = sum;
			sum += c;
		}
		if (one_bucket)
			continue;
		for (size_t i = 0; i < n; i++)
			tmp[count[(a[i].key >> shift) & (RADIX_BUCKETS - 1)]++] = a[i];
		{
			struct sort_item *t = a;

			a = tmp;
			tmp = t;
		}
	}
	return a;
}

/* run->order = the run's slots sorted by token; equal tokens stay in line
 * order (the stable sort keeps the input order). */
static void sort_by_token(struct run *run)
{
	struct sort_item *sorted;

	for (unsigned i = 0; i < run->n; i++)
		run->items[i] = (struct sort_item){run->slots[i].key, i};
	sorted = radix_sort(run->items, run->scratch, run->n);
	for (unsigned i = 0; i < run->n; i++)
		run->order[i] = &run->slots[sorted[i].idx];
}

/* order[0..n) sorted by the first 8 bytes of the card key: enough for
 * consecutive index inserts to share their B-tree path. */
static void sort_by_card(struct run *run, struct slot **order, unsigned n)
{
	struct sort_item *sorted;

	for (unsigned i = 0; i < n; i++) {
		uint64_t k;

		memcpy(&k, order[i]->card_key, sizeof(k));
		run->items[i] = (struct sort_item){be64toh(k), (uint64_t)(order[i] - run->slots)};
	}
	sorted = radix_sort(run->items, run->scratch, n);
	for (unsigned i = 0; i < n; i++)
		order[i] = &run->slots[sorted[i].idx];
}

/* Writes order[0..n) (sorted by token; prev: the token before them) in
 * one transaction: records (appended when they come after the vault's
 * last token) and device bindings. Marks each slot that needs an index
 * entry: written, or already in the vault for the same card (an import
 * re-run after a crash heals the index that way). A row whose token
 * exists is rejected; any other error aborts the chunk. */
static int write_tokens(struct tsw_vault *v, struct run *run, struct slot **order, unsigned n,
			const struct slot *prev)
{
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	MDB_val k, d;
	uint64_t last = 0;
	bool have_last = false, no_cards = false;
	unsigned n_rejects = run->n_rejects;
	unsigned long imported = 0;
	int r, rc;

	r = mdb_to_errno(mdb_txn_begin(v->env, NULL, 0, &txn));
	if (r < 0)
		return r;
	r = mdb_to_errno(mdb_cursor_open(txn, v->dbi_tokens, &cur));
	if (r < 0)
		goto out_abort;
	rc = mdb_cursor_get(cur, &k, &d, MDB_LAST);
	if (rc == 0) {
		memcpy(&last, k.mv_data, sizeof(last));
		have_last = true;
	} else if (rc != MDB_NOTFOUND) {
		r = mdb_to_errno(rc);
		goto out_abort;
	}
	{
		MDB_stat st;

		no_cards = mdb_stat(txn, v->dbi_cards, &st) == 0 && st.ms_entries == 0;
	}
	for (unsigned i = 0; i < n; i++) {
		struct slot *p = order[i];
		uint8_t *rec = run->arena + p->off;
		unsigned append = (!have_last || p->key > last) ? MDB_APPEND : 0;
		uint8_t cflags = 0;

		p->indexed = 0;
		k.mv_size = sizeof(p->key);
		k.mv_data = &p->key;
		d.mv_size = p->rec_len;
		d.mv_data = rec;
		if (!no_cards) {
			r = card_flags(v, txn, p->card_key, &cflags);
			if (r < 0)
				goto out_abort;
			if (cflags & CARD_F_SUSPENDED)
				((struct rec *)rec)->flags |= REC_F_CARD_SUSPENDED;
		}
		if (prev && prev->key == p->key) {
			rc = MDB_KEYEXIST; /* twice in this import */
		} else {
			rc = mdb_cursor_put(cur, &k, &d, MDB_NOOVERWRITE | append);
			/* on MDB_KEYEXIST d is the record in the vault */
			if (rc == MDB_KEYEXIST && d.mv_size >= sizeof(struct rec) &&
			    ((const struct rec *)d.mv_data)->card_id ==
				((const struct rec *)rec)->card_id)
				p->indexed = 1;
		}
		prev = p;
		if (rc == MDB_KEYEXIST) {
			run->rejects[run->n_rejects++] =
			    (struct reject){p->line, -TSW_E_EXISTS, "token already in the vault"};
			continue;
		}
		if (rc) {
			r = mdb_to_errno(rc);
			goto out_abort;
		}
		if (append) {
			last = p->key;
			have_last = true;
		}
		p->indexed = 1;
		imported++;
		if (!p->dev_len)
			continue;
		d.mv_size = p->dev_len;
		d.mv_data = rec + p->rec_len;
		r = mdb_to_errno(mdb_put(txn, v->dbi_devices, &k, &d, 0));
		if (r < 0)
			goto out_abort;
	}
	mdb_cursor_close(cur);
	cur = NULL;
	r = mdb_to_errno(mdb_txn_commit(txn));
	if (r < 0) {
		run->n_rejects = n_rejects;
		return r;
	}
	run->imported += imported;
	run->chunks++;
	return 0;
out_abort:
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	run->n_rejects = n_rejects;
	return r;
}

/* Writes the index entries of order[0..n) (sorted by card key) in one
 * transaction. */
static int write_index(struct tsw_vault *v, struct slot **order, unsigned n)
{
	MDB_txn *txn = NULL;
	int r, rc;

	r = mdb_to_errno(mdb_txn_begin(v->env, NULL, 0, &txn));
	if (r < 0)
		return r;
	for (unsigned i = 0; i < n; i++) {
		MDB_val k = {.mv_size = CARD_KEY_BYTES, .mv_data = order[i]->card_key};
		MDB_val d = {.mv_size = sizeof(order[i]->key), .mv_data = &order[i]->key};

		rc = mdb_put(txn, v->dbi_index, &k, &d, MDB_NODUPDATA);
		if (rc && rc != MDB_KEYEXIST) {
			mdb_txn_abort(txn);
			return mdb_to_errno(rc);
		}
	}
	return mdb_to_errno(mdb_txn_commit(txn));
}

/* Sorts a run by token and writes its records chunk_rows per
 * transaction; then sorts the written rows by card key and writes their
 * index entries the same way. Sorting whole runs, not chunks, makes each
 * transaction touch one slice of each tree: a random-order import does
 * not rewrite the trees once per chunk. */
static int write_run(struct tsw_vault *v, struct run *run, unsigned chunk_rows)
{
	unsigned n_index = 0;
	int r;

	run->n_rejects = 0;
	run->imported = 0;
	run->chunks = 0;
	struct timespec t0, t1, t2, t3, t4;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (unsigned i = 0; i < run->n; i++)
		run->order[i] = &run->slots[i];
	sort_by_token(run);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	for (unsigned i = 0; i < run->n; i += chunk_rows) {
		unsigned n = run->n - i < chunk_rows ? run->n - i : chunk_rows;

		r = write_tokens(v, run, run->order + i, n, i ? run->order[i - 1] : NULL);
		if (r < 0)
			return r;
	}
	for (unsigned i = 0; i < run->n; i++)
		if (run->order[i]->indexed)
			run->order[n_index++] = run->order[i];
	clock_gettime(CLOCK_MONOTONIC, &t2);
	sort_by_card(run, run->order, n_index);
	clock_gettime(CLOCK_MONOTONIC, &t3);
	for (unsigned i = 0; i < n_index; i += chunk_rows) {
		unsigned n = n_index - i < chunk_rows ? n_index - i : chunk_rows;

		r = write_index(v, run->order + i, n);
		if (r < 0)
			return r;
	}
	clock_gettime(CLOCK_MONOTONIC, &t4);
#define MS(a,b) ((b.tv_sec-a.tv_sec)*1e3+(b.tv_nsec-a.tv_nsec)/1e6)
	fprintf(stderr, "TRACE run n=%u sort=%.0f tokens=%.0f isort=%.0f index=%.0f ms\n", run->n, MS(t0,t1), MS(t1,t2), MS(t2,t3), MS(t3,t4));
	return 0;
}

static void *writer_main(void *arg)
{
	struct tsw_vault_batch *b = arg;

	pthread_mutex_lock(&b->lock);
	for (;;) {
		struct run *run;
		int r;

		while (!b->pending && !b->stop)
			pthread_cond_wait(&b->cond, &b->lock);
		if (!b->pending)
			break;
		run = b->pending;
		pthread_mutex_unlock(&b->lock);
		r = b->err ? b->err : write_run(b->v, run, b->chunk_rows);
		pthread_mutex_lock(&b->lock);
		if (r < 0 && !b->err)
			b->err = r;
		b->pending = NULL;
		pthread_cond_broadcast(&b->cond);
	}
	pthread_mutex_unlock(&b->lock);
	return NULL;
}

/* Waits until the writer is idle, then reports what it did with done. */
static int writer_wait(struct tsw_vault_batch *b, struct run *done)
{
	int err;

	pthread_mutex_lock(&b->lock);
	while (b->pending)
		pthread_cond_wait(&b->cond, &b->lock);
	err = b->err;
	pthread_mutex_unlock(&b->lock);
	if (done) {
		for (unsigned i = 0; i < done->n_rejects; i++)
			reject(b, done->rejects[i].line, done->rejects[i].err,
			       done->rejects[i].reason);
		b->stats.imported += done->imported;
		b->stats.chunks += done->chunks;
		if (done->arena)
			OPENSSL_cleanse(done->arena, done->used);
		done->n_rejects = 0;
		done->imported = 0;
		done->chunks = 0;
		done->n = 0;
		done->used = 0;
	}
	return err;
}

static int hand_off(struct tsw_vault_batch *b)
{
	struct run *run = &b->runs[b->filling];
	int r = writer_wait(b, &b->runs[b->filling ^ 1]);

	if (r < 0)
		return r;
	pthread_mutex_lock(&b->lock);
	b->pending = run;
	pthread_cond_broadcast(&b->cond);
	pthread_mutex_unlock(&b->lock);
	b->filling ^= 1;
	if (b->run_limit < b->run_rows)
		b->run_limit *= 2;
	return 0;
}

static void *big_alloc(size_t bytes)
{
	/* untouched pages cost nothing: small imports stay small */
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

static void big_free(void *p, size_t bytes)
{
	if (p)
		munmap(p, bytes);
}

static void batch_free(struct tsw_vault_batch *b)
{
	for (int i = 0; i < 2; i++) {
		struct run *run = &b->runs[i];

		if (run->arena)
			OPENSSL_cleanse(run->arena, run->used);
		big_free(run->slots, sizeof(*run->slots) * b->run_rows);
		big_free(run->order, sizeof(*run->order) * b->run_rows);
		big_free(run->items, sizeof(*run->items) * b->run_rows);
		big_free(run->scratch, sizeof(*run->scratch) * b->run_rows);
		big_free(run->rejects, sizeof(*run->rejects) * b->run_rows);
		big_free(run->arena, b->arena_bytes);
	}
	if (b->deferred)
		OPENSSL_cleanse(b->deferred, sizeof(*b->deferred) * b->n_deferred);
	free(b->deferred);
	crypto_free(&b->crypto);
	OPENSSL_cleanse(b->nonces, sizeof(b->nonces));
	pthread_mutex_destroy(&b->lock);
	pthread_cond_destroy(&b->cond);
	free(b);
}

int tsw_vault_batch_begin(struct tsw_vault *v, unsigned chunk_rows, tsw_vault_reject_fn on_reject,
			  void *ctx, struct tsw_vault_batch **ret_batch)
{
	struct tsw_vault_batch *b;
	int r;

	if (v->flags & TSW_VAULT_RDONLY)
		return -EROFS;
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->v = v;
	b->chunk_rows = chunk_rows ? chunk_rows : TSW_VAULT_CHUNK_ROWS_DEFAULT;
	b->run_rows = TSW_VAULT_RUN_ROWS_DEFAULT;
	b->run_limit = TSW_VAULT_RUN_ROWS_MIN;
	b->arena_bytes = (size_t)b->run_rows * TSW_VAULT_RUN_BYTES_PER_ROW;
	b->on_reject = on_reject;
	b->ctx = ctx;
	b->nonce_next = NONCE_POOL_ROWS;
	crypto_init(&b->crypto, v->keys);
	pthread_mutex_init(&b->lock, NULL);
	pthread_cond_init(&b->cond, NULL);
	for (int i = 0; i < 2; i++) {
		struct run *run = &b->runs[i];

		run->slots = big_alloc(sizeof(*run->slots) * b->run_rows);
		run->order = big_alloc(sizeof(*run->order) * b->run_rows);
		run->items = big_alloc(sizeof(*run->items) * b->run_rows);
		run->scratch = big_alloc(sizeof(*run->scratch) * b->run_rows);
		run->rejects = big_alloc(sizeof(*run->rejects) * b->run_rows);
		run->arena = big_alloc(b->arena_bytes);
		if (!run->slots || !run->order || !run->items || !run->scratch || !run->rejects ||
		    !run->arena) {
			r = -ENOMEM;
			goto out_free;
		}
	}
	r = -pthread_create(&b->writer, NULL, writer_main, b);
	if (r < 0)
		goto out_free;
	b->writer_started = true;
	/* Integrity holds without the per-commit meta page sync (a crash
	 * may lose the last chunk, which a re-run rejects as existing);
	 * _finish syncs once. */
	mdb_env_set_flags(v->env, MDB_NOMETASYNC, 1);
	*ret_batch = b;
	return 0;
out_free:
	batch_free(b);
	return r;
}

static int next_nonce(struct tsw_vault_batch *b, const uint8_t **ret)
{
	if (b->nonce_next >= NONCE_POOL_ROWS) {
		if (RAND_bytes(b->nonces, sizeof(b->nonces)) != 1)
			return -EIO;
		b->nonce_next = 0;
	}
	*ret = b->nonces + (size_t)b->nonce_next++ * NONCE_BYTES;
	return 0;
}

/* Validates, seals and encodes row (t: a scratch copy of row->token) into
 * slot p and arena space at rec. Returns 1 when the row was rejected. */
static int prepare(struct tsw_vault_batch *b, const struct tsw_vault_row *row, unsigned long line,
		   struct slot *p, uint8_t *rec, struct tsw_token *t)
{
	const uint8_t *nonce;
	const char *reason = NULL;
	size_t dev_len;
	int r = row_check(b->v, row, &reason);

	if (r < 0) {
		reject(b, line, r, reason);
		return 1;
	}
	r = next_nonce(b, &nonce);
	if (r < 0)
		return r;
	r = row_seal(&b->crypto, row, nonce, t, p->card_key);
	if (r < 0)
		return r;
	t->card_suspended = 0;
	t->atc_epoch = 0;
	token_key(t->token, t->token_len, &p->key);
	p->line = line;
	p->rec_len = (uint16_t)rec_encode(t, rec);
	dev_len = strnlen(row->device_ref, TSW_DEVICE_REF_MAX);
	memcpy(rec + p->rec_len, row->device_ref, dev_len);
	p->dev_len = (uint8_t)dev_len;
	return 0;
}

int tsw_vault_batch_add(struct tsw_vault_batch *b, const struct tsw_vault_row *row,
			unsigned long line)
{
	struct run *run = &b->runs[b->filling];
	struct slot *p = &run->slots[run->n];
	struct tsw_token t;
	int r;

	b->stats.rows++;
	if (row->token.original_token[0]) {
		if (b->n_deferred == b->cap_deferred) {
			size_t cap = b->cap_deferred ? 2 * b->cap_deferred : 64;
			struct deferred *d = realloc(b->deferred, cap * sizeof(*d));

			if (!d)
				return -ENOMEM;
			b->deferred = d;
			b->cap_deferred = cap;
		}
		b->deferred[b->n_deferred].row = *row;
		b->deferred[b->n_deferred++].line = line;
		return 0;
	}
	t = row->token;
	p->off = (uint32_t)run->used;
	r = prepare(b, row, line, p, run->arena + run->used, &t);
	OPENSSL_cleanse(t.sealed_pan, sizeof(t.sealed_pan));
	if (r != 0)
		return r < 0 ? r : 0;
	run->used += (size_t)p->rec_len + p->dev_len;
	run->n++;
	if (run->n >= b->run_limit ||
	    run->used + REC_MAX_BYTES + TSW_DEVICE_REF_MAX > b->arena_bytes)
		return hand_off(b);
	return 0;
}

/* Token-for-token rows, after everything else: each is linked to its
 * original inside the transaction that writes it. */
static int write_deferred(struct tsw_vault_batch *b)
{
	struct tsw_vault *v = b->v;
	struct run *run = &b->runs[0];
	size_t i = 0;
	int r = 0;

	while (i < b->n_deferred && r == 0) {
		MDB_txn *txn = NULL;
		unsigned long imported = 0;
		size_t end = i + b->chunk_rows < b->n_deferred ? i + b->chunk_rows : b->n_deferred;

		r = mdb_to_errno(mdb_txn_begin(v->env, NULL, 0, &txn));
		if (r < 0)
			break;
		for (; i < end && r == 0; i++) {
			struct deferred *d = &b->deferred[i];
			struct slot *p = &run->slots[0];
			struct tsw_token t = d->row.token;
			const char *reason = NULL;
			char dev[TSW_DEVICE_REF_MAX + 1];

			r = link_original(v, txn, &t, &reason);
			if (r == -TSW_E_NOT_FOUND) {
				reject(b, d->line, r, reason);
				r = 0;
				continue;
			}
			if (r < 0)
				break;
			d->row.token = t;
			p->off = 0;
			r = prepare(b, &d->row, d->line, p, run->arena, &t);
			if (r > 0) {
				r = 0;
				continue;
			}
			if (r < 0)
				break;
			memcpy(dev, run->arena + p->rec_len, p->dev_len);
			dev[p->dev_len] = '\0';
			r = put_rec(v, txn, p->key, run->arena, p->rec_len, p->card_key, dev, 0,
				    &reason);
			if (r == -TSW_E_EXISTS) {
				reject(b, d->line, r, reason);
				r = 0;
				continue;
			}
			if (r == 0)
				imported++;
		}
		if (r < 0) {
			mdb_txn_abort(txn);
			break;
		}
		r = mdb_to_errno(mdb_txn_commit(txn));
		if (r == 0) {
			b->stats.imported += imported;
			b->stats.chunks++;
		}
	}
	return r;
}

int tsw_vault_batch_finish(struct tsw_vault_batch *b, struct tsw_vault_import_stats *ret_stats)
{
	int r = 0;

	if (b->runs[b->filling].n)
		r = hand_off(b);
	if (b->writer_started) {
		int w = writer_wait(b, &b->runs[b->filling ^ 1]);

		if (r == 0)
			r = w;
		pthread_mutex_lock(&b->lock);
		b->stop = true;
		pthread_cond_broadcast(&b->cond);
		pthread_mutex_unlock(&b->lock);
		pthread_join(b->writer, NULL);
	}
	if (r == 0)
		r = write_deferred(b);
	mdb_env_set_flags(b->v->env, MDB_NOMETASYNC, 0);
	{
		int sr = mdb_to_errno(mdb_env_sync(b->v->env, 1));

		if (r == 0)
			r = sr;
	}
	if (ret_stats)
		*ret_stats = b->stats;
	batch_free(b);
	return r;
}
