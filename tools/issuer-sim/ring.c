#include "ring.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int ring_setup(struct io_uring *ring, unsigned entries)
{
	struct io_uring_params params;
	int r;

	memset(&params, 0, sizeof(params));
	params.flags =
	    IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
	params.cq_entries = entries * 2;
	r = io_uring_queue_init_params(entries, ring, &params);
	if (r != -EINVAL)
		return r;
	/* kernels before 6.1 lack DEFER_TASKRUN */
	memset(&params, 0, sizeof(params));
	params.flags = IORING_SETUP_CQSIZE;
	params.cq_entries = entries * 2;
	return io_uring_queue_init_params(entries, ring, &params);
}

struct io_uring_sqe *ring_sqe(struct io_uring *ring)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
	int r;

	if (sqe)
		return sqe;
	do {
		r = io_uring_submit(ring);
	} while (r == -EINTR);
	if (r < 0)
		return NULL;
	return io_uring_get_sqe(ring);
}

int ring_wait(struct io_uring *ring, uint64_t timeout_ns)
{
	struct __kernel_timespec ts = {
	    .tv_sec = (long long)(timeout_ns / 1000000000u),
	    .tv_nsec = (long long)(timeout_ns % 1000000000u),
	};
	struct io_uring_cqe *cqe;
	int r;

	if (timeout_ns == 0) {
		r = io_uring_submit_and_get_events(ring);
		return r < 0 ? r : 0;
	}
	r = io_uring_submit_and_wait_timeout(ring, &cqe, 1, &ts, NULL);
	return r < 0 ? r : 0;
}

uint8_t *outbuf_reserve(struct outbuf *b, size_t n)
{
	size_t want = b->len + n, cap;
	uint8_t *p;

	if (want > b->max)
		return NULL;
	if (want > b->cap) {
		cap = b->cap ? b->cap : 4096;
		while (cap < want)
			cap *= 2;
		if (cap > b->max)
			cap = b->max;
		p = realloc(b->data, cap);
		if (!p)
			return NULL;
		b->data = p;
		b->cap = cap;
	}
	return b->data + b->len;
}

void outbuf_free(struct outbuf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

uint64_t ring_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int ring_parse_hostport(const char *s, struct sockaddr_in *ret_addr)
{
	struct addrinfo hints, *res = NULL;
	struct sockaddr_in a;
	const char *colon = strrchr(s, ':');
	char host[256];
	char *end;
	unsigned long port;
	size_t hl;

	if (!colon)
		return -EINVAL;
	hl = (size_t)(colon - s);
	if (hl == 0 || hl >= sizeof(host))
		return -EINVAL;
	memcpy(host, s, hl);
	host[hl] = '\0';
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (errno || *end || end == colon + 1 || port > 65535)
		return -EINVAL;
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
		memset(&hints, 0, sizeof(hints));
		hints.ai_family = AF_INET;
		hints.ai_socktype = SOCK_STREAM;
		if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res)
			return -EINVAL;
		a.sin_addr = ((struct sockaddr_in *)(void *)res->ai_addr)->sin_addr;
		freeaddrinfo(res);
	}
	*ret_addr = a;
	return 0;
}
