/* The engine's event queue: rate limits per kind, a fixed ring, and the
 * text of each event for the backend's log line. See event.h and
 * include/tsw/engine.h; docs/operations.md lists the events. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_int.h"
#include "event.h"
#include "tsw/error.h"
#include "tsw/log.h"

_Static_assert(TSW_ENGINE_EVENT_TOKEN_MAX >= TSW_TOKEN_MAX_DIGITS + 1,
	       "a masked token fits an event");

/* ---- the queue ---- */

void engine__events_configure(struct tsw_engine *e)
{
	e->ev.burst = e->cfg.log_event_burst;
	e->ev.interval_ns = (uint64_t)e->cfg.log_event_interval_ms * NS_PER_MS;
}

int engine__events_init(struct tsw_engine *e)
{
	e->ev.cap = e->cfg.log_event_queue;
	e->ev.ring = calloc(e->ev.cap, sizeof(*e->ev.ring));
	if (!e->ev.ring)
		return -ENOMEM;
	engine__events_configure(e);
	return 0;
}

void engine__events_free(struct tsw_engine *e)
{
	free(e->ev.ring);
	e->ev.ring = NULL;
}

static bool push(struct engine_events *q, const struct tsw_engine_event *ev)
{
	if (q->len == q->cap)
		return false;
	q->ring[(q->head + q->len) % q->cap] = *ev;
	q->len++;
	return true;
}

/* Opens a new window for k when its interval is over; true when one more
 * event of the kind may be queued now. */
static bool window_allows(const struct engine_events *q, struct ev_kind *k, uint64_t now_ns)
{
	if (!k->started || now_ns - k->window_start_ns >= q->interval_ns) {
		k->started = true;
		k->window_start_ns = now_ns;
		k->lines = 0;
	}
	return k->lines < q->burst;
}

static void copy_field(char *dst, size_t cap, const struct echo *ec, unsigned field)
{
	unsigned i;

	dst[0] = '\0';
	for (i = 0; i < TSW_ENGINE_ECHO_FIELDS; i++) {
		size_t n = ec->len[i];

		if (tsw_engine_echo_fields[i] != field || !n)
			continue;
		/* numeric and ans fields of the acquirer: printable, but keep
		 * only what a log value may hold unquoted-safe */
		if (n > cap - 1)
			n = cap - 1;
		memcpy(dst, ec->data + ec->off[i], n);
		dst[n] = '\0';
		for (size_t j = 0; j < n; j++)
			if (dst[j] < 0x21 || dst[j] > 0x7e || dst[j] == '"' || dst[j] == '\\')
				dst[j] = '?';
		return;
	}
}

static void fill(const struct tsw_engine *e, struct tsw_engine_event *ev,
		 enum tsw_engine_event_kind kind, const struct ev_args *a)
{
	memset(ev, 0, sizeof(*ev));
	ev->kind = (uint8_t)kind;
	ev->has_fields = true;
	ev->link = a->link;
	ev->issuer = a->link < e->n_links ? e->links[a->link].issuer : 0;
	ev->slot = a->slot;
	ev->id = a->id;
	ev->n1 = a->n1;
	ev->n2 = a->n2;
	ev->err = a->err;
	ev->why = a->why;
	if (a->rc) {
		size_t n = strnlen(a->rc, 2);

		memcpy(ev->rc, a->rc, n);
		for (size_t j = 0; j < n; j++)
			if (ev->rc[j] < 0x21 || ev->rc[j] > 0x7e || ev->rc[j] == '"' ||
			    ev->rc[j] == '\\')
				ev->rc[j] = '?';
	}
	/* first 6 and last 4 digits only: never a whole token in a log */
	if (a->token && a->token_len && a->token_len < sizeof(ev->token))
		tsw_mask_pan(a->token, (unsigned)a->token_len, ev->token, sizeof(ev->token));
	if (a->echo) {
		copy_field(ev->stan, sizeof(ev->stan), a->echo, 11);
		copy_field(ev->rrn, sizeof(ev->rrn), a->echo, 37);
		copy_field(ev->amount, sizeof(ev->amount), a->echo, 4);
	}
}

void engine__event_emit(struct tsw_engine *e, enum tsw_engine_event_kind kind,
			const struct ev_args *a)
{
	struct engine_events *q = &e->ev;
	struct ev_kind *k;
	struct tsw_engine_event ev;

	if (kind >= TSW_EV_KIND_MAX || !q->ring)
		return;
	k = &q->kinds[kind];
	if (!window_allows(q, k, e->now_ns)) {
		if (!k->suppressed)
			q->n_suppressing++;
		k->suppressed++;
		TSW_COUNT(e->m->events_suppressed);
		return;
	}
	fill(e, &ev, kind, a);
	ev.suppressed = k->suppressed;
	if (!push(q, &ev)) {
		/* the count left out before it stays for the next one */
		q->dropped++;
		TSW_COUNT(e->m->events_dropped);
		return;
	}
	k->lines++;
	if (k->suppressed)
		q->n_suppressing--;
	k->suppressed = 0;
}

/* With the queue empty: the drops and the suppressed counts whose window
 * is over get an event of their own. */
static void report_due(struct tsw_engine *e)
{
	struct engine_events *q = &e->ev;
	struct tsw_engine_event ev;
	unsigned i;

	if (q->dropped) {
		struct ev_kind *k = &q->kinds[TSW_EV_EVENTS_DROPPED];

		/* rate-limited like any kind, but never suppressed: the count
		 * grows until a report may go */
		if (window_allows(q, k, e->now_ns)) {
			fill(e, &ev, TSW_EV_EVENTS_DROPPED, &(const struct ev_args){0});
			ev.n1 = q->dropped;
			ev.n2 = q->cap;
			push(q, &ev);
			k->lines++;
			q->dropped = 0;
		}
	}
	for (i = 0; i < TSW_EV_KIND_MAX && q->n_suppressing; i++) {
		struct ev_kind *k = &q->kinds[i];

		if (!k->suppressed || e->now_ns - k->window_start_ns < q->interval_ns)
			continue;
		window_allows(q, k, e->now_ns); /* the window is over: a new one */
		memset(&ev, 0, sizeof(ev));
		ev.kind = (uint8_t)i;
		ev.suppressed = k->suppressed;
		if (!push(q, &ev))
			return;
		k->lines++;
		k->suppressed = 0;
		q->n_suppressing--;
	}
}

bool tsw_engine_next_event(struct tsw_engine *e, struct tsw_engine_event *ret_ev)
{
	struct engine_events *q = &e->ev;

	if (!q->len) {
		if (!q->dropped && !q->n_suppressing)
			return false;
		report_due(e);
		if (!q->len)
			return false;
	}
	*ret_ev = q->ring[q->head];
	q->head = (q->head + 1) % q->cap;
	q->len--;
	return true;
}

/* ---- text ---- */

struct text {
	char *p;
	size_t cap, len;
};

__attribute__((format(printf, 2, 3))) static void add(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (t->len + 1 >= t->cap)
		return;
	va_start(ap, fmt);
	n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	t->len += (size_t)n;
	if (t->len >= t->cap)
		t->len = t->cap - 1;
}

/* An issuer link: its index and the issuer (index in [issuer] / --issuer)
 * whose host it connects to. */
static void add_link(struct text *t, const struct tsw_engine_event *ev)
{
	add(t, "link=%" PRIu32 " issuer=%" PRIu32, ev->link, ev->issuer);
}

static const char *put_reason(const struct tsw_engine_event *ev)
{
	switch (ev->err) {
	case -ENOTSUP:
		return "no_state";
	case -EAGAIN:
		return "queue_full";
	case -EMSGSIZE:
		return "too_big";
	case -ENOSPC:
		return "state_degraded";
	default:
		return "error";
	}
}

static const char *token_or_none(const struct tsw_engine_event *ev)
{
	return ev->token[0] ? ev->token : "none";
}

/* ---- the fields of each kind ---- */

static void fmt_signon_refused(struct text *t, const struct tsw_engine_event *ev)
{
	add_link(t, ev);
	add(t, " what=%s rc=\"%s\" retry_in_ms=%" PRIu64, ev->why ? ev->why : "sign_on", ev->rc,
	    ev->n1);
}

static void fmt_reconnect_backoff(struct text *t, const struct tsw_engine_event *ev)
{
	add_link(t, ev);
	add(t, " retry_in_ms=%" PRIu64, ev->n1);
}

static void fmt_echo_timeout(struct text *t, const struct tsw_engine_event *ev)
{
	add_link(t, ev);
	add(t, " timeout_ms=%" PRIu64, ev->n1);
}

static void fmt_saf_put_refused(struct text *t, const struct tsw_engine_event *ev)
{
	add_link(t, ev);
	/* what was to be queued: a reversal, or a stand-in's advice */
	add(t, " what=%s", ev->why ? ev->why : "reversal");
	add(t,
	    " reason=%s token=%s stan=\"%s\" rrn=\"%s\" amount=\"%s\" "
	    "switch_stan=\"%06" PRIu64 "\"",
	    put_reason(ev), token_or_none(ev), ev->stan, ev->rrn, ev->amount, ev->n1 % 1000000);
	/* a reason without a word of its own: the error says it */
	if (ev->err && strcmp(put_reason(ev), "error") == 0)
		add(t, " error=\"%s\"", tsw_strerror(ev->err));
}

static void fmt_saf_sent(struct text *t, const struct tsw_engine_event *ev)
{
	add_link(t, ev);
	add(t, " id=\"%" PRIu64 "\" attempt=%" PRIu64, ev->id, ev->n1);
}

static void fmt_saf_acked(struct text *t, const struct tsw_engine_event *ev)
{
	/* a late answer (after its timeout) came on a link not kept */
	if (ev->why && strcmp(ev->why, "late") == 0) {
		add(t, "id=\"%" PRIu64 "\" rc=\"%s\" late=true", ev->id, ev->rc);
		return;
	}
	add_link(t, ev);
	add(t, " id=\"%" PRIu64 "\" rc=\"%s\"", ev->id, ev->rc);
}

static void fmt_saf_retried(struct text *t, const struct tsw_engine_event *ev)
{
	add(t, "id=\"%" PRIu64 "\" retry_in_ms=%" PRIu64, ev->id, ev->n1);
}

static void fmt_saf_dropped(struct text *t, const struct tsw_engine_event *ev)
{
	add(t, "id=\"%" PRIu64 "\" reason=%s", ev->id, ev->why ? ev->why : "unsendable");
}

static void fmt_max_conns(struct text *t, const struct tsw_engine_event *ev)
{
	add(t, "max_conns=%" PRIu64, ev->n1);
}

static void fmt_stash_overflow(struct text *t, const struct tsw_engine_event *ev)
{
	add(t, "conn=%" PRIu32 " in_buf_bytes=%" PRIu64, ev->slot, ev->n1);
}

static void fmt_slow_consumer(struct text *t, const struct tsw_engine_event *ev)
{
	add(t, "conn=%" PRIu32 " out_buf_bytes=%" PRIu64, ev->slot, ev->n1);
}

static void fmt_link_out_full(struct text *t, const struct tsw_engine_event *ev)
{
	add_link(t, ev);
	add(t, " link_buf_bytes=%" PRIu64, ev->n1);
}

static void fmt_pending_full(struct text *t, const struct tsw_engine_event *ev)
{
	add(t, "max_pending=%" PRIu64, ev->n1);
}

/* a stand-in's result, or what became of an approval not delivered */
static void fmt_standin_or_undelivered(struct text *t, const struct tsw_engine_event *ev)
{
	add_link(t, ev);
	add(t, " %s=%s token=%s stan=\"%s\" rrn=\"%s\" amount=\"%s\"",
	    ev->kind == TSW_EV_STANDIN ? "result" : "action", ev->why ? ev->why : "none",
	    token_or_none(ev), ev->stan, ev->rrn, ev->amount);
}

static void fmt_answer_held_timeout(struct text *t, const struct tsw_engine_event *ev)
{
	add(t, "conn=%" PRIu32 " id=\"%" PRIu64 "\" durable_wait_ms=%" PRIu64, ev->slot, ev->id,
	    ev->n2);
}

static void fmt_keys_tried_limit(struct text *t, const struct tsw_engine_event *ev)
{
	add(t, "max_keys_tried=%" PRIu64 " active_keys=%" PRIu64, ev->n1, ev->n2);
}

static void fmt_record_unwritten(struct text *t, const struct tsw_engine_event *ev)
{
	add_link(t, ev);
	add(t, " why=%s token=%s stan=\"%s\" rrn=\"%s\" amount=\"%s\" durable_wait_ms=%" PRIu64,
	    ev->why ? ev->why : "none", token_or_none(ev), ev->stan, ev->rrn, ev->amount, ev->n2);
}

static void fmt_parked_full(struct text *t, const struct tsw_engine_event *ev)
{
	add(t, "max_parked=%" PRIu64, ev->n1);
}

static void fmt_frame_refused(struct text *t, const struct tsw_engine_event *ev)
{
	if (ev->why && strcmp(ev->why, "issuer") == 0) {
		add(t, "side=issuer ");
		add_link(t, ev);
	} else {
		add(t, "side=acquirer conn=%" PRIu32, ev->slot);
	}
	add(t, " max_frame=%" PRIu64 " error=\"%s\"", ev->n1, tsw_strerror(ev->err));
}

static void fmt_issuer_frame_too_big(struct text *t, const struct tsw_engine_event *ev)
{
	add_link(t, ev);
	add(t, " token=%s stan=\"%s\" rrn=\"%s\" amount=\"%s\" max_frame=%" PRIu64,
	    token_or_none(ev), ev->stan, ev->rrn, ev->amount, ev->n1);
}

static void fmt_answer_mti_mismatch(struct text *t, const struct tsw_engine_event *ev)
{
	add_link(t, ev);
	add(t,
	    " request_mti=\"%04" PRIu64 "\" answer_mti=\"%04" PRIu64 "\""
	    " token=%s stan=\"%s\" switch_stan=\"%06" PRIu64 "\"",
	    ev->n2 / 10000 % 10000, ev->n2 % 10000, token_or_none(ev), ev->stan, ev->n1 % 1000000);
}

static void fmt_vault_integrity(struct text *t, const struct tsw_engine_event *ev)
{
	add(t, "conn=%" PRIu32 " token=%s action=declined_96", ev->slot, token_or_none(ev));
}

static void fmt_vault_keys_refused(struct text *t, const struct tsw_engine_event *ev)
{
	add(t, "error=\"%s\" action=old_keys_kept", tsw_strerror(ev->err));
}

/* why is a static word: the metric's result label */
static void fmt_card_declined(struct text *t, const struct tsw_engine_event *ev)
{
	add(t, "token=%s result=%s", token_or_none(ev), ev->why ? ev->why : "unknown");
}

static void fmt_events_dropped(struct text *t, const struct tsw_engine_event *ev)
{
	add(t, "dropped=%" PRIu64 " log_event_queue=%" PRIu64, ev->n1, ev->n2);
}

/* Each kind: its name (the log line's event=), its log level and the
 * fields of its line. */
struct kind_info {
	const char *name;
	enum tsw_log_level level;
	void (*format)(struct text *t, const struct tsw_engine_event *ev);
};

static const struct kind_info kinds[TSW_EV_KIND_MAX] = {
    [TSW_EV_ISSUER_SIGNON_REFUSED] = {"issuer_signon_refused", TSW_LOG_WARN, fmt_signon_refused},
    [TSW_EV_ISSUER_RECONNECT_BACKOFF] = {"issuer_reconnect_backoff", TSW_LOG_INFO,
					 fmt_reconnect_backoff},
    [TSW_EV_ISSUER_ECHO_TIMEOUT] = {"issuer_echo_timeout", TSW_LOG_WARN, fmt_echo_timeout},
    [TSW_EV_SAF_PUT_REFUSED] = {"saf_put_refused", TSW_LOG_ERROR, fmt_saf_put_refused},
    [TSW_EV_SAF_SENT] = {"saf_sent", TSW_LOG_INFO, fmt_saf_sent},
    [TSW_EV_SAF_ACKED] = {"saf_acked", TSW_LOG_INFO, fmt_saf_acked},
    [TSW_EV_SAF_RETRIED] = {"saf_retried", TSW_LOG_WARN, fmt_saf_retried},
    [TSW_EV_SAF_DROPPED] = {"saf_dropped", TSW_LOG_ERROR, fmt_saf_dropped},
    [TSW_EV_MAX_CONNS] = {"max_conns_reached", TSW_LOG_WARN, fmt_max_conns},
    [TSW_EV_STASH_OVERFLOW] = {"stash_overflow", TSW_LOG_WARN, fmt_stash_overflow},
    [TSW_EV_SLOW_CONSUMER] = {"slow_consumer_closed", TSW_LOG_WARN, fmt_slow_consumer},
    [TSW_EV_LINK_OUT_FULL] = {"link_output_full", TSW_LOG_WARN, fmt_link_out_full},
    [TSW_EV_PENDING_FULL] = {"pending_full", TSW_LOG_WARN, fmt_pending_full},
    [TSW_EV_PARKED_FULL] = {"parked_full", TSW_LOG_WARN, fmt_parked_full},
    [TSW_EV_FRAME_REFUSED] = {"frame_refused", TSW_LOG_WARN, fmt_frame_refused},
    [TSW_EV_STANDIN] = {"standin", TSW_LOG_WARN, fmt_standin_or_undelivered},
    [TSW_EV_ANSWER_HELD_TIMEOUT] = {"answer_held_timeout", TSW_LOG_ERROR, fmt_answer_held_timeout},
    [TSW_EV_APPROVAL_UNDELIVERED] = {"approval_undelivered", TSW_LOG_WARN,
				     fmt_standin_or_undelivered},
    [TSW_EV_APPROVAL_RECORD_UNWRITTEN] = {"approval_record_unwritten", TSW_LOG_ERROR,
					  fmt_record_unwritten},
    [TSW_EV_ISSUER_FRAME_TOO_BIG] = {"issuer_frame_too_big", TSW_LOG_ERROR,
				     fmt_issuer_frame_too_big},
    [TSW_EV_ANSWER_MTI_MISMATCH] = {"issuer_answer_mti_mismatch", TSW_LOG_WARN,
				    fmt_answer_mti_mismatch},
    [TSW_EV_VAULT_INTEGRITY] = {"vault_integrity", TSW_LOG_ERROR, fmt_vault_integrity},
    [TSW_EV_VAULT_KEYS_REFUSED] = {"vault_keys_refused", TSW_LOG_ERROR, fmt_vault_keys_refused},
    [TSW_EV_CRYPTOGRAM_DECLINED] = {"cryptogram_declined", TSW_LOG_WARN, fmt_card_declined},
    [TSW_EV_PIN_BLOCK_REFUSED] = {"pin_block_refused", TSW_LOG_WARN, fmt_card_declined},
    [TSW_EV_KEYS_TRIED_LIMIT] = {"keys_tried_limit", TSW_LOG_WARN, fmt_keys_tried_limit},
    [TSW_EV_EVENTS_DROPPED] = {"events_dropped", TSW_LOG_ERROR, fmt_events_dropped},
};

const char *tsw_engine_event_name(unsigned kind)
{
	return kind < TSW_EV_KIND_MAX ? kinds[kind].name : "unknown";
}

enum tsw_log_level tsw_engine_event_level(unsigned kind)
{
	return kind < TSW_EV_KIND_MAX ? kinds[kind].level : TSW_LOG_ERROR;
}

size_t tsw_engine_event_format(const struct tsw_engine_event *ev, char *buf, size_t cap)
{
	struct text t = {.p = buf, .cap = cap};

	if (!cap)
		return 0;
	buf[0] = '\0';
	if (!ev->has_fields) {
		add(&t, "suppressed=%" PRIu32, ev->suppressed);
		return t.len;
	}
	if (ev->kind < TSW_EV_KIND_MAX && kinds[ev->kind].format)
		kinds[ev->kind].format(&t, ev);
	if (ev->suppressed)
		add(&t, " suppressed=%" PRIu32, ev->suppressed);
	return t.len;
}
