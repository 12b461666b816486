/* ns per ARQC verification (each CVN; with the ICC master key cache warm
 * and with no cache, deriving it every time), per ARPC (tag 91, cache
 * warm), per token cryptogram (TAVV) verification and per PIN translation
 * (format 0 TDES, format 4 AES), on the software backend, one thread.
 * Prints the median (min-max) of RUNS runs of ITERATIONS calls each, in
 * CPU time of the calling thread (CLOCK_THREAD_CPUTIME_ID).
 *
 *   bench_hsm [iterations [only]]
 *
 * only: run just the benchmarks whose name contains it (for callgrind:
 * `valgrind --tool=callgrind --toggle-collect=tsw_hsm_arqc_verify
 * bench_hsm 1000 "cvn18, cached"` counts the instructions of one kind).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tsw/error.h"
#include "tsw/hsm.h"

enum { RUNS = 7, ITERATIONS_DEFAULT = 200000, CARDS = 1024 };

#define PAN_PREFIX "489537000000" /* 16 digits with the card number */

/* CPU time of this thread: on a machine shared with other work the wall
 * clock also counts the time the thread waited for a core. */
static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static void die(const char *what, int r)
{
	fprintf(stderr, "bench_hsm: %s: %s\n", what, tsw_strerror(r));
	exit(1);
}

static void report(const char *name, double *ns)
{
	qsort(ns, RUNS, sizeof(ns[0]), cmp_double);
	printf("%-34s %8.0f ns  (%.0f-%.0f)\n", name, ns[RUNS / 2], ns[0], ns[RUNS - 1]);
}

/* The inputs of the arqc-vectors.md cases; in->arqc is filled per card. */
static void input(unsigned cvn, struct tsw_hsm_arqc_input *in)
{
	static const uint8_t iad18[] = {0x06, 0x01, 0x12, 0x03, 0xA0, 0xB8, 0x00};

	memset(in, 0, sizeof(*in));
	in->cvn = (uint8_t)cvn;
	memcpy(in->amount, "\x00\x00\x00\x00\x40\x00", 6);
	memcpy(in->country, "\x01\x24", 2);
	memcpy(in->tvr, "\x80\x00\x04\x80\x00", 5);
	memcpy(in->currency, "\x01\x24", 2);
	memcpy(in->date, "\x19\x11\x05", 3);
	in->type = 0x01;
	memcpy(in->un, "\x52\xBF\x45\x85", 4);
	memcpy(in->aip, "\x18\x00", 2);
	memcpy(in->atc, "\x00\x1C", 2);
	if (cvn == TSW_HSM_CVN_VISA_10) {
		memcpy(in->cvr, "\x03\xA0\x60\x10", 4);
		in->cvr_len = 4;
	} else {
		memcpy(in->cvr, "\xA0\x00\x03\x22\x00\x00", 6);
		in->cvr_len = 6;
	}
	memcpy(in->iad, iad18, sizeof(iad18));
	in->iad_len = sizeof(iad18);
}

static void card_pan(unsigned c, char pan[17])
{
	snprintf(pan, 17, PAN_PREFIX "%04u", c);
}

/* What a run measures for card c: an ARQC verification, or an ARPC. */
enum arqc_op { OP_VERIFY, OP_ARPC };

static void bench_arqc(const char *name, const struct tsw_hsm_soft_config *cfg, unsigned cvn,
		       enum arqc_op op, long iterations)
{
	static uint8_t arqc[CARDS][8];
	static char pans[CARDS][17];
	struct tsw_hsm *h;
	struct tsw_hsm_session *s;
	struct tsw_hsm_key *imk;
	struct tsw_hsm_arqc_input in;
	struct tsw_hsm_arpc_params p = {.arc = {'0', '0'}};
	uint8_t out[TSW_HSM_ARPC_DATA_MAX];
	size_t n;
	double ns[RUNS];
	int r;

	if ((r = tsw_hsm_soft_open(cfg, &h)) < 0 || (r = tsw_hsm_session_open(h, &s)) < 0)
		die("open", r);
	r = tsw_hsm_key_import(h, TSW_HSM_IMK_AC, TSW_HSM_TDES2,
			       (const uint8_t *)"\x01\x23\x45\x67\x89\xAB\xCD\xEF"
						"\xFE\xDC\xBA\x98\x76\x54\x32\x10",
			       16, &imk);
	if (r < 0)
		die("import", r);
	input(cvn, &in);
	/* CARDS distinct cards, each with its right ARQC; generating them
	 * also warms the cache */
	for (unsigned c = 0; c < CARDS; c++) {
		card_pan(c, pans[c]);
		if ((r = tsw_hsm_arqc_generate(s, imk, pans[c], 16, 0, &in, arqc[c])) < 0)
			die("generate", r);
	}
	for (int run = 0; run < RUNS; run++) {
		double t0 = now_ns();

		for (long i = 0; i < iterations; i++) {
			unsigned c = (unsigned)i % CARDS;

			memcpy(in.arqc, arqc[c], 8);
			if (op == OP_ARPC)
				r = tsw_hsm_arpc(s, imk, pans[c], 16, 0, &in, &p, out, &n);
			else
				r = tsw_hsm_arqc_verify(s, imk, pans[c], 16, 0, &in);
			if (r != 0)
				die(op == OP_ARPC ? "arpc" : "verify", r);
		}
		ns[run] = (now_ns() - t0) / (double)iterations;
	}
	report(name, ns);
	tsw_hsm_key_free(imk);
	tsw_hsm_session_close(s);
	tsw_hsm_close(h);
}

static void bench_pin(const char *name, enum tsw_hsm_alg alg, size_t key_len, long iterations)
{
	static const uint8_t key_a[32] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF,
					  0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54, 0x32, 0x10,
					  0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
					  0x99, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF, 0x00};
	static const uint8_t key_i[32] = {0x89, 0xAB, 0xCD, 0xEF, 0x01, 0x23, 0x45, 0x67,
					  0x76, 0x54, 0x32, 0x10, 0xFE, 0xDC, 0xBA, 0x98,
					  0x00, 0xFF, 0xEE, 0xDD, 0xCC, 0xBB, 0xAA, 0x99,
					  0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11};
	struct tsw_hsm *h;
	struct tsw_hsm_session *s;
	struct tsw_hsm_key *a, *b;
	uint8_t in[TSW_HSM_PIN_BLOCK_MAX], out[TSW_HSM_PIN_BLOCK_MAX];
	double ns[RUNS];
	int r;

	if ((r = tsw_hsm_soft_open(NULL, &h)) < 0 || (r = tsw_hsm_session_open(h, &s)) < 0)
		die("open", r);
	if ((r = tsw_hsm_key_import(h, TSW_HSM_ZPK_ACQUIRER, alg, key_a, key_len, &a)) < 0 ||
	    (r = tsw_hsm_key_import(h, TSW_HSM_ZPK_ISSUER, alg, key_i, key_len, &b)) < 0)
		die("import", r);
	if ((r = tsw_hsm_pin_form(s, a, "4895370000000015", 16, "1234", 4, in)) < 0)
		die("form", r);
	for (int run = 0; run < RUNS; run++) {
		double t0 = now_ns();

		for (long i = 0; i < iterations; i++) {
			r = tsw_hsm_pin_translate(s, a, "4895370000000015", 16, b,
						  "4111111111111111", 16, in, out);
			if (r < 0)
				die("translate", r);
		}
		ns[run] = (now_ns() - t0) / (double)iterations;
	}
	report(name, ns);
	tsw_hsm_key_free(a);
	tsw_hsm_key_free(b);
	tsw_hsm_session_close(s);
	tsw_hsm_close(h);
}

static void bench_tavv(const char *name, enum tsw_hsm_alg alg, size_t key_len, long iterations)
{
	static const uint8_t key[32] = {0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
					0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F,
					0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17,
					0x18, 0x19, 0x1A, 0x1B, 0x1C, 0x1D, 0x1E, 0x1F};
	static char pans[CARDS][17];
	static uint8_t macs[CARDS][8];
	struct tsw_hsm_tavv_input in = {.token_len = 16,
					.amount = "000000012500",
					.currency = "840",
					.merchant = "MERCHANT0001   ",
					.merchant_len = 15,
					.counter = 1};
	struct tsw_hsm *h;
	struct tsw_hsm_session *s;
	struct tsw_hsm_key *k;
	double ns[RUNS];
	int r;

	if ((r = tsw_hsm_soft_open(NULL, &h)) < 0 || (r = tsw_hsm_session_open(h, &s)) < 0)
		die("open", r);
	if ((r = tsw_hsm_key_import(h, TSW_HSM_TAVV, alg, key, key_len, &k)) < 0)
		die("import", r);
	for (unsigned c = 0; c < CARDS; c++) {
		card_pan(c, pans[c]);
		in.token = pans[c];
		if ((r = tsw_hsm_tavv_generate(s, k, &in, macs[c])) < 0)
			die("generate", r);
	}
	for (int run = 0; run < RUNS; run++) {
		double t0 = now_ns();

		for (long i = 0; i < iterations; i++) {
			unsigned c = (unsigned)i % CARDS;

			in.token = pans[c];
			if ((r = tsw_hsm_tavv_verify(s, k, &in, macs[c])) != 0)
				die("tavv verify", r);
		}
		ns[run] = (now_ns() - t0) / (double)iterations;
	}
	report(name, ns);
	tsw_hsm_key_free(k);
	tsw_hsm_session_close(s);
	tsw_hsm_close(h);
}

int main(int argc, char **argv)
{
	long iterations = argc > 1 ? atol(argv[1]) : ITERATIONS_DEFAULT;
	const char *only = argc > 2 ? argv[2] : NULL;
	struct tsw_hsm_soft_config cached = {0};
	struct tsw_hsm_soft_config uncached = {.icc_cache_entries = UINT32_MAX};
	struct tsw_hsm_soft_stats st;
	struct tsw_hsm *h;

	if (iterations <= 0)
		iterations = ITERATIONS_DEFAULT;
	if (tsw_hsm_soft_open(NULL, &h) == 0 && tsw_hsm_soft_stats(h, &st) == 0)
		printf("key memory %s\n", st.locked ? "locked" : "NOT locked");
	tsw_hsm_close(h);
	printf("%ld iterations x %d runs, %d cards; median (min-max) CPU ns per call\n", iterations,
	       RUNS, CARDS);
	/* the name twice would drift: the macro passes it to the filter and
	 * to the benchmark */
#define RUN(fn, name, ...)                                                                         \
	do {                                                                                       \
		if (!only || strstr(name, only))                                                   \
			fn(name, __VA_ARGS__);                                                     \
	} while (0)
	RUN(bench_arqc, "arqc verify cvn10, cached ICC MK", &cached, 10, OP_VERIFY, iterations);
	RUN(bench_arqc, "arqc verify cvn18, cached ICC MK", &cached, 18, OP_VERIFY, iterations);
	RUN(bench_arqc, "arqc verify cvn16, cached ICC MK", &cached, 16, OP_VERIFY, iterations);
	RUN(bench_arqc, "arqc verify cvn20, cached ICC MK", &cached, 20, OP_VERIFY, iterations);
	RUN(bench_arqc, "arqc verify cvn10, no cache", &uncached, 10, OP_VERIFY, iterations);
	RUN(bench_arqc, "arqc verify cvn18, no cache", &uncached, 18, OP_VERIFY, iterations);
	RUN(bench_arqc, "arpc cvn10 (method 1), cached", &cached, 10, OP_ARPC, iterations);
	RUN(bench_arqc, "arpc cvn18 (method 2), cached", &cached, 18, OP_ARPC, iterations);
	RUN(bench_arqc, "arpc cvn16 (method 1), cached", &cached, 16, OP_ARPC, iterations);
	RUN(bench_arqc, "arpc cvn20 (method 1), cached", &cached, 20, OP_ARPC, iterations);
	RUN(bench_tavv, "tavv verify (AES-128)", TSW_HSM_AES128, 16, iterations);
	RUN(bench_tavv, "tavv verify (AES-256)", TSW_HSM_AES256, 32, iterations);
	RUN(bench_pin, "pin translate format 0 (TDES2)", TSW_HSM_TDES2, 16, iterations);
	RUN(bench_pin, "pin translate format 4 (AES-128)", TSW_HSM_AES128, 16, iterations);
	RUN(bench_pin, "pin translate format 4 (AES-256)", TSW_HSM_AES256, 32, iterations);
#undef RUN
	return 0;
}
