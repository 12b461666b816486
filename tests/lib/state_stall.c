/* Stalls a state environment's group commits from outside the switch:
 *
 *	state-stall DIR
 *
 * opens the LMDB environment in DIR (the --state directory) and begins a
 * write transaction, which takes the environment's writer lock: the
 * state's writer thread then blocks in its next commit, as behind a disk
 * that does not answer. Prints "stalled" (one line, flushed) once the lock
 * is held, and keeps it until its standard input closes or reads a line;
 * then aborts the transaction (nothing written) and exits 0. Tests use it
 * to hold a limited use or an ATC undurable for as long as they choose. */
#include <errno.h>
#include <lmdb.h>
#include <stdio.h>
#include <string.h>

/* the state opens its named databases (tsw/state.h); a write transaction
 * that opens none needs no more than this */
#define STATE_STALL_MAX_DBS 8

int main(int argc, char **argv)
{
	MDB_env *env;
	MDB_txn *txn;
	char line[16];
	int rc;

	if (argc != 2) {
		fprintf(stderr, "usage: state-stall DIR\n");
		return 2;
	}
	rc = mdb_env_create(&env);
	if (rc == 0)
		rc = mdb_env_set_maxdbs(env, STATE_STALL_MAX_DBS);
	if (rc == 0)
		rc = mdb_env_open(env, argv[1], MDB_NOTLS, 0600);
	if (rc != 0) {
		fprintf(stderr, "state-stall: %s: %s\n", argv[1], mdb_strerror(rc));
		return 1;
	}
	rc = mdb_txn_begin(env, NULL, 0, &txn);
	if (rc != 0) {
		fprintf(stderr, "state-stall: write transaction: %s\n", mdb_strerror(rc));
		mdb_env_close(env);
		return 1;
	}
	printf("stalled\n");
	fflush(stdout);
	(void)!fgets(line, sizeof(line), stdin);
	mdb_txn_abort(txn);
	mdb_env_close(env);
	return 0;
}
