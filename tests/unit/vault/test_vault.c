/* The token vault: storage, crypto, lifecycle and the tokvault tool. Each
 * test works in its own temp directory. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tsw/error.h"
#include "tsw/harden.h"
#include "tsw/hsm.h"
#include "tsw/luhn.h"
#include "tsw/vault.h"

#define BIN "489537"
#define PATH_CAP 512
#define OUT_CAP 65536

extern char **environ;

#define FX_DIR_CAP 64
#define FX_PATH_CAP 128

struct fixture {
	char dir[FX_DIR_CAP];
	char vault[FX_PATH_CAP];
	char key[FX_PATH_CAP];
	char csv[FX_PATH_CAP];
};

static struct fixture fx;

static void fx_setup(void)
{
	snprintf(fx.dir, sizeof(fx.dir), "/tmp/tsw-vault-XXXXXX");
	cr_assert_not_null(mkdtemp(fx.dir));
	snprintf(fx.vault, sizeof(fx.vault), "%s/vault", fx.dir);
	snprintf(fx.key, sizeof(fx.key), "%s/keys", fx.dir);
	snprintf(fx.csv, sizeof(fx.csv), "%s/in.csv", fx.dir);
}

static void fx_teardown(void)
{
	char cmd[FX_DIR_CAP + 16];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fx.dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(vault, .init = fx_setup, .fini = fx_teardown);

/* digits: prefix, then n as zero-padded body, then the Luhn digit. */
static void luhn_number(char *out, const char *prefix, unsigned len, unsigned long n)
{
	size_t p = strlen(prefix);

	memcpy(out, prefix, p);
	for (size_t i = len - 1; i > p; i--) {
		out[i - 1] = (char)('0' + n % 10);
		n /= 10;
	}
	out[len - 1] = tsw_luhn_check_digit(out, len - 1);
	out[len] = '\0';
}

static struct tsw_vault *open_new(void)
{
	struct tsw_vault *v = NULL;

	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, TSW_VAULT_CREATE, &v), 0);
	cr_assert_eq(tsw_vault_add_token_bin(v, BIN, strlen(BIN)), 0);
	return v;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
}

struct rejects {
	unsigned n;
	unsigned long lines[64];
	char reasons[64][96];
};

static void on_reject(void *ctx, unsigned long line, int err, const char *reason)
{
	struct rejects *r = ctx;

	(void)err;
	if (r->n < 64) {
		r->lines[r->n] = line;
		snprintf(r->reasons[r->n], sizeof(r->reasons[0]), "%s", reason);
	}
	r->n++;
}

static int import_text(struct tsw_vault *v, const char *text, struct rejects *rj,
		       struct tsw_vault_import_stats *st)
{
	FILE *f;
	int r;

	write_file(fx.csv, text);
	f = fopen(fx.csv, "r");
	cr_assert_not_null(f);
	r = tsw_vault_import_csv(v, f, on_reject, rj, st);
	fclose(f);
	return r;
}

static int lookup(struct tsw_vault *v, const char *token, struct tsw_token *t)
{
	struct tsw_vault_reader *rd = NULL;
	int r;

	cr_assert_eq(tsw_vault_reader_open(v, &rd), 0);
	cr_assert_eq(tsw_vault_reader_renew(rd), 0);
	r = tsw_vault_lookup(rd, token, strlen(token), t);
	tsw_vault_reader_close(rd);
	return r;
}

static void expect_pan(struct tsw_vault *v, const char *token, const char *pan)
{
	struct tsw_vault_reader *rd = NULL;
	struct tsw_token t;
	char out[TSW_PAN_MAX_DIGITS];
	int n;

	cr_assert_eq(tsw_vault_reader_open(v, &rd), 0);
	cr_assert_eq(tsw_vault_reader_renew(rd), 0);
	cr_assert_eq(tsw_vault_lookup(rd, token, strlen(token), &t), 0);
	n = tsw_vault_decrypt_pan(rd, &t, out, sizeof(out));
	cr_assert_eq(n, (int)strlen(pan), "decrypt: %d", n);
	cr_assert(memcmp(out, pan, (size_t)n) == 0);
	tsw_vault_reader_close(rd);
}

/* Runs tokvault with args, standard input from the text in_text (NULL:
 * inherited); stdout+stderr into out. Returns the exit code. */
static int tokvault_in(char *out, size_t cap, const char *const *args, const char *in_text)
{
	const char *tokvault = getenv("TSW_TOKVAULT");
	char exe[PATH_CAP], outpath[PATH_CAP], inpath[PATH_CAP];
	const char *argv[32] = {"tokvault", "--vault", fx.vault, "--key-file", fx.key};
	posix_spawn_file_actions_t fa;
	int n = 5, status = 0;
	pid_t pid;
	FILE *f;
	size_t len;

	cr_assert_not_null(tokvault, "TSW_TOKVAULT unset");
	snprintf(exe, sizeof(exe), "%s", tokvault);
	snprintf(outpath, sizeof(outpath), "%s/out.txt", fx.dir);
	for (int i = 0; args[i]; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	posix_spawn_file_actions_init(&fa);
	if (in_text) {
		snprintf(inpath, sizeof(inpath), "%s/in.txt", fx.dir);
		f = fopen(inpath, "w");
		cr_assert_not_null(f);
		cr_assert_eq(fwrite(in_text, 1, strlen(in_text), f), strlen(in_text));
		cr_assert_eq(fclose(f), 0);
		posix_spawn_file_actions_addopen(&fa, 0, inpath, O_RDONLY, 0);
	}
	posix_spawn_file_actions_addopen(&fa, 1, outpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	cr_assert_eq(posix_spawn(&pid, exe, &fa, NULL, (char *const *)argv, environ), 0);
	posix_spawn_file_actions_destroy(&fa);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	f = fopen(outpath, "r");
	cr_assert_not_null(f);
	len = fread(out, 1, cap - 1, f);
	out[len] = '\0';
	fclose(f);
	cr_assert(WIFEXITED(status));
	return WEXITSTATUS(status);
}

static int tokvault(char *out, size_t cap, const char *const *args)
{
	return tokvault_in(out, cap, args, NULL);
}

/* ---- open, keys, bad directories ---- */

Test(vault, init_creates_key_file_0600_and_reopens)
{
	struct tsw_vault *v = open_new();
	struct stat st;

	tsw_vault_close(v);
	cr_assert_eq(stat(fx.key, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600);
	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, 0, &v), 0);
	cr_assert(tsw_vault_in_token_range(v, "4895370000000001", 16));
	cr_assert_not(tsw_vault_in_token_range(v, "4111110000000001", 16));
	tsw_vault_close(v);
	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, TSW_VAULT_RDONLY, &v), 0);
	tsw_vault_close(v);
}

Test(vault, missing_dir_or_vault_is_enoent)
{
	struct tsw_vault *v = NULL;
	char empty[PATH_CAP];

	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, 0, &v), -ENOENT);
	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, TSW_VAULT_RDONLY, &v), -ENOENT);
	snprintf(empty, sizeof(empty), "%s/empty", fx.dir);
	cr_assert_eq(mkdir(empty, 0700), 0);
	cr_assert_eq(tsw_vault_open(empty, fx.key, 0, &v), -ENOENT);
	cr_assert_eq(access(fx.key, F_OK), -1, "no key file written on failure");
	cr_assert_null(v);
}

Test(vault, corrupt_data_file_is_refused_untouched)
{
	struct tsw_vault *v = open_new();
	char data[PATH_CAP];
	char junk[8192];
	struct stat before, after;
	int fd;

	tsw_vault_close(v);
	snprintf(data, sizeof(data), "%s/data.mdb", fx.vault);
	memset(junk, 0x5a, sizeof(junk));
	fd = open(data, O_WRONLY | O_TRUNC);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
	close(fd);
	stat(data, &before);
	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, 0, &v), -TSW_E_CORRUPT);
	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, TSW_VAULT_RDONLY, &v), -TSW_E_CORRUPT);
	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, TSW_VAULT_CREATE, &v), -TSW_E_CORRUPT);
	stat(data, &after);
	cr_assert_eq(before.st_size, after.st_size);
	/* an empty data file too */
	fd = open(data, O_WRONLY | O_TRUNC);
	close(fd);
	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, 0, &v), -TSW_E_CORRUPT);
}

Test(vault, another_programs_lmdb_is_never_written)
{
	struct tsw_vault *v = NULL;
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val k = {.mv_size = 3, .mv_data = (void *)"foo"};
	MDB_val d = {.mv_size = 3, .mv_data = (void *)"bar"};
	MDB_stat st;

	cr_assert_eq(mkdir(fx.vault, 0700), 0);
	cr_assert_eq(mdb_env_create(&env), 0);
	cr_assert_eq(mdb_env_open(env, fx.vault, 0, 0600), 0);
	cr_assert_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
	cr_assert_eq(mdb_dbi_open(txn, NULL, 0, &dbi), 0);
	cr_assert_eq(mdb_put(txn, dbi, &k, &d, 0), 0);
	cr_assert_eq(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
	/* no key file: refused before anything else, none created */
	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, TSW_VAULT_CREATE, &v), -TSW_E_BAD_KEY);
	cr_assert_eq(access(fx.key, F_OK), -1);
	/* a key file (from a vault elsewhere): the environment is not a vault */
	{
		char other[FX_PATH_CAP + 8];

		snprintf(other, sizeof(other), "%s/other", fx.dir);
		cr_assert_eq(tsw_vault_open(other, fx.key, TSW_VAULT_CREATE, &v), 0);
		tsw_vault_close(v);
	}
	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, TSW_VAULT_CREATE, &v), -TSW_E_CORRUPT);
	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, 0, &v), -TSW_E_CORRUPT);
	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, TSW_VAULT_RDONLY, &v), -TSW_E_CORRUPT);
	cr_assert_eq(mdb_env_create(&env), 0);
	cr_assert_eq(mdb_env_open(env, fx.vault, MDB_RDONLY, 0600), 0);
	cr_assert_eq(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
	cr_assert_eq(mdb_dbi_open(txn, NULL, 0, &dbi), 0);
	cr_assert_eq(mdb_stat(txn, dbi, &st), 0);
	cr_assert_eq(st.ms_entries, 1, "nothing added to the foreign environment");
	mdb_txn_abort(txn);
	mdb_env_close(env);
}

Test(vault, key_file_readable_by_group_or_other_is_refused)
{
	static const mode_t modes[] = {0640, 0604, 0660, 0644, 0700 | 0004};
	struct tsw_vault *v = open_new();

	tsw_vault_close(v);
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		cr_assert_eq(chmod(fx.key, modes[i]), 0);
		cr_assert_eq(tsw_vault_open(fx.vault, fx.key, 0, &v), -TSW_E_BAD_KEY, "mode %o",
			     modes[i]);
		cr_assert_eq(tsw_vault_open(fx.vault, fx.key, TSW_VAULT_RDONLY, &v),
			     -TSW_E_BAD_KEY);
	}
	cr_assert_eq(chmod(fx.key, 0400), 0);
	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, TSW_VAULT_RDONLY, &v), 0);
	tsw_vault_close(v);
}

/* Owner and mode of the vault's directory, data files and key file: each
 * problem refused, with the path and the fix in tsw_vault_check_files and
 * in tokvault's message; put right, the vault opens again. */
Test(vault, files_owned_by_another_user_or_open_to_others_are_refused)
{
	enum { OTHER_UID = 65534 };
	char data[PATH_CAP], lock[PATH_CAP], why[TSW_HARDEN_WHY_MAX], out[OUT_CAP];
	struct tsw_vault *v = open_new();
	bool root = geteuid() == 0;
	struct {
		const char *path;
		mode_t bad_mode, good_mode;
		int open_err; /* what tsw_vault_open says of the bad mode */
		const char *why;
	} modes[] = {
	    {fx.vault, 0770, 0700, -TSW_E_TOO_OPEN, "group or others may create or remove files"},
	    {fx.vault, 0703, 0700, -TSW_E_TOO_OPEN, "chmod go-w"},
	    {data, 0620, 0600, -TSW_E_TOO_OPEN, "group or others may write it"},
	    {lock, 0602, 0600, -TSW_E_TOO_OPEN, "group or others may write it"},
	    {fx.key, 0640, 0600, -TSW_E_BAD_KEY, "group or others may read or write it"},
	};

	tsw_vault_close(v);
	snprintf(data, sizeof(data), "%s/data.mdb", fx.vault);
	snprintf(lock, sizeof(lock), "%s/lock.mdb", fx.vault);
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		const char *args[] = {"stats", NULL};

		cr_assert_eq(chmod(modes[i].path, modes[i].bad_mode), 0);
		cr_assert_eq(tsw_vault_open(fx.vault, fx.key, TSW_VAULT_RDONLY, &v),
			     modes[i].open_err, "case %zu", i);
		cr_assert_eq(tsw_vault_check_files(fx.vault, fx.key, why, sizeof(why)),
			     -TSW_E_TOO_OPEN, "case %zu", i);
		cr_assert_eq(strncmp(why, modes[i].path, strlen(modes[i].path)), 0, "case %zu: %s",
			     i, why);
		cr_assert_not_null(strstr(why, modes[i].why), "case %zu: %s", i, why);
		cr_assert_eq(tokvault(out, sizeof(out), args), 1, "case %zu: %s", i, out);
		cr_assert_not_null(strstr(out, why), "case %zu: tokvault says %s", i, out);
		cr_assert_eq(chmod(modes[i].path, modes[i].good_mode), 0);
	}
	cr_assert_eq(tsw_vault_check_files(fx.vault, fx.key, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, TSW_VAULT_RDONLY, &v), 0);
	tsw_vault_close(v);
	if (!root)
		cr_skip_test("chown to another user needs root (the mode cases ran)");
	const char *owned[] = {fx.vault, data, lock, fx.key};

	for (size_t i = 0; i < sizeof(owned) / sizeof(owned[0]); i++) {
		const char *args[] = {"stats", NULL};

		cr_assert_eq(chown(owned[i], OTHER_UID, (gid_t)-1), 0);
		cr_assert_eq(tsw_vault_open(fx.vault, fx.key, 0, &v),
			     owned[i] == fx.key ? -TSW_E_BAD_KEY : -TSW_E_NOT_OWNER, "case %zu", i);
		cr_assert_eq(tsw_vault_check_files(fx.vault, fx.key, why, sizeof(why)),
			     -TSW_E_NOT_OWNER, "case %zu", i);
		cr_assert_eq(strncmp(why, owned[i], strlen(owned[i])), 0, "case %zu: %s", i, why);
		cr_assert_not_null(strstr(why, "owned by uid 65534"), "case %zu: %s", i, why);
		cr_assert_eq(tokvault(out, sizeof(out), args), 1, "case %zu: %s", i, out);
		cr_assert_not_null(strstr(out, why), "case %zu: tokvault says %s", i, out);
		cr_assert_eq(chown(owned[i], 0, (gid_t)-1), 0);
	}
	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, 0, &v), 0);
	tsw_vault_close(v);
}

Test(vault, wrong_or_malformed_or_missing_key_file_is_refused)
{
	static const char *const bad[] = {
	    "",
	    "hmac 00\npan 1 00\n",
	    "pan 1 0000000000000000000000000000000000000000000000000000000000000000\n",
	    "hmac 0000000000000000000000000000000000000000000000000000000000000000\n",
	    "hmac zz00000000000000000000000000000000000000000000000000000000000000\n"
	    "pan 1 0000000000000000000000000000000000000000000000000000000000000000\n",
	    "garbage\n",
	};
	struct tsw_vault *v = open_new();
	char other_vault[PATH_CAP], other_key[PATH_CAP];

	tsw_vault_close(v);
	/* another vault's keys */
	snprintf(other_vault, sizeof(other_vault), "%s/other", fx.dir);
	snprintf(other_key, sizeof(other_key), "%s/other.keys", fx.dir);
	cr_assert_eq(tsw_vault_open(other_vault, other_key, TSW_VAULT_CREATE, &v), 0);
	tsw_vault_close(v);
	cr_assert_eq(tsw_vault_open(fx.vault, other_key, 0, &v), -TSW_E_BAD_KEY);
	cr_assert_eq(tsw_vault_open(fx.vault, other_key, TSW_VAULT_RDONLY, &v), -TSW_E_BAD_KEY);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		unlink(other_key);
		write_file(other_key, bad[i]);
		chmod(other_key, 0600);
		cr_assert_eq(tsw_vault_open(fx.vault, other_key, 0, &v), -TSW_E_BAD_KEY, "case %zu",
			     i);
	}
	/* an existing vault never gets a fresh key file */
	unlink(other_key);
	cr_assert_eq(tsw_vault_open(fx.vault, other_key, TSW_VAULT_CREATE, &v), -TSW_E_BAD_KEY);
	cr_assert_eq(access(other_key, F_OK), -1);
}

/* ---- import, lookup, decrypt ---- */

static const char *const HEADER =
    "token,pan,pan_expiry,token_expiry,status,trid,assurance_level,pos_modes,merchant_ids,"
    "max_uses,amount_limit,currency,device_required,original_token,par,token_ref\n";

Test(vault, import_decodes_every_column)
{
	struct tsw_vault *v = open_new();
	struct tsw_vault_import_stats st;
	struct rejects rj = {0};
	char text[2048], tok1[20], tok2[20], pan[20];
	struct tsw_token t;

	luhn_number(tok1, BIN, 16, 1);
	luhn_number(tok2, BIN, 19, 2);
	luhn_number(pan, "411111", 16, 42);
	snprintf(text, sizeof(text),
		 "%s%s,%s,2912,2811,active,40010030273,25,contactless|ecommerce,"
		 "MERCH1|MERCH2:123456:5411,3,15000,840,1,,V0010013018000000000000000001,ref-1\n"
		 "%s,%s,2912,2811,suspended,,,,,,,,,,,\n",
		 HEADER, tok1, pan, tok2, pan);
	cr_assert_eq(import_text(v, text, &rj, &st), 0);
	cr_assert_eq(rj.n, 0, "rejected: %s", rj.n ? rj.reasons[0] : "");
	cr_assert_eq(st.imported, 2);
	cr_assert_eq(lookup(v, tok1, &t), 0);
	cr_assert_str_eq(t.token, tok1);
	cr_assert_eq(t.token_len, 16);
	cr_assert_eq(t.status, TSW_TOKEN_ACTIVE);
	cr_assert_str_eq(t.pan_expiry, "2912");
	cr_assert_str_eq(t.token_expiry, "2811");
	cr_assert_str_eq(t.trid, "40010030273");
	cr_assert_eq(t.assurance_level, 25);
	cr_assert_eq(t.pos_modes, (1u << TSW_POS_CONTACTLESS) | (1u << TSW_POS_ECOMMERCE));
	cr_assert_eq(t.n_merchants, 2);
	cr_assert_str_eq(t.merchants[0].merchant_id, "MERCH1         ");
	cr_assert_str_eq(t.merchants[0].acquirer_id, "");
	cr_assert_str_eq(t.merchants[1].merchant_id, "MERCH2         ");
	cr_assert_str_eq(t.merchants[1].acquirer_id, "123456");
	cr_assert_str_eq(t.merchants[1].mcc, "5411");
	cr_assert_eq(t.max_uses, 3);
	cr_assert_eq(t.amount_limit, 15000);
	cr_assert_str_eq(t.currency, "840");
	cr_assert_eq(t.device_required, 1);
	cr_assert_str_eq(t.par, "V0010013018000000000000000001");
	cr_assert_str_eq(t.token_ref, "ref-1");
	cr_assert_eq(t.key_id, 1);
	cr_assert_eq(t.atc_epoch, 0);
	cr_assert_neq(t.card_id, 0);
	expect_pan(v, tok1, pan);
	cr_assert_eq(lookup(v, tok2, &t), 0);
	cr_assert_eq(t.token_len, 19);
	cr_assert_eq(t.status, TSW_TOKEN_SUSPENDED);
	cr_assert_eq(t.pos_modes, 0);
	cr_assert_eq(t.n_merchants, 0);
	expect_pan(v, tok2, pan);
	tsw_vault_close(v);
}

struct bad_row {
	const char *row; /* %s: a good token, %p: a good PAN are substituted */
	const char *reason;
};

static const struct bad_row bad_rows[] = {
    {"4895370000000000,P,2912,2811,,,,,,,,,,,,", "token: Luhn check fails"},
    {"4111111111111111,P,2912,2811,,,,,,,,,,,,", "token: outside every token BIN range"},
    {"48953700000,P,2912,2811,,,,,,,,,,,,", "token: not 13-19 digits"},
    {"T,4111111111111112,2912,2811,,,,,,,,,,,,", "pan: Luhn check fails"},
    {"T,411111,2912,2811,,,,,,,,,,,,", "pan: not 12-19 digits"},
    {"T,P,2913,2811,,,,,,,,,,,,", "pan_expiry: not YYMM"},
    {"T,P,2912,28,,,,,,,,,,,,", "token_expiry: not YYMM"},
    {"T,P,2912,2811,frozen,,,,,,,,,,,", "status: not active|suspended|deleted"},
    {"T,P,2912,2811,,4001,,,,,,,,,,", "trid: not 11 digits"},
    {"T,P,2912,2811,,,,teleport,,,,,,,,", "pos_modes: unknown mode"},
    {"T,P,2912,2811,,,,,,-1,,,,,,", "max_uses: not a number"},
    {"T,P,2912,2811,,,,,,,,84,,,,", "currency: not 3 digits"},
    {"T,P,2912,2811,,,,,,,,,2,,,", "device_required: not 0|1"},
    {"T,P,2912,2811,,,,,,,,,,", "wrong number of fields"},
    {"T,P,2912,2811,,,,,,,,,,,,,,", "wrong number of fields"},
};

Test(vault, import_reports_bad_rows_by_line_and_keeps_good_ones)
{
	struct tsw_vault *v = open_new();
	struct tsw_vault_import_stats st;
	struct rejects rj = {0};
	char text[8192], good[20], pan[20], row[256];
	size_t n_bad = sizeof(bad_rows) / sizeof(bad_rows[0]);
	size_t off;
	struct tsw_token t;

	luhn_number(pan, "411111", 16, 7);
	off = (size_t)snprintf(text, sizeof(text), "%s", HEADER);
	/* line 2: a good row; then the bad rows; then the good row again (dup) */
	luhn_number(good, BIN, 16, 100);
	off += (size_t)snprintf(text + off, sizeof(text) - off, "%s,%s,2912,2811,,,,,,,,,,,,\n",
				good, pan);
	for (size_t i = 0; i < n_bad; i++) {
		char tok[20];
		const char *src = bad_rows[i].row;
		size_t o = 0;

		luhn_number(tok, BIN, 16, 200 + i);
		for (; *src; src++) {
			if (*src == 'T' && (src == bad_rows[i].row || src[-1] == ','))
				o += (size_t)snprintf(row + o, sizeof(row) - o, "%s", tok);
			else if (*src == 'P' && src[-1] == ',' && (src[1] == ',' || !src[1]))
				o += (size_t)snprintf(row + o, sizeof(row) - o, "%s", pan);
			else
				row[o++] = *src;
		}
		row[o] = '\0';
		off += (size_t)snprintf(text + off, sizeof(text) - off, "%s\n", row);
	}
	off += (size_t)snprintf(text + off, sizeof(text) - off, "%s,%s,2912,2811,,,,,,,,,,,,\n",
				good, pan);
	cr_assert_eq(import_text(v, text, &rj, &st), 0);
	cr_assert_eq(st.imported, 1);
	cr_assert_eq(rj.n, n_bad + 1);
	for (size_t i = 0; i < n_bad; i++) {
		cr_assert_eq(rj.lines[i], 3 + i, "reject %zu at line %lu", i, rj.lines[i]);
		cr_assert_str_eq(rj.reasons[i], bad_rows[i].reason, "line %lu", rj.lines[i]);
		cr_assert_null(strstr(rj.reasons[i], pan));
	}
	cr_assert_eq(rj.lines[n_bad], 3 + n_bad);
	cr_assert_str_eq(rj.reasons[n_bad], "token already in the vault");
	cr_assert_eq(lookup(v, good, &t), 0);
	for (size_t i = 0; i < n_bad; i++) {
		char tok[20];

		luhn_number(tok, BIN, 16, 200 + i);
		cr_assert_eq(lookup(v, tok, &t), -TSW_E_NOT_FOUND);
	}
	tsw_vault_close(v);
}

/* Peak resident memory of this process (each Criterion test runs in a
 * process of its own), bytes. */
static size_t peak_rss_bytes(void)
{
	struct rusage ru;

	cr_assert_eq(getrusage(RUSAGE_SELF, &ru), 0);
	return (size_t)ru.ru_maxrss * 1024;
}

/* A line of several MiB is refused by its number without being held in
 * memory; the rows around it land; a line of exactly 4096 bytes is
 * still parsed (and rejected for its field, not its length). */
Test(vault, import_refuses_a_line_over_4096_bytes_in_bounded_memory)
{
	enum { LONG_LINE_BYTES = 32 << 20, CHUNK = 1 << 16, GROWTH_MAX = 8 << 20 };
	struct tsw_vault *v = open_new();
	struct tsw_vault_import_stats st;
	struct rejects rj = {0};
	char tok[4][20], pan[20], chunk[CHUNK];
	struct tsw_token t;
	size_t before, head;
	FILE *f;
	int r;

	cr_assert_eq(tsw_vault_set_sort_mem(v, TSW_VAULT_SORT_MEM_MIN_BYTES), 0);
	luhn_number(pan, "411111", 16, 9);
	for (unsigned i = 0; i < 4; i++)
		luhn_number(tok[i], BIN, 16, 300 + i);
	f = fopen(fx.csv, "w");
	cr_assert_not_null(f);
	fprintf(f, "token,pan,pan_expiry,token_expiry\n%s,%s,2912,2811\n", tok[0], pan);
	/* line 3: starts like a good row, then runs on for LONG_LINE_BYTES */
	head = (size_t)fprintf(f, "%s,%s,2912,2811", tok[1], pan);
	memset(chunk, '9', sizeof(chunk));
	for (size_t n = head; n < LONG_LINE_BYTES; n += sizeof(chunk))
		cr_assert_eq(fwrite(chunk, 1, sizeof(chunk), f), sizeof(chunk));
	fprintf(f, "\n%s,%s,2912,2811\n", tok[2], pan);
	/* line 5: 4096 bytes with its newline, the last field padded */
	head = (size_t)fprintf(f, "%s,%s,2912,", tok[3], pan);
	for (size_t n = head; n < 4095; n++)
		fputc('x', f);
	fputc('\n', f);
	cr_assert_eq(fclose(f), 0);

	f = fopen(fx.csv, "r");
	cr_assert_not_null(f);
	before = peak_rss_bytes();
	r = tsw_vault_import_csv(v, f, on_reject, &rj, &st);
	cr_assert_lt(peak_rss_bytes() - before, GROWTH_MAX, "the import grew by %zu bytes",
		     peak_rss_bytes() - before);
	fclose(f);
	cr_assert_eq(r, 0);
	cr_assert_eq(st.imported, 2);
	cr_assert_eq(st.rows, 4);
	cr_assert_eq(rj.n, 2);
	cr_assert_eq(rj.lines[0], 3);
	cr_assert_str_eq(rj.reasons[0], "line longer than 4096 bytes");
	cr_assert_eq(rj.lines[1], 5);
	cr_assert_str_eq(rj.reasons[1], "token_expiry: not YYMM");
	cr_assert_eq(lookup(v, tok[0], &t), 0);
	cr_assert_eq(lookup(v, tok[1], &t), -TSW_E_NOT_FOUND);
	cr_assert_eq(lookup(v, tok[2], &t), 0);
	cr_assert_eq(lookup(v, tok[3], &t), -TSW_E_NOT_FOUND);
	tsw_vault_close(v);
}

Test(vault, import_with_bad_header_writes_nothing)
{
	static const char *const headers[] = {
	    "",
	    "token,pan,pan_expiry\n",
	    "token,pan,pan_expiry,token_expiry,colour\n",
	    "token,pan,pan_expiry,token_expiry,token\n",
	};
	struct tsw_vault *v = open_new();
	struct tsw_vault_stats s;
	char text[512], tok[20], pan[20];

	luhn_number(tok, BIN, 16, 1);
	luhn_number(pan, "411111", 16, 1);
	for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
		struct rejects rj = {0};

		snprintf(text, sizeof(text), "%s%s,%s,2912,2811\n", headers[i], tok, pan);
		cr_assert_eq(import_text(v, text, &rj, NULL), -TSW_E_BAD_INPUT, "case %zu", i);
	}
	cr_assert_eq(tsw_vault_stats(v, &s), 0);
	cr_assert_eq(s.tokens, 0);
	tsw_vault_close(v);
}

Test(vault, lookup_of_unknown_or_malformed_token_is_not_found)
{
	struct tsw_vault *v = open_new();
	struct tsw_vault_reader *rd;
	char text[512], tok[20], pan[20], other[24];
	struct tsw_token t;

	luhn_number(tok, BIN, 16, 5);
	luhn_number(pan, "411111", 16, 5);
	snprintf(text, sizeof(text), "token,pan,pan_expiry,token_expiry\n%s,%s,2912,2811\n", tok,
		 pan);
	cr_assert_eq(import_text(v, text, NULL, NULL), 0);
	cr_assert_eq(tsw_vault_reader_open(v, &rd), 0);
	cr_assert_eq(tsw_vault_lookup(rd, tok, 16, &t), -EINVAL, "reader not renewed");
	cr_assert_eq(tsw_vault_reader_renew(rd), 0);
	cr_assert_eq(tsw_vault_lookup(rd, tok, 16, &t), 0);
	luhn_number(other, BIN, 16, 6);
	cr_assert_eq(tsw_vault_lookup(rd, other, 16, &t), -TSW_E_NOT_FOUND);
	cr_assert_eq(tsw_vault_lookup(rd, "48953700000x0005", 16, &t), -TSW_E_NOT_FOUND);
	cr_assert_eq(tsw_vault_lookup(rd, "489537", 6, &t), -TSW_E_NOT_FOUND);
	/* same number with a leading zero: another token */
	snprintf(other, sizeof(other), "0%s", tok);
	cr_assert_eq(tsw_vault_lookup(rd, other, 17, &t), -TSW_E_NOT_FOUND);
	tsw_vault_reader_reset(rd);
	cr_assert_eq(tsw_vault_lookup(rd, tok, 16, &t), -EINVAL);
	tsw_vault_reader_close(rd);
	tsw_vault_close(v);
}

Test(vault, decrypt_refuses_tampering_small_buffer_and_unknown_key)
{
	struct tsw_vault *v = open_new();
	struct tsw_vault_reader *rd;
	char text[512], tok[20], pan[20], out[TSW_PAN_MAX_DIGITS];
	struct tsw_token t, bad;

	luhn_number(tok, BIN, 16, 5);
	luhn_number(pan, "411111", 16, 5);
	snprintf(text, sizeof(text), "token,pan,pan_expiry,token_expiry\n%s,%s,2912,2811\n", tok,
		 pan);
	cr_assert_eq(import_text(v, text, NULL, NULL), 0);
	cr_assert_eq(tsw_vault_reader_open(v, &rd), 0);
	cr_assert_eq(tsw_vault_reader_renew(rd), 0);
	cr_assert_eq(tsw_vault_lookup(rd, tok, 16, &t), 0);
	cr_assert_eq(tsw_vault_decrypt_pan(rd, &t, out, sizeof(out)), 16);
	cr_assert_eq(tsw_vault_decrypt_pan(rd, &t, out, 15), -TSW_E_NO_SPACE);
	for (unsigned i = 0; i < t.sealed_len; i++) {
		bad = t;
		bad.sealed_pan[i] ^= 0x01;
		cr_assert_eq(tsw_vault_decrypt_pan(rd, &bad, out, sizeof(out)), -TSW_E_INTEGRITY,
			     "byte %u", i);
	}
	bad = t; /* the token is the associated data */
	bad.token[15] = bad.token[15] == '9' ? '0' : (char)(bad.token[15] + 1);
	cr_assert_eq(tsw_vault_decrypt_pan(rd, &bad, out, sizeof(out)), -TSW_E_INTEGRITY);
	bad = t; /* and so is every other field */
	bad.max_uses++;
	cr_assert_eq(tsw_vault_decrypt_pan(rd, &bad, out, sizeof(out)), -TSW_E_INTEGRITY);
	bad = t;
	bad.key_id = 99;
	cr_assert_eq(tsw_vault_decrypt_pan(rd, &bad, out, sizeof(out)), -TSW_E_NOT_FOUND);
	tsw_vault_reader_close(rd);
	tsw_vault_close(v);
}

/* ---- lifecycle ---- */

/* Imports n tokens (bodies base..base+n-1) for one PAN. */
static void import_card(struct tsw_vault *v, const char *pan, unsigned long base, unsigned n,
			char toks[][20])
{
	char text[4096];
	size_t off = (size_t)snprintf(text, sizeof(text), "token,pan,pan_expiry,token_expiry\n");
	struct rejects rj = {0};
	struct tsw_vault_import_stats st;

	for (unsigned i = 0; i < n; i++) {
		luhn_number(toks[i], BIN, 16, base + i);
		off += (size_t)snprintf(text + off, sizeof(text) - off, "%s,%s,2912,2811\n",
					toks[i], pan);
	}
	cr_assert_eq(import_text(v, text, &rj, &st), 0);
	cr_assert_eq(rj.n, 0, "%s", rj.reasons[0]);
	cr_assert_eq(st.imported, n);
}

Test(vault, status_changes_and_unknown_token)
{
	static const struct {
		enum tsw_token_status to, was;
	} steps[] = {
	    {TSW_TOKEN_SUSPENDED, TSW_TOKEN_ACTIVE},
	    {TSW_TOKEN_ACTIVE, TSW_TOKEN_SUSPENDED},
	    {TSW_TOKEN_DELETED, TSW_TOKEN_ACTIVE},
	};
	struct tsw_vault *v = open_new();
	char toks[1][20], pan[20], other[20];
	struct tsw_token t;
	enum tsw_token_status old;

	luhn_number(pan, "411111", 16, 9);
	import_card(v, pan, 10, 1, toks);
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		cr_assert_eq(tsw_vault_set_status(v, toks[0], 16, steps[i].to, &old), 0);
		cr_assert_eq(old, steps[i].was);
		cr_assert_eq(lookup(v, toks[0], &t), 0);
		cr_assert_eq(t.status, steps[i].to);
	}
	expect_pan(v, toks[0], pan);
	luhn_number(other, BIN, 16, 11);
	cr_assert_eq(tsw_vault_set_status(v, other, 16, TSW_TOKEN_SUSPENDED, &old),
		     -TSW_E_NOT_FOUND);
	cr_assert_eq(tsw_vault_set_status(v, toks[0], 16, TSW_TOKEN_STATUS_MAX, &old),
		     -TSW_E_BAD_INPUT);
	cr_assert_eq(tsw_vault_repersonalize(v, other, 16, TSW_VAULT_PSN_NEXT, NULL, NULL),
		     -TSW_E_NOT_FOUND);
	tsw_vault_close(v);
}

Test(vault, card_suspension_covers_every_token_of_the_card)
{
	struct tsw_vault *v = open_new();
	char a[3][20], b[1][20], late[1][20], pan_a[20], pan_b[20];
	struct tsw_token t;
	size_t n = 0;

	luhn_number(pan_a, "411111", 16, 1);
	luhn_number(pan_b, "411111", 16, 2);
	import_card(v, pan_a, 100, 3, a);
	import_card(v, pan_b, 200, 1, b);
	cr_assert_eq(tsw_vault_set_card_suspended(v, pan_a, 16, true, &n), 0);
	cr_assert_eq(n, 3);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(lookup(v, a[i], &t), 0);
		cr_assert_eq(t.card_suspended, 1);
		cr_assert_eq(t.status, TSW_TOKEN_ACTIVE, "token status untouched");
	}
	cr_assert_eq(lookup(v, b[0], &t), 0);
	cr_assert_eq(t.card_suspended, 0, "other card unaffected");
	/* a token imported for a suspended card inherits the suspension */
	import_card(v, pan_a, 300, 1, late);
	cr_assert_eq(lookup(v, late[0], &t), 0);
	cr_assert_eq(t.card_suspended, 1);
	cr_assert_eq(tsw_vault_set_card_suspended(v, pan_a, 16, false, &n), 0);
	cr_assert_eq(n, 4);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(lookup(v, a[i], &t), 0);
		cr_assert_eq(t.card_suspended, 0);
	}
	{
		char unknown[20];

		luhn_number(unknown, "411111", 16, 3);
		cr_assert_eq(tsw_vault_set_card_suspended(v, unknown, 16, true, &n),
			     -TSW_E_NOT_FOUND);
		cr_assert_eq(tsw_vault_set_card_suspended(v, "41x1", 4, true, &n),
			     -TSW_E_BAD_INPUT);
	}
	tsw_vault_close(v);
}

Test(vault, reissue_relinks_every_token_of_the_card)
{
	struct tsw_vault *v = open_new();
	char a[3][20], b[1][20], pan_a[20], pan_new[20], pan_b[20];
	struct tsw_token before, t;
	size_t n = 0;

	luhn_number(pan_a, "411111", 16, 1);
	luhn_number(pan_b, "411111", 16, 2);
	luhn_number(pan_new, "411111", 16, 99);
	import_card(v, pan_a, 100, 3, a);
	import_card(v, pan_b, 200, 1, b);
	cr_assert_eq(lookup(v, a[0], &before), 0);
	cr_assert_eq(tsw_vault_update_pan(v, pan_a, 16, pan_new, 16, "3107", &n), 0);
	cr_assert_eq(n, 3);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(lookup(v, a[i], &t), 0);
		cr_assert_str_eq(t.pan_expiry, "3107");
		cr_assert_neq(t.card_id, before.card_id);
		expect_pan(v, a[i], pan_new);
	}
	expect_pan(v, b[0], pan_b);
	/* the old PAN no longer has tokens; the new one has all three */
	cr_assert_eq(tsw_vault_set_card_suspended(v, pan_a, 16, true, &n), -TSW_E_NOT_FOUND);
	cr_assert_eq(tsw_vault_set_card_suspended(v, pan_new, 16, true, &n), 0);
	cr_assert_eq(n, 3);
	cr_assert_eq(tsw_vault_update_pan(v, pan_a, 16, pan_new, 16, "3107", &n), -TSW_E_NOT_FOUND);
	cr_assert_eq(tsw_vault_update_pan(v, pan_new, 16, pan_a, 16, "3113", &n), -TSW_E_BAD_INPUT);
	tsw_vault_close(v);
}

Test(vault, token_for_token_links_the_original_in_any_row_order)
{
	struct tsw_vault *v = open_new();
	struct tsw_vault_import_stats st;
	struct rejects rj = {0};
	char text[2048], orig[20], t4t[20], orphan[20], missing[20], pan[20];
	struct tsw_token t, made;
	struct tsw_vault_row row;

	luhn_number(orig, BIN, 16, 1);
	luhn_number(t4t, BIN, 16, 2);
	luhn_number(orphan, BIN, 16, 3);
	luhn_number(missing, BIN, 16, 4);
	luhn_number(pan, "411111", 16, 1);
	/* the token-for-token row comes first */
	snprintf(text, sizeof(text),
		 "token,pan,pan_expiry,token_expiry,trid,assurance_level,token_ref,original_token\n"
		 "%s,%s,2912,2811,50110030273,10,cof-ref,%s\n"
		 "%s,%s,2912,2811,40010030273,30,wallet-ref,\n"
		 "%s,%s,2912,2811,50110030273,10,x,%s\n",
		 t4t, pan, orig, orig, pan, orphan, pan, missing);
	cr_assert_eq(import_text(v, text, &rj, &st), 0);
	cr_assert_eq(st.imported, 2);
	cr_assert_eq(rj.n, 1);
	cr_assert_eq(rj.lines[0], 4);
	cr_assert_str_eq(rj.reasons[0], "original_token: not in the vault");
	cr_assert_eq(lookup(v, t4t, &t), 0);
	cr_assert_str_eq(t.original_token, orig);
	cr_assert_str_eq(t.original_trid, "40010030273");
	cr_assert_str_eq(t.original_token_ref, "wallet-ref");
	cr_assert_eq(t.original_assurance_level, 30);
	cr_assert_str_eq(t.trid, "50110030273");
	/* the caller's second lookup reaches the original */
	cr_assert_eq(lookup(v, t.original_token, &t), 0);
	cr_assert_str_eq(t.token_ref, "wallet-ref");
	/* provisioning from a token takes the original's PAN */
	memset(&row, 0, sizeof(row));
	memcpy(row.token.original_token, orig, 17);
	memcpy(row.token.token_expiry, "3001", 5);
	cr_assert_eq(tsw_vault_provision(v, &row, NULL, 0, 16, &made), 0);
	cr_assert_str_eq(made.original_token, orig);
	cr_assert_str_eq(made.original_token_ref, "wallet-ref");
	cr_assert_str_eq(made.pan_expiry, "2912");
	expect_pan(v, made.token, pan);
	memcpy(row.token.original_token, missing, 17);
	cr_assert_eq(tsw_vault_provision(v, &row, NULL, 0, 16, &made), -TSW_E_NOT_FOUND);
	tsw_vault_close(v);
}

Test(vault, device_bindings)
{
	struct tsw_vault *v = open_new();
	struct tsw_vault_reader *rd;
	char toks[2][20], pan[20];

	luhn_number(pan, "411111", 16, 1);
	import_card(v, pan, 1, 2, toks);
	cr_assert_eq(tsw_vault_bind_device(v, toks[0], 16, "dev-1", 5), 0);
	cr_assert_eq(tsw_vault_bind_device(v, toks[0], 16, "dev-2", 5), 0);
	cr_assert_eq(tsw_vault_bind_device(v, toks[0], 16, "dev-1", 5), -TSW_E_EXISTS);
	cr_assert_eq(tsw_vault_bind_device(v, toks[0], 16, "", 0), -TSW_E_BAD_INPUT);
	cr_assert_eq(tsw_vault_bind_device(v, "4895370000000000", 16, "dev-1", 5),
		     -TSW_E_NOT_FOUND);
	cr_assert_eq(tsw_vault_reader_open(v, &rd), 0);
	cr_assert_eq(tsw_vault_reader_renew(rd), 0);
	cr_assert_eq(tsw_vault_device_bound(rd, toks[0], 16, "dev-1", 5), 1);
	cr_assert_eq(tsw_vault_device_bound(rd, toks[0], 16, "dev-2", 5), 1);
	cr_assert_eq(tsw_vault_device_bound(rd, toks[0], 16, "dev-3", 5), 0);
	cr_assert_eq(tsw_vault_device_bound(rd, toks[1], 16, "dev-1", 5), 0);
	cr_assert_eq(tsw_vault_device_bound(rd, toks[0], 16, "dev-", 4), 0);
	tsw_vault_reader_reset(rd);
	cr_assert_eq(tsw_vault_unbind_device(v, toks[0], 16, "dev-1", 5), 0);
	cr_assert_eq(tsw_vault_unbind_device(v, toks[0], 16, "dev-1", 5), -TSW_E_NOT_FOUND);
	cr_assert_eq(tsw_vault_reader_renew(rd), 0);
	cr_assert_eq(tsw_vault_device_bound(rd, toks[0], 16, "dev-1", 5), 0);
	cr_assert_eq(tsw_vault_device_bound(rd, toks[0], 16, "dev-2", 5), 1);
	tsw_vault_reader_close(rd);
	tsw_vault_close(v);
}

Test(vault, repersonalize_bumps_the_atc_epoch)
{
	struct tsw_vault *v = open_new();
	char toks[1][20], pan[20];
	struct tsw_token t;
	uint32_t epoch = 0;

	luhn_number(pan, "411111", 16, 1);
	import_card(v, pan, 1, 1, toks);
	for (uint32_t want = 1; want <= 3; want++) {
		cr_assert_eq(
		    tsw_vault_repersonalize(v, toks[0], 16, TSW_VAULT_PSN_NEXT, &epoch, NULL), 0);
		cr_assert_eq(epoch, want);
		cr_assert_eq(lookup(v, toks[0], &t), 0);
		cr_assert_eq(t.atc_epoch, want);
	}
	expect_pan(v, toks[0], pan);
	tsw_vault_close(v);
}

/* The new device's PSN: the next one by default, or the one given; PSNs
 * only go up (no earlier device's PSN again), so at 99 the token is done.
 * A refused call changes nothing. */
Test(vault, repersonalize_gives_the_new_device_a_higher_psn)
{
	struct tsw_vault *v = open_new();
	char toks[1][20], pan[20];
	struct tsw_token t;
	uint32_t epoch = 0;
	unsigned psn = 0;

	luhn_number(pan, "411111", 16, 1);
	import_card(v, pan, 1, 1, toks);
	cr_assert_eq(lookup(v, toks[0], &t), 0);
	cr_assert_eq(t.psn, 0);
	cr_assert_eq(tsw_vault_repersonalize(v, toks[0], 16, TSW_VAULT_PSN_NEXT, &epoch, &psn), 0);
	cr_assert_eq(psn, 1);
	cr_assert_eq(tsw_vault_repersonalize(v, toks[0], 16, 98, &epoch, &psn), 0);
	cr_assert_eq(psn, 98);
	cr_assert_eq(tsw_vault_repersonalize(v, toks[0], 16, TSW_VAULT_PSN_NEXT, &epoch, &psn), 0);
	cr_assert_eq(psn, 99);
	cr_assert_eq(epoch, 3);
	for (int bad = 0; bad < 6; bad++) {
		const int psns[] = {
		    TSW_VAULT_PSN_NEXT /* past 99 */, 99 /* the record's */, 1, 100, -2, 1000};

		cr_assert_eq(tsw_vault_repersonalize(v, toks[0], 16, psns[bad], &epoch, &psn),
			     -TSW_E_BAD_INPUT, "psn %d", psns[bad]);
	}
	cr_assert_eq(lookup(v, toks[0], &t), 0);
	cr_assert_eq(t.psn, 99, "refused: nothing changed");
	cr_assert_eq(t.atc_epoch, 3, "refused: nothing changed");
	expect_pan(v, toks[0], pan);
	tsw_vault_close(v);
}

Test(vault, provision_draws_unused_luhn_valid_tokens_in_range)
{
	struct tsw_vault *v = open_new();
	struct tsw_vault_row row;
	struct tsw_token t, seen[20];
	char pan[20];

	cr_assert_eq(tsw_vault_add_token_bin(v, "5300", 4), 0);
	luhn_number(pan, "411111", 16, 1);
	memset(&row, 0, sizeof(row));
	memcpy(row.pan, pan, 16);
	row.pan_len = 16;
	memcpy(row.token.pan_expiry, "2912", 5);
	memcpy(row.token.token_expiry, "2811", 5);
	for (int i = 0; i < 20; i++) {
		unsigned len = 13 + (unsigned)i % 7;
		const char *bin = i % 2 ? "5300" : BIN;

		cr_assert_eq(tsw_vault_provision(v, &row, bin, strlen(bin), len, &seen[i]), 0);
		cr_assert_eq(seen[i].token_len, len);
		cr_assert(tsw_luhn_valid(seen[i].token, len));
		cr_assert(strncmp(seen[i].token, bin, strlen(bin)) == 0);
		for (int j = 0; j < i; j++)
			cr_assert_str_neq(seen[i].token, seen[j].token);
		expect_pan(v, seen[i].token, pan);
	}
	cr_assert_eq(tsw_vault_provision(v, &row, "777", 3, 16, &t), -TSW_E_OUT_OF_RANGE);
	cr_assert_eq(tsw_vault_provision(v, &row, BIN, strlen(BIN), 12, &t), -TSW_E_BAD_INPUT);
	row.pan[3] ^= 1; /* Luhn broken */
	cr_assert_eq(tsw_vault_provision(v, &row, BIN, strlen(BIN), 16, &t), -TSW_E_BAD_INPUT);
	tsw_vault_close(v);
}

Test(vault, read_only_vault_refuses_every_write)
{
	struct tsw_vault *v = open_new();
	struct tsw_vault_batch *b;
	struct tsw_vault_row row;
	struct tsw_token t;
	char toks[1][20], pan[20];
	size_t n;

	luhn_number(pan, "411111", 16, 1);
	import_card(v, pan, 1, 1, toks);
	tsw_vault_close(v);
	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, TSW_VAULT_RDONLY, &v), 0);
	memset(&row, 0, sizeof(row));
	cr_assert_eq(tsw_vault_set_status(v, toks[0], 16, TSW_TOKEN_DELETED, NULL), -EROFS);
	cr_assert_eq(tsw_vault_set_card_suspended(v, pan, 16, true, &n), -EROFS);
	cr_assert_eq(tsw_vault_update_pan(v, pan, 16, pan, 16, "3001", &n), -EROFS);
	cr_assert_eq(tsw_vault_bind_device(v, toks[0], 16, "d", 1), -EROFS);
	cr_assert_eq(tsw_vault_unbind_device(v, toks[0], 16, "d", 1), -EROFS);
	cr_assert_eq(tsw_vault_repersonalize(v, toks[0], 16, TSW_VAULT_PSN_NEXT, NULL, NULL),
		     -EROFS);
	cr_assert_eq(tsw_vault_provision(v, &row, NULL, 0, 16, &t), -EROFS);
	cr_assert_eq(tsw_vault_add_token_bin(v, "4", 1), -EROFS);
	cr_assert_eq(tsw_vault_batch_begin(v, 0, NULL, NULL, &b), -EROFS);
	cr_assert_eq(tsw_vault_rekey(v, NULL, NULL), -EROFS);
	cr_assert_eq(lookup(v, toks[0], &t), 0);
	cr_assert_eq(t.status, TSW_TOKEN_ACTIVE);
	tsw_vault_close(v);
}

Test(vault, rekey_reencrypts_everything_and_readers_follow)
{
	struct tsw_vault *v = open_new(), *ro;
	struct tsw_vault_reader *rd;
	struct tsw_vault_stats s;
	char toks[5][20], pan[20], out[TSW_PAN_MAX_DIGITS];
	struct tsw_token t;
	uint32_t id = 0;
	uint64_t n = 0;
	struct stat st;

	luhn_number(pan, "411111", 16, 1);
	import_card(v, pan, 1, 5, toks);
	/* a reader in another handle, opened with the old key file */
	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, TSW_VAULT_RDONLY, &ro), 0);
	cr_assert_eq(tsw_vault_reader_open(ro, &rd), 0);
	cr_assert_eq(tsw_vault_rekey(v, &id, &n), 0);
	cr_assert_eq(id, 2);
	cr_assert_eq(n, 5);
	cr_assert_eq(stat(fx.key, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600);
	cr_assert_eq(tsw_vault_stats(v, &s), 0);
	cr_assert_eq(s.current_key_id, 2);
	cr_assert_eq(s.n_keys, 2);
	cr_assert_eq(s.by_key[1], 5);
	for (int i = 0; i < 5; i++)
		expect_pan(v, toks[i], pan);
	cr_assert_eq(tsw_vault_reader_renew(rd), 0);
	cr_assert_eq(tsw_vault_lookup(rd, toks[0], 16, &t), 0);
	cr_assert_eq(t.key_id, 2);
	cr_assert_eq(tsw_vault_decrypt_pan(rd, &t, out, sizeof(out)), 16);
	cr_assert(memcmp(out, pan, 16) == 0);
	tsw_vault_reader_close(rd);
	tsw_vault_close(ro);
	tsw_vault_close(v);
	/* the rewritten key file still opens the vault */
	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, 0, &v), 0);
	expect_pan(v, toks[4], pan);
	tsw_vault_close(v);
}

Test(vault, stats_count_tokens_cards_and_bindings)
{
	struct tsw_vault *v = open_new();
	struct tsw_vault_stats s;
	char a[3][20], b[2][20], pan_a[20], pan_b[20];

	luhn_number(pan_a, "411111", 16, 1);
	luhn_number(pan_b, "411111", 16, 2);
	import_card(v, pan_a, 1, 3, a);
	import_card(v, pan_b, 10, 2, b);
	cr_assert_eq(tsw_vault_set_status(v, a[0], 16, TSW_TOKEN_DELETED, NULL), 0);
	cr_assert_eq(tsw_vault_set_card_suspended(v, pan_b, 16, true, NULL), 0);
	cr_assert_eq(tsw_vault_bind_device(v, a[1], 16, "d1", 2), 0);
	cr_assert_eq(tsw_vault_stats(v, &s), 0);
	cr_assert_eq(s.tokens, 5);
	cr_assert_eq(s.by_status[TSW_TOKEN_ACTIVE], 4);
	cr_assert_eq(s.by_status[TSW_TOKEN_DELETED], 1);
	cr_assert_eq(s.cards, 2);
	cr_assert_eq(s.suspended_cards, 1);
	cr_assert_eq(s.card_suspended_tokens, 2);
	cr_assert_eq(s.device_bindings, 1);
	cr_assert_eq(s.n_bins, 1);
	cr_assert_str_eq(s.bins[0], BIN);
	tsw_vault_close(v);
}

/* ---- security: nothing of a PAN in the files ---- */

static bool file_contains(const char *path, const void *needle, size_t len)
{
	FILE *f = fopen(path, "rb");
	static char buf[1 << 22];
	size_t n;
	bool found = false;

	cr_assert_not_null(f);
	n = fread(buf, 1, sizeof(buf), f);
	cr_assert(feof(f), "file larger than the scan buffer");
	fclose(f);
	for (size_t i = 0; !found && i + len <= n; i++)
		found = memcmp(buf + i, needle, len) == 0;
	return found;
}

Test(vault, no_pan_or_plain_pan_hash_in_the_lmdb_files)
{
	enum { N_PANS = 41 }; /* the last one arrives by update-pan */
	struct tsw_vault *v = open_new();
	char text[8192], pans[N_PANS][20], tok[20];
	size_t off = (size_t)snprintf(text, sizeof(text), "token,pan,pan_expiry,token_expiry\n");
	const char *files[] = {"data.mdb", "lock.mdb"};

	for (int i = 0; i < N_PANS - 1; i++) {
		luhn_number(pans[i], i % 2 ? "411111" : "5500", 13 + i % 7,
			    1000003ul * (unsigned)i);
		luhn_number(tok, BIN, 16, (unsigned long)i);
		off += (size_t)snprintf(text + off, sizeof(text) - off, "%s,%s,2912,2811\n", tok,
					pans[i]);
	}
	cr_assert_eq(import_text(v, text, NULL, NULL), 0);
	cr_assert_eq(tsw_vault_set_card_suspended(v, pans[0], strlen(pans[0]), true, NULL), 0);
	luhn_number(pans[N_PANS - 1], "377777", 15, 123456);
	cr_assert_eq(
	    tsw_vault_update_pan(v, pans[1], strlen(pans[1]), pans[N_PANS - 1], 15, "3101", NULL),
	    0);
	cr_assert_eq(tsw_vault_rekey(v, NULL, NULL), 0);
	tsw_vault_close(v);
	for (size_t f = 0; f < 2; f++) {
		char path[PATH_CAP];

		snprintf(path, sizeof(path), "%s/%s", fx.vault, files[f]);
		for (int i = 0; i < N_PANS; i++) {
			uint8_t md[SHA256_DIGEST_LENGTH];
			char hex[2 * SHA256_DIGEST_LENGTH + 1];
			size_t len = strlen(pans[i]);

			SHA256((const uint8_t *)pans[i], len, md);
			for (int k = 0; k < SHA256_DIGEST_LENGTH; k++) {
				hex[2 * k] = "0123456789abcdef"[md[k] >> 4];
				hex[2 * k + 1] = "0123456789abcdef"[md[k] & 15];
			}
			hex[2 * SHA256_DIGEST_LENGTH] = '\0';
			cr_assert_not(file_contains(path, pans[i], len), "PAN %d in %s", i,
				      files[f]);
			cr_assert_not(file_contains(path, md, sizeof(md)), "SHA-256 %d", i);
			cr_assert_not(file_contains(path, md, 8), "SHA-256 prefix %d", i);
			cr_assert_not(file_contains(path, hex, 16), "SHA-256 hex %d", i);
			for (int k = 0; hex[k]; k++)
				hex[k] = (char)(hex[k] >= 'a' ? hex[k] - 32 : hex[k]);
			cr_assert_not(file_contains(path, hex, 16), "SHA-256 HEX %d", i);
		}
	}
	/* and the scan itself can find things: the token digits are not there
	 * either (integer keys), but the BIN metadata is */
	{
		char path[PATH_CAP];

		snprintf(path, sizeof(path), "%s/data.mdb", fx.vault);
		cr_assert(file_contains(path, BIN, strlen(BIN)));
	}
}

/* ---- concurrency: a reader held open across writes of other processes ---- */

Test(vault, reader_sees_a_write_from_another_process_at_next_renew)
{
	struct tsw_vault *v = open_new(), *ro;
	struct tsw_vault_reader *rd;
	char toks[2][20], pan[20], out[OUT_CAP];
	struct tsw_token t;
	pid_t pid;
	int status;

	luhn_number(pan, "411111", 16, 1);
	import_card(v, pan, 1, 2, toks);
	tsw_vault_close(v);
	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, TSW_VAULT_RDONLY, &ro), 0);
	cr_assert_eq(tsw_vault_reader_open(ro, &rd), 0);
	cr_assert_eq(tsw_vault_reader_renew(rd), 0);
	cr_assert_eq(tsw_vault_lookup(rd, toks[0], 16, &t), 0);
	cr_assert_eq(t.status, TSW_TOKEN_ACTIVE);
	/* the tool suspends while our read transaction is open */
	const char *args[] = {"suspend", toks[0], NULL};
	cr_assert_eq(tokvault(out, sizeof(out), args), 0, "%s", out);
	cr_assert_eq(tsw_vault_lookup(rd, toks[0], 16, &t), 0);
	cr_assert_eq(t.status, TSW_TOKEN_ACTIVE, "same snapshot until renewed");
	cr_assert_eq(tsw_vault_reader_renew(rd), 0);
	cr_assert_eq(tsw_vault_lookup(rd, toks[0], 16, &t), 0);
	cr_assert_eq(t.status, TSW_TOKEN_SUSPENDED);
	/* a forked writer with its own handle; also adds a token range */
	tsw_vault_reader_reset(rd);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct tsw_vault *w = NULL;
		int r = tsw_vault_open(fx.vault, fx.key, 0, &w);

		if (r == 0)
			r = tsw_vault_set_card_suspended(w, pan, 16, true, NULL);
		if (r == 0)
			r = tsw_vault_add_token_bin(w, "5300", 4);
		tsw_vault_close(w);
		_exit(r == 0 ? 0 : 1);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	cr_assert_not(tsw_vault_in_token_range(ro, "5300000000000001", 16));
	cr_assert_eq(tsw_vault_reader_renew(rd), 0);
	cr_assert(tsw_vault_in_token_range(ro, "5300000000000001", 16));
	cr_assert_eq(tsw_vault_lookup(rd, toks[1], 16, &t), 0);
	cr_assert_eq(t.card_suspended, 1);
	tsw_vault_reader_close(rd);
	tsw_vault_close(ro);
}

/* ---- the tokvault tool ---- */

Test(vault, tokvault_verbs_print_changes_and_fail_on_unknown_token)
{
	char out[OUT_CAP], toks[2][20], pan[20], unknown[20];
	struct tsw_vault *v;

	{
		const char *args[] = {"init", "--token-bin", BIN, NULL};
		cr_assert_eq(tokvault(out, sizeof(out), args), 0, "%s", out);
	}
	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, 0, &v), 0);
	luhn_number(pan, "411111", 16, 77);
	import_card(v, pan, 1, 2, toks);
	tsw_vault_close(v);
	luhn_number(unknown, BIN, 16, 999);
	struct {
		const char *args[8];
		int rc;
		const char *want;
	} cases[] = {
	    {{"show", toks[0]}, 0, "pan=411111******"},
	    {{"suspend", toks[0]}, 0, "active -> suspended"},
	    {{"resume", toks[0]}, 0, "suspended -> active"},
	    {{"delete", toks[1]}, 0, "active -> deleted"},
	    {{"suspend", unknown}, 1, "not found"},
	    {{"resume", unknown}, 1, "not found"},
	    {{"delete", unknown}, 1, "not found"},
	    {{"show", unknown}, 1, "not found"},
	    {{"repersonalize", toks[0]}, 0, "atc_epoch=1"},
	    {{"repersonalize", unknown}, 1, "not found"},
	    {{"bind-device", toks[0], "phone-1"}, 0, "bound"},
	    {{"bind-device", unknown, "phone-1"}, 1, "not found"},
	    {{"unbind-device", toks[0], "phone-1"}, 0, "unbound"},
	    {{"unbind-device", toks[0], "phone-1"}, 1, "not found"},
	    {{"suspend-card", "--pan", pan}, 0, "2 tokens follow"},
	    {{"resume-card", "--pan", pan}, 0, "2 tokens follow"},
	    {{"suspend-card", "--pan", "4111111111111111"}, 1, "not found"},
	    {{"update-pan", "--pan", pan, "--new-pan", "4111111111111111", "--new-expiry", "3012"},
	     0,
	     "2 tokens relinked"},
	    {{"update-pan", "--pan", pan, "--new-pan", "4111111111111111", "--new-expiry", "3012"},
	     1,
	     "not found"},
	    {{"provision", "--pan", "4111111111111111", "--pan-expiry", "3012"}, 0, BIN},
	    {{"provision", "--from-token", unknown}, 1, "not found"},
	    {{"stats"}, 0, "tokens=3"},
	    {{"rekey"}, 0, "new key id=2"},
	    {{"suspend"}, 2, "needs one TOKEN"},
	    {{"frobnicate"}, 2, "unknown verb"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = tokvault(out, sizeof(out), cases[i].args);

		cr_assert_eq(rc, cases[i].rc, "case %zu (%s): rc %d: %s", i, cases[i].args[0], rc,
			     out);
		cr_assert_not_null(strstr(out, cases[i].want), "case %zu: %s", i, out);
		cr_assert_null(strstr(out, pan), "case %zu prints the PAN", i);
		cr_assert_null(strstr(out, "4111111111111111"), "case %zu prints the PAN", i);
	}
}

/* "--pan -" / "--new-pan -": the PANs come from standard input, one line
 * each in the order of the options, and never appear in the output. */
Test(vault, tokvault_pan_from_stdin_relinks_and_suspends_card)
{
	char out[OUT_CAP], toks[2][20], pan[20], nw[20], in[64], in_crlf[64], in_rev[64];
	struct tsw_vault *v;

	{
		const char *args[] = {"init", "--token-bin", BIN, NULL};
		cr_assert_eq(tokvault(out, sizeof(out), args), 0, "%s", out);
	}
	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, 0, &v), 0);
	luhn_number(pan, "411111", 16, 77);
	luhn_number(nw, "411111", 16, 78);
	import_card(v, pan, 1, 2, toks);
	tsw_vault_close(v);
	snprintf(in, sizeof(in), "%s\n%s\n", pan, nw);
	snprintf(in_crlf, sizeof(in_crlf), "%s\r\n", nw);
	snprintf(in_rev, sizeof(in_rev), "%s\n%s", pan, nw); /* no final newline */
	struct {
		const char *args[8];
		const char *in;
		int rc;
		const char *want;
	} cases[] = {
	    {{"suspend-card", "--pan", "-"}, pan, 0, "card 411111******"},
	    {{"suspend-card", "--pan", "-"}, in, 0, "suspended: 2 tokens follow"},
	    {{"show", toks[0]}, "", 0, "card_suspended=1"},
	    {{"resume-card", "--pan", "-"}, in, 0, "resumed: 2 tokens follow"},
	    {{"show", toks[1]}, "", 0, "card_suspended=0"},
	    /* order follows the options: --new-pan first reads the first line */
	    {{"update-pan", "--new-pan", "-", "--new-expiry", "3012", "--pan", "-"},
	     in,
	     1,
	     "not found"},
	    {{"update-pan", "--pan", "-", "--new-pan", "-", "--new-expiry", "3012"},
	     in,
	     0,
	     "2 tokens relinked"},
	    {{"suspend-card", "--pan", "-"}, in_crlf, 0, "2 tokens follow"},
	    {{"update-pan", "--pan", nw, "--new-pan", "-", "--new-expiry", "3101"},
	     in,
	     0,
	     "2 tokens relinked"},
	    {{"update-pan", "--pan", "-", "--new-pan", "-", "--new-expiry", "3102"},
	     in_rev,
	     0,
	     "2 tokens relinked"},
	    {{"suspend-card", "--pan", "-"}, "", 1, "--pan -: no line for it on standard input"},
	    {{"resume-card", "--pan", "-"}, "\n", 1, "--pan -: empty line on standard input"},
	    {{"update-pan", "--pan", "-", "--new-pan", "-", "--new-expiry", "3012"},
	     pan,
	     1,
	     "--new-pan -: no line for it on standard input"},
	    {{"suspend-card", "--pan", "-"},
	     "41111111111111111111111111111111111111111111111111111111\n",
	     1,
	     "line on standard input too long"},
	    {{"suspend-card"}, "", 2, "needs --pan PAN|-"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = tokvault_in(out, sizeof(out), cases[i].args, cases[i].in);

		cr_assert_eq(rc, cases[i].rc, "case %zu (%s): rc %d: %s", i, cases[i].args[0], rc,
			     out);
		cr_assert_not_null(strstr(out, cases[i].want), "case %zu: %s", i, out);
		cr_assert_null(strstr(out, pan), "case %zu prints the PAN", i);
		cr_assert_null(strstr(out, nw), "case %zu prints the new PAN", i);
	}
	/* the last relink (read without a final newline) stuck */
	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, TSW_VAULT_RDONLY, &v), 0);
	expect_pan(v, toks[0], nw);
	expect_pan(v, toks[1], nw);
	tsw_vault_close(v);
}

/* provision --pan -: the PAN comes from standard input (never the
 * command line), the token printed decrypts to it, and neither output
 * stream carries it. */
Test(vault, tokvault_provision_reads_pan_from_stdin)
{
	char out[OUT_CAP], pan[20], in[64], tok[TSW_TOKEN_MAX_DIGITS + 1];
	struct tsw_vault *v;
	size_t n = 0;

	{
		const char *args[] = {"init", "--token-bin", BIN, NULL};
		cr_assert_eq(tokvault(out, sizeof(out), args), 0, "%s", out);
	}
	luhn_number(pan, "411111", 16, 4242);
	snprintf(in, sizeof(in), "%s\n", pan);
	{
		const char *args[] = {"provision", "--pan", "-", "--pan-expiry", "3012", NULL};

		cr_assert_eq(tokvault_in(out, sizeof(out), args, in), 0, "%s", out);
	}
	cr_assert_null(strstr(out, pan), "the output holds the PAN: %s", out);
	cr_assert_not_null(strstr(out, "provisioned token"), "%s", out);
	/* stdout (the token) and stderr share out: the token is the line of digits */
	for (const char *l = out; l && !n; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		while (n < sizeof(tok) - 1 && l[n] >= '0' && l[n] <= '9') {
			tok[n] = l[n];
			n++;
		}
		if (l[n] != '\n')
			n = 0;
	}
	tok[n] = '\0';
	cr_assert_eq(strncmp(tok, BIN, strlen(BIN)), 0, "token %s: %s", tok, out);
	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, TSW_VAULT_RDONLY, &v), 0);
	expect_pan(v, tok, pan);
	tsw_vault_close(v);
	struct {
		const char *in;
		const char *want;
	} bad[] = {
	    {"", "--pan -: no line for it on standard input"},
	    {"\n", "--pan -: empty line on standard input"},
	    {"41111111111111111111111111111111111111111111111111111111\n",
	     "line on standard input too long"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *args[] = {"provision", "--pan", "-", "--pan-expiry", "3012", NULL};

		cr_assert_eq(tokvault_in(out, sizeof(out), args, bad[i].in), 1, "case %zu: %s", i,
			     out);
		cr_assert_not_null(strstr(out, bad[i].want), "case %zu: %s", i, out);
	}
	{
		const char *args[] = {"provision", "--help", NULL};

		cr_assert_eq(tokvault(out, sizeof(out), args), 0, "%s", out);
		cr_assert_not_null(strstr(out, "--pan PAN|-"), "%s", out);
		cr_assert_not_null(strstr(out, "standard input"), "%s", out);
	}
}

Test(vault, tokvault_help_on_every_verb)
{
	static const char *const verbs[] = {
	    "init",	     "import",	    "provision",   "show",
	    "suspend",	     "resume",	    "delete",	   "update-pan",
	    "suspend-card",  "resume-card", "bind-device", "unbind-device",
	    "repersonalize", "stats",	    "rekey",	   "demo"};
	char out[OUT_CAP];

	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
		const char *args[] = {verbs[i], "--help", NULL};

		cr_assert_eq(tokvault(out, sizeof(out), args), 0, "%s", verbs[i]);
		cr_assert_not_null(strstr(out, "usage: tokvault"), "%s: %s", verbs[i], out);
		cr_assert_not_null(strstr(out, verbs[i]));
	}
	{
		const char *args[] = {"--help", NULL};

		cr_assert_eq(tokvault(out, sizeof(out), args), 0);
		cr_assert_not_null(strstr(out, "repersonalize"));
		cr_assert_not_null(strstr(out, "--pan -"), "%s", out);
	}
	static const char *const pan_verbs[] = {"update-pan", "suspend-card", "resume-card",
						"provision"};

	for (size_t i = 0; i < sizeof(pan_verbs) / sizeof(pan_verbs[0]); i++) {
		const char *args[] = {pan_verbs[i], "--help", NULL};

		cr_assert_eq(tokvault(out, sizeof(out), args), 0, "%s", pan_verbs[i]);
		cr_assert_not_null(strstr(out, "standard input"), "%s: %s", pan_verbs[i], out);
		cr_assert_not_null(strstr(out, "production"), "%s: %s", pan_verbs[i], out);
	}
}

Test(vault, tokvault_import_reports_lines_and_exits_nonzero)
{
	char out[OUT_CAP], text[1024], tok[20], pan[20], bad[20];

	{
		const char *args[] = {"init", "--token-bin", BIN, NULL};
		cr_assert_eq(tokvault(out, sizeof(out), args), 0, "%s", out);
	}
	luhn_number(tok, BIN, 16, 1);
	luhn_number(bad, BIN, 16, 2);
	bad[15] = bad[15] == '9' ? '0' : (char)(bad[15] + 1);
	luhn_number(pan, "411111", 16, 1);
	snprintf(text, sizeof(text),
		 "token,pan,pan_expiry,token_expiry\n%s,%s,2912,2811\n"
		 "%s,%s,2912,2811\n",
		 tok, pan, bad, pan);
	write_file(fx.csv, text);
	{
		const char *args[] = {"import", fx.csv, NULL};

		cr_assert_eq(tokvault(out, sizeof(out), args), 1, "%s", out);
		cr_assert_not_null(strstr(out, "line 3: token: Luhn check fails"), "%s", out);
		cr_assert_not_null(strstr(out, "imported=1 rejected=1"), "%s", out);
		cr_assert_null(strstr(out, pan));
	}
	{
		const char *args[] = {"show", tok, NULL};

		cr_assert_eq(tokvault(out, sizeof(out), args), 0, "%s", out);
	}
	{
		const char *args[] = {"import", "/nonexistent.csv", NULL};

		cr_assert_eq(tokvault(out, sizeof(out), args), 1, "%s", out);
	}
	{
		char key[PATH_CAP];
		const char *args[] = {"stats", NULL};

		snprintf(key, sizeof(key), "%s", fx.key);
		chmod(key, 0644);
		cr_assert_eq(tokvault(out, sizeof(out), args), 1, "%s", out);
		cr_assert_not_null(strstr(out, "cannot open vault"), "%s", out);
	}
}

Test(vault, tokvault_demo_writes_vault_and_token_list)
{
	enum { COUNT = 3000 };
	char out[OUT_CAP], list[PATH_CAP], line[512], count[16];
	unsigned rows = 0, plain = 0, limited = 0, suspended = 0, deleted = 0, device = 0;
	struct tsw_vault *v;
	FILE *f;

	snprintf(list, sizeof(list), "%s/tokens.csv", fx.dir);
	snprintf(count, sizeof(count), "%d", COUNT);
	{
		const char *args[] = {"demo", "--count", count, "--out", list, NULL};
		cr_assert_eq(tokvault(out, sizeof(out), args), 0, "%s", out);
		/* a second demo into the same vault is refused */
		cr_assert_eq(tokvault(out, sizeof(out), args), 1, "%s", out);
		cr_assert_not_null(strstr(out, "not empty"));
	}
	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, TSW_VAULT_RDONLY, &v), 0);
	f = fopen(list, "r");
	cr_assert_not_null(f);
	cr_assert_not_null(fgets(line, sizeof(line), f));
	cr_assert_str_eq(line, "token,token_expiry,pos_mode,merchant_id,acquirer_id,mcc,device_ref,"
			       "trid,amount_limit,currency,expect_rc,cvn,psn\n");
	struct tsw_vault_reader *rd;
	cr_assert_eq(tsw_vault_reader_open(v, &rd), 0);
	cr_assert_eq(tsw_vault_reader_renew(rd), 0);
	while (fgets(line, sizeof(line), f)) {
		char *fld[13], *save = NULL, *p = line;
		struct tsw_token t;
		int n = 0;

		line[strcspn(line, "\n")] = '\0';
		for (char *c = p;; c++) {
			if (*c == ',' || *c == '\0') {
				bool end = *c == '\0';

				*c = '\0';
				cr_assert_lt(n, 13);
				fld[n++] = p;
				p = c + 1;
				if (end)
					break;
			}
		}
		(void)save;
		cr_assert_eq(n, 13);
		rows++;
		cr_assert_eq(tsw_vault_lookup(rd, fld[0], strlen(fld[0]), &t), 0, "%s", fld[0]);
		cr_assert_str_eq(t.token_expiry, fld[1]);
		cr_assert_str_eq(t.trid, fld[7]);
		/* no --cvn-pct: no token requires a cryptogram */
		cr_assert_eq(t.cvn, 0, "%s", fld[0]);
		cr_assert_str_eq(fld[11], "");
		cr_assert_str_eq(fld[12], "");
		if (fld[6][0]) {
			device++;
			cr_assert_eq(t.device_required, 1);
			cr_assert_eq(tsw_vault_device_bound(rd, fld[0], strlen(fld[0]), fld[6],
							    strlen(fld[6])),
				     1);
		}
		if (fld[3][0]) {
			cr_assert_geq(t.n_merchants, 1);
			cr_assert(strncmp(t.merchants[0].merchant_id, fld[3], strlen(fld[3])) == 0);
		}
		if (strcmp(fld[10], "00") == 0) {
			plain++;
			cr_assert_eq(t.status, TSW_TOKEN_ACTIVE);
		} else if (strcmp(fld[10], "00|65") == 0) {
			limited++;
			cr_assert_gt(t.max_uses, 0);
		} else if (strcmp(fld[10], "62") == 0) {
			suspended++;
			cr_assert_eq(t.status, TSW_TOKEN_SUSPENDED);
		} else if (strcmp(fld[10], "14") == 0) {
			deleted++;
			cr_assert_eq(t.status, TSW_TOKEN_DELETED);
		} else {
			cr_assert_fail("expect_rc %s", fld[10]);
		}
	}
	fclose(f);
	tsw_vault_reader_close(rd);
	tsw_vault_close(v);
	cr_assert_eq(rows, COUNT);
	cr_assert_gt(plain, COUNT * 8 / 10);
	cr_assert_gt(limited, 0);
	cr_assert_gt(suspended, 0);
	cr_assert_gt(deleted, 0);
	cr_assert_gt(device, 0);
}

/* ---- bulk writes ---- */

static void on_reject_count(void *ctx, unsigned long line, int err, const char *reason)
{
	on_reject(ctx, line, err, reason);
}

Test(vault, batch_small_chunks_catch_duplicates_across_chunk_edges)
{
	enum { N = 100, CHUNK = 7 };
	struct tsw_vault *v = open_new();
	struct tsw_vault_batch *b = NULL;
	struct tsw_vault_import_stats st;
	struct tsw_vault_stats s;
	struct rejects rj = {0};
	struct tsw_vault_row row;
	char pan[20];
	struct tsw_token t;
	size_t n = 0;

	luhn_number(pan, "411111", 16, 5);
	/* the card is suspended before its tokens arrive: they inherit it */
	{
		char first[1][20];

		import_card(v, pan, 5000, 1, first);
		cr_assert_eq(tsw_vault_set_card_suspended(v, pan, 16, true, NULL), 0);
	}
	cr_assert_eq(tsw_vault_batch_begin(v, CHUNK, on_reject_count, &rj, &b), 0);
	for (unsigned long i = 0; i < N; i++) {
		memset(&row, 0, sizeof(row));
		/* every 10th row repeats the previous token (random order) */
		luhn_number(row.token.token, BIN, 16, (i % 10 == 9 ? i - 1 : i) * 7919 % 1000);
		memcpy(row.pan, pan, 16);
		row.pan_len = 16;
		memcpy(row.token.pan_expiry, "2912", 5);
		memcpy(row.token.token_expiry, "2811", 5);
		if (i == 3)
			memcpy(row.device_ref, "watch-3", 8);
		cr_assert_eq(tsw_vault_batch_add(b, &row, i + 1), 0);
	}
	cr_assert_eq(tsw_vault_batch_finish(b, &st), 0);
	cr_assert_eq(st.rows, N);
	cr_assert_eq(st.imported, N - N / 10);
	cr_assert_eq(rj.n, N / 10);
	for (unsigned i = 0; i < rj.n; i++) {
		cr_assert_eq(rj.lines[i] % 10, 0, "line %lu", rj.lines[i]);
		cr_assert_str_eq(rj.reasons[i], "token already in the vault");
	}
	cr_assert_gt(st.chunks, N / CHUNK);
	cr_assert_eq(tsw_vault_stats(v, &s), 0);
	cr_assert_eq(s.tokens, N - N / 10 + 1);
	cr_assert_eq(s.card_suspended_tokens, s.tokens);
	cr_assert_eq(s.device_bindings, 1);
	luhn_number(row.token.token, BIN, 16, 0);
	cr_assert_eq(lookup(v, row.token.token, &t), 0);
	cr_assert_eq(t.card_suspended, 1);
	/* every token reached the index */
	cr_assert_eq(tsw_vault_set_card_suspended(v, pan, 16, false, &n), 0);
	cr_assert_eq(n, s.tokens);
	tsw_vault_close(v);
}

Test(vault, reimport_rejects_every_row_and_changes_nothing)
{
	struct tsw_vault *v = open_new();
	struct tsw_vault_import_stats st;
	struct tsw_vault_stats before, after;
	char toks[4][20], pan[20], text[1024];
	struct rejects rj = {0};
	size_t off = (size_t)snprintf(text, sizeof(text),
				      "token,pan,pan_expiry,token_expiry,device_ref,valid_from,"
				      "valid_until,amount_limit\n");

	luhn_number(pan, "411111", 16, 8);
	for (int i = 0; i < 4; i++) {
		luhn_number(toks[i], BIN, 16, 40u + (unsigned)i);
		off += (size_t)snprintf(text + off, sizeof(text) - off,
					"%s,%s,2912,2811,dev-%d,1700000000,1900000000,%s\n",
					toks[i], pan, i, i == 3 ? "18446744073709551616" : "100");
	}
	cr_assert_eq(import_text(v, text, &rj, &st), 0);
	cr_assert_eq(st.imported, 3);
	cr_assert_eq(rj.n, 1);
	cr_assert_str_eq(rj.reasons[0], "amount_limit: not a number");
	{
		struct tsw_token t;
		struct tsw_vault_reader *rd;

		cr_assert_eq(lookup(v, toks[1], &t), 0);
		cr_assert_eq(t.valid_from, 1700000000u);
		cr_assert_eq(t.valid_until, 1900000000u);
		cr_assert_eq(t.amount_limit, 100);
		cr_assert_eq(tsw_vault_reader_open(v, &rd), 0);
		cr_assert_eq(tsw_vault_reader_renew(rd), 0);
		cr_assert_eq(tsw_vault_device_bound(rd, toks[1], 16, "dev-1", 5), 1);
		cr_assert_eq(tsw_vault_device_bound(rd, toks[1], 16, "dev-2", 5), 0);
		tsw_vault_reader_close(rd);
	}
	cr_assert_eq(tsw_vault_set_status(v, toks[0], 16, TSW_TOKEN_SUSPENDED, NULL), 0);
	cr_assert_eq(tsw_vault_stats(v, &before), 0);
	memset(&rj, 0, sizeof(rj));
	cr_assert_eq(import_text(v, text, &rj, &st), 0);
	cr_assert_eq(st.imported, 0);
	cr_assert_eq(rj.n, 4);
	cr_assert_eq(tsw_vault_stats(v, &after), 0);
	cr_assert_eq(after.tokens, before.tokens);
	cr_assert_eq(after.by_status[TSW_TOKEN_SUSPENDED], 1, "existing record untouched");
	cr_assert_eq(after.cards, 1);
	cr_assert_eq(after.device_bindings, before.device_bindings);
	tsw_vault_close(v);
}

Test(vault, sort_memory_outside_its_bounds_is_refused)
{
	struct tsw_vault *v = open_new();

	cr_assert_eq(tsw_vault_set_sort_mem(v, TSW_VAULT_SORT_MEM_MIN_BYTES - 1), -EINVAL);
	cr_assert_eq(tsw_vault_set_sort_mem(v, TSW_VAULT_SORT_MEM_MAX_BYTES + 1), -EINVAL);
	cr_assert_eq(tsw_vault_set_sort_mem(v, TSW_VAULT_SORT_MEM_MIN_BYTES), 0);
	cr_assert_eq(tsw_vault_set_sort_mem(v, TSW_VAULT_SORT_MEM_MAX_BYTES), 0);
	tsw_vault_close(v);
}

/* An import bigger than the sort memory is written in several sorted
 * runs: every row lands once, duplicates across runs and inside one are
 * rejected by line, and every token reaches the PAN index (the cards'
 * two tokens often fall in different runs). */
Test(vault, import_bigger_than_sort_memory_runs_in_passes_and_loses_nothing)
{
	enum { N = 8000, STEP = 7919, DUP_EVERY = 1000, CARDS = N / 2 };
	struct tsw_vault *v = open_new();
	struct tsw_vault_batch *b = NULL;
	struct tsw_vault_import_stats st;
	struct tsw_vault_stats s;
	struct rejects rj = {0};
	unsigned long n_dups = 0;

	cr_assert_eq(tsw_vault_set_sort_mem(v, TSW_VAULT_SORT_MEM_MIN_BYTES), 0);
	cr_assert_eq(tsw_vault_batch_begin(v, 0, on_reject_count, &rj, &b), 0);
	for (unsigned long i = 0; i < N; i++) {
		struct tsw_vault_row row;
		unsigned long k = i * STEP % N; /* a permutation: random token order */

		memset(&row, 0, sizeof(row));
		if (i % DUP_EVERY == DUP_EVERY - 1) {
			/* repeats a token of an earlier run, or of the row before */
			k = (i >= DUP_EVERY ? i - DUP_EVERY + 1 : i - 1) * STEP % N;
			n_dups++;
		}
		luhn_number(row.token.token, BIN, 16, k);
		luhn_number(row.pan, "411111", 16, k / 2);
		row.pan_len = 16;
		memcpy(row.token.pan_expiry, "2912", 5);
		memcpy(row.token.token_expiry, "2811", 5);
		cr_assert_eq(tsw_vault_batch_add(b, &row, i + 1), 0);
	}
	cr_assert_eq(tsw_vault_batch_finish(b, &st), 0);
	cr_assert_eq(st.rows, N);
	cr_assert_eq(st.imported, N - n_dups);
	cr_assert_eq(rj.n, n_dups);
	for (unsigned i = 0; i < rj.n; i++) {
		cr_assert_eq(rj.lines[i] % DUP_EVERY, 0, "line %lu", rj.lines[i]);
		cr_assert_str_eq(rj.reasons[i], "token already in the vault");
	}
	/* one token and one index transaction per run: more than one run */
	cr_assert_geq(st.chunks, 6, "chunks=%lu", st.chunks);
	cr_assert_eq(tsw_vault_stats(v, &s), 0);
	cr_assert_eq(s.tokens, N - n_dups);
	for (unsigned long card = 0; card < CARDS; card += CARDS / 16) {
		char pan[20], tok[20];
		size_t n = 0;

		luhn_number(pan, "411111", 16, card);
		luhn_number(tok, BIN, 16, 2 * card + 1);
		expect_pan(v, tok, pan);
		cr_assert_eq(tsw_vault_set_card_suspended(v, pan, 16, true, &n), 0);
		cr_assert_eq(n, 2, "card %lu has %zu tokens in the index", card, n);
	}
	cr_assert_eq(tsw_vault_stats(v, &s), 0);
	cr_assert_eq(s.cards, CARDS);
	tsw_vault_close(v);
}

Test(vault, tokvault_import_sort_mem_flag)
{
	char out[OUT_CAP], text[1024], tok[20], pan[20];

	{
		const char *args[] = {"init", "--token-bin", BIN, NULL};
		cr_assert_eq(tokvault(out, sizeof(out), args), 0, "%s", out);
	}
	luhn_number(tok, BIN, 16, 1);
	luhn_number(pan, "411111", 16, 1);
	snprintf(text, sizeof(text), "token,pan,pan_expiry,token_expiry\n%s,%s,2912,2811\n", tok,
		 pan);
	write_file(fx.csv, text);
	{
		static const char *const bad[] = {"0", "abc", "", "12x", "99999999999999999999"};

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			const char *args[] = {"import", "--sort-mem-mb", bad[i], fx.csv, NULL};

			cr_assert_eq(tokvault(out, sizeof(out), args), 2, "'%s': %s", bad[i], out);
			cr_assert_not_null(strstr(out, "--sort-mem-mb"), "%s", out);
		}
	}
	{
		const char *args[] = {"import", fx.csv, "--sort-mem-mb", NULL};

		cr_assert_eq(tokvault(out, sizeof(out), args), 2, "%s", out);
	}
	{
		const char *args[] = {"import", "--sort-mem", "8", fx.csv, NULL};

		cr_assert_eq(tokvault(out, sizeof(out), args), 2, "%s", out);
	}
	{
		const char *args[] = {"import", "--sort-mem-mb", "8", fx.csv, NULL};

		cr_assert_eq(tokvault(out, sizeof(out), args), 0, "%s", out);
		cr_assert_not_null(strstr(out, "imported=1 rejected=0"), "%s", out);
	}
}

/* ---- importing beside a running switch: chunk size, rate, background ---- */

#define PACE_ROWS 2000
#define PACE_CHUNK 500
#define PACE_RATE 4000 /* rows a second: PACE_ROWS take about 0.5 s */

/* A CSV of n rows (tokens 1..n of BIN, one card each) into fx.csv. */
static void write_rows_csv(unsigned n)
{
	FILE *f = fopen(fx.csv, "w");

	cr_assert_not_null(f);
	fputs("token,pan,pan_expiry,token_expiry\n", f);
	for (unsigned i = 1; i <= n; i++) {
		char tok[20], pan[20];

		luhn_number(tok, BIN, 16, i);
		luhn_number(pan, "411111", 16, i);
		fprintf(f, "%s,%s,2912,2811\n", tok, pan);
	}
	cr_assert_eq(fclose(f), 0);
}

static double seconds_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

static unsigned long long vault_tokens(void)
{
	struct tsw_vault *v = NULL;
	struct tsw_vault_stats s;

	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, TSW_VAULT_RDONLY, &v), 0);
	cr_assert_eq(tsw_vault_stats(v, &s), 0);
	tsw_vault_close(v);
	return (unsigned long long)s.tokens;
}

Test(vault, chunk_rows_sets_the_rows_per_transaction)
{
	struct tsw_vault *v = open_new();
	struct tsw_vault_import_stats st = {0};
	struct rejects rj = {0};
	FILE *f;

	cr_assert_eq(tsw_vault_set_chunk_rows(v, 0), -EINVAL);
	cr_assert_eq(tsw_vault_set_chunk_rows(v, TSW_VAULT_CHUNK_ROWS_MAX + 1), -EINVAL);
	cr_assert_eq(tsw_vault_set_chunk_rows(v, 100), 0);
	write_rows_csv(1000);
	f = fopen(fx.csv, "r");
	cr_assert_not_null(f);
	cr_assert_eq(tsw_vault_import_csv(v, f, on_reject, &rj, &st), 0);
	fclose(f);
	cr_assert_eq(st.imported, 1000);
	cr_assert_eq(st.chunk_rows, 100);
	/* 10 transactions of records, then 10 of their index entries */
	cr_assert_eq(st.chunks, 20, "chunks=%lu", st.chunks);
	cr_assert_eq(st.paced_ns, 0, "no rate set: nothing waited");
	tsw_vault_close(v);
}

Test(vault, import_rate_paces_the_commits)
{
	struct tsw_vault *v = open_new();
	struct tsw_vault_import_stats st = {0};
	struct rejects rj = {0};
	struct timespec t0;
	double s;
	FILE *f;
	char tok[20], pan[20];

	cr_assert_eq(tsw_vault_set_import_rate(v, TSW_VAULT_IMPORT_RATE_MAX + 1), -EINVAL);
	cr_assert_eq(tsw_vault_set_chunk_rows(v, PACE_CHUNK), 0);
	cr_assert_eq(tsw_vault_set_import_rate(v, PACE_RATE), 0);
	write_rows_csv(PACE_ROWS);
	f = fopen(fx.csv, "r");
	cr_assert_not_null(f);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	cr_assert_eq(tsw_vault_import_csv(v, f, on_reject, &rj, &st), 0);
	s = seconds_since(&t0);
	fclose(f);
	cr_assert_eq(st.imported, PACE_ROWS);
	cr_assert_eq(st.chunks, 2 * PACE_ROWS / PACE_CHUNK, "chunks=%lu", st.chunks);
	/* only the first transaction goes at once: a lower bound whatever
	 * else the machine does (sleeps only get longer) */
	cr_assert_geq(s, (double)(PACE_ROWS - PACE_CHUNK) / PACE_RATE, "took %.3f s", s);
	cr_assert_gt(st.paced_ns, 0);
	luhn_number(tok, BIN, 16, PACE_ROWS);
	luhn_number(pan, "411111", 16, PACE_ROWS);
	expect_pan(v, tok, pan);
	tsw_vault_close(v);
}

Test(vault, tokvault_import_pace_flags)
{
	static const char *const bad[][2] = {
	    {"--chunk-rows", "0"},   {"--chunk-rows", "1000001"},
	    {"--chunk-rows", "abc"}, {"--chunk-rows", "-5"},
	    {"--chunk-rows", ""},    {"--rate", "-1"},
	    {"--rate", "abc"},	     {"--rate", ""},
	    {"--rate", "12x"},	     {"--rate", " 5"},
	    {"--rate", "100000001"}, {"--rate", "99999999999999999999"},
	};
	char out[OUT_CAP];
	struct timespec t0;
	double s;

	{
		const char *args[] = {"init", "--token-bin", BIN, NULL};

		cr_assert_eq(tokvault(out, sizeof(out), args), 0, "%s", out);
	}
	write_rows_csv(PACE_ROWS);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *args[] = {"import", bad[i][0], bad[i][1], fx.csv, NULL};

		cr_assert_eq(tokvault(out, sizeof(out), args), 2, "%s '%s': %s", bad[i][0],
			     bad[i][1], out);
		cr_assert_not_null(strstr(out, bad[i][0]), "%s", out);
		cr_assert_null(strstr(out, "imported="), "%s", out);
	}
	{
		const char *args[] = {"import", fx.csv, "--rate", NULL};

		cr_assert_eq(tokvault(out, sizeof(out), args), 2, "%s", out);
	}
	cr_assert_eq(vault_tokens(), 0, "a refused import wrote nothing");
	{
		const char *args[] = {"import", "--chunk-rows", "500",	"--rate",
				      "4000",	"--background", fx.csv, NULL};

		clock_gettime(CLOCK_MONOTONIC, &t0);
		cr_assert_eq(tokvault(out, sizeof(out), args), 0, "%s", out);
		s = seconds_since(&t0);
	}
	cr_assert_not_null(strstr(out, "imported=2000 rejected=0 rows=2000 chunks=8 "), "%s", out);
	cr_assert_not_null(strstr(out, " chunk_rows=500 "), "%s", out);
	/* SCHED_IDLE needs no privilege; nice 19 is the fallback */
	cr_assert(strstr(out, " sched=idle ") || strstr(out, " sched=nice19 "), "%s", out);
	cr_assert_not_null(strstr(out, " ioprio="), "%s", out);
	cr_assert_geq(s, (double)(PACE_ROWS - PACE_CHUNK) / PACE_RATE, "took %.3f s", s);
	cr_assert_eq(vault_tokens(), PACE_ROWS);
}

/* ---- record integrity: every byte of a record is authenticated ---- */

/* What anyone who can write data.mdb can do, through LMDB itself: read the
 * stored value of token's record (the vault handle closed: one LMDB env
 * per process). Returns the record's size. */
static size_t raw_record_get(const char *token, uint8_t *buf, size_t cap)
{
	uint64_t key = strtoull(token, NULL, 10);
	MDB_val k = {.mv_size = sizeof(key), .mv_data = &key}, d;
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;

	cr_assert_eq(mdb_env_create(&env), 0);
	cr_assert_eq(mdb_env_set_maxdbs(env, 8), 0);
	cr_assert_eq(mdb_env_set_mapsize(env, TSW_VAULT_MAP_SIZE_BYTES), 0);
	cr_assert_eq(mdb_env_open(env, fx.vault, MDB_NOTLS, 0600), 0);
	cr_assert_eq(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
	cr_assert_eq(mdb_dbi_open(txn, "tokens", MDB_INTEGERKEY, &dbi), 0);
	cr_assert_eq(mdb_get(txn, dbi, &k, &d), 0);
	cr_assert_leq(d.mv_size, cap);
	memcpy(buf, d.mv_data, d.mv_size);
	mdb_txn_abort(txn);
	mdb_env_close(env);
	return d.mv_size;
}

/* Writes buf as token's record (a new token when it has none). */
static void raw_record_put(const char *token, const uint8_t *buf, size_t len)
{
	uint64_t key = strtoull(token, NULL, 10);
	MDB_val k = {.mv_size = sizeof(key), .mv_data = &key};
	MDB_val d = {.mv_size = len, .mv_data = (void *)buf};
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;

	cr_assert_eq(mdb_env_create(&env), 0);
	cr_assert_eq(mdb_env_set_maxdbs(env, 8), 0);
	cr_assert_eq(mdb_env_set_mapsize(env, TSW_VAULT_MAP_SIZE_BYTES), 0);
	cr_assert_eq(mdb_env_open(env, fx.vault, MDB_NOTLS, 0600), 0);
	cr_assert_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
	cr_assert_eq(mdb_dbi_open(txn, "tokens", MDB_INTEGERKEY, &dbi), 0);
	cr_assert_eq(mdb_put(txn, dbi, &k, &d, 0), 0);
	cr_assert_eq(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
}

/* A lookup of a record that is not the one the vault wrote must fail:
 * edited (INTEGRITY), unreadable (CORRUPT) or under another digit count
 * (NOT_FOUND). Anything else (0) would let the switch decide on it. */
static int lookup_ro(const char *token, struct tsw_token *t)
{
	struct tsw_vault *v = NULL;
	int r;

	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, TSW_VAULT_RDONLY, &v), 0);
	r = lookup(v, token, t);
	tsw_vault_close(v);
	return r;
}

/* The switch's path: tsw_vault_peek decides, tsw_vault_decrypt_pan
 * authenticates before anything is forwarded. 0 only when both succeed:
 * the PAN would go out, with the decisions taken on *t. */
static int peek_decrypt_ro(const char *token, struct tsw_token *ret)
{
	struct tsw_vault_reader *rd = NULL;
	struct tsw_vault *v = NULL;
	char pan[TSW_PAN_MAX_DIGITS];
	struct tsw_token t;
	int r;

	memset(&t, 0, sizeof(t));
	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, TSW_VAULT_RDONLY, &v), 0);
	cr_assert_eq(tsw_vault_reader_open(v, &rd), 0);
	cr_assert_eq(tsw_vault_reader_renew(rd), 0);
	r = tsw_vault_peek(rd, token, strlen(token), &t);
	if (r == 0) {
		r = tsw_vault_decrypt_pan(rd, &t, pan, sizeof(pan));
		explicit_bzero(pan, sizeof(pan));
		r = r < 0 ? r : 0;
	}
	tsw_vault_reader_close(rd);
	tsw_vault_close(v);
	*ret = t;
	return r;
}

/* Two records with every part filled: merchants (the bytes after the
 * sealed PAN), a validity window, limits, a device requirement, a
 * suspended card; and a token-for-token record of the first. */
static void import_full_records(char tok[2][20])
{
	struct tsw_vault *v = open_new();
	struct rejects rj = {0};
	char text[1024], pan[20];

	luhn_number(tok[0], BIN, 16, 4242);
	luhn_number(tok[1], BIN, 16, 4243);
	luhn_number(pan, "411111", 16, 4242);
	snprintf(text, sizeof(text),
		 "token,pan,pan_expiry,token_expiry,status,trid,assurance_level,pos_modes,"
		 "merchant_ids,max_uses,amount_limit,currency,device_required,original_token,par,"
		 "token_ref,valid_from,valid_until,cvn,psn\n"
		 "%s,%s,2912,2811,active,40010030273,25,chip|contactless,"
		 "MERCHANT1|M2:12345:5411,3,150000,978,1,,PAR0000000000000000000000001,REF-1,"
		 "1700000000,2000000000,18,01\n"
		 "%s,%s,2912,2811,active,,,,,,,,,%s,,REF-2,,,,\n",
		 tok[0], pan, tok[1], pan, tok[0]);
	cr_assert_eq(import_text(v, text, &rj, NULL), 0);
	cr_assert_eq(rj.n, 0, "%s", rj.reasons[0]);
	cr_assert_eq(tsw_vault_set_card_suspended(v, pan, 16, true, NULL), 0);
	tsw_vault_close(v);
}

Test(vault, every_byte_of_a_record_is_authenticated)
{
	uint8_t orig[1024], bad[1024], other[1024];
	char tok[2][20];
	struct tsw_token t, pt, authentic;
	unsigned integrity = 0;

	import_full_records(tok);
	for (int w = 0; w < 2; w++) {
		size_t len = raw_record_get(tok[w], orig, sizeof(orig));

		cr_assert_eq(lookup_ro(tok[w], &t), 0);
		cr_assert_eq(peek_decrypt_ro(tok[w], &authentic), 0);
		for (size_t off = 0; off < len; off++) {
			for (int x = 0; x < 2; x++) {
				int r;

				memcpy(bad, orig, len);
				bad[off] ^= x ? 0xff : 0x01;
				raw_record_put(tok[w], bad, len);
				r = lookup_ro(tok[w], &t);
				cr_assert(r == -TSW_E_INTEGRITY || r == -TSW_E_CORRUPT ||
					      r == -TSW_E_NOT_FOUND,
					  "record %d byte %zu ^ %s: lookup %d (%s)", w, off,
					  x ? "0xff" : "0x01", r, tsw_strerror(r));
				integrity += r == -TSW_E_INTEGRITY;
				/* the switch's path forwards only on a record that
				 * decodes to the one the vault wrote (a flipped
				 * byte that decoding ignores changes nothing) */
				r = peek_decrypt_ro(tok[w], &pt);
				cr_assert(r < 0 || memcmp(&pt, &authentic, sizeof(pt)) == 0,
					  "record %d byte %zu ^ %s: forwarded on an edited record",
					  w, off, x ? "0xff" : "0x01");
			}
		}
		raw_record_put(tok[w], orig, len);
		cr_assert_eq(lookup_ro(tok[w], &t), 0, "restored");
		/* nor may the record be moved onto another token */
		{
			size_t olen = raw_record_get(tok[1 - w], other, sizeof(other));

			raw_record_put(tok[1 - w], orig, len);
			cr_assert_eq(lookup_ro(tok[1 - w], &t), -TSW_E_INTEGRITY);
			cr_assert_lt(peek_decrypt_ro(tok[1 - w], &pt), 0, "moved record decrypted");
			raw_record_put(tok[1 - w], other, olen);
		}
	}
	cr_assert_gt(integrity, 400, "most edits are caught by the authentication itself");
}

Test(vault, tokvault_show_reports_a_record_failing_authentication)
{
	uint8_t rec[1024];
	char out[OUT_CAP], tok[2][20], pan[20];
	size_t len;

	import_full_records(tok);
	luhn_number(pan, "411111", 16, 4242);
	len = raw_record_get(tok[0], rec, sizeof(rec));
	rec[80] ^= 0x07; /* max_uses */
	raw_record_put(tok[0], rec, len);
	{
		const char *args[] = {"show", tok[0], NULL};

		cr_assert_eq(tokvault(out, sizeof(out), args), 1, "%s", out);
	}
	cr_assert_not_null(strstr(out, "integrity=FAILED"), "%s", out);
	cr_assert_null(strstr(out, "max_uses="), "no field of the record is shown as if valid");
	cr_assert_null(strstr(out, pan), "%s", out);
	{
		const char *args[] = {"show", tok[1], NULL};

		cr_assert_eq(tokvault(out, sizeof(out), args), 0, "%s", out);
	}
	cr_assert_not_null(strstr(out, "integrity=ok"), "%s", out);
	/* a lifecycle verb does not re-authenticate an edited record */
	{
		const char *args[] = {"suspend", tok[0], NULL};

		cr_assert_eq(tokvault(out, sizeof(out), args), 1, "%s", out);
		cr_assert_not_null(strstr(out, "authentication"), "%s", out);
	}
	cr_assert_eq(lookup_ro(tok[0], &(struct tsw_token){0}), -TSW_E_INTEGRITY);
}

/* A vault written before records were authenticated (format 1; made by
 * the tokvault of that time: tests/unit/vault/format1/): 6 tokens, one
 * suspended, one card suspended (2 tokens), one with merchants, one with
 * limits, one token-for-token, one device binding. */
static void copy_format1_vault(void)
{
	const char *src = getenv("TSW_SOURCE_ROOT");
	char cmd[PATH_CAP * 3];

	cr_assert_not_null(src);
	cr_assert_eq(mkdir(fx.vault, 0700), 0);
	snprintf(cmd, sizeof(cmd),
		 "cp '%s/tests/unit/vault/format1/data.mdb' '%s/' && "
		 "cp '%s/tests/unit/vault/format1/keys' '%s' && chmod 600 '%s' '%s/data.mdb'",
		 src, fx.vault, src, fx.key, fx.key, fx.vault);
	cr_assert_eq(system(cmd), 0);
}

static const char *const F1_TOKENS[6] = {"4895370000000015", "4895370000000023",
					 "4895370000000031", "4895370000000049",
					 "4895370000000056", "4895370000000064"};
static const char *const F1_PANS[6] = {"4111110000000013", "4111110000000021", "4111110000000005",
				       "4111110000000013", "4111110000000021", "4111110000000005"};

Test(vault, format1_vault_refused_by_the_switch_until_tokvault_upgrade)
{
	struct tsw_vault *v = NULL;
	struct tsw_vault_stats s;
	struct tsw_token t;
	char out[OUT_CAP];

	copy_format1_vault();
	/* the switch's open: records that are not authenticated are refused */
	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, TSW_VAULT_RDONLY, &v), -TSW_E_NEEDS_UPGRADE);
	cr_assert_not_null(strstr(tsw_strerror(-TSW_E_NEEDS_UPGRADE), "tokvault upgrade"));
	{
		const char *args[] = {"show", F1_TOKENS[0], NULL};

		cr_assert_eq(tokvault(out, sizeof(out), args), 0, "%s", out);
		cr_assert_not_null(strstr(out, "integrity=unauthenticated"), "%s", out);
	}
	{
		const char *args[] = {"upgrade", NULL};

		cr_assert_eq(tokvault(out, sizeof(out), args), 0, "%s", out);
		cr_assert_not_null(strstr(out, "6 records authenticated"), "%s", out);
	}
	{
		const char *args[] = {"upgrade", NULL};

		cr_assert_eq(tokvault(out, sizeof(out), args), 0, "%s", out);
		cr_assert_not_null(strstr(out, "0 records authenticated"), "%s", out);
	}
	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, TSW_VAULT_RDONLY, &v), 0);
	for (int i = 0; i < 6; i++)
		expect_pan(v, F1_TOKENS[i], F1_PANS[i]);
	cr_assert_eq(lookup(v, F1_TOKENS[1], &t), 0);
	cr_assert_eq(t.status, TSW_TOKEN_SUSPENDED);
	cr_assert_eq(t.card_suspended, 1);
	cr_assert_eq(lookup(v, F1_TOKENS[2], &t), 0);
	cr_assert_eq(t.n_merchants, 2);
	cr_assert_str_eq(t.merchants[1].mcc, "5411");
	cr_assert_eq(lookup(v, F1_TOKENS[3], &t), 0);
	cr_assert_eq(t.max_uses, 5);
	cr_assert_eq(t.amount_limit, 100000);
	cr_assert_eq(lookup(v, F1_TOKENS[5], &t), 0);
	cr_assert_str_eq(t.original_token, F1_TOKENS[0]);
	cr_assert_eq(tsw_vault_stats(v, &s), 0);
	cr_assert_eq(s.tokens, 6);
	cr_assert_eq(s.unauthenticated, 0);
	cr_assert_eq(s.integrity_failures, 0);
	cr_assert_eq(s.suspended_cards, 1);
	cr_assert_eq(s.device_bindings, 1);
	tsw_vault_close(v);
	/* upgraded records are authenticated like new ones */
	{
		uint8_t rec[1024];
		size_t len = raw_record_get(F1_TOKENS[1], rec, sizeof(rec));

		rec[1] = TSW_TOKEN_ACTIVE; /* status */
		raw_record_put(F1_TOKENS[1], rec, len);
		cr_assert_eq(lookup_ro(F1_TOKENS[1], &t), -TSW_E_INTEGRITY);
	}
}

Test(vault, stats_count_unauthenticated_records_and_integrity_failures)
{
	struct tsw_vault *v = NULL;
	struct tsw_vault_stats s;
	uint8_t rec[1024];
	uint64_t n = 0;
	size_t len;

	copy_format1_vault();
	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, 0, &v), -TSW_E_NEEDS_UPGRADE);
	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, TSW_VAULT_FORMAT1_OK, &v), 0);
	cr_assert_eq(tsw_vault_stats(v, &s), 0);
	cr_assert_eq(s.unauthenticated, 6);
	cr_assert_eq(s.integrity_failures, 0);
	cr_assert_eq(tsw_vault_upgrade(v, &n), 0);
	cr_assert_eq(n, 6);
	cr_assert_eq(tsw_vault_stats(v, &s), 0);
	cr_assert_eq(s.unauthenticated, 0);
	tsw_vault_close(v);
	len = raw_record_get(F1_TOKENS[4], rec, sizeof(rec));
	rec[3] ^= 0x01; /* flags: device required */
	raw_record_put(F1_TOKENS[4], rec, len);
	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, TSW_VAULT_RDONLY, &v), 0);
	cr_assert_eq(tsw_vault_stats(v, &s), 0);
	cr_assert_eq(s.integrity_failures, 1);
	cr_assert_eq(s.tokens, 6);
	tsw_vault_close(v);
}

/* ---- rekey: crash-safe, retire, check values on reload ---- */

#define CRASH_TOKENS 40
#define CRASH_CHUNK "5"

/* Runs "tokvault rekey --progress --chunk-rows 5" and SIGKILLs it as soon
 * as it has reported its kill_after-th durable step (a real kill of the
 * process, wherever it is by then). Returns true when it was killed,
 * false when it finished first. */
static bool rekey_killed_after_with(unsigned kill_after, const char *extra)
{
	const char *tokvault = getenv("TSW_TOKVAULT");
	char exe[PATH_CAP], line[256];
	const char *argv[] = {"tokvault",  "--vault", fx.vault,	    "--key-file",
			      fx.key,	   "rekey",   "--progress", "--chunk-rows",
			      CRASH_CHUNK, extra,     NULL};
	posix_spawn_file_actions_t fa;
	unsigned steps = 0;
	bool killed = false;
	int pipefd[2], status = 0;
	pid_t pid;
	FILE *out;

	cr_assert_not_null(tokvault, "TSW_TOKVAULT unset");
	snprintf(exe, sizeof(exe), "%s", tokvault);
	cr_assert_eq(pipe(pipefd), 0);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
	posix_spawn_file_actions_addclose(&fa, pipefd[0]);
	cr_assert_eq(posix_spawn(&pid, exe, &fa, NULL, (char *const *)argv, environ), 0);
	posix_spawn_file_actions_destroy(&fa);
	close(pipefd[1]);
	out = fdopen(pipefd[0], "r");
	cr_assert_not_null(out);
	while (fgets(line, sizeof(line), out)) {
		if (strncmp(line, "step ", 5) == 0 && ++steps == kill_after) {
			cr_assert_eq(kill(pid, SIGKILL), 0);
			killed = true;
			break;
		}
	}
	fclose(out);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(killed ? WIFSIGNALED(status) || WIFEXITED(status) : WIFEXITED(status));
	return killed && WIFSIGNALED(status);
}

static bool rekey_killed_after(unsigned kill_after)
{
	return rekey_killed_after_with(kill_after, NULL);
}

static void expect_every_pan(char toks[][20], char pans[][20], unsigned n)
{
	struct tsw_vault *v = NULL;

	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, 0, &v), 0, "the vault and key file open");
	for (unsigned i = 0; i < n; i++)
		expect_pan(v, toks[i], pans[i]);
	tsw_vault_close(v);
}

static unsigned key_lines(void)
{
	char line[256];
	unsigned n = 0;
	FILE *f = fopen(fx.key, "r");

	cr_assert_not_null(f);
	while (fgets(line, sizeof(line), f))
		n += strncmp(line, "pan ", 4) == 0;
	fclose(f);
	return n;
}

/* The newest PAN key of the key file. */
static uint32_t newest_file_key(void)
{
	char line[256];
	uint32_t id, newest = 0;
	FILE *f = fopen(fx.key, "r");

	cr_assert_not_null(f);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "pan %u ", &id) == 1 && id > newest)
			newest = id;
	fclose(f);
	return newest;
}

static uint32_t vault_current_key(void)
{
	struct tsw_vault *v = NULL;
	struct tsw_vault_stats s;

	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, 0, &v), 0);
	cr_assert_eq(tsw_vault_stats(v, &s), 0);
	tsw_vault_close(v);
	return s.current_key_id;
}

/* A rekey killed after its first step (the new key in the key file): when
 * the kill landed before the second (the vault made that key current), the
 * next rekey takes that key instead of adding one. Returns false when the
 * kill landed later (or not at all) and so checked nothing. */
static bool killed_before_key_current_then_rekey_reuses_it(char toks[][20], char pans[][20])
{
	unsigned keys_before = key_lines();
	const char *args[] = {"rekey", NULL};
	char out[OUT_CAP];
	bool killed = rekey_killed_after(1);

	expect_every_pan(toks, pans, CRASH_TOKENS);
	cr_assert_eq(key_lines(), keys_before + 1, "point 1: one key more, none less");
	if (!killed || vault_current_key() == newest_file_key())
		return false;
	cr_assert_eq(tokvault(out, sizeof(out), args), 0, "%s", out);
	cr_assert_eq(key_lines(), keys_before + 1, "%s", out);
	return true;
}

Test(vault, rekey_killed_at_every_step_loses_no_pan, .timeout = 60)
{
	static char toks[CRASH_TOKENS][20], pans[CRASH_TOKENS][20];
	/* the durable steps: 1 key file, 2 key current, 3.. chunks of 5 (1
	 * has its own check below) */
	static const unsigned kill_points[] = {2, 3, 5, 8, 10};
	struct tsw_vault *v = open_new();
	struct tsw_vault_stats s;
	char out[OUT_CAP];
	unsigned kills = 0;

	for (unsigned c = 0; c < 4; c++) {
		luhn_number(pans[c * 10], "411111", 16, 100 + c);
		import_card(v, pans[c * 10], 1000 + c * 10, 10, &toks[c * 10]);
		for (unsigned i = 1; i < 10; i++)
			memcpy(pans[c * 10 + i], pans[c * 10], sizeof(pans[0]));
	}
	tsw_vault_close(v);
	{
		/* the kill races the next durable step: a few tries land one
		 * between the key file and the key made current */
		bool checked = false;

		for (unsigned tries = 0; tries < 8 && !checked; tries++)
			checked = killed_before_key_current_then_rekey_reuses_it(toks, pans);
		cr_assert(checked, "no kill landed between the key file and the key made current");
	}
	for (size_t p = 0; p < sizeof(kill_points) / sizeof(kill_points[0]); p++) {
		unsigned keys_before = key_lines();
		bool killed = rekey_killed_after(kill_points[p]);

		expect_every_pan(toks, pans, CRASH_TOKENS);
		cr_assert_eq(key_lines(), keys_before + 1, "point %u: one key more, none less",
			     kill_points[p]);
		kills += killed;
	}
	/* each step is a durable commit: the kill lands before the next one
	 * ends nearly always; a run that finished first proves nothing */
	cr_assert_geq(kills, 3, "only %u of the rekeys were killed", kills);
	/* killed mid-way: the older key still seals records and cannot go (a
	 * rekey that finished before the kill landed leaves nothing to check:
	 * tried again, a few times) */
	{
		bool midway = false;

		for (unsigned tries = 0; tries < 5 && !midway; tries++)
			midway = rekey_killed_after(4);
		cr_assert(midway, "no rekey was killed mid-way in 5 tries");
	}
	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, 0, &v), 0);
	cr_assert_eq(tsw_vault_stats(v, &s), 0);
	tsw_vault_close(v);
	{
		char id[16];
		const char *args[] = {"keys", "retire", id, NULL};
		unsigned older = 0;

		for (unsigned i = 0; i < s.n_keys; i++)
			if (s.key_ids[i] != s.current_key_id && s.by_key[i] > 0)
				older = s.key_ids[i];
		cr_assert_neq(older, 0, "records left under an older key");
		snprintf(id, sizeof(id), "%u", older);
		cr_assert_eq(tokvault(out, sizeof(out), args), 1, "%s", out);
		cr_assert_not_null(strstr(out, "rekey --finish"), "%s", out);
		{
			const char *fin[] = {"rekey", "--finish", NULL};

			cr_assert_eq(tokvault(out, sizeof(out), fin), 0, "%s", out);
		}
		cr_assert_eq(tokvault(out, sizeof(out), args), 0, "%s", out);
		cr_assert_not_null(strstr(out, "retired"), "%s", out);
	}
	expect_every_pan(toks, pans, CRASH_TOKENS);
	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, 0, &v), 0);
	cr_assert_eq(tsw_vault_stats(v, &s), 0);
	for (unsigned i = 0; i < s.n_keys; i++)
		cr_assert(s.key_ids[i] == s.current_key_id ? s.by_key[i] == CRASH_TOKENS
							   : s.by_key[i] == 0);
	tsw_vault_close(v);
}

Test(vault, retire_refuses_the_current_key_and_unknown_ids)
{
	struct tsw_vault *v = open_new();
	char toks[3][20], pan[20];
	uint64_t users = 99;
	uint32_t id = 0;

	luhn_number(pan, "411111", 16, 7);
	import_card(v, pan, 1, 3, toks);
	cr_assert_eq(tsw_vault_retire_key(v, 1, &users), -EBUSY, "the current key");
	cr_assert_eq(tsw_vault_retire_key(v, 7, NULL), -TSW_E_NOT_FOUND);
	cr_assert_eq(tsw_vault_rekey(v, &id, NULL), 0);
	cr_assert_eq(id, 2);
	cr_assert_eq(tsw_vault_retire_key(v, 1, &users), 0);
	cr_assert_eq(users, 0);
	cr_assert_eq(key_lines(), 1);
	tsw_vault_close(v);
	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, TSW_VAULT_RDONLY, &v), 0);
	for (int i = 0; i < 3; i++)
		expect_pan(v, toks[i], pan);
	tsw_vault_close(v);
}

Test(vault, sixteen_keys_is_a_clear_error_and_retiring_one_is_the_way_out)
{
	struct tsw_vault *v = open_new();
	char toks[2][20], pan[20], out[OUT_CAP];

	luhn_number(pan, "411111", 16, 8);
	import_card(v, pan, 1, 2, toks);
	tsw_vault_close(v);
	for (int i = 1; i < TSW_VAULT_KEYS_MAX; i++) {
		const char *args[] = {"rekey", NULL};

		cr_assert_eq(tokvault(out, sizeof(out), args), 0, "rekey %d: %s", i, out);
	}
	cr_assert_eq(key_lines(), TSW_VAULT_KEYS_MAX);
	{
		const char *args[] = {"rekey", NULL};

		cr_assert_eq(tokvault(out, sizeof(out), args), 1, "%s", out);
		cr_assert_not_null(strstr(out, "tokvault keys retire ID"), "%s", out);
	}
	{
		const char *args[] = {"keys", "retire", "3", NULL};

		cr_assert_eq(tokvault(out, sizeof(out), args), 0, "%s", out);
	}
	{
		const char *args[] = {"rekey", NULL};

		cr_assert_eq(tokvault(out, sizeof(out), args), 0, "%s", out);
		cr_assert_not_null(strstr(out, "new key id=17"), "%s", out);
	}
	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, 0, &v), 0);
	expect_pan(v, toks[0], pan);
	expect_pan(v, toks[1], pan);
	tsw_vault_close(v);
}

/* Replaces the hex of "pan ID" in the key file with other (64 hex). */
static void key_file_set(unsigned id, const char *other, char *saved, size_t cap)
{
	char text[8192], want[32];
	FILE *f = fopen(fx.key, "r");
	size_t len;
	char *at;

	cr_assert_not_null(f);
	len = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[len] = '\0';
	snprintf(want, sizeof(want), "pan %u ", id);
	at = strstr(text, want);
	cr_assert_not_null(at);
	at += strlen(want);
	if (saved) {
		cr_assert_gt(cap, 64);
		memcpy(saved, at, 64);
		saved[64] = '\0';
	}
	memcpy(at, other, 64);
	write_file(fx.key, text);
	cr_assert_eq(chmod(fx.key, 0600), 0);
}

Test(vault, reload_refuses_keys_failing_their_check_values_and_keeps_the_old)
{
	struct tsw_vault *v = open_new(), *ro;
	struct tsw_vault_reader *rd;
	char toks[2][20], pan[20], good[65];
	struct tsw_token t;

	luhn_number(pan, "411111", 16, 9);
	import_card(v, pan, 1, 2, toks);
	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, TSW_VAULT_RDONLY, &ro), 0);
	cr_assert_eq(tsw_vault_reader_open(ro, &rd), 0);
	cr_assert_eq(tsw_vault_reader_renew(rd), 0);
	cr_assert_eq(tsw_vault_lookup(rd, toks[0], 16, &t), 0);
	tsw_vault_reader_reset(rd);
	cr_assert_eq(tsw_vault_take_key_error(ro), 0);
	cr_assert_eq(tsw_vault_rekey(v, NULL, NULL), 0);
	/* someone swaps key 2 in the file for a key of their own */
	key_file_set(2, "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", good,
		     sizeof(good));
	cr_assert_eq(tsw_vault_reader_renew(rd), 0);
	cr_assert_eq(tsw_vault_take_key_error(ro), -TSW_E_BAD_KEY);
	cr_assert_eq(tsw_vault_take_key_error(ro), 0, "reported once");
	/* the old key stays; records under key 2 cannot be authenticated */
	cr_assert_eq(tsw_vault_lookup(rd, toks[0], 16, &t), -TSW_E_INTEGRITY);
	tsw_vault_reader_reset(rd);
	/* the right file, and the next metadata change, loads it */
	key_file_set(2, good, NULL, 0);
	cr_assert_eq(tsw_vault_add_token_bin(v, "530011", 6), 0);
	cr_assert_eq(tsw_vault_reader_renew(rd), 0);
	cr_assert_eq(tsw_vault_take_key_error(ro), 0);
	cr_assert_eq(tsw_vault_lookup(rd, toks[0], 16, &t), 0);
	cr_assert_eq(t.key_id, 2);
	tsw_vault_reader_close(rd);
	tsw_vault_close(ro);
	tsw_vault_close(v);
}

/* ---- rekey --index: the PAN index (HMAC) key rotates ---- */

/* The "hmac" lines of the key file, concatenated. */
static void hmac_lines(char *out, size_t cap)
{
	char line[256];
	FILE *f = fopen(fx.key, "r");
	size_t n = 0;

	cr_assert_not_null(f);
	out[0] = '\0';
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, "hmac ", 5) == 0)
			n += (size_t)snprintf(out + n, cap - n, "%s", line);
	fclose(f);
}

Test(vault, rekey_index_rotates_the_index_key_and_card_verbs_follow)
{
	struct tsw_vault *v = open_new(), *stale;
	struct tsw_vault_reseal_opts o = {.chunk_rows = 4};
	struct tsw_vault_reseal_result res;
	struct tsw_vault_stats s;
	char toks[3][3][20], pans[3][20], before[1024], after[1024], nw[20];
	uint64_t card_id[3];
	struct tsw_token t;
	size_t n = 0;

	for (int c = 0; c < 3; c++) {
		luhn_number(pans[c], "411111", 16, 300 + (unsigned)c);
		import_card(v, pans[c], 3000 + (unsigned)c * 10, 3, toks[c]);
		cr_assert_eq(lookup(v, toks[c][0], &t), 0);
		card_id[c] = t.card_id;
	}
	cr_assert_eq(tsw_vault_set_card_suspended(v, pans[1], 16, true, NULL), 0);
	hmac_lines(before, sizeof(before));
	/* a handle opened before the rotation (another tokvault) */
	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, 0, &stale), 0);
	cr_assert_eq(tsw_vault_rekey_index(v, &o, &res), 0);
	cr_assert_eq(tsw_vault_set_card_suspended(stale, pans[0], 16, true, NULL), -EBUSY,
		     "its index key is gone: it must not write the index");
	tsw_vault_close(stale);
	cr_assert_eq(res.records, 9);
	cr_assert_eq(res.key_id, 2);
	hmac_lines(after, sizeof(after));
	cr_assert_eq(strncmp(after, "hmac 2 ", 7), 0, "%s", after);
	cr_assert_null(strstr(after, before + 5), "the old index key left the file");
	/* the index, the cards and every card id follow the new key */
	for (int c = 0; c < 3; c++) {
		uint64_t id = 0;

		for (int i = 0; i < 3; i++) {
			expect_pan(v, toks[c][i], pans[c]);
			cr_assert_eq(lookup(v, toks[c][i], &t), 0);
			if (i)
				cr_assert_eq(t.card_id, id, "one card, one id");
			id = t.card_id;
			cr_assert_eq(t.card_suspended, c == 1);
		}
		cr_assert_neq(id, card_id[c], "card id from the new key");
	}
	cr_assert_eq(tsw_vault_stats(v, &s), 0);
	cr_assert_eq(s.cards, 3);
	cr_assert_eq(s.suspended_cards, 1);
	cr_assert_eq(tsw_vault_set_card_suspended(v, pans[1], 16, false, &n), 0);
	cr_assert_eq(n, 3);
	cr_assert_eq(tsw_vault_set_card_suspended(v, pans[0], 16, true, &n), 0);
	cr_assert_eq(n, 3);
	luhn_number(nw, "411111", 16, 399);
	cr_assert_eq(tsw_vault_update_pan(v, pans[2], 16, nw, 16, "3012", &n), 0);
	cr_assert_eq(n, 3);
	for (int i = 0; i < 3; i++)
		expect_pan(v, toks[2][i], nw);
	tsw_vault_close(v);
	/* the new key file opens the vault, read-only too */
	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, TSW_VAULT_RDONLY, &v), 0);
	cr_assert_eq(lookup(v, toks[0][0], &t), 0);
	cr_assert_eq(t.card_suspended, 1);
	tsw_vault_close(v);
}

Test(vault, rekey_index_killed_at_every_step_loses_no_pan_and_runs_again, .timeout = 60)
{
	static char toks[CRASH_TOKENS][20], pans[CRASH_TOKENS][20];
	static const unsigned kill_points[] = {1, 2, 3, 6, 9};
	struct tsw_vault *v = open_new();
	struct tsw_vault_stats s;
	char out[OUT_CAP], hm[1024];
	unsigned kills = 0;

	for (unsigned c = 0; c < 4; c++) {
		luhn_number(pans[c * 10], "411111", 16, 500 + c);
		import_card(v, pans[c * 10], 5000 + c * 10, 10, &toks[c * 10]);
		for (unsigned i = 1; i < 10; i++)
			memcpy(pans[c * 10 + i], pans[c * 10], sizeof(pans[0]));
	}
	cr_assert_eq(tsw_vault_set_card_suspended(v, pans[10], 16, true, NULL), 0);
	tsw_vault_close(v);
	for (size_t p = 0; p < sizeof(kill_points) / sizeof(kill_points[0]); p++) {
		bool killed = rekey_killed_after_with(kill_points[p], "--index");

		expect_every_pan(toks, pans, CRASH_TOKENS);
		kills += killed;
		if (killed && kill_points[p] >= 2) {
			/* marked in progress: card-level writes wait for it */
			const char *args[] = {"resume-card", "--pan", pans[10], NULL};

			cr_assert_eq(tokvault(out, sizeof(out), args), 1, "%s", out);
			cr_assert_not_null(strstr(out, "tokvault rekey --index"), "%s", out);
		}
		hmac_lines(hm, sizeof(hm));
		cr_assert_eq(key_lines(), 1, "PAN keys untouched");
		cr_assert_leq(strlen(hm), 2 * 80, "at most the live and the new index key: %s", hm);
	}
	cr_assert_geq(kills, 3, "only %u of the rekeys were killed", kills);
	{
		const char *args[] = {"rekey", "--index", NULL};

		cr_assert_eq(tokvault(out, sizeof(out), args), 0, "%s", out);
		cr_assert_not_null(strstr(out, "40 records re-indexed"), "%s", out);
	}
	hmac_lines(hm, sizeof(hm));
	cr_assert_eq(strchr(hm, '\n'), hm + strlen(hm) - 1, "one index key left: %s", hm);
	expect_every_pan(toks, pans, CRASH_TOKENS);
	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, 0, &v), 0);
	cr_assert_eq(tsw_vault_stats(v, &s), 0);
	cr_assert_eq(s.cards, 4);
	cr_assert_eq(s.suspended_cards, 1);
	cr_assert_eq(s.card_suspended_tokens, 10);
	for (unsigned c = 0; c < 4; c++) {
		size_t n = 0;

		cr_assert_eq(tsw_vault_set_card_suspended(v, pans[c * 10], 16, c == 2, &n), 0);
		cr_assert_eq(n, 10, "card %u: every token indexed", c);
	}
	tsw_vault_close(v);
}

/* ---- card cryptography: the token's cvn/psn, format 3, the key store ---- */

Test(vault, cvn_and_psn_columns_are_imported_checked_and_shown)
{
	static const struct {
		const char *cvn, *psn, *reason;
	} bad[] = {
	    {"11", "", "cvn: not empty, 10, 16, 18 or 20"},
	    {"0", "", NULL}, /* 0 is "none", as empty */
	    {"1x", "", "cvn: not empty, 10, 16, 18 or 20"},
	    {"", "1", "psn: not two digits"},
	    {"", "100", "psn: not two digits"},
	    {"", "a1", "psn: not two digits"},
	};
	struct tsw_vault *v = open_new();
	struct rejects rj = {0};
	char text[2048], tok[8][20], pan[20], out[OUT_CAP];
	size_t off;
	struct tsw_token t;

	luhn_number(pan, "411111", 16, 42);
	for (int i = 0; i < 8; i++)
		luhn_number(tok[i], BIN, 16, 100 + (unsigned long)i);
	off = (size_t)snprintf(text, sizeof(text),
			       "token,pan,pan_expiry,token_expiry,cvn,psn\n"
			       "%s,%s,2912,2811,18,01\n%s,%s,2912,2811,,\n",
			       tok[0], pan, tok[1], pan);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		off += (size_t)snprintf(text + off, sizeof(text) - off, "%s,%s,2912,2811,%s,%s\n",
					tok[2 + i], pan, bad[i].cvn, bad[i].psn);
	cr_assert_eq(import_text(v, text, &rj, NULL), 0);
	cr_assert_eq(rj.n, 5);
	for (size_t i = 0, j = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (!bad[i].reason)
			continue;
		cr_expect_eq(rj.lines[j], 4 + i);
		cr_expect_str_eq(rj.reasons[j], bad[i].reason);
		j++;
	}
	cr_assert_eq(lookup(v, tok[0], &t), 0);
	cr_expect_eq(t.cvn, 18);
	cr_expect_eq(t.psn, 1);
	expect_pan(v, tok[0], pan);
	cr_assert_eq(lookup(v, tok[1], &t), 0);
	cr_expect_eq(t.cvn, 0, "empty: no cryptogram required");
	cr_expect_eq(t.psn, 0);
	cr_assert_eq(lookup(v, tok[3], &t), 0, "cvn 0 is accepted as none");
	cr_expect_eq(t.cvn, 0);
	tsw_vault_close(v);
	{
		const char *args[] = {"show", tok[0], NULL};

		cr_assert_eq(tokvault(out, sizeof(out), args), 0, "%s", out);
		cr_expect_not_null(strstr(out, "\ncvn=18\npsn=01\n"), "%s", out);
	}
	{
		const char *args[] = {"show", tok[1], NULL};

		cr_assert_eq(tokvault(out, sizeof(out), args), 0, "%s", out);
		cr_expect_not_null(strstr(out, "\ncvn=none\npsn=00\n"), "%s", out);
	}
}

Test(vault, tokvault_provision_takes_cvn_and_psn)
{
	struct tsw_vault *v = open_new();
	char out[OUT_CAP], tok[20] = "";
	struct tsw_token t;

	tsw_vault_close(v);
	{
		const char *args[] = {"provision", "--pan",   "4111111111111111", "--pan-expiry",
				      "3012",	   "--cvn",   "20",		  "--psn",
				      "07",	   NULL};

		const char *line;

		cr_assert_eq(tokvault(out, sizeof(out), args), 0, "%s", out);
		/* the token is stdout's line of digits (stderr says what was done) */
		for (line = out; line && !(line[0] >= '0' && line[0] <= '9');
		     line = strchr(line, '\n'), line = line ? line + 1 : NULL)
			;
		cr_assert_not_null(line, "%s", out);
		cr_assert_eq(sscanf(line, "%19[0-9]", tok), 1, "%s", out);
	}
	v = NULL;
	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, 0, &v), 0);
	cr_assert_eq(lookup(v, tok, &t), 0);
	cr_expect_eq(t.cvn, 20);
	cr_expect_eq(t.psn, 7);
	expect_pan(v, tok, "4111111111111111");
	/* repersonalization keeps the CVN, bumps the epoch and gives the new
	 * device the next PSN (the old device's key is then not the new one's) */
	cr_assert_eq(tsw_vault_repersonalize(v, tok, strlen(tok), TSW_VAULT_PSN_NEXT, NULL, NULL),
		     0);
	cr_assert_eq(lookup(v, tok, &t), 0);
	cr_expect_eq(t.cvn, 20);
	cr_expect_eq(t.psn, 8);
	cr_expect_eq(t.atc_epoch, 1);
	tsw_vault_close(v);
	{
		const char *bad[][3] = {{"--cvn", "17", "--cvn: 10, 16, 18 or 20"},
					{"--psn", "7", "--psn: two digits"},
					{"--psn", "1a", "--psn: two digits"}};

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			const char *args[] = {"provision", "--pan", "4111111111111111",
					      "--pan-expiry", "3012", bad[i][0], bad[i][1], NULL};

			cr_expect_eq(tokvault(out, sizeof(out), args), 2, "%s", out);
			cr_expect_not_null(strstr(out, bad[i][2]), "%s", out);
		}
	}
}

/* A format 2 vault written by the build before version 3 records:
 * tests/unit/vault/format2 (tokvault init --token-bin 489537; import of
 * 12 tokens 4895370000000015.. (Luhn), PANs 411111000000001x cycling over 4
 * cards, token 2 suspended, token 3 with two merchants, token 4 max_uses 5,
 * token 5 bound to phone-1; repersonalize of token 6). */
static const char *const F2_TOKENS[12] = {
    "4895370000000015", "4895370000000023", "4895370000000031", "4895370000000049",
    "4895370000000056", "4895370000000064", "4895370000000072", "4895370000000080",
    "4895370000000098", "4895370000000106", "4895370000000114", "4895370000000122"};
static const char *const F2_PANS[4] = {"4111110000000013", "4111110000000021", "4111110000000039",
				       "4111110000000047"};

static void copy_format2_vault(void)
{
	const char *src = getenv("TSW_SOURCE_ROOT");
	char cmd[PATH_CAP * 3];

	cr_assert_not_null(src);
	cr_assert_eq(mkdir(fx.vault, 0700), 0);
	snprintf(cmd, sizeof(cmd),
		 "cp '%s/tests/unit/vault/format2/data.mdb' '%s/' && "
		 "cp '%s/tests/unit/vault/format2/keys' '%s' && chmod 600 '%s' '%s/data.mdb'",
		 src, fx.vault, src, fx.key, fx.key, fx.vault);
	cr_assert_eq(system(cmd), 0);
}

static uint32_t raw_format(void)
{
	MDB_val k = {.mv_size = 6, .mv_data = (void *)"format"}, d;
	uint32_t format = 0;
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;

	cr_assert_eq(mdb_env_create(&env), 0);
	cr_assert_eq(mdb_env_set_maxdbs(env, 16), 0);
	cr_assert_eq(mdb_env_open(env, fx.vault, MDB_NOTLS | MDB_RDONLY, 0600), 0);
	cr_assert_eq(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
	cr_assert_eq(mdb_dbi_open(txn, "meta", 0, &dbi), 0);
	cr_assert_eq(mdb_get(txn, dbi, &k, &d), 0);
	cr_assert_eq(d.mv_size, sizeof(format));
	memcpy(&format, d.mv_data, sizeof(format));
	mdb_txn_abort(txn);
	mdb_env_close(env);
	return format;
}

static void expect_format2_tokens(struct tsw_vault *v)
{
	struct tsw_token t;

	for (int i = 0; i < 12; i++) {
		expect_pan(v, F2_TOKENS[i], F2_PANS[i % 4]);
		cr_assert_eq(lookup(v, F2_TOKENS[i], &t), 0);
		cr_expect_eq(t.cvn, 0);
		cr_expect_eq(t.psn, 0);
	}
	cr_assert_eq(lookup(v, F2_TOKENS[1], &t), 0);
	cr_expect_eq(t.status, TSW_TOKEN_SUSPENDED);
	cr_assert_eq(lookup(v, F2_TOKENS[2], &t), 0);
	cr_expect_eq(t.n_merchants, 2);
	cr_expect_str_eq(t.merchants[0].acquirer_id, "12345");
	cr_assert_eq(lookup(v, F2_TOKENS[3], &t), 0);
	cr_expect_eq(t.max_uses, 5);
	cr_assert_eq(lookup(v, F2_TOKENS[5], &t), 0);
	cr_expect_eq(t.atc_epoch, 1);
}

Test(vault, format2_vault_is_read_as_is_marked_format3_by_a_writer_and_upgraded)
{
	struct tsw_vault_reseal_opts o = {.mode = TSW_VAULT_RESEAL_UPGRADE, .chunk_rows = 5};
	struct tsw_vault_reseal_result res = {0};
	struct tsw_vault_reader *rd = NULL;
	struct tsw_vault *v = NULL;
	uint8_t rec[1024];
	size_t v2_len, v3_len;
	struct tsw_token t;

	copy_format2_vault();
	v2_len = raw_record_get(F2_TOKENS[0], rec, sizeof(rec));
	cr_assert_eq(rec[0], 2, "the fixture holds version 2 records");
	/* the switch reads a format 2 vault without writing it */
	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, TSW_VAULT_RDONLY, &v), 0);
	expect_format2_tokens(v);
	cr_assert_eq(tsw_vault_reader_open(v, &rd), 0);
	cr_assert_eq(tsw_vault_reader_renew(rd), 0);
	cr_expect_eq(tsw_vault_authenticated(rd, F2_TOKENS[0], 16), 1);
	cr_expect_eq(tsw_vault_device_bound(rd, F2_TOKENS[4], 16, "phone-1", 7), 1);
	tsw_vault_reader_close(rd);
	tsw_vault_close(v);
	cr_expect_eq(raw_format(), 2);

	/* a writer marks it format 3: older builds refuse it from then on */
	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, 0, &v), 0);
	cr_expect_eq(raw_format(), 3);
	/* an edit rewrites that record as version 3; the others stay 2 */
	cr_assert_eq(tsw_vault_set_status(v, F2_TOKENS[7], 16, TSW_TOKEN_SUSPENDED, NULL), 0);
	cr_expect_eq(raw_record_get(F2_TOKENS[7], rec, sizeof(rec)), v2_len + 2);
	cr_expect_eq(rec[0], 3);
	cr_expect_eq(raw_record_get(F2_TOKENS[8], rec, sizeof(rec)), v2_len);
	cr_assert_eq(lookup(v, F2_TOKENS[7], &t), 0);
	cr_expect_eq(t.status, TSW_TOKEN_SUSPENDED);
	cr_assert_eq(tsw_vault_set_status(v, F2_TOKENS[7], 16, TSW_TOKEN_ACTIVE, NULL), 0);
	/* upgrade rewrites every version 2 record, in chunks */
	cr_assert_eq(tsw_vault_reseal(v, &o, &res), 0);
	cr_expect_eq(res.records, 11, "every version 2 record, not the one already 3");
	cr_expect_eq(res.failed, 0);
	tsw_vault_close(v);
	for (int i = 0; i < 12; i++) {
		v3_len = raw_record_get(F2_TOKENS[i], rec, sizeof(rec));
		cr_expect_eq(rec[0], 3, "token %d", i);
		cr_expect_eq(v3_len, i == 2 ? v2_len + 2 + 2 * 30 : v2_len + 2, "token %d", i);
	}
	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, TSW_VAULT_RDONLY, &v), 0);
	expect_format2_tokens(v);
	cr_assert_eq(tsw_vault_reader_open(v, &rd), 0);
	cr_assert_eq(tsw_vault_reader_renew(rd), 0);
	cr_expect_eq(tsw_vault_device_bound(rd, F2_TOKENS[4], 16, "phone-1", 7), 1);
	tsw_vault_reader_close(rd);
	tsw_vault_close(v);

	/* a version 3 record cannot pass for a version 2 one (its tail cut
	 * off, the version byte set back) */
	v3_len = raw_record_get(F2_TOKENS[0], rec, sizeof(rec));
	rec[0] = 2;
	raw_record_put(F2_TOKENS[0], rec, v3_len - 2);
	cr_expect_eq(lookup_ro(F2_TOKENS[0], &t), -TSW_E_INTEGRITY);
}

Test(vault, format2_vault_index_rekey_rewrites_its_records_as_version3)
{
	struct tsw_vault_reseal_opts o = {.chunk_rows = 5};
	struct tsw_vault_reseal_result res = {0};
	struct tsw_vault *v = NULL;
	uint8_t rec[1024];
	size_t tokens = 0;

	copy_format2_vault();
	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, 0, &v), 0);
	cr_assert_eq(tsw_vault_rekey_index(v, &o, &res), 0);
	cr_expect_eq(res.records, 12);
	cr_expect_eq(res.failed, 0);
	for (int i = 0; i < 12; i++) {
		raw_record_get(F2_TOKENS[i], rec, sizeof(rec));
		cr_expect_eq(rec[0], 3, "token %d", i);
	}
	expect_format2_tokens(v);
	cr_assert_eq(tsw_vault_set_card_suspended(v, F2_PANS[0], 16, true, &tokens), 0);
	cr_expect_eq(tokens, 3, "the card reaches its tokens through the new index");
	tsw_vault_close(v);
}

/* The vault's check values are tsw_hsm's. */
static void expect_hsm_kcv(const struct tsw_vault_key_info *k, const uint8_t *bytes, size_t len)
{
	struct tsw_hsm *h = NULL;
	struct tsw_hsm_key *hk = NULL;
	const struct tsw_hsm_key_info *hi;
	enum tsw_hsm_kind kind = k->kind == TSW_VAULT_KEY_IMK_AC ? TSW_HSM_IMK_AC
							       : TSW_HSM_ZPK_ISSUER;

	if (k->kind == TSW_VAULT_KEY_TAVV)
		return; /* no tsw_hsm kind yet; an AES key's KCV is checked as a ZPK's below */
	cr_assert_eq(tsw_hsm_soft_open(NULL, &h), 0);
	cr_assert_eq(tsw_hsm_key_import(h, kind, (enum tsw_hsm_alg)k->alg, bytes, len, &hk), 0);
	hi = tsw_hsm_key_info(hk);
	cr_expect_eq(hi->kcv_len, k->kcv_len);
	cr_expect_eq(memcmp(hi->kcv, k->kcv, k->kcv_len), 0, "%s %s: KCV differs from tsw_hsm's",
		     tsw_vault_key_kind_name(k->kind), k->id);
	tsw_hsm_key_free(hk);
	tsw_hsm_close(h);
}

static const uint8_t K_TDES2[16] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF,
				    0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54, 0x32, 0x10};
static const uint8_t K_TDES3[24] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF,
				    0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54, 0x32, 0x10,
				    0x89, 0xAB, 0xCD, 0xEF, 0x01, 0x23, 0x45, 0x67};
static const uint8_t K_AES128[16] = {0x2B, 0x7E, 0x15, 0x16, 0x28, 0xAE, 0xD2, 0xA6,
				     0xAB, 0xF7, 0x15, 0x88, 0x09, 0xCF, 0x4F, 0x3C};
static const uint8_t K_AES256[32] = {0x60, 0x3D, 0xEB, 0x10, 0x15, 0xCA, 0x71, 0xBE,
				     0x2B, 0x73, 0xAE, 0xF0, 0x85, 0x7D, 0x77, 0x81,
				     0x1F, 0x35, 0x2C, 0x07, 0x3B, 0x61, 0x08, 0xD7,
				     0x2D, 0x98, 0x10, 0xA3, 0x09, 0x14, 0xDF, 0xF4};

static struct tsw_vault_key_info key_in(enum tsw_vault_key_kind kind, enum tsw_vault_key_alg alg,
					const char *id, const char *scope)
{
	struct tsw_vault_key_info in;

	memset(&in, 0, sizeof(in));
	in.kind = (uint8_t)kind;
	in.alg = (uint8_t)alg;
	snprintf(in.id, sizeof(in.id), "%s", id);
	snprintf(in.scope, sizeof(in.scope), "%s", scope);
	return in;
}

struct listed {
	unsigned n, failed;
	struct tsw_vault_key_info k[16];
	int err[16];
};

static int collect(void *ctx, const struct tsw_vault_key_info *info, int err)
{
	struct listed *l = ctx;

	if (l->n < 16) {
		l->k[l->n] = *info;
		l->err[l->n] = err;
	}
	l->n++;
	l->failed += err != 0;
	return 0;
}

/* The four kinds, one key each, in (kind, id) order as the store keeps. */
static void add_four_keys(struct tsw_vault *v, struct tsw_vault_key_info out[4])
{
	struct tsw_vault_key_info in[4] = {
	    key_in(TSW_VAULT_KEY_IMK_AC, TSW_VAULT_KEY_TDES2, "IMK-2026.1", BIN),
	    key_in(TSW_VAULT_KEY_ZPK_ACQUIRER, TSW_VAULT_KEY_TDES3, "acq_1", "12345678901"),
	    key_in(TSW_VAULT_KEY_ZPK_ISSUER, TSW_VAULT_KEY_AES256, "iss0", "0"),
	    key_in(TSW_VAULT_KEY_TAVV, TSW_VAULT_KEY_AES128, "T1", "4895"),
	};
	const uint8_t *bytes[4] = {K_TDES2, K_TDES3, K_AES256, K_AES128};
	const size_t lens[4] = {16, 24, 32, 16};

	for (int i = 0; i < 4; i++) {
		cr_assert_eq(tsw_vault_key_add(v, &in[i], bytes[i], lens[i], &out[i]), 0, "key %d",
			     i);
		cr_expect_str_eq(out[i].id, in[i].id);
		cr_expect_str_eq(out[i].scope, in[i].scope);
		cr_expect_eq(out[i].state, TSW_VAULT_KEY_ACTIVE);
		cr_expect_eq(out[i].sealed_by, 1);
		cr_expect_neq(out[i].added, 0);
		expect_hsm_kcv(&out[i], bytes[i], lens[i]);
	}
}

Test(vault, key_store_adds_lists_loads_and_retires)
{
	struct tsw_vault *v = open_new(), *ro = NULL;
	struct tsw_vault_key_info info[4], again;
	struct tsw_vault_key keys[4];
	struct listed l = {0};
	size_t n = 0;

	/* a read-only handle opened before the first key sees the store */
	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, TSW_VAULT_RDONLY, &ro), 0);
	cr_assert_eq(tsw_vault_key_load(ro, keys, 4, &n), 0);
	cr_expect_eq(n, 0);
	add_four_keys(v, info);
	/* known check values: TDES 0123..EF FEDC..10 is 08D7B4 */
	cr_expect_eq(info[0].kcv_len, 3);
	cr_expect_eq(memcmp(info[0].kcv, "\x08\xD7\xB4", 3), 0);
	cr_expect_eq(info[3].kcv_len, 5);
	/* an AES-128 key's KCV by tsw_hsm, as a ZPK (tavv is not a tsw_hsm kind) */
	{
		struct tsw_vault_key_info z =
		    key_in(TSW_VAULT_KEY_ZPK_ISSUER, TSW_VAULT_KEY_AES128, "iss1", "1");

		cr_assert_eq(tsw_vault_key_add(v, &z, K_AES128, 16, &z), 0);
		cr_expect_eq(memcmp(z.kcv, info[3].kcv, 5), 0);
		expect_hsm_kcv(&z, K_AES128, 16);
		cr_assert_eq(tsw_vault_key_retire(v, TSW_VAULT_KEY_ZPK_ISSUER, "iss1", 4, NULL), 0);
	}

	cr_assert_eq(tsw_vault_key_list(ro, collect, &l), 0);
	cr_assert_eq(l.n, 5);
	cr_expect_eq(l.failed, 0);
	cr_expect_str_eq(l.k[0].id, "IMK-2026.1");
	cr_expect_str_eq(l.k[1].id, "acq_1");
	cr_expect_str_eq(l.k[2].id, "iss0");
	cr_expect_str_eq(l.k[3].id, "iss1");
	cr_expect_eq(l.k[3].state, TSW_VAULT_KEY_RETIRED);
	cr_expect_neq(l.k[3].retired, 0);
	cr_expect_str_eq(l.k[4].id, "T1");
	cr_expect_eq(l.k[4].alg, TSW_VAULT_KEY_AES128);

	cr_assert_eq(tsw_vault_key_load(ro, keys, 4, &n), 0);
	cr_assert_eq(n, 4, "the retired key is not loaded");
	cr_expect_eq(keys[0].len, 16);
	cr_expect_eq(memcmp(keys[0].bytes, K_TDES2, 16), 0);
	cr_expect_eq(keys[1].len, 24);
	cr_expect_eq(memcmp(keys[1].bytes, K_TDES3, 24), 0);
	cr_expect_eq(memcmp(keys[2].bytes, K_AES256, 32), 0);
	cr_expect_str_eq(keys[2].info.scope, "0");
	cr_expect_eq(memcmp(keys[3].bytes, K_AES128, 16), 0);
	cr_expect_eq(keys[3].info.kind, TSW_VAULT_KEY_TAVV);
	OPENSSL_cleanse(keys, sizeof(keys));

	/* rotation: a second IMK for the same range, the first retired */
	{
		struct tsw_vault_key_info k2 =
		    key_in(TSW_VAULT_KEY_IMK_AC, TSW_VAULT_KEY_TDES2, "IMK-2026.2", BIN);
		uint8_t b[16];

		memcpy(b, K_TDES2, 16);
		b[0] ^= 0x10;
		cr_assert_eq(tsw_vault_key_add(v, &k2, b, 16, NULL), 0);
		cr_assert_eq(tsw_vault_key_load(ro, keys, 4, &n), -TSW_E_NO_SPACE,
			     "five active keys do not fit four");
		for (size_t i = 0; i < sizeof(keys); i++)
			cr_assert_eq(((uint8_t *)keys)[i], 0, "a failed load leaves no key bytes");
		cr_assert_eq(tsw_vault_key_retire(v, TSW_VAULT_KEY_IMK_AC, "IMK-2026.1", 10, &again),
			     0);
		cr_expect_eq(again.state, TSW_VAULT_KEY_RETIRED);
		cr_assert_eq(tsw_vault_key_load(ro, keys, 4, &n), 0);
		cr_assert_eq(n, 4);
		cr_expect_str_eq(keys[0].info.id, "IMK-2026.2");
		cr_expect_eq(memcmp(keys[0].bytes, b, 16), 0);
		OPENSSL_cleanse(keys, sizeof(keys));
	}
	tsw_vault_close(ro);
	tsw_vault_close(v);
}

Test(vault, key_store_refuses_bad_keys_ids_scopes_and_duplicates)
{
	static const uint8_t zeros[32];
	struct tsw_vault *v = open_new(), *ro = NULL;
	struct tsw_vault_key_info in;
	struct tsw_vault_key keys[2];
	uint8_t k[32];
	size_t n = 0;
	static const struct {
		uint8_t kind, alg;
		const char *id, *scope;
		size_t len;
		const char *what;
	} bad[] = {
	    {TSW_VAULT_KEY_KIND_MAX, TSW_VAULT_KEY_TDES2, "a", "1", 16, "unknown kind"},
	    {TSW_VAULT_KEY_IMK_AC, TSW_VAULT_KEY_ALG_MAX, "a", "1", 16, "unknown algorithm"},
	    {TSW_VAULT_KEY_IMK_AC, TSW_VAULT_KEY_AES128, "a", "1", 16, "an AES IMK"},
	    {TSW_VAULT_KEY_IMK_AC, TSW_VAULT_KEY_TDES3, "a", "1", 24, "a 3-key IMK"},
	    {TSW_VAULT_KEY_TAVV, TSW_VAULT_KEY_TDES2, "a", "1", 16, "a TDES tavv key"},
	    {TSW_VAULT_KEY_ZPK_ISSUER, TSW_VAULT_KEY_TDES2, "a", "1", 24, "length of another alg"},
	    {TSW_VAULT_KEY_ZPK_ISSUER, TSW_VAULT_KEY_TDES2, "", "1", 16, "empty id"},
	    {TSW_VAULT_KEY_ZPK_ISSUER, TSW_VAULT_KEY_TDES2, "a b", "1", 16, "a space in the id"},
	    {TSW_VAULT_KEY_ZPK_ISSUER, TSW_VAULT_KEY_TDES2, "a/b", "1", 16, "a slash in the id"},
	    {TSW_VAULT_KEY_ZPK_ISSUER, TSW_VAULT_KEY_TDES2, "a", "256", 16, "issuer above 255"},
	    {TSW_VAULT_KEY_ZPK_ISSUER, TSW_VAULT_KEY_TDES2, "a", "01", 16, "issuer 01"},
	    {TSW_VAULT_KEY_ZPK_ISSUER, TSW_VAULT_KEY_TDES2, "a", "", 16, "no scope"},
	    {TSW_VAULT_KEY_ZPK_ACQUIRER, TSW_VAULT_KEY_TDES2, "a", "12a", 16, "DE32 not digits"},
	    {TSW_VAULT_KEY_ZPK_ACQUIRER, TSW_VAULT_KEY_TDES2, "a", "123456789012", 16,
	     "DE32 of 12 digits"},
	    {TSW_VAULT_KEY_IMK_AC, TSW_VAULT_KEY_TDES2, "a", "1234567890123", 16,
	     "a range of 13 digits"},
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&in, 0, sizeof(in));
		in.kind = bad[i].kind;
		in.alg = bad[i].alg;
		snprintf(in.id, sizeof(in.id), "%s", bad[i].id);
		snprintf(in.scope, sizeof(in.scope), "%s", bad[i].scope);
		if (strlen(bad[i].scope) >= sizeof(in.scope)) /* the field full, no NUL */
			memcpy(in.scope, bad[i].scope, sizeof(in.scope));
		cr_expect_eq(tsw_vault_key_add(v, &in, K_AES256, bad[i].len, NULL), -TSW_E_BAD_INPUT,
			     "%s", bad[i].what);
	}
	/* weak keys: all zero; TDES halves equal but for parity bits */
	in = key_in(TSW_VAULT_KEY_ZPK_ISSUER, TSW_VAULT_KEY_TDES2, "w", "1");
	cr_expect_eq(tsw_vault_key_add(v, &in, zeros, 16, NULL), -TSW_E_BAD_INPUT);
	in.alg = TSW_VAULT_KEY_AES256;
	cr_expect_eq(tsw_vault_key_add(v, &in, zeros, 32, NULL), -TSW_E_BAD_INPUT);
	memcpy(k, K_TDES2, 8);
	memcpy(k + 8, K_TDES2, 8);
	k[8] ^= 0x01; /* parity only */
	in.alg = TSW_VAULT_KEY_TDES2;
	cr_expect_eq(tsw_vault_key_add(v, &in, k, 16, NULL), -TSW_E_BAD_INPUT, "K1 = K2");
	memcpy(k, K_TDES3, 24);
	memcpy(k + 16, K_TDES3 + 8, 8);
	in.alg = TSW_VAULT_KEY_TDES3;
	cr_expect_eq(tsw_vault_key_add(v, &in, k, 24, NULL), -TSW_E_BAD_INPUT, "K2 = K3");
	/* parity is not checked: the key with flipped parity bits is taken */
	memcpy(k, K_TDES2, 16);
	k[3] ^= 0x01;
	in.alg = TSW_VAULT_KEY_TDES2;
	cr_expect_eq(tsw_vault_key_add(v, &in, k, 16, NULL), 0);

	/* ids are unique within a kind, for ever */
	in = key_in(TSW_VAULT_KEY_ZPK_ACQUIRER, TSW_VAULT_KEY_TDES2, "dup", "42");
	cr_assert_eq(tsw_vault_key_add(v, &in, K_TDES2, 16, NULL), 0);
	in.scope[0] = '7';
	cr_expect_eq(tsw_vault_key_add(v, &in, K_TDES2, 16, NULL), -TSW_E_EXISTS,
		     "the same id in another scope");
	cr_expect_eq(tsw_vault_key_retire(v, TSW_VAULT_KEY_ZPK_ACQUIRER, "dup", 3, NULL), 0);
	cr_expect_eq(tsw_vault_key_add(v, &in, K_TDES2, 16, NULL), -TSW_E_EXISTS,
		     "a retired id is not reused");
	in.kind = TSW_VAULT_KEY_ZPK_ISSUER;
	snprintf(in.scope, sizeof(in.scope), "4");
	cr_expect_eq(tsw_vault_key_add(v, &in, K_TDES2, 16, NULL), 0, "another kind, same id");
	cr_expect_eq(tsw_vault_key_retire(v, TSW_VAULT_KEY_ZPK_ACQUIRER, "dup", 3, NULL),
		     -EALREADY);
	cr_expect_eq(tsw_vault_key_retire(v, TSW_VAULT_KEY_ZPK_ACQUIRER, "nope", 4, NULL),
		     -TSW_E_NOT_FOUND);
	cr_expect_eq(tsw_vault_key_retire(v, TSW_VAULT_KEY_TAVV, "dup", 3, NULL), -TSW_E_NOT_FOUND);
	cr_expect_eq(tsw_vault_key_retire(v, TSW_VAULT_KEY_KIND_MAX, "dup", 3, NULL),
		     -TSW_E_BAD_INPUT);
	tsw_vault_close(v);

	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, TSW_VAULT_RDONLY, &ro), 0);
	in = key_in(TSW_VAULT_KEY_ZPK_ISSUER, TSW_VAULT_KEY_TDES2, "ro", "1");
	cr_expect_eq(tsw_vault_key_add(ro, &in, K_TDES2, 16, NULL), -EROFS);
	cr_expect_eq(tsw_vault_key_retire(ro, TSW_VAULT_KEY_ZPK_ISSUER, "dup", 3, NULL), -EROFS);
	cr_expect_eq(tsw_vault_key_load(ro, keys, 2, &n), 0);
	cr_expect_eq(n, 2, "the parity-flipped key and dup of zpk-issuer");
	OPENSSL_cleanse(keys, sizeof(keys));
	tsw_vault_close(ro);
}

/* Raw access to the key store's LMDB records (as an attacker with write
 * access to data.mdb has it). */
static size_t raw_key_get(uint8_t kind, const char *id, uint8_t *buf, size_t cap)
{
	uint8_t kb[40];
	MDB_val k = {.mv_size = 1 + strlen(id), .mv_data = kb}, d;
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;

	kb[0] = kind;
	memcpy(kb + 1, id, strlen(id));
	cr_assert_eq(mdb_env_create(&env), 0);
	cr_assert_eq(mdb_env_set_maxdbs(env, 16), 0);
	cr_assert_eq(mdb_env_set_mapsize(env, TSW_VAULT_MAP_SIZE_BYTES), 0);
	cr_assert_eq(mdb_env_open(env, fx.vault, MDB_NOTLS, 0600), 0);
	cr_assert_eq(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
	cr_assert_eq(mdb_dbi_open(txn, "hsmkeys", 0, &dbi), 0);
	cr_assert_eq(mdb_get(txn, dbi, &k, &d), 0);
	cr_assert_leq(d.mv_size, cap);
	memcpy(buf, d.mv_data, d.mv_size);
	mdb_txn_abort(txn);
	mdb_env_close(env);
	return d.mv_size;
}

static void raw_key_put(uint8_t kind, const char *id, const uint8_t *buf, size_t len)
{
	uint8_t kb[40];
	MDB_val k = {.mv_size = 1 + strlen(id), .mv_data = kb};
	MDB_val d = {.mv_size = len, .mv_data = (void *)buf};
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;

	kb[0] = kind;
	memcpy(kb + 1, id, strlen(id));
	cr_assert_eq(mdb_env_create(&env), 0);
	cr_assert_eq(mdb_env_set_maxdbs(env, 16), 0);
	cr_assert_eq(mdb_env_set_mapsize(env, TSW_VAULT_MAP_SIZE_BYTES), 0);
	cr_assert_eq(mdb_env_open(env, fx.vault, MDB_NOTLS, 0600), 0);
	cr_assert_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
	cr_assert_eq(mdb_dbi_open(txn, "hsmkeys", 0, &dbi), 0);
	cr_assert_eq(mdb_put(txn, dbi, &k, &d, 0), 0);
	cr_assert_eq(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
}

static int load_ro(size_t *ret_n)
{
	struct tsw_vault_key keys[8];
	struct tsw_vault *v = NULL;
	int r;

	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, TSW_VAULT_RDONLY, &v), 0);
	r = tsw_vault_key_load(v, keys, 8, ret_n);
	OPENSSL_cleanse(keys, sizeof(keys));
	tsw_vault_close(v);
	return r;
}

Test(vault, every_byte_of_a_key_record_is_authenticated)
{
	struct tsw_vault *v = open_new();
	struct tsw_vault_key_info info[4];
	uint8_t orig[256], bad[256];
	size_t len, n = 0;
	unsigned integrity = 0;

	add_four_keys(v, info);
	cr_assert_eq(tsw_vault_key_retire(v, TSW_VAULT_KEY_TAVV, "T1", 2, NULL), 0);
	tsw_vault_close(v);
	cr_assert_eq(load_ro(&n), 0);
	cr_assert_eq(n, 3);
	len = raw_key_get(TSW_VAULT_KEY_ZPK_ACQUIRER, "acq_1", orig, sizeof(orig));
	for (size_t off = 0; off < len; off++) {
		for (int x = 0; x < 2; x++) {
			struct listed l = {0};
			int r;

			memcpy(bad, orig, len);
			bad[off] ^= x ? 0xff : 0x01;
			raw_key_put(TSW_VAULT_KEY_ZPK_ACQUIRER, "acq_1", bad, len);
			r = load_ro(&n);
			cr_assert(r == -TSW_E_INTEGRITY || r == -TSW_E_CORRUPT ||
				      r == -TSW_E_NOT_FOUND,
				  "byte %zu ^ %s: load %d (%s)", off, x ? "0xff" : "0x01", r,
				  tsw_strerror(r));
			integrity += r == -TSW_E_INTEGRITY;
			cr_assert_eq(tsw_vault_open(fx.vault, fx.key, 0, &v), 0);
			cr_assert_eq(tsw_vault_key_list(v, collect, &l), 0);
			cr_assert_eq(l.n, 4);
			cr_assert_eq(l.failed, 1, "byte %zu: list flags exactly the edited key", off);
			cr_assert_neq(l.err[1], 0);
			cr_assert_neq(tsw_vault_key_retire(v, TSW_VAULT_KEY_ZPK_ACQUIRER, "acq_1", 5,
							   NULL),
				      0, "byte %zu: an edited key is never sealed again", off);
			tsw_vault_close(v);
		}
	}
	cr_assert_gt(integrity, 100, "most edits are caught by the authentication itself");
	raw_key_put(TSW_VAULT_KEY_ZPK_ACQUIRER, "acq_1", orig, len);
	cr_assert_eq(load_ro(&n), 0, "restored");
	/* a retired key made active again on disk */
	len = raw_key_get(TSW_VAULT_KEY_TAVV, "T1", orig, sizeof(orig));
	memcpy(bad, orig, len);
	cr_assert_eq(bad[3], TSW_VAULT_KEY_RETIRED, "state byte");
	bad[3] = TSW_VAULT_KEY_ACTIVE;
	raw_key_put(TSW_VAULT_KEY_TAVV, "T1", bad, len);
	cr_expect_eq(load_ro(&n), -TSW_E_INTEGRITY);
	raw_key_put(TSW_VAULT_KEY_TAVV, "T1", orig, len);
	/* a key record moved to another id, or another kind */
	len = raw_key_get(TSW_VAULT_KEY_ZPK_ISSUER, "iss0", orig, sizeof(orig));
	raw_key_put(TSW_VAULT_KEY_ZPK_ISSUER, "iss9", orig, len);
	cr_expect_eq(load_ro(&n), -TSW_E_INTEGRITY, "moved to another id");
}

Test(vault, rekey_seals_the_key_store_again_and_the_old_key_retires)
{
	struct tsw_vault *v = open_new();
	struct tsw_vault_key_info info[4];
	struct tsw_vault_key keys[4];
	struct listed l = {0};
	uint64_t users = 0;
	uint32_t id = 0;
	size_t n = 0;

	add_four_keys(v, info);
	cr_assert_eq(tsw_vault_rekey(v, &id, NULL), 0);
	cr_assert_eq(id, 2);
	cr_assert_eq(tsw_vault_key_list(v, collect, &l), 0);
	for (unsigned i = 0; i < l.n; i++)
		cr_expect_eq(l.k[i].sealed_by, 2, "key %u sealed under the new PAN key", i);
	cr_assert_eq(tsw_vault_retire_key(v, 1, &users), 0);
	cr_expect_eq(users, 0);
	tsw_vault_close(v);
	/* a fresh handle reads the key file without PAN key 1 */
	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, TSW_VAULT_RDONLY, &v), 0);
	cr_assert_eq(tsw_vault_key_load(v, keys, 4, &n), 0);
	cr_assert_eq(n, 4);
	cr_expect_eq(memcmp(keys[1].bytes, K_TDES3, 24), 0);
	OPENSSL_cleanse(keys, sizeof(keys));
	tsw_vault_close(v);
}

Test(vault, keys_retire_waits_for_key_store_records_under_the_key)
{
	struct tsw_vault *v = open_new();
	struct tsw_vault_key_info in = key_in(TSW_VAULT_KEY_ZPK_ISSUER, TSW_VAULT_KEY_TDES2, "z", "1");
	uint8_t rec[256];
	uint64_t users = 0;
	size_t len;
	uint32_t id = 0;

	cr_assert_eq(tsw_vault_key_add(v, &in, K_TDES2, 16, NULL), 0);
	len = raw_key_get(TSW_VAULT_KEY_ZPK_ISSUER, "z", rec, sizeof(rec));
	cr_assert_eq(tsw_vault_rekey(v, &id, NULL), 0);
	tsw_vault_close(v);
	/* the record as it was before the rekey: sealed under key 1 (as a
	 * crash would leave one that a rekey had not reached) */
	raw_key_put(TSW_VAULT_KEY_ZPK_ISSUER, "z", rec, len);
	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, 0, &v), 0);
	cr_expect_eq(tsw_vault_retire_key(v, 1, &users), -EBUSY);
	cr_expect_eq(users, 1);
	{
		struct tsw_vault_reseal_opts o = {.mode = TSW_VAULT_RESEAL_FINISH};
		struct tsw_vault_reseal_result res = {0};

		cr_assert_eq(tsw_vault_reseal(v, &o, &res), 0);
		cr_expect_eq(res.failed, 0);
	}
	cr_expect_eq(tsw_vault_retire_key(v, 1, &users), 0);
	tsw_vault_close(v);
}

static bool out_has_hex(const char *out, const uint8_t *k, size_t len)
{
	char up[80], lo[80];

	for (size_t i = 0; i < len; i++) {
		snprintf(up + 2 * i, 3, "%02X", k[i]);
		snprintf(lo + 2 * i, 3, "%02x", k[i]);
	}
	/* any 8 bytes of it would be too many */
	for (size_t i = 0; i + 16 <= 2 * len; i += 2) {
		char a[17], b[17];

		memcpy(a, up + i, 16);
		memcpy(b, lo + i, 16);
		a[16] = b[16] = '\0';
		if (strstr(out, a) || strstr(out, b))
			return true;
	}
	return false;
}

Test(vault, tokvault_key_verbs_print_kcv_and_never_the_key)
{
	static const char imk_hex[] = "0123456789ABCDEFFEDCBA9876543210\n";
	static const char zpk_hex[] = "0123456789abcdeffedcba987654321089abcdef01234567\n";
	struct tsw_vault *v = open_new();
	char out[OUT_CAP], data[PATH_CAP];
	const char *add_imk[] = {"key-add", "imk-ac", "IMK1", "--range", BIN, NULL};
	const char *add_zpk[] = {"key-add", "zpk-acquirer", "Z1", "--acquirer", "12345", NULL};
	static const struct {
		const char *args[8];
		const char *in;
		int rc;
		const char *says;
	} bad[] = {
	    {{"key-add", "imk-ac", "X", "--range", BIN, NULL}, "0123456789ABCDEFFEDCBA987654321G\n",
	     1, "not hex"},
	    {{"key-add", "imk-ac", "X", "--range", BIN, NULL}, "0123456789ABCDEFFEDCBA987654321\n",
	     1, "odd number of hex digits"},
	    {{"key-add", "imk-ac", "X", "--range", BIN, NULL}, "0123456789ABCDEF\n", 1,
	     "8 bytes: not a imk-ac key"},
	    {{"key-add", "imk-ac", "X", "--range", BIN, NULL},
	     "0123456789ABCDEFFEDCBA98765432100123456789ABCDEFFEDCBA98765432100011\n", 1,
	     "longer than a key"},
	    {{"key-add", "imk-ac", "X", "--range", BIN, NULL}, "", 1, "no key on standard input"},
	    {{"key-add", "imk-ac", "X", "--range", BIN, NULL}, "0000000000000000000000000000000000\n",
	     1, "not a imk-ac key"},
	    {{"key-add", "imk-ac", "X", "--range", BIN, NULL}, "00000000000000000000000000000000\n",
	     1, "weak keys"},
	    {{"key-add", "imk-ac", "X", "--range", BIN, "--alg", "aes128", NULL},
	     "00112233445566778899AABBCCDDEEFF\n", 1, "imk-ac takes tdes2 only"},
	    {{"key-add", "imk-ac", "IMK1", "--range", BIN, NULL}, imk_hex, 1, "exists already"},
	    {{"key-add", "imk-xx", "X", "--range", BIN, NULL}, imk_hex, 2,
	     "KIND: imk-ac, zpk-acquirer, zpk-issuer or tavv"},
	    {{"key-add", "imk-ac", "X", "--acquirer", "12345", NULL}, imk_hex, 2,
	     "imk-ac and tavv take --range"},
	    {{"key-add", "imk-ac", "X", NULL}, imk_hex, 2, "imk-ac and tavv take --range"},
	    {{"key-add", "imk-ac", "X", "--range", BIN, "--alg", "des", NULL}, imk_hex, 2,
	     "--alg: tdes2"},
	    {{"key-retire", "imk-ac", "NOPE", NULL}, NULL, 1, "no imk-ac key with that id"},
	    {{"key-retire", "tavv", "IMK1", NULL}, NULL, 1, "no tavv key with that id"},
	    {{"key-retire", "bogus", "IMK1", NULL}, NULL, 2, "KIND:"},
	};
	uint8_t imk[16], zpk[24];

	tsw_vault_close(v);
	for (int i = 0; i < 16; i++)
		sscanf(imk_hex + 2 * i, "%2hhx", &imk[i]);
	for (int i = 0; i < 24; i++)
		sscanf(zpk_hex + 2 * i, "%2hhx", &zpk[i]);
	cr_assert_eq(tokvault_in(out, sizeof(out), add_imk, imk_hex), 0, "%s", out);
	cr_expect_not_null(strstr(out, "kcv=08D7B4\n"), "%s", out);
	cr_expect(!out_has_hex(out, imk, 16), "the key was printed: %s", out);
	cr_assert_eq(tokvault_in(out, sizeof(out), add_zpk, zpk_hex), 0, "%s", out);
	cr_expect_not_null(strstr(out, "alg=tdes3"), "%s", out);
	cr_expect(!out_has_hex(out, zpk, 24), "the key was printed: %s", out);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_expect_eq(tokvault_in(out, sizeof(out), bad[i].args, bad[i].in), bad[i].rc,
			     "case %zu: %s", i, out);
		cr_expect_not_null(strstr(out, bad[i].says), "case %zu: %s", i, out);
		cr_expect(!out_has_hex(out, imk, 16), "case %zu printed the key: %s", i, out);
		cr_expect(bad[i].in == NULL || strstr(out, bad[i].in) == NULL ||
			      bad[i].in[0] == '\0',
			  "case %zu echoed its input: %s", i, out);
	}
	{
		const char *args[] = {"key-list", NULL};

		cr_assert_eq(tokvault(out, sizeof(out), args), 0, "%s", out);
		cr_expect_not_null(strstr(out, "kind=imk-ac id=IMK1 scope=489537 alg=tdes2 "
					       "kcv=08D7B4 state=active"),
				   "%s", out);
		cr_expect_not_null(strstr(out, "kind=zpk-acquirer id=Z1 scope=12345 alg=tdes3"),
				   "%s", out);
		cr_expect(!out_has_hex(out, imk, 16) && !out_has_hex(out, zpk, 24), "%s", out);
	}
	{
		const char *args[] = {"key-retire", "imk-ac", "IMK1", NULL};

		cr_assert_eq(tokvault(out, sizeof(out), args), 0, "%s", out);
		cr_assert_eq(tokvault(out, sizeof(out), args), 1, "%s", out);
		cr_expect_not_null(strstr(out, "retired already"), "%s", out);
	}
	{
		const char *args[] = {"key-list", NULL};

		cr_assert_eq(tokvault(out, sizeof(out), args), 0, "%s", out);
		cr_expect_not_null(strstr(out, "kind=imk-ac id=IMK1 scope=489537 alg=tdes2 "
					       "kcv=08D7B4 state=retired"),
				   "%s", out);
	}
	/* no key in the files in the clear */
	snprintf(data, sizeof(data), "%s/data.mdb", fx.vault);
	cr_expect(!file_contains(data, imk, 16), "the IMK is in data.mdb in the clear");
	cr_expect(!file_contains(data, zpk, 24), "the ZPK is in data.mdb in the clear");
	cr_expect(!file_contains(data, "0123456789ABCDEF", 16), "the IMK's hex is in data.mdb");
	/* an edited key record: key-list says so and fails */
	{
		const char *args[] = {"key-list", NULL};
		uint8_t rec[256];
		size_t len = raw_key_get(TSW_VAULT_KEY_ZPK_ACQUIRER, "Z1", rec, sizeof(rec));

		rec[8] ^= 0x01; /* the scope */
		raw_key_put(TSW_VAULT_KEY_ZPK_ACQUIRER, "Z1", rec, len);
		cr_assert_eq(tokvault(out, sizeof(out), args), 1, "%s", out);
		cr_expect_not_null(strstr(out, "id=Z1 scope=02345"), "%s", out);
		cr_expect_not_null(strstr(out, "integrity=FAILED"), "%s", out);
		cr_expect_not_null(strstr(out, "1 key records fail authentication"), "%s", out);
	}
}

/* ---- repersonalize --psn ---- */

/* --psn takes two digits, like provision's: strtol also reads " 7" and
 * "+7" (a sign, a leading space) as 07 */
Test(vault, tokvault_repersonalize_psn_is_two_digits)
{
	struct tsw_vault *v = open_new();
	char toks[1][20], pan[20], out[OUT_CAP];
	const char *bad[] = {" 7", "+7", "7", "1a", "100", "-1"};
	struct tsw_token t;

	luhn_number(pan, "411111", 16, 1);
	import_card(v, pan, 1, 1, toks);
	tsw_vault_close(v);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *args[] = {"repersonalize", "--psn", bad[i], toks[0], NULL};

		cr_expect_eq(tokvault(out, sizeof(out), args), 2, "--psn '%s': %s", bad[i], out);
	}
	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, 0, &v), 0);
	cr_assert_eq(lookup(v, toks[0], &t), 0);
	cr_expect_eq(t.atc_epoch, 0, "every --psn above refused: nothing changed");
	cr_expect_eq(t.psn, 0);
	tsw_vault_close(v);
}
