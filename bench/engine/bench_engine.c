/* ns per authorization through the engine: acquirer bytes in -> issuer
 * bytes out -> issuer answer in -> acquirer bytes out, with a vault of
 * 100 k tokens (random token per request, warm map), batches of 64
 * pipelined requests on one connection. The fake issuer (decode + encode
 * of the 0110) runs between the timed parts and is reported separately.
 * The pending table has the server's default size (max_pending 65536), so
 * its cache behaviour is the server's, not that of a table that fits L1.
 *
 *   bench_engine [--tokens N] [--requests N] [--runs N] [--max-pending N]
 *
 * Instruction counts per authorization (exact, immune to a noisy
 * machine): bench/engine/callgrind.
 * Prints one line per run and the median.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "testvault.h"
#include "tsw/engine.h"
#include "tsw/error.h"
#include "tsw/iso8583.h"
#include "tsw/metrics.h"
#include "tsw/vault.h"

#define BENCH_BATCH 64
#define BENCH_TOKENS_DEFAULT 100000u
#define BENCH_REQUESTS_DEFAULT 200000u
#define BENCH_RUNS_DEFAULT 5u
#define BENCH_BUF (1u << 20)
#define BENCH_RUNS_MAX 32u
#define BENCH_MAX_PENDING_DEFAULT 65536u /* config.c's limits.max_pending */

static uint64_t rng = 88172645463325252ull;

static uint64_t xorshift(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* The fake issuer: every request in buf becomes a 0110 with DE39 00. */
static size_t issuer_answers(const struct tsw_iso_profile *p, const uint8_t *in, size_t len,
			     uint8_t *out)
{
	size_t off = 0, o = 0;

	while (off + 2 <= len) {
		size_t fl = (size_t)in[off] << 8 | in[off + 1];
		struct tsw_iso_msg m;
		struct tsw_iso_edit ed[4] = {
		    {0, 4, (const uint8_t *)"0110"},
		    {39, 2, (const uint8_t *)"00"},
		    {38, 6, (const uint8_t *)"AB1234"},
		    {35, 0, NULL},
		};

		if (tsw_iso_decode(p, in + off + 2, fl, &m) < 0)
			bench_die("issuer decode", -TSW_E_BAD_INPUT);
		o += bench_frame(p, &m, ed, 4, out + o, BENCH_BUF - o, "issuer encode");
		off += fl + 2;
	}
	return o;
}

/* What the batches of a run go through. */
struct bench_auth {
	const struct tsw_iso_profile *prof;
	struct tsw_engine *e;
	int slot; /* the acquirer connection */
	uint8_t *linkbuf, *answers, *acqbuf;
};

/* Frames BENCH_BATCH 0100s for random tokens of the vault (1..n_tokens),
 * STANs from done, into frames; returns the bytes written. */
static size_t build_batch(const struct tsw_iso_profile *prof, unsigned n_tokens, unsigned done,
			  uint8_t *frames, size_t cap)
{
	char stan[7], tok[17], de35[40];
	size_t off = 0;

	for (unsigned i = 0; i < BENCH_BATCH; i++) {
		unsigned k = (unsigned)(xorshift() % n_tokens);
		struct tsw_iso_edit ed[16];

		testvault_number(tok, "4000", k + 1);
		snprintf(stan, sizeof(stan), "%06u", (done + i) % 1000000);
		snprintf(de35, sizeof(de35), "%s=30121010000012300000", tok);
		ed[0] = (struct tsw_iso_edit){0, 4, (const uint8_t *)"0100"};
		ed[1] = (struct tsw_iso_edit){2, 16, (const uint8_t *)tok};
		ed[2] = (struct tsw_iso_edit){3, 6, (const uint8_t *)"000000"};
		ed[3] = (struct tsw_iso_edit){4, 12, (const uint8_t *)"000000000500"};
		ed[4] = (struct tsw_iso_edit){7, 10, (const uint8_t *)"1123031500"};
		ed[5] = (struct tsw_iso_edit){11, 6, (const uint8_t *)stan};
		ed[6] = (struct tsw_iso_edit){12, 6, (const uint8_t *)"031500"};
		ed[7] = (struct tsw_iso_edit){13, 4, (const uint8_t *)"1123"};
		ed[8] = (struct tsw_iso_edit){14, 4, (const uint8_t *)"3012"};
		ed[9] = (struct tsw_iso_edit){22, 3, (const uint8_t *)"051"};
		ed[10] = (struct tsw_iso_edit){35, (uint16_t)strlen(de35), (const uint8_t *)de35};
		ed[11] = (struct tsw_iso_edit){37, 12, (const uint8_t *)"123456789012"};
		ed[12] = (struct tsw_iso_edit){41, 8, (const uint8_t *)"TERM0001"};
		ed[13] = (struct tsw_iso_edit){42, 15, (const uint8_t *)"MERCHANT0000001"};
		ed[14] = (struct tsw_iso_edit){49, 3, (const uint8_t *)"840"};
		off += bench_frame(prof, NULL, ed, 15, frames + off, cap - off, "request encode");
	}
	return off;
}

/* One batch through the engine: the requests in, the fake issuer's
 * answers back, the acquirer's answers out. Returns the ns spent in the
 * engine (the fake issuer not counted). */
static uint64_t run_batch(struct bench_auth *b, const uint8_t *frames, size_t len)
{
	uint64_t eng, t;
	size_t alen;
	int r;

	t = bench_now_ns();
	tsw_engine_loop_begin(b->e, t);
	r = tsw_engine_acq_input(b->e, (uint32_t)b->slot, frames, len, t);
	if (r < 0)
		bench_die("acq_input", r);
	alen = bench_drain(b->e, TSW_EP_LINK, 0, b->linkbuf);
	tsw_engine_loop_end(b->e);
	eng = bench_now_ns() - t;
	alen = issuer_answers(b->prof, b->linkbuf, alen, b->answers);
	t = bench_now_ns();
	tsw_engine_loop_begin(b->e, t);
	r = tsw_engine_link_input(b->e, 0, b->answers, alen, t);
	if (r < 0)
		bench_die("link_input", r);
	bench_drain(b->e, TSW_EP_ACQ, (uint32_t)b->slot, b->acqbuf);
	tsw_engine_loop_end(b->e);
	return eng + bench_now_ns() - t;
}

/* Opens the acquirer connection and signs the issuer link on. */
static void sign_on(struct bench_auth *b)
{
	uint64_t now = bench_now_ns();
	size_t n;

	b->slot = tsw_engine_acq_open(b->e, now);
	tsw_engine_link_connecting(b->e, 0, now);
	tsw_engine_link_up(b->e, 0, now);
	n = bench_drain(b->e, TSW_EP_LINK, 0, b->linkbuf);
	n = issuer_answers(b->prof, b->linkbuf, n, b->answers);
	b->answers[3] = '8'; /* 0110 -> 0810 */
	tsw_engine_link_input(b->e, 0, b->answers, n, now);
	if (!tsw_engine_ready(b->e))
		bench_die("sign-on", -1);
}

int main(int argc, char **argv)
{
	unsigned n_tokens = BENCH_TOKENS_DEFAULT, n_req = BENCH_REQUESTS_DEFAULT;
	unsigned runs = BENCH_RUNS_DEFAULT, i, run;
	unsigned max_pending = BENCH_MAX_PENDING_DEFAULT;
	static struct tsw_iso_profile prof;
	static struct tsw_metrics_shard shard;
	static uint8_t frames[BENCH_BATCH * 300];
	struct bench_auth b = {.prof = &prof};
	struct tsw_engine_config cfg;
	struct bench_vault bv;
	struct tsw_token tmpl;
	uint64_t engine_ns[BENCH_RUNS_MAX], total_ns[BENCH_RUNS_MAX];
	int r;

	for (i = 1; i + 1 < (unsigned)argc; i += 2) {
		if (!strcmp(argv[i], "--tokens"))
			n_tokens = (unsigned)strtoul(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--requests"))
			n_req = (unsigned)strtoul(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--runs"))
			runs = (unsigned)strtoul(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--max-pending"))
			max_pending = (unsigned)strtoul(argv[i + 1], NULL, 10);
	}
	if (runs > BENCH_RUNS_MAX)
		runs = BENCH_RUNS_MAX;
	n_req -= n_req % BENCH_BATCH;

	r = tsw_iso_profile_load_named(NULL, "default", &prof);
	if (r < 0)
		bench_die("profile", r);
	memset(&tmpl, 0, sizeof(tmpl));
	strcpy(tmpl.token_expiry, "3012");
	strcpy(tmpl.pan_expiry, "2911");
	strcpy(tmpl.trid, "12345678901");
	tmpl.assurance_level = 5;
	bench_vault_create(&bv, "/tmp/tsw-bench-engine-XXXXXX", n_tokens, &tmpl);

	bench_config_init(&cfg, &prof);
	cfg.settings.max_pending = max_pending;
	r = tsw_engine_new(&cfg, bv.v, NULL, &shard, &b.e);
	if (r < 0)
		bench_die("engine", r);

	b.linkbuf = malloc(BENCH_BUF);
	b.answers = malloc(BENCH_BUF);
	b.acqbuf = malloc(BENCH_BUF);
	if (!b.linkbuf || !b.answers || !b.acqbuf)
		bench_die("malloc", -1);
	sign_on(&b);

	for (run = 0; run < runs; run++) {
		uint64_t eng = 0, start = bench_now_ns();

		for (unsigned done = 0; done < n_req; done += BENCH_BATCH) {
			size_t len = build_batch(&prof, n_tokens, done, frames, sizeof(frames));

			eng += run_batch(&b, frames, len);
		}
		engine_ns[run] = eng / n_req;
		total_ns[run] = (bench_now_ns() - start) / n_req;
		printf("run %u: engine %llu ns/request, with request building and fake issuer %llu "
		       "ns\n",
		       run, (unsigned long long)engine_ns[run], (unsigned long long)total_ns[run]);
	}
	qsort(engine_ns, runs, sizeof(engine_ns[0]), bench_cmp_u64);
	qsort(total_ns, runs, sizeof(total_ns[0]), bench_cmp_u64);
	printf("median: engine %llu ns/request (vault %u tokens, %u requests/run, batches of %u); "
	       "approved %llu\n",
	       (unsigned long long)engine_ns[runs / 2], n_tokens, n_req, BENCH_BATCH,
	       (unsigned long long)shard.requests[TSW_MTI_0100][0]);
	tsw_engine_free(b.e);
	if (bench_vault_destroy(&bv) < 0)
		return 1;
	free(b.linkbuf);
	free(b.answers);
	free(b.acqbuf);
	return 0;
}
