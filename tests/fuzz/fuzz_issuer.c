/* Fuzz target: issuer answers (tsw_engine_link_input) into an engine with
 * requests pending: the acquirer has sent FI_REQUESTS authorizations
 * (switch STANs 000002 upwards, after the sign-on's 000001), then the
 * input arrives on the issuer link, split anywhere.
 *
 * Input: byte 0 picks the acquirer profile (bits 0-1) and the issuer's
 * (bits 2-3) from enum fe_profile; byte 1 + 1 is the chunk size; the
 * rest is what the issuer sends. Checked invariants, each a trap (and
 * those of fuzz_engine.c: whole frames that decode on both sides, answers
 * only to the acquirer, no PAN or unmasked token in an event):
 * - no field of an answer carries the PAN of its request's token (the
 *   answer guard looks for that PAN only: another card's PAN in an issuer
 *   answer goes through, tests/fuzz/pending/issuer/other-card-pan-in-de55);
 * - once the issuer timeout has passed, every request got exactly one
 *   answer, with its own STAN (DE11), and nothing else came.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz_engine.h"
#include "fuzz_util.h"

#define FI_REQUESTS 4

static const char *const stans[FI_REQUESTS] = {"100001", "100002", "100003", "100004"};
static const enum fe_token tokens[FI_REQUESTS] = {FE_OK, FE_T4T, FE_AMOUNT, FE_OK};

static unsigned answered[FI_REQUESTS];

/* Which request m answers (by the acquirer's STAN), or -1. */
static int request_of(const struct tsw_iso_msg *m)
{
	if (!tsw_iso_has(m, 11) || m->f[11].len != 6)
		return -1;
	for (int i = 0; i < FI_REQUESTS; i++)
		if (memcmp(tsw_iso_ptr(m, 11), stans[i], 6) == 0)
			return i;
	return -1;
}

static const char *answer_pan(const struct tsw_iso_msg *m)
{
	int i = request_of(m);

	/* an answer to no request is refused by count_answer */
	return i < 0 ? NULL : fe_pans[tokens[i]];
}

static void count_answer(const struct tsw_iso_msg *m)
{
	int which = request_of(m);

	fuzz_check(which >= 0);
	fuzz_check(memcmp(m->mti, "0110", 4) == 0);
	answered[which]++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fe f;
	uint8_t req[1024];
	size_t n = 0;

	if (size < 2)
		return 0;
	memset(answered, 0, sizeof(answered));
	fe_start(&f, (enum fe_profile)(data[0] & 3), (enum fe_profile)(data[0] >> 2 & 3));
	for (int i = 0; i < FI_REQUESTS; i++)
		n += fe_auth(&f, tokens[i], stans[i], req + n, sizeof(req) - n);
	/* the requests reach the link and wait there; nothing answers them yet */
	fe_acq_feed(&f, req, n, n, false);
	fuzz_check(f.iss_requests == FI_REQUESTS && f.answers == 0);

	f.on_answer = count_answer;
	f.answer_pan = answer_pan;
	fe_link_feed(&f, data + 2, size - 2, (size_t)data[1] + 1);
	fe_advance(&f, f.cfg.settings.issuer_timeout_ms + 1, false);
	fe_advance(&f, f.cfg.settings.issuer_timeout_ms + 1, false);
	for (int i = 0; i < FI_REQUESTS; i++)
		fuzz_check(answered[i] == 1);
	fe_stop(&f);
	return 0;
}
