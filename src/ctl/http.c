/* The metrics and health HTTP endpoint: a deliberately tiny HTTP/1.x
 * server (GET only, one request per connection, answer then close). The
 * request head is parsed by http_parse.c; this file owns the connections
 * and their limits. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tsw/ctl.h"
#include "tsw/error.h"
#include "tsw/log.h"
#include "tsw/state.h"

/* Limits of the endpoint hit: each a counter in /metrics and a log
 * event (one line per kind and log_interval_ms, saying how many more). */
enum http_limit {
	LIM_REFUSED,	     /* max_conns reached with every slot answering */
	LIM_EVICTED,	     /* max_conns reached: the oldest request-sending one closed */
	LIM_REQUEST_TIMEOUT, /* no whole head within request_timeout_ms */
	LIM_IDLE,	     /* the answer not taken within idle_timeout_ms */
	LIM_TOO_LARGE,	     /* head above max_request_bytes: 431 */
	LIM_UNAUTHORIZED,    /* /metrics without the bearer token: 401 */
	LIM_MAX
};

static const struct {
	const char *event, *metric, *help, *key;
	enum tsw_log_level level;
} limits[LIM_MAX] = {
    [LIM_REFUSED] = {"http_refused", "tokswitch_http_refused_total",
		     "Metrics connections closed at once: metrics.max_conns reached, every "
		     "connection answering.",
		     "metrics.max_conns", TSW_LOG_WARN},
    [LIM_EVICTED] = {"http_evicted", "tokswitch_http_evicted_total",
		     "Metrics connections still sending their request closed for a new client: "
		     "metrics.max_conns reached.",
		     "metrics.max_conns", TSW_LOG_WARN},
    [LIM_REQUEST_TIMEOUT] = {"http_request_timeout", "tokswitch_http_request_timeouts_total",
			     "Metrics connections closed without a whole request within "
			     "metrics.request_timeout_ms.",
			     "metrics.request_timeout_ms", TSW_LOG_WARN},
    [LIM_IDLE] = {"http_idle_timeout", "tokswitch_http_idle_closed_total",
		  "Metrics connections closed with their answer not taken within "
		  "metrics.idle_timeout_ms.",
		  "metrics.idle_timeout_ms", TSW_LOG_INFO},
    [LIM_TOO_LARGE] = {"http_too_large", "tokswitch_http_too_large_total",
		       "Metrics requests above metrics.max_request_bytes (431).",
		       "metrics.max_request_bytes", TSW_LOG_WARN},
    [LIM_UNAUTHORIZED] = {"http_unauthorized", "tokswitch_http_unauthorized_total",
			  "Metrics requests without the bearer token of metrics.token_file (401).",
			  "metrics.token_file", TSW_LOG_WARN},
};

struct http_conn;
TAILQ_HEAD(http_conn_list, http_conn);

struct tsw_ctl {
	uv_loop_t *loop;
	uv_tcp_t listener;
	struct tsw_ctl_params p;
	struct tsw_ctl_source src;
	char *token;	  /* p.token copied; NULL: /metrics is open */
	uint32_t n_conns; /* open, closing ones not counted */
	uint64_t hits[LIM_MAX];
	uint64_t suppressed[LIM_MAX]; /* hits not logged since the last line */
	uint64_t next_log_ms[LIM_MAX];
	uint16_t port;
	bool stopping;
	/* in accept order: the head of reading is the one a new client
	 * takes the slot of */
	struct http_conn_list reading;	 /* still sending the request */
	struct http_conn_list answering; /* answer being written */
};

struct http_conn {
	uv_tcp_t tcp;
	uv_timer_t timer; /* request_timeout_ms, then idle_timeout_ms */
	uv_write_t wr;
	struct tsw_ctl *ctl;
	TAILQ_ENTRY(http_conn) link;
	struct http_conn_list *list; /* the one it is in; NULL once closing */
	char *req;		     /* max_request_bytes, never NUL-terminated */
	size_t req_len;
	struct tsw_http_head_scan scan;
	char *resp;
	int closing; /* handles still to close */
};

static void limit_hit(struct tsw_ctl *ctl, enum http_limit k, uint32_t value)
{
	uint64_t now = uv_now(ctl->loop);

	ctl->hits[k]++;
	if (now < ctl->next_log_ms[k]) {
		ctl->suppressed[k]++;
		return;
	}
	ctl->next_log_ms[k] = now + ctl->p.log_interval_ms;
	tsw_log(limits[k].level, limits[k].event, "limit=%s value=%u suppressed=%" PRIu64,
		limits[k].key, value, ctl->suppressed[k]);
	ctl->suppressed[k] = 0;
}

static void conn_freed(uv_handle_t *h)
{
	struct http_conn *c = h->data;

	if (--c->closing > 0)
		return;
	free(c->req);
	free(c->resp);
	free(c);
}

static void conn_close(struct http_conn *c)
{
	if (c->closing)
		return;
	if (c->list) {
		TAILQ_REMOVE(c->list, c, link);
		c->list = NULL;
	}
	/* the slot is free now: the memory follows from the close callbacks */
	c->ctl->n_conns--;
	c->closing = 2;
	uv_close((uv_handle_t *)&c->timer, conn_freed);
	uv_close((uv_handle_t *)&c->tcp, conn_freed);
}

static void wrote(uv_write_t *wr, int status)
{
	(void)status;
	conn_close(wr->data);
}

static void timer_cb(uv_timer_t *t);

/* extra: more header lines, each ending in CRLF ("" for none) */
static void respond_with(struct http_conn *c, int code, const char *reason, const char *extra,
			 const char *ctype, const char *body, size_t body_len)
{
	struct tsw_ctl *ctl = c->ctl;
	char head[512];
	int n;

	uv_read_stop((uv_stream_t *)&c->tcp);
	TAILQ_REMOVE(c->list, c, link);
	c->list = &ctl->answering;
	TAILQ_INSERT_TAIL(c->list, c, link);
	uv_timer_start(&c->timer, timer_cb, ctl->p.idle_timeout_ms, 0);
	n = snprintf(head, sizeof(head),
		     "HTTP/1.1 %d %s\r\n%sContent-Type: %s\r\nContent-Length: %zu\r\n"
		     "Connection: close\r\n\r\n",
		     code, reason, extra, ctype, body_len);
	c->resp = malloc((size_t)n + body_len);
	if (!c->resp) {
		conn_close(c);
		return;
	}
	memcpy(c->resp, head, (size_t)n);
	memcpy(c->resp + n, body, body_len);
	uv_buf_t b = uv_buf_init(c->resp, (unsigned)((size_t)n + body_len));

	c->wr.data = c;
	if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, wrote) < 0)
		conn_close(c);
}

static void respond(struct http_conn *c, int code, const char *reason, const char *ctype,
		    const char *body, size_t body_len)
{
	respond_with(c, code, reason, "", ctype, body, body_len);
}

static void respond_text(struct http_conn *c, int code, const char *reason, const char *body)
{
	respond(c, code, reason, "text/plain; charset=utf-8", body, strlen(body));
}

/* /readyz: 200 "ready" when every worker is; a degraded state writer
 * still answers 200 (ordinary authorizations flow, limited-use ones are
 * declined 96) with the reason in the body, for whoever looks. */
static void readyz(struct http_conn *c)
{
	static const char *const why[TSW_STATE_HEALTH_MAX] = {
	    [TSW_STATE_MAP_FULL] = "map full (state.map_size_mb)",
	    [TSW_STATE_DISK_FULL] = "disk full",
	    [TSW_STATE_IO_ERROR] = "I/O error",
	};
	const struct tsw_ctl_source *src = &c->ctl->src;
	bool ready = src->ready && src->ready(src->ctx);
	enum tsw_state_health h =
	    src->state ? tsw_state_health(src->state, NULL) : TSW_STATE_HEALTHY;
	char body[128];

	if (h == TSW_STATE_HEALTHY || (unsigned)h >= TSW_STATE_HEALTH_MAX) {
		respond_text(c, ready ? 200 : 503, ready ? "OK" : "Service Unavailable",
			     ready ? "ready\n" : "not ready\n");
		return;
	}
	snprintf(body, sizeof(body), "%sdegraded: state writer: %s\n", ready ? "" : "not ready\n",
		 why[h]);
	respond_text(c, ready ? 200 : 503, ready ? "OK" : "Service Unavailable", body);
}

static bool path_is(const struct tsw_http_request *r, const char *path)
{
	size_t n = strlen(path);

	return r->path_len == n && memcmp(r->path, path, n) == 0;
}

/* Compares in time that depends on the token's length only, never on
 * where the first difference is. */
static bool token_matches(const char *want, size_t want_len, const char *got, size_t got_len)
{
	unsigned char diff = (unsigned char)(want_len != got_len);

	for (size_t i = 0; i < want_len; i++)
		diff |= (unsigned char)(want[i] ^ (i < got_len ? got[i] : 0));
	return diff == 0;
}

static void metrics(struct http_conn *c)
{
	struct tsw_ctl *ctl = c->ctl;
	char own[4096];
	size_t len, n = 0;
	char *text, *all;

	if (tsw_ctl_render_metrics(&ctl->src, &text, &len) < 0) {
		respond_text(c, 500, "Internal Server Error", "out of memory\n");
		return;
	}
	/* the endpoint's own limits */
	for (unsigned k = 0; k < LIM_MAX; k++)
		n += (size_t)snprintf(own + n, sizeof(own) - n,
				      "# HELP %s %s\n# TYPE %s counter\n%s %" PRIu64 "\n",
				      limits[k].metric, limits[k].help, limits[k].metric,
				      limits[k].metric, ctl->hits[k]);
	n += (size_t)snprintf(own + n, sizeof(own) - n,
			      "# HELP tokswitch_http_connections_open Metrics connections open.\n"
			      "# TYPE tokswitch_http_connections_open gauge\n"
			      "tokswitch_http_connections_open %u\n",
			      ctl->n_conns);
	all = realloc(text, len + n + 1);
	if (all) {
		memcpy(all + len, own, n + 1);
		text = all;
		len += n;
	}
	respond(c, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", text, len);
	free(text);
}

static void handle_request(struct http_conn *c, size_t head_len)
{
	struct tsw_ctl *ctl = c->ctl;
	struct tsw_http_request r;

	if (tsw_http_parse(c->req, head_len, &r) < 0) {
		respond_text(c, 400, "Bad Request", "bad request\n");
		return;
	}
	if (r.method_len != 3 || memcmp(r.method, "GET", 3) != 0) {
		respond_text(c, 405, "Method Not Allowed", "only GET\n");
		return;
	}
	if (path_is(&r, "/healthz")) {
		respond_text(c, 200, "OK", "ok\n");
	} else if (path_is(&r, "/readyz")) {
		readyz(c);
	} else if (path_is(&r, "/metrics")) {
		if (ctl->token && (!r.bearer || !token_matches(ctl->token, ctl->p.token_len,
							       r.bearer, r.bearer_len))) {
			limit_hit(ctl, LIM_UNAUTHORIZED, 0);
			respond_with(c, 401, "Unauthorized",
				     r.has_authorization
					 ? "WWW-Authenticate: Bearer realm=\"tokswitch\", "
					   "error=\"invalid_token\"\r\n"
					 : "WWW-Authenticate: Bearer realm=\"tokswitch\"\r\n",
				     "text/plain; charset=utf-8", "unauthorized\n",
				     sizeof("unauthorized\n") - 1);
			return;
		}
		metrics(c);
	} else {
		respond_text(c, 404, "Not Found", "not found\n");
	}
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct http_conn *c = h->data;

	(void)suggested;
	buf->base = c->req + c->req_len;
	buf->len = c->ctl->p.max_request_bytes - c->req_len;
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct http_conn *c = s->data;
	size_t head_len;

	(void)buf;
	if (c->closing || c->list != &c->ctl->reading)
		return;
	if (n < 0) {
		conn_close(c);
		return;
	}
	c->req_len += (size_t)n;
	/* the body of a GET is ignored: only the head counts */
	head_len = tsw_http_head_end(&c->scan, c->req, c->req_len);
	if (head_len) {
		handle_request(c, head_len);
		return;
	}
	if (c->req_len >= c->ctl->p.max_request_bytes) {
		limit_hit(c->ctl, LIM_TOO_LARGE, c->ctl->p.max_request_bytes);
		respond_text(c, 431, "Request Header Fields Too Large", "request too large\n");
	}
}

static void timer_cb(uv_timer_t *t)
{
	struct http_conn *c = t->data;
	struct tsw_ctl *ctl = c->ctl;

	if (c->list == &ctl->reading)
		limit_hit(ctl, LIM_REQUEST_TIMEOUT, ctl->p.request_timeout_ms);
	else
		limit_hit(ctl, LIM_IDLE, ctl->p.idle_timeout_ms);
	conn_close(c);
}

static void refused_close(uv_handle_t *h)
{
	free(h);
}

static void refuse(struct tsw_ctl *ctl, uv_stream_t *server)
{
	/* accept and close at once: over the connection limit */
	uv_tcp_t *t = malloc(sizeof(*t));

	limit_hit(ctl, LIM_REFUSED, ctl->p.max_conns);
	if (!t)
		return;
	uv_tcp_init(ctl->loop, t);
	if (uv_accept(server, (uv_stream_t *)t) == 0)
		uv_tcp_close_reset(t, refused_close);
	else
		uv_close((uv_handle_t *)t, refused_close);
}

static void on_connection(uv_stream_t *server, int status)
{
	struct tsw_ctl *ctl = server->data;
	struct http_conn *c;

	if (status < 0)
		return;
	if (ctl->n_conns >= ctl->p.max_conns) {
		/* Idle clients must not keep a scraper out: the one that has
		 * been sending its request the longest gives up its slot. An
		 * answer being written is never cut. */
		if (TAILQ_EMPTY(&ctl->reading)) {
			refuse(ctl, server);
			return;
		}
		limit_hit(ctl, LIM_EVICTED, ctl->p.max_conns);
		conn_close(TAILQ_FIRST(&ctl->reading));
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return;
	c->req = malloc(ctl->p.max_request_bytes);
	if (!c->req) {
		free(c);
		return;
	}
	c->ctl = ctl;
	ctl->n_conns++;
	uv_tcp_init(ctl->loop, &c->tcp);
	uv_timer_init(ctl->loop, &c->timer);
	c->tcp.data = c;
	c->timer.data = c;
	c->list = &ctl->reading;
	TAILQ_INSERT_TAIL(c->list, c, link);
	if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0 ||
	    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) < 0) {
		conn_close(c);
		return;
	}
	uv_timer_start(&c->timer, timer_cb, ctl->p.request_timeout_ms, 0);
}

static void listener_closed(uv_handle_t *h)
{
	struct tsw_ctl *c = h->data;

	if (c->token) {
		explicit_bzero(c->token, c->p.token_len);
		free(c->token);
	}
	free(c);
}

bool tsw_ctl_host_is_loopback(const char *host)
{
	unsigned char a[16];
	static const unsigned char v6_loopback[16] = {[15] = 1};
	static const unsigned char v4_mapped[12] = {[10] = 0xff, [11] = 0xff};

	if (uv_inet_pton(AF_INET, host, a) == 0)
		return a[0] == 127;
	if (uv_inet_pton(AF_INET6, host, a) == 0)
		return memcmp(a, v6_loopback, 16) == 0 ||
		       (memcmp(a, v4_mapped, 12) == 0 && a[12] == 127);
	return false;
}

int tsw_ctl_start(uv_loop_t *loop, const struct tsw_ctl_params *p, const struct tsw_ctl_source *src,
		  struct tsw_ctl **ret_ctl)
{
	struct sockaddr_storage ss;
	struct tsw_ctl *c;
	int len = sizeof(ss);
	int r;

	if (uv_ip4_addr(p->host, p->port, (struct sockaddr_in *)&ss) < 0 &&
	    uv_ip6_addr(p->host, p->port, (struct sockaddr_in6 *)&ss) < 0)
		return -EINVAL;
	if (p->max_request_bytes < 16 || p->max_conns == 0 || p->request_timeout_ms == 0 ||
	    p->idle_timeout_ms == 0 || (p->token && p->token_len == 0))
		return -EINVAL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	if (p->token) {
		c->token = malloc(p->token_len);
		if (!c->token) {
			free(c);
			return -ENOMEM;
		}
		memcpy(c->token, p->token, p->token_len);
	}
	c->loop = loop;
	c->p = *p;
	c->p.token = NULL; /* the caller's copy may go */
	c->src = *src;
	TAILQ_INIT(&c->reading);
	TAILQ_INIT(&c->answering);
	uv_tcp_init(loop, &c->listener);
	c->listener.data = c;
	r = uv_tcp_bind(&c->listener, (const struct sockaddr *)&ss, 0);
	if (r == 0)
		r = uv_listen((uv_stream_t *)&c->listener, (int)p->backlog, on_connection);
	if (r == 0)
		r = uv_tcp_getsockname(&c->listener, (struct sockaddr *)&ss, &len);
	if (r < 0) {
		c->stopping = true;
		uv_close((uv_handle_t *)&c->listener, listener_closed);
		return r;
	}
	c->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						 : ((struct sockaddr_in *)&ss)->sin_port);
	if (!tsw_ctl_host_is_loopback(p->host)) {
		char host[TSW_CONFIG_HOST_MAX * 2];

		tsw_log(TSW_LOG_WARN, "metrics_not_loopback",
			"address=\"%s\" port=%u token=%s fix=\"%s\"",
			tsw_log_quote(p->host, host, sizeof(host)), c->port,
			c->token ? "required" : "none",
			c->token ? "firewall the port: /healthz and /readyz stay open"
				 : "bind [server] metrics to 127.0.0.1, or set metrics.token_file");
	}
	*ret_ctl = c;
	return 0;
}

uint16_t tsw_ctl_port(const struct tsw_ctl *c)
{
	return c->port;
}

void tsw_ctl_stop(struct tsw_ctl *c)
{
	if (c->stopping)
		return;
	c->stopping = true;
	while (!TAILQ_EMPTY(&c->reading))
		conn_close(TAILQ_FIRST(&c->reading));
	while (!TAILQ_EMPTY(&c->answering))
		conn_close(TAILQ_FIRST(&c->answering));
	uv_close((uv_handle_t *)&c->listener, listener_closed);
}

/* A token character of RFC 6750's b64token (token68). */
static bool is_token68(unsigned char ch)
{
	return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	       ch == '-' || ch == '.' || ch == '_' || ch == '~' || ch == '+' || ch == '/';
}

int tsw_ctl_token_read(const char *path, char *buf, size_t cap, size_t *ret_len)
{
	struct stat st;
	size_t len = 0, n;
	ssize_t got;
	int r = 0;
	int fd;

	if (cap < 2)
		return -EINVAL;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		r = -errno;
		goto out_close;
	}
	/* the key file's rule: the switch's user only */
	if (!S_ISREG(st.st_mode) || (st.st_mode & 077) || st.st_uid != geteuid()) {
		r = -EPERM;
		goto out_close;
	}
	if (cap > TSW_CTL_TOKEN_MAX + 2)
		cap = TSW_CTL_TOKEN_MAX + 2; /* room for one newline and the NUL */
	while (len < cap - 1 && (got = read(fd, buf + len, cap - 1 - len)) != 0) {
		if (got < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			goto out_wipe;
		}
		len += (size_t)got;
	}
	if (len == cap - 1) {
		char more;

		/* one more byte tells "exactly full" from "longer" */
		if (read(fd, &more, 1) != 0) {
			r = -TSW_E_BAD_INPUT;
			goto out_wipe;
		}
	}
	if (len && buf[len - 1] == '\n')
		len--;
	n = 0;
	while (n < len && is_token68((unsigned char)buf[n]))
		n++;
	while (n < len && buf[n] == '=')
		n++;
	if (len == 0 || n != len || len > TSW_CTL_TOKEN_MAX) {
		r = -TSW_E_BAD_INPUT;
		goto out_wipe;
	}
	buf[len] = '\0';
	*ret_len = len;
	goto out_close;
out_wipe:
	explicit_bzero(buf, cap);
out_close:
	close(fd);
	return r;
}
