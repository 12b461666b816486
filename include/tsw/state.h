/* The switch's own durable state: limited-use counts and the last ATC per
 * token, in a second LMDB environment (the --state directory), separate
 * from the vault so a bulk import never stalls an authorization.
 *
 * Threads: any number of worker threads call every function below
 * concurrently (except open/close). Decisions are made in memory under a
 * short per-shard mutex; one writer thread owned by the state makes them
 * durable with group commit: it takes every queued update, writes them in
 * one LMDB transaction, commits (one fsync per batch), then marks the
 * batch durable and writes 1 to every registered eventfd.
 *
 * Limited-use counts. A token's durable count is used + reserved: a
 * reservation is written as a use, a release writes it back. So after a
 * crash every reservation that was never resolved counts as used: a use
 * may be lost to the cardholder (the issuer never approved it), never
 * double-spent. Flow for one authorization of a limited-use token:
 *
 *	tsw_state_reserve()   -> -TSW_E_FULL: decline DOMAIN_USES (65)
 *	forward; issuer approves -> tsw_state_commit_use(ticket), and the
 *	         approval reaches the acquirer only once
 *	         tsw_state_durable(ticket) (wake on the eventfd)
 *	         declines / times out -> tsw_state_release(ticket)
 *	later the issuer approves its reversal -> tsw_state_return_use(token)
 *
 * Keys are token digits; the environment holds no PAN.
 *
 * Store-and-forward (SAF) queue. Reversals the switch owes an issuer
 * (a request timed out, or the link dropped with requests pending) are
 * kept in the same environment until the issuer answers 0410, across
 * restarts. The engine stores each reversal in its TOKEN form (the
 * acquirer-side 0400 body: DE2 = the token, no PAN anywhere) and rewrites
 * it to the PAN when it sends it: the SAF, like the rest of the state
 * environment, holds no PAN. Flow on a worker:
 *
 *	tsw_state_saf_put()     -> id; durable once tsw_state_saf_durable(id)
 *	tsw_state_saf_claim()   -> due items, leased to this worker
 *	send; 0410 arrives      -> tsw_state_saf_ack(id)   (deleted durably)
 *	      fails / times out -> tsw_state_saf_retry(id, not_before_ms)
 *
 * Claims are in memory only: at open every stored item is pending again,
 * so an item may be sent twice (a crash between the send and the ack):
 * the issuer must treat a repeated reversal as a repeat (0420 semantics).
 * Order: items are handed out in id order, which is put order; within
 * one route_key that is FIFO (an item waiting for its backoff or leased
 * to a worker does not hold back the ones behind it).
 *
 * A full map or disk. When a group commit fails for want of space (the
 * LMDB map, state.map_size_mb, is full: map_full; the filesystem is:
 * disk_full) or for an I/O error (io_error), the writer is degraded: it
 * keeps committing what frees space or overwrites in place (SAF deletes,
 * count updates of tokens already on disk) on its own, and holds the
 * updates that grow the file (SAF puts, first counts of a token) queued,
 * in order, never dropped, retrying them with a backoff
 * (TSW_STATE_RETRY_MS doubling up to retry_max_ms). Meanwhile
 * tsw_state_saf_put() and tsw_state_reserve() are refused with -ENOSPC and
 * tsw_state_health() says why; the first commit of the held updates makes
 * it healthy again. The space-freeing commits may use a reserve of
 * reserve_kb beyond the map and preallocated on disk ahead of the data
 * (fallocate), so acks still commit on a full map or disk; running out of
 * that reserve on disk is what reports disk_full. docs/saf.md, "The writer".
 */
#ifndef TSW_STATE_H
#define TSW_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tsw/hist.h"

struct tsw_state;

/* Defaults for struct tsw_state_config (config keys in tokswitch.conf,
 * section [state]: queue_size, max_tokens, max_reservations, map_size_mb,
 * saf_max_entries, saf_lease_ms, reserve_kb, retry_max_ms;
 * tsw_config_defaults() states the same
 * values, tests/unit/ctl checks they agree). The counters of
 * tsw_state_stats() are on /metrics as tokswitch_state_* (src/ctl). */
#define TSW_STATE_QUEUE_SIZE_DEFAULT 65536u	    /* queued updates */
#define TSW_STATE_MAX_TOKENS_DEFAULT 262144u	    /* tokens with a count or an ATC */
#define TSW_STATE_MAX_RESERVATIONS_DEFAULT 65536u   /* outstanding tickets */
#define TSW_STATE_MAP_SIZE_MB_DEFAULT 256u	    /* LMDB map size */
#define TSW_STATE_MAX_RESERVATIONS_LIMIT (1u << 24) /* tickets carry a 24-bit slot */
#define TSW_STATE_WAKERS_MAX 64u		    /* eventfds (one per worker) */
#define TSW_STATE_RETRY_MS 100u			    /* first writer retry after a failed commit */
#define TSW_STATE_RETRY_MAX_MS_DEFAULT 1000u	    /* the retry backoff's ceiling */
#define TSW_STATE_RESERVE_KB_DEFAULT 1024u	    /* room only space-freeing commits use */
#define TSW_STATE_SAF_MAX_ENTRIES_DEFAULT 16384u    /* queued reversals */
#define TSW_STATE_SAF_MAX_ENTRIES_LIMIT (1u << 22)  /* ids carry a 24-bit slot, 2 per entry */
#define TSW_STATE_SAF_LEASE_MS_DEFAULT 30000u	    /* a claim's lifetime */
#define TSW_STATE_SAF_MSG_MAX 8192u		    /* bytes of one message (a frame) */
#define TSW_STATE_ATC_WINDOW_DEFAULT 100u	    /* ATCs a new one may be ahead of the last */

/* The state's clock for SAF leases and backoff: milliseconds, monotonic.
 * Default: CLOCK_MONOTONIC. Tests inject their own. Called with a state
 * lock held: it must not call back into the state. */
typedef uint64_t (*tsw_state_clock_fn)(void *arg);

/* The writer's health (tsw_state_health()). */
enum tsw_state_health {
	TSW_STATE_HEALTHY,
	TSW_STATE_MAP_FULL,  /* MDB_MAP_FULL: state.map_size_mb is used up */
	TSW_STATE_DISK_FULL, /* ENOSPC/EDQUOT: writing or preallocating the file */
	TSW_STATE_IO_ERROR,  /* any other commit error (EIO, MDB_PANIC, ...) */
	TSW_STATE_HEALTH_MAX
};

/* What the writer reports to the event callback. */
enum tsw_state_event_kind {
	TSW_STATE_EV_DEGRADED,	/* healthy -> degraded, or a new reason */
	TSW_STATE_EV_RECOVERED, /* degraded -> healthy: held updates committed */
	TSW_STATE_EV_UNWRITTEN, /* closing while degraded: held updates not written */
	TSW_STATE_EV_MAX
};

struct tsw_state_event {
	uint8_t kind;	      /* enum tsw_state_event_kind */
	uint8_t health;	      /* enum tsw_state_health after the event */
	int error;	      /* DEGRADED: the -errno of the failure (-ENOSPC, -EIO) */
	char detail[96];      /* DEGRADED: LMDB's or libc's text of it; "" otherwise */
	uint64_t held;	      /* updates held back by the writer */
	uint64_t degraded_ms; /* RECOVERED: how long it was degraded */
};

/* Called on the writer thread at each event (never per update); must not
 * call into the state except tsw_state_stats()/tsw_state_health(), and
 * should return quickly (the writer waits for it). */
typedef void (*tsw_state_event_fn)(void *arg, const struct tsw_state_event *ev);

struct tsw_state_config {
	uint32_t queue_size;	     /* count updates not yet written (queued, or
				      * held by a degraded writer); 0: default */
	uint32_t max_tokens;	     /* in-memory table capacity, on top of the
				      * tokens loaded at open; 0: default */
	uint32_t max_reservations;   /* outstanding tickets; 0: default */
	uint32_t map_size_mb;	     /* 0: default; must hold saf_max_entries
				      * messages of their size on top of the counts */
	uint32_t saf_max_entries;    /* SAF items queued at once; 0: default */
	uint32_t saf_lease_ms;	     /* a claim expires after this; 0: default */
	tsw_state_clock_fn clock_ms; /* NULL: CLOCK_MONOTONIC in ms */
	void *clock_arg;	     /* passed to clock_ms */
	uint32_t reserve_kb;	     /* room beyond the map, preallocated on disk,
				      * for space-freeing commits; 0: default */
	uint32_t retry_max_ms;	     /* ceiling of the degraded writer's retry
				      * backoff; 0: default */
	tsw_state_event_fn on_event; /* NULL: no events (the stats still count) */
	void *event_arg;	     /* passed to on_event */
};

/* Opens (creating when missing) the state environment in dir, loads every
 * count and ATC into memory and starts the writer thread. cfg may be NULL
 * (defaults). Every stored SAF item is loaded, unclaimed and due now
 * (the file may hold more than saf_max_entries: all are kept, and puts
 * are refused until the depth is below the limit again). Returns 0,
 * -TSW_E_VERSION (written by a newer build), -TSW_E_CORRUPT (a record of
 * the wrong size, a SAF message above TSW_STATE_SAF_MSG_MAX),
 * -TSW_E_BAD_INPUT (max_reservations above
 * TSW_STATE_MAX_RESERVATIONS_LIMIT, saf_max_entries above
 * TSW_STATE_SAF_MAX_ENTRIES_LIMIT), -ENOSPC (the file holds more tokens
 * than the table can take, or more SAF items than the limit), -ENOMEM,
 * -TSW_E_NOT_OWNER or -TSW_E_TOO_OPEN (dir, data.mdb or lock.mdb owned
 * by another user than this one or root, or writable by group or others:
 * tsw_harden_check_env_dir says which), or another -errno (dir unwritable,
 * LMDB errors mapped to -errno). *ret_state is untouched on failure. */
int tsw_state_open(const char *dir, const struct tsw_state_config *cfg,
		   struct tsw_state **ret_state);

/* Writes everything queued, stops the writer thread, closes the
 * environment and frees st (NULL is fine). Outstanding reservations stay
 * counted as used. No other call on st may run concurrently or after. */
void tsw_state_close(struct tsw_state *st);

/* Registers an eventfd the writer writes 1 to after each commit (each
 * worker registers its own before traffic starts). The state does not
 * close it; it must stay open until tsw_state_close(). Returns 0, -TSW_E_FULL (TSW_STATE_WAKERS_MAX
 * reached) or -EBADF (fd < 0). */
int tsw_state_add_waker(struct tsw_state *st, int eventfd);

/* Reserves one use of token (digits, len 1..19) whose record allows
 * max_uses (> 0). On success sets *ret_ticket and returns 0: the use
 * counts from now on, and is durable once tsw_state_durable(ticket).
 * Returns -TSW_E_FULL when used + reserved >= max_uses (DOMAIN_USES),
 * -EAGAIN when the writer's queue or the ticket table is full (answer
 * SYSTEM; counted in the stats), -ENOSPC when the writer is degraded
 * (tsw_state_health(); counted as reserve_refused) or the token table is
 * full (table_full), -TSW_E_BAD_INPUT for a bad token length or max_uses 0.
 * *ret_ticket is untouched on failure. Never waits on I/O. */
int tsw_state_reserve(struct tsw_state *st, const char *token, size_t len, uint32_t max_uses,
		      uint64_t *ret_ticket);

/* True once the reservation of ticket is committed to disk (it stays
 * true after commit_use/release). Lock-free; safe from any thread. */
bool tsw_state_durable(const struct tsw_state *st, uint64_t ticket);

/* The issuer approved: the reserved use becomes a used one (no write is
 * needed: the durable count already holds it). Returns 0 or
 * -TSW_E_NOT_FOUND (ticket unknown or already resolved). */
int tsw_state_commit_use(struct tsw_state *st, uint64_t ticket);

/* The issuer declined or timed out: the use is given back (and the lower
 * count queued for the writer). Returns 0 or -TSW_E_NOT_FOUND (ticket
 * unknown or already resolved). When the queue is full the use is given
 * back in memory and the disk keeps the higher count until the token's
 * next update (never a double spend; counted as release_unqueued). */
int tsw_state_release(struct tsw_state *st, uint64_t ticket);

/* The issuer approved the reversal of an approved authorization of token
 * (digits, len 1..19): one committed use is given back (used - 1; a
 * reservation is never touched) and the lower count is queued for the
 * writer, durable at the next group commit (a crash before that keeps
 * the use counted: never a double spend). The caller gives a use back at
 * most once per approval. Never waits on I/O. Returns 0 (counted in
 * uses_returned, once per use given back), -TSW_E_NOT_FOUND (the token
 * has no counts, or no committed use: the count never goes below 0,
 * nothing changes), -EAGAIN (the writer's queue is full: nothing changes,
 * counted as queue_full), -TSW_E_BAD_INPUT (bad token length or NULL
 * token). */
int tsw_state_return_use(struct tsw_state *st, const char *token, size_t len);

/* Replay check of an EMV application transaction counter (9F36) for
 * token (digits, len 1..19), made durable like a reservation. atc_epoch
 * is struct tsw_token's atc_epoch (bumped by `tokvault repersonalize`): a
 * higher epoch than the stored one starts again from a last ATC of 0, so
 * ATC 1 is accepted again; a lower one is a replay. window bounds how far
 * ahead of the last accepted ATC a new one may be (atc - last <= window;
 * 0: no bound; the switch's cryptogram.atc_window, default
 * TSW_STATE_ATC_WINDOW_DEFAULT). Call it after the cryptogram verified
 * (a forged cryptogram must not move the counter) and before any limited
 * use is taken.
 *
 * Returns 0 when atc is accepted: it is the token's last ATC from now on
 * (a second request with it is a replay at once) and is durable once
 * tsw_state_durable(*ret_ticket) (the writer's next group commit; the
 * eventfds fire): answer the acquirer only then, or a crash could accept
 * the same cryptogram twice. *ret_ticket (may be NULL) is only for
 * tsw_state_durable(): it is no reservation (commit_use/release answer
 * -TSW_E_NOT_FOUND). Errors, nothing recorded: -TSW_E_EXISTS (atc at or
 * below the last one of the epoch, or an older epoch: ATC_REPLAY),
 * -TSW_E_ATC_WINDOW (more than window ahead: ATC_WINDOW), -EAGAIN (the
 * writer's queue is full: queue_full), -ENOSPC (the writer is degraded,
 * tsw_state_health(): atc_refused; or the token table is full:
 * table_full), -TSW_E_BAD_INPUT (bad token length or NULL token). Never
 * waits on I/O. */
int tsw_state_atc_check(struct tsw_state *st, const char *token, size_t len, uint32_t atc_epoch,
			uint32_t atc, uint32_t window, uint64_t *ret_ticket);

/* tsw_state_atc_check() for the counter of a token cryptogram (DE48 tag
 * 11): a counter of its own, apart from the ATC, and never reset: its MAC
 * names neither the device's PSN nor the token's atc_epoch, so a
 * re-personalization must not make an old one good again (the new device
 * continues the token's counter). Counted with the ATC's (atc_ok,
 * atc_replayed, ...); the same returns. A state file written before the
 * two counters were kept apart starts each token's floor at its last ATC
 * (the shared counter's value then). */
int tsw_state_tavv_check(struct tsw_state *st, const char *token, size_t len, uint32_t counter,
			 uint32_t window, uint64_t *ret_ticket);

/* One token's state, for tools and tests. */
struct tsw_state_token {
	uint32_t used;	   /* approved uses (and, after a restart, unresolved ones) */
	uint32_t reserved; /* outstanding reservations */
	uint32_t atc_epoch;
	uint32_t last_atc;
	uint32_t last_tavv; /* the token cryptogram's last counter */
};

/* Returns 0 and fills *ret, or -TSW_E_NOT_FOUND (token never seen),
 * -TSW_E_BAD_INPUT. */
int tsw_state_get(struct tsw_state *st, const char *token, size_t len, struct tsw_state_token *ret);

/* ---- store-and-forward queue ---- */

/* One claimed SAF item, filled by tsw_state_saf_claim(). msg is a copy:
 * the caller owns it and may keep it after ack/retry. */
struct tsw_saf_item {
	uint64_t id;	    /* for ack/retry; valid until acked or the state closes */
	uint32_t route_key; /* as given to put */
	uint32_t attempts;  /* claims of this item before this one, since open */
	uint32_t len;	    /* bytes in msg */
	uint8_t msg[TSW_STATE_SAF_MSG_MAX];
};

/* Queues msg (len 1..TSW_STATE_SAF_MSG_MAX bytes, the token-form 0400:
 * never a PAN) for route_key. Never waits on I/O (two short mutexes; the
 * first put into a slot whose buffer is too small allocates it, later
 * ones reuse it). The item is claimable at once and durable once
 * tsw_state_saf_durable(*ret_id) (the writer's next group commit; the
 * eventfds fire). A degraded writer (tsw_state_health()) holds the put
 * in memory: the item is claimable, durable once there is room. Returns
 * 0 and sets *ret_id (never 0),
 * -EAGAIN (the
 * queue holds saf_max_entries items, or the slots of acked items are not
 * yet freed by a commit: counted as saf_full), -EMSGSIZE (len above the
 * maximum: counted as saf_too_big), -TSW_E_BAD_INPUT (len 0 or msg NULL),
 * -ENOMEM. *ret_id is untouched on failure. */
int tsw_state_saf_put(struct tsw_state *st, uint32_t route_key, const uint8_t *msg, size_t len,
		      uint64_t *ret_id);

/* tsw_state_saf_put() for the reversal of an approval that spent a
 * limited use of use_token (digits, 1..19; NULL with use_token_len 0 is
 * a plain put): when the item is acked, one committed use of that token
 * is given back (tsw_state_return_use(), queued behind the item's delete
 * so it commits with it or after it: a crash between the two keeps the
 * use spent, never gives it back twice; counted in saf_uses_returned).
 * The token is stored with the item, across restarts, and so are flags
 * (TSW_STATE_SAF_ADVICE or 0) and the put's wall-clock time. Returns what
 * tsw_state_saf_put() returns, -ENOSPC also for an advice while the
 * writer is degraded (its stand-in approval waits for the commit);
 * -TSW_E_BAD_INPUT for a token above 19 digits or an unknown flag. */
int tsw_state_saf_put_use(struct tsw_state *st, uint32_t route_key, uint32_t flags,
			  const uint8_t *msg, size_t len, const char *use_token, size_t use_token_len,
			  uint64_t *ret_id);

/* flags of tsw_state_saf_put_use(): the item is an advice (a stand-in
 * approval the issuer must hear of), not a reversal; kept with it, for
 * tsw_state_saf_oldest(). */
#define TSW_STATE_SAF_ADVICE 1u
/* flags of tsw_state_saf_put_use(): a reversal of a stand-in approval. It
 * is not claimed while an earlier advice of its route is queued (claimed,
 * retried or due): the issuer hears of the approval before its reversal,
 * whatever retries the advice needed. Not with TSW_STATE_SAF_ADVICE. */
#define TSW_STATE_SAF_AFTER_ADVICE 2u

/* The age in ms (wall clock, across restarts) of the oldest queued
 * reversal and of the oldest queued advice; 0 when there is none. Scans
 * the queue under its lock until it has found both (O(depth) at worst):
 * for the control plane's scrape, not a worker's path. */
void tsw_state_saf_oldest(const struct tsw_state *st, uint64_t *ret_reversal_ms,
			  uint64_t *ret_advice_ms);

/* True once the put of id is committed to disk (stays true after the ack).
 * Lock-free; the same sequence as tsw_state_durable(). False for 0. */
bool tsw_state_saf_durable(const struct tsw_state *st, uint64_t id);

/* Hands worker up to max due items, oldest id first: items nobody holds,
 * or whose lease expired, and whose retry time has come. Each is leased
 * for saf_lease_ms and copied into ret_items[0..*ret_n) (worker names the
 * caller; the lease is not tied to it: ack and retry go by id). Takes
 * one mutex for a scan of the queue (O(depth)): call it on a schedule,
 * not per message. Returns 0 (also with *ret_n = 0: nothing due), or
 * -TSW_E_BAD_INPUT (ret_items or ret_n NULL); *ret_n is untouched on
 * failure. */
int tsw_state_saf_claim(struct tsw_state *st, uint32_t worker, uint32_t max,
			struct tsw_saf_item *ret_items, size_t *ret_n);

/* tsw_state_saf_claim() limited to the items put with route_key (a
 * worker claims for the issuer links it has signed on). Items of other
 * routes are skipped, never leased; while one of them is due, every claim
 * scans (the no-scan shortcut needs nothing due at all). Returns what
 * tsw_state_saf_claim() returns. */
int tsw_state_saf_claim_route(struct tsw_state *st, uint32_t worker, uint32_t route_key,
			      uint32_t max, struct tsw_saf_item *ret_items, size_t *ret_n);

/* The issuer accepted the reversal id (00): the item leaves the queue
 * now, the use it was put with is given back, and its delete is queued
 * for the writer (durable at the next commit; a
 * crash before that sends it once more). Never waits on I/O, never
 * refused for a full queue. Whoever holds the claim, the ack counts.
 * Returns 0 or -TSW_E_NOT_FOUND (unknown id, or already acked). */
int tsw_state_saf_ack(struct tsw_state *st, uint64_t id);

/* tsw_state_saf_ack() for an item settled without its use: the issuer
 * declined the reversal (anything but 00 and the repeat codes), or it can
 * never be sent. The limited use stays spent: only an accepted reversal
 * shows the issuer gave the money back. Same returns. */
int tsw_state_saf_settle(struct tsw_state *st, uint64_t id);

/* Sending id failed or timed out: the claim is released and the item is
 * due again at not_before_ms on the state's clock (tsw_state_now_ms();
 * a past time: due now). Memory only: a restart makes it due at once.
 * Returns 0 or -TSW_E_NOT_FOUND (unknown id, or already acked). */
int tsw_state_saf_retry(struct tsw_state *st, uint64_t id, uint64_t not_before_ms);

/* The state's clock (config clock_ms, or CLOCK_MONOTONIC), in ms. */
uint64_t tsw_state_now_ms(const struct tsw_state *st);

/* The writer's health now; with ret_error (may be NULL), the -errno of the
 * failure that degraded it (0 when healthy). Lock-free; any thread. */
enum tsw_state_health tsw_state_health(const struct tsw_state *st, int *ret_error);

/* True while the writer is degraded: puts and reservations are refused
 * and a ticket that is not durable yet will not be soon (the engine
 * answers such requests at once). One atomic load. */
bool tsw_state_degraded(const struct tsw_state *st);

/* "ok", "map_full", "disk_full", "io_error" (log and metric values);
 * "unknown" out of range. Static strings. */
const char *tsw_state_health_name(enum tsw_state_health h);

/* Counters for metrics (monotonic unless marked gauge). */
struct tsw_state_stats {
	uint64_t queue_len; /* gauge: count updates not yet written (queued or
			     * held by the writer: this is what queue_cap bounds) */
	uint64_t queue_cap;
	uint64_t queue_full; /* updates refused: queue full */
	uint64_t tokens;     /* gauge: tokens in the table */
	uint64_t tokens_cap;
	uint64_t table_full;   /* refused: token table full */
	uint64_t reservations; /* gauge: outstanding tickets */
	uint64_t reservations_cap;
	uint64_t tickets_full; /* refused: ticket table full */
	uint64_t reserve_ok;
	uint64_t reserve_exhausted; /* -TSW_E_FULL: DOMAIN_USES */
	uint64_t commits;	    /* commit_use */
	uint64_t releases;
	uint64_t release_unqueued; /* release with the queue full */
	uint64_t uses_returned;	   /* return_use that gave a committed use back */
	uint64_t atc_ok;
	uint64_t atc_replayed;
	uint64_t atc_window;  /* ATCs refused: beyond the window */
	uint64_t atc_refused; /* ATCs refused: writer degraded */
	uint64_t batches;   /* LMDB transactions committed */
	uint64_t batch_ops; /* updates written */
	uint64_t batch_max; /* largest batch */
	uint64_t commit_errors;
	uint64_t commit_ns_total; /* time in write + commit (fsync) */
	uint64_t saf_depth;	  /* gauge: SAF items queued (not yet acked) */
	uint64_t saf_cap;	  /* saf_max_entries */
	uint64_t saf_puts;
	uint64_t saf_acks;
	uint64_t saf_retries;
	uint64_t saf_claims;	    /* items handed out */
	uint64_t saf_lease_expired; /* items handed out again after a lease ran out */
	uint64_t saf_full;	    /* puts refused: -EAGAIN */
	uint64_t saf_too_big;	    /* puts refused: -EMSGSIZE */
	uint64_t saf_loaded;	    /* items found at open */
	uint64_t saf_uses_returned; /* acks that gave a limited use back */
	uint64_t saf_refused;	    /* puts refused: writer degraded (-ENOSPC) */
	uint64_t reserve_refused;   /* reservations refused: writer degraded */
	uint64_t writer_health;	    /* gauge: enum tsw_state_health */
	uint64_t writer_degraded;   /* times the writer became degraded */
	uint64_t writer_held;	    /* gauge: updates held back, not yet written */
	uint64_t freeing_commits;   /* commits of the space-freeing part alone */
	/* every group commit's write + fsync, failed ones too (the same
	 * time commit_ns_total adds up): the writer's histogram, copied
	 * with tsw_hist_load() */
	struct tsw_hist commit_duration;
};

/* Snapshot of the counters (each read atomically, not all together). */
void tsw_state_stats(const struct tsw_state *st, struct tsw_state_stats *ret);

#endif
