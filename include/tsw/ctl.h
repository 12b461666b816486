/* The control plane's HTTP endpoint (libuv): GET /metrics (Prometheus
 * text, the sum of every worker's metrics shard), /healthz (200 while the
 * process runs), /readyz (200 only when every worker is ready; the body
 * says "degraded: state writer: REASON" while the state's writer is
 * degraded, still 200: ordinary authorizations flow), anything else 404.
 * One request per connection (Connection: close), requests bounded in
 * size, connections bounded in number and idle time.
 *
 * Runs on the caller's uv loop and thread; never touches worker state
 * beyond racy reads of the shards (plain 64-bit loads) and the ready hook.
 * The state's counters (tsw_state_stats(): atomics, no lock) are read at
 * each scrape.
 */
#ifndef TSW_CTL_H
#define TSW_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "tsw/metrics.h"

struct tsw_state;

/* What /metrics and /readyz read. All pointers must outlive the ctl. */
struct tsw_ctl_source {
	struct tsw_metrics_shard *const *shards; /* one per worker */
	uint32_t n_shards;
	const char *const *link_names; /* "host:port" per issuer link, n_links entries */
	uint32_t n_links;
	bool (*ready)(void *ctx); /* true when every worker is ready */
	void *ctx;
	/* the state environment (tsw/state.h), or NULL when the switch runs
	 * without one: then the tsw_state_* series are left out and
	 * tsw_state_open is 0 */
	const struct tsw_state *state;
};

struct tsw_ctl_params {
	const char *host; /* numeric IPv4 or IPv6 address */
	uint16_t port;	  /* 0: pick a free one (tsw_ctl_port()) */
	uint32_t max_conns;
	uint32_t max_request_bytes;
	uint32_t idle_timeout_ms;
	uint32_t backlog;
};

struct tsw_ctl;

/* Binds and listens on loop. Returns 0, -EINVAL (bad address), -ENOMEM, or
 * the libuv -errno of bind/listen (e.g. -EADDRINUSE). */
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

#endif
