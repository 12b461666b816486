/* issuer-sim: an issuer host for tests and benchmarks. See sim.h and
 * `issuer-sim --help`. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cardkeys.h"
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
	      "  --pin PIN --vault DIR --key-file FILE\n"
	      "                           check each DE52 (the switch's translated PIN block)\n"
	      "                           against PIN bound to DE2, under the vault's newest\n"
	      "                           active zpk-issuer of --issuer-index; wrong: DE39 55\n"
	      "  --issuer-index N         the zpk-issuer scope (default 0)\n"
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
	OPT_PIN,
	OPT_VAULT,
	OPT_KEY_FILE,
	OPT_ISSUER_INDEX,
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
    {"pin", required_argument, NULL, OPT_PIN},
    {"vault", required_argument, NULL, OPT_VAULT},
    {"key-file", required_argument, NULL, OPT_KEY_FILE},
    {"issuer-index", required_argument, NULL, OPT_ISSUER_INDEX},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

/* The PIN check's options (the check itself is struct sim_pin). */
struct pin_args {
	const char *pin, *vault, *key_file;
	char issuer[4]; /* the zpk-issuer scope: 0..255 */
};

static int parse_pin(const char *s)
{
	size_t n = strlen(s);

	if (n < TSW_HSM_PIN_DIGITS_MIN || n > TSW_HSM_PIN_DIGITS_MAX ||
	    strspn(s, "0123456789") != n)
		return -TSW_E_BAD_INPUT;
	return 0;
}

static int parse_args(int argc, char **argv, struct sim_config *cfg, struct pin_args *pa)
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
		case OPT_PIN:
			r = parse_pin(optarg);
			pa->pin = optarg;
			break;
		case OPT_VAULT:
			pa->vault = optarg;
			break;
		case OPT_KEY_FILE:
			pa->key_file = optarg;
			break;
		case OPT_ISSUER_INDEX:
			r = parse_u64(optarg, &v);
			if (!r && v > 255)
				r = -TSW_E_BAD_INPUT;
			snprintf(pa->issuer, sizeof(pa->issuer), "%u", (unsigned)v);
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
	if (!pa->pin != !pa->vault || !pa->vault != !pa->key_file) {
		fprintf(stderr, "issuer-sim: --pin, --vault and --key-file go together\n");
		return -TSW_E_BAD_INPUT;
	}
	return 0;
}

/* Loads the zone PIN key of the issuer from the vault into ck and sets up
 * pin. Returns 0, or -1 after saying why. */
static int pin_setup(const struct pin_args *pa, struct cardkeys *ck, struct sim_pin *pin)
{
	int r;

	r = cardkeys_open(ck);
	if (r < 0) {
		fprintf(stderr, "issuer-sim: hsm: %s\n", tsw_strerror(r));
		return -1;
	}
	r = cardkeys_load(ck, pa->vault, pa->key_file);
	if (r < 0) {
		fprintf(stderr, "issuer-sim: keys of vault %s: %s\n", pa->vault, tsw_strerror(r));
		return -1;
	}
	memset(pin, 0, sizeof(*pin));
	pin->s = ck->s;
	pin->zpk = cardkeys_by_scope(ck, TSW_VAULT_KEY_ZPK_ISSUER, pa->issuer, strlen(pa->issuer));
	if (!pin->zpk) {
		fprintf(stderr,
			"issuer-sim: vault %s has no active zpk-issuer for issuer %s (tokvault "
			"key-add zpk-issuer ID --issuer %s, or tokvault demo --cvn-pct)\n",
			pa->vault, pa->issuer, pa->issuer);
		return -1;
	}
	pin->pin_len = (uint8_t)strlen(pa->pin);
	memcpy(pin->pin, pa->pin, pin->pin_len);
	return 0;
}

int main(int argc, char **argv)
{
	struct pin_args pa = {.issuer = "0"};
	struct cardkeys *ck = NULL;
	struct sim_pin pin;
	struct sim_config cfg;
	struct sim_counts c;
	struct sockaddr_in bound;
	struct sigaction sa;
	char host[INET_ADDRSTRLEN];
	int fd, r;

	sim_config_init(&cfg);
	if (parse_args(argc, argv, &cfg, &pa) < 0) {
		usage(stderr);
		return 2;
	}
	if (pa.pin) {
		ck = malloc(sizeof(*ck));
		if (!ck || pin_setup(&pa, ck, &pin) < 0) {
			if (ck && ck->hsm)
				cardkeys_close(ck);
			free(ck);
			return 1;
		}
		cfg.pin = &pin;
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
		r = fd;
		goto out;
	}
	inet_ntop(AF_INET, &bound.sin_addr, host, sizeof(host));
	printf("listening issuer=%s:%u\n", host, ntohs(bound.sin_port));
	fflush(stdout);

	memset(&c, 0, sizeof(c));
	r = sim_run(&cfg, fd, &stop_flag, &c);
	printf("summary conns=%llu refused=%llu requests=%llu answered=%llu declined=%llu "
	       "dropped=%llu late=%llu closed_after=%llu malformed=%llu ignored=%llu "
	       "overflow=%llu pin_checked=%llu pin_wrong=%llu\n",
	       (unsigned long long)c.conns, (unsigned long long)c.refused,
	       (unsigned long long)c.requests, (unsigned long long)c.answered,
	       (unsigned long long)c.declined, (unsigned long long)c.dropped,
	       (unsigned long long)c.late, (unsigned long long)c.closed_after,
	       (unsigned long long)c.malformed, (unsigned long long)c.ignored,
	       (unsigned long long)c.overflow, (unsigned long long)(cfg.pin ? pin.checked : 0),
	       (unsigned long long)(cfg.pin ? pin.wrong : 0));
	fflush(stdout);
	if (r < 0)
		tsw_log(TSW_LOG_ERROR, "serve_failed", "err=\"%s\"", tsw_strerror(r));
out:
	if (ck) {
		OPENSSL_cleanse(&pin, sizeof(pin));
		cardkeys_close(ck);
		free(ck);
	}
	return r < 0 ? 1 : 0;
}
