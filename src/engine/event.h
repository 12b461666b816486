/* The engine's event queue (internal to src/engine): a fixed ring
 * allocated in tsw_engine_new(), filled by engine_event() at the spots
 * where the engine decides something an operator must hear about, and
 * drained by the backend through tsw_engine_next_event()
 * (include/tsw/engine.h has the rules: rate limits, drops).
 *
 * Emitting is a few stores and compares, never a syscall or an
 * allocation: call it on the paths where a limit is hit or a reversal
 * moves, never on every message. */
#ifndef TSW_ENGINE_EVENT_H
#define TSW_ENGINE_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tsw/engine.h"

struct tsw_engine;
struct echo;

/* Rate-limit state of one kind. */
struct ev_kind {
	uint64_t window_start_ns;
	uint32_t lines;	     /* events queued in this window */
	uint32_t suppressed; /* left out since the last queued one */
	bool started;	     /* a window was opened */
};

struct engine_events {
	struct tsw_engine_event *ring;
	uint32_t cap, head, len;
	uint32_t burst;
	uint64_t interval_ns;
	uint64_t dropped;	/* dropped since the last TSW_EV_EVENTS_DROPPED */
	uint32_t n_suppressing; /* kinds whose suppressed count is not reported yet */
	struct ev_kind kinds[TSW_EV_KIND_MAX];
};

/* What an emitter knows; every field is optional (zero: none). The token
 * is masked into the event; echo gives the acquirer's DE11, DE37 and
 * DE4. Pointers need only live for the call. */
struct ev_args {
	uint32_t link, slot;
	uint64_t id, n1, n2;
	int err;
	const char *why; /* a static string */
	const char *rc;	 /* a NUL-terminated DE39 */
	const char *token;
	size_t token_len;
	const struct echo *echo;
};

/* Queues an event of kind (or counts it, past its rate limit). Usage, one
 * line at the spot:
 *	engine_event(e, TSW_EV_SAF_RETRIED, .id = id, .n1 = delay_ms);
 */
#define engine_event(e, kind, ...)                                                                 \
	engine__event_emit((e), (kind), &(const struct ev_args){__VA_ARGS__})
/* The same for a request r (struct req *): its link, switch STAN, masked
 * token and the acquirer's DE11/DE37/DE4, then the fields given:
 *	engine_event_req(e, TSW_EV_SAF_PUT_REFUSED, r, .err = ret);
 */
#define engine_event_req(e, kind, r, ...)                                                          \
	engine_event((e), (kind), .link = (r)->link, .n1 = (uint32_t)(r)->key,                     \
		     .token = (r)->token, .token_len = (r)->token_len, .echo = &(r)->echo,         \
		     __VA_ARGS__)

void engine__event_emit(struct tsw_engine *e, enum tsw_engine_event_kind kind,
			const struct ev_args *a);

/* tsw_engine_new / tsw_engine_free / tsw_engine_reconfigure */
int engine__events_init(struct tsw_engine *e);
void engine__events_free(struct tsw_engine *e);
void engine__events_configure(struct tsw_engine *e);

#endif
