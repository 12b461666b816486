/* The Luhn (mod 10) check of card numbers and tokens: one implementation
 * for the whole switch (authz checks tokens, the vault checks imports and
 * draws tokens, tools and tests make numbers). Pure, no allocation. */
#ifndef TSW_LUHN_H
#define TSW_LUHN_H

#include <stdbool.h>
#include <stddef.h>

/* True when digits[0..len) are all ASCII digits, len >= 2, and the last
 * one is the right Luhn check digit for the others. digits need not be
 * NUL-terminated; NULL is false. Constant work per digit, never fails. */
bool tsw_luhn_valid(const char *digits, size_t len);

/* The check digit ('0'..'9') that, appended to digits[0..len), makes a
 * Luhn-valid number. Returns '\0' when len is 0, digits is NULL, or a
 * character is not an ASCII digit. */
char tsw_luhn_check_digit(const char *digits, size_t len);

#endif
