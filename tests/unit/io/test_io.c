/* The I/O worker interface (include/tsw/io.h) below the engine: listeners,
 * backend names, and the start-up ownership contract. The data path of
 * both backends is covered end to end by tests/integration (e2e_uring,
 * e2e_uv), the shards of running workers by shards_race.c. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tsw/error.h"
#include "tsw/io.h"

static bool fd_open(int fd)
{
	return fcntl(fd, F_GETFD) >= 0;
}

Test(listen, port_0_picks_a_port_every_worker_can_share)
{
	int a, b, plain;
	uint16_t pa, pb;
	struct sockaddr_in sa = {.sin_family = AF_INET};

	cr_assert_eq(tsw_io_listen("127.0.0.1", 0, 16, &a, &pa), 0);
	cr_assert_neq(pa, 0);
	cr_assert_eq(tsw_io_listen("127.0.0.1", pa, 16, &b, &pb), 0,
		     "SO_REUSEPORT second listener");
	cr_assert_eq(pb, pa);
	/* a socket without SO_REUSEPORT cannot take the port: the sharing is real */
	plain = socket(AF_INET, SOCK_STREAM, 0);
	sa.sin_port = htons(pa);
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	cr_assert_eq(bind(plain, (struct sockaddr *)&sa, sizeof(sa)), -1);
	cr_assert_eq(errno, EADDRINUSE);
	close(plain);
	close(a);
	close(b);
}

Test(listen, ipv6_and_refusals)
{
	int fd = -7;
	uint16_t port = 7;

	if (tsw_io_listen("::1", 0, 16, &fd, &port) == 0) {
		cr_assert_neq(port, 0);
		close(fd);
	}
	fd = -7;
	port = 7;
	cr_assert_eq(tsw_io_listen("localhost", 0, 16, &fd, &port), -EINVAL, "names are refused");
	cr_assert_eq(tsw_io_listen("256.0.0.1", 0, 16, &fd, &port), -EINVAL);
	cr_assert_eq(tsw_io_listen("192.0.2.1", 1, 16, &fd, &port), -EADDRNOTAVAIL,
		     "an address not on this host");
	cr_assert_eq(fd, -7, "untouched on failure");
	cr_assert_eq(port, 7, "untouched on failure");
}

struct name_case {
	const char *s;
	int rc;
	enum tsw_io_backend b;
};

static const struct name_case names[] = {
    {"auto", 0, TSW_IO_AUTO},
    {"uring", 0, TSW_IO_URING},
    {"uv", 0, TSW_IO_UV},
    {"epoll", -TSW_E_CONFIG, TSW_IO_AUTO},
    {"", -TSW_E_CONFIG, TSW_IO_AUTO},
    {"URING", -TSW_E_CONFIG, TSW_IO_AUTO},
};

Test(backend, names_round_trip)
{
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		enum tsw_io_backend b = TSW_IO_AUTO;

		cr_assert_eq(tsw_io_backend_parse(names[i].s, &b), names[i].rc, "case %zu", i);
		cr_assert_eq(b, names[i].b, "case %zu", i);
		if (names[i].rc == 0)
			cr_assert_str_eq(tsw_io_backend_name(b), names[i].s);
	}
	cr_assert_str_eq(tsw_io_backend_name(TSW_IO_BACKEND_MAX), "?");
}

Test(worker, failed_start_returns_the_error_and_closes_what_it_was_given)
{
	static const enum tsw_io_backend backends[] = {TSW_IO_URING, TSW_IO_UV, TSW_IO_AUTO};

	for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++) {
		struct tsw_io_worker *w = (struct tsw_io_worker *)0x1;
		struct tsw_metrics_shard shard;
		struct tsw_io_params p = {
		    .backend = backends[i],
		    .listen_backlog = 16,
		    .ring_entries = 64,
		    .recv_buf_bytes = 4096,
		    .recv_bufs = 16,
		    .vault = NULL, /* the engine refuses to start without a vault */
		    .metrics = &shard,
		};
		uint16_t port;

		memset(&shard, 0, sizeof(shard));
		tsw_engine_config_init(&p.engine);
		p.engine.settings.max_conns = 4;
		p.engine.settings.max_pending = 16;
		cr_assert_eq(tsw_io_listen("127.0.0.1", 0, 16, &p.listen_fd, &port), 0);
		p.wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		cr_assert_geq(p.wake_fd, 0);
		cr_assert_lt(tsw_io_worker_start(&p, &w), 0, "case %zu", i);
		cr_assert_eq(w, (struct tsw_io_worker *)0x1, "ret_worker untouched");
		cr_assert_not(fd_open(p.listen_fd), "listen fd closed (case %zu)", i);
		cr_assert_not(fd_open(p.wake_fd), "wake fd closed (case %zu)", i);
	}
}
