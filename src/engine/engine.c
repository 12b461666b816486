/* The sans-I/O switch engine: lifecycle (new, free, reconfigure) and the
 * loop (begin, end, tick, next deadline). acq_input.c and acq_reply.c
 * hold the acquirer connections, request.c the per-request pipeline
 * (parse -> vault -> decide -> engine__decline or forward), answer.c the issuer
 * answers back to the acquirer and the timeouts, link_input.c and
 * link_output.c the issuer links; docs/engine.md maps every file.
 *
 * One instance per worker thread. No syscalls (the wall clock and the
 * latency histograms' monotonic clock are read through the vDSO), no locks, no allocation after
 * tsw_engine_new(), no logging (events go to a queue the backend logs: event.c). docs/engine.md
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
#include "card_crypto.h"
#include "engine_int.h"
#include "held_approval.h"
#include "standin.h"
#include "use.h"
#include "tsw/error.h"
#include "tsw/hsm.h"
#include "tsw/vault.h"

static int64_t wall_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts.tv_sec;
}

static uint64_t mono_now(void *arg)
{
	struct timespec ts;

	(void)arg;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

/* ---- lifecycle, loop, timers ---- */

void tsw_engine_config_init(struct tsw_engine_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	tsw_config_defaults(&cfg->settings);
}

/* every host serves a known issuer, every issuer has a host, every route
 * names a known issuer */
static int check_issuers(const struct tsw_config *c)
{
	uint32_t hosts_of[TSW_CONFIG_ISSUERS_MAX] = {0};
	uint32_t i;

	if (c->n_issuers > TSW_CONFIG_ISSUERS_MAX || c->n_hosts > TSW_CONFIG_LINKS_MAX ||
	    c->n_routes > TSW_CONFIG_ROUTES_MAX)
		return -TSW_E_CONFIG;
	for (i = 0; i < c->n_hosts; i++) {
		if (c->hosts[i].issuer >= c->n_issuers)
			return -TSW_E_CONFIG;
		hosts_of[c->hosts[i].issuer]++;
	}
	for (i = 0; i < c->n_issuers; i++)
		if (!hosts_of[i])
			return -TSW_E_CONFIG;
	for (i = 0; i < c->n_routes; i++)
		if (c->routes[i].issuer >= c->n_issuers)
			return -TSW_E_CONFIG;
	return 0;
}

/* direct-mapped tables: the slot is the hash masked, so a power of two,
 * and never 0 (no slot to mask into) */
static bool table_size_ok(uint32_t n)
{
	return n && !(n & (n - 1)) && n <= TSW_CONFIG_TABLE_MEMORY_MAX;
}

static int check_config(const struct tsw_engine_config *cfg)
{
	const struct tsw_config *c = &cfg->settings;

	if (!cfg->acq_profile || !cfg->iss_profile || c->max_conns == 0 || c->max_pending == 0)
		return -TSW_E_CONFIG;
	if (cfg->acq_profile->header == TSW_ISO_HDR_NONE ||
	    cfg->iss_profile->header == TSW_ISO_HDR_NONE)
		return -TSW_E_CONFIG;
	if (check_issuers(c) < 0)
		return -TSW_E_CONFIG;
	/* each worker stamps its own DE11 span, and the pending table never
	 * holds more requests than that span has STANs (0 is never used) */
	if (cfg->n_workers > TSW_ENGINE_STAN_SPACE / 2 ||
	    cfg->worker_id >= (cfg->n_workers ? cfg->n_workers : TSW_ENGINE_STAN_WORKERS_DEFAULT) ||
	    c->max_pending > engine__stan_span(cfg) - 1)
		return -TSW_E_CONFIG;
	if (c->reconnect_min_ms && c->reconnect_max_ms && c->reconnect_min_ms > c->reconnect_max_ms)
		return -TSW_E_CONFIG;
	if (!table_size_ok(c->acq_reversal_memory) || !table_size_ok(c->expired_stan_memory) ||
	    c->log_event_queue == 0)
		return -TSW_E_CONFIG;
	if (c->standin_max_tokens > TSW_CONFIG_STANDIN_MAX_TOKENS_MAX)
		return -TSW_E_CONFIG;
	return 0;
}

/* A ceiling below its floor is the floor (reconnect backoff, SAF retry). */
static void order_ranges(struct tsw_config *c)
{
	if (c->reconnect_max_ms < c->reconnect_min_ms)
		c->reconnect_max_ms = c->reconnect_min_ms;
	if (c->saf_retry_max_ms < c->saf_retry_min_ms)
		c->saf_retry_max_ms = c->saf_retry_min_ms;
}

/* An answer must always fit: the buffers hold what a frame of the
 * profiles needs, whatever they were given. */
static void raise_buffers(struct tsw_config *c, const struct tsw_engine_config *cfg)
{
	uint32_t frame = cfg->acq_profile->max_frame + 4;
	uint32_t iframe = cfg->iss_profile->max_frame + 4;

	if (c->out_buf_bytes < 2 * frame)
		c->out_buf_bytes = 2 * frame;
	if (c->link_buf_bytes < 2 * iframe)
		c->link_buf_bytes = c->out_buf_bytes * 4 > TSW_ENGINE_LINK_BUF_MIN
					? c->out_buf_bytes * 4
					: TSW_ENGINE_LINK_BUF_MIN;
	if (c->in_buf_bytes < frame)
		c->in_buf_bytes = frame;
}

static int conns_init(struct tsw_engine *e)
{
	uint32_t i;

	e->conns = calloc(e->cfg.max_conns, sizeof(*e->conns));
	e->free_conns = malloc(sizeof(*e->free_conns) * e->cfg.max_conns);
	e->close_q = malloc(sizeof(*e->close_q) * e->cfg.max_conns);
	e->dirty_cap = e->cfg.max_conns + TSW_CONFIG_LINKS_MAX;
	e->dirty = malloc(sizeof(*e->dirty) * e->dirty_cap);
	if (!e->conns || !e->free_conns || !e->close_q || !e->dirty)
		return -ENOMEM;
	for (i = 0; i < e->cfg.max_conns; i++) {
		struct acq_conn *c = &e->conns[i];

		if (tsw_iso_framer_init(&c->fr, e->acq_profile) < 0 ||
		    engine__outbuf_init(&c->out, e->cfg.out_buf_bytes) < 0)
			return -ENOMEM;
		c->stash = malloc(e->cfg.in_buf_bytes);
		if (!c->stash)
			return -ENOMEM;
		c->unsent_head = c->unsent_tail = UINT32_MAX;
		e->free_conns[e->cfg.max_conns - 1 - i] = i;
	}
	e->n_free_conns = e->cfg.max_conns;
	return 0;
}

static int links_init(struct tsw_engine *e)
{
	uint32_t i;

	for (i = 0; i < e->n_links; i++) {
		struct issuer_link *l = &e->links[i];

		if (tsw_iso_framer_init(&l->fr, e->iss_profile) < 0 ||
		    engine__outbuf_init(&l->out, e->cfg.link_buf_bytes) < 0)
			return -ENOMEM;
		l->state = LINK_DOWN;
		l->issuer = e->cfg.hosts[i].issuer;
		l->backoff_ms = e->cfg.reconnect_min_ms;
		TSW_GAUGE_SET(e->m->link_up[i], 0);
	}
	return 0;
}

/* The tables of the other files, in the order they may use each other. */
static int tables_init(struct tsw_engine *e)
{
	int r = engine__pending_init(e);

	if (r == 0)
		r = engine__dup_init(e);
	if (r == 0)
		r = engine__acq_rev_init(e);
	if (r == 0)
		r = engine__saf_buffers_alloc(e);
	if (r == 0)
		r = engine__park_init(e);
	if (r == 0)
		r = engine__approval_init(e);
	if (r == 0)
		r = engine__standin_init(e);
	if (r == 0)
		r = engine__events_init(e);
	return r;
}

/* The worker's HSM session and its reference on the card keys. */
static int card_init(struct tsw_engine *e, const struct tsw_engine_config *cfg)
{
	if (!cfg->hsm)
		return 0;
	e->hsm = cfg->hsm;
	e->card_keys = engine__card_keys_get(cfg->card_keys);
	return tsw_hsm_session_open(cfg->hsm, &e->hsm_s);
}

int tsw_engine_new(const struct tsw_engine_config *cfg, struct tsw_vault *vault,
		   struct tsw_state *state, struct tsw_metrics_shard *metrics,
		   struct tsw_engine **ret_engine)
{
	struct tsw_engine *e;
	int r;

	if (!vault || !metrics)
		return -EINVAL;
	r = check_config(cfg);
	if (r < 0)
		return r;
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->cfg = cfg->settings;
	order_ranges(&e->cfg);
	raise_buffers(&e->cfg, cfg);
	e->acq_profile = cfg->acq_profile;
	e->iss_profile = cfg->iss_profile;
	e->worker_id = cfg->worker_id;
	e->n_workers = cfg->n_workers;
	e->acq_rev = cfg->acq_reversals;
	e->standin_exp = cfg->standin_exposure;
	e->vault = vault;
	e->state = state;
	e->m = metrics;
	e->clock_ns = cfg->clock_ns ? cfg->clock_ns : mono_now;
	e->clock_arg = cfg->clock_arg;
	e->n_links = e->cfg.n_hosts;
	e->rng = 0x9e3779b97f4a7c15ull ^ ((uint64_t)cfg->worker_id << 32) ^ (uint64_t)wall_now();
	e->wall_s = wall_now();
	e->pan_fp_seed = engine__pan_fp_seed_new();
	e->held_head = e->held_tail = UINT32_MAX;

	r = tsw_vault_reader_open(vault, &e->reader);
	if (r < 0)
		goto err_free;
	r = card_init(e, cfg);
	if (r < 0)
		goto err_free;
	r = conns_init(e);
	if (r == 0)
		r = links_init(e);
	if (r == 0)
		r = tables_init(e);
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
	/* requests still in flight hold key references */
	if (e->reqs)
		for (i = 0; i < e->n_reqs; i++)
			engine__card_arpc_drop(&e->reqs[i].arpc);
	tsw_card_keys_put(e->card_keys);
	tsw_hsm_session_close(e->hsm_s);
	if (e->conns)
		for (i = 0; i < e->cfg.max_conns; i++) {
			if (e->conns[i].fr.acc)
				tsw_iso_framer_free(&e->conns[i].fr);
			engine__outbuf_free(&e->conns[i].out);
			free(e->conns[i].stash);
		}
	for (i = 0; i < e->n_links; i++) {
		if (e->links[i].fr.acc)
			tsw_iso_framer_free(&e->links[i].fr);
		if (e->links[i].out.data)
			explicit_bzero(e->links[i].out.data, e->links[i].out.cap);
		engine__outbuf_free(&e->links[i].out);
	}
	engine__park_free(e);
	engine__approval_free(e);
	engine__pending_free(e);
	engine__dup_free(e);
	engine__acq_rev_free(e);
	engine__saf_buffers_free(e);
	engine__standin_free(e);
	engine__events_free(e);
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
	if (engine__reader_ensure(e) < 0)
		TSW_COUNT(e->m->vault_errors);
	engine__park_poll(e);
	if (engine__approval_pending(e))
		engine__approval_poll(e);
	engine__held_poll(e);
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
	const struct req *top = engine__heap_top(e);
	uint32_t i;

	if (top)
		d = top->deadline_ns;
	for (i = 0; i < e->n_links; i++) {
		uint64_t ld = engine__link_next_deadline(e, i);

		if (ld < d)
			d = ld;
	}
	if (e->cfg.idle_timeout_ms && e->next_idle_scan_ns < d && e->m->conns_open)
		d = e->next_idle_scan_ns;
	sd = engine__saf_next_deadline(e);
	if (sd < d)
		d = sd;
	if (engine__park_pending(e) || engine__held_pending(e) || engine__approval_pending(e)) {
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
	while ((r = engine__heap_top(e)) && r->deadline_ns <= now_ns)
		engine__req_fail(e, r, 1);
	for (i = 0; i < e->n_links; i++)
		engine__link_tick(e, i);
	if (now_ns >= e->saf_next_poll_ns)
		engine__saf_poll(e);
	engine__idle_scan(e, now_ns);
	engine__park_poll(e);
	if (engine__approval_pending(e))
		engine__approval_poll(e);
	engine__held_poll(e);
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
	while ((r = engine__heap_top(e)))
		engine__req_fail(e, r, 0);
	/* approvals held for their record: their connections are closed,
	 * so they are reversed */
	engine__approval_poll(e);
	engine__held_drop_all(e);
	engine__park_poll(e);
}

uint32_t tsw_engine_inflight(const struct tsw_engine *e)
{
	/* reversals in flight are in the state's queue: not waited for */
	return e->reqs_used - e->saf_inflight + engine__park_pending(e);
}

int tsw_engine_reconfigure(struct tsw_engine *e, const struct tsw_engine_config *cfg)
{
	struct tsw_config c = e->cfg;
	int r;

	r = check_config(cfg);
	if (r < 0)
		return r;
	if (!tsw_config_issuers_equal(&cfg->settings, &e->cfg))
		return -TSW_E_CONFIG;
	/* sizes and table capacities stay as allocated: a reload applies
	 * only the keys marked so in the config's table */
	tsw_config_apply_reload(&c, &cfg->settings);
	order_ranges(&c);
	e->cfg = c;
	/* a reload's keys: requests in flight keep the set they verified
	 * under (their own reference) */
	if (cfg->card_keys != e->card_keys && e->hsm) {
		tsw_card_keys_put(e->card_keys);
		e->card_keys = engine__card_keys_get(cfg->card_keys);
	}
	engine__events_configure(e);
	return 0;
}
