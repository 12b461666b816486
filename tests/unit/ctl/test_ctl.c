/* The control plane and its configuration: config parsing (include/tsw/config.h)
 * and the metrics/health HTTP endpoint (include/tsw/ctl.h). */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "tsw/authz.h"
#include "tsw/config.h"
#include "tsw/hsm.h"
#include "tsw/ctl.h"
#include "tsw/error.h"
#include "tsw/iso8583.h"
#include "tsw/metrics.h"
#include "tsw/state.h"
#include "tsw/token.h"

static char tmpdir[64];

static void mk_tmp(void)
{
	strcpy(tmpdir, "/tmp/tsw-ctl-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
}

static void rm_tmp(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	cr_assert_eq(system(cmd), 0);
}

static const char *write_file(const char *name, const char *text)
{
	static char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

/* --- config ---------------------------------------------------------- */

TestSuite(config, .init = mk_tmp, .fini = rm_tmp);

Test(config, file_values_override_defaults_and_issuers_append_in_order)
{
	struct tsw_config cfg;
	struct tsw_config_error err;
	const char *p = write_file("ok.conf", "; comment\n"
					      "# comment too\n"
					      "[server]\n"
					      "listen = 0.0.0.0:0\n"
					      "workers = 3\n"
					      "io = uv\n"
					      "vault = /v\n"
					      "key_file = /k\n"
					      "[issuer]\n"
					      "host = 127.0.0.1:9001\n"
					      "host = [::1]:9002\n"
					      "timeout_ms = 1500\n"
					      "[route]\n"
					      "4000 = 1\n"
					      "default = 0\n"
					      "4000 = 0\n");

	tsw_config_defaults(&cfg);
	cr_assert_eq(cfg.issuer_timeout_ms, 2000);
	cr_assert_eq(tsw_config_load(p, &cfg, &err), 0, "%s:%u %s", err.file, err.line, err.reason);
	cr_assert_str_eq(cfg.listen.host, "0.0.0.0");
	cr_assert_eq(cfg.listen.port, 0);
	cr_assert_eq(cfg.workers, 3);
	cr_assert_eq(cfg.io, TSW_CONFIG_IO_UV);
	cr_assert_eq(cfg.n_issuers, 2);
	cr_assert_eq(cfg.n_hosts, 2);
	cr_assert_str_eq(cfg.hosts[1].addr.host, "::1");
	cr_assert_eq(cfg.hosts[1].addr.port, 9002);
	cr_assert_eq(cfg.hosts[1].issuer, 1, "one host per line: one issuer each");
	cr_assert_eq(cfg.issuer_timeout_ms, 1500);
	cr_assert_eq(cfg.n_routes, 2, "a repeated prefix replaces its route");
	cr_assert_str_eq(cfg.routes[0].bin_prefix, "4000");
	cr_assert_eq(cfg.routes[0].issuer, 0);
	cr_assert_str_eq(cfg.routes[1].bin_prefix, "");
	cr_assert_eq(cfg.max_frame, 8192, "untouched keys keep their default");
	cr_assert_eq(tsw_config_check(&cfg, NULL, 0), 0);
}

Test(config, shipped_file_states_every_default)
{
	struct tsw_config cfg, defaults;
	struct tsw_config_error err;
	const char *root = getenv("TSW_SOURCE_ROOT");
	char path[512];

	cr_assert_not_null(root);
	snprintf(path, sizeof(path), "%s/config/tokswitch.conf", root);
	tsw_config_defaults(&defaults);
	/* start from values that differ from every default: the file must set each key */
	memset(&cfg, 0, sizeof(cfg));
	cfg.workers = 77;
	cfg.io = TSW_CONFIG_IO_UV;
	cfg.log_level = 3;
	cr_assert_eq(tsw_config_load(path, &cfg, &err), 0, "%s:%u %s", err.file, err.line,
		     err.reason);
	cr_assert_eq(memcmp(&cfg, &defaults, sizeof(cfg)), 0,
		     "config/tokswitch.conf and tsw_config_defaults() disagree");
}

/* One `key = value` line of the shipped file, commented out or not. */
struct conf_line {
	char section[32], key[64], value[160];
	bool commented;
	unsigned line;
};

/* Reads config/tokswitch.conf into lines (at most cap); returns how many. */
static size_t read_conf_lines(struct conf_line *lines, size_t cap)
{
	const char *root = getenv("TSW_SOURCE_ROOT");
	char path[512], buf[256], section[32] = "";
	size_t n = 0;
	unsigned line = 0;
	FILE *f;

	cr_assert_not_null(root);
	snprintf(path, sizeof(path), "%s/config/tokswitch.conf", root);
	f = fopen(path, "r");
	cr_assert_not_null(f, "%s", path);
	while (fgets(buf, sizeof(buf), f)) {
		char key[64], value[160] = "";
		bool commented = buf[0] == ';';
		const char *p = commented ? buf + 1 : buf;

		line++;
		buf[strcspn(buf, "\n")] = '\0';
		if (sscanf(buf, "[%31[^]]]", section) == 1)
			continue;
		/* a key line: a name, " = ", a value (comments are prose) */
		if (sscanf(p, "%63[a-z_0-9] = %159[^\n]", key, value) < 1 || !strstr(p, " = "))
			continue;
		cr_assert_lt(n, cap);
		snprintf(lines[n].section, sizeof(lines[n].section), "%s", section);
		snprintf(lines[n].key, sizeof(lines[n].key), "%s", key);
		snprintf(lines[n].value, sizeof(lines[n].value), "%s", value);
		lines[n].commented = commented;
		lines[n].line = line;
		n++;
	}
	fclose(f);
	return n;
}

/* every default the file shows is tsw_config_defaults()'s, key by key */
Test(config, every_default_the_shipped_file_shows_is_the_built_in_one)
{
	static struct conf_line lines[256];
	size_t n = read_conf_lines(lines, 256), shown = 0;
	struct tsw_config defaults;

	tsw_config_defaults(&defaults);
	for (size_t i = 0; i < n; i++) {
		struct tsw_config cfg = defaults;
		char reason[TSW_CONFIG_REASON_MAX] = "";

		if (lines[i].commented)
			continue;
		cr_assert_eq(tsw_config_set(&cfg, lines[i].section, lines[i].key, lines[i].value,
					    reason, sizeof(reason)),
			     0, "line %u: %s", lines[i].line, reason);
		cr_expect_eq(memcmp(&cfg, &defaults, sizeof(cfg)), 0,
			     "line %u: %s.%s = %s is not the built-in default", lines[i].line,
			     lines[i].section, lines[i].key, lines[i].value);
		shown++;
	}
	cr_assert_gt(shown, 50, "the file's key lines were read (%zu)", shown);
}

/* every key the config takes is in the shipped file: with its default, or
 * commented out when it has none (a path the operator gives) */
Test(config, the_shipped_file_documents_every_key)
{
	static struct conf_line lines[256];
	size_t n = read_conf_lines(lines, 256), keys = 0;
	struct tsw_config defaults;
	const char *section, *key;

	tsw_config_defaults(&defaults);
	for (size_t k = 0; (key = tsw_config_key_name(k, &section)); k++) {
		const struct conf_line *found = NULL;

		for (size_t i = 0; i < n && !found; i++)
			if (strcmp(lines[i].section, section) == 0 &&
			    strcmp(lines[i].key, key) == 0)
				found = &lines[i];
		cr_expect_not_null(found, "%s.%s is not in config/tokswitch.conf", section, key);
		if (found && found->commented) {
			/* only a key without a default may be left commented out */
			struct tsw_config cfg = defaults;

			cr_expect_eq(tsw_config_set(&cfg, section, key, "", NULL, 0), 0,
				     "%s.%s is commented out but takes no empty value", section,
				     key);
			cr_expect_eq(memcmp(&cfg, &defaults, sizeof(cfg)), 0,
				     "%s.%s has a default but the file comments it out", section,
				     key);
		}
		keys++;
	}
	cr_assert_gt(keys, 60, "every table key was walked (%zu)", keys);
}

struct bad_line {
	const char *text;
	unsigned line;
	const char *reason;
};

static const struct bad_line bad_lines[] = {
    {"[server]\nworkers = 2\nwrokers = 3\n", 3, "unknown key server.wrokers"},
    {"[server]\nworkers = 9999\n", 2, "server.workers must be an integer"},
    {"[limits]\nmax_conns = -1\n", 2, "limits.max_conns"},
    {"[limits]\nmax_conns = 12abc\n", 2, "limits.max_conns"},
    {"[server]\nlisten = nowhere\n", 2, "server.listen must be HOST:PORT"},
    {"[server]\nlisten = host:99999\n", 2, "HOST:PORT"},
    {"[server]\nio = epoll\n", 2, "server.io"},
    {"[server]\nlog_level = loud\n", 2, "log_level"},
    {"[issuer]\nhost = 10.0.0.1:0\n", 2, "ports above 0"},
    {"[issuer]\nhost = 10.0.0.1:1, 10.0.0.2:0\n", 2, "ports above 0"},
    {"[issuer]\nhost = 10.0.0.1:1,\n", 2, "HOST:PORT[, HOST:PORT...]"},
    {"[issuer]\nhost = 10.0.0.1:1, , 10.0.0.2:1\n", 2, "HOST:PORT[, HOST:PORT...]"},
    {"[issuer]\nhost = ,10.0.0.1:1\n", 2, "HOST:PORT[, HOST:PORT...]"},
    {"[issuer]\nhost = 10.0.0.1:1 10.0.0.2:1\n", 2, "HOST:PORT[, HOST:PORT...]"},
    {"[issuer]\nhost = 10.0.0.1:1\nhost = 1:1,2:2,3:3,4:4,5:5,6:6,7:7,8:8,9:9\n", 3,
     "issuer.host: more than 8 hosts for one issuer"},
    {"[route]\n40x0 = 0\n", 2, "BIN prefix"},
    {"[route]\n4000 = 16\n", 2, "issuer index"},
    {"[nosuch]\nkey = 1\n", 2, "unknown key nosuch.key"},
    {"[server]\n\nthis line has no equals sign\n", 3, "syntax error"},
    {"[server]\nworkers = 1\n[limits\n", 3, "syntax error"},
    {"[limits]\nmax_parked = 8\nacq_reversal_memory = 1000\n", 3,
     "limits.acq_reversal_memory must be an integer in 16..4194304, a power of two"},
    {"[limits]\nexpired_stan_memory = 3072\n", 2, "limits.expired_stan_memory"},
};

Test(config, bad_line_refused_with_line_and_reason_and_config_untouched)
{
	for (size_t i = 0; i < sizeof(bad_lines) / sizeof(bad_lines[0]); i++) {
		const struct bad_line *b = &bad_lines[i];
		struct tsw_config cfg, before;
		struct tsw_config_error err;
		const char *p = write_file("bad.conf", b->text);

		tsw_config_defaults(&cfg);
		before = cfg;
		cr_assert_eq(tsw_config_load(p, &cfg, &err), -TSW_E_CONFIG, "case %zu", i);
		cr_assert_eq(err.line, b->line, "case %zu: line %u", i, err.line);
		cr_assert_not_null(strstr(err.reason, b->reason), "case %zu: %s", i, err.reason);
		cr_assert_str_eq(err.file, p);
		cr_assert_eq(memcmp(&cfg, &before, sizeof(cfg)), 0, "case %zu changed cfg", i);
	}
}

/* inih reads a line into a buffer of 200 bytes and hands the rest of a
 * longer one over as a line of its own: "vault = /long...key_file=/x" on
 * one line would set two keys. A line that does not fit is refused by
 * file:line; one that just fits (199 bytes and its newline) loads. */
Test(config, a_line_longer_than_the_parser_buffer_is_refused_by_line)
{
	enum { FITS = 199 };
	char text[1024], line[512];
	struct tsw_config cfg, before;
	struct tsw_config_error err;
	const char *p;
	int n;

	/* a path that puts "key_file=/evil" at byte FITS of the line */
	n = snprintf(line, sizeof(line), "vault = /");
	memset(line + n, 'a', FITS - (size_t)n);
	snprintf(line + FITS, sizeof(line) - FITS, "key_file=/evil");
	snprintf(text, sizeof(text), "[server]\n%s\nworkers = 2\n", line);
	p = write_file("long.conf", text);
	tsw_config_defaults(&cfg);
	before = cfg;
	cr_assert_eq(tsw_config_load(p, &cfg, &err), -TSW_E_CONFIG, "loaded key_file=%s",
		     cfg.key_file);
	cr_assert_str_eq(err.file, p);
	cr_assert_eq(err.line, 2, "line %u: %s", err.line, err.reason);
	cr_assert_not_null(strstr(err.reason, "longer than 199 bytes"), "%s", err.reason);
	cr_assert_eq(memcmp(&cfg, &before, sizeof(cfg)), 0, "a refused file changed cfg");

	/* an error on an earlier line is the one reported */
	snprintf(text, sizeof(text), "[server]\nworkers = lots\n%s\n", line);
	p = write_file("long.conf", text);
	cr_assert_eq(tsw_config_load(p, &cfg, &err), -TSW_E_CONFIG);
	cr_assert_eq(err.line, 2, "line %u: %s", err.line, err.reason);
	cr_assert_not_null(strstr(err.reason, "server.workers"), "%s", err.reason);

	/* the longest line that fits, with and without a final newline */
	line[FITS] = '\0';
	for (int final_newline = 1; final_newline >= 0; final_newline--) {
		snprintf(text, sizeof(text), "[server]\nworkers = 2\n%s%s", line,
			 final_newline ? "\n" : "");
		p = write_file("fits.conf", text);
		tsw_config_defaults(&cfg);
		cr_assert_eq(tsw_config_load(p, &cfg, &err), 0, "%s:%u %s", err.file, err.line,
			     err.reason);
		cr_assert_str_eq(cfg.vault_dir, line + strlen("vault = "));
		cr_assert_eq(cfg.workers, 2);
	}

	/* a NUL byte would end the line early for inih: refused too */
	{
		FILE *f;

		p = write_file("nul.conf", "");
		f = fopen(p, "w");
		cr_assert_not_null(f);
		static const char nul[] = "[server]\nvault = /v\0key_file=/evil\n";

		cr_assert_eq(fwrite(nul, 1, sizeof(nul) - 1, f), sizeof(nul) - 1);
		cr_assert_eq(fclose(f), 0);
		cr_assert_eq(tsw_config_load(p, &cfg, &err), -TSW_E_CONFIG);
		cr_assert_eq(err.line, 2, "line %u: %s", err.line, err.reason);
		cr_assert_not_null(strstr(err.reason, "NUL"), "%s", err.reason);
	}
}

Test(config, a_host_list_is_one_issuer_with_several_hosts)
{
	struct tsw_config cfg;
	struct tsw_config_error err;
	char reason[TSW_CONFIG_REASON_MAX];
	const char *p = write_file("hosts.conf", "[server]\n"
						 "vault = /v\n"
						 "key_file = /k\n"
						 "[issuer]\n"
						 "host = 127.0.0.1:9001 ,\t127.0.0.2:9002, [::1]:9003\n"
						 "host = 10.0.0.1:9100\n"
						 "[route]\n"
						 "4000 = 1\n");
	static const struct {
		const char *host;
		uint16_t port;
		uint8_t issuer;
	} want[] = {
	    {"127.0.0.1", 9001, 0}, {"127.0.0.2", 9002, 0}, {"::1", 9003, 0},
	    {"10.0.0.1", 9100, 1},  {"10.0.0.5", 1, 2},	    {"10.0.0.6", 2, 2},
	};

	tsw_config_defaults(&cfg);
	cr_assert_eq(tsw_config_load(p, &cfg, &err), 0, "%s:%u %s", err.file, err.line, err.reason);
	/* what --issuer passes: the same syntax, without spaces */
	cr_assert_eq(tsw_config_set(&cfg, "issuer", "host", "10.0.0.5:1,10.0.0.6:2", reason,
				    sizeof(reason)),
		     0, "%s", reason);
	cr_assert_eq(cfg.n_issuers, 3);
	cr_assert_eq(cfg.n_hosts, 6);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		cr_assert_str_eq(cfg.hosts[i].addr.host, want[i].host, "host %zu", i);
		cr_assert_eq(cfg.hosts[i].addr.port, want[i].port, "host %zu", i);
		cr_assert_eq(cfg.hosts[i].issuer, want[i].issuer, "host %zu", i);
	}
	cr_assert_eq(tsw_config_check(&cfg, reason, sizeof(reason)), 0, "%s", reason);
	/* routes name issuers, not hosts: issuer 3 does not exist */
	cr_assert_eq(tsw_config_set(&cfg, "route", "5000", "3", NULL, 0), 0);
	cr_assert_eq(tsw_config_check(&cfg, reason, sizeof(reason)), -TSW_E_CONFIG);
	cr_assert_not_null(strstr(reason, "names issuer 3 but 3 issuers are set"), "%s", reason);
}

Test(config, host_bounds_refused_naming_the_key_and_adding_nothing)
{
	struct tsw_config cfg, before;
	char reason[TSW_CONFIG_REASON_MAX], list[256];
	size_t len = 0;
	uint32_t i;

	/* TSW_CONFIG_LINKS_MAX in all: four lines of eight fill it */
	tsw_config_defaults(&cfg);
	for (i = 0; i < TSW_CONFIG_ISSUER_HOSTS_MAX; i++)
		len += (size_t)snprintf(list + len, sizeof(list) - len, "%s10.0.0.%u:1",
					i ? "," : "", i + 1);
	for (i = 0; i < TSW_CONFIG_LINKS_MAX / TSW_CONFIG_ISSUER_HOSTS_MAX; i++)
		cr_assert_eq(tsw_config_set(&cfg, "issuer", "host", list, reason, sizeof(reason)),
			     0, "%s", reason);
	cr_assert_eq(cfg.n_hosts, TSW_CONFIG_LINKS_MAX);
	before = cfg;
	cr_assert_eq(tsw_config_set(&cfg, "issuer", "host", "10.9.9.9:1", reason, sizeof(reason)),
		     -TSW_E_CONFIG);
	cr_assert_not_null(strstr(reason, "issuer.host: more than 32 hosts in all issuers"), "%s",
			   reason);
	cr_assert_eq(memcmp(&cfg, &before, sizeof(cfg)), 0, "a refused host line adds nothing");

	/* TSW_CONFIG_ISSUERS_MAX issuers */
	tsw_config_defaults(&cfg);
	for (i = 0; i < TSW_CONFIG_ISSUERS_MAX; i++)
		cr_assert_eq(tsw_config_set(&cfg, "issuer", "host", "10.0.0.1:1", NULL, 0), 0);
	before = cfg;
	cr_assert_eq(tsw_config_set(&cfg, "issuer", "host", "10.0.0.1:1", reason, sizeof(reason)),
		     -TSW_E_CONFIG);
	cr_assert_not_null(strstr(reason, "issuer.host: more than 16 issuers"), "%s", reason);
	cr_assert_eq(memcmp(&cfg, &before, sizeof(cfg)), 0);

	/* a list refused part-way adds none of its hosts */
	tsw_config_defaults(&cfg);
	before = cfg;
	cr_assert_eq(tsw_config_set(&cfg, "issuer", "host", "10.0.0.1:1,10.0.0.2:x", NULL, 0),
		     -TSW_E_CONFIG);
	cr_assert_eq(memcmp(&cfg, &before, sizeof(cfg)), 0);
}

Test(config, issuer_lists_compare_hosts_and_their_issuers)
{
	struct tsw_config a, b;

	tsw_config_defaults(&a);
	tsw_config_defaults(&b);
	cr_assert_eq(tsw_config_set(&a, "issuer", "host", "10.0.0.1:1, 10.0.0.2:1", NULL, 0), 0);
	cr_assert_eq(tsw_config_set(&b, "issuer", "host", "10.0.0.1:1,10.0.0.2:1", NULL, 0), 0);
	cr_assert(tsw_config_issuers_equal(&a, &b));
	/* the same hosts as two issuers: not the same list */
	tsw_config_defaults(&b);
	cr_assert_eq(tsw_config_set(&b, "issuer", "host", "10.0.0.1:1", NULL, 0), 0);
	cr_assert_eq(tsw_config_set(&b, "issuer", "host", "10.0.0.2:1", NULL, 0), 0);
	cr_assert_not(tsw_config_issuers_equal(&a, &b));
	/* another port on the second host */
	tsw_config_defaults(&b);
	cr_assert_eq(tsw_config_set(&b, "issuer", "host", "10.0.0.1:1,10.0.0.2:2", NULL, 0), 0);
	cr_assert_not(tsw_config_issuers_equal(&a, &b));
	/* a host added */
	tsw_config_defaults(&b);
	cr_assert_eq(tsw_config_set(&b, "issuer", "host", "10.0.0.1:1,10.0.0.2:1,10.0.0.3:1",
				    NULL, 0),
		     0);
	cr_assert_not(tsw_config_issuers_equal(&a, &b));
}

Test(config, unreadable_file_is_errno_line_0)
{
	struct tsw_config cfg;
	struct tsw_config_error err;

	tsw_config_defaults(&cfg);
	cr_assert_eq(tsw_config_load("/nonexistent/tokswitch.conf", &cfg, &err), -ENOENT);
	cr_assert_eq(err.line, 0);
}

struct check_case {
	const char *section, *key, *value;
	const char *reason;
};

static const struct check_case check_cases[] = {
    {"route", "4000", "1", "names issuer 1"},
    {"issuer", "reconnect_min_ms", "9000", "reconnect_min_ms above"},
    {"io", "recv_bufs", "100", "power of two"},
    {"limits", "max_pending", "1000", "power of two"},
    {"limits", "out_buf_bytes", "4096", "out_buf_bytes must hold two frames"},
    {"limits", "link_buf_bytes", "16384", "link_buf_bytes must hold two frames"},
    {"limits", "in_buf_bytes", "8192", "in_buf_bytes must hold a frame"},
    {"io", "recv_buf_bytes", "131072", "in_buf_bytes below io.recv_buf_bytes"},
    {"server", "vault", "", "server.vault"},
};

Test(config, cross_key_checks)
{
	for (size_t i = 0; i < sizeof(check_cases) / sizeof(check_cases[0]); i++) {
		const struct check_case *c = &check_cases[i];
		struct tsw_config cfg;
		char reason[TSW_CONFIG_REASON_MAX];

		tsw_config_defaults(&cfg);
		cr_assert_eq(tsw_config_set(&cfg, "server", "vault", "/v", NULL, 0), 0);
		cr_assert_eq(tsw_config_set(&cfg, "server", "key_file", "/k", NULL, 0), 0);
		cr_assert_eq(tsw_config_set(&cfg, "issuer", "host", "127.0.0.1:1", NULL, 0), 0);
		cr_assert_eq(tsw_config_check(&cfg, reason, sizeof(reason)), 0, "%s", reason);
		cr_assert_eq(
		    tsw_config_set(&cfg, c->section, c->key, c->value, reason, sizeof(reason)), 0,
		    "case %zu: %s", i, reason);
		cr_assert_eq(tsw_config_check(&cfg, reason, sizeof(reason)), -TSW_E_CONFIG,
			     "case %zu", i);
		cr_assert_not_null(strstr(reason, c->reason), "case %zu: %s", i, reason);
	}
}

/* limits.max_frame replaces both profiles' max_frame: above what a
 * profile's length header can say (9999 for ascii4) the configuration is
 * refused, naming the key, the profile and the bound; the shipped
 * profiles are checked as main.c checks them */
Test(config, max_frame_above_a_profile_header_refused_naming_key_and_profile)
{
	struct tsw_iso_profile p;
	struct tsw_config cfg;
	char reason[TSW_CONFIG_REASON_MAX];

	tsw_config_defaults(&cfg);
	cr_assert_eq(tsw_config_set(&cfg, "server", "issuer_profile", "ascii4", NULL, 0), 0);
	cr_assert_eq(tsw_iso_profile_load_named(NULL, cfg.issuer_profile, &p), 0);
	cr_assert_eq(tsw_config_check_frame(&cfg, "server.issuer_profile", cfg.issuer_profile,
					    tsw_iso_header_name(&p), tsw_iso_header_max(&p), reason,
					    sizeof(reason)),
		     0, "the default 8192 fits: %s", reason);
	cr_assert_eq(tsw_config_set(&cfg, "limits", "max_frame", "9999", NULL, 0), 0);
	cr_assert_eq(tsw_config_check_frame(&cfg, "server.issuer_profile", cfg.issuer_profile,
					    tsw_iso_header_name(&p), tsw_iso_header_max(&p), reason,
					    sizeof(reason)),
		     0, "9999 fits: %s", reason);
	cr_assert_eq(tsw_config_set(&cfg, "limits", "max_frame", "10000", NULL, 0), 0);
	cr_assert_eq(tsw_config_check_frame(&cfg, "server.issuer_profile", cfg.issuer_profile,
					    tsw_iso_header_name(&p), tsw_iso_header_max(&p), reason,
					    sizeof(reason)),
		     -TSW_E_CONFIG);
	cr_assert_not_null(strstr(reason, "limits.max_frame 10000"), "%s", reason);
	cr_assert_not_null(strstr(reason, "server.issuer_profile ascii4"), "%s", reason);
	cr_assert_not_null(strstr(reason, "at most 9999"), "%s", reason);
	/* the same value fits the default profile's 2-byte header */
	cr_assert_eq(tsw_iso_profile_load_named(NULL, cfg.profile, &p), 0);
	cr_assert_eq(tsw_config_check_frame(&cfg, "server.profile", cfg.profile,
					    tsw_iso_header_name(&p), tsw_iso_header_max(&p), reason,
					    sizeof(reason)),
		     0, "%s", reason);
	cr_assert_eq(tsw_config_set(&cfg, "limits", "max_frame", "65535", NULL, 0), 0);
	cr_assert_eq(tsw_config_check_frame(&cfg, "server.profile", cfg.profile,
					    tsw_iso_header_name(&p), tsw_iso_header_max(&p), reason,
					    sizeof(reason)),
		     0, "%s", reason);
}

/* hexbitmap has no length header ("none"): neither side of the switch can
 * frame a TCP stream by it, so either key naming it is refused, by name,
 * whatever max_frame is */
Test(config, profile_without_a_length_header_refused_naming_key_and_profile)
{
	static const char *const keys[] = {"profile", "issuer_profile"};
	struct tsw_iso_profile p;
	struct tsw_config cfg;
	char reason[TSW_CONFIG_REASON_MAX], want[64];

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		tsw_config_defaults(&cfg);
		cr_assert_eq(tsw_config_set(&cfg, "server", keys[i], "hexbitmap", NULL, 0), 0);
		cr_assert_eq(tsw_iso_profile_load_named(NULL, "hexbitmap", &p), 0);
		cr_assert_str_eq(tsw_iso_header_name(&p), "none");
		snprintf(want, sizeof(want), "server.%s", keys[i]);
		cr_assert_eq(tsw_config_check_frame(&cfg, want, "hexbitmap", tsw_iso_header_name(&p),
						    tsw_iso_header_max(&p), reason, sizeof(reason)),
			     -TSW_E_CONFIG, "%s", keys[i]);
		snprintf(want, sizeof(want), "server.%s hexbitmap has no length header", keys[i]);
		cr_assert_not_null(strstr(reason, want), "%s", reason);
	}
}

/* --- keys for every limit --------------------------------------------- */

Test(config, metrics_token_file_is_a_path_read_at_start_only)
{
	struct tsw_config cfg, loaded;
	char keys[TSW_CONFIG_REASON_MAX];

	tsw_config_defaults(&cfg);
	cr_assert_str_eq(cfg.metrics_token_file, "", "no token by default: /metrics open");
	cr_assert_eq(cfg.metrics_request_timeout_ms, 2000);
	loaded = cfg;
	cr_assert_eq(tsw_config_set(&loaded, "metrics", "token_file", "/etc/tokswitch/m.token",
				    NULL, 0),
		     0);
	cr_assert_str_eq(loaded.metrics_token_file, "/etc/tokswitch/m.token");
	cr_assert_eq(tsw_config_restart_only_changed(&cfg, &loaded, keys, sizeof(keys)), 1);
	cr_assert_str_eq(keys, "metrics.token_file", "a reload names it: a restart applies it");
}

Test(config, defaults_match_the_state_module)
{
	struct tsw_config cfg;

	tsw_config_defaults(&cfg);
	cr_expect_eq(cfg.state_queue_size, TSW_STATE_QUEUE_SIZE_DEFAULT);
	cr_expect_eq(cfg.state_max_tokens, TSW_STATE_MAX_TOKENS_DEFAULT);
	cr_expect_eq(cfg.state_max_reservations, TSW_STATE_MAX_RESERVATIONS_DEFAULT);
	cr_expect_eq(cfg.state_map_size_mb, TSW_STATE_MAP_SIZE_MB_DEFAULT);
	cr_expect_eq(cfg.state_saf_max_entries, TSW_STATE_SAF_MAX_ENTRIES_DEFAULT);
	cr_expect_eq(cfg.state_saf_lease_ms, TSW_STATE_SAF_LEASE_MS_DEFAULT);
	cr_expect_eq(cfg.state_reserve_kb, TSW_STATE_RESERVE_KB_DEFAULT);
	cr_expect_eq(cfg.state_retry_max_ms, TSW_STATE_RETRY_MAX_MS_DEFAULT);
	cr_expect_eq(TSW_CONFIG_STATE_WORKERS_MAX, TSW_STATE_WAKERS_MAX);
	cr_expect_eq(cfg.cryptogram_atc_window, TSW_STATE_ATC_WINDOW_DEFAULT);
	cr_expect_eq(cfg.hsm_max_keys, TSW_HSM_MAX_KEYS_DEFAULT);
	cr_expect_eq(cfg.hsm_icc_cache_entries, TSW_HSM_ICC_CACHE_DEFAULT);
}

#define FIELD(f) offsetof(struct tsw_config, f)

struct key_case {
	const char *section, *key, *value;
	bool ok;
	size_t off; /* the uint32_t field set when ok */
	uint32_t want;
};

static char lim_reservations[16], lim_reservations_1[16], lim_saf[16], lim_saf_1[16];

static const struct key_case key_cases[] = {
    {"limits", "in_buf_bytes", "131072", true, FIELD(in_buf_bytes), 131072},
    {"limits", "in_buf_bytes", "1023", false, 0, 0},
    {"limits", "in_buf_bytes", "67108865", false, 0, 0},
    {"limits", "link_buf_bytes", "2097152", true, FIELD(link_buf_bytes), 2097152},
    {"limits", "link_buf_bytes", "0", false, 0, 0},
    {"limits", "max_parked", "1", true, FIELD(max_parked), 1},
    {"limits", "max_parked", "0", false, 0, 0},
    {"limits", "max_parked", "4194305", false, 0, 0},
    {"state", "queue_size", "1024", true, FIELD(state_queue_size), 1024},
    {"state", "queue_size", "0", false, 0, 0},
    {"state", "reserve_kb", "256", true, FIELD(state_reserve_kb), 256},
    {"state", "retry_max_ms", "99", false, 0, 0},
    {"state", "retry_max_ms", "5000", true, FIELD(state_retry_max_ms), 5000},
    {"state", "max_tokens", "1000000", true, FIELD(state_max_tokens), 1000000},
    {"state", "max_tokens", "268435457", false, 0, 0},
    {"state", "max_reservations", lim_reservations, true, FIELD(state_max_reservations),
     TSW_STATE_MAX_RESERVATIONS_LIMIT},
    {"state", "max_reservations", lim_reservations_1, false, 0, 0},
    {"state", "map_size_mb", "4096", true, FIELD(state_map_size_mb), 4096},
    {"state", "map_size_mb", "0", false, 0, 0},
    {"state", "saf_max_entries", lim_saf, true, FIELD(state_saf_max_entries),
     TSW_STATE_SAF_MAX_ENTRIES_LIMIT},
    {"state", "saf_max_entries", lim_saf_1, false, 0, 0},
    {"state", "saf_max_entries", "-5", false, 0, 0},
    {"state", "saf_lease_ms", "60000", true, FIELD(state_saf_lease_ms), 60000},
    {"state", "saf_lease_ms", "0", false, 0, 0},
    {"state", "saf_lease_ms", "1e4", false, 0, 0},
    {"limits", "acq_reversal_memory", "16", true, FIELD(acq_reversal_memory), 16},
    {"limits", "acq_reversal_memory", "4194304", true, FIELD(acq_reversal_memory), 4194304},
    {"limits", "acq_reversal_memory", "8", false, 0, 0},
    {"limits", "acq_reversal_memory", "8388608", false, 0, 0},
    {"limits", "acq_reversal_memory", "1000", false, 0, 0},
    {"limits", "acq_reversal_memory", "0", false, 0, 0},
    {"limits", "expired_stan_memory", "65536", true, FIELD(expired_stan_memory), 65536},
    {"limits", "expired_stan_memory", "15", false, 0, 0},
    {"limits", "expired_stan_memory", "4097", false, 0, 0},
    {"limits", "expired_stan_memory", "8388608", false, 0, 0},
    {"metrics", "request_timeout_ms", "500", true, FIELD(metrics_request_timeout_ms), 500},
    {"metrics", "request_timeout_ms", "0", false, 0, 0},
    {"metrics", "request_timeout_ms", "x", false, 0, 0},
    /* 0 is no interval: an idle link would be echoed at every tick */
    {"issuer", "echo_interval_ms", "1", true, FIELD(echo_interval_ms), 1},
    {"issuer", "echo_interval_ms", "0", false, 0, 0},
};

Test(config, limit_keys_parsed_and_refused_out_of_range)
{
	/* the state module's ceilings are accepted, one above them refused */
	snprintf(lim_reservations, sizeof(lim_reservations), "%u",
		 TSW_STATE_MAX_RESERVATIONS_LIMIT);
	snprintf(lim_reservations_1, sizeof(lim_reservations_1), "%u",
		 TSW_STATE_MAX_RESERVATIONS_LIMIT + 1);
	snprintf(lim_saf, sizeof(lim_saf), "%u", TSW_STATE_SAF_MAX_ENTRIES_LIMIT);
	snprintf(lim_saf_1, sizeof(lim_saf_1), "%u", TSW_STATE_SAF_MAX_ENTRIES_LIMIT + 1);
	for (size_t i = 0; i < sizeof(key_cases) / sizeof(key_cases[0]); i++) {
		const struct key_case *c = &key_cases[i];
		struct tsw_config cfg, before;
		char reason[TSW_CONFIG_REASON_MAX] = "";
		int r;

		tsw_config_defaults(&cfg);
		before = cfg;
		r = tsw_config_set(&cfg, c->section, c->key, c->value, reason, sizeof(reason));
		if (c->ok) {
			uint32_t got;

			cr_assert_eq(r, 0, "case %zu: %s", i, reason);
			memcpy(&got, (const char *)&cfg + c->off, sizeof(got));
			cr_expect_eq(got, c->want, "case %zu: %u", i, got);
		} else {
			char name[64];

			cr_assert_eq(r, -TSW_E_CONFIG, "case %zu accepted", i);
			snprintf(name, sizeof(name), "%s.%s must be an integer in", c->section,
				 c->key);
			cr_expect_not_null(strstr(reason, name), "case %zu: %s", i, reason);
			cr_expect_eq(memcmp(&cfg, &before, sizeof(cfg)), 0, "case %zu changed cfg",
				     i);
		}
	}
}

/* the engine tables' keys: the slot is a masked hash, so a value that is
 * not a power of two is refused, naming the key and saying why */
Test(config, table_memory_keys_must_be_powers_of_two)
{
	static const char *const keys[] = {"acq_reversal_memory", "expired_stan_memory"};

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		struct tsw_config cfg;
		char reason[TSW_CONFIG_REASON_MAX] = "", name[64];

		tsw_config_defaults(&cfg);
		snprintf(name, sizeof(name), "limits.%s", keys[i]);
		cr_assert_eq(tsw_config_set(&cfg, "limits", keys[i], "24", reason, sizeof(reason)),
			     -TSW_E_CONFIG);
		cr_expect_not_null(strstr(reason, name), "%s", reason);
		cr_expect_not_null(strstr(reason, "power of two"), "%s", reason);
		/* a value set some other way is caught by the cross-key check */
		tsw_config_defaults(&cfg);
		cr_assert_eq(tsw_config_set(&cfg, "server", "vault", "/v", NULL, 0), 0);
		cr_assert_eq(tsw_config_set(&cfg, "server", "key_file", "/k", NULL, 0), 0);
		cr_assert_eq(tsw_config_check(&cfg, NULL, 0), 0);
		if (i == 0)
			cfg.acq_reversal_memory = 48;
		else
			cfg.expired_stan_memory = 48;
		cr_assert_eq(tsw_config_check(&cfg, reason, sizeof(reason)), -TSW_E_CONFIG);
		cr_expect_not_null(strstr(reason, name), "%s", reason);
	}
}

Test(config, engine_table_defaults_are_the_old_constants)
{
	struct tsw_config cfg;

	tsw_config_defaults(&cfg);
	cr_expect_eq(cfg.acq_reversal_memory, 8192);
	cr_expect_eq(cfg.expired_stan_memory, 4096);
	cr_expect_eq(cfg.reconnect_min_ms, 100);
	cr_expect_eq(cfg.reconnect_max_ms, 5000);
}

/* a reload names the keys it cannot apply (sizes, tables, addresses,
 * paths) and not the ones it applies */
Test(config, reload_names_the_restart_only_keys_that_changed)
{
	struct tsw_config run, next;
	char buf[TSW_CONFIG_REASON_MAX], small[24];

	tsw_config_defaults(&run);
	next = run;
	cr_assert_eq(tsw_config_restart_only_changed(&run, &next, buf, sizeof(buf)), 0);
	cr_assert_str_eq(buf, "");
	/* live keys only */
	cr_assert_eq(tsw_config_set(&next, "issuer", "timeout_ms", "1500", NULL, 0), 0);
	cr_assert_eq(tsw_config_set(&next, "issuer", "reconnect_max_ms", "9000", NULL, 0), 0);
	cr_assert_eq(tsw_config_set(&next, "saf", "poll_ms", "100", NULL, 0), 0);
	cr_assert_eq(tsw_config_set(&next, "route", "4000", "0", NULL, 0), 0);
	cr_assert_eq(tsw_config_set(&next, "server", "log_level", "debug", NULL, 0), 0);
	cr_assert_eq(tsw_config_restart_only_changed(&run, &next, buf, sizeof(buf)), 0, "%s", buf);
	/* restart-only keys */
	cr_assert_eq(tsw_config_set(&next, "limits", "acq_reversal_memory", "1024", NULL, 0), 0);
	cr_assert_eq(tsw_config_set(&next, "limits", "expired_stan_memory", "1024", NULL, 0), 0);
	cr_assert_eq(tsw_config_set(&next, "limits", "max_pending", "1024", NULL, 0), 0);
	cr_assert_eq(tsw_config_set(&next, "server", "listen", "127.0.0.1:1", NULL, 0), 0);
	cr_assert_eq(tsw_config_restart_only_changed(&run, &next, buf, sizeof(buf)), 4);
	cr_assert_str_eq(buf, "limits.max_pending,limits.acq_reversal_memory,"
			      "limits.expired_stan_memory,server.listen");
	/* a short buffer: cut with "...", terminated, same count; NULL is fine */
	memset(small, 'x', sizeof(small));
	cr_assert_eq(tsw_config_restart_only_changed(&run, &next, small, sizeof(small)), 4);
	cr_assert_lt(strlen(small), sizeof(small));
	cr_assert_not_null(strstr(small, "..."), "%s", small);
	cr_assert_eq(strncmp(small, "limits.max_pending", 18), 0, "%s", small);
	cr_assert_eq(tsw_config_restart_only_changed(&run, &next, NULL, 0), 4);
}

/* Sets key to a value other than its default; false when no candidate
 * is taken. */
static bool set_other_value(struct tsw_config *cfg, const char *section, const char *key)
{
	static const char *const candidates[] = {
	    "1",  "2",	   "17",   "64",   "1024", "2048", "true",	  "false",
	    "uv", "debug", "json", "chip", "/x",   "xx",   "127.0.0.2:1",
	};
	struct tsw_config before = *cfg;

	for (size_t i = 0; i < sizeof(candidates) / sizeof(candidates[0]); i++) {
		if (tsw_config_set(cfg, section, key, candidates[i], NULL, 0) == 0 &&
		    memcmp(cfg, &before, sizeof(before)) != 0)
			return true;
		*cfg = before;
	}
	return false;
}

/* every key is either applied by a reload (tsw_config_apply_reload) or
 * named as needing a restart, never both, never neither */
Test(config, a_reload_applies_every_key_it_does_not_name_for_a_restart)
{
	struct tsw_config run, next, applied;
	const char *section, *key;
	unsigned live = 0, restart = 0;

	tsw_config_defaults(&run);
	for (size_t k = 0; (key = tsw_config_key_name(k, &section)); k++) {
		unsigned named;

		next = run;
		cr_assert(set_other_value(&next, section, key), "no other value for %s.%s", section,
			  key);
		named = tsw_config_restart_only_changed(&run, &next, NULL, 0);
		applied = run;
		tsw_config_apply_reload(&applied, &next);
		if (named) {
			cr_expect_eq(memcmp(&applied, &run, sizeof(run)), 0,
				     "%s.%s is named for a restart and applied too", section, key);
			restart++;
		} else {
			cr_expect_eq(memcmp(&applied, &next, sizeof(next)), 0,
				     "%s.%s is neither applied nor named for a restart", section,
				     key);
			live++;
		}
	}
	/* the [route] table is applied too */
	next = run;
	cr_assert_eq(tsw_config_set(&next, "route", "4000", "0", NULL, 0), 0);
	applied = run;
	tsw_config_apply_reload(&applied, &next);
	cr_expect_eq(memcmp(&applied, &next, sizeof(next)), 0, "routes applied");
	cr_expect_eq(tsw_config_restart_only_changed(&run, &next, NULL, 0), 0);
	cr_expect_gt(live, 10);
	cr_expect_gt(restart, 10);
}

/* [standin]: true/false switches, a list of presentment modes in the
 * order of enum tsw_pos_mode, bounded numbers; every key but the table
 * size is applied by a reload */
Test(config, standin_keys_parse_and_reload)
{
	static const struct {
		const char *name;
		enum tsw_pos_mode mode;
	} modes[] = {
	    {"contactless", TSW_POS_CONTACTLESS}, {"chip", TSW_POS_CHIP},
	    {"ecommerce", TSW_POS_ECOMMERCE},	  {"cof", TSW_POS_COF},
	    {"manual", TSW_POS_MANUAL},		  {"magstripe", TSW_POS_MAGSTRIPE},
	};
	static const struct {
		const char *key, *value, *reason;
	} bad[] = {
	    {"enabled", "yes please", "standin.enabled must be true or false"},
	    {"on_timeout", "", "standin.on_timeout must be true or false"},
	    {"modes", "contactless, nfc", "standin.modes must list"},
	    {"min_assurance", "100", "standin.min_assurance must be an integer in 0..99"},
	    {"window_s", "0", "standin.window_s must be an integer"},
	    {"max_tokens", "16777217", "standin.max_tokens must be an integer in 1..16777216"},
	    {"max_amount", "-1", "standin.max_amount must be an integer"},
	};
	struct tsw_config cfg, run;
	char reason[TSW_CONFIG_REASON_MAX], buf[TSW_CONFIG_REASON_MAX];

	cr_assert_eq(sizeof(modes) / sizeof(modes[0]), TSW_POS_MODE_MAX);
	cr_assert_eq(TSW_CONFIG_POS_MODES, TSW_POS_MODE_MAX);
	tsw_config_defaults(&cfg);
	cr_expect_not(cfg.standin_enabled, "off by default");
	cr_expect_not(cfg.standin_on_timeout);
	cr_expect_eq(cfg.standin_max_amount, 0);
	cr_expect_eq(cfg.standin_modes, 1u << TSW_POS_CONTACTLESS | 1u << TSW_POS_CHIP);
	cr_expect_eq(cfg.standin_max_amount_per_token, 0, "0: max_amount");
	cr_expect_eq(cfg.standin_window_s, 86400);
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		cr_assert_eq(
		    tsw_config_set(&cfg, "standin", "modes", modes[i].name, reason, sizeof(reason)),
		    0, "%s: %s", modes[i].name, reason);
		cr_expect_eq(cfg.standin_modes, 1u << modes[i].mode, "%s", modes[i].name);
	}
	cr_assert_eq(tsw_config_set(&cfg, "standin", "modes", "cof,ecommerce  manual", NULL, 0), 0);
	cr_expect_eq(cfg.standin_modes,
		     1u << TSW_POS_COF | 1u << TSW_POS_ECOMMERCE | 1u << TSW_POS_MANUAL);
	cr_assert_eq(tsw_config_set(&cfg, "standin", "modes", "", NULL, 0), 0);
	cr_expect_eq(cfg.standin_modes, 0, "empty: no mode");
	cr_assert_eq(tsw_config_set(&cfg, "standin", "enabled", "true", NULL, 0), 0);
	cr_expect(cfg.standin_enabled);
	cr_assert_eq(tsw_config_set(&cfg, "standin", "enabled", "false", NULL, 0), 0);
	cr_expect_not(cfg.standin_enabled);
	cr_assert_eq(tsw_config_set(&cfg, "standin", "max_amount", "4294967295", NULL, 0), 0);
	cr_expect_eq(cfg.standin_max_amount, 4294967295u);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct tsw_config before;

		tsw_config_defaults(&cfg);
		before = cfg;
		cr_assert_eq(tsw_config_set(&cfg, "standin", bad[i].key, bad[i].value, reason,
					    sizeof(reason)),
			     -TSW_E_CONFIG, "%s = %s accepted", bad[i].key, bad[i].value);
		cr_expect_not_null(strstr(reason, bad[i].reason), "%s", reason);
		cr_expect_eq(memcmp(&cfg, &before, sizeof(cfg)), 0, "%s changed cfg", bad[i].key);
	}

	tsw_config_defaults(&run);
	cfg = run;
	cr_assert_eq(tsw_config_set(&cfg, "standin", "enabled", "true", NULL, 0), 0);
	cr_assert_eq(tsw_config_set(&cfg, "standin", "on_timeout", "true", NULL, 0), 0);
	cr_assert_eq(tsw_config_set(&cfg, "standin", "max_amount", "5000", NULL, 0), 0);
	cr_assert_eq(tsw_config_set(&cfg, "standin", "modes", "chip", NULL, 0), 0);
	cr_assert_eq(tsw_config_set(&cfg, "standin", "min_assurance", "3", NULL, 0), 0);
	cr_assert_eq(tsw_config_set(&cfg, "standin", "max_amount_per_token", "9", NULL, 0), 0);
	cr_assert_eq(tsw_config_set(&cfg, "standin", "window_s", "60", NULL, 0), 0);
	cr_assert_eq(tsw_config_restart_only_changed(&run, &cfg, buf, sizeof(buf)), 0, "%s", buf);
	cr_assert_eq(tsw_config_set(&cfg, "standin", "max_tokens", "8", NULL, 0), 0);
	cr_assert_eq(tsw_config_restart_only_changed(&run, &cfg, buf, sizeof(buf)), 1);
	cr_assert_str_eq(buf, "standin.max_tokens");
}

static void checked_base(struct tsw_config *cfg)
{
	tsw_config_defaults(cfg);
	cr_assert_eq(tsw_config_set(cfg, "server", "vault", "/v", NULL, 0), 0);
	cr_assert_eq(tsw_config_set(cfg, "server", "key_file", "/k", NULL, 0), 0);
}

Test(config, workers_above_the_state_wakers_refused_with_a_state_dir)
{
	struct tsw_config cfg;
	char reason[TSW_CONFIG_REASON_MAX];

	checked_base(&cfg);
	cr_assert_eq(tsw_config_set(&cfg, "server", "workers", "200", NULL, 0), 0);
	cr_assert_eq(tsw_config_check(&cfg, reason, sizeof(reason)), 0,
		     "without --state 200 workers are fine: %s", reason);
	cr_assert_eq(tsw_config_set(&cfg, "server", "state", "/s", NULL, 0), 0);
	cr_assert_eq(tsw_config_check(&cfg, reason, sizeof(reason)), -TSW_E_CONFIG);
	cr_expect_not_null(strstr(reason, "server.workers above 64 with a state directory"), "%s",
			   reason);
	cr_assert_eq(tsw_config_set(&cfg, "server", "workers", "65", NULL, 0), 0);
	cr_assert_eq(tsw_config_check(&cfg, reason, sizeof(reason)), -TSW_E_CONFIG);
	cr_assert_eq(tsw_config_set(&cfg, "server", "workers", "64", NULL, 0), 0);
	cr_assert_eq(tsw_config_check(&cfg, reason, sizeof(reason)), 0, "%s", reason);
	cr_assert_eq(tsw_config_set(&cfg, "server", "workers", "0", NULL, 0), 0);
	cr_assert_eq(tsw_config_check(&cfg, reason, sizeof(reason)), 0,
		     "0 (one per CPU) is capped by main, not refused: %s", reason);
}

Test(config, saf_lease_must_outlast_the_issuer_timeout_with_a_state_dir)
{
	struct tsw_config cfg;
	char reason[TSW_CONFIG_REASON_MAX];

	checked_base(&cfg);
	cr_assert_eq(tsw_config_set(&cfg, "issuer", "timeout_ms", "30000", NULL, 0), 0);
	cr_assert_eq(tsw_config_check(&cfg, reason, sizeof(reason)), 0, "no state, no lease: %s",
		     reason);
	cr_assert_eq(tsw_config_set(&cfg, "server", "state", "/s", NULL, 0), 0);
	cr_assert_eq(tsw_config_check(&cfg, reason, sizeof(reason)), -TSW_E_CONFIG);
	cr_expect_not_null(strstr(reason, "state.saf_lease_ms must be above issuer.timeout_ms"),
			   "%s", reason);
	cr_assert_eq(tsw_config_set(&cfg, "state", "saf_lease_ms", "30001", NULL, 0), 0);
	cr_assert_eq(tsw_config_check(&cfg, reason, sizeof(reason)), 0, "%s", reason);
}

struct hp_case {
	const char *in;
	int rc;
	const char *host;
	uint16_t port;
};

static const struct hp_case hp_cases[] = {
    {"127.0.0.1:0", 0, "127.0.0.1", 0}, {"localhost:8583", 0, "localhost", 8583},
    {"[::1]:65535", 0, "::1", 65535},	{"127.0.0.1", -TSW_E_CONFIG, NULL, 0},
    {":80", -TSW_E_CONFIG, NULL, 0},	{"h:65536", -TSW_E_CONFIG, NULL, 0},
    {"h:", -TSW_E_CONFIG, NULL, 0},	{"[::1]80", -TSW_E_CONFIG, NULL, 0},
    /* a blank or a comma is never part of a host: two hosts without the comma */
    {"10.0.0.1:1 10.0.0.2:1", -TSW_E_CONFIG, NULL, 0},
    {"a,b:1", -TSW_E_CONFIG, NULL, 0},
};

Test(config, hostport_parse)
{
	for (size_t i = 0; i < sizeof(hp_cases) / sizeof(hp_cases[0]); i++) {
		struct tsw_hostport hp = {"untouched", 7};

		cr_assert_eq(tsw_hostport_parse(hp_cases[i].in, &hp), hp_cases[i].rc, "case %zu",
			     i);
		if (hp_cases[i].rc == 0) {
			cr_assert_str_eq(hp.host, hp_cases[i].host);
			cr_assert_eq(hp.port, hp_cases[i].port);
		} else {
			cr_assert_str_eq(hp.host, "untouched", "case %zu", i);
		}
	}
}

/* --- metrics text ------------------------------------------------------ */

static bool ready_value;

static bool ready_hook(void *ctx)
{
	(void)ctx;
	return ready_value;
}

static struct tsw_metrics_shard shards[2];
static struct tsw_metrics_shard *shard_ptrs[2] = {&shards[0], &shards[1]};
/* issuer 0 with two hosts, issuer 1 with one */
static const struct tsw_config_host links[3] = {
    {.addr = {.host = "10.0.0.1", .port = 9100}, .issuer = 0},
    {.addr = {.host = "10.0.0.2", .port = 9100}, .issuer = 0},
    {.addr = {.host = "::1", .port = 9200}, .issuer = 1},
};
static const struct tsw_ctl_source src = {
    .shards = shard_ptrs,
    .n_shards = 2,
    .links = links,
    .n_links = 3,
    .ready = ready_hook,
};

static void fill_shards(void)
{
	memset(shards, 0, sizeof(shards));
	shards[0].requests[TSW_MTI_0100][tsw_metrics_rc_index("00")] = 3;
	shards[1].requests[TSW_MTI_0100][tsw_metrics_rc_index("00")] = 4;
	shards[1].requests[TSW_MTI_0200][tsw_metrics_rc_index("91")] = 2;
	shards[0].declines[TSW_AUTHZ_TOKEN_SUSPENDED] = 5;
	tsw_hist_add(&shards[0].issuer_rtt, 10);
	tsw_hist_add(&shards[1].issuer_rtt, 10);
	tsw_hist_add(&shards[1].issuer_rtt, 5000000);
	tsw_hist_add_ns(&shards[0].request_forward, 3000);
	tsw_hist_add_ns(&shards[1].request_forward, 4000);
	tsw_hist_add_ns(&shards[1].answer_delivery, 700);
	shards[0].conns_open = 1;
	shards[1].conns_open = 2;
	shards[0].link_up[0] = 3;
	shards[1].link_up[0] = 1;
	shards[0].link_up[2] = 3;
	shards[1].link_up[2] = 3;
	shards[1].link_reconnects[1] = 4;
}

Test(metrics_text, sums_every_shard_with_labels)
{
	static const char *const want[] = {
	    "tokswitch_requests_total{mti=\"0100\",rc=\"00\"} 7\n",
	    "tokswitch_requests_total{mti=\"0200\",rc=\"91\"} 2\n",
	    "tokswitch_declines_total{reason=\"TOKEN_SUSPENDED\"} 5\n",
	    "tokswitch_declines_total{reason=\"TOKEN_UNKNOWN\"} 0\n",
	    "tokswitch_issuer_rtt_seconds_bucket{le=\"+Inf\"} 3\n",
	    "tokswitch_issuer_rtt_seconds_count 3\n",
	    "tokswitch_issuer_rtt_seconds_sum 5.000020\n",
	    "# TYPE tokswitch_issuer_rtt_seconds histogram\n",
	    "# TYPE tokswitch_request_forward_seconds histogram\n",
	    "tokswitch_request_forward_seconds_bucket{le=\"2e-06\"} 0\n",
	    "tokswitch_request_forward_seconds_bucket{le=\"5e-06\"} 2\n",
	    "tokswitch_request_forward_seconds_count 2\n",
	    "tokswitch_request_forward_seconds_sum 0.000007\n",
	    "# TYPE tokswitch_answer_delivery_seconds histogram\n",
	    "tokswitch_answer_delivery_seconds_bucket{le=\"5e-07\"} 0\n",
	    "tokswitch_answer_delivery_seconds_bucket{le=\"1e-06\"} 1\n",
	    "tokswitch_answer_delivery_seconds_count 1\n",
	    "tokswitch_connections_open 3\n",
	    "tokswitch_issuer_links_signed_on{link=\"0\",issuer=\"0\",host=\"10.0.0.1:9100\"} 1\n",
	    "tokswitch_issuer_links_signed_on{link=\"1\",issuer=\"0\",host=\"10.0.0.2:9100\"} 0\n",
	    "tokswitch_issuer_links_signed_on{link=\"2\",issuer=\"1\",host=\"[::1]:9200\"} 2\n",
	    "tokswitch_issuer_link_reconnects_total{link=\"1\",issuer=\"0\",host=\"10.0.0.2:9100\"}"
	    " 4\n",
	    "tokswitch_workers 2\n",
	    "tokswitch_ready 0\n",
	};
	char *text;
	size_t len;

	fill_shards();
	ready_value = false;
	cr_assert_eq(tsw_ctl_render_metrics(&src, &text, &len), 0);
	cr_assert_eq(strlen(text), len);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		cr_assert_not_null(strstr(text, want[i]), "missing: %s", want[i]);
	cr_assert_null(strstr(text, "rc=\"14\""), "zero request series are left out");
	free(text);
}

Test(metrics_text, histogram_buckets_are_cumulative)
{
	char *text, *p;
	size_t len;
	unsigned long long last = 0, v;

	fill_shards();
	cr_assert_eq(tsw_ctl_render_metrics(&src, &text, &len), 0);
	p = text;
	while ((p = strstr(p, "tokswitch_issuer_rtt_seconds_bucket{")) != NULL) {
		p = strchr(p, '}');
		v = strtoull(p + 2, &p, 10);
		cr_assert_geq(v, last);
		last = v;
	}
	cr_assert_eq(last, 3);
	free(text);
}

Test(metrics_text, without_a_state_only_says_so)
{
	char *text;
	size_t len;

	fill_shards();
	cr_assert_eq(tsw_ctl_render_metrics(&src, &text, &len), 0);
	cr_assert_not_null(strstr(text, "\ntokswitch_state_open 0\n"));
	cr_assert_null(strstr(text, "tokswitch_state_queue_full_total"));
	free(text);
}

#define STATE_TOKEN "4895370000000015"

/* value of the unlabelled series name in text, or -1 when absent */
static long long series(const char *text, const char *name)
{
	char pat[128];
	const char *p;

	snprintf(pat, sizeof(pat), "\n%s ", name);
	p = strstr(text, pat);
	return p ? strtoll(p + strlen(pat), NULL, 10) : -1;
}

/* every engine table has a capacity gauge and an eviction counter,
 * summed over the workers */
Test(metrics_text, engine_table_capacities_and_evictions_are_exported)
{
	static const struct {
		const char *name, *type;
		size_t off;
		uint64_t a, b;
	} cases[] = {
	    {"tokswitch_acq_reversals_capacity", "gauge",
	     offsetof(struct tsw_metrics_shard, acq_reversals_capacity), 8192, 8192},
	    {"tokswitch_acq_reversals_evicted_total", "counter",
	     offsetof(struct tsw_metrics_shard, acq_reversals_evicted), 2, 3},
	    {"tokswitch_expired_stans_capacity", "gauge",
	     offsetof(struct tsw_metrics_shard, expired_stans_capacity), 4096, 4096},
	    {"tokswitch_expired_stans_evicted_total", "counter",
	     offsetof(struct tsw_metrics_shard, expired_stans_evicted), 0, 7},
	};
	char *text, type[128];
	size_t len;

	fill_shards();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memcpy((char *)&shards[0] + cases[i].off, &cases[i].a, sizeof(uint64_t));
		memcpy((char *)&shards[1] + cases[i].off, &cases[i].b, sizeof(uint64_t));
	}
	cr_assert_eq(tsw_ctl_render_metrics(&src, &text, &len), 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(type, sizeof(type), "# TYPE %s %s\n", cases[i].name, cases[i].type);
		cr_expect_not_null(strstr(text, type), "missing: %s", type);
		cr_expect_eq(series(text, cases[i].name), (long long)(cases[i].a + cases[i].b),
			     "%s", cases[i].name);
	}
	free(text);
}

/* every stand-in result has its series (a fixed label set, zeros
 * included), summed over the workers; a stand-in is not a decline */
Test(metrics_text, standin_results_and_advices_are_exported)
{
	char *text, want[128];
	size_t len;

	fill_shards();
	for (unsigned r = 0; r < TSW_STANDIN_RESULT_MAX; r++) {
		shards[0].standin[r] = r;
		shards[1].standin[r] = 10 * r;
	}
	shards[0].standin_advices_queued = 2;
	shards[1].standin_advices_queued = 3;
	shards[1].standin_exposure_full = 4;
	shards[0].declines[TSW_AUTHZ_STANDIN] = 9;
	cr_assert_eq(tsw_ctl_render_metrics(&src, &text, &len), 0);
	cr_expect_not_null(strstr(text, "# TYPE tokswitch_standin_total counter\n"));
	for (unsigned r = 0; r < TSW_STANDIN_RESULT_MAX; r++) {
		snprintf(want, sizeof(want), "tokswitch_standin_total{result=\"%s\"} %u\n",
			 tsw_metrics_standin_name(r), 11 * r);
		cr_expect_not_null(strstr(text, want), "missing: %s", want);
	}
	cr_expect_str_eq(tsw_metrics_standin_name(TSW_STANDIN_APPROVED), "approved");
	cr_expect_str_eq(tsw_metrics_standin_name(TSW_STANDIN_DECLINED_UNQUEUED),
			 "declined_unqueued");
	cr_expect_null(tsw_metrics_standin_name(TSW_STANDIN_RESULT_MAX));
	cr_expect_eq(series(text, "tokswitch_standin_advices_queued_total"), 5);
	cr_expect_eq(series(text, "tokswitch_standin_exposure_full_total"), 4);
	cr_expect_null(strstr(text, "reason=\"STANDIN\""), "a stand-in is not a decline");
	cr_expect_null(strstr(text, "reason=\"FORWARD\""));
	free(text);
}

Test(metrics_text, state_counters_and_limits_are_exported, .init = mk_tmp, .fini = rm_tmp)
{
	static const char *const gauges[] = {
	    "tokswitch_state_queue_length",    "tokswitch_state_tokens",
	    "tokswitch_state_reservations",    "tokswitch_state_saf_depth",
	    "tokswitch_state_batch_max",       "tokswitch_state_saf_loaded",
	    "tokswitch_state_tokens_capacity", "tokswitch_state_writer_degraded",
	    "tokswitch_state_writer_held",
	};
	static const char *const counters[] = {
	    "tokswitch_state_queue_full_total",
	    "tokswitch_state_table_full_total",
	    "tokswitch_state_reserve_ok_total",
	    "tokswitch_state_reserve_exhausted_total",
	    "tokswitch_state_uses_committed_total",
	    "tokswitch_state_releases_total",
	    "tokswitch_state_release_unqueued_total",
	    "tokswitch_state_atc_ok_total",
	    "tokswitch_state_atc_replayed_total",
	    "tokswitch_state_batches_total",
	    "tokswitch_state_batch_ops_total",
	    "tokswitch_state_commit_errors_total",
	    "tokswitch_state_saf_puts_total",
	    "tokswitch_state_saf_acks_total",
	    "tokswitch_state_saf_retries_total",
	    "tokswitch_state_saf_claims_total",
	    "tokswitch_state_saf_lease_expired_total",
	    "tokswitch_state_saf_too_big_total",
	    "tokswitch_state_uses_returned_total",
	    "tokswitch_state_saf_refused_total",
	    "tokswitch_state_reserve_refused_total",
	    "tokswitch_state_writer_degradations_total",
	    "tokswitch_state_writer_freeing_commits_total",
	};
	struct tsw_state_config sc = {
	    .queue_size = 100, .max_reservations = 2, .saf_max_entries = 1};
	struct tsw_ctl_source with_state = src;
	struct tsw_state *st;
	uint64_t t1, t2, t3, saf_id;
	uint8_t msg[16] = {0};
	char *text, type[160];
	size_t len;

	cr_assert_eq(tsw_state_open(tmpdir, &sc, &st), 0);
	/* hit two limits: the ticket table (2) and the SAF queue (1) */
	cr_assert_eq(tsw_state_reserve(st, STATE_TOKEN, 16, 10, &t1), 0);
	cr_assert_eq(tsw_state_reserve(st, STATE_TOKEN, 16, 10, &t2), 0);
	cr_assert_eq(tsw_state_reserve(st, STATE_TOKEN, 16, 10, &t3), -EAGAIN);
	cr_assert_eq(tsw_state_saf_put(st, 0, msg, sizeof(msg), &saf_id), 0);
	cr_assert_eq(tsw_state_saf_put(st, 0, msg, sizeof(msg), &saf_id), -EAGAIN);

	fill_shards();
	with_state.state = st;
	cr_assert_eq(tsw_ctl_render_metrics(&with_state, &text, &len), 0);
	cr_expect_eq(series(text, "tokswitch_state_open"), 1);
	cr_expect_eq(series(text, "tokswitch_state_tickets_full_total"), 1);
	cr_expect_eq(series(text, "tokswitch_state_reservations_capacity"), 2);
	cr_expect_eq(series(text, "tokswitch_state_saf_full_total"), 1);
	cr_expect_eq(series(text, "tokswitch_state_saf_capacity"), 1);
	cr_expect_eq(series(text, "tokswitch_state_queue_capacity"), 100);
	cr_expect_eq(series(text, "tokswitch_state_reserve_ok_total"), 2);
	cr_expect_eq(series(text, "tokswitch_state_reservations"), 2);
	cr_expect_eq(series(text, "tokswitch_state_tokens"), 1);
	cr_expect_eq(series(text, "tokswitch_state_writer_degraded"), 0, "a healthy writer");
	cr_expect_geq(series(text, "tokswitch_state_saf_depth"), 1);
	cr_expect_not_null(strstr(text, "\ntokswitch_state_commit_seconds_total "));
	cr_expect_not_null(
	    strstr(text, "\n# TYPE tokswitch_state_commit_duration_seconds histogram\n"));
	cr_expect_not_null(
	    strstr(text, "\ntokswitch_state_commit_duration_seconds_bucket{le=\"+Inf\"} "));
	cr_expect_not_null(strstr(text, "\ntokswitch_state_commit_duration_seconds_count "));
	for (size_t i = 0; i < sizeof(gauges) / sizeof(gauges[0]); i++) {
		snprintf(type, sizeof(type), "# TYPE %s gauge\n", gauges[i]);
		cr_expect_not_null(strstr(text, type), "missing: %s", type);
		cr_expect_geq(series(text, gauges[i]), 0, "%s", gauges[i]);
	}
	for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++) {
		snprintf(type, sizeof(type), "# TYPE %s counter\n", counters[i]);
		cr_expect_not_null(strstr(text, type), "missing: %s", type);
		cr_expect_geq(series(text, counters[i]), 0, "%s", counters[i]);
	}
	cr_expect_null(strstr(text, STATE_TOKEN), "a token in /metrics");
	cr_expect_null(strstr(text, "489537"), "part of a token in /metrics");
	free(text);
	tsw_state_close(st);
}

/* a host label is a configured name: a quote or a backslash in it is
 * escaped (Prometheus text format), so it cannot end the label early */
Test(metrics_text, link_host_label_is_escaped)
{
	static const struct tsw_config_host odd[1] = {
	    {.addr = {.host = "a\"b\\c", .port = 1}, .issuer = 0},
	};
	struct tsw_ctl_source s = src;
	char *text;
	size_t len;

	fill_shards();
	s.links = odd;
	s.n_links = 1;
	cr_assert_eq(tsw_ctl_render_metrics(&s, &text, &len), 0);
	cr_expect_not_null(strstr(text, "tokswitch_issuer_links_signed_on{link=\"0\",issuer=\"0\","
					"host=\"a\\\"b\\\\c:1\"} 1\n"),
			   "%s", strstr(text, "tokswitch_issuer_links_signed_on{"));
	free(text);
}

Test(metrics_text, build_info_names_the_version_and_the_running_backend)
{
	struct tsw_ctl_source s = src;
	char *text;
	size_t len;

	fill_shards();
	s.version = "1.2.3";
	s.io_backend = "uring";
	cr_assert_eq(tsw_ctl_render_metrics(&s, &text, &len), 0);
	cr_expect_not_null(strstr(text, "# TYPE tokswitch_build_info gauge\n"));
	cr_expect_not_null(
	    strstr(text, "\ntokswitch_build_info{version=\"1.2.3\",io_backend=\"uring\"} 1\n"));
	free(text);
	/* a source that does not say (a test's) is still one series */
	cr_assert_eq(tsw_ctl_render_metrics(&src, &text, &len), 0);
	cr_expect_not_null(
	    strstr(text, "\ntokswitch_build_info{version=\"unknown\",io_backend=\"unknown\"} 1\n"));
	free(text);
}

/* --- HTTP endpoint ------------------------------------------------------ */

struct server {
	uv_loop_t loop;
	uv_async_t stop;
	struct tsw_ctl *ctl;
	pthread_t thread;
};

static void on_stop(uv_async_t *a)
{
	struct server *s = a->data;

	tsw_ctl_stop(s->ctl);
	uv_close((uv_handle_t *)a, NULL);
}

static void *loop_main(void *arg)
{
	struct server *s = arg;

	uv_run(&s->loop, UV_RUN_DEFAULT);
	return NULL;
}

static uint16_t start_source(struct server *s, const struct tsw_ctl_params *p,
			     const struct tsw_ctl_source *source)
{
	cr_assert_eq(uv_loop_init(&s->loop), 0);
	cr_assert_eq(uv_async_init(&s->loop, &s->stop, on_stop), 0);
	s->stop.data = s;
	cr_assert_eq(tsw_ctl_start(&s->loop, p, source, &s->ctl), 0);
	cr_assert_eq(pthread_create(&s->thread, NULL, loop_main, s), 0);
	return tsw_ctl_port(s->ctl);
}

static uint16_t start_with(struct server *s, const struct tsw_ctl_params *p)
{
	return start_source(s, p, &src);
}

static struct tsw_ctl_params params(uint32_t max_conns, uint32_t max_req)
{
	return (struct tsw_ctl_params){
	    .host = "127.0.0.1",
	    .port = 0,
	    .max_conns = max_conns,
	    .max_request_bytes = max_req,
	    .request_timeout_ms = 5000,
	    .idle_timeout_ms = 5000,
	    .backlog = 128,
	    .log_interval_ms = 1000,
	};
}

static uint16_t start_server(struct server *s, uint32_t max_conns, uint32_t max_req)
{
	struct tsw_ctl_params p = params(max_conns, max_req);

	return start_with(s, &p);
}

static void stop_server(struct server *s)
{
	uv_async_send(&s->stop);
	pthread_join(s->thread, NULL);
	cr_assert_eq(uv_loop_close(&s->loop), 0, "every handle closed");
}

static int dial(uint16_t port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	struct timeval tv = {.tv_sec = 5};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0, "connect: %s", strerror(errno));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

/* Sends req, reads to EOF; returns the status code (0: closed with no answer). */
static int http(uint16_t port, const char *req, char *body, size_t cap)
{
	char buf[65536];
	size_t n = 0;
	ssize_t r;
	int fd = dial(port), code = 0;

	if (send(fd, req, strlen(req), MSG_NOSIGNAL) < 0) {
		close(fd);
		return 0;
	}
	while (n < sizeof(buf) - 1 && (r = recv(fd, buf + n, sizeof(buf) - 1 - n, 0)) > 0)
		n += (size_t)r;
	buf[n] = '\0';
	close(fd);
	if (sscanf(buf, "HTTP/1.1 %d", &code) != 1)
		return 0;
	if (body) {
		char *b = strstr(buf, "\r\n\r\n");

		snprintf(body, cap, "%s", b ? b + 4 : "");
	}
	return code;
}

struct route_case {
	const char *req;
	bool ready;
	int code;
	const char *body_has;
};

static const struct route_case routes[] = {
    {"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", false, 200, "ok"},
    {"GET /readyz HTTP/1.1\r\n\r\n", false, 503, "not ready"},
    {"GET /readyz HTTP/1.1\r\n\r\n", true, 200, "ready"},
    {"GET /metrics HTTP/1.0\r\n\r\n", true, 200,
     "tokswitch_requests_total{mti=\"0100\",rc=\"00\"} 7"},
    {"GET /metrics?x=1 HTTP/1.1\r\n\r\n", true, 200, "tokswitch_ready 1"},
    {"GET /other HTTP/1.1\r\n\r\n", true, 404, "not found"},
    {"POST /metrics HTTP/1.1\r\n\r\n", true, 405, NULL},
    {"GARBAGE\r\n\r\n", true, 400, NULL},
};

Test(http, routes_and_status_codes)
{
	struct server s;
	uint16_t port;
	char body[65536];

	fill_shards();
	port = start_server(&s, 8, 1024);
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		__atomic_store_n(&ready_value, routes[i].ready, __ATOMIC_SEQ_CST);
		cr_assert_eq(http(port, routes[i].req, body, sizeof(body)), routes[i].code,
			     "case %zu", i);
		if (routes[i].body_has)
			cr_assert_not_null(strstr(body, routes[i].body_has), "case %zu", i);
	}
	stop_server(&s);
}

Test(http, oversized_request_refused_431)
{
	struct server s;
	char req[2048];
	uint16_t port;

	port = start_server(&s, 8, 256);
	memset(req, 'a', sizeof(req) - 1);
	req[sizeof(req) - 1] = '\0';
	memcpy(req, "GET /", 5);
	char body[65536];

	cr_assert_eq(http(port, req, NULL, 0), 431);
	cr_assert_eq(http(port, "GET /healthz HTTP/1.1\r\n\r\n", NULL, 0), 200, "still serving");
	cr_assert_eq(http(port, "GET /metrics HTTP/1.1\r\n\r\n", body, sizeof(body)), 200);
	cr_assert_not_null(strstr(body, "\ntokswitch_http_too_large_total 1\n"), "counted");
	stop_server(&s);
}

/* With every slot taken, a new client takes the slot of the connection
 * that has been sending its request the longest; the others keep theirs. */
Test(http, a_new_client_takes_the_slot_of_the_oldest_idle_one)
{
	struct server s;
	uint16_t port;
	int held[2];
	char c, body[65536];

	fill_shards();
	port = start_server(&s, 2, 1024);
	held[0] = dial(port);
	send(held[0], "GET /", 5, MSG_NOSIGNAL);
	/* the first must be the older one for the server: wait until it is
	 * accepted (a request on a fresh connection is answered only then) */
	cr_assert_eq(http(port, "GET /healthz HTTP/1.1\r\n\r\n", NULL, 0), 200);
	held[1] = dial(port);
	send(held[1], "GET /", 5, MSG_NOSIGNAL);
	cr_assert_eq(http(port, "GET /metrics HTTP/1.1\r\n\r\n", body, sizeof(body)), 200);
	cr_assert_not_null(strstr(body, "\ntokswitch_http_evicted_total "), "counted");
	cr_assert_null(strstr(body, "\ntokswitch_http_evicted_total 0\n"), "counted");
	cr_assert_eq(recv(held[0], &c, 1, 0), 0, "the oldest idle connection was closed");
	/* the second still holds its slot: finishing its request is answered */
	send(held[1], "healthz HTTP/1.1\r\n\r\n", 20, MSG_NOSIGNAL);
	cr_assert_eq(recv(held[1], &c, 1, 0), 1, "the younger one was answered");
	close(held[0]);
	close(held[1]);
	stop_server(&s);
}

/* Like http(), but gives up (0) when no answer is complete within
 * timeout_ms. */
static int http_within(uint16_t port, const char *req, char *body, size_t cap, int timeout_ms)
{
	struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
	char buf[65536];
	size_t n = 0;
	ssize_t r;
	int fd = dial(port), code = 0;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (send(fd, req, strlen(req), MSG_NOSIGNAL) < 0) {
		close(fd);
		return 0;
	}
	while (n < sizeof(buf) - 1 && (r = recv(fd, buf + n, sizeof(buf) - 1 - n, 0)) > 0)
		n += (size_t)r;
	buf[n] = '\0';
	close(fd);
	if (r < 0 || sscanf(buf, "HTTP/1.1 %d", &code) != 1)
		return 0;
	if (body) {
		char *b = strstr(buf, "\r\n\r\n");

		snprintf(body, cap, "%s", b ? b + 4 : "");
	}
	return code;
}

/* Clients that connect and send nothing (or half a request) must not keep
 * a scraper out: a new client takes the slot of the oldest idle one. */
Test(http, idle_connections_never_lock_out_the_scraper)
{
	enum { MAX_CONNS = 64, IDLE = MAX_CONNS + 8 };
	struct server s;
	int idle[IDLE];
	char body[65536];
	uint16_t port;

	fill_shards();
	port = start_server(&s, MAX_CONNS, 1024);
	for (int i = 0; i < IDLE; i++) {
		idle[i] = dial(port);
		if (i % 2)
			send(idle[i], "GET /", 5, MSG_NOSIGNAL);
	}
	cr_assert_eq(http_within(port, "GET /metrics HTTP/1.1\r\n\r\n", body, sizeof(body), 2000),
		     200, "/metrics answered within 2 s with %d idle clients", IDLE);
	cr_assert_not_null(strstr(body, "tokswitch_requests_total{mti=\"0100\",rc=\"00\"} 7"));
	cr_assert_eq(http_within(port, "GET /readyz HTTP/1.1\r\n\r\n", NULL, 0, 2000), 503,
		     "/readyz too");
	for (int i = 0; i < IDLE; i++)
		close(idle[i]);
	stop_server(&s);
}

/* The request line ends at the first CRLF: a version found further on (in
 * a header) does not make "GET /metrics" a valid HTTP/1.x request. */
Test(http, request_line_is_the_first_line_only)
{
	struct server s;
	uint16_t port;

	port = start_server(&s, 8, 1024);
	cr_assert_eq(http(port, "GET /metrics\r\nX: HTTP/1.1\r\n\r\n", NULL, 0), 400);
	cr_assert_eq(http(port, "GET /metrics HTTP/1.1 extra\r\n\r\n", NULL, 0), 400);
	cr_assert_eq(http(port, "GET /healthz HTTP/1.1\r\nX: a b\r\n\r\n", NULL, 0), 200);
	stop_server(&s);
}

/* A request that fills the buffer to its last byte, with the header end
 * inside it and a space as the very last byte: nothing may be read past
 * the bytes received (under ASan a read past the buffer aborts). */
Test(http, request_filling_the_buffer_is_never_read_past_its_end)
{
	enum { MAX_REQ = 64 };
	struct server s;
	char req[MAX_REQ + 1];
	uint16_t port;
	size_t n;

	port = start_server(&s, 8, MAX_REQ);
	n = (size_t)snprintf(req, sizeof(req), "GET /metrics\r\n\r\n");
	memset(req + n, 'a', MAX_REQ - 1 - n);
	req[MAX_REQ - 1] = ' ';
	req[MAX_REQ] = '\0';
	cr_assert_eq(strlen(req), MAX_REQ);
	cr_assert_eq(http(port, req, NULL, 0), 400);
	cr_assert_eq(http(port, "GET /healthz HTTP/1.1\r\n\r\n", NULL, 0), 200, "still serving");
	stop_server(&s);
}

/* One byte per segment: the head is found however it is cut. */
Test(http, request_split_across_many_reads)
{
	static const char req[] = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n"
				  "User-Agent: Prometheus/2.45\r\nAccept: text/plain\r\n\r\n";
	struct server s;
	char buf[65536];
	size_t n = 0;
	ssize_t r;
	uint16_t port;
	int fd, one = 1, code = 0;

	fill_shards();
	port = start_server(&s, 8, 1024);
	fd = dial(port);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	for (size_t i = 0; i < sizeof(req) - 1; i++)
		cr_assert_eq(send(fd, req + i, 1, MSG_NOSIGNAL), 1);
	while (n < sizeof(buf) - 1 && (r = recv(fd, buf + n, sizeof(buf) - 1 - n, 0)) > 0)
		n += (size_t)r;
	buf[n] = '\0';
	close(fd);
	cr_assert_eq(sscanf(buf, "HTTP/1.1 %d", &code), 1);
	cr_assert_eq(code, 200);
	cr_assert_not_null(strstr(buf, "tokswitch_requests_total{mti=\"0100\",rc=\"00\"} 7"));
	stop_server(&s);
}

/* metric value in a /metrics body, -1 when absent */
static long long metric_in(const char *body, const char *name)
{
	return series(body, name);
}

/* A client that connects and says nothing is closed after
 * request_timeout_ms, counted and logged; one that sent a request in time
 * is answered. */
Test(http, a_connection_without_a_request_is_closed_after_request_timeout_ms)
{
	struct tsw_ctl_params p = params(8, 1024);
	struct timespec t0, t1;
	struct server s;
	char c, body[65536];
	uint16_t port;
	int fd, half;
	long ms;

	p.request_timeout_ms = 200;
	fill_shards();
	port = start_with(&s, &p);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	fd = dial(port);
	half = dial(port);
	send(half, "GET /metrics HTTP/1.1\r\n", 23, MSG_NOSIGNAL);
	cr_assert_eq(recv(fd, &c, 1, 0), 0, "closed without an answer");
	cr_assert_eq(recv(half, &c, 1, 0), 0, "half a head is no request either");
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	cr_assert_geq(ms, 150, "not before the deadline: %ld ms", ms);
	cr_assert_lt(ms, 4000, "closed by request_timeout_ms, not idle_timeout_ms: %ld ms", ms);
	close(fd);
	close(half);
	cr_assert_eq(http(port, "GET /metrics HTTP/1.1\r\n\r\n", body, sizeof(body)), 200);
	cr_assert_eq(metric_in(body, "tokswitch_http_request_timeouts_total"), 2);
	cr_assert_eq(metric_in(body, "tokswitch_http_evicted_total"), 0);
	stop_server(&s);
}

#define TOKEN "c2VjcmV0LXRva2Vu.x_y~z+/=="

struct auth_case {
	const char *req;
	int code;
	const char *has; /* in the answer (head and body) */
};

static const struct auth_case auth_cases[] = {
    {"GET /metrics HTTP/1.1\r\n\r\n", 401, "WWW-Authenticate: Bearer realm=\"tokswitch\"\r\n"},
    {"GET /metrics HTTP/1.1\r\nAuthorization: Bearer " TOKEN "\r\n\r\n", 200, "tokswitch_ready "},
    {"GET /metrics HTTP/1.1\r\nauthorization: bearer  " TOKEN " \r\n\r\n", 200, "tokswitch_ready "},
    {"GET /metrics HTTP/1.1\r\nAuthorization: Bearer " TOKEN "x\r\n\r\n", 401,
     "error=\"invalid_token\""},
    {"GET /metrics HTTP/1.1\r\nAuthorization: Bearer c2VjcmV0LXRva2Vu\r\n\r\n", 401, NULL},
    {"GET /metrics HTTP/1.1\r\nAuthorization: Bearer \r\n\r\n", 401, NULL},
    {"GET /metrics HTTP/1.1\r\nAuthorization: Basic " TOKEN "\r\n\r\n", 401, NULL},
    {"GET /metrics HTTP/1.1\r\nX-Token: " TOKEN "\r\n\r\n", 401, NULL},
    {"GET /metrics HTTP/1.1\r\nAuthorization: Bearer " TOKEN "\r\n"
     "Authorization: Bearer " TOKEN "\r\n\r\n",
     400, NULL},
    /* probes stay open: they say only whether the process runs and is ready */
    {"GET /healthz HTTP/1.1\r\n\r\n", 200, "ok"},
    {"GET /readyz HTTP/1.1\r\n\r\n", 200, "ready"},
};

/* Sends req, returns the status and the whole answer in out. */
static int http_raw(uint16_t port, const char *req, char *out, size_t cap)
{
	size_t n = 0;
	ssize_t r;
	int fd = dial(port), code = 0;

	send(fd, req, strlen(req), MSG_NOSIGNAL);
	while (n < cap - 1 && (r = recv(fd, out + n, cap - 1 - n, 0)) > 0)
		n += (size_t)r;
	out[n] = '\0';
	close(fd);
	return sscanf(out, "HTTP/1.1 %d", &code) == 1 ? code : 0;
}

/* --- the names Prometheus users expect ---------------------------------- */

/* Label names: each from a fixed set of values (an enum's names, a
 * configured link, the build). */
static const char *const label_names[] = {
    "mti",  "rc",     "reason", "action", "result",  "kind",
    "link", "issuer", "host",	"le",	  "version", "io_backend",
};

static const char *const hist_suffixes[] = {"_bucket", "_count", "_sum"};

struct family {
	char name[128];
	char type[16];
};

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);

	return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* The names a family's samples may take (OpenMetrics: a counter's
 * samples are NAME_total, a histogram's NAME_bucket, _count and _sum). */
static bool sample_of(const struct family *f, const char *name)
{
	char want[160];

	if (strcmp(f->type, "histogram") != 0)
		return strcmp(name, f->name) == 0;
	for (size_t i = 0; i < sizeof(hist_suffixes) / sizeof(hist_suffixes[0]); i++) {
		snprintf(want, sizeof(want), "%s%s", f->name, hist_suffixes[i]);
		if (strcmp(name, want) == 0)
			return true;
	}
	return false;
}

/* A family's name without the suffix its type adds: two families whose
 * stems (or whose samples) meet would be one name to a scraper. */
static void stem(const struct family *f, char *out, size_t cap)
{
	size_t n = strlen(f->name);

	if (strcmp(f->type, "counter") == 0 && ends_with(f->name, "_total"))
		n -= strlen("_total");
	snprintf(out, cap, "%.*s", (int)n, f->name);
}

/* Checks the label names of a sample line against label_names[]. */
static void check_labels(const char *line)
{
	const char *p = strchr(line, '{'), *end = strchr(line, ' ');

	if (!p || (end && p > end))
		return;
	while (*p == '{' || *p == ',') {
		const char *eq = strchr(++p, '=');
		bool known = false;

		cr_assert_not_null(eq, "%.80s", line);
		for (size_t i = 0; i < sizeof(label_names) / sizeof(label_names[0]); i++)
			known |= strlen(label_names[i]) == (size_t)(eq - p) &&
				 memcmp(label_names[i], p, (size_t)(eq - p)) == 0;
		cr_expect(known, "label %.*s of %.80s: not one of the fixed set", (int)(eq - p), p,
			  line);
		for (p = eq + 2; *p && *p != '"'; p++)
			if (*p == '\\')
				p++;
		cr_assert_eq(*p, '"', "%.80s", line);
		p++;
	}
	cr_assert_eq(*p, '}', "%.80s", line);
}

/* Reads one "# TYPE" line into f and checks its name against the rules:
 * the tokswitch_ prefix, _total on every counter and on nothing else. */
static void check_type_line(const char *line, struct family *f)
{
	cr_assert_eq(sscanf(line, "# TYPE %127s %15s", f->name, f->type), 2, "%.80s", line);
	cr_expect_eq(strncmp(f->name, "tokswitch_", strlen("tokswitch_")), 0, "%s: not tokswitch_",
		     f->name);
	cr_expect_neq(strncmp(f->name, "tsw_", strlen("tsw_")), 0, "%s", f->name);
	if (strcmp(f->type, "counter") == 0)
		cr_expect(ends_with(f->name, "_total"), "counter %s without _total", f->name);
	else
		cr_expect(!ends_with(f->name, "_total"), "%s %s with _total", f->type, f->name);
	cr_expect(strcmp(f->type, "counter") == 0 || strcmp(f->type, "gauge") == 0 ||
		      strcmp(f->type, "histogram") == 0,
		  "%s: type %s", f->name, f->type);
	if (ends_with(f->name, "_info"))
		cr_expect_str_eq(f->type, "gauge", "%s", f->name);
}

/* Checks a whole exposition: every sample under the "# HELP" and "# TYPE"
 * of its family, no family twice, no two stems alike. Returns the number
 * of families. */
static size_t check_exposition(char *text, struct family *fams, size_t cap)
{
	char help[128] = "";
	size_t n = 0;

	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
		char name[160];

		cr_expect_neq(strncmp(line, "tsw_", 4), 0, "%.80s", line);
		if (strncmp(line, "# HELP ", 7) == 0) {
			cr_assert_eq(sscanf(line, "# HELP %127s", help), 1, "%.80s", line);
			continue;
		}
		if (strncmp(line, "# TYPE ", 7) == 0) {
			cr_assert_lt(n, cap);
			check_type_line(line, &fams[n]);
			cr_expect_str_eq(help, fams[n].name, "the # HELP before # TYPE %s",
					 fams[n].name);
			n++;
			continue;
		}
		cr_assert_gt(n, 0, "a sample before any # TYPE: %.80s", line);
		cr_assert_eq(sscanf(line, "%159[^{ ]", name), 1, "%.80s", line);
		cr_expect(sample_of(&fams[n - 1], name), "%s under the # TYPE of %s", name,
			  fams[n - 1].name);
		check_labels(line);
	}
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < n; j++) {
			char a[160], b[160];

			stem(&fams[i], a, sizeof(a));
			stem(&fams[j], b, sizeof(b));
			cr_expect(i == j || (strcmp(a, b) != 0 && !sample_of(&fams[i], b)),
				  "%s (%s) and %s (%s) collide", fams[i].name, fams[i].type,
				  fams[j].name, fams[j].type);
		}
	}
	return n;
}

/* The whole scrape, with every part a running switch has (a state, an
 * HSM, the endpoint's own series), follows the names Prometheus users
 * expect; no name is the old tsw_ one. */
Test(http, every_exported_name_follows_the_naming_rules, .init = mk_tmp, .fini = rm_tmp)
{
	static char answer[256 * 1024];
	static const char *const parts[] = {
	    "tokswitch_requests_total", "tokswitch_state_batches_total",
	    "tokswitch_hsm_keys",	"tokswitch_http_connections_open",
	    "tokswitch_build_info",
	};
	static struct family fams[512];
	struct tsw_ctl_params p = params(8, 1024);
	struct tsw_ctl_source full = src;
	struct tsw_state_config sc = {.queue_size = 100};
	struct tsw_state *st;
	struct tsw_hsm *hsm;
	struct server s;
	char *body;
	size_t n;

	cr_assert_eq(tsw_state_open(tmpdir, &sc, &st), 0);
	cr_assert_eq(tsw_hsm_soft_open(NULL, &hsm), 0);
	fill_shards();
	full.state = st;
	full.hsm = hsm;
	full.version = "0.1.0";
	full.io_backend = "uv";
	start_source(&s, &p, &full);
	cr_assert_eq(
	    http_raw(tsw_ctl_port(s.ctl), "GET /metrics HTTP/1.1\r\n\r\n", answer, sizeof(answer)),
	    200);
	stop_server(&s);
	cr_assert_lt(strlen(answer), sizeof(answer) - 1, "the whole answer read");
	body = strstr(answer, "\r\n\r\n");
	cr_assert_not_null(body);
	n = check_exposition(body + 4, fams, sizeof(fams) / sizeof(fams[0]));
	/* the parts: the engine's, the state's, the HSM's, the endpoint's, the build */
	cr_expect_gt(n, 100, "%zu families", n);
	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
		bool found = false;

		for (size_t f = 0; f < n; f++)
			found |= strcmp(fams[f].name, parts[i]) == 0;
		cr_expect(found, "%s in the scrape", parts[i]);
	}
	tsw_hsm_close(hsm);
	tsw_state_close(st);
}

Test(http, metrics_want_the_bearer_token_when_one_is_set)
{
	struct tsw_ctl_params p = params(8, 1024);
	static char answer[65536];
	char token[] = TOKEN;
	struct server s;
	uint16_t port;

	p.token = token;
	p.token_len = strlen(token);
	fill_shards();
	__atomic_store_n(&ready_value, true, __ATOMIC_SEQ_CST);
	port = start_with(&s, &p);
	memset(token, 0, sizeof(token)); /* the ctl keeps its own copy */
	for (size_t i = 0; i < sizeof(auth_cases) / sizeof(auth_cases[0]); i++) {
		cr_assert_eq(http_raw(port, auth_cases[i].req, answer, sizeof(answer)),
			     auth_cases[i].code, "case %zu: %.40s", i, answer);
		if (auth_cases[i].has)
			cr_assert_not_null(strstr(answer, auth_cases[i].has), "case %zu", i);
		if (auth_cases[i].code == 401)
			cr_assert_null(strstr(answer, "tokswitch_"), "case %zu: no metric", i);
	}
	cr_assert_eq(http_raw(port,
			      "GET /metrics HTTP/1.1\r\nAuthorization: Bearer " TOKEN "\r\n\r\n",
			      answer, sizeof(answer)),
		     200);
	cr_assert_eq(metric_in(answer, "tokswitch_http_unauthorized_total"), 6);
	cr_assert_null(strstr(answer, TOKEN), "the token is in no answer");
	stop_server(&s);
}

Test(http, loopback_hosts)
{
	static const struct {
		const char *host;
		bool loopback;
	} cases[] = {
	    {"127.0.0.1", true},	{"127.1.2.3", true},  {"::1", true},
	    {"::ffff:127.0.0.1", true}, {"0.0.0.0", false},   {"::", false},
	    {"10.0.0.1", false},	{"128.0.0.1", false}, {"::2", false},
	    {"::ffff:10.0.0.1", false}, {"localhost", false}, {"", false},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_expect_eq(tsw_ctl_host_is_loopback(cases[i].host), cases[i].loopback, "%s",
			     cases[i].host);
}

TestSuite(token_file, .init = mk_tmp, .fini = rm_tmp);

static const char *token_file(const char *text, mode_t mode)
{
	const char *path = write_file("metrics.token", text);

	cr_assert_eq(chmod(path, mode), 0);
	return path;
}

Test(token_file, read_with_the_key_files_rule)
{
	static const struct {
		const char *text;
		mode_t mode;
		int ret;
		const char *want;
	} cases[] = {
	    {TOKEN "\n", 0600, 0, TOKEN},
	    {TOKEN, 0400, 0, TOKEN},
	    {TOKEN "\n", 0640, -EPERM, NULL},
	    {TOKEN "\n", 0604, -EPERM, NULL},
	    {"", 0600, -TSW_E_BAD_INPUT, NULL},
	    {"\n", 0600, -TSW_E_BAD_INPUT, NULL},
	    {TOKEN "\n\n", 0600, -TSW_E_BAD_INPUT, NULL},
	    {"two words\n", 0600, -TSW_E_BAD_INPUT, NULL},
	    {"a=b\n", 0600, -TSW_E_BAD_INPUT, NULL},
	    {TOKEN "\r\n", 0600, -TSW_E_BAD_INPUT, NULL},
	};
	char buf[TSW_CTL_TOKEN_MAX + 2];
	size_t len;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *path = token_file(cases[i].text, cases[i].mode);

		len = 0;
		cr_assert_eq(tsw_ctl_token_read(path, buf, sizeof(buf), &len), cases[i].ret,
			     "case %zu", i);
		if (cases[i].want) {
			cr_assert_str_eq(buf, cases[i].want, "case %zu", i);
			cr_assert_eq(len, strlen(cases[i].want), "case %zu", i);
		}
		unlink(path);
	}
}

Test(token_file, refused_when_too_long_a_symlink_or_another_users)
{
	static char big[TSW_CTL_TOKEN_MAX + 2];
	char buf[TSW_CTL_TOKEN_MAX + 2], link[160];
	const char *path;
	size_t len;

	memset(big, 'a', TSW_CTL_TOKEN_MAX);
	path = token_file(big, 0600);
	cr_assert_eq(tsw_ctl_token_read(path, buf, sizeof(buf), &len), 0, "the longest one");
	cr_assert_eq(len, TSW_CTL_TOKEN_MAX);
	big[TSW_CTL_TOKEN_MAX] = 'a';
	path = token_file(big, 0600);
	cr_assert_eq(tsw_ctl_token_read(path, buf, sizeof(buf), &len), -TSW_E_BAD_INPUT);
	cr_assert_eq(buf[0], 0, "wiped on failure");
	path = token_file(TOKEN, 0600);
	snprintf(link, sizeof(link), "%s/link.token", tmpdir);
	cr_assert_eq(symlink(path, link), 0);
	cr_assert_lt(tsw_ctl_token_read(link, buf, sizeof(buf), &len), 0, "no symlink");
	if (geteuid() == 0) {
		/* owned by someone else, even with mode 0600 */
		cr_assert_eq(chown(path, 65534, 65534), 0);
		cr_assert_eq(tsw_ctl_token_read(path, buf, sizeof(buf), &len), -EPERM);
	}
	cr_assert_eq(tsw_ctl_token_read("/nonexistent/x.token", buf, sizeof(buf), &len), -ENOENT);
}

/* --- request heads (pure) ---------------------------------------------- */

static const char split_req[] = "GET /metrics?x=1 HTTP/1.1\r\nHost: 127.0.0.1:9583\r\n"
				"Authorization: Bearer abc\r\nAccept: */*\r\n\r\n";

/* However a head is cut, the search finds its end at the same place and
 * never goes back more than the 3 bytes a cut blank line needs. */
Test(http_parse, head_end_is_found_incrementally_whatever_the_cut)
{
	const size_t len = sizeof(split_req) - 1;

	for (size_t step = 1; step <= len; step++) {
		struct tsw_http_head_scan scan = {0};
		size_t got = 0, fed = 0, prev_pos = 0;

		while (!got && fed < len) {
			fed = fed + step < len ? fed + step : len;
			got = tsw_http_head_end(&scan, split_req, fed);
			if (!got) {
				cr_assert_geq(scan.pos, prev_pos, "step %zu: went back", step);
				cr_assert_geq(scan.pos + 3, fed,
					      "step %zu: rescans from %zu at %zu", step, scan.pos,
					      fed);
				prev_pos = scan.pos;
			}
		}
		cr_assert_eq(got, len, "step %zu", step);
	}
}

Test(http_parse, a_head_is_read_only_within_its_length)
{
	/* the head copied to an exact-size heap block: ASan sees any read past it */
	struct tsw_http_request r;
	const size_t len = sizeof(split_req) - 1;
	char *buf = malloc(len);
	struct tsw_http_head_scan scan = {0};

	memcpy(buf, split_req, len);
	cr_assert_eq(tsw_http_head_end(&scan, buf, len), len);
	cr_assert_eq(tsw_http_parse(buf, len, &r), 0);
	cr_assert_eq(r.method_len, 3);
	cr_assert_eq(memcmp(r.method, "GET", 3), 0);
	cr_assert_eq(r.path_len, 8);
	cr_assert_eq(memcmp(r.path, "/metrics", 8), 0);
	cr_assert(r.has_authorization);
	cr_assert_eq(r.bearer_len, 3);
	cr_assert_eq(memcmp(r.bearer, "abc", 3), 0);
	/* every prefix of it is no complete head */
	for (size_t n = 0; n < len; n++) {
		memset(&scan, 0, sizeof(scan));
		cr_assert_eq(tsw_http_head_end(&scan, buf, n), 0, "prefix %zu", n);
		cr_assert_eq(tsw_http_parse(buf, n, &r), -EINVAL, "prefix %zu", n);
	}
	free(buf);
}

Test(http_parse, malformed_heads_refused)
{
	static const char *const bad[] = {
	    "GET /metrics\r\n\r\n",
	    "GET /metrics\r\nX: HTTP/1.1\r\n\r\n",
	    "GET /metrics HTTP/1.1 extra\r\n\r\n",
	    "GET  /metrics HTTP/1.1\r\n\r\n",
	    "GET /metrics HTTP/2.0\r\n\r\n",
	    "GET /metrics HTTP/1.1\n\r\n",
	    "GET /met\rrics HTTP/1.1\r\n\r\n",
	    "GET /metrics HTTP/1.1\r\nNo colon\r\n\r\n",
	    "GET /metrics HTTP/1.1\r\n: empty name\r\n\r\n",
	    "GET /metrics HTTP/1.1\r\nBad Name: x\r\n\r\n",
	    "GET /metrics HTTP/1.1\r\n\r\ntrailing",
	    "G(T /metrics HTTP/1.1\r\n\r\n",
	    " /metrics HTTP/1.1\r\n\r\n",
	};
	struct tsw_http_request r;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect_eq(tsw_http_parse(bad[i], strlen(bad[i]), &r), -EINVAL, "%s", bad[i]);
}
