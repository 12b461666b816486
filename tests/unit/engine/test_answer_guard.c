/* The answer guard (white-box: the engine's internal header): card data
 * in issuer answers never reaches the acquirer, whichever field or
 * encoding it hides in; the rolling PAN scan agrees with a naive one.
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

TestSuite(answer_guard, .init = setup, .fini = teardown, .timeout = 30);

/* card-data fields are dropped, whatever the issuer puts there */
Test(answer_guard, answer_fields_holding_card_data_never_reach_the_acquirer)
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

/* the PAN anywhere else, DE2 absent: 96, and the issuer's
 * approval is reversed */
Test(answer_guard, pan_anywhere_in_an_answer_without_de2_is_replaced_by_96_and_reversed)
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
		cr_assert_eq(h_keep_mti(iss, "0100"), 1);
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
Test(answer_guard, another_pan_from_the_issuer_is_caught_outside_de2)
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

/* The reference the scan must agree with: every window of pan_len ASCII
 * digits, hashed. */
static bool naive_scan(uint64_t seed, uint64_t fp, size_t pan_len, const uint8_t *p, size_t n)
{
	for (size_t j = 0; j + pan_len <= n; j++) {
		size_t k = 0;

		while (k < pan_len && p[j + k] >= '0' && p[j + k] <= '9')
			k++;
		if (k == pan_len && engine__pan_fp(seed, (const char *)p + j, pan_len) == fp)
			return true;
	}
	return false;
}

Test(guard, pan_scan_finds_the_pan_at_every_offset_and_agrees_with_the_reference,
     .timeout = 30)
{
	static const char pan[] = "5500000000000004";
	const size_t pan_len = sizeof(pan) - 1;
	uint64_t seed = engine__pan_fp_seed_new(), fp = engine__pan_fp(seed, pan, pan_len);
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
			cr_assert(engine__pan_fp_scan(seed, fp, pan_len, last4, buf, n),
				  "n=%zu at=%zu", n, at);
			found++;
			/* one digit changed: not the PAN any more (the reference
			 * decides: the random rest may hold it too, it cannot) */
			buf[at + (at * 7) % pan_len] ^= 1;
			cr_assert_eq(engine__pan_fp_scan(seed, fp, pan_len, last4, buf, n),
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
	uint64_t seed = engine__pan_fp_seed_new(), fp = engine__pan_fp(seed, pan, pan_len);
	uint8_t buf[64];

	/* the last 4 digits alone, a window cut by a separator, a window
	 * running off the start, the PAN split across the buffer end */
	memset(buf, '1', sizeof(buf));
	buf[20] = ' ';
	cr_assert_not(engine__pan_fp_scan(seed, fp, pan_len, pan + 12, buf, 20 + 10));
	cr_assert_not(engine__pan_fp_scan(seed, fp, pan_len, pan + 12, buf + 21, 15));
	memcpy(buf, "4111111111111111", 16);
	cr_assert_not(engine__pan_fp_scan(seed, fp, pan_len, pan + 12, buf + 1, 15));
	cr_assert(engine__pan_fp_scan(seed, fp, pan_len, pan + 12, buf, 16));
	cr_assert_not(engine__pan_fp_scan(seed, fp, pan_len, pan + 12, buf, 15));
	/* another key: the same digits have another fingerprint */
	cr_assert_not(engine__pan_fp_scan(seed ^ 1, fp, pan_len, pan + 12, buf, 16));
}
