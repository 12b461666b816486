/* ns per tsw_authz_decide() for an ordinary token (vault lookup excluded),
 * and per tsw_authz_parse() of a typical 0100. Prints the median of RUNS
 * runs of ITERATIONS calls each.
 *
 *   bench_authz_decide [iterations]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tsw/authz.h"
#include "tsw/iso8583.h"

enum { RUNS = 7, ITERATIONS_DEFAULT = 5000000 };

#define TOKEN "4895370000000015"

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static struct tsw_authz_str s(const char *v)
{
	return (struct tsw_authz_str){v, (uint16_t)strlen(v)};
}

/* An ordinary wallet token: active, contactless and chip only, two
 * merchants bound, an amount limit and a currency, requestor sent. */
static void setup(struct tsw_token *t, struct tsw_authz_req *r, struct tsw_authz_ctx *c)
{
	memset(t, 0, sizeof(*t));
	strcpy(t->token, TOKEN);
	t->token_len = 16;
	strcpy(t->token_expiry, "2712");
	strcpy(t->trid, "40010030273");
	t->pos_modes = 1u << TSW_POS_CONTACTLESS | 1u << TSW_POS_CHIP;
	t->n_merchants = 2;
	strcpy(t->merchants[0].merchant_id, "SHOP0002       ");
	strcpy(t->merchants[1].merchant_id, "SHOP0001       ");
	strcpy(t->merchants[1].mcc, "5411");
	t->amount_limit = 50000;
	strcpy(t->currency, "978");

	memset(r, 0, sizeof(*r));
	r->msg_class = TSW_AUTHZ_CLASS_AUTH;
	r->token = s(TOKEN);
	r->expiry = s("2712");
	r->has_amount = true;
	r->amount = 1999;
	r->currency = s("978");
	r->mcc = s("5411");
	r->acquirer_id = s("123456");
	r->merchant_id = s("SHOP0001");
	r->trid = s("40010030273");
	r->has_pos_mode = true;
	r->pos_mode = TSW_POS_CONTACTLESS;

	tsw_authz_ctx_init(c, 1752580800);
	c->in_token_range = true;
}

struct fv {
	unsigned f;
	const char *v;
};

static void build(uint8_t *buf, struct tsw_iso_msg *m)
{
	static const struct fv fields[] = {
	    {2, TOKEN},
	    {3, "000000"},
	    {4, "000000001999"},
	    {7, "0715120000"},
	    {11, "123456"},
	    {14, "2712"},
	    {18, "5411"},
	    {22, "071"},
	    {32, "123456"},
	    {37, "000000123456"},
	    {41, "TERM0001"},
	    {42, "SHOP0001       "},
	    {48, "1240010030273"},
	    {49, "978"},
	};
	size_t off = 0;

	memset(m, 0, sizeof(*m));
	memcpy(m->mti, "0100", 4);
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		size_t len = strlen(fields[i].v);
		unsigned f = fields[i].f;

		memcpy(buf + off, fields[i].v, len);
		m->f[f].off = (uint16_t)off;
		m->f[f].len = (uint16_t)len;
		m->bitmap[(f - 1) / 64] |= 1ull << (63 - (f - 1) % 64);
		off += len;
	}
	m->buf = buf;
	m->len = (uint32_t)off;
}

int main(int argc, char **argv)
{
	long iterations = argc > 1 ? atol(argv[1]) : ITERATIONS_DEFAULT;
	double decide_ns[RUNS], parse_ns[RUNS];
	struct tsw_token t;
	struct tsw_authz_req r;
	struct tsw_authz_ctx c;
	struct tsw_iso_msg m;
	uint8_t buf[512];
	volatile unsigned sink = 0;

	if (iterations <= 0)
		iterations = ITERATIONS_DEFAULT;
	setup(&t, &r, &c);
	build(buf, &m);
	if (tsw_authz_decide(&t, NULL, &r, &c) != TSW_AUTHZ_FORWARD) {
		fprintf(stderr, "bench token is not forwarded\n");
		return 1;
	}
	for (int run = 0; run < RUNS; run++) {
		double t0 = now_ns();

		for (long i = 0; i < iterations; i++) {
			/* the compiler cannot hoist a call through a volatile-fed amount */
			r.amount = 1999 + (sink & 1);
			sink += tsw_authz_decide(&t, NULL, &r, &c);
		}
		decide_ns[run] = (now_ns() - t0) / (double)iterations;

		t0 = now_ns();
		for (long i = 0; i < iterations; i++) {
			struct tsw_authz_req pr;

			sink += (unsigned)tsw_authz_parse(&m, &pr);
			sink += pr.pos_mode;
		}
		parse_ns[run] = (now_ns() - t0) / (double)iterations;
	}
	qsort(decide_ns, RUNS, sizeof(double), cmp_double);
	qsort(parse_ns, RUNS, sizeof(double), cmp_double);
	printf("decide: median %.1f ns/op (min %.1f, max %.1f), %d runs x %ld\n",
	       decide_ns[RUNS / 2], decide_ns[0], decide_ns[RUNS - 1], RUNS, iterations);
	printf("parse:  median %.1f ns/op (min %.1f, max %.1f), %d runs x %ld\n",
	       parse_ns[RUNS / 2], parse_ns[0], parse_ns[RUNS - 1], RUNS, iterations);
	return sink == 0xdeadbeef; /* never true in practice; keeps sink live */
}
