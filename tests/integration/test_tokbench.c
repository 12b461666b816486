/* tokbench: histogram, token CSV and request building (sans I/O), then
 * tokbench against issuer-sim over loopback, checked through its --json. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench.h"
#include "card.h"
#include "cardkeys.h"
#include "hist.h"
#include "request.h"
#include "testproc.h"
#include "tokens.h"
#include "tsw/error.h"
#include "tsw/iso8583.h"

#define RUN_DEADLINE_MS 30000

static struct tsw_iso_profile prof;
static char profile_arg[512];
static char tmpdir[256];

static void setup(void)
{
	int r = testproc_profile(&prof, profile_arg, sizeof(profile_arg));

	cr_assert_eq(r, 0, "profile: %s", tsw_strerror(r));
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/tokbench-test-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
}

static void teardown(void)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	cr_assert_eq(system(cmd), 0);
}

static void write_file(const char *name, const char *text, char *path, size_t cap)
{
	FILE *f;

	snprintf(path, cap, "%s/%s", tmpdir, name);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs(text, f);
	cr_assert_eq(fclose(f), 0);
}

/* ---- histogram ---- */

Test(hist, quantiles_within_bucket_precision)
{
	static struct hist h;

	hist_reset(&h);
	for (uint64_t v = 1; v <= 100000; v++)
		hist_add(&h, v * 1000); /* 1 us .. 100 ms in ns */
	cr_assert_eq(h.count, 100000);
	struct {
		double q;
		double want;
	} cases[] = {{0.5, 50e6}, {0.9, 90e6}, {0.99, 99e6}, {0.999, 99.9e6}, {1.0, 100e6}};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		double got = (double)hist_quantile(&h, cases[i].q);

		cr_assert(got >= cases[i].want && got <= cases[i].want * 1.016, "q=%g got %g",
			  cases[i].q, got);
	}
	cr_assert_eq(hist_quantile(&h, 1.0), h.max, "max is exact");
}

Test(hist, buckets_cover_every_value_in_order)
{
	uint64_t prev = 0;

	for (unsigned i = 1; i < HIST_BUCKETS; i++) {
		cr_assert_gt(hist_upper(i), prev, "bucket %u", i);
		prev = hist_upper(i);
	}
	cr_assert_eq(prev, UINT64_MAX);
	for (uint64_t v = 1; v < (1ull << 40); v = v * 3 + 1)
		cr_assert(hist_upper(hist_index(v)) >= v &&
			      (hist_index(v) == 0 || hist_upper(hist_index(v) - 1) < v),
			  "value %llu", (unsigned long long)v);
	cr_assert_eq(hist_index(UINT64_MAX), HIST_BUCKETS - 1);
}

Test(hist, empty_reports_zero)
{
	static struct hist h;

	hist_reset(&h);
	cr_assert_eq(hist_quantile(&h, 0.99), 0);
}

/* ---- the .hgrm file (HdrHistogram's percentile distribution) ---- */

/* What a plotter reads back from a .hgrm file: every row, and the footer. */
struct hgrm {
	unsigned n;
	double value[256], pct[256];
	unsigned long long count[256];
	double mean, stddev, max;
	unsigned long long total;
	unsigned buckets, sub_buckets;
};

/* Parses text as HdrHistogram's plotters do: the header, a blank line, rows
 * of value, percentile, total count and 1/(1-percentile) (which must agree
 * with the percentile), the 100 % row without it, then the three footer
 * lines; fails the test on anything else. */
static void hgrm_parse(const char *text, struct hgrm *g)
{
	static const char header[] = "       Value     Percentile TotalCount 1/(1-Percentile)\n\n";
	const char *p = text;
	int used;

	memset(g, 0, sizeof(*g));
	cr_assert(strncmp(p, header, strlen(header)) == 0, "header: %.80s", p);
	p += strlen(header);
	while (*p && *p != '#') {
		double inv;
		int k;

		cr_assert_lt(g->n, 256u);
		k = sscanf(p, "%lf %lf %llu%n %lf%n", &g->value[g->n], &g->pct[g->n],
			   &g->count[g->n], &used, &inv, &used);
		cr_assert(k == 3 || k == 4, "row %u: %.60s", g->n, p);
		if (k == 4)
			cr_assert_float_eq(inv, 1.0 / (1.0 - g->pct[g->n]), 0.006, "row %u", g->n);
		else
			cr_assert_float_eq(g->pct[g->n], 1.0, 1e-12,
					   "only the 100 %% row has 3 columns");
		p += used;
		cr_assert_eq(*p, '\n', "row %u ends after its columns", g->n);
		p++;
		g->n++;
	}
	cr_assert_eq(sscanf(p,
			    "#[Mean    = %lf, StdDeviation   = %lf]\n"
			    "#[Max     = %lf, Total count    = %llu]\n"
			    "#[Buckets = %u, SubBuckets     = %u]\n%n",
			    &g->mean, &g->stddev, &g->max, &g->total, &g->buckets, &g->sub_buckets,
			    &used),
		     6, "footer: %s", p);
	cr_assert_eq(p[used], '\0', "nothing after the footer");
}

/* Writes h as tokbench --hist does (microseconds) into a string. */
static char *hgrm_text(const struct hist *h)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	cr_assert_not_null(f);
	cr_assert_eq(hist_write_hgrm(h, f, HIST_HGRM_TICKS, 1000.0), 0);
	cr_assert_eq(fclose(f), 0);
	return buf;
}

/* 1..9 ns and one 1 ms outlier. The rows (levels, counts, values) are those
 * HdrHistogram 2.1.11's outputPercentileDistribution prints for the same
 * values, except the outlier's value: HdrHistogram at 3 significant digits
 * reports its bucket top as 1000.447 us, this histogram (64 values per
 * power of two) as 1007.615. */
Test(hgrm, known_latencies_give_hdrhistograms_rows)
{
	static const char want[] = "       Value     Percentile TotalCount 1/(1-Percentile)\n"
				   "\n"
				   "       0.001 0.000000000000          1           1.00\n"
				   "       0.001 0.100000000000          1           1.11\n"
				   "       0.002 0.200000000000          2           1.25\n"
				   "       0.003 0.300000000000          3           1.43\n"
				   "       0.004 0.400000000000          4           1.67\n"
				   "       0.005 0.500000000000          5           2.00\n"
				   "       0.006 0.550000000000          6           2.22\n"
				   "       0.006 0.600000000000          6           2.50\n"
				   "       0.007 0.650000000000          7           2.86\n"
				   "       0.007 0.700000000000          7           3.33\n"
				   "       0.008 0.750000000000          8           4.00\n"
				   "       0.008 0.775000000000          8           4.44\n"
				   "       0.008 0.800000000000          8           5.00\n"
				   "       0.009 0.825000000000          9           5.71\n"
				   "       0.009 0.850000000000          9           6.67\n"
				   "       0.009 0.875000000000          9           8.00\n"
				   "       0.009 0.887500000000          9           8.89\n"
				   "       0.009 0.900000000000          9          10.00\n"
				   "    1007.615 0.912500000000         10          11.43\n"
				   "    1007.615 1.000000000000         10\n"
				   "#[Mean    =      100.356, StdDeviation   =      301.055]\n"
				   "#[Max     =     1007.615, Total count    =           10]\n"
				   "#[Buckets =           58, SubBuckets     =          128]\n";
	static struct hist h;
	struct hgrm g;
	char *text;

	hist_reset(&h);
	for (uint64_t v = 1; v <= 9; v++)
		hist_add(&h, v);
	hist_add(&h, 1000000);
	text = hgrm_text(&h);
	cr_assert_str_eq(text, want);
	hgrm_parse(text, &g);
	cr_assert_eq(g.n, 20);
	cr_assert_eq(g.total, 10);
	cr_assert_float_eq(g.value[g.n - 1], 1007.615, 1e-9);
	free(text);
}

/* 100 000 latencies of 1 us .. 100 ms: the levels step 10 %, then 5 % past
 * 50 %, 2.5 % past 75 %, and so on; each row's count is the number of
 * values at or below its value (v for the bucket top v us), at least its
 * level's share; the footer agrees with the histogram. */
Test(hgrm, rows_follow_the_levels_and_parse_back)
{
	static const double levels[] = {0,     10, 20,	  30,	40,    50,    55, 60,
					65,    70, 75,	  77.5, 80,    82.5,  85, 87.5,
					88.75, 90, 91.25, 92.5, 93.75, 94.375};
	static struct hist h;
	struct hgrm g;
	char *text;

	hist_reset(&h);
	for (uint64_t v = 1; v <= 100000; v++)
		hist_add(&h, v * 1000);
	text = hgrm_text(&h);
	hgrm_parse(text, &g);
	cr_assert_gt(g.n, 40, "%u rows", g.n);
	for (unsigned i = 0; i < sizeof(levels) / sizeof(levels[0]); i++)
		cr_assert_float_eq(g.pct[i] * 100.0, levels[i], 1e-9, "row %u", i);
	for (unsigned i = 0; i < g.n; i++) {
		unsigned long long at_or_below = (unsigned long long)g.value[i];

		if (at_or_below > 100000)
			at_or_below = 100000;
		cr_assert_eq(g.count[i], at_or_below, "row %u", i);
		cr_assert_geq((double)g.count[i], g.pct[i] * 100000 - 1e-6, "row %u", i);
		if (i > 0)
			cr_assert(g.value[i] >= g.value[i - 1] && g.count[i] >= g.count[i - 1] &&
				      g.pct[i] > g.pct[i - 1],
				  "row %u", i);
	}
	cr_assert_float_eq(g.pct[g.n - 1], 1.0, 1e-12);
	cr_assert_eq(g.count[g.n - 1], 100000);
	cr_assert_eq(g.total, 100000);
	cr_assert_float_eq(g.max, g.value[g.n - 1], 1e-9);
	cr_assert(g.max >= 100000.0 && g.max <= 100000.0 * 1.016, "max %g", g.max);
	cr_assert(g.mean >= 50000.5 && g.mean <= 50000.5 * 1.016, "mean %g", g.mean);
	cr_assert_eq(g.buckets, 58);
	cr_assert_eq(g.sub_buckets, 128);
	free(text);
}

Test(hgrm, empty_histogram_has_header_and_zero_footer)
{
	static struct hist h;
	struct hgrm g;
	char *text;

	hist_reset(&h);
	text = hgrm_text(&h);
	hgrm_parse(text, &g);
	cr_assert_eq(g.n, 0);
	cr_assert_eq(g.total, 0);
	cr_assert_float_eq(g.max, 0.0, 1e-12);
	free(text);
}

/* ---- token CSV ---- */

Test(tokens, loads_every_column_and_defaults, .init = setup, .fini = teardown)
{
	char path[512];
	struct bench_tokens t;
	unsigned line;
	uint64_t rng = 1;

	write_file("t.csv",
		   "token,token_expiry,pos_mode,merchant_id,acquirer_id,mcc,device_ref,trid,"
		   "amount_limit,currency,expect_rc\n"
		   "4895370012345678,2812,contactless,MERCH001,,5411,DEV123,40010075001,50000,"
		   "978,00\r\n"
		   "4895370012345686,2701,cof,,123456,,,,0,,00|65\n",
		   path, sizeof(path));
	cr_assert_eq(bench_tokens_load(path, &rng, &t, &line), 0, "line %u", line);
	cr_assert_eq(t.n, 2);
	cr_assert(memcmp(t.t[0].pos, "071", 3) == 0);
	cr_assert(memcmp(t.t[0].merchant, "MERCH001       ", 15) == 0, "DE42 padded");
	cr_assert(t.t[0].merchant_bound);
	cr_assert_eq(t.t[0].amount_limit, 50000);
	cr_assert_eq(t.t[0].device_len, 6);
	cr_assert_eq(t.t[0].trid_len, 11);
	cr_assert(memcmp(t.t[1].pos, "102", 3) == 0);
	cr_assert_not(t.t[1].merchant_bound);
	cr_assert_neq(t.t[1].merchant[0], ' ', "random merchant id");
	cr_assert(memcmp(t.t[1].acquirer, "123456", 6) == 0);
	cr_assert(memcmp(t.t[1].currency, "840", 3) == 0);
	cr_assert_eq(t.t[1].expect.n, 2);
	bench_tokens_free(&t);
}

Test(tokens, bad_files_name_the_line, .init = setup, .fini = teardown)
{
	static const struct {
		const char *text;
		unsigned line;
	} cases[] = {
	    {"pan,expiry\n4111111111111111,2812\n", 1},		/* no token column */
	    {"token,pos_mode\n4895370012345678,teleport\n", 2}, /* unknown mode */
	    {"token\n4895370012345678\n48953700X2345686\n", 3}, /* not digits */
	    {"token,expect_rc\n4895370012345678,0\n", 2},	/* short rc */
	    {"token,token_expiry\n4895370012345678,28120\n", 2}, {"token\n", 1}, /* no rows */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char path[512];
		struct bench_tokens t;
		unsigned line = 0;
		uint64_t rng = 1;

		write_file("bad.csv", cases[i].text, path, sizeof(path));
		cr_assert_eq(bench_tokens_load(path, &rng, &t, &line), -TSW_E_BAD_INPUT, "case %zu",
			     i);
		cr_assert_eq(line, cases[i].line, "case %zu: line %u", i, line);
	}
	{
		struct bench_tokens t;
		unsigned line;
		uint64_t rng = 1;

		cr_assert_eq(bench_tokens_load("/nonexistent/t.csv", &rng, &t, &line), -ENOENT);
	}
}

/* ---- requests ---- */

static bool field_is(const struct tsw_iso_msg *m, unsigned f, const char *want, size_t len)
{
	return tsw_iso_has(m, f) && m->f[f].len == len && memcmp(tsw_iso_ptr(m, f), want, len) == 0;
}

static struct bench_token sample_token(void)
{
	struct bench_token t;

	memset(&t, 0, sizeof(t));
	memcpy(t.token, "4895370012345678", 16);
	t.token_len = 16;
	memcpy(t.expiry, "2812", 4);
	t.has_expiry = true;
	memcpy(t.pos, "812", 3);
	memcpy(t.merchant, "MERCH001       ", 15);
	t.merchant_bound = true;
	memcpy(t.acquirer, "100001", 6);
	t.acquirer_len = 6;
	memcpy(t.mcc, "5411", 4);
	memcpy(t.device, "DEV123", 6);
	t.device_len = 6;
	memcpy(t.trid, "40010075001", 11);
	t.trid_len = 11;
	t.amount_limit = 5000;
	memcpy(t.currency, "978", 3);
	t.expect = (struct bench_expect){.n = 1, .rc = {{'0', '0'}}};
	return t;
}

struct kind_case {
	enum bench_req_kind kind;
	const char *rc;
};

static const struct kind_case kind_cases[] = {
    {BENCH_REQ_NORMAL, "00"},	     {BENCH_REQ_WRONG_MERCHANT, "57"},
    {BENCH_REQ_OVER_LIMIT, "61"},    {BENCH_REQ_WRONG_EXPIRY, "54"},
    {BENCH_REQ_UNKNOWN_TOKEN, "14"}, {BENCH_REQ_ISSUER_DECLINE, "51"},
};

Test(request, each_kind_builds_its_fields_and_expectation, .init = setup, .fini = teardown)
{
	struct bench_token t = sample_token();
	struct bench_req_ctx ctx = {.stan = 4242, .rrn = 77};

	memcpy(ctx.de7, "1122334455", 10);
	memcpy(ctx.terminal, "TOKBENCH", 8);
	for (size_t i = 0; i < sizeof(kind_cases) / sizeof(kind_cases[0]); i++) {
		const struct kind_case *c = &kind_cases[i];
		uint8_t out[1024];
		struct bench_sent sent;
		struct tsw_iso_msg m;
		uint64_t rng = 99 + i, amount;
		char de4[13];
		const uint8_t *v;
		size_t vlen;
		int n;

		n = bench_request_build(&prof, &t, c->kind, BENCH_EXPECT_VAULT, &ctx, &rng, out,
					sizeof(out), &sent);
		cr_assert_gt(n, 0, "case %zu: %s", i, tsw_strerror(n));
		cr_assert_eq(tsw_iso_decode(&prof, out, (size_t)n, &m), 0, "case %zu", i);
		cr_assert(memcmp(m.mti, "0100", 4) == 0);
		cr_assert_eq(sent.expect.n, 1);
		cr_assert(memcmp(sent.expect.rc[0], c->rc, 2) == 0, "case %zu", i);
		cr_assert(field_is(&m, 3, "000000", 6));
		cr_assert(field_is(&m, 11, "004242", 6));
		cr_assert(field_is(&m, 37, "000000000077", 12));
		cr_assert(field_is(&m, 22, "812", 3));
		cr_assert(field_is(&m, 18, "5411", 4));
		cr_assert(field_is(&m, 49, "978", 3));
		cr_assert(field_is(&m, 2, sent.de2, sent.de2_len));
		cr_assert_eq(tsw_de48_find(tsw_iso_ptr(&m, 48), m.f[48].len, 10, &v, &vlen), 1);
		cr_assert(vlen == 6 && memcmp(v, "DEV123", 6) == 0);
		cr_assert_eq(tsw_de48_find(tsw_iso_ptr(&m, 48), m.f[48].len, 12, &v, &vlen), 1);
		cr_assert(vlen == 11 && memcmp(v, "40010075001", 11) == 0);
		memcpy(de4, tsw_iso_ptr(&m, 4), 12);
		de4[12] = '\0';
		amount = strtoull(de4, NULL, 10);
		switch (c->kind) {
		case BENCH_REQ_NORMAL:
			cr_assert(amount >= 1 && amount <= 5000 && amount % 100 != 51);
			cr_assert(field_is(&m, 42, "MERCH001       ", 15));
			cr_assert(field_is(&m, 14, "2812", 4));
			cr_assert(field_is(&m, 2, "4895370012345678", 16));
			break;
		case BENCH_REQ_WRONG_MERCHANT:
			cr_assert_not(field_is(&m, 42, "MERCH001       ", 15));
			break;
		case BENCH_REQ_OVER_LIMIT:
			cr_assert_gt(amount, 5000);
			break;
		case BENCH_REQ_WRONG_EXPIRY:
			cr_assert_not(field_is(&m, 14, "2812", 4));
			break;
		case BENCH_REQ_UNKNOWN_TOKEN:
			cr_assert_not(field_is(&m, 2, "4895370012345678", 16));
			break;
		case BENCH_REQ_ISSUER_DECLINE:
			cr_assert(amount % 100 == 51 && amount <= 5000, "amount %llu",
				  (unsigned long long)amount);
			break;
		case BENCH_REQ_KIND_MAX:
			break;
		}
	}
}

Test(request, declines_only_where_they_apply)
{
	struct bench_token t = sample_token();
	unsigned seen[BENCH_REQ_KIND_MAX] = {0};
	uint64_t rng = 5;

	for (int i = 0; i < 2000; i++)
		seen[bench_request_pick(&t, BENCH_EXPECT_VAULT, 50, &rng)]++;
	for (unsigned k = 0; k < BENCH_REQ_KIND_MAX; k++)
		cr_assert_gt(seen[k], 0, "kind %u never picked", k);
	cr_assert(seen[BENCH_REQ_NORMAL] > 800 && seen[BENCH_REQ_NORMAL] < 1200);

	/* a token expected to decline gets no deliberate decline */
	t.expect = (struct bench_expect){.n = 1, .rc = {{'6', '2'}}};
	for (int i = 0; i < 200; i++)
		cr_assert_eq(bench_request_pick(&t, BENCH_EXPECT_VAULT, 100, &rng),
			     BENCH_REQ_NORMAL);
	/* no merchant binding, no limit, no expiry: no such declines */
	t = sample_token();
	t.merchant_bound = false;
	t.amount_limit = 0;
	t.has_expiry = false;
	for (int i = 0; i < 500; i++) {
		enum bench_req_kind k = bench_request_pick(&t, BENCH_EXPECT_VAULT, 100, &rng);

		cr_assert(k == BENCH_REQ_UNKNOWN_TOKEN || k == BENCH_REQ_ISSUER_DECLINE);
	}
	/* against the issuer only the amount rule applies */
	for (int i = 0; i < 100; i++)
		cr_assert_eq(bench_request_pick(&t, BENCH_EXPECT_ISSUER, 100, &rng),
			     BENCH_REQ_ISSUER_DECLINE);
}

/* ---- tokbench against issuer-sim ---- */

static const char tiny_csv[] =
    "token,token_expiry,pos_mode,merchant_id,acquirer_id,mcc,device_ref,trid,amount_limit,"
    "currency,expect_rc\n"
    "4895370012345678,2812,contactless,MERCH001,,5411,DEV123,40010075001,50000,978,00\n"
    "4895370012345686,2812,ecommerce,,,,,,0,,00\n"
    "4895370012345694,2701,chip,,123456,,,,,840,00\n";

struct json_fig {
	char text[8192];
};

static void read_json(const char *path, struct json_fig *j)
{
	FILE *f = fopen(path, "r");
	size_t n;

	cr_assert_not_null(f, "no json at %s", path);
	n = fread(j->text, 1, sizeof(j->text) - 1, f);
	j->text[n] = '\0';
	fclose(f);
}

static double json_num(const struct json_fig *j, const char *key)
{
	char k[64];
	const char *p;

	snprintf(k, sizeof(k), "\"%s\": ", key);
	p = strstr(j->text, k);
	cr_assert_not_null(p, "no %s in json", key);
	return strtod(p + strlen(k), NULL);
}

static uint16_t start_sim2(struct testproc *sim, const char *extra, const char *extra2)
{
	char path[512], line[TESTPROC_LINE_MAX];
	char *argv[8];
	int n = 0;
	uint16_t port;

	testproc_program("TSW_ISSUER_SIM", path, sizeof(path));
	argv[n++] = path;
	argv[n++] = (char *)"--listen";
	argv[n++] = (char *)"127.0.0.1:0";
	argv[n++] = (char *)"--profile";
	argv[n++] = profile_arg;
	if (extra)
		argv[n++] = (char *)extra;
	if (extra2)
		argv[n++] = (char *)extra2;
	argv[n] = NULL;
	cr_assert_eq(testproc_start(sim, argv), 0);
	cr_assert_eq(testproc_line(sim, line, sizeof(line), TESTPROC_DEADLINE_MS), 0);
	port = testproc_port(line);
	cr_assert_neq(port, 0, "line: %s", line);
	return port;
}

static uint16_t start_sim(struct testproc *sim, const char *extra)
{
	return start_sim2(sim, extra, NULL);
}

/* Runs tokbench for duration seconds; returns its exit status. */
static int run_bench(uint16_t port, const char *csv, const char *json, const char *const *extra)
{
	char path[512], target[32];
	char *argv[40];
	struct testproc tp;
	int n = 0;

	testproc_program("TSW_TOKBENCH", path, sizeof(path));
	snprintf(target, sizeof(target), "127.0.0.1:%u", port);
	argv[n++] = path;
	argv[n++] = (char *)"--target";
	argv[n++] = target;
	argv[n++] = (char *)"--tokens";
	argv[n++] = (char *)csv;
	argv[n++] = (char *)"--profile";
	argv[n++] = profile_arg;
	argv[n++] = (char *)"--json";
	argv[n++] = (char *)json;
	argv[n++] = (char *)"--quiet";
	for (; extra && *extra; extra++)
		argv[n++] = (char *)*extra;
	argv[n] = NULL;
	cr_assert_eq(testproc_start(&tp, argv), 0);
	return testproc_wait(&tp, RUN_DEADLINE_MS);
}

static uint64_t sim_answered(struct testproc *sim)
{
	char line[TESTPROC_LINE_MAX];
	const char *p;

	cr_assert_eq(testproc_stop(sim, SIGTERM, TESTPROC_DEADLINE_MS), 0);
	cr_assert_eq(testproc_line(sim, line, sizeof(line), 0), 0);
	p = strstr(line, " answered=");
	cr_assert_not_null(p, "%s", line);
	return strtoull(p + 10, NULL, 10);
}

Test(tokbench, closed_loop_against_issuer_sim_counts_right, .init = setup, .fini = teardown,
     .timeout = 60)
{
	static const char *const extra[] = {
	    "--connections", "4",      "--depth",	"4",  "--duration", "1", "--warmup", "0.2",
	    "--expect",	     "issuer", "--decline-pct", "10", NULL};
	char csv[512], json[512];
	struct testproc sim;
	struct json_fig j;
	uint16_t port = start_sim(&sim, NULL);
	double count;

	write_file("tokens.csv", tiny_csv, csv, sizeof(csv));
	snprintf(json, sizeof(json), "%s/out.json", tmpdir);
	cr_assert_eq(run_bench(port, csv, json, extra), 0);
	read_json(json, &j);
	count = json_num(&j, "count");
	cr_assert_gt(count, 100, "%s", j.text);
	cr_assert_eq(count, json_num(&j, "sent"), "every request answered: %s", j.text);
	cr_assert_eq(json_num(&j, "wrong"), 0, "%s", j.text);
	cr_assert_eq(json_num(&j, "errors"), 0, "%s", j.text);
	cr_assert_eq(json_num(&j, "timeouts"), 0, "%s", j.text);
	cr_assert_eq(json_num(&j, "pan_leaks"), 0, "%s", j.text);
	cr_assert_eq(json_num(&j, "unmatched"), 0, "%s", j.text);
	cr_assert_gt(json_num(&j, "51"), 0, "issuer declines sent: %s", j.text);
	cr_assert_eq(json_num(&j, "00") + json_num(&j, "51"), count, "%s", j.text);
	cr_assert_gt(json_num(&j, "p99"), 0);
	/* the simulator answered at least what was counted (warmup too) */
	cr_assert_geq((double)sim_answered(&sim), count);
}

Test(tokbench, open_loop_holds_the_rate, .init = setup, .fini = teardown, .timeout = 60)
{
	static const char *const extra[] = {"--connections", "2",      "--rate",   "2000",
					    "--duration",    "1",      "--warmup", "0",
					    "--expect",	     "issuer", NULL};
	char csv[512], json[512];
	struct testproc sim;
	struct json_fig j;
	uint16_t port = start_sim(&sim, NULL);

	write_file("tokens.csv", tiny_csv, csv, sizeof(csv));
	snprintf(json, sizeof(json), "%s/out.json", tmpdir);
	cr_assert_eq(run_bench(port, csv, json, extra), 0);
	read_json(json, &j);
	/* 2000/s for 1 s: the schedule sends exactly 2000 */
	cr_assert_eq(json_num(&j, "sent"), 2000, "%s", j.text);
	cr_assert_eq(json_num(&j, "count"), 2000, "%s", j.text);
	cr_assert_eq(json_num(&j, "wrong"), 0, "%s", j.text);
	cr_assert_eq(json_num(&j, "offered_rate"), 2000, "%s", j.text);
	sim_answered(&sim);
}

/* The same run checked against the vault's expectations: the simulator
 * approves tokens the CSV says are suspended, so every such answer is
 * counted wrong. */
Test(tokbench, wrong_answers_are_counted, .init = setup, .fini = teardown, .timeout = 60)
{
	static const char *const extra[] = {
	    "--connections", "2", "--depth", "2", "--duration", "0.5", "--warmup", "0", NULL};
	char csv[512], json[512];
	struct testproc sim;
	struct json_fig j;
	uint16_t port = start_sim(&sim, NULL);

	write_file("tokens.csv", "token,expect_rc\n4895370012345678,62\n4895370012345686,62\n", csv,
		   sizeof(csv));
	snprintf(json, sizeof(json), "%s/out.json", tmpdir);
	cr_assert_eq(run_bench(port, csv, json, extra), 0);
	read_json(json, &j);
	cr_assert_gt(json_num(&j, "count"), 0);
	cr_assert_eq(json_num(&j, "wrong"), json_num(&j, "count"), "%s", j.text);
	sim_answered(&sim);
}

Test(tokbench, dropped_answers_are_timeouts, .init = setup, .fini = teardown, .timeout = 60)
{
	static const char *const extra[] = {
	    "--connections", "1",   "--depth",	"4",	  "--duration", "0.5", "--warmup", "0",
	    "--timeout-ms",  "100", "--expect", "issuer", NULL};
	char csv[512], json[512];
	struct testproc sim;
	struct json_fig j;
	uint16_t port = start_sim(&sim, "--drop-pct=100");

	write_file("tokens.csv", tiny_csv, csv, sizeof(csv));
	snprintf(json, sizeof(json), "%s/out.json", tmpdir);
	cr_assert_eq(run_bench(port, csv, json, extra), 0);
	read_json(json, &j);
	cr_assert_eq(json_num(&j, "count"), 0, "%s", j.text);
	cr_assert_gt(json_num(&j, "timeouts"), 0, "%s", j.text);
	cr_assert_eq(json_num(&j, "timeouts"), json_num(&j, "sent"), "%s", j.text);
	sim_answered(&sim);
}

Test(tokbench, refused_connections_are_errors, .init = setup, .fini = teardown, .timeout = 60)
{
	static const char *const extra[] = {"--connections", "2", "--duration", "0.3",
					    "--warmup",	     "0", NULL};
	char csv[512], json[512];
	struct testproc sim;
	struct json_fig j;
	uint16_t port = start_sim(&sim, "--refuse");

	write_file("tokens.csv", tiny_csv, csv, sizeof(csv));
	snprintf(json, sizeof(json), "%s/out.json", tmpdir);
	cr_assert_eq(run_bench(port, csv, json, extra), 0);
	read_json(json, &j);
	cr_assert_eq(json_num(&j, "conn_failures"), 2, "%s", j.text);
	cr_assert_eq(json_num(&j, "count"), 0, "%s", j.text);
	sim_answered(&sim);
}

Test(tokbench, bad_arguments_exit_2, .init = setup, .fini = teardown, .timeout = 30)
{
	static const char *const bad[][3] = {
	    {"--expect", "nobody", NULL},
	    {"--depth", "0", NULL},
	    {"--rate", "-1", NULL},
	};
	char path[512];

	testproc_program("TSW_TOKBENCH", path, sizeof(path));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *argv[] = {path,
				(char *)"--target",
				(char *)"127.0.0.1:1",
				(char *)"--tokens",
				(char *)"x.csv",
				(char *)bad[i][0],
				(char *)bad[i][1],
				NULL};
		struct testproc tp;

		cr_assert_eq(testproc_start(&tp, argv), 0);
		cr_assert_eq(testproc_wait(&tp, TESTPROC_DEADLINE_MS), 2, "case %zu", i);
	}
}

/* Answers held in the simulator's heap come back no earlier than the
 * latency, out of order, and every one is matched by DE11. */
Test(tokbench, issuer_latency_shows_in_percentiles, .init = setup, .fini = teardown, .timeout = 60)
{
	static const char *const extra[] = {"--connections", "4",      "--depth",  "8",
					    "--duration",    "0.5",    "--warmup", "0",
					    "--expect",	     "issuer", NULL};
	char csv[512], json[512];
	struct testproc sim;
	struct json_fig j;
	uint16_t port = start_sim2(&sim, "--latency-dist", "uniform:2000:3000");

	write_file("tokens.csv", tiny_csv, csv, sizeof(csv));
	snprintf(json, sizeof(json), "%s/out.json", tmpdir);
	cr_assert_eq(run_bench(port, csv, json, extra), 0);
	read_json(json, &j);
	cr_assert_gt(json_num(&j, "count"), 100, "%s", j.text);
	cr_assert_eq(json_num(&j, "count"), json_num(&j, "sent"), "%s", j.text);
	cr_assert_geq(json_num(&j, "p50_us"), 2000, "%s", j.text);
	/* uniform latency reorders answers on each connection: all matched */
	cr_assert_eq(json_num(&j, "unmatched"), 0, "%s", j.text);
	cr_assert_geq(json_num(&j, "p99_us"), json_num(&j, "p50_us"), "%s", j.text);
	cr_assert_eq(json_num(&j, "wrong"), 0, "%s", j.text);
	sim_answered(&sim);
}

static char *read_text(const char *path)
{
	char *buf = NULL;
	size_t cap = 0, n;
	FILE *f = fopen(path, "r");

	cr_assert_not_null(f, "no file at %s", path);
	n = (size_t)getdelim(&buf, &cap, '\0', f);
	cr_assert_gt(n, 0);
	fclose(f);
	return buf;
}

/* --hist after a real run: the file parses as a percentile distribution of
 * every answer counted, in microseconds (the simulator holds each answer
 * 2 to 3 ms), and its median row is the run's p50. */
Test(tokbench, hist_writes_the_runs_distribution, .init = setup, .fini = teardown, .timeout = 60)
{
	char csv[512], json[512], hgrm[512];
	const char *extra[] = {"--connections", "2",	    "--depth", "4",	   "--duration",
			       "0.5",		"--warmup", "0",       "--expect", "issuer",
			       "--hist",	hgrm,	    NULL};
	struct testproc sim;
	struct json_fig j;
	struct hgrm g;
	uint16_t port = start_sim2(&sim, "--latency-dist", "uniform:2000:3000");
	unsigned median = 0;
	char *text;

	write_file("tokens.csv", tiny_csv, csv, sizeof(csv));
	snprintf(json, sizeof(json), "%s/out.json", tmpdir);
	snprintf(hgrm, sizeof(hgrm), "%s/run.hgrm", tmpdir);
	cr_assert_eq(run_bench(port, csv, json, extra), 0);
	read_json(json, &j);
	text = read_text(hgrm);
	hgrm_parse(text, &g);
	cr_assert_gt(json_num(&j, "count"), 100, "%s", j.text);
	cr_assert_eq((double)g.total, json_num(&j, "count"), "%s", text);
	cr_assert_eq((double)g.count[g.n - 1], json_num(&j, "count"));
	cr_assert_geq(g.value[0], 2000.0, "first row in us: %s", text);
	cr_assert(g.max >= json_num(&j, "max_us") - 0.05 &&
		      g.max <= json_num(&j, "max_us") * 1.016 + 0.05,
		  "max %g: %s", g.max, text);
	while (median < g.n && g.pct[median] < 0.5)
		median++;
	cr_assert_lt(median, g.n);
	cr_assert_float_eq(g.pct[median], 0.5, 1e-12);
	cr_assert_float_eq(g.value[median], json_num(&j, "p50_us"), 0.05, "%s", text);
	free(text);
	sim_answered(&sim);
}

/* ---- card cryptography: the token list's cvn and psn ---- */

Test(tokens, cvn_and_psn_columns_and_old_lists, .init = setup, .fini = teardown)
{
	char path[512];
	struct bench_tokens t;
	unsigned line;
	uint64_t rng = 1;

	write_file("t.csv",
		   "token,pos_mode,expect_rc,cvn,psn\n"
		   "4895370012345678,chip,00,18,07\n"
		   "4895370012345686,ecommerce,00,10,00\n"
		   "4895370012345694,contactless,00,,\n",
		   path, sizeof(path));
	cr_assert_eq(bench_tokens_load(path, &rng, &t, &line), 0, "line %u", line);
	cr_assert_eq(t.t[0].cvn, 18);
	cr_assert_eq(t.t[0].psn, 7);
	cr_assert_eq(bench_card_psn(&t.t[0]), 0x07);
	cr_assert(bench_card_needs_arqc(&t.t[0]));
	cr_assert_eq(t.t[1].cvn, 10);
	cr_assert_not(bench_card_needs_arqc(&t.t[1]), "e-commerce carries no ARQC");
	cr_assert_eq(t.t[2].cvn, 0);
	cr_assert_not(bench_card_needs_arqc(&t.t[2]));
	bench_tokens_free(&t);
	/* a list older than the columns: no card needs a cryptogram */
	write_file("old.csv", tiny_csv, path, sizeof(path));
	cr_assert_eq(bench_tokens_load(path, &rng, &t, &line), 0, "line %u", line);
	for (uint32_t i = 0; i < t.n; i++)
		cr_assert_eq(t.t[i].cvn, 0);
	bench_tokens_free(&t);
	static const char *const bad[] = {
	    "token,cvn\n4895370012345678,11\n", "token,cvn\n4895370012345678,00\n",
	    "token,cvn\n4895370012345678,1\n", "token,psn\n4895370012345678,7\n",
	    "token,psn\n4895370012345678,0x\n"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		write_file("bad.csv", bad[i], path, sizeof(path));
		cr_assert_eq(bench_tokens_load(path, &rng, &t, &line), -TSW_E_BAD_INPUT, "case %zu",
			     i);
		cr_assert_eq(line, 2, "case %zu", i);
	}
}

/* ---- card cryptography: DE55 and keys, sans I/O ---- */

#define CARD_BIN "489537"
static const uint8_t imk_bytes[16] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF,
				      0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54, 0x32, 0x10};
static const uint8_t imk2_bytes[16] = {0x10, 0x32, 0x54, 0x76, 0x98, 0xBA, 0xDC, 0xFE,
				       0xEF, 0xCD, 0xAB, 0x89, 0x67, 0x45, 0x23, 0x01};
static const uint8_t zpk_bytes[16] = {0x13, 0x57, 0x9B, 0xDF, 0x02, 0x46, 0x8A, 0xCE,
				      0xEC, 0xA8, 0x64, 0x20, 0xFD, 0xB9, 0x75, 0x31};

static struct cardkeys *keys_with_imk(void)
{
	struct cardkeys *ck = calloc(1, sizeof(*ck));

	cr_assert_not_null(ck);
	cr_assert_eq(cardkeys_open(ck), 0);
	cr_assert_eq(cardkeys_add(ck, TSW_VAULT_KEY_IMK_AC, TSW_VAULT_KEY_TDES2, CARD_BIN, 1,
				  imk_bytes, sizeof(imk_bytes)),
		     0);
	return ck;
}

static void keys_free(struct cardkeys *ck)
{
	cardkeys_close(ck);
	free(ck);
}

static const struct bench_arqc_terms terms = {
    .amount = "000000001234", .currency = "978", .date = "261203", .un = 0xCAFEF00D};

/* The DE55 tokbench sends parses as tsw_hsm_de55_parse() wants it, for the
 * token's CVN, and its ARQC verifies (tsw_hsm_arqc_verify, as the switch
 * checks it) under the same IMK, for every CVN, with and without 5F34. */
Test(card, de55_verifies_for_every_cvn_with_and_without_psn, .init = setup, .fini = teardown)
{
	static const uint8_t cvns[] = {10, 16, 18, 20};
	struct cardkeys *ck = keys_with_imk();
	const struct tsw_hsm_key *imk =
	    cardkeys_by_prefix(ck, TSW_VAULT_KEY_IMK_AC, "4895370012345678", 16);
	struct bench_token t = sample_token();

	cr_assert_not_null(imk);
	t.psn = 42;
	for (size_t i = 0; i < sizeof(cvns) / sizeof(cvns[0]); i++) {
		for (int with_psn = 0; with_psn < 2; with_psn++) {
			uint8_t de55[BENCH_DE55_MAX];
			struct tsw_hsm_arqc_input sent, in;
			const uint8_t *v;
			size_t vlen;
			int n;

			t.cvn = cvns[i];
			n = bench_de55_build(ck->s, imk, &t, 0x0102, with_psn, &terms, de55, &sent);
			cr_assert_gt(n, 0, "cvn %u: %s", t.cvn, tsw_strerror(n));
			cr_assert_eq(tsw_hsm_de55_parse(de55, (size_t)n, t.cvn, &in, NULL), 0,
				     "cvn %u", t.cvn);
			cr_assert_eq(in.has_psn, with_psn);
			cr_assert(memcmp(in.atc, "\x01\x02", 2) == 0);
			cr_assert(memcmp(in.amount, "\x00\x00\x00\x00\x12\x34", 6) == 0);
			cr_assert(memcmp(in.currency, "\x09\x78", 2) == 0);
			cr_assert(memcmp(in.date, "\x26\x12\x03", 3) == 0);
			cr_assert(memcmp(in.arqc, sent.arqc, 8) == 0);
			cr_assert_eq(
			    tsw_hsm_arqc_verify(ck->s, imk, t.token, t.token_len, 0x42, &in), 0,
			    "cvn %u psn %d", t.cvn, with_psn);
			/* the scheme's 9F10 layout: the other scheme's CVN is refused */
			cr_assert_eq(
			    tsw_hsm_de55_parse(de55, (size_t)n, t.cvn == 10 ? 16 : 10, &in, NULL),
			    -TSW_E_BAD_INPUT, "cvn %u", t.cvn);
			cr_assert_eq(tsw_tlv_find(de55, (size_t)n, 0x5F34, &v, &vlen), with_psn);
			/* another token's card, a wrong PSN, another ATC: no */
			cr_assert_eq(tsw_hsm_de55_parse(de55, (size_t)n, t.cvn, &in, NULL), 0);
			cr_assert_eq(
			    tsw_hsm_arqc_verify(ck->s, imk, "4895370012345686", 16, 0x42, &in),
			    -TSW_E_CRYPTOGRAM, "cvn %u", t.cvn);
			if (!with_psn)
				cr_assert_eq(tsw_hsm_arqc_verify(ck->s, imk, t.token, t.token_len,
								 0x43, &in),
					     -TSW_E_CRYPTOGRAM, "cvn %u", t.cvn);
			in.atc[1] ^= 1;
			cr_assert_eq(
			    tsw_hsm_arqc_verify(ck->s, imk, t.token, t.token_len, 0x42, &in),
			    -TSW_E_CRYPTOGRAM, "cvn %u", t.cvn);
		}
	}
	keys_free(ck);
}

Test(card, keys_by_longest_prefix_newest_first_and_exact_scope)
{
	struct cardkeys *ck = keys_with_imk();
	const struct tsw_hsm_key *k;

	cr_assert_eq(cardkeys_add(ck, TSW_VAULT_KEY_IMK_AC, TSW_VAULT_KEY_TDES2, "4895370", 1,
				  imk2_bytes, 16),
		     0);
	k = cardkeys_by_prefix(ck, TSW_VAULT_KEY_IMK_AC, "4895370012345678", 16);
	cr_assert_eq(k, ck->k[1].key, "the longer range wins");
	k = cardkeys_by_prefix(ck, TSW_VAULT_KEY_IMK_AC, "4895379912345678", 16);
	cr_assert_eq(k, ck->k[0].key);
	cr_assert_null(cardkeys_by_prefix(ck, TSW_VAULT_KEY_IMK_AC, "4111110012345678", 16));
	cr_assert_null(cardkeys_by_prefix(ck, TSW_VAULT_KEY_ZPK_ACQUIRER, "4895370012345678", 16));
	/* rotation: a newer key of the same scope wins */
	cr_assert_eq(cardkeys_add(ck, TSW_VAULT_KEY_IMK_AC, TSW_VAULT_KEY_TDES2, CARD_BIN, 5,
				  imk2_bytes, 16),
		     0);
	k = cardkeys_by_prefix(ck, TSW_VAULT_KEY_IMK_AC, "4895379912345678", 16);
	cr_assert_eq(k, ck->k[2].key);
	cr_assert_eq(cardkeys_add(ck, TSW_VAULT_KEY_ZPK_ACQUIRER, TSW_VAULT_KEY_TDES2, "100001", 1,
				  zpk_bytes, 16),
		     0);
	cr_assert_eq(cardkeys_by_scope(ck, TSW_VAULT_KEY_ZPK_ACQUIRER, "100001", 6), ck->k[3].key);
	cr_assert_null(cardkeys_by_scope(ck, TSW_VAULT_KEY_ZPK_ACQUIRER, "1000011", 7));
	cr_assert_null(cardkeys_by_scope(ck, TSW_VAULT_KEY_ZPK_ACQUIRER, "10000", 5));
	/* tavv keys are not the tools' */
	cr_assert_eq(
	    cardkeys_add(ck, TSW_VAULT_KEY_TAVV, TSW_VAULT_KEY_AES128, CARD_BIN, 1, zpk_bytes, 16),
	    -TSW_E_BAD_INPUT);
	keys_free(ck);
}

Test(card, setup_finds_each_rows_keys_or_names_the_row, .init = setup, .fini = teardown)
{
	struct cardkeys *ck = keys_with_imk();
	struct bench_cards cards;
	struct bench_tokens t;
	enum tsw_vault_key_kind kind;
	char path[512];
	unsigned line;
	uint32_t row = 0;
	uint64_t rng = 1;

	write_file("t.csv",
		   "token,pos_mode,acquirer_id,cvn,psn\n"
		   "4895370012345678,chip,,18,01\n"
		   "4895370012345686,ecommerce,,,\n"
		   "4111110012345694,contactless,200002,20,02\n",
		   path, sizeof(path));
	cr_assert_eq(bench_tokens_load(path, &rng, &t, &line), 0);
	cr_assert_eq(bench_cards_setup(&t, ck, NULL, false, 7, &cards, &row, &kind),
		     -TSW_E_NOT_FOUND);
	cr_assert_eq(row, 3, "no imk-ac for 411111");
	cr_assert_eq(kind, TSW_VAULT_KEY_IMK_AC);
	cr_assert_eq(cardkeys_add(ck, TSW_VAULT_KEY_IMK_AC, TSW_VAULT_KEY_TDES2, "411111", 1,
				  imk2_bytes, 16),
		     0);
	cr_assert_eq(bench_cards_setup(&t, ck, NULL, false, 7, &cards, &row, &kind), 0);
	cr_assert_not_null(cards.c[0].imk);
	cr_assert_null(cards.c[1].imk, "e-commerce: no DE55");
	cr_assert_eq(cards.c[2].imk, ck->k[1].key);
	cr_assert_eq(cards.c[0].atc, 6, "the first ATC sent is 7");
	cr_assert_null(cards.c[0].zpk);
	bench_cards_free(&cards);
	/* --pin: every row needs the zpk-acquirer of its DE32 (100001 by default) */
	cr_assert_eq(cardkeys_add(ck, TSW_VAULT_KEY_ZPK_ACQUIRER, TSW_VAULT_KEY_TDES2, "100001", 1,
				  zpk_bytes, 16),
		     0);
	cr_assert_eq(bench_cards_setup(&t, ck, "1234", false, 1, &cards, &row, &kind),
		     -TSW_E_NOT_FOUND);
	cr_assert_eq(row, 3);
	cr_assert_eq(kind, TSW_VAULT_KEY_ZPK_ACQUIRER);
	cr_assert_eq(bench_cards_setup(&t, ck, "1234", true, 1, &cards, &row, &kind),
		     -TSW_E_NOT_FOUND, "no zpk-issuer for issuer 0");
	cr_assert_eq(kind, TSW_VAULT_KEY_ZPK_ISSUER);
	bench_tokens_free(&t);
	keys_free(ck);
}

Test(request, card_fields_go_into_de52_and_de55, .init = setup, .fini = teardown)
{
	struct bench_token t = sample_token();
	struct bench_req_ctx ctx = {.stan = 1, .rrn = 2, .amount = 4321};
	static const uint8_t de55[] = {0x9F, 0x36, 0x02, 0x00, 0x01};
	static const uint8_t de52[8] = {1, 2, 3, 4, 5, 6, 7, 8};
	uint8_t out[1024];
	struct bench_sent sent;
	struct tsw_iso_msg m;
	uint64_t rng = 3;
	int n;

	memcpy(ctx.de7, "1122334455", 10);
	memcpy(ctx.terminal, "TOKBENCH", 8);
	ctx.de55 = de55;
	ctx.de55_len = sizeof(de55);
	ctx.de52 = de52;
	ctx.de52_len = sizeof(de52);
	n = bench_request_build(&prof, &t, BENCH_REQ_NORMAL, BENCH_EXPECT_VAULT, &ctx, &rng, out,
				sizeof(out), &sent);
	cr_assert_gt(n, 0);
	cr_assert_eq(tsw_iso_decode(&prof, out, (size_t)n, &m), 0);
	cr_assert(field_is(&m, 4, "000000004321", 12), "the amount the ARQC covers");
	cr_assert(field_is(&m, 55, (const char *)de55, sizeof(de55)));
	cr_assert(field_is(&m, 52, (const char *)de52, sizeof(de52)));
	ctx.de55_len = ctx.de52_len = 0;
	n = bench_request_build(&prof, &t, BENCH_REQ_NORMAL, BENCH_EXPECT_VAULT, &ctx, &rng, out,
				sizeof(out), &sent);
	cr_assert_eq(tsw_iso_decode(&prof, out, (size_t)n, &m), 0);
	cr_assert_not(tsw_iso_has(&m, 55));
	cr_assert_not(tsw_iso_has(&m, 52));
}

/* ---- card cryptography: tokbench against a switch that checks it ----
 * The test plays the switch on one connection: it verifies each DE55
 * under the vault's IMK as the engine does, checks that each card's ATCs
 * come one after another from --atc-start and that no card has two
 * requests in flight, and answers 0110 00 with a tag 91 (right, wrong or
 * none). Answers are held until the connection has been quiet a moment,
 * so that a second request of a card in flight would be seen. */

#define FAKE_QUIET_MS 3
#define FAKE_DEADLINE_MS 20000
#define FAKE_CARDS_MAX 8

enum fake_tag91 { FAKE_91_RIGHT, FAKE_91_WRONG, FAKE_91_NONE };

struct fake_switch {
	int lfd;
	uint16_t port;
	pthread_t th;
	struct bench_tokens toks;
	struct cardkeys *ck;
	enum fake_tag91 tag91;
	uint16_t atc_start;
	uint16_t last_atc[FAKE_CARDS_MAX];
	bool seen[FAKE_CARDS_MAX], in_flight[FAKE_CARDS_MAX];
	uint64_t requests, cards, arqc_bad, atc_bad, overlap, first_atc_bad;
	uint8_t out[1 << 16];
	size_t out_len;
};

/* Checks one request and queues its answer. */
static void fake_request(struct fake_switch *fs, const uint8_t *body, size_t len)
{
	uint8_t tlv[2 + TSW_HSM_ARPC_DATA_MAX], ans[1024];
	struct tsw_iso_edit e[6];
	struct tsw_hsm_arqc_input in;
	struct tsw_iso_msg m;
	size_t n = 0, hdr = tsw_iso_header_size(&prof);
	uint32_t ti;
	int r;

	cr_assert_eq(tsw_iso_decode(&prof, body, len, &m), 0);
	fs->requests++;
	for (ti = 0; ti < fs->toks.n; ti++)
		if (m.f[2].len == fs->toks.t[ti].token_len &&
		    memcmp(tsw_iso_ptr(&m, 2), fs->toks.t[ti].token, m.f[2].len) == 0)
			break;
	cr_assert_lt(ti, fs->toks.n, "a token of the list");
	e[n++] = (struct tsw_iso_edit){0, 4, (const uint8_t *)"0110"};
	e[n++] = (struct tsw_iso_edit){2, m.f[2].len, tsw_iso_ptr(&m, 2)};
	e[n++] = (struct tsw_iso_edit){11, m.f[11].len, tsw_iso_ptr(&m, 11)};
	e[n++] = (struct tsw_iso_edit){39, 2, (const uint8_t *)"00"};
	if (tsw_iso_has(&m, 55)) {
		const struct bench_token *t = &fs->toks.t[ti];
		const struct tsw_hsm_key *imk =
		    cardkeys_by_prefix(fs->ck, TSW_VAULT_KEY_IMK_AC, t->token, t->token_len);
		struct tsw_hsm_arpc_params p = {.arc = {'0', '0'}, .csu = {0, 0x80, 0, 0}};
		size_t alen = 0;
		uint16_t atc;

		fs->cards++;
		cr_assert_eq(
		    tsw_hsm_de55_parse(tsw_iso_ptr(&m, 55), m.f[55].len, t->cvn, &in, NULL), 0);
		if (tsw_hsm_arqc_verify(fs->ck->s, imk, t->token, t->token_len, bench_card_psn(t),
					&in) != 0)
			fs->arqc_bad++;
		atc = (uint16_t)(in.atc[0] << 8 | in.atc[1]);
		if (!fs->seen[ti] && atc != fs->atc_start)
			fs->first_atc_bad++;
		if (fs->seen[ti] && atc != (uint16_t)(fs->last_atc[ti] + 1))
			fs->atc_bad++;
		if (fs->in_flight[ti])
			fs->overlap++;
		fs->seen[ti] = fs->in_flight[ti] = true;
		fs->last_atc[ti] = atc;
		r = tsw_hsm_arpc(fs->ck->s, imk, t->token, t->token_len, bench_card_psn(t), &in, &p,
				 tlv + 2, &alen);
		cr_assert_eq(r, 0);
		tlv[0] = 0x91;
		tlv[1] = (uint8_t)alen;
		if (fs->tag91 == FAKE_91_WRONG)
			tlv[2] ^= 0x01;
		if (fs->tag91 != FAKE_91_NONE)
			e[n++] = (struct tsw_iso_edit){55, (uint16_t)(alen + 2), tlv};
	}
	r = tsw_iso_encode(&prof, NULL, e, n, ans, sizeof(ans));
	cr_assert_gt(r, 0);
	cr_assert_lt(fs->out_len + hdr + (size_t)r, sizeof(fs->out));
	cr_assert_eq(tsw_iso_header_write(&prof, (size_t)r, fs->out + fs->out_len), 0);
	memcpy(fs->out + fs->out_len + hdr, ans, (size_t)r);
	fs->out_len += hdr + (size_t)r;
}

static void fake_flush(struct fake_switch *fs, int fd)
{
	size_t off = 0;

	while (off < fs->out_len) {
		ssize_t w = write(fd, fs->out + off, fs->out_len - off);

		if (w <= 0)
			break; /* tokbench went away: its count says so */
		off += (size_t)w;
	}
	fs->out_len = 0;
	memset(fs->in_flight, 0, sizeof(fs->in_flight));
}

static void *fake_serve(void *arg)
{
	struct fake_switch *fs = arg;
	struct pollfd lp = {.fd = fs->lfd, .events = POLLIN};
	struct tsw_iso_framer fr;
	int64_t deadline = testproc_now_ms() + FAKE_DEADLINE_MS;
	uint8_t buf[1 << 14];
	int fd;

	if (poll(&lp, 1, FAKE_DEADLINE_MS) != 1)
		return NULL;
	fd = accept(fs->lfd, NULL, NULL);
	if (fd < 0 || tsw_iso_framer_init(&fr, &prof) < 0)
		return NULL;
	while (testproc_now_ms() < deadline) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		const uint8_t *frame;
		size_t off = 0, flen;
		ssize_t got;
		int r = poll(&pfd, 1, fs->out_len ? FAKE_QUIET_MS : 100);

		if (r == 0) {
			fake_flush(fs, fd);
			continue;
		}
		got = read(fd, buf, sizeof(buf));
		if (got <= 0)
			break;
		while (tsw_iso_framer_next(&fr, buf, (size_t)got, &off, &frame, &flen) == 1)
			if (flen)
				fake_request(fs, frame, flen);
	}
	tsw_iso_framer_free(&fr);
	close(fd);
	return NULL;
}

/* A new vault in tmpdir with one imk-ac for CARD_BIN (with_imk) and one
 * zpk-acquirer for 100001 (zpk). */
static void card_vault(char *vault, char *key, size_t cap, bool with_imk, bool zpk)
{
	struct tsw_vault_key_info in = {.alg = TSW_VAULT_KEY_TDES2};
	static unsigned seq;
	struct tsw_vault *v;

	snprintf(vault, cap, "%s/vault%u", tmpdir, seq);
	snprintf(key, cap, "%s/vault%u.key", tmpdir, seq++);
	cr_assert_eq(tsw_vault_open(vault, key, TSW_VAULT_CREATE, &v), 0);
	if (with_imk) {
		in.kind = TSW_VAULT_KEY_IMK_AC;
		snprintf(in.id, sizeof(in.id), "imk1");
		snprintf(in.scope, sizeof(in.scope), CARD_BIN);
		cr_assert_eq(tsw_vault_key_add(v, &in, imk_bytes, sizeof(imk_bytes), NULL), 0);
	}
	if (zpk) {
		in.kind = TSW_VAULT_KEY_ZPK_ACQUIRER;
		snprintf(in.id, sizeof(in.id), "zpk1");
		snprintf(in.scope, sizeof(in.scope), "100001");
		cr_assert_eq(tsw_vault_key_add(v, &in, zpk_bytes, sizeof(zpk_bytes), NULL), 0);
	}
	tsw_vault_close(v);
}

/* Four cards (one per CVN) and a token without a cryptogram. */
static const char card_csv[] =
    "token,token_expiry,pos_mode,merchant_id,acquirer_id,mcc,device_ref,trid,amount_limit,"
    "currency,expect_rc,cvn,psn\n"
    "4895370012345678,2812,contactless,,,,,,,978,00,10,00\n"
    "4895370012345686,2812,chip,,,,,,,840,00,16,01\n"
    "4895370012345694,2812,chip,,,,,,,840,00,18,12\n"
    "4895370012345702,2812,contactless,,,,,,,840,00,20,99\n"
    "4895370012345710,2812,ecommerce,,,,,,,840,00,,\n";

static void fake_start(struct fake_switch *fs, const char *csv, enum fake_tag91 tag91,
		       uint16_t atc_start)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof(a);
	unsigned line;
	uint64_t rng = 1;

	memset(fs, 0, sizeof(*fs));
	fs->tag91 = tag91;
	fs->atc_start = atc_start;
	cr_assert_eq(bench_tokens_load(csv, &rng, &fs->toks, &line), 0);
	cr_assert_leq(fs->toks.n, FAKE_CARDS_MAX);
	fs->ck = keys_with_imk();
	fs->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(fs->lfd, 0);
	cr_assert_eq(bind(fs->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(listen(fs->lfd, 4), 0);
	cr_assert_eq(getsockname(fs->lfd, (struct sockaddr *)&a, &alen), 0);
	fs->port = ntohs(a.sin_port);
	cr_assert_eq(pthread_create(&fs->th, NULL, fake_serve, fs), 0);
}

static void fake_stop(struct fake_switch *fs)
{
	cr_assert_eq(pthread_join(fs->th, NULL), 0);
	close(fs->lfd);
	keys_free(fs->ck);
	bench_tokens_free(&fs->toks);
}

struct tag91_case {
	enum fake_tag91 tag91;
	const char *json_key; /* the count that equals the cryptograms answered */
	bool wrong;
};

static void card_run(const struct tag91_case *c, const char *atc_start)
{
	const char *extra[] = {"--connections", "1",	    "--depth",	   "8",	      "--duration",
			       "0.5",		"--warmup", "0",	   "--vault", NULL,
			       "--key-file",	NULL,	    "--atc-start", atc_start, NULL};
	char csv[512], json[512], vault[512], key[512];
	struct fake_switch *fs = calloc(1, sizeof(*fs));
	struct json_fig j;
	double cryptograms;

	card_vault(vault, key, sizeof(vault), true, false);
	extra[9] = vault;
	extra[11] = key;
	write_file("cards.csv", card_csv, csv, sizeof(csv));
	fake_start(fs, csv, c->tag91, (uint16_t)atoi(atc_start));
	snprintf(json, sizeof(json), "%s/out.json", tmpdir);
	cr_assert_eq(run_bench(fs->port, csv, json, extra), 0);
	fake_stop(fs);
	read_json(json, &j);
	cryptograms = json_num(&j, "cryptograms_sent");
	cr_assert_gt(cryptograms, 20, "%s", j.text);
	cr_assert_lt(cryptograms, json_num(&j, "sent"), "the e-commerce token sends none");
	cr_assert_eq(json_num(&j, "count"), json_num(&j, "sent"), "%s", j.text);
	cr_assert_eq(json_num(&j, c->json_key), cryptograms, "%s", j.text);
	cr_assert_eq(json_num(&j, "wrong"), c->wrong ? cryptograms : 0, "%s", j.text);
	/* what the switch saw */
	cr_assert_eq(fs->cards, (uint64_t)cryptograms);
	cr_assert_eq(fs->arqc_bad, 0, "every ARQC verifies");
	cr_assert_eq(fs->first_atc_bad, 0, "each card starts at --atc-start");
	cr_assert_eq(fs->atc_bad, 0, "each card's ATCs one after another");
	cr_assert_eq(fs->overlap, 0, "never two requests of a card in flight");
	cr_assert_gt(json_num(&j, "card_waits"), 0, "depth 8 over 4 cards waits: %s", j.text);
	free(fs);
}

Test(tokbench, cryptograms_verify_and_tag91_is_checked, .init = setup, .fini = teardown,
     .timeout = 60)
{
	static const struct tag91_case cases[] = {
	    {FAKE_91_RIGHT, "tag91_answers", false},
	    {FAKE_91_WRONG, "tag91_bad", true},
	    {FAKE_91_NONE, "tag91_missing", true},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		card_run(&cases[i], i == 0 ? "1" : "500");
}

/* Exit status of tokbench with extra arguments after --target/--tokens. */
static int bench_status(const char *csv, const char *const *extra)
{
	char path[512];
	char *argv[24];
	struct testproc tp;
	int n = 0;

	testproc_program("TSW_TOKBENCH", path, sizeof(path));
	argv[n++] = path;
	argv[n++] = (char *)"--target";
	argv[n++] = (char *)"127.0.0.1:1";
	argv[n++] = (char *)"--tokens";
	argv[n++] = (char *)csv;
	argv[n++] = (char *)"--quiet";
	for (; *extra; extra++)
		argv[n++] = (char *)*extra;
	argv[n] = NULL;
	cr_assert_eq(testproc_start(&tp, argv), 0);
	return testproc_wait(&tp, TESTPROC_DEADLINE_MS);
}

/* Before any connection: a run that cannot make the cryptograms or PIN
 * blocks its rows need exits 1 (a clear line on stderr), bad flags 2. */
Test(tokbench, cryptograms_it_cannot_make_exit_nonzero, .init = setup, .fini = teardown,
     .timeout = 60)
{
	char csv[512], vault[512], key[512], empty[512], ekey[512], zpk[512], zkey[512];

	write_file("cards.csv", card_csv, csv, sizeof(csv));
	card_vault(vault, key, sizeof(vault), true, false);
	card_vault(empty, ekey, sizeof(empty), false, false);
	card_vault(zpk, zkey, sizeof(zpk), false, true);
	{
		const char *a[] = {NULL};

		cr_assert_eq(bench_status(csv, a), 1, "rows need an ARQC, no --vault");
	}
	{
		const char *a[] = {"--vault", empty, "--key-file", ekey, NULL};

		cr_assert_eq(bench_status(csv, a), 1, "no keys in the vault");
	}
	{
		const char *a[] = {"--vault", zpk, "--key-file", zkey, NULL};

		cr_assert_eq(bench_status(csv, a), 1, "no imk-ac for the range");
	}
	{
		const char *a[] = {"--vault", vault, "--key-file", key, "--pin", "1234", NULL};

		cr_assert_eq(bench_status(csv, a), 1, "no zpk-acquirer for 100001");
	}
	{
		const char *a[] = {"--vault", tmpdir, "--key-file", key, NULL};

		cr_assert_eq(bench_status(csv, a), 1, "not a vault");
	}
	static const char *const bad[][5] = {
	    {"--pin", "1234", NULL},
	    {"--vault", "x", NULL},
	    {"--key-file", "x", NULL},
	    {"--atc-start", "0", NULL},
	    {"--atc-start", "65536", NULL},
	    {"--atc-start", "1.5", NULL},
	    {"--vault", "x", "--key-file", "y", NULL},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *a[8] = {0};
		size_t n = 0;

		for (; bad[i][n]; n++)
			a[n] = bad[i][n];
		if (i == 6) {
			/* --pin of 3 digits */
			a[n++] = "--pin";
			a[n++] = "123";
		}
		cr_assert_eq(bench_status(csv, a), 2, "case %zu", i);
	}
}

/* tokvault demo --cvn-pct 100 --keys, then tokbench straight to
 * issuer-sim: every request carries a DE55 and a DE52 that the simulator
 * (holding the same vault's zpk-issuer) checks; the wrong PIN is 55. */
static void demo_vault(const char *pct, char *vault, char *key, char *csv, size_t cap)
{
	char path[512];
	struct testproc tp;

	testproc_program("TSW_TOKVAULT", path, sizeof(path));
	snprintf(vault, cap, "%s/demo", tmpdir);
	snprintf(key, cap, "%s/demo.key", tmpdir);
	snprintf(csv, cap, "%s/demo.csv", tmpdir);
	{
		char *argv[] = {path,
				(char *)"--vault",
				vault,
				(char *)"--key-file",
				key,
				(char *)"demo",
				(char *)"--count",
				(char *)"200",
				(char *)"--out",
				csv,
				(char *)"--cvn-pct",
				(char *)pct,
				NULL};

		cr_assert_eq(testproc_start(&tp, argv), 0);
		cr_assert_eq(testproc_wait(&tp, TESTPROC_DEADLINE_MS), 0);
	}
}

Test(tokbench, demo_cards_and_pin_blocks_against_issuer_sim, .init = setup, .fini = teardown,
     .timeout = 60)
{
	char vault[512], key[512], csv[512], json[512], summary[TESTPROC_LINE_MAX];
	const char *pins[] = {"1234", "9999"};

	demo_vault("100", vault, key, csv, sizeof(vault));
	snprintf(json, sizeof(json), "%s/out.json", tmpdir);
	for (size_t i = 0; i < 2; i++) {
		const char *extra[] = {
		    "--connections", "2", "--depth",  "4",	"--duration", "0.5",
		    "--warmup",	     "0", "--expect", "issuer", "--vault",    vault,
		    "--key-file",    key, "--pin",    pins[i],	NULL};
		char path[512], line[TESTPROC_LINE_MAX];
		char *argv[] = {path,
				(char *)"--listen",
				(char *)"127.0.0.1:0",
				(char *)"--profile",
				profile_arg,
				(char *)"--pin",
				(char *)"1234",
				(char *)"--vault",
				vault,
				(char *)"--key-file",
				key,
				NULL};
		struct testproc sim;
		struct json_fig j;
		double count;

		testproc_program("TSW_ISSUER_SIM", path, sizeof(path));
		cr_assert_eq(testproc_start(&sim, argv), 0);
		cr_assert_eq(testproc_line(&sim, line, sizeof(line), TESTPROC_DEADLINE_MS), 0);
		cr_assert_eq(run_bench(testproc_port(line), csv, json, extra), 0);
		read_json(json, &j);
		count = json_num(&j, "count");
		cr_assert_gt(count, 50, "%s", j.text);
		cr_assert_eq(json_num(&j, "cryptograms_sent"), json_num(&j, "sent"), "%s", j.text);
		cr_assert_eq(json_num(&j, "pin_blocks_sent"), json_num(&j, "sent"), "%s", j.text);
		if (i == 0) {
			cr_assert_eq(json_num(&j, "wrong"), 0, "%s", j.text);
			cr_assert_eq(json_num(&j, "00"), count, "%s", j.text);
		} else {
			cr_assert_eq(json_num(&j, "55"), count, "%s", j.text);
			cr_assert_eq(json_num(&j, "wrong"), count, "%s", j.text);
		}
		cr_assert_eq(testproc_stop(&sim, SIGTERM, TESTPROC_DEADLINE_MS), 0);
		cr_assert_eq(testproc_line(&sim, summary, sizeof(summary), 0), 0);
		cr_assert_not_null(strstr(summary, i ? " pin_wrong=" : " pin_wrong=0"), "%s",
				   summary);
	}
}
