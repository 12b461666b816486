/* tokvault: administration of the token vault. Every verb takes
 * --vault DIR --key-file FILE; see usage() and docs/vault.md. Output never
 * carries a PAN (masked) or a key. Exit: 0 done, 1 failed, 2 usage. */
#include <errno.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tokvault.h"
#include "tsw/cluster.h"
#include "tsw/error.h"
#include "tsw/harden.h"
#include "tsw/log.h"
#include "tsw/vault.h"

#define EXIT_USAGE 2
#define ARGS_MAX 64
#define BINS_ARG_MAX TSW_VAULT_BINS_MAX
#define TOKEN_LEN_DEFAULT 16
#define MASK_MAX 32
#define IMPORT_BUF_BYTES (1u << 16)
#define MIB (1024ull * 1024ull)
/* a PAN line read from standard input: digits, newline, slack for a CR */
#define PAN_LINE_MAX (TSW_PAN_MAX_DIGITS + 8)
#define PAN_ARGS_MAX 2
#define CLUSTER_MS_MAX 600000u

struct verb {
	const char *name;
	const char *args;
	const char *help;
	int (*run)(struct tsw_vault *v, int argc, char **argv);
	unsigned open_flags;
	const char *note; /* more text for VERB --help (NULL: none) */
};

static const char *g_verb;

static int fail(int err, const char *what)
{
	fprintf(stderr, "tokvault: %s: %s: %s\n", g_verb, what, tsw_strerror(err));
	if (err == -EBUSY) /* the index guard (src/vault): card-level writes wait */
		fprintf(stderr,
			"tokvault: %s: an index rekey is in progress, or finished since this "
			"tokvault started: finish it (tokvault rekey --index), then run "
			"this again\n",
			g_verb);
	return EXIT_FAILURE;
}

static int usage_error(const char *msg)
{
	fprintf(stderr, "tokvault: %s: %s (try: tokvault %s --help)\n", g_verb, msg, g_verb);
	return EXIT_USAGE;
}

static const char *mask(const char *digits, char *buf)
{
	if (tsw_mask_pan(digits, (unsigned)strlen(digits), buf, MASK_MAX) < 0)
		snprintf(buf, MASK_MAX, "?");
	return buf;
}

static const char *status_name(unsigned s)
{
	static const char *const names[TSW_TOKEN_STATUS_MAX] = {"active", "suspended", "deleted"};

	return s < TSW_TOKEN_STATUS_MAX ? names[s] : "?";
}

/* Finds "--name VALUE" in argv (NULL when absent). */
static const char *opt(int argc, char **argv, const char *name)
{
	for (int i = 0; i + 1 < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return argv[i + 1];
	return NULL;
}

static bool flag(int argc, char **argv, const char *name)
{
	for (int i = 0; i < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return true;
	return false;
}

/* A card-number option: "--pan PAN", or "--pan -" to read it from
 * standard input so it stays out of /proc/PID/cmdline and shell history. */
struct pan_arg {
	const char *flag;
	const char *value; /* argv, or line; NULL when the option is absent */
	int pos;	   /* index of the option in argv */
	char line[PAN_LINE_MAX];
};

/* Reads one line from fd 0 into line (newline and a CR before it
 * stripped), byte by byte so no stdio buffer keeps a copy. Returns 0,
 * -ENODATA (end of input before any byte), -E2BIG (longer than the buffer),
 * -errno. */
static int read_line(char *line, size_t cap)
{
	size_t n = 0;
	char c = 0;

	for (;;) {
		ssize_t r = read(STDIN_FILENO, &c, 1);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0) {
			if (n == 0)
				return -ENODATA;
			break;
		}
		if (c == '\n')
			break;
		if (n + 1 >= cap)
			return -E2BIG;
		line[n++] = c;
	}
	if (n && line[n - 1] == '\r')
		n--;
	line[n] = '\0';
	c = 0;
	return 0;
}

/* Fills a[0..n).value from argv; each one given as "-" is read from
 * standard input, one line each, in the order the options appear. Returns 0
 * or an exit status (the message names the option, never the line). The
 * caller wipes a with OPENSSL_cleanse whatever this returns. */
static int pan_args(int argc, char **argv, struct pan_arg *a, size_t n)
{
	struct pan_arg *order[PAN_ARGS_MAX];
	size_t k = 0;

	for (size_t j = 0; j < n; j++) {
		a[j].value = NULL;
		for (int i = 0; i + 1 < argc && !a[j].value; i++)
			if (strcmp(argv[i], a[j].flag) == 0) {
				a[j].value = argv[i + 1];
				a[j].pos = i;
			}
		if (a[j].value && strcmp(a[j].value, "-") == 0 && k < PAN_ARGS_MAX)
			order[k++] = &a[j];
	}
	/* at most two: put them in argv order */
	if (k == 2 && order[0]->pos > order[1]->pos) {
		struct pan_arg *t = order[0];

		order[0] = order[1];
		order[1] = t;
	}
	for (size_t j = 0; j < k; j++) {
		int r = read_line(order[j]->line, sizeof(order[j]->line));

		if (r == -ENODATA) {
			fprintf(stderr, "tokvault: %s: %s -: no line for it on standard input\n",
				g_verb, order[j]->flag);
			return EXIT_FAILURE;
		}
		if (r == -E2BIG) {
			fprintf(stderr, "tokvault: %s: %s -: line on standard input too long\n",
				g_verb, order[j]->flag);
			return EXIT_FAILURE;
		}
		if (r < 0)
			return fail(r, "standard input");
		if (!order[j]->line[0]) {
			fprintf(stderr, "tokvault: %s: %s -: empty line on standard input\n",
				g_verb, order[j]->flag);
			return EXIT_FAILURE;
		}
		order[j]->value = order[j]->line;
	}
	return 0;
}

/* ---- verbs ---- */

static int run_init(struct tsw_vault *v, int argc, char **argv)
{
	struct tsw_vault_stats st;
	int r;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--token-bin") != 0)
			return usage_error("unknown argument");
		if (++i >= argc)
			return usage_error("--token-bin needs a prefix");
		r = tsw_vault_add_token_bin(v, argv[i], strlen(argv[i]));
		if (r < 0)
			return fail(r, "--token-bin");
	}
	r = tsw_vault_stats(v, &st);
	if (r < 0)
		return fail(r, "stats");
	printf("vault ready: tokens=%llu bins=%u key_id=%u\n", (unsigned long long)st.tokens,
	       st.n_bins, st.current_key_id);
	return 0;
}

static int parse_u32(const char *s, uint32_t *ret);

static void print_reject(void *ctx, unsigned long line, int err, const char *reason)
{
	(void)ctx;
	(void)err;
	fprintf(stderr, "line %lu: %s\n", line, reason);
}

/* What `import` was asked for beyond the vault's defaults. */
struct import_opts {
	const char *file;
	bool background;
};

_Static_assert(TSW_VAULT_CHUNK_ROWS_MAX == 1000000, "--chunk-rows' usage error names the bound");

/* A rows-a-second figure: digits only (no sign, no blank), 0 allowed. */
static int parse_rate(const char *s, uint64_t *ret)
{
	char *end = NULL;
	unsigned long long n;

	if (*s < '0' || *s > '9')
		return -TSW_E_BAD_INPUT;
	errno = 0;
	n = strtoull(s, &end, 10);
	if (errno || *end || n > TSW_VAULT_IMPORT_RATE_MAX)
		return -TSW_E_BAD_INPUT;
	*ret = n;
	return 0;
}

/* Parses import's arguments into o and v's bulk-write settings; a usage
 * error (exit 2) before anything is read or written. */
static int import_args(struct tsw_vault *v, int argc, char **argv, struct import_opts *o)
{
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
		unsigned long long mb;
		uint64_t rate;
		uint32_t rows;
		char *end = NULL;

		if (strcmp(a, "--background") == 0) {
			o->background = true;
			continue;
		}
		if (strcmp(a, "--sort-mem-mb") != 0 && strcmp(a, "--chunk-rows") != 0 &&
		    strcmp(a, "--rate") != 0) {
			if (a[0] == '-' && a[1] != '\0')
				return usage_error("unknown argument");
			if (o->file)
				return usage_error("import needs one FILE.csv");
			o->file = a;
			continue;
		}
		i++;
		if (strcmp(a, "--chunk-rows") == 0) {
			if (!val || parse_u32(val, &rows) < 0 ||
			    tsw_vault_set_chunk_rows(v, rows) < 0)
				return usage_error(
				    "--chunk-rows: not a number of rows from 1 to 1000000");
		} else if (strcmp(a, "--rate") == 0) {
			if (!val || parse_rate(val, &rate) < 0 ||
			    tsw_vault_set_import_rate(v, rate) < 0)
				return usage_error(
				    "--rate: not a number of rows a second (0: unlimited)");
		} else {
			if (!val)
				return usage_error("--sort-mem-mb needs a number");
			errno = 0;
			mb = strtoull(val, &end, 10);
			if (errno || !*val || *end || mb > SIZE_MAX / MIB ||
			    tsw_vault_set_sort_mem(v, (size_t)mb * MIB) < 0)
				return usage_error("--sort-mem-mb: not a size in range");
		}
	}
	if (!o->file)
		return usage_error("import needs one FILE.csv");
	return 0;
}

static int run_import(struct tsw_vault *v, int argc, char **argv)
{
	static char iobuf[IMPORT_BUF_BYTES];
	struct tsw_vault_import_stats st = {0};
	struct import_opts o = {0};
	struct background bg = {0};
	struct timespec t0, t1;
	FILE *in;
	double s;
	int r;

	r = import_args(v, argc, argv, &o);
	if (r)
		return r;
	if (o.background && (r = tokvault_background(&bg)) < 0)
		return fail(r, "--background");
	in = strcmp(o.file, "-") == 0 ? stdin : fopen(o.file, "r");
	if (!in)
		return fail(-errno, o.file);
	/* our own stdio buffer, so the PANs that pass through it are wiped */
	setvbuf(in, iobuf, _IOFBF, sizeof(iobuf));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	r = tsw_vault_import_csv(v, in, print_reject, NULL, &st);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (in != stdin)
		fclose(in);
	OPENSSL_cleanse(iobuf, sizeof(iobuf));
	if (r == -TSW_E_BAD_INPUT)
		return fail(r, "header row (needs token,pan,pan_expiry,token_expiry; known names)");
	if (r < 0)
		return fail(r, "import");
	s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	printf("imported=%lu rejected=%lu rows=%lu chunks=%lu seconds=%.2f rate=%.0f/s "
	       "chunk_rows=%u paced_seconds=%.2f",
	       st.imported, st.rejected, st.rows, st.chunks, s, s > 0 ? (double)st.imported / s : 0,
	       st.chunk_rows, (double)st.paced_ns / 1e9);
	if (o.background)
		printf(" sched=%s ioprio=%s", bg.sched, bg.io);
	printf("\n");
	return st.rejected ? EXIT_FAILURE : 0;
}

static int parse_modes(const char *s, uint32_t *ret)
{
	static const char *const names[TSW_POS_MODE_MAX] = {"contactless", "chip",   "ecommerce",
							    "cof",	   "manual", "magstripe"};
	char buf[128];
	char *save = NULL;
	uint32_t m = 0;

	if (strlen(s) >= sizeof(buf))
		return -TSW_E_BAD_INPUT;
	strcpy(buf, s);
	for (char *w = strtok_r(buf, "|,", &save); w; w = strtok_r(NULL, "|,", &save)) {
		int i;

		for (i = 0; i < TSW_POS_MODE_MAX && strcmp(names[i], w) != 0; i++)
			;
		if (i == TSW_POS_MODE_MAX)
			return -TSW_E_BAD_INPUT;
		m |= 1u << i;
	}
	*ret = m;
	return 0;
}

static int copy_arg(char *dst, size_t cap, const char *src)
{
	if (!src)
		return 0;
	if (strlen(src) >= cap)
		return -TSW_E_BAD_INPUT;
	strcpy(dst, src);
	return 0;
}

static int run_provision(struct tsw_vault *v, int argc, char **argv)
{
	struct tsw_vault_row row;
	struct tsw_token t;
	struct pan_arg a = {.flag = "--pan"};
	const char *from = opt(argc, argv, "--from-token");
	const char *bin = opt(argc, argv, "--bin");
	const char *len_s = opt(argc, argv, "--length");
	const char *s;
	unsigned len = len_s ? (unsigned)atoi(len_s) : TOKEN_LEN_DEFAULT;
	char m[MASK_MAX];
	int r;

	memset(&row, 0, sizeof(row));
	r = pan_args(argc, argv, &a, 1);
	if (r != 0)
		goto out;
	if (!a.value && !from) {
		r = usage_error("provision needs --pan PAN|- or --from-token TOKEN");
		goto out;
	}
	if (a.value) {
		if (strlen(a.value) > TSW_PAN_MAX_DIGITS) {
			r = usage_error("--pan too long");
			goto out;
		}
		row.pan_len = (uint8_t)strlen(a.value);
		memcpy(row.pan, a.value, row.pan_len);
	}
	OPENSSL_cleanse(&a, sizeof(a));
	if (copy_arg(row.token.original_token, sizeof(row.token.original_token), from) < 0 ||
	    copy_arg(row.token.pan_expiry, sizeof(row.token.pan_expiry),
		     opt(argc, argv, "--pan-expiry")) < 0 ||
	    copy_arg(row.token.token_expiry, sizeof(row.token.token_expiry),
		     opt(argc, argv, "--token-expiry")) < 0 ||
	    copy_arg(row.token.trid, sizeof(row.token.trid), opt(argc, argv, "--trid")) < 0 ||
	    copy_arg(row.token.currency, sizeof(row.token.currency),
		     opt(argc, argv, "--currency")) < 0 ||
	    copy_arg(row.token.par, sizeof(row.token.par), opt(argc, argv, "--par")) < 0 ||
	    copy_arg(row.token.token_ref, sizeof(row.token.token_ref),
		     opt(argc, argv, "--token-ref")) < 0 ||
	    copy_arg(row.device_ref, sizeof(row.device_ref), opt(argc, argv, "--device")) < 0) {
		r = usage_error("an argument is too long");
		goto out;
	}
	if (!row.token.token_expiry[0])
		memcpy(row.token.token_expiry, row.token.pan_expiry, sizeof(row.token.pan_expiry));
	if ((s = opt(argc, argv, "--pos-modes")) && parse_modes(s, &row.token.pos_modes) < 0) {
		r = usage_error("--pos-modes: unknown mode");
		goto out;
	}
	if ((s = opt(argc, argv, "--merchant-id"))) {
		if (copy_arg(row.token.merchants[0].merchant_id,
			     sizeof(row.token.merchants[0].merchant_id), s) < 0) {
			r = usage_error("--merchant-id too long");
			goto out;
		}
		row.token.n_merchants = 1;
	}
	if ((s = opt(argc, argv, "--assurance")))
		row.token.assurance_level = (uint8_t)atoi(s);
	if ((s = opt(argc, argv, "--max-uses")))
		row.token.max_uses = (uint32_t)strtoul(s, NULL, 10);
	if ((s = opt(argc, argv, "--amount-limit")))
		row.token.amount_limit = strtoull(s, NULL, 10);
	row.token.device_required = flag(argc, argv, "--device-required");
	if ((s = opt(argc, argv, "--cvn"))) {
		uint32_t cvn = 0;

		if (parse_u32(s, &cvn) < 0 || !TSW_TOKEN_CVN_VALID(cvn)) {
			r = usage_error("--cvn: 10, 16, 18 or 20");
			goto out;
		}
		row.token.cvn = (uint8_t)cvn;
	}
	if ((s = opt(argc, argv, "--psn"))) {
		if (strlen(s) != 2 || s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9') {
			r = usage_error("--psn: two digits");
			goto out;
		}
		row.token.psn = (uint8_t)((s[0] - '0') * 10 + (s[1] - '0'));
	}
	r = tsw_vault_provision(v, &row, bin, bin ? strlen(bin) : 0, len, &t);
	if (r < 0) {
		r = fail(r, "provision");
		goto out;
	}
	printf("%s\n", t.token);
	fprintf(stderr, "provisioned token %s for card %016llx", mask(t.token, m),
		(unsigned long long)t.card_id);
	if (t.original_token[0])
		fprintf(stderr, " from token %s", mask(t.original_token, m));
	fprintf(stderr, "\n");
out:
	OPENSSL_cleanse(&row, sizeof(row));
	OPENSSL_cleanse(&a, sizeof(a));
	return r;
}

static int one_token(int argc, char **argv, const char **ret)
{
	if (argc != 1)
		return usage_error("needs one TOKEN");
	*ret = argv[0];
	return 0;
}

static int run_show(struct tsw_vault *v, int argc, char **argv)
{
	struct tsw_vault_reader *rd = NULL;
	struct tsw_token t;
	char pan[TSW_PAN_MAX_DIGITS + 1];
	char m[MASK_MAX];
	const char *token;
	int r, n;

	if ((r = one_token(argc, argv, &token)) != 0)
		return r;
	r = tsw_vault_reader_open(v, &rd);
	if (r == 0)
		r = tsw_vault_reader_renew(rd);
	if (r == 0)
		r = tsw_vault_lookup(rd, token, strlen(token), &t);
	if (r == -TSW_E_INTEGRITY) {
		/* none of its fields can be trusted, so none is shown */
		tsw_vault_reader_close(rd);
		printf("token=%s\nintegrity=FAILED: the record fails authentication (edited or "
		       "damaged in data.mdb, or sealed under a key the key file lacks): the switch "
		       "declines it 96 VAULT_INTEGRITY; restore the vault from a backup\n",
		       mask(token, m));
		return EXIT_FAILURE;
	}
	if (r < 0) {
		tsw_vault_reader_close(rd);
		return fail(r, "token");
	}
	r = tsw_vault_authenticated(rd, token, strlen(token));
	n = tsw_vault_decrypt_pan(rd, &t, pan, sizeof(pan) - 1);
	if (n >= 0) {
		pan[n] = '\0';
		mask(pan, m);
		OPENSSL_cleanse(pan, sizeof(pan));
	} else {
		snprintf(m, sizeof(m), "(%s)", tsw_strerror(n));
	}
	printf("integrity=%s\n", r == 1 ? "ok"
				 : r == 0
				     ? "unauthenticated (a format 1 record: run tokvault upgrade)"
				     : tsw_strerror(r));
	printf("token=%s\nstatus=%s\ncard_suspended=%u\npan=%s\npan_expiry=%s\n"
	       "token_expiry=%s\ntrid=%s\nassurance_level=%u\ntoken_ref=%s\npar=%s\n",
	       t.token, status_name(t.status), t.card_suspended, m, t.pan_expiry, t.token_expiry,
	       t.trid, t.assurance_level, t.token_ref, t.par);
	printf("pos_modes=0x%02x\nmerchants=", t.pos_modes);
	for (unsigned i = 0; i < t.n_merchants; i++)
		printf("%s%s:%s:%s", i ? "|" : "", t.merchants[i].merchant_id,
		       t.merchants[i].acquirer_id, t.merchants[i].mcc);
	printf("\namount_limit=%llu\ncurrency=%s\nmax_uses=%u\nvalid_from=%u\nvalid_until=%u\n"
	       "device_required=%u\noriginal_token=%s\noriginal_trid=%s\noriginal_token_ref=%s\n"
	       "key_id=%u\ncard_id=%016llx\natc_epoch=%u\n",
	       (unsigned long long)t.amount_limit, t.currency, t.max_uses, t.valid_from,
	       t.valid_until, t.device_required, t.original_token, t.original_trid,
	       t.original_token_ref, t.key_id, (unsigned long long)t.card_id, t.atc_epoch);
	/* cvn=none: the token needs no cryptogram */
	if (t.cvn)
		printf("cvn=%u\npsn=%02u\n", t.cvn, t.psn);
	else
		printf("cvn=none\npsn=%02u\n", t.psn);
	tsw_vault_reader_close(rd);
	return 0;
}

static int set_status(struct tsw_vault *v, int argc, char **argv, enum tsw_token_status s)
{
	enum tsw_token_status old = TSW_TOKEN_ACTIVE;
	const char *token;
	char m[MASK_MAX];
	int r;

	if ((r = one_token(argc, argv, &token)) != 0)
		return r;
	r = tsw_vault_set_status(v, token, strlen(token), s, &old);
	if (r < 0)
		return fail(r, "token");
	printf("token %s: %s -> %s\n", mask(token, m), status_name(old), status_name(s));
	return 0;
}

static int run_suspend(struct tsw_vault *v, int argc, char **argv)
{
	return set_status(v, argc, argv, TSW_TOKEN_SUSPENDED);
}

static int run_resume(struct tsw_vault *v, int argc, char **argv)
{
	return set_status(v, argc, argv, TSW_TOKEN_ACTIVE);
}

static int run_delete(struct tsw_vault *v, int argc, char **argv)
{
	return set_status(v, argc, argv, TSW_TOKEN_DELETED);
}

static int run_update_pan(struct tsw_vault *v, int argc, char **argv)
{
	struct pan_arg a[PAN_ARGS_MAX] = {{.flag = "--pan"}, {.flag = "--new-pan"}};
	const char *exp = opt(argc, argv, "--new-expiry");
	char m1[MASK_MAX], m2[MASK_MAX];
	size_t n = 0;
	int r;

	r = pan_args(argc, argv, a, PAN_ARGS_MAX);
	if (r != 0)
		goto out;
	if (!a[0].value || !a[1].value || !exp) {
		r = usage_error("needs --pan OLD|- --new-pan NEW|- --new-expiry YYMM");
		goto out;
	}
	r = tsw_vault_update_pan(v, a[0].value, strlen(a[0].value), a[1].value, strlen(a[1].value),
				 exp, &n);
	if (r < 0) {
		r = fail(r, "card");
		goto out;
	}
	printf("card %s -> %s expiry %s: %zu tokens relinked\n", mask(a[0].value, m1),
	       mask(a[1].value, m2), exp, n);
out:
	OPENSSL_cleanse(a, sizeof(a));
	return r;
}

static int card_state(struct tsw_vault *v, int argc, char **argv, bool suspend)
{
	struct pan_arg a = {.flag = "--pan"};
	char m[MASK_MAX];
	size_t n = 0;
	int r;

	r = pan_args(argc, argv, &a, 1);
	if (r != 0)
		goto out;
	if (!a.value) {
		r = usage_error("needs --pan PAN|-");
		goto out;
	}
	r = tsw_vault_set_card_suspended(v, a.value, strlen(a.value), suspend, &n);
	if (r < 0) {
		r = fail(r, "card");
		goto out;
	}
	printf("card %s %s: %zu tokens follow\n", mask(a.value, m),
	       suspend ? "suspended" : "resumed", n);
out:
	OPENSSL_cleanse(&a, sizeof(a));
	return r;
}

static int run_suspend_card(struct tsw_vault *v, int argc, char **argv)
{
	return card_state(v, argc, argv, true);
}

static int run_resume_card(struct tsw_vault *v, int argc, char **argv)
{
	return card_state(v, argc, argv, false);
}

static int device(struct tsw_vault *v, int argc, char **argv, bool bind)
{
	char m[MASK_MAX];
	int r;

	if (argc != 2)
		return usage_error("needs TOKEN REF");
	r = bind ? tsw_vault_bind_device(v, argv[0], strlen(argv[0]), argv[1], strlen(argv[1]))
		 : tsw_vault_unbind_device(v, argv[0], strlen(argv[0]), argv[1], strlen(argv[1]));
	if (r < 0)
		return fail(r, bind ? "bind" : "unbind");
	printf("token %s: device %s %s\n", mask(argv[0], m), argv[1], bind ? "bound" : "unbound");
	return 0;
}

static int run_bind(struct tsw_vault *v, int argc, char **argv)
{
	return device(v, argc, argv, true);
}

static int run_unbind(struct tsw_vault *v, int argc, char **argv)
{
	return device(v, argc, argv, false);
}

static int run_repersonalize(struct tsw_vault *v, int argc, char **argv)
{
	const char *token = NULL;
	char m[MASK_MAX];
	uint32_t epoch = 0;
	unsigned psn = 0;
	int want = TSW_VAULT_PSN_NEXT, r;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--psn") == 0) {
			const char *d = ++i < argc ? argv[i] : "";

			if (strlen(d) != 2 || d[0] < '0' || d[0] > '9' || d[1] < '0' || d[1] > '9')
				return usage_error("--psn: two digits, 00..99");
			want = (d[0] - '0') * 10 + (d[1] - '0');
		} else if (argv[i][0] == '-' && argv[i][1] != '\0') {
			return usage_error("unknown argument");
		} else if (token) {
			return usage_error("needs one TOKEN");
		} else {
			token = argv[i];
		}
	}
	if (!token)
		return usage_error("needs one TOKEN");
	r = tsw_vault_repersonalize(v, token, strlen(token), want, &epoch, &psn);
	if (r == -TSW_E_BAD_INPUT && want != TSW_VAULT_PSN_NEXT)
		return fail(r, "--psn: not above the token's PSN (no earlier device's PSN is given "
			       "again)");
	if (r == -TSW_E_BAD_INPUT)
		return fail(r, "the token's PSN is 99, the last: provision a new token");
	if (r < 0)
		return fail(r, "token");
	printf("token %s: ATC reset (atc_epoch=%u), new PSN %02u: personalize the device with it\n",
	       mask(token, m), epoch, psn);
	return 0;
}

static int run_stats(struct tsw_vault *v, int argc, char **argv)
{
	struct tsw_vault_stats s;
	int r;

	(void)argv;
	if (argc)
		return usage_error("stats takes no argument");
	r = tsw_vault_stats(v, &s);
	if (r < 0)
		return fail(r, "stats");
	printf("tokens=%llu active=%llu suspended=%llu deleted=%llu card_suspended=%llu\n"
	       "cards=%llu suspended_cards=%llu device_bindings=%llu\n",
	       (unsigned long long)s.tokens, (unsigned long long)s.by_status[TSW_TOKEN_ACTIVE],
	       (unsigned long long)s.by_status[TSW_TOKEN_SUSPENDED],
	       (unsigned long long)s.by_status[TSW_TOKEN_DELETED],
	       (unsigned long long)s.card_suspended_tokens, (unsigned long long)s.cards,
	       (unsigned long long)s.suspended_cards, (unsigned long long)s.device_bindings);
	printf("unauthenticated=%llu integrity_failures=%llu\n",
	       (unsigned long long)s.unauthenticated, (unsigned long long)s.integrity_failures);
	printf("current_key_id=%u keys_locked=%s map_used_bytes=%llu\n", s.current_key_id,
	       s.keys_locked ? "yes" : "no", (unsigned long long)s.map_used_bytes);
	for (unsigned i = 0; i < s.n_keys; i++)
		printf("key id=%u tokens=%llu\n", s.key_ids[i], (unsigned long long)s.by_key[i]);
	for (unsigned i = 0; i < s.n_bins; i++)
		printf("token_bin=%s\n", s.bins[i]);
	return 0;
}

/* --progress: one line per durable step, flushed at once (what a
 * supervisor, or the crash test, watches). */
/* digest: SHA-256 of every database (the last applied cluster sequence
 * left out, printed beside it): replicas that agree print the same. */
static int run_digest(struct tsw_vault *v, int argc, char **argv)
{
	uint8_t d[TSW_VAULT_DIGEST_BYTES];
	uint64_t seq = 0;
	int r;

	(void)argv;
	if (argc != 0)
		return usage_error("no arguments");
	r = tsw_vault_digest(v, d, &seq);
	if (r < 0)
		return fail(r, "digest");
	printf("digest=");
	for (size_t i = 0; i < sizeof(d); i++)
		printf("%02x", d[i]);
	printf(" seq=%llu\n", (unsigned long long)seq);
	return 0;
}

static void print_step(void *ctx, enum tsw_vault_reseal_step step, uint64_t records)
{
	static const char *const names[TSW_VAULT_STEP_MAX] = {"key_file", "key_current", "chunk",
							      "done"};

	(void)ctx;
	printf("step %s records=%llu\n", (unsigned)step < TSW_VAULT_STEP_MAX ? names[step] : "?",
	       (unsigned long long)records);
	fflush(stdout);
}

/* Exit status and message of a reseal that returned r with res. */
static int reseal_report(int r, const struct tsw_vault_reseal_result *res, const char *what)
{
	if (r == -TSW_E_FULL) {
		fprintf(stderr,
			"tokvault: %s: the key file holds %d PAN keys, the most it can: retire one "
			"that no record uses first (tokvault stats lists tokens per key id; "
			"tokvault keys retire ID)\n",
			g_verb, TSW_VAULT_KEYS_MAX);
		return EXIT_FAILURE;
	}
	if (r < 0)
		return fail(r, what);
	if (res->failed) {
		fprintf(
		    stderr,
		    "tokvault: %s: %llu records fail authentication and were left as they are "
		    "(tokvault stats counts them; the switch declines them 96 VAULT_INTEGRITY)\n",
		    g_verb, (unsigned long long)res->failed);
		return EXIT_FAILURE;
	}
	return 0;
}

static int parse_u32(const char *s, uint32_t *ret)
{
	char *end = NULL;
	unsigned long n;

	errno = 0;
	n = strtoul(s, &end, 10);
	if (errno || !*s || *end || n == 0 || n > UINT32_MAX)
		return -TSW_E_BAD_INPUT;
	*ret = (uint32_t)n;
	return 0;
}

static int run_rekey(struct tsw_vault *v, int argc, char **argv)
{
	struct tsw_vault_reseal_opts o = {.mode = TSW_VAULT_RESEAL_NEW_KEY};
	struct tsw_vault_reseal_result res = {0};
	bool index = false;
	int r;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--index") == 0) {
			index = true;
		} else if (strcmp(argv[i], "--finish") == 0) {
			o.mode = TSW_VAULT_RESEAL_FINISH;
		} else if (strcmp(argv[i], "--progress") == 0) {
			o.progress = print_step;
		} else if (strcmp(argv[i], "--chunk-rows") == 0) {
			uint32_t n = 0;

			if (++i >= argc || parse_u32(argv[i], &n) < 0)
				return usage_error("--chunk-rows needs a positive number");
			o.chunk_rows = n;
		} else {
			return usage_error("unknown argument");
		}
	}
	if (index) {
		r = tsw_vault_rekey_index(v, &o, &res);
		if (r == -TSW_E_FULL) {
			fprintf(stderr,
				"tokvault: rekey: the key file holds %d index keys, the most "
				"it can\n",
				TSW_VAULT_INDEX_KEYS_MAX);
			return EXIT_FAILURE;
		}
		r = reseal_report(r, &res, "rekey --index");
		if (r == 0)
			printf("new index key id=%u: %llu records re-indexed\n", res.key_id,
			       (unsigned long long)res.records);
		return r;
	}
	r = tsw_vault_reseal(v, &o, &res);
	r = reseal_report(r, &res, "rekey");
	if (r == 0 || res.key_id)
		printf("%s key id=%u: %llu records re-encrypted\n",
		       o.mode == TSW_VAULT_RESEAL_NEW_KEY ? "new" : "current", res.key_id,
		       (unsigned long long)res.records);
	return r;
}

static int run_upgrade(struct tsw_vault *v, int argc, char **argv)
{
	struct tsw_vault_reseal_opts o = {.mode = TSW_VAULT_RESEAL_UPGRADE};
	struct tsw_vault_reseal_result res = {0};
	int r;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--progress") == 0)
			o.progress = print_step;
		else
			return usage_error("unknown argument");
	}
	r = tsw_vault_reseal(v, &o, &res);
	r = reseal_report(r, &res, "upgrade");
	if (r == 0)
		printf("%llu records authenticated as version 3: the vault is format 3, the "
		       "switch opens it\n",
		       (unsigned long long)res.records);
	return r;
}

static int run_keys(struct tsw_vault *v, int argc, char **argv)
{
	uint64_t users = 0;
	uint32_t id = 0;
	int r;

	if (argc != 2 || strcmp(argv[0], "retire") != 0)
		return usage_error("needs: keys retire ID");
	if (parse_u32(argv[1], &id) < 0)
		return usage_error("ID: a key id (tokvault stats lists them)");
	r = tsw_vault_retire_key(v, id, &users);
	if (r == -EBUSY && users) {
		fprintf(
		    stderr,
		    "tokvault: keys: key id=%u still seals %llu records: finish the rekey first "
		    "(tokvault rekey --finish)\n",
		    id, (unsigned long long)users);
		return EXIT_FAILURE;
	}
	if (r == -EBUSY) {
		fprintf(stderr, "tokvault: keys: key id=%u is the current key: rekey first\n", id);
		return EXIT_FAILURE;
	}
	if (r < 0)
		return fail(r, "retire");
	printf("key id=%u retired: no record uses it, the key file no longer holds it\n", id);
	return 0;
}

/* ---- the key store ---- */

/* The key as hex on standard input: digits, newline, slack for a CR and
 * so that one digit too many reads as a wrong length, not as too long. */
#define KEY_LINE_MAX (2 * TSW_VAULT_KEY_BYTES_MAX + 8)
#define KCV_HEX_MAX (2 * TSW_VAULT_KCV_MAX + 1)

static int hex_nibble(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static const char *kcv_hex(const struct tsw_vault_key_info *k, char out[KCV_HEX_MAX])
{
	for (unsigned i = 0; i < k->kcv_len; i++)
		snprintf(out + 2 * i, 3, "%02X", k->kcv[i]);
	out[2 * k->kcv_len] = '\0';
	return out;
}

static int parse_kind(const char *name, enum tsw_vault_key_kind *ret)
{
	if (tsw_vault_key_kind_parse(name, ret) < 0)
		return usage_error("KIND: imk-ac, zpk-acquirer, zpk-issuer or tavv");
	return 0;
}

/* Reads the key from standard input into bytes; returns its length or an
 * exit status (negative: -EXIT_*). The messages never show the input. */
static int read_key_hex(uint8_t bytes[TSW_VAULT_KEY_BYTES_MAX])
{
	char line[KEY_LINE_MAX];
	size_t n;
	int r = read_line(line, sizeof(line));

	if (r == -ENODATA || (r == 0 && !line[0])) {
		fprintf(stderr, "tokvault: %s: no key on standard input (give it as hex)\n",
			g_verb);
		r = -EXIT_FAILURE;
		goto out;
	}
	if (r == -E2BIG) {
		fprintf(stderr, "tokvault: %s: the line on standard input is longer than a key\n",
			g_verb);
		r = -EXIT_FAILURE;
		goto out;
	}
	if (r < 0) {
		r = -fail(r, "standard input");
		goto out;
	}
	n = strlen(line);
	for (size_t i = 0; i < n; i++)
		if (hex_nibble(line[i]) < 0) {
			fprintf(stderr, "tokvault: %s: the key on standard input is not hex\n",
				g_verb);
			r = -EXIT_FAILURE;
			goto out;
		}
	if (n % 2) {
		fprintf(stderr, "tokvault: %s: the key on standard input has an odd number of hex "
				"digits\n",
			g_verb);
		r = -EXIT_FAILURE;
		goto out;
	}
	if (n / 2 > TSW_VAULT_KEY_BYTES_MAX) {
		fprintf(stderr, "tokvault: %s: the key on standard input is longer than a key\n",
			g_verb);
		r = -EXIT_FAILURE;
		goto out;
	}
	for (size_t i = 0; i < n / 2; i++)
		bytes[i] = (uint8_t)(hex_nibble(line[2 * i]) << 4 | hex_nibble(line[2 * i + 1]));
	r = (int)(n / 2);
out:
	OPENSSL_cleanse(line, sizeof(line));
	return r;
}

/* --alg, or the algorithm a key of that length is for this kind. */
static int pick_alg(enum tsw_vault_key_kind kind, const char *name, size_t len,
		    enum tsw_vault_key_alg *ret)
{
	if (name)
		return tsw_vault_key_alg_parse(name, ret);
	switch (len) {
	case 16:
		*ret = kind == TSW_VAULT_KEY_TAVV ? TSW_VAULT_KEY_AES128 : TSW_VAULT_KEY_TDES2;
		return 0;
	case 24:
		*ret = TSW_VAULT_KEY_TDES3;
		return 0;
	case 32:
		*ret = TSW_VAULT_KEY_AES256;
		return 0;
	default:
		return -TSW_E_BAD_INPUT;
	}
}

static int run_key_add(struct tsw_vault *v, int argc, char **argv)
{
	static const char *const scope_opt[TSW_VAULT_KEY_KIND_MAX] = {"--range", "--acquirer",
								      "--issuer", "--range"};
	struct tsw_vault_key_info in, out;
	enum tsw_vault_key_kind kind;
	enum tsw_vault_key_alg alg;
	uint8_t bytes[TSW_VAULT_KEY_BYTES_MAX];
	const char *scope = NULL, *alg_name = NULL;
	char kcv[KCV_HEX_MAX];
	int r, len;

	if (argc < 2)
		return usage_error("needs KIND ID (--range PREFIX | --acquirer DE32 | --issuer N)");
	if ((r = parse_kind(argv[0], &kind)) != 0)
		return r;
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--alg") == 0 && i + 1 < argc) {
			alg_name = argv[++i];
		} else if ((strcmp(argv[i], "--range") == 0 || strcmp(argv[i], "--acquirer") == 0 ||
			    strcmp(argv[i], "--issuer") == 0) &&
			   i + 1 < argc) {
			if (strcmp(argv[i], scope_opt[kind]) != 0 || scope)
				return usage_error("imk-ac and tavv take --range PREFIX, "
						   "zpk-acquirer --acquirer DE32, zpk-issuer "
						   "--issuer N");
			scope = argv[++i];
		} else {
			return usage_error("unknown argument");
		}
	}
	if (!scope)
		return usage_error("imk-ac and tavv take --range PREFIX, zpk-acquirer --acquirer "
				   "DE32, zpk-issuer --issuer N");
	memset(&in, 0, sizeof(in));
	if (copy_arg(in.id, sizeof(in.id), argv[1]) < 0 ||
	    copy_arg(in.scope, sizeof(in.scope), scope) < 0)
		return usage_error("ID (1-32 of A-Z a-z 0-9 . _ -) or scope too long");
	if (alg_name && tsw_vault_key_alg_parse(alg_name, &alg) < 0)
		return usage_error("--alg: tdes2, tdes3, aes128 or aes256");
	len = read_key_hex(bytes);
	if (len < 0) {
		r = -len;
		goto out;
	}
	if (pick_alg(kind, alg_name, (size_t)len, &alg) < 0 ||
	    tsw_vault_key_alg_len(alg) != (size_t)len) {
		fprintf(stderr,
			"tokvault: %s: the key on standard input is %d bytes: not a %s key "
			"(tdes2 and aes128 16 bytes, tdes3 24, aes256 32)\n",
			g_verb, len, alg_name ? alg_name : tsw_vault_key_kind_name(kind));
		r = EXIT_FAILURE;
		goto out;
	}
	in.kind = (uint8_t)kind;
	in.alg = (uint8_t)alg;
	r = tsw_vault_key_add(v, &in, bytes, (size_t)len, &out);
	if (r == -TSW_E_EXISTS) {
		fprintf(stderr, "tokvault: %s: %s %s exists already (ids are never reused, retired "
				"ones included)\n",
			g_verb, tsw_vault_key_kind_name(kind), in.id);
		r = EXIT_FAILURE;
	} else if (r == -TSW_E_BAD_INPUT) {
		fprintf(stderr,
			"tokvault: %s: refused: %s takes %s; the id is 1-32 of A-Z a-z 0-9 . _ -; "
			"the scope is digits (range prefix 1-12, DE32 1-11, issuer 0-255); "
			"weak keys (all zero, or TDES halves equal) are refused\n",
			g_verb, tsw_vault_key_kind_name(kind),
			kind == TSW_VAULT_KEY_IMK_AC ? "tdes2 only"
			: kind == TSW_VAULT_KEY_TAVV ? "aes128 or aes256"
						     : "tdes2, tdes3, aes128 or aes256");
		r = EXIT_FAILURE;
	} else if (r == -TSW_E_FULL) {
		fprintf(stderr, "tokvault: %s: the key store holds %u keys, the most it can\n",
			g_verb, TSW_VAULT_HSM_KEYS_MAX);
		r = EXIT_FAILURE;
	} else if (r < 0) {
		r = fail(r, "key-add");
	} else {
		printf("kcv=%s\n", kcv_hex(&out, kcv));
		fprintf(stderr, "added %s %s scope=%s alg=%s\n", tsw_vault_key_kind_name(kind),
			out.id, out.scope, tsw_vault_key_alg_name(alg));
	}
out:
	OPENSSL_cleanse(bytes, sizeof(bytes));
	return r;
}

static int print_key(void *ctx, const struct tsw_vault_key_info *k, int err)
{
	char kcv[KCV_HEX_MAX];
	unsigned *failed = ctx;

	if (err == -TSW_E_CORRUPT) {
		printf("kind=%s id=%s integrity=FAILED: not a key record\n",
		       tsw_vault_key_kind_name(k->kind), k->id);
		++*failed;
		return 0;
	}
	printf("kind=%s id=%s scope=%s alg=%s kcv=%s state=%s added=%llu retired=%llu",
	       tsw_vault_key_kind_name(k->kind), k->id, k->scope, tsw_vault_key_alg_name(k->alg),
	       kcv_hex(k, kcv), tsw_vault_key_state_name(k->state), (unsigned long long)k->added,
	       (unsigned long long)k->retired);
	if (err == 0) {
		printf(" integrity=ok\n");
	} else {
		/* its fields are shown as stored, none of them can be trusted */
		printf(" integrity=FAILED: %s\n", tsw_strerror(err));
		++*failed;
	}
	return 0;
}

static int run_key_list(struct tsw_vault *v, int argc, char **argv)
{
	unsigned failed = 0;
	int r;

	(void)argv;
	if (argc)
		return usage_error("key-list takes no argument");
	r = tsw_vault_key_list(v, print_key, &failed);
	if (r < 0)
		return fail(r, "key-list");
	if (failed) {
		fprintf(stderr,
			"tokvault: %s: %u key records fail authentication (edited or damaged in "
			"data.mdb, or sealed under a key the key file lacks): the switch refuses "
			"to load the keys; restore the vault from a backup\n",
			g_verb, failed);
		return EXIT_FAILURE;
	}
	return 0;
}

static int run_key_retire(struct tsw_vault *v, int argc, char **argv)
{
	struct tsw_vault_key_info k;
	enum tsw_vault_key_kind kind;
	int r;

	if (argc != 2)
		return usage_error("needs KIND ID");
	if ((r = parse_kind(argv[0], &kind)) != 0)
		return r;
	r = tsw_vault_key_retire(v, kind, argv[1], strlen(argv[1]), &k);
	if (r == -TSW_E_NOT_FOUND || r == -TSW_E_BAD_INPUT) {
		fprintf(stderr, "tokvault: %s: no %s key with that id (tokvault key-list lists "
				"them)\n",
			g_verb, tsw_vault_key_kind_name(kind));
		return EXIT_FAILURE;
	}
	if (r == -EALREADY) {
		fprintf(stderr, "tokvault: %s: %s %s is retired already\n", g_verb,
			tsw_vault_key_kind_name(kind), argv[1]);
		return EXIT_FAILURE;
	}
	if (r == -TSW_E_INTEGRITY) {
		fprintf(stderr, "tokvault: %s: the record of %s %s fails authentication: left as "
				"it is\n",
			g_verb, tsw_vault_key_kind_name(kind), argv[1]);
		return EXIT_FAILURE;
	}
	if (r < 0)
		return fail(r, "key-retire");
	printf("%s %s retired: the switch no longer loads it\n", tsw_vault_key_kind_name(kind),
	       k.id);
	return 0;
}

/* Parses an unsigned decimal in [lo, hi]. */
static int parse_uint(const char *s, unsigned long lo, unsigned long hi, unsigned long *ret)
{
	char *end = NULL;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v < lo || v > hi)
		return -TSW_E_BAD_INPUT;
	*ret = v;
	return 0;
}

static int run_demo(struct tsw_vault *v, int argc, char **argv)
{
	const char *count = opt(argc, argv, "--count"), *out = opt(argc, argv, "--out");
	const char *pct = opt(argc, argv, "--cvn-pct"), *cvn = opt(argc, argv, "--cvn");
	const char *alg = opt(argc, argv, "--zpk-alg");
	struct demo_opts o = {.out_path = out,
			      .bin = opt(argc, argv, "--token-bin"),
			      .keys = flag(argc, argv, "--keys"),
			      .zpk_alg = TSW_VAULT_KEY_TDES2};
	unsigned long n;

	if (!count || !out)
		return usage_error("needs --count N --out TOKENS.csv");
	if (parse_uint(count, 1, ULONG_MAX, &o.count) < 0)
		return usage_error("--count: a positive number");
	if (pct) {
		if (parse_uint(pct, 0, 100, &n) < 0)
			return usage_error("--cvn-pct: 0..100");
		o.cvn_pct = (unsigned)n;
	}
	if (cvn) {
		if (parse_uint(cvn, 10, 20, &n) < 0 || !TSW_TOKEN_CVN_VALID(n))
			return usage_error("--cvn: 10, 16, 18 or 20");
		o.cvn = (uint8_t)n;
	}
	if (alg) {
		enum tsw_vault_key_alg a;

		if (tsw_vault_key_alg_parse(alg, &a) < 0 ||
		    (a != TSW_VAULT_KEY_TDES2 && a != TSW_VAULT_KEY_AES128))
			return usage_error("--zpk-alg: tdes2 or aes128");
		o.zpk_alg = (uint8_t)a;
	}
	if (cvn && !o.cvn_pct)
		return usage_error("--cvn: only with --cvn-pct above 0");
	if (alg && !o.cvn_pct && !o.keys)
		return usage_error("--zpk-alg: only with --cvn-pct above 0 or --keys");
	return demo_run(v, &o);
}

#define PAN_STDIN_NOTE                                                                             \
	"'-' reads the card number from standard input instead, one per line, in the order the\n"  \
	"  options appear: use it in production (a PAN given as an argument is visible to every\n" \
	"  local user in ps / /proc/PID/cmdline and lands in shell history)"

static const struct verb verbs[] = {
    {"init", "[--token-bin PREFIX]...",
     "creates the vault (and the key file, mode 0600, when absent); adds token BIN ranges",
     run_init, TSW_VAULT_CREATE, NULL},
    {"import", "[--sort-mem-mb N] [--chunk-rows N] [--rate N] [--background] FILE.csv",
     "imports tokens; bad rows reported as 'line N: reason', good rows land; sorts up to N MiB "
     "in memory (default 4096, at most a quarter of RAM) so a random-order file is written in one "
     "pass",
     run_import, 0,
     "beside a running switch: --chunk-rows N rows per transaction (default 50000; smaller:\n"
     "  shorter commits), --rate N at most N rows a second (default 0: unlimited), --background\n"
     "  runs the import in SCHED_IDLE (nice 19 where refused) and the idle I/O class, so it\n"
     "  takes only CPU time the switch leaves. The summary says chunk_rows=, paced_seconds=\n"
     "  (time spent waiting for --rate) and, with --background, sched= and ioprio= as they hold"},
    {"provision",
     "--pan PAN|- --pan-expiry YYMM | --from-token TOKEN  [--token-expiry YYMM] [--bin PREFIX]\n"
     "            [--length N] [--trid T] [--assurance N] [--pos-modes a|b] [--merchant-id M]\n"
     "            [--max-uses N] [--amount-limit N] [--currency C] [--device-required]\n"
     "            [--device REF] [--par P] [--token-ref R] [--cvn 10|16|18|20] [--psn NN]",
     "draws a random unused Luhn-valid token from a range, prints it", run_provision, 0,
     PAN_STDIN_NOTE},
    {"show", "TOKEN", "prints the token record (PAN masked)", run_show, TSW_VAULT_RDONLY, NULL},
    {"suspend", "TOKEN", "suspends the token", run_suspend, 0, NULL},
    {"resume", "TOKEN", "makes the token active again", run_resume, 0, NULL},
    {"delete", "TOKEN", "deletes the token (kept as a tombstone: declined with 14)", run_delete, 0,
     NULL},
    {"update-pan", "--pan OLD|- --new-pan NEW|- --new-expiry YYMM",
     "relinks every token of a reissued card", run_update_pan, 0, PAN_STDIN_NOTE},
    {"suspend-card", "--pan PAN|-", "suspends every token of the card", run_suspend_card, 0,
     PAN_STDIN_NOTE},
    {"resume-card", "--pan PAN|-", "lifts a card suspension", run_resume_card, 0, PAN_STDIN_NOTE},
    {"bind-device", "TOKEN REF", "binds a device to the token", run_bind, 0, NULL},
    {"unbind-device", "TOKEN REF", "unbinds a device", run_unbind, 0, NULL},
    {"repersonalize", "[--psn NN] TOKEN",
     "resets the token's ATC to 0 (bumps its atc_epoch) and gives the new device a new PSN "
     "(the next one, or NN: never one an earlier device had)",
     run_repersonalize, 0, NULL},
    {"stats", "", "counts tokens, cards, bindings, keys and ranges", run_stats, TSW_VAULT_RDONLY,
     NULL},
    {"digest", "",
     "prints a SHA-256 of every record and database, and the last cluster sequence applied",
     run_digest, 0, "opens the vault for writing (as every verb but show, stats, key-list)"},
    {"rekey", "[--finish | --index] [--chunk-rows N] [--progress]",
     "adds a PAN key to the key file and re-encrypts every record under it", run_rekey, 0,
     "crash-safe: the key is durable in the key file before any record uses it, and old keys\n"
     "  stay until 'keys retire'. --finish re-encrypts, under the current key, what an\n"
     "  interrupted rekey left (no new key); --index rotates the PAN index (HMAC) key\n"
     "  instead and rebuilds the index (card verbs and imports wait for it: run it again\n"
     "  after a crash); --chunk-rows N records per transaction (default\n"
     "  10000); --progress prints a line per durable step"},
    {"upgrade", "[--progress]",
     "rewrites every record older than version 3 (a format 1 vault's: authenticated; the "
     "switch refuses one until then)",
     run_upgrade, 0, NULL},
    {"keys", "retire ID", "takes a PAN key out of the key file once no record uses it", run_keys, 0,
     NULL},
    {"key-add", "KIND ID (--range PREFIX | --acquirer DE32 | --issuer N) [--alg A]",
     "adds a card cryptography key, read as hex from standard input; prints kcv=", run_key_add, 0,
     "KIND: imk-ac (--range; tdes2), zpk-acquirer (--acquirer DE32), zpk-issuer (--issuer\n"
     "  0-255) (both tdes2, tdes3, aes128, aes256), tavv (--range; aes128, aes256). --alg\n"
     "  A: tdes2, tdes3, aes128, aes256 (default by length: 16 bytes tdes2, or aes128 for\n"
     "  tavv; 24 tdes3; 32 aes256). The key is never printed; give it on a pipe or a\n"
     "  file, e.g. tokvault ... key-add imk-ac IMK1 --range 489537 < imk.hex"},
    {"key-list", "", "lists the key store: kind, id, scope, algorithm, KCV, state (never a key)",
     run_key_list, TSW_VAULT_RDONLY, NULL},
    {"key-retire", "KIND ID", "retires a key: kept in the store, never loaded again",
     run_key_retire, 0, NULL},
    {"demo",
     "--count N --out TOKENS.csv [--token-bin PREFIX] [--cvn-pct P] [--cvn 10|16|18|20]\n"
     "            [--keys] [--zpk-alg tdes2|aes128]",
     "creates a synthetic vault and the token list for tokbench", run_demo, TSW_VAULT_CREATE,
     "--cvn-pct P: P% of the tokens (default 0) require an ARQC: a cvn (10, 18, 16, 20 in\n"
     "  turn, or --cvn N for all), a psn, a chip or contactless pos_mode. With P > 0 (or\n"
     "  --keys) the key store gets fresh random demo keys, their check values printed (never\n"
     "  the keys): imk-ac demo-imk-ac for the range, zpk-acquirer demo-zpk-acq-DE32 for each\n"
     "  acquirer id the token list uses (100001 is tokbench's default), zpk-issuer\n"
     "  demo-zpk-iss-0 for issuer 0. --zpk-alg: the zone PIN keys' algorithm, tdes2 (ISO\n"
     "  format 0, the default profile) or aes128 (format 4, profile pin16)"},
};

#define N_VERBS (sizeof(verbs) / sizeof(verbs[0]))

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: tokvault --vault DIR --key-file FILE [--cluster nats://HOST:PORT[,...]\n"
	    "                [--ack-timeout-ms N] [--stream-replicas N]] VERB [ARGS]\n\nverbs:\n");
	for (size_t i = 0; i < N_VERBS; i++)
		fprintf(f, "  %-14s %s\n", verbs[i].name, verbs[i].help);
	fprintf(f, "\ntokvault VERB --help shows a verb's arguments\n"
		   "card numbers: give '--pan -' / '--new-pan -' and the PANs on standard input\n"
		   "(recommended: arguments show in ps and shell history)\n");
}

struct args {
	const char *vault_dir, *key_file;
	const struct verb *verb;
	char *rest[ARGS_MAX];
	int n_rest;
	bool help;
	struct tsw_cluster_config cluster; /* url NULL: no cluster */
};

static int parse_ms(const char *name, const char *s, unsigned *ret)
{
	unsigned long x;

	if (parse_uint(s, 1, CLUSTER_MS_MAX, &x) < 0) {
		fprintf(stderr, "tokvault: %s: expected 1..%u\n", name, CLUSTER_MS_MAX);
		return -EINVAL;
	}
	*ret = (unsigned)x;
	return 0;
}

/* The options before and around the verb; 0, or an exit status. */
static int parse_global(int argc, char **argv, struct args *a)
{
	for (int i = 1; i < argc; i++) {
		bool has_value = i + 1 < argc;

		if (strcmp(argv[i], "--vault") == 0 && has_value) {
			a->vault_dir = argv[++i];
		} else if (strcmp(argv[i], "--key-file") == 0 && has_value) {
			a->key_file = argv[++i];
		} else if (strcmp(argv[i], "--cluster") == 0 && has_value) {
			a->cluster.url = argv[++i];
		} else if (strcmp(argv[i], "--ack-timeout-ms") == 0 && has_value) {
			if (parse_ms("--ack-timeout-ms", argv[++i], &a->cluster.ack_timeout_ms) < 0)
				return EXIT_USAGE;
		} else if (strcmp(argv[i], "--stream-replicas") == 0 && has_value) {
			unsigned long x;

			if (parse_uint(argv[++i], 1, TSW_CLUSTER_REPLICAS_MAX, &x) < 0)
				return usage_error("--stream-replicas: expected 1..5");
			a->cluster.stream_replicas = (unsigned)x;
		} else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			a->help = true;
		} else if (!a->verb) {
			for (size_t j = 0; j < N_VERBS; j++)
				if (strcmp(verbs[j].name, argv[i]) == 0)
					a->verb = &verbs[j];
			if (!a->verb) {
				fprintf(stderr, "tokvault: unknown verb '%s'\n", argv[i]);
				usage(stderr);
				return EXIT_USAGE;
			}
		} else if (a->n_rest < ARGS_MAX) {
			a->rest[a->n_rest++] = argv[i];
		} else {
			fprintf(stderr, "tokvault: too many arguments\n");
			return EXIT_USAGE;
		}
	}
	return 0;
}

static int open_vault(const struct args *a, unsigned flags, struct tsw_vault **ret_v)
{
	int r = tsw_vault_open(a->vault_dir, a->key_file, flags, ret_v);

	if (r < 0) {
		char why[TSW_HARDEN_WHY_MAX];

		if (tsw_vault_check_files(a->vault_dir, a->key_file, why, sizeof(why)) < 0 &&
		    why[0])
			fprintf(stderr, "tokvault: %s: cannot open vault %s: %s\n", a->verb->name,
				a->vault_dir, why);
		else
			fprintf(stderr, "tokvault: %s: cannot open vault %s: %s\n", a->verb->name,
				a->vault_dir, tsw_strerror(r));
		return EXIT_FAILURE;
	}
	return 0;
}

/* The verb through the cluster: the local copy caught up with the
 * stream, then every write transaction of the verb published, and
 * committed here only once the cluster acknowledged it. */
static int run_clustered(const struct args *a, struct tsw_vault *v)
{
	struct tsw_cluster *cl = NULL;
	char why[256] = "";
	uint64_t applied = 0;
	int r, rc;

	/* the verbs that write the key file too */
	if (strcmp(a->verb->name, "rekey") == 0 || strcmp(a->verb->name, "keys") == 0) {
		fprintf(stderr,
			"tokvault: %s: not through the cluster yet: it writes the key file, "
			"which every node must receive first (docs/cluster.md)\n",
			a->verb->name);
		return EXIT_FAILURE;
	}
	if (tsw_cluster_url_plaintext(a->cluster.url))
		fprintf(stderr,
			"tokvault: warning: %s is plain text (no TLS, no credentials): "
			"the changes are sealed, but anyone on the path can drop or "
			"replay them\n",
			a->cluster.url);
	r = tsw_cluster_open(&a->cluster, &cl, why, sizeof(why));
	if (r < 0) {
		fprintf(stderr,
			"tokvault: %s: cannot reach the cluster (%s: %s): nothing changed\n",
			a->verb->name, tsw_strerror(r), why);
		return EXIT_FAILURE;
	}
	r = tsw_cluster_catch_up(cl, v, &applied);
	if (r == 0)
		r = tsw_cluster_publish_to(cl, v);
	if (r < 0) {
		fprintf(stderr,
			"tokvault: %s: cannot catch up with the cluster: %s: nothing changed\n",
			a->verb->name, tsw_strerror(r));
		tsw_cluster_close(cl);
		return EXIT_FAILURE;
	}
	if (applied)
		fprintf(stderr, "tokvault: %s: applied %llu changes from the cluster first\n",
			a->verb->name, (unsigned long long)applied);
	rc = a->verb->run(v, a->n_rest, (char **)a->rest);
	r = tsw_cluster_publish_error(cl);
	if (r < 0) {
		fprintf(stderr, "tokvault: %s: change not acknowledged by the cluster (%s): %s\n",
			a->verb->name, tsw_strerror(r),
			r == -ESTALE ? "another change came first: nothing changed, run it again"
				     : "nothing changed");
		rc = EXIT_FAILURE;
	}
	tsw_vault_set_change_hook(v, NULL, NULL, 0);
	tsw_cluster_close(cl);
	return rc;
}

int main(int argc, char **argv)
{
	struct args a = {
	    .cluster = {.stream_replicas = 1,
			.ack_timeout_ms = TSW_CLUSTER_ACK_TIMEOUT_MS_DEFAULT,
			.connect_timeout_ms = TSW_CLUSTER_CONNECT_TIMEOUT_MS_DEFAULT,
			.retry_ms = TSW_CLUSTER_RETRY_MS_DEFAULT,
			.heartbeat_ms = TSW_CLUSTER_HEARTBEAT_MS_DEFAULT},
	};
	struct tsw_vault *v = NULL;
	unsigned flags;
	int r;

	/* PANs and keys pass through this process in clear: no core dumps,
	 * no ptrace by other users */
	{
		const char *step = "";

		r = tsw_harden_process(&step);
		if (r < 0)
			fprintf(stderr, "tokvault: warning: %s: %s (a core dump could hold keys)\n",
				step, tsw_strerror(r));
	}
	r = parse_global(argc, argv, &a);
	if (r)
		return r;
	if (!a.verb) {
		usage(a.help ? stdout : stderr);
		return a.help ? 0 : EXIT_USAGE;
	}
	g_verb = a.verb->name;
	if (a.help) {
		printf("usage: tokvault --vault DIR --key-file FILE [--cluster URL] %s %s\n  %s\n",
		       a.verb->name, a.verb->args, a.verb->help);
		if (a.verb->note)
			printf("  %s\n", a.verb->note);
		return 0;
	}
	if (!a.vault_dir || !a.key_file)
		return usage_error("--vault DIR and --key-file FILE are required");
	/* a format 1 vault opens for tokvault: to upgrade it, and to run it
	 * until then (the switch refuses one); through the cluster every verb
	 * opens for writing, to catch up first */
	flags = a.verb->open_flags | TSW_VAULT_FORMAT1_OK;
	if (a.cluster.url)
		flags &= ~(unsigned)TSW_VAULT_RDONLY;
	r = open_vault(&a, flags, &v);
	if (r)
		return r;
	r = a.cluster.url ? run_clustered(&a, v) : a.verb->run(v, a.n_rest, a.rest);
	tsw_vault_close(v);
	return r;
}
