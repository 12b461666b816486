/* The store-and-forward queue of the state environment: durability across
 * restarts and crashes, leases, backoff, order, bounds. Time is the
 * test's own clock (struct tsw_state_config.clock_ms): nothing sleeps.
 * Each test uses its own temporary directory. */
#include <criterion/criterion.h>
#include <errno.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "state_harness.h"
#include "tsw/error.h"
#include "tsw/state.h"

#define LEASE_MS 1000u
#define T0_MS 1000000u

static char dir[HARNESS_DIR_MAX];
static _Atomic uint64_t fake_now_ms;

static uint64_t fake_clock(void *arg)
{
	(void)arg;
	return atomic_load(&fake_now_ms);
}

static void make_dir(void)
{
	harness_make_dir(dir, "/tmp/tsw-saf-XXXXXX");
	atomic_store(&fake_now_ms, T0_MS);
}

static void remove_dir(void)
{
	harness_remove_dir(dir);
}

TestSuite(saf, .init = make_dir, .fini = remove_dir);

/* Waits on efd until id is durable or the deadline passes. */
static bool wait_durable(struct tsw_state *st, int efd, uint64_t id)
{
	return harness_wait_durable(st, efd, tsw_state_saf_durable, id);
}

static struct tsw_state_config config(uint32_t max_entries)
{
	return (struct tsw_state_config){
	    .saf_max_entries = max_entries,
	    .saf_lease_ms = LEASE_MS,
	    .clock_ms = fake_clock,
	};
}

static struct tsw_state *open_saf(uint32_t max_entries, int *ret_efd)
{
	struct tsw_state_config cfg = config(max_entries);

	return harness_open(dir, &cfg, ret_efd);
}

static void close_saf(struct tsw_state *st, int efd)
{
	harness_close(st, efd);
}

static uint64_t put_str(struct tsw_state *st, uint32_t route, const char *msg)
{
	uint64_t id = 0;

	cr_assert_eq(tsw_state_saf_put(st, route, (const uint8_t *)msg, strlen(msg), &id), 0,
		     "put %s", msg);
	cr_assert_neq(id, 0);
	return id;
}

static struct tsw_saf_item *items_alloc(size_t n)
{
	struct tsw_saf_item *it = calloc(n, sizeof(*it));

	cr_assert_not_null(it);
	return it;
}

static size_t claim(struct tsw_state *st, uint32_t worker, uint32_t max, struct tsw_saf_item *items)
{
	size_t n = 12345;

	cr_assert_eq(tsw_state_saf_claim(st, worker, max, items, &n), 0);
	cr_assert_leq(n, max);
	return n;
}

static bool item_is(const struct tsw_saf_item *it, uint32_t route, const char *msg)
{
	return it->route_key == route && it->len == strlen(msg) &&
	       memcmp(it->msg, msg, it->len) == 0;
}

/* A token-form 0400 body as the engine would store it (DE2 is a token). */
#define REVERSAL_A "0400|2=4895370000000015|4=000000001000|11=000123"
#define REVERSAL_B "0400|2=4895370000000023|4=000000002500|11=000124"

Test(saf, put_durable_claim_ack_then_gone_after_reopen)
{
	struct tsw_saf_item *it = items_alloc(4);
	struct tsw_state_stats ss;
	struct tsw_state *st;
	uint64_t a, b;
	int efd;

	st = open_saf(0, &efd);
	a = put_str(st, 7, REVERSAL_A);
	b = put_str(st, 7, REVERSAL_B);
	cr_expect_gt(b, a, "ids grow");
	cr_assert(wait_durable(st, efd, a));
	cr_assert(wait_durable(st, efd, b));
	cr_assert_eq(claim(st, 1, 4, it), 2);
	cr_expect_eq(it[0].id, a);
	cr_expect(item_is(&it[0], 7, REVERSAL_A));
	cr_expect(item_is(&it[1], 7, REVERSAL_B));
	cr_expect_eq(it[0].attempts, 0);
	cr_assert_eq(tsw_state_saf_ack(st, a), 0);
	cr_expect(tsw_state_saf_durable(st, a), "stays durable after the ack");
	tsw_state_stats(st, &ss);
	cr_expect_eq(ss.saf_depth, 1);
	cr_expect_eq(ss.saf_puts, 2);
	cr_expect_eq(ss.saf_acks, 1);
	cr_expect_eq(ss.saf_claims, 2);
	cr_expect_eq(ss.saf_cap, TSW_STATE_SAF_MAX_ENTRIES_DEFAULT);
	close_saf(st, efd);

	/* b was claimed, never acked: pending again after the restart */
	st = open_saf(0, &efd);
	tsw_state_stats(st, &ss);
	cr_expect_eq(ss.saf_loaded, 1);
	cr_expect_eq(ss.saf_depth, 1);
	cr_assert_eq(claim(st, 1, 4, it), 1, "the acked item is gone, the other is due");
	cr_expect(item_is(&it[0], 7, REVERSAL_B));
	cr_expect_eq(it[0].attempts, 0, "attempts count since open");
	cr_expect(tsw_state_saf_durable(st, it[0].id), "a loaded item is durable");
	cr_assert_eq(tsw_state_saf_ack(st, it[0].id), 0);
	close_saf(st, efd);

	st = open_saf(0, &efd);
	cr_expect_eq(claim(st, 1, 4, it), 0, "queue empty after both acks");
	close_saf(st, efd);
	free(it);
}

Test(saf, durable_put_and_ack_survive_a_crash)
{
	struct tsw_saf_item *it = items_alloc(4);
	struct tsw_state *st;
	pid_t pid;
	int status, efd;

	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		/* the child puts three, acks the first, and dies without
		 * closing: only what durable() promised is on disk */
		struct tsw_state_config cfg = config(0);
		struct tsw_state *cst = NULL;
		uint64_t a, b, c;
		int cefd = eventfd(0, EFD_NONBLOCK);

		if (tsw_state_open(dir, &cfg, &cst) != 0 || tsw_state_add_waker(cst, cefd) != 0)
			_exit(10);
		if (tsw_state_saf_put(cst, 1, (const uint8_t *)"first", 5, &a) != 0 ||
		    tsw_state_saf_put(cst, 2, (const uint8_t *)"second", 6, &b) != 0)
			_exit(11);
		if (!wait_durable(cst, cefd, b))
			_exit(12);
		if (tsw_state_saf_ack(cst, a) != 0)
			_exit(13);
		/* the writer commits in queue order: c durable => the delete too */
		if (tsw_state_saf_put(cst, 1, (const uint8_t *)"third", 5, &c) != 0)
			_exit(14);
		if (!wait_durable(cst, cefd, c))
			_exit(15);
		_exit(0);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status));
	cr_assert_eq(WEXITSTATUS(status), 0, "child step %d failed", WEXITSTATUS(status));

	st = open_saf(0, &efd);
	cr_assert_eq(claim(st, 3, 4, it), 2);
	cr_expect(item_is(&it[0], 2, "second"), "the durable put is there");
	cr_expect(item_is(&it[1], 1, "third"), "in put order");
	close_saf(st, efd);
	free(it);
}

Test(saf, expired_lease_hands_the_item_to_another_worker)
{
	struct tsw_saf_item *it = items_alloc(2);
	struct tsw_state_stats ss;
	struct tsw_state *st;
	uint64_t a, b;
	int efd;

	st = open_saf(0, &efd);
	a = put_str(st, 1, REVERSAL_A);
	cr_assert_eq(claim(st, 1, 2, it), 1);
	cr_expect_eq(claim(st, 2, 2, it), 0, "leased to worker 1");
	atomic_store(&fake_now_ms, T0_MS + LEASE_MS - 1);
	cr_expect_eq(claim(st, 2, 2, it), 0, "lease not yet expired");
	atomic_store(&fake_now_ms, T0_MS + LEASE_MS);
	cr_assert_eq(claim(st, 2, 2, it), 1, "expired: worker 2 gets it");
	cr_expect_eq(it[0].id, a);
	cr_expect_eq(it[0].attempts, 1);
	cr_expect_eq(claim(st, 1, 2, it), 0, "now leased to worker 2");
	b = put_str(st, 1, REVERSAL_B);
	cr_assert_eq(claim(st, 1, 2, it), 1, "a new put is due at once");
	cr_expect(item_is(&it[0], 1, REVERSAL_B));
	cr_assert_eq(tsw_state_saf_ack(st, b), 0);
	tsw_state_stats(st, &ss);
	cr_expect_eq(ss.saf_lease_expired, 1);
	cr_expect_eq(ss.saf_claims, 3);
	/* worker 1's late answer still counts: the issuer answered */
	cr_expect_eq(tsw_state_saf_ack(st, a), 0);
	atomic_store(&fake_now_ms, T0_MS + 10 * LEASE_MS);
	cr_expect_eq(claim(st, 2, 2, it), 0, "acked: never handed out again");
	close_saf(st, efd);
	free(it);
}

static size_t claim_route(struct tsw_state *st, uint32_t route, uint32_t max,
			  struct tsw_saf_item *items)
{
	size_t n = 12345;

	cr_assert_eq(tsw_state_saf_claim_route(st, 1, route, max, items, &n), 0);
	cr_assert_leq(n, max);
	return n;
}

Test(saf, route_claim_hands_out_only_that_route_and_leaves_the_rest_due)
{
	struct tsw_saf_item *it = items_alloc(4);
	struct tsw_state *st;
	size_t n = 0;
	uint64_t a;
	int efd;

	st = open_saf(0, &efd);
	a = put_str(st, 1, "r1-first");
	put_str(st, 2, "r2-first");
	put_str(st, 1, "r1-second");
	cr_assert_eq(claim_route(st, 3, 4, it), 0, "no item of route 3");
	cr_assert_eq(claim_route(st, 1, 4, it), 2);
	cr_expect(item_is(&it[0], 1, "r1-first"), "FIFO within the route");
	cr_expect(item_is(&it[1], 1, "r1-second"));
	cr_expect_eq(claim_route(st, 1, 4, it), 0, "route 1 is leased");
	/* the route 2 item was skipped, not leased: still due for anyone */
	cr_assert_eq(claim_route(st, 2, 4, it), 1, "route 2 still due after a filtered scan");
	cr_expect(item_is(&it[0], 2, "r2-first"));
	cr_expect_eq(it[0].attempts, 0, "skipping is not an attempt");
	cr_assert_eq(tsw_state_saf_retry(st, a, 0), 0);
	cr_assert_eq(claim_route(st, 1, 1, it), 1, "released: due again for its route");
	cr_expect(item_is(&it[0], 1, "r1-first"));
	cr_expect_eq(tsw_state_saf_claim_route(st, 1, 1, 1, NULL, &n), -TSW_E_BAD_INPUT);
	close_saf(st, efd);
	free(it);
}

Test(saf, retry_backoff_is_respected)
{
	static const struct {
		uint64_t now_ms;
		size_t want;
		const char *rule;
	} steps[] = {
	    {T0_MS, 0, "released with a backoff: not due at once"},
	    {T0_MS + 499, 0, "not due before not_before"},
	    {T0_MS + 500, 1, "due at not_before"},
	};
	struct tsw_saf_item *it = items_alloc(2);
	struct tsw_state_stats ss;
	struct tsw_state *st;
	uint64_t a;
	int efd;

	st = open_saf(0, &efd);
	a = put_str(st, 1, REVERSAL_A);
	cr_assert_eq(claim(st, 1, 2, it), 1);
	cr_assert_eq(tsw_state_saf_retry(st, a, tsw_state_now_ms(st) + 500), 0);
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		atomic_store(&fake_now_ms, steps[i].now_ms);
		cr_expect_eq(claim(st, 1, 2, it), steps[i].want, "%s", steps[i].rule);
	}
	cr_expect_eq(it[0].attempts, 1);
	/* a retry time in the past: due at once */
	cr_assert_eq(tsw_state_saf_retry(st, a, 0), 0);
	cr_expect_eq(claim(st, 2, 2, it), 1, "released without backoff: due now");
	tsw_state_stats(st, &ss);
	cr_expect_eq(ss.saf_retries, 2);
	close_saf(st, efd);

	/* backoff is memory only: a restart makes the item due at once */
	st = open_saf(0, &efd);
	cr_assert_eq(claim(st, 1, 2, it), 1);
	cr_assert_eq(tsw_state_saf_retry(st, it[0].id, T0_MS + 1000000), 0);
	close_saf(st, efd);
	st = open_saf(0, &efd);
	cr_expect_eq(claim(st, 1, 2, it), 1, "due after reopen");
	close_saf(st, efd);
	free(it);
}

Test(saf, fifo_by_id_per_route_across_restarts)
{
	static const struct {
		uint32_t route;
		const char *msg;
	} puts_[] = {
	    {1, "r1-a"}, {2, "r2-a"}, {1, "r1-b"}, {1, "r1-c"}, {2, "r2-b"},
	};
	enum { N = sizeof(puts_) / sizeof(puts_[0]) };
	struct tsw_saf_item *it = items_alloc(N + 1);
	struct tsw_state *st;
	uint64_t ids[N];
	int efd;

	st = open_saf(0, &efd);
	for (size_t i = 0; i < 3; i++)
		ids[i] = put_str(st, puts_[i].route, puts_[i].msg);
	close_saf(st, efd);
	/* puts after a restart come after the stored ones */
	st = open_saf(0, &efd);
	for (size_t i = 3; i < N; i++)
		ids[i] = put_str(st, puts_[i].route, puts_[i].msg);
	cr_assert_eq(claim(st, 1, 2, it), 2, "max respected");
	cr_expect(item_is(&it[0], puts_[0].route, puts_[0].msg));
	cr_expect(item_is(&it[1], puts_[1].route, puts_[1].msg));
	cr_assert_eq(claim(st, 1, N, it), N - 2, "the rest, in order");
	for (size_t i = 2; i < N; i++)
		cr_expect(item_is(&it[i - 2], puts_[i].route, puts_[i].msg), "item %zu", i);
	for (size_t i = 1; i < N - 2; i++)
		cr_expect_gt(it[i].id, it[i - 1].id, "ids in order");
	cr_expect_eq(it[N - 3].id, ids[N - 1]);
	close_saf(st, efd);

	st = open_saf(0, &efd);
	cr_assert_eq(claim(st, 1, N + 1, it), N);
	for (size_t i = 0; i < N; i++)
		cr_expect(item_is(&it[i], puts_[i].route, puts_[i].msg), "reloaded %zu", i);
	close_saf(st, efd);
	free(it);
}

Test(saf, full_queue_refuses_with_eagain_until_an_ack)
{
	enum { MAX = 4 };
	struct tsw_saf_item *it = items_alloc(MAX);
	struct tsw_state_stats ss;
	struct tsw_state *st;
	uint64_t ids[MAX], extra = 99;
	int efd;

	st = open_saf(MAX, &efd);
	for (int i = 0; i < MAX; i++)
		ids[i] = put_str(st, 1, REVERSAL_A);
	cr_expect_eq(tsw_state_saf_put(st, 1, (const uint8_t *)"x", 1, &extra), -EAGAIN);
	cr_expect_eq(extra, 99, "id untouched on failure");
	tsw_state_stats(st, &ss);
	cr_expect_eq(ss.saf_full, 1);
	cr_expect_eq(ss.saf_depth, MAX);
	cr_expect_eq(ss.saf_cap, MAX);
	cr_assert_eq(tsw_state_saf_ack(st, ids[0]), 0);
	cr_expect_eq(tsw_state_saf_put(st, 1, (const uint8_t *)"x", 1, &extra), 0,
		     "room again after an ack");
	cr_expect_eq(tsw_state_saf_put(st, 1, (const uint8_t *)"y", 1, &extra), -EAGAIN);
	close_saf(st, efd);

	/* a file holding more than the limit keeps every item */
	st = open_saf(2, &efd);
	tsw_state_stats(st, &ss);
	cr_expect_eq(ss.saf_loaded, MAX);
	cr_expect_eq(tsw_state_saf_put(st, 1, (const uint8_t *)"z", 1, &extra), -EAGAIN,
		     "above the limit: puts refused");
	cr_expect_eq(claim(st, 1, MAX, it), MAX, "nothing dropped");
	close_saf(st, efd);
	free(it);
}

enum { PUT_THREADS = 8, PUTS_PER_THREAD = 250 };

struct putter {
	struct tsw_state *st;
	pthread_barrier_t *go;
	unsigned idx, ok, failed;
};

static void *put_many(void *arg)
{
	struct putter *p = arg;

	pthread_barrier_wait(p->go);
	for (unsigned i = 0; i < PUTS_PER_THREAD; i++) {
		char msg[32];
		int len = snprintf(msg, sizeof(msg), "t%u-m%u", p->idx, i);
		uint64_t id;

		if (tsw_state_saf_put(p->st, p->idx, (const uint8_t *)msg, (size_t)len, &id) == 0)
			p->ok++;
		else
			p->failed++;
	}
	return NULL;
}

Test(saf, concurrent_puts_lose_nothing)
{
	enum { TOTAL = PUT_THREADS * PUTS_PER_THREAD };
	struct tsw_saf_item *it = items_alloc(TOTAL + 1);
	struct putter p[PUT_THREADS];
	pthread_t th[PUT_THREADS];
	pthread_barrier_t go;
	unsigned next[PUT_THREADS] = {0};
	struct tsw_state *st;
	int efd;

	st = open_saf(TOTAL, &efd);
	pthread_barrier_init(&go, NULL, PUT_THREADS);
	for (unsigned i = 0; i < PUT_THREADS; i++) {
		p[i] = (struct putter){.st = st, .go = &go, .idx = i};
		cr_assert_eq(pthread_create(&th[i], NULL, put_many, &p[i]), 0);
	}
	for (unsigned i = 0; i < PUT_THREADS; i++) {
		pthread_join(th[i], NULL);
		cr_expect_eq(p[i].failed, 0);
	}
	pthread_barrier_destroy(&go);
	close_saf(st, efd);

	st = open_saf(TOTAL, &efd);
	cr_assert_eq(claim(st, 1, TOTAL + 1, it), TOTAL, "every put is on disk");
	/* each thread's messages come back once each, in its put order */
	for (size_t i = 0; i < TOTAL; i++) {
		char want[32];
		uint32_t r = it[i].route_key;

		cr_assert_lt(r, PUT_THREADS);
		snprintf(want, sizeof(want), "t%u-m%u", r, next[r]++);
		cr_assert(item_is(&it[i], r, want), "item %zu of route %u", i, r);
	}
	close_saf(st, efd);
	free(it);
}

Test(saf, unknown_or_acked_ids_are_not_found)
{
	struct tsw_saf_item *it = items_alloc(2);
	struct tsw_state *st;
	uint64_t a, b;
	int efd;

	st = open_saf(1, &efd);
	a = put_str(st, 1, REVERSAL_A);
	cr_assert_eq(tsw_state_saf_ack(st, a), 0);
	/* keep putting until a's slot is reused by a later commit */
	for (int i = 0; i < 2; i++) {
		b = put_str(st, 1, REVERSAL_B);
		cr_assert(wait_durable(st, efd, b));
		cr_assert_eq(tsw_state_saf_ack(st, b), 0);
	}
	b = put_str(st, 1, REVERSAL_B);
	{
		const struct {
			uint64_t id;
			const char *rule;
		} cases[] = {
		    {0, "id 0"},
		    {UINT64_MAX, "slot out of range"},
		    {12345, "never issued"},
		    {a, "acked once already"},
		    {b + 1, "neighbour of a live id"},
		    {b ^ (1ull << 40), "live slot, other sequence"},
		};

		for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			cr_expect_eq(tsw_state_saf_ack(st, cases[i].id), -TSW_E_NOT_FOUND,
				     "ack: %s", cases[i].rule);
			cr_expect_eq(tsw_state_saf_retry(st, cases[i].id, 0), -TSW_E_NOT_FOUND,
				     "retry: %s", cases[i].rule);
		}
	}
	cr_expect_eq(claim(st, 1, 2, it), 1, "the live item untouched by the failures");
	cr_expect_eq(it[0].id, b);
	close_saf(st, efd);
	free(it);
}

Test(saf, bad_sizes_and_arguments_refused)
{
	static uint8_t big[TSW_STATE_SAF_MSG_MAX + 1];
	struct tsw_saf_item *it = items_alloc(2);
	struct tsw_state_config cfg = config(TSW_STATE_SAF_MAX_ENTRIES_LIMIT + 1);
	struct tsw_state_stats ss;
	struct tsw_state *st = NULL;
	uint64_t id = 77;
	size_t n = 55;
	int efd;

	cr_expect_eq(tsw_state_open(dir, &cfg, &st), -TSW_E_BAD_INPUT, "limit too high");
	cr_expect_null(st);
	st = open_saf(0, &efd);
	memset(big, '7', sizeof(big));
	cr_expect_eq(tsw_state_saf_put(st, 1, big, sizeof(big), &id), -EMSGSIZE, "above max");
	cr_expect_eq(tsw_state_saf_put(st, 1, big, 0, &id), -TSW_E_BAD_INPUT, "empty");
	cr_expect_eq(tsw_state_saf_put(st, 1, NULL, 5, &id), -TSW_E_BAD_INPUT, "NULL");
	cr_expect_eq(id, 77, "id untouched on failure");
	cr_expect_eq(tsw_state_saf_claim(st, 1, 2, NULL, &n), -TSW_E_BAD_INPUT);
	cr_expect_eq(n, 55, "count untouched on failure");
	cr_assert_eq(tsw_state_saf_put(st, 1, big, TSW_STATE_SAF_MSG_MAX, &id), 0, "max fits");
	tsw_state_stats(st, &ss);
	cr_expect_eq(ss.saf_too_big, 1);
	close_saf(st, efd);

	st = open_saf(0, &efd);
	cr_assert_eq(claim(st, 1, 2, it), 1);
	cr_expect_eq(it[0].len, TSW_STATE_SAF_MSG_MAX);
	cr_expect_eq(memcmp(it[0].msg, big, TSW_STATE_SAF_MSG_MAX), 0, "a full-size message");
	close_saf(st, efd);
	free(it);
}

/* Writes one raw record into the saf database, as a broken build might. */
static void write_raw(const void *key, size_t klen, const void *val, size_t vlen)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};

	cr_assert_eq(mdb_env_create(&env), 0);
	cr_assert_eq(mdb_env_set_maxdbs(env, 4), 0);
	cr_assert_eq(mdb_env_open(env, dir, 0, 0600), 0);
	cr_assert_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
	cr_assert_eq(mdb_dbi_open(txn, "saf", MDB_CREATE, &dbi), 0);
	cr_assert_eq(mdb_put(txn, dbi, &k, &v, 0), 0);
	cr_assert_eq(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
}

Test(saf, corrupt_records_refused_at_open)
{
	static const uint8_t key8[8] = {0, 0, 0, 0, 0, 0, 0, 9};
	static const struct {
		const uint8_t *key;
		size_t klen;
		uint32_t hdr[2]; /* route_key, len */
		size_t vlen;
		const char *rule;
	} cases[] = {
	    {key8, 8, {1, 10}, 8 + 9, "value shorter than its length"},
	    {key8, 8, {1, 0}, 8, "empty message"},
	    {key8, 4, {1, 4}, 8 + 4, "key of the wrong size"},
	    {key8,
	     8,
	     {1, TSW_STATE_SAF_MSG_MAX + 1},
	     8 + TSW_STATE_SAF_MSG_MAX + 1,
	     "message above the maximum"},
	    {key8, 8, {1, 4}, 4, "value shorter than the header"},
	};
	static uint8_t val[8 + TSW_STATE_SAF_MSG_MAX + 1];
	struct tsw_state *st = NULL;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		remove_dir();
		cr_assert_not_null(mkdtemp(strcpy(dir, "/tmp/tsw-saf-XXXXXX")));
		memcpy(val, cases[i].hdr, sizeof(cases[i].hdr));
		write_raw(cases[i].key, cases[i].klen, val, cases[i].vlen);
		cr_expect_eq(tsw_state_open(dir, NULL, &st), -TSW_E_CORRUPT, "%s", cases[i].rule);
		cr_expect_null(st);
	}
}

/* A 40-byte header with an unknown flag or a use token that is not
 * digits is refused like any other corrupt record. */
Test(saf, corrupt_format_3_headers_refused_at_open)
{
	static const uint8_t key8[8] = {0, 0, 0, 0, 0, 0, 0, 8};
	struct {
		uint32_t route_key, len, flags;
		uint8_t use_token_len;
		char use_token[19];
		uint64_t put_ms;
		char msg[4];
	} rec;
	struct tsw_state *st = NULL;

	for (int i = 0; i < 2; i++) {
		remove_dir();
		cr_assert_not_null(mkdtemp(strcpy(dir, "/tmp/tsw-saf-XXXXXX")));
		memset(&rec, 0, sizeof(rec));
		rec.route_key = 1;
		rec.len = 4;
		memcpy(rec.msg, "0400", 4);
		if (i == 0) {
			rec.flags = 4; /* no such flag */
		} else {
			rec.use_token_len = 16;
			memcpy(rec.use_token, "48953700000000x5", 16);
		}
		write_raw(key8, 8, &rec, sizeof(rec));
		cr_expect_eq(tsw_state_open(dir, NULL, &st), -TSW_E_CORRUPT, "case %d", i);
		cr_expect_null(st);
	}
}

/* The reversal of a stand-in approval must not reach the issuer before
 * the approval's advice: it waits while an earlier advice of its route
 * is queued (a retried advice would otherwise come after it, and the
 * issuer would book an approval nobody got). */
Test(saf, a_reversal_after_an_advice_waits_until_the_advice_is_acked)
{
	struct tsw_saf_item *it = items_alloc(4);
	struct tsw_state *st;
	uint64_t adv, rev, other;
	int efd;

	st = open_saf(0, &efd);
	cr_assert_eq(tsw_state_saf_put_use(st, 1, TSW_STATE_SAF_ADVICE, (const uint8_t *)"0120-a",
					   6, NULL, 0, &adv),
		     0);
	cr_assert_eq(claim_route(st, 1, 4, it), 1);
	cr_assert_eq(it[0].id, adv);
	/* the issuer answered 96: the advice is due again only later */
	cr_assert_eq(tsw_state_saf_retry(st, adv, tsw_state_now_ms(st) + 60000), 0);
	cr_assert_eq(tsw_state_saf_put_use(st, 1, TSW_STATE_SAF_AFTER_ADVICE,
					   (const uint8_t *)"0400-a", 6, NULL, 0, &rev),
		     0);
	other = put_str(st, 2, "0400-other-route");
	cr_assert_eq(claim_route(st, 1, 4, it), 0, "the reversal went before its advice");
	cr_assert_eq(claim_route(st, 2, 4, it), 1, "another route is not held up");
	cr_assert_eq(it[0].id, other);
	cr_assert_eq(tsw_state_saf_ack(st, adv), 0);
	cr_assert_eq(claim_route(st, 1, 4, it), 1, "the advice is in: the reversal goes");
	cr_assert_eq(it[0].id, rev);
	cr_assert_eq(tsw_state_saf_ack(st, rev), 0);
	cr_assert_eq(tsw_state_saf_ack(st, other), 0);
	close_saf(st, efd);
	free(it);
}

Test(saf, puts_and_reservations_share_one_group_commit)
{
	struct tsw_state *st;
	struct tsw_state_token tok;
	uint64_t ticket, id;
	int efd;

	st = open_saf(0, &efd);
	cr_assert_eq(tsw_state_reserve(st, "4895370000000015", 16, 3, &ticket), 0);
	id = put_str(st, 1, REVERSAL_A);
	cr_assert(wait_durable(st, efd, id));
	cr_expect(tsw_state_durable(st, ticket), "the earlier reservation is durable too");
	cr_assert_eq(tsw_state_release(st, ticket), 0);
	close_saf(st, efd);
	st = open_saf(0, &efd);
	cr_assert_eq(tsw_state_get(st, "4895370000000015", 16, &tok), 0);
	cr_expect_eq(tok.used, 0, "the release was written");
	close_saf(st, efd);
}

#define USE_TOKEN "4895370000000015"

/* The reversal of an approval that spent a limited use gives the use
 * back when the issuer acknowledges it: once, and only at the ack. The
 * token travels with the item across a restart. */
Test(saf, ack_of_a_use_reversal_gives_the_use_back_once_even_after_a_restart)
{
	struct tsw_saf_item *it = items_alloc(2);
	struct tsw_state_token tok;
	struct tsw_state_stats ss;
	struct tsw_state *st;
	uint64_t ticket, id;
	int efd;

	st = open_saf(0, &efd);
	cr_assert_eq(tsw_state_reserve(st, USE_TOKEN, 16, 1, &ticket), 0);
	cr_assert_eq(tsw_state_commit_use(st, ticket), 0);
	cr_assert_eq(tsw_state_saf_put_use(st, 1, 0, (const uint8_t *)REVERSAL_A, strlen(REVERSAL_A),
					   USE_TOKEN, 16, &id),
		     0);
	cr_assert(wait_durable(st, efd, id));
	cr_assert_eq(tsw_state_get(st, USE_TOKEN, 16, &tok), 0);
	cr_expect_eq(tok.used, 1, "spent until the issuer acknowledges the reversal");
	close_saf(st, efd);

	st = open_saf(0, &efd);
	cr_assert_eq(claim(st, 1, 2, it), 1);
	cr_expect(item_is(&it[0], 1, REVERSAL_A), "the message is intact in format 2");
	cr_assert_eq(tsw_state_get(st, USE_TOKEN, 16, &tok), 0);
	cr_expect_eq(tok.used, 1);
	cr_assert_eq(tsw_state_saf_ack(st, it[0].id), 0);
	cr_assert_eq(tsw_state_get(st, USE_TOKEN, 16, &tok), 0);
	cr_expect_eq(tok.used, 0, "the ack gave the use back");
	cr_expect_eq(tsw_state_saf_ack(st, it[0].id), -TSW_E_NOT_FOUND, "a second ack: nothing");
	tsw_state_stats(st, &ss);
	cr_expect_eq(ss.saf_uses_returned, 1);
	cr_expect_eq(ss.uses_returned, 1);
	close_saf(st, efd);

	/* the delete and the lower count were committed together */
	st = open_saf(0, &efd);
	cr_expect_eq(claim(st, 1, 2, it), 0);
	cr_assert_eq(tsw_state_get(st, USE_TOKEN, 16, &tok), 0);
	cr_expect_eq(tok.used, 0);
	close_saf(st, efd);
	free(it);
}

Test(saf, plain_reversal_ack_gives_no_use_back)
{
	struct tsw_state_token tok;
	struct tsw_state_stats ss;
	struct tsw_state *st;
	uint64_t ticket, id;
	int efd;

	st = open_saf(0, &efd);
	cr_assert_eq(tsw_state_reserve(st, USE_TOKEN, 16, 1, &ticket), 0);
	cr_assert_eq(tsw_state_commit_use(st, ticket), 0);
	id = put_str(st, 1, REVERSAL_A);
	cr_assert_eq(tsw_state_saf_ack(st, id), 0);
	cr_assert_eq(tsw_state_get(st, USE_TOKEN, 16, &tok), 0);
	cr_expect_eq(tok.used, 1);
	tsw_state_stats(st, &ss);
	cr_expect_eq(ss.saf_uses_returned, 0);
	cr_expect_eq(tsw_state_saf_put_use(st, 1, 0, (const uint8_t *)"x", 1, USE_TOKEN, 20, &id),
		     -TSW_E_BAD_INPUT, "a token above 19 digits");
	cr_expect_eq(tsw_state_saf_put_use(st, 1, 4, (const uint8_t *)"x", 1, NULL, 0, &id),
		     -TSW_E_BAD_INPUT, "an unknown flag");
	close_saf(st, efd);
}

/* Records written by format 1 (an 8-byte header) are read as they were. */
Test(saf, format_1_records_still_load)
{
	static const uint8_t key8[8] = {0, 0, 0, 0, 0, 0, 0, 5};
	uint8_t val[8 + sizeof(REVERSAL_B) - 1];
	uint32_t hdr[2] = {3, sizeof(REVERSAL_B) - 1};
	struct tsw_saf_item *it = items_alloc(2);
	struct tsw_state *st;
	int efd;

	memcpy(val, hdr, sizeof(hdr));
	memcpy(val + 8, REVERSAL_B, sizeof(REVERSAL_B) - 1);
	write_raw(key8, 8, val, sizeof(val));
	st = open_saf(0, &efd);
	cr_assert_eq(claim(st, 1, 2, it), 1);
	cr_expect(item_is(&it[0], 3, REVERSAL_B));
	cr_assert_eq(tsw_state_saf_ack(st, it[0].id), 0);
	close_saf(st, efd);
	free(it);
}

/* Records written by format 2 before it kept the put time (a 32-byte
 * header, the 40-byte one less put_ms) load with their use token. */
Test(saf, format_2_records_without_put_time_still_load)
{
	static const uint8_t key8[8] = {0, 0, 0, 0, 0, 0, 0, 6};
	struct {
		uint32_t route_key, len, flags;
		uint8_t use_token_len;
		char use_token[19];
		char msg[sizeof(REVERSAL_B) - 1];
	} rec;
	struct tsw_saf_item *it = items_alloc(2);
	struct tsw_state_token tok;
	struct tsw_state *st;
	uint64_t ticket, rev, adv;
	int efd;

	_Static_assert(sizeof(rec) == 32 + sizeof(REVERSAL_B) - 1, "the 32-byte record");
	memset(&rec, 0, sizeof(rec));
	rec.route_key = 4;
	rec.len = sizeof(REVERSAL_B) - 1;
	rec.use_token_len = 16;
	memcpy(rec.use_token, USE_TOKEN, 16);
	memcpy(rec.msg, REVERSAL_B, sizeof(rec.msg));
	write_raw(key8, 8, &rec, sizeof(rec));
	st = open_saf(0, &efd);
	cr_assert_eq(claim(st, 1, 2, it), 1, "the record was refused as corrupt");
	cr_expect(item_is(&it[0], 4, REVERSAL_B));
	tsw_state_saf_oldest(st, &rev, &adv);
	cr_expect_lt(rev, 60000, "no put time: its age counts from the load");
	cr_assert_eq(tsw_state_reserve(st, USE_TOKEN, 16, 1, &ticket), 0);
	cr_assert_eq(tsw_state_commit_use(st, ticket), 0);
	cr_assert_eq(tsw_state_saf_ack(st, it[0].id), 0);
	cr_assert_eq(tsw_state_get(st, USE_TOKEN, 16, &tok), 0);
	cr_expect_eq(tok.used, 0, "the use token was read from the record");
	close_saf(st, efd);
	free(it);
}

/* An item settled without its use (the issuer declined the reversal, or
 * it can never be sent) leaves the queue and keeps the use spent. */
Test(saf, settle_removes_the_item_and_keeps_the_use_spent)
{
	struct tsw_state_token tok;
	struct tsw_state_stats ss;
	struct tsw_state *st;
	uint64_t ticket, id;
	int efd;

	st = open_saf(0, &efd);
	cr_assert_eq(tsw_state_reserve(st, USE_TOKEN, 16, 1, &ticket), 0);
	cr_assert_eq(tsw_state_commit_use(st, ticket), 0);
	cr_assert_eq(tsw_state_saf_put_use(st, 1, 0, (const uint8_t *)REVERSAL_A, strlen(REVERSAL_A),
					   USE_TOKEN, 16, &id),
		     0);
	cr_assert_eq(tsw_state_saf_settle(st, id), 0);
	cr_expect_eq(tsw_state_saf_settle(st, id), -TSW_E_NOT_FOUND);
	cr_expect_eq(tsw_state_saf_ack(st, id), -TSW_E_NOT_FOUND);
	cr_assert_eq(tsw_state_get(st, USE_TOKEN, 16, &tok), 0);
	cr_expect_eq(tok.used, 1);
	tsw_state_stats(st, &ss);
	cr_expect_eq(ss.saf_depth, 0);
	cr_expect_eq(ss.saf_uses_returned, 0);
	close_saf(st, efd);
	st = open_saf(0, &efd);
	tsw_state_stats(st, &ss);
	cr_expect_eq(ss.saf_loaded, 0, "the delete was written");
	close_saf(st, efd);
}

/* ---- a full LMDB map ---- */

#define FULL_MAP_MB 1u	   /* LMDB takes a map this small; it fills in ~1000 puts */
#define FULL_MSG_LEN 1000u /* about 4 items per 4 KiB page */
#define FULL_MAX_PUTS 4096u
#define FULL_KEEP 3u /* durable items never acked: must survive */
#define FULL_CLAIM 64u

/* What the state's event callback saw. */
struct events {
	pthread_mutex_t lock;
	unsigned n[TSW_STATE_EV_MAX];
	uint8_t health;
	int error;
	char detail[96];
};

static void on_event(void *arg, const struct tsw_state_event *ev)
{
	struct events *e = arg;

	pthread_mutex_lock(&e->lock);
	if (ev->kind < TSW_STATE_EV_MAX)
		e->n[ev->kind]++;
	e->health = ev->health;
	e->error = ev->error;
	memcpy(e->detail, ev->detail, sizeof(e->detail));
	pthread_mutex_unlock(&e->lock);
}

static unsigned events_of(struct events *e, enum tsw_state_event_kind k)
{
	unsigned n;

	pthread_mutex_lock(&e->lock);
	n = e->n[k];
	pthread_mutex_unlock(&e->lock);
	return n;
}

static struct tsw_state_config full_config(struct events *ev)
{
	struct tsw_state_config cfg = config(FULL_MAX_PUTS);

	cfg.map_size_mb = FULL_MAP_MB;
	cfg.retry_max_ms = 200;
	cfg.on_event = on_event;
	cfg.event_arg = ev;
	return cfg;
}

static bool freeing_committed(struct tsw_state *st, void *arg)
{
	struct tsw_state_stats ss;

	tsw_state_stats(st, &ss);
	return ss.freeing_commits >= *(const uint64_t *)arg;
}

static bool held_is(struct tsw_state *st, void *arg)
{
	struct tsw_state_stats ss;

	tsw_state_stats(st, &ss);
	return ss.writer_held == *(const uint64_t *)arg;
}

static bool healthy(struct tsw_state *st, void *arg)
{
	(void)arg;
	return !tsw_state_degraded(st);
}

/* Claims every due item (the test's clock stands still: each once). */
static uint32_t claim_all(struct tsw_state *st, struct tsw_saf_item *it, uint64_t *ids,
			  uint32_t *nums, uint32_t max)
{
	uint32_t total = 0;
	size_t n;

	do {
		cr_assert_eq(tsw_state_saf_claim(st, 1, FULL_CLAIM, it, &n), 0);
		for (size_t i = 0; i < n; i++) {
			cr_assert_lt(total, max);
			cr_assert_eq(it[i].len, FULL_MSG_LEN);
			cr_assert_eq(sscanf((const char *)it[i].msg, "item-%06u:", &nums[total]),
				     1);
			ids[total++] = it[i].id;
		}
	} while (n == FULL_CLAIM);
	return total;
}

Test(saf, full_map_degrades_acks_still_commit_then_it_recovers_by_itself)
{
	struct events ev = {.lock = PTHREAD_MUTEX_INITIALIZER};
	struct tsw_state_config cfg = full_config(&ev);
	struct tsw_saf_item *it = items_alloc(FULL_CLAIM);
	uint64_t *ids = calloc(FULL_MAX_PUTS + 1, sizeof(*ids));
	uint32_t *nums = calloc(FULL_MAX_PUTS + 1, sizeof(*nums));
	bool *want = calloc(FULL_MAX_PUTS + 1, sizeof(*want));
	uint8_t msg[FULL_MSG_LEN];
	struct tsw_state_stats ss;
	struct tsw_state *st;
	uint32_t n, durable = 0, got;
	uint64_t ticket, id, one = 1;
	int efd, err;

	cr_assert(ids && nums && want);
	st = harness_open(dir, &cfg, &efd);
	n = harness_fill(st, efd, FULL_MSG_LEN, ids, FULL_MAX_PUTS);

	/* degraded, said once, with the reason */
	cr_assert_eq(tsw_state_health(st, &err), TSW_STATE_MAP_FULL);
	cr_expect_eq(err, -ENOSPC);
	cr_expect_eq(events_of(&ev, TSW_STATE_EV_DEGRADED), 1);
	cr_expect_eq(ev.health, TSW_STATE_MAP_FULL);
	cr_expect_not_null(strstr(ev.detail, "MDB_MAP_FULL"), "detail: %s", ev.detail);
	/* advices and reservations refused, counted (a stand-in or a
	 * limited use waits for a commit that cannot come) */
	harness_fill_msg(n, FULL_MSG_LEN, msg);
	cr_expect_eq(tsw_state_saf_put_use(st, 0, TSW_STATE_SAF_ADVICE, msg, sizeof(msg), NULL, 0,
					   &id),
		     -ENOSPC);
	cr_expect_eq(tsw_state_reserve(st, "4895370000000015", 16, 5, &ticket), -ENOSPC);
	tsw_state_stats(st, &ss);
	cr_expect_eq(ss.saf_refused, 1, "the advice");
	cr_expect_eq(ss.reserve_refused, 1);
	cr_expect_eq(ss.writer_degraded, 1);
	cr_expect_eq(ss.writer_health, TSW_STATE_MAP_FULL);
	/* the batch that did not fit is held, not dropped: a suffix */
	while (durable < n && tsw_state_saf_durable(st, ids[durable]))
		durable++;
	cr_assert_gt(durable, FULL_KEEP + 1);
	cr_assert_lt(durable, n, "the puts that found the map full are not durable");
	for (uint32_t i = durable; i < n; i++)
		cr_assert(!tsw_state_saf_durable(st, ids[i]), "held put %u", i);
	/* puts queued after the failed round reach the writer on its next one */
	cr_expect(harness_wait(st, efd, held_is, &(uint64_t){n - durable}),
		  "the writer holds the %u puts that are not durable", n - durable);
	cr_expect_eq(ss.saf_depth, n, "held items are still queued and claimable");
	/* a reversal is still taken: held in memory, sent from there, written
	 * once there is room (refusing it would leave the money where it is) */
	cr_assert_eq(tsw_state_saf_put(st, 0, msg, sizeof(msg), &ids[n]), 0);
	cr_expect(!tsw_state_saf_durable(st, ids[n]));
	n++;
	cr_assert_eq(claim_all(st, it, ids, nums, FULL_MAX_PUTS), n);
	for (uint32_t i = 0; i < n; i++)
		cr_assert_eq(nums[i], i, "claimed in put order");

	/* one ack frees no page, yet it commits alone while the held puts
	 * still do not fit */
	cr_assert_eq(tsw_state_saf_ack(st, ids[FULL_KEEP]), 0);
	cr_assert(harness_wait(st, efd, freeing_committed, &one), "the ack was never committed");
	cr_expect(!tsw_state_saf_durable(st, ids[durable]), "held puts still held");

	/* acks of most items free the space: the writer recovers by itself,
	 * the held puts become durable. One held put is acked before it was
	 * ever written: neither it nor its delete reaches the file. */
	for (uint32_t i = FULL_KEEP + 1; i < durable; i++)
		cr_assert_eq(tsw_state_saf_ack(st, ids[i]), 0);
	cr_assert_eq(tsw_state_saf_ack(st, ids[durable]), 0);
	cr_assert(harness_wait(st, efd, healthy, NULL), "never recovered after the acks");
	cr_expect_eq(events_of(&ev, TSW_STATE_EV_RECOVERED), 1);
	cr_expect_eq(tsw_state_health(st, &err), TSW_STATE_HEALTHY);
	cr_expect_eq(err, 0);
	for (uint32_t i = durable + 1; i < n; i++)
		cr_assert(wait_durable(st, efd, ids[i]), "held put %u written after recovery", i);
	/* advices accepted again */
	harness_fill_msg(n, FULL_MSG_LEN, msg);
	cr_assert_eq(tsw_state_saf_put_use(st, 0, TSW_STATE_SAF_ADVICE, msg, sizeof(msg), NULL, 0,
					   &id),
		     0);
	cr_assert(wait_durable(st, efd, id));
	cr_assert_eq(tsw_state_reserve(st, "4895370000000015", 16, 5, &ticket), 0);
	cr_assert_eq(tsw_state_release(st, ticket), 0);
	tsw_state_stats(st, &ss);
	cr_expect_eq(ss.writer_held, 0);
	cr_expect_eq(ss.writer_health, TSW_STATE_HEALTHY);
	cr_expect_eq(ss.writer_degraded, 1);
	cr_expect_geq(ss.freeing_commits, 1);
	close_saf(st, efd);
	cr_expect_eq(events_of(&ev, TSW_STATE_EV_UNWRITTEN), 0);

	/* nothing durable is lost, nothing acked comes back */
	for (uint32_t i = 0; i < FULL_KEEP; i++)
		want[i] = true;
	for (uint32_t i = durable + 1; i <= n; i++)
		want[i] = true; /* the held puts not acked, and the put after recovery */
	st = harness_open(dir, &cfg, &efd);
	tsw_state_stats(st, &ss);
	got = claim_all(st, it, ids, nums, FULL_MAX_PUTS + 1);
	cr_expect_eq(ss.saf_loaded, got);
	cr_expect_eq(got, FULL_KEEP + (n - durable), "items after the reopen");
	for (uint32_t i = 0; i < got; i++) {
		cr_expect(nums[i] <= n && want[nums[i]], "item %u is back", nums[i]);
		if (nums[i] <= n)
			want[nums[i]] = false;
	}
	for (uint32_t i = 0; i <= n; i++)
		cr_expect(!want[i], "item %u lost", i);
	close_saf(st, efd);
	free(want);
	free(nums);
	free(ids);
	free(it);
}

static bool durable_id(struct tsw_state *st, void *arg)
{
	return tsw_state_saf_durable(st, *(const uint64_t *)arg);
}

/* Reversals put while the map is full are held; when acks free room for
 * part of them, that part becomes durable at the next retry (oldest
 * first) while the rest keeps waiting: the writer does not wait until the
 * whole held set fits in one transaction. */
Test(saf, held_puts_become_durable_as_far_as_room_comes_back)
{
	enum { MORE = 64 };
	struct events ev = {.lock = PTHREAD_MUTEX_INITIALIZER};
	struct tsw_state_config cfg = full_config(&ev);
	uint64_t *ids = calloc(FULL_MAX_PUTS + MORE, sizeof(*ids));
	uint8_t msg[FULL_MSG_LEN];
	struct tsw_state *st;
	uint32_t n, durable = 0, held, freed, k;
	int efd;

	cr_assert_not_null(ids);
	st = harness_open(dir, &cfg, &efd);
	n = harness_fill(st, efd, FULL_MSG_LEN, ids, FULL_MAX_PUTS);
	for (k = 0; k < MORE; k++, n++) {
		harness_fill_msg(n, FULL_MSG_LEN, msg);
		cr_assert_eq(tsw_state_saf_put(st, 0, msg, sizeof(msg), &ids[n]), 0);
	}
	while (durable < n && tsw_state_saf_durable(st, ids[durable]))
		durable++;
	held = n - durable;
	cr_assert_geq(held, MORE);
	cr_assert_gt(durable, held, "room to free");
	/* acks free about a third of the room the held puts need */
	freed = held / 3;
	for (k = 0; k < freed; k++)
		cr_assert_eq(tsw_state_saf_ack(st, ids[k]), 0);
	cr_assert(harness_wait(st, efd, durable_id, &ids[durable]),
		  "the oldest held put never became durable: all or nothing");
	cr_expect(tsw_state_degraded(st), "the rest does not fit yet");
	cr_expect(!tsw_state_saf_durable(st, ids[n - 1]), "the newest held put cannot fit yet");
	close_saf(st, efd);
	free(ids);
}

/* The oldest reversal's and the oldest advice's ages (what an operator
 * watches during an issuer outage) come from the put's wall-clock time,
 * kept on disk: a restart does not make an old item young. */
Test(saf, oldest_reversal_and_advice_ages_survive_a_restart)
{
	static const uint8_t key8[8] = {0, 0, 0, 0, 0, 0, 0, 3};
	struct {
		uint32_t route_key, len, flags;
		uint8_t use_token_len;
		char use_token[19];
		uint64_t put_ms;
		char msg[sizeof(REVERSAL_A) - 1];
	} rec;
	struct timespec now;
	struct tsw_state *st;
	uint64_t rev, adv, id;
	int efd;

	_Static_assert(sizeof(rec) == 40 + sizeof(REVERSAL_A) - 1, "the format-2 record");
	clock_gettime(CLOCK_REALTIME, &now);
	memset(&rec, 0, sizeof(rec));
	rec.route_key = 1;
	rec.len = sizeof(REVERSAL_A) - 1;
	rec.flags = TSW_STATE_SAF_ADVICE;
	rec.put_ms = (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000 - 90000;
	memcpy(rec.msg, REVERSAL_A, sizeof(rec.msg));
	write_raw(key8, 8, &rec, sizeof(rec));

	st = open_saf(0, &efd);
	tsw_state_saf_oldest(st, &rev, &adv);
	cr_expect_eq(rev, 0, "no reversal queued");
	cr_expect_geq(adv, 90000, "the advice put 90 s ago is 90 s old after the restart");
	cr_expect_lt(adv, 600000);
	cr_assert_eq(tsw_state_saf_put_use(st, 1, 0, (const uint8_t *)REVERSAL_B,
					   strlen(REVERSAL_B), NULL, 0, &id),
		     0);
	tsw_state_saf_oldest(st, &rev, &adv);
	cr_expect_lt(rev, 60000, "a reversal just put");
	cr_expect_geq(adv, 90000);
	cr_assert(wait_durable(st, efd, id));
	close_saf(st, efd);

	/* the reversal's put time went to disk with it */
	st = open_saf(0, &efd);
	tsw_state_saf_oldest(st, &rev, &adv);
	cr_expect_lt(rev, 60000);
	cr_expect_geq(adv, 90000);
	close_saf(st, efd);
}
