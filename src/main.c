/* tokswitch: the detokenization switch process.
 *
 * The main thread is the control plane: a libuv loop with the metrics and
 * health endpoint (src/ctl), the signals (SIGTERM/SIGINT drain, SIGHUP
 * reload) and nothing else. The data plane is N worker threads (src/io),
 * each with its own engine; they hear from here only through
 * tsw_io_worker_reconfigure() and tsw_io_worker_drain().
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <uv.h>

#include "tsw/cluster.h"
#include "tsw/config.h"
#include "tsw/ctl.h"
#include "tsw/engine.h"
#include "tsw/hsm.h"
#include "tsw/error.h"
#include "tsw/harden.h"
#include "tsw/io.h"
#include "tsw/iso8583.h"
#include "tsw/log.h"
#include "tsw/metrics.h"
#include "tsw/service.h"
#include "tsw/state.h"
#include "tsw/vault.h"

#define FLAGS_MAX 64 /* command-line settings kept for reloads */

_Static_assert(TSW_CONFIG_STATE_WORKERS_MAX == TSW_STATE_WAKERS_MAX,
	       "config refuses more workers than the state can wake");
_Static_assert(TSW_CONFIG_POS_MODES == TSW_POS_MODE_MAX,
	       "standin.modes names every presentment mode, in enum order");

struct flag_setting {
	const char *section, *key, *value;
};

struct server {
	const char *config_path; /* NULL: built-in defaults */
	struct flag_setting flags[FLAGS_MAX];
	unsigned n_flags;
	bool flag_state, flag_no_state; /* --state and --no-state given */
	struct tsw_config cfg;
	struct tsw_iso_profile acq_profile, iss_profile;
	struct tsw_vault *vault;
	struct tsw_cluster *cluster; /* NULL: no cluster */
	struct tsw_state *state;
	struct tsw_acq_reversals *acq_reversals; /* shared by the workers' engines */
	struct tsw_standin_exposure *standin_exposure; /* likewise */
	/* card cryptography: the HSM, the card keys the workers use now, and
	 * the set before them until every worker has taken these (pinged
	 * after the reload posted them: keys_pings) */
	struct tsw_hsm *hsm;
	struct tsw_card_keys *card_keys, *card_keys_before;
	unsigned *keys_pings;
	struct tsw_metrics_shard *shards;
	struct tsw_metrics_shard **shard_ptrs;
	struct tsw_io_worker **workers;
	uint32_t n_workers;

	uv_loop_t *loop;
	struct tsw_ctl *ctl;
	struct tsw_service *service; /* systemd notify (tsw/service.h) */
	unsigned *pings;	     /* per worker: the watchdog's last ping */
	uv_signal_t sig_term, sig_int, sig_hup;
	uv_work_t join_req;
	bool draining;
	int drain_rc;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: tokswitch [-c FILE] [--listen HOST:PORT] [--issuer "
		"HOST:PORT[,HOST:PORT...]]...\n"
		"                 [--vault DIR] (--state DIR | --no-state) [--key-file FILE]\n"
		"                 [--metrics HOST:PORT] [--workers N] [--io uring|uv|auto]\n"
		"                 [--profile NAME] [--log-level LEVEL] [--log-format text|json]\n"
		"                 [--cluster nats://HOST:PORT[,...] --node NAME]\n"
		"       tokswitch --version\n"
		"       tokswitch top [--metrics HOST:PORT] [--interval S] [--once]\n"
		"Flags override the config file; see tokswitch(8), tokswitch.conf(5),\n"
		"config/tokswitch.conf and docs/operations.md.\n");
}

static void version(void)
{
	/* the backend is chosen at start (io_uring where the kernel allows,
	 * else libuv): both are built in */
	printf("tokswitch %s (io: io_uring, libuv)\n", TSW_VERSION);
}

/* limits.max_frame against the length header of both profiles. A
 * profile that does not load is left to open_data(), which names it at
 * start (a reload never changes the profiles). */
static int check_frame(const struct tsw_config *cfg, struct tsw_config_error *err)
{
	static const struct {
		const char *key;
		size_t off;
	} keys[] = {
	    {"server.profile", offsetof(struct tsw_config, profile)},
	    {"server.issuer_profile", offsetof(struct tsw_config, issuer_profile)},
	};
	struct tsw_iso_profile *p = malloc(sizeof(*p));
	int r = 0;

	if (!p)
		return -ENOMEM;
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]) && r == 0; i++) {
		const char *name = (const char *)cfg + keys[i].off;

		if (tsw_iso_profile_load_spec(name, p) < 0)
			continue;
		r = tsw_config_check_frame(cfg, keys[i].key, name, tsw_iso_header_name(p),
					   tsw_iso_header_max(p), err->reason, sizeof(err->reason));
	}
	free(p);
	return r;
}

/* defaults, then the file, then the flags (a first --issuer replaces the
 * file's issuer list) */
static int build_config(const struct server *s, struct tsw_config *ret_cfg,
			struct tsw_config_error *err)
{
	struct tsw_config cfg;
	bool issuers_reset = false;
	int r;

	memset(err, 0, sizeof(*err));
	tsw_config_defaults(&cfg);
	if (s->config_path) {
		r = tsw_config_load(s->config_path, &cfg, err);
		if (r < 0)
			return r;
	}
	for (unsigned i = 0; i < s->n_flags; i++) {
		const struct flag_setting *f = &s->flags[i];

		if (strcmp(f->key, "host") == 0 && !issuers_reset) {
			cfg.n_issuers = 0;
			cfg.n_hosts = 0;
			issuers_reset = true;
		}
		r = tsw_config_set(&cfg, f->section, f->key, f->value, err->reason,
				   sizeof(err->reason));
		if (r < 0) {
			snprintf(err->file, sizeof(err->file), "command line");
			return r;
		}
	}
	if (cfg.n_routes == 0 && cfg.n_issuers > 0) {
		cfg.routes[0].bin_prefix[0] = '\0';
		cfg.routes[0].issuer = 0;
		cfg.n_routes = 1;
	}
	r = tsw_config_check(&cfg, err->reason, sizeof(err->reason));
	if (r == 0)
		r = check_frame(&cfg, err);
	if (r < 0) {
		snprintf(err->file, sizeof(err->file), "%s",
			 s->config_path ? s->config_path : "command line");
		return r;
	}
	*ret_cfg = cfg;
	return 0;
}

/* A worker's engine takes the settings as they are; what it adds is the
 * process's: the profiles loaded, its place among the workers, the tables
 * they share. */
static void engine_config(const struct server *s, const struct tsw_config *c, uint32_t worker_id,
			  struct tsw_engine_config *ec)
{
	memset(ec, 0, sizeof(*ec));
	ec->acq_profile = &s->acq_profile;
	ec->iss_profile = &s->iss_profile;
	ec->worker_id = worker_id;
	ec->n_workers = s->n_workers;
	ec->acq_reversals = s->acq_reversals;
	ec->standin_exposure = s->standin_exposure;
	ec->hsm = s->hsm;
	ec->card_keys = s->card_keys;
	ec->settings = *c;
}

static bool all_ready(void *ctx)
{
	const struct server *s = ctx;

	for (uint32_t i = 0; i < s->n_workers; i++)
		if (!s->workers[i] || !tsw_io_worker_ready(s->workers[i]))
			return false;
	return s->n_workers > 0 && !s->draining;
}

/* The service watchdog: every worker read the last ping, then the next. */
static bool all_alive(void *ctx)
{
	struct server *s = ctx;
	bool alive = true;

	for (uint32_t i = 0; i < s->n_workers; i++)
		if (s->workers[i] && !tsw_io_worker_answered(s->workers[i], s->pings[i]))
			alive = false;
	for (uint32_t i = 0; i < s->n_workers; i++)
		if (s->workers[i])
			s->pings[i] = tsw_io_worker_ping(s->workers[i]);
	return alive;
}

static void join_work(uv_work_t *req)
{
	struct server *s = req->data;
	int rc = 0;

	for (uint32_t i = 0; i < s->n_workers; i++) {
		int r = tsw_io_worker_join(s->workers[i]);

		if (r < 0 && rc == 0)
			rc = r;
	}
	s->drain_rc = rc;
}

static void close_signals(struct server *s)
{
	uv_close((uv_handle_t *)&s->sig_term, NULL);
	uv_close((uv_handle_t *)&s->sig_int, NULL);
	uv_close((uv_handle_t *)&s->sig_hup, NULL);
}

static void joined(uv_work_t *req, int status)
{
	struct server *s = req->data;

	(void)status;
	if (s->drain_rc == -ETIMEDOUT)
		tsw_log(TSW_LOG_WARN, "drain_timeout", "deadline_ms=%u", s->cfg.drain_timeout_ms);
	else
		tsw_log(TSW_LOG_INFO, "drained", NULL);
	tsw_ctl_stop(s->ctl);
	tsw_service_stop(s->service);
	s->service = NULL;
	close_signals(s);
}

static void on_term(uv_signal_t *h, int signum)
{
	struct server *s = h->data;

	if (s->draining)
		return;
	s->draining = true;
	tsw_service_stopping(s->service);
	tsw_log(TSW_LOG_INFO, "draining", "signal=%s deadline_ms=%u",
		signum == SIGINT ? "SIGINT" : "SIGTERM", s->cfg.drain_timeout_ms);
	for (uint32_t i = 0; i < s->n_workers; i++)
		tsw_io_worker_drain(s->workers[i], s->cfg.drain_timeout_ms);
	s->join_req.data = s;
	if (uv_queue_work(s->loop, &s->join_req, join_work, joined) < 0) {
		join_work(&s->join_req);
		joined(&s->join_req, 0);
	}
}

/* The card keys again from the vault's key store (tokvault key-add and
 * key-retire take effect here). The set before the current one is freed
 * once every worker has taken the current one; until then the keys stay
 * as they are. */
static void reload_card_keys(struct server *s)
{
	struct tsw_card_keys *k;
	int r;

	if (s->card_keys_before) {
		for (uint32_t i = 0; i < s->n_workers; i++)
			if (!tsw_io_worker_answered(s->workers[i], s->keys_pings[i])) {
				tsw_log(TSW_LOG_WARN, "card_keys_kept",
					"reason=\"a worker has not taken the last reload's keys\" "
					"worker=%u",
					i);
				return;
			}
		tsw_card_keys_put(s->card_keys_before);
		s->card_keys_before = NULL;
	}
	r = tsw_card_keys_load(s->vault, s->hsm, &k);
	if (r < 0) {
		tsw_log(TSW_LOG_ERROR, "card_keys_refused", "error=\"%s\" action=old_keys_kept",
			tsw_strerror(r));
		return;
	}
	s->card_keys_before = s->card_keys;
	s->card_keys = k;
	tsw_log(TSW_LOG_INFO, "card_keys_loaded", "keys=%u", tsw_card_keys_count(k));
}

static void reload(struct server *s)
{
	char restart_keys[TSW_CONFIG_REASON_MAX];
	struct tsw_config_error err;
	struct tsw_config cfg;

	if (build_config(s, &cfg, &err) < 0) {
		char file[2 * TSW_CONFIG_PATH_MAX], reason[2 * TSW_CONFIG_REASON_MAX];

		tsw_log(TSW_LOG_ERROR, "reload_refused", "file=\"%s\" line=%u reason=\"%s\"",
			tsw_log_quote(err.file, file, sizeof(file)), err.line,
			tsw_log_quote(err.reason, reason, sizeof(reason)));
		return;
	}
	if (!tsw_config_issuers_equal(&s->cfg, &cfg)) {
		tsw_log(TSW_LOG_ERROR, "reload_refused",
			"reason=\"the issuer host list changed: that needs a restart\"");
		return;
	}
	/* the workers read them as they log */
	__atomic_store_n(&tsw_log_level, (enum tsw_log_level)cfg.log_level, __ATOMIC_RELAXED);
	__atomic_store_n(&tsw_log_format, (enum tsw_log_format)cfg.log_format, __ATOMIC_RELAXED);
	if (tsw_config_restart_only_changed(&s->cfg, &cfg, restart_keys, sizeof(restart_keys)))
		tsw_log(TSW_LOG_WARN, "reload_needs_restart", "keys=\"%s\"", restart_keys);
	reload_card_keys(s);
	for (uint32_t i = 0; i < s->n_workers; i++) {
		struct tsw_engine_config ec;

		engine_config(s, &cfg, i, &ec);
		tsw_io_worker_reconfigure(s->workers[i], &ec);
		/* answered: the worker read its mail after these keys were in */
		s->keys_pings[i] = tsw_io_worker_ping(s->workers[i]);
	}
	/* what the engine keeps from creation (sizes) stays as it was */
	tsw_config_apply_reload(&s->cfg, &cfg);
	tsw_log(TSW_LOG_INFO, "config_reloaded", "routes=%u issuer_timeout_ms=%u", cfg.n_routes,
		cfg.issuer_timeout_ms);
}

static void on_hup(uv_signal_t *h, int signum)
{
	struct server *s = h->data;

	(void)signum;
	if (s->draining)
		return;
	tsw_service_reloading(s->service);
	reload(s);
	tsw_service_reloaded(s->service);
}

static int add_flag(struct server *s, struct flag_setting f)
{
	if (s->n_flags == FLAGS_MAX) {
		fprintf(stderr, "tokswitch: more than %d flags\n", FLAGS_MAX);
		return -EINVAL;
	}
	s->flags[s->n_flags++] = f;
	return 0;
}

static const struct option opts[] = {
    {"config", required_argument, NULL, 'c'},	 {"listen", required_argument, NULL, 'l'},
    {"issuer", required_argument, NULL, 'i'},	 {"vault", required_argument, NULL, 'v'},
    {"state", required_argument, NULL, 's'},	 {"key-file", required_argument, NULL, 'k'},
    {"metrics", required_argument, NULL, 'm'},	 {"workers", required_argument, NULL, 'w'},
    {"io", required_argument, NULL, 'o'},	 {"profile", required_argument, NULL, 'p'},
    {"log-level", required_argument, NULL, 'L'}, {"log-format", required_argument, NULL, 'F'},
    {"no-state", no_argument, NULL, 'N'},	 {"cluster", required_argument, NULL, 'C'},
    {"node", required_argument, NULL, 'n'},	 {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},	 {NULL, 0, NULL, 0},
};

/* The [server] key of a flag that sets just that key, or NULL. */
static const char *server_key(int opt)
{
	static const struct {
		int opt;
		const char *key;
	} keys[] = {
	    {'l', "listen"},  {'v', "vault"}, {'k', "key_file"}, {'m', "metrics"},
	    {'w', "workers"}, {'o', "io"},    {'p', "profile"},	 {'L', "log_level"},
	};

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (keys[i].opt == opt)
			return keys[i].key;
	return NULL;
}

/* What flag opt (its value in f->value) does: 1 when f is the setting
 * to keep, 0 when nothing is kept (-c), -EINVAL when refused (written). */
static int take_flag(struct server *s, int opt, struct flag_setting *f)
{
	enum tsw_log_format lf;

	f->key = server_key(opt);
	if (f->key)
		return 1;
	switch (opt) {
	case 'c':
		s->config_path = optarg;
		return 0;
	case 'h':
		usage(stdout);
		exit(0);
	case 'V':
		version();
		exit(0);
	case 'i':
		f->section = "issuer";
		f->key = "host";
		return 1;
	case 'C':
	case 'n':
		f->section = "cluster";
		f->key = opt == 'C' ? "url" : "node";
		return 1;
	case 's':
		/* over the file's no_state; beside --no-state: refused */
		f->key = "state";
		s->flag_state = true;
		return add_flag(s, (struct flag_setting){"server", "no_state", "false"}) < 0
			   ? -EINVAL
			   : 1;
	case 'N':
		/* over the file's state */
		f->key = "no_state";
		f->value = "true";
		s->flag_no_state = true;
		return add_flag(s, (struct flag_setting){"server", "state", ""}) < 0 ? -EINVAL : 1;
	case 'F':
		/* at once: a refusal of the rest is then written in it */
		if (tsw_log_format_parse(optarg, &lf) == 0)
			tsw_log_format = lf;
		f->key = "log_format";
		return 1;
	default:
		usage(stderr);
		return -EINVAL;
	}
}

static int parse_args(struct server *s, int argc, char **argv)
{
	int c;

	while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		struct flag_setting f = {.section = "server", .value = optarg};
		int r = take_flag(s, c, &f);

		if (r < 0 || (r > 0 && add_flag(s, f) < 0))
			return -EINVAL;
	}
	if (optind < argc) {
		usage(stderr);
		return -EINVAL;
	}
	return 0;
}

/* The state writer's transitions, on its thread (tsw_log writes each
 * line at once): the state is a library and does not log itself. */
static void state_event(void *arg, const struct tsw_state_event *ev)
{
	(void)arg;
	switch (ev->kind) {
	case TSW_STATE_EV_DEGRADED:
		tsw_log(TSW_LOG_ERROR, "state_writer_degraded",
			"reason=%s error=\"%s\" held=%" PRIu64
			" effect=\"reversals refused, limited uses declined 96\"",
			tsw_state_health_name(ev->health), ev->detail, ev->held);
		break;
	case TSW_STATE_EV_RECOVERED:
		tsw_log(TSW_LOG_INFO, "state_writer_recovered", "degraded_ms=%" PRIu64,
			ev->degraded_ms);
		break;
	case TSW_STATE_EV_UNWRITTEN:
		tsw_log(TSW_LOG_CRIT, "state_writer_unwritten",
			"held=%" PRIu64 " effect=\"updates not on disk at exit\"", ev->held);
		break;
	default:
		break;
	}
}

/* start_failed for the vault or the state directory; problem (when not
 * empty) names the path whose owner or mode is wrong, and the fix. */
static void start_failed(const char *what, const char *dir, int err, const char *problem)
{
	char q[2 * TSW_CONFIG_PATH_MAX], qp[2 * TSW_HARDEN_WHY_MAX];

	if (problem[0]) {
		tsw_log(TSW_LOG_CRIT, "start_failed",
			"what=%s dir=\"%s\" error=\"%s\" problem=\"%s\"", what,
			tsw_log_quote(dir, q, sizeof(q)), tsw_strerror(err),
			tsw_log_quote(problem, qp, sizeof(qp)));
		return;
	}
	tsw_log(TSW_LOG_CRIT, "start_failed", "what=%s dir=\"%s\" error=\"%s\"", what,
		tsw_log_quote(dir, q, sizeof(q)), tsw_strerror(err));
}

static int open_data(struct server *s)
{
	const struct tsw_config *c = &s->cfg;
	char q[2 * TSW_CONFIG_PATH_MAX];
	int r;

	r = tsw_iso_profile_load_spec(c->profile, &s->acq_profile);
	if (r < 0) {
		tsw_log(TSW_LOG_CRIT, "start_failed", "what=profile name=\"%s\" error=\"%s\"",
			tsw_log_quote(c->profile, q, sizeof(q)), tsw_strerror(r));
		return r;
	}
	r = tsw_iso_profile_load_spec(c->issuer_profile, &s->iss_profile);
	if (r < 0) {
		tsw_log(TSW_LOG_CRIT, "start_failed",
			"what=issuer_profile name=\"%s\" error=\"%s\"",
			tsw_log_quote(c->issuer_profile, q, sizeof(q)), tsw_strerror(r));
		return r;
	}
	s->acq_profile.max_frame = c->max_frame;
	s->iss_profile.max_frame = c->max_frame;
	/* a node applies the cluster's changes to its vault: it writes it */
	r = tsw_vault_open(c->vault_dir, c->key_file, c->cluster_url[0] ? 0 : TSW_VAULT_RDONLY,
			   &s->vault);
	if (r < 0) {
		char why[TSW_HARDEN_WHY_MAX];

		if (tsw_vault_check_files(c->vault_dir, c->key_file, why, sizeof(why)) == 0)
			why[0] = '\0';
		start_failed("vault", c->vault_dir, r, why);
		return r;
	}
	if (c->state_dir[0]) {
		struct tsw_state_config sc = {
		    .queue_size = c->state_queue_size,
		    .max_tokens = c->state_max_tokens,
		    .max_reservations = c->state_max_reservations,
		    .map_size_mb = c->state_map_size_mb,
		    .saf_max_entries = c->state_saf_max_entries,
		    .saf_lease_ms = c->state_saf_lease_ms,
		    .reserve_kb = c->state_reserve_kb,
		    .retry_max_ms = c->state_retry_max_ms,
		    .on_event = state_event,
		};

		r = tsw_state_open(c->state_dir, &sc, &s->state);
		if (r < 0) {
			char why[TSW_HARDEN_WHY_MAX];

			if (tsw_harden_check_env_dir(c->state_dir, why, sizeof(why)) == 0)
				why[0] = '\0';
			start_failed("state", c->state_dir, r, why);
			return r;
		}
	} else {
		/* only with no_state: refuse_without_state() saw to that */
		tsw_log(TSW_LOG_WARN, "no_durable_state",
			"lost=\"reversals owed to issuers after timeouts "
			"(tokswitch_saf_dropped_total, saf_put_refused lines); limited-use tokens "
			"are declined 96\" "
			"fix=\"--state DIR\"");
	}
	return 0;
}

/* The software HSM and the card keys of the vault's key store, before
 * the workers (they take a reference each). */
static int open_card_keys(struct server *s)
{
	struct tsw_hsm_soft_config hc = {
	    .max_keys = s->cfg.hsm_max_keys,
	    .icc_cache_entries = s->cfg.hsm_icc_cache_entries,
	};
	struct tsw_hsm_soft_stats hs;
	int r;

	r = tsw_hsm_soft_open(&hc, &s->hsm);
	if (r < 0) {
		tsw_log(TSW_LOG_CRIT, "start_failed", "what=hsm error=\"%s\"", tsw_strerror(r));
		return r;
	}
	r = tsw_card_keys_load(s->vault, s->hsm, &s->card_keys);
	if (r < 0) {
		tsw_log(TSW_LOG_CRIT, "start_failed",
			"what=card_keys error=\"%s\" fix=\"tokvault key-list shows which\"",
			tsw_strerror(r));
		return r;
	}
	s->keys_pings = calloc(s->n_workers, sizeof(*s->keys_pings));
	if (!s->keys_pings)
		return -ENOMEM;
	if (tsw_hsm_soft_stats(s->hsm, &hs) == 0 && !hs.locked)
		tsw_log(TSW_LOG_WARN, "hsm_memory_not_locked",
			"effect=\"card keys may be swapped to disk\" fix=\"raise RLIMIT_MEMLOCK "
			"(LimitMEMLOCK=)\"");
	tsw_log(TSW_LOG_INFO, "card_keys_loaded", "keys=%u", tsw_card_keys_count(s->card_keys));
	return 0;
}

static int start_workers(struct server *s, uint16_t *ret_port)
{
	const struct tsw_config *c = &s->cfg;
	enum tsw_io_backend backend = c->io == TSW_CONFIG_IO_URING ? TSW_IO_URING
				      : c->io == TSW_CONFIG_IO_UV  ? TSW_IO_UV
								   : TSW_IO_AUTO;
	uint16_t port = c->listen.port;
	int r;

	for (uint32_t i = 0; i < s->n_workers; i++) {
		struct tsw_io_params p = {
		    .backend = backend,
		    .listen_backlog = c->listen_backlog,
		    .ring_entries = c->ring_entries,
		    .recv_buf_bytes = c->recv_buf_bytes,
		    .recv_bufs = c->recv_bufs,
		    .vault = s->vault,
		    .state = s->state,
		    .metrics = &s->shards[i],
		};

		/* the state's writer wakes the worker when a limited use is durable */
		p.wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (p.wake_fd < 0) {
			r = -errno;
			tsw_log(TSW_LOG_CRIT, "start_failed", "what=eventfd error=\"%s\"",
				tsw_strerror(r));
			return r;
		}
		/* worker 0 picks the port (0: any); the others join it with SO_REUSEPORT */
		r = tsw_io_listen(c->listen.host, port, c->listen_backlog, &p.listen_fd, &port);
		if (r < 0) {
			tsw_log(TSW_LOG_CRIT, "start_failed",
				"what=listen address=%s:%u error=\"%s\"", c->listen.host, port,
				tsw_strerror(r));
			close(p.wake_fd);
			return r;
		}
		engine_config(s, c, i, &p.engine);
		r = tsw_io_worker_start(&p, &s->workers[i]);
		if (r < 0) {
			tsw_log(TSW_LOG_CRIT, "start_failed", "what=worker worker=%u error=\"%s\"",
				i, tsw_strerror(r));
			return r;
		}
		/* registered once the worker owns the fd for good (it outlives the state) */
		if (s->state) {
			r = tsw_state_add_waker(s->state, p.wake_fd);
			if (r < 0) {
				tsw_log(TSW_LOG_CRIT, "start_failed",
					"what=state_waker error=\"%s\"", tsw_strerror(r));
				return r;
			}
		}
	}
	*ret_port = port;
	return 0;
}

static void stop_workers(struct server *s)
{
	for (uint32_t i = 0; i < s->n_workers; i++) {
		if (!s->workers[i])
			continue;
		tsw_io_worker_drain(s->workers[i], 0);
		tsw_io_worker_join(s->workers[i]);
	}
}

static void free_workers(struct server *s)
{
	for (uint32_t i = 0; i < s->n_workers; i++)
		tsw_io_worker_free(s->workers[i]);
}

/* The process holds vault keys and, briefly, decrypted PANs: it must never
 * leave them in a core dump, whatever the host's core_pattern says. Not
 * dumpable also keeps ptrace and /proc/PID/mem away from other users. */
static void no_core_dumps(void)
{
	const char *step = "";
	int r = tsw_harden_process(&step);

	if (r < 0)
		tsw_log(TSW_LOG_WARN, "no_core_dumps", "step=%s errno=%d", step, -r);
}

static void config_refused(const struct tsw_config_error *err)
{
	char file[2 * TSW_CONFIG_PATH_MAX], reason[2 * TSW_CONFIG_REASON_MAX];

	if (err->line)
		fprintf(stderr, "tokswitch: bad configuration: %s:%u: %s\n", err->file, err->line,
			err->reason);
	else
		fprintf(stderr, "tokswitch: bad configuration: %s: %s\n", err->file, err->reason);
	tsw_log(TSW_LOG_CRIT, "config_refused", "file=\"%s\" line=%u reason=\"%s\"",
		tsw_log_quote(err->file, file, sizeof(file)), err->line,
		tsw_log_quote(err->reason, reason, sizeof(reason)));
}

/* Durable state is the default: running without it loses the reversals
 * owed to issuers, so it takes an explicit --no-state. Returns 0 or
 * -TSW_E_CONFIG (written: one line for the operator, config_refused). */
static int refuse_without_state(const struct server *s)
{
	struct tsw_config_error err = {.line = 0};

	if (s->flag_state && s->flag_no_state)
		snprintf(err.reason, sizeof(err.reason),
			 "--state and --no-state both given: choose one");
	else if (!s->cfg.state_dir[0] && !s->cfg.no_state)
		snprintf(err.reason, sizeof(err.reason),
			 "no state directory: give --state DIR (reversals and limited-use "
			 "counts kept on disk) or --no-state (run without them)");
	else
		return 0;
	snprintf(err.file, sizeof(err.file), "%s",
		 s->config_path ? s->config_path : "command line");
	config_refused(&err);
	return -TSW_E_CONFIG;
}

/* Workers: as configured, or one per online CPU (but the state wakes
 * at most TSW_STATE_WAKERS_MAX). */
static uint32_t worker_count(const struct tsw_config *c)
{
	long n;
	uint32_t workers;

	if (c->workers)
		return c->workers;
	n = sysconf(_SC_NPROCESSORS_ONLN);
	workers = n > 0 ? (uint32_t)n : 1;
	if (c->state_dir[0] && workers > TSW_STATE_WAKERS_MAX) {
		tsw_log(TSW_LOG_WARN, "workers_capped",
			"cpus=%u workers=%u reason=\"a state directory wakes at most %u "
			"workers\"",
			workers, TSW_STATE_WAKERS_MAX, TSW_STATE_WAKERS_MAX);
		workers = TSW_STATE_WAKERS_MAX;
	}
	return workers;
}

/* The workers split the issuers' six-digit STAN space between them
 * (include/tsw/engine.h): each one's pending table must fit its span.
 * Returns 0 or -TSW_E_CONFIG (written). */
static int check_stan_span(const struct server *s)
{
	uint32_t span = TSW_ENGINE_STAN_SPACE / s->n_workers - 1;

	if (s->cfg.max_pending <= span)
		return 0;
	fprintf(stderr,
		"tokswitch: bad configuration: limits.max_pending %u is above the %u "
		"switch STANs each of %u workers has: lower max_pending or workers\n",
		s->cfg.max_pending, span, s->n_workers);
	tsw_log(TSW_LOG_CRIT, "config_refused",
		"key=limits.max_pending value=%u workers=%u span=%u", s->cfg.max_pending,
		s->n_workers, span);
	return -TSW_E_CONFIG;
}

/* The flags, the file, the checks that need both, the log settings and
 * the worker count. Returns 0, or -EINVAL / -TSW_E_CONFIG (written: the
 * process exits 2). */
static int configure(struct server *s, int argc, char **argv)
{
	struct tsw_config_error err;

	if (parse_args(s, argc, argv) < 0)
		return -EINVAL;
	if (build_config(s, &s->cfg, &err) < 0) {
		config_refused(&err);
		return -TSW_E_CONFIG;
	}
	tsw_log_level = (enum tsw_log_level)s->cfg.log_level;
	tsw_log_format = (enum tsw_log_format)s->cfg.log_format;
	if (refuse_without_state(s) < 0)
		return -TSW_E_CONFIG;
	s->n_workers = worker_count(&s->cfg);
	return check_stan_span(s);
}

static int alloc_shards(struct server *s)
{
	s->shards = aligned_alloc(64, sizeof(*s->shards) * s->n_workers);
	s->shard_ptrs = calloc(s->n_workers, sizeof(*s->shard_ptrs));
	s->workers = calloc(s->n_workers, sizeof(*s->workers));
	if (!s->shards || !s->shard_ptrs || !s->workers)
		return -ENOMEM;
	memset(s->shards, 0, sizeof(*s->shards) * s->n_workers);
	for (uint32_t i = 0; i < s->n_workers; i++)
		s->shard_ptrs[i] = &s->shards[i];
	return 0;
}

/* The tables every worker's engine shares. Returns 0 or an error
 * (logged). */
static int open_shared_tables(struct server *s)
{
	/* acq_reversal_memory originals per worker, in one table: a
	 * reversal may come in on another worker than its original */
	uint64_t n = 1;
	int r;

	while (n < (uint64_t)s->cfg.acq_reversal_memory * s->n_workers)
		n <<= 1;
	r = tsw_acq_reversals_new((uint32_t)n, &s->acq_reversals);
	if (r < 0) {
		tsw_log(TSW_LOG_CRIT, "start_failed",
			"what=acq_reversals entries=%llu error=\"%s\"", (unsigned long long)n,
			tsw_strerror(r));
		return r;
	}
	/* one exposure table: a token's requests spread over the workers */
	r = tsw_standin_exposure_new(s->cfg.standin_max_tokens, &s->standin_exposure);
	if (r < 0) {
		tsw_log(TSW_LOG_CRIT, "start_failed",
			"what=standin_exposure max_tokens=%u error=\"%s\"",
			s->cfg.standin_max_tokens, tsw_strerror(r));
		return r;
	}
	if (s->cfg.standin_enabled && !s->state)
		tsw_log(TSW_LOG_WARN, "standin_without_state",
			"effect=\"no advice can be queued: every stand-in is answered 91\" "
			"fix=\"--state DIR\"");
	return 0;
}

static void start_signals(struct server *s)
{
	s->loop = uv_default_loop();
	/* signals are taken here, never by workers (they block them) */
	uv_signal_init(s->loop, &s->sig_term);
	uv_signal_init(s->loop, &s->sig_int);
	uv_signal_init(s->loop, &s->sig_hup);
	s->sig_term.data = s->sig_int.data = s->sig_hup.data = s;
	uv_signal_start(&s->sig_term, on_term, SIGTERM);
	uv_signal_start(&s->sig_int, on_term, SIGINT);
	uv_signal_start(&s->sig_hup, on_hup, SIGHUP);
}

static void cluster_event(void *ctx, enum tsw_cluster_event ev, uint64_t seq, int err,
			  const char *detail)
{
	const struct server *s = ctx;
	char q[2 * TSW_CONFIG_NODE_MAX];

	tsw_log_quote(s->cfg.cluster_node, q, sizeof(q));
	switch (ev) {
	case TSW_CLUSTER_EV_CONNECTED:
		tsw_log(TSW_LOG_INFO, "cluster_subscribed", "node=\"%s\" from_seq=%" PRIu64, q,
			seq + 1);
		break;
	case TSW_CLUSTER_EV_DISCONNECTED:
		tsw_log(TSW_LOG_WARN, "cluster_disconnected", "node=\"%s\"", q);
		break;
	case TSW_CLUSTER_EV_APPLY_FAILED:
		tsw_log(TSW_LOG_ERROR, "cluster_apply_failed",
			"node=\"%s\" seq=%" PRIu64 " error=\"%s\" effect=\"retried; later "
			"changes wait\"",
			q, seq, tsw_strerror(err));
		break;
	case TSW_CLUSTER_EV_CONSUMER_RESET:
		tsw_log(TSW_LOG_WARN, "cluster_consumer_reset", "node=\"%s\" from_seq=%" PRIu64, q,
			seq);
		break;
	case TSW_CLUSTER_EV_SUBSCRIBE_FAILED:
	case TSW_CLUSTER_EV_MAX:
		tsw_log(TSW_LOG_WARN, "cluster_subscribe_failed",
			"node=\"%s\" from_seq=%" PRIu64 " error=\"%s\" detail=\"%s\"", q, seq + 1,
			tsw_strerror(err), detail ? detail : "");
		break;
	}
}

/* /metrics: the applier's figures; lag as tsw/ctl.h defines it. */
static void cluster_values(void *ctx, struct tsw_ctl_cluster_values *ret)
{
	const struct server *s = ctx;
	struct tsw_cluster_stats st;
	struct timespec now;

	tsw_cluster_stats(s->cluster, &st);
	clock_gettime(CLOCK_REALTIME, &now);
	ret->applied_sequence = st.applied_seq;
	ret->apply_errors = st.apply_errors;
	ret->consumer_resets = st.consumer_resets;
	ret->connected = st.connected;
	ret->plaintext = tsw_cluster_url_plaintext(s->cfg.cluster_url);
	ret->lag_seconds = 0;
	if (!st.caught_up && st.last_publish_ns > 0) {
		double lag = (double)now.tv_sec + (double)now.tv_nsec / 1e9 -
			     (double)st.last_publish_ns / 1e9;

		ret->lag_seconds = lag > 0 ? lag : 0;
	}
}

/* The node's applier: the stream, from the vault's last applied
 * sequence, into the vault (the workers see each change at their next
 * renew). Returns 0 (also without a cluster) or an error (logged). */
static int start_cluster(struct server *s)
{
	const struct tsw_config *c = &s->cfg;
	struct tsw_cluster_config cc = {
	    .url = c->cluster_url,
	    .node = c->cluster_node,
	    .stream_replicas = c->cluster_stream_replicas,
	    .ack_timeout_ms = c->cluster_ack_timeout_ms,
	    .connect_timeout_ms = c->cluster_connect_timeout_ms,
	    .retry_ms = c->cluster_retry_ms,
	    .heartbeat_ms = c->cluster_heartbeat_ms,
	};
	char why[256] = "", q[2 * TSW_CONFIG_NODE_MAX];
	int r;

	if (!c->cluster_url[0])
		return 0;
	tsw_log_quote(c->cluster_node, q, sizeof(q));
	if (tsw_cluster_url_plaintext(c->cluster_url))
		tsw_log(TSW_LOG_WARN, "cluster_plaintext",
			"node=\"%s\" effect=\"no TLS, no credentials: changes are sealed but "
			"can be dropped or replayed on the path\" fix=\"not available yet "
			"(docs/cluster.md)\"",
			q);
	r = tsw_cluster_open(&cc, &s->cluster, why, sizeof(why));
	if (r == 0)
		r = tsw_cluster_applier_start(s->cluster, s->vault, cluster_event, s);
	if (r < 0) {
		char qw[2 * sizeof(why)];

		tsw_log(TSW_LOG_CRIT, "start_failed",
			"what=cluster node=\"%s\" error=\"%s\" detail=\"%s\"", q, tsw_strerror(r),
			tsw_log_quote(why, qw, sizeof(qw)));
		return r;
	}
	return 0;
}

/* The metrics and health endpoint. Returns 0 or an error (logged). */
static int start_ctl(struct server *s)
{
	struct tsw_ctl_source src = {
	    .shards = s->shard_ptrs,
	    .n_shards = s->n_workers,
	    .links = s->cfg.hosts, /* a reload never changes them */
	    .n_links = s->cfg.n_hosts,
	    .ready = all_ready,
	    .ctx = s,
	    .state = s->state,
	    .hsm = s->hsm,
	    .version = TSW_VERSION,
	    /* the first worker's, as in the started line: with auto each worker
	     * asks the same kernel, so they all get the same */
	    .io_backend = tsw_io_backend_name(tsw_io_worker_backend(s->workers[0])),
	    .cluster = s->cluster ? cluster_values : NULL,
	};
	struct tsw_ctl_params cp = {
	    .host = s->cfg.metrics.host,
	    .port = s->cfg.metrics.port,
	    .max_conns = s->cfg.metrics_max_conns,
	    .max_request_bytes = s->cfg.metrics_max_request_bytes,
	    .request_timeout_ms = s->cfg.metrics_request_timeout_ms,
	    .idle_timeout_ms = s->cfg.metrics_idle_timeout_ms,
	    .backlog = s->cfg.listen_backlog,
	    .log_interval_ms = s->cfg.log_event_interval_ms,
	};
	char token[TSW_CTL_TOKEN_MAX + 2];
	size_t token_len;
	int r;

	if (s->cfg.metrics_token_file[0]) {
		r = tsw_ctl_token_read(s->cfg.metrics_token_file, token, sizeof(token), &token_len);
		if (r < 0) {
			char q[2 * TSW_CONFIG_PATH_MAX];

			tsw_log(TSW_LOG_CRIT, "start_failed",
				"what=metrics_token file=\"%s\" error=\"%s\"%s",
				tsw_log_quote(s->cfg.metrics_token_file, q, sizeof(q)),
				tsw_strerror(r),
				r == -EPERM ? " fix=\"chmod 600, owned by the switch's user\"" : "");
			return r;
		}
		cp.token = token;
		cp.token_len = token_len;
	}
	r = tsw_ctl_start(s->loop, &cp, &src, &s->ctl);
	/* the ctl keeps its own copy */
	explicit_bzero(token, sizeof(token));
	if (r < 0)
		tsw_log(TSW_LOG_CRIT, "start_failed", "what=metrics address=%s:%u error=\"%s\"",
			cp.host, cp.port, tsw_strerror(r));
	return r;
}

static int start_service(struct server *s)
{
	s->pings = calloc(s->n_workers, sizeof(*s->pings));
	if (!s->pings ||
	    tsw_service_start(s->loop,
			      &(struct tsw_service_hooks){.ready = all_ready, .alive = all_alive, .ctx = s},
			      &s->service) < 0) {
		tsw_log(TSW_LOG_CRIT, "start_failed", "what=service error=\"out of memory\"");
		return -ENOMEM;
	}
	return 0;
}

static void log_started(const struct server *s, uint16_t acq_port)
{
	tsw_log(TSW_LOG_INFO, "started",
		"workers=%u io=%s acquirer=%s:%u metrics=%s:%u issuers=%u routes=%u", s->n_workers,
		tsw_io_backend_name(tsw_io_worker_backend(s->workers[0])), s->cfg.listen.host,
		acq_port, s->cfg.metrics.host, tsw_ctl_port(s->ctl), s->cfg.n_issuers,
		s->cfg.n_routes);
	printf("listening acquirer=%s:%u metrics=%s:%u\n", s->cfg.listen.host, acq_port,
	       s->cfg.metrics.host, tsw_ctl_port(s->ctl));
	fflush(stdout);
}

/* A start that failed half way: what was started stops, the loop runs
 * until its handles are closed. */
static void abort_start(struct server *s)
{
	stop_workers(s);
	close_signals(s);
	if (s->ctl)
		tsw_ctl_stop(s->ctl);
	tsw_service_stop(s->service);
	s->service = NULL;
	uv_run(s->loop, UV_RUN_DEFAULT);
}

/* Opens the data, starts the workers and the control plane, and runs the
 * loop until the drain is done. Returns the exit status: 0, or 1 when
 * something did not start (logged). */
static int serve(struct server *s)
{
	uint16_t acq_port = 0;

	if (open_data(s) < 0 || open_shared_tables(s) < 0 || open_card_keys(s) < 0 ||
	    start_cluster(s) < 0)
		return 1;
	start_signals(s);
	if (start_workers(s, &acq_port) < 0 || start_ctl(s) < 0 || start_service(s) < 0) {
		abort_start(s);
		return 1;
	}
	log_started(s, acq_port);
	uv_run(s->loop, UV_RUN_DEFAULT);
	return 0;
}

/* Closes what serve() opened, in the order the threads need. */
static void close_data(struct server *s)
{
	/* the applier writes the vault */
	tsw_cluster_close(s->cluster);
	if (s->loop)
		uv_loop_close(s->loop);
	/* the state writes to the workers' eventfds: close it before them */
	tsw_state_close(s->state);
	free_workers(s);
	/* the engines dropped theirs: these are the last references */
	tsw_card_keys_put(s->card_keys);
	tsw_card_keys_put(s->card_keys_before);
	tsw_hsm_close(s->hsm);
	free(s->keys_pings);
	tsw_acq_reversals_free(s->acq_reversals);
	tsw_standin_exposure_free(s->standin_exposure);
	if (s->vault)
		tsw_vault_close(s->vault);
}

/* `tokswitch top ARGS` runs tokswitch-top ARGS: the one installed beside
 * this executable, else the first on PATH. Returns only when neither
 * could be run. */
static int exec_top(char **argv)
{
	static char name[] = "tokswitch-top";
	char self[PATH_MAX], beside[PATH_MAX + sizeof(name) + 1];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	char *slash;

	argv[1] = name; /* argv[1..] is tokswitch-top's argv */
	if (n > 0) {
		self[n] = '\0';
		slash = strrchr(self, '/');
		if (slash) {
			*slash = '\0';
			snprintf(beside, sizeof(beside), "%s/%s", self, name);
			execv(beside, &argv[1]);
		}
	}
	execvp(name, &argv[1]);
	fprintf(stderr,
		"tokswitch: top: cannot run %s (looked beside this program and on PATH): %s\n",
		name, strerror(errno));
	return 1;
}

int main(int argc, char **argv)
{
	struct server *s;
	int rc;

	if (argc >= 2 && !strcmp(argv[1], "top"))
		return exec_top(argv);
	signal(SIGPIPE, SIG_IGN);
	no_core_dumps();
	s = calloc(1, sizeof(*s));
	if (!s)
		return 1;
	if (configure(s, argc, argv) < 0) {
		rc = 2;
		goto out_free;
	}
	rc = 1;
	if (alloc_shards(s) < 0)
		goto out_free;
	rc = serve(s);
	close_data(s);
out_free:
	free(s->pings);
	free(s->shards);
	free(s->shard_ptrs);
	free(s->workers);
	free(s);
	return rc;
}
