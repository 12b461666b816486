#include "bench.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ring.h"
#include "tsw/error.h"

#define BENCH_SCAN_MAX_NS 100000000ull	 /* timeout scans at least every 100 ms */
#define BENCH_RRN_SPACE 1000000000000ull /* DE37 has 12 digits */

struct bslot {
	uint64_t t0_ns; /* intended (open loop) or actual (closed loop) send time */
	uint32_t stan;
	uint32_t uses;
	bool in_use, measured;
	bool card;    /* sent with a DE55: the answer's tag 91 is checked */
	uint32_t tok; /* index in the token list */
	struct bench_sent sent;
	struct tsw_hsm_arqc_input in; /* card: what the ARQC covered */
};

struct bconn {
	int fd;
	bool dead, recv_armed, sending, dirty;
	struct tsw_iso_framer fr;
	uint8_t *rbuf;
	struct outbuf pend, fly;
	size_t fly_off;
	struct bslot *slots;
	uint32_t *free_stack, n_free, cap;
	uint64_t next_t_ns; /* open loop: intended time of the next request */
};

struct bench {
	const struct bench_config *cfg;
	const struct tsw_iso_profile *p;
	const struct bench_tokens *toks;
	struct io_uring ring;
	bool ring_up;
	struct bconn *c;
	uint32_t n;
	uint32_t *dirty, n_dirty;
	size_t hdr;
	uint64_t rng, now_ns, start_ns, measure_ns, end_ns, interval_ns;
	uint64_t rrn, inflight;
	time_t de7_sec;
	char de7[10];
	char date[6]; /* YYMMDD, UTC: DE55 9A */
	struct bench_result *res;
	/* live line */
	struct hist live;
	uint64_t live_count, live_next_ns;
};

unsigned bench_rc_index(const char rc[2])
{
	unsigned v[2];

	for (int i = 0; i < 2; i++) {
		char ch = rc[i];

		if (ch >= '0' && ch <= '9')
			v[i] = (unsigned)(ch - '0');
		else if (ch >= 'A' && ch <= 'Z')
			v[i] = (unsigned)(ch - 'A') + 10;
		else if (ch >= 'a' && ch <= 'z')
			v[i] = (unsigned)(ch - 'a') + 10;
		else
			v[i] = 35; /* unprintable: counted as "ZZ" */
	}
	return v[0] * 36 + v[1];
}

void bench_rc_name(unsigned idx, char ret_rc[2])
{
	static const char digits[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

	ret_rc[0] = digits[(idx / 36) % 36];
	ret_rc[1] = digits[idx % 36];
}

static void mark_dirty(struct bench *b, uint32_t i)
{
	if (b->c[i].dirty)
		return;
	b->c[i].dirty = true;
	b->dirty[b->n_dirty++] = i;
}

static int arm_recv(struct bench *b, uint32_t i)
{
	struct bconn *c = &b->c[i];
	struct io_uring_sqe *sqe = ring_sqe(&b->ring);

	if (!sqe)
		return -EBUSY;
	io_uring_prep_recv(sqe, c->fd, c->rbuf, RING_RECV_BUF_BYTES, 0);
	io_uring_sqe_set_data64(sqe, ring_ud(RING_OP_RECV, i, 0));
	c->recv_armed = true;
	return 0;
}

static int send_fly(struct bench *b, uint32_t i)
{
	struct bconn *c = &b->c[i];
	struct io_uring_sqe *sqe = ring_sqe(&b->ring);

	if (!sqe)
		return -EBUSY;
	io_uring_prep_send(sqe, c->fd, c->fly.data + c->fly_off, c->fly.len - c->fly_off,
			   MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, ring_ud(RING_OP_SEND, i, 0));
	c->sending = true;
	return 0;
}

/* Frees slot s of c; its token may be sent again. */
static void free_slot(struct bench *b, struct bconn *c, uint32_t s)
{
	struct bslot *sl = &c->slots[s];

	if (b->cfg->cards)
		b->cfg->cards->c[sl->tok].busy = false;
	sl->in_use = false;
	c->free_stack[c->n_free++] = s;
}

/* A broken connection loses every request in flight on it. */
static void conn_fail(struct bench *b, uint32_t i)
{
	struct bconn *c = &b->c[i];

	if (c->dead)
		return;
	c->dead = true;
	b->res->conn_failures++;
	shutdown(c->fd, SHUT_RDWR);
	for (uint32_t s = 0; s < c->cap; s++) {
		if (!c->slots[s].in_use)
			continue;
		if (c->slots[s].measured)
			b->res->errors++;
		free_slot(b, c, s);
		b->inflight--;
	}
}

static void refresh_de7(struct bench *b)
{
	time_t now = time(NULL);
	struct tm tm;
	char buf[16];

	if (now == b->de7_sec)
		return;
	b->de7_sec = now;
	gmtime_r(&now, &tm);
	strftime(buf, sizeof(buf), "%m%d%H%M%S", &tm);
	memcpy(b->de7, buf, 10);
	/* 9A is YYMMDD: the last two digits of the year */
	snprintf(buf, sizeof(buf), "%02d", tm.tm_year % 100);
	memcpy(b->date, buf, 2);
	memcpy(b->date + 2, b->de7, 4);
}

/* A token to send: random, but never one whose card has a request in
 * flight (its next ATC must arrive after the last) or has used every ATC.
 * Returns -EAGAIN when BENCH_PICK_TRIES picks found none. */
static int pick_token(struct bench *b, uint32_t *ret)
{
	const struct bench_cards *cards = b->cfg->cards;

	for (unsigned k = 0; k < BENCH_PICK_TRIES; k++) {
		uint32_t i = (uint32_t)(ring_rand(&b->rng) % b->toks->n);
		const struct bench_card *c = cards ? &cards->c[i] : NULL;

		if (!c || !c->imk || (!c->busy && c->atc < BENCH_ATC_MAX)) {
			*ret = i;
			return 0;
		}
	}
	b->res->card_waits++;
	return -EAGAIN;
}

/* The card's fields of a request of token ti: DE55 with the next ATC
 * (5F34 on odd ATCs only, so the switch's use of the record's PSN is
 * exercised too) and DE52. The buffers back ctx until the request is
 * encoded. */
static int card_fields(struct bench *b, uint32_t ti, struct bench_req_ctx *ctx,
		       uint8_t de55[BENCH_DE55_MAX], uint8_t de52[TSW_HSM_PIN_BLOCK_MAX],
		       struct bslot *sl)
{
	struct bench_cards *cards = b->cfg->cards;
	const struct bench_token *t = &b->toks->t[ti];
	struct bench_card *c = &cards->c[ti];
	int n;

	if (c->imk) {
		struct bench_arqc_terms terms;
		uint16_t atc = (uint16_t)(c->atc + 1);

		bench_digits(ctx->amount, terms.amount, 12);
		memcpy(terms.currency, t->currency, 3);
		memcpy(terms.date, b->date, 6);
		terms.un = (uint32_t)ring_rand(&b->rng);
		n = bench_de55_build(cards->keys->s, c->imk, t, atc, atc % 2, &terms, de55,
				     &sl->in);
		if (n < 0)
			return n;
		ctx->de55 = de55;
		ctx->de55_len = (uint16_t)n;
		c->atc = atc;
	}
	if (c->zpk) {
		n = tsw_hsm_pin_form(cards->keys->s, c->zpk, t->token, t->token_len, cards->pin,
				     cards->pin_len, de52);
		if (n < 0)
			return n;
		ctx->de52 = de52;
		ctx->de52_len = (uint16_t)tsw_hsm_pin_block_len(c->zpk);
	}
	return 0;
}

/* Queues one request on connection i. Returns 0, -EAGAIN (no token may
 * be sent now: wait for answers) or an encode error. */
static int send_one(struct bench *b, uint32_t i, uint64_t t0)
{
	struct bconn *c = &b->c[i];
	const struct bench_token *t;
	struct bench_req_ctx ctx = {0};
	struct bslot *sl;
	enum bench_req_kind kind;
	uint8_t de55[BENCH_DE55_MAX], de52[TSW_HSM_PIN_BLOCK_MAX];
	uint32_t s, ti;
	uint8_t *out;
	int n;

	if (pick_token(b, &ti) < 0)
		return -EAGAIN;
	t = &b->toks->t[ti];
	out = outbuf_reserve(&c->pend, b->hdr + b->p->max_frame);
	if (!out)
		return -TSW_E_NO_SPACE;
	s = c->free_stack[c->n_free - 1];
	sl = &c->slots[s];
	ctx.stan = s + c->cap * (sl->uses % (BENCH_STAN_SPACE / c->cap));
	ctx.rrn = b->rrn = (b->rrn + 1) % BENCH_RRN_SPACE;
	memcpy(ctx.de7, b->de7, sizeof(ctx.de7));
	memcpy(ctx.terminal, "TOKBENCH", 8);
	kind = bench_request_pick(t, (enum bench_expect_mode)b->cfg->expect, b->cfg->decline_pct,
				  &b->rng);
	ctx.amount = bench_request_amount(t, kind, &b->rng);
	if (b->cfg->cards && (n = card_fields(b, ti, &ctx, de55, de52, sl)) < 0)
		return n;
	n = bench_request_build(b->p, t, kind, (enum bench_expect_mode)b->cfg->expect, &ctx,
				&b->rng, out + b->hdr, b->p->max_frame, &sl->sent);
	if (n < 0)
		return n;
	sl->tok = ti;
	sl->card = ctx.de55_len > 0;
	if (b->cfg->cards)
		b->cfg->cards->c[ti].busy = sl->card;
	tsw_iso_header_write(b->p, (size_t)n, out);
	outbuf_commit(&c->pend, b->hdr + (size_t)n);
	c->n_free--;
	sl->in_use = true;
	sl->uses++;
	sl->stan = ctx.stan;
	sl->t0_ns = t0;
	sl->measured = t0 >= b->measure_ns;
	b->inflight++;
	if (sl->measured) {
		b->res->sent++;
		b->res->kind_sent[kind]++;
		b->res->cryptograms += sl->card;
		b->res->pin_blocks += ctx.de52_len > 0;
	}
	mark_dirty(b, i);
	return 0;
}

static uint32_t parse_stan(const uint8_t *p, size_t len)
{
	uint32_t v = 0;

	for (size_t i = 0; i < len; i++) {
		if (p[i] < '0' || p[i] > '9')
			return UINT32_MAX;
		v = v * 10 + (uint32_t)(p[i] - '0');
	}
	return v;
}

/* Checks the tag 91 of an answer to a request sent with DE55: present, it
 * must be the ARPC of the ARQC sent (method 1 with the answer's DE39 as
 * ARC, or method 2 for CVN 18 with the CSU the switch sends); absent, it
 * is wrong on an approval through the switch (vault mode: the issuer
 * itself never adds one). Returns true when wrong; counts when measured. */
static bool tag91_wrong(struct bench *b, const struct bslot *sl, const struct tsw_iso_msg *m,
			const char rc[2])
{
	const struct bench_cards *cards = b->cfg->cards;
	const struct bench_token *t = &b->toks->t[sl->tok];
	struct tsw_hsm_arpc_params p = {.arc = {(uint8_t)rc[0], (uint8_t)rc[1]}};
	uint8_t want[TSW_HSM_ARPC_DATA_MAX];
	const uint8_t *v = NULL;
	bool approved = rc[0] == '0' && rc[1] == '0';
	size_t n = 0, wlen = 0;
	int found = 0;

	if (tsw_iso_has(m, 55))
		found = tsw_tlv_find(tsw_iso_ptr(m, 55), m->f[55].len, 0x91, &v, &n);
	if (found != 1) {
		bool wrong = approved && b->cfg->expect == BENCH_EXPECT_VAULT;

		b->res->tag91_missing += wrong && sl->measured;
		return wrong;
	}
	if (approved && sl->in.cvn == TSW_HSM_CVN_VISA_18)
		p.csu[1] = 0x80;
	if (tsw_hsm_arpc(cards->keys->s, cards->c[sl->tok].imk, t->token, t->token_len,
			 bench_card_psn(t), &sl->in, &p, want, &wlen) < 0 ||
	    wlen != n || memcmp(want, v, n) != 0) {
		b->res->tag91_bad += sl->measured;
		return true;
	}
	b->res->tag91 += sl->measured;
	return false;
}

static void on_answer(struct bench *b, uint32_t i, const uint8_t *body, size_t len)
{
	struct bconn *c = &b->c[i];
	struct bench_result *res = b->res;
	struct tsw_iso_msg m;
	struct bslot *sl;
	uint32_t stan, s;
	char rc[2] = {'?', '?'};
	bool wrong = false, leak = false;

	if (len == 0)
		return; /* keep-alive */
	if (tsw_iso_decode(b->p, body, len, &m) < 0) {
		res->errors++;
		return;
	}
	if (!tsw_iso_has(&m, 11) ||
	    (stan = parse_stan(tsw_iso_ptr(&m, 11), m.f[11].len)) >= BENCH_STAN_SPACE) {
		res->unmatched++;
		return;
	}
	s = stan % c->cap;
	sl = &c->slots[s];
	if (!sl->in_use || sl->stan != stan) {
		res->unmatched++;
		return;
	}
	if (tsw_iso_has(&m, 39) && m.f[39].len == 2)
		memcpy(rc, tsw_iso_ptr(&m, 39), 2);
	if (memcmp(m.mti, "0110", 4) != 0)
		wrong = true;
	if (tsw_iso_has(&m, 2) && (m.f[2].len != sl->sent.de2_len ||
				   memcmp(tsw_iso_ptr(&m, 2), sl->sent.de2, sl->sent.de2_len) != 0))
		leak = true;
	if (tsw_iso_has(&m, 35))
		leak = true;
	if (!bench_expect_match(&sl->sent.expect, rc))
		wrong = true;
	if (sl->card && tag91_wrong(b, sl, &m, rc))
		wrong = true;
	if (sl->measured) {
		uint64_t lat = b->now_ns > sl->t0_ns ? b->now_ns - sl->t0_ns : 0;

		res->count++;
		res->rc[bench_rc_index(rc)]++;
		hist_add(&res->lat, lat);
		hist_add(&b->live, lat);
		b->live_count++;
		if (wrong || leak)
			res->wrong++;
		if (leak)
			res->pan_leaks++;
	} else {
		res->warmup_count++;
	}
	free_slot(b, c, s);
	b->inflight--;
}

static void on_recv(struct bench *b, uint32_t i, int res)
{
	struct bconn *c = &b->c[i];
	const uint8_t *frame;
	size_t off = 0, flen;
	int r;

	c->recv_armed = false;
	if (c->dead)
		return;
	if (res <= 0) {
		conn_fail(b, i);
		return;
	}
	while ((r = tsw_iso_framer_next(&c->fr, c->rbuf, (size_t)res, &off, &frame, &flen)) == 1)
		on_answer(b, i, frame, flen);
	if (r < 0 || arm_recv(b, i) < 0) {
		b->res->errors++;
		conn_fail(b, i);
	}
}

static void on_send(struct bench *b, uint32_t i, int res)
{
	struct bconn *c = &b->c[i];

	c->sending = false;
	if (c->dead)
		return;
	if (res <= 0) {
		conn_fail(b, i);
		return;
	}
	c->fly_off += (size_t)res;
	if (c->fly_off < c->fly.len) {
		if (send_fly(b, i) < 0)
			conn_fail(b, i);
		return;
	}
	c->fly.len = 0;
	c->fly_off = 0;
	if (c->pend.len)
		mark_dirty(b, i);
}

static void scan_timeouts(struct bench *b)
{
	uint64_t limit = b->cfg->timeout_ms * 1000000ull;

	for (uint32_t i = 0; i < b->n; i++) {
		struct bconn *c = &b->c[i];

		if (c->n_free == c->cap)
			continue;
		for (uint32_t s = 0; s < c->cap; s++) {
			struct bslot *sl = &c->slots[s];

			if (!sl->in_use || b->now_ns < sl->t0_ns || b->now_ns - sl->t0_ns < limit)
				continue;
			if (sl->measured)
				b->res->timeouts++;
			free_slot(b, c, s);
			b->inflight--;
		}
	}
}

/* Queues what is due on every connection, then one send per connection. */
static int generate_and_flush(struct bench *b)
{
	bool open_loop = b->cfg->rate > 0;
	int r;

	for (uint32_t i = 0; i < b->n; i++) {
		struct bconn *c = &b->c[i];

		if (c->dead)
			continue;
		if (!open_loop) {
			if (b->now_ns >= b->end_ns)
				continue;
			while (c->n_free > 0) {
				r = send_one(b, i, b->now_ns);
				if (r == -EAGAIN)
					break;
				if (r < 0)
					return r;
			}
			continue;
		}
		while (c->next_t_ns <= b->now_ns && c->next_t_ns < b->end_ns && c->n_free > 0) {
			r = send_one(b, i, c->next_t_ns);
			if (r == -EAGAIN)
				break;
			if (r < 0)
				return r;
			c->next_t_ns += b->interval_ns;
		}
		if (c->next_t_ns <= b->now_ns) {
			uint64_t backlog = (b->now_ns - c->next_t_ns) / b->interval_ns + 1;

			if (backlog > b->res->backlog_max)
				b->res->backlog_max = backlog;
		}
	}
	for (uint32_t k = 0; k < b->n_dirty; k++) {
		uint32_t i = b->dirty[k];
		struct bconn *c = &b->c[i];
		struct outbuf t;

		c->dirty = false;
		if (c->dead || c->sending || !c->pend.len)
			continue;
		t = c->fly;
		c->fly = c->pend;
		c->pend = t;
		c->pend.len = 0;
		c->fly_off = 0;
		if (send_fly(b, i) < 0)
			conn_fail(b, i);
	}
	b->n_dirty = 0;
	return 0;
}

/* Open loop: every request intended before the end has been sent (a late
 * wake-up must not skip the last ones). */
static bool schedule_done(const struct bench *b)
{
	if (b->cfg->rate <= 0)
		return true;
	for (uint32_t i = 0; i < b->n; i++)
		if (!b->c[i].dead && b->c[i].next_t_ns < b->end_ns)
			return false;
	return true;
}

static void live_line(struct bench *b)
{
	const struct bench_result *res = b->res;
	double t = (double)(b->now_ns - b->start_ns) / 1e9;

	fprintf(stderr,
		"tokbench t=%.0fs%s answers/s=%llu p50=%.0fus p99=%.0fus inflight=%llu "
		"timeouts=%llu wrong=%llu errors=%llu\n",
		t, b->now_ns < b->measure_ns ? " (warmup)" : "", (unsigned long long)b->live_count,
		(double)hist_quantile(&b->live, 0.5) / 1e3,
		(double)hist_quantile(&b->live, 0.99) / 1e3, (unsigned long long)b->inflight,
		(unsigned long long)res->timeouts, (unsigned long long)res->wrong,
		(unsigned long long)res->errors);
	hist_reset(&b->live);
	b->live_count = 0;
}

static int connect_one(const struct sockaddr_in *to)
{
	int fd, one = 1, r;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (const struct sockaddr *)to, sizeof(*to)) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

static int bench_setup(struct bench *b)
{
	const struct bench_config *cfg = b->cfg;
	bool open_loop = cfg->rate > 0;
	uint32_t cap = open_loop ? cfg->max_inflight : cfg->depth;
	int r;

	b->hdr = tsw_iso_header_size(b->p);
	b->c = calloc(cfg->connections, sizeof(*b->c));
	b->dirty = calloc(cfg->connections, sizeof(*b->dirty));
	if (!b->c || !b->dirty)
		return -ENOMEM;
	for (uint32_t i = 0; i < cfg->connections; i++)
		b->c[i].fd = -1;
	b->n = cfg->connections;
	for (uint32_t i = 0; i < b->n; i++) {
		struct bconn *c = &b->c[i];

		c->cap = cap;
		c->slots = calloc(cap, sizeof(*c->slots));
		c->free_stack = calloc(cap, sizeof(*c->free_stack));
		c->rbuf = malloc(RING_RECV_BUF_BYTES);
		if (!c->slots || !c->free_stack || !c->rbuf)
			return -ENOMEM;
		for (uint32_t s = 0; s < cap; s++)
			c->free_stack[c->n_free++] = cap - 1 - s;
		c->pend.max = c->fly.max = RING_OUT_MAX_BYTES;
		r = tsw_iso_framer_init(&c->fr, b->p);
		if (r < 0)
			return r;
		c->fd = connect_one(&cfg->target);
		if (c->fd < 0)
			return c->fd;
	}
	r = ring_setup(&b->ring, RING_ENTRIES);
	if (r < 0)
		return r;
	b->ring_up = true;
	for (uint32_t i = 0; i < b->n; i++) {
		r = arm_recv(b, i);
		if (r < 0)
			return r;
	}
	return 0;
}

static void bench_teardown(struct bench *b)
{
	if (b->ring_up)
		io_uring_queue_exit(&b->ring);
	for (uint32_t i = 0; b->c && i < b->cfg->connections; i++) {
		struct bconn *c = &b->c[i];

		if (c->fd >= 0)
			close(c->fd);
		if (c->fr.acc)
			tsw_iso_framer_free(&c->fr);
		outbuf_free(&c->pend);
		outbuf_free(&c->fly);
		free(c->rbuf);
		free(c->slots);
		free(c->free_stack);
	}
	free(b->c);
	free(b->dirty);
}

int bench_run(const struct bench_config *cfg, const struct tsw_iso_profile *p,
	      const struct bench_tokens *toks, volatile sig_atomic_t *stop,
	      struct bench_result *ret)
{
	struct bench *b;
	uint64_t scan_ns, next_scan, stopped_ns = 0, drain_end;
	int r;

	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->cfg = cfg;
	b->p = p;
	b->toks = toks;
	b->res = ret;
	b->rng = cfg->seed ? cfg->seed : 1;
	hist_reset(&ret->lat);
	hist_reset(&b->live);
	r = bench_setup(b);
	if (r < 0) {
		bench_teardown(b);
		free(b);
		return r;
	}
	scan_ns = cfg->timeout_ms * 1000000ull / 8;
	if (scan_ns < BENCH_SCAN_MIN_NS)
		scan_ns = BENCH_SCAN_MIN_NS;
	if (scan_ns > BENCH_SCAN_MAX_NS)
		scan_ns = BENCH_SCAN_MAX_NS;
	b->now_ns = b->start_ns = ring_now_ns();
	b->measure_ns = b->start_ns + (uint64_t)(cfg->warmup_s * 1e9);
	b->end_ns = b->measure_ns + (uint64_t)(cfg->duration_s * 1e9);
	b->live_next_ns = b->start_ns + BENCH_LIVE_INTERVAL_NS;
	next_scan = b->start_ns + scan_ns;
	if (cfg->rate > 0) {
		b->interval_ns = (uint64_t)((double)cfg->connections * 1e9 / cfg->rate);
		if (b->interval_ns == 0)
			b->interval_ns = 1;
		for (uint32_t i = 0; i < b->n; i++)
			b->c[i].next_t_ns = b->start_ns + b->interval_ns * i / b->n;
	}
	refresh_de7(b);

	for (;;) {
		struct io_uring_cqe *cqe;
		uint64_t deadline;
		unsigned head, n = 0;

		if (*stop && b->end_ns > b->now_ns) {
			b->end_ns = b->now_ns;
			stopped_ns = b->now_ns;
		}
		if (b->now_ns >= b->end_ns && b->inflight == 0 && schedule_done(b))
			break;
		drain_end = b->end_ns + cfg->timeout_ms * 1000000ull + scan_ns;
		if (b->now_ns >= drain_end)
			break;
		r = generate_and_flush(b);
		if (r < 0)
			break;
		deadline = b->live_next_ns < next_scan ? b->live_next_ns : next_scan;
		if (b->now_ns < b->end_ns && b->end_ns < deadline)
			deadline = b->end_ns;
		if (cfg->rate > 0 && b->now_ns < b->end_ns)
			for (uint32_t i = 0; i < b->n; i++)
				if (b->c[i].n_free && !b->c[i].dead && b->c[i].next_t_ns < deadline)
					deadline = b->c[i].next_t_ns;
		r = ring_wait(&b->ring, deadline > b->now_ns ? deadline - b->now_ns : 1);
		if (r < 0 && r != -ETIME && r != -EINTR && r != -EAGAIN && r != -EBUSY)
			break;
		r = 0;
		b->now_ns = ring_now_ns();
		io_uring_for_each_cqe(&b->ring, head, cqe)
		{
			uint64_t ud = io_uring_cqe_get_data64(cqe);
			uint32_t i = ring_ud_slot(ud);

			if (ring_ud_op(ud) == RING_OP_RECV)
				on_recv(b, i, cqe->res);
			else if (ring_ud_op(ud) == RING_OP_SEND)
				on_send(b, i, cqe->res);
			n++;
		}
		io_uring_cq_advance(&b->ring, n);
		if (b->now_ns >= next_scan) {
			scan_timeouts(b);
			next_scan = b->now_ns + scan_ns;
		}
		if (b->now_ns >= b->live_next_ns) {
			if (cfg->live)
				live_line(b);
			else
				hist_reset(&b->live);
			b->live_count = 0;
			b->live_next_ns += BENCH_LIVE_INTERVAL_NS;
			refresh_de7(b);
		}
	}
	/* what is still in flight after the drain timed out */
	for (uint32_t i = 0; i < b->n; i++)
		for (uint32_t s = 0; s < b->c[i].cap; s++)
			if (b->c[i].slots[s].in_use && b->c[i].slots[s].measured)
				ret->timeouts++;
	{
		uint64_t until = stopped_ns ? stopped_ns : b->end_ns;

		ret->elapsed_s = until > b->measure_ns ? (double)(until - b->measure_ns) / 1e9 : 0;
	}
	bench_teardown(b);
	free(b);
	return r;
}
