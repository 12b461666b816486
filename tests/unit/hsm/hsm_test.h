/* Shared by the hsm unit tests: hex in, an open software backend with a
 * session. */
#ifndef TSW_TEST_HSM_H
#define TSW_TEST_HSM_H

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "tsw/error.h"
#include "tsw/hsm.h"

/* Decodes hex (even length, no spaces) into out; returns the byte count. */
static inline size_t unhex(const char *hex, uint8_t *out, size_t cap)
{
	size_t n = strlen(hex) / 2;

	cr_assert(strlen(hex) % 2 == 0 && n <= cap, "bad test hex %s", hex);
	for (size_t i = 0; i < n; i++) {
		unsigned v;

		cr_assert(sscanf(hex + 2 * i, "%2x", &v) == 1, "bad test hex %s", hex);
		out[i] = (uint8_t)v;
	}
	return n;
}

static inline void tohex(const uint8_t *p, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02X", p[i]);
	out[2 * n] = '\0';
}

/* Asserts that n bytes at p read as hex want. */
#define assert_hex(p, n, want)                                                                     \
	do {                                                                                       \
		char got_[2 * 64 + 1];                                                             \
		tohex((p), (n), got_);                                                             \
		cr_assert_str_eq(got_, (want));                                                    \
	} while (0)

static inline struct tsw_hsm_key *import_hex(struct tsw_hsm *h, enum tsw_hsm_kind kind,
					     enum tsw_hsm_alg alg, const char *hex)
{
	uint8_t b[TSW_HSM_KEY_BYTES_MAX];
	struct tsw_hsm_key *k = NULL;
	size_t n = unhex(hex, b, sizeof(b));
	int r = tsw_hsm_key_import(h, kind, alg, b, n, &k);

	cr_assert_eq(r, 0, "import: %s", tsw_strerror(r));
	return k;
}

/* The Visa CVN 10 vector of shared/vectors/emv/arqc-vectors.md (IMK
 * 0123456789ABCDEFFEDCBA9876543210, PAN 1234567890123456, PSN 00). */
static inline void visa10_input(struct tsw_hsm_arqc_input *in)
{
	memset(in, 0, sizeof(*in));
	in->cvn = TSW_HSM_CVN_VISA_10;
	unhex("000000004000", in->amount, 6);
	unhex("000000000000", in->amount_other, 6);
	unhex("0124", in->country, 2);
	unhex("8000048000", in->tvr, 5);
	unhex("0124", in->currency, 2);
	unhex("191105", in->date, 3);
	in->type = 0x01;
	unhex("52BF4585", in->un, 4);
	unhex("1800", in->aip, 2);
	unhex("001C", in->atc, 2);
	in->cvr_len = (uint8_t)unhex("03A06010", in->cvr, sizeof(in->cvr));
	unhex("29CCA15AE665FA2E", in->arqc, 8);
}

#endif
