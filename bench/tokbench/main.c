/* tokbench: load generator for tokswitch and issuer-sim. See
 * `tokbench --help` and docs/bench.md. */
#include <errno.h>
#include <getopt.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "ring.h"
#include "tsw/error.h"

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

static void usage(FILE *f)
{
	fputs("usage: tokbench --target HOST:PORT --tokens FILE [options]\n"
	      "  --connections N     connections (default 16)\n"
	      "  --depth D           closed loop: requests in flight per connection (default 1)\n"
	      "  --rate R            open loop: R requests/s over all connections; latency\n"
	      "                      from the intended send time\n"
	      "  --max-inflight N    open loop: in flight per connection (default 4096)\n"
	      "  --duration S        measured seconds (default 10)\n"
	      "  --warmup S          seconds before measuring (default 1)\n"
	      "  --timeout-ms MS     an answer later than this is a timeout (default 5000)\n"
	      "  --decline-pct P     share of requests meant to be declined (default 0)\n"
	      "  --expect MODE       vault (the CSV's expect_rc, default), issuer (00, or 51\n"
	      "                      for amounts ending in 51), any\n"
	      "  --profile NAME|PATH wire profile (default \"default\")\n"
	      "  --json FILE         write the figures as JSON\n"
	      "  --hist FILE         write the latency distribution in HdrHistogram's\n"
	      "                      percentile-distribution format (.hgrm), in microseconds\n"
	      "  --seed N            random seed (default 1)\n"
	      "  --quiet             no live line on stderr\n"
	      "  --vault DIR --key-file FILE\n"
	      "                      load the vault's active keys (read only): rows with a cvn\n"
	      "                      and a chip or contactless pos_mode send DE55 with a valid\n"
	      "                      ARQC; answers must carry a tag 91 that checks (approvals:\n"
	      "                      present, in --expect vault)\n"
	      "  --atc-start N       the first ATC of every card (default 1); a later run\n"
	      "                      against the same switch state needs a fresh state or\n"
	      "                      tokvault repersonalize (ATCs at or below the last one\n"
	      "                      accepted are replays, more than 100 ahead refused)\n"
	      "  --pin PIN           every request carries DE52: PIN's block bound to the\n"
	      "                      token under the zpk-acquirer of its DE32 (needs --vault);\n"
	      "                      with --expect issuer (no switch to translate it) under\n"
	      "                      the zpk-issuer of issuer 0, as the switch forwards it\n",
	      f);
}

enum {
	OPT_TARGET = 256,
	OPT_TOKENS,
	OPT_CONNECTIONS,
	OPT_DEPTH,
	OPT_RATE,
	OPT_MAX_INFLIGHT,
	OPT_DURATION,
	OPT_WARMUP,
	OPT_TIMEOUT,
	OPT_DECLINE,
	OPT_EXPECT,
	OPT_PROFILE,
	OPT_JSON,
	OPT_HIST,
	OPT_SEED,
	OPT_QUIET,
	OPT_VAULT,
	OPT_KEY_FILE,
	OPT_ATC_START,
	OPT_PIN,
	OPT_HELP,
};

static const struct option long_opts[] = {
    {"target", required_argument, NULL, OPT_TARGET},
    {"tokens", required_argument, NULL, OPT_TOKENS},
    {"connections", required_argument, NULL, OPT_CONNECTIONS},
    {"depth", required_argument, NULL, OPT_DEPTH},
    {"rate", required_argument, NULL, OPT_RATE},
    {"max-inflight", required_argument, NULL, OPT_MAX_INFLIGHT},
    {"duration", required_argument, NULL, OPT_DURATION},
    {"warmup", required_argument, NULL, OPT_WARMUP},
    {"timeout-ms", required_argument, NULL, OPT_TIMEOUT},
    {"decline-pct", required_argument, NULL, OPT_DECLINE},
    {"expect", required_argument, NULL, OPT_EXPECT},
    {"profile", required_argument, NULL, OPT_PROFILE},
    {"json", required_argument, NULL, OPT_JSON},
    {"hist", required_argument, NULL, OPT_HIST},
    {"seed", required_argument, NULL, OPT_SEED},
    {"quiet", no_argument, NULL, OPT_QUIET},
    {"vault", required_argument, NULL, OPT_VAULT},
    {"key-file", required_argument, NULL, OPT_KEY_FILE},
    {"atc-start", required_argument, NULL, OPT_ATC_START},
    {"pin", required_argument, NULL, OPT_PIN},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

struct args {
	struct bench_config cfg;
	const char *tokens, *json, *hist, *profile;
	const char *vault, *key_file, *pin;
	uint16_t atc_start;
};

static int parse_num(const char *s, double lo, double hi, double *ret)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || v < lo || v > hi)
		return -TSW_E_BAD_INPUT;
	*ret = v;
	return 0;
}

static int parse_args(int argc, char **argv, struct args *a)
{
	struct bench_config *cfg = &a->cfg;
	bool have_target = false;
	double v = 0;
	int opt, r = 0;

	memset(a, 0, sizeof(*a));
	cfg->connections = 16;
	cfg->depth = 1;
	cfg->max_inflight = BENCH_OPEN_INFLIGHT_DEFAULT;
	cfg->duration_s = 10;
	cfg->warmup_s = 1;
	cfg->timeout_ms = BENCH_TIMEOUT_MS_DEFAULT;
	cfg->expect = BENCH_EXPECT_VAULT;
	cfg->seed = 1;
	cfg->live = true;
	a->profile = "default";
	a->atc_start = 1;
	while ((opt = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
		switch (opt) {
		case OPT_TARGET:
			r = ring_parse_hostport(optarg, &cfg->target);
			have_target = true;
			break;
		case OPT_TOKENS:
			a->tokens = optarg;
			break;
		case OPT_CONNECTIONS:
			r = parse_num(optarg, 1, BENCH_MAX_CONNECTIONS, &v);
			cfg->connections = (uint32_t)v;
			break;
		case OPT_DEPTH:
			r = parse_num(optarg, 1, BENCH_MAX_DEPTH, &v);
			cfg->depth = (uint32_t)v;
			break;
		case OPT_RATE:
			r = parse_num(optarg, 0.001, 1e9, &cfg->rate);
			break;
		case OPT_MAX_INFLIGHT:
			r = parse_num(optarg, 1, 65536, &v);
			cfg->max_inflight = (uint32_t)v;
			break;
		case OPT_DURATION:
			r = parse_num(optarg, 0.001, 86400, &cfg->duration_s);
			break;
		case OPT_WARMUP:
			r = parse_num(optarg, 0, 86400, &cfg->warmup_s);
			break;
		case OPT_TIMEOUT:
			r = parse_num(optarg, 1, 3600000, &v);
			cfg->timeout_ms = (uint64_t)v;
			break;
		case OPT_DECLINE:
			r = parse_num(optarg, 0, 100, &cfg->decline_pct);
			break;
		case OPT_EXPECT:
			if (strcmp(optarg, "vault") == 0)
				cfg->expect = BENCH_EXPECT_VAULT;
			else if (strcmp(optarg, "issuer") == 0)
				cfg->expect = BENCH_EXPECT_ISSUER;
			else if (strcmp(optarg, "any") == 0)
				cfg->expect = BENCH_EXPECT_ANY;
			else
				r = -TSW_E_BAD_INPUT;
			break;
		case OPT_PROFILE:
			a->profile = optarg;
			break;
		case OPT_JSON:
			a->json = optarg;
			break;
		case OPT_HIST:
			a->hist = optarg;
			break;
		case OPT_SEED:
			r = parse_num(optarg, 0, 1.8e19, &v);
			cfg->seed = (uint64_t)v;
			break;
		case OPT_QUIET:
			cfg->live = false;
			break;
		case OPT_VAULT:
			a->vault = optarg;
			break;
		case OPT_KEY_FILE:
			a->key_file = optarg;
			break;
		case OPT_ATC_START:
			r = parse_num(optarg, 1, BENCH_ATC_MAX, &v);
			a->atc_start = (uint16_t)v;
			if (!r && v != (double)a->atc_start)
				r = -TSW_E_BAD_INPUT;
			break;
		case OPT_PIN:
			a->pin = optarg;
			if (strlen(optarg) < TSW_HSM_PIN_DIGITS_MIN ||
			    strlen(optarg) > TSW_HSM_PIN_DIGITS_MAX ||
			    strspn(optarg, "0123456789") != strlen(optarg))
				r = -TSW_E_BAD_INPUT;
			break;
		case OPT_HELP:
			usage(stdout);
			exit(0);
		default:
			return -TSW_E_BAD_INPUT;
		}
		if (r < 0) {
			fprintf(stderr, "tokbench: bad value for --%s\n",
				long_opts[opt - OPT_TARGET].name);
			return r;
		}
	}
	if (optind < argc || !have_target || !a->tokens) {
		fprintf(stderr, "tokbench: --target and --tokens are required\n");
		return -TSW_E_BAD_INPUT;
	}
	if (!a->vault != !a->key_file || (a->pin && !a->vault)) {
		fprintf(stderr, "tokbench: --vault and --key-file go together; --pin needs them\n");
		return -TSW_E_BAD_INPUT;
	}
	return 0;
}

/* Loads the vault's keys into keys and sets up cards for toks. Returns 0,
 * or -1 after saying why. */
static int cards_setup(const struct args *a, const struct bench_tokens *toks, struct cardkeys *keys,
		       struct bench_cards *cards)
{
	enum tsw_vault_key_kind kind = TSW_VAULT_KEY_IMK_AC;
	uint32_t row = 0;
	int r;

	r = cardkeys_open(keys);
	if (r < 0) {
		fprintf(stderr, "tokbench: hsm: %s\n", tsw_strerror(r));
		return -1;
	}
	r = cardkeys_load(keys, a->vault, a->key_file);
	if (r <= 0) {
		fprintf(stderr, "tokbench: keys of vault %s: %s\n", a->vault,
			r ? tsw_strerror(r)
			  : "none active (tokvault demo --cvn-pct or key-add adds them)");
		return -1;
	}
	r = bench_cards_setup(toks, keys, a->pin, a->cfg.expect == BENCH_EXPECT_ISSUER,
			      a->atc_start, cards, &row, &kind);
	if (r == -TSW_E_NOT_FOUND) {
		fprintf(stderr, "tokbench: %s row %u: vault %s has no active %s key for it\n",
			a->tokens, row, a->vault, tsw_vault_key_kind_name(kind));
		return -1;
	}
	if (r < 0) {
		fprintf(stderr, "tokbench: %s\n", tsw_strerror(r));
		return -1;
	}
	return 0;
}

/* Without --vault no row may need a cryptogram: its answer would be a
 * decline the CSV does not expect. */
static int cards_needed(const struct args *a, const struct bench_tokens *toks)
{
	for (uint32_t i = 0; i < toks->n && !a->vault; i++) {
		if (bench_card_needs_arqc(&toks->t[i])) {
			fprintf(stderr,
				"tokbench: %s row %u needs an ARQC (cvn): give --vault DIR "
				"--key-file FILE\n",
				a->tokens, i + 1);
			return -1;
		}
	}
	return 0;
}

static const char *const kind_names[BENCH_REQ_KIND_MAX] = {
    "normal", "wrong_merchant", "over_limit", "wrong_expiry", "unknown_token", "issuer_decline",
};

static double us(uint64_t ns)
{
	return (double)ns / 1e3;
}

static void print_report(FILE *f, const struct args *a, const struct bench_result *r)
{
	const struct bench_config *cfg = &a->cfg;
	double offered =
	    cfg->rate > 0 ? cfg->rate : (r->elapsed_s > 0 ? (double)r->sent / r->elapsed_s : 0);
	double achieved = r->elapsed_s > 0 ? (double)r->count / r->elapsed_s : 0;
	bool first = true;

	fprintf(f, "tokbench %s loop, %u connections, %s %g, %.1f s measured\n",
		cfg->rate > 0 ? "open" : "closed", cfg->connections,
		cfg->rate > 0 ? "rate" : "depth", cfg->rate > 0 ? cfg->rate : (double)cfg->depth,
		r->elapsed_s);
	fprintf(f, "  offered %.0f/s  achieved %.0f/s  sent %llu  answers %llu\n", offered,
		achieved, (unsigned long long)r->sent, (unsigned long long)r->count);
	fprintf(f, "  errors %llu  timeouts %llu  wrong %llu  pan_leaks %llu  unmatched %llu\n",
		(unsigned long long)r->errors, (unsigned long long)r->timeouts,
		(unsigned long long)r->wrong, (unsigned long long)r->pan_leaks,
		(unsigned long long)r->unmatched);
	fprintf(f, "  latency us: p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n",
		us(hist_quantile(&r->lat, 0.5)), us(hist_quantile(&r->lat, 0.9)),
		us(hist_quantile(&r->lat, 0.99)), us(hist_quantile(&r->lat, 0.999)),
		us(r->lat.max));
	fprintf(f, "  response codes:");
	for (unsigned i = 0; i < BENCH_RC_SLOTS; i++) {
		char rc[2];

		if (!r->rc[i])
			continue;
		bench_rc_name(i, rc);
		fprintf(f, "%s%.2s=%llu", first ? " " : ", ", rc, (unsigned long long)r->rc[i]);
		first = false;
	}
	fprintf(f, "%s\n", first ? " none" : "");
	if (a->vault)
		fprintf(f,
			"  cryptograms %llu  pin_blocks %llu  tag91 %llu  tag91_missing %llu  "
			"tag91_bad %llu\n",
			(unsigned long long)r->cryptograms, (unsigned long long)r->pin_blocks,
			(unsigned long long)r->tag91, (unsigned long long)r->tag91_missing,
			(unsigned long long)r->tag91_bad);
}

static int write_json(const char *path, const struct args *a, const struct bench_result *r)
{
	const struct bench_config *cfg = &a->cfg;
	double offered =
	    cfg->rate > 0 ? cfg->rate : (r->elapsed_s > 0 ? (double)r->sent / r->elapsed_s : 0);
	double achieved = r->elapsed_s > 0 ? (double)r->count / r->elapsed_s : 0;
	bool first = true;
	FILE *f = fopen(path, "we");

	if (!f)
		return -errno;
	fprintf(f,
		"{\n  \"mode\": \"%s\",\n  \"connections\": %u,\n  \"depth\": %u,\n"
		"  \"rate\": %g,\n  \"duration_s\": %.3f,\n",
		cfg->rate > 0 ? "open" : "closed", cfg->connections, cfg->depth, cfg->rate,
		r->elapsed_s);
	fprintf(f,
		"  \"offered_rate\": %.1f,\n  \"achieved_rate\": %.1f,\n  \"sent\": %llu,\n"
		"  \"count\": %llu,\n  \"warmup_count\": %llu,\n  \"errors\": %llu,\n"
		"  \"timeouts\": %llu,\n"
		"  \"wrong\": %llu,\n  \"pan_leaks\": %llu,\n  \"unmatched\": %llu,\n"
		"  \"conn_failures\": %llu,\n  \"backlog_max\": %llu,\n",
		offered, achieved, (unsigned long long)r->sent, (unsigned long long)r->count,
		(unsigned long long)r->warmup_count, (unsigned long long)r->errors,
		(unsigned long long)r->timeouts, (unsigned long long)r->wrong,
		(unsigned long long)r->pan_leaks, (unsigned long long)r->unmatched,
		(unsigned long long)r->conn_failures, (unsigned long long)r->backlog_max);
	fprintf(f,
		"  \"latency_us\": {\"p50\": %.1f, \"p90\": %.1f, \"p99\": %.1f, "
		"\"p99_9\": %.1f, \"max\": %.1f, \"mean\": %.1f},\n",
		us(hist_quantile(&r->lat, 0.5)), us(hist_quantile(&r->lat, 0.9)),
		us(hist_quantile(&r->lat, 0.99)), us(hist_quantile(&r->lat, 0.999)), us(r->lat.max),
		r->lat.count ? us(r->lat.sum / r->lat.count) : 0.0);
	/* the same figures flat, for scripts (bench/compare) */
	fprintf(f,
		"  \"p50_us\": %.1f,\n  \"p90_us\": %.1f,\n  \"p99_us\": %.1f,\n"
		"  \"p99_9_us\": %.1f,\n  \"max_us\": %.1f,\n",
		us(hist_quantile(&r->lat, 0.5)), us(hist_quantile(&r->lat, 0.9)),
		us(hist_quantile(&r->lat, 0.99)), us(hist_quantile(&r->lat, 0.999)),
		us(r->lat.max));
	fprintf(f, "  \"rc\": {");
	for (unsigned i = 0; i < BENCH_RC_SLOTS; i++) {
		char rc[2];

		if (!r->rc[i])
			continue;
		bench_rc_name(i, rc);
		fprintf(f, "%s\"%.2s\": %llu", first ? "" : ", ", rc, (unsigned long long)r->rc[i]);
		first = false;
	}
	fprintf(f,
		"},\n  \"cryptograms_sent\": %llu,\n  \"pin_blocks_sent\": %llu,\n"
		"  \"tag91_answers\": %llu,\n  \"tag91_missing\": %llu,\n  \"tag91_bad\": %llu,\n"
		"  \"card_waits\": %llu,\n",
		(unsigned long long)r->cryptograms, (unsigned long long)r->pin_blocks,
		(unsigned long long)r->tag91, (unsigned long long)r->tag91_missing,
		(unsigned long long)r->tag91_bad, (unsigned long long)r->card_waits);
	fprintf(f, "  \"kinds_sent\": {");
	for (unsigned k = 0; k < BENCH_REQ_KIND_MAX; k++)
		fprintf(f, "%s\"%s\": %llu", k ? ", " : "", kind_names[k],
			(unsigned long long)r->kind_sent[k]);
	fprintf(f, "}\n}\n");
	if (fclose(f) != 0)
		return -errno;
	return 0;
}

/* Recorded latencies are nanoseconds; the file's values are microseconds,
 * the unit HdrHistogram's plotters are given a scale for. */
#define HGRM_SCALE_NS_PER_US 1000.0

static int write_hist(const char *path, const struct bench_result *r)
{
	FILE *f = fopen(path, "we");
	int ret;

	if (!f)
		return -errno;
	ret = hist_write_hgrm(&r->lat, f, HIST_HGRM_TICKS, HGRM_SCALE_NS_PER_US);
	if (fclose(f) != 0 && ret == 0)
		ret = -errno;
	return ret;
}

int main(int argc, char **argv)
{
	struct bench_cards cards = {0};
	struct cardkeys *keys = NULL;
	struct tsw_iso_profile *p;
	struct bench_tokens toks;
	struct bench_result *res;
	struct sigaction sa;
	struct args a;
	unsigned line = 0;
	uint64_t rng;
	int r, rc = 1;

	if (parse_args(argc, argv, &a) < 0) {
		usage(stderr);
		return 2;
	}
	p = malloc(sizeof(*p));
	res = calloc(1, sizeof(*res));
	if (!p || !res) {
		fprintf(stderr, "tokbench: out of memory\n");
		goto out_free;
	}
	r = tsw_iso_profile_load_spec(a.profile, p);
	if (r < 0) {
		fprintf(stderr, "tokbench: profile %s: %s\n", a.profile, tsw_strerror(r));
		goto out_free;
	}
	rng = a.cfg.seed ? a.cfg.seed : 1;
	r = bench_tokens_load(a.tokens, &rng, &toks, &line);
	if (r < 0) {
		fprintf(stderr, "tokbench: %s line %u: %s\n", a.tokens, line, tsw_strerror(r));
		goto out_free;
	}
	if (cards_needed(&a, &toks) < 0)
		goto out_toks;
	if (a.vault) {
		keys = calloc(1, sizeof(*keys));
		if (!keys || cards_setup(&a, &toks, keys, &cards) < 0)
			goto out_toks;
		a.cfg.cards = &cards;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	r = bench_run(&a.cfg, p, &toks, &stop_flag, res);
	if (r < 0) {
		fprintf(stderr, "tokbench: %s\n", tsw_strerror(r));
		goto out_toks;
	}
	print_report(stdout, &a, res);
	if (a.json) {
		r = write_json(a.json, &a, res);
		if (r < 0) {
			fprintf(stderr, "tokbench: %s: %s\n", a.json, tsw_strerror(r));
			goto out_toks;
		}
	}
	if (a.hist) {
		r = write_hist(a.hist, res);
		if (r < 0) {
			fprintf(stderr, "tokbench: %s: %s\n", a.hist, tsw_strerror(r));
			goto out_toks;
		}
	}
	rc = 0;
out_toks:
	bench_cards_free(&cards);
	OPENSSL_cleanse(&cards, sizeof(cards));
	if (keys && keys->hsm)
		cardkeys_close(keys);
	free(keys);
	bench_tokens_free(&toks);
out_free:
	free(res);
	free(p);
	return rc;
}
