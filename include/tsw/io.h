/* I/O workers: one thread per worker that owns an engine (tsw/engine.h)
 * and moves its bytes over sockets, with one of two backends behind this
 * interface: io_uring (one ring per worker, multishot accept and recv into
 * a registered provided-buffer ring, batched submit) or libuv (one loop per
 * worker). The backend decides nothing: framing, decisions, timeouts and
 * answers are the engine's.
 *
 * The control plane talks to a worker only through the functions below
 * (a mailbox guarded by a mutex plus an eventfd that wakes the worker);
 * nothing here runs per message.
 */
#ifndef TSW_IO_H
#define TSW_IO_H

#include <stdbool.h>
#include <stdint.h>

#include "tsw/engine.h"
#include "tsw/metrics.h"

struct tsw_vault;
struct tsw_state;
struct tsw_io_worker;

enum tsw_io_backend {
	TSW_IO_AUTO,  /* io_uring, else libuv with a warning log line */
	TSW_IO_URING, /* io_uring or fail */
	TSW_IO_UV,    /* libuv */
	TSW_IO_BACKEND_MAX
};

struct tsw_io_params {
	enum tsw_io_backend backend;
	int listen_fd; /* listening socket (tsw_io_listen()); the worker owns it */
	uint32_t listen_backlog;
	uint32_t ring_entries;		   /* io_uring submission queue entries */
	uint32_t recv_buf_bytes;	   /* one receive buffer */
	uint32_t recv_bufs;		   /* receive buffers per worker, a power of two */
	struct tsw_engine_config engine;   /* profiles must outlive the worker */
	struct tsw_vault *vault;	   /* shared, outlives the worker */
	struct tsw_state *state;	   /* shared, may be NULL, outlives the worker */
	struct tsw_metrics_shard *metrics; /* this worker's shard, outlives the worker */
	int wake_fd; /* an eventfd (EFD_NONBLOCK) that wakes the worker, e.g. one
		      * registered with tsw_state_add_waker(); the worker owns it
		      * from tsw_io_worker_start() on, even on failure. -1: the
		      * worker makes its own. */
};

/* Creates a listening TCP socket on host:port (numeric address) with
 * SO_REUSEADDR and SO_REUSEPORT, so every worker can bind its own on the
 * same port. *ret_port gets the bound port (port 0 picks one). Returns 0,
 * -EINVAL (not a numeric address) or the -errno of socket/bind/listen. */
int tsw_io_listen(const char *host, uint16_t port, uint32_t backlog, int *ret_fd,
		  uint16_t *ret_port);

/* Starts the worker thread and waits until it is serving: engine created,
 * issuer addresses resolved, backend set up (with TSW_IO_AUTO, a failed
 * io_uring setup falls back to libuv and logs a warning). Returns 0, or
 * the error of that setup (-ENOMEM, -TSW_E_CONFIG, -EHOSTUNREACH for an
 * issuer host that does not resolve, the io_uring setup -errno with
 * TSW_IO_URING); on failure the listen fd is closed and nothing is left
 * running. */
int tsw_io_worker_start(const struct tsw_io_params *p, struct tsw_io_worker **ret_worker);

/* The backend the worker runs (TSW_IO_URING or TSW_IO_UV). */
enum tsw_io_backend tsw_io_worker_backend(const struct tsw_io_worker *w);

/* The engine's readiness as last published by the worker (once per loop
 * iteration). Safe from any thread. */
bool tsw_io_worker_ready(const struct tsw_io_worker *w);

/* Posts an empty message to the worker's mailbox and returns its number;
 * tsw_io_worker_answered() is true once the worker's loop has read the
 * mailbox since (the service watchdog: a worker whose loop no longer
 * turns stops answering). Safe from any thread. */
unsigned tsw_io_worker_ping(struct tsw_io_worker *w);
bool tsw_io_worker_answered(const struct tsw_io_worker *w, unsigned ping);

/* Hands a new engine configuration (routes, timeouts, limits; the issuer
 * list must be the same) to the worker, which applies it with
 * tsw_engine_reconfigure() on its next iteration. A later call replaces an
 * unapplied one. Safe from any thread. */
void tsw_io_worker_reconfigure(struct tsw_io_worker *w, const struct tsw_engine_config *cfg);

/* Asks the worker to drain: it closes its listener, stops reading, finishes
 * what it read (answers sent, issuer requests answered or timed out) and
 * exits its thread once nothing is in flight or after timeout_ms. Safe
 * from any thread; idempotent. */
void tsw_io_worker_drain(struct tsw_io_worker *w, uint32_t timeout_ms);

/* Waits for the worker thread to exit (after tsw_io_worker_drain()).
 * Returns 0 when it drained everything, -ETIMEDOUT when the drain deadline
 * cut requests off, or the -errno that stopped its loop. */
int tsw_io_worker_join(struct tsw_io_worker *w);

/* Frees a joined worker. */
void tsw_io_worker_free(struct tsw_io_worker *w);

/* Parses "uring", "uv", "auto". Returns 0 or -TSW_E_CONFIG. */
int tsw_io_backend_parse(const char *s, enum tsw_io_backend *ret);
const char *tsw_io_backend_name(enum tsw_io_backend b);

#endif
