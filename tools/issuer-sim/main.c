/* issuer-sim: an issuer host for tests and benchmarks. See sim.h and
 * `issuer-sim --help`. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ring.h"
#include "sim.h"
#include "tsw/error.h"
#include "tsw/log.h"

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

static void usage(FILE *f)
{
	fputs("usage: issuer-sim --listen HOST:PORT [options]\n"
	      "  --listen HOST:PORT       listen address (port 0: any free port)\n"
	      "  --rule SUFFIX=RC         DE4 ending in SUFFIX answers DE39 RC (repeatable;\n"
	      "                           built in: 51=51; longest suffix wins)\n"
	      "  --latency-us N           answer after N microseconds\n"
	      "  --latency-dist SPEC      uniform:A:B or exp:MEAN (microseconds)\n"
	      "  --drop-pct P             leave P% of requests unanswered\n"
	      "  --late-pct P --late-ms M answer P% of requests M ms later\n"
	      "  --close-after N          close each connection after N requests\n"
	      "  --refuse                 close every accepted connection at once\n"
	      "  --max-conns N            connection slots (default 4096)\n"
	      "  --profile NAME|PATH      wire profile: a name under config/ or a .spec path\n"
	      "  --seed N                 random seed for latency and faults\n"
	      "Prints \"listening issuer=HOST:PORT\" once listening; SIGTERM/SIGINT\n"
	      "exit 0 after a summary line.\n",
	      f);
}

static int parse_pct(const char *s, double *ret)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || *end || v < 0 || v > 100)
		return -TSW_E_BAD_INPUT;
	*ret = v;
	return 0;
}

static int parse_u64(const char *s, uint64_t *ret)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-')
		return -TSW_E_BAD_INPUT;
	*ret = v;
	return 0;
}

enum {
	OPT_LISTEN = 256,
	OPT_RULE,
	OPT_LATENCY_US,
	OPT_LATENCY_DIST,
	OPT_DROP,
	OPT_LATE_PCT,
	OPT_LATE_MS,
	OPT_CLOSE_AFTER,
	OPT_REFUSE,
	OPT_MAX_CONNS,
	OPT_PROFILE,
	OPT_SEED,
	OPT_HELP,
};

static const struct option long_opts[] = {
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"rule", required_argument, NULL, OPT_RULE},
    {"latency-us", required_argument, NULL, OPT_LATENCY_US},
    {"latency-dist", required_argument, NULL, OPT_LATENCY_DIST},
    {"drop-pct", required_argument, NULL, OPT_DROP},
    {"late-pct", required_argument, NULL, OPT_LATE_PCT},
    {"late-ms", required_argument, NULL, OPT_LATE_MS},
    {"close-after", required_argument, NULL, OPT_CLOSE_AFTER},
    {"refuse", no_argument, NULL, OPT_REFUSE},
    {"max-conns", required_argument, NULL, OPT_MAX_CONNS},
    {"profile", required_argument, NULL, OPT_PROFILE},
    {"seed", required_argument, NULL, OPT_SEED},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

static int parse_args(int argc, char **argv, struct sim_config *cfg)
{
	bool have_listen = false;
	uint64_t v;
	int opt, r = 0;

	while ((opt = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
		switch (opt) {
		case OPT_LISTEN:
			r = ring_parse_hostport(optarg, &cfg->listen);
			have_listen = true;
			break;
		case OPT_RULE:
			r = sim_rules_add(&cfg->rules, optarg);
			break;
		case OPT_LATENCY_US:
			r = parse_u64(optarg, &v);
			cfg->latency_kind = SIM_LAT_FIXED;
			cfg->latency_a_us = v;
			break;
		case OPT_LATENCY_DIST:
			r = sim_latency_parse(cfg, optarg);
			break;
		case OPT_DROP:
			r = parse_pct(optarg, &cfg->drop_pct);
			break;
		case OPT_LATE_PCT:
			r = parse_pct(optarg, &cfg->late_pct);
			break;
		case OPT_LATE_MS:
			r = parse_u64(optarg, &cfg->late_ms);
			break;
		case OPT_CLOSE_AFTER:
			r = parse_u64(optarg, &cfg->close_after);
			break;
		case OPT_REFUSE:
			cfg->refuse = true;
			break;
		case OPT_MAX_CONNS:
			r = parse_u64(optarg, &v);
			if (!r && (v == 0 || v > 1000000))
				r = -TSW_E_BAD_INPUT;
			cfg->max_conns = (uint32_t)v;
			break;
		case OPT_PROFILE:
			cfg->profile = optarg;
			break;
		case OPT_SEED:
			r = parse_u64(optarg, &cfg->seed);
			break;
		case OPT_HELP:
			usage(stdout);
			exit(0);
		default:
			return -TSW_E_BAD_INPUT;
		}
		if (r < 0) {
			fprintf(stderr, "issuer-sim: bad value for --%s: %s\n",
				long_opts[opt - OPT_LISTEN].name, tsw_strerror(r));
			return r;
		}
	}
	if (optind < argc || !have_listen) {
		fprintf(stderr, "issuer-sim: %s\n",
			have_listen ? "unexpected argument" : "--listen is required");
		return -TSW_E_BAD_INPUT;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct sim_config cfg;
	struct sim_counts c;
	struct sockaddr_in bound;
	struct sigaction sa;
	char host[INET_ADDRSTRLEN];
	int fd, r;

	sim_config_init(&cfg);
	if (parse_args(argc, argv, &cfg) < 0) {
		usage(stderr);
		return 2;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	fd = sim_listen(&cfg, &bound);
	if (fd < 0) {
		tsw_log(TSW_LOG_ERROR, "listen_failed", "err=\"%s\"", tsw_strerror(fd));
		return 1;
	}
	inet_ntop(AF_INET, &bound.sin_addr, host, sizeof(host));
	printf("listening issuer=%s:%u\n", host, ntohs(bound.sin_port));
	fflush(stdout);

	memset(&c, 0, sizeof(c));
	r = sim_run(&cfg, fd, &stop_flag, &c);
	printf("summary conns=%llu refused=%llu requests=%llu answered=%llu declined=%llu "
	       "dropped=%llu late=%llu closed_after=%llu malformed=%llu ignored=%llu "
	       "overflow=%llu\n",
	       (unsigned long long)c.conns, (unsigned long long)c.refused,
	       (unsigned long long)c.requests, (unsigned long long)c.answered,
	       (unsigned long long)c.declined, (unsigned long long)c.dropped,
	       (unsigned long long)c.late, (unsigned long long)c.closed_after,
	       (unsigned long long)c.malformed, (unsigned long long)c.ignored,
	       (unsigned long long)c.overflow);
	fflush(stdout);
	if (r < 0) {
		tsw_log(TSW_LOG_ERROR, "serve_failed", "err=\"%s\"", tsw_strerror(r));
		return 1;
	}
	return 0;
}
