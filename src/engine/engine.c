/* The sans-I/O switch engine: lifecycle (new, free, reconfigure) and the
 * loop (begin, end, tick, next deadline). acq_input.c and acq_reply.c
 * hold the acquirer connections, request.c the per-request pipeline
 * (parse -> vault -> decide -> decline or forward), answer.c the issuer
 * answers back to the acquirer and the timeouts, link_input.c and
 * link_output.c the issuer links; docs/engine.md maps every file.
 *
 * One instance per worker thread. No syscalls (the wall clock is read
 * through the vDSO), no locks, no allocation after tsw_engine_new(), no
 * logging (events go to a queue the backend logs: event.c). docs/engine.md
 * describes the pipeline.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "acq_reversal.h"
#include "answer_guard.h"
#include "delivery.h"
#include "dup.h"
#include "engine_int.h"
#include "standin.h"
#include "use.h"
#include "tsw/error.h"
#include "tsw/vault.h"

static int64_t wall_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts.tv_sec;
}

/* ---- lifecycle, loop, timers ---- */

static uint32_t or_default(uint32_t v, uint32_t def)
{
	return v ? v : def;
}

static int check_config(const struct tsw_engine_config *cfg)
{
	uint32_t hosts_of[TSW_ISSUERS_MAX] = {0};
	uint32_t i;

	if (!cfg->acq_profile || !cfg->iss_profile || cfg->max_conns == 0 ||
	    cfg->max_pending == 0 || cfg->n_issuers > TSW_ISSUERS_MAX ||
	    cfg->n_hosts > TSW_LINKS_MAX || cfg->n_routes > TSW_ROUTES_MAX)
		return -TSW_E_CONFIG;
	if (cfg->acq_profile->header == TSW_ISO_HDR_NONE ||
	    cfg->iss_profile->header == TSW_ISO_HDR_NONE)
		return -TSW_E_CONFIG;
	/* every host serves a known issuer, every issuer has a host */
	for (i = 0; i < cfg->n_hosts; i++) {
		if (cfg->hosts[i].issuer >= cfg->n_issuers)
			return -TSW_E_CONFIG;
		hosts_of[cfg->hosts[i].issuer]++;
	}
	for (i = 0; i < cfg->n_issuers; i++)
		if (!hosts_of[i])
			return -TSW_E_CONFIG;
	for (i = 0; i < cfg->n_routes; i++)
		if (cfg->routes[i].issuer >= cfg->n_issuers)
			return -TSW_E_CONFIG;
	/* each worker stamps its own DE11 span, and the pending table never
	 * holds more requests than that span has STANs (0 is never used) */
	if (cfg->n_workers > TSW_ENGINE_STAN_SPACE / 2 ||
	    cfg->worker_id >= (cfg->n_workers ? cfg->n_workers : TSW_ENGINE_STAN_WORKERS_DEFAULT) ||
	    cfg->max_pending > stan_span(cfg) - 1)
		return -TSW_E_CONFIG;
	if (cfg->reconnect_min_ms && cfg->reconnect_max_ms &&
	    cfg->reconnect_min_ms > cfg->reconnect_max_ms)
		return -TSW_E_CONFIG;
	/* direct-mapped tables: the slot is the hash masked */
	if ((cfg->acq_reversal_memory & (cfg->acq_reversal_memory - 1)) ||
	    cfg->acq_reversal_memory > TSW_ENGINE_TABLE_MEMORY_MAX ||
	    (cfg->expired_stan_memory & (cfg->expired_stan_memory - 1)) ||
	    cfg->expired_stan_memory > TSW_ENGINE_TABLE_MEMORY_MAX)
		return -TSW_E_CONFIG;
	if (cfg->standin_max_tokens > TSW_CONFIG_STANDIN_MAX_TOKENS_MAX)
		return -TSW_E_CONFIG;
	return 0;
}

static void apply_defaults(struct tsw_engine_config *c)
{
	uint32_t frame = c->acq_profile->max_frame + 4;
	uint32_t iframe = c->iss_profile->max_frame + 4;

	c->max_inflight_per_conn = or_default(c->max_inflight_per_conn, 256);
	c->issuer_timeout_ms =
	    or_default(c->issuer_timeout_ms, TSW_ENGINE_ISSUER_TIMEOUT_DEFAULT_MS);
	c->echo_interval_ms = or_default(c->echo_interval_ms, TSW_ENGINE_ECHO_DEFAULT_MS);
	c->reconnect_min_ms = or_default(c->reconnect_min_ms, TSW_ENGINE_RECONNECT_MIN_DEFAULT_MS);
	c->reconnect_max_ms = or_default(c->reconnect_max_ms, TSW_ENGINE_RECONNECT_MAX_DEFAULT_MS);
	if (c->reconnect_max_ms < c->reconnect_min_ms)
		c->reconnect_max_ms = c->reconnect_min_ms;
	c->in_buf_bytes = or_default(c->in_buf_bytes, TSW_ENGINE_IN_BUF_DEFAULT);
	c->max_parked = or_default(c->max_parked, TSW_ENGINE_PARKED_DEFAULT);
	c->saf_inflight_max = or_default(c->saf_inflight_max, TSW_ENGINE_SAF_INFLIGHT_DEFAULT);
	c->saf_poll_ms = or_default(c->saf_poll_ms, TSW_ENGINE_SAF_POLL_DEFAULT_MS);
	c->saf_retry_min_ms = or_default(c->saf_retry_min_ms, TSW_ENGINE_SAF_RETRY_MIN_DEFAULT_MS);
	c->saf_retry_max_ms = or_default(c->saf_retry_max_ms, TSW_ENGINE_SAF_RETRY_MAX_DEFAULT_MS);
	c->saf_durable_wait_ms =
	    or_default(c->saf_durable_wait_ms, TSW_CONFIG_SAF_DURABLE_WAIT_MS_DEFAULT);
	c->acq_reversal_memory =
	    or_default(c->acq_reversal_memory, TSW_ENGINE_ACQ_REV_MEMORY_DEFAULT);
	c->expired_stan_memory =
	    or_default(c->expired_stan_memory, TSW_ENGINE_EXPIRED_MEMORY_DEFAULT);
	if (c->saf_retry_max_ms < c->saf_retry_min_ms)
		c->saf_retry_max_ms = c->saf_retry_min_ms;
	c->standin_window_s = or_default(c->standin_window_s, TSW_CONFIG_STANDIN_WINDOW_S_DEFAULT);
	c->standin_max_tokens =
	    or_default(c->standin_max_tokens, TSW_CONFIG_STANDIN_MAX_TOKENS_DEFAULT);
	c->event_burst = or_default(c->event_burst, TSW_ENGINE_EVENT_BURST_DEFAULT);
	c->event_interval_ms =
	    or_default(c->event_interval_ms, TSW_ENGINE_EVENT_INTERVAL_DEFAULT_MS);
	c->event_queue = or_default(c->event_queue, TSW_ENGINE_EVENT_QUEUE_DEFAULT);
	/* an answer must always fit: two frames at least */
	if (c->out_buf_bytes < 2 * frame)
		c->out_buf_bytes = 2 * frame;
	if (c->link_buf_bytes < 2 * iframe)
		c->link_buf_bytes = c->out_buf_bytes * 4 > TSW_ENGINE_LINK_BUF_MIN
					? c->out_buf_bytes * 4
					: TSW_ENGINE_LINK_BUF_MIN;
	if (c->in_buf_bytes < frame)
		c->in_buf_bytes = frame;
}

int tsw_engine_new(const struct tsw_engine_config *cfg, struct tsw_vault *vault,
		   struct tsw_state *state, struct tsw_metrics_shard *metrics,
		   struct tsw_engine **ret_engine)
{
	struct tsw_engine *e;
	uint32_t i;
	int r;

	if (!vault || !metrics)
		return -EINVAL;
	r = check_config(cfg);
	if (r < 0)
		return r;
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->cfg = *cfg;
	apply_defaults(&e->cfg);
	e->vault = vault;
	e->state = state;
	e->m = metrics;
	e->n_links = cfg->n_hosts;
	e->rng = 0x9e3779b97f4a7c15ull ^ ((uint64_t)cfg->worker_id << 32) ^ (uint64_t)wall_now();
	e->wall_s = wall_now();
	e->pan_fp_seed = pan_fp_seed_new();

	r = tsw_vault_reader_open(vault, &e->reader);
	if (r < 0)
		goto err_free;
	r = -ENOMEM;
	e->conns = calloc(e->cfg.max_conns, sizeof(*e->conns));
	e->free_conns = malloc(sizeof(*e->free_conns) * e->cfg.max_conns);
	e->close_q = malloc(sizeof(*e->close_q) * e->cfg.max_conns);
	e->dirty_cap = e->cfg.max_conns + TSW_LINKS_MAX;
	e->dirty = malloc(sizeof(*e->dirty) * e->dirty_cap);
	if (!e->conns || !e->free_conns || !e->close_q || !e->dirty)
		goto err_free;
	for (i = 0; i < e->cfg.max_conns; i++) {
		struct acq_conn *c = &e->conns[i];

		if (tsw_iso_framer_init(&c->fr, e->cfg.acq_profile) < 0 ||
		    outbuf_init(&c->out, e->cfg.out_buf_bytes) < 0)
			goto err_free;
		c->stash = malloc(e->cfg.in_buf_bytes);
		if (!c->stash)
			goto err_free;
		c->unsent_head = c->unsent_tail = UINT32_MAX;
		e->free_conns[e->cfg.max_conns - 1 - i] = i;
	}
	e->n_free_conns = e->cfg.max_conns;
	for (i = 0; i < e->n_links; i++) {
		struct issuer_link *l = &e->links[i];

		if (tsw_iso_framer_init(&l->fr, e->cfg.iss_profile) < 0 ||
		    outbuf_init(&l->out, e->cfg.link_buf_bytes) < 0)
			goto err_free;
		l->state = LINK_DOWN;
		l->issuer = e->cfg.hosts[i].issuer;
		l->backoff_ms = e->cfg.reconnect_min_ms;
		TSW_GAUGE_SET(e->m->link_up[i], 0);
	}
	e->held_head = e->held_tail = UINT32_MAX;
	r = pending_init(e);
	if (r < 0)
		goto err_free;
	r = dup_init(e);
	if (r < 0)
		goto err_free;
	r = acq_rev_init(e);
	if (r < 0)
		goto err_free;
	r = saf_buffers_alloc(e);
	if (r < 0)
		goto err_free;
	r = park_init(e);
	if (r < 0)
		goto err_free;
	r = standin_init(e);
	if (r < 0)
		goto err_free;
	r = events_init(e);
	if (r < 0)
		goto err_free;
	*ret_engine = e;
	return 0;

err_free:
	tsw_engine_free(e);
	return r;
}

void tsw_engine_free(struct tsw_engine *e)
{
	uint32_t i;

	if (!e)
		return;
	if (e->conns)
		for (i = 0; i < e->cfg.max_conns; i++) {
			if (e->conns[i].fr.acc)
				tsw_iso_framer_free(&e->conns[i].fr);
			outbuf_free(&e->conns[i].out);
			free(e->conns[i].stash);
		}
	for (i = 0; i < e->n_links; i++) {
		if (e->links[i].fr.acc)
			tsw_iso_framer_free(&e->links[i].fr);
		if (e->links[i].out.data)
			explicit_bzero(e->links[i].out.data, e->links[i].out.cap);
		outbuf_free(&e->links[i].out);
	}
	park_free(e);
	pending_free(e);
	dup_free(e);
	acq_rev_free(e);
	saf_buffers_free(e);
	standin_free(e);
	events_free(e);
	free(e->conns);
	free(e->free_conns);
	free(e->close_q);
	free(e->dirty);
	if (e->reader) {
		if (e->reader_live)
			tsw_vault_reader_reset(e->reader);
		tsw_vault_reader_close(e->reader);
	}
	free(e);
}

void tsw_engine_loop_begin(struct tsw_engine *e, uint64_t now_ns)
{
	e->now_ns = now_ns;
	e->wall_s = wall_now();
	if (e->reader_live)
		tsw_vault_reader_reset(e->reader);
	e->reader_live = false;
	if (reader_ensure(e) < 0)
		TSW_COUNT(e->m->vault_errors);
	park_poll(e);
	held_poll(e);
	acq_resume_due(e);
}

void tsw_engine_loop_end(struct tsw_engine *e)
{
	if (e->reader_live)
		tsw_vault_reader_reset(e->reader);
	e->reader_live = false;
}

uint64_t tsw_engine_next_deadline(const struct tsw_engine *e)
{
	uint64_t d = UINT64_MAX, sd;
	const struct req *top = heap_top(e);
	uint32_t i;

	if (top)
		d = top->deadline_ns;
	for (i = 0; i < e->n_links; i++) {
		uint64_t ld = link_next_deadline(e, i);

		if (ld < d)
			d = ld;
	}
	if (e->cfg.idle_timeout_ms && e->next_idle_scan_ns < d && e->m->conns_open)
		d = e->next_idle_scan_ns;
	sd = saf_next_deadline(e);
	if (sd < d)
		d = sd;
	if (park_pending(e) || held_pending(e)) {
		uint64_t pd = e->now_ns + TSW_ENGINE_PARK_POLL_NS;

		if (pd < d)
			d = pd;
	}
	return d;
}

void tsw_engine_tick(struct tsw_engine *e, uint64_t now_ns)
{
	struct req *r;
	uint32_t i;

	e->now_ns = now_ns;
	e->wall_s = wall_now();
	while ((r = heap_top(e)) && r->deadline_ns <= now_ns)
		req_fail(e, r, 1);
	for (i = 0; i < e->n_links; i++)
		link_tick(e, i);
	if (now_ns >= e->saf_next_poll_ns)
		saf_poll(e);
	idle_scan(e, now_ns);
	park_poll(e);
	held_poll(e);
	acq_resume_due(e);
}

void tsw_engine_shutdown(struct tsw_engine *e, uint64_t now_ns)
{
	struct req *r;
	uint32_t i;

	e->now_ns = now_ns;
	/* approvals still in output buffers never reach their acquirers */
	for (i = 0; i < e->cfg.max_conns; i++)
		tsw_engine_acq_close(e, i);
	/* requests still at an issuer: their outcome is unknown */
	while ((r = heap_top(e)))
		req_fail(e, r, 0);
	held_drop_all(e);
	park_poll(e);
}

uint32_t tsw_engine_inflight(const struct tsw_engine *e)
{
	/* reversals in flight are in the state's queue: not waited for */
	return e->reqs_used - e->saf_inflight + park_pending(e);
}

int tsw_engine_reconfigure(struct tsw_engine *e, const struct tsw_engine_config *cfg)
{
	struct tsw_engine_config c = e->cfg;
	uint32_t i;
	int r;

	r = check_config(cfg);
	if (r < 0)
		return r;
	if (cfg->n_issuers != e->cfg.n_issuers || cfg->n_hosts != e->cfg.n_hosts)
		return -TSW_E_CONFIG;
	for (i = 0; i < cfg->n_hosts; i++)
		if (strcmp(cfg->hosts[i].host, e->cfg.hosts[i].host) != 0 ||
		    cfg->hosts[i].port != e->cfg.hosts[i].port ||
		    cfg->hosts[i].issuer != e->cfg.hosts[i].issuer)
			return -TSW_E_CONFIG;
	c.n_routes = cfg->n_routes;
	memcpy(c.routes, cfg->routes, sizeof(c.routes));
	c.max_inflight_per_conn = cfg->max_inflight_per_conn;
	c.issuer_timeout_ms = cfg->issuer_timeout_ms;
	c.idle_timeout_ms = cfg->idle_timeout_ms;
	c.echo_interval_ms = cfg->echo_interval_ms;
	c.reconnect_min_ms = cfg->reconnect_min_ms;
	c.reconnect_max_ms = cfg->reconnect_max_ms;
	c.saf_inflight_max = cfg->saf_inflight_max;
	c.saf_poll_ms = cfg->saf_poll_ms;
	c.saf_retry_min_ms = cfg->saf_retry_min_ms;
	c.saf_retry_max_ms = cfg->saf_retry_max_ms;
	c.saf_durable_wait_ms = cfg->saf_durable_wait_ms;
	c.standin_enabled = cfg->standin_enabled;
	c.standin_on_timeout = cfg->standin_on_timeout;
	c.standin_min_assurance = cfg->standin_min_assurance;
	c.standin_modes = cfg->standin_modes;
	c.standin_max_amount = cfg->standin_max_amount;
	c.standin_max_amount_per_token = cfg->standin_max_amount_per_token;
	c.standin_window_s = cfg->standin_window_s;
	c.event_burst = cfg->event_burst;
	c.event_interval_ms = cfg->event_interval_ms;
	apply_defaults(&c);
	/* buffer sizes and table capacities stay as allocated */
	c.out_buf_bytes = e->cfg.out_buf_bytes;
	c.link_buf_bytes = e->cfg.link_buf_bytes;
	c.in_buf_bytes = e->cfg.in_buf_bytes;
	c.max_parked = e->cfg.max_parked;
	c.acq_reversal_memory = e->cfg.acq_reversal_memory;
	c.expired_stan_memory = e->cfg.expired_stan_memory;
	c.standin_max_tokens = e->cfg.standin_max_tokens;
	c.event_queue = e->cfg.event_queue;
	e->cfg = c;
	events_configure(e);
	return 0;
}
