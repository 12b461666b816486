/* The metrics shards of running workers, read by another thread: two
 * workers serve a steady load while this thread renders /metrics from
 * their shards the whole time (what the control plane does at every
 * scrape). The counts must add up; built with -fsanitize=thread
 * (tools/test --tsan) no access may race. A plain program, not a Criterion
 * one: Criterion does not start under ThreadSanitizer (its inheritable
 * arena is mapped at fixed addresses that TSan reserves). Exit 0 or 1. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tsw/ctl.h"
#include "tsw/error.h"
#include "tsw/io.h"
#include "tsw/iso8583.h"
#include "tsw/log.h"
#include "tsw/metrics.h"
#include "tsw/state.h"
#include "tsw/vault.h"

enum {
	N_WORKERS = 2,
	N_CONNS = 8,
	N_REQUESTS = 400, /* per connection */
	BATCH = 4,	  /* requests in flight per connection */
	DEADLINE_MS = 60000,
};

static void check(bool ok, const char *fmt, ...)
{
	va_list ap;

	if (ok)
		return;
	va_start(ap, fmt);
	fputs("shards_race: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

struct load {
	uint16_t port;
	const uint8_t *frame;
	size_t frame_len;
	unsigned answers; /* read back, every connection */
	int done;	  /* atomic: the client finished */
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool read_answer(int fd)
{
	uint8_t hdr[2], body[1024];
	size_t len;

	if (recv(fd, hdr, 2, MSG_WAITALL) != 2)
		return false;
	len = (size_t)hdr[0] << 8 | hdr[1];
	return len <= sizeof(body) && recv(fd, body, len, MSG_WAITALL) == (ssize_t)len;
}

/* Sends N_REQUESTS frames on each of N_CONNS connections, BATCH at a time,
 * and reads every answer back. */
static void *client_main(void *arg)
{
	struct load *l = arg;
	int fds[N_CONNS];
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(l->port)};
	struct timeval tv = {.tv_sec = 10};

	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	for (int i = 0; i < N_CONNS; i++)
		fds[i] = -1;
	for (int i = 0; i < N_CONNS; i++) {
		fds[i] = socket(AF_INET, SOCK_STREAM, 0);
		if (fds[i] < 0 || connect(fds[i], (struct sockaddr *)&a, sizeof(a)) < 0)
			goto out;
		setsockopt(fds[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	}
	for (int sent = 0; sent < N_REQUESTS; sent += BATCH) {
		for (int i = 0; i < N_CONNS; i++)
			for (int k = 0; k < BATCH; k++)
				if (send(fds[i], l->frame, l->frame_len, MSG_NOSIGNAL) !=
				    (ssize_t)l->frame_len)
					goto out;
		for (int i = 0; i < N_CONNS; i++)
			for (int k = 0; k < BATCH; k++) {
				if (!read_answer(fds[i]))
					goto out;
				l->answers++;
			}
	}
out:
	for (int i = 0; i < N_CONNS; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	__atomic_store_n(&l->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static long long series_value(const char *text, const char *series)
{
	const char *p = strstr(text, series);

	return p ? strtoll(p + strlen(series), NULL, 10) : -1;
}

/* An unknown token of the vault's BIN range: answered 14 by the engine,
 * no issuer needed. */
static size_t make_frame(const struct tsw_iso_profile *prof, uint8_t *out, size_t cap)
{
	static const char tok[] = "4000000000000002";
	const struct tsw_iso_edit ed[] = {
	    {0, 4, (const uint8_t *)"0100"},
	    {2, 16, (const uint8_t *)tok},
	    {3, 6, (const uint8_t *)"000000"},
	    {4, 12, (const uint8_t *)"000000000500"},
	    {7, 10, (const uint8_t *)"1123031500"},
	    {11, 6, (const uint8_t *)"000001"},
	    {14, 4, (const uint8_t *)"3012"},
	    {22, 3, (const uint8_t *)"051"},
	    {37, 12, (const uint8_t *)"123456789012"},
	    {41, 8, (const uint8_t *)"TERM0001"},
	    {42, 15, (const uint8_t *)"MERCHANT0000001"},
	    {49, 3, (const uint8_t *)"840"},
	};
	int r = tsw_iso_encode(prof, NULL, ed, sizeof(ed) / sizeof(ed[0]), out + 2, cap - 2);

	check(r > 0, "encode: %s", tsw_strerror(r));
	check(tsw_iso_header_write(prof, (size_t)r, out) == 0, "length header");
	return (size_t)r + 2;
}

static void run(enum tsw_io_backend backend, const char *dir)
{
	static struct tsw_metrics_shard shards[N_WORKERS];
	struct tsw_metrics_shard *ptrs[N_WORKERS];
	struct tsw_ctl_source src = {.shards = ptrs, .n_shards = N_WORKERS};
	struct tsw_state_config sc = {0};
	struct tsw_state *state;
	static const char want[] = "tokswitch_requests_total{mti=\"0100\",rc=\"14\"} ";
	struct tsw_io_worker *w[N_WORKERS];
	struct tsw_iso_profile prof;
	struct tsw_vault *vault;
	struct load l = {0};
	uint8_t frame[512];
	char vdir[256], key[256], sdir[256];
	pthread_t client;
	unsigned scrapes = 0;
	long long got = -1;
	int64_t deadline;
	int r;

	snprintf(vdir, sizeof(vdir), "%s/vault-%s", dir, tsw_io_backend_name(backend));
	snprintf(key, sizeof(key), "%s/key-%s", dir, tsw_io_backend_name(backend));
	r = tsw_vault_open(vdir, key, TSW_VAULT_CREATE, &vault);
	check(r == 0, "vault: %s", tsw_strerror(r));
	check(tsw_vault_add_token_bin(vault, "4000", 4) == 0, "token BIN");
	/* with a state: its writer thread runs, and each scrape reads its counters */
	snprintf(sdir, sizeof(sdir), "%s/state-%s", dir, tsw_io_backend_name(backend));
	check(mkdir(sdir, 0700) == 0, "mkdir %s", sdir);
	r = tsw_state_open(sdir, &sc, &state);
	check(r == 0, "state: %s", tsw_strerror(r));
	src.state = state;
	check(tsw_iso_profile_load_named(NULL, "default", &prof) == 0, "profile");
	l.frame = frame;
	l.frame_len = make_frame(&prof, frame, sizeof(frame));
	memset(shards, 0, sizeof(shards));
	for (uint32_t i = 0; i < N_WORKERS; i++) {
		struct tsw_io_params p = {
		    .backend = backend,
		    .listen_backlog = 64,
		    .ring_entries = 64,
		    .recv_buf_bytes = 4096,
		    .recv_bufs = 64,
		    .vault = vault,
		    .state = state,
		    .metrics = &shards[i],
		    .wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK),
		};

		ptrs[i] = &shards[i];
		tsw_engine_config_init(&p.engine);
		p.engine.acq_profile = &prof;
		p.engine.iss_profile = &prof;
		p.engine.settings.max_conns = 16;
		p.engine.settings.max_inflight_per_conn = 16;
		p.engine.settings.max_pending = 64;
		p.engine.settings.out_buf_bytes = 32768;
		p.engine.settings.link_buf_bytes = 256 * 1024;
		p.engine.settings.issuer_timeout_ms = 2000;
		p.engine.settings.echo_interval_ms = 30000;
		p.engine.settings.reconnect_min_ms = 10;
		p.engine.settings.reconnect_max_ms = 50;
		p.engine.settings.n_issuers = 1;
		p.engine.settings.n_hosts = 1;
		strcpy(p.engine.settings.hosts[0].addr.host, "127.0.0.1");
		p.engine.settings.hosts[0].addr.port =
		    1; /* nobody: the link reconnects all along */
		p.engine.worker_id = i;
		p.engine.n_workers = N_WORKERS;
		/* the second worker binds the port the first one got */
		r = tsw_io_listen("127.0.0.1", l.port, 64, &p.listen_fd, &l.port);
		check(r == 0, "listen: %s", tsw_strerror(r));
		r = tsw_io_worker_start(&p, &w[i]);
		check(r == 0, "%s worker %u: %s", tsw_io_backend_name(backend), i, tsw_strerror(r));
		check(tsw_state_add_waker(state, p.wake_fd) == 0, "waker");
	}
	check(pthread_create(&client, NULL, client_main, &l) == 0, "client thread");
	/* the control plane: scrape for as long as the client runs */
	deadline = now_ms() + DEADLINE_MS;
	do {
		char *text;
		size_t len;

		check(tsw_ctl_render_metrics(&src, &text, &len) == 0, "render");
		got = series_value(text, want);
		free(text);
		scrapes++;
	} while ((!__atomic_load_n(&l.done, __ATOMIC_ACQUIRE) || got < N_CONNS * N_REQUESTS) &&
		 now_ms() < deadline);
	pthread_join(client, NULL);
	check(l.answers == N_CONNS * N_REQUESTS, "%s: %u of %u answered",
	      tsw_io_backend_name(backend), l.answers, N_CONNS * N_REQUESTS);
	check(got == N_CONNS * N_REQUESTS, "%s: %lld counted, %u sent (%u scrapes)",
	      tsw_io_backend_name(backend), got, N_CONNS * N_REQUESTS, scrapes);
	for (uint32_t i = 0; i < N_WORKERS; i++)
		tsw_io_worker_drain(w[i], 1000);
	for (uint32_t i = 0; i < N_WORKERS; i++)
		tsw_io_worker_join(w[i]);
	/* the state writes to the workers' eventfds: closed before them */
	tsw_state_close(state);
	for (uint32_t i = 0; i < N_WORKERS; i++)
		tsw_io_worker_free(w[i]);
	tsw_vault_close(vault);
	printf("ok - %s: %u requests on %d workers, %u scrapes meanwhile\n",
	       tsw_io_backend_name(backend), N_CONNS * N_REQUESTS, N_WORKERS, scrapes);
}

int main(void)
{
	char dir[] = "/tmp/tsw-shards-XXXXXX", cmd[64];
	int rc;

	tsw_log_level = TSW_LOG_WARN; /* the links' reconnect lines are expected */
	check(mkdtemp(dir) != NULL, "mkdtemp");
	run(TSW_IO_URING, dir);
	run(TSW_IO_UV, dir);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	rc = system(cmd);
	return rc == 0 ? 0 : 1;
}
