#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "tsw/error.h"
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

Test(log, level_parse)
{
	enum tsw_log_level l = TSW_LOG_MAX;

	cr_assert_eq(tsw_log_level_parse("warn", &l), 0);
	cr_assert_eq(l, TSW_LOG_WARN);
	cr_assert_eq(tsw_log_level_parse("loud", &l), -TSW_E_CONFIG);
	cr_assert_eq(l, TSW_LOG_WARN, "untouched on failure");
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
