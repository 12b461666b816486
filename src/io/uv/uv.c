/* The libuv backend: one uv loop per worker, for hosts where io_uring is
 * disabled. Engine calls made from I/O callbacks happen between
 * tsw_engine_loop_begin() (taken lazily by the first callback of an
 * iteration) and tsw_engine_loop_end() (in the prepare handler, which also
 * ticks, connects links, applies closes and sends: one write per dirty
 * endpoint per iteration, tried synchronously first).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "../worker_int.h"
#include "tsw/error.h"
#include "tsw/log.h"

#define NO_EP UINT32_MAX

struct vworker;

struct vep {
	uv_tcp_t tcp;
	uv_write_t wr;
	uv_connect_t conn;
	struct vworker *v;
	uint32_t idx;
	uint32_t eslot;
	uint32_t next_free;
	size_t write_total; /* bytes of the engine's output the write covers */
	size_t write_pre;   /* ... of which uv_try_write had already sent */
	uint8_t kind;	    /* enum tsw_endpoint_kind */
	bool in_use;	    /* handle initialised, not yet closed */
	bool reading;
	bool writing;
	bool closing;
	bool paused;
	bool link_up;
};

struct vworker {
	struct tsw_io_worker *w;
	struct tsw_engine *e;
	uv_loop_t loop;
	uv_tcp_t listener;
	uv_poll_t mail;
	uv_timer_t timer;
	uv_prepare_t prepare;
	bool listener_open;
	bool begun; /* between loop_begin and loop_end */
	bool stop;
	int rc;

	struct vep *eps; /* links at [0, n_links), connections after */
	uint32_t n_links, n_eps;
	uint32_t free_head;
	uint32_t *slot_ep;
	uint32_t n_slots;
	uint32_t n_writing;
	uint8_t *rbuf;
	size_t rbuf_bytes;
	bool loop_ok;
};

static void begin(struct vworker *v)
{
	if (!v->begun) {
		tsw_engine_loop_begin(v->e, io__now_ns());
		v->begun = true;
	}
}

static void ep_closed(uv_handle_t *h)
{
	struct vep *ep = h->data;
	struct vworker *v = ep->v;

	ep->in_use = false;
	ep->closing = false;
	ep->reading = false;
	ep->paused = false;
	if (ep->kind == TSW_EP_ACQ) {
		ep->next_free = v->free_head;
		v->free_head = ep->idx;
	}
}

static void ep_close(struct vworker *v, struct vep *ep)
{
	size_t pre;

	if (!ep->in_use || ep->closing)
		return;
	ep->closing = true;
	begin(v);
	/* the bytes uv_try_write sent before the write that is cancelled
	 * now left: an approval among them reached the peer's kernel and is
	 * not reversed as undelivered */
	pre = ep->writing ? ep->write_pre : 0;
	if (ep->kind == TSW_EP_ACQ) {
		tsw_engine_acq_close_sent(v->e, ep->eslot, pre);
		if (ep->eslot < v->n_slots)
			v->slot_ep[ep->eslot] = NO_EP;
	} else {
		if (ep->link_up)
			tsw_log(TSW_LOG_WARN, "issuer_link_down",
				"worker=%u link=%u issuer=%u host=%s:%u", v->w->p.engine.worker_id,
				ep->eslot, v->w->p.engine.settings.hosts[ep->eslot].issuer,
				v->w->p.engine.settings.hosts[ep->eslot].addr.host,
				v->w->p.engine.settings.hosts[ep->eslot].addr.port);
		ep->link_up = false;
		if (pre)
			tsw_engine_sent(v->e, (struct tsw_endpoint){.kind = TSW_EP_LINK, .slot = ep->eslot},
					pre);
		tsw_engine_link_down(v->e, ep->eslot, io__now_ns());
	}
	/* a pending write is cancelled by the close and its callback runs first */
	uv_close((uv_handle_t *)&ep->tcp, ep_closed);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct vep *ep = h->data;
	struct vworker *v = ep->v;

	(void)suggested;
	/* one buffer per worker: read_cb consumes it before the next alloc */
	buf->base = (char *)v->rbuf;
	buf->len = v->rbuf_bytes;
}

/* The engine holds the connection's input: reading stops until it
 * releases it (release_held). libuv stops at once, so nothing arrives
 * to be kept. */
static void pause_if_needed(struct vworker *v, struct vep *ep)
{
	if (ep->paused || ep->closing || !tsw_engine_acq_hold(v->e, ep->eslot))
		return;
	ep->paused = true;
	uv_read_stop((uv_stream_t *)&ep->tcp);
	ep->reading = false;
}

static void start_drain(struct vworker *v);

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct vep *ep = s->data;
	struct vworker *v = ep->v;
	uint64_t now = io__now_ns();
	int r;

	if (n == 0)
		return;
	if (ep->closing) {
		if (n > 0 && ep->kind != TSW_EP_ACQ)
			explicit_bzero(buf->base, (size_t)n);
		return;
	}
	if (n < 0) {
		ep_close(v, ep);
		return;
	}
	begin(v);
	if (io_worker_mail_waiting(v->w) && io__worker_take_mail(v->w, now))
		start_drain(v);
	if (ep->kind == TSW_EP_ACQ)
		r = tsw_engine_acq_input(v->e, ep->eslot, (const uint8_t *)buf->base, (size_t)n,
					 now);
	else
		r = tsw_engine_link_input(v->e, ep->eslot, (const uint8_t *)buf->base, (size_t)n,
					  now);
	/* an issuer's bytes carry the PAN: none stays in the buffer the
	 * next read of any connection gets */
	if (ep->kind != TSW_EP_ACQ)
		explicit_bzero(buf->base, (size_t)n);
	if (r < 0) {
		ep_close(v, ep);
		return;
	}
	if (ep->kind == TSW_EP_ACQ)
		pause_if_needed(v, ep);
}

static void start_read(struct vworker *v, struct vep *ep)
{
	if (ep->reading || ep->closing || ep->paused || v->w->draining)
		return;
	if (uv_read_start((uv_stream_t *)&ep->tcp, alloc_cb, read_cb) == 0)
		ep->reading = true;
	else
		ep_close(v, ep);
}

static void free_handle(uv_handle_t *h)
{
	free(h);
}

static void on_connection(uv_stream_t *server, int status)
{
	struct vworker *v = server->data;
	struct vep *ep;
	uint32_t idx;
	int slot;

	if (status < 0)
		return;
	idx = v->free_head;
	if (idx == NO_EP) {
		/* no endpoint left (2x max_conns closing at once): accept and drop */
		uv_tcp_t *tmp = malloc(sizeof(*tmp));

		begin(v);
		tsw_engine_acq_refused(v->e);
		if (!tmp)
			return;
		uv_tcp_init(&v->loop, tmp);
		if (uv_accept(server, (uv_stream_t *)tmp) == 0)
			uv_tcp_close_reset(tmp, free_handle);
		else
			uv_close((uv_handle_t *)tmp, free_handle);
		return;
	}
	ep = &v->eps[idx];
	uv_tcp_init(&v->loop, &ep->tcp);
	ep->tcp.data = ep;
	ep->in_use = true;
	v->free_head = ep->next_free;
	if (uv_accept(server, (uv_stream_t *)&ep->tcp) < 0) {
		ep->closing = true;
		uv_close((uv_handle_t *)&ep->tcp, ep_closed);
		return;
	}
	begin(v);
	slot = tsw_engine_acq_open(v->e, io__now_ns());
	if (slot < 0 || (uint32_t)slot >= v->n_slots) {
		if (slot >= 0)
			tsw_engine_acq_close(v->e, (uint32_t)slot);
		ep->closing = true;
		uv_close((uv_handle_t *)&ep->tcp, ep_closed);
		return;
	}
	uv_tcp_nodelay(&ep->tcp, 1);
	{
		/* the acquirer's address is part of its identity (its
		 * reversals are matched by it) */
		struct sockaddr_storage ss;
		int len = sizeof(ss);

		if (uv_tcp_getpeername(&ep->tcp, (struct sockaddr *)&ss, &len) == 0)
			tsw_engine_acq_peer(v->e, (uint32_t)slot, (const struct sockaddr *)&ss,
					    (size_t)len);
	}
	ep->eslot = (uint32_t)slot;
	v->slot_ep[slot] = idx;
	start_read(v, ep);
}

static void on_connect(uv_connect_t *req, int status)
{
	struct vep *ep = req->data;
	struct vworker *v = ep->v;

	if (ep->closing)
		return;
	if (status < 0) {
		tsw_log(TSW_LOG_DEBUG, "issuer_connect_failed", "worker=%u link=%u error=\"%s\"",
			v->w->p.engine.worker_id, ep->eslot, uv_strerror(status));
		ep_close(v, ep);
		return;
	}
	begin(v);
	ep->link_up = true;
	tsw_log(TSW_LOG_INFO, "issuer_link_up", "worker=%u link=%u issuer=%u host=%s:%u",
		v->w->p.engine.worker_id, ep->eslot,
		v->w->p.engine.settings.hosts[ep->eslot].issuer,
		v->w->p.engine.settings.hosts[ep->eslot].addr.host,
		v->w->p.engine.settings.hosts[ep->eslot].addr.port);
	tsw_engine_link_up(v->e, ep->eslot, io__now_ns());
	start_read(v, ep);
}

static void connect_links(struct vworker *v, uint64_t now)
{
	for (uint32_t l = 0; l < v->n_links; l++) {
		struct vep *ep = &v->eps[l];

		if (ep->in_use || !tsw_engine_link_wants_connect(v->e, l, now))
			continue;
		uv_tcp_init(&v->loop, &ep->tcp);
		ep->tcp.data = ep;
		ep->conn.data = ep;
		ep->in_use = true;
		tsw_engine_link_connecting(v->e, l, now);
		if (uv_tcp_connect(&ep->conn, &ep->tcp, (struct sockaddr *)&v->w->link_addr[l],
				   on_connect) < 0) {
			ep_close(v, ep);
			continue;
		}
		uv_tcp_nodelay(&ep->tcp, 1);
	}
}

static void on_write(uv_write_t *req, int status)
{
	struct vep *ep = req->data;
	struct vworker *v = ep->v;
	struct tsw_endpoint tep = {.kind = ep->kind, .slot = ep->eslot};

	ep->writing = false;
	if (ep->kind == TSW_EP_ACQ)
		v->n_writing--;
	if (ep->closing)
		return; /* the engine slot may belong to someone else now */
	begin(v);
	tsw_engine_sent(v->e, tep, status < 0 ? ep->write_pre : ep->write_total);
	if (status < 0)
		ep_close(v, ep);
}

static uint32_t ep_of(struct vworker *v, struct tsw_endpoint tep)
{
	if (tep.kind == TSW_EP_LINK)
		return tep.slot < v->n_links ? tep.slot : NO_EP;
	return tep.slot < v->n_slots ? v->slot_ep[tep.slot] : NO_EP;
}

static void flush(struct vworker *v)
{
	struct tsw_endpoint tep;

	while (tsw_engine_next_dirty(v->e, &tep)) {
		uint32_t idx = ep_of(v, tep);
		const uint8_t *data;
		struct vep *ep;
		size_t len;
		uv_buf_t b;
		int n;

		if (idx == NO_EP)
			continue;
		ep = &v->eps[idx];
		if (!ep->in_use || ep->closing || ep->writing ||
		    (ep->kind == TSW_EP_LINK && !ep->link_up))
			continue;
		tsw_engine_out(v->e, tep, &data, &len);
		b = uv_buf_init((char *)data, (unsigned)len);
		n = uv_try_write((uv_stream_t *)&ep->tcp, &b, 1);
		if (n == (int)len) {
			tsw_engine_sent(v->e, tep, len);
			continue;
		}
		if (n < 0 && n != UV_EAGAIN) {
			tsw_engine_sent(v->e, tep, 0);
			ep_close(v, ep);
			continue;
		}
		if (n < 0)
			n = 0;
		/* the rest waits for the socket; the engine keeps the bytes still */
		b = uv_buf_init((char *)data + n, (unsigned)(len - (size_t)n));
		ep->wr.data = ep;
		ep->write_total = len;
		ep->write_pre = (size_t)n;
		if (uv_write(&ep->wr, (uv_stream_t *)&ep->tcp, &b, 1, on_write) < 0) {
			tsw_engine_sent(v->e, tep, (size_t)n);
			ep_close(v, ep);
			continue;
		}
		ep->writing = true;
		if (ep->kind == TSW_EP_ACQ)
			v->n_writing++;
	}
}

/* Reads again the connections the engine released (never while
 * draining: start_read). */
static void release_held(struct vworker *v)
{
	uint32_t slot;

	while (tsw_engine_next_release(v->e, &slot)) {
		struct vep *ep;

		if (slot >= v->n_slots || v->slot_ep[slot] == NO_EP)
			continue;
		ep = &v->eps[v->slot_ep[slot]];
		if (!ep->in_use || ep->closing || !ep->paused || tsw_engine_acq_hold(v->e, slot))
			continue;
		ep->paused = false;
		start_read(v, ep);
	}
}

static void start_drain(struct vworker *v)
{
	if (v->listener_open) {
		uv_close((uv_handle_t *)&v->listener, NULL);
		v->listener_open = false;
		v->w->p.listen_fd = -1;
	}
	for (uint32_t i = v->n_links; i < v->n_eps; i++) {
		struct vep *ep = &v->eps[i];

		if (ep->in_use && ep->reading) {
			uv_read_stop((uv_stream_t *)&ep->tcp);
			ep->reading = false;
		}
	}
}

static void on_mail(uv_poll_t *h, int status, int events)
{
	struct vworker *v = h->data;

	(void)status;
	(void)events;
	begin(v);
	if (io__worker_take_mail(v->w, io__now_ns()))
		start_drain(v);
}

static void on_timer(uv_timer_t *t)
{
	begin(t->data);
}

static void on_prepare(uv_prepare_t *p)
{
	struct vworker *v = p->data;
	struct tsw_io_worker *w = v->w;
	uint64_t now = io__now_ns(), wait;
	uint32_t slot;

	begin(v);
	if (tsw_engine_next_deadline(v->e) <= now)
		tsw_engine_tick(v->e, now);
	connect_links(v, now);
	while (tsw_engine_next_close(v->e, &slot))
		if (slot < v->n_slots && v->slot_ep[slot] != NO_EP)
			ep_close(v, &v->eps[v->slot_ep[slot]]);
	release_held(v);
	flush(v);
	io__worker_publish(w);
	io__worker_log_events(w);
	if (w->draining && tsw_engine_inflight(v->e) == 0 && v->n_writing == 0) {
		v->stop = true;
		uv_stop(&v->loop);
	} else if (w->draining && now >= w->drain_deadline_ns) {
		v->rc = -ETIMEDOUT;
		v->stop = true;
		uv_stop(&v->loop);
	}
	tsw_engine_loop_end(v->e);
	v->begun = false;
	wait = io__wait_ns(w, now, UINT64_MAX);
	/* round up: waking a little late is fine, spinning early is not */
	uv_timer_start(&v->timer, on_timer, (wait + NS_PER_MS_IO - 1) / NS_PER_MS_IO, 0);
}

static int setup(struct vworker *v)
{
	const struct tsw_config *c = &v->w->p.engine.settings;
	int r;

	v->n_links = tsw_engine_n_links(v->e);
	v->n_slots = c->max_conns;
	v->n_eps = v->n_links + 2 * c->max_conns;
	v->eps = calloc(v->n_eps, sizeof(*v->eps));
	v->slot_ep = malloc(sizeof(*v->slot_ep) * v->n_slots);
	v->rbuf_bytes = v->w->p.recv_buf_bytes;
	v->rbuf = malloc(v->rbuf_bytes);
	if (!v->eps || !v->slot_ep || !v->rbuf)
		return -ENOMEM;
	for (uint32_t i = 0; i < v->n_slots; i++)
		v->slot_ep[i] = NO_EP;
	v->free_head = NO_EP;
	for (uint32_t i = v->n_eps; i-- > 0;) {
		struct vep *ep = &v->eps[i];

		ep->v = v;
		ep->idx = i;
		ep->kind = i < v->n_links ? TSW_EP_LINK : TSW_EP_ACQ;
		ep->eslot = i;
		if (i >= v->n_links) {
			ep->next_free = v->free_head;
			v->free_head = i;
		}
	}
	r = uv_loop_init(&v->loop);
	if (r < 0)
		return r;
	v->loop_ok = true;
	uv_tcp_init(&v->loop, &v->listener);
	v->listener.data = v;
	r = uv_tcp_open(&v->listener, v->w->p.listen_fd);
	v->listener_open = true;
	if (r == 0) {
		v->w->p.listen_fd = -1; /* libuv owns it now */
		r = uv_listen((uv_stream_t *)&v->listener, (int)v->w->p.listen_backlog,
			      on_connection);
	}
	if (r < 0)
		return r;
	uv_poll_init(&v->loop, &v->mail, v->w->mail_fd);
	v->mail.data = v;
	uv_poll_start(&v->mail, UV_READABLE, on_mail);
	uv_timer_init(&v->loop, &v->timer);
	v->timer.data = v;
	uv_prepare_init(&v->loop, &v->prepare);
	v->prepare.data = v;
	uv_prepare_start(&v->prepare, on_prepare);
	return 0;
}

static void close_all(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

static void teardown(struct vworker *v)
{
	if (v->loop_ok) {
		uv_walk(&v->loop, close_all, NULL);
		uv_run(&v->loop, UV_RUN_DEFAULT);
		uv_loop_close(&v->loop);
	}
	free(v->eps);
	free(v->slot_ep);
	free(v->rbuf);
}

int io__uv_worker_run(struct tsw_io_worker *w)
{
	struct vworker *v;
	int r;

	v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->w = w;
	v->e = w->engine;
	r = setup(v);
	if (r < 0) {
		teardown(v);
		free(v);
		return r;
	}
	io__worker_started(w);
	while (!v->stop)
		uv_run(&v->loop, UV_RUN_DEFAULT);
	r = v->rc;
	if (v->begun)
		tsw_engine_loop_end(v->e);
	teardown(v);
	free(v);
	return r;
}
