/* Writing a run. The run is sorted by token (a radix sort of (token, row)
 * pairs) and written chunk_rows per transaction, then its index entries
 * sorted by card key the same way. Sorting whole runs, not chunks, makes
 * each transaction touch one slice of each tree: a random-order import
 * does not rewrite the trees once per chunk, and into an empty vault
 * every put is an append.
 *
 * Sorted order visits the run's rows at random places of memory. A
 * stager thread copies each chunk's slots and records into token order
 * (a tight loop of independent loads, which memory serves many at a
 * time) while the writer puts the previous chunk into LMDB from
 * sequential memory. A third thread sorts the index entries meanwhile. */
#include <endian.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "run.h"
#include "tsw/error.h"

#define PREFETCH_SLOTS 32	  /* sorted copies: slots fetched this many rows ahead */
#define PREFETCH_RECORDS 16	  /* ... and records this many */
#define RECORD_PREFETCH_BYTES 256 /* a typical record without merchants */
#define CACHE_LINE_BYTES 64
#define REJECTS_INITIAL 1024 /* first capacity of a run's reject list */
#define RADIX_BITS 11
#define RADIX_BUCKETS (1u << RADIX_BITS)
/* Card keys are sorted on their top 44 bits (4 radix passes, not 6):
 * among 10 M cards about 3 pairs then come out of order, and are
 * inserted instead of appended. */
#define CARD_SORT_BITS 44
#define NS_PER_S 1000000000ull

static void *big_alloc(size_t bytes)
{
	/* address space only: untouched pages cost nothing, so small imports
	 * stay small */
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

static void big_free(void *p, size_t bytes)
{
	if (p)
		munmap(p, bytes);
}

static size_t bitmap_bytes(unsigned n)
{
	return ((size_t)n + 7) / 8;
}

int vault__run_init(struct run *run, size_t mem_limit)
{
	memset(run, 0, sizeof(*run));
	pthread_mutex_init(&run->lock, NULL);
	pthread_cond_init(&run->cond, NULL);
	run->mem_limit = mem_limit;
	/* enough slots for the smallest records; the arena for any mix */
	run->cap = (unsigned)(mem_limit / (RUN_ROW_FIXED_BYTES + sizeof(struct rec)));
	run->slots = big_alloc(sizeof(*run->slots) * run->cap);
	run->arena = big_alloc(mem_limit);
	run->items = big_alloc(sizeof(*run->items) * run->cap);
	run->scratch = big_alloc(sizeof(*run->scratch) * run->cap);
	run->ientries = big_alloc(sizeof(*run->ientries) * run->cap);
	run->card_items = big_alloc(sizeof(*run->card_items) * run->cap);
	run->card_scratch = big_alloc(sizeof(*run->card_scratch) * run->cap);
	run->indexed = big_alloc(bitmap_bytes(run->cap));
	if (!run->slots || !run->arena || !run->items || !run->scratch || !run->ientries ||
	    !run->card_items || !run->card_scratch || !run->indexed)
		return -ENOMEM;
	return 0;
}

void vault__run_free(struct run *run)
{
	if (run->arena)
		OPENSSL_cleanse(run->arena, run->used);
	big_free(run->slots, sizeof(*run->slots) * run->cap);
	big_free(run->arena, run->mem_limit);
	big_free(run->items, sizeof(*run->items) * run->cap);
	big_free(run->scratch, sizeof(*run->scratch) * run->cap);
	big_free(run->ientries, sizeof(*run->ientries) * run->cap);
	big_free(run->card_items, sizeof(*run->card_items) * run->cap);
	big_free(run->card_scratch, sizeof(*run->card_scratch) * run->cap);
	big_free(run->indexed, bitmap_bytes(run->cap));
	for (int i = 0; i < 2; i++) {
		struct stage *st = &run->stages[i];

		if (st->bytes)
			OPENSSL_cleanse(st->bytes, st->bytes_cap);
		free(st->bytes);
		free(st->slots);
	}
	free(run->rejects);
	pthread_mutex_destroy(&run->lock);
	pthread_cond_destroy(&run->cond);
	memset(run, 0, sizeof(*run));
}

bool vault__run_full(const struct run *run)
{
	return run->n == run->cap ||
	       run->used + (size_t)(run->n + 1) * RUN_ROW_FIXED_BYTES + RUN_ROW_MAX_BYTES >
		   run->mem_limit;
}

void vault__run_reset(struct run *run)
{
	OPENSSL_cleanse(run->arena, run->used);
	run->n = 0;
	__atomic_store_n(&run->used, 0, __ATOMIC_RELAXED);
	run->n_rejects = 0;
	run->imported = 0;
	run->chunks = 0;
}

/* A duplicate found while writing; reported to the caller after the run. */
static int run_reject(struct run *run, unsigned long line, int err, const char *reason)
{
	if (run->n_rejects == run->cap_rejects) {
		size_t cap = run->cap_rejects ? 2 * run->cap_rejects : REJECTS_INITIAL;
		struct reject *r = realloc(run->rejects, cap * sizeof(*r));

		if (!r)
			return -ENOMEM;
		run->rejects = r;
		run->cap_rejects = cap;
	}
	run->rejects[run->n_rejects++] = (struct reject){line, err, reason};
	return 0;
}

/* Stable LSD radix sort of a[0..n) by the bits of key from bit `from` up
 * (tmp: n scratch items). Digits that are the same in every item (the
 * token BIN) cost one counting pass and no move. Returns the array that
 * holds the result (a or tmp). */
static struct sort_item *radix_sort(struct sort_item *a, struct sort_item *tmp, size_t n,
				    unsigned from)
{
	static _Thread_local size_t count[RADIX_BUCKETS];

	for (unsigned shift = from; shift < 64; shift += RADIX_BITS) {
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

/* The run's rows sorted by token: (token, row) pairs; equal tokens stay
 * in line order (rows are in line order and the sort is stable). */
static struct sort_item *sort_by_token(struct run *run)
{
	for (unsigned i = 0; i < run->n; i++)
		run->items[i] = (struct sort_item){run->slots[i].key, i};
	return radix_sort(run->items, run->scratch, run->n, 0);
}

/* run->ientries = every row's (card key, token), sorted by the first
 * CARD_SORT_BITS bits of the card key (big-endian, so in LMDB's memcmp
 * order; the rare entries whose full keys are out of order after that are
 * inserted instead of appended). Runs on its own thread, in its own sort
 * arrays, while the tokens are sorted and written. */
static void *build_index(void *arg)
{
	struct run *run = arg;
	struct sort_item *sorted;

	for (unsigned i = 0; i < run->n; i++) {
		uint64_t k;

		memcpy(&k, run->slots[i].card_key, sizeof(k));
		run->card_items[i] = (struct sort_item){be64toh(k), i};
	}
	sorted = radix_sort(run->card_items, run->card_scratch, run->n, 64 - CARD_SORT_BITS);
	for (unsigned i = 0; i < run->n; i++) {
		const struct slot *p = &run->slots[sorted[i].idx];
		struct ientry *e = &run->ientries[i];

		if (i + PREFETCH_SLOTS < run->n)
			__builtin_prefetch(&run->slots[sorted[i + PREFETCH_SLOTS].idx]);
		memcpy(e->card_key, p->card_key, CARD_KEY_BYTES);
		e->key = p->key;
		e->idx = sorted[i].idx;
	}
	return NULL;
}

/* Copies the slots and records of sorted[0..n) into st, in that order;
 * staged slots point into st->bytes. */
static int stage_chunk(struct run *run, struct stage *st, const struct sort_item *sorted,
		       unsigned n, unsigned chunk)
{
	size_t bytes = 0, off = 0;

	if (n > st->rows_cap) {
		struct slot *ss = realloc(st->slots, n * sizeof(*ss));

		if (!ss)
			return -ENOMEM;
		st->slots = ss;
		st->rows_cap = n;
	}
	for (unsigned i = 0; i < n; i++) {
		if (i + PREFETCH_SLOTS < n)
			__builtin_prefetch(&run->slots[sorted[i + PREFETCH_SLOTS].idx]);
		st->slots[i] = run->slots[sorted[i].idx];
		bytes += (size_t)st->slots[i].rec_len + st->slots[i].dev_len;
	}
	if (bytes > st->bytes_cap) {
		uint8_t *b;

		if (st->bytes)
			OPENSSL_cleanse(st->bytes, st->bytes_cap);
		free(st->bytes);
		st->bytes_cap = 0;
		b = malloc(bytes);
		st->bytes = b;
		if (!b)
			return -ENOMEM;
		st->bytes_cap = bytes;
	}
	for (unsigned i = 0; i < n; i++) {
		struct slot *p = &st->slots[i];
		size_t len = (size_t)p->rec_len + p->dev_len;

		if (i + PREFETCH_RECORDS < n) {
			const uint8_t *rec = run->arena + st->slots[i + PREFETCH_RECORDS].off;

			for (size_t o = 0; o < RECORD_PREFETCH_BYTES; o += CACHE_LINE_BYTES)
				__builtin_prefetch(rec + o);
		}
		memcpy(st->bytes + off, run->arena + p->off, len);
		p->off = off;
		off += len;
	}
	st->n = n;
	st->chunk = chunk;
	return 0;
}

static void mark_indexed(struct run *run, uint32_t idx)
{
	run->indexed[idx >> 3] |= (uint8_t)(1u << (idx & 7));
}

static bool is_indexed(const struct run *run, uint64_t idx)
{
	return run->indexed[idx >> 3] & (1u << (idx & 7));
}

/* Where the write of one chunk stands: its transaction and cursor on the
 * tokens, the vault's last token (a row after it is appended) and the
 * row written before (a token twice in the import is rejected). */
struct chunk_write {
	MDB_txn *txn;
	MDB_cursor *cur;
	struct pan_crypto crypto; /* contexts made only for a suspended card */
	uint64_t last, prev;
	bool have_last, had_prev, no_cards;
	unsigned long imported;
};

/* Opens cw's cursor on the tokens and reads the vault's last token. */
static int chunk_open(struct tsw_vault *v, struct chunk_write *cw)
{
	MDB_val k, d;
	MDB_stat s;
	int r, rc;

	r = vault__index_guard(v, cw->txn); /* the records' card ids and the index go together */
	if (r < 0)
		return r;
	r = mdb_to_errno(mdb_cursor_open(cw->txn, v->dbi_tokens, &cw->cur));
	if (r < 0)
		return r;
	rc = mdb_cursor_get(cw->cur, &k, &d, MDB_LAST);
	if (rc == 0) {
		memcpy(&cw->last, k.mv_data, sizeof(cw->last));
		cw->have_last = true;
	} else if (rc != MDB_NOTFOUND) {
		return mdb_to_errno(rc);
	}
	cw->no_cards = mdb_stat(cw->txn, v->dbi_cards, &s) == 0 && s.ms_entries == 0;
	return 0;
}

/* A row of a suspended card says so in its record, sealed again: the
 * flag is authenticated. */
static int seal_card_flags(struct tsw_vault *v, struct chunk_write *cw, const struct slot *p,
			   uint8_t *rec)
{
	uint8_t cflags = 0;
	int r;

	r = vault__card_flags(v, cw->txn, p->card_key, &cflags);
	if (r < 0)
		return r;
	if (cflags & CARD_F_SUSPENDED)
		return vault__rec_set_flags(&cw->crypto, rec, p->rec_len, p->key, false,
					    ((struct rec *)rec)->flags | REC_F_CARD_SUSPENDED);
	return 0;
}

/* Puts staged row p (its record at rec, its device binding after it). A
 * token already in the vault or twice in this import is rejected; its
 * index entry is due all the same when the vault's record is of the same
 * card. 0, or a negative errno that aborts the chunk. */
static int write_row(struct tsw_vault *v, struct run *run, struct chunk_write *cw, struct slot *p,
		     uint8_t *rec)
{
	unsigned append = (!cw->have_last || p->key > cw->last) ? MDB_APPEND : 0;
	MDB_val k = {.mv_size = sizeof(p->key), .mv_data = &p->key};
	MDB_val d = {.mv_size = p->rec_len, .mv_data = rec};
	bool same_card = false;
	int r, rc;

	if (!cw->no_cards) {
		r = seal_card_flags(v, cw, p, rec);
		if (r < 0)
			return r;
	}
	if (cw->had_prev && cw->prev == p->key) {
		rc = MDB_KEYEXIST; /* twice in this import */
	} else {
		rc = vault__cursor_put(v, cw->cur, &k, &d, MDB_NOOVERWRITE | append);
		/* on MDB_KEYEXIST d is the record in the vault */
		same_card =
		    rc == MDB_KEYEXIST && d.mv_size >= sizeof(struct rec) &&
		    ((const struct rec *)d.mv_data)->card_id == ((const struct rec *)rec)->card_id;
	}
	cw->had_prev = true;
	cw->prev = p->key;
	if (rc == MDB_KEYEXIST) {
		if (same_card)
			mark_indexed(run, p->idx);
		return run_reject(run, p->line, -TSW_E_EXISTS, "token already in the vault");
	}
	if (rc)
		return mdb_to_errno(rc);
	if (append) {
		cw->last = p->key;
		cw->have_last = true;
	}
	mark_indexed(run, p->idx);
	cw->imported++;
	if (!p->dev_len)
		return 0;
	d.mv_size = p->dev_len;
	d.mv_data = rec + p->rec_len;
	return mdb_to_errno(vault__put(v, cw->txn, v->dbi_devices, &k, &d, 0));
}

/* Writes a staged chunk (rows sorted by token; *prev_key: the token
 * before them when *have_prev) in one transaction: records (appended when
 * they come after the vault's last token) and device bindings. Marks the
 * index entry of each row written, or already in the vault for the same
 * card (an import re-run after a crash heals the index that way), as due.
 * A row whose token exists is rejected; any other error aborts the chunk. */
static int write_tokens(struct tsw_vault *v, struct run *run, struct stage *st, bool *have_prev,
			uint64_t *prev_key)
{
	struct chunk_write cw = {.prev = *prev_key, .had_prev = *have_prev};
	size_t n_rejects = run->n_rejects;
	int r;

	r = vault__txn_begin(v, &cw.txn);
	if (r < 0)
		return r;
	vault__crypto_init(&cw.crypto, v->keys);
	r = chunk_open(v, &cw);
	if (r < 0)
		goto out_abort;
	for (unsigned i = 0; i < st->n; i++) {
		struct slot *p = &st->slots[i];

		if (i + PREFETCH_SLOTS < st->n)
			__builtin_prefetch(&run->indexed[st->slots[i + PREFETCH_SLOTS].idx >> 3],
					   1);
		r = write_row(v, run, &cw, p, st->bytes + p->off);
		if (r < 0)
			goto out_abort;
	}
	mdb_cursor_close(cw.cur);
	cw.cur = NULL;
	r = vault__txn_commit(v, cw.txn);
	if (r < 0)
		goto out_undo;
	vault__crypto_free(&cw.crypto);
	run->imported += cw.imported;
	run->chunks++;
	*have_prev = cw.had_prev;
	*prev_key = cw.prev;
	return 0;
out_abort:
	mdb_cursor_close(cw.cur);
	mdb_txn_abort(cw.txn);
out_undo:
	vault__crypto_free(&cw.crypto);
	run->n_rejects = n_rejects;
	return r;
}

/* Writes the due entries of run->ientries[from, from + n) (sorted by card
 * key) in one transaction: appended while the card keys come after the
 * index's last one, inserted otherwise (another token of the same card,
 * an index that had entries). */
static int write_index(struct tsw_vault *v, struct run *run, unsigned from, unsigned n)
{
	uint8_t last[CARD_KEY_BYTES];
	bool have_last = false, any = false;
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	MDB_val k, d;
	int r, rc;

	for (unsigned i = from; i < from + n && !any; i++)
		any = is_indexed(run, run->ientries[i].idx);
	if (!any)
		return 0;
	r = vault__txn_begin(v, &txn);
	if (r < 0)
		return r;
	r = vault__index_guard(v, txn);
	if (r < 0)
		goto out_abort;
	r = mdb_to_errno(mdb_cursor_open(txn, v->dbi_index, &cur));
	if (r < 0)
		goto out_abort;
	rc = mdb_cursor_get(cur, &k, &d, MDB_LAST);
	if (rc == 0 && k.mv_size == CARD_KEY_BYTES) {
		memcpy(last, k.mv_data, CARD_KEY_BYTES);
		have_last = true;
	} else if (rc == 0) {
		r = -TSW_E_CORRUPT;
		goto out_abort;
	} else if (rc != MDB_NOTFOUND) {
		r = mdb_to_errno(rc);
		goto out_abort;
	}
	for (unsigned i = from; i < from + n; i++) {
		struct ientry *e = &run->ientries[i];
		bool append;

		if (i + PREFETCH_SLOTS < from + n)
			__builtin_prefetch(
			    &run->indexed[run->ientries[i + PREFETCH_SLOTS].idx >> 3]);
		if (!is_indexed(run, e->idx))
			continue;
		append = !have_last || memcmp(e->card_key, last, CARD_KEY_BYTES) > 0;
		k.mv_size = CARD_KEY_BYTES;
		k.mv_data = e->card_key;
		d.mv_size = sizeof(e->key);
		d.mv_data = &e->key;
		rc = vault__cursor_put(v, cur, &k, &d, append ? MDB_APPEND : MDB_NODUPDATA);
		if (rc && rc != MDB_KEYEXIST) {
			r = mdb_to_errno(rc);
			goto out_abort;
		}
		if (append) {
			memcpy(last, e->card_key, CARD_KEY_BYTES);
			have_last = true;
		}
	}
	mdb_cursor_close(cur);
	r = vault__txn_commit(v, txn);
	if (r == 0)
		run->chunks++;
	return r;
out_abort:
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	return r;
}

struct stager {
	struct run *run;
	const struct sort_item *sorted;
	unsigned chunk_rows, n_chunks;
};

static unsigned chunk_len(const struct run *run, unsigned chunk_rows, unsigned chunk)
{
	unsigned from = chunk * chunk_rows;

	return run->n - from < chunk_rows ? run->n - from : chunk_rows;
}

/* The stager thread: stages chunk after chunk into the free stage. */
static void *stager_main(void *arg)
{
	const struct stager *sg = arg;
	struct run *run = sg->run;

	for (unsigned j = 0; j < sg->n_chunks; j++) {
		struct stage *st = &run->stages[j % 2];
		int r;

		pthread_mutex_lock(&run->lock);
		while (st->ready && !run->abort)
			pthread_cond_wait(&run->cond, &run->lock);
		if (run->abort) {
			pthread_mutex_unlock(&run->lock);
			return NULL;
		}
		pthread_mutex_unlock(&run->lock);
		r = stage_chunk(run, st, sg->sorted + (size_t)j * sg->chunk_rows,
				chunk_len(run, sg->chunk_rows, j), j);
		pthread_mutex_lock(&run->lock);
		if (r < 0)
			run->stage_err = r;
		else
			st->ready = true;
		pthread_cond_broadcast(&run->cond);
		pthread_mutex_unlock(&run->lock);
		if (r < 0)
			return NULL;
	}
	return NULL;
}

/* Writer side of the staged chunks: waits for chunk j, writes it, frees
 * its stage. */
static int write_staged(struct tsw_vault *v, struct run *run, unsigned j, bool *have_prev,
			uint64_t *prev_key)
{
	struct stage *st = &run->stages[j % 2];
	int r;

	pthread_mutex_lock(&run->lock);
	while (!st->ready && !run->stage_err)
		pthread_cond_wait(&run->cond, &run->lock);
	r = st->ready ? 0 : run->stage_err;
	pthread_mutex_unlock(&run->lock);
	if (r < 0)
		return r;
	r = write_tokens(v, run, st, have_prev, prev_key);
	pthread_mutex_lock(&run->lock);
	st->ready = false;
	pthread_cond_broadcast(&run->cond);
	pthread_mutex_unlock(&run->lock);
	return r;
}

static uint64_t monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

void vault__pace_wait(struct pace *p, uint64_t items)
{
	uint64_t now;

	if (!p->items_per_s)
		return;
	now = monotonic_ns();
	if (p->due_ns > now) {
		struct timespec due = {.tv_sec = (time_t)(p->due_ns / NS_PER_S),
				       .tv_nsec = (long)(p->due_ns % NS_PER_S)};

		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &due, NULL) == EINTR)
			;
		p->waited_ns += p->due_ns - now;
	} else {
		/* behind the rate (or the first transaction): no credit
		 * saved up for a burst later */
		p->due_ns = now;
	}
	p->due_ns += items * NS_PER_S / p->items_per_s;
}

int vault__run_write(struct tsw_vault *v, struct run *run, unsigned chunk_rows, struct pace *pace)
{
	struct stager sg = {.run = run, .chunk_rows = chunk_rows};
	bool have_prev = false, staged, indexed;
	uint64_t prev_key = 0;
	pthread_t stager, indexer;
	int r = 0;

	if (!run->n)
		return 0;
	indexed = pthread_create(&indexer, NULL, build_index, run) == 0;
	sg.sorted = sort_by_token(run);
	sg.n_chunks = (run->n + chunk_rows - 1) / chunk_rows;
	memset(run->indexed, 0, bitmap_bytes(run->n));
	run->stages[0].ready = run->stages[1].ready = false;
	run->abort = false;
	run->stage_err = 0;
	staged = pthread_create(&stager, NULL, stager_main, &sg) == 0;
	for (unsigned j = 0; j < sg.n_chunks && r == 0; j++) {
		vault__pace_wait(pace, chunk_len(run, chunk_rows, j));
		if (staged) {
			r = write_staged(v, run, j, &have_prev, &prev_key);
			continue;
		}
		/* no second thread: the same steps, one after the other */
		r = stage_chunk(run, &run->stages[0], sg.sorted + (size_t)j * chunk_rows,
				chunk_len(run, chunk_rows, j), j);
		if (r == 0)
			r = write_tokens(v, run, &run->stages[0], &have_prev, &prev_key);
	}
	if (staged) {
		if (r < 0) {
			pthread_mutex_lock(&run->lock);
			run->abort = true;
			pthread_cond_broadcast(&run->cond);
			pthread_mutex_unlock(&run->lock);
		}
		pthread_join(stager, NULL);
	}
	if (indexed)
		pthread_join(indexer, NULL);
	else
		build_index(run);
	if (r < 0)
		return r;
	for (unsigned i = 0; i < run->n; i += chunk_rows) {
		vault__pace_wait(pace, chunk_len(run, chunk_rows, i / chunk_rows));
		r = write_index(v, run, i, chunk_len(run, chunk_rows, i / chunk_rows));
		if (r < 0)
			return r;
	}
	return 0;
}
