/* What the two backends share (not installed). */
#ifndef TSW_IO_WORKER_INT_H
#define TSW_IO_WORKER_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "tsw/engine.h"
#include "tsw/io.h"

/* The longest a loop waits without a deadline (guards against a missed
 * wake-up; not a poll interval). */
#define TSW_IO_WAIT_MAX_MS 1000u
/* Pause before re-arming accept after EMFILE/ENFILE/ENOMEM. */
#define TSW_IO_ACCEPT_RETRY_MS 100u
/* Minimum time between two log lines about the same accept failure. */
#define TSW_IO_ACCEPT_LOG_MS 5000u
#define NS_PER_MS_IO 1000000ull

struct tsw_io_worker {
	struct tsw_io_params p;
	pthread_t thread;
	int mail_fd; /* eventfd: the control plane wakes the worker */

	pthread_mutex_t lock; /* guards the fields up to "worker thread only" */
	pthread_cond_t cond;
	bool init_done;
	int init_rc;
	bool mail_cfg;
	struct tsw_engine_config next_cfg;
	bool mail_drain;
	uint32_t drain_timeout_ms;

	unsigned mail_posted; /* atomic: bumped after each message is in the mailbox */
	unsigned mail_answered; /* atomic: mail_posted as of the last mailbox read */
	int ready;	      /* atomic: tsw_engine_ready() as last seen */
	int backend;	      /* atomic: enum tsw_io_backend in use */

	/* worker thread only */
	struct tsw_engine *engine;
	struct sockaddr_storage link_addr[TSW_CONFIG_LINKS_MAX]; /* link i: settings.hosts[i] */
	socklen_t link_addrlen[TSW_CONFIG_LINKS_MAX];
	unsigned mail_seen; /* mail_posted when the mailbox was last read */
	bool draining;
	uint64_t drain_deadline_ns;
	int exit_rc;
};

uint64_t io__now_ns(void);

/* Called by a backend once set up: wakes tsw_io_worker_start(). */
void io__worker_started(struct tsw_io_worker *w);

/* Drains the eventfd and the mailbox: applies a new engine config, and
 * returns true when a drain was asked for the first time. */
bool io__worker_take_mail(struct tsw_io_worker *w, uint64_t now_ns);

/* True when a message was posted since the mailbox was last read: the
 * backends check it before feeding input, so a request read after a
 * reconfigure was posted is handled under the new configuration (one
 * relaxed-cost atomic load; the eventfd only wakes the loop). */
static inline bool io_worker_mail_waiting(const struct tsw_io_worker *w)
{
	return __atomic_load_n(&w->mail_posted, __ATOMIC_ACQUIRE) != w->mail_seen;
}

/* Publishes readiness (once per loop iteration). */
void io__worker_publish(struct tsw_io_worker *w);

/* Logs the events the engine queued (once per loop iteration, after the
 * engine's work of the iteration; a few compares when there are none). */
void io__worker_log_events(struct tsw_io_worker *w);

/* Milliseconds to wait from now to deadline (monotonic ns), capped. */
uint64_t io__wait_ns(const struct tsw_io_worker *w, uint64_t now_ns, uint64_t extra_deadline_ns);

/* Backends: each sets itself up, calls io__worker_started(), runs until the
 * drain is over, tears down and returns the exit status (0, -ETIMEDOUT,
 * -errno). A setup failure returns before io__worker_started(). */
int io__uring_worker_run(struct tsw_io_worker *w);
int io__uv_worker_run(struct tsw_io_worker *w);

#endif
