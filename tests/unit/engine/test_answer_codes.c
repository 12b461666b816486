/* Answer codes (white-box: the engine's internal header): which DE39
 * codes approve, and the MTI a repeat is answered with. Every answer to
 * the acquirer is scanned for PAN digits. */
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

TestSuite(answer_codes, .init = setup, .fini = teardown, .timeout = 30);

/* which codes approve */
Test(answer_codes, approval_codes_are_00_08_10_11_16)
{
	static const struct {
		const char *rc;
		bool approved;
	} cases[] = {{"00", true},  {"08", true},  {"10", true},  {"11", true},
		     {"16", true},  {"05", false}, {"51", false}, {"91", false},
		     {"96", false}, {"01", false}, {"0", false},  {"000", false}};
	unsigned i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_assert_eq(engine__rc_approved(cases[i].rc), cases[i].approved, "rc %s",
			     cases[i].rc);
}

/* a repeat is answered with the plain response MTI */
Test(answer_codes, repeats_are_answered_with_the_plain_response_mti)
{
	static const struct {
		const char *mti, *want;
	} cases[] = {{"0101", "0110"}, {"0401", "0410"}, {"0121", "0130"}, {"0801", "0810"}};
	unsigned i;

	h_start(&H);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = h_build(&H, body, sizeof(body), cases[i].mti, 2, "4000999999999998", 3,
				   "000000", 4, "000000000500", 7, "1123031500", 11, "000801", 70,
				   "301", 0);

		cr_assert_eq(h_send(&H, body, n), 0);
		collect_acq();
		cr_assert_eq(acq->n, 1);
		cr_assert_eq(memcmp(acq->m[0].mti, cases[i].want, 4), 0, "%s answered %.4s",
			     cases[i].mti, acq->m[0].mti);
	}
}
