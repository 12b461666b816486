/* The endpoint output buffer (white-box: the engine's internal header):
 * compaction leaves no copy of the moved bytes behind. */
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

TestSuite(outbuf, .init = setup, .fini = teardown, .timeout = 30);

/* compaction leaves no copy of the moved bytes behind, and a
 * frame that fails to encode leaves none of its bytes past the tail */
Test(outbuf, compaction_wipes_the_bytes_past_the_new_tail)
{
	static char fill[1001];
	struct tsw_iso_edit ed[2] = {
	    {.field = 0, .len = 4, .data = (const uint8_t *)"0800"},
	    {.field = 63, .len = 90, .data = (const uint8_t *)fill},
	};
	const struct tsw_iso_edit small[2] = {
	    {.field = 0, .len = 4, .data = (const uint8_t *)"0800"},
	    {.field = 70, .len = 3, .data = (const uint8_t *)"001"},
	};
	struct outbuf b;
	uint32_t old_tail, first;
	size_t i;

	cr_assert_eq(engine__outbuf_init(&b, 256), 0);
	memset(fill, 'A', 90);
	cr_assert_eq(engine__outbuf_encode(&b, &H.prof, NULL, ed, 2), 0);
	first = b.tail;
	memset(fill, '4', 90);
	cr_assert_eq(engine__outbuf_encode(&b, &H.prof, NULL, ed, 2), 0);
	old_tail = b.tail;
	cr_assert_eq(old_tail, 2 * first);
	b.head = first; /* the first frame went out */
	cr_assert_eq(engine__outbuf_encode(&b, &H.prof, NULL, small, 2), 0);
	cr_assert_eq(b.head, 0, "not compacted");
	cr_assert_lt(b.tail, old_tail);
	for (i = b.tail; i < old_tail; i++)
		cr_assert_eq(b.data[i], 0, "byte %zu past the tail kept", i);

	/* DE63 is ans..999: 1000 bytes fail to encode after some were written */
	old_tail = b.tail;
	memset(fill, '4', 1000);
	ed[1].len = 1000;
	cr_assert_lt(engine__outbuf_encode(&b, &H.prof, NULL, ed, 2), 0);
	cr_assert_eq(b.tail, old_tail);
	for (i = b.tail; i < b.cap; i++)
		cr_assert_eq(b.data[i], 0, "byte %zu of the failed frame kept", i);
	engine__outbuf_free(&b);
}
