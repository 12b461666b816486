/* The worker thread around a backend: start-up handshake, mailbox,
 * issuer address resolution, the listening socket helper, the engine's
 * events written to the log. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "tsw/error.h"
#include "tsw/log.h"
#include "worker_int.h"

static const char *const backend_names[TSW_IO_BACKEND_MAX] = {
    [TSW_IO_AUTO] = "auto",
    [TSW_IO_URING] = "uring",
    [TSW_IO_UV] = "uv",
};

int tsw_io_backend_parse(const char *s, enum tsw_io_backend *ret)
{
	for (int i = 0; i < TSW_IO_BACKEND_MAX; i++) {
		if (strcmp(s, backend_names[i]) == 0) {
			*ret = (enum tsw_io_backend)i;
			return 0;
		}
	}
	return -TSW_E_CONFIG;
}

const char *tsw_io_backend_name(enum tsw_io_backend b)
{
	return b < TSW_IO_BACKEND_MAX ? backend_names[b] : "?";
}

uint64_t io__now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int tsw_io_listen(const char *host, uint16_t port, uint32_t backlog, int *ret_fd,
		  uint16_t *ret_port)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd, r, one = 1;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, host, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
		ss.ss_family = AF_INET;
		((struct sockaddr_in *)&ss)->sin_port = htons(port);
		len = sizeof(struct sockaddr_in);
	} else if (inet_pton(AF_INET6, host, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
		ss.ss_family = AF_INET6;
		((struct sockaddr_in6 *)&ss)->sin6_port = htons(port);
		len = sizeof(struct sockaddr_in6);
	} else {
		return -EINVAL;
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, (int)backlog) < 0 ||
	    getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
		r = -errno;
		goto err_close;
	}
	*ret_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						   : ((struct sockaddr_in *)&ss)->sin_port);
	*ret_fd = fd;
	return 0;

err_close:
	close(fd);
	return r;
}

static int resolve_links(struct tsw_io_worker *w)
{
	const struct tsw_config *c = &w->p.engine.settings;
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	char port[8];

	for (uint32_t i = 0; i < c->n_hosts && i < TSW_CONFIG_LINKS_MAX; i++) {
		struct addrinfo *ai;

		snprintf(port, sizeof(port), "%u", c->hosts[i].addr.port);
		if (getaddrinfo(c->hosts[i].addr.host, port, &hints, &ai) != 0)
			return -EHOSTUNREACH;
		memcpy(&w->link_addr[i], ai->ai_addr, ai->ai_addrlen);
		w->link_addrlen[i] = ai->ai_addrlen;
		freeaddrinfo(ai);
	}
	return 0;
}

void io__worker_started(struct tsw_io_worker *w)
{
	pthread_mutex_lock(&w->lock);
	w->init_done = true;
	w->init_rc = 0;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

static void init_failed(struct tsw_io_worker *w, int rc)
{
	pthread_mutex_lock(&w->lock);
	w->init_done = true;
	w->init_rc = rc;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

bool io__worker_take_mail(struct tsw_io_worker *w, uint64_t now_ns)
{
	struct tsw_engine_config cfg;
	bool have_cfg, drain = false;
	uint64_t v;

	if (read(w->mail_fd, &v, sizeof(v)) < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
		return false;
	w->mail_seen = __atomic_load_n(&w->mail_posted, __ATOMIC_ACQUIRE);
	__atomic_store_n(&w->mail_answered, w->mail_seen, __ATOMIC_RELEASE);
	pthread_mutex_lock(&w->lock);
	have_cfg = w->mail_cfg;
	if (have_cfg)
		cfg = w->next_cfg;
	w->mail_cfg = false;
	if (w->mail_drain && !w->draining) {
		drain = true;
		w->draining = true;
		w->drain_deadline_ns = now_ns + (uint64_t)w->drain_timeout_ms * NS_PER_MS_IO;
	}
	pthread_mutex_unlock(&w->lock);
	if (have_cfg) {
		int r = tsw_engine_reconfigure(w->engine, &cfg);

		if (r < 0)
			tsw_log(TSW_LOG_ERROR, "reconfigure_failed", "worker=%u error=\"%s\"",
				w->p.engine.worker_id, tsw_strerror(r));
	}
	return drain;
}

void io__worker_publish(struct tsw_io_worker *w)
{
	__atomic_store_n(&w->ready, tsw_engine_ready(w->engine), __ATOMIC_RELAXED);
}

void io__worker_log_events(struct tsw_io_worker *w)
{
	struct tsw_engine_event ev;
	char fields[TSW_LOG_LINE_MAX];

	while (tsw_engine_next_event(w->engine, &ev)) {
		enum tsw_log_level level = tsw_engine_event_level(ev.kind);

		if (!tsw_log_enabled(level))
			continue;
		tsw_engine_event_format(&ev, fields, sizeof(fields));
		tsw_log(level, tsw_engine_event_name(ev.kind), "worker=%u %s",
			w->p.engine.worker_id, fields);
	}
}

uint64_t io__wait_ns(const struct tsw_io_worker *w, uint64_t now_ns, uint64_t extra_deadline_ns)
{
	uint64_t d = tsw_engine_next_deadline(w->engine);
	uint64_t cap = now_ns + TSW_IO_WAIT_MAX_MS * NS_PER_MS_IO;

	if (extra_deadline_ns < d)
		d = extra_deadline_ns;
	if (w->draining && w->drain_deadline_ns < d)
		d = w->drain_deadline_ns;
	if (d > cap)
		d = cap;
	return d > now_ns ? d - now_ns : 0;
}

static void *worker_main(void *arg)
{
	struct tsw_io_worker *w = arg;
	enum tsw_io_backend b = w->p.backend;
	int r;

	r = tsw_engine_new(&w->p.engine, w->p.vault, w->p.state, w->p.metrics, &w->engine);
	if (r < 0) {
		init_failed(w, r);
		return NULL;
	}
	r = resolve_links(w);
	if (r < 0) {
		init_failed(w, r);
		goto out_free;
	}
	if (b == TSW_IO_AUTO || b == TSW_IO_URING) {
		__atomic_store_n(&w->backend, TSW_IO_URING, __ATOMIC_RELAXED);
		r = io__uring_worker_run(w);
		if (!w->init_done && b == TSW_IO_AUTO) {
			tsw_log(TSW_LOG_WARN, "io_uring_unavailable",
				"worker=%u error=\"%s\" fallback=uv", w->p.engine.worker_id,
				tsw_strerror(r));
			b = TSW_IO_UV;
		}
	}
	if (b == TSW_IO_UV) {
		__atomic_store_n(&w->backend, TSW_IO_UV, __ATOMIC_RELAXED);
		r = io__uv_worker_run(w);
	}
	if (!w->init_done) {
		init_failed(w, r);
	} else {
		w->exit_rc = r;
		/* what is left in flight gets its reversal before the state closes */
		tsw_engine_shutdown(w->engine, io__now_ns());
		io__worker_log_events(w);
	}
	__atomic_store_n(&w->ready, 0, __ATOMIC_RELAXED);
out_free:
	tsw_engine_free(w->engine);
	w->engine = NULL;
	return NULL;
}

int tsw_io_worker_start(const struct tsw_io_params *p, struct tsw_io_worker **ret_worker)
{
	struct tsw_io_worker *w;
	sigset_t all, old;
	int r;

	w = calloc(1, sizeof(*w));
	if (!w) {
		r = -ENOMEM;
		goto err_close_listen;
	}
	w->p = *p;
	w->mail_fd = p->wake_fd >= 0 ? p->wake_fd : eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (w->mail_fd < 0) {
		r = -errno;
		goto err_free;
	}
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	/* workers never take signals: the control plane handles them */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	r = -pthread_create(&w->thread, NULL, worker_main, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r < 0)
		goto err_close_mail;
	pthread_mutex_lock(&w->lock);
	while (!w->init_done)
		pthread_cond_wait(&w->cond, &w->lock);
	r = w->init_rc;
	pthread_mutex_unlock(&w->lock);
	if (r < 0) {
		pthread_join(w->thread, NULL);
		goto err_close_mail;
	}
	*ret_worker = w;
	return 0;

err_close_mail:
	close(w->mail_fd);
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->cond);
err_free:
	/* a backend that took the listener over sets listen_fd to -1 */
	if (w->p.listen_fd >= 0)
		close(w->p.listen_fd);
	free(w);
	return r;

err_close_listen:
	if (p->listen_fd >= 0)
		close(p->listen_fd);
	if (p->wake_fd >= 0)
		close(p->wake_fd);
	return r;
}

enum tsw_io_backend tsw_io_worker_backend(const struct tsw_io_worker *w)
{
	return (enum tsw_io_backend)__atomic_load_n(&w->backend, __ATOMIC_RELAXED);
}

bool tsw_io_worker_ready(const struct tsw_io_worker *w)
{
	return __atomic_load_n(&w->ready, __ATOMIC_RELAXED);
}

static void wake(struct tsw_io_worker *w)
{
	uint64_t one = 1;

	if (write(w->mail_fd, &one, sizeof(one)) < 0)
		return; /* counter full: the worker is awake anyway */
}

void tsw_io_worker_reconfigure(struct tsw_io_worker *w, const struct tsw_engine_config *cfg)
{
	pthread_mutex_lock(&w->lock);
	w->next_cfg = *cfg;
	w->mail_cfg = true;
	pthread_mutex_unlock(&w->lock);
	__atomic_add_fetch(&w->mail_posted, 1, __ATOMIC_RELEASE);
	wake(w);
}

unsigned tsw_io_worker_ping(struct tsw_io_worker *w)
{
	unsigned posted = __atomic_add_fetch(&w->mail_posted, 1, __ATOMIC_RELEASE);

	wake(w);
	return posted;
}

bool tsw_io_worker_answered(const struct tsw_io_worker *w, unsigned ping)
{
	/* wraps: a difference, not a comparison */
	return (int)(__atomic_load_n(&w->mail_answered, __ATOMIC_ACQUIRE) - ping) >= 0;
}

void tsw_io_worker_drain(struct tsw_io_worker *w, uint32_t timeout_ms)
{
	pthread_mutex_lock(&w->lock);
	if (!w->mail_drain) {
		w->mail_drain = true;
		w->drain_timeout_ms = timeout_ms;
	}
	pthread_mutex_unlock(&w->lock);
	__atomic_add_fetch(&w->mail_posted, 1, __ATOMIC_RELEASE);
	wake(w);
}

int tsw_io_worker_join(struct tsw_io_worker *w)
{
	pthread_join(w->thread, NULL);
	return w->exit_rc;
}

void tsw_io_worker_free(struct tsw_io_worker *w)
{
	if (!w)
		return;
	close(w->mail_fd);
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->cond);
	free(w);
}
