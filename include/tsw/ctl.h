/* The control plane's HTTP endpoint (libuv): GET /metrics (Prometheus
 * text, the sum of every worker's metrics shard), /healthz (200 while the
 * process runs), /readyz (200 only when every worker is ready; the body
 * says "degraded: state writer: REASON" while the state's writer is
 * degraded, still 200: ordinary authorizations flow), anything else 404.
 * One request per connection (Connection: close), requests bounded in
 * size, connections bounded in number; a connection that has not sent a
 * whole request head within request_timeout_ms is closed, and when every
 * slot is taken a new client takes the one of the oldest connection still
 * sending its request (an answer being written is never cut). With a
 * token, /metrics wants "Authorization: Bearer TOKEN" (401 otherwise);
 * /healthz and /readyz stay open for probes: they tell only whether the
 * process runs and is ready.
 *
 * Runs on the caller's uv loop and thread; never touches worker state
 * beyond relaxed atomic loads of the shards (tsw/metrics.h: one writer
 * each) and the ready hook. The state's counters (tsw_state_stats():
 * atomics, no lock) are read at each scrape.
 */
#ifndef TSW_CTL_H
#define TSW_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "tsw/config.h"
#include "tsw/metrics.h"

struct tsw_state;

/* What /metrics and /readyz read. All pointers must outlive the ctl. */
struct tsw_hsm;

/* The cluster's figures at scrape time (filled by the owner: ctl does
 * not use tsw/cluster.h). */
struct tsw_ctl_cluster_values {
	uint64_t applied_sequence;
	double lag_seconds;
	uint64_t apply_errors;
	uint64_t consumer_resets;
	bool connected;
	bool plaintext; /* the url is nats:// (no TLS) */
};

struct tsw_ctl_source {
	struct tsw_metrics_shard *const *shards; /* one per worker */
	uint32_t n_shards;
	const struct tsw_config_host *links; /* per issuer link: its host and issuer */
	uint32_t n_links;
	bool (*ready)(void *ctx); /* true when every worker is ready */
	void *ctx;
	/* the state environment (tsw/state.h), or NULL when the switch runs
	 * without one: then the tokswitch_state_* series are left out and
	 * tokswitch_state_open is 0 */
	const struct tsw_state *state;
	/* the software HSM (tsw/hsm.h), or NULL: then the tokswitch_hsm_* series
	 * are left out */
	const struct tsw_hsm *hsm;
	/* the labels of tokswitch_build_info: the build's version and the I/O
	 * backend the workers run ("uring", "uv"); NULL: "unknown" */
	const char *version;
	const char *io_backend;
	/* the cluster (docs/cluster.md), or NULL when the switch runs
	 * without one: then the tokswitch_cluster_* series are left out */
	void (*cluster)(void *ctx, struct tsw_ctl_cluster_values *ret_values);
};

struct tsw_ctl_params {
	const char *host; /* numeric IPv4 or IPv6 address */
	uint16_t port;	  /* 0: pick a free one (tsw_ctl_port()) */
	uint32_t max_conns;
	uint32_t max_request_bytes;
	uint32_t request_timeout_ms; /* accept to a complete request head */
	uint32_t idle_timeout_ms;    /* answer given to answer taken by the client */
	uint32_t backlog;
	/* one log line per kind of limit hit (timeout, eviction, refusal,
	 * 401, 431) per interval, with the count of the others */
	uint32_t log_interval_ms;
	/* /metrics answers only with "Authorization: Bearer TOKEN"; NULL:
	 * open. Copied by tsw_ctl_start() (and wiped by tsw_ctl_stop()). */
	const char *token;
	size_t token_len;
};

struct tsw_ctl;

/* Binds and listens on loop; logs metrics_not_loopback (warn) when host is
 * not a loopback address. Returns 0, -EINVAL (bad address, a zero limit
 * or timeout, an empty token), -ENOMEM, or the libuv -errno of bind/listen
 * (e.g. -EADDRINUSE). */
int tsw_ctl_start(uv_loop_t *loop, const struct tsw_ctl_params *p, const struct tsw_ctl_source *src,
		  struct tsw_ctl **ret_ctl);

/* The bound port (useful after port 0). */
uint16_t tsw_ctl_port(const struct tsw_ctl *c);

/* Closes the listener and every connection; the memory is released from
 * close callbacks, so the loop must run once more afterwards. */
void tsw_ctl_stop(struct tsw_ctl *c);

/* Renders the Prometheus text of src into a malloc'ed NUL-terminated
 * string (*ret_text, freed by the caller) of *ret_len bytes. Returns 0 or
 * -ENOMEM. Metric names are listed in docs/operations.md. */
int tsw_ctl_render_metrics(const struct tsw_ctl_source *src, char **ret_text, size_t *ret_len);

/* True for 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104 (numeric hosts
 * only; anything else, names included, is false). */
bool tsw_ctl_host_is_loopback(const char *host);

/* Longest bearer token accepted (bytes). */
#define TSW_CTL_TOKEN_MAX 4096

/* Reads the bearer token from path: a regular file (no symlink) owned by
 * the effective user with no group or other permission bits (the key
 * file's rule), holding one line of RFC 6750 token68 characters
 * (A-Za-z0-9-._~+/ then any '='), a trailing newline allowed. Writes it
 * NUL-terminated to buf (cap bytes) and its length to *ret_len. Returns 0,
 * -EPERM (owner or mode), -TSW_E_BAD_INPUT (empty, bad characters, several
 * lines, longer than cap - 1 or TSW_CTL_TOKEN_MAX), -EINVAL (cap below 2),
 * or the -errno of open/read (-ELOOP for a symlink). buf is wiped on a
 * failure after the open. */
int tsw_ctl_token_read(const char *path, char *buf, size_t cap, size_t *ret_len);

/* --- request heads (pure; tests and the fuzz target call them) --------- */

/* The incremental search for the end of a head: zero it for a new
 * request, then call tsw_http_head_end() after each read with the whole
 * buffer so far (it must only grow). */
struct tsw_http_head_scan {
	size_t pos; /* where the next search starts: bytes before it are done */
};

/* Looks for the blank line (CRLF CRLF) ending a head in buf[0..len),
 * starting where the previous call on s stopped, so a head cut into any
 * number of reads costs O(len) in all. Returns the head's length up to and
 * including the blank line, or 0 while it is incomplete. Reads only
 * buf[0..len). */
size_t tsw_http_head_end(struct tsw_http_head_scan *s, const char *buf, size_t len);

/* One request head. Pointers into the caller's buffer, not NUL-terminated. */
struct tsw_http_request {
	const char *method;
	size_t method_len;
	const char *path; /* the target without its query */
	size_t path_len;
	bool has_authorization; /* an Authorization header was sent */
	const char *bearer;	/* its Bearer credentials, NULL when none */
	size_t bearer_len;
};

/* Parses a complete head buf[0..len) (len as tsw_http_head_end() returned
 * it): the request line "METHOD SP TARGET SP HTTP/1.0|1" (its first line,
 * CRLF-terminated) and the header lines "NAME: VALUE" up to the blank line.
 * Returns 0 with *ret_req set, or -EINVAL for anything else (a bare CR or
 * LF, a header without a colon or with a non-token name, two
 * Authorization headers, bytes after the blank line). Reads only
 * buf[0..len). */
int tsw_http_parse(const char *buf, size_t len, struct tsw_http_request *ret_req);

#endif
