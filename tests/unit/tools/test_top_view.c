/* tokswitch-top's screen from two fixed scrapes: rates from counter
 * differences, "-" for what a scrape lacks, the limits that rose; and
 * the limits it watches are the switch's (docs/operations.md). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "view.h"

#define DOC_MAX_BYTES (1 << 20)

static struct top_screen screen;

static struct top_scrape parse(const char *text)
{
	struct top_scrape s;

	cr_assert_eq(top_scrape_parse(text, strlen(text), &s), 0);
	return s;
}

/* The words of a line, squeezed: "  a   b " -> "a b". */
static const char *squeeze(const char *line)
{
	static char out[TOP_SCREEN_LINE_BYTES];
	size_t n = 0;

	for (const char *p = line + strspn(line, " "); *p; p++) {
		if (*p == ' ' && (p[1] == ' ' || !p[1]))
			continue;
		out[n++] = *p;
	}
	out[n] = '\0';
	return out;
}

/* The line of the screen whose words start with prefix, squeezed. */
static const char *line_of(const char *prefix)
{
	for (size_t i = 0; i < screen.n; i++) {
		const char *l = squeeze(screen.line[i]);

		if (!strncmp(l, prefix, strlen(prefix)))
			return l;
	}
	cr_assert_fail("no line starts with \"%s\"", prefix);
	return NULL;
}

static const char before_text[] = "tokswitch_requests_total{mti=\"0100\",rc=\"00\"} 100\n"
				  "tokswitch_requests_total{mti=\"0100\",rc=\"51\"} 10\n"
				  "tokswitch_requests_total{mti=\"0200\",rc=\"00\"} 50\n"
				  "tokswitch_requests_total{mti=\"0400\",rc=\"00\"} 7\n"
				  "tokswitch_declines_total{reason=\"TOKEN_UNKNOWN\"} 4\n"
				  "tokswitch_timeouts_total 3\n"
				  "tokswitch_connections_refused_total 9\n"
				  "tokswitch_workers 2\n";

static const char now_text[] =
    "tokswitch_requests_total{mti=\"0100\",rc=\"00\"} 160\n"
    "tokswitch_requests_total{mti=\"0100\",rc=\"51\"} 10\n"
    "tokswitch_requests_total{mti=\"0200\",rc=\"00\"} 70\n"
    "tokswitch_requests_total{mti=\"0400\",rc=\"00\"} 99\n"
    "tokswitch_requests_total{mti=\"0100\",rc=\"91\"} 6\n"
    "tokswitch_declines_total{reason=\"TOKEN_UNKNOWN\"} 10\n"
    "tokswitch_timeouts_total 7\n"
    "tokswitch_connections_refused_total 9\n"
    "tokswitch_workers 2\n"
    "tokswitch_issuer_links_signed_on{link=\"0\",issuer=\"0\",host=\"h:1\"} 1\n";

Test(view, rates_from_differences_and_a_dash_for_what_is_missing)
{
	struct top_scrape before = parse(before_text), now = parse(now_text);

	top_view_render(&(struct top_view){.now = &now,
					   .before = &before,
					   .dt_s = 2,
					   .addr = "a:1",
					   .interval_s = 2,
					   .scrape_no = 2},
			&screen);
	/* 0100 and 0200 summed by rc, reversals (0400) not: (60 + 20) / 2 */
	cr_assert_str_eq((line_of("00 approved")), "00 approved 40.0 230");
	cr_assert_str_eq((line_of("51 ")), "51 insufficient funds 0.0 10");
	/* a label set the scrape before lacks (its family there): 0 then */
	cr_assert_str_eq((line_of("91 ")), "91 issuer unavailable 3.0 6");
	cr_assert_str_eq((line_of("all ")), "all 43.0 246");
	cr_assert_str_eq((line_of("TOKEN_UNKNOWN")), "TOKEN_UNKNOWN 3.0 10");
	cr_assert_str_eq((line_of("switch-added")), "switch-added - - -");
	cr_assert_str_eq((line_of("0 0 h:1")), "0 0 h:1 partial 1/2 -");
	cr_assert_str_eq((line_of("in flight")),
			 "in flight - timeouts 2.0 per s, 7 in all late answers - rerouted -");
	cr_assert_str_eq((line_of("STATE WRITER")),
			 "STATE WRITER - held - commit errors - queue - of -");
	/* the limits that rose: timeouts, not the refused connections */
	cr_assert_str_eq((line_of("issuer.timeout_ms")),
			 "issuer.timeout_ms tokswitch_timeouts_total 4 2.0");
	for (size_t i = 0; i < screen.n; i++)
		cr_assert_null(strstr(screen.line[i], "limits.max_conns"), "%s", screen.line[i]);
	top_scrape_free(&before);
	top_scrape_free(&now);
}

Test(view, first_screen_without_rates_and_control_bytes_replaced)
{
	struct top_scrape now =
	    parse("tokswitch_requests_total{mti=\"0100\",rc=\"00\"} 5\n"
		  "tokswitch_issuer_links_signed_on{link=\"0\",issuer=\"0\",host=\"h\\n\\\"x\"} 0\n"
		  "tokswitch_workers 2\n");

	top_view_render(
	    &(struct top_view){.now = &now, .addr = "a:1", .interval_s = 1, .scrape_no = 1},
	    &screen);
	cr_assert_str_eq((line_of("00 approved")), "00 approved - 5");
	cr_assert_str_eq((line_of("0 0 h?\"x")), "0 0 h?\"x DOWN 0/2 -");
	cr_assert_str_eq((line_of("- (needs")), "- (needs a second scrape)");
	top_scrape_free(&now);
}

static char *read_doc(const char *name)
{
	const char *root = getenv("TSW_SOURCE_ROOT");
	char path[512];
	char *doc = malloc(DOC_MAX_BYTES);
	FILE *f;
	size_t n;

	cr_assert_not_null(root, "TSW_SOURCE_ROOT (tests/meson.build sets it)");
	snprintf(path, sizeof(path), "%s/%s", root, name);
	f = fopen(path, "r");
	cr_assert_not_null(f, "%s", path);
	n = fread(doc, 1, DOC_MAX_BYTES - 1, f);
	fclose(f);
	doc[n] = '\0';
	return doc;
}

/* Whether the example config's [section] sets (or shows commented out)
 * key: "key = " or ";key = " at the start of a line. */
static bool conf_has(const char *conf, const char *section_key)
{
	char head[64], line[96], commented[96];
	const char *dot = strchr(section_key, '.'), *start, *end;

	cr_assert_not_null(dot, "%s", section_key);
	snprintf(head, sizeof(head), "\n[%.*s]\n", (int)(dot - section_key), section_key);
	snprintf(line, sizeof(line), "\n%s = ", dot + 1);
	snprintf(commented, sizeof(commented), "\n;%s = ", dot + 1);
	start = strstr(conf, head);
	if (!start)
		return false;
	start += strlen(head) - 1;
	end = strstr(start, "\n[");
	for (const char *p = start; (p = strchr(p, '\n')) && (!end || p < end); p++) {
		if (!strncmp(p, line, strlen(line)) || !strncmp(p, commented, strlen(commented)))
			return true;
	}
	return false;
}

Test(view, every_limit_watched_is_a_configured_key_and_a_documented_series)
{
	char *doc = read_doc("docs/operations.md"), *conf = read_doc("config/tokswitch.conf");
	char *table = strstr(doc, "\nMetrics: every series"), *end, needle[160];
	size_t n;
	const struct top_limit *l = top_view_limits(&n);

	cr_assert_not_null(table, "the metrics table of docs/operations.md");
	end = strstr(table, "\n## ");
	if (end)
		*end = '\0';
	cr_assert_gt(n, 30);
	cr_assert_not(conf_has(conf, "limits.no_such_key"), "the check can fail");
	for (size_t i = 0; i < n; i++) {
		/* the series in the metrics table (e2e checks that it names a
		 * live scrape's series exactly), the key in the example config
		 * (a unit test checks it against the built-in table) */
		snprintf(needle, sizeof(needle), "`%s", l[i].series);
		cr_assert_not_null(strstr(table, needle), "%s not in the metrics table", needle);
		cr_assert(conf_has(conf, l[i].key), "%s not in config/tokswitch.conf", l[i].key);
	}
	free(conf);
	free(doc);
}
