/* tokswitch under a service manager: systemd's notify protocol (through
 * libsystemd's sd_notify) on the control plane's uv loop.
 *
 * READY=1 once the ready hook says so (every worker listening and its
 * issuers signed on), with STATUS= saying what it waits for until then;
 * RELOADING=1 and READY=1 around a configuration reload; STOPPING=1 at
 * the start of a drain. With WatchdogSec= in the unit (WATCHDOG_USEC in
 * the environment), WATCHDOG=1 every half period while the alive hook
 * says every worker answered the last ping: a wedged worker stops the
 * pings and systemd restarts the switch.
 *
 * Without NOTIFY_SOCKET (not started by systemd, or Type= other than
 * notify) nothing is sent and no timer runs: the switch behaves as
 * before. Runs on the caller's loop and thread; the hooks are called
 * there.
 */
#ifndef TSW_SERVICE_H
#define TSW_SERVICE_H

#include <stdbool.h>
#include <uv.h>

struct tsw_service_hooks {
	bool (*ready)(void *ctx); /* serving: READY=1 may be sent */
	/* every worker answered the previous call's ping; sends the next
	 * one. NULL: the watchdog is fed by the control loop alone */
	bool (*alive)(void *ctx);
	void *ctx;
};

struct tsw_service;

/* Starts notifying on loop (nothing to do without NOTIFY_SOCKET: *ret is
 * still set, every call below is then a no-op). Returns 0 or -ENOMEM. */
int tsw_service_start(uv_loop_t *loop, const struct tsw_service_hooks *hooks,
		      struct tsw_service **ret);

/* A reload begins (RELOADING=1) / is over, applied or refused (READY=1;
 * nothing before the first READY=1, which the readiness poll sends). */
void tsw_service_reloading(struct tsw_service *s);
void tsw_service_reloaded(struct tsw_service *s);

/* The drain begins: STOPPING=1, and the watchdog stops (the drain is
 * bounded by its own deadline). */
void tsw_service_stopping(struct tsw_service *s);

/* Closes the timer; the memory is released from its close callback, so
 * the loop must run once more afterwards. NULL is a no-op. */
void tsw_service_stop(struct tsw_service *s);

#endif
