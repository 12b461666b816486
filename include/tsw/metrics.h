/* Per-worker metrics shards, summed by the control plane on each scrape.
 * No labels carry tokens or PANs.
 *
 * Memory. The caller of tsw_engine_new() (main.c, or a test) allocates
 * one zeroed struct tsw_metrics_shard per worker (64-byte aligned: a
 * shard never shares a cache line with another) and keeps it until the
 * worker's engine and backend are freed and the control plane is
 * stopped: the engine, the backend (struct tsw_io_params) and
 * the control plane (struct tsw_ctl_source) hold pointers to it, never
 * copies, and none of them frees it.
 *
 * Threads. One writer per shard: only its worker's thread (the engine and
 * the I/O backend running on it) changes it, always through TSW_COUNT()
 * and its siblings below, which do a relaxed atomic load and a relaxed
 * atomic store (no read-modify-write: with a single writer none is
 * needed, and on x86-64 both are plain moves, no lock prefix; a shard's
 * histograms, through tsw_hist_add_ns(), the same). Any other
 * thread (the control plane) reads with tsw_metric_load(), a relaxed
 * atomic load, so a scrape never sees a torn value and the access is no
 * data race (ThreadSanitizer agrees: tools/test --tsan). Counters of
 * different fields are not read as one snapshot. A counter that two
 * threads write needs atomic_fetch_add instead: none lives in a shard.
 *
 * Errors. Nothing here fails or allocates: the name functions return
 * NULL for an index out of range, tsw_metrics_rc_index() folds every
 * unknown code into the last index. Every function and table is pure or
 * constant and safe from any thread; returned strings are static.
 */
#ifndef TSW_METRICS_H
#define TSW_METRICS_H

#include <stdint.h>

#include "tsw/hist.h"

enum tsw_mti_class {
	TSW_MTI_0100,
	TSW_MTI_0200,
	TSW_MTI_0120,
	TSW_MTI_0400,
	TSW_MTI_0420,
	TSW_MTI_0800,
	TSW_MTI_OTHER,
	TSW_MTI_CLASS_MAX
};

/* Response codes counted: index by tsw_metrics_rc_index(). */
enum { TSW_METRICS_RC_MAX = 22 };

/* Decline reasons counted in tsw_metrics_shard.declines, indexed by enum
 * tsw_authz_reason (tsw/authz.h). A copy of TSW_AUTHZ_REASON_MAX, so
 * this header needs no authz.h: src/ctl/metrics_text.c, which sees both,
 * fails to compile when they differ. */
enum { TSW_METRICS_DECLINE_REASONS = 21 };

/* Index of a 2-character DE39 response code ("00", "14", "30", "51",
 * "54", "55", "57", "61", "62", "63", "65", "91", "96", "05", "12", "94",
 * "10", "08", "11", "16", "43"): 0..TSW_METRICS_RC_MAX - 2. Every other
 * code, a code shorter than 2 characters and NULL give
 * TSW_METRICS_RC_MAX - 1 ("other"); only rc[0] and rc[1] are read. Pure,
 * never fails, any thread. */
unsigned tsw_metrics_rc_index(const char *rc);
/* The code counted at index i ("00", ...; "other" for the last one):
 * the rc label for the control plane. A static string; NULL for i out of
 * range. Any thread. */
const char *tsw_metrics_rc_name(unsigned i);
/* The mti label of an enum tsw_mti_class ("0100", ..., "other"): a
 * static string; NULL out of range. Any thread. */
const char *tsw_metrics_mti_name(unsigned cls);

/* What became of a stand-in candidate (docs/engine.md "Stand-in"): a
 * 0100/0200 whose issuer was unavailable (or timed out, with
 * standin_on_timeout) while stand-in was enabled. */
enum tsw_standin_result {
	TSW_STANDIN_APPROVED,		/* approved 00 STANDIN, its advice durable */
	TSW_STANDIN_DECLINED_AMOUNT,	/* DE4 above standin_max_amount: 91 */
	TSW_STANDIN_DECLINED_MODE,	/* presentment mode not in standin_modes: 91 */
	TSW_STANDIN_DECLINED_ASSURANCE, /* token assurance below standin_min_assurance: 91 */
	TSW_STANDIN_DECLINED_EXPOSURE,	/* the token's window exposure, or the table, full: 91 */
	TSW_STANDIN_DECLINED_UNQUEUED,	/* the advice could not be queued or made durable: 91 */
	TSW_STANDIN_DECLINED_PIN,	/* a PIN (DE52) only the issuer can verify: 91 */
	TSW_STANDIN_RESULT_MAX
};

/* The result label of an enum tsw_standin_result ("approved",
 * "declined_amount", ...): a static string; NULL out of range. Any
 * thread. */
const char *tsw_metrics_standin_name(unsigned result);

/* What became of a request's cryptogram check (docs/decisions.md
 * "Cryptograms"): one count per request that needed one. */
enum tsw_card_check_result {
	TSW_CARD_CHECK_OK,	   /* verified, counter accepted */
	TSW_CARD_CHECK_MISSING,	   /* no DE55 (ARQC) or no DE48 tag 11 (token cryptogram): 63 */
	TSW_CARD_CHECK_MALFORMED,  /* not BER-TLV, a tag missing or of the wrong length: 63 */
	TSW_CARD_CHECK_MISMATCH,   /* signed for another amount or currency than DE4/DE49: 63 */
	TSW_CARD_CHECK_NO_KEY,	   /* no key for the token's range (or the HSM failed): 63 */
	TSW_CARD_CHECK_WRONG,	   /* does not verify under any key of the range: 63 */
	TSW_CARD_CHECK_ATC_REPLAY, /* counter at or below the last accepted: 63 */
	TSW_CARD_CHECK_ATC_WINDOW, /* counter beyond cryptogram.atc_window: 63 */
	TSW_CARD_CHECK_STATE,	   /* the state could not record the counter: 96 */
	TSW_CARD_CHECK_RESULT_MAX
};

/* What became of a DE52 PIN block on its way to the issuer. */
enum tsw_pin_result {
	TSW_PIN_OK,		 /* translated */
	TSW_PIN_NO_ACQUIRER_KEY, /* no zpk-acquirer for DE32: 96 PIN_BLOCK */
	TSW_PIN_NO_ISSUER_KEY,	 /* no zpk-issuer for the issuer: 96 PIN_BLOCK */
	TSW_PIN_FORMAT, /* not a well-formed block under any key (or keys of two families) */
	TSW_PIN_PAN,	/* a format 0 block bound to another account number */
	TSW_PIN_RESULT_MAX
};

/* The result labels ("ok", "missing", ... / "ok", "no_acquirer_key", ...):
 * static strings; NULL out of range. Any thread. */
const char *tsw_metrics_card_check_name(unsigned result);
const char *tsw_metrics_pin_name(unsigned result);

/* Adds n to a shard's counter (or gauge) c, wrapping modulo 2^64 (a
 * gauge goes down by adding its two's complement). Only the shard's own
 * worker thread may call it (see the top of this file): two writers
 * would lose updates. Never fails. */
static inline void tsw_metric_add(uint64_t *c, uint64_t n)
{
	__atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}

/* Sets a shard's gauge to v; the same single-writer rule. Never fails. */
static inline void tsw_metric_set(uint64_t *c, uint64_t v)
{
	__atomic_store_n(c, v, __ATOMIC_RELAXED);
}

/* Reads a shard's counter or gauge: any thread, any time while the shard
 * lives. The value is at least as new as the last one this thread read
 * (relaxed: no order against other fields). */
static inline uint64_t tsw_metric_load(const uint64_t *c)
{
	return __atomic_load_n(c, __ATOMIC_RELAXED);
}

/* The forms the engine and the backends use: x is a shard member (an
 * lvalue, evaluated once), e.g. TSW_COUNT(e->m->timeouts). The
 * single-writer rule of tsw_metric_add() applies to each. */
#define TSW_COUNT(x) tsw_metric_add(&(x), 1)
#define TSW_COUNT_ADD(x, n) tsw_metric_add(&(x), (uint64_t)(n))
#define TSW_GAUGE_INC(x) tsw_metric_add(&(x), 1)
#define TSW_GAUGE_DEC(x) tsw_metric_add(&(x), (uint64_t)-1)
#define TSW_GAUGE_ADD(x, n) tsw_metric_add(&(x), (uint64_t)(n))
#define TSW_GAUGE_SUB(x, n) tsw_metric_add(&(x), -(uint64_t)(n))
#define TSW_GAUGE_SET(x, v) tsw_metric_set(&(x), (uint64_t)(v))

/* Issuer links per worker with a gauge and a counter each (the config's
 * TSW_CONFIG_LINKS_MAX: src/engine/engine_int.h checks they agree). */
enum { TSW_METRICS_LINKS_MAX = 32 };

struct tsw_metrics_shard {
	uint64_t requests[TSW_MTI_CLASS_MAX][TSW_METRICS_RC_MAX];
	uint64_t declines[TSW_METRICS_DECLINE_REASONS]; /* by enum tsw_authz_reason */
	struct tsw_hist issuer_rtt;       /* issuer round trip */
	/* switch-added latency (docs/operations.md names the instants):
	 * request_forward per request sent to an issuer, answer_delivery
	 * per issuer answer written for its acquirer, internal their sum
	 * per delivered answer */
	struct tsw_hist internal;
	struct tsw_hist request_forward;
	struct tsw_hist answer_delivery;
	uint64_t inflight;                /* gauge */
	uint64_t pending_full;            /* pending table full (answered 96) */
	uint64_t timeouts;
	uint64_t late_answers;
	uint64_t unmatched_answers;
	uint64_t conns_open;              /* gauge */
	uint64_t conns_accepted;
	uint64_t conns_refused;           /* max_conns reached */
	uint64_t conns_idle_closed;
	uint64_t frames_refused;          /* above max frame / broken framing */
	uint64_t format_errors;
	uint64_t backpressure_pauses;
	uint64_t vault_lookups;
	uint64_t vault_errors;
	uint64_t vault_integrity_failures; /* records failing authentication (96 VAULT_INTEGRITY) */
	uint64_t vault_keys_refused;       /* key file reloads refused (check values) */
	uint64_t link_up[TSW_METRICS_LINKS_MAX]; /* gauge per issuer link: 0 down, 1 connecting, 2 up, 3 signed on */
	uint64_t link_reconnects[TSW_METRICS_LINKS_MAX];
	uint64_t bytes_in, bytes_out;
	/* added by the engine */
	uint64_t ready;                   /* gauge: 1 when tsw_engine_ready() */
	uint64_t forwarded;               /* requests sent to an issuer */
	uint64_t no_route;                /* no route for the PAN's BIN (answered 96) */
	uint64_t link_out_full;           /* issuer link output full (answered 91) */
	uint64_t answers_conn_gone;       /* answer for a closed acquirer connection */
	uint64_t issuer_format_errors;    /* issuer message undecodable or not re-encodable */
	uint64_t pan_leaks_blocked;       /* issuer answer still held the PAN: sent 96 instead */
	/* the wire (docs/wire.md): issuer copies, answer MTIs, chip data */
	uint64_t issuer_frames_too_big;   /* issuer copy above the issuer frame: answered 96 */
	uint64_t answer_mti_mismatches;   /* issuer answer MTI not the request's response: dropped */
	uint64_t de55_tags_stripped;      /* card-data tags removed from an answer's DE55 */
	uint64_t de55_dropped;            /* an answer's DE55 not BER-TLV: removed whole */
	uint64_t slow_consumer_closes;    /* acquirer output full: connection closed */
	uint64_t stash_overflows;         /* input beyond in_buf_bytes while paused: closed */
	uint64_t signon_failures;         /* sign-on refused or not sendable */
	uint64_t echo_timeouts;           /* echo unanswered: link signs on again */
	uint64_t parked;                  /* gauge: limited-use requests awaiting durability */
	uint64_t parked_full;             /* max_parked reached (answered 96) */
	uint64_t park_timeouts;           /* parked past issuer_timeout_ms (answered 96) */
	uint64_t duplicates_refused;      /* same connection, DE11 and DE7 in flight: 94 */
	uint64_t acq_reversals_matched;   /* acquirer reversal: DE90 rewritten to the switch STAN */
	/* store-and-forward reversals. The queue is shared by every worker
	 * (tsw/state.h): saf_depth is the state's depth, written by worker 0
	 * only, so the sum over shards is the depth; the others are 0. */
	uint64_t saf_depth;               /* gauge: reversals queued (not yet acked) */
	uint64_t saf_sent;                /* reversals sent to an issuer (repeats included) */
	uint64_t saf_acked;               /* answered by the issuer: removed from the queue */
	uint64_t saf_declined;            /* ... of them with a code that keeps the use spent */
	uint64_t saf_dropped;             /* not queued (queue full, no state) or token gone */
	/* added with the durable queue */
	uint64_t saf_retried;             /* unanswered, link down or unsendable: due again later */
	uint64_t saf_inflight;            /* gauge: reversals of this worker awaiting an answer */
	/* added by the io_uring backend */
	uint64_t recv_bufs_held;          /* gauge: receive buffers held for paused connections */
	/* the engine's direct-mapped tables: capacity (gauge, set at
	 * creation) and entries pushed out by newer ones while still held */
	uint64_t acq_reversals_capacity;  /* gauge: cfg.acq_reversal_memory */
	uint64_t acq_reversals_evicted;   /* an original pushed out: its reversal goes as it came */
	uint64_t expired_stans_capacity;  /* gauge: cfg.expired_stan_memory */
	uint64_t expired_stans_evicted;   /* a timed-out STAN pushed out: its late answer is unmatched */
	/* the record of money moved before the answer (delivery.c) */
	uint64_t answers_held;            /* gauge: answers waiting for their reversal's commit */
	uint64_t answers_held_timeouts;   /* ... sent after saf_durable_wait_ms without it */
	uint64_t answers_undelivered_reversed; /* approvals the acquirer never got: reversal queued */
	uint64_t answers_undelivered_unqueued; /* ... and the reversal could not be queued */
	/* approvals forwarded before their limited use or ATC was durable
	 * (held_approval.c) */
	uint64_t answers_awaiting_record; /* gauge: issuer approvals held for that record */
	uint64_t answers_record_timeouts; /* ... not durable within saf_durable_wait_ms: 96 */
	/* issuer failover */
	uint64_t requests_rerouted;       /* unsent when its link went down: sent on another host */
	/* stand-in approvals (standin.c) */
	uint64_t standin[TSW_STANDIN_RESULT_MAX]; /* by enum tsw_standin_result */
	uint64_t standin_advices_queued;  /* 0120/0220 advices put in the SAF queue */
	uint64_t standin_exposure_full;   /* refused: the exposure table had no room */
	/* card cryptography (card_crypto.c) */
	uint64_t card_checks[TSW_CARD_CHECK_RESULT_MAX]; /* by enum tsw_card_check_result */
	uint64_t cryptogram_keys_untried; /* failed with keys past cryptogram.max_keys_tried */
	uint64_t arpcs;					 /* answers given a tag 91 */
	uint64_t arpc_failures; /* answers that owed one and went without (HSM error, no room) */
	uint64_t pin_translations[TSW_PIN_RESULT_MAX]; /* by enum tsw_pin_result */
	/* the event log (src/engine/event.c) */
	uint64_t events_suppressed;       /* past log_event_burst: counted, not logged */
	uint64_t events_dropped;          /* the event queue was full: not logged */
} __attribute__((aligned(64)));

#endif
