#include <criterion/criterion.h>
#include <errno.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tsw/config.h"
#include "tsw/error.h"
#include "tsw/harden.h"
#include "tsw/log.h"
#include "tsw/luhn.h"

struct mask_case {
	const char *in;
	const char *want;
};

static const struct mask_case mask_cases[] = {
    {"4111111111111111", "411111******1111"},
    {"4111111111111111111", "411111*********1111"},
    {"5500000000004", "550000***0004"},
    {"1234567890", "**********"},
    {"", ""},
};

Test(mask, keeps_first_six_and_last_four_only)
{
	char out[32];

	for (size_t i = 0; i < sizeof(mask_cases) / sizeof(mask_cases[0]); i++) {
		const struct mask_case *c = &mask_cases[i];
		cr_assert_eq(tsw_mask_pan(c->in, (unsigned)strlen(c->in), out, sizeof(out)), 0);
		cr_assert_str_eq(out, c->want, "case %zu", i);
	}
}

Test(mask, refuses_small_buffer)
{
	char out[8];

	cr_assert_eq(tsw_mask_pan("4111111111111111", 16, out, sizeof(out)), -TSW_E_NO_SPACE);
}

Test(strerror, private_and_errno_codes)
{
	cr_assert_str_eq(tsw_strerror(-TSW_E_TRUNCATED), "truncated");
	cr_assert_str_eq(tsw_strerror(TSW_E_TRAILING), "trailing bytes after the last field");
	cr_assert_str_eq(tsw_strerror(-ENOENT), "No such file or directory");
	cr_assert_not_null(tsw_strerror(-99999));
	for (int e = TSW_E_BASE; e < TSW_E_MAX; e++)
		cr_assert_str_neq(tsw_strerror(-e), "unknown error", "code %d has no message", e);
}

/* one mapping of LMDB's codes for the vault and the state: every code
 * lmdb.h defines, and the system's errno passed through */
Test(strerror, lmdb_codes_map_to_one_table)
{
	static const struct {
		int rc, want;
	} cases[] = {
	    {MDB_SUCCESS, 0},
	    {ENOSPC, -ENOSPC},
	    {EIO, -EIO},
	    {EACCES, -EACCES},
	    {MDB_NOTFOUND, -TSW_E_NOT_FOUND},
	    {MDB_KEYEXIST, -TSW_E_EXISTS},
	    {MDB_MAP_FULL, -ENOSPC},
	    {MDB_READERS_FULL, -TSW_E_FULL},
	    {MDB_TXN_FULL, -TSW_E_FULL},
	    {MDB_DBS_FULL, -TSW_E_FULL},
	    {MDB_VERSION_MISMATCH, -TSW_E_VERSION},
	    {MDB_INVALID, -TSW_E_CORRUPT},
	    {MDB_CORRUPTED, -TSW_E_CORRUPT},
	    {MDB_PAGE_NOTFOUND, -TSW_E_CORRUPT},
	    {MDB_INCOMPATIBLE, -TSW_E_CORRUPT},
	    {MDB_BAD_VALSIZE, -TSW_E_CORRUPT},
	    {MDB_PAGE_FULL, -EIO},
	    {MDB_CURSOR_FULL, -EIO},
	    {MDB_BAD_DBI, -EIO},
	    {MDB_PANIC, -EIO},
	    {MDB_TLS_FULL, -EIO},
	    {MDB_MAP_RESIZED, -EIO},
	    {MDB_BAD_RSLOT, -EIO},
	    {MDB_BAD_TXN, -EIO},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_expect_eq(tsw_lmdb_errno(cases[i].rc), cases[i].want, "%s: %d",
			     mdb_strerror(cases[i].rc), tsw_lmdb_errno(cases[i].rc));
}

Test(log, level_parse)
{
	enum tsw_log_level l = TSW_LOG_MAX;

	cr_assert_eq(tsw_log_level_parse("warn", &l), 0);
	cr_assert_eq(l, TSW_LOG_WARN);
	cr_assert_eq(tsw_log_level_parse("loud", &l), -TSW_E_CONFIG);
	cr_assert_eq(l, TSW_LOG_WARN, "untouched on failure");
}

/* --- log lines: text (logfmt) and JSON from the same key=value text ---- */

static const struct timespec log_ts = {.tv_sec = 1764979200, .tv_nsec = 123456789};

static const char *render(enum tsw_log_format f, const char *event, const char *fields)
{
	static char line[4096];
	size_t n = tsw_log_render(line, sizeof(line), f, &log_ts, TSW_LOG_WARN, event, fields);

	cr_assert_lt(n, sizeof(line));
	cr_assert_eq(line[n], '\0');
	return line;
}

Test(log, text_is_logfmt_with_time_level_event_first)
{
	cr_assert_str_eq(render(TSW_LOG_TEXT, "started", "workers=2 io=uring"),
			 "ts=2025-12-06T00:00:00.123Z level=warn event=started workers=2 io=uring\n");
	cr_assert_str_eq(render(TSW_LOG_TEXT, "drained", NULL),
			 "ts=2025-12-06T00:00:00.123Z level=warn event=drained\n");
	cr_assert_str_eq(render(TSW_LOG_TEXT, "drained", ""),
			 "ts=2025-12-06T00:00:00.123Z level=warn event=drained\n");
}

Test(log, text_never_spans_two_lines)
{
	/* a caller that forgot to quote cannot forge a second line */
	cr_assert_str_eq(render(TSW_LOG_TEXT, "x", "a=1\nts=forged level=info"),
			 "ts=2025-12-06T00:00:00.123Z level=warn event=x a=1?ts=forged level=info\n");
}

struct json_case {
	const char *fields;
	const char *want; /* after "ts":..,"level":"warn","event":"e", */
};

static const struct json_case json_cases[] = {
    {"workers=2 io=uring", "\"workers\":2,\"io\":\"uring\""},
    /* integers without a leading zero are numbers; every other value a string */
    {"n=0 m=-12 rc=05 stan=000555 big=123456789012345678901 x=1.5 h=1:2",
     "\"n\":0,\"m\":-12,\"rc\":\"05\",\"stan\":\"000555\","
     "\"big\":\"123456789012345678901\",\"x\":\"1.5\",\"h\":\"1:2\""},
    /* quoted values are strings, even when they hold digits */
    {"rc=\"51\" reason=\"queue full\"", "\"rc\":\"51\",\"reason\":\"queue full\""},
    /* logfmt escapes come out as the characters, JSON-escaped again */
    {"reason=\"a \\\"q\\\" b\\\\c\\nd\\x01\"",
     "\"reason\":\"a \\\"q\\\" b\\\\c\\nd\\u0001\""},
    /* a bare key is true; extra spaces are skipped */
    {"  flag   k=v ", "\"flag\":true,\"k\":\"v\""},
    /* an unterminated quote takes the rest of the text */
    {"k=\"open value", "\"k\":\"open value\""},
    /* raw control bytes and bytes that are not UTF-8 are escaped */
    {"k=a\tb u=\xc3\xa9 bad=\xff\xfe", "\"k\":\"a\\tb\",\"u\":\"\xc3\xa9\",\"bad\":\"\\ufffd\\ufffd\""},
    /* a key needing escapes stays one key */
    {"we\"ird=1", "\"we\\\"ird\":1"},
    {"", NULL},
};

Test(log, json_object_per_line_same_keys)
{
	for (size_t i = 0; i < sizeof(json_cases) / sizeof(json_cases[0]); i++) {
		const struct json_case *c = &json_cases[i];
		char want[1024];

		if (c->want)
			snprintf(want, sizeof(want),
				 "{\"ts\":\"2025-12-06T00:00:00.123Z\",\"level\":\"warn\","
				 "\"event\":\"e\",%s}\n",
				 c->want);
		else
			snprintf(want, sizeof(want),
				 "{\"ts\":\"2025-12-06T00:00:00.123Z\",\"level\":\"warn\","
				 "\"event\":\"e\"}\n");
		cr_assert_str_eq(render(TSW_LOG_JSON, "e", c->fields), want, "case %zu", i);
	}
}

Test(log, quote_round_trips_through_both_formats)
{
	char q[128], fields[160];

	cr_assert_str_eq(tsw_log_quote("plain", q, sizeof(q)), "plain");
	cr_assert_str_eq(tsw_log_quote("a \"b\" c\\d\ne\x7f", q, sizeof(q)),
			 "a \\\"b\\\" c\\\\d\\ne\\x7f");
	snprintf(fields, sizeof(fields), "file=\"%s\" line=3", q);
	cr_assert_str_eq(render(TSW_LOG_TEXT, "e", fields),
			 "ts=2025-12-06T00:00:00.123Z level=warn event=e "
			 "file=\"a \\\"b\\\" c\\\\d\\ne\\x7f\" line=3\n");
	cr_assert_str_eq(render(TSW_LOG_JSON, "e", fields),
			 "{\"ts\":\"2025-12-06T00:00:00.123Z\",\"level\":\"warn\",\"event\":\"e\","
			 "\"file\":\"a \\\"b\\\" c\\\\d\\ne\\u007f\",\"line\":3}\n");
	/* cut to the buffer, never in the middle of an escape, always terminated */
	cr_assert_str_eq(tsw_log_quote("ab\"cd", q, 4), "ab");
	cr_assert_str_eq(tsw_log_quote("abcdef", q, 4), "abc");
}

Test(log, long_json_line_cut_at_a_field_and_still_an_object)
{
	char fields[1024], line[256];
	size_t n;

	memset(fields, 0, sizeof(fields));
	for (int i = 0; i < 40; i++)
		snprintf(fields + strlen(fields), sizeof(fields) - strlen(fields), "key%02d=\"%s\" ",
			 i, "0123456789");
	n = tsw_log_render(line, sizeof(line), TSW_LOG_JSON, &log_ts, TSW_LOG_INFO, "e", fields);
	cr_assert_lt(n, sizeof(line));
	cr_assert_eq(line[n - 1], '\n');
	cr_assert_not_null(strstr(line, ",\"truncated\":true}\n"), "%s", line);
	cr_assert_not_null(strstr(line, "\"key00\":\"0123456789\""), "%s", line);
	/* every field before the marker is whole */
	cr_assert_null(strstr(line, "\"key39\""), "%s", line);
	cr_assert_eq(strncmp(strstr(line, ",\"truncated\"") - 1, "\"", 1), 0, "%s", line);
}

Test(log, format_parse)
{
	enum tsw_log_format f = TSW_LOG_FORMAT_MAX;

	cr_assert_eq(tsw_log_format_parse("json", &f), 0);
	cr_assert_eq(f, TSW_LOG_JSON);
	cr_assert_eq(tsw_log_format_parse("text", &f), 0);
	cr_assert_eq(f, TSW_LOG_TEXT);
	cr_assert_eq(tsw_log_format_parse("xml", &f), -TSW_E_CONFIG);
	cr_assert_eq(f, TSW_LOG_TEXT, "untouched on failure");
	cr_assert_str_eq(tsw_log_format_name(TSW_LOG_JSON), "json");
}

/* --- config keys of durability and of the event log ------------------ */

static void base_config(struct tsw_config *cfg)
{
	tsw_config_defaults(cfg);
	cr_assert_eq(tsw_config_set(cfg, "server", "vault", "/v", NULL, 0), 0);
	cr_assert_eq(tsw_config_set(cfg, "server", "key_file", "/k", NULL, 0), 0);
}

Test(config, no_state_is_true_or_false_and_never_with_a_state_dir)
{
	struct tsw_config cfg;
	char reason[TSW_CONFIG_REASON_MAX];

	base_config(&cfg);
	cr_assert_eq(cfg.no_state, false, "default");
	cr_assert_eq(tsw_config_set(&cfg, "server", "no_state", "yes", reason, sizeof(reason)),
		     -TSW_E_CONFIG);
	cr_assert_not_null(strstr(reason, "server.no_state must be true or false"), "%s", reason);
	cr_assert_eq(tsw_config_set(&cfg, "server", "no_state", "true", NULL, 0), 0);
	cr_assert_eq(cfg.no_state, true);
	cr_assert_eq(tsw_config_check(&cfg, reason, sizeof(reason)), 0, "%s", reason);
	cr_assert_eq(tsw_config_set(&cfg, "server", "state", "/s", NULL, 0), 0);
	cr_assert_eq(tsw_config_check(&cfg, reason, sizeof(reason)), -TSW_E_CONFIG);
	cr_assert_not_null(strstr(reason, "--state"), "%s", reason);
	cr_assert_not_null(strstr(reason, "--no-state"), "%s", reason);
	cr_assert_eq(tsw_config_set(&cfg, "server", "no_state", "false", NULL, 0), 0);
	cr_assert_eq(tsw_config_check(&cfg, reason, sizeof(reason)), 0, "%s", reason);
}

Test(config, log_keys_defaults_bounds_and_reload)
{
	struct tsw_config run, next;
	char reason[TSW_CONFIG_REASON_MAX], buf[TSW_CONFIG_REASON_MAX];

	base_config(&run);
	cr_assert_eq(run.log_format, TSW_LOG_TEXT);
	cr_assert_eq(run.log_event_burst, 10);
	cr_assert_eq(run.log_event_interval_ms, 10000);
	cr_assert_eq(run.log_event_queue, 512);
	next = run;
	cr_assert_eq(tsw_config_set(&next, "server", "log_format", "xml", reason, sizeof(reason)),
		     -TSW_E_CONFIG);
	cr_assert_not_null(strstr(reason, "server.log_format must be text or json"), "%s", reason);
	cr_assert_eq(tsw_config_set(&next, "server", "log_event_queue", "15", NULL, 0),
		     -TSW_E_CONFIG, "below 16");
	cr_assert_eq(tsw_config_set(&next, "server", "log_event_burst", "0", NULL, 0),
		     -TSW_E_CONFIG, "at least one line");
	/* format, burst and interval apply on SIGHUP; the queue and no_state need a restart */
	cr_assert_eq(tsw_config_set(&next, "server", "log_format", "json", NULL, 0), 0);
	cr_assert_eq(next.log_format, TSW_LOG_JSON);
	cr_assert_eq(tsw_config_set(&next, "server", "log_event_burst", "3", NULL, 0), 0);
	cr_assert_eq(tsw_config_set(&next, "server", "log_event_interval_ms", "500", NULL, 0), 0);
	cr_assert_eq(tsw_config_restart_only_changed(&run, &next, buf, sizeof(buf)), 0, "%s", buf);
	cr_assert_eq(tsw_config_set(&next, "server", "log_event_queue", "64", NULL, 0), 0);
	cr_assert_eq(tsw_config_set(&next, "server", "no_state", "true", NULL, 0), 0);
	cr_assert_eq(tsw_config_restart_only_changed(&run, &next, buf, sizeof(buf)), 2);
	cr_assert_str_eq(buf, "server.log_event_queue,server.no_state");
}

struct luhn_case {
	const char *digits;
	bool valid;
};

static const struct luhn_case luhn_cases[] = {
    {"4111111111111111", true},
    {"4111111111111112", false},
    {"5500000000000004", true},
    {"4895370000000015", true},
    {"4895370000000016", false},
    {"79927398713", true}, /* odd length */
    {"79927398710", false},
    {"4111a11111111111", false},
    {"411111111111111:", false}, /* ':' is '9' + 1 */
    {"/111111111111111", false}, /* '/' is '0' - 1 */
    {"0", false},		 /* a check digit alone is no number */
    {"", false},
    {"00", true},
    {"18", true},
    {"4000000000000000000", false}, /* 19 digits */
    {"4000000000000000006", true},
};

Test(luhn, valid_needs_digits_and_the_right_check_digit)
{
	for (size_t i = 0; i < sizeof(luhn_cases) / sizeof(luhn_cases[0]); i++)
		cr_expect_eq(tsw_luhn_valid(luhn_cases[i].digits, strlen(luhn_cases[i].digits)),
			     luhn_cases[i].valid, "case %zu: %s", i, luhn_cases[i].digits);
	cr_expect_not(tsw_luhn_valid(NULL, 16));
	/* only len digits are read: a valid prefix of a longer buffer */
	cr_expect(tsw_luhn_valid("79927398713999", 11));
}

struct check_digit_case {
	const char *payload;
	char want;
};

static const struct check_digit_case check_digit_cases[] = {
    {"411111111111111", '1'},
    {"550000000000000", '4'},
    {"489537000000001", '5'},
    {"7992739871", '3'},
    {"0", '0'},
    {"1", '8'},
    {"400000000000000000", '6'},
    {"12a4", '\0'},
    {"", '\0'},
};

Test(luhn, check_digit_completes_a_valid_number)
{
	for (size_t i = 0; i < sizeof(check_digit_cases) / sizeof(check_digit_cases[0]); i++) {
		const struct check_digit_case *c = &check_digit_cases[i];
		size_t n = strlen(c->payload);
		char buf[32];

		cr_assert_eq(tsw_luhn_check_digit(c->payload, n), c->want, "case %zu: %s", i,
			     c->payload);
		if (c->want == '\0')
			continue;
		memcpy(buf, c->payload, n);
		buf[n] = c->want;
		cr_expect(tsw_luhn_valid(buf, n + 1), "case %zu", i);
		/* every other last digit is invalid */
		for (char d = '0'; d <= '9'; d++) {
			buf[n] = d;
			cr_expect_eq(tsw_luhn_valid(buf, n + 1), d == c->want, "case %zu digit %c",
				     i, d);
		}
	}
	cr_expect_eq(tsw_luhn_check_digit(NULL, 3), '\0');
}

/* ---- harden: owner and mode of the files that hold keys and data ---- */

struct perm_case {
	enum tsw_harden_kind kind;
	mode_t mode;
	uid_t owner; /* OTHER_UID: a uid that is neither this user nor root */
	int want;
	const char *why;
};

#define OTHER_UID 65534

static const struct perm_case perm_cases[] = {
    {TSW_HARDEN_DIR, 0700, 0, 0, NULL},
    {TSW_HARDEN_DIR, 0755, 0, 0, NULL},
    {TSW_HARDEN_DIR, 0770, 0, -TSW_E_TOO_OPEN, "mode 0770: group or others may create"},
    {TSW_HARDEN_DIR, 0702, 0, -TSW_E_TOO_OPEN, "chmod go-w"},
    {TSW_HARDEN_DIR, 01777, 0, -TSW_E_TOO_OPEN, "mode 1777"},
    {TSW_HARDEN_DIR, 0700, OTHER_UID, -TSW_E_NOT_OWNER, "owned by uid 65534, not by this user"},
    {TSW_HARDEN_DATA, 0600, 0, 0, NULL},
    {TSW_HARDEN_DATA, 0644, 0, 0, NULL},
    {TSW_HARDEN_DATA, 0664, 0, -TSW_E_TOO_OPEN, "mode 0664: group or others may write it"},
    {TSW_HARDEN_DATA, 0606, 0, -TSW_E_TOO_OPEN, "chmod go-w"},
    {TSW_HARDEN_DATA, 0600, OTHER_UID, -TSW_E_NOT_OWNER, "chown it"},
    {TSW_HARDEN_SECRET, 0600, 0, 0, NULL},
    {TSW_HARDEN_SECRET, 0400, 0, 0, NULL},
    {TSW_HARDEN_SECRET, 0640, 0, -TSW_E_TOO_OPEN, "mode 0640: group or others may read"},
    {TSW_HARDEN_SECRET, 0604, 0, -TSW_E_TOO_OPEN, "chmod 600"},
    {TSW_HARDEN_SECRET, 0600, OTHER_UID, -TSW_E_NOT_OWNER, "owned by uid 65534"},
};

/* Real files in a temp dir, chmod and chown'ed (the chown cases need root:
 * skipped otherwise, the mode cases run for any user). */
Test(harden, owner_and_mode_by_kind_with_the_path_in_why)
{
	char dir[] = "/tmp/tsw-harden-XXXXXX", path[64], why[TSW_HARDEN_WHY_MAX];
	bool root = geteuid() == 0;
	unsigned ran = 0;

	cr_assert_not_null(mkdtemp(dir));
	for (size_t i = 0; i < sizeof(perm_cases) / sizeof(perm_cases[0]); i++) {
		const struct perm_case *c = &perm_cases[i];
		uid_t owner = c->owner == OTHER_UID ? OTHER_UID : geteuid();
		int r;

		if (c->owner == OTHER_UID && !root)
			continue;
		snprintf(path, sizeof(path), "%s/%zu", dir, i);
		if (c->kind == TSW_HARDEN_DIR) {
			cr_assert_eq(mkdir(path, 0700), 0);
		} else {
			FILE *f = fopen(path, "w");

			cr_assert_not_null(f);
			fclose(f);
		}
		cr_assert_eq(chmod(path, c->mode), 0);
		cr_assert_eq(chown(path, owner, (gid_t)-1), 0);
		why[0] = '\0';
		r = tsw_harden_check_path(path, c->kind, why, sizeof(why));
		cr_assert_eq(r, c->want, "case %zu: %d (%s)", i, r, why);
		if (c->why) {
			cr_assert_eq(strncmp(why, path, strlen(path)), 0, "case %zu: %s", i, why);
			cr_assert_not_null(strstr(why, c->why), "case %zu: %s", i, why);
		}
		ran++;
	}
	cr_assert_gt(ran, 0);
	/* the wrong type, and a missing path */
	snprintf(path, sizeof(path), "%s/0", dir);
	cr_assert_eq(tsw_harden_check_path(path, TSW_HARDEN_DATA, why, sizeof(why)), -EINVAL);
	cr_assert_not_null(strstr(why, "not a regular file"), "%s", why);
	snprintf(path, sizeof(path), "%s/6", dir);
	cr_assert_eq(tsw_harden_check_path(path, TSW_HARDEN_DIR, why, sizeof(why)), -ENOTDIR);
	snprintf(path, sizeof(path), "%s/none", dir);
	cr_assert_eq(tsw_harden_check_path(path, TSW_HARDEN_DIR, NULL, 0), -ENOENT);
	snprintf(path, sizeof(path), "rm -rf '%s'", dir);
	cr_assert_eq(system(path), 0);
}

/* An LMDB directory: the dir, then data.mdb and lock.mdb where present. */
Test(harden, env_dir_checks_the_dir_and_its_lmdb_files)
{
	char dir[] = "/tmp/tsw-harden-XXXXXX", path[64], why[TSW_HARDEN_WHY_MAX];
	FILE *f;

	cr_assert_not_null(mkdtemp(dir));
	cr_assert_eq(tsw_harden_check_env_dir(dir, why, sizeof(why)), 0, "%s", why);
	snprintf(path, sizeof(path), "%s/lock.mdb", dir);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fclose(f);
	cr_assert_eq(chmod(path, 0620), 0);
	cr_assert_eq(tsw_harden_check_env_dir(dir, why, sizeof(why)), -TSW_E_TOO_OPEN);
	cr_assert_eq(strncmp(why, path, strlen(path)), 0, "%s", why);
	cr_assert_eq(chmod(path, 0600), 0);
	cr_assert_eq(tsw_harden_check_env_dir(dir, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(chmod(dir, 0730), 0);
	cr_assert_eq(tsw_harden_check_env_dir(dir, why, sizeof(why)), -TSW_E_TOO_OPEN);
	cr_assert_eq(strncmp(why, dir, strlen(dir)), 0, "%s", why);
	cr_assert_null(strstr(why, "lock.mdb"), "the dir is named, not its file: %s", why);
	snprintf(path, sizeof(path), "rm -rf '%s'", dir);
	cr_assert_eq(system(path), 0);
}

/* The switch and tokvault call this first: no core file, not dumpable. */
Test(harden, process_has_no_core_limit_and_is_not_dumpable)
{
	struct rlimit rl;

	cr_assert_eq(tsw_harden_process(NULL), 0);
	cr_assert_eq(getrlimit(RLIMIT_CORE, &rl), 0);
	cr_assert_eq(rl.rlim_cur, 0);
	cr_assert_eq(rl.rlim_max, 0);
	cr_assert_eq(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), 0);
}
