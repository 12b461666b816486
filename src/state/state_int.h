/* Inside the state environment: shared by state.c (counts, ATCs, the
 * writer thread) and saf.c (the store-and-forward queue). Not a public
 * header: nothing outside src/state/ includes it. */
#ifndef TSW_STATE_STATE_INT_H
#define TSW_STATE_STATE_INT_H

#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tsw/error.h"
#include "tsw/state.h"
#include "tsw/token.h"

enum {
	SHARDS = 64, /* independent locks and tables; a power of two */
	SHARD_BITS = 6,
	TICKET_SLOT_BITS = 24, /* ticket and SAF id = seq << 24 | slot */
};

/* A token's counts in memory. */
struct entry {
	char key[TSW_TOKEN_MAX_DIGITS];
	uint8_t key_len; /* 0: empty slot */
	uint8_t shard;
	bool on_disk; /* writer thread only: a count record exists in the file */
	uint32_t used, reserved, atc_epoch, last_atc; /* under the shard lock */
	uint32_t last_tavv;			      /* the token cryptogram's; never reset */
	uint64_t written_batch; /* writer thread only: dedupe within a batch */
};

struct shard {
	pthread_mutex_t lock;
	struct entry *slots;
	uint32_t mask;
	uint32_t count, max;
} __attribute__((aligned(64)));

struct reservation {
	struct entry *e;
	uint64_t seq;
	uint32_t next_free;
	bool live;
};

/* What the writer writes: a token's counts, or a SAF put or delete.
 * OP_NONE writes nothing: a put the degraded writer held whose item was
 * acked since (its delete follows). */
enum op_kind { OP_COUNTS, OP_SAF_PUT, OP_SAF_DEL, OP_NONE, OP_KIND_MAX };

struct op {
	struct entry *e; /* OP_COUNTS */
	uint64_t seq;	 /* its sequence number (tickets and SAF ids carry it) */
	uint32_t slot;	 /* OP_SAF_*: the slot in st->saf.slots */
	uint8_t kind;
	bool freeing; /* degraded writer: frees space or overwrites in place */
	/* OP_COUNTS: the entry's values when queued (under its shard lock), so
	 * the writer never takes a lock a worker may be waiting on */
	uint32_t uses, atc_epoch, last_atc, last_tavv;
};

enum saf_slot_state {
	SAF_SLOT_FREE,
	SAF_SLOT_FILLING,
	SAF_SLOT_LIVE,
	SAF_SLOT_DELETING,
	SAF_SLOT_STATE_MAX
};

/* One SAF item. The message bytes are written once by put (before the
 * slot is linked) and read by claims and by the writer; the slot is freed
 * only by the writer after the commit of its delete, so the writer reads
 * them without the lock. */
struct saf_slot {
	uint64_t id;	   /* seq << TICKET_SLOT_BITS | slot index */
	uint64_t disk_key; /* the LMDB key (grows across restarts) */
	uint64_t not_before_ms;
	uint64_t lease_until_ms;
	uint8_t *msg; /* capacity msg_cap, kept when the slot is freed */
	uint32_t msg_cap, len;
	uint32_t route_key;
	uint32_t attempts;
	char use_token[TSW_TOKEN_MAX_DIGITS]; /* the ack gives back a use of it */
	uint8_t use_token_len;		      /* 0: none */
	uint32_t flags;			      /* TSW_STATE_SAF_* */
	uint64_t put_ms;		      /* CLOCK_REALTIME at the put */
	uint32_t prev, next; /* the id-ordered list of live items; SAF_NIL ends */
	uint32_t next_free;
	uint8_t state; /* enum saf_slot_state */
	bool claimed;
};

#define SAF_NIL UINT32_MAX

struct saf_queue {
	pthread_mutex_t lock; /* before q_lock when both are taken */
	struct saf_slot *slots;
	uint32_t n_slots, max_entries, lease_ms;
	uint32_t head, tail; /* live items by id */
	uint32_t free_head;
	uint32_t depth;	      /* live items */
	uint64_t next_key;    /* the next disk key */
	uint64_t next_due_ms; /* no live item is due before this: claims return at
			       * once until then (0: unknown, scan) */
};

struct counters {
	atomic_uint_fast64_t queue_full, table_full, tickets_full, reserve_ok, reserve_exhausted,
	    commits, releases, release_unqueued, atc_ok, atc_replayed, atc_window, atc_refused, batches, batch_ops,
	    batch_max, commit_errors, commit_ns_total, tokens, reservations, queue_len,
	    uses_returned;
	atomic_uint_fast64_t saf_depth, saf_puts, saf_acks, saf_retries, saf_claims,
	    saf_lease_expired, saf_full, saf_too_big, saf_loaded, saf_uses_returned;
	atomic_uint_fast64_t saf_refused, reserve_refused, writer_degraded, writer_held,
	    freeing_commits;
};

/* The writer thread's own bookkeeping (no lock: only it touches this). */
struct writer {
	uint32_t n_held;     /* ops at the front of st->batch not yet written */
	uint64_t batch_id;   /* dedupe of count updates within one transaction */
	uint8_t health;	     /* enum tsw_state_health; mirrored in st->health */
	uint32_t backoff_ms; /* the next retry's delay */
	uint32_t retry_max_ms;
	uint64_t retry_at_ns; /* next attempt at the held updates (degraded) */
	uint64_t degraded_ns; /* when it became degraded */
	size_t map_bytes;     /* state.map_size_mb */
	size_t reserve_bytes; /* state.reserve_kb */
	bool map_raised;      /* the map is map_bytes + reserve_bytes now */
	uint64_t alloc_end;   /* the file is preallocated up to this offset */
	bool no_alloc;	      /* the filesystem cannot preallocate */
	unsigned psize;	      /* LMDB page size */
	tsw_state_event_fn on_event;
	void *event_arg;
};

struct tsw_state {
	MDB_env *env;
	MDB_dbi dbi_counts, dbi_saf, dbi_meta;
	struct shard shards[SHARDS];
	uint32_t per_shard_max;
	tsw_state_clock_fn clock_ms;
	void *clock_arg;

	/* the writer's queue: one ring for count updates and SAF operations
	 * (at most 2 per SAF slot: a put and a delete, so they never find it
	 * full). q_counts counts the count updates in the ring plus those
	 * the writer holds back: at most counts_cap, so the ring and the
	 * writer's batch (q_cap entries each) always have room. */
	pthread_mutex_t q_lock;
	pthread_cond_t q_cond;
	struct op *q;
	uint32_t q_cap, q_head, q_count, q_counts, counts_cap;
	uint64_t q_seq; /* seq of the last queued update */
	bool q_stop;
	atomic_uint_fast64_t committed_seq;

	/* outstanding reservations (tickets) */
	pthread_mutex_t res_lock;
	struct reservation *res;
	uint32_t res_cap, res_free, res_used;

	pthread_mutex_t wakers_lock;
	int wakers[TSW_STATE_WAKERS_MAX];
	atomic_uint n_wakers;

	struct saf_queue saf;

	pthread_t writer;
	struct op *batch; /* writer thread only, q_cap entries: held ops first */
	struct writer w;
	atomic_uint health;	 /* enum tsw_state_health, written by the writer */
	atomic_int health_error; /* -errno that degraded it */
	struct counters c;
	/* the writer thread is its one writer (tsw/hist.h) */
	struct tsw_hist commit_hist;
};

static inline void count(atomic_uint_fast64_t *c)
{
	atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

/* LMDB's codes, mapped as the vault maps them (tsw/error.h) */
static inline int state_map_mdb(int rc)
{
	return tsw_lmdb_errno(rc);
}

/* state.c */
/* Queues a SAF op; the caller holds st->saf.lock. Never fails (the ring
 * has room for two ops per slot). Returns the op's seq. */
uint64_t state__enqueue_saf(struct tsw_state *st, enum op_kind kind, uint32_t slot);

/* saf.c */
/* A stored SAF item (its value in dbi_saf): a header, then len message
 * bytes (native byte order, like the counts). Format 1 wrote the first
 * two fields only; format 2 added the limited use the item's ack gives
 * back (a 32-byte header: struct saf_record up to put_ms); format 3 the
 * put time. The value's size tells them apart (header + len). */
struct saf_record_v1 {
	uint32_t route_key;
	uint32_t len;
};

struct saf_record {
	uint32_t route_key;
	uint32_t len;
	uint32_t flags;	       /* TSW_STATE_SAF_* */
	uint8_t use_token_len; /* 0: the ack gives no use back */
	char use_token[TSW_TOKEN_MAX_DIGITS];
	uint64_t put_ms; /* CLOCK_REALTIME at the put: its age survives a restart */
};

enum { SAF_RECORD_V2_SIZE = 32 };

_Static_assert(sizeof(struct saf_record) == 40, "the format-3 header is 40 bytes");
_Static_assert(offsetof(struct saf_record, put_ms) == SAF_RECORD_V2_SIZE,
	       "format 2 is format 3 without the put time");

/* Reads a stored item's value (size bytes): its header into *ret_rec
 * (format 1: the fields after len zeroed) and *ret_msg pointing at its
 * rec.len message bytes inside val. Returns 0 or -TSW_E_CORRUPT (too
 * short, len 0 or above TSW_STATE_SAF_MSG_MAX, a size that is neither
 * header's, use_token_len above TSW_TOKEN_MAX_DIGITS, a flag unknown or
 * a use token that is not digits); the outputs are
 * untouched on failure. */
int state__saf_record_decode(const void *val, size_t size, struct saf_record *ret_rec,
			     const uint8_t **ret_msg);
/* Writes the format-3 value of rec and its rec->len message bytes into out
 * (sizeof(*rec) + rec->len bytes). */
void state__saf_record_encode(const struct saf_record *rec, const uint8_t *msg, void *out);

/* Allocates the slots for max(max_entries, loaded) items. Returns 0,
 * -ENOSPC (loaded above the limit) or -ENOMEM. */
int state__saf_init(struct tsw_state *st, uint32_t max_entries, uint32_t lease_ms, size_t loaded);
/* Loads every stored item (in key order), due now. The caller then sets
 * q_seq and committed_seq to the last id's seq: loaded items are durable. */
int state__saf_load(struct tsw_state *st, MDB_txn *txn);
void state__saf_destroy(struct tsw_state *st);
/* Writer thread: applies one SAF op in txn. */
int state__saf_write(struct tsw_state *st, MDB_txn *txn, const struct op *op);
/* Writer thread, after a commit: frees the slots of the deletes in ops. */
void state__saf_committed(struct tsw_state *st, const struct op *ops, uint32_t n);
/* Writer thread: true when the item of slot was acked (its delete is
 * queued or in the writer's hands), so a put of it still held need not
 * be written. */
bool state__saf_acked(struct tsw_state *st, uint32_t slot);

#endif
