/* The switch-added latency histograms: which events each one counts and
 * between which instants (request_forward: the request's frame taken in
 * to its issuer copy in the link's output; answer_delivery: the issuer's
 * answer taken in to its rewrite in the acquirer's output; internal:
 * their sum per delivered answer; issuer_rtt: forwarded to answer in).
 * The harness's latency clock reads the call's now_ns plus clock_lag_ns,
 * so every value is known. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "tsw/authz.h"

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

TestSuite(latency, .init = setup, .fini = teardown, .timeout = 30);

/* the bucket index that holds ns (tsw/hist.h) */
static unsigned bucket_of(uint64_t ns)
{
	unsigned i = 0;

	while (i < TSW_HIST_BUCKETS - 1 && ns >= tsw_hist_bound_ns[i])
		i++;
	return i;
}

/* h holds exactly one observation, of ns */
static void one_value(const struct tsw_hist *h, uint64_t ns, const char *what)
{
	uint64_t total = 0;

	for (unsigned i = 0; i < TSW_HIST_BUCKETS; i++)
		total += h->bucket[i];
	cr_assert_eq(h->count, 1, "%s: count %llu", what, (unsigned long long)h->count);
	cr_assert_eq(total, 1, "%s: buckets", what);
	cr_assert_eq(h->bucket[bucket_of(ns)], 1, "%s: not in the bucket of %llu ns", what,
		     (unsigned long long)ns);
	cr_assert_eq(h->sum_us, ns / 1000, "%s: sum", what);
}

static void empty(const struct tsw_hist *h, const char *what)
{
	struct tsw_hist zero;

	memset(&zero, 0, sizeof(zero));
	cr_assert_eq(memcmp(h, &zero, sizeof(zero)), 0, "%s: not empty", what);
}

Test(latency, forwarded_request_is_one_forward_and_its_answer_one_delivery)
{
	size_t n = h_auth(&H, body, sizeof(body), H_OK, "000301", 0);

	h_start(&H);
	empty(&H.m.request_forward, "forward before");
	H.clock_lag_ns = 3000;
	cr_assert_eq(h_send(&H, body, n), 0);
	h_collect(&H, TSW_EP_LINK, 0, iss);
	cr_assert_eq(iss->n, 1);
	/* the issuer copy is in the link's output 3 us after the frame came */
	one_value(&H.m.request_forward, 3000, "forward");
	empty(&H.m.answer_delivery, "delivery before the answer");
	empty(&H.m.internal, "internal before the answer");

	h_advance(&H, 5);
	cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[0], "00", 0), 0);
	h_collect(&H, TSW_EP_ACQ, (uint32_t)H.slot, acq);
	cr_assert_eq(acq->n, 1);
	cr_assert_str_eq(h_field(&acq->m[0], 39), "00");
	one_value(&H.m.answer_delivery, 3000, "delivery");
	one_value(&H.m.internal, 6000, "internal: forward + delivery");
	/* the issuer had it from the forward (3 us in) to the answer's input */
	one_value(&H.m.issuer_rtt, 5000000 - 3000, "issuer round trip");
	one_value(&H.m.request_forward, 3000, "forward, unchanged by the answer");
}

Test(latency, every_request_of_a_pipelined_input_is_one_forward)
{
	uint8_t bodies[3][512];
	size_t n[3];

	h_start(&H);
	for (unsigned i = 0; i < 3; i++) {
		char stan[7];

		snprintf(stan, sizeof(stan), "00031%u", i);
		n[i] = h_auth(&H, bodies[i], sizeof(bodies[i]), H_OK, stan, 0);
		cr_assert_eq(h_send(&H, bodies[i], n[i]), 0);
	}
	h_collect(&H, TSW_EP_LINK, 0, iss);
	cr_assert_eq(iss->n, 3);
	cr_assert_eq(H.m.request_forward.count, 3);
	cr_assert_eq(H.m.forwarded, 3);
	for (unsigned i = 0; i < 3; i++)
		cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[i], "05", 0), 0);
	cr_assert_eq(H.m.answer_delivery.count, 3);
	cr_assert_eq(H.m.internal.count, 3);
	cr_assert_eq(H.m.issuer_rtt.count, 3);
}

Test(latency, local_decline_is_no_forward_and_no_delivery)
{
	size_t n = h_auth(&H, body, sizeof(body), H_SUSPENDED, "000321", 0);

	h_start(&H);
	H.clock_lag_ns = 3000;
	cr_assert_eq(h_send(&H, body, n), 0);
	h_collect(&H, TSW_EP_ACQ, (uint32_t)H.slot, acq);
	cr_assert_eq(acq->n, 1);
	cr_assert_str_eq(h_field(&acq->m[0], 39), "62");
	cr_assert_eq(H.m.declines[TSW_AUTHZ_TOKEN_SUSPENDED], 1);
	empty(&H.m.request_forward, "forward");
	empty(&H.m.answer_delivery, "delivery");
	empty(&H.m.internal, "internal");
	empty(&H.m.issuer_rtt, "issuer round trip");
}

Test(latency, answer_for_a_closed_connection_is_no_delivery)
{
	size_t n = h_auth(&H, body, sizeof(body), H_OK, "000331", 0);

	h_start(&H);
	cr_assert_eq(h_send(&H, body, n), 0);
	h_collect(&H, TSW_EP_LINK, 0, iss);
	cr_assert_eq(iss->n, 1);
	tsw_engine_acq_close(H.e, (uint32_t)H.slot);
	cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[0], "05", 0), 0);
	cr_assert_eq(H.m.answers_conn_gone, 1);
	cr_assert_eq(H.m.request_forward.count, 1);
	cr_assert_eq(H.m.issuer_rtt.count, 1, "the issuer did answer");
	empty(&H.m.answer_delivery, "delivery");
	empty(&H.m.internal, "internal");
}

Test(latency, answer_replaced_by_a_96_is_no_delivery)
{
	size_t n = h_auth(&H, body, sizeof(body), H_OK, "000341", 0);

	h_start(&H);
	cr_assert_eq(h_send(&H, body, n), 0);
	h_collect(&H, TSW_EP_LINK, 0, iss);
	cr_assert_eq(iss->n, 1);
	/* the issuer's answer carries the PAN: the acquirer gets a 96 of
	 * the switch's, not the issuer's answer */
	cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[0], "05", 44, h_tokens[H_OK].pan, 0), 0);
	cr_assert_eq(H.m.pan_leaks_blocked, 1);
	h_collect(&H, TSW_EP_ACQ, (uint32_t)H.slot, acq);
	cr_assert_eq(acq->n, 1);
	cr_assert_str_eq(h_field(&acq->m[0], 39), "96");
	empty(&H.m.answer_delivery, "delivery");
	empty(&H.m.internal, "internal");
}
