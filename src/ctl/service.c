/* systemd's notify protocol for the switch (contract: tsw/service.h).
 * libsystemd's sd_notify does the socket work (abstract and path
 * sockets, credentials); this file decides what to say and when. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "tsw/log.h"
#include "tsw/service.h"

/* How often readiness is polled before READY=1 (the workers sign on
 * asynchronously; a tenth of a second is well inside any start timeout). */
#define READY_POLL_MS 100u

struct tsw_service {
	uv_timer_t timer;
	struct tsw_service_hooks hooks;
	bool active;	   /* NOTIFY_SOCKET was set */
	bool ready;	   /* READY=1 sent */
	bool stopping;	   /* STOPPING=1 sent */
	uint64_t wd_ms;	   /* half the watchdog period; 0: no watchdog */
	bool wd_starving;  /* a worker missed a ping: logged once */
};

static void say(const char *what)
{
	int r = sd_notify(0, what);

	if (r < 0)
		tsw_log(TSW_LOG_WARN, "sd_notify_failed", "error=%d", -r);
}

static void feed_watchdog(struct tsw_service *s)
{
	if (s->hooks.alive && !s->hooks.alive(s->hooks.ctx)) {
		/* no WATCHDOG=1: systemd restarts the switch when this lasts
		 * a whole period */
		if (!s->wd_starving)
			tsw_log(TSW_LOG_ERROR, "watchdog_starved",
				"reason=\"a worker did not answer its ping within %llu ms\"",
				(unsigned long long)s->wd_ms);
		s->wd_starving = true;
		return;
	}
	if (s->wd_starving)
		tsw_log(TSW_LOG_INFO, "watchdog_fed", "reason=\"every worker answers again\"");
	s->wd_starving = false;
	say("WATCHDOG=1");
}

static void on_timer(uv_timer_t *t)
{
	struct tsw_service *s = t->data;

	if (s->stopping)
		return;
	if (!s->ready && s->hooks.ready(s->hooks.ctx)) {
		s->ready = true;
		say("READY=1\nSTATUS=serving");
		tsw_log(TSW_LOG_INFO, "service_ready", "watchdog_ms=%llu",
			(unsigned long long)(s->wd_ms * 2));
		if (!s->wd_ms)
			uv_timer_stop(t);
		else
			uv_timer_start(t, on_timer, s->wd_ms, s->wd_ms);
	}
	if (s->wd_ms)
		feed_watchdog(s);
}

int tsw_service_start(uv_loop_t *loop, const struct tsw_service_hooks *hooks,
		      struct tsw_service **ret)
{
	struct tsw_service *s = calloc(1, sizeof(*s));
	uint64_t usec = 0;

	if (!s)
		return -ENOMEM;
	s->hooks = *hooks;
	s->active = getenv("NOTIFY_SOCKET") != NULL;
	if (s->active && sd_watchdog_enabled(0, &usec) > 0)
		s->wd_ms = usec / 2000u ? usec / 2000u : 1u;
	uv_timer_init(loop, &s->timer);
	s->timer.data = s;
	if (s->active) {
		say("STATUS=waiting for every worker to listen and its issuers to sign on");
		uv_timer_start(&s->timer, on_timer, 0,
			       s->wd_ms && s->wd_ms < READY_POLL_MS ? s->wd_ms : READY_POLL_MS);
	}
	*ret = s;
	return 0;
}

void tsw_service_reloading(struct tsw_service *s)
{
	struct timespec ts;
	char msg[64];

	if (!s || !s->active)
		return;
	/* MONOTONIC_USEC: newer systemd (253+) matches the reload by it */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu",
		 (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000u);
	say(msg);
}

void tsw_service_reloaded(struct tsw_service *s)
{
	/* before the first READY=1 the timer sends it, when it is true */
	if (!s || !s->active || !s->ready || s->stopping)
		return;
	say("READY=1\nSTATUS=serving");
}

void tsw_service_stopping(struct tsw_service *s)
{
	if (!s || !s->active || s->stopping)
		return;
	s->stopping = true;
	uv_timer_stop(&s->timer);
	say("STOPPING=1\nSTATUS=draining");
}

static void closed(uv_handle_t *h)
{
	free(h->data);
}

void tsw_service_stop(struct tsw_service *s)
{
	if (!s)
		return;
	uv_timer_stop(&s->timer);
	uv_close((uv_handle_t *)&s->timer, closed);
}
