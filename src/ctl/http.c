/* The metrics and health HTTP endpoint: a deliberately tiny HTTP/1.x
 * server (GET only, one request per connection, answer then close). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_parse.h"
#include "tsw/ctl.h"
#include "tsw/state.h"

struct tsw_ctl {
	uv_loop_t *loop;
	uv_tcp_t listener;
	struct tsw_ctl_params p;
	struct tsw_ctl_source src;
	uint32_t n_conns;
	uint64_t refused;   /* connections above max_conns */
	uint64_t too_large; /* requests above max_request_bytes */
	uint16_t port;
	bool stopping;
	struct http_conn *conns; /* open connections, for stop */
};

struct http_conn {
	uv_tcp_t tcp;
	uv_timer_t idle;
	uv_write_t wr;
	struct tsw_ctl *ctl;
	struct http_conn *next, **pprev;
	char *req;
	size_t req_len;
	char *resp;
	int closing; /* handles still to close */
	bool answered;
};

static void conn_freed(uv_handle_t *h)
{
	struct http_conn *c = h->data;

	if (--c->closing > 0)
		return;
	c->ctl->n_conns--;
	free(c->req);
	free(c->resp);
	free(c);
}

static void conn_close(struct http_conn *c)
{
	if (c->closing)
		return;
	if (c->pprev) {
		*c->pprev = c->next;
		if (c->next)
			c->next->pprev = c->pprev;
		c->pprev = NULL;
	}
	c->closing = 2;
	uv_close((uv_handle_t *)&c->idle, conn_freed);
	uv_close((uv_handle_t *)&c->tcp, conn_freed);
}

static void wrote(uv_write_t *wr, int status)
{
	(void)status;
	conn_close(wr->data);
}

static void respond(struct http_conn *c, int code, const char *reason, const char *ctype,
		    const char *body, size_t body_len)
{
	char head[256];
	int n;

	c->answered = true;
	uv_read_stop((uv_stream_t *)&c->tcp);
	n = snprintf(head, sizeof(head),
		     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
		     "Connection: close\r\n\r\n",
		     code, reason, ctype, body_len);
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

/* req NULL: the request line was bad. */
static void handle_request(struct http_conn *c, const struct http_request *req)
{
	struct tsw_ctl *ctl = c->ctl;

	if (!req) {
		respond_text(c, 400, "Bad Request", "bad request\n");
		return;
	}
	if (strcmp(req->method, "GET") != 0) {
		respond_text(c, 405, "Method Not Allowed", "only GET\n");
		return;
	}
	if (strcmp(req->path, "/healthz") == 0) {
		respond_text(c, 200, "OK", "ok\n");
	} else if (strcmp(req->path, "/readyz") == 0) {
		readyz(c);
	} else if (strcmp(req->path, "/metrics") == 0) {
		char *text;
		size_t len;

		char own[512];
		int n;

		if (tsw_ctl_render_metrics(&ctl->src, &text, &len) < 0) {
			respond_text(c, 500, "Internal Server Error", "out of memory\n");
			return;
		}
		/* the endpoint's own limits */
		n = snprintf(own, sizeof(own),
			     "# HELP tsw_http_refused_total Metrics connections closed: "
			     "metrics.max_conns reached.\n# TYPE tsw_http_refused_total counter\n"
			     "tsw_http_refused_total %" PRIu64 "\n"
			     "# HELP tsw_http_too_large_total Metrics requests above "
			     "metrics.max_request_bytes.\n# TYPE tsw_http_too_large_total counter\n"
			     "tsw_http_too_large_total %" PRIu64 "\n",
			     ctl->refused, ctl->too_large);
		char *all = realloc(text, len + (size_t)n + 1);

		if (all) {
			memcpy(all + len, own, (size_t)n + 1);
			text = all;
			len += (size_t)n;
		}
		respond(c, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", text, len);
		free(text);
	} else {
		respond_text(c, 404, "Not Found", "not found\n");
	}
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct http_conn *c = h->data;
	size_t room = c->ctl->p.max_request_bytes - c->req_len;

	(void)suggested;
	buf->base = c->req + c->req_len;
	buf->len = room;
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct http_conn *c = s->data;
	struct http_request req;
	int r;

	(void)buf;
	if (c->answered || c->closing)
		return;
	if (n < 0) {
		conn_close(c);
		return;
	}
	c->req_len += (size_t)n;
	r = http_parse_request(c->req, c->req_len, &req);
	if (r != 0) {
		handle_request(c, r > 0 ? &req : NULL);
		return;
	}
	if (c->req_len >= c->ctl->p.max_request_bytes) {
		c->ctl->too_large++;
		respond_text(c, 431, "Request Header Fields Too Large", "request too large\n");
	}
}

static void idle_cb(uv_timer_t *t)
{
	conn_close(t->data);
}

static void refused_close(uv_handle_t *h)
{
	free(h);
}

static void on_connection(uv_stream_t *server, int status)
{
	struct tsw_ctl *ctl = server->data;
	struct http_conn *c;

	if (status < 0)
		return;
	if (ctl->n_conns >= ctl->p.max_conns) {
		ctl->refused++;
		/* accept and close at once: over the connection limit */
		uv_tcp_t *t = malloc(sizeof(*t));

		if (!t)
			return;
		uv_tcp_init(ctl->loop, t);
		if (uv_accept(server, (uv_stream_t *)t) == 0)
			uv_tcp_close_reset(t, refused_close);
		else
			uv_close((uv_handle_t *)t, refused_close);
		return;
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
	uv_timer_init(ctl->loop, &c->idle);
	c->tcp.data = c;
	c->idle.data = c;
	c->next = ctl->conns;
	if (c->next)
		c->next->pprev = &c->next;
	c->pprev = &ctl->conns;
	ctl->conns = c;
	if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0 ||
	    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) < 0) {
		conn_close(c);
		return;
	}
	uv_timer_start(&c->idle, idle_cb, ctl->p.idle_timeout_ms, 0);
}

static void listener_closed(uv_handle_t *h)
{
	free(h->data);
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
	if (p->max_request_bytes < 16 || p->max_conns == 0)
		return -EINVAL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->loop = loop;
	c->p = *p;
	c->src = *src;
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
	while (c->conns)
		conn_close(c->conns);
	uv_close((uv_handle_t *)&c->listener, listener_closed);
}
