/* Limited-use reservations through the state environment: THREADS
 * workers each reserve a use, wait until it is durable (eventfd), and
 * commit it, on distinct limited-use tokens. Reports reservations per
 * second, latency reserve -> durable, and the mean group-commit batch.
 *
 *   bench_authz_state DIR [seconds] [threads]
 */
#include <poll.h>
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

struct worker {
	struct tsw_state *st;
	unsigned id;
	double stop_at;
	int efd;
	uint64_t ops, errors;
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

	while (now_s() < w->stop_at) {
		char token[32];
		uint64_t ticket, v;
		double t0 = now_s();

		/* a fresh token every 1000 uses: max_uses 1000 never runs out */
		snprintf(token, sizeof(token), "48%02u%012llu", w->id % 100,
			 (unsigned long long)(n / 1000 % 1000000000000ull));
		if (tsw_state_reserve(w->st, token, 16, 1000, &ticket) != 0) {
			w->errors++;
			continue;
		}
		while (!tsw_state_durable(w->st, ticket)) {
			struct pollfd p = {.fd = w->efd, .events = POLLIN};

			if (poll(&p, 1, POLL_MS) == 1 && read(w->efd, &v, sizeof(v)) < 0)
				break;
		}
		tsw_state_commit_use(w->st, ticket);
		if (w->n_lat < LAT_SAMPLES)
			w->lat_us[w->n_lat++] = (now_s() - t0) * 1e6;
		n++;
	}
	w->ops = n;
	return NULL;
}

int main(int argc, char **argv)
{
	unsigned seconds = argc > 2 ? (unsigned)atoi(argv[2]) : SECONDS_DEFAULT;
	unsigned threads = argc > 3 ? (unsigned)atoi(argv[3]) : THREADS_DEFAULT;
	static struct worker w[THREADS_MAX];
	static double lat[THREADS_MAX * LAT_SAMPLES];
	pthread_t th[THREADS_MAX];
	struct tsw_state_stats ss;
	struct tsw_state *st;
	uint64_t ops = 0, errors = 0;
	size_t n_lat = 0;
	double t0, el;
	int rc;

	if (argc < 2 || threads == 0 || threads > THREADS_MAX || seconds == 0) {
		fprintf(stderr, "usage: bench_authz_state DIR [seconds] [threads<=%d]\n",
			THREADS_MAX);
		return 2;
	}
	rc = tsw_state_open(argv[1], NULL, &st);
	if (rc < 0) {
		fprintf(stderr, "open: %d\n", rc);
		return 1;
	}
	t0 = now_s();
	for (unsigned i = 0; i < threads; i++) {
		w[i].st = st;
		w[i].id = i;
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
	printf("state: %u threads, %.0f durable reservations/s, reserve->durable p50 %.0f us "
	       "p99 %.0f us, %llu batches, mean batch %.1f, %llu errors\n",
	       threads, (double)ops / el, lat[n_lat / 2], lat[n_lat * 99 / 100],
	       (unsigned long long)ss.batches,
	       ss.batches ? (double)ss.batch_ops / (double)ss.batches : 0.0,
	       (unsigned long long)errors);
	return 0;
}
