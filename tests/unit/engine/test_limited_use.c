/* Limited-use tokens (white-box: the engine's internal header): which
 * answers spend the use and which give it back, the engine__park timeout, the
 * degraded state writer, and the acquirer's reversal of a limited use.
 * Every answer to the acquirer is scanned for PAN digits. */
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

/* Every acquirer answer is scanned for the PAN of each test token. */
static void collect_acq(void)
{
	h_collect_acq_clean(&H, acq);
}

static void collect_iss(uint32_t link)
{
	h_collect(&H, TSW_EP_LINK, link, iss);
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
		if (h_keep_mti(iss, "0100") || tsw_engine_inflight(H.e) == 0 ||
		    (uint64_t)time(NULL) > deadline)
			break;
		poll(&pfd, 1, 1000);
		(void)!read(efd, &v, sizeof(v));
		h_advance(&H, 0);
	}
	close(efd);
	/* forwarded before its use was durable: its approval would wait */
	h_wait_records(&H);
	return iss->n;
}

TestSuite(limited_use, .init = setup, .fini = teardown, .timeout = 30);

/* The approval of a limited use answered 96 moved money at the issuer:
 * the use stays spent until the issuer acknowledges the reversal, then
 * it is given back (once). */
Test(limited_use, approved_limited_use_answered_96_gives_the_use_back_when_its_reversal_is_acked)
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

/* a partial approval spends the use, a engine__decline gives it back */
Test(limited_use, partial_approval_commits_the_limited_use)
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

Test(limited_use, declined_limited_use_is_given_back)
{
	h_start(&H);
	cr_assert_eq(send_limited("000421"), 1);
	cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[0], "05", 0), 0);
	collect_acq();
	cr_assert_str_eq(h_field(&acq->m[0], 39), "05");
	cr_assert_eq(send_limited("000422"), 1);
}

/* a request parked past issuer_timeout_ms is answered 96 */
Test(limited_use, parked_request_past_the_issuer_timeout_is_answered_96)
{
	size_t n = h_auth(&H, body, sizeof(body), H_LIMITED, "000701", 0);
	struct tsw_iso_msg m;

	h_start(&H);
	cr_assert_eq(tsw_iso_decode(&H.prof, body, n, &m), 0);
	/* ticket sequence 0: never durable (a writer that never commits) */
	tsw_engine_loop_begin(H.e, H.now);
	cr_assert_eq(engine__park(H.e, (uint32_t)H.slot, &m, &(struct resume){0}, H.now), 0);
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
Test(limited_use, limited_use_declined_at_once_while_the_state_writer_is_degraded)
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
	cr_assert_eq(engine__park(H.e, (uint32_t)H.slot, &m, &(struct resume){0}, H.now), 0);
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
	cr_assert_eq(h_keep_mti(iss, "0100"), 1, "an ordinary request is forwarded");
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
Test(limited_use, approved_reversal_gives_the_limited_use_back_once)
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
