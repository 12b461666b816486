#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsw/config.h"
#include "tsw/error.h"
#include "tsw/log.h"

/* Upper bounds that keep a typo from asking for terabytes. */
enum {
	WORKERS_MAX = 256,
	CONNS_MAX = 1u << 20,
	PENDING_MAX = 1u << 22,
	BUF_BYTES_MAX = 64u << 20,
	FRAME_MAX = 65535,
	TIMEOUT_MS_MAX = 24u * 3600 * 1000,
	WINDOW_S_MAX = 366u * 24 * 3600,
	RING_ENTRIES_MAX = 32768,
	RECV_BUFS_MAX = 32768,
	STATE_MAX = 1u << 28,
	/* the state module's own ceilings (tsw/state.h; tests/unit/ctl checks
	 * they agree): tickets and SAF ids carry a 24-bit slot */
	STATE_RESERVATIONS_MAX = 1u << 24,
	STATE_SAF_ENTRIES_MAX = 1u << 22,
	STATE_MAP_SIZE_MB_MAX = 1u << 20,
	/* the largest length header a profile has (ascii4): in_buf_bytes and
	 * link_buf_bytes are checked against frames of max_frame plus this */
	FRAME_HEADER_MAX = 4,
};

/* Flags of a key: the value must be a power of two; a reload (SIGHUP)
 * applies it (every other key takes effect at the next start). */
enum {
	KEY_POW2 = 1u << 0,
	KEY_RELOAD = 1u << 1,
};

/* The key tables are the one place a key is named, bounded and given its
 * default: tsw_config_defaults() fills the config from them, and
 * config/tokswitch.conf shows the same defaults (tests/unit/ctl). */
struct u32_key {
	const char *section;
	const char *key;
	size_t off;
	uint32_t def;
	uint32_t min, max;
	unsigned flags;
};

#define U32F(sec, k, field, dflt, lo, hi, fl)                                                      \
	{                                                                                          \
		sec, k, offsetof(struct tsw_config, field), dflt, lo, hi, fl                       \
	}
#define U32(sec, k, field, dflt, lo, hi) U32F(sec, k, field, dflt, lo, hi, 0)

static const struct u32_key u32_keys[] = {
    U32("server", "workers", workers, 0, 0, WORKERS_MAX),
    U32F("server", "drain_timeout_ms", drain_timeout_ms, 5000, 0, TIMEOUT_MS_MAX, KEY_RELOAD),
    U32F("server", "log_event_burst", log_event_burst, 10, 1, 1u << 20, KEY_RELOAD),
    U32F("server", "log_event_interval_ms", log_event_interval_ms, 10000, 1, TIMEOUT_MS_MAX,
	 KEY_RELOAD),
    U32("server", "log_event_queue", log_event_queue, 512, 16, 1u << 20),
    U32("limits", "max_conns", max_conns, 1024, 1, CONNS_MAX),
    U32F("limits", "max_inflight_per_conn", max_inflight_per_conn, 256, 1, 65535, KEY_RELOAD),
    U32("limits", "max_pending", max_pending, 32768, 16, PENDING_MAX),
    U32("limits", "out_buf_bytes", out_buf_bytes, 256 * 1024, 1024, BUF_BYTES_MAX),
    U32("limits", "max_frame", max_frame, 8192, 64, FRAME_MAX),
    U32F("limits", "idle_timeout_ms", idle_timeout_ms, 0, 0, TIMEOUT_MS_MAX, KEY_RELOAD),
    U32("limits", "listen_backlog", listen_backlog, 1024, 1, 65535),
    U32("limits", "in_buf_bytes", in_buf_bytes, 64 * 1024, 1024, BUF_BYTES_MAX),
    U32("limits", "link_buf_bytes", link_buf_bytes, 1024 * 1024, 1024, BUF_BYTES_MAX),
    U32("limits", "max_parked", max_parked, 256, 1, PENDING_MAX),
    U32F("limits", "acq_reversal_memory", acq_reversal_memory, 8192, TSW_CONFIG_TABLE_MEMORY_MIN,
	 TSW_CONFIG_TABLE_MEMORY_MAX, KEY_POW2),
    U32F("limits", "expired_stan_memory", expired_stan_memory, 4096, TSW_CONFIG_TABLE_MEMORY_MIN,
	 TSW_CONFIG_TABLE_MEMORY_MAX, KEY_POW2),
    U32F("issuer", "timeout_ms", issuer_timeout_ms, 2000, 1, TIMEOUT_MS_MAX, KEY_RELOAD),
    U32F("issuer", "echo_interval_ms", echo_interval_ms, 30000, 1, TIMEOUT_MS_MAX, KEY_RELOAD),
    U32F("issuer", "reconnect_min_ms", reconnect_min_ms, 100, 1, TIMEOUT_MS_MAX, KEY_RELOAD),
    U32F("issuer", "reconnect_max_ms", reconnect_max_ms, 5000, 1, TIMEOUT_MS_MAX, KEY_RELOAD),
    U32("io", "ring_entries", ring_entries, 1024, 8, RING_ENTRIES_MAX),
    U32("io", "recv_buf_bytes", recv_buf_bytes, 16384, 512, BUF_BYTES_MAX),
    U32("io", "recv_bufs", recv_bufs, 256, 8, RECV_BUFS_MAX),
    U32("metrics", "max_conns", metrics_max_conns, 64, 1, 65535),
    U32("metrics", "max_request_bytes", metrics_max_request_bytes, 8192, 256, 1u << 20),
    U32("metrics", "request_timeout_ms", metrics_request_timeout_ms, 2000, 1, TIMEOUT_MS_MAX),
    U32("metrics", "idle_timeout_ms", metrics_idle_timeout_ms, 10000, 1, TIMEOUT_MS_MAX),
    /* the state module's defaults (tsw/state.h TSW_STATE_*_DEFAULT;
     * tests/unit/ctl checks they agree) */
    U32("state", "queue_size", state_queue_size, 65536, 1, STATE_MAX),
    U32("state", "max_tokens", state_max_tokens, 262144, 1, STATE_MAX),
    U32("state", "max_reservations", state_max_reservations, 65536, 1, STATE_RESERVATIONS_MAX),
    U32("state", "map_size_mb", state_map_size_mb, 256, 1, STATE_MAP_SIZE_MB_MAX),
    U32("state", "saf_max_entries", state_saf_max_entries, 16384, 1, STATE_SAF_ENTRIES_MAX),
    U32("state", "saf_lease_ms", state_saf_lease_ms, 30000, 1, TIMEOUT_MS_MAX),
    U32("state", "reserve_kb", state_reserve_kb, 1024, 1, STATE_MAP_SIZE_MB_MAX),
    U32("state", "retry_max_ms", state_retry_max_ms, 1000, 100, TIMEOUT_MS_MAX),
    U32F("saf", "inflight_max", saf_inflight_max, 64, 1, 65535, KEY_RELOAD),
    U32F("saf", "poll_ms", saf_poll_ms, 250, 1, TIMEOUT_MS_MAX, KEY_RELOAD),
    U32F("saf", "retry_min_ms", saf_retry_min_ms, 1000, 1, TIMEOUT_MS_MAX, KEY_RELOAD),
    U32F("saf", "retry_max_ms", saf_retry_max_ms, 60000, 1, TIMEOUT_MS_MAX, KEY_RELOAD),
    U32F("saf", "durable_wait_ms", saf_durable_wait_ms, 1000, 1, TIMEOUT_MS_MAX, KEY_RELOAD),
    U32F("standin", "max_amount", standin_max_amount, 0, 0, UINT32_MAX, KEY_RELOAD),
    U32F("standin", "min_assurance", standin_min_assurance, 0, 0, 99, KEY_RELOAD),
    U32F("standin", "max_amount_per_token", standin_max_amount_per_token, 0, 0, UINT32_MAX,
	 KEY_RELOAD),
    U32F("standin", "window_s", standin_window_s, 86400, 1, WINDOW_S_MAX, KEY_RELOAD),
    U32("standin", "max_tokens", standin_max_tokens, 65536, 1, TSW_CONFIG_STANDIN_MAX_TOKENS_MAX),
    /* the HSM's and the state's defaults (tsw/hsm.h TSW_HSM_*_DEFAULT,
     * TSW_STATE_ATC_WINDOW_DEFAULT; tests/unit/ctl checks they agree) */
    U32F("cryptogram", "atc_window", cryptogram_atc_window, 100, 0, 65535, KEY_RELOAD),
    U32F("cryptogram", "max_keys_tried", cryptogram_max_keys_tried, 3, 1, 64, KEY_RELOAD),
    U32("hsm", "max_keys", hsm_max_keys, 1024, 16, 1u << 20),
    U32("hsm", "icc_cache_entries", hsm_icc_cache_entries, 65536, 1, 1u << 24),
    /* the cluster's defaults (tsw/cluster.h TSW_CLUSTER_*_DEFAULT) */
    U32("cluster", "stream_replicas", cluster_stream_replicas, 1, 1, 5),
    U32("cluster", "ack_timeout_ms", cluster_ack_timeout_ms, 5000, 1, TIMEOUT_MS_MAX),
    U32("cluster", "connect_timeout_ms", cluster_connect_timeout_ms, 2000, 1, TIMEOUT_MS_MAX),
    U32("cluster", "retry_ms", cluster_retry_ms, 1000, 1, TIMEOUT_MS_MAX),
    U32("cluster", "heartbeat_ms", cluster_heartbeat_ms, 1000, 100, TIMEOUT_MS_MAX),
    U32("cluster", "max_staleness_ms", cluster_max_staleness_ms, 5000, 1, TIMEOUT_MS_MAX),
};

/* true/false keys; every one is applied by a reload */
struct bool_key {
	const char *section;
	const char *key;
	size_t off;
	bool def;
};

#define BOOL(sec, k, field, dflt)                                                                  \
	{                                                                                          \
		sec, k, offsetof(struct tsw_config, field), dflt                                   \
	}

static const struct bool_key bool_keys[] = {
    BOOL("state", "forward_before_durable", state_forward_before_durable, true),
    BOOL("standin", "enabled", standin_enabled, false),
    BOOL("standin", "on_timeout", standin_on_timeout, false),
};

/* enum tsw_pos_mode order (TSW_CONFIG_POS_MODES) */
static const char *const pos_mode_names[TSW_CONFIG_POS_MODES] = {
    "contactless", "chip", "ecommerce", "cof", "manual", "magstripe",
};

struct str_key {
	const char *section;
	const char *key;
	size_t off;
	size_t size;
	const char *def; /* "": none (a path the operator must give, or none used) */
};

#define STR(sec, k, field, dflt)                                                                   \
	{                                                                                          \
		sec, k, offsetof(struct tsw_config, field),                                        \
		    sizeof(((struct tsw_config *)0)->field), dflt                                  \
	}

static const struct str_key str_keys[] = {
    STR("server", "vault", vault_dir, ""),
    STR("server", "state", state_dir, ""),
    STR("server", "key_file", key_file, ""),
    STR("server", "profile", profile, "default"),
    STR("server", "issuer_profile", issuer_profile, "default"),
    STR("metrics", "token_file", metrics_token_file, ""),
    STR("cluster", "url", cluster_url, ""),
    STR("cluster", "node", cluster_node, ""),
};

static int parse_modes(const char *s, uint32_t *ret);

/* Keys whose value is a word or a list: parse writes the field from the
 * text (0 or -TSW_E_CONFIG, the field untouched then), and the default is
 * text too, parsed the same way. */
struct word_key {
	const char *section;
	const char *key;
	size_t off;
	size_t size;
	const char *def;
	unsigned flags; /* KEY_RELOAD */
	int (*parse)(const char *value, void *ret_field);
	const char *reason; /* why a value is refused */
};

static int parse_io(const char *value, void *ret)
{
	enum tsw_config_io io;

	if (tsw_config_io_parse(value, &io) < 0)
		return -TSW_E_CONFIG;
	*(uint8_t *)ret = (uint8_t)io;
	return 0;
}

static int parse_log_level(const char *value, void *ret)
{
	enum tsw_log_level lvl;

	if (tsw_log_level_parse(value, &lvl) < 0)
		return -TSW_E_CONFIG;
	*(uint8_t *)ret = (uint8_t)lvl;
	return 0;
}

static int parse_log_format(const char *value, void *ret)
{
	enum tsw_log_format f;

	if (tsw_log_format_parse(value, &f) < 0)
		return -TSW_E_CONFIG;
	*(uint8_t *)ret = (uint8_t)f;
	return 0;
}

/* only the words: no_state is no switch to flip by a 1 */
static int parse_no_state(const char *value, void *ret)
{
	if (strcmp(value, "true") && strcmp(value, "false"))
		return -TSW_E_CONFIG;
	*(bool *)ret = value[0] == 't';
	return 0;
}

static int parse_standin_modes(const char *value, void *ret)
{
	return parse_modes(value, ret);
}

#define WORD(sec, k, field, dflt, fl, fn, why)                                                     \
	{                                                                                          \
		sec, k, offsetof(struct tsw_config, field),                                        \
		    sizeof(((struct tsw_config *)0)->field), dflt, fl, fn, why                     \
	}

static const struct word_key word_keys[] = {
    WORD("server", "io", io, "auto", 0, parse_io, "server.io must be auto, uring or uv"),
    WORD("server", "log_level", log_level, "info", KEY_RELOAD, parse_log_level,
	 "server.log_level must be debug, info, warn, error or crit"),
    WORD("server", "log_format", log_format, "text", KEY_RELOAD, parse_log_format,
	 "server.log_format must be text or json"),
    WORD("server", "no_state", no_state, "false", 0, parse_no_state,
	 "server.no_state must be true or false"),
    WORD("standin", "modes", standin_modes, "contactless, chip", KEY_RELOAD, parse_standin_modes,
	 "standin.modes must list contactless, chip, ecommerce, cof, manual, magstripe"),
};

/* Built-in addresses (tests and tools/run pass port 0): compared by host
 * and port, never by bytes (a shorter host leaves the old tail). */
#define LISTEN_DEFAULT "127.0.0.1:8583"
#define METRICS_DEFAULT "127.0.0.1:9583"

#define N_KEYS(t) (sizeof(t) / sizeof((t)[0]))

static const char *const io_names[TSW_CONFIG_IO_MAX] = {
    [TSW_CONFIG_IO_AUTO] = "auto",
    [TSW_CONFIG_IO_URING] = "uring",
    [TSW_CONFIG_IO_UV] = "uv",
};

__attribute__((format(printf, 3, 4))) static int fail(char *reason, size_t cap, const char *fmt,
						      ...)
{
	va_list ap;

	if (reason && cap) {
		va_start(ap, fmt);
		vsnprintf(reason, cap, fmt, ap);
		va_end(ap);
	}
	return -TSW_E_CONFIG;
}

void tsw_config_defaults(struct tsw_config *cfg)
{
	char *base = (char *)cfg;

	memset(cfg, 0, sizeof(*cfg));
	for (size_t i = 0; i < N_KEYS(u32_keys); i++)
		memcpy(base + u32_keys[i].off, &u32_keys[i].def, sizeof(uint32_t));
	for (size_t i = 0; i < N_KEYS(bool_keys); i++)
		memcpy(base + bool_keys[i].off, &bool_keys[i].def, sizeof(bool));
	for (size_t i = 0; i < N_KEYS(str_keys); i++)
		snprintf(base + str_keys[i].off, str_keys[i].size, "%s", str_keys[i].def);
	for (size_t i = 0; i < N_KEYS(word_keys); i++)
		word_keys[i].parse(word_keys[i].def, base + word_keys[i].off);
	tsw_hostport_parse(LISTEN_DEFAULT, &cfg->listen);
	tsw_hostport_parse(METRICS_DEFAULT, &cfg->metrics);
}

static int parse_u32(const char *s, uint32_t min, uint32_t max, uint32_t *ret)
{
	unsigned long long v;
	char *end;

	if (!s[0] || s[0] == '-' || s[0] == '+')
		return -TSW_E_CONFIG;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return -TSW_E_CONFIG;
	*ret = (uint32_t)v;
	return 0;
}

static int parse_bool(const char *s, bool *ret)
{
	if (strcmp(s, "true") == 0 || strcmp(s, "1") == 0) {
		*ret = true;
		return 0;
	}
	if (strcmp(s, "false") == 0 || strcmp(s, "0") == 0) {
		*ret = false;
		return 0;
	}
	return -TSW_E_CONFIG;
}

/* "contactless, chip" -> bits; names separated by commas and blanks;
 * empty: no mode */
static int parse_modes(const char *s, uint32_t *ret)
{
	uint32_t bits = 0;

	for (;;) {
		size_t n;
		unsigned i;

		s += strspn(s, ", \t");
		if (!*s)
			break;
		n = strcspn(s, ", \t");
		for (i = 0; i < TSW_CONFIG_POS_MODES; i++)
			if (strlen(pos_mode_names[i]) == n && memcmp(s, pos_mode_names[i], n) == 0)
				break;
		if (i == TSW_CONFIG_POS_MODES)
			return -TSW_E_CONFIG;
		bits |= 1u << i;
		s += n;
	}
	*ret = bits;
	return 0;
}

int tsw_hostport_parse(const char *s, struct tsw_hostport *ret)
{
	const char *colon, *host = s;
	size_t host_len;
	uint32_t port;

	if (s[0] == '[') {
		const char *close = strchr(s, ']');

		if (!close || close[1] != ':')
			return -TSW_E_CONFIG;
		host = s + 1;
		host_len = (size_t)(close - host);
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return -TSW_E_CONFIG;
		host_len = (size_t)(colon - s);
	}
	/* a blank or a comma is never part of a host (lists are split on commas) */
	if (host_len == 0 || host_len >= TSW_CONFIG_HOST_MAX ||
	    strcspn(host, " \t,") < host_len)
		return -TSW_E_CONFIG;
	if (parse_u32(colon + 1, 0, 65535, &port) < 0)
		return -TSW_E_CONFIG;
	memcpy(ret->host, host, host_len);
	ret->host[host_len] = '\0';
	ret->port = (uint16_t)port;
	return 0;
}

int tsw_config_io_parse(const char *s, enum tsw_config_io *ret_io)
{
	for (int i = 0; i < TSW_CONFIG_IO_MAX; i++) {
		if (strcmp(s, io_names[i]) == 0) {
			*ret_io = (enum tsw_config_io)i;
			return 0;
		}
	}
	return -TSW_E_CONFIG;
}

const char *tsw_config_io_name(enum tsw_config_io io)
{
	return io < TSW_CONFIG_IO_MAX ? io_names[io] : "?";
}

static int set_route(struct tsw_config *cfg, const char *key, const char *value, char *reason,
		     size_t cap)
{
	struct tsw_config_route *r = NULL;
	const char *prefix = key;
	uint32_t issuer;
	size_t len;

	if (strcmp(key, "default") == 0)
		prefix = "";
	len = strlen(prefix);
	if (len > TSW_CONFIG_BIN_MAX || strspn(prefix, "0123456789") != len)
		return fail(reason, cap,
			    "route key must be a BIN prefix of 1-%d digits or 'default'",
			    TSW_CONFIG_BIN_MAX);
	if (parse_u32(value, 0, TSW_CONFIG_ISSUERS_MAX - 1, &issuer) < 0)
		return fail(reason, cap, "route value must be an issuer index 0-%d",
			    TSW_CONFIG_ISSUERS_MAX - 1);
	for (uint32_t i = 0; i < cfg->n_routes; i++)
		if (strcmp(cfg->routes[i].bin_prefix, prefix) == 0)
			r = &cfg->routes[i];
	if (!r) {
		if (cfg->n_routes == TSW_CONFIG_ROUTES_MAX)
			return fail(reason, cap, "more than %d routes", TSW_CONFIG_ROUTES_MAX);
		r = &cfg->routes[cfg->n_routes++];
	}
	memcpy(r->bin_prefix, prefix, len + 1);
	r->issuer = (uint8_t)issuer;
	return 0;
}

/* One host line: an issuer with the comma-separated hosts of value. The
 * hosts are parsed aside and added only when all of them are good. */
static int add_issuer(struct tsw_config *cfg, const char *value, char *reason, size_t cap)
{
	struct tsw_hostport hosts[TSW_CONFIG_ISSUER_HOSTS_MAX];
	char item[TSW_CONFIG_HOST_MAX + 16];
	const char *p = value;
	uint32_t n = 0;

	if (cfg->n_issuers == TSW_CONFIG_ISSUERS_MAX)
		return fail(reason, cap, "issuer.host: more than %d issuers (one per host line)",
			    TSW_CONFIG_ISSUERS_MAX);
	for (;;) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);

		while (len && (*p == ' ' || *p == '\t')) {
			p++;
			len--;
		}
		while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
			len--;
		if (n == TSW_CONFIG_ISSUER_HOSTS_MAX)
			return fail(reason, cap,
				    "issuer.host: more than %d hosts for one issuer "
				    "(TSW_CONFIG_ISSUER_HOSTS_MAX)",
				    TSW_CONFIG_ISSUER_HOSTS_MAX);
		if (len < sizeof(item)) {
			memcpy(item, p, len);
			item[len] = '\0';
		}
		if (len >= sizeof(item) || tsw_hostport_parse(item, &hosts[n]) < 0 ||
		    hosts[n].port == 0)
			return fail(reason, cap,
				    "issuer.host must be HOST:PORT[, HOST:PORT...] with ports above 0");
		n++;
		if (!end)
			break;
		p = end + 1;
	}
	if (cfg->n_hosts + n > TSW_CONFIG_LINKS_MAX)
		return fail(reason, cap,
			    "issuer.host: more than %d hosts in all issuers (TSW_CONFIG_LINKS_MAX)",
			    TSW_CONFIG_LINKS_MAX);
	for (uint32_t i = 0; i < n; i++) {
		cfg->hosts[cfg->n_hosts].addr = hosts[i];
		cfg->hosts[cfg->n_hosts].issuer = (uint8_t)cfg->n_issuers;
		cfg->n_hosts++;
	}
	cfg->n_issuers++;
	return 0;
}

bool tsw_config_issuers_equal(const struct tsw_config *a, const struct tsw_config *b)
{
	if (a->n_issuers != b->n_issuers || a->n_hosts != b->n_hosts)
		return false;
	for (uint32_t i = 0; i < a->n_hosts; i++)
		if (a->hosts[i].issuer != b->hosts[i].issuer ||
		    strcmp(a->hosts[i].addr.host, b->hosts[i].addr.host) ||
		    a->hosts[i].addr.port != b->hosts[i].addr.port)
			return false;
	return true;
}

/* A key of one table: its row, or NULL. */
#define FIND_KEY(table, section, key)                                                              \
	({                                                                                         \
		__typeof__(&(table)[0]) found_ = NULL;                                             \
		for (size_t i_ = 0; i_ < N_KEYS(table) && !found_; i_++)                           \
			if (strcmp((section), (table)[i_].section) == 0 &&                         \
			    strcmp((key), (table)[i_].key) == 0)                                   \
				found_ = &(table)[i_];                                             \
		found_;                                                                            \
	})

static int set_u32(struct tsw_config *cfg, const struct u32_key *k, const char *value, char *reason,
		   size_t cap)
{
	uint32_t v;

	if (parse_u32(value, k->min, k->max, &v) < 0 || ((k->flags & KEY_POW2) && (v & (v - 1))))
		return fail(reason, cap, "%s.%s must be an integer in %u..%u%s", k->section, k->key,
			    k->min, k->max, (k->flags & KEY_POW2) ? ", a power of two" : "");
	memcpy((char *)cfg + k->off, &v, sizeof(v));
	return 0;
}

static int set_str(struct tsw_config *cfg, const struct str_key *k, const char *value, char *reason,
		   size_t cap)
{
	if (strlen(value) >= k->size)
		return fail(reason, cap, "%s.%s longer than %zu bytes", k->section, k->key,
			    k->size - 1);
	strcpy((char *)cfg + k->off, value);
	return 0;
}

static int set_bool(struct tsw_config *cfg, const struct bool_key *k, const char *value,
		    char *reason, size_t cap)
{
	bool v;

	if (parse_bool(value, &v) < 0)
		return fail(reason, cap, "%s.%s must be true or false", k->section, k->key);
	memcpy((char *)cfg + k->off, &v, sizeof(v));
	return 0;
}

static int set_word(struct tsw_config *cfg, const struct word_key *k, const char *value,
		    char *reason, size_t cap)
{
	if (k->parse(value, (char *)cfg + k->off) < 0)
		return fail(reason, cap, "%s", k->reason);
	return 0;
}

static int set_address(struct tsw_config *cfg, const char *key, const char *value, char *reason,
		       size_t cap)
{
	struct tsw_hostport *hp = key[0] == 'l' ? &cfg->listen : &cfg->metrics;

	if (tsw_hostport_parse(value, hp) < 0)
		return fail(reason, cap, "server.%s must be HOST:PORT", key);
	return 0;
}

int tsw_config_set(struct tsw_config *cfg, const char *section, const char *key, const char *value,
		   char *reason, size_t cap)
{
	const struct u32_key *uk = FIND_KEY(u32_keys, section, key);
	const struct str_key *sk = FIND_KEY(str_keys, section, key);
	const struct bool_key *bk = FIND_KEY(bool_keys, section, key);
	const struct word_key *wk = FIND_KEY(word_keys, section, key);

	if (uk)
		return set_u32(cfg, uk, value, reason, cap);
	if (sk)
		return set_str(cfg, sk, value, reason, cap);
	if (bk)
		return set_bool(cfg, bk, value, reason, cap);
	if (wk)
		return set_word(cfg, wk, value, reason, cap);
	if (strcmp(section, "server") == 0 &&
	    (strcmp(key, "listen") == 0 || strcmp(key, "metrics") == 0))
		return set_address(cfg, key, value, reason, cap);
	if (strcmp(section, "issuer") == 0 && strcmp(key, "host") == 0)
		return add_issuer(cfg, value, reason, cap);
	if (strcmp(section, "route") == 0)
		return set_route(cfg, key, value, reason, cap);
	return fail(reason, cap, "unknown key %s.%s", section, key);
}

int tsw_config_check(const struct tsw_config *cfg, char *reason, size_t cap)
{
	if (cfg->reconnect_min_ms > cfg->reconnect_max_ms)
		return fail(reason, cap, "issuer.reconnect_min_ms above issuer.reconnect_max_ms");
	if (cfg->saf_retry_min_ms > cfg->saf_retry_max_ms)
		return fail(reason, cap, "saf.retry_min_ms above saf.retry_max_ms");
	if (cfg->recv_bufs & (cfg->recv_bufs - 1))
		return fail(reason, cap, "io.recv_bufs must be a power of two");
	if (cfg->max_pending & (cfg->max_pending - 1))
		return fail(reason, cap, "limits.max_pending must be a power of two");
	if (cfg->acq_reversal_memory & (cfg->acq_reversal_memory - 1))
		return fail(reason, cap, "limits.acq_reversal_memory must be a power of two");
	if (cfg->expired_stan_memory & (cfg->expired_stan_memory - 1))
		return fail(reason, cap, "limits.expired_stan_memory must be a power of two");
	if (cfg->out_buf_bytes < 2 * (cfg->max_frame + FRAME_HEADER_MAX))
		return fail(reason, cap, "limits.out_buf_bytes must hold two frames of max_frame");
	if (cfg->link_buf_bytes < 2 * (cfg->max_frame + FRAME_HEADER_MAX))
		return fail(reason, cap, "limits.link_buf_bytes must hold two frames of max_frame");
	if (cfg->in_buf_bytes < cfg->max_frame + FRAME_HEADER_MAX)
		return fail(reason, cap, "limits.in_buf_bytes must hold a frame of max_frame");
	if (cfg->in_buf_bytes < cfg->recv_buf_bytes)
		return fail(reason, cap,
			    "limits.in_buf_bytes below io.recv_buf_bytes (the engine takes one "
			    "receive buffer at a time)");
	if (cfg->state_dir[0] && cfg->no_state)
		return fail(reason, cap,
			    "server.state and server.no_state both set: --state DIR keeps "
			    "reversals and limited-use counts, --no-state runs without them");
	if (cfg->state_dir[0] && cfg->state_saf_lease_ms <= cfg->issuer_timeout_ms)
		return fail(reason, cap,
			    "state.saf_lease_ms must be above issuer.timeout_ms (a reversal "
			    "awaiting its answer would be sent again)");
	if (cfg->state_dir[0] && cfg->workers > TSW_CONFIG_STATE_WORKERS_MAX)
		return fail(reason, cap,
			    "server.workers above %u with a state directory (the state wakes "
			    "at most %u workers): lower workers",
			    TSW_CONFIG_STATE_WORKERS_MAX, TSW_CONFIG_STATE_WORKERS_MAX);
	for (uint32_t i = 0; i < cfg->n_routes; i++)
		if (cfg->routes[i].issuer >= cfg->n_issuers)
			return fail(
			    reason, cap, "route %s names issuer %u but %u issuers are set",
			    cfg->routes[i].bin_prefix[0] ? cfg->routes[i].bin_prefix : "default",
			    cfg->routes[i].issuer, cfg->n_issuers);
	if (!cfg->vault_dir[0])
		return fail(reason, cap, "server.vault (--vault) is required");
	if (!cfg->key_file[0])
		return fail(reason, cap, "server.key_file (--key-file) is required");
	return 0;
}

int tsw_config_check_frame(const struct tsw_config *cfg, const char *key, const char *profile,
			   const char *header, uint32_t header_max, char *reason, size_t cap)
{
	/* "none" hands each read buffer over whole: a TCP stream cannot be
	 * framed by it (the engine would refuse the profile later, naming
	 * no key) */
	if (strcmp(header, "none") == 0)
		return fail(reason, cap,
			    "%s %s has no length header to frame a connection by: use a "
			    "profile with one (default, ascii4)",
			    key, profile);
	if (cfg->max_frame <= header_max)
		return 0;
	return fail(reason, cap,
		    "limits.max_frame %u is above what the %s header of %s %s can express "
		    "(at most %u bytes): lower limits.max_frame",
		    cfg->max_frame, header, key, profile, header_max);
}

/* Appends "name" (comma-separated) to buf; "..." once it no longer fits. */
static void append_name(char *buf, size_t cap, size_t *len, bool *cut, const char *section,
			const char *key)
{
	size_t need = strlen(section) + 1 + strlen(key) + (*len ? 1 : 0);

	if (!buf || !cap || *cut)
		return;
	if (*len + need + 1 > cap) {
		*cut = true;
		if (cap > 4) {
			size_t at = *len + 3 < cap ? *len : cap - 4;

			memcpy(buf + at, "...", 4);
			*len = at + 3;
		}
		return;
	}
	*len += (size_t)snprintf(buf + *len, cap - *len, "%s%s.%s", *len ? "," : "", section, key);
}

unsigned tsw_config_restart_only_changed(const struct tsw_config *running,
					 const struct tsw_config *loaded, char *buf, size_t cap)
{
	const char *a = (const char *)running, *b = (const char *)loaded;
	size_t len = 0;
	unsigned n = 0;
	bool cut = false;

	if (buf && cap)
		buf[0] = '\0';
	for (size_t i = 0; i < N_KEYS(u32_keys); i++) {
		const struct u32_key *k = &u32_keys[i];

		if ((k->flags & KEY_RELOAD) ||
		    memcmp(a + k->off, b + k->off, sizeof(uint32_t)) == 0)
			continue;
		append_name(buf, cap, &len, &cut, k->section, k->key);
		n++;
	}
	for (size_t i = 0; i < N_KEYS(str_keys); i++) {
		const struct str_key *k = &str_keys[i];

		if (strcmp(a + k->off, b + k->off) == 0)
			continue;
		append_name(buf, cap, &len, &cut, k->section, k->key);
		n++;
	}
	if (strcmp(running->listen.host, loaded->listen.host) ||
	    running->listen.port != loaded->listen.port) {
		append_name(buf, cap, &len, &cut, "server", "listen");
		n++;
	}
	if (strcmp(running->metrics.host, loaded->metrics.host) ||
	    running->metrics.port != loaded->metrics.port) {
		append_name(buf, cap, &len, &cut, "server", "metrics");
		n++;
	}
	for (size_t i = 0; i < N_KEYS(word_keys); i++) {
		const struct word_key *k = &word_keys[i];

		if ((k->flags & KEY_RELOAD) || memcmp(a + k->off, b + k->off, k->size) == 0)
			continue;
		append_name(buf, cap, &len, &cut, k->section, k->key);
		n++;
	}
	return n;
}

void tsw_config_apply_reload(struct tsw_config *running, const struct tsw_config *loaded)
{
	char *a = (char *)running;
	const char *b = (const char *)loaded;

	for (size_t i = 0; i < N_KEYS(u32_keys); i++)
		if (u32_keys[i].flags & KEY_RELOAD)
			memcpy(a + u32_keys[i].off, b + u32_keys[i].off, sizeof(uint32_t));
	for (size_t i = 0; i < N_KEYS(bool_keys); i++)
		memcpy(a + bool_keys[i].off, b + bool_keys[i].off, sizeof(bool));
	for (size_t i = 0; i < N_KEYS(word_keys); i++)
		if (word_keys[i].flags & KEY_RELOAD)
			memcpy(a + word_keys[i].off, b + word_keys[i].off, word_keys[i].size);
	running->n_routes = loaded->n_routes;
	memcpy(running->routes, loaded->routes, sizeof(running->routes));
}

const char *tsw_config_key_name(size_t i, const char **ret_section)
{
	static const struct {
		const char *section, *key;
	} addresses[] = {{"server", "listen"}, {"server", "metrics"}};
	const char *section, *key;

	if (i < N_KEYS(u32_keys)) {
		section = u32_keys[i].section;
		key = u32_keys[i].key;
	} else if ((i -= N_KEYS(u32_keys)) < N_KEYS(str_keys)) {
		section = str_keys[i].section;
		key = str_keys[i].key;
	} else if ((i -= N_KEYS(str_keys)) < N_KEYS(bool_keys)) {
		section = bool_keys[i].section;
		key = bool_keys[i].key;
	} else if ((i -= N_KEYS(bool_keys)) < N_KEYS(word_keys)) {
		section = word_keys[i].section;
		key = word_keys[i].key;
	} else if ((i -= N_KEYS(word_keys)) < N_KEYS(addresses)) {
		section = addresses[i].section;
		key = addresses[i].key;
	} else {
		return NULL;
	}
	*ret_section = section;
	return key;
}

struct load_ctx {
	struct tsw_config cfg;
	FILE *f;
	unsigned line;	   /* line the reader handed out last */
	unsigned err_line; /* first faulty line seen by the handler */
	char reason[TSW_CONFIG_REASON_MAX];
	unsigned bad_line; /* line the reader refused (too long, NUL byte) */
	char bad_reason[TSW_CONFIG_REASON_MAX];
};

/* Reads one line for inih and counts lines, so the handler knows where it
 * is. inih's buffer holds num - 1 bytes and it parses whatever does not
 * fit as a line of its own, and a NUL byte would end a line early: such a
 * line ends the parse instead (tsw_config_load reports it by line). */
static char *read_line(char *str, int num, void *stream)
{
	struct load_ctx *ctx = stream;
	int n = 0, c = EOF;

	while (n < num - 1 && (c = getc(ctx->f)) != EOF) {
		if (c == '\0') {
			ctx->bad_line = ++ctx->line;
			snprintf(ctx->bad_reason, sizeof(ctx->bad_reason), "line holds a NUL byte");
			return NULL;
		}
		str[n++] = (char)c;
		if (c == '\n')
			break;
	}
	if (n == 0)
		return NULL; /* end of file (or a read error: fclose sees it) */
	ctx->line++;
	str[n] = '\0';
	if (n == num - 1 && str[n - 1] != '\n') {
		/* full: fine if the newline (or the end of the file) comes next */
		c = getc(ctx->f);
		if (c != '\n' && c != EOF) {
			ctx->bad_line = ctx->line;
			snprintf(ctx->bad_reason, sizeof(ctx->bad_reason),
				 "line longer than %d bytes (the most the parser reads)", num - 1);
			return NULL;
		}
	}
	return str;
}

static int on_ini(void *user, const char *section, const char *name, const char *value)
{
	struct load_ctx *ctx = user;
	char reason[TSW_CONFIG_REASON_MAX];

	if (tsw_config_set(&ctx->cfg, section, name, value, reason, sizeof(reason)) == 0)
		return 1;
	if (!ctx->err_line) {
		ctx->err_line = ctx->line;
		memcpy(ctx->reason, reason, sizeof(reason));
	}
	return 0;
}

int tsw_config_load(const char *path, struct tsw_config *cfg, struct tsw_config_error *ret_err)
{
	struct load_ctx *ctx;
	int r, line;

	ctx = calloc(1, sizeof(*ctx));
	if (!ctx)
		return -ENOMEM;
	ctx->cfg = *cfg;
	ctx->f = fopen(path, "re");
	if (!ctx->f) {
		r = -errno;
		if (ret_err) {
			snprintf(ret_err->file, sizeof(ret_err->file), "%s", path);
			ret_err->line = 0;
			snprintf(ret_err->reason, sizeof(ret_err->reason), "cannot open: %s",
				 tsw_strerror(r));
		}
		goto out_free;
	}
	line = ini_parse_stream(read_line, ctx, on_ini, ctx);
	fclose(ctx->f);
	if (ctx->bad_line && line == 0) {
		/* the reader stopped inih there: an earlier error would come first */
		line = (int)ctx->bad_line;
		ctx->err_line = ctx->bad_line;
		memcpy(ctx->reason, ctx->bad_reason, sizeof(ctx->reason));
	}
	if (line == 0) {
		*cfg = ctx->cfg;
		r = 0;
		goto out_free;
	}
	r = -TSW_E_CONFIG;
	if (ret_err) {
		snprintf(ret_err->file, sizeof(ret_err->file), "%s", path);
		ret_err->line = line > 0 ? (unsigned)line : 0;
		if (line > 0 && (unsigned)line == ctx->err_line)
			snprintf(ret_err->reason, sizeof(ret_err->reason), "%s", ctx->reason);
		else
			snprintf(ret_err->reason, sizeof(ret_err->reason),
				 line > 0 ? "syntax error (expected [section] or key = value)"
					  : "cannot read file");
	}
out_free:
	free(ctx);
	return r;
}
