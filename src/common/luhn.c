/* Luhn (mod 10): from the rightmost digit leftwards, every second digit
 * doubled (its two decimal digits summed), the total a multiple of 10. */
#include <stdint.h>

#include "tsw/luhn.h"

/* doubled[d] is 2d with its decimal digits summed */
static const uint8_t doubled[10] = {0, 2, 4, 6, 8, 1, 3, 5, 7, 9};

/* Luhn sum of p[0..len) where the rightmost digit is doubled when
 * double_last; -1 when a character is not a digit. */
static int luhn_sum(const unsigned char *p, size_t len, bool double_last)
{
	unsigned sum = 0, bad = 0;
	bool dbl = double_last;

	for (size_t i = len; i > 0; i--) {
		unsigned d = (unsigned)p[i - 1] - '0';

		bad |= d > 9;
		sum += dbl ? doubled[d > 9 ? 0 : d] : (d > 9 ? 0 : d);
		dbl = !dbl;
	}
	return bad ? -1 : (int)(sum % 10);
}

bool tsw_luhn_valid(const char *digits, size_t len)
{
	if (!digits || len < 2)
		return false;
	return luhn_sum((const unsigned char *)digits, len, false) == 0;
}

char tsw_luhn_check_digit(const char *digits, size_t len)
{
	int sum;

	if (!digits || len == 0)
		return '\0';
	/* the check digit will be the rightmost one: the payload's last digit
	 * is doubled */
	sum = luhn_sum((const unsigned char *)digits, len, true);
	if (sum < 0)
		return '\0';
	return (char)('0' + (10 - sum) % 10);
}
