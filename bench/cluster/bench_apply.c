/* Changes through the cluster (docs/cluster.md, never run by tools/test):
 * N suspend/resume changes published one by one from vault copy a (each
 * waits for JetStream's ack), then applied by a node's applier on copy b.
 * Prints the publish rate, the apply rate and the CPU the apply took.
 *
 *	bench_apply NATS_URL DIR N      (DIR exists and is empty; run.sh)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "testvault.h"
#include "tsw/cluster.h"
#include "tsw/error.h"
#include "tsw/vault.h"

#define N_TOKENS 1000
#define APPLY_DEADLINE_S 600

static double now_s(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fill(void *arg, unsigned i, struct tsw_vault_row *row)
{
	(void)arg;
	(void)i;
	row->token.status = TSW_TOKEN_ACTIVE;
	strcpy(row->token.token_expiry, "3012");
	strcpy(row->token.pan_expiry, "2911");
}

static int die(const char *what, int r)
{
	fprintf(stderr, "bench_apply: %s: %s\n", what, tsw_strerror(r));
	return 1;
}

static int open_cluster(const char *url, struct tsw_cluster **ret)
{
	struct tsw_cluster_config cc = {
	    .url = url,
	    .stream_replicas = 1,
	    .ack_timeout_ms = TSW_CLUSTER_ACK_TIMEOUT_MS_DEFAULT,
	    .connect_timeout_ms = TSW_CLUSTER_CONNECT_TIMEOUT_MS_DEFAULT,
	    .retry_ms = TSW_CLUSTER_RETRY_MS_DEFAULT,
	    .heartbeat_ms = TSW_CLUSTER_HEARTBEAT_MS_DEFAULT,
	};
	char why[256] = "";
	int r = tsw_cluster_open(&cc, ret, why, sizeof(why));

	if (r < 0)
		fprintf(stderr, "bench_apply: cluster: %s\n", why);
	return r;
}

/* N changes from copy a, each acknowledged before the next. */
static int publish(const char *url, const char *dir, unsigned long n, double *ret_s)
{
	char vault[512], key[512], tok[17];
	struct tsw_cluster *cl;
	struct tsw_vault *a;
	double t0;
	int r;

	snprintf(vault, sizeof(vault), "%s/a/vault", dir);
	snprintf(key, sizeof(key), "%s/a/key", dir);
	r = tsw_vault_open(vault, key, 0, &a);
	if (r < 0)
		return die("open a", r);
	r = open_cluster(url, &cl);
	if (r == 0)
		r = tsw_cluster_publish_to(cl, a);
	t0 = now_s(CLOCK_MONOTONIC);
	for (unsigned long i = 0; i < n && r == 0; i++) {
		testvault_number(tok, TESTVAULT_TOKEN_BIN, (unsigned)(i % N_TOKENS) + 1);
		r = tsw_vault_set_status(
		    a, tok, 16, (i / N_TOKENS) % 2 ? TSW_TOKEN_ACTIVE : TSW_TOKEN_SUSPENDED, NULL);
	}
	*ret_s = now_s(CLOCK_MONOTONIC) - t0;
	tsw_cluster_close(cl);
	tsw_vault_close(a);
	return r < 0 ? die("publish", r) : 0;
}

/* The applier on copy b until it holds all n. */
static int apply(const char *url, const char *dir, unsigned long n, double *ret_s,
		 double *ret_cpu_s)
{
	char vault[512], key[512];
	struct tsw_cluster_stats st = {0};
	struct tsw_cluster *cl;
	struct tsw_vault *b;
	double t0, c0, deadline;
	int r;

	snprintf(vault, sizeof(vault), "%s/b/vault", dir);
	snprintf(key, sizeof(key), "%s/b/key", dir);
	r = tsw_vault_open(vault, key, 0, &b);
	if (r < 0)
		return die("open b", r);
	r = open_cluster(url, &cl);
	t0 = now_s(CLOCK_MONOTONIC);
	c0 = now_s(CLOCK_PROCESS_CPUTIME_ID);
	deadline = t0 + APPLY_DEADLINE_S;
	if (r == 0)
		r = tsw_cluster_applier_start(cl, b, NULL, NULL);
	while (r == 0 && st.applied_seq < n && now_s(CLOCK_MONOTONIC) < deadline) {
		struct timespec ms = {.tv_nsec = 1000000};

		nanosleep(&ms, NULL);
		tsw_cluster_stats(cl, &st);
	}
	*ret_s = now_s(CLOCK_MONOTONIC) - t0;
	*ret_cpu_s = now_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
	tsw_cluster_close(cl);
	tsw_vault_close(b);
	if (r == 0 && st.applied_seq < n)
		r = -ETIMEDOUT;
	if (r == 0 && st.apply_errors)
		r = -EIO;
	return r < 0 ? die("apply", r) : 0;
}

int main(int argc, char **argv)
{
	char a[512], cmd[2048];
	struct tsw_vault *v;
	unsigned long n;
	double pub_s = 0, app_s = 0, cpu_s = 0;
	int r;

	if (argc != 4 || (n = strtoul(argv[3], NULL, 10)) == 0) {
		fprintf(stderr, "usage: bench_apply NATS_URL DIR N\n");
		return 2;
	}
	snprintf(a, sizeof(a), "%s/a", argv[2]);
	if (mkdir(a, 0700) < 0)
		return die("mkdir", -errno);
	r = testvault_create(a, N_TOKENS, NULL, fill, NULL, NULL, &v, NULL);
	if (r < 0)
		return die("vault", r);
	tsw_vault_close(v);
	snprintf(cmd, sizeof(cmd), "cp -a '%s/a' '%s/b'", argv[2], argv[2]);
	if (system(cmd) != 0)
		return die("copy", -EIO);
	if (publish(argv[1], argv[2], n, &pub_s) || apply(argv[1], argv[2], n, &app_s, &cpu_s))
		return 1;
	printf("changes=%lu publish_s=%.3f publish_per_s=%.0f apply_s=%.3f apply_per_s=%.0f "
	       "apply_cpu_s=%.3f apply_cpu_us_per_change=%.1f\n",
	       n, pub_s, n / pub_s, app_s, n / app_s, cpu_s, cpu_s * 1e6 / n);
	return 0;
}
