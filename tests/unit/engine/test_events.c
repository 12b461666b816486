/* The engine's event queue: what the backend logs. Events come out in
 * order with their fields, tokens masked; past event_burst per
 * event_interval_ms a kind is counted, and the count comes with its next
 * event or, once the window is over, in a report of its own; a full queue
 * drops, counts and reports, never silently. White-box (engine_int.h)
 * only to wait for a reversal's durability. */
#include <criterion/criterion.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "engine_int.h"
#include "harness.h"
#include "tsw/error.h"
#include "tsw/log.h"
#include "tsw/state.h"

#define DEADLINE_MS 10000
#define EVENTS_MAX 128

static struct h H;
static struct h_msgs *acq, *iss;
static uint8_t body[4096];
static struct tsw_engine_event evs[EVENTS_MAX];
static int waker = -1;

static void setup(void)
{
	h_init(&H);
	acq = calloc(1, sizeof(*acq));
	iss = calloc(1, sizeof(*iss));
	cr_assert(acq && iss);
}

static void teardown(void)
{
	h_fini(&H); /* closes the state before its eventfd */
	if (waker >= 0)
		close(waker);
	waker = -1;
	free(acq);
	free(iss);
}

TestSuite(events, .init = setup, .fini = teardown, .timeout = 30);

/* Takes every queued event into evs; returns how many. */
static unsigned drain(void)
{
	unsigned n = 0;

	while (n < EVENTS_MAX && tsw_engine_next_event(H.e, &evs[n]))
		n++;
	cr_assert_lt(n, EVENTS_MAX, "the queue never empties");
	return n;
}

/* max_conns is 4 and h_start opened one: the rest fill it, then each
 * further open is refused (one max_conns_reached event each). */
static void refuse_connections(unsigned n)
{
	while (tsw_engine_acq_open(H.e, H.now) >= 0)
		;
	for (unsigned i = 1; i < n; i++)
		cr_assert_eq(tsw_engine_acq_open(H.e, H.now), -TSW_E_FULL);
}

static const char *text(const struct tsw_engine_event *ev)
{
	static char buf[512];

	tsw_engine_event_format(ev, buf, sizeof(buf));
	return buf;
}

Test(events, a_limit_hit_comes_out_once_with_its_fields)
{
	h_start(&H);
	cr_assert_eq(drain(), 0, "signing on is no event");
	refuse_connections(1);
	cr_assert_eq(drain(), 1);
	cr_assert_eq(evs[0].kind, TSW_EV_MAX_CONNS);
	cr_assert(evs[0].has_fields);
	cr_assert_eq(evs[0].suppressed, 0);
	cr_assert_eq(evs[0].n1, 4);
	cr_assert_str_eq(tsw_engine_event_name(evs[0].kind), "max_conns_reached");
	cr_assert_eq(tsw_engine_event_level(evs[0].kind), TSW_LOG_WARN);
	cr_assert_str_eq(text(&evs[0]), "max_conns=4");
	cr_assert_eq(drain(), 0, "taken once");
}

Test(events, a_refusal_by_the_backend_is_counted_and_reported_the_same)
{
	h_start(&H);
	tsw_engine_acq_refused(H.e);
	cr_assert_eq(H.m.conns_refused, 1);
	cr_assert_eq(drain(), 1);
	cr_assert_eq(evs[0].kind, TSW_EV_MAX_CONNS);
	cr_assert_str_eq(text(&evs[0]), "max_conns=4");
}

Test(events, every_kind_has_a_name_and_a_level)
{
	for (unsigned k = 0; k < TSW_EV_KIND_MAX; k++) {
		cr_assert_str_neq(tsw_engine_event_name(k), "unknown", "kind %u", k);
		for (unsigned j = 0; j < k; j++)
			cr_assert_str_neq(tsw_engine_event_name(k), tsw_engine_event_name(j));
		cr_assert_geq(tsw_engine_event_level(k), TSW_LOG_INFO, "kind %u", k);
	}
	cr_assert_str_eq(tsw_engine_event_name(TSW_EV_KIND_MAX), "unknown");
}

Test(events, past_the_burst_counted_and_reported_with_the_next_one)
{
	H.cfg.settings.log_event_burst = 2;
	H.cfg.settings.log_event_interval_ms = 1000;
	h_start(&H);
	refuse_connections(5);
	cr_assert_eq(drain(), 2, "two lines per window");
	cr_assert_eq(evs[0].suppressed + evs[1].suppressed, 0);
	cr_assert_eq(H.m.events_suppressed, 3);
	/* the window is over: the next refusal carries the count */
	H.now += 1000 * 1000000ull;
	tsw_engine_tick(H.e, H.now);
	refuse_connections(1);
	cr_assert_eq(drain(), 1);
	cr_assert_eq(evs[0].kind, TSW_EV_MAX_CONNS);
	cr_assert(evs[0].has_fields);
	cr_assert_eq(evs[0].suppressed, 3);
	cr_assert_str_eq(text(&evs[0]), "max_conns=4 suppressed=3");
	cr_assert_eq(H.m.events_suppressed, 3, "the count is of events left out");
}

Test(events, a_count_with_no_later_event_comes_at_the_end_of_its_window)
{
	H.cfg.settings.log_event_burst = 1;
	H.cfg.settings.log_event_interval_ms = 500;
	h_start(&H);
	refuse_connections(4);
	cr_assert_eq(drain(), 1);
	H.now += 499 * 1000000ull;
	tsw_engine_tick(H.e, H.now);
	cr_assert_eq(drain(), 0, "not before the window is over");
	H.now += 1000000ull;
	tsw_engine_tick(H.e, H.now);
	cr_assert_eq(drain(), 1);
	cr_assert_eq(evs[0].kind, TSW_EV_MAX_CONNS);
	cr_assert_not(evs[0].has_fields, "a report of the count only");
	cr_assert_eq(evs[0].suppressed, 3);
	cr_assert_str_eq(text(&evs[0]), "suppressed=3");
	cr_assert_eq(drain(), 0, "reported once");
	/* the report took the new window's line */
	refuse_connections(1);
	cr_assert_eq(drain(), 0);
	cr_assert_eq(H.m.events_suppressed, 4);
}

Test(events, kinds_are_limited_apart)
{
	uint8_t big[64];
	size_t n;

	H.cfg.settings.log_event_burst = 1;
	h_start(&H);
	refuse_connections(3);
	/* a frame above max_frame on the open connection: another kind */
	n = 0;
	big[n++] = 0xff;
	big[n++] = 0xff;
	memcpy(big + n, "0100", 4);
	n += 4;
	cr_assert_eq(h_send_raw(&H, big, n), -TSW_E_FRAME_TOO_BIG);
	cr_assert_eq(drain(), 2);
	cr_assert_eq(evs[0].kind, TSW_EV_MAX_CONNS);
	cr_assert_eq(evs[1].kind, TSW_EV_FRAME_REFUSED);
	cr_assert_str_eq(
	    text(&evs[1]),
	    "side=acquirer conn=0 max_frame=8192 error=\"frame above the maximum size\"");
}

Test(events, a_full_queue_drops_counts_and_reports)
{
	H.cfg.settings.log_event_queue = 16;
	H.cfg.settings.log_event_burst = 1000;
	h_start(&H);
	refuse_connections(40);
	cr_assert_eq(H.m.events_dropped, 24);
	cr_assert_eq(drain(), 17, "16 queued, then the report of the drops");
	for (unsigned i = 0; i < 16; i++)
		cr_assert_eq(evs[i].kind, TSW_EV_MAX_CONNS, "event %u", i);
	cr_assert_eq(evs[16].kind, TSW_EV_EVENTS_DROPPED);
	cr_assert_eq(evs[16].n1, 24);
	cr_assert_str_eq(text(&evs[16]), "dropped=24 log_event_queue=16");
	cr_assert_eq(tsw_engine_event_level(TSW_EV_EVENTS_DROPPED), TSW_LOG_ERROR);
	cr_assert_eq(drain(), 0, "reported once");
	refuse_connections(1);
	cr_assert_eq(drain(), 1, "room again");
}

Test(events, sign_on_refused_names_the_code_and_the_retry)
{
	H.cfg.settings.issuer_timeout_ms = 700;
	cr_assert_eq(tsw_engine_new(&H.cfg, H.vault, H.state, &H.m, &H.e), 0);
	h_sign_on(&H, 0, "05");
	cr_assert_not(tsw_engine_ready(H.e));
	cr_assert_eq(drain(), 1);
	cr_assert_eq(evs[0].kind, TSW_EV_ISSUER_SIGNON_REFUSED);
	cr_assert_str_eq(text(&evs[0]), "link=0 issuer=0 what=sign_on rc=\"05\" retry_in_ms=700");
	/* the link goes down: the reconnect is scheduled within the backoff */
	tsw_engine_link_down(H.e, 0, H.now);
	cr_assert_eq(drain(), 1);
	cr_assert_eq(evs[0].kind, TSW_EV_ISSUER_RECONNECT_BACKOFF);
	cr_assert_leq(evs[0].n1, H.cfg.settings.reconnect_min_ms);
	cr_assert_geq(evs[0].n1, H.cfg.settings.reconnect_min_ms / 2);
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void wait_durable(uint64_t id)
{
	int64_t deadline = mono_ms() + DEADLINE_MS;

	cr_assert_neq(id, 0, "no reversal was put");
	waker = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	cr_assert_geq(waker, 0);
	cr_assert_eq(tsw_state_add_waker(H.state, waker), 0);
	while (!tsw_state_saf_durable(H.state, id)) {
		struct pollfd p = {.fd = waker, .events = POLLIN};
		int64_t left = deadline - mono_ms();
		uint64_t v;

		cr_assert_gt(left, 0, "reversal not durable within %d ms", DEADLINE_MS);
		if (poll(&p, 1, (int)left) == 1)
			cr_assert_eq(read(waker, &v, sizeof(v)), (ssize_t)sizeof(v));
	}
}

static const struct tsw_engine_event *find(unsigned n, unsigned kind)
{
	for (unsigned i = 0; i < n; i++)
		if (evs[i].kind == kind)
			return &evs[i];
	return NULL;
}

Test(events, a_reversal_sent_and_acked_by_its_id)
{
	const struct tsw_engine_event *ev;
	uint64_t id;
	unsigned n;
	char want[128];

	h_start(&H);
	n = h_auth(&H, body, sizeof(body), H_OK, "000042", 0);
	cr_assert_eq(h_send(&H, body, n), 0);
	h_collect(&H, TSW_EP_LINK, 0, iss);
	cr_assert_eq(iss->n, 1);
	tsw_engine_link_down(H.e, 0, H.now);
	h_collect_after_commit(&H, acq);
	cr_assert_str_eq(h_field(&acq->m[0], 39), "91");
	id = H.e->saf_last_id;
	wait_durable(id);
	n = drain();
	cr_assert_not_null(find(n, TSW_EV_ISSUER_RECONNECT_BACKOFF));
	cr_assert_null(find(n, TSW_EV_SAF_PUT_REFUSED), "the reversal was kept");
	H.now += 100 * 1000000ull; /* past the reconnect backoff */
	h_sign_on(&H, 0, "00");
	h_collect(&H, TSW_EP_LINK, 0, iss);
	cr_assert_eq(iss->n, 1);
	cr_assert_eq(memcmp(iss->m[0].mti, "0400", 4), 0);
	n = drain();
	ev = find(n, TSW_EV_SAF_SENT);
	cr_assert_not_null(ev);
	snprintf(want, sizeof(want), "link=0 issuer=0 id=\"%llu\" attempt=1",
		 (unsigned long long)id);
	cr_assert_str_eq(text(ev), want);
	cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[0], "00", 0), 0);
	n = drain();
	ev = find(n, TSW_EV_SAF_ACKED);
	cr_assert_not_null(ev);
	snprintf(want, sizeof(want), "link=0 issuer=0 id=\"%llu\" rc=\"00\"",
		 (unsigned long long)id);
	cr_assert_str_eq(text(ev), want);
}

Test(events, a_reversal_without_a_state_is_refused_loudly_token_masked)
{
	struct tsw_state *st = H.state;
	const struct tsw_engine_event *ev;
	char masked[32], want[256];
	unsigned n;

	H.state = NULL; /* the engine runs as with --no-state */
	h_start(&H);
	n = h_auth(&H, body, sizeof(body), H_OK, "004711", 0);
	cr_assert_eq(h_send(&H, body, n), 0);
	h_collect(&H, TSW_EP_LINK, 0, iss);
	cr_assert_eq(iss->n, 1);
	h_advance(&H, H.cfg.settings.issuer_timeout_ms);
	h_collect(&H, TSW_EP_ACQ, (uint32_t)H.slot, acq);
	cr_assert_eq(acq->n, 1);
	cr_assert_str_eq(h_field(&acq->m[0], 39), "91");
	n = drain();
	ev = find(n, TSW_EV_SAF_PUT_REFUSED);
	cr_assert_not_null(ev);
	cr_assert_eq(tsw_engine_event_level(ev->kind), TSW_LOG_ERROR);
	cr_assert_eq(tsw_mask_pan(h_tokens[H_OK].token, 16, masked, sizeof(masked)), 0);
	/* what an operator needs to find the sale: the acquirer's DE11, DE37
	 * and DE4, the STAN the issuer saw, the token masked */
	snprintf(want, sizeof(want),
		 "link=0 issuer=0 what=reversal reason=no_state token=%s stan=\"004711\" "
		 "rrn=\"123456789012\" "
		 "amount=\"000000000500\" switch_stan=\"%s\"",
		 masked, h_field(&iss->m[0], 11));
	cr_assert_str_eq(text(ev), want);
	cr_assert_null(strstr(text(ev), h_tokens[H_OK].token), "never the whole token");
	tsw_engine_free(H.e);
	H.e = NULL;
	H.state = st;
}

/* An approval its acquirer never gets is reversed, and the operator hears
 * which sale it was (token masked). */
Test(events, an_undelivered_approval_names_the_sale_and_what_was_done)
{
	const struct tsw_engine_event *ev;
	char masked[32], want[256];
	unsigned n;

	h_start(&H);
	n = h_auth(&H, body, sizeof(body), H_OK, "004721", 0);
	cr_assert_eq(h_send(&H, body, n), 0);
	h_collect(&H, TSW_EP_LINK, 0, iss);
	cr_assert_eq(iss->n, 1);
	tsw_engine_acq_close(H.e, (uint32_t)H.slot);
	cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[0], "00", 0), 0);
	n = drain();
	ev = find(n, TSW_EV_APPROVAL_UNDELIVERED);
	cr_assert_not_null(ev);
	cr_assert_eq(tsw_mask_pan(h_tokens[H_OK].token, 16, masked, sizeof(masked)), 0);
	snprintf(want, sizeof(want),
		 "link=0 issuer=0 action=reversed token=%s stan=\"004721\" rrn=\"123456789012\" "
		 "amount=\"000000000500\"",
		 masked);
	cr_assert_str_eq(text(ev), want);
	cr_assert_eq(tsw_engine_event_level(ev->kind), TSW_LOG_WARN);
}

/* A stand-in decision is an event of its own (rate-limited like any). */
Test(events, a_stand_in_decision_is_reported_with_its_result)
{
	const struct tsw_engine_event *ev;
	unsigned n;

	H.cfg.settings.standin_enabled = true;
	H.cfg.settings.standin_max_amount = 100; /* the auth's 500 is above it */
	h_start(&H);
	tsw_engine_link_down(H.e, 0, H.now);
	drain();
	n = h_auth(&H, body, sizeof(body), H_OK, "004731", 0);
	cr_assert_eq(h_send(&H, body, n), 0);
	h_collect(&H, TSW_EP_ACQ, (uint32_t)H.slot, acq);
	cr_assert_eq(acq->n, 1);
	cr_assert_str_eq(h_field(&acq->m[0], 39), "91");
	n = drain();
	ev = find(n, TSW_EV_STANDIN);
	cr_assert_not_null(ev);
	cr_assert_str_eq(ev->why, "declined_amount");
	cr_assert_str_eq(ev->stan, "004731");
}
