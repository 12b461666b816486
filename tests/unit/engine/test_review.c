/* The engine's answers to the review's findings (white-box: the engine's
 * internal header): card data in issuer answers, STAN reuse and answer
 * matching, approvals answered 96, the park timeout, approval codes,
 * repeat MTIs, the STAN span per worker, output buffer compaction. Every
 * answer to the acquirer is scanned for PAN digits. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "answer_guard.h"
#include "engine_int.h"
#include "harness.h"
#include "use.h"
#include "tsw/authz.h"
#include "tsw/error.h"

static struct h H;
static struct h_msgs *acq, *iss;
static uint8_t body[4096];

static void setup(void)
{
	h_init(&H);
	acq = calloc(1, sizeof(*acq));
	iss = calloc(1, sizeof(*iss));
}

static void teardown(void)
{
	h_fini(&H);
	free(acq);
	free(iss);
}

static void collect_acq(void)
{
	unsigned i;

	h_collect(&H, TSW_EP_ACQ, (uint32_t)H.slot, acq);
	for (i = 0; i < H_TOKEN_MAX; i++)
		cr_assert_not(h_contains_pan(acq->buf, acq->len, h_tokens[i].pan),
			      "PAN digits in an acquirer answer");
}

static void collect_iss(uint32_t link)
{
	h_collect(&H, TSW_EP_LINK, link, iss);
}

/* Keeps the 0100s of iss (reversals queued by the engine go out too);
 * returns how many. */
static unsigned only_requests(void)
{
	unsigned i, k = 0;

	for (i = 0; i < iss->n; i++)
		if (memcmp(iss->m[i].mti, "0100", 4) == 0)
			iss->m[k++] = iss->m[i];
	iss->n = k;
	return k;
}

/* Sends a limited-use request and waits (deadline) until it is forwarded
 * or answered locally; returns the number of issuer messages. */
static unsigned send_limited(const char *stan)
{
	size_t n = h_auth(&H, body, sizeof(body), H_LIMITED, stan, 0);
	uint64_t deadline = (uint64_t)time(NULL) + 10, v;
	int efd = eventfd(0, EFD_NONBLOCK);

	cr_assert_geq(efd, 0);
	cr_assert_eq(tsw_engine_add_state_waker(H.e, efd), 0);
	cr_assert_eq(h_send(&H, body, n), 0);
	for (;;) {
		struct pollfd pfd = {.fd = efd, .events = POLLIN};

		collect_iss(0);
		if (only_requests() || tsw_engine_inflight(H.e) == 0 ||
		    (uint64_t)time(NULL) > deadline)
			break;
		poll(&pfd, 1, 1000);
		(void)!read(efd, &v, sizeof(v));
		h_advance(&H, 0);
	}
	close(efd);
	return iss->n;
}

TestSuite(review, .init = setup, .fini = teardown, .timeout = 30);

/* item 1: card-data fields are dropped, whatever the issuer puts there */
Test(review, answer_fields_holding_card_data_never_reach_the_acquirer)
{
	static const unsigned fields[] = {34, 36, 45, 102, 103};
	unsigned i;

	h_start(&H);
	for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		char stan[7];
		size_t n;

		snprintf(stan, sizeof(stan), "0002%02u", i);
		n = h_auth(&H, body, sizeof(body), H_OK, stan, 0);
		cr_assert_eq(h_send(&H, body, n), 0);
		collect_iss(0);
		cr_assert_eq(iss->n, 1);
		cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[0], "00", 2, NULL, (int)fields[i],
					     h_tokens[H_OK].pan, 0),
			     0);
		collect_acq();
		cr_assert_eq(acq->n, 1, "field %u", fields[i]);
		cr_assert_str_eq(h_field(&acq->m[0], 39), "00", "field %u", fields[i]);
		cr_assert_not(tsw_iso_has(&acq->m[0], fields[i]), "field %u kept", fields[i]);
	}
	cr_assert_eq(H.m.pan_leaks_blocked, 0);
}

/* items 1 and 3: the PAN anywhere else, DE2 absent: 96, and the issuer's
 * approval is reversed */
Test(review, pan_anywhere_in_an_answer_without_de2_is_replaced_by_96_and_reversed)
{
	static const struct {
		int field;
		const char *before, *after;
	} cases[] = {{44, "", ""}, {48, "9916", ""}, {62, "X", "X"}};
	unsigned i;

	h_start(&H);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char v[64], stan[7];
		size_t n;

		snprintf(stan, sizeof(stan), "0003%02u", i);
		snprintf(v, sizeof(v), "%s%s%s", cases[i].before, h_tokens[H_OK].pan,
			 cases[i].after);
		n = h_auth(&H, body, sizeof(body), H_OK, stan, 0);
		cr_assert_eq(h_send(&H, body, n), 0);
		collect_iss(0);
		/* the earlier rounds' reversals go out too */
		cr_assert_eq(only_requests(), 1);
		cr_assert_eq(
		    h_issuer_answer(&H, 0, &iss->m[0], "00", 2, NULL, cases[i].field, v, 0), 0);
		h_collect_after_commit(&H, acq);
		cr_assert_eq(acq->n, 1);
		cr_assert_str_eq(h_field(&acq->m[0], 39), "96", "field %d", cases[i].field);
		cr_assert_eq(H.m.pan_leaks_blocked, i + 1);
		cr_assert_eq(H.m.saf_depth, i + 1, "approval answered 96 not reversed");
		cr_assert_eq(H.m.answers_undelivered_reversed, i + 1);
	}
	/* the last reversal goes out with the switch STAN of the original */
	h_advance(&H, 0);
	collect_iss(0);
	cr_assert_geq(iss->n, 1);
	cr_assert_eq(memcmp(iss->m[0].mti, "0400", 4), 0);
}

/* the issuer's DE2 is another card (a reissue it knows of): DE2 itself
 * goes back as the token, but that PAN anywhere else is still caught */
Test(review, another_pan_from_the_issuer_is_caught_outside_de2)
{
	static const char other[] = "4000000000000002";
	char stan[7] = "000400";
	size_t n;

	h_start(&H);
	n = h_auth(&H, body, sizeof(body), H_OK, stan, 0);
	cr_assert_eq(h_send(&H, body, n), 0);
	collect_iss(0);
	cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[0], "00", 2, other, 0), 0);
	collect_acq();
	cr_assert_eq(acq->n, 1);
	cr_assert_str_eq(h_field(&acq->m[0], 39), "00");
	cr_assert_str_eq(h_field(&acq->m[0], 2), h_tokens[H_OK].token);
	cr_assert_eq(H.m.pan_leaks_blocked, 0);

	memcpy(stan, "000401", 6);
	n = h_auth(&H, body, sizeof(body), H_OK, stan, 0);
	cr_assert_eq(h_send(&H, body, n), 0);
	collect_iss(0);
	cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[0], "00", 2, other, 44, other, 0), 0);
	h_collect_after_commit(&H, acq);
	cr_assert_eq(acq->n, 1);
	cr_assert_str_eq(h_field(&acq->m[0], 39), "96");
	cr_assert_not(h_contains(acq->buf, acq->len, other));
	cr_assert_eq(H.m.pan_leaks_blocked, 1);
}

/* The approval of a limited use answered 96 moved money at the issuer:
 * the use stays spent until the issuer acknowledges the reversal, then
 * it is given back (once). */
Test(review, approved_limited_use_answered_96_gives_the_use_back_when_its_reversal_is_acked)
{
	struct tsw_iso_msg rev;
	uint8_t revbuf[2048];
	char v[64];
	unsigned i;

	h_start(&H);
	cr_assert_eq(send_limited("000401"), 1);
	snprintf(v, sizeof(v), "9916%s", h_tokens[H_LIMITED].pan);
	cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[0], "00", 2, NULL, 48, v, 0), 0);
	h_collect_after_commit(&H, acq);
	cr_assert_str_eq(h_field(&acq->m[0], 39), "96");
	/* the reversal is on its way (the wait ran a tick) */
	collect_iss(0);
	for (i = 0; i < iss->n && memcmp(iss->m[i].mti, "0400", 4) != 0; i++)
		;
	cr_assert_lt(i, iss->n, "no reversal of the approval");
	cr_assert_str_eq(h_field(&iss->m[i], 2), h_tokens[H_LIMITED].pan);
	memcpy(revbuf, iss->m[i].buf, iss->m[i].len);
	cr_assert_eq(tsw_iso_decode(&H.prof, revbuf, iss->m[i].len, &rev), 0);
	cr_assert_eq(send_limited("000402"), 0, "the use is spent until the reversal is acked");
	collect_acq();
	cr_assert_str_eq(h_field(&acq->m[0], 39), "65");
	cr_assert_eq(h_issuer_answer(&H, 0, &rev, "00", 0), 0);
	cr_assert_eq(H.m.saf_acked, 1);
	if (send_limited("000403") != 1) {
		collect_acq();
		cr_assert_fail("use not given back: %u answers, rc %s, inflight %u", acq->n,
			       acq->n ? h_field(&acq->m[0], 39) : "-", tsw_engine_inflight(H.e));
	}
}

/* item 5: which codes approve */
Test(review, approval_codes_are_00_08_10_11_16)
{
	static const struct {
		const char *rc;
		bool approved;
	} cases[] = {{"00", true},  {"08", true},  {"10", true},  {"11", true},
		     {"16", true},  {"05", false}, {"51", false}, {"91", false},
		     {"96", false}, {"01", false}, {"0", false},  {"000", false}};
	unsigned i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_assert_eq(rc_approved(cases[i].rc), cases[i].approved, "rc %s", cases[i].rc);
}

/* item 5: a partial approval spends the use, a decline gives it back */
Test(review, partial_approval_commits_the_limited_use)
{
	h_start(&H);
	cr_assert_eq(send_limited("000411"), 1);
	cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[0], "10", 4, "000000000300", 0), 0);
	collect_acq();
	cr_assert_str_eq(h_field(&acq->m[0], 39), "10");
	cr_assert_eq(send_limited("000412"), 0, "partial approval gave the use back");
	collect_acq();
	cr_assert_str_eq(h_field(&acq->m[0], 39), "65");
}

Test(review, declined_limited_use_is_given_back)
{
	h_start(&H);
	cr_assert_eq(send_limited("000421"), 1);
	cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[0], "05", 0), 0);
	collect_acq();
	cr_assert_str_eq(h_field(&acq->m[0], 39), "05");
	cr_assert_eq(send_limited("000422"), 1);
}

/* item 2: a timed-out STAN is not handed out while its late answer may
 * still come */
Test(review, timed_out_stan_is_not_reused_while_remembered)
{
	size_t n = h_auth(&H, body, sizeof(body), H_OK, "000501", 0);
	struct tsw_iso_msg a;
	uint8_t abuf[2048];
	uint32_t stan_a;

	h_start(&H);
	cr_assert_eq(h_send(&H, body, n), 0);
	collect_iss(0);
	memcpy(abuf, iss->buf + 2, iss->len - 2);
	cr_assert_eq(tsw_iso_decode(&H.prof, abuf, iss->len - 2, &a), 0);
	stan_a = (uint32_t)atoi(h_field(&a, 11));
	h_advance(&H, 2000);
	h_collect_after_commit(&H, acq);
	cr_assert_str_eq(h_field(&acq->m[0], 39), "91");
	collect_iss(0); /* the reversal */

	/* the generator comes round to A's STAN */
	H.e->stan_seq = stan_a % stan_span(&H.cfg) - 1;
	n = h_auth(&H, body, sizeof(body), H_OK, "000502", 0);
	cr_assert_eq(h_send(&H, body, n), 0);
	collect_iss(0);
	cr_assert_eq(iss->n, 1);
	cr_assert_neq((uint32_t)atoi(h_field(&iss->m[0], 11)), stan_a, "timed-out STAN reused");
	/* A's late 00 is not delivered to B */
	cr_assert_eq(h_issuer_answer(&H, 0, &a, "00", 0), 0);
	cr_assert_eq(H.m.late_answers, 1);
	collect_acq();
	cr_assert_eq(acq->n, 0);
	cr_assert_eq(tsw_engine_inflight(H.e), 1);
}

/* item 2: echoed DE4/DE37/DE41 must be the request's */
Test(review, answer_echoing_other_fields_is_unmatched)
{
	static const struct {
		int field;
		const char *value, *rc;
		bool matches;
	} cases[] = {
	    {37, "999999999999", "00", false}, {41, "TERM0002", "00", false},
	    {4, "000000000501", "00", false},  {4, "000000000300", "10", true},
	    {37, "123456789012", "00", true},
	};
	unsigned i;

	h_start(&H);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char stan[7];
		size_t n;
		uint64_t unmatched = H.m.unmatched_answers;

		snprintf(stan, sizeof(stan), "0006%02u", i);
		n = h_auth(&H, body, sizeof(body), H_OK, stan, 0);
		cr_assert_eq(h_send(&H, body, n), 0);
		collect_iss(0);
		cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[0], cases[i].rc, cases[i].field,
					     cases[i].value, 0),
			     0);
		collect_acq();
		cr_assert_eq(acq->n, cases[i].matches ? 1u : 0u, "case %u", i);
		cr_assert_eq(H.m.unmatched_answers, unmatched + (cases[i].matches ? 0 : 1));
		if (!cases[i].matches) {
			/* the request still waits for its own answer */
			cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[0], "00", 0), 0);
			collect_acq();
			cr_assert_eq(acq->n, 1);
			cr_assert_str_eq(h_field(&acq->m[0], 11), stan);
		}
	}
}

/* item 4: a request parked past issuer_timeout_ms is answered 96 */
Test(review, parked_request_past_the_issuer_timeout_is_answered_96)
{
	size_t n = h_auth(&H, body, sizeof(body), H_LIMITED, "000701", 0);
	struct tsw_iso_msg m;

	h_start(&H);
	cr_assert_eq(tsw_iso_decode(&H.prof, body, n, &m), 0);
	/* ticket sequence 0: never durable (a writer that never commits) */
	tsw_engine_loop_begin(H.e, H.now);
	cr_assert_eq(park(H.e, (uint32_t)H.slot, &m, 0, H.now), 0);
	tsw_engine_loop_end(H.e);
	cr_assert_eq(tsw_engine_inflight(H.e), 1);
	h_advance(&H, 1999);
	collect_acq();
	cr_assert_eq(acq->n, 0);
	h_advance(&H, 1);
	collect_acq();
	cr_assert_eq(acq->n, 1);
	cr_assert_str_eq(h_field(&acq->m[0], 39), "96");
	cr_assert_str_eq(h_field(&acq->m[0], 11), "000701");
	cr_assert_eq(H.m.park_timeouts, 1);
	cr_assert_eq(H.m.parked, 0);
	cr_assert_eq(tsw_engine_inflight(H.e), 0);
	collect_iss(0);
	cr_assert_eq(iss->n, 0);
}

/* Fills a 1 MiB state map with SAF puts until the writer degrades (the
 * puts after it are held); bounded, with a deadline on each wait. */
static void degrade_state(void)
{
	enum { MSG = 1000, MAX_PUTS = 4096, DEADLINE_MS = 10000 };
	uint8_t msg[MSG];
	uint64_t id = 0;
	int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	unsigned i;

	cr_assert_geq(efd, 0);
	cr_assert_eq(tsw_state_add_waker(H.state, efd), 0);
	memset(msg, 'x', sizeof(msg));
	for (i = 0; i < MAX_PUTS; i++) {
		int rc = tsw_state_saf_put(H.state, 0, msg, sizeof(msg), &id);

		cr_assert_eq(rc, 0);
		for (int waited = 0;
		     !tsw_state_saf_durable(H.state, id) && !tsw_state_degraded(H.state);) {
			struct pollfd p = {.fd = efd, .events = POLLIN};
			uint64_t v;

			cr_assert_lt(waited, DEADLINE_MS, "the state's writer is stuck");
			if (poll(&p, 1, 100) == 1)
				cr_assert_eq(read(efd, &v, sizeof(v)), (ssize_t)sizeof(v));
			waited += 100;
		}
		if (tsw_state_degraded(H.state))
			break;
	}
	cr_assert_lt(i, (unsigned)MAX_PUTS, "the state never degraded");
	cr_assert(tsw_state_degraded(H.state));
	/* the eventfd stays registered with the state until it closes */
}

/* The state's writer cannot commit (full map): a limited-use request is
 * declined 96 STATE_UNAVAILABLE at once, and one already parked does not
 * wait out issuer_timeout_ms either; ordinary requests still go out. */
Test(review, limited_use_declined_at_once_while_the_state_writer_is_degraded)
{
	size_t n = h_auth(&H, body, sizeof(body), H_LIMITED, "000711", 0);
	struct tsw_iso_msg m;

	H.scfg.map_size_mb = 1;
	h_state_reopen(&H);
	h_start(&H);
	cr_assert_eq(tsw_iso_decode(&H.prof, body, n, &m), 0);
	/* parked first (ticket sequence 0: never durable), then the writer
	 * degrades */
	tsw_engine_loop_begin(H.e, H.now);
	cr_assert_eq(park(H.e, (uint32_t)H.slot, &m, 0, H.now), 0);
	tsw_engine_loop_end(H.e);
	degrade_state();
	h_advance(&H, 1);
	collect_acq();
	cr_assert_eq(acq->n, 1, "the parked request is answered before its timeout");
	cr_assert_str_eq(h_field(&acq->m[0], 39), "96");
	cr_assert_str_eq(h_field(&acq->m[0], 44), "STATE_UNAVAILABLE");
	cr_assert_str_eq(h_field(&acq->m[0], 11), "000711");
	cr_assert_eq(H.m.park_timeouts, 0);
	cr_assert_eq(H.m.parked, 0);

	n = h_auth(&H, body, sizeof(body), H_LIMITED, "000712", 0);
	cr_assert_eq(h_send(&H, body, n), 0);
	collect_acq();
	cr_assert_eq(acq->n, 1, "a new limited-use request is answered at once");
	cr_assert_str_eq(h_field(&acq->m[0], 39), "96");
	cr_assert_str_eq(h_field(&acq->m[0], 44), "STATE_UNAVAILABLE");
	cr_assert_eq(H.m.declines[TSW_AUTHZ_STATE_UNAVAILABLE], 2);
	cr_assert_eq(H.m.parked, 0);

	n = h_auth(&H, body, sizeof(body), H_OK, "000713", 0);
	cr_assert_eq(h_send(&H, body, n), 0);
	collect_iss(0);
	cr_assert_eq(only_requests(), 1, "an ordinary request is forwarded");
}

/* item 9: a repeat is answered with the plain response MTI */
Test(review, repeats_are_answered_with_the_plain_response_mti)
{
	static const struct {
		const char *mti, *want;
	} cases[] = {{"0101", "0110"}, {"0401", "0410"}, {"0121", "0130"}, {"0801", "0810"}};
	unsigned i;

	h_start(&H);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = h_build(&H, body, sizeof(body), cases[i].mti, 2, "4000999999999998", 3,
				   "000000", 4, "000000000500", 7, "1123031500", 11, "000801", 70,
				   "301", 0);

		cr_assert_eq(h_send(&H, body, n), 0);
		collect_acq();
		cr_assert_eq(acq->n, 1);
		cr_assert_eq(memcmp(acq->m[0].mti, cases[i].want, 4), 0, "%s answered %.4s",
			     cases[i].mti, acq->m[0].mti);
	}
}

/* item 10: workers own disjoint STAN spans; max_pending fits the span */
Test(review, workers_stamp_disjoint_stan_spans)
{
	struct tsw_engine *e0, *e10;
	uint32_t span, s0, s10;

	H.cfg.n_workers = 16;
	span = stan_span(&H.cfg);
	cr_assert_eq(span, 62500);
	H.cfg.worker_id = 0;
	cr_assert_eq(tsw_engine_new(&H.cfg, H.vault, H.state, &H.m, &e0), 0);
	H.cfg.worker_id = 10;
	cr_assert_eq(tsw_engine_new(&H.cfg, H.vault, H.state, &H.m, &e10), 0);
	s0 = stan_next(e0, 0);
	s10 = stan_next(e10, 0);
	cr_assert(s0 > 0 && s0 < span);
	cr_assert(s10 >= 10 * span && s10 < 11 * span, "worker 10 stamped %u", s10);
	e10->stan_seq = span - 2;
	cr_assert_lt(stan_next(e10, 0), 11 * span);
	cr_assert_geq(stan_next(e10, 0), 10 * span, "wrapped out of the span");
	tsw_engine_free(e0);
	tsw_engine_free(e10);

	H.cfg.worker_id = 16;
	cr_assert_eq(tsw_engine_new(&H.cfg, H.vault, H.state, &H.m, &e0), -TSW_E_CONFIG);
	H.cfg.worker_id = 15;
	H.cfg.max_pending = span;
	cr_assert_eq(tsw_engine_new(&H.cfg, H.vault, H.state, &H.m, &e0), -TSW_E_CONFIG);
	H.cfg.n_workers = 0;
	cr_assert_eq(tsw_engine_new(&H.cfg, H.vault, H.state, &H.m, &e0), -TSW_E_CONFIG,
		     "worker 15 of the default 10");
}

/* item 11: compaction leaves no copy of the moved bytes behind, and a
 * frame that fails to encode leaves none of its bytes past the tail */
Test(review, compaction_wipes_the_bytes_past_the_new_tail)
{
	static char fill[1001];
	struct tsw_iso_edit ed[2] = {
	    {.field = 0, .len = 4, .data = (const uint8_t *)"0800"},
	    {.field = 63, .len = 90, .data = (const uint8_t *)fill},
	};
	const struct tsw_iso_edit small[2] = {
	    {.field = 0, .len = 4, .data = (const uint8_t *)"0800"},
	    {.field = 70, .len = 3, .data = (const uint8_t *)"001"},
	};
	struct outbuf b;
	uint32_t old_tail, first;
	size_t i;

	cr_assert_eq(outbuf_init(&b, 256), 0);
	memset(fill, 'A', 90);
	cr_assert_eq(outbuf_encode(&b, &H.prof, NULL, ed, 2), 0);
	first = b.tail;
	memset(fill, '4', 90);
	cr_assert_eq(outbuf_encode(&b, &H.prof, NULL, ed, 2), 0);
	old_tail = b.tail;
	cr_assert_eq(old_tail, 2 * first);
	b.head = first; /* the first frame went out */
	cr_assert_eq(outbuf_encode(&b, &H.prof, NULL, small, 2), 0);
	cr_assert_eq(b.head, 0, "not compacted");
	cr_assert_lt(b.tail, old_tail);
	for (i = b.tail; i < old_tail; i++)
		cr_assert_eq(b.data[i], 0, "byte %zu past the tail kept", i);

	/* DE63 is ans..999: 1000 bytes fail to encode after some were written */
	old_tail = b.tail;
	memset(fill, '4', 1000);
	ed[1].len = 1000;
	cr_assert_lt(outbuf_encode(&b, &H.prof, NULL, ed, 2), 0);
	cr_assert_eq(b.tail, old_tail);
	for (i = b.tail; i < b.cap; i++)
		cr_assert_eq(b.data[i], 0, "byte %zu of the failed frame kept", i);
	outbuf_free(&b);
}

/* item 6: an acquirer's reversal names the original by the switch STAN */
Test(review, acquirer_reversal_de90_is_rewritten_to_the_switch_stan)
{
	size_t n = h_auth(&H, body, sizeof(body), H_OK, "000901", 0);
	char de90[43], want[43], sw[7];
	int slot2;

	h_start(&H);
	cr_assert_eq(h_send(&H, body, n), 0);
	collect_iss(0);
	snprintf(sw, sizeof(sw), "%s", h_field(&iss->m[0], 11));
	cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[0], "00", 0), 0);
	collect_acq();

	/* on another connection: the key has no connection in it */
	slot2 = tsw_engine_acq_open(H.e, H.now);
	cr_assert_geq(slot2, 0);
	H.slot = slot2;
	snprintf(de90, sizeof(de90), "0100%s%s%022d", "000901", "1123031500", 0);
	snprintf(want, sizeof(want), "0100%s%s%022d", sw, "1123031500", 0);
	n = h_build(&H, body, sizeof(body), "0400", 2, h_tokens[H_OK].token, 3, "000000", 4,
		    "000000000500", 7, "1123031600", 11, "000902", 41, "TERM0001", 90, de90, 0);
	cr_assert_eq(h_send(&H, body, n), 0);
	collect_iss(0);
	cr_assert_eq(iss->n, 1);
	cr_assert_str_eq(h_field(&iss->m[0], 90), want);
	cr_assert_eq(H.m.acq_reversals_matched, 1);

	/* another terminal's reversal of the same STAN is unknown: as is */
	n = h_build(&H, body, sizeof(body), "0400", 2, h_tokens[H_OK].token, 3, "000000", 4,
		    "000000000500", 7, "1123031600", 11, "000903", 41, "TERM0002", 90, de90, 0);
	cr_assert_eq(h_send(&H, body, n), 0);
	collect_iss(0);
	cr_assert_eq(iss->n, 1);
	cr_assert_str_eq(h_field(&iss->m[0], 90), de90);
	cr_assert_eq(H.m.acq_reversals_matched, 1);
}

/* Sends the acquirer's reversal (mti) of the limited-use original with
 * acquirer STAN orig, answers it rc at the issuer and returns the DE39 the
 * acquirer got. */
static const char *reverse_limited(const char *mti, const char *stan, const char *orig,
				   const char *rc)
{
	char de90[43];
	size_t n;

	snprintf(de90, sizeof(de90), "0100%s%s%022d", orig, "1123031500", 0);
	n = h_build(&H, body, sizeof(body), mti, 2, h_tokens[H_LIMITED].token, 3, "000000", 4,
		    "000000000500", 7, "1123031600", 11, stan, 41, "TERM0001", 90, de90, 0);
	cr_assert_eq(h_send(&H, body, n), 0);
	collect_iss(0);
	cr_assert_eq(iss->n, 1, "reversal %s not forwarded", stan);
	cr_assert_eq(memcmp(iss->m[0].mti, mti, 4), 0);
	cr_assert_neq(strcmp(h_field(&iss->m[0], 90), de90), 0, "DE90 not rewritten");
	cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[0], rc, 0), 0);
	collect_acq();
	cr_assert_eq(acq->n, 1);
	return h_field(&acq->m[0], 39);
}

static uint32_t limited_used(void)
{
	struct tsw_state_token t;

	cr_assert_eq(tsw_state_get(H.state, h_tokens[H_LIMITED].token,
				   strlen(h_tokens[H_LIMITED].token), &t),
		     0);
	return t.used;
}

/* an approved reversal of an approved limited-use authorization gives the
 * use back, once: a repeated reversal does not give back a second one */
Test(review, approved_reversal_gives_the_limited_use_back_once)
{
	h_start(&H);
	cr_assert_eq(send_limited("000931"), 1);
	cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[0], "00", 0), 0);
	collect_acq();
	cr_assert_str_eq(h_field(&acq->m[0], 39), "00");
	cr_assert_eq(limited_used(), 1);

	/* a declined reversal gives nothing back */
	cr_assert_str_eq(reverse_limited("0400", "000932", "000931", "12"), "12");
	cr_assert_eq(limited_used(), 1);
	cr_assert_str_eq(reverse_limited("0401", "000933", "000931", "00"), "00");
	cr_assert_eq(limited_used(), 0, "use not given back");

	cr_assert_eq(send_limited("000934"), 1, "new authorization not forwarded");
	cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[0], "00", 0), 0);
	collect_acq();
	cr_assert_str_eq(h_field(&acq->m[0], 39), "00");
	cr_assert_eq(limited_used(), 1);

	/* the repeat of the first reversal: nothing more given back */
	cr_assert_str_eq(reverse_limited("0401", "000935", "000931", "00"), "00");
	cr_assert_eq(limited_used(), 1, "a second use given back");
	cr_assert_eq(send_limited("000936"), 0);
	collect_acq();
	cr_assert_str_eq(h_field(&acq->m[0], 39), "65");
}

/* item 12: histogram bounds from 0.5 us to 10 s, both tables agree */
Test(review, histogram_bounds_start_at_half_a_microsecond)
{
	static const struct {
		uint64_t ns;
		unsigned bucket;
	} cases[] = {{0, 0},
		     {499, 0},
		     {500, 1},
		     {999, 1},
		     {1000, 2},
		     {1500, 2},
		     {9999999999ull, 22},
		     {10000000000ull, 23},
		     {UINT64_MAX - 1, 23}};
	unsigned i;

	cr_assert_eq(tsw_hist_bound_ns[0], 500);
	cr_assert_eq(tsw_hist_bound_ns[TSW_HIST_BUCKETS - 2], 10000000000ull);
	for (i = 0; i + 1 < TSW_HIST_BUCKETS; i++) {
		cr_assert_eq((uint64_t)(tsw_hist_bound_us[i] * 1000), tsw_hist_bound_ns[i], "%u",
			     i);
		if (i)
			cr_assert_gt(tsw_hist_bound_ns[i], tsw_hist_bound_ns[i - 1]);
	}
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct tsw_hist h;

		memset(&h, 0, sizeof(h));
		tsw_hist_add_ns(&h, cases[i].ns);
		cr_assert_eq(h.bucket[cases[i].bucket], 1, "%llu ns",
			     (unsigned long long)cases[i].ns);
	}
}

/* The reference the scan must agree with: every window of pan_len ASCII
 * digits, hashed. */
static bool naive_scan(uint64_t seed, uint64_t fp, size_t pan_len, const uint8_t *p, size_t n)
{
	for (size_t j = 0; j + pan_len <= n; j++) {
		size_t k = 0;

		while (k < pan_len && p[j + k] >= '0' && p[j + k] <= '9')
			k++;
		if (k == pan_len && pan_fp(seed, (const char *)p + j, pan_len) == fp)
			return true;
	}
	return false;
}

Test(guard, pan_scan_finds_the_pan_at_every_offset_and_agrees_with_the_reference,
     .timeout = 30)
{
	static const char pan[] = "5500000000000004";
	const size_t pan_len = sizeof(pan) - 1;
	uint64_t seed = pan_fp_seed_new(), fp = pan_fp(seed, pan, pan_len);
	const char *last4 = pan + pan_len - 4;
	uint8_t buf[96];
	uint64_t rng = 42;
	unsigned found = 0;

	/* the PAN at every offset of every buffer length, amid digits, the
	 * same last 4 digits and non-digits around it */
	for (size_t n = pan_len; n <= sizeof(buf); n++) {
		for (size_t at = 0; at + pan_len <= n; at++) {
			for (size_t i = 0; i < n; i++) {
				rng = rng * 6364136223846793005ull + 1442695040888963407ull;
				buf[i] = (rng >> 60) < 9 ? (uint8_t)('0' + (rng >> 33) % 10)
							  : (uint8_t)(rng >> 40);
			}
			memcpy(buf + at, pan, pan_len);
			cr_assert(pan_fp_scan(seed, fp, pan_len, last4, buf, n), "n=%zu at=%zu", n,
				  at);
			found++;
			/* one digit changed: not the PAN any more (the reference
			 * decides: the random rest may hold it too, it cannot) */
			buf[at + (at * 7) % pan_len] ^= 1;
			cr_assert_eq(pan_fp_scan(seed, fp, pan_len, last4, buf, n),
				     naive_scan(seed, fp, pan_len, buf, n), "n=%zu at=%zu", n, at);
			cr_assert_not(naive_scan(seed, fp, pan_len, buf, n));
		}
	}
	cr_assert_gt(found, 3000u);
}

Test(guard, pan_scan_needs_every_digit_of_the_window)
{
	static const char pan[] = "4111111111111111";
	const size_t pan_len = sizeof(pan) - 1;
	uint64_t seed = pan_fp_seed_new(), fp = pan_fp(seed, pan, pan_len);
	uint8_t buf[64];

	/* the last 4 digits alone, a window cut by a separator, a window
	 * running off the start, the PAN split across the buffer end */
	memset(buf, '1', sizeof(buf));
	buf[20] = ' ';
	cr_assert_not(pan_fp_scan(seed, fp, pan_len, pan + 12, buf, 20 + 10));
	cr_assert_not(pan_fp_scan(seed, fp, pan_len, pan + 12, buf + 21, 15));
	memcpy(buf, "4111111111111111", 16);
	cr_assert_not(pan_fp_scan(seed, fp, pan_len, pan + 12, buf + 1, 15));
	cr_assert(pan_fp_scan(seed, fp, pan_len, pan + 12, buf, 16));
	cr_assert_not(pan_fp_scan(seed, fp, pan_len, pan + 12, buf, 15));
	/* another key: the same digits have another fingerprint */
	cr_assert_not(pan_fp_scan(seed ^ 1, fp, pan_len, pan + 12, buf, 16));
}
