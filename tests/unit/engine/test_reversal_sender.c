/* Reversals through the state's durable store-and-forward queue: put in
 * token form on a timeout or a link drop, durable, sent (rewritten to the
 * PAN) when the link is signed on, acked by the 0410, retried with a
 * backoff when unanswered, kept across an engine + state restart, never
 * sent by two engines at once, bounded per link, dropped only when they
 * can never be sent. White-box: reads the engine's last put id to wait
 * for durability. Time is the harness's clock, shared with the state. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine_int.h"
#include "harness.h"
#include "tsw/error.h"
#include "tsw/state.h"

#define DEADLINE_MS 10000
#define MAX_WAKERS 8

static struct h H;
static struct h_msgs *acq, *iss;
static uint8_t body[4096];
static int wakers[MAX_WAKERS];
static unsigned n_wakers;

static void setup(void)
{
	h_init(&H);
	acq = calloc(1, sizeof(*acq));
	iss = calloc(1, sizeof(*iss));
	cr_assert(acq && iss);
	n_wakers = 0;
}

static void teardown(void)
{
	h_fini(&H); /* closes the state before its eventfds */
	while (n_wakers)
		close(wakers[--n_wakers]);
	free(acq);
	free(iss);
}

TestSuite(saf_engine, .init = setup, .fini = teardown, .timeout = 30);

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits (on an eventfd the state's writer writes after each commit)
 * until the put of id is on disk, or fails at the deadline. */
static void wait_durable(uint64_t id)
{
	int64_t deadline = mono_ms() + DEADLINE_MS;
	int efd;

	cr_assert_neq(id, 0, "no reversal was put");
	cr_assert_lt(n_wakers, MAX_WAKERS);
	efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	cr_assert_geq(efd, 0);
	wakers[n_wakers++] = efd;
	cr_assert_eq(tsw_state_add_waker(H.state, efd), 0);
	while (!tsw_state_saf_durable(H.state, id)) {
		struct pollfd p = {.fd = efd, .events = POLLIN};
		int64_t left = deadline - mono_ms();
		uint64_t v;

		cr_assert_gt(left, 0, "reversal not durable within %d ms", DEADLINE_MS);
		if (poll(&p, 1, (int)left) == 1)
			cr_assert_eq(read(efd, &v, sizeof(v)), (ssize_t)sizeof(v));
	}
}

/* Collects what engine e wrote on link (h_collect works on H.e). */
static void collect_on(struct tsw_engine *e, uint32_t link, struct h_msgs *out)
{
	struct tsw_engine *save = H.e;

	H.e = e;
	h_collect(&H, TSW_EP_LINK, link, out);
	H.e = save;
}

/* Index of the only 0400 in out (fails when there is another), or -1. */
static int the_reversal(const struct h_msgs *out)
{
	int found = -1;
	unsigned i;

	for (i = 0; i < out->n; i++) {
		if (memcmp(out->m[i].mti, "0400", 4) != 0)
			continue;
		cr_assert_eq(found, -1, "two reversals where one was expected");
		found = (int)i;
	}
	return found;
}

static unsigned reversals_in(const struct h_msgs *out)
{
	unsigned i, n = 0;

	for (i = 0; i < out->n; i++)
		n += memcmp(out->m[i].mti, "0400", 4) == 0;
	return n;
}

static struct tsw_state_stats stats(void)
{
	struct tsw_state_stats ss;

	tsw_state_stats(H.state, &ss);
	return ss;
}

/* Sends a standard 0100 and returns the issuer leg's copy (decoded into
 * keep, whose bytes are buf). */
static void forward_one(const char *stan, struct tsw_iso_msg *keep, uint8_t *buf, size_t cap)
{
	size_t n = h_auth(&H, body, sizeof(body), H_OK, stan, 0);

	cr_assert_eq(h_send(&H, body, n), 0);
	h_collect(&H, TSW_EP_LINK, 0, iss);
	cr_assert_eq(iss->n, 1);
	cr_assert_leq(iss->len - 2, cap);
	memcpy(buf, iss->buf + 2, iss->len - 2);
	cr_assert_eq(tsw_iso_decode(&H.prof, buf, iss->len - 2, keep), 0);
}

/* DE90 the issuer must get: 0100, the switch's STAN and DE7 of the
 * original as the issuer saw them, zeros for the institutions. */
static void expect_de90(const struct tsw_iso_msg *rev, const struct tsw_iso_msg *orig)
{
	char want[43];

	snprintf(want, sizeof(want), "0100%s%s0000000000000000000000", h_field(orig, 11),
		 h_field(orig, 7));
	cr_assert_str_eq(h_field(rev, 90), want);
}

/* A token-form 0400 as the engine stores it, for items put directly. */
static size_t token_form(uint8_t *out, size_t cap, const char *token, const char *stan)
{
	char de90[43];

	snprintf(de90, sizeof(de90), "0100%s1123031500%022u", stan, 0u);
	return h_build(&H, out, cap, "0400", 2, token, 3, "000000", 4, "000000000500", 7,
		       "1123031500", 11, stan, 90, de90, 0);
}

/* A copy of collected messages that outlives the next collect. */
static void copy_msgs(struct h_msgs *dst, const struct h_msgs *src)
{
	unsigned i;

	memcpy(dst, src, sizeof(*dst));
	for (i = 0; i < dst->n; i++)
		dst->m[i].buf = dst->buf + (src->m[i].buf - src->buf);
}

static uint64_t put_direct(uint32_t route, const uint8_t *msg, size_t len)
{
	uint64_t id = 0;

	cr_assert_eq(tsw_state_saf_put(H.state, route, msg, len, &id), 0);
	return id;
}

Test(saf_engine, link_drop_puts_a_durable_reversal_sent_after_sign_on_and_acked_for_good)
{
	struct tsw_iso_msg orig, *rev;
	uint8_t origbuf[2048];
	int i;

	h_start(&H);
	forward_one("000051", &orig, origbuf, sizeof(origbuf));
	tsw_engine_link_down(H.e, 0, H.now);
	h_collect_after_commit(&H, acq);
	cr_assert_eq(acq->n, 1);
	cr_assert_str_eq(h_field(&acq->m[0], 39), "91");
	wait_durable(H.e->saf_last_id);
	cr_expect_eq(stats().saf_depth, 1);
	cr_expect_eq(H.m.saf_depth, 1, "worker 0 mirrors the state's depth");

	/* nothing goes out while the link is down, however long */
	h_advance(&H, 50);
	h_collect(&H, TSW_EP_LINK, 0, iss);
	cr_assert_eq(iss->n, 0);
	H.now += 100 * 1000000ull; /* past the reconnect backoff */
	h_sign_on(&H, 0, "00");
	h_collect(&H, TSW_EP_LINK, 0, iss);
	i = the_reversal(iss);
	cr_assert_geq(i, 0, "the reversal follows the sign-on");
	rev = &iss->m[i];
	cr_expect_str_eq(h_field(rev, 2), h_tokens[H_OK].pan, "the issuer leg carries the PAN");
	cr_expect_str_eq(h_field(rev, 14), "2911", "PAN expiry");
	cr_expect_str_eq(h_field(rev, 4), "000000000500");
	cr_expect_str_eq(h_field(rev, 37), "123456789012");
	cr_expect_str_neq(h_field(rev, 11), h_field(&orig, 11), "a new STAN of the switch");
	cr_expect_eq(rev->f[7].len, 10);
	cr_expect_not(tsw_iso_has(rev, 35));
	expect_de90(rev, &orig);
	cr_expect(h_contains(tsw_iso_ptr(rev, 48), rev->f[48].len, h_tokens[H_OK].token),
		  "DE48 tag 30 names the token");
	cr_expect_eq(H.m.saf_sent, 1);
	cr_expect_eq(H.m.saf_inflight, 1);
	cr_expect_eq(tsw_engine_inflight(H.e), 0, "a drain does not wait for reversals");

	cr_assert_eq(h_issuer_answer(&H, 0, rev, "00", 0), 0);
	cr_expect_eq(H.m.saf_acked, 1);
	cr_expect_eq(H.m.saf_inflight, 0);
	cr_expect_eq(H.m.saf_depth, 0);
	cr_expect_eq(stats().saf_depth, 0);

	/* gone after a restart: the delete was committed */
	h_restart(&H);
	cr_expect_eq(stats().saf_loaded, 0);
	h_advance(&H, 1000);
	h_collect(&H, TSW_EP_LINK, 0, iss);
	cr_expect_eq(reversals_in(iss), 0);
	cr_expect_eq(H.m.saf_sent, 0);
}

Test(saf_engine, reversal_survives_an_engine_and_state_restart_and_the_new_engine_sends_it)
{
	struct h_msgs *kept = calloc(1, sizeof(*kept));
	struct tsw_iso_msg orig;
	uint8_t origbuf[2048];
	int i, first;

	h_start(&H);
	forward_one("000061", &orig, origbuf, sizeof(origbuf));
	h_advance(&H, 2000);
	h_collect_after_commit(&H, acq);
	cr_assert_str_eq(h_field(&acq->m[0], 39), "91");
	/* the link is up: the reversal goes at once, and gets no answer */
	h_collect(&H, TSW_EP_LINK, 0, iss);
	i = the_reversal(iss);
	cr_assert_geq(i, 0);
	copy_msgs(kept, iss);
	first = i;

	h_restart(&H); /* engine freed with the reversal in flight */
	cr_expect_eq(stats().saf_loaded, 1, "the reversal was on disk");
	h_collect(&H, TSW_EP_LINK, 0, iss);
	i = the_reversal(iss);
	cr_assert_geq(i, 0, "the new engine sends it after its sign-on");
	cr_expect_str_eq(h_field(&iss->m[i], 2), h_tokens[H_OK].pan);
	cr_expect_str_eq(h_field(&iss->m[i], 90), h_field(&kept->m[first], 90),
			 "the same original");
	expect_de90(&iss->m[i], &orig);
	cr_expect_eq(H.m.saf_sent, 1);
	cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[i], "00", 0), 0);
	cr_expect_eq(H.m.saf_acked, 1);
	cr_expect_eq(H.m.saf_depth, 0);

	h_restart(&H);
	cr_expect_eq(stats().saf_loaded, 0, "acked before the second restart");
	h_collect(&H, TSW_EP_LINK, 0, iss);
	cr_expect_eq(reversals_in(iss), 0);
	free(kept);
}

Test(saf_engine, unanswered_reversal_is_retried_with_a_doubling_capped_backoff)
{
	static const struct {
		uint64_t advance_ms;
		unsigned sent;
		const char *answer; /* to the reversal just sent; NULL: none */
		const char *rule;
	} steps[] = {
	    {2000, 0, NULL, "timed out (issuer_timeout_ms): given back, not resent at once"},
	    {999, 0, NULL, "not before the first backoff (saf_retry_min_ms)"},
	    {101, 1, NULL, "resent at the first poll after it"},
	    {2000, 0, NULL, "second timeout"},
	    {1499, 0, NULL, "backoff doubled, capped at saf_retry_max_ms"},
	    {101, 1, "96", "resent; the issuer answers 96"},
	    {1400, 0, NULL, "a 96 is not an ack: backoff again"},
	    {200, 1, "00", "resent; the issuer answers 00"},
	    {10000, 0, NULL, "acked: never sent again"},
	};
	struct tsw_iso_msg orig;
	uint8_t origbuf[2048];
	char first_stan[7] = "";
	unsigned s, sent = 1;
	int i;

	H.cfg.settings.saf_retry_min_ms = 1000;
	H.cfg.settings.saf_retry_max_ms = 1500;
	H.cfg.settings.saf_poll_ms = 100;
	h_start(&H);
	forward_one("000071", &orig, origbuf, sizeof(origbuf));
	h_advance(&H, 2000);
	h_collect(&H, TSW_EP_LINK, 0, iss);
	i = the_reversal(iss);
	cr_assert_geq(i, 0, "sent at the timeout: the link is signed on");
	strcpy(first_stan, h_field(&iss->m[i], 11));
	for (s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
		h_advance(&H, steps[s].advance_ms);
		h_collect(&H, TSW_EP_LINK, 0, iss);
		cr_assert_eq(reversals_in(iss), steps[s].sent, "step %u: %s", s, steps[s].rule);
		if (!steps[s].sent)
			continue;
		sent++;
		i = the_reversal(iss);
		expect_de90(&iss->m[i], &orig);
		cr_expect_str_neq(h_field(&iss->m[i], 11), first_stan, "a new STAN each time");
		if (steps[s].answer)
			cr_assert_eq(h_issuer_answer(&H, 0, &iss->m[i], steps[s].answer, 0), 0);
	}
	cr_expect_eq(H.m.saf_sent, sent);
	cr_expect_eq(H.m.saf_retried, 3, "two timeouts and one 96");
	cr_expect_eq(H.m.saf_acked, 1);
	cr_expect_eq(H.m.saf_depth, 0);
	cr_expect_eq(H.m.saf_dropped, 0);
}

Test(saf_engine, answer_after_the_reversal_timed_out_still_settles_it)
{
	struct h_msgs *kept = calloc(1, sizeof(*kept));
	struct tsw_iso_msg orig;
	uint8_t origbuf[2048];
	int i;

	cr_assert_not_null(kept);
	h_start(&H);
	forward_one("000121", &orig, origbuf, sizeof(origbuf));
	h_advance(&H, 2000);
	h_collect(&H, TSW_EP_LINK, 0, iss);
	i = the_reversal(iss);
	cr_assert_geq(i, 0);
	copy_msgs(kept, iss);
	h_advance(&H, 2000);
	cr_assert_eq(H.m.saf_retried, 1, "timed out: given back");
	cr_assert_eq(h_issuer_answer(&H, 0, &kept->m[i], "00", 0), 0);
	cr_expect_eq(H.m.late_answers, 1);
	cr_expect_eq(H.m.saf_acked, 1, "the late 0410 acks it");
	cr_expect_eq(stats().saf_depth, 0);
	h_advance(&H, 5000);
	h_collect(&H, TSW_EP_LINK, 0, iss);
	cr_expect_eq(reversals_in(iss), 0, "not sent again");
	free(kept);
}

/* Ticks both engines at the same time (A first). */
static void tick_both(struct tsw_engine *b, uint64_t ms)
{
	H.now += ms * 1000000ull;
	tsw_engine_loop_begin(H.e, H.now);
	tsw_engine_tick(H.e, H.now);
	tsw_engine_loop_end(H.e);
	tsw_engine_loop_begin(b, H.now);
	tsw_engine_tick(b, H.now);
	tsw_engine_loop_end(b);
}

Test(saf_engine, two_engines_on_one_state_never_send_the_same_reversal_at_once)
{
	struct tsw_metrics_shard *mb = calloc(1, sizeof(*mb));
	struct tsw_engine_config cb = H.cfg;
	struct tsw_engine *a, *b;
	struct h_msgs *ib = calloc(1, sizeof(*ib));
	struct h_msgs *last = calloc(1, sizeof(*last));
	struct tsw_iso_msg orig;
	uint8_t origbuf[2048];
	unsigned k, total = 0;
	bool on_b = false;

	cr_assert(mb && ib && last);
	h_start(&H);
	a = H.e;
	cb.worker_id = 1;
	cr_assert_eq(tsw_engine_new(&cb, H.vault, H.state, mb, &b), 0);
	H.e = b;
	h_sign_on(&H, 0, "00");
	H.e = a;

	/* A's link drops with a request pending: A cannot send the reversal,
	 * B (signed on) claims it at its next poll */
	forward_one("000081", &orig, origbuf, sizeof(origbuf));
	tsw_engine_link_down(a, 0, H.now);
	tick_both(b, 300);
	collect_on(b, 0, ib);
	cr_assert_eq(reversals_in(ib), 1, "another worker sends it");
	expect_de90(&ib->m[the_reversal(ib)], &orig);
	cr_expect_eq(mb->saf_sent, 1);
	cr_expect_eq(mb->saf_depth, 0, "only worker 0 reports the shared depth");
	cr_expect_eq(H.m.saf_depth, 1);

	/* A signs on again while B's reversal waits for its answer */
	H.now += 200 * 1000000ull;
	h_sign_on(&H, 0, "00");
	total = 1;
	/* B's copy times out 2 s after it went (k = 17) and is given back
	 * with a 1 s backoff (due at k = 27); the copy sent then times out
	 * after the loop */
	for (k = 0; k < 40; k++) {
		tick_both(b, 100);
		collect_on(a, 0, iss);
		collect_on(b, 0, ib);
		total += reversals_in(iss) + reversals_in(ib);
		cr_assert_leq(total, 1 + (k >= 27), "step %u: sent again while claimed", k);
		if (reversals_in(ib) || reversals_in(iss)) {
			on_b = reversals_in(ib) > 0;
			copy_msgs(last, on_b ? ib : iss);
		}
	}
	/* B's copy timed out (2 s) and was given back with a 1 s backoff:
	 * exactly one engine sent it once more */
	cr_assert_eq(total, 2);
	cr_expect_eq(H.m.saf_sent + mb->saf_sent, 2);
	H.e = on_b ? b : a;
	cr_assert_eq(h_issuer_answer(&H, 0, &last->m[the_reversal(last)], "00", 0), 0);
	H.e = a;
	cr_expect_eq(H.m.saf_acked + mb->saf_acked, 1);
	for (k = 0; k < 50; k++) {
		tick_both(b, 200);
		collect_on(a, 0, iss);
		collect_on(b, 0, ib);
		cr_assert_eq(reversals_in(iss) + reversals_in(ib), 0, "acked: never again");
	}
	cr_expect_eq(stats().saf_depth, 0);
	tsw_engine_free(b);
	free(mb);
	free(ib);
	free(last);
}

Test(saf_engine, stored_form_holds_the_token_never_the_pan)
{
	struct tsw_iso_msg orig;
	uint8_t origbuf[2048];
	char path[160];
	struct stat sb;
	uint8_t *file;
	int fd, i;

	h_start(&H);
	forward_one("000091", &orig, origbuf, sizeof(origbuf));
	h_advance(&H, 2000);
	h_collect(&H, TSW_EP_LINK, 0, iss);
	i = the_reversal(iss);
	cr_assert_geq(i, 0);
	cr_assert_str_eq(h_field(&iss->m[i], 2), h_tokens[H_OK].pan, "PAN on the issuer leg");
	wait_durable(H.e->saf_last_id);

	snprintf(path, sizeof(path), "%s/state/data.mdb", H.dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	cr_assert_geq(fd, 0);
	cr_assert_eq(fstat(fd, &sb), 0);
	file = malloc((size_t)sb.st_size);
	cr_assert_not_null(file);
	cr_assert_eq(read(fd, file, (size_t)sb.st_size), sb.st_size);
	close(fd);
	cr_expect(h_contains(file, (size_t)sb.st_size, h_tokens[H_OK].token),
		  "the token-form reversal is in the file");
	cr_expect(h_contains(file, (size_t)sb.st_size, h_field(&orig, 11)),
		  "with the switch's STAN in DE90");
	cr_expect_not(h_contains_pan(file, (size_t)sb.st_size, h_tokens[H_OK].pan),
		      "PAN digits in the state file");
	free(file);
}

Test(saf_engine, full_queue_or_no_state_counts_the_reversal_dropped)
{
	size_t n;

	H.scfg.saf_max_entries = 1;
	h_state_reopen(&H);
	h_start(&H);
	n = h_auth(&H, body, sizeof(body), H_OK, "000101", 0);
	cr_assert_eq(h_send(&H, body, n), 0);
	n = h_auth(&H, body, sizeof(body), H_OK, "000102", 0);
	cr_assert_eq(h_send(&H, body, n), 0);
	tsw_engine_link_down(H.e, 0, H.now);
	cr_expect_eq(H.m.saf_dropped, 1, "the second put finds the queue full");
	cr_expect_eq(H.m.saf_depth, 1);
	cr_expect_eq(stats().saf_full, 1);

	/* an engine without a state cannot keep a reversal */
	tsw_engine_free(H.e);
	tsw_state_close(H.state);
	H.state = NULL;
	memset(&H.m, 0, sizeof(H.m));
	h_start(&H);
	n = h_auth(&H, body, sizeof(body), H_OK, "000103", 0);
	cr_assert_eq(h_send(&H, body, n), 0);
	tsw_engine_link_down(H.e, 0, H.now);
	cr_expect_eq(H.m.saf_dropped, 1);
	cr_expect_eq(H.m.saf_depth, 0);
}

Test(saf_engine, reversals_that_can_never_be_sent_are_dropped_the_rest_go)
{
	static const struct {
		const char *rule;
		const char *token; /* NULL: bytes that do not decode */
		bool sent;
	} cases[] = {
	    {"a token the vault does not have", "4000000000009999", false},
	    {"stored bytes that do not decode", NULL, false},
	    {"a token of the vault", NULL, true},
	};
	uint8_t msg[1024];
	size_t c, len;

	for (c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		if (cases[c].sent)
			len = token_form(msg, sizeof(msg), h_tokens[H_OK].token, "000111");
		else if (cases[c].token)
			len = token_form(msg, sizeof(msg), cases[c].token, "000112");
		else
			len = (size_t)snprintf((char *)msg, sizeof(msg), "0400not-a-message");
		put_direct(0, msg, len);
	}
	h_start(&H); /* the sign-on polls the queue */
	h_collect(&H, TSW_EP_LINK, 0, iss);
	cr_expect_eq(reversals_in(iss), 1, "only the sendable one");
	cr_expect_str_eq(h_field(&iss->m[the_reversal(iss)], 2), h_tokens[H_OK].pan);
	cr_expect_eq(H.m.saf_dropped, 2);
	cr_expect_eq(stats().saf_depth, 1, "the dropped ones left the queue");
}

Test(saf_engine, reversals_in_flight_per_link_are_bounded)
{
	struct h_msgs *kept = calloc(1, sizeof(*kept));
	uint8_t msg[1024];
	char stan[7];
	unsigned k, sent = 0;
	size_t len;

	cr_assert_not_null(kept);
	H.cfg.settings.saf_inflight_max = 2;
	H.cfg.settings.saf_poll_ms = 100;
	for (k = 0; k < 5; k++) {
		snprintf(stan, sizeof(stan), "%06u", 200 + k);
		len = token_form(msg, sizeof(msg), h_tokens[H_OK].token, stan);
		put_direct(0, msg, len);
	}
	h_start(&H);
	h_collect(&H, TSW_EP_LINK, 0, iss);
	cr_assert_eq(reversals_in(iss), 2, "saf_inflight_max");
	cr_expect_eq(H.m.saf_inflight, 2);
	sent = 2;
	copy_msgs(kept, iss);
	h_advance(&H, 300);
	h_collect(&H, TSW_EP_LINK, 0, iss);
	cr_expect_eq(reversals_in(iss), 0, "none more while two wait for an answer");
	/* each answer frees a place for the next poll */
	while (sent < 5) {
		unsigned before = sent;

		for (k = 0; k < kept->n; k++)
			if (memcmp(kept->m[k].mti, "0400", 4) == 0)
				cr_assert_eq(h_issuer_answer(&H, 0, &kept->m[k], "00", 0), 0);
		h_advance(&H, 100);
		h_collect(&H, TSW_EP_LINK, 0, iss);
		sent += reversals_in(iss);
		cr_assert_leq(reversals_in(iss), 2);
		cr_assert_gt(sent, before, "the freed places are used");
		copy_msgs(kept, iss);
	}
	cr_expect_eq(sent, 5);
	cr_expect_eq(H.m.saf_sent, 5);
	cr_expect_eq(H.m.saf_acked, 4);
	free(kept);
}

Test(saf_engine, a_link_claims_only_the_reversals_of_its_issuer)
{
	uint8_t msg[1024];
	size_t len;

	H.cfg.settings.n_issuers = 2;
	H.cfg.settings.n_hosts = 2;
	strcpy(H.cfg.settings.hosts[1].addr.host, "127.0.0.1");
	H.cfg.settings.hosts[1].addr.port = 2;
	H.cfg.settings.hosts[1].issuer = 1;
	H.cfg.settings.n_routes = 2;
	strcpy(H.cfg.settings.routes[0].bin_prefix, "");
	H.cfg.settings.routes[0].issuer = 0;
	strcpy(H.cfg.settings.routes[1].bin_prefix, "6011");
	H.cfg.settings.routes[1].issuer = 1;
	H.cfg.settings.saf_poll_ms = 100;
	h_start(&H);
	tsw_engine_link_down(H.e, 1, H.now);
	len = token_form(msg, sizeof(msg), h_tokens[H_ROUTE2].token, "000301");
	put_direct(1, msg, len);
	len = token_form(msg, sizeof(msg), h_tokens[H_OK].token, "000302");
	put_direct(0, msg, len);
	h_advance(&H, 200);
	h_collect(&H, TSW_EP_LINK, 0, iss);
	cr_assert_eq(reversals_in(iss), 1, "issuer 0's reversal only");
	cr_expect_str_eq(h_field(&iss->m[the_reversal(iss)], 2), h_tokens[H_OK].pan);
	H.now += 100 * 1000000ull;
	h_sign_on(&H, 1, "00");
	h_collect(&H, TSW_EP_LINK, 1, iss);
	cr_assert_eq(reversals_in(iss), 1, "issuer 1's after its sign-on");
	cr_expect_str_eq(h_field(&iss->m[the_reversal(iss)], 2), h_tokens[H_ROUTE2].pan);
}
