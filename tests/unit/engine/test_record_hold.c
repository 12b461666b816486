/* A request that records something in the state before it may go on (a
 * limited use, a card's ATC) is forwarded at once; the issuer's approval
 * is held until that record is durable. The acquirer never gets an
 * approval whose record is not on disk: when the state's writer does not
 * commit within saf.durable_wait_ms, or degrades, the approval is
 * reversed and the acquirer gets 96 STATE_UNAVAILABLE once that reversal
 * is durable. A decline goes out at once (nothing moved). The state's
 * commits are stalled from outside (h_state_stall: another process holds
 * the environment's writer lock). White-box: reads the metrics shard. */
#include <criterion/criterion.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "engine_int.h"
#include "harness.h"
#include "tsw/authz.h"
#include "tsw/error.h"
#include "tsw/state.h"

static struct h H;
static struct h_msgs *acq, *iss;
static uint8_t body[4096];

static void setup(void)
{
	h_init(&H);
	acq = calloc(1, sizeof(*acq));
	iss = calloc(1, sizeof(*iss));
	cr_assert(acq && iss);
}

static void teardown(void)
{
	h_fini(&H);
	free(acq);
	free(iss);
}

TestSuite(record_hold, .init = setup, .fini = teardown, .timeout = 30);

static unsigned count_rc(const struct h_msgs *out, const char *rc)
{
	unsigned n = 0;

	for (unsigned i = 0; i < out->n; i++)
		n += strcmp(h_field(&out->m[i], 39), rc) == 0;
	return n;
}

/* Sends a limited-use 0100 (acquirer STAN stan) while the state is
 * stalled: it reaches the issuer before its use is durable. Leaves the
 * issuer's copy in iss->m[0]. */
static void send_limited_stalled(const char *stan)
{
	size_t n = h_auth(&H, body, sizeof(body), H_LIMITED, stan, 0);

	h_state_stall(&H);
	cr_assert_eq(h_send(&H, body, n), 0);
	h_collect(&H, TSW_EP_LINK, 0, iss);
	cr_assert_eq(h_keep_mti(iss, "0100"), 1, "not forwarded before its use is durable");
	cr_assert_str_eq(h_field(&iss->m[0], 2), h_tokens[H_LIMITED].pan);
}

/* Collects the acquirer's output, waiting on the state's commits (10 s
 * deadline), until an answer is there. */
static void wait_answer(void)
{
	int64_t deadline = h_real_ms() + 10000;

	for (;;) {
		h_collect_acq_clean(&H, acq);
		if (acq->n)
			return;
		h_wait_step(&H, deadline, "the answer to the acquirer");
	}
}

Test(record_hold, limited_use_is_forwarded_before_its_use_is_durable_and_approved_after)
{
	h_start(&H);
	send_limited_stalled("001001");
	cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[0], "00", 0), 0);
	h_collect(&H, TSW_EP_ACQ, (uint32_t)H.slot, acq);
	cr_assert_eq(acq->n, 0, "an approval went out before its use was durable");
	cr_assert_eq(H.m.answers_awaiting_record, 1);
	h_advance(&H, 500);
	h_collect(&H, TSW_EP_ACQ, (uint32_t)H.slot, acq);
	cr_assert_eq(acq->n, 0, "an approval went out before its use was durable");
	h_state_unstall(&H);
	wait_answer();
	cr_assert_eq(acq->n, 1);
	cr_assert_str_eq(h_field(&acq->m[0], 39), "00");
	cr_assert_str_eq(h_field(&acq->m[0], 11), "001001");
	cr_assert_eq(H.m.answers_awaiting_record, 0);
	cr_assert_eq(H.m.answers_record_timeouts, 0);
	cr_assert_eq(H.m.answers_undelivered_reversed, 0);
	cr_assert_eq(tsw_engine_inflight(H.e), 0);
}

/* The writer does not commit within saf.durable_wait_ms: no approval;
 * the approval is reversed and the 96 waits for that reversal's commit. */
Test(record_hold, approval_whose_use_is_not_durable_in_time_is_reversed_and_answered_96)
{
	unsigned i;

	h_start(&H);
	send_limited_stalled("001011");
	cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[0], "00", 38, "AP1234", 0), 0);
	h_advance(&H, H.cfg.settings.saf_durable_wait_ms - 1);
	h_collect(&H, TSW_EP_ACQ, (uint32_t)H.slot, acq);
	cr_assert_eq(acq->n, 0);
	cr_assert_eq(H.m.answers_undelivered_reversed, 0);
	h_advance(&H, 1);
	cr_assert_eq(H.m.answers_record_timeouts, 1);
	cr_assert_eq(H.m.answers_undelivered_reversed, 1, "the approval is not reversed");
	h_collect(&H, TSW_EP_ACQ, (uint32_t)H.slot, acq);
	cr_assert_eq(acq->n, 0, "answered before the reversal was durable");
	h_state_unstall(&H);
	h_collect_after_commit(&H, acq);
	cr_assert_eq(acq->n, 1);
	cr_assert_str_eq(h_field(&acq->m[0], 39), "96");
	cr_assert_str_eq(h_field(&acq->m[0], 44), "STATE_UNAVAILABLE");
	cr_assert_eq(count_rc(acq, "00"), 0);
	cr_assert_eq(H.m.declines[TSW_AUTHZ_STATE_UNAVAILABLE], 1);
	cr_assert_eq(H.m.answers_held_timeouts, 0);
	/* the reversal names the approval */
	h_collect(&H, TSW_EP_LINK, 0, iss);
	for (i = 0; i < iss->n && memcmp(iss->m[i].mti, "0400", 4) != 0; i++)
		;
	cr_assert_lt(i, iss->n, "no reversal reached the issuer");
	cr_assert_str_eq(h_field(&iss->m[i], 38), "AP1234");
	cr_assert_eq(tsw_engine_inflight(H.e), 0);
}

/* Queues SAF puts (1000 bytes each) past a 1 MiB map while the writer is
 * stalled: its next commit fails and it degrades. */
static void queue_past_the_map(void)
{
	uint8_t msg[1000];
	uint64_t id;

	memset(msg, 'x', sizeof(msg));
	for (unsigned i = 0; i < 1200; i++)
		cr_assert_eq(tsw_state_saf_put(H.state, 0, msg, sizeof(msg), &id), 0);
}

/* The writer degrades with the use still unwritten: the held approval
 * does not wait out saf.durable_wait_ms; it is reversed at once, and the
 * 96 goes after that reversal (held in memory by the degraded writer)
 * had its own wait. */
Test(record_hold, approval_whose_use_the_degraded_writer_holds_back_is_reversed_at_once)
{
	int64_t deadline;

	H.scfg.map_size_mb = 1;
	h_state_reopen(&H);
	h_start(&H);
	h_state_stall(&H);
	queue_past_the_map();
	/* queued behind the puts that do not fit: it is never written */
	cr_assert_eq(h_send(&H, body, h_auth(&H, body, sizeof(body), H_LIMITED, "001021", 0)), 0);
	h_collect(&H, TSW_EP_LINK, 0, iss);
	cr_assert_eq(h_keep_mti(iss, "0100"), 1, "not forwarded before its use is durable");
	cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[0], "00", 0), 0);
	h_collect(&H, TSW_EP_ACQ, (uint32_t)H.slot, acq);
	cr_assert_eq(acq->n, 0);
	h_state_unstall(&H);
	deadline = h_real_ms() + 10000;
	while (!tsw_state_degraded(H.state))
		h_wait_step(&H, deadline, "the writer's degradation");
	h_advance(&H, 0);
	cr_assert_eq(H.m.answers_undelivered_reversed, 1, "not reversed at once");
	cr_assert_eq(H.m.answers_record_timeouts, 0);
	h_collect(&H, TSW_EP_ACQ, (uint32_t)H.slot, acq);
	cr_assert_eq(acq->n, 0, "answered before the reversal was durable");
	h_advance(&H, H.cfg.settings.saf_durable_wait_ms);
	h_collect_acq_clean(&H, acq);
	cr_assert_eq(acq->n, 1);
	cr_assert_str_eq(h_field(&acq->m[0], 39), "96");
	cr_assert_str_eq(h_field(&acq->m[0], 44), "STATE_UNAVAILABLE");
	cr_assert_eq(H.m.answers_held_timeouts, 1);
}

/* A decline moved nothing: it goes out at once, the use is given back. */
Test(record_hold, decline_before_the_use_is_durable_goes_out_at_once)
{
	h_start(&H);
	send_limited_stalled("001031");
	cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[0], "05", 0), 0);
	h_collect_acq_clean(&H, acq);
	cr_assert_eq(acq->n, 1);
	cr_assert_str_eq(h_field(&acq->m[0], 39), "05");
	cr_assert_eq(H.m.answers_awaiting_record, 0);
	/* the use came back: the next one is forwarded */
	cr_assert_eq(h_send(&H, body, h_auth(&H, body, sizeof(body), H_LIMITED, "001032", 0)), 0);
	h_collect(&H, TSW_EP_LINK, 0, iss);
	cr_assert_eq(h_keep_mti(iss, "0100"), 1, "the declined use was not given back");
}

/* The use is reserved in memory when the request is forwarded: a second
 * request on the same single-use token meanwhile is declined 65. */
Test(record_hold, second_use_while_the_first_is_unwritten_is_declined)
{
	h_start(&H);
	send_limited_stalled("001041");
	cr_assert_eq(h_send(&H, body, h_auth(&H, body, sizeof(body), H_LIMITED, "001042", 0)), 0);
	h_collect_acq_clean(&H, acq);
	cr_assert_eq(acq->n, 1);
	cr_assert_str_eq(h_field(&acq->m[0], 39), "65");
	h_collect(&H, TSW_EP_LINK, 0, iss);
	cr_assert_eq(h_keep_mti(iss, "0100"), 0, "a second use was forwarded");
}

/* The acquirer's connection closes while its approval waits for the
 * record: the approval is reversed, nothing is written. */
Test(record_hold, approval_held_for_a_closed_connection_is_reversed)
{
	h_start(&H);
	send_limited_stalled("001051");
	cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[0], "00", 0), 0);
	tsw_engine_loop_begin(H.e, H.now);
	tsw_engine_acq_close(H.e, (uint32_t)H.slot);
	tsw_engine_loop_end(H.e);
	h_advance(&H, 0);
	cr_assert_eq(H.m.answers_undelivered_reversed, 1, "the approval is not reversed");
	cr_assert_eq(H.m.answers_awaiting_record, 0);
	cr_assert_eq(H.m.answers_conn_gone, 1);
	h_state_unstall(&H);
	cr_assert_eq(tsw_engine_inflight(H.e), 0);
}

/* The acquirer that hears nothing repeats its request (same DE11 and DE7,
 * 0100 or 0101): while the original is at the issuer, and while its
 * approval waits for the record, the repeat is answered 94 and never
 * forwarded as a second authorization. */
Test(record_hold, a_repeat_while_forwarded_or_held_is_answered_94_not_forwarded_again)
{
	size_t n;

	h_start(&H);
	send_limited_stalled("001091");
	n = h_auth(&H, body, sizeof(body), H_LIMITED, "001091", 0);
	cr_assert_eq(h_send(&H, body, n), 0);
	h_collect(&H, TSW_EP_ACQ, (uint32_t)H.slot, acq);
	cr_assert_eq(acq->n, 1, "the repeat answered while the original is at the issuer");
	cr_assert_str_eq(h_field(&acq->m[0], 39), "94");
	cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[0], "00", 0), 0);
	cr_assert_eq(H.m.answers_awaiting_record, 1);
	cr_assert_eq(h_send(&H, body, n), 0);
	h_collect(&H, TSW_EP_ACQ, (uint32_t)H.slot, acq);
	cr_assert_eq(acq->n, 1, "the repeat answered while the approval waits");
	cr_assert_str_eq(h_field(&acq->m[0], 39), "94");
	h_collect(&H, TSW_EP_LINK, 0, iss);
	cr_assert_eq(h_keep_mti(iss, "0100"), 0, "a repeat forwarded as a second authorization");
	cr_assert_eq(H.m.duplicates_refused, 2);
	h_state_unstall(&H);
	wait_answer();
	cr_assert_eq(acq->n, 1);
	cr_assert_str_eq(h_field(&acq->m[0], 39), "00", "the original's approval, once");
}
