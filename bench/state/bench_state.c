/* The state environment under load. THREADS workers in a closed loop,
 * each waiting for durability (eventfd) before its next operation:
 *
 *   reserve  reserve a use on a limited-use token, wait until durable,
 *            commit it (distinct tokens per worker)
 *   saf      put a SAF_MSG_LEN-byte reversal, wait until durable, ack it
 *            (the ack's delete rides the next group commit)
 *
 * Reports operations per second, latency op -> durable, and the mean
 * group-commit batch. A third mode times the SAF claim scan:
 *
 *   claim    fill the SAF queue (saf_max_entries default), back every item
 *            off, then time a claim that scans the whole queue to find
 *            the last item due (the worst case), and one with nothing due
 *
 *   bench_state DIR [seconds] [threads] [reserve|saf|claim]
 */
#include <poll.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "tsw/state.h"

enum { THREADS_DEFAULT = 4, SECONDS_DEFAULT = 2, THREADS_MAX = 64, POLL_MS = 1000 };
enum { LAT_SAMPLES = 1 << 16 };
enum { SAF_MSG_LEN = 400 }; /* a token-form 0400 with DE55 and DE90 */

struct worker {
	struct tsw_state *st;
	unsigned id;
	double stop_at;
	int efd;
	bool saf;
	uint64_t ops, errors;
	double call_s; /* time inside put/reserve: what a worker pays */
	double lat_us[LAT_SAMPLES];
	unsigned n_lat;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static void *run(void *arg)
{
	struct worker *w = arg;
	uint64_t n = 0;

	uint8_t msg[SAF_MSG_LEN];

	memset(msg, '0', sizeof(msg));
	while (now_s() < w->stop_at) {
		char token[32];
		uint64_t ticket, v;
		double t0 = now_s();
		int rc;

		if (w->saf) {
			memcpy(msg, &n, sizeof(n));
			rc = tsw_state_saf_put(w->st, w->id, msg, sizeof(msg), &ticket);
		} else {
			/* a fresh token every 1000 uses: max_uses 1000 never runs out */
			snprintf(token, sizeof(token), "48%02u%012llu", w->id % 100,
				 (unsigned long long)(n / 1000 % 1000000000000ull));
			rc = tsw_state_reserve(w->st, token, 16, 1000, &ticket);
		}
		w->call_s += now_s() - t0;
		if (rc != 0) {
			w->errors++;
			continue;
		}
		while (!tsw_state_durable(w->st, ticket)) {
			struct pollfd p = {.fd = w->efd, .events = POLLIN};

			if (poll(&p, 1, POLL_MS) == 1 && read(w->efd, &v, sizeof(v)) < 0)
				break;
		}
		if (w->saf)
			tsw_state_saf_ack(w->st, ticket);
		else
			tsw_state_commit_use(w->st, ticket);
		if (w->n_lat < LAT_SAMPLES)
			w->lat_us[w->n_lat++] = (now_s() - t0) * 1e6;
		n++;
	}
	w->ops = n;
	return NULL;
}

enum { CLAIM_BATCH = 64, CLAIM_SCANS = 200 };

static int bench_claim(struct tsw_state *st)
{
	static struct tsw_saf_item items[CLAIM_BATCH];
	uint8_t msg[SAF_MSG_LEN];
	uint64_t id, far;
	size_t n, total = 0;
	double t0, el;

	memset(msg, '0', sizeof(msg));
	while (tsw_state_saf_put(st, 0, msg, sizeof(msg), &id) == 0)
		;
	far = tsw_state_now_ms(st) + 3600 * 1000;
	do {
		if (tsw_state_saf_claim(st, 0, CLAIM_BATCH, items, &n) < 0)
			return 1;
		for (size_t i = 0; i < n; i++)
			tsw_state_saf_retry(st, items[i].id, far);
		total += n;
	} while (n > 0);
	/* id is the last put: made due again, the scan runs to the tail */
	t0 = now_s();
	for (unsigned i = 0; i < CLAIM_SCANS; i++) {
		if (tsw_state_saf_retry(st, id, 0) < 0 ||
		    tsw_state_saf_claim(st, 0, CLAIM_BATCH, items, &n) < 0 || n != 1)
			return 1;
	}
	el = now_s() - t0;
	t0 = now_s();
	for (unsigned i = 0; i < CLAIM_SCANS; i++)
		if (tsw_state_saf_claim(st, 0, CLAIM_BATCH, items, &n) < 0 || n != 0)
			return 1;
	printf("saf claim: %zu items queued: %.1f us per claim scanning to the tail, "
	       "%.2f us with nothing due\n",
	       total, el * 1e6 / CLAIM_SCANS, (now_s() - t0) * 1e6 / CLAIM_SCANS);
	return 0;
}

int main(int argc, char **argv)
{
	unsigned seconds = argc > 2 ? (unsigned)atoi(argv[2]) : SECONDS_DEFAULT;
	unsigned threads = argc > 3 ? (unsigned)atoi(argv[3]) : THREADS_DEFAULT;
	bool saf = argc > 4 && strcmp(argv[4], "saf") == 0;
	bool claim = argc > 4 && strcmp(argv[4], "claim") == 0;
	static struct worker w[THREADS_MAX];
	static double lat[THREADS_MAX * LAT_SAMPLES];
	pthread_t th[THREADS_MAX];
	struct tsw_state_stats ss;
	struct tsw_state *st;
	uint64_t ops = 0, errors = 0;
	double call_s = 0;
	size_t n_lat = 0;
	double t0, el;
	int rc;

	if (argc < 2 || threads == 0 || threads > THREADS_MAX || seconds == 0 ||
	    (argc > 4 && !saf && !claim && strcmp(argv[4], "reserve") != 0)) {
		fprintf(
		    stderr,
		    "usage: bench_state DIR [seconds] [threads<=%d] [reserve|saf|claim]\n",
		    THREADS_MAX);
		return 2;
	}
	rc = tsw_state_open(argv[1], NULL, &st);
	if (rc < 0) {
		fprintf(stderr, "open: %d\n", rc);
		return 1;
	}
	if (claim) {
		rc = bench_claim(st);
		tsw_state_close(st);
		return rc;
	}
	t0 = now_s();
	for (unsigned i = 0; i < threads; i++) {
		w[i].st = st;
		w[i].id = i;
		w[i].saf = saf;
		w[i].stop_at = t0 + seconds;
		w[i].efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (w[i].efd < 0 || tsw_state_add_waker(st, w[i].efd) < 0)
			return 1;
		pthread_create(&th[i], NULL, run, &w[i]);
	}
	for (unsigned i = 0; i < threads; i++) {
		pthread_join(th[i], NULL);
		ops += w[i].ops;
		errors += w[i].errors;
		call_s += w[i].call_s;
		memcpy(lat + n_lat, w[i].lat_us, w[i].n_lat * sizeof(double));
		n_lat += w[i].n_lat;
	}
	el = now_s() - t0;
	tsw_state_stats(st, &ss);
	tsw_state_close(st);
	for (unsigned i = 0; i < threads; i++)
		close(w[i].efd);
	if (n_lat == 0)
		return 1;
	qsort(lat, n_lat, sizeof(double), cmp_double);
	printf("state: %u threads, %.0f durable %s/s, op->durable p50 %.0f us "
	       "p99 %.0f us, call %.2f us, %llu batches, mean batch %.1f, %llu errors\n",
	       threads, (double)ops / el, saf ? "SAF puts" : "reservations", lat[n_lat / 2],
	       lat[n_lat * 99 / 100], ops ? call_s * 1e6 / (double)ops : 0.0,
	       (unsigned long long)ss.batches,
	       ss.batches ? (double)ss.batch_ops / (double)ss.batches : 0.0,
	       (unsigned long long)errors);
	return 0;
}
