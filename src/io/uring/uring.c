/* The io_uring backend: one ring per worker (SINGLE_ISSUER|DEFER_TASKRUN
 * when the kernel has them, else COOP_TASKRUN), multishot accept on the
 * worker's SO_REUSEPORT listener, multishot recv into a provided-buffer
 * ring registered here, sockets in a registered file table, input that
 * arrived during a busy batch collected before the sends, one send per
 * dirty endpoint per iteration, batched submit-and-wait with the engine's
 * next deadline as the wait's timeout argument (no timeout SQE).
 *
 * user_data packs op | generation | endpoint index. An endpoint is freed
 * only after its last in-flight operation completed.
 */
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../worker_int.h"
#include "tsw/error.h"
#include "tsw/log.h"

#define BGID 1	     /* receive buffers of acquirer connections */
#define BGID_LINK 2 /* receive buffers of issuer links, never held */
/* Issuer links get their own buffers, a quarter as many as the acquirer
 * side (at least this many): paused acquirer connections may hold every
 * acquirer buffer, and the issuer answers that resume them must still
 * get in. */
#define LINK_BUFS_MIN 8u
#define CQ_PER_SQ 4 /* multishot operations post many completions per submission */
/* collect_late(): rounds per iteration, and receives that make a batch busy */
#define TSW_IO_URING_LATE_ROUNDS 4u
#define TSW_IO_URING_LATE_MIN_RECVS 2u

enum op { OP_NONE, OP_ACCEPT, OP_RECV, OP_SEND, OP_CONNECT, OP_CANCEL, OP_MAIL, OP_MAX };

#define UD(op, gen, idx)                                                                           \
	((uint64_t)(op) << 56 | ((uint64_t)(gen)&0xffffffu) << 32 | (uint64_t)(idx))
#define UD_OP(ud) ((unsigned)((ud) >> 56))
#define UD_GEN(ud) ((uint32_t)(((ud) >> 32) & 0xffffffu))
#define UD_IDX(ud) ((uint32_t)(ud))
#define NO_EP UINT32_MAX

struct uep {
	int fd;
	uint32_t gen;
	uint32_t eslot; /* engine acquirer slot, or link index */
	uint32_t refs;	/* operations in flight */
	uint32_t next_free;
	uint8_t kind; /* enum tsw_endpoint_kind */
	bool in_use;
	bool recv_armed;
	bool recv_cancelling;
	bool sending;
	bool closing;
	bool paused; /* recv stopped for back-pressure or drain */
	bool link_up;
	bool fixed; /* fd also in the ring's file table at the endpoint's index */
	bool want_recv; /* arm_recv found no SQE: retried next iteration */
	/* received buffers held on the engine's word (tsw_engine_acq_hold; a
	 * multishot recv posts completions until its cancel lands): a FIFO of
	 * buffer ids linked through uworker.held_next, released in order on
	 * the engine's word (tsw_engine_next_release) */
	uint32_t held_head, held_tail;
	uint32_t n_held;
};

struct uworker {
	struct tsw_io_worker *w;
	struct tsw_engine *e;
	struct io_uring ring;
	bool ring_ok;
	struct io_uring_buf_ring *br;	   /* BGID: buffer ids [0, nbufs) */
	struct io_uring_buf_ring *br_link; /* BGID_LINK: ids [nbufs, nbufs + nbufs_link) */
	size_t br_bytes, br_link_bytes;
	uint8_t *bufs; /* both groups' buffers, by id */
	size_t bufs_bytes;
	uint32_t nbufs, nbufs_link, buf_bytes;
	bool br_registered, br_link_registered;
	uint32_t *held_next; /* per buffer id: the next held buffer of its endpoint */
	uint32_t *held_len;  /* per buffer id: bytes received into it */
	uint32_t n_held;     /* buffers held by all endpoints */

	struct uep *eps; /* links at [0, n_links), connections after */
	uint32_t n_links, n_eps;
	bool fixed_files; /* a sparse file table of n_eps entries is registered */
	uint32_t free_head;
	uint32_t *slot_ep; /* engine acquirer slot -> endpoint index */
	uint32_t n_slots;
	uint32_t n_sending;
	uint32_t n_want_recv; /* endpoints with want_recv set */

	int listen_fd;
	bool accept_armed;
	uint64_t accept_retry_ns;
	uint64_t accept_log_ns;
	uint64_t mail_val;
	bool mail_armed;
	bool mail_pending;
};

static struct io_uring_sqe *get_sqe(struct uworker *u)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);

	if (!sqe) {
		/* the SQ is full: submit what is there, then retry once. Never
		 * loop: -EBUSY means the CQ is full, and it only drains once
		 * this iteration's CQEs are consumed (io_uring_cq_advance).
		 * NULL: the caller leaves its work to the next iteration. */
		if (io_uring_submit(&u->ring) < 0)
			return NULL;
		sqe = io_uring_get_sqe(&u->ring);
	}
	return sqe;
}

/* True when an SQE can be had now (submitting a full SQ once). */
static bool sq_room(struct uworker *u)
{
	if (io_uring_sq_space_left(&u->ring))
		return true;
	if (io_uring_submit(&u->ring) < 0)
		return false;
	return io_uring_sq_space_left(&u->ring) > 0;
}

/* Registered files spare every recv and send the file lookup and its
 * reference count; one io_uring_register call per connection open and
 * close pays for it. Without the table (an old kernel) or when an update
 * fails, the endpoint just uses its plain fd. */
static void ep_files_set(struct uworker *u, uint32_t idx, int fd)
{
	struct uep *ep = &u->eps[idx];

	ep->fixed = u->fixed_files && io_uring_register_files_update(&u->ring, idx, &fd, 1) == 1;
}

static void ep_files_clear(struct uworker *u, uint32_t idx)
{
	int none = -1;

	if (!u->eps[idx].fixed)
		return;
	/* the table holds its own reference: the socket closes only once
	 * the slot is cleared (nothing is in flight on it any more) */
	if (io_uring_register_files_update(&u->ring, idx, &none, 1) != 1)
		tsw_log(TSW_LOG_ERROR, "io_uring_files_update_failed", "worker=%u slot=%u",
			u->w->p.engine.worker_id, idx);
	u->eps[idx].fixed = false;
}

/* Points a prepared SQE at the endpoint's registered file when it has one. */
static void sqe_use_ep(struct io_uring_sqe *sqe, const struct uep *ep, uint32_t idx)
{
	if (!ep->fixed)
		return;
	sqe->fd = (int)idx;
	sqe->flags |= IOSQE_FIXED_FILE;
}

static void arm_accept(struct uworker *u)
{
	struct io_uring_sqe *sqe;

	if (u->accept_armed || u->listen_fd < 0)
		return;
	sqe = get_sqe(u);
	if (!sqe)
		return;
	io_uring_prep_multishot_accept(sqe, u->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, UD(OP_ACCEPT, 0, 0));
	u->accept_armed = true;
}

static void arm_mail(struct uworker *u)
{
	struct io_uring_sqe *sqe = get_sqe(u);

	if (!sqe)
		return;
	io_uring_prep_read(sqe, u->w->mail_fd, &u->mail_val, sizeof(u->mail_val), 0);
	io_uring_sqe_set_data64(sqe, UD(OP_MAIL, 0, 0));
	u->mail_armed = true;
}

static void arm_recv(struct uworker *u, uint32_t idx)
{
	struct uep *ep = &u->eps[idx];
	struct io_uring_sqe *sqe;

	if (ep->recv_armed || ep->closing || ep->paused)
		return;
	sqe = get_sqe(u);
	if (!sqe) {
		if (!ep->want_recv) {
			ep->want_recv = true;
			u->n_want_recv++;
		}
		return;
	}
	if (ep->want_recv) {
		ep->want_recv = false;
		u->n_want_recv--;
	}
	io_uring_prep_recv_multishot(sqe, ep->fd, NULL, 0, 0);
	sqe_use_ep(sqe, ep, idx);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = ep->kind == TSW_EP_ACQ ? BGID : BGID_LINK;
	io_uring_sqe_set_data64(sqe, UD(OP_RECV, ep->gen, idx));
	ep->recv_armed = true;
	ep->refs++;
}

static void cancel_recv(struct uworker *u, uint32_t idx)
{
	struct uep *ep = &u->eps[idx];
	struct io_uring_sqe *sqe;

	if (!ep->recv_armed || ep->recv_cancelling)
		return;
	sqe = get_sqe(u);
	if (!sqe)
		return;
	io_uring_prep_cancel64(sqe, UD(OP_RECV, ep->gen, idx), 0);
	io_uring_sqe_set_data64(sqe, UD(OP_CANCEL, 0, 0));
	ep->recv_cancelling = true;
}

static void recycle_buf(struct uworker *u, unsigned bid)
{
	bool link = bid >= u->nbufs;
	struct io_uring_buf_ring *br = link ? u->br_link : u->br;

	io_uring_buf_ring_add(br, u->bufs + (size_t)bid * u->buf_bytes, u->buf_bytes,
			      (unsigned short)bid,
			      io_uring_buf_ring_mask(link ? u->nbufs_link : u->nbufs), 0);
	io_uring_buf_ring_advance(br, 1);
}

static void held_gauge(struct uworker *u)
{
	if (u->w->p.metrics)
		TSW_GAUGE_SET(u->w->p.metrics->recv_bufs_held, u->n_held);
}

/* Keeps a received buffer out of the buffer ring, queued on the endpoint
 * in arrival order. Bounded by the ring's buffer count. */
static void hold_buf(struct uworker *u, uint32_t idx, unsigned bid, uint32_t len)
{
	struct uep *ep = &u->eps[idx];

	u->held_next[bid] = NO_EP;
	u->held_len[bid] = len;
	if (ep->n_held)
		u->held_next[ep->held_tail] = bid;
	else
		ep->held_head = bid;
	ep->held_tail = bid;
	ep->n_held++;
	u->n_held++;
	held_gauge(u);
}

/* Takes the oldest held buffer of the endpoint off its queue (n_held > 0). */
static unsigned unhold_buf(struct uworker *u, uint32_t idx)
{
	struct uep *ep = &u->eps[idx];
	unsigned bid = ep->held_head;

	ep->held_head = u->held_next[bid];
	ep->n_held--;
	u->n_held--;
	held_gauge(u);
	return bid;
}

/* Gives every held buffer of the endpoint back to the ring (on close). */
static void drop_held(struct uworker *u, uint32_t idx)
{
	while (u->eps[idx].n_held)
		recycle_buf(u, unhold_buf(u, idx));
}

static uint32_t ep_alloc(struct uworker *u)
{
	uint32_t idx = u->free_head;

	if (idx == NO_EP)
		return NO_EP;
	u->free_head = u->eps[idx].next_free;
	return idx;
}

/* Gives back an endpoint ep_alloc() handed out that was never used. */
static void ep_unalloc(struct uworker *u, uint32_t idx)
{
	u->eps[idx].next_free = u->free_head;
	u->free_head = idx;
}

/* Releases the endpoint once nothing refers to it any more. */
static void ep_put(struct uworker *u, uint32_t idx)
{
	struct uep *ep = &u->eps[idx];

	if (!ep->closing || ep->refs)
		return;
	ep_files_clear(u, idx);
	close(ep->fd);
	ep->fd = -1;
	ep->in_use = false;
	ep->closing = false;
	ep->recv_cancelling = false;
	ep->paused = false;
	ep->gen++;
	if (ep->kind == TSW_EP_ACQ) {
		ep->next_free = u->free_head;
		u->free_head = idx;
	}
}

static void ep_close(struct uworker *u, uint32_t idx, uint64_t now_ns)
{
	struct uep *ep = &u->eps[idx];

	if (!ep->in_use || ep->closing)
		return;
	ep->closing = true;
	drop_held(u, idx);
	if (ep->kind == TSW_EP_ACQ) {
		tsw_engine_acq_close(u->e, ep->eslot);
		if (ep->eslot < u->n_slots)
			u->slot_ep[ep->eslot] = NO_EP;
	} else {
		if (ep->link_up)
			tsw_log(TSW_LOG_WARN, "issuer_link_down",
				"worker=%u link=%u issuer=%u host=%s:%u", u->w->p.engine.worker_id,
				ep->eslot, u->w->p.engine.settings.hosts[ep->eslot].issuer,
				u->w->p.engine.settings.hosts[ep->eslot].addr.host,
				u->w->p.engine.settings.hosts[ep->eslot].addr.port);
		ep->link_up = false;
		tsw_engine_link_down(u->e, ep->eslot, now_ns);
	}
	if (ep->recv_armed)
		cancel_recv(u, idx);
	/* wakes a pending recv (0) and fails a pending send */
	shutdown(ep->fd, SHUT_RDWR);
	ep_put(u, idx);
}

/* The acquirer's address is part of its identity (its reversals are
 * matched by it): one getpeername per accepted connection. */
static void set_peer(struct tsw_engine *e, uint32_t slot, int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0)
		tsw_engine_acq_peer(e, slot, (const struct sockaddr *)&ss, len);
}

static void set_nodelay(int fd)
{
	int one = 1;

	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void on_accept(struct uworker *u, struct io_uring_cqe *cqe, uint64_t now_ns)
{
	uint32_t idx;
	int fd = cqe->res, slot;

	if (!(cqe->flags & IORING_CQE_F_MORE))
		u->accept_armed = false;
	if (fd < 0) {
		if (fd == -ECANCELED || fd == -EINTR || fd == -EAGAIN || fd == -ECONNABORTED)
			return;
		/* EMFILE, ENFILE, ENOMEM: wait before accepting again */
		if (now_ns >= u->accept_log_ns) {
			tsw_log(TSW_LOG_CRIT, "accept_failed", "worker=%u error=\"%s\"",
				u->w->p.engine.worker_id, tsw_strerror(fd));
			u->accept_log_ns = now_ns + TSW_IO_ACCEPT_LOG_MS * NS_PER_MS_IO;
		}
		if (!u->accept_armed)
			u->accept_retry_ns = now_ns + TSW_IO_ACCEPT_RETRY_MS * NS_PER_MS_IO;
		return;
	}
	if (u->w->draining) {
		close(fd);
		return;
	}
	idx = ep_alloc(u);
	if (idx == NO_EP) {
		/* no endpoint left (closed ones not yet reaped): refused as at
		 * max_conns, counted and reported by the engine */
		tsw_engine_acq_refused(u->e);
		close(fd);
		return;
	}
	slot = tsw_engine_acq_open(u->e, now_ns);
	if (slot < 0 || (uint32_t)slot >= u->n_slots) {
		if (slot >= 0)
			tsw_engine_acq_close(u->e, (uint32_t)slot);
		ep_unalloc(u, idx);
		close(fd); /* max_conns: counted by the engine */
		return;
	}
	set_nodelay(fd);
	set_peer(u->e, (uint32_t)slot, fd);
	struct uep *ep = &u->eps[idx];

	ep->fd = fd;
	ep->kind = TSW_EP_ACQ;
	ep->eslot = (uint32_t)slot;
	ep->in_use = true;
	ep->refs = 0;
	u->slot_ep[slot] = idx;
	ep_files_set(u, idx, fd);
	arm_recv(u, idx);
}

/* The engine holds the connection's input: recv stops until it releases
 * it (release_held). */
static void pause_if_needed(struct uworker *u, uint32_t idx)
{
	struct uep *ep = &u->eps[idx];

	if (ep->paused || ep->closing || !tsw_engine_acq_hold(u->e, ep->eslot))
		return;
	ep->paused = true;
	cancel_recv(u, idx);
}

/* Feeds the endpoint's held buffers to the engine in order while it does
 * not hold its input, recycling each: the engine consumes a buffer whole
 * when it does not hold (what it cannot process yet goes to its stash,
 * which is empty then and holds a receive buffer). Returns 0 or the
 * engine's error (the caller closes). */
static int feed_held(struct uworker *u, uint32_t idx, uint64_t now_ns)
{
	struct uep *ep = &u->eps[idx];

	while (ep->n_held && !ep->closing && !tsw_engine_acq_hold(u->e, ep->eslot)) {
		unsigned bid = unhold_buf(u, idx);
		int r = tsw_engine_acq_input(u->e, ep->eslot, u->bufs + (size_t)bid * u->buf_bytes,
					     u->held_len[bid], now_ns);

		recycle_buf(u, bid);
		if (r < 0)
			return r;
	}
	return 0;
}

static void take_mail(struct uworker *u, uint64_t now_ns);

static void on_recv(struct uworker *u, uint32_t idx, struct io_uring_cqe *cqe, uint64_t now_ns)
{
	struct uep *ep = &u->eps[idx];
	bool more = cqe->flags & IORING_CQE_F_MORE;
	int r = 0;

	if (cqe->res > 0 && (cqe->flags & IORING_CQE_F_BUFFER)) {
		unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
		const uint8_t *data = u->bufs + (size_t)bid * u->buf_bytes;

		if (io_worker_mail_waiting(u->w))
			take_mail(u, now_ns);
		if (ep->closing) {
			if (ep->kind != TSW_EP_ACQ)
				explicit_bzero(u->bufs + (size_t)bid * u->buf_bytes,
					       (size_t)cqe->res);
			recycle_buf(u, bid);
		} else if (ep->kind == TSW_EP_ACQ &&
			   (ep->n_held || tsw_engine_acq_hold(u->e, ep->eslot))) {
			/* back-pressure: the engine's stash may not hold it;
			 * keep the buffer until the engine releases it */
			hold_buf(u, idx, bid, (uint32_t)cqe->res);
		} else {
			if (ep->kind == TSW_EP_ACQ)
				r = tsw_engine_acq_input(u->e, ep->eslot, data, (size_t)cqe->res,
							 now_ns);
			else
				r = tsw_engine_link_input(u->e, ep->eslot, data, (size_t)cqe->res,
							  now_ns);
			/* an issuer's bytes carry the PAN: none stays in a
			 * buffer the ring hands out again */
			if (ep->kind != TSW_EP_ACQ)
				explicit_bzero(u->bufs + (size_t)bid * u->buf_bytes,
					       (size_t)cqe->res);
			recycle_buf(u, bid);
		}
	}
	if (!more) {
		ep->recv_armed = false;
		ep->recv_cancelling = false;
		ep->refs--;
	}
	if (r < 0 || cqe->res == 0 ||
	    (cqe->res < 0 && cqe->res != -ENOBUFS && cqe->res != -ECANCELED)) {
		ep_close(u, idx, now_ns);
	} else if (!ep->closing) {
		if (ep->kind == TSW_EP_ACQ)
			pause_if_needed(u, idx);
		if (!more)
			arm_recv(u, idx); /* ENOBUFS or a finished multishot: re-arm */
	}
	ep_put(u, idx);
}

static void on_send(struct uworker *u, uint32_t idx, struct io_uring_cqe *cqe, uint64_t now_ns)
{
	struct uep *ep = &u->eps[idx];
	struct tsw_endpoint tep = {.kind = ep->kind, .slot = ep->eslot};

	ep->refs--;
	ep->sending = false;
	if (ep->kind == TSW_EP_ACQ)
		u->n_sending--;
	if (!ep->closing) {
		/* after close the engine slot may belong to someone else */
		tsw_engine_sent(u->e, tep, cqe->res > 0 ? (size_t)cqe->res : 0);
		if (cqe->res < 0)
			ep_close(u, idx, now_ns);
	}
	ep_put(u, idx);
}

static void on_connect(struct uworker *u, uint32_t idx, struct io_uring_cqe *cqe, uint64_t now_ns)
{
	struct uep *ep = &u->eps[idx];

	ep->refs--;
	if (cqe->res < 0) {
		tsw_log(TSW_LOG_DEBUG, "issuer_connect_failed", "worker=%u link=%u error=\"%s\"",
			u->w->p.engine.worker_id, idx, tsw_strerror(cqe->res));
		ep_close(u, idx, now_ns);
		ep_put(u, idx);
		return;
	}
	if (ep->closing) {
		ep_put(u, idx);
		return;
	}
	ep->link_up = true;
	tsw_log(TSW_LOG_INFO, "issuer_link_up", "worker=%u link=%u issuer=%u host=%s:%u",
		u->w->p.engine.worker_id, idx, u->w->p.engine.settings.hosts[idx].issuer,
		u->w->p.engine.settings.hosts[idx].addr.host,
		u->w->p.engine.settings.hosts[idx].addr.port);
	tsw_engine_link_up(u->e, ep->eslot, now_ns);
	arm_recv(u, idx);
}

static void connect_links(struct uworker *u, uint64_t now_ns)
{
	struct io_uring_sqe *sqe;

	for (uint32_t l = 0; l < u->n_links; l++) {
		struct uep *ep = &u->eps[l];
		int fd;

		if (ep->in_use || !tsw_engine_link_wants_connect(u->e, l, now_ns))
			continue;
		fd = socket(u->w->link_addr[l].ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			tsw_engine_link_connecting(u->e, l, now_ns);
			tsw_engine_link_down(u->e, l, now_ns);
			continue;
		}
		set_nodelay(fd);
		sqe = get_sqe(u);
		if (!sqe) {
			close(fd);
			continue;
		}
		ep->fd = fd;
		ep->in_use = true;
		ep->kind = TSW_EP_LINK;
		ep->eslot = l;
		ep_files_set(u, l, fd);
		io_uring_prep_connect(sqe, fd, (struct sockaddr *)&u->w->link_addr[l],
				      u->w->link_addrlen[l]);
		sqe_use_ep(sqe, ep, l);
		io_uring_sqe_set_data64(sqe, UD(OP_CONNECT, ep->gen, l));
		ep->refs++;
		tsw_engine_link_connecting(u->e, l, now_ns);
	}
}

static uint32_t ep_of(struct uworker *u, struct tsw_endpoint tep)
{
	if (tep.kind == TSW_EP_LINK)
		return tep.slot < u->n_links ? tep.slot : NO_EP;
	return tep.slot < u->n_slots ? u->slot_ep[tep.slot] : NO_EP;
}

/* Arms the receives that found the SQ full (arm_recv). */
static void retry_recvs(struct uworker *u)
{
	for (uint32_t i = 0; i < u->n_eps && u->n_want_recv; i++) {
		struct uep *ep = &u->eps[i];

		if (!ep->want_recv)
			continue;
		if (!ep->in_use || ep->closing || ep->recv_armed || ep->paused) {
			ep->want_recv = false;
			u->n_want_recv--;
			continue;
		}
		arm_recv(u, i);
		if (ep->want_recv)
			return; /* still full */
	}
}

static void flush(struct uworker *u)
{
	struct tsw_endpoint tep;

	/* room first: an endpoint taken from the dirty queue must be sent */
	while (sq_room(u) && tsw_engine_next_dirty(u->e, &tep)) {
		uint32_t idx = ep_of(u, tep);
		struct io_uring_sqe *sqe;
		const uint8_t *data;
		struct uep *ep;
		size_t len;

		if (idx == NO_EP)
			continue;
		ep = &u->eps[idx];
		if (!ep->in_use || ep->closing || ep->sending ||
		    (ep->kind == TSW_EP_LINK && !ep->link_up))
			continue;
		sqe = get_sqe(u);
		if (!sqe)
			return;
		tsw_engine_out(u->e, tep, &data, &len);
		if (!len) {
			tsw_engine_sent(u->e, tep, 0);
			continue;
		}
		io_uring_prep_send(sqe, ep->fd, data, len, MSG_NOSIGNAL);
		sqe_use_ep(sqe, ep, idx);
		io_uring_sqe_set_data64(sqe, UD(OP_SEND, ep->gen, idx));
		ep->sending = true;
		ep->refs++;
		if (ep->kind == TSW_EP_ACQ)
			u->n_sending++;
	}
}

/* Releases what the engine no longer holds: held buffers first, in
 * order; recv is re-armed only once none is left and the engine takes
 * input (never while draining). */
static void release_held(struct uworker *u, uint64_t now_ns)
{
	uint32_t slot;

	while (tsw_engine_next_release(u->e, &slot)) {
		uint32_t idx = slot < u->n_slots ? u->slot_ep[slot] : NO_EP;
		struct uep *ep;

		if (idx == NO_EP)
			continue;
		ep = &u->eps[idx];
		if (!ep->in_use || ep->closing)
			continue;
		if (ep->n_held && feed_held(u, idx, now_ns) < 0) {
			ep_close(u, idx, now_ns); /* recycles what is still held */
			continue;
		}
		if (ep->closing || ep->n_held || !ep->paused || u->w->draining ||
		    tsw_engine_acq_hold(u->e, slot))
			continue;
		ep->paused = false;
		arm_recv(u, idx);
	}
}

static void start_drain(struct uworker *u)
{
	struct io_uring_sqe *sqe;

	if (u->accept_armed) {
		sqe = get_sqe(u);
		if (sqe) {
			io_uring_prep_cancel64(sqe, UD(OP_ACCEPT, 0, 0), 0);
			io_uring_sqe_set_data64(sqe, UD(OP_CANCEL, 0, 0));
		}
	}
	/* stop reading acquirers: what was read is finished, nothing new starts */
	for (uint32_t i = u->n_links; i < u->n_eps; i++) {
		struct uep *ep = &u->eps[i];

		if (ep->in_use && !ep->closing && !ep->paused) {
			ep->paused = true;
			cancel_recv(u, i);
		}
	}
}

/* Reads the mailbox: a new engine config, or the start of the drain. */
static void take_mail(struct uworker *u, uint64_t now_ns)
{
	struct tsw_io_worker *w = u->w;

	if (io__worker_take_mail(w, now_ns)) {
		start_drain(u);
		close(u->listen_fd);
		u->listen_fd = -1;
		w->p.listen_fd = -1;
	}
}

static void close_requested(struct uworker *u, uint64_t now_ns)
{
	uint32_t slot;

	while (tsw_engine_next_close(u->e, &slot)) {
		if (slot < u->n_slots && u->slot_ep[slot] != NO_EP)
			ep_close(u, u->slot_ep[slot], now_ns);
	}
}

static unsigned handle_cqes(struct uworker *u, uint64_t now_ns)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0, recvs = 0;

	io_uring_for_each_cqe(&u->ring, head, cqe)
	{
		uint64_t ud = io_uring_cqe_get_data64(cqe);
		uint32_t idx = UD_IDX(ud);

		n++;
		switch (UD_OP(ud)) {
		case OP_ACCEPT:
			on_accept(u, cqe, now_ns);
			break;
		case OP_RECV:
			recvs++;
			if (idx < u->n_eps && u->eps[idx].gen == UD_GEN(ud))
				on_recv(u, idx, cqe, now_ns);
			else if (cqe->flags & IORING_CQE_F_BUFFER)
				recycle_buf(u, cqe->flags >> IORING_CQE_BUFFER_SHIFT);
			break;
		case OP_SEND:
			if (idx < u->n_eps && u->eps[idx].gen == UD_GEN(ud))
				on_send(u, idx, cqe, now_ns);
			break;
		case OP_CONNECT:
			if (idx < u->n_eps && u->eps[idx].gen == UD_GEN(ud))
				on_connect(u, idx, cqe, now_ns);
			break;
		case OP_MAIL:
			u->mail_armed = false;
			u->mail_pending = true;
			break;
		case OP_NONE:
		case OP_CANCEL:
		case OP_MAX:
		default:
			break;
		}
	}
	io_uring_cq_advance(&u->ring, n);
	return recvs;
}

/* After a busy batch, data that arrived while it was being processed
 * waits as task work (DEFER_TASKRUN runs it only when the loop enters the
 * kernel). Each round sends what the batch before it produced and collects
 * that data in the same io_uring_enter, which never waits. Sending first
 * keeps the issuer and the acquirers busy while the switch works through
 * the next batch; holding every send back until the last round (fewer,
 * larger sends) left them idle meanwhile: 5-10 % less throughput at depth 8,
 * 15-26 % at depth 1 (bench/server/README.md). Only after a batch of at
 * least TSW_IO_URING_LATE_MIN_RECVS receives (an idle loop answers at
 * once), at most TSW_IO_URING_LATE_ROUNDS rounds per iteration. */
static void collect_late(struct uworker *u, unsigned recvs, uint64_t now_ns)
{
	unsigned round;

	for (round = 0; round < TSW_IO_URING_LATE_ROUNDS; round++) {
		if (recvs < TSW_IO_URING_LATE_MIN_RECVS)
			return;
		flush(u);
		if (io_uring_submit_and_get_events(&u->ring) < 0 || !io_uring_cq_ready(&u->ring))
			return;
		recvs = handle_cqes(u, now_ns);
	}
}

static int setup_ring(struct uworker *u)
{
	/* best first: completions run only when the loop waits (6.1+); else
	 * at least no interrupt per completion (5.19+); else plain */
	static const unsigned flag_sets[] = {
	    IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
	    IORING_SETUP_COOP_TASKRUN,
	    0,
	};
	struct io_uring_params prm;
	int r = -EINVAL;

	for (size_t i = 0; i < sizeof(flag_sets) / sizeof(flag_sets[0]) && r == -EINVAL; i++) {
		memset(&prm, 0, sizeof(prm));
		prm.flags = flag_sets[i] | IORING_SETUP_CQSIZE;
		prm.cq_entries = u->w->p.ring_entries * CQ_PER_SQ;
		r = io_uring_queue_init_params(u->w->p.ring_entries, &u->ring, &prm);
	}
	if (r < 0)
		return r;
	u->ring_ok = true;
	if (!(prm.features & IORING_FEAT_NODROP))
		return -ENOTSUP;
	return 0;
}

static struct io_uring_buf_ring *buf_ring_new(size_t *ret_bytes, uint32_t n)
{
	void *br;

	*ret_bytes = (size_t)n * sizeof(struct io_uring_buf);
	br = mmap(NULL, *ret_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	return br == MAP_FAILED ? NULL : br;
}

/* Registers ring br as group bgid and fills it with the buffers
 * [first, first + n). */
static int buf_ring_register(struct uworker *u, struct io_uring_buf_ring *br, unsigned bgid,
			     uint32_t first, uint32_t n)
{
	struct io_uring_buf_reg reg;
	int r;

	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (unsigned long)br;
	reg.ring_entries = n;
	reg.bgid = (unsigned short)bgid;
	r = io_uring_register_buf_ring(&u->ring, &reg, 0);
	if (r < 0)
		return r;
	io_uring_buf_ring_init(br);
	for (uint32_t i = 0; i < n; i++)
		io_uring_buf_ring_add(br, u->bufs + (size_t)(first + i) * u->buf_bytes, u->buf_bytes,
				      (unsigned short)(first + i), io_uring_buf_ring_mask(n), (int)i);
	io_uring_buf_ring_advance(br, (int)n);
	return 0;
}

static int setup_bufs(struct uworker *u)
{
	int r;

	u->nbufs = u->w->p.recv_bufs;
	u->nbufs_link = u->nbufs / 4 > LINK_BUFS_MIN ? u->nbufs / 4 : LINK_BUFS_MIN;
	u->buf_bytes = u->w->p.recv_buf_bytes;
	u->br = buf_ring_new(&u->br_bytes, u->nbufs);
	u->br_link = buf_ring_new(&u->br_link_bytes, u->nbufs_link);
	if (!u->br || !u->br_link)
		return -ENOMEM;
	u->held_next = malloc(sizeof(*u->held_next) * u->nbufs);
	u->held_len = malloc(sizeof(*u->held_len) * u->nbufs);
	if (!u->held_next || !u->held_len)
		return -ENOMEM;
	u->bufs_bytes = (size_t)(u->nbufs + u->nbufs_link) * u->buf_bytes;
	u->bufs =
	    mmap(NULL, u->bufs_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (u->bufs == MAP_FAILED) {
		u->bufs = NULL;
		return -errno;
	}
	r = buf_ring_register(u, u->br, BGID, 0, u->nbufs);
	if (r < 0)
		return r;
	u->br_registered = true;
	r = buf_ring_register(u, u->br_link, BGID_LINK, u->nbufs, u->nbufs_link);
	if (r < 0)
		return r;
	u->br_link_registered = true;
	return 0;
}

static int setup_eps(struct uworker *u)
{
	const struct tsw_config *c = &u->w->p.engine.settings;

	u->n_links = tsw_engine_n_links(u->e);
	u->n_slots = c->max_conns;
	/* room for connections still closing while new ones arrive */
	u->n_eps = u->n_links + 2 * c->max_conns;
	u->eps = calloc(u->n_eps, sizeof(*u->eps));
	u->slot_ep = malloc(sizeof(*u->slot_ep) * u->n_slots);
	if (!u->eps || !u->slot_ep)
		return -ENOMEM;
	for (uint32_t i = 0; i < u->n_slots; i++)
		u->slot_ep[i] = NO_EP;
	u->free_head = NO_EP;
	for (uint32_t i = u->n_eps; i-- > 0;) {
		u->eps[i].fd = -1;
		u->eps[i].kind = i < u->n_links ? TSW_EP_LINK : TSW_EP_ACQ;
		if (i >= u->n_links) {
			u->eps[i].next_free = u->free_head;
			u->free_head = i;
		}
	}
	u->fixed_files = io_uring_register_files_sparse(&u->ring, u->n_eps) == 0;
	return 0;
}

static void teardown(struct uworker *u)
{
	if (u->eps) {
		for (uint32_t i = 0; i < u->n_eps; i++)
			if (u->eps[i].fd >= 0)
				close(u->eps[i].fd);
	}
	if (u->ring_ok) {
		if (u->br_registered)
			io_uring_unregister_buf_ring(&u->ring, BGID);
		if (u->br_link_registered)
			io_uring_unregister_buf_ring(&u->ring, BGID_LINK);
		io_uring_queue_exit(&u->ring);
	}
	if (u->bufs)
		munmap(u->bufs, u->bufs_bytes);
	if (u->br)
		munmap(u->br, u->br_bytes);
	if (u->br_link)
		munmap(u->br_link, u->br_link_bytes);
	free(u->eps);
	free(u->slot_ep);
	free(u->held_next);
	free(u->held_len);
}

static bool drained(const struct uworker *u)
{
	return tsw_engine_inflight(u->e) == 0 && u->n_sending == 0;
}

static int run(struct uworker *u)
{
	struct tsw_io_worker *w = u->w;
	int rc = 0;

	arm_accept(u);
	arm_mail(u);
	for (;;) {
		uint64_t now = io__now_ns();
		struct __kernel_timespec ts;
		struct io_uring_cqe *cqe;
		uint64_t wait;
		int r;

		tsw_engine_loop_begin(u->e, now);
		collect_late(u, handle_cqes(u, now), now);
		if (u->mail_pending) {
			u->mail_pending = false;
			take_mail(u, now);
			if (!u->mail_armed)
				arm_mail(u);
		}
		if (tsw_engine_next_deadline(u->e) <= now)
			tsw_engine_tick(u->e, now);
		connect_links(u, now);
		close_requested(u, now);
		release_held(u, now);
		if (u->n_want_recv)
			retry_recvs(u);
		flush(u);
		if (!u->accept_armed && u->accept_retry_ns <= now && !w->draining)
			arm_accept(u);
		io__worker_publish(w);
		io__worker_log_events(w);
		if (w->draining && drained(u))
			break;
		if (w->draining && now >= w->drain_deadline_ns) {
			rc = -ETIMEDOUT;
			break;
		}
		tsw_engine_loop_end(u->e);

		wait = io__wait_ns(
		    w, now, u->accept_armed || w->draining ? UINT64_MAX : u->accept_retry_ns);
		ts.tv_sec = (long long)(wait / 1000000000ull);
		ts.tv_nsec = (long long)(wait % 1000000000ull);
		r = io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, &ts, NULL);
		if (r < 0 && r != -ETIME && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
			tsw_log(TSW_LOG_CRIT, "io_uring_wait_failed", "worker=%u error=\"%s\"",
				w->p.engine.worker_id, tsw_strerror(r));
			rc = r;
			tsw_engine_loop_begin(u->e, io__now_ns());
			break;
		}
	}
	tsw_engine_loop_end(u->e);
	return rc;
}

int io__uring_worker_run(struct tsw_io_worker *w)
{
	struct uworker *u;
	int r;

	u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	u->w = w;
	u->e = w->engine;
	u->listen_fd = w->p.listen_fd;
	r = setup_ring(u);
	if (r == 0)
		r = setup_bufs(u);
	if (r == 0)
		r = setup_eps(u);
	if (r < 0) {
		teardown(u);
		free(u);
		return r;
	}
	io__worker_started(w);
	r = run(u);
	if (u->listen_fd >= 0) {
		close(u->listen_fd);
		w->p.listen_fd = -1;
	}
	teardown(u);
	free(u);
	return r;
}
