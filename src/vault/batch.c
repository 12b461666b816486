/* Bulk writes. The caller's thread validates rows (and computes their
 * card keys, HMAC, while the worker is behind), then hands them a block at
 * a time to a worker thread that seals the PANs (AES-GCM) and encodes the
 * records into one run
 * (run.h), bounded by the vault's sort memory; the caller also maps the
 * run's pages ahead of the worker. When the run is full, or at the end,
 * the worker writes it sorted (vault__run_write): an import that fits the sort
 * memory is written in one pass over the key space, and into an empty
 * vault every put is an append. Rejections are reported on the caller's
 * thread. */
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "internal.h"
#include "run.h"
#include "tsw/error.h"

#define NONCE_POOL_ROWS 4096
#define BLOCK_ROWS 512			/* rows the caller hands to the worker at a time */
#define PREFAULT_AHEAD_BYTES (8u << 20) /* arena mapped ahead of the worker */
#define PREFAULT_STEP_BYTES (1u << 20)

/* Rows validated by the caller. When the worker was behind at the last
 * hand-off, the caller also computes the block's card keys (HMAC): the
 * two threads share the sealing work by who is waiting for whom. */
struct block {
	struct tsw_vault_row *rows;
	uint8_t (*card_keys)[CARD_KEY_BYTES];
	unsigned long *lines;
	unsigned n;
	bool keyed; /* card_keys filled by the caller */
};

/* A thread's PAN crypto contexts and its pool of random nonces. */
struct sealer {
	struct pan_crypto crypto;
	uint8_t nonces[NONCE_POOL_ROWS * NONCE_BYTES];
	unsigned next;
};

struct deferred {
	struct tsw_vault_row row;
	unsigned long line;
};

struct tsw_vault_batch {
	struct tsw_vault *v;
	unsigned chunk_rows;
	struct pace pace; /* the writer's: the worker's runs, then the deferred rows */
	tsw_vault_reject_fn on_reject;
	void *ctx;
	/* caller side */
	struct sealer own; /* card keys; token-for-token rows, sealed at _finish */
	size_t prefaulted; /* arena bytes mapped ahead of the worker */
	bool no_prefault;
	struct block blocks[2];
	unsigned filling;
	struct deferred *deferred;
	size_t n_deferred, cap_deferred;
	struct tsw_vault_import_stats stats;
	/* worker side */
	struct sealer seal;
	struct run run;
	pthread_t worker;
	bool worker_started;
	/* shared, under lock */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct block *pending; /* handed to the worker, not yet taken */
	bool busy;	       /* the worker is sealing a block */
	bool stop;	       /* no more blocks: write what is left */
	int err;	       /* first worker error */
	struct reject *done_rejects;
	size_t n_done_rejects;
	unsigned long done_imported, done_chunks;
};

static void reject(struct tsw_vault_batch *b, unsigned long line, int err, const char *reason)
{
	b->stats.rejected++;
	if (b->on_reject)
		b->on_reject(b->ctx, line, err, reason);
}

/* Writes the run (worker thread), publishes what it did and empties it. */
static int flush_run(struct tsw_vault_batch *b)
{
	struct run *run = &b->run;
	struct reject *rj;
	int r = vault__run_write(b->v, run, b->chunk_rows, &b->pace);

	pthread_mutex_lock(&b->lock);
	if (run->n_rejects) {
		rj = realloc(b->done_rejects, (b->n_done_rejects + run->n_rejects) * sizeof(*rj));
		if (rj) {
			memcpy(rj + b->n_done_rejects, run->rejects, run->n_rejects * sizeof(*rj));
			b->done_rejects = rj;
			b->n_done_rejects += run->n_rejects;
		} else if (r == 0) {
			r = -ENOMEM;
		}
	}
	b->done_imported += run->imported;
	b->done_chunks += run->chunks;
	pthread_mutex_unlock(&b->lock);
	vault__run_reset(run);
	return r;
}

static int next_nonce(struct sealer *s, const uint8_t **ret)
{
	if (s->next >= NONCE_POOL_ROWS) {
		if (RAND_bytes(s->nonces, sizeof(s->nonces)) != 1)
			return -EIO;
		s->next = 0;
	}
	*ret = s->nonces + (size_t)s->next++ * NONCE_BYTES;
	return 0;
}

/* Seals and encodes a validated row into slot p and arena space at rec;
 * card_key: the row's, or NULL to compute it. Works on row in place (its
 * token gets the sealed PAN and card id). */
static int seal_row(struct sealer *s, struct tsw_vault_row *row, const uint8_t *card_key,
		    unsigned long line, struct slot *p, uint8_t *rec)
{
	struct tsw_token *t = &row->token;
	const uint8_t *nonce;
	size_t dev_len, rec_len = 0;
	int r;

	r = next_nonce(s, &nonce);
	if (r < 0)
		return r;
	if (card_key)
		memcpy(p->card_key, card_key, CARD_KEY_BYTES);
	else if ((r = vault__crypto_card_key(&s->crypto, row->pan, row->pan_len, p->card_key)) < 0)
		return r;
	t->token_len = (uint8_t)strnlen(t->token, sizeof(t->token));
	memcpy(&t->card_id, p->card_key, sizeof(t->card_id));
	t->card_suspended = 0;
	t->atc_epoch = 0;
	vault__token_key(t->token, t->token_len, &p->key);
	p->line = line;
	/* a suspended card's flag is set, and the record sealed again, when
	 * the run is written (run.c): the card's state is read there */
	r = vault__encode_sealed(&s->crypto, t, p->key, row->pan, row->pan_len, nonce, rec,
				 &rec_len);
	if (r < 0)
		return r;
	p->rec_len = (uint16_t)rec_len;
	dev_len = strnlen(row->device_ref, TSW_DEVICE_REF_MAX);
	memcpy(rec + p->rec_len, row->device_ref, dev_len);
	p->dev_len = (uint8_t)dev_len;
	return 0;
}

/* Worker: seals a block's rows into the run, writing the run whenever it
 * is full. Wipes the rows' PANs. */
static int seal_block(struct tsw_vault_batch *b, struct block *blk)
{
	struct run *run = &b->run;
	int r = 0;

	for (unsigned i = 0; i < blk->n && r == 0; i++) {
		struct tsw_vault_row *row = &blk->rows[i];
		struct slot *p;

		if (vault__run_full(run))
			r = flush_run(b);
		if (r < 0)
			break;
		p = &run->slots[run->n];
		p->off = run->used;
		p->idx = run->n;
		r = seal_row(&b->seal, row, blk->keyed ? blk->card_keys[i] : NULL, blk->lines[i], p,
			     run->arena + run->used);
		if (r < 0)
			break;
		/* the caller reads it to prefault the arena ahead */
		__atomic_store_n(&run->used, run->used + p->rec_len + p->dev_len, __ATOMIC_RELAXED);
		run->n++;
	}
	for (unsigned i = 0; i < blk->n; i++)
		OPENSSL_cleanse(blk->rows[i].pan, sizeof(blk->rows[i].pan));
	OPENSSL_cleanse(blk->card_keys, (size_t)blk->n * CARD_KEY_BYTES);
	return r;
}

static void *worker_main(void *arg)
{
	struct tsw_vault_batch *b = arg;
	int r = 0;

	pthread_mutex_lock(&b->lock);
	for (;;) {
		struct block *blk;

		while (!b->pending && !b->stop)
			pthread_cond_wait(&b->cond, &b->lock);
		if (!b->pending)
			break;
		blk = b->pending;
		b->pending = NULL;
		b->busy = true;
		pthread_mutex_unlock(&b->lock);
		r = b->err ? 0 : seal_block(b, blk);
		pthread_mutex_lock(&b->lock);
		if (r < 0 && !b->err)
			b->err = r;
		b->busy = false;
		pthread_cond_broadcast(&b->cond);
	}
	r = b->err;
	pthread_mutex_unlock(&b->lock);
	if (r == 0)
		r = flush_run(b);
	pthread_mutex_lock(&b->lock);
	if (r < 0 && !b->err)
		b->err = r;
	pthread_mutex_unlock(&b->lock);
	return NULL;
}

/* Caller: reports what the worker published so far. */
static void drain(struct tsw_vault_batch *b)
{
	struct reject *rj;
	size_t n;

	pthread_mutex_lock(&b->lock);
	rj = b->done_rejects;
	n = b->n_done_rejects;
	b->done_rejects = NULL;
	b->n_done_rejects = 0;
	b->stats.imported += b->done_imported;
	b->stats.chunks += b->done_chunks;
	b->done_imported = 0;
	b->done_chunks = 0;
	pthread_mutex_unlock(&b->lock);
	for (size_t i = 0; i < n; i++)
		reject(b, rj[i].line, rj[i].err, rj[i].reason);
	free(rj);
}

/* Caller: maps the arena pages the worker will write next, so the worker
 * does not stop on their page faults (MADV_POPULATE_WRITE leaves pages
 * already there as they are; without it, the worker faults them in). */
static void prefault(struct tsw_vault_batch *b)
{
	const struct run *run = &b->run;
	size_t want = __atomic_load_n(&run->used, __ATOMIC_RELAXED) + PREFAULT_AHEAD_BYTES;

	if (b->no_prefault || want <= b->prefaulted)
		return;
	want = (want + PREFAULT_STEP_BYTES - 1) & ~(size_t)(PREFAULT_STEP_BYTES - 1);
	if (want > run->mem_limit)
		want = run->mem_limit;
	if (want <= b->prefaulted)
		return;
	if (madvise(run->arena + b->prefaulted, want - b->prefaulted, MADV_POPULATE_WRITE) < 0) {
		b->no_prefault = true;
		return;
	}
	b->prefaulted = want;
}

/* Caller: waits until the worker is idle, then hands it the block being
 * filled and switches to the other one. */
static int hand_off(struct tsw_vault_batch *b)
{
	struct block *blk = &b->blocks[b->filling];
	bool behind;
	int err;

	pthread_mutex_lock(&b->lock);
	behind = b->pending || b->busy;
	while (b->pending || b->busy)
		pthread_cond_wait(&b->cond, &b->lock);
	err = b->err;
	if (err == 0) {
		b->pending = blk;
		pthread_cond_broadcast(&b->cond);
	}
	pthread_mutex_unlock(&b->lock);
	drain(b);
	if (err < 0)
		return err;
	prefault(b);
	b->filling ^= 1;
	b->blocks[b->filling].n = 0;
	b->blocks[b->filling].keyed = behind;
	return 0;
}

static void sealer_free(struct sealer *s)
{
	vault__crypto_free(&s->crypto);
	OPENSSL_cleanse(s->nonces, sizeof(s->nonces));
}

static void batch_free(struct tsw_vault_batch *b)
{
	vault__run_free(&b->run);
	free(b->done_rejects);
	for (int i = 0; i < 2; i++) {
		if (b->blocks[i].rows)
			OPENSSL_cleanse(b->blocks[i].rows, sizeof(*b->blocks[i].rows) * BLOCK_ROWS);
		free(b->blocks[i].rows);
		free(b->blocks[i].lines);
		if (b->blocks[i].card_keys)
			OPENSSL_cleanse(b->blocks[i].card_keys,
					sizeof(*b->blocks[i].card_keys) * BLOCK_ROWS);
		free(b->blocks[i].card_keys);
	}
	if (b->deferred)
		OPENSSL_cleanse(b->deferred, sizeof(*b->deferred) * b->n_deferred);
	free(b->deferred);
	sealer_free(&b->own);
	sealer_free(&b->seal);
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
	b->chunk_rows = vault__chunk_rows(v, chunk_rows ? chunk_rows : v->chunk_rows);
	b->pace.items_per_s = 2 * v->import_rate;
	b->stats.chunk_rows = b->chunk_rows;
	b->on_reject = on_reject;
	b->ctx = ctx;
	b->own.next = NONCE_POOL_ROWS;
	b->seal.next = NONCE_POOL_ROWS;
	vault__crypto_init(&b->own.crypto, v->keys);
	vault__crypto_init(&b->seal.crypto, v->keys);
	pthread_mutex_init(&b->lock, NULL);
	pthread_cond_init(&b->cond, NULL);
	/* the run is address space only; where that is short (RLIMIT_AS),
	 * sort in smaller passes rather than fail */
	for (size_t mem = v->sort_mem;; mem /= 2) {
		r = vault__run_init(&b->run, mem);
		if (r == 0 || mem / 2 < TSW_VAULT_SORT_MEM_MIN_BYTES)
			break;
		vault__run_free(&b->run);
	}
	if (r < 0)
		goto out_free;
	for (int i = 0; i < 2; i++) {
		b->blocks[i].rows = malloc(sizeof(*b->blocks[i].rows) * BLOCK_ROWS);
		b->blocks[i].lines = malloc(sizeof(*b->blocks[i].lines) * BLOCK_ROWS);
		b->blocks[i].card_keys = malloc(sizeof(*b->blocks[i].card_keys) * BLOCK_ROWS);
		if (!b->blocks[i].rows || !b->blocks[i].lines || !b->blocks[i].card_keys) {
			r = -ENOMEM;
			goto out_free;
		}
	}
	r = -pthread_create(&b->worker, NULL, worker_main, b);
	if (r < 0)
		goto out_free;
	b->worker_started = true;
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

int tsw_vault_batch_add(struct tsw_vault_batch *b, const struct tsw_vault_row *row,
			unsigned long line)
{
	struct block *blk = &b->blocks[b->filling];
	const char *reason = NULL;
	int r;

	b->stats.rows++;
	if (row->token.original_token[0]) {
		if (b->n_deferred == b->cap_deferred) {
			size_t cap = b->cap_deferred ? 2 * b->cap_deferred : 64;
			/* not realloc: the rows may hold PANs, the old copy is wiped */
			struct deferred *d = malloc(cap * sizeof(*d));

			if (!d)
				return -ENOMEM;
			if (b->deferred) {
				memcpy(d, b->deferred, b->n_deferred * sizeof(*d));
				OPENSSL_cleanse(b->deferred, b->cap_deferred * sizeof(*d));
				free(b->deferred);
			}
			b->deferred = d;
			b->cap_deferred = cap;
		}
		b->deferred[b->n_deferred].row = *row;
		b->deferred[b->n_deferred++].line = line;
		return 0;
	}
	r = vault__row_check(b->v, row, &reason);
	if (r < 0) {
		reject(b, line, r, reason);
		return 0;
	}
	if (blk->keyed) {
		r = vault__crypto_card_key(&b->own.crypto, row->pan, row->pan_len,
					   blk->card_keys[blk->n]);
		if (r < 0)
			return r;
	}
	blk->rows[blk->n] = *row;
	blk->lines[blk->n++] = line;
	if (blk->n == BLOCK_ROWS)
		return hand_off(b);
	return 0;
}

/* Token-for-token rows, after everything else: each is linked to its
 * original inside the transaction that writes it. */
static int write_deferred(struct tsw_vault_batch *b)
{
	struct tsw_vault *v = b->v;
	size_t i = 0;
	int r = 0;

	while (i < b->n_deferred && r == 0) {
		MDB_txn *txn = NULL;
		unsigned long imported = 0;
		size_t end = i + b->chunk_rows < b->n_deferred ? i + b->chunk_rows : b->n_deferred;

		/* record and index entry in one transaction: two items a row */
		vault__pace_wait(&b->pace, 2 * (end - i));
		r = vault__txn_begin(v, &txn);
		if (r < 0)
			break;
		for (; i < end && r == 0; i++) {
			struct deferred *d = &b->deferred[i];
			uint8_t rec[REC_MAX_BYTES], card_key[CARD_KEY_BYTES];
			const char *reason = NULL;
			uint64_t key = 0;

			r = vault__link_original(v, txn, &d->row.token, &reason);
			if (r == -TSW_E_NOT_FOUND) {
				reject(b, d->line, r, reason);
				r = 0;
				continue;
			}
			if (r < 0)
				break;
			r = vault__row_check(v, &d->row, &reason);
			if (r < 0) {
				reject(b, d->line, r, reason);
				r = 0;
				continue;
			}
			r = vault__row_card(&b->own.crypto, &d->row, &d->row.token, card_key);
			if (r == 0)
				r = vault__token_key(d->row.token.token, d->row.token.token_len,
						     &key);
			if (r < 0) {
				OPENSSL_cleanse(d->row.pan, sizeof(d->row.pan));
				break;
			}
			d->row.token.atc_epoch = 0;
			r = vault__put_rec(v, &b->own.crypto, txn, key, &d->row.token, d->row.pan,
					   d->row.pan_len, card_key, d->row.device_ref, 0, rec,
					   &reason);
			OPENSSL_cleanse(d->row.pan, sizeof(d->row.pan));
			OPENSSL_cleanse(rec, sizeof(rec));
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
		r = vault__txn_commit(v, txn);
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

	if (b->blocks[b->filling].n)
		r = hand_off(b);
	if (b->worker_started) {
		pthread_mutex_lock(&b->lock);
		b->stop = true;
		pthread_cond_broadcast(&b->cond);
		pthread_mutex_unlock(&b->lock);
		pthread_join(b->worker, NULL);
		drain(b);
		if (r == 0)
			r = b->err;
	}
	if (r == 0)
		r = write_deferred(b);
	mdb_env_set_flags(b->v->env, MDB_NOMETASYNC, 0);
	{
		int sr = mdb_to_errno(mdb_env_sync(b->v->env, 1));

		if (r == 0)
			r = sr;
	}
	b->stats.paced_ns = b->pace.waited_ns;
	if (ret_stats)
		*ret_stats = b->stats;
	batch_free(b);
	return r;
}
