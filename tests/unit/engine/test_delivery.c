/* What the acquirer is owed, and when (src/engine/delivery.c): an
 * approval the acquirer never gets is reversed, and its limited use is
 * given back only once the issuer acknowledges that reversal; answers
 * that leave a reversal behind wait for its commit; a worker that exits
 * reverses what is still in flight. White-box: reads the engine's
 * metrics shard and its last SAF id. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_int.h"
#include "harness.h"
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

TestSuite(delivery, .init = setup, .fini = teardown, .timeout = 30);

/* Runs loop iterations (no clock advance) until the issuer link has
 * output, waking on the state's commits; 10 s deadline. */
static void wait_link_output(void)
{
	int64_t deadline = h_real_ms() + 10000;

	for (;;) {
		h_collect(&H, TSW_EP_LINK, 0, iss);
		if (iss->n)
			return;
		h_wait_step(&H, deadline, "output to the issuer");
	}
}

static unsigned count_mti(const struct h_msgs *out, const char *mti)
{
	unsigned i, n = 0;

	for (i = 0; i < out->n; i++)
		n += memcmp(out->m[i].mti, mti, 4) == 0;
	return n;
}

/* Index of the first message of out with mti, or fails. */
static unsigned find_mti(const struct h_msgs *out, const char *mti)
{
	unsigned i;

	for (i = 0; i < out->n; i++)
		if (memcmp(out->m[i].mti, mti, 4) == 0)
			return i;
	cr_assert_fail("no %s among %u messages", mti, out->n);
	return 0;
}

/* A private copy of message i of out (it survives the next collect). */
static void keep(const struct h_msgs *out, unsigned i, uint8_t *buf, size_t cap,
		 struct tsw_iso_msg *ret)
{
	cr_assert_leq(out->m[i].len, cap);
	memcpy(buf, out->m[i].buf, out->m[i].len);
	cr_assert_eq(tsw_iso_decode(&H.prof, buf, out->m[i].len, ret), 0);
}

/* Sends a 0100 of token t on the open connection and returns, decoded
 * into orig, the copy the issuer got (limited-use requests are parked
 * until their use is durable: waits for it). */
static void forward(enum h_token t, const char *stan, uint8_t *buf, size_t cap,
		    struct tsw_iso_msg *orig)
{
	size_t n = h_auth(&H, body, sizeof(body), t, stan, 0);

	cr_assert_eq(h_send(&H, body, n), 0);
	wait_link_output();
	keep(iss, find_mti(iss, "0100"), buf, cap, orig);
}

static void expect_names_original(const struct tsw_iso_msg *rev, const struct tsw_iso_msg *orig)
{
	char want[43];

	snprintf(want, sizeof(want), "0100%s%s0000000000000000000000", h_field(orig, 11),
		 h_field(orig, 7));
	cr_assert_str_eq(h_field(rev, 90), want, "DE90 names the original as the issuer saw it");
}

/* What the acquirer gets for a limited-use auth now: 65 (use spent),
 * or the request is forwarded (returns 1). */
static int limited_forwarded(const char *stan)
{
	size_t n = h_auth(&H, body, sizeof(body), H_LIMITED, stan, 0);
	int64_t deadline = h_real_ms() + 10000;

	cr_assert_eq(h_send(&H, body, n), 0);
	for (;;) {
		h_collect(&H, TSW_EP_LINK, 0, iss);
		if (count_mti(iss, "0100"))
			return 1;
		h_collect(&H, TSW_EP_ACQ, (uint32_t)H.slot, acq);
		if (acq->n) {
			cr_assert_str_eq(h_field(&acq->m[0], 39), "65");
			return 0;
		}
		h_wait_step(&H, deadline, "the limited-use request's answer or forward");
	}
}

Test(delivery, approval_for_a_closed_connection_is_reversed_and_the_use_given_back_at_the_ack)
{
	struct tsw_iso_msg orig, rev;
	uint8_t obuf[2048], rbuf[2048];
	struct tsw_state_stats ss;

	h_start(&H);
	forward(H_LIMITED, "000701", obuf, sizeof(obuf), &orig);
	tsw_engine_acq_close(H.e, (uint32_t)H.slot);
	cr_assert_eq(h_issuer_answer(&H, 0, &orig, "00", 38, "A1B2C3", 0), 0);
	cr_assert_eq(H.m.answers_conn_gone, 1);
	cr_assert_eq(H.m.answers_undelivered_reversed, 1);
	cr_assert_eq(H.m.answers_undelivered_unqueued, 0);

	wait_link_output();
	cr_assert_eq(count_mti(iss, "0400"), 1, "exactly one reversal");
	keep(iss, find_mti(iss, "0400"), rbuf, sizeof(rbuf), &rev);
	cr_assert_str_eq(h_field(&rev, 2), h_tokens[H_LIMITED].pan);
	cr_assert_str_eq(h_field(&rev, 38), "A1B2C3", "the reversal names the approval code");
	expect_names_original(&rev, &orig);

	/* the issuer holds the money until it acknowledges the reversal */
	H.slot = tsw_engine_acq_open(H.e, H.now);
	cr_assert_geq(H.slot, 0);
	cr_assert_eq(limited_forwarded("000702"), 0, "the use is spent before the ack");
	cr_assert_eq(h_issuer_answer(&H, 0, &rev, "00", 0), 0);
	cr_assert_eq(H.m.saf_acked, 1);
	tsw_state_stats(H.state, &ss);
	cr_assert_eq(ss.saf_uses_returned, 1);
	cr_assert_eq(limited_forwarded("000703"), 1, "the ack gave the use back");
}

Test(delivery, approval_still_in_the_buffer_of_a_closed_connection_is_reversed_a_sent_one_not)
{
	struct tsw_iso_msg a, b, rev;
	uint8_t abuf[2048], bbuf[2048], rbuf[2048];

	h_start(&H);
	forward(H_OK, "000711", abuf, sizeof(abuf), &a);
	forward(H_OK, "000712", bbuf, sizeof(bbuf), &b);
	cr_assert_eq(h_issuer_answer(&H, 0, &a, "00", 0), 0);
	h_collect(&H, TSW_EP_ACQ, (uint32_t)H.slot, acq); /* a's approval is sent */
	cr_assert_eq(acq->n, 1);
	cr_assert_eq(h_issuer_answer(&H, 0, &b, "00", 0), 0);
	cr_assert_eq(tsw_engine_inflight(H.e), 1, "b is in flight until its bytes leave");
	/* b's approval is written, never sent: the peer goes away */
	tsw_engine_acq_close(H.e, (uint32_t)H.slot);
	cr_assert_eq(H.m.answers_undelivered_reversed, 1);
	cr_assert_eq(tsw_engine_inflight(H.e), 0);
	wait_link_output();
	cr_assert_eq(count_mti(iss, "0400"), 1);
	keep(iss, find_mti(iss, "0400"), rbuf, sizeof(rbuf), &rev);
	expect_names_original(&rev, &b);
}

Test(delivery, declines_and_sent_approvals_leave_nothing_behind)
{
	struct tsw_iso_msg a, b;
	uint8_t abuf[2048], bbuf[2048];

	h_start(&H);
	forward(H_OK, "000721", abuf, sizeof(abuf), &a);
	forward(H_OK, "000722", bbuf, sizeof(bbuf), &b);
	cr_assert_eq(h_issuer_answer(&H, 0, &a, "05", 0), 0);
	cr_assert_eq(h_issuer_answer(&H, 0, &b, "00", 0), 0);
	h_collect(&H, TSW_EP_ACQ, (uint32_t)H.slot, acq);
	cr_assert_eq(acq->n, 2);
	tsw_engine_acq_close(H.e, (uint32_t)H.slot);
	cr_assert_eq(H.m.answers_undelivered_reversed, 0);
	cr_assert_eq(tsw_engine_inflight(H.e), 0);
	cr_assert_eq(H.m.saf_depth, 0);
}

/* A peer that does not read: the answer that no longer fits closes the
 * connection, and every approval that did not leave is reversed. */
Test(delivery, slow_consumer_closed_every_unsent_approval_is_reversed)
{
	static char big[901];
	enum { N = 24 };
	static uint8_t bufs[N][2048];
	struct tsw_iso_msg orig[N];
	uint32_t slot;
	unsigned i, closes = 0;

	memset(big, 'A', sizeof(big) - 1);
	H.cfg.settings.out_buf_bytes = 4096; /* raised to two frames (16 KiB) */
	H.cfg.settings.max_inflight_per_conn = N;
	h_start(&H);
	for (i = 0; i < N; i++) {
		char stan[7];

		snprintf(stan, sizeof(stan), "0007%02u", 30 + i);
		forward(H_OK, stan, bufs[i], sizeof(bufs[i]), &orig[i]);
	}
	for (i = 0; i < N; i++)
		cr_assert_eq(h_issuer_answer(&H, 0, &orig[i], "00", 63, big, 0), 0);
	cr_assert_geq(H.m.slow_consumer_closes, 1, "%lu", (unsigned long)H.m.slow_consumer_closes);
	while (tsw_engine_next_close(H.e, &slot)) {
		tsw_engine_acq_close(H.e, slot);
		closes++;
	}
	cr_assert_eq(closes, 1);
	cr_assert_eq(H.m.answers_undelivered_reversed, N, "every approval reversed");
	cr_assert_eq(tsw_engine_inflight(H.e), 0);
}

/* A worker that exits (drain deadline) leaves nothing unrecorded: the
 * request still at the issuer and the approval still in a buffer both
 * get their reversal, durable once the state closes. */
Test(delivery, shutdown_reverses_what_is_in_flight)
{
	struct tsw_iso_msg a, b;
	uint8_t abuf[2048], bbuf[2048];
	struct tsw_state_stats ss;

	h_start(&H);
	forward(H_OK, "000741", abuf, sizeof(abuf), &a);
	forward(H_OK, "000742", bbuf, sizeof(bbuf), &b);
	cr_assert_eq(h_issuer_answer(&H, 0, &a, "00", 0), 0); /* written, not sent */
	tsw_engine_shutdown(H.e, H.now);
	cr_assert_eq(H.m.answers_undelivered_reversed, 1);
	tsw_state_stats(H.state, &ss);
	cr_assert_eq(ss.saf_depth, 2, "a's approval and b's unknown outcome");
	cr_assert_eq(tsw_engine_inflight(H.e), 0);
	h_state_reopen(&H);
	tsw_state_stats(H.state, &ss);
	cr_assert_eq(ss.saf_loaded, 2, "both reversals were written by the state's close");
}
