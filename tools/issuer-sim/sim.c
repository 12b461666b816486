#include "sim.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "delay.h"
#include "ring.h"
#include "tsw/error.h"

struct sim_conn {
	int fd;
	uint32_t gen;
	bool used, recv_armed, sending, closing, dirty, close_when_flushed;
	uint64_t msgs;	  /* requests received */
	uint32_t delayed; /* answers waiting in the heap */
	struct tsw_iso_framer fr;
	uint8_t *rbuf;
	struct outbuf pend, fly; /* queued answers; the send in flight */
	size_t fly_off;
};

struct sim {
	const struct sim_config *cfg;
	struct tsw_iso_profile prof;
	size_t hdr;
	struct io_uring ring;
	int listen_fd;
	bool accept_armed;
	struct sim_conn *conns;
	uint32_t *free_slots, n_free;
	uint32_t *dirty, n_dirty;
	struct delay_heap heap;
	uint8_t *scratch; /* one framed answer, for the delay path */
	uint64_t rng, now_ns, auth_seq;
	struct sim_counts c;
	int fatal; /* -errno that ends the loop */
};

int sim_latency_parse(struct sim_config *cfg, const char *spec)
{
	char *end;
	double a, b;

	if (strncmp(spec, "uniform:", 8) == 0) {
		a = strtod(spec + 8, &end);
		if (*end != ':')
			return -TSW_E_BAD_INPUT;
		b = strtod(end + 1, &end);
		if (*end || a < 0 || b < a)
			return -TSW_E_BAD_INPUT;
		cfg->latency_kind = SIM_LAT_UNIFORM;
		cfg->latency_a_us = (uint64_t)a;
		cfg->latency_b_us = (uint64_t)b;
		return 0;
	}
	if (strncmp(spec, "exp:", 4) == 0) {
		a = strtod(spec + 4, &end);
		if (*end || end == spec + 4 || a < 0)
			return -TSW_E_BAD_INPUT;
		cfg->latency_kind = SIM_LAT_EXP;
		cfg->latency_a_us = (uint64_t)a;
		return 0;
	}
	a = strtod(spec, &end);
	if (*end || end == spec || a < 0)
		return -TSW_E_BAD_INPUT;
	cfg->latency_kind = SIM_LAT_FIXED;
	cfg->latency_a_us = (uint64_t)a;
	return 0;
}

void sim_config_init(struct sim_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->listen.sin_family = AF_INET;
	cfg->listen.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sim_rules_init(&cfg->rules);
	cfg->max_conns = SIM_MAX_CONNS_DEFAULT;
	cfg->max_delayed = SIM_MAX_DELAYED_DEFAULT;
	cfg->seed = 0x9E3779B97F4A7C15ull;
	cfg->profile = "default";
}

int sim_listen(const struct sim_config *cfg, struct sockaddr_in *ret_bound)
{
	struct sockaddr_in bound;
	socklen_t blen = sizeof(bound);
	int fd, one = 1, r;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		goto err_close;
	if (bind(fd, (const struct sockaddr *)&cfg->listen, sizeof(cfg->listen)) < 0)
		goto err_close;
	if (listen(fd, SIM_LISTEN_BACKLOG) < 0)
		goto err_close;
	if (getsockname(fd, (struct sockaddr *)&bound, &blen) < 0)
		goto err_close;
	*ret_bound = bound;
	return fd;

err_close:
	r = -errno;
	close(fd);
	return r;
}

static uint64_t sample_delay_ns(struct sim *s)
{
	const struct sim_config *cfg = s->cfg;
	double us = 0;

	switch ((enum sim_latency_kind)cfg->latency_kind) {
	case SIM_LAT_FIXED:
		us = (double)cfg->latency_a_us;
		break;
	case SIM_LAT_UNIFORM:
		us = (double)cfg->latency_a_us +
		     ring_rand_unit(&s->rng) * (double)(cfg->latency_b_us - cfg->latency_a_us);
		break;
	case SIM_LAT_EXP:
		us = -(double)cfg->latency_a_us * log1p(-ring_rand_unit(&s->rng));
		break;
	case SIM_LAT_MAX:
		break;
	}
	return (uint64_t)(us * 1000.0);
}

static void mark_dirty(struct sim *s, uint32_t slot)
{
	struct sim_conn *c = &s->conns[slot];

	if (c->dirty)
		return;
	c->dirty = true;
	s->dirty[s->n_dirty++] = slot;
}

static void arm_accept(struct sim *s)
{
	struct io_uring_sqe *sqe = ring_sqe(&s->ring);

	if (!sqe) {
		s->fatal = -EBUSY;
		return;
	}
	io_uring_prep_multishot_accept(sqe, s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, ring_ud(RING_OP_ACCEPT, 0, 0));
	s->accept_armed = true;
}

static void arm_recv(struct sim *s, uint32_t slot)
{
	struct sim_conn *c = &s->conns[slot];
	struct io_uring_sqe *sqe = ring_sqe(&s->ring);

	if (!sqe) {
		s->fatal = -EBUSY;
		return;
	}
	io_uring_prep_recv(sqe, c->fd, c->rbuf, RING_RECV_BUF_BYTES, 0);
	io_uring_sqe_set_data64(sqe, ring_ud(RING_OP_RECV, slot, c->gen));
	c->recv_armed = true;
}

static void send_fly(struct sim *s, uint32_t slot)
{
	struct sim_conn *c = &s->conns[slot];
	struct io_uring_sqe *sqe = ring_sqe(&s->ring);

	if (!sqe) {
		s->fatal = -EBUSY;
		return;
	}
	io_uring_prep_send(sqe, c->fd, c->fly.data + c->fly_off, c->fly.len - c->fly_off,
			   MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, ring_ud(RING_OP_SEND, slot, c->gen));
	c->sending = true;
}

static void conn_free(struct sim *s, uint32_t slot)
{
	struct sim_conn *c = &s->conns[slot];

	close(c->fd);
	tsw_iso_framer_free(&c->fr);
	outbuf_free(&c->pend);
	outbuf_free(&c->fly);
	free(c->rbuf);
	c->rbuf = NULL;
	c->used = false;
	c->gen = (c->gen + 1) & 0xffffffu;
	s->free_slots[s->n_free++] = slot;
}

/* Stops reading and writing; the slot is freed once no operation on it is
 * in flight (shutdown completes a pending recv). */
static void conn_close(struct sim *s, uint32_t slot)
{
	struct sim_conn *c = &s->conns[slot];

	if (!c->closing) {
		c->closing = true;
		shutdown(c->fd, SHUT_RDWR);
	}
	if (!c->recv_armed && !c->sending)
		conn_free(s, slot);
}

static void on_accept(struct sim *s, struct io_uring_cqe *cqe)
{
	struct sim_conn *c;
	uint32_t slot;
	int fd = cqe->res, one = 1;

	if (!(cqe->flags & IORING_CQE_F_MORE))
		s->accept_armed = false;
	if (fd < 0)
		return; /* -EMFILE, -ECONNABORTED: keep accepting */
	if (s->cfg->refuse || s->n_free == 0) {
		close(fd);
		s->c.refused++;
		return;
	}
	slot = s->free_slots[--s->n_free];
	c = &s->conns[slot];
	c->fd = fd;
	c->used = true;
	/* dirty stays as it is: a slot freed and reused within one iteration
	 * may still be on the dirty list */
	c->recv_armed = c->sending = c->closing = c->close_when_flushed = false;
	c->msgs = 0;
	c->delayed = 0;
	c->fly_off = 0;
	c->pend = (struct outbuf){.max = RING_OUT_MAX_BYTES};
	c->fly = (struct outbuf){.max = RING_OUT_MAX_BYTES};
	c->rbuf = malloc(RING_RECV_BUF_BYTES);
	if (!c->rbuf || tsw_iso_framer_init(&c->fr, &s->prof) < 0) {
		free(c->rbuf);
		c->rbuf = NULL;
		close(fd);
		c->used = false;
		s->free_slots[s->n_free++] = slot;
		s->c.refused++;
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	s->c.conns++;
	arm_recv(s, slot);
}

/* Answers one request body: immediately into the connection's queue, or
 * through the delay heap. */
static void on_frame(struct sim *s, uint32_t slot, const uint8_t *body, size_t len)
{
	const struct sim_config *cfg = s->cfg;
	struct sim_conn *c = &s->conns[slot];
	enum sim_verdict v = SIM_NO_ANSWER;
	uint64_t delay_ns;
	uint8_t *out;
	bool netmgmt;
	char rc[2];
	int n;

	if (len == 0)
		return; /* keep-alive */
	if (cfg->close_after && c->msgs >= cfg->close_after)
		return; /* closing: nothing more is answered */
	c->msgs++;
	if (cfg->close_after && c->msgs >= cfg->close_after) {
		c->close_when_flushed = true;
		mark_dirty(s, slot);
	}
	/* network management is never dropped or late: an echo tells a test
	 * (or a switch) that everything sent before it was processed */
	netmgmt = len >= 2 && body[0] == '0' && body[1] == '8';
	if (!netmgmt && cfg->drop_pct > 0 && ring_rand_unit(&s->rng) * 100.0 < cfg->drop_pct) {
		s->c.requests++;
		s->c.dropped++;
		return;
	}
	delay_ns = sample_delay_ns(s);
	if (!netmgmt && cfg->late_pct > 0 && ring_rand_unit(&s->rng) * 100.0 < cfg->late_pct) {
		delay_ns += cfg->late_ms * 1000000ull;
		s->c.late++;
	}
	out = delay_ns ? s->scratch : outbuf_reserve(&c->pend, s->hdr + s->prof.max_frame);
	if (!out) {
		s->c.requests++;
		s->c.overflow++;
		return;
	}
	n = sim_answer_build(&s->prof, &cfg->rules, cfg->pin, (uint32_t)++s->auth_seq, body, len,
			     out + s->hdr, s->prof.max_frame, &v, rc);
	if (n < 0) {
		s->c.malformed++;
		return;
	}
	s->c.requests++;
	if (v != SIM_ANSWER) {
		s->c.ignored++;
		return;
	}
	tsw_iso_header_write(&s->prof, (size_t)n, out);
	if (rc[0] != '0' || rc[1] != '0')
		s->c.declined++;
	if (delay_ns) {
		if (delay_push(&s->heap, s->now_ns + delay_ns, slot, c->gen, out,
			       (uint32_t)(s->hdr + (size_t)n)) < 0) {
			s->c.overflow++;
			return;
		}
		c->delayed++;
		return;
	}
	outbuf_commit(&c->pend, s->hdr + (size_t)n);
	s->c.answered++;
	mark_dirty(s, slot);
}

static void on_recv(struct sim *s, uint32_t slot, int res)
{
	struct sim_conn *c = &s->conns[slot];
	const uint8_t *frame;
	size_t off = 0, flen;
	int r;

	c->recv_armed = false;
	if (res <= 0 || c->closing) {
		conn_close(s, slot);
		return;
	}
	while ((r = tsw_iso_framer_next(&c->fr, c->rbuf, (size_t)res, &off, &frame, &flen)) == 1)
		on_frame(s, slot, frame, flen);
	if (r < 0) {
		s->c.malformed++;
		conn_close(s, slot);
		return;
	}
	arm_recv(s, slot);
}

static void on_send(struct sim *s, uint32_t slot, int res)
{
	struct sim_conn *c = &s->conns[slot];

	c->sending = false;
	if (res <= 0 || c->closing) {
		conn_close(s, slot);
		return;
	}
	c->fly_off += (size_t)res;
	if (c->fly_off < c->fly.len) {
		send_fly(s, slot);
		return;
	}
	c->fly.len = 0;
	c->fly_off = 0;
	if (c->pend.len || c->close_when_flushed)
		mark_dirty(s, slot);
}

static void on_cqe(struct sim *s, struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	uint32_t slot = ring_ud_slot(ud);

	if (ring_ud_op(ud) == RING_OP_ACCEPT) {
		on_accept(s, cqe);
		return;
	}
	if (slot >= s->cfg->max_conns || !s->conns[slot].used ||
	    s->conns[slot].gen != ring_ud_gen(ud))
		return;
	if (ring_ud_op(ud) == RING_OP_RECV)
		on_recv(s, slot, cqe->res);
	else if (ring_ud_op(ud) == RING_OP_SEND)
		on_send(s, slot, cqe->res);
}

static void release_due(struct sim *s)
{
	struct delayed d;

	while (delay_next_ns(&s->heap) <= s->now_ns && delay_pop(&s->heap, &d)) {
		struct sim_conn *c = &s->conns[d.slot];
		uint8_t *out;

		if (c->used && c->gen == d.gen && !c->closing) {
			c->delayed--;
			out = outbuf_reserve(&c->pend, d.len);
			if (out) {
				memcpy(out, d.data, d.len);
				outbuf_commit(&c->pend, d.len);
				s->c.answered++;
			} else {
				s->c.overflow++;
			}
			mark_dirty(s, d.slot);
		}
		free(d.data);
	}
}

/* One send per connection per loop iteration, carrying every answer
 * queued for it. */
static void flush(struct sim *s)
{
	for (uint32_t i = 0; i < s->n_dirty; i++) {
		uint32_t slot = s->dirty[i];
		struct sim_conn *c = &s->conns[slot];
		struct outbuf t;

		c->dirty = false;
		if (!c->used || c->closing || c->sending)
			continue;
		if (c->pend.len) {
			t = c->fly;
			c->fly = c->pend;
			c->pend = t;
			c->pend.len = 0;
			c->fly_off = 0;
			send_fly(s, slot);
		} else if (c->close_when_flushed && c->delayed == 0) {
			s->c.closed_after++;
			conn_close(s, slot);
		}
	}
	s->n_dirty = 0;
}

static int sim_init(struct sim *s, const struct sim_config *cfg, int listen_fd)
{
	int r;

	memset(s, 0, sizeof(*s));
	s->cfg = cfg;
	s->listen_fd = listen_fd;
	s->rng = cfg->seed ? cfg->seed : 1;
	s->heap.max = cfg->max_delayed;
	r = tsw_iso_profile_load_spec(cfg->profile, &s->prof);
	if (r < 0)
		return r;
	s->hdr = tsw_iso_header_size(&s->prof);
	s->conns = calloc(cfg->max_conns, sizeof(*s->conns));
	s->free_slots = calloc(cfg->max_conns, sizeof(*s->free_slots));
	s->dirty = calloc(cfg->max_conns, sizeof(*s->dirty));
	s->scratch = malloc(s->hdr + s->prof.max_frame);
	if (!s->conns || !s->free_slots || !s->dirty || !s->scratch)
		return -ENOMEM;
	for (uint32_t i = 0; i < cfg->max_conns; i++)
		s->free_slots[s->n_free++] = cfg->max_conns - 1 - i;
	r = ring_setup(&s->ring, RING_ENTRIES);
	if (r < 0)
		return r;
	return 0;
}

static void sim_destroy(struct sim *s, bool ring_up)
{
	/* the ring first: exiting it cancels the recvs that write into the
	 * connection buffers freed below */
	if (ring_up)
		io_uring_queue_exit(&s->ring);
	if (s->conns)
		for (uint32_t i = 0; i < s->cfg->max_conns; i++)
			if (s->conns[i].used)
				conn_free(s, i);
	delay_free(&s->heap);
	free(s->conns);
	free(s->free_slots);
	free(s->dirty);
	free(s->scratch);
	close(s->listen_fd);
}

int sim_run(const struct sim_config *cfg, int listen_fd, volatile sig_atomic_t *stop,
	    struct sim_counts *ret_counts)
{
	struct sim s;
	int r;

	r = sim_init(&s, cfg, listen_fd);
	if (r < 0) {
		sim_destroy(&s, false);
		return r;
	}
	while (!*stop && !s.fatal) {
		struct io_uring_cqe *cqe;
		uint64_t next, wait_ns = SIM_IDLE_WAIT_NS;
		unsigned head, n = 0;

		if (!s.accept_armed)
			arm_accept(&s);
		next = delay_next_ns(&s.heap);
		if (next != UINT64_MAX)
			wait_ns = next <= s.now_ns ? 1 : next - s.now_ns;
		if (wait_ns > SIM_IDLE_WAIT_NS)
			wait_ns = SIM_IDLE_WAIT_NS;
		r = ring_wait(&s.ring, wait_ns);
		if (r < 0 && r != -ETIME && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
			s.fatal = r;
			break;
		}
		s.now_ns = ring_now_ns();
		io_uring_for_each_cqe(&s.ring, head, cqe)
		{
			on_cqe(&s, cqe);
			n++;
		}
		io_uring_cq_advance(&s.ring, n);
		release_due(&s);
		flush(&s);
	}
	r = s.fatal;
	*ret_counts = s.c;
	sim_destroy(&s, true);
	return r;
}
