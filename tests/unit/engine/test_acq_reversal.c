/* Acquirer reversals are matched to their original only for the same
 * acquirer (DE32 and the connection's peer address), on whichever worker
 * the reversal comes in (src/engine/acq_reversal.c). An attacker who
 * knows token, DE11, DE7 and DE41 of another acquirer's original gets
 * neither the DE90 rewrite nor the limited use back. */
#include <criterion/criterion.h>
#include <errno.h>
#include <arpa/inet.h>
#include <netinet/in.h>
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

TestSuite(acq_reversal, .init = setup, .fini = teardown, .timeout = 30);

#define ORIG_DE7 "1123031500"

static void set_peer(struct tsw_engine *e, int slot, const char *ip)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(40000)};

	cr_assert_eq(inet_pton(AF_INET, ip, &sa.sin_addr), 1);
	tsw_engine_acq_peer(e, (uint32_t)slot, (const struct sockaddr *)&sa, sizeof(sa));
}

/* The limited-use original from acquirer de32 on H.slot, approved;
 * returns its switch STAN as the issuer saw it. */
static void approve_original(const char *stan, const char *de32, char sw[7])
{
	size_t n = h_build(&H, body, sizeof(body), "0100", 2, h_tokens[H_LIMITED].token, 3,
			   "000000", 4, "000000000500", 7, ORIG_DE7, 11, stan, 14, "3012", 22,
			   "071", 32, de32, 37, "123456789012", 41, "TERM0001", 42,
			   "MERCHANT0000001", 49, "840", 0);
	int64_t deadline = h_real_ms() + 10000;

	cr_assert_eq(h_send(&H, body, n), 0);
	for (;;) {
		h_collect(&H, TSW_EP_LINK, 0, iss);
		if (iss->n)
			break;
		h_wait_step(&H, deadline, "the original's forward");
	}
	cr_assert_eq(iss->n, 1);
	/* forwarded before its use was durable: its approval would wait */
	h_wait_records(&H);
	snprintf(sw, 7, "%s", h_field(&iss->m[0], 11));
	cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[0], "00", 0), 0);
	h_collect(&H, TSW_EP_ACQ, (uint32_t)H.slot, acq);
	cr_assert_str_eq(h_field(&acq->m[0], 39), "00");
}

/* Sends on H.e / H.slot a reversal of the original with acquirer STAN
 * orig, as acquirer de32; answers it 00 at the issuer; returns whether
 * DE90 was rewritten to the switch STAN sw. */
static bool reverse(const char *stan, const char *orig, const char *de32, const char *sw)
{
	char de90[43], want[43];
	size_t n;
	bool rewritten;

	snprintf(de90, sizeof(de90), "0100%s%s%022d", orig, ORIG_DE7, 0);
	snprintf(want, sizeof(want), "0100%s%s%022d", sw, ORIG_DE7, 0);
	n = h_build(&H, body, sizeof(body), "0400", 2, h_tokens[H_LIMITED].token, 3, "000000", 4,
		    "000000000500", 7, "1123031600", 11, stan, 32, de32, 41, "TERM0001", 90,
		    de90, 0);
	cr_assert_eq(h_send(&H, body, n), 0);
	h_collect(&H, TSW_EP_LINK, 0, iss);
	cr_assert_eq(iss->n, 1, "reversal %s not forwarded", stan);
	rewritten = strcmp(h_field(&iss->m[0], 90), want) == 0;
	cr_assert(rewritten || strcmp(h_field(&iss->m[0], 90), de90) == 0,
		  "DE90 neither the original's nor the acquirer's");
	cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[0], "00", 0), 0);
	h_collect(&H, TSW_EP_ACQ, (uint32_t)H.slot, acq);
	cr_assert_eq(acq->n, 1);
	return rewritten;
}

static uint32_t limited_used(void)
{
	struct tsw_state_token t;

	cr_assert_eq(tsw_state_get(H.state, h_tokens[H_LIMITED].token,
				   strlen(h_tokens[H_LIMITED].token), &t),
		     0);
	return t.used;
}

Test(acq_reversal, another_acquirer_knowing_the_trace_neither_matches_nor_takes_the_use)
{
	char sw[7];
	int first;

	h_start(&H);
	set_peer(H.e, H.slot, "127.0.0.1");
	first = H.slot;
	approve_original("001001", "11111111111", sw);
	cr_assert_eq(limited_used(), 1);

	/* another host, same DE32 and trace */
	H.slot = tsw_engine_acq_open(H.e, H.now);
	cr_assert_geq(H.slot, 0);
	set_peer(H.e, H.slot, "127.0.0.2");
	cr_assert_not(reverse("001002", "001001", "11111111111", sw), "matched from another host");
	cr_assert_eq(limited_used(), 1, "another host took the use back");

	/* the same host, another acquiring institution */
	set_peer(H.e, H.slot, "127.0.0.1");
	cr_assert_not(reverse("001003", "001001", "22222222222", sw), "matched for another DE32");
	cr_assert_eq(limited_used(), 1, "another DE32 took the use back");
	cr_assert_eq(H.m.acq_reversals_matched, 0);

	/* the acquirer itself, on another connection of its host */
	cr_assert(reverse("001004", "001001", "11111111111", sw));
	cr_assert_eq(H.m.acq_reversals_matched, 1);
	cr_assert_eq(limited_used(), 0, "the acquirer's own reversal gives the use back");
	(void)first;
}

/* With SO_REUSEPORT the reversal often reaches another worker than its
 * original: one table serves both. */
Test(acq_reversal, reversal_on_another_worker_finds_its_original_and_gives_the_use_back)
{
	struct tsw_metrics_shard *mb = calloc(1, sizeof(*mb));
	struct tsw_acq_reversals *table = NULL;
	struct tsw_engine_config cb;
	struct tsw_engine *a, *b;
	char sw[7];

	cr_assert_not_null(mb);
	cr_assert_eq(tsw_acq_reversals_new(64, &table), 0);
	H.cfg.acq_reversals = table;
	H.cfg.n_workers = 2;
	H.cfg.worker_id = 0;
	h_start(&H);
	a = H.e;
	set_peer(a, H.slot, "127.0.0.1");
	approve_original("001101", "11111111111", sw);
	cr_assert_eq(limited_used(), 1);

	cb = H.cfg;
	cb.worker_id = 1;
	cr_assert_eq(tsw_engine_new(&cb, H.vault, H.state, mb, &b), 0);
	H.e = b;
	h_sign_on(&H, 0, "00");
	H.slot = tsw_engine_acq_open(b, H.now);
	cr_assert_geq(H.slot, 0);
	set_peer(b, H.slot, "127.0.0.1");
	cr_assert(reverse("001102", "001101", "11111111111", sw), "DE90 not rewritten on worker 1");
	cr_assert_eq(mb->acq_reversals_matched, 1);
	cr_assert_eq(limited_used(), 0);
	tsw_engine_free(b);
	H.e = a;
	free(mb);
	tsw_engine_free(H.e);
	H.e = NULL;
	tsw_acq_reversals_free(table);
}

Test(acq_reversal, table_sizes_must_be_powers_of_two)
{
	struct tsw_acq_reversals *t = NULL;

	cr_assert_eq(tsw_acq_reversals_new(0, &t), -EINVAL);
	cr_assert_eq(tsw_acq_reversals_new(3, &t), -EINVAL);
	cr_assert_null(t);
	cr_assert_eq(tsw_acq_reversals_new(8, &t), 0);
	tsw_acq_reversals_free(t);
	tsw_acq_reversals_free(NULL);
}
