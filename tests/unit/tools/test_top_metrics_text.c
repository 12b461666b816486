/* tokswitch-top's reader of the Prometheus text format: sample lines
 * with and without labels, quoted label values that hold the format's
 * own punctuation, special values, timestamps; everything else skipped
 * and counted. */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <string.h>

#include "metrics_text.h"

static struct top_scrape parse(const char *text)
{
	struct top_scrape s;

	cr_assert_eq(top_scrape_parse(text, strlen(text), &s), 0);
	return s;
}

struct sample_case {
	const char *line;
	const char *name, *labels;
	double value;
};

Test(metrics_text, each_sample_line_gives_its_name_labels_and_value)
{
	static const struct sample_case cases[] = {
	    {"tokswitch_inflight 4", "tokswitch_inflight", "", 4},
	    {"tokswitch_requests_total{mti=\"0100\",rc=\"00\"} 59966", "tokswitch_requests_total",
	     "mti=\"0100\",rc=\"00\"", 59966},
	    {"h_bucket{le=\"5e-07\"} 727", "h_bucket", "le=\"5e-07\"", 727},
	    {"h_sum 3.439568", "h_sum", "", 3.439568},
	    {"x{a=\"} {\"} 1", "x", "a=\"} {\"", 1},
	    {"x{a=\"q\\\"}\"} 2", "x", "a=\"q\\\"}\"", 2},
	    {"x 7 1700000000000", "x", "", 7},
	    {"  x\t8\r", "x", "", 8},
	    {"ns:sub_total -1.5e3", "ns:sub_total", "", -1500},
	    {"x{} 9", "x", "", 9},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct top_scrape s = parse(cases[i].line);

		cr_assert_eq(s.n, 1, "%s", cases[i].line);
		cr_assert_eq(s.bad_lines, 0, "%s", cases[i].line);
		cr_assert_str_eq(s.samples[0].name, cases[i].name, "%s", cases[i].line);
		cr_assert_str_eq(s.samples[0].labels, cases[i].labels, "%s", cases[i].line);
		cr_assert_eq(s.samples[0].value, cases[i].value, "%s", cases[i].line);
		top_scrape_free(&s);
	}
}

Test(metrics_text, special_values_inf_and_nan)
{
	struct top_scrape s = parse("a +Inf\nb -Inf\nc NaN\n");

	cr_assert_eq(s.n, 3);
	cr_assert(isinf(s.samples[0].value) && s.samples[0].value > 0);
	cr_assert(isinf(s.samples[1].value) && s.samples[1].value < 0);
	cr_assert(isnan(s.samples[2].value));
	top_scrape_free(&s);
}

Test(metrics_text, comments_and_blank_lines_skipped_broken_lines_counted)
{
	static const char text[] = "# HELP a What a is.\n"
				   "# TYPE a counter\n"
				   "\n"
				   "a 1\n"
				   "b\n"	   /* no value */
				   "c{d=\"e\" 1\n" /* labels never closed */
				   "f 1x\n"	   /* not a number */
				   "g 1 2 3\n"	   /* more than a timestamp */
				   "9h 1\n"	   /* not a name */
				   "i{j=\"k\"}1\n" /* no blank before the value */
				   "l 2";	   /* the last line without a newline */
	struct top_scrape s = parse(text);

	cr_assert_eq(s.n, 2);
	cr_assert_eq(s.bad_lines, 6);
	cr_assert_str_eq(s.samples[0].name, "a");
	cr_assert_eq(s.samples[0].value, 1);
	cr_assert_str_eq(s.samples[1].name, "l");
	cr_assert_eq(s.samples[1].value, 2);
	top_scrape_free(&s);
}

Test(metrics_text, body_need_not_end_in_a_nul)
{
	static const char text[] = {'a', ' ', '1', '2'};
	struct top_scrape s;

	/* only the first three bytes: "a 1" */
	cr_assert_eq(top_scrape_parse(text, 3, &s), 0);
	cr_assert_eq(s.n, 1);
	cr_assert_eq(s.samples[0].value, 1);
	top_scrape_free(&s);
}

Test(metrics_text, find_matches_name_and_the_exact_label_text)
{
	struct top_scrape s = parse("r{rc=\"00\"} 5\nr{rc=\"14\"} 6\nr 7\nrr 8\n");

	cr_assert_eq(top_scrape_find(&s, "r", "rc=\"14\"")->value, 6);
	cr_assert_eq(top_scrape_find(&s, "r", "")->value, 7);
	cr_assert_eq(top_scrape_find(&s, "rr", "")->value, 8);
	cr_assert_null(top_scrape_find(&s, "r", "rc=\"51\""));
	cr_assert_null(top_scrape_find(&s, "q", ""));
	top_scrape_free(&s);
}

struct label_case {
	const char *labels, *key;
	int rc;
	const char *value;
};

Test(metrics_text, label_values_unescaped_missing_and_malformed)
{
	static const struct label_case cases[] = {
	    {"link=\"0\",issuer=\"1\",host=\"127.0.0.1:9100\"", "host", 14, "127.0.0.1:9100"},
	    {"link=\"0\",issuer=\"1\"", "issuer", 1, "1"},
	    {"a=\"x\\\"y\\\\z\\n\"", "a", 6, "x\"y\\z\n"},
	    {"ab=\"1\",a=\"2\"", "a", 1, "2"},
	    {"a=\"\"", "a", 0, ""},
	    {"a=\"1\", b=\"2\"", "b", 1, "2"},
	    {"a=\"1\"", "b", -ENOENT, NULL},
	    {"", "a", -ENOENT, NULL},
	    {"a=1", "a", -EINVAL, NULL},
	    {"a=\"1", "a", -EINVAL, NULL},
	    {"a=\"\\t\"", "a", -EINVAL, NULL},
	    {"a=\"0123456789\"", "a", -ENOSPC, ""},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char buf[8] = "unset";
		char big[64] = "unset";
		const struct label_case *c = &cases[i];
		bool small = c->rc == -ENOSPC;
		int rc = top_label_get(c->labels, c->key, small ? buf : big,
				       small ? sizeof(buf) : sizeof(big));

		cr_assert_eq(rc, c->rc, "%s %s: %d", c->labels, c->key, rc);
		if (c->value)
			cr_assert_str_eq(small ? buf : big, c->value, "%s", c->labels);
	}
}
