/* The switch's state environment: limited-use counts and last ATC per
 * token, decided in memory, made durable by one writer thread with group
 * commit. The writer also writes the store-and-forward queue (saf.c).
 * Contract and crash semantics: include/tsw/state.h. */
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "state_int.h"
#include "tsw/error.h"
#include "tsw/harden.h"
#include "tsw/state.h"
#include "tsw/token.h"

enum {
	/* 2: SAF records carry the use their ack gives back; 3: and the
	 * put time (saf.c reads all three) */
	FORMAT_VERSION = 3,
	MAX_DBS = 4,
	DIR_MODE = 0700,
	FILE_MODE = 0600,
	/* a degraded writer commits the space-freeing updates in
	 * transactions of at most this many: each frees pages the next ones
	 * reuse, so a burst of acks never needs more than a bounded part of
	 * the reserve at once */
	FREEING_CHUNK = 256,
	/* a degraded writer's retry writes the held updates in order in
	 * transactions of at most this many: those that fit become durable
	 * while the rest waits for room, instead of all of them waiting
	 * until the whole held set fits in one transaction */
	RETRY_CHUNK = 16,
	/* room a map_full writer with nothing held wants before it calls
	 * itself healthy: a SAF record of the largest size */
	ROOM_PROBE_BYTES = TSW_STATE_SAF_MSG_MAX + 64,
};

#define DB_COUNTS "counts"
#define DB_SAF "saf"
#define DB_META "meta"
#define META_VERSION_KEY "version"
#define META_PROBE_KEY "room-probe" /* reserved in an aborted txn: never stored */
#define META_TICK_KEY "writer-tick" /* rewritten to age freed pages (commit_freeing) */

static const char *const health_names[TSW_STATE_HEALTH_MAX] = {
    [TSW_STATE_HEALTHY] = "ok",
    [TSW_STATE_MAP_FULL] = "map_full",
    [TSW_STATE_DISK_FULL] = "disk_full",
    [TSW_STATE_IO_ERROR] = "io_error",
};

/* Why an attempt to write failed, and how that degrades the writer. */
struct fail {
	uint8_t health; /* enum tsw_state_health */
	int error;	/* -errno */
	const char *detail;
};

/* The on-disk value of a token (native byte order: the file is local to
 * the host that writes it). */
struct record {
	uint32_t uses; /* used + reserved at the time of the write */
	uint32_t atc_epoch;
	uint32_t last_atc;
	/* the token cryptogram's last counter, with RECORD_TAVV_KEPT; a file
	 * of a build that kept it in last_atc has 0 here */
	uint32_t last_tavv;
};
#define RECORD_TAVV_KEPT 0x80000000u

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t mono_ms(void *arg)
{
	(void)arg;
	return mono_ns() / 1000000u;
}

uint64_t tsw_state_now_ms(const struct tsw_state *st)
{
	return st->clock_ms(st->clock_arg);
}

enum tsw_state_health tsw_state_health(const struct tsw_state *st, int *ret_error)
{
	unsigned h = atomic_load_explicit(&st->health, memory_order_acquire);

	if (ret_error)
		*ret_error = h == TSW_STATE_HEALTHY
				 ? 0
				 : atomic_load_explicit(&st->health_error, memory_order_relaxed);
	return (enum tsw_state_health)h;
}

bool tsw_state_degraded(const struct tsw_state *st)
{
	return atomic_load_explicit(&st->health, memory_order_relaxed) != TSW_STATE_HEALTHY;
}

const char *tsw_state_health_name(enum tsw_state_health h)
{
	if ((unsigned)h >= TSW_STATE_HEALTH_MAX)
		return "unknown";
	return health_names[h];
}

static int valid_token(const char *token, size_t len)
{
	if (token == NULL || len == 0 || len > TSW_TOKEN_MAX_DIGITS)
		return -TSW_E_BAD_INPUT;
	return 0;
}

static struct shard *shard_of(struct tsw_state *st, uint64_t h)
{
	return &st->shards[h & (SHARDS - 1)];
}

/* Finds token in its shard (locked by the caller); inserts it when create
 * is set. NULL when absent (create unset) or when the shard is full. */
static struct entry *find(struct tsw_state *st, struct shard *sh, uint64_t h, const char *token,
			  size_t len, bool create)
{
	uint32_t i = (uint32_t)(h >> SHARD_BITS) & sh->mask;

	for (;;) {
		struct entry *e = &sh->slots[i];

		if (e->key_len == 0) {
			if (!create || sh->count >= sh->max)
				return NULL;
			memcpy(e->key, token, len);
			e->key_len = (uint8_t)len;
			e->shard = (uint8_t)(sh - st->shards);
			sh->count++;
			count(&st->c.tokens);
			return e;
		}
		if (e->key_len == len && memcmp(e->key, token, len) == 0)
			return e;
		i = (i + 1) & sh->mask;
	}
}

/* Appends op to the ring; caller holds q_lock and has checked the room. */
static uint64_t push_locked(struct tsw_state *st, struct op op)
{
	op.seq = ++st->q_seq;
	st->q[(st->q_head + st->q_count) % st->q_cap] = op;
	st->q_count++;
	if (st->q_count == 1)
		pthread_cond_signal(&st->q_cond);
	return op.seq;
}

/* Queues e for the writer; caller holds e's shard lock. Returns the seq of
 * the update, or 0 when the queue is full. */
static uint64_t enqueue(struct tsw_state *st, struct entry *e)
{
	uint64_t seq = 0;

	pthread_mutex_lock(&st->q_lock);
	if (st->q_counts < st->counts_cap) {
		seq = push_locked(st, (struct op){.kind = OP_COUNTS,
						  .e = e,
						  .uses = e->used + e->reserved,
						  .atc_epoch = e->atc_epoch,
						  .last_atc = e->last_atc,
						  .last_tavv = e->last_tavv});
		st->q_counts++;
		atomic_store_explicit(&st->c.queue_len, st->q_counts, memory_order_relaxed);
	}
	pthread_mutex_unlock(&st->q_lock);
	if (seq == 0)
		count(&st->c.queue_full);
	return seq;
}

uint64_t state__enqueue_saf(struct tsw_state *st, enum op_kind kind, uint32_t slot)
{
	uint64_t seq;

	pthread_mutex_lock(&st->q_lock);
	/* room by construction: each slot has at most one put and one delete
	 * queued or in the writer's batch, and the ring holds 2 per slot on
	 * top of counts_cap */
	seq = push_locked(st, (struct op){.kind = (uint8_t)kind, .slot = slot});
	pthread_mutex_unlock(&st->q_lock);
	return seq;
}

static void wake_all(struct tsw_state *st)
{
	unsigned n = atomic_load_explicit(&st->n_wakers, memory_order_acquire);
	uint64_t one = 1;

	for (unsigned i = 0; i < n; i++) {
		ssize_t w = write(st->wakers[i], &one, sizeof(one));

		(void)w; /* EAGAIN: the counter is already non-zero, the worker wakes anyway */
	}
}

static void fail_set(struct fail *f, int mdb_rc)
{
	f->error = state_map_mdb(mdb_rc);
	if (mdb_rc == MDB_MAP_FULL)
		f->health = TSW_STATE_MAP_FULL;
	else if (mdb_rc == ENOSPC || mdb_rc == EDQUOT)
		f->health = TSW_STATE_DISK_FULL;
	else
		f->health = TSW_STATE_IO_ERROR;
	f->detail = mdb_rc < 0 ? mdb_strerror(mdb_rc) : tsw_strerror(mdb_rc);
}

/* A -errno from state__saf_write(), which maps LMDB's codes itself: -ENOSPC
 * from a put is the map (the disk is only written at commit). */
static void fail_mapped(struct fail *f, int err)
{
	if (err == -ENOSPC) {
		fail_set(f, MDB_MAP_FULL);
		return;
	}
	f->health = TSW_STATE_IO_ERROR;
	f->error = err;
	f->detail = tsw_strerror(err);
}

/* A group commit that began at t0 ended now: its time in the total and
 * in the histogram (writer thread only: the histogram's one writer). */
static void commit_timed(struct tsw_state *st, uint64_t t0)
{
	uint64_t ns = mono_ns() - t0;

	atomic_fetch_add_explicit(&st->c.commit_ns_total, ns, memory_order_relaxed);
	tsw_hist_add_ns(&st->commit_hist, ns);
}

/* One transaction for ops[0..n) (only the freeing ones with
 * freeing_only): SAF puts and deletes in order, then the latest values of
 * every entry named (each written once: the ops are walked from the end,
 * so the last values queued win), one commit. Returns 0 or a -errno and
 * fills *f. */
static int write_ops(struct tsw_state *st, const struct op *ops, uint32_t n, bool freeing_only,
		     struct fail *f)
{
	uint64_t batch_id = ++st->w.batch_id;
	uint64_t t0 = mono_ns();
	uint32_t written = 0;
	MDB_txn *txn;
	int rc;

	rc = mdb_txn_begin(st->env, NULL, 0, &txn);
	if (rc != 0)
		goto err_mdb;
	for (uint32_t i = 0; i < n; i++) {
		const struct op *op = &ops[i];

		if ((op->kind != OP_SAF_PUT && op->kind != OP_SAF_DEL) ||
		    (freeing_only && !op->freeing))
			continue;
		rc = state__saf_write(st, txn, op);
		if (rc != 0) {
			fail_mapped(f, rc);
			goto err_abort;
		}
		written++;
	}
	for (uint32_t i = n; i-- > 0;) {
		const struct op *op = &ops[i];
		struct entry *e = op->e;
		struct record rec = {.uses = op->uses,
				     .atc_epoch = op->atc_epoch,
				     .last_atc = op->last_atc,
				     .last_tavv = op->last_tavv | RECORD_TAVV_KEPT};
		MDB_val k, v;

		if (op->kind != OP_COUNTS || (freeing_only && !op->freeing) ||
		    e->written_batch == batch_id)
			continue;
		e->written_batch = batch_id;
		k.mv_data = e->key;
		k.mv_size = e->key_len;
		v.mv_data = &rec;
		v.mv_size = sizeof(rec);
		rc = mdb_put(txn, st->dbi_counts, &k, &v, 0);
		if (rc != 0) {
			fail_set(f, rc);
			goto err_abort;
		}
		written++;
	}
	rc = mdb_txn_commit(txn);
	if (rc != 0)
		goto err_mdb;
	atomic_fetch_add_explicit(&st->c.batch_ops, written, memory_order_relaxed);
	commit_timed(st, t0);
	count(&st->c.batches);
	return 0;

err_abort:
	mdb_txn_abort(txn);
	goto err_count;
err_mdb:
	fail_set(f, rc);
err_count:
	commit_timed(st, t0);
	count(&st->c.commit_errors);
	return f->error; /* the next attempt has a new batch_id: all is written again */
}

/* After the commit of ops[0..n) (only the freeing ones with
 * freeing_only): frees the slots of the deletes, notes the tokens now on
 * disk and turns each written op into OP_NONE. Returns the count updates
 * among them (they leave q_counts). */
static uint32_t committed(struct tsw_state *st, struct op *ops, uint32_t n, bool freeing_only)
{
	uint32_t counts = 0;

	/* with freeing_only every delete is among them: deletes are freeing */
	state__saf_committed(st, ops, n);
	for (uint32_t i = 0; i < n; i++) {
		struct op *op = &ops[i];

		if (op->kind == OP_NONE || (freeing_only && !op->freeing))
			continue;
		if (op->kind == OP_COUNTS) {
			op->e->on_disk = true;
			counts++;
		}
		op->kind = OP_NONE;
	}
	return counts;
}

/* Keeps reserve_bytes preallocated on disk past the end of the data, so
 * the space-freeing commits of a degraded writer find room on a full
 * filesystem (fallocate, file size unchanged: LMDB writes into it).
 * Returns 0, or a -errno and fills *f when the filesystem has no room for
 * it: that, not a failed commit, is how a full disk is noticed first,
 * while the reserve is still there. */
static int keep_room(struct tsw_state *st, struct fail *f)
{
	struct writer *w = &st->w;
	MDB_envinfo info;
	uint64_t need;
	int fd, err;

	if (w->no_alloc || w->reserve_bytes == 0)
		return 0;
	if (mdb_env_info(st->env, &info) != 0 || mdb_env_get_fd(st->env, &fd) != 0)
		return 0;
	need = ((uint64_t)info.me_last_pgno + 1) * w->psize + w->reserve_bytes;
	if (need <= w->alloc_end)
		return 0;
	if (fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)need) == 0) {
		w->alloc_end = need;
		return 0;
	}
	err = errno;
	if (err == EOPNOTSUPP || err == ENOSYS || err == EINVAL) {
		w->no_alloc = true; /* the reserve is left to chance there */
		return 0;
	}
	if (err == EINTR)
		return 0; /* tried again after the next commit */
	fail_set(f, err);
	return -err;
}

/* The test of a map_full writer with nothing held: does the largest SAF
 * record fit? A reservation in a transaction that is aborted: nothing is
 * written. Returns 0 or a -errno and fills *f. */
static int map_room(struct tsw_state *st, struct fail *f)
{
	MDB_val k = {sizeof(META_PROBE_KEY) - 1, (void *)META_PROBE_KEY};
	MDB_val v = {ROOM_PROBE_BYTES, NULL};
	MDB_txn *txn;
	int rc;

	rc = mdb_txn_begin(st->env, NULL, 0, &txn);
	if (rc == 0) {
		rc = mdb_put(txn, st->dbi_meta, &k, &v, MDB_RESERVE);
		mdb_txn_abort(txn);
	}
	if (rc != 0) {
		fail_set(f, rc);
		return f->error;
	}
	return 0;
}

/* Space-freeing commits may use reserve_bytes beyond the configured map;
 * everything else sees the configured size (LMDB rounds it up to what the
 * file already uses: growth then only reuses freed pages). Called with no
 * transaction open. */
static void raise_map(struct tsw_state *st, bool raised)
{
	struct writer *w = &st->w;

	if (w->map_raised == raised || w->reserve_bytes == 0)
		return;
	if (mdb_env_set_mapsize(st->env, w->map_bytes + (raised ? w->reserve_bytes : 0)) == 0)
		w->map_raised = raised;
}

static void emit(struct tsw_state *st, enum tsw_state_event_kind kind, const struct fail *f)
{
	struct writer *w = &st->w;
	struct tsw_state_event ev = {
	    .kind = (uint8_t)kind,
	    .health = w->health,
	    .held = w->n_held,
	};

	if (!w->on_event)
		return;
	if (f) {
		ev.error = f->error;
		snprintf(ev.detail, sizeof(ev.detail), "%s", f->detail ? f->detail : "");
	}
	if (kind == TSW_STATE_EV_RECOVERED)
		ev.degraded_ms = (mono_ns() - w->degraded_ns) / 1000000u;
	w->on_event(w->event_arg, &ev);
}

/* An attempt at the held updates failed (or healthy ones did): degraded,
 * the next attempt after the backoff. An event on each change of reason. */
static void degrade(struct tsw_state *st, const struct fail *f)
{
	struct writer *w = &st->w;
	uint64_t now = mono_ns();

	if (w->health == TSW_STATE_HEALTHY) {
		w->degraded_ns = now;
		w->backoff_ms = TSW_STATE_RETRY_MS;
		count(&st->c.writer_degraded);
	} else {
		w->backoff_ms =
		    w->backoff_ms * 2 < w->retry_max_ms ? w->backoff_ms * 2 : w->retry_max_ms;
	}
	w->retry_at_ns = now + (uint64_t)w->backoff_ms * 1000000u;
	if (w->health == f->health)
		return;
	w->health = f->health;
	atomic_store_explicit(&st->health_error, f->error, memory_order_relaxed);
	atomic_store_explicit(&st->health, f->health, memory_order_release);
	emit(st, TSW_STATE_EV_DEGRADED, f);
}

static void recover(struct tsw_state *st)
{
	struct writer *w = &st->w;

	w->health = TSW_STATE_HEALTHY;
	atomic_store_explicit(&st->health, TSW_STATE_HEALTHY, memory_order_release);
	atomic_store_explicit(&st->health_error, 0, memory_order_relaxed);
	emit(st, TSW_STATE_EV_RECOVERED, NULL);
}

/* Degraded: which of ops[0..n) may be committed without the growth that
 * failed. Deletes free space; count updates of a token already on disk
 * overwrite 16 bytes in place. SAF puts and a token's first counts grow
 * the file: held. A held put whose item was acked since is dropped
 * (OP_NONE): its delete follows it, and nothing of it is on disk. */
static void classify(struct tsw_state *st, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		struct op *op = &st->batch[i];

		switch (op->kind) {
		case OP_SAF_DEL:
			op->freeing = true;
			break;
		case OP_SAF_PUT:
			if (state__saf_acked(st, op->slot))
				op->kind = OP_NONE;
			op->freeing = false;
			break;
		case OP_COUNTS:
			op->freeing = op->e->on_disk;
			break;
		default:
			break;
		}
	}
}

/* LMDB reuses the pages a transaction freed only from the second
 * transaction after it on (the one right after it may still be read from
 * the snapshot before): one small commit, in the reserve, makes what the
 * freeing commits just freed usable by the next retry. Without it a
 * retry that follows the last freeing commit finds no room however much
 * was freed, and nothing else may ever commit. */
static void age_freed_pages(struct tsw_state *st)
{
	uint64_t tick = st->w.batch_id;
	MDB_val k = {sizeof(META_TICK_KEY) - 1, (void *)META_TICK_KEY};
	MDB_val v = {sizeof(tick), &tick};
	MDB_txn *txn;

	if (mdb_txn_begin(st->env, NULL, 0, &txn) != 0)
		return;
	if (mdb_put(txn, st->dbi_meta, &k, &v, 0) != 0) {
		mdb_txn_abort(txn);
		return;
	}
	mdb_txn_commit(txn); /* frees txn; a failure leaves the pages for later */
}

/* Degraded: commits the freeing ops of batch[0..n), in order, in
 * transactions of at most FREEING_CHUNK, until one fails. Returns the
 * count updates written. */
static uint32_t commit_freeing(struct tsw_state *st, uint32_t n)
{
	uint32_t counts = 0, lo = 0;

	raise_map(st, true);
	while (lo < n) {
		uint32_t hi = lo, k = 0;
		struct fail f;

		for (; hi < n && k < FREEING_CHUNK; hi++)
			k += st->batch[hi].kind != OP_NONE && st->batch[hi].freeing;
		if (k == 0)
			break;
		if (write_ops(st, st->batch + lo, hi - lo, true, &f) < 0)
			break; /* retried with the rest on the next round */
		count(&st->c.freeing_commits);
		counts += committed(st, st->batch + lo, hi - lo, true);
		lo = hi;
	}
	if (lo > 0)
		age_freed_pages(st);
	raise_map(st, false);
	return counts;
}

/* A degraded writer's retry: batch[0..n) in order, in transactions of
 * at most RETRY_CHUNK updates, as far as they fit. Returns 0 when every
 * op was written, else the -errno of the chunk that failed (*f filled);
 * *ret_counts grows by the count updates written. */
static int write_prefix(struct tsw_state *st, uint32_t n, uint32_t *ret_counts, struct fail *f)
{
	uint32_t lo = 0;

	while (lo < n) {
		uint32_t hi = lo, k = 0;
		int rc;

		for (; hi < n && k < RETRY_CHUNK; hi++)
			k += st->batch[hi].kind != OP_NONE;
		if (k == 0)
			break;
		rc = write_ops(st, st->batch + lo, hi - lo, false, f);
		if (rc < 0)
			return rc;
		*ret_counts += committed(st, st->batch + lo, hi - lo, false);
		lo = hi;
	}
	return 0;
}

/* Drops the ops written (OP_NONE), keeping the order of the others;
 * returns how many are held. */
static uint32_t compact(struct tsw_state *st, uint32_t n)
{
	uint32_t m = 0;

	for (uint32_t i = 0; i < n; i++)
		if (st->batch[i].kind != OP_NONE)
			st->batch[m++] = st->batch[i];
	return m;
}

/* One round of the writer over batch[0..n) (held ops first, then those
 * just taken from the ring; last_seq: the newest of them). Healthy:
 * everything in one transaction. When a degraded writer's retry is due:
 * everything in order, chunk by chunk, as far as it fits (write_prefix).
 * Degraded: the space-freeing part alone, the rest held for the next
 * retry. */
static void write_round(struct tsw_state *st, uint32_t n, uint64_t last_seq, bool retry)
{
	struct writer *w = &st->w;
	uint32_t done = 0; /* count updates written */
	uint64_t durable;
	struct fail f;
	int rc;

	if (w->health == TSW_STATE_HEALTHY || retry) {
		/* never grow into the reserve: with the disk short of it the
		 * growth waits (the freeing commits below still have it) */
		rc = keep_room(st, &f);
		if (rc == 0 && n > 0 && w->health == TSW_STATE_HEALTHY) {
			rc = write_ops(st, st->batch, n, false, &f);
			if (rc == 0)
				done += committed(st, st->batch, n, false);
		} else if (rc == 0 && n > 0) {
			rc = write_prefix(st, n, &done, &f);
		} else if (rc == 0 && w->health == TSW_STATE_MAP_FULL) {
			rc = map_room(st, &f); /* nothing held: is there room again? */
		}
		if (rc == 0) {
			if (n > atomic_load_explicit(&st->c.batch_max, memory_order_relaxed))
				atomic_store_explicit(&st->c.batch_max, n, memory_order_relaxed);
			rc = keep_room(st, &f); /* the disk filled up behind it */
		}
		if (rc == 0 && w->health != TSW_STATE_HEALTHY) {
			w->n_held = 0;
			recover(st);
		} else if (rc < 0) {
			degrade(st, &f);
		}
	}
	if (w->health != TSW_STATE_HEALTHY) {
		classify(st, n);
		done += commit_freeing(st, n);
	}
	w->n_held = compact(st, n);

	pthread_mutex_lock(&st->q_lock);
	st->q_counts -= done;
	atomic_store_explicit(&st->c.queue_len, st->q_counts, memory_order_relaxed);
	pthread_mutex_unlock(&st->q_lock);
	atomic_store_explicit(&st->c.writer_held, w->n_held, memory_order_relaxed);

	/* every update before the oldest held one is on disk (held ops keep
	 * seq order: they are a subsequence of the ring's order) */
	durable = w->n_held ? st->batch[0].seq - 1 : last_seq;
	if (durable > atomic_load_explicit(&st->committed_seq, memory_order_relaxed))
		atomic_store_explicit(&st->committed_seq, durable, memory_order_release);
	wake_all(st);
}

/* Takes every queued op after the held ones; caller holds q_lock. The
 * ring's count updates stay in q_counts until written. */
static uint32_t drain_locked(struct tsw_state *st)
{
	uint32_t held = st->w.n_held, k = st->q_count;

	for (uint32_t i = 0; i < k; i++)
		st->batch[held + i] = st->q[(st->q_head + i) % st->q_cap];
	st->q_head = (st->q_head + k) % st->q_cap;
	st->q_count = 0;
	return held + k;
}

static void *writer_main(void *arg)
{
	struct tsw_state *st = arg;
	struct writer *w = &st->w;
	struct sched_param sp = {0};
	struct fail f;

	/* SCHED_BATCH: waking the writer (an op queued, an fsync done) never
	 * preempts a worker on the same core; it runs when that worker waits
	 * or its time slice ends. A reservation waits a little longer under
	 * full load (well inside the park timeout) and the worker keeps its
	 * core: 2-3x fewer context switches at depth 8 (docs/decisions.md). May
	 * fail under a seccomp policy: the writer then runs SCHED_OTHER. */
	(void)pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp);

	if (keep_room(st, &f) < 0)
		degrade(st, &f); /* opened on a full disk */
	for (;;) {
		uint64_t last_seq;
		bool stopping, retry;
		uint32_t n;

		pthread_mutex_lock(&st->q_lock);
		while (st->q_count == 0 && !st->q_stop) {
			struct timespec until;

			if (w->health == TSW_STATE_HEALTHY) {
				pthread_cond_wait(&st->q_cond, &st->q_lock);
				continue;
			}
			if (mono_ns() >= w->retry_at_ns)
				break;
			until.tv_sec = (time_t)(w->retry_at_ns / 1000000000u);
			until.tv_nsec = (long)(w->retry_at_ns % 1000000000u);
			pthread_cond_timedwait(&st->q_cond, &st->q_lock, &until);
		}
		stopping = st->q_stop;
		n = drain_locked(st);
		last_seq = st->q_seq;
		pthread_mutex_unlock(&st->q_lock);
		if (n == 0 && stopping)
			break;

		/* a degraded writer woken by new ops (acks) commits what frees
		 * space at once and retries the rest on its backoff; closing,
		 * everything gets one last try */
		retry = stopping || mono_ns() >= w->retry_at_ns;
		write_round(st, n, last_seq, retry);
		if (stopping && w->n_held > 0) {
			emit(st, TSW_STATE_EV_UNWRITTEN, NULL);
			break;
		}
	}
	return NULL;
}

static uint64_t hash_of(const char *token, size_t len)
{
	return XXH3_64bits(token, len);
}

static int check_version(MDB_txn *txn, MDB_dbi meta)
{
	uint32_t version = FORMAT_VERSION;
	MDB_val k = {sizeof(META_VERSION_KEY) - 1, (void *)META_VERSION_KEY};
	MDB_val v;
	int rc;

	rc = mdb_get(txn, meta, &k, &v);
	if (rc == MDB_NOTFOUND) {
		v.mv_data = &version;
		v.mv_size = sizeof(version);
		return state_map_mdb(mdb_put(txn, meta, &k, &v, 0));
	}
	if (rc != 0)
		return state_map_mdb(rc);
	if (v.mv_size != sizeof(version))
		return -TSW_E_CORRUPT;
	memcpy(&version, v.mv_data, sizeof(version));
	if (version > FORMAT_VERSION)
		return -TSW_E_VERSION;
	if (version < FORMAT_VERSION) {
		/* this build reads the older records and writes newer ones:
		 * an older build must refuse the file from now on */
		version = FORMAT_VERSION;
		v.mv_data = &version;
		v.mv_size = sizeof(version);
		return state_map_mdb(mdb_put(txn, meta, &k, &v, 0));
	}
	return 0;
}

static int load_counts(struct tsw_state *st, MDB_txn *txn)
{
	MDB_cursor *cur;
	MDB_val k, v;
	int rc;

	rc = mdb_cursor_open(txn, st->dbi_counts, &cur);
	if (rc != 0)
		return state_map_mdb(rc);
	while ((rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
		struct record rec;
		struct entry *e;
		struct shard *sh;
		uint64_t h;

		if (v.mv_size != sizeof(rec) || k.mv_size == 0 ||
		    k.mv_size > TSW_TOKEN_MAX_DIGITS) {
			rc = -TSW_E_CORRUPT;
			goto out;
		}
		memcpy(&rec, v.mv_data, sizeof(rec));
		h = hash_of(k.mv_data, k.mv_size);
		sh = shard_of(st, h);
		e = find(st, sh, h, k.mv_data, k.mv_size, true);
		if (e == NULL) {
			rc = -ENOSPC;
			goto out;
		}
		e->used = rec.uses;
		e->atc_epoch = rec.atc_epoch;
		e->last_atc = rec.last_atc;
		/* before the two were kept apart the token cryptogram's
		 * counters went to last_atc: its floor, so none is good twice */
		e->last_tavv = rec.last_tavv & RECORD_TAVV_KEPT ? rec.last_tavv & ~RECORD_TAVV_KEPT
								: rec.last_atc;
		e->on_disk = true;
	}
	rc = rc == MDB_NOTFOUND ? 0 : state_map_mdb(rc);
out:
	mdb_cursor_close(cur);
	return rc;
}

static uint32_t pow2_at_least(uint64_t n)
{
	uint32_t p = 1;

	while (p < n)
		p <<= 1;
	return p;
}

static int open_env(struct tsw_state *st, const char *dir, uint32_t map_size_mb,
		    size_t *ret_entries, size_t *ret_saf_entries)
{
	MDB_txn *txn;
	MDB_dbi meta;
	MDB_stat ms, ms_saf, env_stat;
	int rc;

	if (mkdir(dir, DIR_MODE) < 0 && errno != EEXIST)
		return -errno;
	/* nobody else may edit the counts or the reversals owed */
	rc = tsw_harden_check_env_dir(dir, NULL, 0);
	if (rc < 0)
		return rc;
	rc = mdb_env_create(&st->env);
	if (rc != 0)
		return state_map_mdb(rc);
	rc = mdb_env_set_maxdbs(st->env, MAX_DBS);
	if (rc == 0)
		rc = mdb_env_set_mapsize(st->env, (size_t)map_size_mb << 20);
	if (rc == 0)
		rc = mdb_env_open(st->env, dir, MDB_NOTLS, FILE_MODE);
	if (rc == 0)
		rc = mdb_env_stat(st->env, &env_stat);
	if (rc != 0)
		goto err_close;
	st->w.psize = env_stat.ms_psize;
	rc = mdb_txn_begin(st->env, NULL, 0, &txn);
	if (rc != 0)
		goto err_close;
	rc = mdb_dbi_open(txn, DB_META, MDB_CREATE, &meta);
	if (rc == 0)
		rc = mdb_dbi_open(txn, DB_COUNTS, MDB_CREATE, &st->dbi_counts);
	if (rc == 0)
		rc = mdb_dbi_open(txn, DB_SAF, MDB_CREATE, &st->dbi_saf);
	if (rc != 0) {
		mdb_txn_abort(txn);
		goto err_close;
	}
	rc = check_version(txn, meta);
	if (rc == 0)
		rc = state_map_mdb(mdb_stat(txn, st->dbi_counts, &ms));
	if (rc == 0)
		rc = state_map_mdb(mdb_stat(txn, st->dbi_saf, &ms_saf));
	if (rc != 0) {
		mdb_txn_abort(txn);
		mdb_env_close(st->env);
		st->env = NULL;
		return rc;
	}
	rc = mdb_txn_commit(txn);
	if (rc != 0)
		goto err_close;
	st->dbi_meta = meta;
	*ret_entries = ms.ms_entries;
	*ret_saf_entries = ms_saf.ms_entries;
	return 0;

err_close:
	mdb_env_close(st->env);
	st->env = NULL;
	return state_map_mdb(rc);
}

static int alloc_tables(struct tsw_state *st, uint64_t tokens, uint32_t queue_size,
			uint32_t max_res, uint32_t saf_slots)
{
	uint32_t slots;

	/* room for an uneven spread: a quarter more than the mean, plus a margin */
	st->per_shard_max = (uint32_t)(tokens / SHARDS + tokens / (SHARDS * 4) + 64);
	slots = pow2_at_least((uint64_t)st->per_shard_max * 4 / 3 + 1);
	for (unsigned i = 0; i < SHARDS; i++) {
		struct shard *sh = &st->shards[i];

		sh->slots = calloc(slots, sizeof(*sh->slots));
		if (sh->slots == NULL)
			return -ENOMEM;
		sh->mask = slots - 1;
		sh->max = st->per_shard_max;
	}
	st->counts_cap = queue_size;
	st->q_cap = queue_size + 2 * saf_slots;
	st->q = calloc(st->q_cap, sizeof(*st->q));
	st->batch = calloc(st->q_cap, sizeof(*st->batch));
	st->res_cap = max_res;
	st->res = calloc(max_res, sizeof(*st->res));
	if (st->q == NULL || st->batch == NULL || st->res == NULL)
		return -ENOMEM;
	for (uint32_t i = 0; i < max_res; i++)
		st->res[i].next_free = i + 1;
	st->res_free = 0;
	return 0;
}

static void free_tables(struct tsw_state *st)
{
	for (unsigned i = 0; i < SHARDS; i++) {
		free(st->shards[i].slots);
		pthread_mutex_destroy(&st->shards[i].lock);
	}
	free(st->q);
	free(st->batch);
	free(st->res);
	state__saf_destroy(st);
	pthread_mutex_destroy(&st->q_lock);
	pthread_cond_destroy(&st->q_cond);
	pthread_mutex_destroy(&st->res_lock);
	pthread_mutex_destroy(&st->wakers_lock);
}

/* c: cfg (NULL: all defaults) with each unset key at its default. */
static int config_with_defaults(const struct tsw_state_config *cfg, struct tsw_state_config *c)
{
	*c = (struct tsw_state_config){0};
	if (cfg != NULL)
		*c = *cfg;
	if (c->queue_size == 0)
		c->queue_size = TSW_STATE_QUEUE_SIZE_DEFAULT;
	if (c->max_tokens == 0)
		c->max_tokens = TSW_STATE_MAX_TOKENS_DEFAULT;
	if (c->max_reservations == 0)
		c->max_reservations = TSW_STATE_MAX_RESERVATIONS_DEFAULT;
	if (c->map_size_mb == 0)
		c->map_size_mb = TSW_STATE_MAP_SIZE_MB_DEFAULT;
	if (c->saf_max_entries == 0)
		c->saf_max_entries = TSW_STATE_SAF_MAX_ENTRIES_DEFAULT;
	if (c->saf_lease_ms == 0)
		c->saf_lease_ms = TSW_STATE_SAF_LEASE_MS_DEFAULT;
	if (c->clock_ms == NULL) {
		c->clock_ms = mono_ms;
		c->clock_arg = NULL;
	}
	if (c->reserve_kb == 0)
		c->reserve_kb = TSW_STATE_RESERVE_KB_DEFAULT;
	if (c->retry_max_ms < TSW_STATE_RETRY_MS)
		c->retry_max_ms =
		    c->retry_max_ms == 0 ? TSW_STATE_RETRY_MAX_MS_DEFAULT : TSW_STATE_RETRY_MS;
	if (c->max_reservations > TSW_STATE_MAX_RESERVATIONS_LIMIT ||
	    c->saf_max_entries > TSW_STATE_SAF_MAX_ENTRIES_LIMIT)
		return -TSW_E_BAD_INPUT;
	return 0;
}

/* A state with its locks and the writer's settings from c; nothing
 * opened yet. NULL when out of memory. */
static struct tsw_state *state_new(const struct tsw_state_config *c)
{
	pthread_condattr_t cattr;
	struct tsw_state *st;

	st = calloc(1, sizeof(*st));
	if (st == NULL)
		return NULL;
	for (unsigned i = 0; i < SHARDS; i++)
		pthread_mutex_init(&st->shards[i].lock, NULL);
	pthread_mutex_init(&st->q_lock, NULL);
	/* the degraded writer's retry waits on the monotonic clock */
	pthread_condattr_init(&cattr);
	pthread_condattr_setclock(&cattr, CLOCK_MONOTONIC);
	pthread_cond_init(&st->q_cond, &cattr);
	pthread_condattr_destroy(&cattr);
	pthread_mutex_init(&st->res_lock, NULL);
	pthread_mutex_init(&st->wakers_lock, NULL);
	pthread_mutex_init(&st->saf.lock, NULL);
	st->clock_ms = c->clock_ms;
	st->clock_arg = c->clock_arg;
	st->w.map_bytes = (size_t)c->map_size_mb << 20;
	st->w.reserve_bytes = (size_t)c->reserve_kb << 10;
	st->w.retry_max_ms = c->retry_max_ms;
	st->w.on_event = c->on_event;
	st->w.event_arg = c->event_arg;
	return st;
}

/* Reads the counts and the SAF queue on disk into the tables. */
static int load_all(struct tsw_state *st)
{
	MDB_txn *txn;
	int rc;

	rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn);
	if (rc != 0)
		return state_map_mdb(rc);
	rc = load_counts(st, txn);
	if (rc == 0)
		rc = state__saf_load(st, txn);
	mdb_txn_abort(txn);
	return rc;
}

int tsw_state_open(const char *dir, const struct tsw_state_config *cfg,
		   struct tsw_state **ret_state)
{
	struct tsw_state_config c;
	struct tsw_state *st;
	size_t loaded = 0, saf_loaded = 0;
	int rc;

	rc = config_with_defaults(cfg, &c);
	if (rc < 0)
		return rc;
	st = state_new(&c);
	if (st == NULL)
		return -ENOMEM;
	rc = open_env(st, dir, c.map_size_mb, &loaded, &saf_loaded);
	if (rc < 0)
		goto err_free;
	rc = state__saf_init(st, c.saf_max_entries, c.saf_lease_ms, saf_loaded);
	if (rc < 0)
		goto err_env;
	rc = alloc_tables(st, (uint64_t)c.max_tokens + loaded, c.queue_size, c.max_reservations,
			  st->saf.n_slots);
	if (rc < 0)
		goto err_env;
	rc = load_all(st);
	if (rc < 0)
		goto err_env;
	/* what was loaded is on disk: its ids are durable */
	atomic_store_explicit(&st->committed_seq, st->q_seq, memory_order_release);

	rc = -pthread_create(&st->writer, NULL, writer_main, st);
	if (rc < 0)
		goto err_env;
	*ret_state = st;
	return 0;

err_env:
	mdb_env_close(st->env);
err_free:
	free_tables(st);
	free(st);
	return rc;
}

void tsw_state_close(struct tsw_state *st)
{
	if (st == NULL)
		return;
	pthread_mutex_lock(&st->q_lock);
	st->q_stop = true;
	pthread_cond_signal(&st->q_cond);
	pthread_mutex_unlock(&st->q_lock);
	pthread_join(st->writer, NULL);
	mdb_env_close(st->env);
	free_tables(st);
	free(st);
}

int tsw_state_add_waker(struct tsw_state *st, int eventfd)
{
	unsigned n;
	int rc = 0;

	if (eventfd < 0)
		return -EBADF;
	pthread_mutex_lock(&st->wakers_lock);
	n = atomic_load_explicit(&st->n_wakers, memory_order_relaxed);
	if (n >= TSW_STATE_WAKERS_MAX) {
		rc = -TSW_E_FULL;
	} else {
		st->wakers[n] = eventfd;
		atomic_store_explicit(&st->n_wakers, n + 1, memory_order_release);
	}
	pthread_mutex_unlock(&st->wakers_lock);
	return rc;
}

static int ticket_alloc(struct tsw_state *st, uint32_t *ret_slot)
{
	int rc = 0;

	pthread_mutex_lock(&st->res_lock);
	if (st->res_free >= st->res_cap) {
		rc = -EAGAIN;
	} else {
		*ret_slot = st->res_free;
		st->res_free = st->res[*ret_slot].next_free;
		st->res_used++;
		count(&st->c.reservations);
	}
	pthread_mutex_unlock(&st->res_lock);
	return rc;
}

static void ticket_free_locked(struct tsw_state *st, uint32_t slot)
{
	st->res[slot].live = false;
	st->res[slot].e = NULL;
	st->res[slot].next_free = st->res_free;
	st->res_free = slot;
	st->res_used--;
	atomic_fetch_sub_explicit(&st->c.reservations, 1, memory_order_relaxed);
}

static void ticket_free(struct tsw_state *st, uint32_t slot)
{
	pthread_mutex_lock(&st->res_lock);
	ticket_free_locked(st, slot);
	pthread_mutex_unlock(&st->res_lock);
}

/* Locks the shard of token (already validated) and finds its entry,
 * inserting it with create. The shard stays locked (*ret_shard) whether
 * or not an entry comes back (NULL: absent, or the shard full). */
static struct entry *lock_find(struct tsw_state *st, const char *token, size_t len, bool create,
			       struct shard **ret_shard)
{
	uint64_t h = hash_of(token, len);
	struct shard *sh = shard_of(st, h);

	pthread_mutex_lock(&sh->lock);
	*ret_shard = sh;
	return find(st, sh, h, token, len, create);
}

int tsw_state_reserve(struct tsw_state *st, const char *token, size_t len, uint32_t max_uses,
		      uint64_t *ret_ticket)
{
	uint64_t seq;
	struct shard *sh;
	struct entry *e;
	uint32_t slot;
	int rc;

	rc = valid_token(token, len);
	if (rc < 0 || max_uses == 0)
		return -TSW_E_BAD_INPUT;
	if (tsw_state_degraded(st)) {
		/* the use could not be made durable: refused at once rather
		 * than parked until the request's timeout */
		count(&st->c.reserve_refused);
		return -ENOSPC;
	}
	rc = ticket_alloc(st, &slot);
	if (rc < 0) {
		count(&st->c.tickets_full);
		return rc;
	}
	e = lock_find(st, token, len, true, &sh);
	if (e == NULL) {
		pthread_mutex_unlock(&sh->lock);
		count(&st->c.table_full);
		rc = -ENOSPC;
		goto err_ticket;
	}
	if ((uint64_t)e->used + e->reserved >= max_uses) {
		pthread_mutex_unlock(&sh->lock);
		count(&st->c.reserve_exhausted);
		rc = -TSW_E_FULL;
		goto err_ticket;
	}
	e->reserved++;
	seq = enqueue(st, e);
	if (seq == 0) {
		e->reserved--;
		pthread_mutex_unlock(&sh->lock);
		rc = -EAGAIN;
		goto err_ticket;
	}
	pthread_mutex_unlock(&sh->lock);

	pthread_mutex_lock(&st->res_lock);
	st->res[slot].e = e;
	st->res[slot].seq = seq;
	st->res[slot].live = true;
	pthread_mutex_unlock(&st->res_lock);
	count(&st->c.reserve_ok);
	*ret_ticket = seq << TICKET_SLOT_BITS | slot;
	return 0;

err_ticket:
	ticket_free(st, slot);
	return rc;
}

bool tsw_state_durable(const struct tsw_state *st, uint64_t ticket)
{
	uint64_t seq = ticket >> TICKET_SLOT_BITS;

	return seq != 0 && atomic_load_explicit(&st->committed_seq, memory_order_acquire) >= seq;
}

/* Takes the reservation of ticket out of the table; NULL when the ticket
 * is unknown or already resolved. */
static struct entry *ticket_take(struct tsw_state *st, uint64_t ticket)
{
	uint32_t slot = (uint32_t)(ticket & ((1u << TICKET_SLOT_BITS) - 1));
	uint64_t seq = ticket >> TICKET_SLOT_BITS;
	struct entry *e = NULL;

	if (slot >= st->res_cap)
		return NULL;
	pthread_mutex_lock(&st->res_lock);
	if (st->res[slot].live && st->res[slot].seq == seq) {
		e = st->res[slot].e;
		ticket_free_locked(st, slot);
	}
	pthread_mutex_unlock(&st->res_lock);
	return e;
}

int tsw_state_commit_use(struct tsw_state *st, uint64_t ticket)
{
	struct entry *e = ticket_take(st, ticket);
	struct shard *sh;

	if (e == NULL)
		return -TSW_E_NOT_FOUND;
	sh = &st->shards[e->shard];
	pthread_mutex_lock(&sh->lock);
	e->reserved--;
	e->used++;
	pthread_mutex_unlock(&sh->lock);
	count(&st->c.commits);
	return 0;
}

int tsw_state_release(struct tsw_state *st, uint64_t ticket)
{
	struct entry *e = ticket_take(st, ticket);
	struct shard *sh;
	uint64_t seq;

	if (e == NULL)
		return -TSW_E_NOT_FOUND;
	sh = &st->shards[e->shard];
	pthread_mutex_lock(&sh->lock);
	e->reserved--;
	seq = enqueue(st, e);
	pthread_mutex_unlock(&sh->lock);
	if (seq == 0)
		count(&st->c.release_unqueued);
	count(&st->c.releases);
	return 0;
}

int tsw_state_return_use(struct tsw_state *st, const char *token, size_t len)
{
	struct shard *sh;
	struct entry *e;
	int rc;

	rc = valid_token(token, len);
	if (rc < 0)
		return rc;
	e = lock_find(st, token, len, false, &sh);
	if (e == NULL || e->used == 0) {
		/* never below 0: nothing committed to give back */
		pthread_mutex_unlock(&sh->lock);
		return -TSW_E_NOT_FOUND;
	}
	e->used--;
	if (enqueue(st, e) == 0) {
		e->used++;
		pthread_mutex_unlock(&sh->lock);
		return -EAGAIN;
	}
	pthread_mutex_unlock(&sh->lock);
	count(&st->c.uses_returned);
	return 0;
}

/* The replay check of a counter: the ATC (tavv false: under atc_epoch, a
 * newer epoch starts again from 0) or the token cryptogram's (never
 * reset). */
static int counter_check(struct tsw_state *st, const char *token, size_t len, bool tavv,
			 uint32_t atc_epoch, uint32_t value, uint32_t window, uint64_t *ret_ticket)
{
	uint32_t last, old_epoch, old_last;
	struct shard *sh;
	struct entry *e;
	uint64_t seq;
	int rc;

	rc = valid_token(token, len);
	if (rc < 0)
		return rc;
	if (tsw_state_degraded(st)) {
		/* the counter could not be made durable: refused at once, as
		 * a reservation is */
		count(&st->c.atc_refused);
		return -ENOSPC;
	}
	e = lock_find(st, token, len, true, &sh);
	if (e == NULL) {
		pthread_mutex_unlock(&sh->lock);
		count(&st->c.table_full);
		return -ENOSPC;
	}
	old_epoch = e->atc_epoch;
	old_last = tavv ? e->last_tavv : e->last_atc;
	/* a newer epoch (repersonalized card) starts the ATC again from 0 */
	last = !tavv && atc_epoch > old_epoch ? 0 : old_last;
	if ((!tavv && atc_epoch < old_epoch) || value <= last) {
		pthread_mutex_unlock(&sh->lock);
		count(&st->c.atc_replayed);
		return -TSW_E_EXISTS;
	}
	if (window && value - last > window) {
		pthread_mutex_unlock(&sh->lock);
		count(&st->c.atc_window);
		return -TSW_E_ATC_WINDOW;
	}
	if (tavv) {
		e->last_tavv = value;
	} else {
		e->atc_epoch = atc_epoch;
		e->last_atc = value;
	}
	seq = enqueue(st, e);
	if (seq == 0) {
		e->atc_epoch = old_epoch;
		if (tavv)
			e->last_tavv = old_last;
		else
			e->last_atc = old_last;
		pthread_mutex_unlock(&sh->lock);
		return -EAGAIN;
	}
	pthread_mutex_unlock(&sh->lock);
	count(&st->c.atc_ok);
	if (ret_ticket)
		*ret_ticket = seq << TICKET_SLOT_BITS; /* slot 0 of no reservation */
	return 0;
}

int tsw_state_atc_check(struct tsw_state *st, const char *token, size_t len, uint32_t atc_epoch,
			uint32_t atc, uint32_t window, uint64_t *ret_ticket)
{
	return counter_check(st, token, len, false, atc_epoch, atc, window, ret_ticket);
}

int tsw_state_tavv_check(struct tsw_state *st, const char *token, size_t len, uint32_t counter,
			 uint32_t window, uint64_t *ret_ticket)
{
	return counter_check(st, token, len, true, 0, counter, window, ret_ticket);
}

int tsw_state_get(struct tsw_state *st, const char *token, size_t len, struct tsw_state_token *ret)
{
	struct shard *sh;
	struct entry *e;
	int rc;

	rc = valid_token(token, len);
	if (rc < 0)
		return rc;
	e = lock_find(st, token, len, false, &sh);
	if (e != NULL) {
		ret->used = e->used;
		ret->reserved = e->reserved;
		ret->atc_epoch = e->atc_epoch;
		ret->last_atc = e->last_atc;
		ret->last_tavv = e->last_tavv;
	}
	pthread_mutex_unlock(&sh->lock);
	return e != NULL ? 0 : -TSW_E_NOT_FOUND;
}

void tsw_state_stats(const struct tsw_state *st, struct tsw_state_stats *ret)
{
	const struct counters *c = &st->c;

	memset(ret, 0, sizeof(*ret));
#define LOAD(x) atomic_load_explicit(&c->x, memory_order_relaxed)
	ret->queue_len = LOAD(queue_len);
	ret->tokens = LOAD(tokens);
	ret->reservations = LOAD(reservations);
	ret->queue_cap = st->counts_cap;
	ret->saf_cap = st->saf.max_entries;
	ret->queue_full = LOAD(queue_full);
	ret->table_full = LOAD(table_full);
	ret->tickets_full = LOAD(tickets_full);
	ret->reserve_ok = LOAD(reserve_ok);
	ret->reserve_exhausted = LOAD(reserve_exhausted);
	ret->commits = LOAD(commits);
	ret->releases = LOAD(releases);
	ret->release_unqueued = LOAD(release_unqueued);
	ret->uses_returned = LOAD(uses_returned);
	ret->atc_ok = LOAD(atc_ok);
	ret->atc_replayed = LOAD(atc_replayed);
	ret->atc_window = LOAD(atc_window);
	ret->atc_refused = LOAD(atc_refused);
	ret->batches = LOAD(batches);
	ret->batch_ops = LOAD(batch_ops);
	ret->batch_max = LOAD(batch_max);
	ret->commit_errors = LOAD(commit_errors);
	ret->commit_ns_total = LOAD(commit_ns_total);
	ret->saf_depth = LOAD(saf_depth);
	ret->saf_puts = LOAD(saf_puts);
	ret->saf_acks = LOAD(saf_acks);
	ret->saf_retries = LOAD(saf_retries);
	ret->saf_claims = LOAD(saf_claims);
	ret->saf_lease_expired = LOAD(saf_lease_expired);
	ret->saf_full = LOAD(saf_full);
	ret->saf_too_big = LOAD(saf_too_big);
	ret->saf_loaded = LOAD(saf_loaded);
	ret->saf_uses_returned = LOAD(saf_uses_returned);
	ret->saf_refused = LOAD(saf_refused);
	ret->reserve_refused = LOAD(reserve_refused);
	ret->writer_degraded = LOAD(writer_degraded);
	ret->writer_held = LOAD(writer_held);
	ret->freeing_commits = LOAD(freeing_commits);
#undef LOAD
	tsw_hist_load(&st->commit_hist, &ret->commit_duration);
	ret->writer_health = atomic_load_explicit(&st->health, memory_order_relaxed);
	ret->tokens_cap = (uint64_t)st->per_shard_max * SHARDS;
	ret->reservations_cap = st->res_cap;
}
