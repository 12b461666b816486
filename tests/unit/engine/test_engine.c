/* The sans-I/O engine driven with byte buffers: approve path, every local
 * engine__decline, pipelining, partial frames, timeouts and reversals, late
 * answers, issuer links (sign-on, echo, down, backoff), back-pressure,
 * network management, malformed input, DE48 token tags, routing. Every
 * answer to the acquirer is scanned for PAN digits. */
#include <criterion/criterion.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>

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
}

static void teardown(void)
{
	h_fini(&H);
	free(acq);
	free(iss);
}

/* Every acquirer answer: no PAN of the vault anywhere, no DE35. */
static void collect_acq(void)
{
	unsigned i;

	h_collect(&H, TSW_EP_ACQ, (uint32_t)H.slot, acq);
	for (i = 0; i < H_TOKEN_MAX; i++)
		cr_assert_not(h_contains_pan(acq->buf, acq->len, h_tokens[i].pan),
			      "PAN digits in an acquirer answer");
	for (i = 0; i < acq->n; i++)
		cr_assert_not(tsw_iso_has(&acq->m[i], 35), "DE35 in an acquirer answer");
}

static void collect_iss(uint32_t link)
{
	h_collect(&H, TSW_EP_LINK, link, iss);
}

static void de48_has(const struct tsw_iso_msg *m, unsigned tag, const char *want)
{
	const uint8_t *v;
	size_t n;
	int r = tsw_de48_find(tsw_iso_ptr(m, 48), m->f[48].len, tag, &v, &n);

	if (!want) {
		cr_assert_eq(r, 0, "DE48 tag %u present", tag);
		return;
	}
	cr_assert_eq(r, 1, "DE48 tag %u absent", tag);
	cr_assert_eq(n, strlen(want), "DE48 tag %u length", tag);
	cr_assert_eq(memcmp(v, want, n), 0, "DE48 tag %u value", tag);
}

TestSuite(engine, .init = setup, .fini = teardown, .timeout = 30);

Test(engine, approve_path_swaps_token_for_pan_and_back)
{
	size_t n =
	    h_auth(&H, body, sizeof(body), H_OK, "000123", 48, "1005DEV-930169999999999999999", 0);
	char de35[64];

	h_start(&H);
	cr_assert_eq(h_send(&H, body, n), 0);
	collect_iss(0);
	cr_assert_eq(iss->n, 1);
	/* issuer leg: PAN, PAN expiry, track 2 with the PAN, own STAN, token data */
	cr_assert_str_eq(h_field(&iss->m[0], 2), h_tokens[H_OK].pan);
	cr_assert_str_eq(h_field(&iss->m[0], 14), "2911");
	snprintf(de35, sizeof(de35), "%s=29111010000012300000", h_tokens[H_OK].pan);
	cr_assert_str_eq(h_field(&iss->m[0], 35), de35);
	cr_assert_str_neq(h_field(&iss->m[0], 11), "000123");
	cr_assert_str_eq(h_field(&iss->m[0], 4), "000000000500");
	de48_has(&iss->m[0], 10, "DEV-9");
	de48_has(&iss->m[0], 30, h_tokens[H_OK].token);
	de48_has(&iss->m[0], 31, "3012");
	de48_has(&iss->m[0], 32, "12345678901");
	de48_has(&iss->m[0], 33, "07");
	de48_has(&iss->m[0], 34, "TREF0");
	de48_has(&iss->m[0], 35, "PAR0000000000000000000000001");
	de48_has(&iss->m[0], 36, NULL);
	cr_assert_not(h_contains(iss->buf, iss->len, "99999999999"), "acquirer tag 30 forwarded");

	cr_assert_eq(tsw_engine_inflight(H.e), 1);
	cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[0], "00", 0), 0);
	collect_acq();
	cr_assert_eq(acq->n, 1);
	cr_assert_eq(memcmp(acq->m[0].mti, "0110", 4), 0);
	cr_assert_str_eq(h_field(&acq->m[0], 2), h_tokens[H_OK].token);
	cr_assert_str_eq(h_field(&acq->m[0], 14), "3012");
	cr_assert_str_eq(h_field(&acq->m[0], 11), "000123");
	cr_assert_str_eq(h_field(&acq->m[0], 39), "00");
	cr_assert_str_eq(h_field(&acq->m[0], 38), "AB1234");
	de48_has(&acq->m[0], 10, "DEV-9");
	de48_has(&acq->m[0], 30, NULL);
	de48_has(&acq->m[0], 34, NULL);
	cr_assert_eq(tsw_engine_inflight(H.e), 0);
	cr_assert_eq(H.m.requests[TSW_MTI_0100][tsw_metrics_rc_index("00")], 1);
	cr_assert_eq(H.m.issuer_rtt.count, 1);
	cr_assert_eq(H.m.inflight, 0);
}

Test(engine, answer_without_de2_from_issuer_has_no_de2)
{
	size_t n = h_auth(&H, body, sizeof(body), H_OK, "000124", 0);

	h_start(&H);
	cr_assert_eq(h_send(&H, body, n), 0);
	collect_iss(0);
	cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[0], "05", 2, NULL, 14, NULL, 0), 0);
	collect_acq();
	cr_assert_eq(acq->n, 1);
	cr_assert_not(tsw_iso_has(&acq->m[0], 2));
	cr_assert_not(tsw_iso_has(&acq->m[0], 14));
	cr_assert_str_eq(h_field(&acq->m[0], 39), "05");
}

Test(engine, issuer_answer_echoing_the_pan_elsewhere_is_replaced_by_96)
{
	size_t n = h_auth(&H, body, sizeof(body), H_OK, "000125", 0);
	char de48[64];

	h_start(&H);
	cr_assert_eq(h_send(&H, body, n), 0);
	collect_iss(0);
	snprintf(de48, sizeof(de48), "9916%s", h_tokens[H_OK].pan);
	cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[0], "00", 48, de48, 0), 0);
	/* the approval is reversed, and the 96 waits for that reversal */
	h_collect_after_commit(&H, acq);
	cr_assert_eq(acq->n, 1);
	cr_assert_str_eq(h_field(&acq->m[0], 39), "96");
	cr_assert_eq(H.m.pan_leaks_blocked, 1);
	cr_assert_eq(H.m.answers_undelivered_reversed, 1);
}

struct decline_case {
	const char *name;
	enum h_token tok;
	int field; /* override, 0 for none */
	const char *value;
	const char *rc, *reason;
};

Test(engine, local_declines_follow_the_decision_table)
{
	static const struct decline_case cases[] = {
	    {"deleted", H_DELETED, 0, NULL, "14", "TOKEN_DELETED"},
	    {"suspended", H_SUSPENDED, 0, NULL, "62", "TOKEN_SUSPENDED"},
	    {"expired", H_EXPIRED, 14, "2001", "54", "TOKEN_EXPIRED"},
	    {"de14 mismatch", H_OK, 14, "2912", "54", "TOKEN_EXPIRED"},
	    {"merchant", H_MERCHANT, 42, "OTHERMERCHANT01", "57", "DOMAIN_MERCHANT"},
	    {"pos mode", H_POS, 22, "071", "57", "DOMAIN_POS_MODE"},
	    {"device missing", H_DEVICE, 0, NULL, "57", "DOMAIN_DEVICE"},
	    {"device not bound", H_DEVICE, 48, "1005DEV-2", "57", "DOMAIN_DEVICE"},
	    {"requestor", H_OK, 48, "121199999999999", "57", "DOMAIN_REQUESTOR"},
	    {"amount", H_AMOUNT, 4, "000000001001", "61", "DOMAIN_AMOUNT"},
	    {"missing DE22", H_OK, 22, NULL, "30", "FORMAT"},
	};
	unsigned i;

	h_start(&H);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct decline_case *c = &cases[i];
		size_t n;

		if (c->field && c->value)
			n = h_auth(&H, body, sizeof(body), c->tok, "000200", c->field, c->value, 0);
		else if (c->field)
			n = h_auth(&H, body, sizeof(body), c->tok, "000200", c->field, NULL, 0);
		else
			n = h_auth(&H, body, sizeof(body), c->tok, "000200", 0);
		cr_assert_eq(h_send(&H, body, n), 0, "%s", c->name);
		collect_acq();
		cr_assert_eq(acq->n, 1, "%s: answers", c->name);
		cr_assert_eq(memcmp(acq->m[0].mti, "0110", 4), 0, "%s", c->name);
		cr_assert_str_eq(h_field(&acq->m[0], 39), c->rc, "%s", c->name);
		cr_assert_str_eq(h_field(&acq->m[0], 44), c->reason, "%s", c->name);
		cr_assert_str_eq(h_field(&acq->m[0], 11), "000200", "%s", c->name);
		cr_assert_str_eq(h_field(&acq->m[0], 37), "123456789012", "%s", c->name);
		cr_assert_str_eq(h_field(&acq->m[0], 42),
				 c->field == 42 ? c->value : "MERCHANT0000001", "%s", c->name);
		if (c->tok != H_OK || c->field != 22)
			cr_assert_str_eq(h_field(&acq->m[0], 2), h_tokens[c->tok].token, "%s",
					 c->name);
		collect_iss(0);
		cr_assert_eq(iss->n, 0, "%s: forwarded", c->name);
	}
	cr_assert_eq(H.m.declines[TSW_AUTHZ_DOMAIN_DEVICE], 2);
	cr_assert_eq(H.m.declines[TSW_AUTHZ_TOKEN_DELETED], 1);
	cr_assert_eq(H.m.requests[TSW_MTI_0100][tsw_metrics_rc_index("57")], 5);
}

Test(engine, unknown_tokens_are_declined_14)
{
	static const char *const toks[] = {
	    "4000999999999999", /* in range, not Luhn-valid */
	    "4000999999999998", /* in range, unknown */
	    "5999999999999995", /* outside every token BIN range */
	};
	unsigned i;

	h_start(&H);
	for (i = 0; i < 3; i++) {
		size_t n = h_auth(&H, body, sizeof(body), H_OK, "000300", 2, toks[i], 35, NULL, 0);

		cr_assert_eq(h_send(&H, body, n), 0);
		collect_acq();
		cr_assert_eq(acq->n, 1);
		cr_assert_str_eq(h_field(&acq->m[0], 39), "14");
		cr_assert_str_eq(h_field(&acq->m[0], 44), "TOKEN_UNKNOWN");
	}
	collect_iss(0);
	cr_assert_eq(iss->n, 0);
}

Test(engine, reversal_of_a_suspended_token_is_forwarded)
{
	size_t n = h_build(&H, body, sizeof(body), "0400", 2, h_tokens[H_SUSPENDED].token, 3,
			   "000000", 4, "000000000500", 11, "000400", 0);

	h_start(&H);
	cr_assert_eq(h_send(&H, body, n), 0);
	collect_iss(0);
	cr_assert_eq(iss->n, 1);
	cr_assert_eq(memcmp(iss->m[0].mti, "0400", 4), 0);
	cr_assert_str_eq(h_field(&iss->m[0], 2), h_tokens[H_SUSPENDED].pan);
	cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[0], "00", 0), 0);
	collect_acq();
	cr_assert_eq(acq->n, 1);
	cr_assert_eq(memcmp(acq->m[0].mti, "0410", 4), 0);
	cr_assert_str_eq(h_field(&acq->m[0], 2), h_tokens[H_SUSPENDED].token);
	cr_assert_eq(H.m.requests[TSW_MTI_0400][0], 1);
}

Test(engine, pipelined_requests_answered_out_of_order)
{
	static const char *const stans[] = {"000011", "000012", "000013"};
	uint8_t all[3 * 600];
	size_t off = 0;
	unsigned i;

	h_start(&H);
	for (i = 0; i < 3; i++) {
		size_t n = h_auth(&H, body, sizeof(body), H_OK, stans[i], 4,
				  i == 0   ? "000000000100"
				  : i == 1 ? "000000000200"
					   : "000000000300",
				  0);

		all[off] = (uint8_t)(n >> 8);
		all[off + 1] = (uint8_t)n;
		memcpy(all + off + 2, body, n);
		off += n + 2;
	}
	cr_assert_eq(h_send_raw(&H, all, off), 0);
	collect_iss(0);
	cr_assert_eq(iss->n, 3);
	/* the issuer answers the last first */
	for (i = 3; i-- > 0;) {
		cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[i], i == 1 ? "51" : "00", 0), 0);
	}
	collect_acq();
	cr_assert_eq(acq->n, 3);
	for (i = 0; i < 3; i++) {
		const char *amount = h_field(&acq->m[i], 4);
		const char *stan = h_field(&acq->m[i], 11);

		/* each answer carries its own request's amount and STAN */
		cr_assert_eq(stan[5] - '1', amount[9] - '1', "answer %u mismatched", i);
		cr_assert_str_eq(h_field(&acq->m[i], 39), stan[5] == '2' ? "51" : "00");
	}
	cr_assert_str_eq(h_field(&acq->m[0], 11), "000013");
}

Test(engine, partial_frames_are_assembled)
{
	uint8_t frame[1024];
	size_t n = h_auth(&H, body, sizeof(body), H_DELETED, "000021", 0), i;

	frame[0] = (uint8_t)(n >> 8);
	frame[1] = (uint8_t)n;
	memcpy(frame + 2, body, n);
	memcpy(frame + 2 + n, frame, n + 2); /* two frames back to back */
	h_start(&H);
	for (i = 0; i < 2 * (n + 2); i++)
		cr_assert_eq(h_send_raw(&H, frame + i, 1), 0);
	collect_acq();
	cr_assert_eq(acq->n, 2);
	cr_assert_str_eq(h_field(&acq->m[1], 39), "14");
}

Test(engine, keepalive_frames_are_ignored)
{
	static const uint8_t ka[] = {0, 0, 0, 0};

	h_start(&H);
	cr_assert_eq(h_send_raw(&H, ka, sizeof(ka)), 0);
	collect_acq();
	cr_assert_eq(acq->n, 0);
}

Test(engine, timeout_answers_91_and_queues_a_reversal)
{
	size_t n = h_auth(&H, body, sizeof(body), H_OK, "000031", 0);
	struct tsw_iso_msg orig;
	uint8_t origbuf[2048];

	h_start(&H);
	cr_assert_eq(h_send(&H, body, n), 0);
	collect_iss(0);
	memcpy(origbuf, iss->buf + 2, iss->len - 2);
	cr_assert_eq(tsw_iso_decode(&H.prof, origbuf, iss->len - 2, &orig), 0);
	cr_assert_leq(tsw_engine_next_deadline(H.e), H.now + 2000000000ull);

	h_advance(&H, 1999);
	collect_acq();
	cr_assert_eq(acq->n, 0, "answered before the deadline");
	h_advance(&H, 1);
	h_collect_after_commit(&H, acq);
	cr_assert_eq(acq->n, 1);
	cr_assert_str_eq(h_field(&acq->m[0], 39), "91");
	cr_assert_str_eq(h_field(&acq->m[0], 44), "ISSUER_UNAVAILABLE");
	cr_assert_str_eq(h_field(&acq->m[0], 11), "000031");
	cr_assert_eq(H.m.timeouts, 1);

	/* the reversal goes out on the signed-on link */
	collect_iss(0);
	cr_assert_eq(iss->n, 1);
	cr_assert_eq(memcmp(iss->m[0].mti, "0400", 4), 0);
	cr_assert_str_eq(h_field(&iss->m[0], 2), h_tokens[H_OK].pan);
	cr_assert_eq(memcmp(h_field(&iss->m[0], 90), "0100", 4), 0);
	cr_assert_eq(memcmp(h_field(&iss->m[0], 90) + 4, h_field(&orig, 11), 6), 0);
	cr_assert_eq(H.m.saf_depth, 1);

	/* a late answer to the original is counted and dropped */
	cr_assert_eq(h_issuer_answer(&H, 0, &orig, "00", 0), 0);
	cr_assert_eq(H.m.late_answers, 1);
	collect_acq();
	cr_assert_eq(acq->n, 0);

	/* the 0410 ends the reversal */
	cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[0], "00", 0), 0);
	cr_assert_eq(H.m.saf_acked, 1);
	cr_assert_eq(H.m.saf_depth, 0);
	cr_assert_eq(tsw_engine_inflight(H.e), 0);
}

Test(engine, unknown_answer_is_counted_unmatched)
{
	h_start(&H);
	size_t n = h_auth(&H, body, sizeof(body), H_OK, "000032", 0);
	struct tsw_iso_msg m;

	cr_assert_eq(tsw_iso_decode(&H.prof, body, n, &m), 0);
	cr_assert_eq(h_issuer_answer(&H, 0, &m, "00", 11, "777777", 0), 0);
	cr_assert_eq(H.m.unmatched_answers, 1);
	collect_acq();
	cr_assert_eq(acq->n, 0);
}

/* An issuer answer that cannot be framed for the acquirer (above the
 * acquirer profile's max_frame) is answered 96, not dropped and not taken
 * for a full output buffer (the connection stays open). */
Test(engine, issuer_answer_above_acquirer_max_frame_is_answered_96)
{
	static struct tsw_iso_profile small;
	static char big[901];
	size_t n;

	small = H.prof;
	small.max_frame = 600;
	H.cfg.acq_profile = &small;
	h_start(&H);
	n = h_auth(&H, body, sizeof(body), H_OK, "000051", 0);
	cr_assert_lt(n, 600);
	cr_assert_eq(h_send(&H, body, n), 0);
	collect_iss(0);
	cr_assert_eq(iss->n, 1);
	memset(big, 'A', sizeof(big) - 1);
	cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[0], "00", 63, big, 0), 0);
	h_collect_after_commit(&H, acq);
	cr_assert_eq(acq->n, 1);
	cr_assert_str_eq(h_field(&acq->m[0], 39), "96");
	cr_assert_str_eq(h_field(&acq->m[0], 11), "000051");
	cr_assert_eq(H.m.issuer_format_errors, 1);
	cr_assert_eq(H.m.slow_consumer_closes, 0);
	cr_assert_eq(tsw_engine_inflight(H.e), 0);
}

Test(engine, link_down_fails_pending_with_91_and_backs_off)
{
	size_t n;

	h_start(&H);
	n = h_auth(&H, body, sizeof(body), H_OK, "000041", 0);
	cr_assert_eq(h_send(&H, body, n), 0);
	n = h_auth(&H, body, sizeof(body), H_OK, "000042", 0);
	cr_assert_eq(h_send(&H, body, n), 0);
	collect_iss(0);
	cr_assert_eq(iss->n, 2);
	tsw_engine_link_down(H.e, 0, H.now);
	h_collect_after_commit(&H, acq);
	cr_assert_eq(acq->n, 2);
	cr_assert_str_eq(h_field(&acq->m[0], 39), "91");
	cr_assert_str_eq(h_field(&acq->m[1], 39), "91");
	cr_assert_eq(H.m.saf_depth, 2);
	cr_assert_not(tsw_engine_ready(H.e));
	cr_assert_eq(H.m.ready, 0);
	/* while down: new requests get 91 at once */
	n = h_auth(&H, body, sizeof(body), H_OK, "000043", 0);
	cr_assert_eq(h_send(&H, body, n), 0);
	collect_acq();
	cr_assert_str_eq(h_field(&acq->m[0], 39), "91");
	/* backoff: between min/2 and min, then it wants to connect */
	cr_assert_not(tsw_engine_link_wants_connect(H.e, 0, H.now + 49000000ull));
	cr_assert(tsw_engine_link_wants_connect(H.e, 0, H.now + 100000000ull));
	H.now += 100000000ull;
	h_sign_on(&H, 0, "00");
	cr_assert(tsw_engine_ready(H.e));
	/* both reversals go out after the sign-on */
	collect_iss(0);
	cr_assert_eq(iss->n, 2);
	cr_assert_eq(memcmp(iss->m[0].mti, "0400", 4), 0);
	cr_assert_eq(memcmp(iss->m[1].mti, "0400", 4), 0);
}

Test(engine, backoff_grows_to_the_maximum)
{
	uint64_t t;
	int i;

	h_start(&H);
	for (i = 0; i < 8; i++) {
		tsw_engine_link_down(H.e, 0, H.now);
		for (t = H.now; !tsw_engine_link_wants_connect(H.e, 0, t); t += 1000000ull)
			;
		cr_assert_leq(t - H.now, 1000000000ull + 1000000ull, "backoff above max");
		if (i == 7)
			cr_assert_geq(t - H.now, 500000000ull, "backoff did not grow");
		H.now = t;
		tsw_engine_link_connecting(H.e, 0, H.now);
	}
	cr_assert_eq(H.m.link_reconnects[0], 9);
}

Test(engine, sign_on_refused_is_not_ready_and_retried)
{
	cr_assert_eq(tsw_engine_new(&H.cfg, H.vault, H.state, &H.m, &H.e), 0);
	H.slot = tsw_engine_acq_open(H.e, H.now);
	cr_assert_not(tsw_engine_ready(H.e));
	h_sign_on(&H, 0, "91");
	cr_assert_not(tsw_engine_ready(H.e));
	cr_assert_eq(H.m.signon_failures, 1);
	h_advance(&H, 2000);
	collect_iss(0);
	cr_assert_eq(iss->n, 1);
	cr_assert_str_eq(h_field(&iss->m[0], 70), "001");
	cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[0], "00", 0), 0);
	cr_assert(tsw_engine_ready(H.e));
	cr_assert_eq(H.m.link_up[0], 3);
}

Test(engine, echo_when_idle_and_resign_on_when_unanswered)
{
	h_start(&H);
	h_advance(&H, 29999);
	collect_iss(0);
	cr_assert_eq(iss->n, 0);
	h_advance(&H, 1);
	collect_iss(0);
	cr_assert_eq(iss->n, 1);
	cr_assert_str_eq(h_field(&iss->m[0], 70), "301");
	cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[0], "00", 0), 0);
	cr_assert(tsw_engine_ready(H.e));
	/* next echo unanswered: the link signs on again */
	h_advance(&H, 30000);
	collect_iss(0);
	cr_assert_str_eq(h_field(&iss->m[0], 70), "301");
	h_advance(&H, 2000);
	cr_assert_eq(H.m.echo_timeouts, 1);
	cr_assert_not(tsw_engine_ready(H.e));
	collect_iss(0);
	cr_assert_str_eq(h_field(&iss->m[0], 70), "001");
}

Test(engine, issuer_echo_is_answered)
{
	uint8_t frame[256];
	int n;

	h_start(&H);
	n = (int)h_build(&H, frame + 2, sizeof(frame) - 2, "0800", 7, "1123031500", 11, "123456",
			 70, "301", 0);
	frame[0] = 0;
	frame[1] = (uint8_t)n;
	cr_assert_eq(tsw_engine_link_input(H.e, 0, frame, (size_t)n + 2, H.now), 0);
	collect_iss(0);
	cr_assert_eq(iss->n, 1);
	cr_assert_eq(memcmp(iss->m[0].mti, "0810", 4), 0);
	cr_assert_str_eq(h_field(&iss->m[0], 11), "123456");
	cr_assert_str_eq(h_field(&iss->m[0], 39), "00");
}

Test(engine, acquirer_0800_is_answered_0810)
{
	size_t n =
	    h_build(&H, body, sizeof(body), "0800", 7, "1123031500", 11, "000051", 70, "301", 0);

	h_start(&H);
	cr_assert_eq(h_send(&H, body, n), 0);
	collect_acq();
	cr_assert_eq(acq->n, 1);
	cr_assert_eq(memcmp(acq->m[0].mti, "0810", 4), 0);
	cr_assert_str_eq(h_field(&acq->m[0], 11), "000051");
	cr_assert_str_eq(h_field(&acq->m[0], 70), "301");
	cr_assert_str_eq(h_field(&acq->m[0], 39), "00");
	collect_iss(0);
	cr_assert_eq(iss->n, 0);
}

Test(engine, backpressure_holds_input_beyond_max_inflight)
{
	uint8_t all[4 * 600];
	size_t off = 0;
	unsigned i;

	H.cfg.settings.max_inflight_per_conn = 2;
	h_start(&H);
	for (i = 0; i < 3; i++) {
		char stan[7];
		size_t n;

		snprintf(stan, sizeof(stan), "00006%u", i);
		n = h_auth(&H, body, sizeof(body), H_OK, stan, 0);
		all[off] = (uint8_t)(n >> 8);
		all[off + 1] = (uint8_t)n;
		memcpy(all + off + 2, body, n);
		off += n + 2;
	}
	cr_assert_eq(h_send_raw(&H, all, off), 0);
	cr_assert(tsw_engine_acq_paused(H.e, (uint32_t)H.slot));
	cr_assert_eq(H.m.backpressure_pauses, 1);
	collect_iss(0);
	cr_assert_eq(iss->n, 2, "forwarded beyond the in-flight limit");
	cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[0], "00", 0), 0);
	/* the held request goes as soon as one is answered */
	struct h_msgs *iss2 = calloc(1, sizeof(*iss2));
	h_collect(&H, TSW_EP_LINK, 0, iss2);
	cr_assert_eq(iss2->n, 1);
	cr_assert_str_eq(h_field(&iss2->m[0], 2), h_tokens[H_OK].pan);
	cr_assert(tsw_engine_acq_paused(H.e, (uint32_t)H.slot), "2 in flight again");
	cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[1], "00", 0), 0);
	cr_assert_not(tsw_engine_acq_paused(H.e, (uint32_t)H.slot));
	cr_assert_eq(h_issuer_answer(&H, 0, &iss2->m[0], "00", 0), 0);
	collect_acq();
	cr_assert_eq(acq->n, 3);
	free(iss2);
}

Test(engine, output_not_read_pauses_then_closes_slow_consumer)
{
	unsigned i;
	uint32_t slot;

	H.cfg.settings.out_buf_bytes = 1024; /* raised to two frames: 16 KiB */
	h_start(&H);
	/* declines pile up unread: at half the buffer the connection pauses
	 * and keeps further input instead of answering it */
	for (i = 0; i < 150; i++) {
		size_t n = h_auth(&H, body, sizeof(body), H_DELETED, "000070", 0);

		if (h_send(&H, body, n) < 0)
			break;
	}
	cr_assert(tsw_engine_acq_paused(H.e, (uint32_t)H.slot));
	cr_assert_not(tsw_engine_next_close(H.e, &slot));
	/* reading resumes the held input */
	collect_acq();
	cr_assert_gt(acq->n, 0);
	cr_assert_eq(H.m.slow_consumer_closes, 0);
}

Test(engine, malformed_messages_get_30_or_close)
{
	static const uint8_t garbage[] = {0, 4, 'X', 'Y', 'Z', 'W'};
	size_t n;

	h_start(&H);
	/* DE41 with a control byte: MTI and DE11 still readable -> 30 */
	n = h_build(&H, body, sizeof(body), "0100", 2, h_tokens[H_OK].token, 11, "000081", 41,
		    "TERM0001", 0);
	{
		/* find TERM0001 and break it */
		uint8_t *p = memmem(body, n, "TERM0001", 8);

		cr_assert(p);
		p[0] = 0x01;
	}
	cr_assert_eq(h_send(&H, body, n), 0);
	collect_acq();
	cr_assert_eq(acq->n, 1);
	cr_assert_eq(memcmp(acq->m[0].mti, "0110", 4), 0);
	cr_assert_str_eq(h_field(&acq->m[0], 11), "000081");
	cr_assert_str_eq(h_field(&acq->m[0], 39), "30");
	cr_assert_str_eq(h_field(&acq->m[0], 44), "FORMAT");
	cr_assert_eq(H.m.format_errors, 1);
	/* no readable MTI: the connection must be closed */
	cr_assert_lt(h_send_raw(&H, garbage, sizeof(garbage)), 0);
}

Test(engine, response_mti_from_acquirer_closes_and_0300_gets_30)
{
	size_t n;

	h_start(&H);
	n = h_build(&H, body, sizeof(body), "0300", 11, "000082", 0);
	cr_assert_eq(h_send(&H, body, n), 0);
	collect_acq();
	cr_assert_eq(acq->n, 1);
	cr_assert_eq(memcmp(acq->m[0].mti, "0310", 4), 0);
	cr_assert_str_eq(h_field(&acq->m[0], 39), "30");
	n = h_build(&H, body, sizeof(body), "0110", 11, "000083", 0);
	cr_assert_lt(h_send(&H, body, n), 0);
}

Test(engine, oversized_frame_closes)
{
	uint8_t hdr[2] = {0x7f, 0xff};

	h_start(&H);
	cr_assert_lt(h_send_raw(&H, hdr, 2), 0);
	cr_assert_eq(H.m.frames_refused, 1);
}

Test(engine, token_for_token_sends_the_original_reference)
{
	size_t n = h_auth(&H, body, sizeof(body), H_T4T, "000091", 0);

	h_start(&H);
	cr_assert_eq(h_send(&H, body, n), 0);
	collect_iss(0);
	cr_assert_eq(iss->n, 1);
	cr_assert_str_eq(h_field(&iss->m[0], 2), h_tokens[H_T4T].pan);
	de48_has(&iss->m[0], 30, h_tokens[H_T4T].token);
	de48_has(&iss->m[0], 36, "TREF0");
}

Test(engine, routes_pick_the_longest_prefix)
{
	size_t n;

	H.cfg.settings.n_issuers = 2;
	H.cfg.settings.n_hosts = 2;
	strcpy(H.cfg.settings.hosts[1].addr.host, "127.0.0.1");
	H.cfg.settings.hosts[1].addr.port = 2;
	H.cfg.settings.hosts[1].issuer = 1;
	H.cfg.settings.n_routes = 3;
	strcpy(H.cfg.settings.routes[0].bin_prefix, "");
	H.cfg.settings.routes[0].issuer = 0;
	strcpy(H.cfg.settings.routes[1].bin_prefix, "6");
	H.cfg.settings.routes[1].issuer = 0;
	strcpy(H.cfg.settings.routes[2].bin_prefix, "6011");
	H.cfg.settings.routes[2].issuer = 1;
	h_start(&H);
	n = h_auth(&H, body, sizeof(body), H_ROUTE2, "000101", 0);
	cr_assert_eq(h_send(&H, body, n), 0);
	n = h_auth(&H, body, sizeof(body), H_OK, "000102", 0);
	cr_assert_eq(h_send(&H, body, n), 0);
	collect_iss(1);
	cr_assert_eq(iss->n, 1);
	cr_assert_str_eq(h_field(&iss->m[0], 2), h_tokens[H_ROUTE2].pan);
	collect_iss(0);
	cr_assert_eq(iss->n, 1);
	cr_assert_str_eq(h_field(&iss->m[0], 2), h_tokens[H_OK].pan);

	/* reload: no default route, 5123 unrouted -> 96 */
	struct tsw_engine_config c = H.cfg;
	c.settings.n_routes = 1;
	strcpy(c.settings.routes[0].bin_prefix, "6011");
	c.settings.routes[0].issuer = 1;
	cr_assert_eq(tsw_engine_reconfigure(H.e, &c), 0);
	n = h_auth(&H, body, sizeof(body), H_OK, "000103", 0);
	cr_assert_eq(h_send(&H, body, n), 0);
	collect_acq();
	cr_assert_str_eq(h_field(&acq->m[0], 39), "96");
	cr_assert_eq(H.m.no_route, 1);
	/* a route to an unknown issuer is refused */
	c.settings.routes[0].issuer = 5;
	cr_assert_eq(tsw_engine_reconfigure(H.e, &c), -TSW_E_CONFIG);
}

Test(engine, duplicate_in_flight_is_answered_94_and_not_forwarded)
{
	size_t n = h_auth(&H, body, sizeof(body), H_OK, "000111", 0);
	size_t n2 = h_auth(&H, body + 2048, 2048, H_OK, "000111", 7, "1123031501", 0);
	struct tsw_iso_msg first;
	uint8_t firstbuf[2048];

	h_start(&H);
	cr_assert_eq(h_send(&H, body, n), 0);
	cr_assert_eq(h_send(&H, body, n), 0);
	collect_acq();
	cr_assert_eq(acq->n, 1);
	cr_assert_str_eq(h_field(&acq->m[0], 39), "94");
	cr_assert_str_eq(h_field(&acq->m[0], 11), "000111");
	cr_assert_eq(memcmp(acq->m[0].mti, "0110", 4), 0);
	cr_assert_eq(H.m.duplicates_refused, 1);
	collect_iss(0);
	cr_assert_eq(iss->n, 1, "duplicate forwarded");
	memcpy(firstbuf, iss->buf + 2, iss->len - 2);
	cr_assert_eq(tsw_iso_decode(&H.prof, firstbuf, iss->len - 2, &first), 0);
	/* another DE7 is another request: distinct switch STANs */
	cr_assert_eq(h_send(&H, body + 2048, n2), 0);
	collect_iss(0);
	cr_assert_eq(iss->n, 1);
	cr_assert_str_neq(h_field(&iss->m[0], 11), h_field(&first, 11));
	cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[0], "00", 0), 0);
	cr_assert_eq(h_issuer_answer(&H, 0, &first, "00", 0), 0);
	/* a duplicate answer for a key no longer in flight is not matched */
	cr_assert_eq(h_issuer_answer(&H, 0, &first, "00", 0), 0);
	cr_assert_eq(H.m.unmatched_answers, 1);
	collect_acq();
	cr_assert_eq(acq->n, 2);
	/* answered: the same key may come again */
	cr_assert_eq(h_send(&H, body, n), 0);
	collect_iss(0);
	cr_assert_eq(iss->n, 1);
	cr_assert_eq(H.m.duplicates_refused, 1);
}

Test(engine, pending_table_full_answers_96)
{
	unsigned i;

	H.cfg.settings.max_pending = 2;
	h_start(&H);
	for (i = 0; i < 3; i++) {
		char stan[7];
		size_t n;

		snprintf(stan, sizeof(stan), "00012%u", i);
		n = h_auth(&H, body, sizeof(body), H_OK, stan, 0);

		cr_assert_eq(h_send(&H, body, n), 0);
	}
	collect_acq();
	cr_assert_eq(acq->n, 1);
	cr_assert_str_eq(h_field(&acq->m[0], 39), "96");
	cr_assert_eq(H.m.pending_full, 1);
}

Test(engine, closed_connection_answer_is_dropped)
{
	size_t n = h_auth(&H, body, sizeof(body), H_OK, "000131", 0);
	int slot2;

	h_start(&H);
	cr_assert_eq(h_send(&H, body, n), 0);
	collect_iss(0);
	tsw_engine_acq_close(H.e, (uint32_t)H.slot);
	slot2 = tsw_engine_acq_open(H.e, H.now);
	cr_assert_geq(slot2, 0);
	cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[0], "00", 0), 0);
	cr_assert_eq(H.m.answers_conn_gone, 1);
	H.slot = slot2;
	collect_acq();
	cr_assert_eq(acq->n, 0, "answer reached a new connection on the same slot");
}

Test(engine, max_conns_refuses_and_idle_connections_close)
{
	uint32_t slot;
	int i;

	H.cfg.settings.idle_timeout_ms = 1000;
	h_start(&H);
	for (i = 1; i < 4; i++)
		cr_assert_geq(tsw_engine_acq_open(H.e, H.now), 0);
	cr_assert_eq(tsw_engine_acq_open(H.e, H.now), -TSW_E_FULL);
	cr_assert_eq(H.m.conns_refused, 1);
	cr_assert_eq(H.m.conns_open, 4);
	h_advance(&H, 2000);
	for (i = 0; i < 4; i++)
		cr_assert(tsw_engine_next_close(H.e, &slot));
	cr_assert_not(tsw_engine_next_close(H.e, &slot));
	cr_assert_eq(H.m.conns_idle_closed, 4);
}

/* Forwarded at once, its use reserved in memory; the approval reaches
 * the acquirer only once that use is durable (the state's writer wakes
 * the engine after its commit); a second request is declined 65. */
Test(engine, limited_use_token_forwards_once_then_65)
{
	size_t n = h_auth(&H, body, sizeof(body), H_LIMITED, "000141", 0);
	int64_t deadline = h_real_ms() + 10000;
	uint64_t ticket;

	h_start(&H);
	cr_assert_eq(h_send(&H, body, n), 0);
	collect_iss(0);
	cr_assert_eq(iss->n, 1, "not forwarded before its use is durable");
	cr_assert_eq(tsw_engine_inflight(H.e), 1);
	ticket = h_record_ticket(&H); /* 0: the writer committed already */
	cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[0], "00", 0), 0);
	for (;;) {
		collect_acq();
		if (acq->n)
			break;
		h_wait_step(&H, deadline, "the approval");
	}
	cr_assert(ticket == 0 || tsw_state_durable(H.state, ticket),
		  "approved before the use was durable");
	cr_assert_str_eq(h_field(&acq->m[0], 39), "00");
	n = h_auth(&H, body, sizeof(body), H_LIMITED, "000142", 0);
	cr_assert_eq(h_send(&H, body, n), 0);
	collect_acq();
	cr_assert_eq(acq->n, 1);
	cr_assert_str_eq(h_field(&acq->m[0], 39), "65");
	cr_assert_str_eq(h_field(&acq->m[0], 44), "DOMAIN_USES");
}

Test(engine, metrics_rc_index_round_trips)
{
	unsigned i;

	for (i = 0; i < TSW_METRICS_RC_MAX - 1; i++)
		cr_assert_eq(tsw_metrics_rc_index(tsw_metrics_rc_name(i)), i);
	cr_assert_eq(tsw_metrics_rc_index("A7"), TSW_METRICS_RC_MAX - 1);
	cr_assert_eq(tsw_metrics_rc_index(NULL), TSW_METRICS_RC_MAX - 1);
	cr_assert_null(tsw_metrics_rc_name(TSW_METRICS_RC_MAX));
}

Test(engine, bad_config_is_refused)
{
	struct tsw_engine *e;

	H.cfg.settings.n_routes = 1;
	H.cfg.settings.routes[0].issuer = 3;
	cr_assert_eq(tsw_engine_new(&H.cfg, H.vault, H.state, &H.m, &e), -TSW_E_CONFIG);
	H.cfg.settings.n_routes = 0;
	H.cfg.settings.max_pending = 0;
	cr_assert_eq(tsw_engine_new(&H.cfg, H.vault, H.state, &H.m, &e), -TSW_E_CONFIG);
}

Test(engine, answers_beyond_a_full_output_close_the_slow_consumer)
{
	unsigned i, k = 0;
	uint32_t slot;

	H.cfg.settings.max_inflight_per_conn = 250;
	H.cfg.settings.max_pending = 256;
	H.cfg.settings.out_buf_bytes = 1024; /* raised to two frames: 16 KiB */
	h_start(&H);
	/* 200 requests in flight, answers never read by the acquirer */
	for (i = 0; i < 200; i++) {
		char stan[7];
		size_t n;

		snprintf(stan, sizeof(stan), "%06u", 1000 + i);
		n = h_auth(&H, body, sizeof(body), H_OK, stan, 0);
		cr_assert_eq(h_send(&H, body, n), 0);
	}
	collect_iss(0);
	cr_assert_eq(iss->n, 200);
	for (i = 0; i < iss->n; i++) {
		cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[i], "00", 0), 0);
		if (H.m.slow_consumer_closes)
			break;
		k++;
	}
	cr_assert_eq(H.m.slow_consumer_closes, 1, "output never filled");
	cr_assert(k > 40, "closed early after %u answers", k);
	cr_assert(tsw_engine_next_close(H.e, &slot));
	cr_assert_eq(slot, (uint32_t)H.slot);
}
