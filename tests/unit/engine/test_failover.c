/* An issuer with several hosts: requests go to the signed-on link of the
 * issuer with the fewest requests in flight (ties take turns); when one
 * host goes down the others carry the load and only the requests pending
 * on the lost link get 91 and a reversal; reversals are queued under the
 * issuer's index and delivered through any signed-on host of that issuer;
 * an issuer with no signed-on host is unavailable, and the engine is ready
 * while every route's issuer has one. Black-box through tsw/engine.h and
 * the harness (no sockets); time is the harness's clock. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "tsw/authz.h"
#include "tsw/error.h"

#define LEGS_MAX 32

/* One request as an issuer host received it. */
struct leg {
	uint32_t link;
	char acq_stan[7]; /* the acquirer's DE11 */
	uint8_t buf[2048];
	struct tsw_iso_msg m;
};

static struct h H;
static struct h_msgs *acq, *iss;
static struct leg *legs;
static uint8_t body[4096];

static void setup(void)
{
	h_init(&H);
	acq = calloc(1, sizeof(*acq));
	iss = calloc(1, sizeof(*iss));
	legs = calloc(LEGS_MAX, sizeof(*legs));
	cr_assert(acq && iss && legs);
}

static void teardown(void)
{
	h_fini(&H);
	free(acq);
	free(iss);
	free(legs);
}

TestSuite(failover, .init = setup, .fini = teardown, .timeout = 30);

/* One more host (the next link) serving issuer. */
static void add_host(uint32_t port, uint8_t issuer)
{
	struct tsw_config_host *hp = &H.cfg.settings.hosts[H.cfg.settings.n_hosts++];

	strcpy(hp->addr.host, "127.0.0.1");
	hp->addr.port = (uint16_t)port;
	hp->issuer = issuer;
	if (issuer >= H.cfg.settings.n_issuers)
		H.cfg.settings.n_issuers = issuer + 1u;
}

/* Issuer 0 with two hosts (links 0 and 1; h_init made the first). */
static void two_hosts(void)
{
	add_host(2, 0);
}

/* Sends one authorization for token t and returns the link it went to,
 * the issuer leg copied into *ret (nothing may go anywhere else). */
static uint32_t forward(enum h_token t, const char *stan, struct leg *ret)
{
	size_t n = h_auth(&H, body, sizeof(body), t, stan, 0);
	int found = -1;
	uint32_t l;

	cr_assert_eq(h_send(&H, body, n), 0);
	for (l = 0; l < H.cfg.settings.n_hosts; l++) {
		h_collect(&H, TSW_EP_LINK, l, iss);
		if (!iss->n)
			continue;
		cr_assert_eq(found, -1, "request %s went out on two links", stan);
		cr_assert_eq(iss->n, 1);
		cr_assert_leq(iss->len - 2, sizeof(ret->buf));
		memcpy(ret->buf, iss->buf + 2, iss->len - 2);
		cr_assert_eq(tsw_iso_decode(&H.prof, ret->buf, iss->len - 2, &ret->m), 0);
		found = (int)l;
	}
	cr_assert_geq(found, 0, "request %s went out on no link", stan);
	ret->link = (uint32_t)found;
	snprintf(ret->acq_stan, sizeof(ret->acq_stan), "%s", stan);
	return ret->link;
}

/* The acquirer's answers so far: exactly n, each with DE39 rc (a 91
 * leaves a reversal behind: it comes once that reversal is durable). */
static void expect_answers(unsigned n, const char *rc)
{
	unsigned i;

	if (strcmp(rc, "91") == 0)
		h_collect_after_commit(&H, acq);
	else
		h_collect(&H, TSW_EP_ACQ, (uint32_t)H.slot, acq);
	cr_assert_eq(acq->n, n, "%u answers, %u expected", acq->n, n);
	for (i = 0; i < acq->n; i++)
		cr_assert_str_eq(h_field(&acq->m[i], 39), rc, "answer %u (DE11 %s)", i,
				 h_field(&acq->m[i], 11));
}

static void answer_leg(const struct leg *g, const char *rc)
{
	cr_assert_eq(h_issuer_answer(&H, g->link, &g->m, rc, 0), 0);
}

static void stan_of(unsigned i, char out[7])
{
	snprintf(out, 7, "%06u", 100 + i);
}

static unsigned reversals_in(const struct h_msgs *out)
{
	unsigned i, n = 0;

	for (i = 0; i < out->n; i++)
		n += memcmp(out->m[i].mti, "0400", 4) == 0;
	return n;
}

/* DE90 of a reversal: the original's MTI, switch STAN and DE7 as the
 * host that carried it saw them. */
static void de90_of(const struct leg *g, char out[43])
{
	snprintf(out, 43, "0100%s%s0000000000000000000000", h_field(&g->m, 11), h_field(&g->m, 7));
}

Test(failover, a_request_goes_to_the_signed_on_host_with_the_fewest_in_flight)
{
	unsigned i, on[2] = {0, 0};
	uint32_t busy;
	char stan[7];

	two_hosts();
	h_start(&H);
	cr_assert_eq(tsw_engine_n_links(H.e), 2);
	cr_assert_eq(tsw_engine_link_issuer(H.e, 1), 0);
	/* the host that gets the first request keeps it in flight; the other
	 * answers each request at once, so it always has fewer in flight and
	 * gets every other request (taking turns would split them 5/5, the
	 * first host taking all would give it 10) */
	for (i = 0; i < 10; i++) {
		stan_of(i, stan);
		on[forward(H_OK, stan, &legs[i])]++;
		if (legs[i].link != legs[0].link)
			answer_leg(&legs[i], "00");
	}
	busy = legs[0].link;
	cr_expect_eq(on[busy], 1, "the busy host got %u", on[busy]);
	cr_expect_eq(on[1 - busy], 9);
	expect_answers(9, "00");
	answer_leg(&legs[0], "00");
	expect_answers(1, "00");
}

Test(failover, hosts_with_as_many_in_flight_take_turns)
{
	unsigned i, on[2] = {0, 0};
	char stan[7];

	two_hosts();
	h_start(&H);
	for (i = 0; i < 8; i++) {
		stan_of(i, stan);
		on[forward(H_OK, stan, &legs[i])]++;
		answer_leg(&legs[i], "00"); /* both hosts back at 0 in flight */
		if (i)
			cr_assert_eq(legs[i].link, 1 - legs[i - 1].link,
				     "request %u: the tie goes to the other host", i);
	}
	cr_expect_eq(on[0], 4);
	cr_expect_eq(on[1], 4);
	expect_answers(8, "00");
}

Test(failover, a_host_down_gives_91_only_to_its_own_pending_and_the_other_carries_the_load)
{
	unsigned i, n_lost = 0, n_kept = 0;
	struct leg *lost[4], *kept[4];
	char stan[7], want[43];
	int k;

	H.cfg.settings.saf_poll_ms = 100;
	two_hosts();
	h_start(&H);
	/* four in flight: two on each host */
	for (i = 0; i < 4; i++) {
		stan_of(i, stan);
		if (forward(H_OK, stan, &legs[i]) == 1)
			lost[n_lost++] = &legs[i];
		else
			kept[n_kept++] = &legs[i];
	}
	cr_assert_eq(n_lost, 2);
	cr_assert_eq(n_kept, 2);

	tsw_engine_link_down(H.e, 1, H.now);
	/* exactly the two pending on link 1 are answered 91 */
	h_collect_after_commit(&H, acq);
	cr_assert_eq(acq->n, 2);
	for (i = 0; i < 2; i++) {
		const char *a = h_field(&acq->m[i], 11);

		cr_expect_str_eq(h_field(&acq->m[i], 39), "91");
		cr_expect_str_eq(h_field(&acq->m[i], 44), "ISSUER_UNAVAILABLE");
		cr_expect(strcmp(a, lost[0]->acq_stan) == 0 || strcmp(a, lost[1]->acq_stan) == 0,
			  "DE11 %s was not on link 1", a);
	}
	cr_expect_str_neq(h_field(&acq->m[0], 11), h_field(&acq->m[1], 11));
	cr_assert(tsw_engine_ready(H.e), "issuer 0 still has a signed-on host");

	/* one reversal for each lost request, through link 0 (sent at the
	 * tick that released the 91s) */
	h_collect(&H, TSW_EP_LINK, 0, iss);
	cr_assert_eq(reversals_in(iss), 2, "both reversals go through the other host");
	cr_assert_eq(iss->n, 2);
	for (i = 0; i < 2; i++) {
		const struct tsw_iso_msg *rev = &iss->m[i];

		for (k = 0; k < 2; k++) {
			de90_of(lost[k], want);
			if (strcmp(h_field(rev, 90), want) == 0)
				break;
		}
		cr_assert_lt(k, 2, "DE90 %s names a request link 1 had", h_field(rev, 90));
		cr_expect_str_eq(h_field(rev, 2), h_tokens[H_OK].pan);
		cr_expect_str_eq(h_field(rev, 37), h_field(&lost[k]->m, 37));
	}
	cr_expect(strcmp(h_field(&iss->m[0], 90), h_field(&iss->m[1], 90)) != 0,
		  "one reversal per original");
	cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[0], "00", 0), 0);
	cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[1], "00", 0), 0);
	cr_expect_eq(H.m.saf_acked, 2);
	cr_expect_eq(H.m.saf_depth, 0);

	/* new requests all go to link 0 and are approved: no 91 */
	for (i = 4; i < 24; i++) {
		stan_of(i, stan);
		cr_assert_eq(forward(H_OK, stan, &legs[i]), 0, "request %u", i);
		answer_leg(&legs[i], "00");
	}
	expect_answers(20, "00");
	answer_leg(kept[0], "00");
	answer_leg(kept[1], "00");
	expect_answers(2, "00");
	cr_expect_eq(H.m.declines[TSW_AUTHZ_ISSUER_UNAVAILABLE], 2, "the lost link's two only");
	cr_expect_eq(H.m.timeouts, 0);

	cr_expect_eq(H.m.inflight, 0);

	/* link 1 back: nothing is owed any more */
	H.now += 100 * 1000000ull;
	h_sign_on(&H, 1, "00");
	h_advance(&H, 1000);
	h_collect(&H, TSW_EP_LINK, 1, iss);
	cr_expect_eq(reversals_in(iss), 0);
	h_collect(&H, TSW_EP_LINK, 0, iss);
	cr_expect_eq(reversals_in(iss), 0);
	cr_expect_eq(H.m.saf_sent, 2);
}

Test(failover, a_reversal_of_a_lost_host_goes_through_another_host_of_the_issuer)
{
	struct leg *orig = &legs[0];
	char want[43];
	int i = -1;
	unsigned k;

	two_hosts();
	h_start(&H);
	tsw_engine_link_down(H.e, 1, H.now);
	cr_assert_eq(forward(H_OK, "000201", orig), 0);
	tsw_engine_link_down(H.e, 0, H.now);
	expect_answers(1, "91");
	cr_assert_not(tsw_engine_ready(H.e));
	/* the host that had the original stays down: the other one signs on
	 * and the reversal follows its sign-on */
	H.now += 100 * 1000000ull;
	h_sign_on(&H, 1, "00");
	h_collect(&H, TSW_EP_LINK, 1, iss);
	for (k = 0; k < iss->n; k++)
		if (memcmp(iss->m[k].mti, "0400", 4) == 0)
			i = (int)k;
	cr_assert_eq(reversals_in(iss), 1);
	de90_of(orig, want);
	cr_expect_str_eq(h_field(&iss->m[i], 90), want, "DE90 as link 0 saw the original");
	cr_expect_str_neq(h_field(&iss->m[i], 11), h_field(&orig->m, 11), "a STAN of its own");
	cr_assert_eq(h_issuer_answer(&H, 1, &iss->m[i], "00", 0), 0);
	cr_expect_eq(H.m.saf_acked, 1);
	cr_expect_eq(H.m.saf_depth, 0);
}

Test(failover, an_issuer_without_a_signed_on_host_is_unavailable_and_not_ready)
{
	size_t n;

	two_hosts();	/* issuer 0: links 0 and 1 */
	add_host(3, 1); /* issuer 1: link 2 */
	H.cfg.settings.n_routes = 2;
	strcpy(H.cfg.settings.routes[0].bin_prefix, "");
	H.cfg.settings.routes[0].issuer = 0;
	strcpy(H.cfg.settings.routes[1].bin_prefix, "6011");
	H.cfg.settings.routes[1].issuer = 1;
	h_start(&H);
	cr_assert_eq(tsw_engine_link_issuer(H.e, 2), 1);
	cr_assert_eq(tsw_engine_link_issuer(H.e, 3), UINT32_MAX);

	tsw_engine_link_down(H.e, 0, H.now);
	cr_assert(tsw_engine_ready(H.e), "issuer 0 keeps link 1");
	cr_expect_eq(H.m.ready, 1);
	cr_assert_eq(forward(H_OK, "000301", &legs[0]), 1);
	answer_leg(&legs[0], "00");
	expect_answers(1, "00");

	tsw_engine_link_down(H.e, 1, H.now);
	cr_assert_not(tsw_engine_ready(H.e), "issuer 0 has no signed-on host");
	cr_expect_eq(H.m.ready, 0);
	n = h_auth(&H, body, sizeof(body), H_OK, "000302", 0);
	cr_assert_eq(h_send(&H, body, n), 0);
	h_collect(&H, TSW_EP_ACQ, (uint32_t)H.slot, acq);
	cr_assert_eq(acq->n, 1);
	cr_expect_str_eq(h_field(&acq->m[0], 39), "91");
	cr_expect_str_eq(h_field(&acq->m[0], 44), "ISSUER_UNAVAILABLE");
	h_collect(&H, TSW_EP_LINK, 2, iss);
	cr_expect_eq(iss->n, 0, "never sent to another issuer's host");
	/* issuer 1 is served all the same */
	cr_assert_eq(forward(H_ROUTE2, "000303", &legs[1]), 2);
	answer_leg(&legs[1], "00");
	expect_answers(1, "00");

	/* either host of issuer 0 makes it ready again */
	H.now += 100 * 1000000ull;
	h_sign_on(&H, 1, "00");
	cr_assert(tsw_engine_ready(H.e));
	cr_expect_eq(H.m.ready, 1);
	tsw_engine_link_down(H.e, 2, H.now);
	cr_assert_not(tsw_engine_ready(H.e), "issuer 1's only host is down");
}

Test(failover, without_routes_only_issuer_0_counts_for_ready)
{
	two_hosts();
	add_host(3, 1);
	h_start(&H);
	tsw_engine_link_down(H.e, 2, H.now);
	cr_assert(tsw_engine_ready(H.e), "issuer 1 serves no route");
	tsw_engine_link_down(H.e, 0, H.now);
	cr_assert(tsw_engine_ready(H.e));
	tsw_engine_link_down(H.e, 1, H.now);
	cr_assert_not(tsw_engine_ready(H.e));
}

Test(failover, hosts_must_serve_known_issuers_and_a_reload_keeps_them)
{
	struct tsw_engine_config c;
	struct tsw_engine *e = NULL;

	two_hosts();
	add_host(3, 1);
	/* a host of an issuer beyond n_issuers */
	c = H.cfg;
	c.settings.n_issuers = 1;
	cr_assert_eq(tsw_engine_new(&c, H.vault, H.state, &H.m, &e), -TSW_E_CONFIG);
	/* an issuer without a host */
	c = H.cfg;
	c.settings.n_issuers = 3;
	cr_assert_eq(tsw_engine_new(&c, H.vault, H.state, &H.m, &e), -TSW_E_CONFIG);
	c = H.cfg;
	c.settings.n_hosts = TSW_CONFIG_LINKS_MAX + 1;
	cr_assert_eq(tsw_engine_new(&c, H.vault, H.state, &H.m, &e), -TSW_E_CONFIG);
	cr_assert_null(e);

	h_start(&H);
	c = H.cfg;
	cr_assert_eq(tsw_engine_reconfigure(H.e, &c), 0);
	c.settings.hosts[1].issuer = 1; /* the same hosts, served otherwise */
	cr_assert_eq(tsw_engine_reconfigure(H.e, &c), -TSW_E_CONFIG);
	c = H.cfg;
	c.settings.hosts[1].addr.port = 9;
	cr_assert_eq(tsw_engine_reconfigure(H.e, &c), -TSW_E_CONFIG);
	c = H.cfg;
	c.settings.n_hosts = 2;
	c.settings.n_issuers = 1;
	cr_assert_eq(tsw_engine_reconfigure(H.e, &c), -TSW_E_CONFIG, "a host removed");
}

/* Two hosts signed on, one request in flight on one of them (legs[0],
 * its link returned), then a second request (stan2) sent to the other,
 * whose link's bytes the backend is handed (*ret_data, *ret_len) and not
 * yet reported sent. */
static uint32_t second_on_idle_host(const char *stan1, const char *stan2, const uint8_t **ret_data,
				    size_t *ret_len)
{
	struct tsw_endpoint ep = {.kind = TSW_EP_LINK};
	uint32_t busy;
	size_t n;

	H.cfg.settings.saf_poll_ms = 100;
	two_hosts();
	h_start(&H);
	busy = forward(H_OK, stan1, &legs[0]);
	n = h_auth(&H, body, sizeof(body), H_OK, stan2, 0);
	cr_assert_eq(h_send(&H, body, n), 0);
	ep.slot = 1 - busy;
	tsw_engine_out(H.e, ep, ret_data, ret_len);
	cr_assert_gt(*ret_len, 2, "the second request waits on the idle host's link");
	return busy;
}

Test(failover, a_request_not_yet_sent_when_its_host_goes_down_goes_to_the_other_host)
{
	const uint8_t *data;
	uint32_t busy, idle;
	size_t len;

	busy = second_on_idle_host("000401", "000402", &data, &len);
	idle = 1 - busy;
	/* the send failed before anything went: the bytes are back */
	tsw_engine_sent(H.e, (struct tsw_endpoint){.kind = TSW_EP_LINK, .slot = idle}, 0);

	tsw_engine_link_down(H.e, idle, H.now);
	h_collect(&H, TSW_EP_ACQ, (uint32_t)H.slot, acq);
	cr_assert_eq(acq->n, 0, "no 91: the issuer never saw it");
	cr_expect_eq(H.m.requests_rerouted, 1);
	h_collect(&H, TSW_EP_LINK, busy, iss);
	cr_assert_eq(iss->n, 1, "it went out on the other host");
	cr_expect_str_eq(h_field(&iss->m[0], 2), h_tokens[H_OK].pan);
	cr_expect_str_neq(h_field(&iss->m[0], 11), h_field(&legs[0].m, 11));
	cr_assert_eq(h_issuer_answer(&H, busy, &iss->m[0], "00", 0), 0);
	answer_leg(&legs[0], "00");
	expect_answers(2, "00");
	cr_expect_eq(H.m.inflight, 0);
	/* nothing is owed to the issuer */
	h_advance(&H, 1000);
	h_collect(&H, TSW_EP_LINK, busy, iss);
	cr_expect_eq(reversals_in(iss), 0);
	cr_expect_eq(H.m.saf_sent, 0);
	cr_expect_eq(H.m.declines[TSW_AUTHZ_ISSUER_UNAVAILABLE], 0);
}

Test(failover, a_request_handed_to_the_backend_may_have_arrived_it_gets_91_and_a_reversal)
{
	const uint8_t *data;
	struct leg *lost = &legs[1];
	uint32_t busy, idle;
	char want[43];
	size_t len;

	/* the backend has the bytes (a send in flight): they may arrive */
	busy = second_on_idle_host("000411", "000412", &data, &len);
	idle = 1 - busy;
	lost->link = idle;
	memcpy(lost->buf, data + 2, len - 2);
	cr_assert_eq(tsw_iso_decode(&H.prof, lost->buf, len - 2, &lost->m), 0);

	tsw_engine_link_down(H.e, idle, H.now);
	expect_answers(1, "91");
	cr_expect_eq(H.m.requests_rerouted, 0);
	/* the tick that released the 91 sent its reversal */
	h_collect(&H, TSW_EP_LINK, busy, iss);
	cr_assert_eq(iss->n, 1, "not sent again as an original");
	cr_assert_eq(reversals_in(iss), 1, "reversed through the other host");
	de90_of(lost, want);
	cr_expect_str_eq(h_field(&iss->m[0], 90), want);
	answer_leg(&legs[0], "00");
	expect_answers(1, "00");
}

Test(failover, input_resumed_while_a_host_goes_down_is_sent_to_another_host)
{
	static const char *const stans[3] = {"000421", "000422", "000423"};
	uint8_t segment[3 * 700];
	struct h_msgs *on1 = calloc(1, sizeof(*on1));
	size_t off = 0;
	unsigned i, n91 = 0;

	cr_assert(on1);
	H.cfg.settings.max_inflight_per_conn = 2;
	two_hosts();
	h_start(&H);
	/* three requests in one segment: one on each host, the third waits
	 * (the connection is paused at two in flight) */
	for (i = 0; i < 3; i++) {
		size_t n = h_auth(&H, body, sizeof(body), H_OK, stans[i], 0);

		cr_assert_leq(off + n + 2, sizeof(segment));
		segment[off] = (uint8_t)(n >> 8);
		segment[off + 1] = (uint8_t)n;
		memcpy(segment + off + 2, body, n);
		off += n + 2;
	}
	cr_assert_eq(h_send_raw(&H, segment, off), 0);
	cr_assert(tsw_engine_acq_paused(H.e, (uint32_t)H.slot));
	h_collect(&H, TSW_EP_LINK, 0, iss);
	cr_assert_eq(iss->n, 1);
	h_collect(&H, TSW_EP_LINK, 1, on1);
	cr_assert_eq(on1->n, 1);
	/* the 91 of link 0's request resumes the connection while link 0
	 * goes down; link 0 then has fewer in flight than link 1, but the
	 * third request must not be sent on the link being torn down */
	tsw_engine_link_down(H.e, 0, H.now);
	/* the 91 (released once its reversal is durable) resumes it */
	h_collect_after_commit(&H, acq);
	cr_assert_eq(acq->n, 1);
	cr_assert_str_eq(h_field(&acq->m[0], 39), "91");
	n91++;
	h_collect(&H, TSW_EP_LINK, 1, iss);
	/* with the reversal of link 0's request, released with its 91 */
	cr_assert_eq(iss->n, 2, "the third went to link 1");
	cr_assert_eq(reversals_in(iss), 1);
	if (memcmp(iss->m[0].mti, "0100", 4) != 0)
		iss->m[0] = iss->m[1];
	cr_assert_eq(memcmp(iss->m[0].mti, "0100", 4), 0);
	cr_assert_eq(h_issuer_answer(&H, 1, &iss->m[0], "00", 0), 0);
	cr_assert_eq(h_issuer_answer(&H, 1, &on1->m[0], "00", 0), 0);
	h_collect(&H, TSW_EP_ACQ, (uint32_t)H.slot, acq);
	cr_assert_eq(acq->n, 2);
	for (i = 0; i < 2; i++) {
		/* the resumed one (the third) is approved, one of the first two
		 * was on link 0 */
		if (strcmp(h_field(&acq->m[i], 39), "91") == 0)
			n91++;
		else
			cr_expect_str_eq(h_field(&acq->m[i], 39), "00");
		if (strcmp(h_field(&acq->m[i], 11), stans[2]) == 0)
			cr_expect_str_eq(h_field(&acq->m[i], 39), "00", "the resumed request");
	}
	cr_expect_eq(n91, 1);
	cr_expect_eq(H.m.declines[TSW_AUTHZ_ISSUER_UNAVAILABLE], 1, "link 0's own request only");
	cr_expect_eq(H.m.requests_rerouted, 0, "never queued on link 0 in the first place");
	cr_expect_eq(H.m.inflight, 0);
	free(on1);
}
