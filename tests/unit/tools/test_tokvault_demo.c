/* tokvault demo with card cryptography: --cvn-pct marks tokens that
 * require an ARQC (record and token list agree), the demo keys land in
 * the key store (key-list shows them by check value; no key byte is ever
 * printed), and the options that make no sense are refused. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tsw/vault.h"

#define OUT_CAP (1 << 16)
#define PATH_CAP 512
#define COUNT 2000
#define FIELDS 13 /* token,...,expect_rc,cvn,psn */

extern char **environ;

static struct {
	char dir[64], vault[PATH_CAP], key[PATH_CAP], csv[PATH_CAP];
} fx;

static void setup(void)
{
	snprintf(fx.dir, sizeof(fx.dir), "/tmp/tokvault-demo-XXXXXX");
	cr_assert_not_null(mkdtemp(fx.dir));
	snprintf(fx.vault, sizeof(fx.vault), "%s/vault", fx.dir);
	snprintf(fx.key, sizeof(fx.key), "%s/vault.key", fx.dir);
	snprintf(fx.csv, sizeof(fx.csv), "%s/tokens.csv", fx.dir);
}

static void teardown(void)
{
	char cmd[PATH_CAP + 16];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fx.dir);
	cr_assert_eq(system(cmd), 0);
}

/* Runs tokvault --vault --key-file ARGS; stdout and stderr into out.
 * Returns the exit status. */
static int tokvault(char *out, size_t cap, const char *const *args)
{
	const char *exe = getenv("TSW_TOKVAULT");
	const char *argv[32] = {"tokvault", "--vault", fx.vault, "--key-file", fx.key};
	char outpath[PATH_CAP + 16];
	posix_spawn_file_actions_t fa;
	int n = 5, status = 0;
	pid_t pid;
	FILE *f;
	size_t len;

	cr_assert_not_null(exe, "TSW_TOKVAULT unset");
	snprintf(outpath, sizeof(outpath), "%s/out.txt", fx.dir);
	for (int i = 0; args[i]; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	posix_spawn_file_actions_init(&fa);
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

static unsigned count_of(const char *text, const char *needle)
{
	unsigned n = 0;

	for (const char *p = text; (p = strstr(p, needle)); p++)
		n++;
	return n;
}

/* What the token list says of the cards, checked row by row against the
 * records. */
struct list_stats {
	unsigned rows, cards, by_cvn[21];
	char acquirers[32][8];
	unsigned n_acquirers;
};

static void check_row(struct tsw_vault_reader *rd, char **fld, struct list_stats *st)
{
	struct tsw_token t;

	cr_assert_eq(tsw_vault_lookup(rd, fld[0], strlen(fld[0]), &t), 0, "%s", fld[0]);
	st->rows++;
	if (fld[4][0]) {
		bool known = false;

		for (unsigned i = 0; i < st->n_acquirers; i++)
			known = known || strcmp(st->acquirers[i], fld[4]) == 0;
		if (!known) {
			cr_assert_lt(st->n_acquirers, 32);
			snprintf(st->acquirers[st->n_acquirers++], 8, "%s", fld[4]);
		}
	}
	if (!fld[11][0]) {
		cr_assert_eq(t.cvn, 0, "%s", fld[0]);
		cr_assert_str_eq(fld[12], "");
		return;
	}
	st->cards++;
	cr_assert_eq(t.cvn, atoi(fld[11]), "record and list agree on the cvn");
	cr_assert(TSW_TOKEN_CVN_VALID(t.cvn) && t.cvn);
	st->by_cvn[t.cvn]++;
	cr_assert_eq(strlen(fld[12]), 2, "psn as two digits: %s", fld[12]);
	cr_assert_eq(t.psn, atoi(fld[12]));
	/* the cryptogram is required only in chip and contactless */
	cr_assert(strcmp(fld[2], "chip") == 0 || strcmp(fld[2], "contactless") == 0, "%s", fld[2]);
	if (t.pos_modes) {
		unsigned bit = strcmp(fld[2], "chip") == 0 ? TSW_POS_CHIP : TSW_POS_CONTACTLESS;

		cr_assert(t.pos_modes & (1u << bit), "a restricted token allows its listed mode");
	}
}

static void read_list(struct list_stats *st)
{
	char line[512];
	struct tsw_vault_reader *rd;
	struct tsw_vault *v;
	FILE *f = fopen(fx.csv, "r");

	memset(st, 0, sizeof(*st));
	cr_assert_not_null(f);
	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, TSW_VAULT_RDONLY, &v), 0);
	cr_assert_eq(tsw_vault_reader_open(v, &rd), 0);
	cr_assert_eq(tsw_vault_reader_renew(rd), 0);
	cr_assert_not_null(fgets(line, sizeof(line), f));
	cr_assert_str_eq(line, "token,token_expiry,pos_mode,merchant_id,acquirer_id,mcc,device_ref,"
			       "trid,amount_limit,currency,expect_rc,cvn,psn\n");
	while (fgets(line, sizeof(line), f)) {
		char *fld[FIELDS], *p = line;
		int n = 0;

		line[strcspn(line, "\n")] = '\0';
		for (char *c = p;; c++) {
			if (*c == ',' || *c == '\0') {
				bool end = *c == '\0';

				*c = '\0';
				cr_assert_lt(n, FIELDS);
				fld[n++] = p;
				p = c + 1;
				if (end)
					break;
			}
		}
		cr_assert_eq(n, FIELDS);
		check_row(rd, fld, st);
	}
	fclose(f);
	tsw_vault_reader_close(rd);
	tsw_vault_close(v);
	cr_assert_eq(st->rows, COUNT);
}

/* Every active key of the store, with its bytes, and none of them (hex,
 * either case) anywhere in text. */
static size_t check_keys_unprinted(const char *text, struct tsw_vault_key *keys, size_t cap)
{
	struct tsw_vault *v;
	size_t n = 0;

	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, TSW_VAULT_RDONLY, &v), 0);
	cr_assert_eq(tsw_vault_key_load(v, keys, cap, &n), 0);
	tsw_vault_close(v);
	for (size_t i = 0; i < n; i++) {
		char hex[2 * TSW_VAULT_KEY_BYTES_MAX + 1], lower[sizeof(hex)];

		for (unsigned b = 0; b < keys[i].len; b++) {
			snprintf(hex + 2 * b, 3, "%02X", keys[i].bytes[b]);
			snprintf(lower + 2 * b, 3, "%02x", keys[i].bytes[b]);
		}
		/* any 8 bytes of a key would be a leak */
		for (unsigned off = 0; off + 16 <= 2u * keys[i].len; off += 2) {
			char part[17], lpart[17];

			memcpy(part, hex + off, 16);
			memcpy(lpart, lower + off, 16);
			part[16] = lpart[16] = '\0';
			cr_assert_null(strstr(text, part), "key %s printed", keys[i].info.id);
			cr_assert_null(strstr(text, lpart), "key %s printed", keys[i].info.id);
		}
	}
	return n;
}

Test(demo, cvn_pct_100_marks_every_token_and_adds_the_keys, .init = setup, .fini = teardown,
     .timeout = 60)
{
	char out[OUT_CAP], list[OUT_CAP], both[2 * OUT_CAP], kcv[32];
	struct tsw_vault_key keys[32];
	struct list_stats st;
	size_t n;
	const char *args[] = {"demo", "--count", "2000", "--out", fx.csv, "--cvn-pct", "100", NULL};
	const char *ls[] = {"key-list", NULL};

	cr_assert_eq(tokvault(out, sizeof(out), args), 0, "%s", out);
	cr_assert_not_null(strstr(out, "cryptogram=2000"), "%s", out);
	read_list(&st);
	cr_assert_eq(st.cards, COUNT, "every token requires an ARQC");
	/* the four versions in turn */
	cr_assert_eq(st.by_cvn[10], COUNT / 4);
	cr_assert_eq(st.by_cvn[16], COUNT / 4);
	cr_assert_eq(st.by_cvn[18], COUNT / 4);
	cr_assert_eq(st.by_cvn[20], COUNT / 4);

	cr_assert_eq(tokvault(list, sizeof(list), ls), 0, "%s", list);
	cr_assert_eq(count_of(list, "kind=imk-ac id=demo-imk-ac scope=489537 alg=tdes2"), 1, "%s",
		     list);
	cr_assert_eq(count_of(list, "kind=zpk-acquirer "), 8, "%s", list);
	cr_assert_eq(count_of(list, "kind=zpk-issuer id=demo-zpk-iss-0 scope=0 alg=tdes2"), 1, "%s",
		     list);
	cr_assert_eq(count_of(list, "state=active"), 10);
	cr_assert_eq(count_of(list, "integrity=ok"), 10);
	/* every acquirer the list names, and tokbench's default, has its key */
	cr_assert_gt(st.n_acquirers, 0);
	for (unsigned i = 0; i < st.n_acquirers; i++) {
		char want[64];

		snprintf(want, sizeof(want), "kind=zpk-acquirer id=demo-zpk-acq-%s scope=%s ",
			 st.acquirers[i], st.acquirers[i]);
		cr_assert_not_null(strstr(list, want), "%s", st.acquirers[i]);
	}
	cr_assert_not_null(strstr(list, "scope=100001 alg=tdes2"));

	snprintf(both, sizeof(both), "%s\n%s", out, list);
	n = check_keys_unprinted(both, keys, sizeof(keys) / sizeof(keys[0]));
	cr_assert_eq(n, 10);
	/* the check values demo printed are the stored ones */
	for (size_t i = 0; i < n; i++) {
		for (unsigned b = 0; b < keys[i].info.kcv_len; b++)
			snprintf(kcv + 2 * b, 3, "%02X", keys[i].info.kcv[b]);
		cr_assert_eq(count_of(out, kcv), 1, "kcv of %s", keys[i].info.id);
	}
}

Test(demo, cvn_picks_one_version_for_a_share_of_the_tokens, .init = setup, .fini = teardown,
     .timeout = 60)
{
	char out[OUT_CAP];
	struct list_stats st;
	const char *args[] = {"demo",	   "--count", "2000",  "--out", fx.csv,
			      "--cvn-pct", "30",      "--cvn", "18",	NULL};

	cr_assert_eq(tokvault(out, sizeof(out), args), 0, "%s", out);
	read_list(&st);
	cr_assert_eq(st.by_cvn[18], st.cards, "only CVN 18");
	cr_assert(st.cards > COUNT * 2 / 10 && st.cards < COUNT * 4 / 10, "%u of %u", st.cards,
		  COUNT);
}

Test(demo, zpk_alg_aes128_makes_format_4_zone_keys, .init = setup, .fini = teardown, .timeout = 60)
{
	char out[OUT_CAP], list[OUT_CAP];
	const char *args[] = {"demo",	   "--count", "2000",	   "--out",  fx.csv,
			      "--cvn-pct", "10",      "--zpk-alg", "aes128", NULL};
	const char *ls[] = {"key-list", NULL};

	cr_assert_eq(tokvault(out, sizeof(out), args), 0, "%s", out);
	cr_assert_eq(tokvault(list, sizeof(list), ls), 0, "%s", list);
	cr_assert_eq(count_of(list, "kind=imk-ac id=demo-imk-ac scope=489537 alg=tdes2"), 1);
	cr_assert_eq(count_of(list, "alg=aes128"), 9, "%s", list);
	/* AES check values are 5 bytes */
	cr_assert_not_null(
	    strstr(list, "kind=zpk-issuer id=demo-zpk-iss-0 scope=0 alg=aes128 kcv="));
	{
		const char *p = strstr(list, "alg=aes128 kcv=") + strlen("alg=aes128 kcv=");

		cr_assert_eq(strcspn(p, " "), 10, "%s", p);
	}
}

Test(demo, without_cvn_pct_no_token_needs_a_cryptogram_and_no_key, .init = setup, .fini = teardown,
     .timeout = 60)
{
	char out[OUT_CAP], list[OUT_CAP];
	struct list_stats st;
	const char *args[] = {"demo", "--count", "2000", "--out", fx.csv, NULL};
	const char *ls[] = {"key-list", NULL};

	cr_assert_eq(tokvault(out, sizeof(out), args), 0, "%s", out);
	cr_assert_not_null(strstr(out, "cryptogram=0"), "%s", out);
	cr_assert_null(strstr(out, "demo: key"), "%s", out);
	read_list(&st);
	cr_assert_eq(st.cards, 0);
	cr_assert_eq(tokvault(list, sizeof(list), ls), 0, "%s", list);
	cr_assert_null(strstr(list, "kind="), "%s", list);
}

Test(demo, keys_flag_adds_the_keys_without_cryptogram_tokens, .init = setup, .fini = teardown,
     .timeout = 60)
{
	char out[OUT_CAP], list[OUT_CAP];
	struct list_stats st;
	const char *args[] = {"demo", "--count", "2000", "--out", fx.csv, "--keys", NULL};
	const char *ls[] = {"key-list", NULL};

	cr_assert_eq(tokvault(out, sizeof(out), args), 0, "%s", out);
	read_list(&st);
	cr_assert_eq(st.cards, 0);
	cr_assert_eq(tokvault(list, sizeof(list), ls), 0, "%s", list);
	cr_assert_eq(count_of(list, "state=active"), 10, "%s", list);
}

Test(demo, bad_options_exit_2, .init = setup, .fini = teardown, .timeout = 60)
{
	static const char *const bad[][2] = {
	    {"--cvn-pct", "101"},    {"--cvn-pct", "-1"},  {"--cvn-pct", "5x"},
	    {"--cvn", "12"},	     {"--cvn", "0"},	   {"--zpk-alg", "tdes3"},
	    {"--zpk-alg", "aes256"}, {"--zpk-alg", "des"},
	};
	char out[OUT_CAP];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		/* --cvn-pct 50 after the bad pair: a bad --cvn-pct comes first and
		 * wins, a bad --cvn or --zpk-alg is refused for its value */
		const char *args[] = {"demo",	 "--count", "10",	 "--out", fx.csv,
				      bad[i][0], bad[i][1], "--cvn-pct", "50",	  NULL};

		cr_assert_eq(tokvault(out, sizeof(out), args), 2, "case %zu: %s", i, out);
	}
	/* options that would do nothing without cryptogram tokens or keys */
	{
		const char *args[] = {"demo", "--count", "10", "--out",
				      fx.csv, "--cvn",	 "18", NULL};

		cr_assert_eq(tokvault(out, sizeof(out), args), 2, "%s", out);
	}
	{
		const char *args[] = {"demo", "--count",   "10",     "--out",
				      fx.csv, "--zpk-alg", "aes128", NULL};

		cr_assert_eq(tokvault(out, sizeof(out), args), 2, "%s", out);
	}
}

/* A store that holds a demo key id already: demo says so and writes no
 * token. */
Test(demo, a_taken_key_id_fails_before_any_token, .init = setup, .fini = teardown, .timeout = 60)
{
	struct tsw_vault_key_info in = {.kind = TSW_VAULT_KEY_ZPK_ISSUER,
					.alg = TSW_VAULT_KEY_TDES2,
					.id = "demo-zpk-iss-0",
					.scope = "0"};
	static const uint8_t k[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
	struct tsw_vault_stats vs;
	struct tsw_vault *v;
	char out[OUT_CAP];
	const char *args[] = {"demo", "--count", "10", "--out", fx.csv, "--cvn-pct", "50", NULL};

	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, TSW_VAULT_CREATE, &v), 0);
	cr_assert_eq(tsw_vault_key_add(v, &in, k, sizeof(k), NULL), 0);
	tsw_vault_close(v);
	cr_assert_eq(tokvault(out, sizeof(out), args), 1, "%s", out);
	cr_assert_not_null(strstr(out, "demo-zpk-iss-0: the store has that id already"), "%s", out);
	cr_assert_eq(tsw_vault_open(fx.vault, fx.key, TSW_VAULT_RDONLY, &v), 0);
	cr_assert_eq(tsw_vault_stats(v, &vs), 0);
	cr_assert_eq(vs.tokens, 0);
	tsw_vault_close(v);
}
