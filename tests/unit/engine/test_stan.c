/* Switch STANs and answer matching (white-box: the engine's internal
 * header): a timed-out STAN is not reused while remembered, an answer
 * must echo the request's fields, workers own disjoint STAN spans, an
 * acquirer's reversal names its original by the switch STAN. Every
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

/* Every acquirer answer is scanned for the PAN of each test token. */
static void collect_acq(void)
{
	h_collect_acq_clean(&H, acq);
}

static void collect_iss(uint32_t link)
{
	h_collect(&H, TSW_EP_LINK, link, iss);
}

TestSuite(stan, .init = setup, .fini = teardown, .timeout = 30);

/* a timed-out STAN is not handed out while its late answer may
 * still come */
Test(stan, timed_out_stan_is_not_reused_while_remembered)
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
	H.e->stan_seq = stan_a % engine__stan_span(&H.cfg) - 1;
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

/* echoed DE4/DE37/DE41 must be the request's */
Test(stan, answer_echoing_other_fields_is_unmatched)
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

/* workers own disjoint STAN spans; max_pending fits the span */
Test(stan, workers_stamp_disjoint_stan_spans)
{
	struct tsw_engine *e0, *e10;
	uint32_t span, s0, s10;

	H.cfg.n_workers = 16;
	span = engine__stan_span(&H.cfg);
	cr_assert_eq(span, 62500);
	H.cfg.worker_id = 0;
	cr_assert_eq(tsw_engine_new(&H.cfg, H.vault, H.state, &H.m, &e0), 0);
	H.cfg.worker_id = 10;
	cr_assert_eq(tsw_engine_new(&H.cfg, H.vault, H.state, &H.m, &e10), 0);
	s0 = engine__stan_next(e0, 0);
	s10 = engine__stan_next(e10, 0);
	cr_assert(s0 > 0 && s0 < span);
	cr_assert(s10 >= 10 * span && s10 < 11 * span, "worker 10 stamped %u", s10);
	e10->stan_seq = span - 2;
	cr_assert_lt(engine__stan_next(e10, 0), 11 * span);
	cr_assert_geq(engine__stan_next(e10, 0), 10 * span, "wrapped out of the span");
	tsw_engine_free(e0);
	tsw_engine_free(e10);

	H.cfg.worker_id = 16;
	cr_assert_eq(tsw_engine_new(&H.cfg, H.vault, H.state, &H.m, &e0), -TSW_E_CONFIG);
	H.cfg.worker_id = 15;
	H.cfg.settings.max_pending = span;
	cr_assert_eq(tsw_engine_new(&H.cfg, H.vault, H.state, &H.m, &e0), -TSW_E_CONFIG);
	H.cfg.n_workers = 0;
	cr_assert_eq(tsw_engine_new(&H.cfg, H.vault, H.state, &H.m, &e0), -TSW_E_CONFIG,
		     "worker 15 of the default 10");
}

/* an acquirer's reversal names the original by the switch STAN */
Test(stan, acquirer_reversal_de90_is_rewritten_to_the_switch_stan)
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
