/* issuer-sim: the answer rules (sans I/O), then the executable over
 * loopback: every MTI answered, a --rule applied, the faults (drop,
 * late, close-after, refuse), a clean exit on SIGTERM, and the PIN check
 * (--pin) under the vault's zpk-issuer. */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "answer.h"
#include "cardkeys.h"
#include "delay.h"
#include "sim.h"
#include "testproc.h"
#include "tsw/error.h"
#include "tsw/iso8583.h"

#define IO_DEADLINE_MS 5000
#define MSG_MAX 1024

static struct tsw_iso_profile prof;
static char profile_arg[512];

/* SIM_TEST_PROFILE overrides the shipped profile (testproc_profile). */
static void load_profile(void)
{
	int r = testproc_profile(&prof, profile_arg, sizeof(profile_arg));

	cr_assert_eq(r, 0, "profile: %s", tsw_strerror(r));
}

/* A request: MTI, amount (12 digits), STAN; DE2, DE3, DE7, DE35, DE41,
 * DE42, DE48, DE49 fixed; DE70 for 0800. Returns the body length. */
static int build_req(const char *mti, const char *amount, const char *stan, uint8_t *out,
		     size_t cap)
{
	struct tsw_iso_edit e[16];
	size_t n = 0;

	e[n++] = (struct tsw_iso_edit){0, 4, (const uint8_t *)mti};
	if (strcmp(mti, "0800") == 0) {
		e[n++] = (struct tsw_iso_edit){7, 10, (const uint8_t *)"1122334455"};
		e[n++] = (struct tsw_iso_edit){11, 6, (const uint8_t *)stan};
		e[n++] = (struct tsw_iso_edit){70, 3, (const uint8_t *)"301"};
	} else {
		e[n++] = (struct tsw_iso_edit){2, 16, (const uint8_t *)"4111111111111111"};
		e[n++] = (struct tsw_iso_edit){3, 6, (const uint8_t *)"000000"};
		e[n++] = (struct tsw_iso_edit){4, 12, (const uint8_t *)amount};
		e[n++] = (struct tsw_iso_edit){7, 10, (const uint8_t *)"1122334455"};
		e[n++] = (struct tsw_iso_edit){11, 6, (const uint8_t *)stan};
		e[n++] = (struct tsw_iso_edit){35, 21, (const uint8_t *)"4111111111111111=2812"};
		e[n++] = (struct tsw_iso_edit){37, 12, (const uint8_t *)"123456789012"};
		e[n++] = (struct tsw_iso_edit){41, 8, (const uint8_t *)"TERM0001"};
		e[n++] = (struct tsw_iso_edit){42, 15, (const uint8_t *)"MERCHANT0000001"};
		e[n++] = (struct tsw_iso_edit){48, 10, (const uint8_t *)"1006DEV123"};
		e[n++] = (struct tsw_iso_edit){49, 3, (const uint8_t *)"978"};
	}
	return tsw_iso_encode(&prof, NULL, e, n, out, cap);
}

static bool field_is(const struct tsw_iso_msg *m, unsigned f, const char *want)
{
	return tsw_iso_has(m, f) && m->f[f].len == strlen(want) &&
	       memcmp(tsw_iso_ptr(m, f), want, m->f[f].len) == 0;
}

/* ---- rules and answers, sans I/O ---- */

struct rule_case {
	const char *extra; /* a rule added to the built-in 51=51, or NULL */
	const char *de4;
	const char *want;
};

static const struct rule_case rule_cases[] = {
    {NULL, "000000001000", "00"},      {NULL, "000000001051", "51"},
    {NULL, "000000005100", "00"},      {"05=05", "000000000105", "05"},
    {"051=91", "000000001051", "91"}, /* the longer suffix wins */
    {"51=00", "000000001051", "00"},  /* a user rule overrides the built-in */
    {"1234=N7", "000000001234", "N7"},
};

Test(rules, longest_suffix_wins_and_user_rules_override)
{
	for (size_t i = 0; i < sizeof(rule_cases) / sizeof(rule_cases[0]); i++) {
		const struct rule_case *c = &rule_cases[i];
		struct sim_rules rules;
		char rc[2];

		sim_rules_init(&rules);
		if (c->extra)
			cr_assert_eq(sim_rules_add(&rules, c->extra), 0, "case %zu", i);
		sim_rules_apply(&rules, (const uint8_t *)c->de4, 12, rc);
		cr_assert(memcmp(rc, c->want, 2) == 0, "case %zu: got %.2s want %s", i, rc,
			  c->want);
	}
}

Test(rules, malformed_rules_are_refused)
{
	static const char *const bad[] = {
	    "", "51", "=51", "51=", "51=5", "51=511", "5a=51", "1234567890123=05", "51=0 "};
	struct sim_rules rules;

	sim_rules_init(&rules);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(sim_rules_add(&rules, bad[i]), -TSW_E_BAD_INPUT, "rule '%s'", bad[i]);
	while (rules.n < SIM_RULES_MAX)
		cr_assert_eq(sim_rules_add(&rules, "1=05"), 0);
	cr_assert_eq(sim_rules_add(&rules, "1=05"), -TSW_E_FULL);
}

Test(latency, specs_parse_and_bad_ones_fail)
{
	struct sim_config cfg;

	sim_config_init(&cfg);
	cr_assert_eq(sim_latency_parse(&cfg, "250"), 0);
	cr_assert(cfg.latency_kind == SIM_LAT_FIXED && cfg.latency_a_us == 250);
	cr_assert_eq(sim_latency_parse(&cfg, "uniform:100:300"), 0);
	cr_assert(cfg.latency_kind == SIM_LAT_UNIFORM && cfg.latency_a_us == 100 &&
		  cfg.latency_b_us == 300);
	cr_assert_eq(sim_latency_parse(&cfg, "exp:500"), 0);
	cr_assert(cfg.latency_kind == SIM_LAT_EXP && cfg.latency_a_us == 500);
	cr_assert_eq(sim_latency_parse(&cfg, "uniform:300:100"), -TSW_E_BAD_INPUT);
	cr_assert_eq(sim_latency_parse(&cfg, "uniform:100"), -TSW_E_BAD_INPUT);
	cr_assert_eq(sim_latency_parse(&cfg, "exp:"), -TSW_E_BAD_INPUT);
	cr_assert_eq(sim_latency_parse(&cfg, "-5"), -TSW_E_BAD_INPUT);
	cr_assert_eq(sim_latency_parse(&cfg, "gauss:5"), -TSW_E_BAD_INPUT);
}

struct mti_case {
	const char *req;
	const char *amount;
	const char *answer;
	const char *rc;
	bool approval; /* DE38 present */
};

static const struct mti_case mti_cases[] = {
    {"0100", "000000001000", "0110", "00", true},  {"0100", "000000001051", "0110", "51", false},
    {"0200", "000000002000", "0210", "00", true},  {"0200", "000000002051", "0210", "51", false},
    {"0120", "000000001051", "0130", "00", false}, /* advices are not decided */
    {"0400", "000000001000", "0410", "00", false}, {"0420", "000000001000", "0430", "00", false},
    {"0800", NULL, "0810", "00", false},
};

Test(answer, each_mti_answered_with_echoes_and_rc, .init = load_profile)
{
	struct sim_rules rules;

	sim_rules_init(&rules);
	for (size_t i = 0; i < sizeof(mti_cases) / sizeof(mti_cases[0]); i++) {
		const struct mti_case *c = &mti_cases[i];
		uint8_t req[MSG_MAX], ans[MSG_MAX];
		enum sim_verdict v;
		struct tsw_iso_msg m;
		char rc[2];
		int n = build_req(c->req, c->amount, "000042", req, sizeof(req));
		int an;

		cr_assert_gt(n, 0, "case %zu: %s", i, tsw_strerror(n));
		an = sim_answer_build(&prof, &rules, NULL, 7, req, (size_t)n, ans, sizeof(ans), &v,
				      rc);
		cr_assert_gt(an, 0, "case %zu: %s", i, tsw_strerror(an));
		cr_assert_eq(v, SIM_ANSWER);
		cr_assert_eq(tsw_iso_decode(&prof, ans, (size_t)an, &m), 0, "case %zu", i);
		cr_assert(memcmp(m.mti, c->answer, 4) == 0, "case %zu: mti %.4s", i, m.mti);
		cr_assert(field_is(&m, 39, c->rc), "case %zu: DE39", i);
		cr_assert(memcmp(rc, c->rc, 2) == 0);
		cr_assert(field_is(&m, 11, "000042"), "case %zu: DE11 echoed", i);
		cr_assert(field_is(&m, 7, "1122334455"), "case %zu: DE7 echoed", i);
		cr_assert_eq(tsw_iso_has(&m, 38), c->approval, "case %zu: DE38", i);
		if (c->approval)
			cr_assert(field_is(&m, 38, "000007"), "case %zu: approval code", i);
		cr_assert_not(tsw_iso_has(&m, 35), "case %zu: DE35 never in an answer", i);
		cr_assert_not(tsw_iso_has(&m, 48), "case %zu: DE48 not echoed", i);
		if (c->amount) {
			cr_assert(field_is(&m, 2, "4111111111111111"), "case %zu: DE2", i);
			cr_assert(field_is(&m, 4, c->amount), "case %zu: DE4", i);
			cr_assert(field_is(&m, 37, "123456789012"));
			cr_assert(field_is(&m, 41, "TERM0001"));
			cr_assert(field_is(&m, 42, "MERCHANT0000001"));
			cr_assert(field_is(&m, 49, "978"));
		} else {
			cr_assert(field_is(&m, 70, "301"), "case %zu: DE70 echoed", i);
		}
	}
}

Test(answer, responses_and_garbage_get_no_answer, .init = load_profile)
{
	struct sim_rules rules;
	uint8_t req[MSG_MAX], ans[MSG_MAX];
	enum sim_verdict v = SIM_ANSWER;
	char rc[2];
	int n;

	sim_rules_init(&rules);
	n = build_req("0110", "000000001000", "000001", req, sizeof(req));
	cr_assert_gt(n, 0);
	cr_assert_eq(
	    sim_answer_build(&prof, &rules, NULL, 1, req, (size_t)n, ans, sizeof(ans), &v, rc), 0);
	cr_assert_eq(v, SIM_NO_ANSWER);
	cr_assert_lt(sim_answer_build(&prof, &rules, NULL, 1, (const uint8_t *)"01", 2, ans,
				      sizeof(ans), &v, rc),
		     0);
	n = build_req("0100", "000000001000", "000001", req, sizeof(req));
	cr_assert_eq(sim_answer_build(&prof, &rules, NULL, 1, req, (size_t)n, ans, 8, &v, rc),
		     -TSW_E_NO_SPACE);
}

/* ---- the executable over loopback ---- */

struct sim_proc {
	struct testproc tp;
	uint16_t port;
};

static void sim_start(struct sim_proc *sp, const char *const *extra)
{
	char path[512], line[TESTPROC_LINE_MAX];
	char *argv[32];
	int n = 0, r;

	testproc_program("TSW_ISSUER_SIM", path, sizeof(path));
	argv[n++] = path;
	argv[n++] = (char *)"--listen";
	argv[n++] = (char *)"127.0.0.1:0";
	argv[n++] = (char *)"--profile";
	argv[n++] = profile_arg;
	for (; extra && *extra; extra++)
		argv[n++] = (char *)*extra;
	argv[n] = NULL;
	r = testproc_start(&sp->tp, argv);
	cr_assert_eq(r, 0, "spawn %s: %s", path, strerror(-r));
	r = testproc_line(&sp->tp, line, sizeof(line), TESTPROC_DEADLINE_MS);
	cr_assert_eq(r, 0, "no listening line: %s", strerror(-r));
	sp->port = testproc_port(line);
	cr_assert_neq(sp->port, 0, "line: %s", line);
	cr_assert(strncmp(line, "listening issuer=127.0.0.1:", 27) == 0, "line: %s", line);
}

/* Stops with SIGTERM, expects exit 0 and returns the summary line. */
static void sim_stop(struct sim_proc *sp, char *summary, size_t cap)
{
	int st = testproc_stop(&sp->tp, SIGTERM, TESTPROC_DEADLINE_MS);

	cr_assert_eq(st, 0, "exit status %d", st);
	cr_assert_eq(testproc_line(&sp->tp, summary, cap, 0), 0, "no summary line");
	cr_assert(strncmp(summary, "summary ", 8) == 0, "line: %s", summary);
}

static uint64_t summary_count(const char *summary, const char *key)
{
	char k[64];
	const char *p;

	snprintf(k, sizeof(k), " %s=", key);
	p = strstr(summary, k);
	cr_assert_not_null(p, "no %s in %s", key, summary);
	return strtoull(p + strlen(k), NULL, 10);
}

/* Frames and sends several bodies in one write. */
static void send_reqs(int fd, const char *const *mtis, const char *const *amounts, size_t n)
{
	uint8_t buf[16 * MSG_MAX];
	size_t off = 0;

	for (size_t i = 0; i < n; i++) {
		char stan[24];
		int len;

		snprintf(stan, sizeof(stan), "%06zu", i + 1);
		len = build_req(mtis[i], amounts ? amounts[i] : "000000001000", stan, buf + off + 2,
				MSG_MAX);
		cr_assert_gt(len, 0);
		buf[off] = (uint8_t)(len >> 8);
		buf[off + 1] = (uint8_t)len;
		off += 2 + (size_t)len;
	}
	cr_assert_eq(write(fd, buf, off), (ssize_t)off);
}

/* Reads exactly n bytes within the deadline. Returns 0, -ETIMEDOUT, or
 * -EPIPE at end of stream. */
static int read_full(int fd, uint8_t *buf, size_t n, int64_t deadline)
{
	size_t got = 0;

	while (got < n) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int64_t left = deadline - testproc_now_ms();
		ssize_t r;

		if (left <= 0)
			return -ETIMEDOUT;
		if (poll(&pfd, 1, (int)left) <= 0)
			continue;
		r = read(fd, buf + got, n - got);
		if (r == 0 || (r < 0 && errno == ECONNRESET))
			return -EPIPE;
		if (r < 0)
			return -errno;
		got += (size_t)r;
	}
	return 0;
}

/* Reads one answer and decodes it into m (views into buf). */
static int read_answer(int fd, uint8_t *buf, struct tsw_iso_msg *m, int64_t deadline)
{
	size_t len;
	int r = read_full(fd, buf, 2, deadline);

	if (r < 0)
		return r;
	len = (size_t)buf[0] << 8 | buf[1];
	cr_assert_leq(len, MSG_MAX);
	r = read_full(fd, buf, len, deadline);
	if (r < 0)
		return r;
	cr_assert_eq(tsw_iso_decode(&prof, buf, len, m), 0);
	return 0;
}

Test(sim, answers_every_mti_in_order_on_one_connection, .init = load_profile, .timeout = 30)
{
	static const char *const mtis[] = {"0100", "0200", "0120", "0400", "0420", "0800", "0100"};
	static const char *const amounts[] = {"000000001000", "000000002051", "000000000100",
					      "000000000100", "000000000100", NULL,
					      "000000003051"};
	static const char *const want_mti[] = {"0110", "0210", "0130", "0410",
					       "0430", "0810", "0110"};
	static const char *const want_rc[] = {"00", "51", "00", "00", "00", "00", "51"};
	const size_t n = sizeof(mtis) / sizeof(mtis[0]);
	int64_t deadline = testproc_now_ms() + IO_DEADLINE_MS;
	struct sim_proc sp;
	char summary[TESTPROC_LINE_MAX];
	uint8_t buf[MSG_MAX];
	int fd;

	sim_start(&sp, NULL);
	fd = testproc_connect(sp.port);
	cr_assert_geq(fd, 0);
	send_reqs(fd, mtis, amounts, n);
	for (size_t i = 0; i < n; i++) {
		struct tsw_iso_msg m;
		char stan[24];

		cr_assert_eq(read_answer(fd, buf, &m, deadline), 0, "answer %zu", i);
		snprintf(stan, sizeof(stan), "%06zu", i + 1);
		cr_assert(memcmp(m.mti, want_mti[i], 4) == 0, "answer %zu: %.4s", i, m.mti);
		cr_assert(field_is(&m, 11, stan), "answer %zu: DE11", i);
		cr_assert(field_is(&m, 39, want_rc[i]), "answer %zu: DE39", i);
	}
	close(fd);
	sim_stop(&sp, summary, sizeof(summary));
	cr_assert_eq(summary_count(summary, "answered"), n, "%s", summary);
	cr_assert_eq(summary_count(summary, "declined"), 2, "%s", summary);
}

Test(sim, rule_flag_sets_de39, .init = load_profile, .timeout = 30)
{
	static const char *const extra[] = {"--rule", "05=05", "--rule", "77=N7", NULL};
	static const char *const mtis[] = {"0100", "0100", "0100"};
	static const char *const amounts[] = {"000000000105", "000000000177", "000000000151"};
	static const char *const want[] = {"05", "N7", "51"};
	int64_t deadline = testproc_now_ms() + IO_DEADLINE_MS;
	struct sim_proc sp;
	char summary[TESTPROC_LINE_MAX];
	uint8_t buf[MSG_MAX];
	int fd;

	sim_start(&sp, extra);
	fd = testproc_connect(sp.port);
	cr_assert_geq(fd, 0);
	send_reqs(fd, mtis, amounts, 3);
	for (size_t i = 0; i < 3; i++) {
		struct tsw_iso_msg m;

		cr_assert_eq(read_answer(fd, buf, &m, deadline), 0);
		cr_assert(field_is(&m, 39, want[i]), "answer %zu", i);
		cr_assert_not(tsw_iso_has(&m, 38), "no approval code on a decline");
	}
	close(fd);
	sim_stop(&sp, summary, sizeof(summary));
}

Test(sim, bad_flags_exit_2, .init = load_profile, .timeout = 30)
{
	static const char *const bad[][3] = {
	    {"--rule", "5x=05", NULL},
	    {"--drop-pct", "101", NULL},
	    {"--latency-dist", "gauss:1", NULL},
	    {"--bogus", NULL, NULL},
	};
	char path[512];

	testproc_program("TSW_ISSUER_SIM", path, sizeof(path));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *argv[] = {path,
				(char *)"--listen",
				(char *)"127.0.0.1:0",
				(char *)bad[i][0],
				(char *)bad[i][1],
				NULL};
		struct testproc tp;

		cr_assert_eq(testproc_start(&tp, argv), 0);
		cr_assert_eq(testproc_wait(&tp, TESTPROC_DEADLINE_MS), 2, "case %zu", i);
	}
}

/* Every request dropped: the 0800 sent after them (never faulted) comes
 * back first, proving they were processed and not answered. */
Test(fault, drop_pct_leaves_requests_unanswered, .init = load_profile, .timeout = 30)
{
	static const char *const extra[] = {"--drop-pct", "100", NULL};
	static const char *const mtis[] = {"0100", "0200", "0100", "0400", "0800"};
	int64_t deadline = testproc_now_ms() + IO_DEADLINE_MS;
	struct sim_proc sp;
	struct tsw_iso_msg m;
	char summary[TESTPROC_LINE_MAX];
	uint8_t buf[MSG_MAX];
	int fd;

	sim_start(&sp, extra);
	fd = testproc_connect(sp.port);
	cr_assert_geq(fd, 0);
	send_reqs(fd, mtis, NULL, 5);
	cr_assert_eq(read_answer(fd, buf, &m, deadline), 0);
	cr_assert(memcmp(m.mti, "0810", 4) == 0, "first answer %.4s", m.mti);
	close(fd);
	sim_stop(&sp, summary, sizeof(summary));
	cr_assert_eq(summary_count(summary, "dropped"), 4, "%s", summary);
	cr_assert_eq(summary_count(summary, "answered"), 1, "%s", summary);
}

Test(fault, late_answers_come_after_late_ms, .init = load_profile, .timeout = 30)
{
	static const char *const extra[] = {"--late-pct", "100", "--late-ms", "150", NULL};
	static const char *const mtis[] = {"0100", "0800"};
	int64_t t0 = testproc_now_ms(), deadline = t0 + IO_DEADLINE_MS;
	struct sim_proc sp;
	struct tsw_iso_msg m;
	char summary[TESTPROC_LINE_MAX];
	uint8_t buf[MSG_MAX];
	int fd;

	sim_start(&sp, extra);
	fd = testproc_connect(sp.port);
	cr_assert_geq(fd, 0);
	t0 = testproc_now_ms();
	send_reqs(fd, mtis, NULL, 2);
	/* the echo overtakes the late authorization */
	cr_assert_eq(read_answer(fd, buf, &m, deadline), 0);
	cr_assert(memcmp(m.mti, "0810", 4) == 0, "first answer %.4s", m.mti);
	cr_assert_eq(read_answer(fd, buf, &m, deadline), 0);
	cr_assert(memcmp(m.mti, "0110", 4) == 0);
	cr_assert_geq(testproc_now_ms() - t0, 150, "late answer after %lld ms",
		      (long long)(testproc_now_ms() - t0));
	close(fd);
	sim_stop(&sp, summary, sizeof(summary));
	cr_assert_eq(summary_count(summary, "late"), 1, "%s", summary);
}

Test(fault, close_after_n_answers_n_then_closes, .init = load_profile, .timeout = 30)
{
	static const char *const extra[] = {"--close-after", "3", NULL};
	static const char *const mtis[] = {"0100", "0100", "0100", "0100", "0100"};
	int64_t deadline = testproc_now_ms() + IO_DEADLINE_MS;
	struct sim_proc sp;
	struct tsw_iso_msg m;
	char summary[TESTPROC_LINE_MAX];
	uint8_t buf[MSG_MAX];
	int fd;

	sim_start(&sp, extra);
	fd = testproc_connect(sp.port);
	cr_assert_geq(fd, 0);
	send_reqs(fd, mtis, NULL, 5);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(read_answer(fd, buf, &m, deadline), 0, "answer %d", i);
	cr_assert_eq(read_full(fd, buf, 1, deadline), -EPIPE, "connection not closed");
	close(fd);
	/* a new connection is served again */
	fd = testproc_connect(sp.port);
	cr_assert_geq(fd, 0);
	send_reqs(fd, mtis, NULL, 1);
	cr_assert_eq(read_answer(fd, buf, &m, deadline), 0);
	close(fd);
	sim_stop(&sp, summary, sizeof(summary));
	cr_assert_eq(summary_count(summary, "closed_after"), 1, "%s", summary);
	cr_assert_eq(summary_count(summary, "answered"), 4, "%s", summary);
}

Test(fault, refuse_closes_every_connection, .init = load_profile, .timeout = 30)
{
	static const char *const extra[] = {"--refuse", NULL};
	int64_t deadline = testproc_now_ms() + IO_DEADLINE_MS;
	struct sim_proc sp;
	char summary[TESTPROC_LINE_MAX];
	uint8_t buf[16];

	sim_start(&sp, extra);
	for (int i = 0; i < 3; i++) {
		int fd = testproc_connect(sp.port);

		cr_assert_geq(fd, 0);
		cr_assert_eq(read_full(fd, buf, 1, deadline), -EPIPE, "conn %d not closed", i);
		close(fd);
	}
	sim_stop(&sp, summary, sizeof(summary));
	cr_assert_eq(summary_count(summary, "refused"), 3, "%s", summary);
	cr_assert_eq(summary_count(summary, "conns"), 0, "%s", summary);
}

Test(sim, answers_on_many_connections_at_once, .init = load_profile, .timeout = 30)
{
	enum { CONNS = 20 };
	static const char *const mtis[] = {"0100", "0200"};
	int64_t deadline = testproc_now_ms() + IO_DEADLINE_MS;
	struct sim_proc sp;
	char summary[TESTPROC_LINE_MAX];
	uint8_t buf[MSG_MAX];
	int fds[CONNS];

	sim_start(&sp, NULL);
	for (int i = 0; i < CONNS; i++) {
		fds[i] = testproc_connect(sp.port);
		cr_assert_geq(fds[i], 0);
		send_reqs(fds[i], mtis, NULL, 2);
	}
	for (int i = CONNS - 1; i >= 0; i--) {
		struct tsw_iso_msg m;

		cr_assert_eq(read_answer(fds[i], buf, &m, deadline), 0);
		cr_assert(memcmp(m.mti, "0110", 4) == 0);
		cr_assert_eq(read_answer(fds[i], buf, &m, deadline), 0);
		cr_assert(memcmp(m.mti, "0210", 4) == 0);
		close(fds[i]);
	}
	sim_stop(&sp, summary, sizeof(summary));
	cr_assert_eq(summary_count(summary, "conns"), CONNS, "%s", summary);
	cr_assert_eq(summary_count(summary, "answered"), 2 * CONNS, "%s", summary);
}

Test(delay, pops_in_due_order_and_respects_its_bound)
{
	static const uint64_t due[] = {50, 10, 40, 10, 30, 20, 60, 5};
	struct delay_heap h = {.max = 8};
	struct delayed d;
	uint64_t prev = 0;
	uint8_t byte = 7;

	for (size_t i = 0; i < sizeof(due) / sizeof(due[0]); i++)
		cr_assert_eq(delay_push(&h, due[i], (uint32_t)i, 0, &byte, 1), 0);
	cr_assert_eq(delay_push(&h, 1, 0, 0, &byte, 1), -TSW_E_FULL);
	cr_assert_eq(delay_next_ns(&h), 5);
	for (size_t i = 0; i < sizeof(due) / sizeof(due[0]); i++) {
		cr_assert_eq(delay_pop(&h, &d), 1);
		cr_assert_geq(d.due_ns, prev, "pop %zu", i);
		cr_assert_eq(d.len, 1);
		cr_assert_eq(d.data[0], 7);
		prev = d.due_ns;
		free(d.data);
	}
	cr_assert_eq(delay_pop(&h, &d), 0);
	cr_assert_eq(delay_next_ns(&h), UINT64_MAX);
	cr_assert_eq(delay_push(&h, 1, 0, 0, &byte, 1), 0);
	delay_free(&h); /* frees what is still held */
}

Test(sim, sigint_exits_0_with_summary, .init = load_profile, .timeout = 30)
{
	struct sim_proc sp;
	char summary[TESTPROC_LINE_MAX];
	int st;

	sim_start(&sp, NULL);
	st = testproc_stop(&sp.tp, SIGINT, TESTPROC_DEADLINE_MS);
	cr_assert_eq(st, 0, "exit status %d", st);
	cr_assert_eq(testproc_line(&sp.tp, summary, sizeof(summary), 0), 0);
	cr_assert(strncmp(summary, "summary conns=0 ", 16) == 0, "%s", summary);
}

/* ---- the PIN check (--pin): the switch's translated block, under the
 * issuer's zone PIN key, bound to the PAN it forwards ---- */

#define PIN_PAN "4111111111111111"
#define PIN_OTHER_PAN "4111111111112222"
#define PIN_RIGHT "1234"
#define PIN_OTHER "4321"
static const uint8_t tdes_zpk[16] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF,
				     0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54, 0x32, 0x10};
static const uint8_t aes_zpk[16] = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
				    0x88, 0x99, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF};

/* A 0100 for pan with DE4 amount and DE52 (none when de52 is NULL). */
static int build_pin_req(const struct tsw_iso_profile *p, const char *pan, const char *amount,
			 const uint8_t *de52, size_t de52_len, uint8_t *out, size_t cap)
{
	struct tsw_iso_edit e[8];
	size_t n = 0;

	e[n++] = (struct tsw_iso_edit){0, 4, (const uint8_t *)"0100"};
	e[n++] = (struct tsw_iso_edit){2, (uint16_t)strlen(pan), (const uint8_t *)pan};
	e[n++] = (struct tsw_iso_edit){3, 6, (const uint8_t *)"000000"};
	e[n++] = (struct tsw_iso_edit){4, 12, (const uint8_t *)amount};
	e[n++] = (struct tsw_iso_edit){11, 6, (const uint8_t *)"000001"};
	if (de52)
		e[n++] = (struct tsw_iso_edit){52, (uint16_t)de52_len, de52};
	return tsw_iso_encode(p, NULL, e, n, out, cap);
}

struct pin_case {
	const char *block_pin; /* the PIN the block holds; NULL: no DE52 */
	const char *block_pan; /* the PAN the block is bound to */
	const char *amount;
	const char *want;
	bool checked, wrong;
};

static const struct pin_case pin_cases[] = {
    {PIN_RIGHT, PIN_PAN, "000000001000", "00", true, false},
    {PIN_OTHER, PIN_PAN, "000000001000", "55", true, true},
    /* the right PIN in a block formed for another account number */
    {PIN_RIGHT, PIN_OTHER_PAN, "000000001000", "55", true, true},
    {NULL, NULL, "000000001000", "00", false, false},
    /* the PIN check comes before the amount rules; the rules still apply */
    {PIN_OTHER, PIN_PAN, "000000001051", "55", true, true},
    {PIN_RIGHT, PIN_PAN, "000000001051", "51", true, false},
};

/* Every case for one zone key (TDES: format 0 in the default profile; AES:
 * format 4, 16 bytes, in pin16). */
static void pin_cases_under(const struct tsw_iso_profile *p, enum tsw_vault_key_alg alg,
			    const uint8_t *key)
{
	struct cardkeys *ck = calloc(1, sizeof(*ck));
	struct sim_pin pin = {.pin = PIN_RIGHT, .pin_len = 4};
	struct sim_rules rules;

	cr_assert_not_null(ck);
	cr_assert_eq(cardkeys_open(ck), 0);
	cr_assert_eq(cardkeys_add(ck, TSW_VAULT_KEY_ZPK_ISSUER, alg, "0", 1, key, 16), 0);
	pin.s = ck->s;
	pin.zpk = cardkeys_by_scope(ck, TSW_VAULT_KEY_ZPK_ISSUER, "0", 1);
	cr_assert_not_null(pin.zpk);
	sim_rules_init(&rules);
	for (size_t i = 0; i < sizeof(pin_cases) / sizeof(pin_cases[0]); i++) {
		const struct pin_case *c = &pin_cases[i];
		uint8_t block[TSW_HSM_PIN_BLOCK_MAX], req[MSG_MAX], ans[MSG_MAX];
		uint64_t checked = pin.checked, wrong = pin.wrong;
		enum sim_verdict v;
		char rc[2];
		int n;

		if (c->block_pin)
			cr_assert_eq(tsw_hsm_pin_form(ck->s, pin.zpk, c->block_pan, 16,
						      c->block_pin, 4, block),
				     0);
		n = build_pin_req(p, PIN_PAN, c->amount, c->block_pin ? block : NULL,
				  tsw_hsm_pin_block_len(pin.zpk), req, sizeof(req));
		cr_assert_gt(n, 0, "case %zu: %s", i, tsw_strerror(n));
		cr_assert_gt(
		    sim_answer_build(p, &rules, &pin, 1, req, (size_t)n, ans, sizeof(ans), &v, rc),
		    0, "case %zu", i);
		cr_assert(memcmp(rc, c->want, 2) == 0, "case %zu (%s): got %.2s want %s", i,
			  tsw_vault_key_alg_name(alg), rc, c->want);
		cr_assert_eq(pin.checked - checked, c->checked, "case %zu", i);
		cr_assert_eq(pin.wrong - wrong, c->wrong, "case %zu", i);
	}
	cardkeys_close(ck);
	free(ck);
}

Test(pin, right_pin_approves_other_pin_or_pan_declines_55, .init = load_profile)
{
	struct tsw_iso_profile p16;

	pin_cases_under(&prof, TSW_VAULT_KEY_TDES2, tdes_zpk);
	cr_assert_eq(tsw_iso_profile_load_spec("pin16", &p16), 0);
	pin_cases_under(&p16, TSW_VAULT_KEY_AES128, aes_zpk);
}

/* A block of the other format's length (8 bytes under an AES key) is
 * declined, never read past. */
Test(pin, a_block_of_the_wrong_length_declines_55, .init = load_profile)
{
	struct cardkeys *ck = calloc(1, sizeof(*ck));
	struct sim_pin pin = {.pin = PIN_RIGHT, .pin_len = 4};
	uint8_t block[8] = {0}, req[MSG_MAX], ans[MSG_MAX];
	struct sim_rules rules;
	enum sim_verdict v;
	char rc[2];
	int n;

	cr_assert_eq(cardkeys_open(ck), 0);
	cr_assert_eq(
	    cardkeys_add(ck, TSW_VAULT_KEY_ZPK_ISSUER, TSW_VAULT_KEY_AES128, "0", 1, aes_zpk, 16),
	    0);
	pin.s = ck->s;
	pin.zpk = ck->k[0].key;
	sim_rules_init(&rules);
	n = build_pin_req(&prof, PIN_PAN, "000000001000", block, sizeof(block), req, sizeof(req));
	cr_assert_gt(n, 0);
	cr_assert_gt(
	    sim_answer_build(&prof, &rules, &pin, 1, req, (size_t)n, ans, sizeof(ans), &v, rc), 0);
	cr_assert(memcmp(rc, "55", 2) == 0, "got %.2s", rc);
	cr_assert_eq(pin.wrong, 1);
	cardkeys_close(ck);
	free(ck);
}

static char pin_dir[256];

static void pin_setup(void)
{
	load_profile();
	snprintf(pin_dir, sizeof(pin_dir), "/tmp/issuer-sim-pin-XXXXXX");
	cr_assert_not_null(mkdtemp(pin_dir));
}

static void pin_teardown(void)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", pin_dir);
	cr_assert_eq(system(cmd), 0);
}

/* A vault in pin_dir whose key store holds one key of kind for scope. */
static void pin_vault(char *vault, char *key, size_t cap, enum tsw_vault_key_kind kind,
		      const char *scope)
{
	struct tsw_vault_key_info in = {.kind = (uint8_t)kind, .alg = TSW_VAULT_KEY_TDES2};
	struct tsw_vault *v;

	snprintf(vault, cap, "%s/vault", pin_dir);
	snprintf(key, cap, "%s/vault.key", pin_dir);
	snprintf(in.id, sizeof(in.id), "k1");
	snprintf(in.scope, sizeof(in.scope), "%s", scope);
	cr_assert_eq(tsw_vault_open(vault, key, TSW_VAULT_CREATE, &v), 0);
	cr_assert_eq(tsw_vault_key_add(v, &in, tdes_zpk, sizeof(tdes_zpk), NULL), 0);
	tsw_vault_close(v);
}

Test(pin, sim_checks_de52_under_the_vaults_issuer_key, .init = pin_setup, .fini = pin_teardown,
     .timeout = 30)
{
	char vault[300], key[300], summary[TESTPROC_LINE_MAX];
	struct cardkeys *ck = calloc(1, sizeof(*ck));
	const struct tsw_hsm_key *zpk;
	struct sim_proc sp;
	int64_t deadline;
	int fd;

	pin_vault(vault, key, sizeof(vault), TSW_VAULT_KEY_ZPK_ISSUER, "0");
	{
		const char *extra[] = {"--pin",	     PIN_RIGHT, "--vault", vault,
				       "--key-file", key,	NULL};

		sim_start(&sp, extra);
	}
	/* the test plays the switch: the block under the issuer key from the
	 * same vault, bound to the PAN */
	cr_assert_eq(cardkeys_open(ck), 0);
	cr_assert_eq(cardkeys_load(ck, vault, key), 1);
	zpk = cardkeys_by_scope(ck, TSW_VAULT_KEY_ZPK_ISSUER, "0", 1);
	cr_assert_not_null(zpk);
	fd = testproc_connect(sp.port);
	cr_assert_geq(fd, 0);
	deadline = testproc_now_ms() + IO_DEADLINE_MS;
	for (size_t i = 0; i < 4; i++) {
		const struct pin_case *c = &pin_cases[i];
		uint8_t block[TSW_HSM_PIN_BLOCK_MAX], buf[2 + MSG_MAX];
		struct tsw_iso_msg m;
		int n;

		if (c->block_pin)
			cr_assert_eq(
			    tsw_hsm_pin_form(ck->s, zpk, c->block_pan, 16, c->block_pin, 4, block),
			    0);
		n = build_pin_req(&prof, PIN_PAN, c->amount, c->block_pin ? block : NULL, 8,
				  buf + 2, MSG_MAX);
		cr_assert_gt(n, 0);
		buf[0] = (uint8_t)(n >> 8);
		buf[1] = (uint8_t)n;
		cr_assert_eq(write(fd, buf, 2 + (size_t)n), 2 + n);
		cr_assert_eq(read_answer(fd, buf, &m, deadline), 0, "case %zu", i);
		cr_assert(field_is(&m, 39, c->want), "case %zu: DE39 %.2s", i,
			  (const char *)tsw_iso_ptr(&m, 39));
	}
	close(fd);
	cardkeys_close(ck);
	free(ck);
	sim_stop(&sp, summary, sizeof(summary));
	cr_assert_eq(summary_count(summary, "pin_checked"), 3, "%s", summary);
	cr_assert_eq(summary_count(summary, "pin_wrong"), 2, "%s", summary);
	cr_assert_eq(summary_count(summary, "declined"), 2, "%s", summary);
}

static int sim_exit_status(const char *const *extra)
{
	char path[512];
	char *argv[32];
	struct testproc tp;
	int n = 0;

	testproc_program("TSW_ISSUER_SIM", path, sizeof(path));
	argv[n++] = path;
	argv[n++] = (char *)"--listen";
	argv[n++] = (char *)"127.0.0.1:0";
	for (; *extra; extra++)
		argv[n++] = (char *)*extra;
	argv[n] = NULL;
	cr_assert_eq(testproc_start(&tp, argv), 0);
	return testproc_wait(&tp, TESTPROC_DEADLINE_MS);
}

Test(pin, sim_refuses_a_pin_check_it_cannot_make, .init = pin_setup, .fini = pin_teardown,
     .timeout = 30)
{
	char vault[300], key[300];

	/* the key store has a zpk-acquirer only: no issuer key to check with */
	pin_vault(vault, key, sizeof(vault), TSW_VAULT_KEY_ZPK_ACQUIRER, "100001");
	{
		const char *a[] = {"--pin", PIN_RIGHT, "--vault", vault, "--key-file", key, NULL};

		cr_assert_eq(sim_exit_status(a), 1);
	}
	{
		const char *a[] = {"--pin", PIN_RIGHT, "--vault", pin_dir, "--key-file", key, NULL};

		cr_assert_eq(sim_exit_status(a), 1, "not a vault");
	}
	{
		const char *a[] = {"--pin", PIN_RIGHT, NULL};

		cr_assert_eq(sim_exit_status(a), 2, "--pin without --vault");
	}
	{
		const char *a[] = {"--pin", "12a4", "--vault", vault, "--key-file", key, NULL};

		cr_assert_eq(sim_exit_status(a), 2, "PIN not digits");
	}
	{
		const char *a[] = {"--pin", "123", "--vault", vault, "--key-file", key, NULL};

		cr_assert_eq(sim_exit_status(a), 2, "PIN too short");
	}
	{
		const char *a[] = {"--issuer-index", "256", NULL};

		cr_assert_eq(sim_exit_status(a), 2);
	}
}

Test(pin, sim_takes_the_issuer_index_of_its_key, .init = pin_setup, .fini = pin_teardown,
     .timeout = 30)
{
	char vault[300], key[300];

	pin_vault(vault, key, sizeof(vault), TSW_VAULT_KEY_ZPK_ISSUER, "1");
	{
		const char *a[] = {"--pin", PIN_RIGHT, "--vault", vault, "--key-file", key, NULL};

		cr_assert_eq(sim_exit_status(a), 1, "issuer 0 has no key");
	}
	{
		struct sim_proc sp;
		char summary[TESTPROC_LINE_MAX];
		const char *a[] = {"--pin", PIN_RIGHT,	      "--vault", vault, "--key-file",
				   key,	    "--issuer-index", "1",	 NULL};

		sim_start(&sp, a);
		sim_stop(&sp, summary, sizeof(summary));
		cr_assert_eq(summary_count(summary, "pin_checked"), 0, "%s", summary);
	}
}
