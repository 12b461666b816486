#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "tsw/error.h"
#include "tsw/log.h"

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

Test(log, level_parse)
{
	enum tsw_log_level l = TSW_LOG_MAX;

	cr_assert_eq(tsw_log_level_parse("warn", &l), 0);
	cr_assert_eq(l, TSW_LOG_WARN);
	cr_assert_eq(tsw_log_level_parse("loud", &l), -TSW_E_CONFIG);
	cr_assert_eq(l, TSW_LOG_WARN, "untouched on failure");
}
