/* Private to src/iso8583: character classes of the field types. */
#ifndef TSW_ISO8583_CHARCLASS_H
#define TSW_ISO8583_CHARCLASS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

enum {
	CC_DIGIT = 1 << 0, /* 0-9 */
	CC_AN = 1 << 1,	   /* letters, digits, space */
	CC_ANS = 1 << 2,   /* printable 0x20-0x7e */
	CC_Z = 1 << 3,	   /* digits, '=', 'D' */
	CC_HEX = 1 << 4,   /* 0-9 A-F a-f */
};

extern const uint8_t tsw_iso_charclass[256];

/* Returns 1 when every byte of p[0..n) is in class mask. */
static inline int cc_all(const uint8_t *p, size_t n, uint8_t mask)
{
	uint8_t acc = mask;

	for (size_t i = 0; i < n; i++)
		acc &= tsw_iso_charclass[p[i]];
	return acc == mask;
}

/* Word-at-a-time checks for the two classes that cover most bytes of a
 * message (n and ans). Loads overlap at the tail; nothing is read outside
 * p[0..n). */
#define SWAR_ONES 0x0101010101010101ull
#define SWAR_HIGHS 0x8080808080808080ull

static inline uint64_t load_u64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static inline uint32_t load_u32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

/* 1 when all 8 bytes are '0'..'9' (0x30..0x39): high nibble 3, and adding
 * 6 keeps it 3 (no carry can cross bytes once every high nibble is 3) */
static inline int digits8(uint64_t v)
{
	const uint64_t hi = 0xf0f0f0f0f0f0f0f0ull, th = 0x3030303030303030ull;

	return (v & hi) == th && ((v + 6 * SWAR_ONES) & hi) == th;
}

static inline int digits4(uint32_t v)
{
	return (v & 0xf0f0f0f0u) == 0x30303030u && ((v + 0x06060606u) & 0xf0f0f0f0u) == 0x30303030u;
}

/* 1 when all 8 bytes are printable 0x20..0x7e: no byte below 0x20 and no
 * byte above 0x7e (the classic exact "has less"/"has more" tests) */
static inline int printable8(uint64_t v)
{
	uint64_t less = (v - 0x20 * SWAR_ONES) & ~v & SWAR_HIGHS;
	uint64_t more = ((v + (127 - 0x7e) * SWAR_ONES) | v) & SWAR_HIGHS;

	return (less | more) == 0;
}

static inline int cc_digits(const uint8_t *p, size_t n)
{
	size_t i = 0;

	if (n >= 8) {
		for (; i + 8 <= n; i += 8)
			if (!digits8(load_u64(p + i)))
				return 0;
		return i == n || digits8(load_u64(p + n - 8));
	}
	if (n >= 4)
		return digits4(load_u32(p)) && digits4(load_u32(p + n - 4));
	return cc_all(p, n, CC_DIGIT);
}

static inline int cc_printable(const uint8_t *p, size_t n)
{
	size_t i = 0;

	if (n >= 8) {
		for (; i + 8 <= n; i += 8)
			if (!printable8(load_u64(p + i)))
				return 0;
		return i == n || printable8(load_u64(p + n - 8));
	}
	return cc_all(p, n, CC_ANS);
}

#endif
