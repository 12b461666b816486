/* The state environment: limited-use counts (race, restart, crash) and
 * last ATC per token. Each test uses its own temporary directory. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "state_harness.h"
#include "tsw/error.h"
#include "tsw/harden.h"
#include "tsw/state.h"

#define TOKEN "4895370000000015"
#define TOKEN_LEN 16

static char dir[HARNESS_DIR_MAX];

static void make_dir(void)
{
	harness_make_dir(dir, "/tmp/tsw-state-XXXXXX");
}

static void remove_dir(void)
{
	harness_remove_dir(dir);
}

TestSuite(state, .init = make_dir, .fini = remove_dir);

/* Waits on efd until ticket is durable or the deadline passes. */
static bool wait_durable(struct tsw_state *st, int efd, uint64_t ticket)
{
	return harness_wait_durable(st, efd, tsw_state_durable, ticket);
}

static struct tsw_state *open_state(const struct tsw_state_config *cfg, int *ret_efd)
{
	return harness_open(dir, cfg, ret_efd);
}

static void close_state(struct tsw_state *st, int efd)
{
	harness_close(st, efd);
}

static uint32_t used_of(struct tsw_state *st)
{
	struct tsw_state_token t;

	cr_assert_eq(tsw_state_get(st, TOKEN, TOKEN_LEN, &t), 0);
	return t.used;
}

/* ---- the race ---- */

enum { RACE_THREADS = 8, RACE_TRIES = 64, RACE_MAX_USES = 37 };

struct racer {
	struct tsw_state *st;
	pthread_barrier_t *go;
	unsigned ok, full, other;
	uint64_t tickets[RACE_TRIES];
};

static void *race(void *arg)
{
	struct racer *r = arg;

	pthread_barrier_wait(r->go);
	for (unsigned i = 0; i < RACE_TRIES; i++) {
		uint64_t t;
		int rc = tsw_state_reserve(r->st, TOKEN, TOKEN_LEN, RACE_MAX_USES, &t);

		if (rc == 0)
			r->tickets[r->ok++] = t;
		else if (rc == -TSW_E_FULL)
			r->full++;
		else
			r->other++;
	}
	return NULL;
}

static unsigned run_race(struct tsw_state *st, struct racer *racers)
{
	pthread_t th[RACE_THREADS];
	pthread_barrier_t go;
	unsigned ok = 0;

	pthread_barrier_init(&go, NULL, RACE_THREADS);
	for (unsigned i = 0; i < RACE_THREADS; i++) {
		memset(&racers[i], 0, sizeof(racers[i]));
		racers[i].st = st;
		racers[i].go = &go;
		cr_assert_eq(pthread_create(&th[i], NULL, race, &racers[i]), 0);
	}
	for (unsigned i = 0; i < RACE_THREADS; i++) {
		pthread_join(th[i], NULL);
		cr_assert_eq(racers[i].other, 0, "no error other than FULL");
		ok += racers[i].ok;
	}
	pthread_barrier_destroy(&go);
	return ok;
}

Test(state, racing_reservations_pass_exactly_n_across_restart)
{
	struct racer racers[RACE_THREADS];
	struct tsw_state *st;
	uint64_t t;
	int efd;

	st = open_state(NULL, &efd);
	cr_assert_eq(run_race(st, racers), RACE_MAX_USES, "exactly N of %d tries pass",
		     RACE_THREADS * RACE_TRIES);
	for (unsigned i = 0; i < RACE_THREADS; i++)
		for (unsigned j = 0; j < racers[i].ok; j++)
			cr_assert(wait_durable(st, efd, racers[i].tickets[j]));
	/* approve half, leave the rest unresolved: a crash before the issuer
	 * answered */
	for (unsigned i = 0; i < RACE_THREADS; i += 2)
		for (unsigned j = 0; j < racers[i].ok; j++)
			cr_assert_eq(tsw_state_commit_use(st, racers[i].tickets[j]), 0);
	close_state(st, efd);

	st = open_state(NULL, &efd);
	cr_expect_eq(used_of(st), RACE_MAX_USES, "no use forgotten");
	cr_expect_eq(run_race(st, racers), 0, "no new use beyond N after restart");
	cr_expect_eq(tsw_state_reserve(st, TOKEN, TOKEN_LEN, RACE_MAX_USES, &t), -TSW_E_FULL);
	/* a higher limit in the vault record allows more */
	cr_expect_eq(tsw_state_reserve(st, TOKEN, TOKEN_LEN, RACE_MAX_USES + 1, &t), 0);
	close_state(st, efd);
}

Test(state, durable_reservation_survives_a_crash)
{
	struct tsw_state *st;
	struct tsw_state_stats ss;
	pid_t pid;
	int status, efd;
	uint64_t t;

	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		/* the child takes 2 of 5 uses, approves one and dies without
		 * closing: only what tsw_state_durable() promised is on disk */
		struct tsw_state *cst = NULL;
		uint64_t a, b;
		int cefd = eventfd(0, EFD_NONBLOCK);

		if (tsw_state_open(dir, NULL, &cst) != 0 || tsw_state_add_waker(cst, cefd) != 0)
			_exit(10);
		if (tsw_state_reserve(cst, TOKEN, TOKEN_LEN, 5, &a) != 0 ||
		    tsw_state_reserve(cst, TOKEN, TOKEN_LEN, 5, &b) != 0)
			_exit(11);
		if (!wait_durable(cst, cefd, a) || !wait_durable(cst, cefd, b))
			_exit(12);
		if (tsw_state_commit_use(cst, a) != 0)
			_exit(13);
		_exit(0);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status));
	cr_assert_eq(WEXITSTATUS(status), 0, "child step %d failed", WEXITSTATUS(status));

	st = open_state(NULL, &efd);
	cr_expect_eq(used_of(st), 2, "the unresolved reservation counts as used");
	for (int i = 0; i < 3; i++)
		cr_expect_eq(tsw_state_reserve(st, TOKEN, TOKEN_LEN, 5, &t), 0);
	cr_expect_eq(tsw_state_reserve(st, TOKEN, TOKEN_LEN, 5, &t), -TSW_E_FULL);
	tsw_state_stats(st, &ss);
	cr_expect_eq(ss.reserve_ok, 3);
	cr_expect_eq(ss.reserve_exhausted, 1);
	close_state(st, efd);
}

Test(state, releases_give_uses_back_and_tickets_resolve_once)
{
	struct tsw_state *st;
	struct tsw_state_token tok;
	uint64_t t[4];
	int efd;

	st = open_state(NULL, &efd);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(tsw_state_reserve(st, TOKEN, TOKEN_LEN, 3, &t[i]), 0);
	cr_assert_eq(tsw_state_reserve(st, TOKEN, TOKEN_LEN, 3, &t[3]), -TSW_E_FULL);
	cr_assert_eq(tsw_state_release(st, t[0]), 0);
	cr_assert_eq(tsw_state_release(st, t[0]), -TSW_E_NOT_FOUND, "resolved once");
	cr_assert_eq(tsw_state_commit_use(st, t[0]), -TSW_E_NOT_FOUND);
	cr_assert_eq(tsw_state_reserve(st, TOKEN, TOKEN_LEN, 3, &t[3]), 0, "use given back");
	cr_assert_eq(tsw_state_commit_use(st, t[1]), 0);
	cr_assert_eq(tsw_state_commit_use(st, t[1]), -TSW_E_NOT_FOUND);
	cr_assert_eq(tsw_state_release(st, t[2]), 0);
	cr_assert_eq(tsw_state_get(st, TOKEN, TOKEN_LEN, &tok), 0);
	cr_expect_eq(tok.used, 1);
	cr_expect_eq(tok.reserved, 1);
	cr_expect_eq(tsw_state_commit_use(st, 12345), -TSW_E_NOT_FOUND, "unknown ticket");
	cr_expect_eq(tsw_state_commit_use(st, UINT64_MAX), -TSW_E_NOT_FOUND);
	close_state(st, efd);

	/* used 1 + one unresolved = 2 after the restart; the releases stuck */
	st = open_state(NULL, &efd);
	cr_expect_eq(used_of(st), 2);
	cr_expect_eq(tsw_state_reserve(st, TOKEN, TOKEN_LEN, 3, &t[0]), 0);
	cr_expect_eq(tsw_state_reserve(st, TOKEN, TOKEN_LEN, 3, &t[0]), -TSW_E_FULL);
	close_state(st, efd);
}

Test(state, returned_use_is_reservable_again_never_below_zero_and_durable)
{
	struct tsw_state *st;
	struct tsw_state_token tok;
	uint64_t t[3];
	int efd;

	st = open_state(NULL, &efd);
	cr_assert_eq(tsw_state_return_use(st, TOKEN, TOKEN_LEN), -TSW_E_NOT_FOUND, "no counts");
	cr_assert_eq(tsw_state_return_use(st, TOKEN, 0), -TSW_E_BAD_INPUT);
	cr_assert_eq(tsw_state_return_use(st, NULL, TOKEN_LEN), -TSW_E_BAD_INPUT);
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(tsw_state_reserve(st, TOKEN, TOKEN_LEN, 2, &t[i]), 0);
		cr_assert(wait_durable(st, efd, t[i]));
		cr_assert_eq(tsw_state_commit_use(st, t[i]), 0);
	}
	cr_assert_eq(tsw_state_reserve(st, TOKEN, TOKEN_LEN, 2, &t[2]), -TSW_E_FULL);
	cr_assert_eq(tsw_state_return_use(st, TOKEN, TOKEN_LEN), 0);
	cr_expect_eq(used_of(st), 1);
	cr_assert_eq(tsw_state_reserve(st, TOKEN, TOKEN_LEN, 2, &t[2]), 0, "use given back");
	cr_assert_eq(tsw_state_reserve(st, TOKEN, TOKEN_LEN, 2, &t[0]), -TSW_E_FULL);
	/* a reservation is not a committed use: never given back */
	cr_assert_eq(tsw_state_return_use(st, TOKEN, TOKEN_LEN), 0);
	cr_assert_eq(tsw_state_return_use(st, TOKEN, TOKEN_LEN), -TSW_E_NOT_FOUND, "below 0");
	cr_assert_eq(tsw_state_get(st, TOKEN, TOKEN_LEN, &tok), 0);
	cr_expect_eq(tok.used, 0);
	cr_expect_eq(tok.reserved, 1);
	cr_assert_eq(tsw_state_commit_use(st, t[2]), 0);
	close_state(st, efd);

	/* the returns were written: one use left after the restart */
	st = open_state(NULL, &efd);
	cr_expect_eq(used_of(st), 1);
	cr_expect_eq(tsw_state_reserve(st, TOKEN, TOKEN_LEN, 2, &t[0]), 0);
	cr_expect_eq(tsw_state_reserve(st, TOKEN, TOKEN_LEN, 2, &t[1]), -TSW_E_FULL);
	close_state(st, efd);
}

static uint64_t uses_returned(const struct tsw_state *st)
{
	struct tsw_state_stats ss;

	tsw_state_stats(st, &ss);
	return ss.uses_returned;
}

/* tokswitch_state_uses_returned_total: one per use given back, none for a
 * return that gives nothing back (no counts, no committed use, bad input) */
Test(state, returned_uses_are_counted_once_each)
{
	struct tsw_state *st;
	uint64_t t[2];
	int efd;

	st = open_state(NULL, &efd);
	cr_assert_eq(tsw_state_return_use(st, TOKEN, TOKEN_LEN), -TSW_E_NOT_FOUND);
	cr_assert_eq(tsw_state_return_use(st, NULL, TOKEN_LEN), -TSW_E_BAD_INPUT);
	cr_assert_eq(uses_returned(st), 0, "nothing given back, nothing counted");
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(tsw_state_reserve(st, TOKEN, TOKEN_LEN, 5, &t[i]), 0);
		cr_assert(wait_durable(st, efd, t[i]));
	}
	cr_assert_eq(tsw_state_commit_use(st, t[0]), 0);
	cr_assert_eq(tsw_state_return_use(st, TOKEN, TOKEN_LEN), 0);
	cr_assert_eq(uses_returned(st), 1);
	/* t[1] is reserved, not committed: nothing to give back */
	cr_assert_eq(tsw_state_return_use(st, TOKEN, TOKEN_LEN), -TSW_E_NOT_FOUND);
	cr_assert_eq(uses_returned(st), 1);
	cr_assert_eq(tsw_state_commit_use(st, t[1]), 0);
	cr_assert_eq(tsw_state_return_use(st, TOKEN, TOKEN_LEN), 0);
	cr_assert_eq(tsw_state_return_use(st, TOKEN, TOKEN_LEN), -TSW_E_NOT_FOUND);
	cr_assert_eq(uses_returned(st), 2);
	close_state(st, efd);

	/* a counter of this process, not of the file */
	st = open_state(NULL, &efd);
	cr_assert_eq(uses_returned(st), 0);
	close_state(st, efd);
}

Test(state, waker_fires_after_commit)
{
	struct tsw_state *st;
	struct tsw_state_stats ss;
	uint64_t t;
	int efd;

	st = open_state(NULL, &efd);
	cr_assert_eq(tsw_state_reserve(st, TOKEN, TOKEN_LEN, 1, &t), 0);
	cr_assert(wait_durable(st, efd, t), "durable before the deadline");
	tsw_state_stats(st, &ss);
	cr_expect_geq(ss.batches, 1);
	cr_expect_geq(ss.batch_ops, 1);
	cr_expect_eq(ss.reservations, 1);
	cr_expect_eq(ss.tokens, 1);
	cr_assert_eq(tsw_state_commit_use(st, t), 0);
	tsw_state_stats(st, &ss);
	cr_expect_eq(ss.reservations, 0);
	cr_expect_eq(ss.commits, 1);
	cr_expect(tsw_state_durable(st, t), "stays durable after commit");
	cr_expect_not(tsw_state_durable(st, 0), "ticket 0 is never durable");
	close_state(st, efd);
}

/* ss's commit histogram holds one observation per group commit (failed
 * ones too), adding up to the time commit_ns_total has */
static void commit_histogram_matches(const struct tsw_state_stats *ss)
{
	const struct tsw_hist *h = &ss->commit_duration;
	uint64_t in_buckets = 0;

	for (unsigned i = 0; i < TSW_HIST_BUCKETS; i++)
		in_buckets += h->bucket[i];
	cr_assert_eq(h->count, ss->batches + ss->commit_errors, "one per group commit");
	cr_assert_eq(in_buckets, h->count);
	/* each observation's microseconds are truncated: at most 1 us short */
	cr_assert_leq(h->sum_us * 1000, ss->commit_ns_total);
	cr_assert_geq(h->sum_us + h->count, ss->commit_ns_total / 1000);
}

Test(state, commit_histogram_counts_every_group_commit)
{
	struct tsw_state *st;
	struct tsw_state_stats ss;
	uint64_t before, t;
	int efd;

	st = open_state(NULL, &efd);
	tsw_state_stats(st, &ss);
	before = ss.commit_duration.count;
	cr_assert_eq(tsw_state_reserve(st, TOKEN, TOKEN_LEN, 5, &t), 0);
	cr_assert(wait_durable(st, efd, t), "durable before the deadline");
	tsw_state_stats(st, &ss);
	cr_assert_geq(ss.batches, 1);
	cr_assert_gt(ss.commit_duration.count, before, "the reservation's commit");
	commit_histogram_matches(&ss);
	for (unsigned i = 0; i < 3; i++) {
		cr_assert_eq(tsw_state_reserve(st, TOKEN, TOKEN_LEN, 5, &t), 0);
		cr_assert(wait_durable(st, efd, t), "durable before the deadline");
	}
	tsw_state_stats(st, &ss);
	commit_histogram_matches(&ss);
	close_state(st, efd);
}

Test(state, bounded_tickets_and_tokens)
{
	struct tsw_state_config cfg = {.max_reservations = 2, .max_tokens = 1};
	struct tsw_state *st;
	struct tsw_state_stats ss;
	uint64_t t[3];
	int efd, rc = 0;
	unsigned i;

	st = open_state(&cfg, &efd);
	cr_assert_eq(tsw_state_reserve(st, TOKEN, TOKEN_LEN, 10, &t[0]), 0);
	cr_assert_eq(tsw_state_reserve(st, TOKEN, TOKEN_LEN, 10, &t[1]), 0);
	cr_assert_eq(tsw_state_reserve(st, TOKEN, TOKEN_LEN, 10, &t[2]), -EAGAIN, "tickets full");
	cr_assert_eq(tsw_state_release(st, t[0]), 0);
	cr_assert_eq(tsw_state_reserve(st, TOKEN, TOKEN_LEN, 10, &t[2]), 0, "ticket slot reused");
	cr_assert_eq(tsw_state_release(st, t[0]), -TSW_E_NOT_FOUND, "old ticket of a reused slot");

	/* the token table is bounded: distinct tokens eventually fail */
	for (i = 0; i < 100000 && rc == 0; i++) {
		char tok[20];

		snprintf(tok, sizeof(tok), "5%015u", i);
		rc = tsw_state_atc_check(st, tok, 16, 0, 1, 0, NULL);
	}
	cr_expect_eq(rc, -ENOSPC);
	tsw_state_stats(st, &ss);
	cr_expect_eq(ss.tickets_full, 1);
	cr_expect_eq(ss.table_full, 1);
	cr_expect_eq(ss.tokens, 1 + (i - 1),
		     "tokens gauge: TOKEN and every ATC insert that passed");
	cr_expect_leq(ss.tokens, ss.tokens_cap);
	close_state(st, efd);
}

Test(state, bad_arguments)
{
	struct tsw_state *st;
	struct tsw_state_config cfg = {.max_reservations = TSW_STATE_MAX_RESERVATIONS_LIMIT + 1};
	struct tsw_state_token tok;
	uint64_t t = 77;
	int efd;

	cr_expect_eq(tsw_state_open(dir, &cfg, &st), -TSW_E_BAD_INPUT);
	st = open_state(NULL, &efd);
	cr_expect_eq(tsw_state_reserve(st, TOKEN, 0, 1, &t), -TSW_E_BAD_INPUT);
	cr_expect_eq(tsw_state_reserve(st, TOKEN "0000", 20, 1, &t), -TSW_E_BAD_INPUT);
	cr_expect_eq(tsw_state_reserve(st, TOKEN, TOKEN_LEN, 0, &t), -TSW_E_BAD_INPUT);
	cr_expect_eq(t, 77, "ticket untouched on failure");
	cr_expect_eq(tsw_state_atc_check(st, TOKEN, 0, 0, 1, 0, NULL), -TSW_E_BAD_INPUT);
	cr_expect_eq(tsw_state_get(st, TOKEN, TOKEN_LEN, &tok), -TSW_E_NOT_FOUND);
	cr_expect_eq(tsw_state_add_waker(st, -1), -EBADF);
	close_state(st, efd);
}

Test(state, open_refuses_newer_format_and_bad_dir)
{
	struct tsw_state *st = NULL;
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	uint32_t version = 99;
	MDB_val k = {7, (void *)"version"}, v = {sizeof(version), &version};
	char file[96];
	int fd;

	cr_assert_eq(mdb_env_create(&env), 0);
	cr_assert_eq(mdb_env_set_maxdbs(env, 4), 0);
	cr_assert_eq(mdb_env_open(env, dir, 0, 0600), 0);
	cr_assert_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
	cr_assert_eq(mdb_dbi_open(txn, "meta", MDB_CREATE, &dbi), 0);
	cr_assert_eq(mdb_put(txn, dbi, &k, &v, 0), 0);
	cr_assert_eq(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
	cr_expect_eq(tsw_state_open(dir, NULL, &st), -TSW_E_VERSION);
	cr_expect_null(st, "untouched on failure");

	snprintf(file, sizeof(file), "%s/data.mdb/sub", dir);
	cr_expect_lt(tsw_state_open(file, NULL, &st), 0, "a path under a file");
	snprintf(file, sizeof(file), "%s/plain", dir);
	fd = open(file, O_CREAT | O_WRONLY, 0600);
	cr_assert_geq(fd, 0);
	close(fd);
	cr_expect_lt(tsw_state_open(file, NULL, &st), 0, "a file, not a directory");
	unlink(file);
	cr_expect_null(st);
}

/* The state holds counts and the reversals owed: a directory or file that
 * another user owns or group/others may write is refused, and
 * tsw_harden_check_env_dir names it; put right, it opens. */
Test(state, files_owned_by_another_user_or_open_to_others_are_refused)
{
	enum { OTHER_UID = 65534 };
	struct tsw_state *st = NULL;
	char data[160], lock[96], why[TSW_HARDEN_WHY_MAX];
	int efd;

	st = harness_open(dir, NULL, &efd);
	close_state(st, efd);
	st = NULL;
	snprintf(data, sizeof(data), "%s/data.mdb", dir);
	snprintf(lock, sizeof(lock), "%s/lock.mdb", dir);
	const struct {
		const char *path;
		mode_t bad, good;
	} modes[] = {{dir, 0770, 0700}, {dir, 0702, 0700}, {data, 0660, 0600}, {lock, 0602, 0600}};

	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		cr_assert_eq(chmod(modes[i].path, modes[i].bad), 0);
		cr_expect_eq(tsw_state_open(dir, NULL, &st), -TSW_E_TOO_OPEN, "case %zu", i);
		cr_expect_null(st);
		cr_expect_eq(tsw_harden_check_env_dir(dir, why, sizeof(why)), -TSW_E_TOO_OPEN);
		cr_expect_eq(strncmp(why, modes[i].path, strlen(modes[i].path)), 0, "case %zu: %s",
			     i, why);
		cr_expect_not_null(strstr(why, "chmod go-w"), "case %zu: %s", i, why);
		cr_assert_eq(chmod(modes[i].path, modes[i].good), 0);
	}
	/* a group-writable directory given to a first start is refused too */
	{
		char fresh[128];

		snprintf(fresh, sizeof(fresh), "%s/fresh", dir);
		cr_assert_eq(mkdir(fresh, 0700), 0);
		cr_assert_eq(chmod(fresh, 0775), 0);
		cr_expect_eq(tsw_state_open(fresh, NULL, &st), -TSW_E_TOO_OPEN);
		snprintf(data, sizeof(data), "%s/data.mdb", fresh);
		cr_expect_eq(access(data, F_OK), -1, "nothing created in it");
		rmdir(fresh);
		snprintf(data, sizeof(data), "%s/data.mdb", dir);
	}
	st = harness_open(dir, NULL, &efd);
	close_state(st, efd);
	st = NULL;
	if (geteuid() != 0)
		cr_skip_test("chown to another user needs root (the mode cases ran)");
	const char *owned[] = {dir, data, lock};

	for (size_t i = 0; i < sizeof(owned) / sizeof(owned[0]); i++) {
		cr_assert_eq(chown(owned[i], OTHER_UID, (gid_t)-1), 0);
		cr_expect_eq(tsw_state_open(dir, NULL, &st), -TSW_E_NOT_OWNER, "case %zu", i);
		cr_expect_eq(tsw_harden_check_env_dir(dir, why, sizeof(why)), -TSW_E_NOT_OWNER);
		cr_expect_eq(strncmp(why, owned[i], strlen(owned[i])), 0, "case %zu: %s", i, why);
		cr_expect_not_null(strstr(why, "owned by uid 65534"), "case %zu: %s", i, why);
		cr_assert_eq(chown(owned[i], 0, (gid_t)-1), 0);
	}
	st = harness_open(dir, NULL, &efd);
	close_state(st, efd);
}

/* ---- ATC ---- */

Test(state, atc_replay_detected_and_epoch_bump_resets)
{
	static const struct {
		uint32_t epoch, atc;
		int want;
		const char *rule;
	} steps[] = {
	    {0, 0, -TSW_E_EXISTS, "ATC 0 is never new"},
	    {0, 5, 0, "first ATC"},
	    {0, 5, -TSW_E_EXISTS, "same ATC replayed"},
	    {0, 4, -TSW_E_EXISTS, "lower ATC replayed"},
	    {0, 9, 0, "higher ATC"},
	    {1, 1, 0, "repersonalized: epoch bump resets to 0"},
	    {0, 100, -TSW_E_EXISTS, "older epoch is a replay"},
	    {1, 1, -TSW_E_EXISTS, "replay in the new epoch"},
	    {1, 2, 0, "next in the new epoch"},
	};
	struct tsw_state *st;
	struct tsw_state_token tok;
	struct tsw_state_stats ss;
	int efd;

	st = open_state(NULL, &efd);
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++)
		cr_expect_eq(
		    tsw_state_atc_check(st, TOKEN, TOKEN_LEN, steps[i].epoch, steps[i].atc, 0, NULL),
		    steps[i].want, "%s", steps[i].rule);
	tsw_state_stats(st, &ss);
	cr_expect_eq(ss.atc_ok, 4);
	cr_expect_eq(ss.atc_replayed, 5);
	close_state(st, efd);

	st = open_state(NULL, &efd);
	cr_assert_eq(tsw_state_get(st, TOKEN, TOKEN_LEN, &tok), 0);
	cr_expect_eq(tok.atc_epoch, 1);
	cr_expect_eq(tok.last_atc, 2, "last ATC survives a restart");
	cr_expect_eq(tsw_state_atc_check(st, TOKEN, TOKEN_LEN, 1, 2, 0, NULL), -TSW_E_EXISTS);
	cr_expect_eq(tsw_state_atc_check(st, TOKEN, TOKEN_LEN, 1, 3, 0, NULL), 0);
	close_state(st, efd);
}

Test(state, atc_and_uses_share_a_token_without_interference)
{
	struct tsw_state *st;
	uint64_t t;
	int efd;

	st = open_state(NULL, &efd);
	cr_assert_eq(tsw_state_atc_check(st, TOKEN, TOKEN_LEN, 0, 7, 0, NULL), 0);
	cr_assert_eq(tsw_state_reserve(st, TOKEN, TOKEN_LEN, 1, &t), 0);
	cr_assert_eq(tsw_state_commit_use(st, t), 0);
	close_state(st, efd);
	st = open_state(NULL, &efd);
	cr_expect_eq(used_of(st), 1);
	cr_expect_eq(tsw_state_atc_check(st, TOKEN, TOKEN_LEN, 0, 7, 0, NULL), -TSW_E_EXISTS);
	cr_expect_eq(tsw_state_reserve(st, TOKEN, TOKEN_LEN, 1, &t), -TSW_E_FULL);
	close_state(st, efd);
}

Test(state, atc_window_bounds_how_far_ahead_an_atc_may_be)
{
	static const struct {
		uint32_t epoch, atc;
		int want;
		const char *rule;
	} steps[] = {
	    {0, 11, -TSW_E_ATC_WINDOW, "first ATC beyond the window from 0"},
	    {0, 10, 0, "first ATC at the edge of the window"},
	    {0, 21, -TSW_E_ATC_WINDOW, "11 ahead of the last one"},
	    {0, 20, 0, "10 ahead of the last one"},
	    {0, 20, -TSW_E_EXISTS, "a replay is a replay, not a window miss"},
	    {0, 5000, -TSW_E_ATC_WINDOW, "far ahead"},
	    {1, 50, -TSW_E_ATC_WINDOW, "a new epoch counts from 0"},
	    {1, 1, 0, "after repersonalization ATC 1 is accepted"},
	    {0, 25, -TSW_E_EXISTS, "an older epoch is a replay whatever the ATC"},
	};
	struct tsw_state_token tok;
	struct tsw_state_stats ss;
	struct tsw_state *st;
	int efd;

	st = open_state(NULL, &efd);
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++)
		cr_expect_eq(tsw_state_atc_check(st, TOKEN, TOKEN_LEN, steps[i].epoch,
						 steps[i].atc, 10, NULL),
			     steps[i].want, "%s", steps[i].rule);
	tsw_state_stats(st, &ss);
	cr_expect_eq(ss.atc_ok, 3);
	cr_expect_eq(ss.atc_window, 4);
	cr_expect_eq(ss.atc_replayed, 2);
	cr_assert_eq(tsw_state_get(st, TOKEN, TOKEN_LEN, &tok), 0);
	cr_expect_eq(tok.atc_epoch, 1, "a refused ATC changes nothing");
	cr_expect_eq(tok.last_atc, 1);
	/* window 0: no bound */
	cr_expect_eq(tsw_state_atc_check(st, TOKEN, TOKEN_LEN, 1, 65535, 0, NULL), 0);
	close_state(st, efd);
}

Test(state, accepted_atc_is_durable_by_its_ticket_and_survives_a_restart)
{
	struct tsw_state_token tok;
	struct tsw_state *st;
	uint64_t t = 0, u = 0;
	int efd;

	st = open_state(NULL, &efd);
	cr_assert_eq(tsw_state_atc_check(st, TOKEN, TOKEN_LEN, 3, 40, TSW_STATE_ATC_WINDOW_DEFAULT,
					 &t),
		     0);
	cr_assert_neq(t, 0);
	cr_assert(wait_durable(st, efd, t), "the accepted ATC never became durable");
	cr_expect(tsw_state_durable(st, t), "durable stays durable");
	/* the ticket is no reservation */
	cr_expect_eq(tsw_state_commit_use(st, t), -TSW_E_NOT_FOUND);
	cr_expect_eq(tsw_state_release(st, t), -TSW_E_NOT_FOUND);
	/* a refusal leaves the ticket alone */
	u = 77;
	cr_expect_eq(tsw_state_atc_check(st, TOKEN, TOKEN_LEN, 3, 40, 10, &u), -TSW_E_EXISTS);
	cr_expect_eq(tsw_state_atc_check(st, TOKEN, TOKEN_LEN, 3, 400, 10, &u), -TSW_E_ATC_WINDOW);
	cr_expect_eq(u, 77);
	close_state(st, efd);

	st = open_state(NULL, &efd);
	cr_assert_eq(tsw_state_get(st, TOKEN, TOKEN_LEN, &tok), 0);
	cr_expect_eq(tok.atc_epoch, 3);
	cr_expect_eq(tok.last_atc, 40);
	cr_expect_eq(tsw_state_atc_check(st, TOKEN, TOKEN_LEN, 3, 40, 10, NULL), -TSW_E_EXISTS,
		     "replayed across a restart");
	cr_expect_eq(tsw_state_atc_check(st, TOKEN, TOKEN_LEN, 4, 1, 10, NULL), 0,
		     "repersonalized: ATC 1 again");
	close_state(st, efd);
}

/* The token cryptogram's counter (DE48 tag 11) is kept apart from the
 * ATC and a re-personalization (a newer atc_epoch) does not reset it: its
 * MAC names neither, so an old one must stay a replay. */
Test(state, token_cryptogram_counter_apart_from_the_atc_and_never_reset)
{
	struct tsw_state_token tok;
	struct tsw_state *st;
	uint64_t t = 0;
	int efd;

	st = open_state(NULL, &efd);
	cr_assert_eq(tsw_state_atc_check(st, TOKEN, TOKEN_LEN, 0, 5, 0, NULL), 0);
	cr_expect_eq(tsw_state_tavv_check(st, TOKEN, TOKEN_LEN, 1, 100, NULL), 0,
		     "not below the ATC's 5: a counter of its own");
	cr_expect_eq(tsw_state_tavv_check(st, TOKEN, TOKEN_LEN, 1, 100, NULL), -TSW_E_EXISTS);
	cr_expect_eq(tsw_state_atc_check(st, TOKEN, TOKEN_LEN, 0, 2, 0, NULL), -TSW_E_EXISTS,
		     "the ATC's own floor is still 5");
	cr_expect_eq(tsw_state_atc_check(st, TOKEN, TOKEN_LEN, 1, 1, 0, NULL), 0,
		     "repersonalized: ATC 1 again");
	cr_expect_eq(tsw_state_tavv_check(st, TOKEN, TOKEN_LEN, 1, 100, NULL), -TSW_E_EXISTS,
		     "the new epoch does not reset the token cryptogram's");
	cr_expect_eq(tsw_state_tavv_check(st, TOKEN, TOKEN_LEN, 200, 100, NULL), -TSW_E_ATC_WINDOW);
	cr_assert_eq(tsw_state_tavv_check(st, TOKEN, TOKEN_LEN, 2, 100, &t), 0);
	cr_assert(wait_durable(st, efd, t), "the accepted counter never became durable");
	close_state(st, efd);

	st = open_state(NULL, &efd);
	cr_assert_eq(tsw_state_get(st, TOKEN, TOKEN_LEN, &tok), 0);
	cr_expect_eq(tok.last_tavv, 2);
	cr_expect_eq(tok.last_atc, 1);
	cr_expect_eq(tok.atc_epoch, 1);
	cr_expect_eq(tsw_state_tavv_check(st, TOKEN, TOKEN_LEN, 2, 100, NULL), -TSW_E_EXISTS,
		     "replayed across a restart");
	close_state(st, efd);
}

/* A state file of a build that kept the token cryptogram's counter in the
 * ATC's: its count record has 0 where the counter is now, and the token's
 * floor starts at the shared counter's value, so none it accepted then is
 * good again. */
Test(state, a_file_from_before_starts_the_token_cryptogram_at_the_shared_counter)
{
	struct {
		uint32_t uses, atc_epoch, last_atc, zero;
	} rec = {0, 2, 7, 0};
	struct tsw_state_token tok;
	struct tsw_state *st;
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val k = {TOKEN_LEN, (void *)TOKEN}, v = {sizeof(rec), &rec};
	int efd;

	st = open_state(NULL, &efd); /* a current file, then the record as written before */
	close_state(st, efd);
	cr_assert_eq(mdb_env_create(&env), 0);
	cr_assert_eq(mdb_env_set_maxdbs(env, 4), 0);
	cr_assert_eq(mdb_env_open(env, dir, 0, 0600), 0);
	cr_assert_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
	cr_assert_eq(mdb_dbi_open(txn, "counts", 0, &dbi), 0);
	cr_assert_eq(mdb_put(txn, dbi, &k, &v, 0), 0);
	cr_assert_eq(mdb_txn_commit(txn), 0);
	mdb_env_close(env);

	st = open_state(NULL, &efd);
	cr_assert_eq(tsw_state_get(st, TOKEN, TOKEN_LEN, &tok), 0);
	cr_expect_eq(tok.last_atc, 7);
	cr_expect_eq(tok.last_tavv, 7);
	cr_expect_eq(tsw_state_tavv_check(st, TOKEN, TOKEN_LEN, 7, 100, NULL), -TSW_E_EXISTS);
	cr_expect_eq(tsw_state_tavv_check(st, TOKEN, TOKEN_LEN, 8, 100, NULL), 0);
	close_state(st, efd);
}

/* ---- a full LMDB map ---- */

#define FULL_MAP_MB 1u
#define FULL_MSG_LEN 1000u
#define FULL_MAX_PUTS 4096u

static unsigned unwritten_events;

static void count_unwritten(void *arg, const struct tsw_state_event *ev)
{
	(void)arg;
	if (ev->kind == TSW_STATE_EV_UNWRITTEN)
		__atomic_add_fetch(&unwritten_events, 1, __ATOMIC_RELAXED);
}

static bool counts_written(struct tsw_state *st, void *arg)
{
	struct tsw_state_stats ss;

	(void)arg;
	tsw_state_stats(st, &ss);
	return ss.queue_len == 0;
}

Test(state, degraded_writer_refuses_reservations_and_still_writes_uses_given_back)
{
	struct tsw_state_config cfg = {
	    .map_size_mb = FULL_MAP_MB,
	    .saf_max_entries = FULL_MAX_PUTS,
	    .retry_max_ms = 200,
	    .on_event = count_unwritten,
	};
	uint64_t *ids = calloc(FULL_MAX_PUTS, sizeof(*ids));
	struct tsw_state_stats ss;
	struct tsw_state *st;
	uint64_t t1, t2, t3;
	int efd;

	cr_assert_not_null(ids);
	st = open_state(&cfg, &efd);
	cr_assert_eq(tsw_state_reserve(st, TOKEN, TOKEN_LEN, 10, &t1), 0);
	cr_assert_eq(tsw_state_reserve(st, TOKEN, TOKEN_LEN, 10, &t2), 0);
	cr_assert(wait_durable(st, efd, t2));
	cr_assert_eq(tsw_state_commit_use(st, t1), 0);

	harness_fill(st, efd, FULL_MSG_LEN, ids, FULL_MAX_PUTS);
	cr_assert(tsw_state_degraded(st));
	cr_expect_eq(tsw_state_reserve(st, TOKEN, TOKEN_LEN, 10, &t3), -ENOSPC);
	cr_expect_eq(tsw_state_atc_check(st, TOKEN, TOKEN_LEN, 0, 1, 10, &t3), -ENOSPC,
		     "an ATC that cannot be made durable is refused at once");
	tsw_state_stats(st, &ss);
	cr_expect_eq(ss.reserve_refused, 1);
	cr_expect_eq(ss.atc_refused, 1);
	cr_expect_eq(ss.reserve_ok, 2, "a refused reservation reserves nothing");
	cr_expect_eq(used_of(st), 1);

	/* the token is on disk: its lower counts overwrite in place and are
	 * written while the puts stay held */
	cr_assert_eq(tsw_state_release(st, t2), 0);
	cr_assert(harness_wait(st, efd, counts_written, NULL), "the release was never written");
	cr_assert_eq(tsw_state_return_use(st, TOKEN, TOKEN_LEN), 0);
	cr_assert(harness_wait(st, efd, counts_written, NULL),
		  "the returned use was never written");
	cr_expect(tsw_state_degraded(st), "nothing freed space: still degraded");
	tsw_state_stats(st, &ss);
	cr_expect_gt(ss.writer_held, 0);
	cr_expect_geq(ss.freeing_commits, 2);
	close_state(st, efd);
	cr_expect_eq(__atomic_load_n(&unwritten_events, __ATOMIC_RELAXED), 1,
		     "closing with puts held says so");

	/* without those writes the reservation would count as used: 2 */
	cfg.on_event = NULL;
	st = open_state(&cfg, &efd);
	cr_expect_eq(used_of(st), 0, "the release and the returned use are on disk");
	close_state(st, efd);
	free(ids);
}
