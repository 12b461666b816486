/* tokswitch-top: a live terminal view of a running tokswitch, from its
 * /metrics endpoint (or one plain-text screen with --once). */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "http_get.h"
#include "metrics_text.h"
#include "term.h"
#include "view.h"

/* the switch's own default (config: server.metrics) */
#define DEFAULT_METRICS "127.0.0.1:9583"
#define DEFAULT_INTERVAL_S 1.0
#define INTERVAL_MIN_S 0.1
#define INTERVAL_MAX_S 3600.0
/* metrics.token_file holds at most 4096 token characters */
#define TOKEN_MAX_BYTES 4096
#define ERR_BYTES 512

struct opts {
	const char *addr;
	double interval_s;
	bool once;
	const char *token_file;
};

static volatile sig_atomic_t stop_signal, resized;

static void on_signal(int sig)
{
	if (sig == SIGWINCH)
		resized = 1;
	else
		stop_signal = sig;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: tokswitch-top [--metrics HOST:PORT] [--interval S] [--once]\n"
		"                     [--token-file FILE]\n"
		"  --metrics HOST:PORT  the switch's metrics endpoint (default %s)\n"
		"  --interval S         seconds between scrapes (default %.0f, %.1f..%.0f)\n"
		"  --once               print one plain screen to stdout, rates over one\n"
		"                       interval (two scrapes), and exit\n"
		"  --token-file FILE    send the bearer token in FILE (metrics.token_file)\n"
		"q or Ctrl-C quits. See tokswitch-top(1).\n",
		DEFAULT_METRICS, DEFAULT_INTERVAL_S, INTERVAL_MIN_S, INTERVAL_MAX_S);
}

static int parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option longs[] = {
	    {"metrics", required_argument, NULL, 'm'}, {"interval", required_argument, NULL, 'i'},
	    {"once", no_argument, NULL, 'o'},	       {"token-file", required_argument, NULL, 't'},
	    {"help", no_argument, NULL, 'h'},	       {NULL, 0, NULL, 0},
	};
	char *end;
	int c;

	*o = (struct opts){.addr = DEFAULT_METRICS, .interval_s = DEFAULT_INTERVAL_S};
	while ((c = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
		switch (c) {
		case 'm':
			o->addr = optarg;
			break;
		case 'o':
			o->once = true;
			break;
		case 't':
			o->token_file = optarg;
			break;
		case 'i':
			o->interval_s = strtod(optarg, &end);
			if (end == optarg || *end || !(o->interval_s >= INTERVAL_MIN_S) ||
			    o->interval_s > INTERVAL_MAX_S) {
				fprintf(stderr,
					"tokswitch-top: --interval %s: not a number of "
					"seconds in %.1f..%.0f\n",
					optarg, INTERVAL_MIN_S, INTERVAL_MAX_S);
				return -EINVAL;
			}
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "tokswitch-top: unexpected argument %s\n", argv[optind]);
		return -EINVAL;
	}
	return 0;
}

/* The token: the file's first line (never printed). */
static int read_token(const char *path, char *buf, size_t size)
{
	FILE *f = fopen(path, "r");
	size_t n;

	if (!f) {
		fprintf(stderr, "tokswitch-top: --token-file %s: %s\n", path, strerror(errno));
		return -errno;
	}
	n = fread(buf, 1, size - 1, f);
	fclose(f);
	buf[n] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	for (char *p = buf; *p; p++) {
		if ((unsigned char)*p <= ' ' || *p == 0x7f) {
			fprintf(stderr,
				"tokswitch-top: --token-file %s: not one line of token "
				"characters\n",
				path);
			return -EINVAL;
		}
	}
	return 0;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* One scrape into ret and its time into *ret_t; err says why not. */
static int scrape(const struct opts *o, const char *token, struct top_scrape *ret, double *ret_t,
		  char *err)
{
	char *body;
	size_t len;
	int status, rc;

	*ret_t = now_s();
	rc = top_http_get(o->addr, "/metrics", token, &body, &len, &status, err, ERR_BYTES);
	if (rc < 0)
		return rc;
	rc = top_scrape_parse(body, len, ret);
	free(body);
	if (rc < 0)
		snprintf(err, ERR_BYTES, "%s: out of memory", o->addr);
	return rc;
}

static void print_screen(const struct top_screen *s)
{
	for (size_t i = 0; i < s->n; i++)
		printf("%s\n", s->line[i]);
}

static void sleep_s(double s)
{
	struct timespec ts = {.tv_sec = (time_t)s, .tv_nsec = (long)((s - floor(s)) * 1e9)};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* --once: two scrapes one interval apart, their screen on stdout. */
static int run_once(const struct opts *o, const char *token, struct top_scrape *first, double t0)
{
	static struct top_screen screen;
	struct top_scrape second;
	char err[ERR_BYTES];
	double t1;
	int rc = 1;

	sleep_s(o->interval_s);
	if (scrape(o, token, &second, &t1, err) < 0) {
		fprintf(stderr, "tokswitch-top: cannot read /metrics: %s\n", err);
		goto out;
	}
	top_view_render(&(struct top_view){.now = &second,
					   .before = first,
					   .dt_s = t1 - t0,
					   .addr = o->addr,
					   .interval_s = o->interval_s,
					   .scrape_no = 2},
			&screen);
	print_screen(&screen);
	rc = fflush(stdout) == 0 ? 0 : 1;
	top_scrape_free(&second);
out:
	top_scrape_free(first);
	return rc;
}

enum wake { WAKE_TIMEOUT, WAKE_REDRAW, WAKE_QUIT };

/* Waits for the deadline (monotonic seconds), a key or a signal; the
 * signals are blocked but inside ppoll(), so none slips in between the
 * flag test and the wait. */
static enum wake wait_event(double deadline, const sigset_t *mask)
{
	for (;;) {
		struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
		double left = deadline - now_s();
		struct timespec ts;
		char keys[64];
		ssize_t n;

		if (stop_signal)
			return WAKE_QUIT;
		if (resized) {
			resized = 0;
			return WAKE_REDRAW;
		}
		if (left <= 0)
			return WAKE_TIMEOUT;
		ts.tv_sec = (time_t)left;
		ts.tv_nsec = (long)((left - floor(left)) * 1e9);
		if (ppoll(&p, 1, &ts, mask) <= 0)
			continue; /* a signal (flags above) or the deadline */
		if (!(p.revents & POLLIN))
			return WAKE_QUIT; /* the terminal hung up */
		n = read(STDIN_FILENO, keys, sizeof(keys));
		if (n == 0)
			return WAKE_QUIT;
		if (n > 0 && (memchr(keys, 'q', (size_t)n) || memchr(keys, 'Q', (size_t)n)))
			return WAKE_QUIT;
	}
}

struct live {
	struct top_scrape now, before;
	double t_now, t_before;
	unsigned long scrapes;
	bool failed;
	char err[ERR_BYTES];
};

static void draw(const struct opts *o, const struct live *l)
{
	static struct top_screen screen;

	top_view_render(&(struct top_view){.now = &l->now,
					   .before = l->scrapes > 1 ? &l->before : NULL,
					   .dt_s = l->t_now - l->t_before,
					   .addr = o->addr,
					   .interval_s = o->interval_s,
					   .scrape_no = l->scrapes,
					   .error = l->failed ? l->err : NULL},
			&screen);
	top_term_draw(&screen);
}

static void rescrape(const struct opts *o, const char *token, struct live *l)
{
	struct top_scrape fresh;
	double t;

	if (scrape(o, token, &fresh, &t, l->err) < 0) {
		l->failed = true; /* the switch may come back: keep trying */
		return;
	}
	top_scrape_free(&l->before);
	l->before = l->now;
	l->t_before = l->t_now;
	l->now = fresh;
	l->t_now = t;
	l->scrapes++;
	l->failed = false;
}

static int run_live(const struct opts *o, const char *token, struct top_scrape *first, double t0,
		    const sigset_t *wait_mask)
{
	static struct live l;
	double next = t0 + o->interval_s;
	int rc = top_term_enter();

	l = (struct live){.now = *first, .t_now = t0, .scrapes = 1};
	if (rc < 0) {
		fprintf(stderr, "tokswitch-top: %s: run it in a terminal, or use --once\n",
			strerror(-rc));
		goto out;
	}
	for (;;) {
		enum wake w;

		draw(o, &l);
		w = wait_event(next, wait_mask);
		if (w == WAKE_QUIT)
			break;
		if (w == WAKE_REDRAW)
			continue;
		rescrape(o, token, &l);
		next += o->interval_s;
		if (next < now_s()) /* a slow scrape: the next one a whole interval on */
			next = now_s() + o->interval_s;
	}
	top_term_leave();
out:
	top_scrape_free(&l.now);
	top_scrape_free(&l.before);
	return rc < 0 ? 1 : 0;
}

/* Live mode's signals: SIGINT, SIGTERM, SIGHUP stop it (the terminal
 * restored), SIGWINCH redraws; all blocked but inside ppoll(). */
static int catch_signals(sigset_t *ret_wait_mask)
{
	static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGWINCH};
	struct sigaction sa = {.sa_handler = on_signal};
	sigset_t block;

	sigemptyset(&sa.sa_mask);
	sigemptyset(&block);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		sigaddset(&block, sigs[i]);
		if (sigaction(sigs[i], &sa, NULL) < 0)
			return -errno;
	}
	return sigprocmask(SIG_BLOCK, &block, ret_wait_mask) < 0 ? -errno : 0;
}

int main(int argc, char **argv)
{
	static char token[TOKEN_MAX_BYTES + 2];
	struct top_scrape first;
	struct opts o;
	sigset_t wait_mask;
	char err[ERR_BYTES];
	double t0;

	if (parse_args(argc, argv, &o) < 0)
		return 2;
	if (o.token_file && read_token(o.token_file, token, sizeof(token)) < 0)
		return 2;
	if (!o.once && catch_signals(&wait_mask) < 0) {
		perror("tokswitch-top: signals");
		return 1;
	}
	if (scrape(&o, o.token_file ? token : NULL, &first, &t0, err) < 0) {
		fprintf(stderr, "tokswitch-top: cannot read /metrics: %s\n", err);
		return 1;
	}
	if (o.once)
		return run_once(&o, o.token_file ? token : NULL, &first, t0);
	return run_live(&o, o.token_file ? token : NULL, &first, t0, &wait_mask);
}
