/* Stand-in processing (src/engine/standin.c): with the issuer's link
 * down (or, with on_timeout, a forwarded request timed out) a 0100/0200
 * inside the operator's rules is approved by the switch (DE39 00, a DE38
 * of its own, DE44 STANDIN) only once its 0120 advice is durable in the
 * SAF queue; outside the rules it is 91 as without stand-in; the advice
 * reaches the issuer with the PAN when the link is back and leaves the
 * queue for good at its 0130. White-box: reads the engine's metrics shard
 * and its last SAF id. Time is the harness's clock, shared with the state. */
#include <criterion/criterion.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine_int.h"
#include "harness.h"
#include "tsw/authz.h"
#include "tsw/state.h"
#include "tsw/token.h"

#define DE22_CONTACTLESS "071"
#define DE22_CHIP "051"
#define DE7 "1123031500"

static struct h H;
static struct h_msgs *acq, *iss;
static uint8_t body[4096];

static void setup(void)
{
	h_init(&H);
	acq = calloc(1, sizeof(*acq));
	iss = calloc(1, sizeof(*iss));
	cr_assert(acq && iss);
	/* the rules of the issue's example: contactless and chip up to 1000 */
	H.cfg.settings.standin_enabled = true;
	H.cfg.settings.standin_max_amount = 1000;
	H.cfg.settings.standin_modes = 1u << TSW_POS_CONTACTLESS | 1u << TSW_POS_CHIP;
	H.cfg.settings.standin_window_s = 3600;
	H.cfg.settings.standin_max_tokens = 64;
}

static void teardown(void)
{
	h_fini(&H);
	free(acq);
	free(iss);
}

TestSuite(standin, .init = setup, .fini = teardown, .timeout = 30);

static int64_t real_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct tsw_state_stats stats(void)
{
	struct tsw_state_stats ss;

	tsw_state_stats(H.state, &ss);
	return ss;
}

/* Starts the engine and takes the issuer's link down: the issuer is
 * unavailable until h_sign_on. */
static void start_issuer_down(void)
{
	h_start(&H);
	tsw_engine_link_down(H.e, 0, H.now);
	h_collect(&H, TSW_EP_LINK, 0, iss);
	cr_assert_eq(iss->n, 0);
}

static void send_auth(enum h_token t, const char *stan, const char *amount, const char *de22)
{
	size_t n = h_auth(&H, body, sizeof(body), t, stan, 4, amount, 22, de22, 0);

	cr_assert_eq(h_send(&H, body, n), 0);
}

/* The one answer to the acquirer, collected only once the last SAF put
 * (the advice) is durable: h_collect_after_commit fails when an answer
 * was there before. */
static const struct tsw_iso_msg *answer_after_advice(void)
{
	h_collect_after_commit(&H, acq);
	cr_assert_eq(acq->n, 1, "one answer, got %u", acq->n);
	return &acq->m[0];
}

/* The one answer to the acquirer, there at once (no SAF put held it). */
static const struct tsw_iso_msg *answer_now(void)
{
	h_collect(&H, TSW_EP_ACQ, (uint32_t)H.slot, acq);
	cr_assert_eq(acq->n, 1, "one answer, got %u", acq->n);
	return &acq->m[0];
}

static void expect_standin_approval(const struct tsw_iso_msg *a, const char *stan)
{
	cr_assert_eq(memcmp(a->mti, "0110", 4), 0, "MTI %.4s", a->mti);
	cr_assert_str_eq(h_field(a, 39), "00");
	cr_assert_str_eq(h_field(a, 44), "STANDIN");
	cr_assert_eq(a->f[38].len, 6, "a 6-character approval code");
	cr_assert_eq(tsw_iso_ptr(a, 38)[0], 'S', "the switch's own code: %s", h_field(a, 38));
	cr_assert_str_eq(h_field(a, 11), stan, "the acquirer's DE11");
	cr_assert_str_eq(h_field(a, 2), h_tokens[H_OK].token, "the token, never the PAN");
}

static void expect_unavailable(const struct tsw_iso_msg *a)
{
	cr_assert_str_eq(h_field(a, 39), "91");
	cr_assert_str_eq(h_field(a, 44), "ISSUER_UNAVAILABLE");
	cr_assert_not(tsw_iso_has(a, 38));
}

static unsigned count_mti(const struct h_msgs *out, const char *mti)
{
	unsigned i, n = 0;

	for (i = 0; i < out->n; i++)
		n += memcmp(out->m[i].mti, mti, 4) == 0;
	return n;
}

/* Index of the only message with mti in out. */
static unsigned the_one(const struct h_msgs *out, const char *mti)
{
	unsigned i;

	cr_assert_eq(count_mti(out, mti), 1, "%u of %s among %u messages", count_mti(out, mti), mti,
		     out->n);
	for (i = 0; memcmp(out->m[i].mti, mti, 4) != 0; i++)
		;
	return i;
}

/* Signs the link on again (past the reconnect backoff) and collects what
 * follows the sign-on on it. */
static void issuer_back(void)
{
	H.now += 2000 * 1000000ull;
	h_sign_on(&H, 0, "00");
	h_collect(&H, TSW_EP_LINK, 0, iss);
}

Test(standin, off_by_default_link_down_is_91_and_queues_nothing)
{
	H.cfg.settings.standin_enabled = false;
	start_issuer_down();
	send_auth(H_OK, "000101", "000000000500", DE22_CONTACTLESS);
	expect_unavailable(answer_now());
	cr_expect_eq(H.e->saf_last_id, 0, "no advice");
	cr_expect_eq(stats().saf_depth, 0);
	cr_expect_eq(H.m.standin[TSW_STANDIN_APPROVED], 0);
	cr_expect_eq(H.m.declines[TSW_AUTHZ_ISSUER_UNAVAILABLE], 1);
}

Test(standin, link_down_contactless_under_the_floor_is_approved_after_its_advice_is_durable)
{
	start_issuer_down();
	send_auth(H_OK, "000102", "000000000500", DE22_CONTACTLESS);
	/* nothing goes out before the advice is on disk */
	h_collect(&H, TSW_EP_ACQ, (uint32_t)H.slot, acq);
	cr_assert_eq(acq->n, 0, "the approval waits for its advice");
	cr_expect_eq(H.m.answers_held, 1);
	expect_standin_approval(answer_after_advice(), "000102");
	cr_expect_eq(H.m.standin[TSW_STANDIN_APPROVED], 1);
	cr_expect_eq(H.m.standin_advices_queued, 1);
	cr_expect_eq(H.m.requests[TSW_MTI_0100][tsw_metrics_rc_index("00")], 1,
		     "counted as an approval");
	cr_expect_eq(H.m.declines[TSW_AUTHZ_ISSUER_UNAVAILABLE], 0, "not a decline");
	cr_expect_eq(H.m.answers_held, 0);
	cr_expect_eq(stats().saf_depth, 1, "one advice queued");
	cr_expect_eq(tsw_engine_inflight(H.e), 0, "its bytes were reported sent");
}

Test(standin, each_approval_has_a_code_of_its_own_and_workers_never_share_one)
{
	struct h_msgs *other = calloc(1, sizeof(*other));
	char first[7];
	struct tsw_engine *e0;
	int slot0;

	H.cfg.settings.standin_max_amount_per_token = 100000;
	H.cfg.n_workers = 2;
	H.cfg.worker_id = 1;
	start_issuer_down();
	send_auth(H_OK, "000103", "000000000100", DE22_CONTACTLESS);
	snprintf(first, sizeof(first), "%s", h_field(answer_after_advice(), 38));
	send_auth(H_OK, "000104", "000000000100", DE22_CONTACTLESS);
	cr_expect_str_neq(h_field(answer_after_advice(), 38), first, "two approvals, two codes");

	/* worker 0, with the same counter position, hands out another code */
	e0 = H.e;
	slot0 = H.slot;
	H.cfg.worker_id = 0;
	h_start(&H);
	tsw_engine_link_down(H.e, 0, H.now);
	H.e->standin_seq = e0->standin_seq - 2;
	send_auth(H_OK, "000105", "000000000100", DE22_CONTACTLESS);
	h_collect_after_commit(&H, other);
	cr_assert_eq(other->n, 1);
	cr_expect_str_eq(h_field(&other->m[0], 39), "00");
	cr_expect_str_neq(h_field(&other->m[0], 38), first, "worker 0's code is not worker 1's");
	tsw_engine_free(H.e);
	H.e = e0;
	H.slot = slot0;
	free(other);
}

Test(standin, above_max_amount_is_91_and_queues_nothing)
{
	start_issuer_down();
	send_auth(H_OK, "000111", "000000001001", DE22_CONTACTLESS);
	expect_unavailable(answer_now());
	cr_expect_eq(H.e->saf_last_id, 0);
	cr_expect_eq(H.m.standin[TSW_STANDIN_DECLINED_AMOUNT], 1);
	cr_expect_eq(H.m.standin[TSW_STANDIN_APPROVED], 0);

	/* at the floor itself: approved */
	send_auth(H_OK, "000112", "000000001000", DE22_CONTACTLESS);
	expect_standin_approval(answer_after_advice(), "000112");
}

Test(standin, a_mode_outside_the_rules_is_91)
{
	H.cfg.settings.standin_modes = 1u << TSW_POS_CONTACTLESS;
	start_issuer_down();
	send_auth(H_OK, "000121", "000000000500", DE22_CHIP);
	expect_unavailable(answer_now());
	cr_expect_eq(H.m.standin[TSW_STANDIN_DECLINED_MODE], 1);
	cr_expect_eq(H.e->saf_last_id, 0);
}

Test(standin, a_pin_transaction_is_91_only_the_issuer_verifies_pins)
{
	size_t n;

	start_issuer_down();
	/* any 8 bytes: the PIN block is never opened when no issuer is there */
	n = h_auth(&H, body, sizeof(body), H_OK, "000131", 4, "000000000500", 22, DE22_CONTACTLESS,
		   52, "PINBLOCK", 0);
	cr_assert_eq(h_send(&H, body, n), 0);
	expect_unavailable(answer_now());
	cr_expect_eq(H.m.standin[TSW_STANDIN_DECLINED_PIN], 1);
	cr_expect_eq(H.m.standin[TSW_STANDIN_APPROVED], 0);
	cr_expect_eq(H.e->saf_last_id, 0);
}

Test(standin, a_token_assurance_below_the_floor_is_91)
{
	H.cfg.settings.standin_min_assurance = 8; /* the harness's tokens have level 7 */
	start_issuer_down();
	send_auth(H_OK, "000131", "000000000500", DE22_CONTACTLESS);
	expect_unavailable(answer_now());
	cr_expect_eq(H.m.standin[TSW_STANDIN_DECLINED_ASSURANCE], 1);
	cr_expect_eq(H.e->saf_last_id, 0);

	tsw_engine_free(H.e);
	H.cfg.settings.standin_min_assurance = 7;
	start_issuer_down();
	send_auth(H_OK, "000132", "000000000500", DE22_CONTACTLESS);
	expect_standin_approval(answer_after_advice(), "000132");
}

Test(standin, a_domain_control_still_declines_first)
{
	start_issuer_down();
	send_auth(H_SUSPENDED, "000135", "000000000500", DE22_CONTACTLESS);
	cr_assert_str_eq(h_field(answer_now(), 39), "62");
	cr_expect_eq(H.m.standin[TSW_STANDIN_APPROVED], 0);
	cr_expect_eq(H.e->saf_last_id, 0);
}

Test(standin, the_exposure_window_refuses_the_approval_beyond_the_per_token_total)
{
	H.cfg.settings.standin_max_amount = 500;
	H.cfg.settings.standin_max_amount_per_token = 1000;
	H.cfg.settings.standin_window_s = 60;
	start_issuer_down();
	send_auth(H_OK, "000141", "000000000500", DE22_CONTACTLESS);
	expect_standin_approval(answer_after_advice(), "000141");
	h_advance(&H, 1000);
	send_auth(H_OK, "000142", "000000000500", DE22_CONTACTLESS);
	expect_standin_approval(answer_after_advice(), "000142");
	h_advance(&H, 1000);
	send_auth(H_OK, "000143", "000000000001", DE22_CONTACTLESS);
	expect_unavailable(answer_now());
	cr_expect_eq(H.m.standin[TSW_STANDIN_DECLINED_EXPOSURE], 1);
	cr_expect_eq(stats().saf_depth, 2, "no advice for the refused one");

	/* another token has its own total */
	send_auth(H_T4T, "000144", "000000000500", DE22_CONTACTLESS);
	cr_expect_str_eq(h_field(answer_after_advice(), 39), "00");

	/* the window ends 60 s after the token's first stand-in */
	h_advance(&H, 57000);
	send_auth(H_OK, "000145", "000000000001", DE22_CONTACTLESS);
	expect_unavailable(answer_now());
	h_advance(&H, 1000);
	send_auth(H_OK, "000146", "000000000500", DE22_CONTACTLESS);
	expect_standin_approval(answer_after_advice(), "000146");
	cr_expect_eq(H.m.standin[TSW_STANDIN_DECLINED_EXPOSURE], 2);
	cr_expect_eq(H.m.standin[TSW_STANDIN_APPROVED], 4);
}

Test(standin, the_exposure_is_one_for_every_worker)
{
	struct tsw_standin_exposure *shared;
	struct tsw_engine *e1;
	int slot1;

	cr_assert_eq(tsw_standin_exposure_new(16, &shared), 0);
	H.cfg.standin_exposure = shared;
	H.cfg.settings.standin_max_amount_per_token = 1000;
	H.cfg.n_workers = 2;
	H.cfg.worker_id = 1;
	start_issuer_down();
	send_auth(H_OK, "000151", "000000000800", DE22_CONTACTLESS);
	expect_standin_approval(answer_after_advice(), "000151");

	/* the same token on worker 0: 800 + 800 is above 1000 */
	e1 = H.e;
	slot1 = H.slot;
	H.cfg.worker_id = 0;
	h_start(&H);
	tsw_engine_link_down(H.e, 0, H.now);
	send_auth(H_OK, "000152", "000000000800", DE22_CONTACTLESS);
	expect_unavailable(answer_now());
	cr_expect_eq(H.m.standin[TSW_STANDIN_DECLINED_EXPOSURE], 1);
	tsw_engine_free(H.e);
	H.e = e1;
	H.slot = slot1;
	/* h_fini frees the engine before the table */
	tsw_engine_free(H.e);
	H.e = NULL;
	tsw_standin_exposure_free(shared);
}

Test(standin, a_full_exposure_table_refuses_a_new_token_and_forgets_no_exposure)
{
	H.cfg.settings.standin_max_tokens = 1;
	H.cfg.settings.standin_window_s = 60;
	start_issuer_down();
	send_auth(H_OK, "000161", "000000000500", DE22_CONTACTLESS);
	expect_standin_approval(answer_after_advice(), "000161");
	send_auth(H_T4T, "000162", "000000000500", DE22_CONTACTLESS);
	expect_unavailable(answer_now());
	cr_expect_eq(H.m.standin_exposure_full, 1);
	cr_expect_eq(H.m.standin[TSW_STANDIN_DECLINED_EXPOSURE], 1);
	/* once the first token's window is over, its entry makes room */
	h_advance(&H, 61000);
	send_auth(H_T4T, "000163", "000000000500", DE22_CONTACTLESS);
	cr_expect_str_eq(h_field(answer_after_advice(), 39), "00");
}

Test(standin, an_advice_the_queue_refuses_means_no_stand_in)
{
	tsw_state_close(H.state);
	H.state = NULL;
	H.scfg.saf_max_entries = 1;
	{
		char sdir[128];

		snprintf(sdir, sizeof(sdir), "%s/state", H.dir);
		cr_assert_eq(tsw_state_open(sdir, &H.scfg, &H.state), 0);
		cr_assert_eq(tsw_state_add_waker(H.state, H.state_efd), 0);
	}
	start_issuer_down();
	send_auth(H_OK, "000171", "000000000500", DE22_CONTACTLESS);
	expect_standin_approval(answer_after_advice(), "000171");
	send_auth(H_T4T, "000172", "000000000500", DE22_CONTACTLESS);
	expect_unavailable(answer_now());
	cr_expect_eq(H.m.standin[TSW_STANDIN_DECLINED_UNQUEUED], 1);
	cr_expect_eq(H.m.standin_advices_queued, 1);
}

Test(standin, the_advice_reaches_the_issuer_with_the_pan_and_its_0130_removes_it_for_good)
{
	const struct tsw_iso_msg *adv;
	char code[7], want90[43];
	unsigned i;

	start_issuer_down();
	send_auth(H_OK, "000181", "000000000500", DE22_CONTACTLESS);
	snprintf(code, sizeof(code), "%s", h_field(answer_after_advice(), 38));
	/* nothing while the issuer is down, however long */
	h_advance(&H, 50);
	h_collect(&H, TSW_EP_LINK, 0, iss);
	cr_assert_eq(iss->n, 0);

	issuer_back();
	i = the_one(iss, "0120");
	adv = &iss->m[i];
	cr_expect_str_eq(h_field(adv, 2), h_tokens[H_OK].pan, "the issuer leg carries the PAN");
	cr_expect_str_eq(h_field(adv, 14), "2911", "the PAN expiry");
	cr_expect_str_eq(h_field(adv, 3), "000000");
	cr_expect_str_eq(h_field(adv, 4), "000000000500");
	cr_expect_str_eq(h_field(adv, 38), code, "the stand-in's approval code");
	cr_expect_str_eq(h_field(adv, 39), "00");
	cr_expect_str_eq(h_field(adv, 37), "123456789012");
	cr_expect_str_eq(h_field(adv, 41), "TERM0001");
	cr_expect_str_neq(h_field(adv, 11), "000181", "a switch STAN");
	cr_expect_eq(adv->f[7].len, 10);
	/* the issuer never saw the original: DE90 names it by the acquirer's trace */
	snprintf(want90, sizeof(want90), "0100000181%s%022d", DE7, 0);
	cr_expect_str_eq(h_field(adv, 90), want90);
	cr_expect(h_contains(tsw_iso_ptr(adv, 48), adv->f[48].len, h_tokens[H_OK].token),
		  "DE48 tag 30 names the token");
	cr_expect_not(tsw_iso_has(adv, 35));
	cr_expect_eq(count_mti(iss, "0400"), 0, "no reversal");

	cr_assert_eq(h_issuer_answer(&H, 0, adv, "00", 0), 0); /* the 0130 */
	cr_expect_eq(H.m.saf_acked, 1);
	cr_expect_eq(stats().saf_depth, 0);
	h_advance(&H, 120000); /* past every retry backoff */
	h_collect(&H, TSW_EP_LINK, 0, iss);
	cr_expect_eq(count_mti(iss, "0120"), 0, "never sent again");
	/* nor after a restart: the delete was committed */
	h_restart(&H);
	cr_expect_eq(stats().saf_loaded, 0);
	h_advance(&H, 1000);
	h_collect(&H, TSW_EP_LINK, 0, iss);
	cr_expect_eq(count_mti(iss, "0120"), 0);
	cr_expect_eq(H.m.saf_sent, 0);
}

Test(standin, an_unanswered_advice_is_retried_until_its_0130)
{
	unsigned i;
	char first[7];

	H.cfg.settings.saf_retry_min_ms = 1000;
	H.cfg.settings.saf_poll_ms = 100;
	start_issuer_down();
	send_auth(H_OK, "000185", "000000000500", DE22_CONTACTLESS);
	(void)answer_after_advice();
	issuer_back();
	i = the_one(iss, "0120");
	snprintf(first, sizeof(first), "%s", h_field(&iss->m[i], 11));
	h_advance(&H, 2000); /* its issuer timeout */
	h_advance(&H, 1100); /* its backoff */
	h_collect(&H, TSW_EP_LINK, 0, iss);
	i = the_one(iss, "0120");
	cr_expect_str_neq(h_field(&iss->m[i], 11), first, "sent again with a new STAN");
	cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[i], "00", 0), 0);
	cr_expect_eq(H.m.saf_sent, 2);
	cr_expect_eq(H.m.saf_acked, 1);
	cr_expect_eq(stats().saf_depth, 0);
}

Test(standin, a_0200_is_advised_by_a_0220)
{
	size_t n;
	unsigned i;

	start_issuer_down();
	n = h_auth(&H, body, sizeof(body), H_OK, "000191", 22, DE22_CONTACTLESS, 0);
	cr_assert_eq(memcmp(body, "0100", 4), 0);
	body[1] = '2'; /* a 0200 */
	cr_assert_eq(h_send(&H, body, n), 0);
	h_collect_after_commit(&H, acq);
	cr_assert_eq(acq->n, 1);
	cr_expect_eq(memcmp(acq->m[0].mti, "0210", 4), 0);
	cr_expect_str_eq(h_field(&acq->m[0], 44), "STANDIN");
	issuer_back();
	i = the_one(iss, "0220");
	cr_expect_eq(memcmp(tsw_iso_ptr(&iss->m[i], 90), "0200", 4), 0);
}

Test(standin, on_timeout_an_eligible_request_is_approved_and_advised_never_reversed)
{
	struct tsw_iso_msg orig;
	uint8_t origbuf[2048];
	char want90[43];
	unsigned i;

	H.cfg.settings.standin_on_timeout = true;
	h_start(&H);
	send_auth(H_OK, "000201", "000000000500", DE22_CONTACTLESS);
	h_collect(&H, TSW_EP_LINK, 0, iss);
	i = the_one(iss, "0100");
	memcpy(origbuf, iss->m[i].buf, iss->m[i].len);
	cr_assert_eq(tsw_iso_decode(&H.prof, origbuf, iss->m[i].len, &orig), 0);

	h_advance(&H, 2000); /* the issuer's timeout */
	expect_standin_approval(answer_after_advice(), "000201");
	cr_expect_eq(H.m.timeouts, 1);
	cr_expect_eq(H.m.standin[TSW_STANDIN_APPROVED], 1);
	cr_expect_eq(stats().saf_depth, 1, "the advice, and nothing else");

	/* the link is up: the advice went at the timeout's tick */
	h_advance(&H, 300);
	h_collect(&H, TSW_EP_LINK, 0, iss);
	cr_expect_eq(count_mti(iss, "0400"), 0, "no reversal");
	i = the_one(iss, "0120");
	/* the issuer saw the original: DE90 names it by the switch STAN */
	snprintf(want90, sizeof(want90), "0100%s%s%022d", h_field(&orig, 11), DE7, 0);
	cr_expect_str_eq(h_field(&iss->m[i], 90), want90);
	cr_expect_str_eq(h_field(&iss->m[i], 2), h_tokens[H_OK].pan);
	cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[i], "00", 0), 0);
	cr_expect_eq(stats().saf_depth, 0);
	h_advance(&H, 120000);
	h_collect(&H, TSW_EP_LINK, 0, iss);
	cr_expect_eq(count_mti(iss, "0400"), 0, "never a reversal");
	cr_expect_eq(count_mti(iss, "0120"), 0);
}

Test(standin, on_timeout_a_request_outside_the_rules_gets_91_and_its_reversal)
{
	unsigned i;

	H.cfg.settings.standin_on_timeout = true;
	h_start(&H);
	send_auth(H_OK, "000211", "000000005000", DE22_CONTACTLESS);
	h_collect(&H, TSW_EP_LINK, 0, iss);
	cr_assert_eq(iss->n, 1);
	h_advance(&H, 2000);
	expect_unavailable(answer_after_advice());
	cr_expect_eq(H.m.standin[TSW_STANDIN_DECLINED_AMOUNT], 1);
	h_advance(&H, 300);
	h_collect(&H, TSW_EP_LINK, 0, iss);
	i = the_one(iss, "0400");
	cr_expect_not(tsw_iso_has(&iss->m[i], 38));
	cr_expect_eq(count_mti(iss, "0120"), 0);
}

Test(standin, without_on_timeout_a_timeout_is_91_and_a_reversal)
{
	h_start(&H);
	send_auth(H_OK, "000215", "000000000500", DE22_CONTACTLESS);
	h_collect(&H, TSW_EP_LINK, 0, iss);
	h_advance(&H, 2000);
	expect_unavailable(answer_after_advice());
	h_advance(&H, 300);
	h_collect(&H, TSW_EP_LINK, 0, iss);
	(void)the_one(iss, "0400");
	cr_expect_eq(H.m.standin[TSW_STANDIN_APPROVED], 0);
}

/* Waits (real time, on the state's eventfd) until a limited-use request
 * parked for its use has gone on: the engine put its advice. */
static void wait_unparked(void)
{
	int64_t deadline = real_ms() + 10000;

	while (H.e->saf_last_id == 0) {
		struct pollfd p = {.fd = H.state_efd, .events = POLLIN};
		uint64_t v;

		cr_assert_gt(deadline - real_ms(), 0, "the parked request never went on");
		if (poll(&p, 1, 10) == 1)
			(void)!read(H.state_efd, &v, sizeof(v));
		h_advance(&H, 0);
	}
}

Test(standin, a_limited_use_is_committed_by_a_stand_in_approval)
{
	struct tsw_state_token st;
	size_t n;

	start_issuer_down();
	n = h_auth(&H, body, sizeof(body), H_LIMITED, "000221", 22, DE22_CONTACTLESS, 0);
	cr_assert_eq(h_send(&H, body, n), 0);
	wait_unparked();
	h_collect_after_commit(&H, acq);
	cr_assert_eq(acq->n, 1);
	cr_assert_str_eq(h_field(&acq->m[0], 39), "00");
	cr_assert_str_eq(h_field(&acq->m[0], 44), "STANDIN");
	cr_assert_eq(tsw_state_get(H.state, h_tokens[H_LIMITED].token, 16, &st), 0);
	cr_expect_eq(st.used, 1, "the use is spent");
	cr_expect_eq(st.reserved, 0, "and no longer only reserved");

	/* its one use is gone: the domain control declines the next one */
	n = h_auth(&H, body, sizeof(body), H_LIMITED, "000222", 22, DE22_CONTACTLESS, 0);
	cr_assert_eq(h_send(&H, body, n), 0);
	cr_assert_str_eq(h_field(answer_now(), 39), "65");
	cr_expect_eq(H.m.standin[TSW_STANDIN_APPROVED], 1);
}

Test(standin, an_approval_whose_connection_closed_while_held_is_reversed_after_its_advice)
{
	char code[7], de90[43];
	unsigned a, r;

	start_issuer_down();
	send_auth(H_OK, "000231", "000000000500", DE22_CONTACTLESS);
	tsw_engine_acq_close(H.e, (uint32_t)H.slot);
	h_advance(&H, 0);
	/* the hold ends at the advice's commit, or at durable_wait_ms */
	h_advance(&H, 1000);
	cr_expect_eq(H.m.answers_held, 0);
	cr_expect_eq(H.m.answers_conn_gone, 1);
	cr_expect_eq(H.m.answers_undelivered_reversed, 1);
	cr_expect_eq(H.m.standin[TSW_STANDIN_APPROVED], 0, "never approved to anyone");
	issuer_back();
	a = the_one(iss, "0120");
	cr_expect_eq(count_mti(iss, "0400"), 0, "the reversal waits for the advice's 0130");
	snprintf(code, sizeof(code), "%s", h_field(&iss->m[a], 38));
	snprintf(de90, sizeof(de90), "%s", h_field(&iss->m[a], 90));
	cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[a], "00", 0), 0);
	h_advance(&H, 300);
	h_collect(&H, TSW_EP_LINK, 0, iss);
	r = the_one(iss, "0400");
	cr_expect_str_eq(h_field(&iss->m[r], 38), code, "the reversal names the stand-in's code");
	cr_expect_str_eq(h_field(&iss->m[r], 90), de90, "the same original");
}

Test(standin, a_repeat_while_held_is_a_duplicate_not_a_second_stand_in)
{
	start_issuer_down();
	send_auth(H_OK, "000241", "000000000500", DE22_CONTACTLESS);
	send_auth(H_OK, "000241", "000000000500", DE22_CONTACTLESS);
	h_collect(&H, TSW_EP_ACQ, (uint32_t)H.slot, acq);
	cr_assert_eq(acq->n, 1);
	cr_expect_str_eq(h_field(&acq->m[0], 39), "94");
	expect_standin_approval(answer_after_advice(), "000241");
	cr_expect_eq(H.m.standin_advices_queued, 1);
}

/* A stand-in approval that never reaches the acquirer is reversed, but
 * the issuer hears of the approval first: the reversal waits until the
 * advice is acknowledged, however many tries the advice takes (a 0400
 * before its 0120 would be answered "original not found" and settled,
 * and the advice then books an approval nobody got). */
Test(standin, the_reversal_of_an_undelivered_approval_never_overtakes_its_advice)
{
	struct tsw_endpoint ep;
	const uint8_t *data;
	int64_t deadline;
	size_t len;
	unsigned i;

	H.cfg.settings.saf_retry_min_ms = 1000;
	H.cfg.settings.saf_poll_ms = 100;
	start_issuer_down();
	ep = (struct tsw_endpoint){.kind = TSW_EP_ACQ, .slot = (uint32_t)H.slot};
	send_auth(H_OK, "000195", "000000000500", DE22_CONTACTLESS);
	/* the approval is written once its advice is durable, never sent */
	deadline = real_ms() + 10000;
	for (;;) {
		tsw_engine_out(H.e, ep, &data, &len);
		if (len)
			break;
		h_wait_step(&H, deadline, "the stand-in approval in the output");
	}
	tsw_engine_acq_close(H.e, (uint32_t)H.slot);
	cr_assert_eq(H.m.answers_undelivered_reversed, 1);
	cr_assert_eq(stats().saf_depth, 2, "the advice and the reversal");

	issuer_back();
	i = the_one(iss, "0120");
	cr_assert_eq(count_mti(iss, "0400"), 0, "the reversal went with its advice");
	cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[i], "96", 0), 0); /* try again later */
	h_advance(&H, 500);
	h_collect(&H, TSW_EP_LINK, 0, iss);
	cr_assert_eq(count_mti(iss, "0400"), 0, "the reversal overtook the retried advice");
	h_advance(&H, 1100); /* the advice's backoff */
	h_collect(&H, TSW_EP_LINK, 0, iss);
	i = the_one(iss, "0120");
	cr_assert_eq(count_mti(iss, "0400"), 0);
	cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[i], "00", 0), 0); /* the 0130 */
	h_advance(&H, 200);
	h_collect(&H, TSW_EP_LINK, 0, iss);
	i = the_one(iss, "0400");
	cr_assert_str_eq(h_field(&iss->m[i], 2), h_tokens[H_OK].pan);
	cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[i], "00", 0), 0);
	cr_assert_eq(stats().saf_depth, 0);
}
