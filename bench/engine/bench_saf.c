/* ns per reversal through the engine and the state's durable SAF queue:
 * a batch of 64 forwarded 0100s times out (one tick: 64 answers 91, 64
 * token-form puts, the claims and 64 sends rewritten to the PAN), then
 * the issuer's 64 0410s are fed (64 acks). Vault of 10 k tokens, state
 * in a temp directory (its writer commits in the background: the figure
 * is the worker's cost, not the fsync). Also the cost of a SAF poll with
 * nothing due (what an idle worker pays every saf_poll_ms), and how long
 * the acquirer waits for its 91s: from the timeout until every 91 of the
 * batch is out, which is until the state has committed their reversals
 * (the 91 waits for that commit: p50 and p99 over every round).
 *
 *   bench_engine_saf [--rounds N] [--runs N]
 * Prints one line per run and the median.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <poll.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench_common.h"
#include "tsw/engine.h"
#include "tsw/error.h"
#include "tsw/iso8583.h"
#include "tsw/metrics.h"
#include "tsw/state.h"
#include "tsw/vault.h"

#define BENCH_BATCH 64u
#define BENCH_TOKENS 10000u
#define BENCH_ROUNDS_DEFAULT 200u
#define BENCH_RUNS_DEFAULT 5u
#define BENCH_RUNS_MAX 32u
#define BENCH_IDLE_POLLS 100000u
#define BENCH_BUF (1u << 20)
#define BENCH_TIMEOUT_MS 2000u
#define BENCH_POLL_MS 250u
#define NS_PER_MS 1000000ull

/* The fake issuer: each framed message in becomes its answer (MTI + 10,
 * DE39 00, DE7/DE11/DE90 kept), framed. */
static size_t answers_to(const struct tsw_iso_profile *p, const uint8_t *in, size_t len,
			 uint8_t *out)
{
	size_t off = 0, o = 0;

	while (off + 2 <= len) {
		size_t fl = (size_t)in[off] << 8 | in[off + 1];
		struct tsw_iso_msg m;
		struct tsw_iso_edit ed[2];
		char mti[4];
		int n;

		if (tsw_iso_decode(p, in + off + 2, fl, &m) < 0)
			bench_die("issuer decode", -TSW_E_BAD_INPUT);
		memcpy(mti, m.mti, 4);
		mti[2] = (char)(mti[2] + 1);
		ed[0] = (struct tsw_iso_edit){0, 4, (const uint8_t *)mti};
		ed[1] = (struct tsw_iso_edit){39, 2, (const uint8_t *)"00"};
		n = tsw_iso_encode(p, &m, ed, 2, out + o + 2, BENCH_BUF - o - 2);
		if (n < 0)
			bench_die("issuer encode", n);
		out[o] = (uint8_t)(n >> 8);
		out[o + 1] = (uint8_t)n;
		o += (size_t)n + 2;
		off += fl + 2;
	}
	return o;
}

/* Framed messages in buf[0, len). */
static unsigned frames_in(const uint8_t *buf, size_t len)
{
	size_t off = 0;
	unsigned n = 0;

	while (off + 2 <= len) {
		off += 2 + ((size_t)buf[off] << 8 | buf[off + 1]);
		n++;
	}
	return n;
}

static size_t requests(const struct tsw_iso_profile *p, unsigned round, uint8_t *out, size_t cap)
{
	size_t off = 0;
	unsigned i;

	for (i = 0; i < BENCH_BATCH; i++) {
		char stan[7], tok[17];
		struct tsw_iso_edit ed[10];
		int n;

		bench_number(tok, "4000", (round * BENCH_BATCH + i) % BENCH_TOKENS + 1);
		snprintf(stan, sizeof(stan), "%06u", (round * BENCH_BATCH + i) % 1000000);
		ed[0] = (struct tsw_iso_edit){0, 4, (const uint8_t *)"0100"};
		ed[1] = (struct tsw_iso_edit){2, 16, (const uint8_t *)tok};
		ed[2] = (struct tsw_iso_edit){3, 6, (const uint8_t *)"000000"};
		ed[3] = (struct tsw_iso_edit){4, 12, (const uint8_t *)"000000000500"};
		ed[4] = (struct tsw_iso_edit){7, 10, (const uint8_t *)"1123031500"};
		ed[5] = (struct tsw_iso_edit){11, 6, (const uint8_t *)stan};
		ed[6] = (struct tsw_iso_edit){14, 4, (const uint8_t *)"3012"};
		ed[7] = (struct tsw_iso_edit){22, 3, (const uint8_t *)"051"};
		ed[8] = (struct tsw_iso_edit){37, 12, (const uint8_t *)"123456789012"};
		ed[9] = (struct tsw_iso_edit){49, 3, (const uint8_t *)"840"};
		n = tsw_iso_encode(p, NULL, ed, 10, out + off + 2, cap - off - 2);
		if (n < 0)
			bench_die("request encode", n);
		out[off] = (uint8_t)(n >> 8);
		out[off + 1] = (uint8_t)n;
		off += (size_t)n + 2;
	}
	return off;
}

int main(int argc, char **argv)
{
	unsigned rounds = BENCH_ROUNDS_DEFAULT, runs = BENCH_RUNS_DEFAULT, i, run, k;
	char sdir[BENCH_DIR_MAX + 8];
	static struct tsw_iso_profile prof;
	static struct tsw_metrics_shard shard;
	uint64_t fail_ns[BENCH_RUNS_MAX], ack_ns[BENCH_RUNS_MAX], idle_ns[BENCH_RUNS_MAX];
	struct tsw_engine_config cfg;
	struct tsw_state_stats ss;
	struct tsw_engine *e;
	struct bench_vault bv;
	struct tsw_token tmpl;
	struct tsw_state *st;
	uint8_t *buf, *ans;
	uint64_t vnow, t, *wait_ns;
	size_t n, n_wait = 0;
	int slot, r, efd;

	for (i = 1; i + 1 < (unsigned)argc; i += 2) {
		if (!strcmp(argv[i], "--rounds"))
			rounds = (unsigned)strtoul(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--runs"))
			runs = (unsigned)strtoul(argv[i + 1], NULL, 10);
	}
	if (runs > BENCH_RUNS_MAX)
		runs = BENCH_RUNS_MAX;
	if (!rounds || !runs)
		bench_die("--rounds and --runs must be above 0", -TSW_E_BAD_INPUT);
	r = tsw_iso_profile_load_named(NULL, "default", &prof);
	if (r < 0)
		bench_die("profile", r);
	memset(&tmpl, 0, sizeof(tmpl));
	strcpy(tmpl.token_expiry, "3012");
	strcpy(tmpl.pan_expiry, "2911");
	bench_vault_create(&bv, "/tmp/tsw-bench-saf-XXXXXX", BENCH_TOKENS, &tmpl);
	snprintf(sdir, sizeof(sdir), "%s/state", bv.dir);
	if (mkdir(sdir, 0700) < 0)
		bench_die("state dir", -errno);
	r = tsw_state_open(sdir, NULL, &st);
	if (r < 0)
		bench_die("state open", r);

	bench_config_init(&cfg, &prof);
	cfg.settings.max_pending = 4096;
	cfg.settings.issuer_timeout_ms = BENCH_TIMEOUT_MS;
	cfg.settings.saf_poll_ms = BENCH_POLL_MS;
	cfg.settings.saf_inflight_max = BENCH_BATCH;
	cfg.settings.echo_interval_ms = UINT32_MAX; /* the fake issuer answers no echo */
	r = tsw_engine_new(&cfg, bv.v, st, &shard, &e);
	if (r < 0)
		bench_die("engine", r);
	efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (efd < 0 || tsw_engine_add_state_waker(e, efd) < 0)
		bench_die("state waker", -errno);
	wait_ns = malloc(sizeof(*wait_ns) * (size_t)rounds * runs);
	if (!wait_ns)
		bench_die("malloc", -ENOMEM);
	buf = malloc(BENCH_BUF);
	ans = malloc(BENCH_BUF);
	if (!buf || !ans)
		bench_die("malloc", -ENOMEM);

	vnow = bench_now_ns();
	slot = tsw_engine_acq_open(e, vnow);
	tsw_engine_link_connecting(e, 0, vnow);
	tsw_engine_link_up(e, 0, vnow);
	n = answers_to(&prof, buf, bench_drain(e, TSW_EP_LINK, 0, buf), ans);
	tsw_engine_link_input(e, 0, ans, n, vnow);
	if (!tsw_engine_ready(e))
		bench_die("sign-on", -1);

	for (run = 0; run < runs; run++) {
		uint64_t fail = 0, ack = 0, idle;
		unsigned answered;
		uint64_t sent0 = shard.saf_sent, acked0 = shard.saf_acked;

		for (k = 0; k < rounds; k++) {
			n = requests(&prof, run * rounds + k, buf, BENCH_BUF);
			tsw_engine_loop_begin(e, vnow);
			if (tsw_engine_acq_input(e, (uint32_t)slot, buf, n, vnow) < 0)
				bench_die("acq_input", -1);
			bench_drain(e, TSW_EP_LINK, 0, NULL); /* the issuer never answers these */
			tsw_engine_loop_end(e);

			vnow += BENCH_TIMEOUT_MS * NS_PER_MS;
			t = bench_now_ns();
			tsw_engine_loop_begin(e, vnow);
			tsw_engine_tick(e, vnow); /* puts, claims, sends; 91s once durable */
			n = bench_drain(e, TSW_EP_LINK, 0, buf);
			answered = frames_in(ans, bench_drain(e, TSW_EP_ACQ, (uint32_t)slot, ans));
			tsw_engine_loop_end(e);
			fail += bench_now_ns() - t;
			/* the acquirer's wait: until the state commits the reversals */
			while (answered < BENCH_BATCH) {
				struct pollfd pfd = {.fd = efd, .events = POLLIN};
				uint64_t v;

				if (poll(&pfd, 1, 1000) == 1)
					(void)!read(efd, &v, sizeof(v));
				tsw_engine_loop_begin(e, vnow);
				answered +=
				    frames_in(ans, bench_drain(e, TSW_EP_ACQ, (uint32_t)slot, ans));
				tsw_engine_loop_end(e);
				if (bench_now_ns() - t > 10000 * NS_PER_MS)
					bench_die("91s not out within 10 s", -1);
			}
			wait_ns[n_wait++] = bench_now_ns() - t;

			n = answers_to(&prof, buf, n, ans);
			t = bench_now_ns();
			tsw_engine_loop_begin(e, vnow);
			if (tsw_engine_link_input(e, 0, ans, n, vnow) < 0)
				bench_die("link_input", -1);
			tsw_engine_loop_end(e);
			ack += bench_now_ns() - t;
			vnow += NS_PER_MS;
		}
		if (shard.saf_sent - sent0 != (uint64_t)rounds * BENCH_BATCH ||
		    shard.saf_acked - acked0 != (uint64_t)rounds * BENCH_BATCH)
			bench_die("not every reversal was sent and acked", -1);
		t = bench_now_ns();
		for (k = 0; k < BENCH_IDLE_POLLS; k++) {
			vnow += BENCH_POLL_MS * NS_PER_MS;
			tsw_engine_tick(e, vnow);
		}
		idle = bench_now_ns() - t;
		fail_ns[run] = fail / ((uint64_t)rounds * BENCH_BATCH);
		ack_ns[run] = ack / ((uint64_t)rounds * BENCH_BATCH);
		idle_ns[run] = idle / BENCH_IDLE_POLLS;
		printf("run %u: timeout+put+send %llu ns/reversal, 0410+ack %llu ns/reversal, "
		       "idle tick with a poll %llu ns\n",
		       run, (unsigned long long)fail_ns[run], (unsigned long long)ack_ns[run],
		       (unsigned long long)idle_ns[run]);
	}
	qsort(fail_ns, runs, sizeof(fail_ns[0]), bench_cmp_u64);
	qsort(ack_ns, runs, sizeof(ack_ns[0]), bench_cmp_u64);
	qsort(idle_ns, runs, sizeof(idle_ns[0]), bench_cmp_u64);
	qsort(wait_ns, n_wait, sizeof(wait_ns[0]), bench_cmp_u64);
	printf("acquirer's wait for the 91s of a batch (timeout to the last 91 out): p50 %.1f us, "
	       "p99 %.1f us over %zu batches of %u\n",
	       (double)wait_ns[n_wait / 2] / 1e3, (double)wait_ns[n_wait * 99 / 100] / 1e3, n_wait,
	       BENCH_BATCH);
	tsw_state_stats(st, &ss);
	printf("median: timeout+put+send %llu ns/reversal, 0410+ack %llu ns/reversal, idle poll "
	       "%llu ns (batches of %u, %u rounds/run); state: %llu puts, %llu acks, %llu "
	       "commits, mean batch %.1f\n",
	       (unsigned long long)fail_ns[runs / 2], (unsigned long long)ack_ns[runs / 2],
	       (unsigned long long)idle_ns[runs / 2], BENCH_BATCH, rounds,
	       (unsigned long long)ss.saf_puts, (unsigned long long)ss.saf_acks,
	       (unsigned long long)ss.batches,
	       ss.batches ? (double)ss.batch_ops / (double)ss.batches : 0.0);
	tsw_engine_free(e);
	tsw_state_close(st);
	close(efd);
	free(wait_ns);
	free(buf);
	free(ans);
	return bench_vault_destroy(&bv) == 0 ? 0 : 1;
}
