/* tokswitch configuration: an INI file (inih) read at start and on SIGHUP,
 * with command-line flags applied on top.
 *
 * Every limit, timeout and queue of the server is a key here with a
 * default. The key tables of src/common/config.c are the one place that
 * names a key, bounds it, gives its default and says whether a reload
 * applies it; tsw_config_defaults() fills a config from them, and
 * config/tokswitch.conf shows each default (tests/unit/ctl checks that
 * they agree). Sections and keys:
 *
 *   [server]  listen metrics vault state no_state key_file profile
 *             issuer_profile workers io log_level log_format log_event_burst
 *             log_event_interval_ms log_event_queue drain_timeout_ms
 *   [limits]  max_conns max_inflight_per_conn max_pending out_buf_bytes
 *             max_frame idle_timeout_ms listen_backlog in_buf_bytes
 *             link_buf_bytes max_parked acq_reversal_memory
 *             expired_stan_memory
 *   [issuer]  host (repeatable: one issuer each, index = order; its value
 *             HOST:PORT[, HOST:PORT...] lists that issuer's hosts)
 *             timeout_ms echo_interval_ms reconnect_min_ms reconnect_max_ms
 *   [route]   BINPREFIX = ISSUER_INDEX, and default = ISSUER_INDEX
 *   [io]      ring_entries recv_buf_bytes recv_bufs
 *   [metrics] max_conns max_request_bytes request_timeout_ms idle_timeout_ms
 *             token_file
 *   [state]   queue_size max_tokens max_reservations map_size_mb
 *             saf_max_entries saf_lease_ms reserve_kb retry_max_ms
 *             forward_before_durable
 *             (defaults: include/tsw/state.h's
 *             TSW_STATE_*_DEFAULT; tests/unit/ctl checks they agree)
 *   [saf]     inflight_max poll_ms retry_min_ms retry_max_ms (reversals)
 *   [standin] enabled max_amount modes min_assurance on_timeout
 *             max_amount_per_token window_s max_tokens
 *
 * This module is plain data: no threads, no logging. Error reasons never
 * quote a value (a key file path is fine, a value might be a secret).
 */
#ifndef TSW_CONFIG_H
#define TSW_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TSW_CONFIG_ISSUERS_MAX 16
/* Hosts one issuer may list (one host line or --issuer flag), and hosts
 * of every issuer together: each host is one link per worker. */
#define TSW_CONFIG_ISSUER_HOSTS_MAX 8
#define TSW_CONFIG_LINKS_MAX 32
#define TSW_CONFIG_ROUTES_MAX 64
#define TSW_CONFIG_HOST_MAX 64
#define TSW_CONFIG_PATH_MAX 512
#define TSW_CONFIG_NODE_MAX 64
#define TSW_CONFIG_BIN_MAX 11 /* digits of a route's BIN prefix */
#define TSW_CONFIG_REASON_MAX 160
/* Workers allowed with a state directory: each registers one eventfd with
 * the state, which takes TSW_STATE_WAKERS_MAX of them (main.c asserts the
 * two agree; this header cannot include tsw/state.h). */
#define TSW_CONFIG_STATE_WORKERS_MAX 64u

/* acq_reversal_memory and expired_stan_memory (entries, powers of two):
 * the config takes MIN..MAX; the engine (tsw/engine.h), which tests give
 * smaller tables, refuses only what is above MAX. */
#define TSW_CONFIG_TABLE_MEMORY_MIN 16u
#define TSW_CONFIG_TABLE_MEMORY_MAX (1u << 22)
/* [standin]: presentment modes are bits in the order of enum
 * tsw_pos_mode (tsw/token.h, which this module may not include; main.c
 * asserts the count, tests/unit/ctl every name): contactless chip
 * ecommerce cof manual magstripe. */
#define TSW_CONFIG_POS_MODES 6u
/* Tokens whose stand-in exposure is tracked at once (whole process). */
#define TSW_CONFIG_STANDIN_MAX_TOKENS_MAX (1u << 24)

enum tsw_config_io {
	TSW_CONFIG_IO_AUTO,  /* io_uring, or libuv with a warning when it cannot be set up */
	TSW_CONFIG_IO_URING, /* io_uring only: start fails when it cannot be set up */
	TSW_CONFIG_IO_UV,    /* libuv sockets */
	TSW_CONFIG_IO_MAX
};

struct tsw_hostport {
	char host[TSW_CONFIG_HOST_MAX]; /* numeric address or name */
	uint16_t port;			/* 0: pick a free port (listeners only) */
};

/* One host of an issuer: the switch keeps a link to each. */
struct tsw_config_host {
	struct tsw_hostport addr;
	uint8_t issuer; /* the issuer it serves: its host line, 0-based */
};

struct tsw_config_route {
	char bin_prefix[TSW_CONFIG_BIN_MAX + 1]; /* "" is the default route */
	uint8_t issuer;				 /* index into issuers */
};

struct tsw_config {
	/* [server] */
	struct tsw_hostport listen;
	struct tsw_hostport metrics;
	char vault_dir[TSW_CONFIG_PATH_MAX];
	char state_dir[TSW_CONFIG_PATH_MAX];
	char key_file[TSW_CONFIG_PATH_MAX];
	/* wire profiles: a shipped name or a .spec path (tsw_iso_profile_load_spec) */
	char profile[TSW_CONFIG_PATH_MAX];	  /* acquirer side */
	char issuer_profile[TSW_CONFIG_PATH_MAX]; /* issuer side */
	uint32_t workers;			  /* 0: one per online CPU */
	uint8_t io;				  /* enum tsw_config_io */
	uint8_t log_level;			  /* enum tsw_log_level */
	uint32_t drain_timeout_ms;
	bool no_state;		  /* run without state_dir: no durable reversals or uses */
	uint8_t log_format;	  /* enum tsw_log_format */
	uint32_t log_event_burst; /* engine event lines per kind and interval */
	uint32_t log_event_interval_ms;
	uint32_t log_event_queue; /* engine events held per worker */
	/* [limits] (per worker where it says so in tokswitch.conf) */
	uint32_t max_conns;
	uint32_t max_inflight_per_conn;
	uint32_t max_pending;
	uint32_t out_buf_bytes;
	uint32_t max_frame;
	uint32_t idle_timeout_ms;
	uint32_t listen_backlog;
	uint32_t in_buf_bytes;	      /* per acquirer connection: input held while paused */
	uint32_t link_buf_bytes;      /* per issuer link: output buffer */
	uint32_t max_parked;	      /* per worker: limited-use requests awaiting durability */
	uint32_t acq_reversal_memory; /* per worker: originals kept for reversals (power of 2) */
	uint32_t expired_stan_memory; /* per worker: timed-out STANs kept (power of 2) */
	/* [issuer] */
	uint32_t issuer_timeout_ms;
	uint32_t echo_interval_ms;
	uint32_t reconnect_min_ms;
	uint32_t reconnect_max_ms;
	uint32_t n_issuers; /* host lines (flags): issuer i is the i-th */
	uint32_t n_hosts;   /* hosts of every issuer, in issuer order */
	struct tsw_config_host hosts[TSW_CONFIG_LINKS_MAX];
	/* [route] */
	uint32_t n_routes;
	struct tsw_config_route routes[TSW_CONFIG_ROUTES_MAX];
	/* [io] */
	uint32_t ring_entries;	 /* io_uring SQ size per worker */
	uint32_t recv_buf_bytes; /* size of one provided receive buffer */
	uint32_t recv_bufs;	 /* provided buffers per worker (power of two) */
	/* [metrics] */
	uint32_t metrics_max_conns;
	uint32_t metrics_max_request_bytes;
	uint32_t metrics_request_timeout_ms; /* accept to a whole request head */
	uint32_t metrics_idle_timeout_ms;    /* an answer not taken by the client */
	char metrics_token_file[TSW_CONFIG_PATH_MAX]; /* "": /metrics needs no token */
	/* [state] */
	uint32_t state_queue_size;
	uint32_t state_max_tokens;
	uint32_t state_max_reservations;
	uint32_t state_map_size_mb;
	uint32_t state_saf_max_entries; /* reversals queued at once */
	uint32_t state_saf_lease_ms;	/* a claimed reversal's lease */
	uint32_t state_reserve_kb;	/* room kept for space-freeing commits */
	uint32_t state_retry_max_ms;	/* the degraded writer's backoff ceiling */
	bool state_forward_before_durable; /* a limited use or ATC not yet on disk: the
					    * request goes on at once and its approval
					    * waits (false: the request waits) */
	/* [saf] store-and-forward reversals */
	uint32_t saf_inflight_max;
	uint32_t saf_poll_ms;
	uint32_t saf_retry_min_ms;
	uint32_t saf_retry_max_ms;
	uint32_t saf_durable_wait_ms;
	/* [standin] approvals on behalf of an unavailable issuer */
	bool standin_enabled;
	bool standin_on_timeout;	       /* also when a forwarded request times out */
	uint32_t standin_max_amount;	       /* DE4 minor units; above it: 91 */
	uint32_t standin_modes;		       /* bits: TSW_CONFIG_POS_MODES order */
	uint32_t standin_min_assurance;	       /* token assurance level floor, 0..99 */
	uint32_t standin_max_amount_per_token; /* per token over window_s; 0: max_amount */
	uint32_t standin_window_s;
	uint32_t standin_max_tokens; /* exposure table (restart to change) */
	/* [cryptogram] card cryptography (docs/decisions.md) */
	uint32_t cryptogram_atc_window; /* how far ahead of the last ATC a new one may be; 0: any */
	uint32_t cryptogram_max_keys_tried; /* newest keys of a range or acquirer tried per check */
	/* [hsm] the software HSM's memory (restart to change) */
	uint32_t hsm_max_keys;		/* keys held at once, imported and derived */
	uint32_t hsm_icc_cache_entries; /* derived ICC master keys kept */
	/* [cluster] vault changes through NATS JetStream (restart to change) */
	char cluster_url[TSW_CONFIG_PATH_MAX]; /* "": no cluster */
	char cluster_node[TSW_CONFIG_NODE_MAX];
	uint32_t cluster_stream_replicas;    /* when this node creates the stream */
	uint32_t cluster_ack_timeout_ms;     /* JetStream API requests */
	uint32_t cluster_connect_timeout_ms; /* each server's connect */
	uint32_t cluster_retry_ms;	     /* reconnect / resubscribe wait */
	uint32_t cluster_heartbeat_ms;	     /* the consumer's idle heartbeat */
	uint32_t cluster_max_staleness_ms;   /* not enforced yet (docs/cluster.md) */
};

/* Where and why a configuration was refused. line is 1-based, 0 when the
 * fault is not on one line (unreadable file, a cross-key check, a flag). */
struct tsw_config_error {
	char file[TSW_CONFIG_PATH_MAX];
	unsigned line;
	char reason[TSW_CONFIG_REASON_MAX];
};

/* Fills cfg with the built-in defaults (the values tokswitch.conf shows):
 * every key's default from the key tables; no issuer, host or route. */
void tsw_config_defaults(struct tsw_config *cfg);

/* The i-th key tsw_config_set() takes by name (every table key, then
 * server.listen and server.metrics; not issuer.host and [route], which
 * are lists), with its section in *ret_section; NULL past the last (then
 * *ret_section is untouched). For tests and tools that walk every key. */
const char *tsw_config_key_name(size_t i, const char **ret_section);

/* Applies one setting: section and key as in the file, value as text.
 * [issuer] host appends one issuer whose hosts are the value's
 * comma-separated HOST:PORT list (spaces around each allowed); [route]
 * keys add or replace a route. Returns 0, or -TSW_E_CONFIG with a reason
 * written into reason (cap bytes, may be NULL) for an unknown section or
 * key, a value out of range, a bad address (an empty list entry, port 0),
 * or a full table (more than TSW_CONFIG_ISSUERS_MAX issuers,
 * TSW_CONFIG_ISSUER_HOSTS_MAX hosts in one host line or
 * TSW_CONFIG_LINKS_MAX hosts in all). cfg may be partly updated only in
 * the field named; a refused host line adds nothing. */
int tsw_config_set(struct tsw_config *cfg, const char *section, const char *key, const char *value,
		   char *reason, size_t cap);

/* Cross-key checks run after the last setting: routes name configured
 * issuers, reconnect_min_ms <= reconnect_max_ms (issuer and saf),
 * recv_bufs, max_pending, acq_reversal_memory and expired_stan_memory
 * powers of two, out_buf_bytes and
 * link_buf_bytes holding two frames of max_frame, in_buf_bytes holding a
 * frame and a receive buffer (recv_buf_bytes); state and no_state not
 * both set; with a state directory:
 * state.saf_lease_ms above issuer.timeout_ms and at most
 * TSW_CONFIG_STATE_WORKERS_MAX workers; paths set when required (vault,
 * key_file).
 * Returns 0 or -TSW_E_CONFIG with a reason (cap bytes; reason may be
 * NULL). */
int tsw_config_check(const struct tsw_config *cfg, char *reason, size_t cap);

/* limits.max_frame replaces the max_frame of both profiles (acquirer and
 * issuer); a length header cannot say more than header_max bytes (the
 * loaded profile's tsw_iso_header_max, 9999 for ascii4), and a frame
 * above it would be cut into frames the peer takes for separate
 * messages. key names the profile's key ("server.profile" or
 * "server.issuer_profile"), profile its value, header the header's name
 * (tsw_iso_header_name()). Returns 0, or -TSW_E_CONFIG with a reason
 * naming the key and the profile: header "none" (no length header, so
 * no TCP stream can be framed by it), or a max_frame above header_max
 * (the reason also names limits.max_frame and header_max). Run at start and on every reload
 * (main.c), after tsw_config_check(), once the profiles are loaded: the
 * config module does not read profile files. */
int tsw_config_check_frame(const struct tsw_config *cfg, const char *key, const char *profile,
			   const char *header, uint32_t header_max, char *reason, size_t cap);

/* True when a and b list the same issuers with the same hosts in the
 * same order (a reload refuses any other change: main.c). */
bool tsw_config_issuers_equal(const struct tsw_config *a, const struct tsw_config *b);

/* Keys a reload (SIGHUP) cannot apply: sizes, addresses, paths and
 * tables allocated at start. Writes the names of those whose value differs
 * between running and loaded ("limits.max_pending,io.recv_bufs"; cut at
 * cap bytes with "..." when long, always NUL-terminated when cap > 0) into
 * buf (may be NULL) and returns how many differ (0: the reload applies
 * everything). The issuer host list is not among them: a change there
 * refuses the reload (main.c). Never fails. */
unsigned tsw_config_restart_only_changed(const struct tsw_config *running,
					 const struct tsw_config *loaded, char *buf, size_t cap);

/* Copies into running what a reload (SIGHUP) applies from loaded: every
 * key that tsw_config_restart_only_changed() does not name (timeouts,
 * [saf], [standin] but max_tokens, log level, format and event limits,
 * max_inflight_per_conn, idle_timeout_ms) and the [route] table. Sizes,
 * addresses, paths and the issuer host list stay as they are. */
void tsw_config_apply_reload(struct tsw_config *running, const struct tsw_config *loaded);

/* Reads path over the settings already in *cfg (start from
 * tsw_config_defaults()). Every line is parsed; the first fault is
 * reported. On success returns 0 and updates *cfg. On failure returns
 * -TSW_E_CONFIG (a bad line; ret_err->line set) or -errno (unreadable;
 * line 0), fills *ret_err (may be NULL) and leaves *cfg untouched. Does
 * not run tsw_config_check(). */
int tsw_config_load(const char *path, struct tsw_config *cfg, struct tsw_config_error *ret_err);

/* Parses "HOST:PORT" or "[V6]:PORT". Returns 0 or -TSW_E_CONFIG (empty
 * host, host too long or holding a blank or a comma, port not a number in
 * 0..65535); *ret untouched on failure. */
int tsw_hostport_parse(const char *s, struct tsw_hostport *ret);

/* "uring", "uv", "auto" <-> enum tsw_config_io. Parse returns 0 or
 * -TSW_E_CONFIG; name returns a static string. */
int tsw_config_io_parse(const char *s, enum tsw_config_io *ret_io);
const char *tsw_config_io_name(enum tsw_config_io io);

#endif
