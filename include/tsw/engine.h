/* The sans-I/O switch engine: one instance per worker thread.
 *
 * The I/O backends (src/io/uring, src/io/uv) move bytes; the engine does
 * everything else: framing, decode, vault lookup, decision, rewrite,
 * pending table, issuer-link protocol (sign-on, echo), timeouts, answers.
 * Nothing here does a syscall, allocates per message, or logs per
 * message; only the state calls (limited uses, store-and-forward
 * reversals) take the state's short mutexes. All memory is allocated in
 * tsw_engine_new().
 *
 * Endpoints: acquirer connections are slots 0..max_conns-1 that the
 * backend opens and closes; issuer links are slots 0..n_links-1 fixed at
 * creation (one per configured issuer host: cfg->settings.hosts), whose sockets the
 * backend (re)connects when tsw_engine_link_wants_connect() says so. An
 * issuer may have several hosts: its requests go to the signed-on one with
 * the fewest requests in flight.
 *
 * Events: the engine never logs. What an operator must hear about (a
 * limit hit, a reversal sent, acknowledged, retried or refused, an issuer
 * refusing sign-on) goes into a bounded queue of events, allocated in
 * tsw_engine_new(); the backend takes them with tsw_engine_next_event()
 * after each loop iteration and logs them.
 *
 * Output: the engine appends framed bytes to per-endpoint output buffers
 * and marks the endpoint dirty. Once per loop iteration the backend drains
 * tsw_engine_next_dirty() and sends each buffer in one send (batching),
 * then calls tsw_engine_sent() with how much went out.
 */
#ifndef TSW_ENGINE_H
#define TSW_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tsw/config.h"
#include "tsw/iso8583.h"
#include "tsw/log.h"
#include "tsw/metrics.h"

struct sockaddr;
struct tsw_vault;
struct tsw_state;
struct tsw_engine;
/* The originals remembered for acquirer reversals, shared by every
 * worker (a reversal may come in on another worker than its original):
 * lock-free, safe from any thread (src/engine/acq_reversal.c). */
struct tsw_acq_reversals;
/* Stand-in exposure per token, shared by every worker (a token's
 * requests spread over workers): a mutex-protected bounded table, safe
 * from any thread (src/engine/standin.c). */
struct tsw_standin_exposure;

/* Six-digit switch STANs, split evenly between the workers (n_workers). */
#define TSW_ENGINE_STAN_SPACE 1000000u

/* A worker engine's configuration: what the engine is given besides the
 * settings (its profiles, its place among the workers, the tables every
 * worker shares) and a copy of the settings themselves (tsw/config.h).
 * Start from tsw_engine_config_init(), which gives every setting its
 * default, then set what differs: a setting left 0 means 0, not the
 * default. */
/* A monotonic clock in ns (the clock of the now_ns arguments: the
 * backends' CLOCK_MONOTONIC). arg is tsw_engine_config.clock_arg. */
typedef uint64_t (*tsw_engine_clock_fn)(void *arg);

struct tsw_engine_config {
	const struct tsw_iso_profile *acq_profile; /* acquirer side */
	const struct tsw_iso_profile *iss_profile; /* issuer side */
	uint32_t worker_id; /* 0..n_workers-1: picks this worker's DE11 span */
	uint32_t n_workers; /* workers sharing the issuers: each gets 10^6 / n_workers switch
			     * STANs; 0: as for 10 workers */
	/* shared by every worker (tsw_acq_reversals_new); NULL: the engine
	 * makes one of settings.acq_reversal_memory entries for itself. Not
	 * a copy: it must outlive the engine. */
	struct tsw_acq_reversals *acq_reversals;
	/* shared by every worker (tsw_standin_exposure_new); NULL: the engine
	 * makes one of settings.standin_max_tokens for itself. It must
	 * outlive the engine. */
	struct tsw_standin_exposure *standin_exposure;
	/* card cryptography: the HSM (one per process; the engine opens a
	 * session of its own) and the key set (tsw_card_keys_load; the engine
	 * takes a reference, so the caller may drop its own once every
	 * engine has it: tsw_engine_new and tsw_engine_reconfigure take it).
	 * NULL: no card keys, and a token that requires a cryptogram is
	 * declined 63 (no_key). */
	struct tsw_hsm *hsm;
	struct tsw_card_keys *card_keys;
	/* The engine reads, per worker where it says so in tokswitch.conf:
	 * [limits] max_conns, max_inflight_per_conn (back-pressure),
	 * max_pending, out_buf_bytes, idle_timeout_ms (0: never),
	 * in_buf_bytes (input held while paused; the backend passes at most
	 * this much per acq_input), link_buf_bytes, max_parked (limited-use
	 * requests awaiting durability), acq_reversal_memory and
	 * expired_stan_memory (direct-mapped tables, powers of two, at most
	 * TSW_CONFIG_TABLE_MEMORY_MAX); [issuer] timeout_ms, echo_interval_ms,
	 * reconnect_min/max_ms, the issuers and their hosts (link i connects
	 * to hosts[i]); [route]; [saf] (docs/engine.md); [standin]
	 * (docs/engine.md "Stand-in"); and the event log's log_event_burst,
	 * log_event_interval_ms and log_event_queue. The buffers are raised
	 * to what a frame of the profiles needs (out_buf_bytes and
	 * link_buf_bytes two frames, in_buf_bytes one). The other settings
	 * are the process's (tsw_config_check() is not run here). */
	struct tsw_config settings;
	/* The clock the latency histograms read at the instant a request's
	 * issuer copy is in its link's output buffer and the instant an
	 * answer is in its acquirer's (the other instants are the now_ns of
	 * the calls: docs/operations.md, "Latency"). NULL: the engine reads
	 * CLOCK_MONOTONIC (through the vDSO). Called on the worker's thread
	 * only; tests give a clock of their own. */
	tsw_engine_clock_fn clock_ns;
	void *clock_arg;
};

/* Fills cfg for tsw_engine_new(): no profiles, worker 0, no shared
 * tables, every setting at its default (tsw_config_defaults()). */
void tsw_engine_config_init(struct tsw_engine_config *cfg);

/* Makes the table of originals the workers' acquirer reversals are
 * matched against: entries originals (a power of two, at most
 * 64 * TSW_CONFIG_TABLE_MEMORY_MAX) and as many reversal links, 32 bytes
 * each. Returns 0, -EINVAL or -ENOMEM; *ret_table untouched on failure. */
int tsw_acq_reversals_new(uint32_t entries, struct tsw_acq_reversals **ret_table);
/* Frees it (NULL is fine) once no engine uses it. */
void tsw_acq_reversals_free(struct tsw_acq_reversals *t);

/* Makes the stand-in exposure table: room for max_tokens tokens
 * (1..2^24; 2 slots of 48 bytes each). Returns 0, -EINVAL or -ENOMEM;
 * *ret_table untouched on failure. Memory only: a restart forgets every
 * token's exposure. */
int tsw_standin_exposure_new(uint32_t max_tokens, struct tsw_standin_exposure **ret_table);
/* Frees it (NULL is fine) once no engine uses it. */
void tsw_standin_exposure_free(struct tsw_standin_exposure *t);

/* The card keys (imk-ac, zpk-acquirer, zpk-issuer, tavv) every worker
 * uses, immutable once loaded, shared, freed with the last reference
 * (src/engine/card_keys.c). */
struct tsw_card_keys;
struct tsw_hsm;

/* Loads every active key of v's key store (tsw_vault_key_load) into h:
 * a new set with one reference, the caller's. The clear copies are wiped
 * before return. Returns 0, the errors of tsw_vault_key_load() and of
 * tsw_hsm_key_import() (-TSW_E_FULL: more keys than [hsm] max_keys), or
 * -ENOMEM; nothing is kept on failure. */
int tsw_card_keys_load(struct tsw_vault *v, struct tsw_hsm *h, struct tsw_card_keys **ret_keys);
/* Keys in the set (0 for NULL). */
uint32_t tsw_card_keys_count(const struct tsw_card_keys *k);
/* Drops one reference (NULL is fine); the last one wipes and frees the
 * keys (tsw_hsm_key_free). Any thread. */
void tsw_card_keys_put(struct tsw_card_keys *k);

enum tsw_endpoint_kind {
	TSW_EP_ACQ,
	TSW_EP_LINK,
	TSW_EP_KIND_MAX
};

struct tsw_endpoint {
	uint8_t kind;  /* enum tsw_endpoint_kind */
	uint32_t slot;
};

/* Creates a worker's engine. vault and state are shared, opened by main;
 * the engine opens its own vault reader. state may be NULL (limited-use
 * tokens are then declined 96, reversals cannot be kept and are counted
 * in saf_dropped). The state must outlive every call on the engine but
 * not the engine itself: tsw_engine_free() does not touch it (reversals
 * claimed and in flight are leased in memory only; a restart makes them
 * due again). Reversals are stored with route_key = the issuer's index
 * (cfg->settings.hosts[].issuer, not the link) and sent through any signed-on link
 * of that issuer: keep the order of the issuers across restarts while
 * reversals are queued (add issuers at the end; hosts of an issuer may
 * change). metrics is this worker's shard (owned by
 * the caller, read by the control plane; it must outlive the engine).
 * cfg is copied; its profiles must outlive the engine. Returns 0,
 * -ENOMEM, -EINVAL (vault or metrics NULL), -TSW_E_CONFIG (no profile, a
 * profile without a length header, max_conns or max_pending 0, too many
 * issuers, hosts or routes, a host of an unknown issuer, an issuer without
 * a host, a route to an unknown issuer, worker_id >= n_workers
 * (10 when 0), acq_reversal_memory or expired_stan_memory 0, not a power
 * of two or above TSW_CONFIG_TABLE_MEMORY_MAX, log_event_queue 0,
 * reconnect_min_ms above reconnect_max_ms (both above 0), max_pending above the worker's
 * STAN span minus one: 10^6 / n_workers - 1), or the error of
 * tsw_vault_reader_open(). */
int tsw_engine_new(const struct tsw_engine_config *cfg, struct tsw_vault *vault,
		   struct tsw_state *state, struct tsw_metrics_shard *metrics,
		   struct tsw_engine **ret_engine);
/* Frees the engine and everything it allocated (NULL is fine); issuer-link
 * buffers are wiped first. Requests in flight are dropped without an
 * answer; the vault, state and metrics shard are not touched. */
void tsw_engine_free(struct tsw_engine *e);

/* Registers the backend's wake-up eventfd with the state (once, before
 * traffic): the state's writer writes to it after each commit, so parked
 * limited-use requests go on at once instead of at the next poll
 * (TSW_ENGINE_PARK_POLL_NS). Lets io/ avoid tsw/state.h. Returns 0 (also
 * when the engine has no state), -TSW_E_FULL or -EBADF (from
 * tsw_state_add_waker). */
int tsw_engine_add_state_waker(struct tsw_engine *e, int eventfd);

/* Once per loop iteration, before handling completions: renews the vault
 * read transaction. tsw_engine_loop_end() resets it before the backend
 * waits. now_ns is CLOCK_MONOTONIC. */
void tsw_engine_loop_begin(struct tsw_engine *e, uint64_t now_ns);
void tsw_engine_loop_end(struct tsw_engine *e);

/* Acquirer connections. open returns the slot, or -TSW_E_FULL when
 * max_conns is reached (the backend closes the socket; counted). */
int tsw_engine_acq_open(struct tsw_engine *e, uint64_t now_ns);
/* The backend closed a new connection at once without a slot (it had no
 * endpoint of its own left: closed ones not yet reaped): counted and
 * reported as a refusal of tsw_engine_acq_open() is. */
void tsw_engine_acq_refused(struct tsw_engine *e);
/* The peer address of connection slot (after acq_open): part of the
 * acquirer's identity that its reversals are matched by (the host, not
 * the port). sa NULL or not AF_INET/AF_INET6: unknown, the same for
 * every such connection. */
void tsw_engine_acq_peer(struct tsw_engine *e, uint32_t slot, const struct sockaddr *sa,
			 size_t sa_len);
/* Bytes received (at most settings.in_buf_bytes per call). Returns 0, or a
 * negative error after which the backend must close the connection:
 * -TSW_E_FRAME_TOO_BIG / -TSW_E_BAD_HEADER (broken framing),
 * -TSW_E_BAD_INPUT (a message whose MTI or DE11 cannot be read, or a
 * response MTI from an acquirer), -TSW_E_FULL (input arrived while paused
 * beyond in_buf_bytes), -EINVAL (slot not open). Input that arrives while
 * the connection is paused is kept and processed when it resumes. */
int tsw_engine_acq_input(struct tsw_engine *e, uint32_t slot, const uint8_t *data, size_t len,
			 uint64_t now_ns);
/* True while the connection has max_inflight_per_conn requests pending or
 * its output buffer is above half full: the backend stops reading it. */
bool tsw_engine_acq_paused(const struct tsw_engine *e, uint32_t slot);
/* Back-pressure, as the engine decides it: the backend asks before it
 * hands input of connection slot in (and after it did). True: the
 * connection takes no input now (tsw_engine_acq_paused); the backend
 * stops reading it and keeps, in arrival order, what still arrives, until
 * tsw_engine_next_release() names the slot. False: hand it in. */
bool tsw_engine_acq_hold(struct tsw_engine *e, uint32_t slot);
/* The next connection the backend was told to hold that takes input
 * again: the backend hands it what it kept, in order, asking
 * tsw_engine_acq_hold() before each piece, and reads it again once it
 * keeps nothing and the answer is false. A slot may come back that the
 * backend no longer holds (closed and reused meanwhile): nothing to do. */
bool tsw_engine_next_release(struct tsw_engine *e, uint32_t *ret_slot);
/* The peer closed or the socket failed. Pending requests of the
 * connection still complete on the issuer side (answers are dropped and
 * counted in answers_conn_gone); the slot may be handed out again at once
 * (a generation number keeps old answers away from a new connection). */
void tsw_engine_acq_close(struct tsw_engine *e, uint32_t slot);
/* tsw_engine_acq_close() for a connection whose first sent bytes of its
 * output left before a write that is cancelled by the close: approvals
 * in them count as delivered. Unlike tsw_engine_sent() it never resumes
 * the connection (no stashed request of a closing connection starts). */
void tsw_engine_acq_close_sent(struct tsw_engine *e, uint32_t slot, size_t sent);

/* Issuer links: the number of them (settings.n_hosts; link indexes are
 * 0..n-1 in settings.hosts order, fixed for the engine's life). */
uint32_t tsw_engine_n_links(const struct tsw_engine *e);
/* The issuer link serves (settings.hosts[link].issuer); UINT32_MAX out of
 * range. */
uint32_t tsw_engine_link_issuer(const struct tsw_engine *e, uint32_t link);
/* True when the link is down and its backoff has expired: the backend
 * starts a connect to settings.hosts[link]. */
bool tsw_engine_link_wants_connect(const struct tsw_engine *e, uint32_t link, uint64_t now_ns);
/* The backend started a connect for link (after link_wants_connect). */
void tsw_engine_link_connecting(struct tsw_engine *e, uint32_t link, uint64_t now_ns);
/* The connect succeeded: the engine queues a sign-on (0800 DE70 001); the
 * link carries requests once it is answered 00. */
void tsw_engine_link_up(struct tsw_engine *e, uint32_t link, uint64_t now_ns);
/* The connect failed or the connection closed: requests pending on the
 * link are answered 91 (reversals queued where due, sent through another
 * signed-on link of the issuer when it has one), its output is wiped and
 * a reconnect is scheduled with exponential backoff and jitter. New
 * requests for the issuer go to its other signed-on links. */
void tsw_engine_link_down(struct tsw_engine *e, uint32_t link, uint64_t now_ns);
/* Bytes received on link. Answers are matched and delivered; an answer
 * that does not decode is counted (issuer_format_errors) and skipped.
 * Returns 0, -EINVAL (link out of range), or a framing error after which
 * the backend must close the link (-TSW_E_FRAME_TOO_BIG,
 * -TSW_E_BAD_HEADER; counted in frames_refused). */
int tsw_engine_link_input(struct tsw_engine *e, uint32_t link, const uint8_t *data, size_t len,
			  uint64_t now_ns);
/* True when the issuer of every route (issuer 0 without routes) has at
 * least one link signed on. */
bool tsw_engine_ready(const struct tsw_engine *e);

/* Timers: the earliest deadline (monotonic ns) the engine needs a tick
 * for, or UINT64_MAX. tick expires pending requests (answers 91, queues
 * reversals), sends echoes, closes idle connections (reported through
 * next_close) and, every saf_poll_ms while a link is signed on, claims
 * and sends the reversals due for the signed-on links. */
uint64_t tsw_engine_next_deadline(const struct tsw_engine *e);
void tsw_engine_tick(struct tsw_engine *e, uint64_t now_ns);

/* Output. Returns true and the next endpoint with bytes to send. */
bool tsw_engine_next_dirty(struct tsw_engine *e, struct tsw_endpoint *ret_ep);
/* The bytes waiting for ep; they stay valid and unchanged until
 * tsw_engine_sent(ep, ...) (more bytes may be appended behind them). */
void tsw_engine_out(struct tsw_engine *e, struct tsw_endpoint ep, const uint8_t **ret_data,
		    size_t *ret_len);
/* n bytes of ep's output went out (n may be less than tsw_engine_out
 * gave: the rest stays, and ep is marked dirty again). The bytes given by
 * tsw_engine_out stay in place until this call, however many engine calls
 * happen meanwhile (an async send may still read them); call it with 0
 * when a send failed. */
void tsw_engine_sent(struct tsw_engine *e, struct tsw_endpoint ep, size_t n);
/* Connections the engine wants closed (idle timeout, protocol error after
 * the answer was flushed). Returns true and the slot. */
bool tsw_engine_next_close(struct tsw_engine *e, uint32_t *ret_slot);

/* Draining (SIGTERM): the backend stops accepting; requests already read
 * are finished. Returns the acquirer requests in flight to issuers plus
 * those parked for a durable use. Store-and-forward reversals in flight
 * are not counted: they are in the state's queue, and one whose answer
 * does not arrive before the exit is sent again after the restart. */
uint32_t tsw_engine_inflight(const struct tsw_engine *e);

/* The worker is about to exit (after the drain, or at its deadline):
 * every acquirer connection is closed (approvals still in their output
 * buffers are reversed), every request still at an issuer is failed
 * (its reversal queued, no answer), held answers are dropped (their
 * reversals are queued already). Call it while the state is open, before
 * tsw_engine_free(); the state's close then writes what was queued. */
void tsw_engine_shutdown(struct tsw_engine *e, uint64_t now_ns);

/* ---- events (docs/operations.md, "Logs", names every one) ----
 *
 * Rate limits: each kind has a window of settings.log_event_interval_ms;
 * the first settings.log_event_burst events of a kind in a window are queued, the others are
 * counted (metrics events_suppressed) and reported in the next event of
 * that kind (suppressed = how many were left out before it). When no
 * event of the kind comes by the end of its window, the count comes in an
 * event of its own (has_fields false: only suppressed means anything).
 * A queue full at the moment an event passes its limit drops it
 * (metrics events_dropped); the drops are reported in a
 * TSW_EV_EVENTS_DROPPED event once the queue has room. Tokens are masked
 * (first 6, last 4); no PAN is ever in an event. */
enum tsw_engine_event_kind {
	TSW_EV_ISSUER_SIGNON_REFUSED,	 /* link, rc; n1: ms until it is sent again */
	TSW_EV_ISSUER_RECONNECT_BACKOFF, /* link; n1: ms until the reconnect */
	TSW_EV_ISSUER_ECHO_TIMEOUT,	 /* link; n1: the timeout, ms */
	TSW_EV_SAF_PUT_REFUSED,		 /* link, err, token, stan, rrn, amount; why: "advice"
					  * (else a reversal); n1: switch STAN */
	TSW_EV_SAF_SENT,		 /* link, id; n1: attempt (1 = first) */
	TSW_EV_SAF_ACKED,		 /* link, id, rc */
	TSW_EV_SAF_RETRIED,		 /* id; n1: ms until it is due again */
	TSW_EV_SAF_DROPPED,		 /* id, why: a queued reversal that can never be sent */
	TSW_EV_MAX_CONNS,		 /* n1: max_conns */
	TSW_EV_STASH_OVERFLOW,		 /* slot; n1: in_buf_bytes */
	TSW_EV_SLOW_CONSUMER,		 /* slot; n1: out_buf_bytes */
	TSW_EV_LINK_OUT_FULL,		 /* link; n1: link_buf_bytes */
	TSW_EV_PENDING_FULL,		 /* n1: max_pending */
	TSW_EV_PARKED_FULL,		 /* n1: max_parked */
	TSW_EV_FRAME_REFUSED,		 /* slot (why "acquirer") or link (why "issuer"), err;
					  * n1: max_frame */
	TSW_EV_STANDIN,			 /* link, token, stan, rrn, amount; why: the result
					  * (approved, declined_amount, ...) */
	TSW_EV_ANSWER_HELD_TIMEOUT,	 /* slot, id; n2: saf_durable_wait_ms: an answer went out
					  * before its reversal or advice was durable */
	TSW_EV_APPROVAL_UNDELIVERED,	 /* link, token, stan, rrn, amount; why: reversed or
					  * unqueued (the issuer keeps the money) */
	TSW_EV_APPROVAL_RECORD_UNWRITTEN, /* link, token, stan, rrn, amount; why: degraded or
					   * timeout (n2: saf_durable_wait_ms): an approval
					   * whose limited use or ATC never became durable,
					   * reversed and answered 96 */
	TSW_EV_ISSUER_FRAME_TOO_BIG,	 /* link, token, stan, rrn, amount; n1: the issuer's largest
					  * body: the request was answered 96 */
	TSW_EV_ANSWER_MTI_MISMATCH,	 /* link, token, stan, rrn, amount; n1: switch STAN; n2:
					  * request MTI * 10000 + the answer's MTI (dropped) */
	TSW_EV_VAULT_INTEGRITY,		 /* slot, token: its record fails authentication */
	TSW_EV_VAULT_KEYS_REFUSED,	 /* err: a key file reload refused, old keys kept */
	TSW_EV_CRYPTOGRAM_DECLINED,	 /* token; why: the check's result ("wrong", ...) */
	TSW_EV_PIN_BLOCK_REFUSED,	 /* token; why: the translation's result */
	TSW_EV_KEYS_TRIED_LIMIT,	 /* n1: cryptogram.max_keys_tried; n2: active keys: a
					  * check failed with older keys untried */
	TSW_EV_EVENTS_DROPPED, /* n1: events dropped since the last report; n2: queue size */
	TSW_EV_KIND_MAX
};

#define TSW_ENGINE_EVENT_TOKEN_MAX 20 /* a masked token of up to 19 digits and its NUL */

/* One event; which fields mean something depends on kind (above). */
struct tsw_engine_event {
	uint8_t kind;	     /* enum tsw_engine_event_kind */
	bool has_fields;     /* false: a report of suppressed events only */
	uint32_t suppressed; /* events of this kind left out before this one */
	uint32_t link;	     /* issuer link index (one per issuer host) */
	uint32_t issuer;     /* the issuer the link serves (set from link) */
	uint32_t slot;	     /* acquirer connection slot */
	uint64_t id;	     /* store-and-forward reversal id */
	uint64_t n1, n2;
	int err;	 /* negative errno or -TSW_E_*, 0: none */
	const char *why; /* a static word, or NULL */
	char rc[3];	 /* DE39, "" when none */
	char token[TSW_ENGINE_EVENT_TOKEN_MAX]; /* masked, "" when none */
	char stan[7], rrn[13], amount[13];	 /* the acquirer's DE11, DE37, DE4 */
};

/* Takes the oldest queued event into *ret_ev. Returns false when there is
 * none (a report of suppressed or dropped events that is due is queued
 * first). Never allocates; cheap when nothing is queued. */
bool tsw_engine_next_event(struct tsw_engine *e, struct tsw_engine_event *ret_ev);
/* The event's name in the log ("max_conns_reached", ...): a static
 * string; "unknown" out of range. */
const char *tsw_engine_event_name(unsigned kind);
/* The level to log it at. */
enum tsw_log_level tsw_engine_event_level(unsigned kind);
/* Writes the event's fields as logfmt text ("link=0 rc=\"05\" ...",
 * values that are not plain numbers quoted; tsw/log.h) into buf (cap
 * bytes, NUL-terminated, cut when long). Returns the length written. */
size_t tsw_engine_event_format(const struct tsw_engine_event *ev, char *buf, size_t cap);

/* SIGHUP: applies what a reload applies (tsw_config_apply_reload(): the
 * keys the config's table marks so) from cfg->settings: routes,
 * max_inflight_per_conn, issuer_timeout_ms, idle_timeout_ms,
 * echo_interval_ms, reconnect_min/max_ms, saf_inflight_max, saf_poll_ms,
 * saf_retry_min/max_ms, saf_durable_wait_ms, the stand-in rules
 * (standin_*, but standin_max_tokens and the table), and log_event_burst
 * and log_event_interval_ms (a window already open keeps its start).
 * Sizes (max_conns, max_pending, buffers, max_parked, acq_reversal_memory,
 * expired_stan_memory, log_event_queue) keep the values the engine was
 * created with (the caller warns: tsw_config_restart_only_changed()), and
 * so do the profiles and the worker's place; requests in flight keep their
 * deadline. Returns 0, or -TSW_E_CONFIG (a route names an unknown issuer,
 * or the issuer or host list differs: that needs a restart), leaving e
 * unchanged. */
int tsw_engine_reconfigure(struct tsw_engine *e, const struct tsw_engine_config *cfg);

#endif
