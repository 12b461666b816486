/* When a limited use comes back, and when it must not. A use is given
 * back once, and only when the issuer shows it gave the money back: a
 * reversal of the whole approval accepted with 00. Each test here is a
 * way the use came back twice or too early (src/engine/answer.c,
 * delivery.c, acq_reversal.c, saf.c). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_int.h"
#include "harness.h"
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

TestSuite(use_return, .init = setup, .fini = teardown, .timeout = 30);

#define ORIG_DE7 "1123031500"
#define DE32 "11111111111"

static uint32_t limited_used(void)
{
	struct tsw_state_token t;

	cr_assert_eq(tsw_state_get(H.state, h_tokens[H_LIMITED].token,
				   strlen(h_tokens[H_LIMITED].token), &t),
		     0);
	return t.used;
}

/* Runs loop iterations until the issuer link has output, then until
 * what it was forwarded before is durable (its approval would wait for
 * it); 10 s deadline. */
static void wait_link_output(void)
{
	int64_t deadline = h_real_ms() + 10000;

	for (;;) {
		h_collect(&H, TSW_EP_LINK, 0, iss);
		if (iss->n)
			break;
		h_wait_step(&H, deadline, "output to the issuer");
	}
	h_wait_records(&H);
}

/* A private copy of message i of iss (it survives the next collect). */
static void keep(unsigned i, uint8_t *buf, size_t cap, struct tsw_iso_msg *ret)
{
	cr_assert_lt(i, iss->n);
	cr_assert_leq(iss->m[i].len, cap);
	memcpy(buf, iss->m[i].buf, iss->m[i].len);
	cr_assert_eq(tsw_iso_decode(&H.prof, buf, iss->m[i].len, ret), 0);
}

static int find_mti(const char *mti)
{
	for (unsigned i = 0; i < iss->n; i++)
		if (memcmp(iss->m[i].mti, mti, 4) == 0)
			return (int)i;
	return -1;
}

/* A limited-use 0100 with acquirer STAN stan on connection H.slot, as
 * the issuer got it (in buf). */
static void forward_limited(const char *stan, uint8_t *buf, size_t cap, struct tsw_iso_msg *ret)
{
	size_t n = h_build(&H, body, sizeof(body), "0100", 2, h_tokens[H_LIMITED].token, 3,
			   "000000", 4, "000000000500", 7, ORIG_DE7, 11, stan, 14, "3012", 22,
			   "071", 32, DE32, 37, "123456789012", 41, "TERM0001", 42,
			   "MERCHANT0000001", 49, "840", 0);

	cr_assert_eq(h_send(&H, body, n), 0);
	wait_link_output();
	cr_assert_eq(iss->n, 1);
	keep(0, buf, cap, ret);
}

/* The acquirer's 0400 of the original with acquirer STAN orig (de95:
 * its DE95, NULL for a full reversal), answered rc at the issuer. */
static void acquirer_reversal(const char *stan, const char *orig, const char *de95,
			      const char *rc)
{
	char de90[43];
	size_t n;

	snprintf(de90, sizeof(de90), "0100%s%s%022d", orig, ORIG_DE7, 0);
	if (de95)
		n = h_build(&H, body, sizeof(body), "0400", 2, h_tokens[H_LIMITED].token, 3,
			    "000000", 4, "000000000500", 7, "1123031600", 11, stan, 32, DE32, 41,
			    "TERM0001", 90, de90, 95, de95, 0);
	else
		n = h_build(&H, body, sizeof(body), "0400", 2, h_tokens[H_LIMITED].token, 3,
			    "000000", 4, "000000000500", 7, "1123031600", 11, stan, 32, DE32, 41,
			    "TERM0001", 90, de90, 0);
	cr_assert_eq(h_send(&H, body, n), 0);
	h_collect(&H, TSW_EP_LINK, 0, iss);
	cr_assert_eq(iss->n, 1, "reversal %s not forwarded", stan);
	cr_assert_eq(H.m.acq_reversals_matched > 0, true, "DE90 did not match the original");
	cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[0], rc, 0), 0);
	h_collect(&H, TSW_EP_ACQ, (uint32_t)H.slot, acq);
	cr_assert_eq(acq->n, 1);
	cr_assert_str_eq(h_field(&acq->m[0], 39), rc);
}

/* The acquirer reversed the approval (use back), then its entry was
 * pushed out of the reversal table, then the approval turned out
 * undelivered: the switch's own reversal must not give the use back a
 * second time. */
Test(use_return, acquirer_reversal_then_eviction_then_undelivered_gives_back_once)
{
	struct tsw_iso_msg a, c, rev;
	uint8_t abuf[2048], cbuf[2048], rbuf[2048];
	int first, i;

	H.cfg.settings.acq_reversal_memory = 1; /* every original in the one slot */
	h_start(&H);
	first = H.slot;
	forward_limited("002001", abuf, sizeof(abuf), &a);
	cr_assert_eq(h_issuer_answer(&H, 0, &a, "00", 0), 0);
	cr_assert_eq(limited_used(), 1);
	/* a's approval sits unsent in the first connection's buffer */

	H.slot = tsw_engine_acq_open(H.e, H.now);
	cr_assert_geq(H.slot, 0);
	acquirer_reversal("002002", "002001", NULL, "00");
	cr_assert_eq(limited_used(), 0, "the acquirer's reversal gave the use back");

	/* another original of the token spends the use again, and takes
	 * the table's slot */
	forward_limited("002003", cbuf, sizeof(cbuf), &c);
	cr_assert_eq(h_issuer_answer(&H, 0, &c, "00", 0), 0);
	h_collect(&H, TSW_EP_ACQ, (uint32_t)H.slot, acq);
	cr_assert_eq(acq->n, 1);
	cr_assert_str_eq(h_field(&acq->m[0], 39), "00");
	cr_assert_eq(limited_used(), 1);

	/* a's approval never leaves: reversed by the switch */
	tsw_engine_acq_close(H.e, (uint32_t)first);
	cr_assert_eq(H.m.answers_undelivered_reversed, 1);
	wait_link_output();
	i = find_mti("0400");
	cr_assert_geq(i, 0);
	keep((unsigned)i, rbuf, sizeof(rbuf), &rev);
	cr_assert_eq(h_issuer_answer(&H, 0, &rev, "00", 0), 0);
	cr_assert_eq(H.m.saf_acked, 1);
	cr_assert_eq(limited_used(), 1, "a's use came back twice: c's use is free again");
}

/* The issuer declined the switch's reversal of an undelivered approval:
 * it still holds the money, the use stays spent. */
Test(use_return, declined_reversal_keeps_the_use_spent)
{
	struct tsw_iso_msg a, rev;
	uint8_t abuf[2048], rbuf[2048];
	struct tsw_state_stats ss;
	int i;

	h_start(&H);
	forward_limited("002101", abuf, sizeof(abuf), &a);
	tsw_engine_acq_close(H.e, (uint32_t)H.slot);
	cr_assert_eq(h_issuer_answer(&H, 0, &a, "00", 0), 0);
	cr_assert_eq(H.m.answers_undelivered_reversed, 1);
	wait_link_output();
	i = find_mti("0400");
	cr_assert_geq(i, 0);
	keep((unsigned)i, rbuf, sizeof(rbuf), &rev);
	cr_assert_eq(h_issuer_answer(&H, 0, &rev, "12", 0), 0);
	tsw_state_stats(H.state, &ss);
	cr_assert_eq(ss.saf_depth, 0, "a declined reversal is settled, not retried");
	cr_assert_eq(H.m.saf_declined, 1, "and counted as declined");
	cr_assert_eq(ss.saf_uses_returned, 0);
	cr_assert_eq(limited_used(), 1, "the use came back though the issuer kept the money");
}

/* A request that timed out may have been approved at the issuer: its use
 * stays spent until the issuer accepts the reversal. */
Test(use_return, timed_out_request_keeps_its_use_until_the_reversal_is_accepted)
{
	struct tsw_iso_msg a, rev;
	uint8_t abuf[2048], rbuf[2048];
	int i;

	h_start(&H);
	forward_limited("002201", abuf, sizeof(abuf), &a);
	h_advance(&H, H.cfg.settings.issuer_timeout_ms + 1);
	h_collect_after_commit(&H, acq);
	cr_assert_eq(acq->n, 1);
	cr_assert_str_eq(h_field(&acq->m[0], 39), "91");
	cr_assert_eq(limited_used(), 1, "the use was given back while the outcome is unknown");
	h_collect(&H, TSW_EP_LINK, 0, iss);
	i = find_mti("0400");
	cr_assert_geq(i, 0, "the reversal of the timed-out request");
	keep((unsigned)i, rbuf, sizeof(rbuf), &rev);
	cr_assert_eq(h_issuer_answer(&H, 0, &rev, "00", 0), 0);
	cr_assert_eq(H.m.saf_acked, 1);
	cr_assert_eq(limited_used(), 0, "the accepted reversal gives it back");
}

/* A partial reversal (DE95: the amount that stays) leaves a sale behind:
 * the use stays spent; the full reversal after it gives it back. */
Test(use_return, partial_reversal_keeps_the_use_the_full_one_gives_it_back)
{
	struct tsw_iso_msg a;
	uint8_t abuf[2048];
	char de95[43];

	h_start(&H);
	forward_limited("002301", abuf, sizeof(abuf), &a);
	cr_assert_eq(h_issuer_answer(&H, 0, &a, "00", 0), 0);
	h_collect(&H, TSW_EP_ACQ, (uint32_t)H.slot, acq);
	cr_assert_str_eq(h_field(&acq->m[0], 39), "00");
	cr_assert_eq(limited_used(), 1);

	snprintf(de95, sizeof(de95), "%012d%030d", 300, 0);
	acquirer_reversal("002302", "002301", de95, "00");
	cr_assert_eq(limited_used(), 1, "a partial reversal gave the whole use back");
	/* DE95 of zeros is a full reversal */
	snprintf(de95, sizeof(de95), "%042d", 0);
	acquirer_reversal("002303", "002301", de95, "00");
	cr_assert_eq(limited_used(), 0);
}

/* The approval's end in the output is taken before the connection goes
 * on with input that waited behind it: a engine__decline written right after it
 * does not make a sent approval look unsent. */
Test(use_return, approval_sent_before_a_later_decline_is_not_reversed)
{
	struct tsw_endpoint ep;
	struct tsw_iso_msg a;
	uint8_t abuf[2048];
	const uint8_t *data;
	size_t n, len, first;

	H.cfg.settings.max_inflight_per_conn = 1;
	h_start(&H);
	ep = (struct tsw_endpoint){.kind = TSW_EP_ACQ, .slot = (uint32_t)H.slot};
	n = h_auth(&H, body, sizeof(body), H_OK, "002401", 0);
	cr_assert_eq(h_send(&H, body, n), 0);
	h_collect(&H, TSW_EP_LINK, 0, iss);
	cr_assert_eq(iss->n, 1);
	keep(0, abuf, sizeof(abuf), &a);
	/* waits behind the first: the connection has one request in flight */
	n = h_auth(&H, body, sizeof(body), H_SUSPENDED, "002402", 0);
	cr_assert_eq(h_send(&H, body, n), 0);
	cr_assert(tsw_engine_acq_paused(H.e, (uint32_t)H.slot));

	cr_assert_eq(h_issuer_answer(&H, 0, &a, "00", 0), 0);
	tsw_engine_out(H.e, ep, &data, &len);
	cr_assert_geq(len, 2);
	first = 2 + ((size_t)data[0] << 8 | data[1]);
	cr_assert_gt(len, first, "the decline was written behind the approval");
	tsw_engine_sent(H.e, ep, first); /* the approval left, the engine__decline not */
	tsw_engine_acq_close(H.e, (uint32_t)H.slot);
	cr_assert_eq(H.m.answers_undelivered_reversed, 0, "a delivered approval was reversed");
	cr_assert_eq(H.m.saf_depth, 0);
}

/* The acquirer reused the trace (DE11, DE7) of an original it had
 * reversed: the new original takes the same table entry. The first
 * approval, undelivered, must not take the new one's flag: that would
 * give the new sale's use back. */
Test(use_return, a_new_original_under_a_reused_trace_keeps_its_own_use)
{
	struct tsw_iso_msg a, c, rev;
	uint8_t abuf[2048], cbuf[2048], rbuf[2048];
	int first, i;

	h_start(&H);
	first = H.slot;
	forward_limited("002501", abuf, sizeof(abuf), &a);
	cr_assert_eq(h_issuer_answer(&H, 0, &a, "00", 0), 0);
	/* a's approval sits unsent on the first connection */
	H.slot = tsw_engine_acq_open(H.e, H.now);
	cr_assert_geq(H.slot, 0);
	acquirer_reversal("002502", "002501", NULL, "00");
	cr_assert_eq(limited_used(), 0);
	/* the same trace again, on the second connection: approved, sent */
	forward_limited("002501", cbuf, sizeof(cbuf), &c);
	cr_assert_eq(h_issuer_answer(&H, 0, &c, "00", 0), 0);
	h_collect(&H, TSW_EP_ACQ, (uint32_t)H.slot, acq);
	cr_assert_str_eq(h_field(&acq->m[0], 39), "00");
	cr_assert_eq(limited_used(), 1);

	tsw_engine_acq_close(H.e, (uint32_t)first);
	wait_link_output();
	i = find_mti("0400");
	cr_assert_geq(i, 0);
	keep((unsigned)i, rbuf, sizeof(rbuf), &rev);
	cr_assert_eq(h_issuer_answer(&H, 0, &rev, "00", 0), 0);
	cr_assert_eq(limited_used(), 1, "c stands but its use is free again");
}

/* A reversal whose DE90 names nothing known is forwarded as it came and
 * gives nothing back, even when an earlier reversal with the same trace
 * did name the original. */
Test(use_return, an_unmatched_reversal_gives_nothing_back)
{
	struct tsw_iso_msg a;
	uint8_t abuf[2048];
	char de95[43], de90[43];
	uint64_t matched;
	size_t n;

	h_start(&H);
	forward_limited("002601", abuf, sizeof(abuf), &a);
	cr_assert_eq(h_issuer_answer(&H, 0, &a, "00", 0), 0);
	h_collect(&H, TSW_EP_ACQ, (uint32_t)H.slot, acq);
	cr_assert_str_eq(h_field(&acq->m[0], 39), "00");
	snprintf(de95, sizeof(de95), "%012d%030d", 499, 0);
	acquirer_reversal("002602", "002601", de95, "00");
	cr_assert_eq(limited_used(), 1);
	matched = H.m.acq_reversals_matched;

	/* the same trace as the partial one, naming an unknown original */
	snprintf(de90, sizeof(de90), "0100%s%s%022d", "009999", ORIG_DE7, 0);
	n = h_build(&H, body, sizeof(body), "0400", 2, h_tokens[H_LIMITED].token, 3, "000000", 4,
		    "000000000500", 7, "1123031600", 11, "002602", 32, DE32, 41, "TERM0001", 90,
		    de90, 0);
	cr_assert_eq(h_send(&H, body, n), 0);
	h_collect(&H, TSW_EP_LINK, 0, iss);
	cr_assert_eq(iss->n, 1);
	cr_assert_eq(H.m.acq_reversals_matched, matched, "an unknown DE90 matched");
	cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[0], "00", 0), 0);
	cr_assert_eq(limited_used(), 1, "the unmatched reversal gave the use back");
}

/* 25 (original not found) to the reversal of a request that timed out:
 * the issuer never had the original, so it holds no money: the use comes
 * back. To the reversal of an approval the switch saw, 25 keeps it spent
 * (the issuer approved it: its answer about the original is wrong). */
Test(use_return, original_not_found_gives_back_only_what_was_never_approved)
{
	struct tsw_iso_msg a, rev;
	uint8_t abuf[2048], rbuf[2048];
	int i;

	h_start(&H);
	forward_limited("002701", abuf, sizeof(abuf), &a);
	h_advance(&H, H.cfg.settings.issuer_timeout_ms + 1);
	h_collect_after_commit(&H, acq);
	cr_assert_str_eq(h_field(&acq->m[0], 39), "91");
	h_collect(&H, TSW_EP_LINK, 0, iss);
	i = find_mti("0400");
	cr_assert_geq(i, 0);
	keep((unsigned)i, rbuf, sizeof(rbuf), &rev);
	cr_assert(!tsw_iso_has(&rev, 38), "a reversal of an unknown outcome has no DE38");
	cr_assert_eq(h_issuer_answer(&H, 0, &rev, "25", 0), 0);
	cr_assert_eq(limited_used(), 0, "the issuer never had the original, yet the use stays spent");

	/* an approval to a closed connection, its reversal answered 25 */
	forward_limited("002702", abuf, sizeof(abuf), &a);
	tsw_engine_acq_close(H.e, (uint32_t)H.slot);
	cr_assert_eq(h_issuer_answer(&H, 0, &a, "00", 38, "A1B2C3", 0), 0);
	wait_link_output();
	i = find_mti("0400");
	cr_assert_geq(i, 0);
	keep((unsigned)i, rbuf, sizeof(rbuf), &rev);
	cr_assert_str_eq(h_field(&rev, 38), "A1B2C3");
	cr_assert_eq(h_issuer_answer(&H, 0, &rev, "25", 0), 0);
	cr_assert_eq(limited_used(), 1, "an approved original's use came back on a 25");
}

/* A backend that closes a connection while a write is in flight tells
 * the engine how much had left before it: the approvals in those bytes
 * are delivered, the ones after them reversed. */
Test(use_return, close_with_bytes_sent_reverses_only_what_did_not_leave)
{
	struct tsw_endpoint ep;
	struct tsw_iso_msg a, b;
	uint8_t abuf[2048], bbuf[2048];
	const uint8_t *data;
	size_t n, len, first;

	h_start(&H);
	ep = (struct tsw_endpoint){.kind = TSW_EP_ACQ, .slot = (uint32_t)H.slot};
	n = h_auth(&H, body, sizeof(body), H_OK, "002801", 0);
	cr_assert_eq(h_send(&H, body, n), 0);
	n = h_auth(&H, body, sizeof(body), H_OK, "002802", 0);
	cr_assert_eq(h_send(&H, body, n), 0);
	h_collect(&H, TSW_EP_LINK, 0, iss);
	cr_assert_eq(iss->n, 2);
	keep(0, abuf, sizeof(abuf), &a);
	keep(1, bbuf, sizeof(bbuf), &b);
	cr_assert_eq(h_issuer_answer(&H, 0, &a, "00", 0), 0);
	cr_assert_eq(h_issuer_answer(&H, 0, &b, "00", 0), 0);
	tsw_engine_out(H.e, ep, &data, &len);
	first = 2 + ((size_t)data[0] << 8 | data[1]);
	cr_assert_gt(len, first);
	tsw_engine_acq_close_sent(H.e, (uint32_t)H.slot, first);
	cr_assert_eq(H.m.answers_undelivered_reversed, 1, "only the second approval is reversed");
	cr_assert_eq(tsw_engine_inflight(H.e), 0);
}
