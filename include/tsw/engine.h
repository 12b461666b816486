/* The sans-I/O switch engine: one instance per worker thread.
 *
 * The I/O backends (src/io/uring, src/io/uv) move bytes; the engine does
 * everything else: framing, decode, vault lookup, decision, rewrite,
 * pending table, issuer-link protocol (sign-on, echo), timeouts, answers.
 * Nothing here does a syscall, takes a lock, allocates per message, or
 * logs per message. All memory is allocated in tsw_engine_new().
 *
 * Endpoints: acquirer connections are slots 0..max_conns-1 that the
 * backend opens and closes; issuer links are slots 0..n_links-1 fixed at
 * creation (one per configured issuer host), whose sockets the backend
 * (re)connects when tsw_engine_link_wants_connect() says so.
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

#include "tsw/iso8583.h"
#include "tsw/metrics.h"

struct tsw_vault;
struct tsw_state;
struct tsw_engine;

#define TSW_ISSUERS_MAX 16
#define TSW_ROUTES_MAX 64

struct tsw_route {
	char bin_prefix[12];  /* PAN prefix, "" = default route */
	uint8_t issuer;       /* index into issuers */
};

struct tsw_engine_config {
	const struct tsw_iso_profile *acq_profile;  /* acquirer side */
	const struct tsw_iso_profile *iss_profile;  /* issuer side */
	uint32_t max_conns;               /* acquirer connections per worker */
	uint32_t max_inflight_per_conn;   /* back-pressure threshold */
	uint32_t max_pending;             /* pending-table capacity per worker */
	uint32_t out_buf_bytes;           /* per-endpoint output buffer */
	uint32_t issuer_timeout_ms;       /* per-request, default 2000 */
	uint32_t idle_timeout_ms;         /* acquirer connection idle, 0 = none */
	uint32_t echo_interval_ms;        /* issuer link idle echo */
	uint32_t reconnect_min_ms, reconnect_max_ms; /* backoff with jitter */
	uint32_t n_issuers;
	struct {
		char host[64];
		uint16_t port;
	} issuers[TSW_ISSUERS_MAX];
	uint32_t n_routes;
	struct tsw_route routes[TSW_ROUTES_MAX];
	uint32_t worker_id;               /* stamped into the switch's DE11/DE37 space */
};

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
 * the engine opens its own vault reader. metrics is this worker's shard
 * (owned by the caller, read by the control plane). Returns 0, -ENOMEM,
 * -TSW_E_CONFIG. */
int tsw_engine_new(const struct tsw_engine_config *cfg, struct tsw_vault *vault,
		   struct tsw_state *state, struct tsw_metrics_shard *metrics,
		   struct tsw_engine **ret_engine);
void tsw_engine_free(struct tsw_engine *e);

/* Once per loop iteration, before handling completions: renews the vault
 * read transaction. tsw_engine_loop_end() resets it before the backend
 * waits. now_ns is CLOCK_MONOTONIC. */
void tsw_engine_loop_begin(struct tsw_engine *e, uint64_t now_ns);
void tsw_engine_loop_end(struct tsw_engine *e);

/* Acquirer connections. open returns the slot, or -TSW_E_FULL when
 * max_conns is reached (the backend closes the socket; counted). */
int tsw_engine_acq_open(struct tsw_engine *e, uint64_t now_ns);
/* Bytes received. Returns 0, or a negative error after which the backend
 * must close the connection (broken framing, unreadable message). */
int tsw_engine_acq_input(struct tsw_engine *e, uint32_t slot, const uint8_t *data, size_t len,
			 uint64_t now_ns);
/* True while the connection has max_inflight_per_conn requests pending or
 * its output buffer is above half full: the backend stops reading it. */
bool tsw_engine_acq_paused(const struct tsw_engine *e, uint32_t slot);
/* The peer closed or the socket failed. Pending requests of the
 * connection still complete on the issuer side (answers are dropped and
 * counted); the slot is reused only after that. */
void tsw_engine_acq_close(struct tsw_engine *e, uint32_t slot);

/* Issuer links. */
uint32_t tsw_engine_n_links(const struct tsw_engine *e);
/* True when the link is down and its backoff has expired: the backend
 * starts a connect to cfg->issuers[link]. */
bool tsw_engine_link_wants_connect(const struct tsw_engine *e, uint32_t link, uint64_t now_ns);
void tsw_engine_link_connecting(struct tsw_engine *e, uint32_t link, uint64_t now_ns);
void tsw_engine_link_up(struct tsw_engine *e, uint32_t link, uint64_t now_ns);   /* sends sign-on */
void tsw_engine_link_down(struct tsw_engine *e, uint32_t link, uint64_t now_ns); /* schedules backoff */
int tsw_engine_link_input(struct tsw_engine *e, uint32_t link, const uint8_t *data, size_t len,
			  uint64_t now_ns);
/* True when every route has at least one link signed on. */
bool tsw_engine_ready(const struct tsw_engine *e);

/* Timers: the earliest deadline (monotonic ns) the engine needs a tick
 * for, or UINT64_MAX. tick expires pending requests (answers 91), sends
 * echoes, closes idle connections (reported through next_close). */
uint64_t tsw_engine_next_deadline(const struct tsw_engine *e);
void tsw_engine_tick(struct tsw_engine *e, uint64_t now_ns);

/* Output. Returns true and the next endpoint with bytes to send. */
bool tsw_engine_next_dirty(struct tsw_engine *e, struct tsw_endpoint *ret_ep);
/* The bytes waiting for ep (valid until the next engine call). */
void tsw_engine_out(struct tsw_engine *e, struct tsw_endpoint ep, const uint8_t **ret_data,
		    size_t *ret_len);
/* n bytes of ep's output went out. */
void tsw_engine_sent(struct tsw_engine *e, struct tsw_endpoint ep, size_t n);
/* Connections the engine wants closed (idle timeout, protocol error after
 * the answer was flushed). Returns true and the slot. */
bool tsw_engine_next_close(struct tsw_engine *e, uint32_t *ret_slot);

/* Draining (SIGTERM): stop taking new requests (answered 91? no: the
 * backend stops accepting; requests already read are finished). */
uint32_t tsw_engine_inflight(const struct tsw_engine *e);

#endif
