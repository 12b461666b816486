/* tokbench: histogram, token CSV and request building (sans I/O), then
 * tokbench against issuer-sim over loopback, checked through its --json. */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
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
