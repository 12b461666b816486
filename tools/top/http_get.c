/* HTTP/1.0 GET over TCP with one deadline for the whole exchange. */
#include "http_get.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HOST_MAX_BYTES 256
#define REQUEST_MAX_BYTES 8192
#define READ_CHUNK_BYTES 65536

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for events on fd until deadline: 0, -ETIMEDOUT or -errno. */
static int wait_fd(int fd, short events, long long deadline)
{
	struct pollfd p = {.fd = fd, .events = events};

	for (;;) {
		long long left = deadline - now_ms();
		int rc;

		if (left <= 0)
			return -ETIMEDOUT;
		rc = poll(&p, 1, (int)left);
		if (rc > 0)
			return 0;
		if (rc < 0 && errno != EINTR)
			return -errno;
	}
}

static int split_addr(const char *addr, char *host, char *port)
{
	const char *colon = strrchr(addr, ':');
	const char *h = addr;
	size_t hlen;

	if (!colon || !colon[1] || strlen(colon + 1) > 5)
		return -EINVAL;
	hlen = (size_t)(colon - addr);
	if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
		h++;
		hlen -= 2;
	}
	if (!hlen || hlen >= HOST_MAX_BYTES)
		return -EINVAL;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	strcpy(port, colon + 1);
	return 0;
}

/* A non-blocking connect to one address within deadline: fd or -errno. */
static int connect_one(const struct addrinfo *ai, long long deadline)
{
	int fd, rc, soerr = 0;
	socklen_t len = sizeof(soerr);

	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	rc = connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 ? -errno : 0;
	if (rc == -EINPROGRESS) {
		rc = wait_fd(fd, POLLOUT, deadline);
		if (!rc && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
			rc = -errno;
		else if (!rc)
			rc = -soerr;
	}
	if (rc < 0) {
		close(fd);
		return rc;
	}
	return fd;
}

/* A connect to addr (each address its name has, in order) within
 * deadline: the fd, or the last -errno. */
static int connect_to(const char *addr, long long deadline)
{
	char host[HOST_MAX_BYTES], port[8];
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *list;
	int rc = -EINVAL;

	if (split_addr(addr, host, port) < 0 || getaddrinfo(host, port, &hints, &list) != 0)
		return -EINVAL;
	for (const struct addrinfo *ai = list; ai; ai = ai->ai_next) {
		rc = connect_one(ai, deadline);
		if (rc >= 0 || rc == -ETIMEDOUT)
			break;
	}
	freeaddrinfo(list);
	return rc;
}

static int send_all(int fd, const char *buf, size_t len, long long deadline)
{
	while (len) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EAGAIN) {
			int rc = wait_fd(fd, POLLOUT, deadline);

			if (rc < 0)
				return rc;
			continue;
		}
		if (n < 0 && errno != EINTR)
			return -errno;
		if (n > 0) {
			buf += n;
			len -= (size_t)n;
		}
	}
	return 0;
}

/* Reads to EOF into *buf (grown as needed, NUL-terminated) within the
 * deadline; one byte above TOP_HTTP_RESPONSE_MAX_BYTES refuses it. */
static int read_all(int fd, char **buf, size_t *len, long long deadline)
{
	const size_t most = TOP_HTTP_RESPONSE_MAX_BYTES + 2; /* one byte over, the NUL */
	size_t cap = 0;

	*buf = NULL;
	*len = 0;
	for (;;) {
		ssize_t n;
		int rc;

		if (cap - *len < 2) {
			char *nb;

			cap = cap ? cap * 2 : READ_CHUNK_BYTES;
			if (cap > most)
				cap = most;
			nb = realloc(*buf, cap);
			if (!nb)
				return -ENOMEM;
			*buf = nb;
		}
		rc = wait_fd(fd, POLLIN, deadline);
		if (rc < 0)
			return rc;
		n = recv(fd, *buf + *len, cap - *len - 1, 0);
		if (n == 0)
			break;
		if (n < 0 && errno != EINTR && errno != EAGAIN)
			return -errno;
		if (n > 0)
			*len += (size_t)n;
		if (*len > TOP_HTTP_RESPONSE_MAX_BYTES)
			return -EMSGSIZE;
	}
	(*buf)[*len] = '\0';
	return 0;
}

/* "HTTP/1.x NNN ..." then a blank line: the status and where the body
 * starts, or -EINVAL. */
static int parse_head(const char *resp, int *status, const char **body)
{
	const char *end = strstr(resp, "\r\n\r\n");

	if (strncmp(resp, "HTTP/1.", 7) || !resp[7] || resp[8] != ' ' || !end)
		return -EINVAL;
	if (sscanf(resp + 9, "%3d", status) != 1)
		return -EINVAL;
	*body = end + 4;
	return 0;
}

static int exchange(const char *addr, const char *req, size_t req_len, char **resp,
		    size_t *resp_len)
{
	long long deadline = now_ms() + TOP_HTTP_TIMEOUT_MS;
	int fd = connect_to(addr, deadline), rc;

	if (fd < 0)
		return fd;
	rc = send_all(fd, req, req_len, deadline);
	if (!rc)
		rc = read_all(fd, resp, resp_len, deadline);
	close(fd);
	return rc;
}

static void say(char *err, size_t size, const char *addr, int rc, int status)
{
	if (rc == -EINVAL)
		snprintf(err, size, "%s: not HOST:PORT, or the answer is not HTTP", addr);
	else if (rc == -EPROTO && status == 401)
		snprintf(err, size, "%s: HTTP 401: the endpoint wants a token (--token-file)",
			 addr);
	else if (rc == -EPROTO)
		snprintf(err, size, "%s: HTTP %d", addr, status);
	else if (rc == -EMSGSIZE)
		snprintf(err, size, "%s: answer above %u bytes", addr, TOP_HTTP_RESPONSE_MAX_BYTES);
	else if (rc == -ETIMEDOUT)
		snprintf(err, size, "%s: no whole answer within %d ms", addr, TOP_HTTP_TIMEOUT_MS);
	else
		snprintf(err, size, "%s: %s", addr, strerror(-rc));
}

int top_http_get(const char *addr, const char *path, const char *token, char **ret_body,
		 size_t *ret_len, int *ret_status, char *err, size_t size)
{
	char req[REQUEST_MAX_BYTES], *resp = NULL, *body;
	const char *at;
	size_t resp_len = 0;
	int n, rc, status = 0;

	n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: %s\r\n%s%s%s\r\n", path, addr,
		     token ? "Authorization: Bearer " : "", token ? token : "",
		     token ? "\r\n" : "");
	rc = n < 0 || (size_t)n >= sizeof(req) ? -EINVAL : 0;
	if (!rc)
		rc = exchange(addr, req, (size_t)n, &resp, &resp_len);
	if (!rc)
		rc = parse_head(resp, &status, &at);
	if (!rc && status != 200)
		rc = -EPROTO;
	if (!rc) {
		resp_len -= (size_t)(at - resp);
		body = malloc(resp_len + 1);
		if (!body)
			rc = -ENOMEM;
	}
	if (rc) {
		free(resp);
		say(err, size, addr, rc, status);
		if (rc == -EPROTO)
			*ret_status = status;
		return rc;
	}
	memcpy(body, at, resp_len + 1);
	free(resp);
	*ret_body = body;
	*ret_len = resp_len;
	*ret_status = status;
	return 0;
}
