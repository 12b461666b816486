/* The engine's bounded tables past their capacity (white-box: the
 * engine's internal header): the timed-out STAN memory and the acquirer
 * reversal map are sized by the config, their capacity is a gauge, every
 * entry pushed out while still held is counted exactly once, and the
 * behaviour stays correct (a late answer of a pushed-out STAN is counted
 * unmatched and never reaches the request that got the STAN again; a
 * reversal of a pushed-out original is still forwarded, with DE90 as it
 * came). Also: sizes are validated and kept on reconfigure, and the
 * reconnect backoff falls back to the config's defaults. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acq_reversal.h"
#include "engine_int.h"
#include "harness.h"
#include "tsw/config.h"
#include "tsw/error.h"

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

TestSuite(limits, .init = setup, .fini = teardown, .timeout = 30);

static void collect_acq(void)
{
	h_collect(&H, TSW_EP_ACQ, (uint32_t)H.slot, acq);
}

/* The only message of MTI mti the issuer link got (reversals queued by a
 * timeout may go out beside it), copied to buf and decoded into m. */
static void take_iss(const char *mti, uint8_t *buf, size_t cap, struct tsw_iso_msg *m)
{
	const struct tsw_iso_msg *found = NULL;
	unsigned i, n = 0;

	h_collect(&H, TSW_EP_LINK, 0, iss);
	for (i = 0; i < iss->n; i++)
		if (memcmp(iss->m[i].mti, mti, 4) == 0) {
			found = &iss->m[i];
			n++;
		}
	cr_assert_eq(n, 1, "%u messages %s on the issuer link", n, mti);
	/* its fields point into iss->buf, which the next collect overwrites */
	cr_assert_leq(found->len, cap);
	memcpy(buf, found->buf, found->len);
	cr_assert_eq(tsw_iso_decode(&H.prof, buf, found->len, m), 0);
}

static bool remembered(uint64_t key)
{
	uint32_t i;

	for (i = 0; i <= H.e->expired_mask; i++)
		if (H.e->expired[i].key == key)
			return true;
	return false;
}

enum { N_EXPIRED = 4 };

/* 4 timed-out STANs into a memory of 2: at least 2 pushed out */
Test(limits, timed_out_stans_past_capacity_are_counted_and_never_misdelivered)
{
	static uint8_t bufs[N_EXPIRED][H_BUF];
	struct tsw_iso_msg orig[N_EXPIRED];
	uint32_t stan[N_EXPIRED], span;
	uint64_t evicted;
	unsigned i, held = 0, x = N_EXPIRED;
	uint8_t bbuf[H_BUF];
	struct tsw_iso_msg b;
	char acq_stan[7];
	size_t n;

	H.cfg.settings.expired_stan_memory = 2;
	h_start(&H);
	cr_assert_eq(H.m.expired_stans_capacity, 2);
	for (i = 0; i < N_EXPIRED; i++) {
		snprintf(acq_stan, sizeof(acq_stan), "00100%u", i);
		n = h_auth(&H, body, sizeof(body), H_OK, acq_stan, 0);
		cr_assert_eq(h_send(&H, body, n), 0);
		take_iss("0100", bufs[i], sizeof(bufs[i]), &orig[i]);
		stan[i] = (uint32_t)atoi(h_field(&orig[i], 11));
	}
	h_advance(&H, 2000);
	h_collect_after_commit(&H, acq);
	cr_assert_eq(acq->n, N_EXPIRED);
	cr_assert_eq(H.m.timeouts, N_EXPIRED);
	evicted = H.m.expired_stans_evicted;
	cr_assert_geq(evicted, N_EXPIRED - 2, "%lu pushed out", (unsigned long)evicted);
	cr_assert_leq(evicted, N_EXPIRED - 1);
	/* the counter agrees with what the memory still holds */
	for (i = 0; i < N_EXPIRED; i++) {
		if (remembered(stan[i]))
			held++;
		else if (x == N_EXPIRED)
			x = i;
	}
	cr_assert_eq(held, N_EXPIRED - evicted);
	cr_assert_lt(x, N_EXPIRED);

	/* a pushed-out STAN may be handed out again: B gets x's STAN */
	span = engine__stan_span(&H.cfg);
	H.e->stan_seq = stan[x] % span - 1;
	n = h_auth(&H, body, sizeof(body), H_OK, "001099", 37, "B00000000001", 0);
	cr_assert_eq(h_send(&H, body, n), 0);
	h_advance(&H, 0);
	take_iss("0100", bbuf, sizeof(bbuf), &b);
	cr_assert_eq((uint32_t)atoi(h_field(&b, 11)), stan[x]);
	/* x's late approval is not B's answer: unmatched, B still waits */
	cr_assert_eq(h_issuer_answer(&H, 0, &orig[x], "00", 0), 0);
	collect_acq();
	cr_assert_eq(acq->n, 0, "a late answer delivered to another request");
	cr_assert_eq(H.m.unmatched_answers, 1);
	cr_assert_eq(H.m.late_answers, 0);
	cr_assert_eq(tsw_engine_inflight(H.e), 1);
	cr_assert_eq(h_issuer_answer(&H, 0, &b, "00", 0), 0);
	collect_acq();
	cr_assert_eq(acq->n, 1);
	cr_assert_str_eq(h_field(&acq->m[0], 11), "001099");
	cr_assert_str_eq(h_field(&acq->m[0], 39), "00");

	/* the other late answers: late when still held, unmatched when not */
	for (i = 0; i < N_EXPIRED; i++)
		if (i != x)
			cr_assert_eq(h_issuer_answer(&H, 0, &orig[i], "00", 0), 0);
	collect_acq();
	cr_assert_eq(acq->n, 0);
	cr_assert_eq(H.m.late_answers, held);
	cr_assert_eq(H.m.unmatched_answers, evicted);
	cr_assert_eq(H.m.expired_stans_evicted, evicted, "taking an entry is not an eviction");
}

enum { N_ORIG = 6 };

/* 6 originals into a map of 2: pushed-out ones counted, their reversals
 * forwarded as they came, the others rewritten to the switch STAN */
Test(limits, acquirer_originals_past_capacity_are_counted_and_reversals_still_forwarded)
{
	char sw[N_ORIG][7], acq_stan[7], rev_stan[7], de90[43], want[43];
	uint64_t evicted;
	unsigned i, rewritten = 0;
	uint8_t buf[H_BUF];
	struct tsw_iso_msg m;
	size_t n;

	H.cfg.settings.acq_reversal_memory = 2;
	h_start(&H);
	cr_assert_eq(H.m.acq_reversals_capacity, 2);
	for (i = 0; i < N_ORIG; i++) {
		snprintf(acq_stan, sizeof(acq_stan), "00200%u", i);
		n = h_auth(&H, body, sizeof(body), H_OK, acq_stan, 0);
		cr_assert_eq(h_send(&H, body, n), 0);
		take_iss("0100", buf, sizeof(buf), &m);
		snprintf(sw[i], sizeof(sw[i]), "%s", h_field(&m, 11));
		cr_assert_eq(h_issuer_answer(&H, 0, &m, "00", 0), 0);
		collect_acq();
		cr_assert_eq(acq->n, 1);
	}
	evicted = H.m.acq_reversals_evicted;
	cr_assert_geq(evicted, N_ORIG - 2, "%lu pushed out", (unsigned long)evicted);
	cr_assert_leq(evicted, N_ORIG - 1);

	/* the last original again (same key): it replaces itself, no eviction */
	n = h_auth(&H, body, sizeof(body), H_OK, "002005", 0);
	cr_assert_eq(h_send(&H, body, n), 0);
	take_iss("0100", buf, sizeof(buf), &m);
	snprintf(sw[N_ORIG - 1], sizeof(sw[0]), "%s", h_field(&m, 11));
	cr_assert_eq(h_issuer_answer(&H, 0, &m, "00", 0), 0);
	collect_acq();
	cr_assert_eq(H.m.acq_reversals_evicted, evicted);

	for (i = 0; i < N_ORIG; i++) {
		snprintf(acq_stan, sizeof(acq_stan), "00200%u", i);
		snprintf(rev_stan, sizeof(rev_stan), "00210%u", i);
		snprintf(de90, sizeof(de90), "0100%s%s%022d", acq_stan, "1123031500", 0);
		snprintf(want, sizeof(want), "0100%s%s%022d", sw[i], "1123031500", 0);
		n = h_build(&H, body, sizeof(body), "0400", 2, h_tokens[H_OK].token, 3, "000000", 4,
			    "000000000500", 7, "1123031600", 11, rev_stan, 41, "TERM0001", 90, de90,
			    0);
		cr_assert_eq(h_send(&H, body, n), 0);
		take_iss("0400", buf, sizeof(buf), &m);
		if (strcmp(h_field(&m, 90), want) == 0)
			rewritten++;
		else
			cr_assert_str_eq(h_field(&m, 90), de90, "reversal %u: DE90 neither", i);
		cr_assert_eq(h_issuer_answer(&H, 0, &m, "00", 0), 0);
		collect_acq();
		cr_assert_eq(acq->n, 1);
		cr_assert_str_eq(h_field(&acq->m[0], 39), "00");
	}
	cr_assert_eq(rewritten, N_ORIG - evicted);
	cr_assert_eq(H.m.acq_reversals_matched, rewritten);
	cr_assert_eq(H.m.acq_reversals_evicted, evicted, "reversals push no original out");
}

Test(limits, table_sizes_must_be_powers_of_two_and_default_when_0)
{
	/* 0: the key left at its default (tsw_engine_config_init) */
	static const struct {
		uint32_t acq_rev, expired;
		int ret;
	} cases[] = {
	    {0, 0, 0},
	    {1, 1, 0},
	    {4, 64, 0},
	    {TSW_CONFIG_TABLE_MEMORY_MAX, 16, 0},
	    {3, 0, -TSW_E_CONFIG},
	    {0, 6, -TSW_E_CONFIG},
	    {TSW_CONFIG_TABLE_MEMORY_MAX * 2, 0, -TSW_E_CONFIG},
	    {0, TSW_CONFIG_TABLE_MEMORY_MAX * 2, -TSW_E_CONFIG},
	};
	struct tsw_config defaults;
	unsigned i;

	tsw_config_defaults(&defaults);

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct tsw_engine_config c = H.cfg;
		struct tsw_engine *e = NULL;

		memset(&H.m, 0, sizeof(H.m));
		if (cases[i].acq_rev)
			c.settings.acq_reversal_memory = cases[i].acq_rev;
		if (cases[i].expired)
			c.settings.expired_stan_memory = cases[i].expired;
		cr_assert_eq(tsw_engine_new(&c, H.vault, H.state, &H.m, &e), cases[i].ret,
			     "case %u", i);
		if (cases[i].ret < 0) {
			cr_assert_null(e);
			continue;
		}
		cr_assert_eq(H.m.acq_reversals_capacity,
			     cases[i].acq_rev ? cases[i].acq_rev : defaults.acq_reversal_memory,
			     "case %u", i);
		cr_assert_eq(H.m.expired_stans_capacity,
			     cases[i].expired ? cases[i].expired : defaults.expired_stan_memory,
			     "case %u", i);
		tsw_engine_free(e);
	}
}

/* a size 0 is a table without a slot: the defaults come from
 * tsw_engine_config_init(), never from a 0 */
Test(limits, zero_table_and_event_queue_sizes_are_refused)
{
	static const size_t fields[] = {
	    offsetof(struct tsw_config, acq_reversal_memory),
	    offsetof(struct tsw_config, expired_stan_memory),
	    offsetof(struct tsw_config, log_event_queue),
	};

	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		struct tsw_engine_config c = H.cfg;
		struct tsw_engine *e = NULL;
		uint32_t zero = 0;

		memcpy((char *)&c.settings + fields[i], &zero, sizeof(zero));
		cr_assert_eq(tsw_engine_new(&c, H.vault, H.state, &H.m, &e), -TSW_E_CONFIG,
			     "field %zu", i);
		cr_assert_null(e);
	}
}

Test(limits, reconfigure_keeps_the_table_sizes)
{
	struct tsw_engine_config c;

	H.cfg.settings.acq_reversal_memory = 4;
	H.cfg.settings.expired_stan_memory = 8;
	h_start(&H);
	c = H.cfg;
	c.settings.acq_reversal_memory = 64;
	c.settings.expired_stan_memory = 64;
	c.settings.issuer_timeout_ms = 1234;
	cr_assert_eq(tsw_engine_reconfigure(H.e, &c), 0);
	cr_assert_eq(H.e->cfg.issuer_timeout_ms, 1234, "the live key applied");
	cr_assert_eq(H.e->cfg.acq_reversal_memory, 4);
	cr_assert_eq(H.e->cfg.expired_stan_memory, 8);
	cr_assert_eq(engine__acq_rev_capacity(H.e), 4);
	cr_assert_eq(H.e->expired_mask, 7);
	cr_assert_eq(H.m.acq_reversals_capacity, 4);
	cr_assert_eq(H.m.expired_stans_capacity, 8);
	c.settings.expired_stan_memory = 12;
	cr_assert_eq(tsw_engine_reconfigure(H.e, &c), -TSW_E_CONFIG);
	cr_assert_eq(H.e->cfg.issuer_timeout_ms, 1234);
}

/* one source of truth: a reconnect backoff left at its default is the
 * config's default (tsw_config_defaults), and values given are used as
 * given */
Test(limits, reconnect_backoff_falls_back_to_the_config_defaults)
{
	struct tsw_config defaults;
	uint32_t i, top = 0;

	tsw_config_defaults(&defaults);
	H.cfg.settings.reconnect_min_ms = defaults.reconnect_min_ms; /* the harness sets its own */
	H.cfg.settings.reconnect_max_ms = defaults.reconnect_max_ms;
	h_start(&H);
	cr_assert_eq(H.e->cfg.reconnect_min_ms, defaults.reconnect_min_ms);
	cr_assert_eq(H.e->cfg.reconnect_max_ms, defaults.reconnect_max_ms);
	cr_assert_eq(H.e->links[0].backoff_ms, defaults.reconnect_min_ms);
	for (i = 0; i < 20; i++) {
		tsw_engine_link_down(H.e, 0, H.now);
		if (H.e->links[0].backoff_ms > top)
			top = H.e->links[0].backoff_ms;
	}
	cr_assert_eq(top, defaults.reconnect_max_ms, "backoff capped at %u", top);
	tsw_engine_free(H.e);
	H.e = NULL;

	H.cfg.settings.reconnect_min_ms = 7;
	H.cfg.settings.reconnect_max_ms = 70000;
	h_start(&H);
	cr_assert_eq(H.e->cfg.reconnect_min_ms, 7);
	cr_assert_eq(H.e->cfg.reconnect_max_ms, 70000);
}
