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
#include "testvault.h"
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

		if (tsw_iso_decode(p, in + off + 2, fl, &m) < 0)
			bench_die("issuer decode", -TSW_E_BAD_INPUT);
		memcpy(mti, m.mti, 4);
		mti[2] = (char)(mti[2] + 1);
		ed[0] = (struct tsw_iso_edit){0, 4, (const uint8_t *)mti};
		ed[1] = (struct tsw_iso_edit){39, 2, (const uint8_t *)"00"};
		o += bench_frame(p, &m, ed, 2, out + o, BENCH_BUF - o, "issuer encode");
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

		testvault_number(tok, "4000", (round * BENCH_BATCH + i) % BENCH_TOKENS + 1);
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
		off += bench_frame(p, NULL, ed, 10, out + off, cap - off, "request encode");
	}
	return off;
}

/* What one run of rounds works on, and the figures of every run. */
struct bench_saf {
	const struct tsw_iso_profile *prof;
	struct tsw_metrics_shard *shard;
	struct tsw_engine *e;
	int slot; /* the acquirer connection */
	int efd;  /* woken by the state's writer after each commit */
	uint8_t *buf, *ans;
	uint64_t vnow;
	uint64_t fail_ns[BENCH_RUNS_MAX], ack_ns[BENCH_RUNS_MAX], idle_ns[BENCH_RUNS_MAX];
	uint64_t *wait_ns; /* one per round of every run */
	size_t n_wait;
};

/* One round: a batch times out (timed: tick, puts, claims, sends), the
 * acquirer waits for its 91s (until the state commits the reversals; into
 * *ret_wait_ns), the issuer's 0410s are fed (timed: acks). Adds the two
 * timed parts to *fail_ns and *ack_ns; advances *vnow. */
static void run_round(struct bench_saf *b, unsigned round, uint64_t *fail_ns, uint64_t *ack_ns,
		      uint64_t *ret_wait_ns)
{
	struct tsw_engine *e = b->e;
	uint32_t slot = (uint32_t)b->slot;
	unsigned answered;
	uint64_t t;
	size_t n;

	n = requests(b->prof, round, b->buf, BENCH_BUF);
	tsw_engine_loop_begin(e, b->vnow);
	if (tsw_engine_acq_input(e, slot, b->buf, n, b->vnow) < 0)
		bench_die("acq_input", -1);
	bench_drain(e, TSW_EP_LINK, 0, NULL); /* the issuer never answers these */
	tsw_engine_loop_end(e);

	b->vnow += BENCH_TIMEOUT_MS * NS_PER_MS;
	t = bench_now_ns();
	tsw_engine_loop_begin(e, b->vnow);
	tsw_engine_tick(e, b->vnow); /* puts, claims, sends; 91s once durable */
	n = bench_drain(e, TSW_EP_LINK, 0, b->buf);
	answered = frames_in(b->ans, bench_drain(e, TSW_EP_ACQ, slot, b->ans));
	tsw_engine_loop_end(e);
	*fail_ns += bench_now_ns() - t;
	/* the acquirer's wait: until the state commits the reversals */
	while (answered < BENCH_BATCH) {
		struct pollfd pfd = {.fd = b->efd, .events = POLLIN};
		uint64_t v;

		if (poll(&pfd, 1, 1000) == 1)
			(void)!read(b->efd, &v, sizeof(v));
		tsw_engine_loop_begin(e, b->vnow);
		answered += frames_in(b->ans, bench_drain(e, TSW_EP_ACQ, slot, b->ans));
		tsw_engine_loop_end(e);
		if (bench_now_ns() - t > 10000 * NS_PER_MS)
			bench_die("91s not out within 10 s", -1);
	}
	*ret_wait_ns = bench_now_ns() - t;

	n = answers_to(b->prof, b->buf, n, b->ans);
	t = bench_now_ns();
	tsw_engine_loop_begin(e, b->vnow);
	if (tsw_engine_link_input(e, 0, b->ans, n, b->vnow) < 0)
		bench_die("link_input", -1);
	tsw_engine_loop_end(e);
	*ack_ns += bench_now_ns() - t;
	b->vnow += NS_PER_MS;
}

/* Run number run: rounds rounds (their 91 waits appended to b->wait_ns),
 * then BENCH_IDLE_POLLS ticks with nothing due; fills the run's figures
 * and prints its line. */
static void run_once(struct bench_saf *b, unsigned run, unsigned rounds)
{
	uint64_t fail = 0, ack = 0, idle, t;
	uint64_t sent0 = b->shard->saf_sent, acked0 = b->shard->saf_acked;
	unsigned k;

	for (k = 0; k < rounds; k++)
		run_round(b, run * rounds + k, &fail, &ack, &b->wait_ns[b->n_wait++]);
	if (b->shard->saf_sent - sent0 != (uint64_t)rounds * BENCH_BATCH ||
	    b->shard->saf_acked - acked0 != (uint64_t)rounds * BENCH_BATCH)
		bench_die("not every reversal was sent and acked", -1);
	t = bench_now_ns();
	for (k = 0; k < BENCH_IDLE_POLLS; k++) {
		b->vnow += BENCH_POLL_MS * NS_PER_MS;
		tsw_engine_tick(b->e, b->vnow);
	}
	idle = bench_now_ns() - t;
	b->fail_ns[run] = fail / ((uint64_t)rounds * BENCH_BATCH);
	b->ack_ns[run] = ack / ((uint64_t)rounds * BENCH_BATCH);
	b->idle_ns[run] = idle / BENCH_IDLE_POLLS;
	printf("run %u: timeout+put+send %llu ns/reversal, 0410+ack %llu ns/reversal, "
	       "idle tick with a poll %llu ns\n",
	       run, (unsigned long long)b->fail_ns[run], (unsigned long long)b->ack_ns[run],
	       (unsigned long long)b->idle_ns[run]);
}

/* The medians over runs, the 91 wait's p50 and p99, the state's counts. */
static void report(struct bench_saf *b, unsigned runs, unsigned rounds, struct tsw_state *st)
{
	struct tsw_state_stats ss;
	size_t n_wait = b->n_wait;

	qsort(b->fail_ns, runs, sizeof(b->fail_ns[0]), bench_cmp_u64);
	qsort(b->ack_ns, runs, sizeof(b->ack_ns[0]), bench_cmp_u64);
	qsort(b->idle_ns, runs, sizeof(b->idle_ns[0]), bench_cmp_u64);
	qsort(b->wait_ns, n_wait, sizeof(b->wait_ns[0]), bench_cmp_u64);
	printf("acquirer's wait for the 91s of a batch (timeout to the last 91 out): p50 %.1f us, "
	       "p99 %.1f us over %zu batches of %u\n",
	       (double)b->wait_ns[n_wait / 2] / 1e3, (double)b->wait_ns[n_wait * 99 / 100] / 1e3,
	       n_wait, BENCH_BATCH);
	tsw_state_stats(st, &ss);
	printf("median: timeout+put+send %llu ns/reversal, 0410+ack %llu ns/reversal, idle poll "
	       "%llu ns (batches of %u, %u rounds/run); state: %llu puts, %llu acks, %llu "
	       "commits, mean batch %.1f\n",
	       (unsigned long long)b->fail_ns[runs / 2], (unsigned long long)b->ack_ns[runs / 2],
	       (unsigned long long)b->idle_ns[runs / 2], BENCH_BATCH, rounds,
	       (unsigned long long)ss.saf_puts, (unsigned long long)ss.saf_acks,
	       (unsigned long long)ss.batches,
	       ss.batches ? (double)ss.batch_ops / (double)ss.batches : 0.0);
}

/* --rounds N --runs N (runs at most BENCH_RUNS_MAX); exits on zero. */
static void parse_args(int argc, char **argv, unsigned *rounds, unsigned *runs)
{
	for (unsigned i = 1; i + 1 < (unsigned)argc; i += 2) {
		if (!strcmp(argv[i], "--rounds"))
			*rounds = (unsigned)strtoul(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--runs"))
			*runs = (unsigned)strtoul(argv[i + 1], NULL, 10);
	}
	if (*runs > BENCH_RUNS_MAX)
		*runs = BENCH_RUNS_MAX;
	if (!*rounds || !*runs)
		bench_die("--rounds and --runs must be above 0", -TSW_E_BAD_INPUT);
}

/* Opens the acquirer connection and signs the issuer link on. */
static void sign_on(struct bench_saf *b)
{
	size_t n;

	b->slot = tsw_engine_acq_open(b->e, b->vnow);
	tsw_engine_link_connecting(b->e, 0, b->vnow);
	tsw_engine_link_up(b->e, 0, b->vnow);
	n = answers_to(b->prof, b->buf, bench_drain(b->e, TSW_EP_LINK, 0, b->buf), b->ans);
	tsw_engine_link_input(b->e, 0, b->ans, n, b->vnow);
	if (!tsw_engine_ready(b->e))
		bench_die("sign-on", -1);
}

int main(int argc, char **argv)
{
	unsigned rounds = BENCH_ROUNDS_DEFAULT, runs = BENCH_RUNS_DEFAULT, run;
	char sdir[BENCH_DIR_MAX + 8];
	static struct tsw_iso_profile prof;
	static struct tsw_metrics_shard shard;
	static struct bench_saf b = {.prof = &prof, .shard = &shard};
	struct tsw_engine_config cfg;
	struct bench_vault bv;
	struct tsw_token tmpl;
	struct tsw_state *st;
	int r;

	parse_args(argc, argv, &rounds, &runs);
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
	r = tsw_engine_new(&cfg, bv.v, st, &shard, &b.e);
	if (r < 0)
		bench_die("engine", r);
	b.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (b.efd < 0 || tsw_engine_add_state_waker(b.e, b.efd) < 0)
		bench_die("state waker", -errno);
	b.wait_ns = malloc(sizeof(*b.wait_ns) * (size_t)rounds * runs);
	b.buf = malloc(BENCH_BUF);
	b.ans = malloc(BENCH_BUF);
	if (!b.wait_ns || !b.buf || !b.ans)
		bench_die("malloc", -ENOMEM);

	b.vnow = bench_now_ns();
	sign_on(&b);
	for (run = 0; run < runs; run++)
		run_once(&b, run, rounds);
	report(&b, runs, rounds, st);
	tsw_engine_free(b.e);
	tsw_state_close(st);
	close(b.efd);
	free(b.wait_ns);
	free(b.buf);
	free(b.ans);
	return bench_vault_destroy(&bv) == 0 ? 0 : 1;
}
