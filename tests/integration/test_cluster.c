/* The cluster module against a real nats-server with JetStream (started
 * on a free loopback port in a temp dir, stopped after each test): the
 * publish-before-commit contract of tsw/cluster.h on two vault copies. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "testproc.h"
#include "testvault.h"
#include "tsw/cluster.h"
#include "tsw/error.h"
#include "tsw/vault.h"

#define N_TOKENS 8
#define ACK_TIMEOUT_MS 500
#define WAIT_MS 10000

static char dir[64], url[64];
static struct testproc nats;

static uint16_t free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_geq(fd, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

static void fill(void *arg, unsigned i, struct tsw_vault_row *row)
{
	(void)arg;
	(void)i;
	row->token.status = TSW_TOKEN_ACTIVE;
	strcpy(row->token.token_expiry, "3012");
	strcpy(row->token.pan_expiry, "2911");
}

static void start_nats(void)
{
	char server[512], port[8], store[96], js[] = "-js", a[] = "-a", lo[] = "127.0.0.1",
					      pf[] = "-p", sd[] = "-sd";
	uint16_t p = free_port();
	int64_t deadline = testproc_now_ms() + WAIT_MS;
	int fd;

	testproc_program("TSW_NATS_SERVER", server, sizeof(server));
	snprintf(port, sizeof(port), "%u", p);
	snprintf(store, sizeof(store), "%s/js", dir);
	snprintf(url, sizeof(url), "nats://127.0.0.1:%u", p);
	cr_assert_eq(
	    testproc_start(&nats, (char *const[]){server, js, a, lo, pf, port, sd, store, NULL}),
	    0);
	while ((fd = testproc_connect(p)) < 0) {
		struct timespec ms = {.tv_nsec = 10000000};

		cr_assert_lt(testproc_now_ms(), deadline, "nats-server not listening");
		nanosleep(&ms, NULL);
	}
	close(fd);
}

static void setup(void)
{
	char a[96], cmd[256];
	struct tsw_vault *v;

	snprintf(dir, sizeof(dir), "/tmp/tsw-cluster-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(a, sizeof(a), "%s/a", dir);
	cr_assert_eq(mkdir(a, 0700), 0);
	cr_assert_eq(testvault_create(a, N_TOKENS, NULL, fill, NULL, NULL, &v, NULL), 0);
	tsw_vault_close(v);
	snprintf(cmd, sizeof(cmd), "cp -a %s/a %s/b", dir, dir);
	cr_assert_eq(system(cmd), 0);
	start_nats();
}

static void teardown(void)
{
	char cmd[128];

	if (nats.pid > 0)
		testproc_stop(&nats, SIGTERM, WAIT_MS);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(cluster, .init = setup, .fini = teardown, .timeout = 60);

static struct tsw_vault *open_copy(const char *name)
{
	char vault[128], key[128];
	struct tsw_vault *v;

	snprintf(vault, sizeof(vault), "%s/%s/vault", dir, name);
	snprintf(key, sizeof(key), "%s/%s/key", dir, name);
	cr_assert_eq(tsw_vault_open(vault, key, 0, &v), 0);
	return v;
}

static struct tsw_cluster *connect_cluster(void)
{
	struct tsw_cluster_config cc = {
	    .url = url,
	    .stream_replicas = 1,
	    .ack_timeout_ms = ACK_TIMEOUT_MS,
	    .connect_timeout_ms = TSW_CLUSTER_CONNECT_TIMEOUT_MS_DEFAULT,
	    .retry_ms = 100,
	    .heartbeat_ms = TSW_CLUSTER_HEARTBEAT_MS_DEFAULT,
	};
	struct tsw_cluster *cl;
	char why[256] = "";

	cr_assert_eq(tsw_cluster_open(&cc, &cl, why, sizeof(why)), 0, "%s", why);
	return cl;
}

static const char *token(unsigned i)
{
	static char t[4][17];

	testvault_number(t[i % 4], TESTVAULT_TOKEN_BIN, i);
	return t[i % 4];
}

static enum tsw_token_status status_of(struct tsw_vault *v, unsigned i)
{
	struct tsw_vault_reader *r;
	struct tsw_token t;

	cr_assert_eq(tsw_vault_reader_open(v, &r), 0);
	cr_assert_eq(tsw_vault_reader_renew(r), 0);
	cr_assert_eq(tsw_vault_lookup(r, token(i), 16, &t), 0);
	tsw_vault_reader_close(r);
	return t.status;
}

static void same_vault(struct tsw_vault *a, struct tsw_vault *b)
{
	uint8_t da[TSW_VAULT_DIGEST_BYTES], db[TSW_VAULT_DIGEST_BYTES];
	uint64_t sa, sb;

	cr_assert_eq(tsw_vault_digest(a, da, &sa), 0);
	cr_assert_eq(tsw_vault_digest(b, db, &sb), 0);
	cr_assert_eq(sa, sb);
	cr_assert_eq(memcmp(da, db, sizeof(da)), 0, "the copies differ");
}

/* Two administrators: the one whose copy missed a change is refused by
 * the stream and writes nothing; caught up, its change goes through. */
Test(cluster, a_change_made_on_a_stale_copy_is_refused)
{
	struct tsw_cluster *ca = connect_cluster(), *cb = connect_cluster();
	struct tsw_vault *a = open_copy("a"), *b = open_copy("b");
	uint64_t applied = 0, seq = 0;

	cr_assert_eq(tsw_cluster_publish_to(ca, a), 0);
	cr_assert_eq(tsw_cluster_publish_to(cb, b), 0);
	cr_assert_eq(tsw_vault_set_status(a, token(1), 16, TSW_TOKEN_SUSPENDED, NULL), 0);
	cr_assert_eq(tsw_cluster_catch_up(cb, b, &applied), 0);
	cr_assert_eq(applied, 1);
	cr_assert_eq(status_of(b, 1), TSW_TOKEN_SUSPENDED);
	cr_assert_eq(tsw_vault_set_status(a, token(2), 16, TSW_TOKEN_SUSPENDED, NULL), 0);
	/* b has not seen a's second change */
	cr_assert_eq(tsw_vault_set_status(b, token(3), 16, TSW_TOKEN_SUSPENDED, NULL), -ESTALE);
	cr_assert_eq(tsw_cluster_publish_error(cb), -ESTALE);
	cr_assert_eq(tsw_cluster_publish_error(cb), 0, "taken once");
	cr_assert_eq(status_of(b, 3), TSW_TOKEN_ACTIVE);
	cr_assert_eq(tsw_vault_change_seq(b, &seq), 0);
	cr_assert_eq(seq, 1);
	cr_assert_eq(tsw_cluster_catch_up(cb, b, &applied), 0);
	cr_assert_eq(applied, 1);
	cr_assert_eq(tsw_vault_set_status(b, token(3), 16, TSW_TOKEN_SUSPENDED, NULL), 0);
	cr_assert_eq(tsw_cluster_catch_up(ca, a, &applied), 0);
	cr_assert_eq(applied, 1);
	same_vault(a, b);
	tsw_cluster_close(ca);
	tsw_cluster_close(cb);
	tsw_vault_close(a);
	tsw_vault_close(b);
}

static void wait_applied(struct tsw_cluster *cl, uint64_t seq)
{
	struct tsw_cluster_stats st;
	int64_t deadline = testproc_now_ms() + WAIT_MS;

	for (;;) {
		struct timespec ms = {.tv_nsec = 1000000};

		tsw_cluster_stats(cl, &st);
		if (st.applied_seq >= seq)
			return;
		cr_assert_lt(testproc_now_ms(), deadline, "applied %llu of %llu",
			     (unsigned long long)st.applied_seq, (unsigned long long)seq);
		nanosleep(&ms, NULL);
	}
}

/* The node's applier follows the stream; the server killed, a change is
 * not acknowledged and not written. */
Test(cluster, the_applier_follows_and_an_unacknowledged_change_is_not_written)
{
	struct tsw_cluster *ca = connect_cluster(), *cb = connect_cluster();
	struct tsw_vault *a = open_copy("a"), *b = open_copy("b");
	struct tsw_cluster_stats st;
	int64_t t0;

	cr_assert_eq(tsw_cluster_publish_to(ca, a), 0);
	cr_assert_eq(tsw_cluster_applier_start(cb, b, NULL, NULL), 0);
	cr_assert_eq(tsw_cluster_applier_start(cb, b, NULL, NULL), -EALREADY);
	for (unsigned i = 1; i <= 3; i++)
		cr_assert_eq(tsw_vault_set_status(a, token(i), 16, TSW_TOKEN_SUSPENDED, NULL), 0);
	wait_applied(cb, 3);
	tsw_cluster_stats(cb, &st);
	cr_assert_eq(st.applied_total, 3);
	cr_assert_eq(st.apply_errors, 0);
	cr_assert(st.connected);
	cr_assert_gt(st.last_publish_ns, 0);
	cr_assert_eq(status_of(b, 3), TSW_TOKEN_SUSPENDED);
	same_vault(a, b);
	cr_assert_eq(testproc_stop(&nats, SIGKILL, WAIT_MS), 128 + SIGKILL);
	nats.pid = 0;
	t0 = testproc_now_ms();
	cr_assert_lt(tsw_vault_set_status(a, token(4), 16, TSW_TOKEN_SUSPENDED, NULL), 0);
	cr_assert_lt(testproc_now_ms() - t0, ACK_TIMEOUT_MS + 2000, "bounded by the ack timeout");
	cr_assert_lt(tsw_cluster_publish_error(ca), 0);
	cr_assert_eq(status_of(a, 4), TSW_TOKEN_ACTIVE, "written without an ack");
	tsw_cluster_close(cb);
	tsw_cluster_close(ca);
	tsw_vault_close(a);
	tsw_vault_close(b);
}

Test(cluster_url, one_server_without_tls_makes_the_url_plaintext)
{
	cr_assert(tsw_cluster_url_plaintext("nats://127.0.0.1:4222"));
	cr_assert(tsw_cluster_url_plaintext("tls://a:4222,nats://b:4222"));
	cr_assert(tsw_cluster_url_plaintext("tls://a:4222, b:4222"));
	cr_assert(tsw_cluster_url_plaintext("nats://tls://a:4222"));
	cr_assert_not(tsw_cluster_url_plaintext("tls://a:4222"));
	cr_assert_not(tsw_cluster_url_plaintext("tls://a:4222, tls://b:4222"));
}
