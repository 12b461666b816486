/* io_uring plumbing shared by issuer-sim and tokbench: ring setup, SQE
 * allocation that submits when the SQ is full, user_data packing, and the
 * output buffers that let a connection carry every frame ready for it in
 * one send per loop iteration.
 *
 * Single-threaded: a ring and its connections belong to one thread.
 */
#ifndef TSW_TOOLS_RING_H
#define TSW_TOOLS_RING_H

#include <liburing.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RING_ENTRIES 1024	      /* SQ size; CQ is twice as large */
#define RING_RECV_BUF_BYTES 65536     /* per-connection receive buffer */
#define RING_OUT_MAX_BYTES (8u << 20) /* cap of one connection's output queue */

enum ring_op { RING_OP_ACCEPT, RING_OP_RECV, RING_OP_SEND, RING_OP_MAX };

/* user_data: op in the top 8 bits, 24-bit generation, 32-bit slot. */
static inline uint64_t ring_ud(unsigned op, uint32_t slot, uint32_t gen)
{
	return (uint64_t)op << 56 | (uint64_t)(gen & 0xffffffu) << 32 | slot;
}

static inline unsigned ring_ud_op(uint64_t ud)
{
	return (unsigned)(ud >> 56);
}

static inline uint32_t ring_ud_gen(uint64_t ud)
{
	return (uint32_t)(ud >> 32) & 0xffffffu;
}

static inline uint32_t ring_ud_slot(uint64_t ud)
{
	return (uint32_t)ud;
}

/* Sets up ring with SINGLE_ISSUER|DEFER_TASKRUN when the kernel has them,
 * plain flags otherwise. Returns 0 or -errno (-ENOSYS, -EPERM when io_uring
 * is disabled on the host). */
int ring_setup(struct io_uring *ring, unsigned entries);

/* Returns a free SQE, submitting queued ones first when the SQ is full.
 * NULL only when submission itself fails. */
struct io_uring_sqe *ring_sqe(struct io_uring *ring);

/* Waits for at least one completion, at most timeout_ns (0: do not wait).
 * Returns 0, -ETIME, -EINTR or another -errno. */
int ring_wait(struct io_uring *ring, uint64_t timeout_ns);

/* A growable byte queue, bounded by max bytes. */
struct outbuf {
	uint8_t *data;
	size_t len, cap, max;
};

/* Makes room for n more bytes; returns a pointer to them (commit with
 * outbuf_commit), or NULL when the queue would exceed its bound or memory
 * is short. */
uint8_t *outbuf_reserve(struct outbuf *b, size_t n);

static inline void outbuf_commit(struct outbuf *b, size_t n)
{
	b->len += n;
}

void outbuf_free(struct outbuf *b);

/* Monotonic clock in nanoseconds. */
uint64_t ring_now_ns(void);

/* Parses "HOST:PORT" (IPv4 or a name, port 0..65535) into *ret_addr.
 * Returns 0 or -EINVAL. */
struct sockaddr_in;
int ring_parse_hostport(const char *s, struct sockaddr_in *ret_addr);

/* xorshift64* generator; state must not be zero. */
static inline uint64_t ring_rand(uint64_t *state)
{
	uint64_t x = *state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545F4914F6CDD1DULL;
}

/* Uniform double in [0, 1). */
static inline double ring_rand_unit(uint64_t *state)
{
	return (double)(ring_rand(state) >> 11) * (1.0 / 9007199254740992.0);
}

#endif
