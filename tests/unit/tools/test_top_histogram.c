/* tokswitch-top's histogram quantiles: the buckets of a scrape, the
 * difference of two scrapes, and Prometheus' histogram_quantile()
 * interpolation, on bucket counts whose answers are exact. */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <string.h>

#include "histogram.h"

/* 1, 2, 5 and +Inf */
static struct top_hist hist(double c1, double c2, double c5, double cinf)
{
	struct top_hist h = {.n = 4};

	h.b[0] = (struct top_bucket){1, c1};
	h.b[1] = (struct top_bucket){2, c2};
	h.b[2] = (struct top_bucket){5, c5};
	h.b[3] = (struct top_bucket){INFINITY, cinf};
	return h;
}

struct quantile_case {
	const char *rule;
	double c1, c2, c5, cinf, q, want;
};

Test(histogram, quantile_interpolates_inside_the_bucket_that_holds_the_rank)
{
	static const struct quantile_case cases[] = {
	    {"rank in the first bucket: from 0 to its le", 8, 8, 8, 8, 0.5, 0.5},
	    {"rank 20 of 40 in (1,2]: halfway", 10, 30, 40, 40, 0.5, 1.5},
	    {"rank at a bucket's top: its le", 10, 30, 40, 40, 0.75, 2},
	    {"rank 36 of 40 in (2,5]: 6 of 10 past 30", 10, 30, 40, 40, 0.9, 3.8},
	    {"rank in +Inf: the highest finite le", 0, 0, 10, 20, 0.99, 5},
	    {"every observation in +Inf", 0, 0, 0, 4, 0.5, 5},
	    {"rank 2 of 4 in (2,5] after empty buckets", 0, 0, 4, 4, 0.5, 3.5},
	    {"q 1: the le of the last bucket holding any", 2, 4, 4, 4, 1, 2},
	    {"q 0: the lower bound of the first", 2, 4, 4, 4, 0, 0},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct quantile_case *c = &cases[i];
		struct top_hist h = hist(c->c1, c->c2, c->c5, c->cinf);

		cr_assert_float_eq(top_hist_quantile(&h, c->q), c->want, 1e-12, "%s: %g", c->rule,
				   top_hist_quantile(&h, c->q));
	}
}

Test(histogram, quantile_without_observations_or_a_bad_q_is_nan)
{
	struct top_hist empty = hist(0, 0, 0, 0), none = {.n = 0}, h = hist(1, 1, 1, 1);

	cr_assert(isnan(top_hist_quantile(&empty, 0.5)));
	cr_assert(isnan(top_hist_quantile(&none, 0.5)));
	cr_assert(isnan(top_hist_quantile(&h, 1.5)));
	cr_assert(isnan(top_hist_quantile(&h, -0.1)));
}

Test(histogram, delta_is_what_happened_between_the_scrapes)
{
	struct top_hist before = hist(100, 100, 100, 100), now = hist(100, 110, 140, 140), d;

	/* cumulative: p50 in the first bucket; the interval's 40 are all
	 * above 1: 10 in (1,2], 30 in (2,5] */
	cr_assert_float_eq(top_hist_quantile(&now, 0.5), 0.7, 1e-12);
	cr_assert_eq(top_hist_delta(&now, &before, &d), 0);
	cr_assert_eq(d.n, 4);
	cr_assert_eq(d.b[0].count, 0);
	cr_assert_eq(d.b[1].count, 10);
	cr_assert_eq(d.b[2].count, 40);
	cr_assert_eq(d.b[3].count, 40);
	cr_assert_float_eq(top_hist_quantile(&d, 0.5), 3, 1e-12);
	cr_assert_float_eq(top_hist_quantile(&d, 0.25), 2, 1e-12);
}

Test(histogram, delta_refused_after_a_restart_or_other_bounds)
{
	struct top_hist before = hist(5, 6, 7, 8), restarted = hist(1, 2, 3, 4);
	struct top_hist other = hist(5, 6, 7, 8), d = {.n = 99};

	cr_assert_eq(top_hist_delta(&restarted, &before, &d), -ERANGE);
	other.b[1].le = 3;
	cr_assert_eq(top_hist_delta(&other, &before, &d), -EINVAL);
	other = hist(5, 6, 7, 8);
	other.n = 3;
	cr_assert_eq(top_hist_delta(&other, &before, &d), -EINVAL);
	cr_assert_eq(d.n, 99, "untouched on error");
}

static struct top_scrape parse(const char *text)
{
	struct top_scrape s;

	cr_assert_eq(top_scrape_parse(text, strlen(text), &s), 0);
	return s;
}

Test(histogram, read_sorts_buckets_and_needs_plus_inf)
{
	struct top_scrape s = parse("# TYPE t histogram\n"
				    "t_bucket{le=\"+Inf\"} 9\n"
				    "t_bucket{le=\"5e-07\"} 1\n"
				    "t_bucket{le=\"1e-06\"} 4\n"
				    "t_sum 0.1\nt_count 9\n"
				    "u_bucket{le=\"1\"} 3\n");
	struct top_hist h;

	cr_assert_eq(top_hist_read(&s, "t", &h), 0);
	cr_assert_eq(h.n, 3);
	cr_assert_eq(h.b[0].le, 5e-07);
	cr_assert_eq(h.b[0].count, 1);
	cr_assert_eq(h.b[1].le, 1e-06);
	cr_assert_eq(h.b[1].count, 4);
	cr_assert(isinf(h.b[2].le));
	cr_assert_eq(h.b[2].count, 9);
	cr_assert_eq(top_hist_read(&s, "u", &h), -EINVAL, "no +Inf bucket");
	cr_assert_eq(top_hist_read(&s, "v", &h), -ENOENT);
	top_scrape_free(&s);
}

Test(histogram, read_refuses_malformed_buckets)
{
	static const char *bad[] = {
	    "t_bucket{le=\"1\"} 5\nt_bucket{le=\"+Inf\"} 4\n", /* counts fall */
	    "t_bucket{le=\"1\"} 1\nt_bucket{le=\"1\"} 2\nt_bucket{le=\"+Inf\"} 2\n", /* twice */
	    "t_bucket{le=\"x\"} 1\nt_bucket{le=\"+Inf\"} 2\n",		  /* not a number */
	    "t_bucket{path=\"/\",le=\"1\"} 1\nt_bucket{le=\"+Inf\"} 2\n", /* other labels */
	    "t_bucket 1\nt_bucket{le=\"+Inf\"} 2\n",			  /* no le */
	};
	struct top_hist h;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct top_scrape s = parse(bad[i]);

		cr_assert_eq(top_hist_read(&s, "t", &h), -EINVAL, "%s", bad[i]);
		top_scrape_free(&s);
	}
}
