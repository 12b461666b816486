/* DE55 -> ARQC inputs: the vectors' data as a real DE55 verifies; every
 * required tag missing or of the wrong length is named; malformed BER-TLV
 * and a 9F10 of another layout are refused. */
#include "hsm_test.h"

#define IMK "0123456789ABCDEFFEDCBA9876543210"
#define PAN "1234567890123456"

struct obj {
	uint32_t tag;
	const char *hex;
};

/* Visa CVN 18 of shared/vectors/emv/arqc-vectors.md, in card order. */
static const struct obj visa18[] = {
    {0x9F26, "7A788EA6B8A3E733"},
    {0x9F27, "80"},
    {0x9F10, "06011203A0B800"},
    {0x9F36, "001C"},
    {0x9F37, "52BF4585"},
    {0x9F02, "000000004000"},
    {0x9F03, "000000000000"},
    {0x9F1A, "0124"},
    {0x95, "8000048000"},
    {0x5F2A, "0124"},
    {0x9A, "191105"},
    {0x9C, "01"},
    {0x82, "1800"},
};
#define N_VISA18 (sizeof(visa18) / sizeof(visa18[0]))

/* Mastercard CVN 16, with 5F34. */
static const struct obj mc16[] = {
    {0x9F26, "24CCF3DEE3158C70"},
    {0x9F27, "80"},
    {0x9F10, "0110A00003220000000000000000000000FF"},
    {0x9F36, "001C"},
    {0x9F37, "ABCDEF12"},
    {0x9F02, "000000009999"},
    {0x9F03, "000000000000"},
    {0x9F1A, "0124"},
    {0x95, "8000000000"},
    {0x5F2A, "0124"},
    {0x9A, "209906"},
    {0x9C, "00"},
    {0x82, "1800"},
    {0x5F34, "00"},
};
#define N_MC16 (sizeof(mc16) / sizeof(mc16[0]))

/* Appends tag, one-byte length, value. */
static void put(uint8_t *buf, size_t *off, uint32_t tag, const uint8_t *v, size_t n)
{
	if (tag > 0xff)
		buf[(*off)++] = (uint8_t)(tag >> 8);
	buf[(*off)++] = (uint8_t)tag;
	buf[(*off)++] = (uint8_t)n;
	memcpy(buf + *off, v, n);
	*off += n;
}

/* Builds DE55 from objs; skip (a tag) leaves one out, shorten cuts one
 * byte off that tag's value. */
static size_t build(const struct obj *objs, size_t n, uint32_t skip, uint32_t shorten, uint8_t *buf)
{
	size_t off = 0;

	for (size_t i = 0; i < n; i++) {
		uint8_t v[64];
		size_t len = unhex(objs[i].hex, v, sizeof(v));

		if (objs[i].tag == skip)
			continue;
		put(buf, &off, objs[i].tag, v, len - (objs[i].tag == shorten));
	}
	return off;
}

static void verify_de55(const uint8_t *de55, size_t len, unsigned cvn, int want)
{
	struct tsw_hsm *h;
	struct tsw_hsm_session *s;
	struct tsw_hsm_key *imk;
	struct tsw_hsm_arqc_input in;

	cr_assert_eq(tsw_hsm_de55_parse(de55, len, cvn, &in, NULL), 0);
	cr_assert_eq(tsw_hsm_soft_open(NULL, &h), 0);
	cr_assert_eq(tsw_hsm_session_open(h, &s), 0);
	imk = import_hex(h, TSW_HSM_IMK_AC, TSW_HSM_TDES2, IMK);
	cr_assert_eq(tsw_hsm_arqc_verify(s, imk, PAN, 16, 0x00, &in), want);
	tsw_hsm_key_free(imk);
	tsw_hsm_session_close(s);
	tsw_hsm_close(h);
}

Test(de55, visa_cvn18_fields_land_where_the_mac_wants_them)
{
	uint8_t de55[256];
	size_t n = build(visa18, N_VISA18, 0, 0, de55);
	struct tsw_hsm_arqc_input in;
	uint32_t tag = 0x1234;

	cr_assert_eq(tsw_hsm_de55_parse(de55, n, 18, &in, &tag), 0);
	cr_assert_eq(tag, 0x1234, "left alone on success");
	cr_assert_eq(in.cvn, 18);
	assert_hex(in.arqc, 8, "7A788EA6B8A3E733");
	cr_assert_eq(in.cid, 0x80);
	assert_hex(in.amount, 6, "000000004000");
	assert_hex(in.tvr, 5, "8000048000");
	assert_hex(in.date, 3, "191105");
	assert_hex(in.un, 4, "52BF4585");
	assert_hex(in.atc, 2, "001C");
	assert_hex(in.iad, in.iad_len, "06011203A0B800");
	assert_hex(in.cvr, in.cvr_len, "03A0B800");
	cr_assert(!in.has_psn);
	verify_de55(de55, n, 18, 0);
}

Test(de55, mastercard_cvn16_with_psn_and_padding_verifies)
{
	uint8_t de55[256];
	size_t n;
	struct tsw_hsm_arqc_input in;

	/* EMV allows 00 padding before and between objects */
	de55[0] = 0x00;
	n = 1 + build(mc16, N_MC16, 0, 0, de55 + 1);
	de55[n++] = 0x00;
	cr_assert_eq(tsw_hsm_de55_parse(de55, n, 16, &in, NULL), 0);
	cr_assert(in.has_psn);
	cr_assert_eq(in.psn, 0x00);
	assert_hex(in.cvr, in.cvr_len, "A00003220000");
	verify_de55(de55, n, 16, 0);
}

Test(de55, a_flipped_arqc_bit_parses_and_fails_verification)
{
	uint8_t de55[256];
	size_t n = build(visa18, N_VISA18, 0, 0, de55);

	de55[3 + 7] ^= 0x01; /* 9F 26 08, last ARQC byte */
	verify_de55(de55, n, 18, -TSW_E_CRYPTOGRAM);
}

Test(de55, each_missing_required_tag_is_named)
{
	for (size_t i = 0; i < N_VISA18; i++) {
		uint8_t de55[256];
		size_t n = build(visa18, N_VISA18, visa18[i].tag, 0, de55);
		struct tsw_hsm_arqc_input in;
		uint32_t tag = 0;

		cr_assert_eq(tsw_hsm_de55_parse(de55, n, 18, &in, &tag), -TSW_E_NOT_FOUND,
			     "without %X", visa18[i].tag);
		cr_assert_eq(tag, visa18[i].tag);
	}
}

/* Every fixed-length tag one byte short; 9F10 varies by card and is short
 * only when it ends before the CVR (iad_shorter_than_its_cvr). */
Test(de55, each_short_tag_is_named)
{
	for (size_t i = 0; i < N_MC16; i++) {
		uint8_t de55[256];
		size_t n = build(mc16, N_MC16, 0, mc16[i].tag, de55);
		struct tsw_hsm_arqc_input in;
		uint32_t tag = 0;

		if (mc16[i].tag == 0x9F10)
			continue;
		cr_assert_eq(tsw_hsm_de55_parse(de55, n, 16, &in, &tag), -TSW_E_BAD_INPUT,
			     "short %X", mc16[i].tag);
		cr_assert_eq(tag, mc16[i].tag);
	}
}

Test(de55, malformed_tlv_is_bad_tlv)
{
	static const char *const bad[] = {
	    "9F2608112233",   /* value past the end */
	    "9F",	      /* tag cut short */
	    "9F2608",	      /* length, no value */
	    "9FFFFFFF0100",   /* a 5-byte tag */
	    "9F268400000008", /* a 4-byte length form */
	    "9F2680",	      /* indefinite length */
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint8_t de55[300];
		size_t n = build(visa18, N_VISA18, 0, 0, de55);
		struct tsw_hsm_arqc_input in;
		uint32_t tag = 0x1234;

		/* malformed after a complete set: the whole field is refused */
		n += unhex(bad[i], de55 + n, sizeof(de55) - n);
		cr_assert_eq(tsw_hsm_de55_parse(de55, n, 18, &in, &tag), -TSW_E_BAD_TLV, "%s",
			     bad[i]);
		cr_assert_eq(tag, 0);
	}
}

Test(de55, iad_of_another_cvn_or_layout_is_refused)
{
	uint8_t de55[256];
	size_t n = build(visa18, N_VISA18, 0, 0, de55);
	struct tsw_hsm_arqc_input in;
	uint32_t tag = 0;

	/* the token record says CVN 10 or a Mastercard CVN: 9F10 disagrees */
	cr_assert_eq(tsw_hsm_de55_parse(de55, n, 10, &in, &tag), -TSW_E_BAD_INPUT);
	cr_assert_eq(tag, 0x9F10);
	cr_assert_eq(tsw_hsm_de55_parse(de55, n, 20, &in, &tag), -TSW_E_BAD_INPUT);
	cr_assert_eq(tag, 0x9F10);
	n = build(mc16, N_MC16, 0, 0, de55);
	cr_assert_eq(tsw_hsm_de55_parse(de55, n, 18, &in, &tag), -TSW_E_BAD_INPUT);
	cr_assert_eq(tag, 0x9F10);
	tag = 0;
	cr_assert_eq(tsw_hsm_de55_parse(de55, n, 17, &in, &tag), -TSW_E_BAD_INPUT, "no CVN 17");
}

Test(de55, iad_shorter_than_its_cvr_is_refused)
{
	uint8_t de55[300];
	size_t n = build(mc16, N_MC16, 0x9F10, 0, de55);
	struct tsw_hsm_arqc_input in;
	uint32_t tag = 0;

	/* DKI, CVN, 5 of the 6 CVR bytes */
	put(de55, &n, 0x9F10, (const uint8_t *)"\x01\x10\xA0\x00\x03\x22\x00", 7);
	cr_assert_eq(tsw_hsm_de55_parse(de55, n, 16, &in, &tag), -TSW_E_BAD_INPUT);
	cr_assert_eq(tag, 0x9F10);
	n = build(visa18, N_VISA18, 0x9F10, 0, de55);
	put(de55, &n, 0x9F10, (const uint8_t *)"\x06\x01\x12\x03\xA0\xB8", 6);
	tag = 0;
	cr_assert_eq(tsw_hsm_de55_parse(de55, n, 18, &in, &tag), -TSW_E_BAD_INPUT);
	cr_assert_eq(tag, 0x9F10);
}

Test(de55, iad_above_32_bytes_and_non_bcd_psn_are_refused)
{
	uint8_t de55[300], big[33] = {0x01, 0x10};
	size_t n = build(mc16, N_MC16, 0x9F10, 0, de55);
	struct tsw_hsm_arqc_input in;
	uint32_t tag = 0;

	put(de55, &n, 0x9F10, big, sizeof(big));
	cr_assert_eq(tsw_hsm_de55_parse(de55, n, 16, &in, &tag), -TSW_E_BAD_INPUT);
	cr_assert_eq(tag, 0x9F10);
	n = build(mc16, N_MC16, 0x5F34, 0, de55);
	put(de55, &n, 0x5F34, (const uint8_t *)"\x1A", 1);
	cr_assert_eq(tsw_hsm_de55_parse(de55, n, 16, &in, &tag), -TSW_E_BAD_INPUT);
	cr_assert_eq(tag, 0x5F34);
}

Test(de55, a_repeated_tag_is_refused_and_named)
{
	uint8_t de55[300];
	size_t n = build(visa18, N_VISA18, 0, 0, de55);
	struct tsw_hsm_arqc_input in;
	uint32_t tag = 0;

	put(de55, &n, 0x9F36, (const uint8_t *)"\x00\x1D", 2);
	cr_assert_eq(tsw_hsm_de55_parse(de55, n, 18, &in, &tag), -TSW_E_BAD_INPUT);
	cr_assert_eq(tag, 0x9F36);
}

/* tsw_hsm_de55_build (the card side of the test tools) gives back what
 * parse read, 5F34 only when present, and refuses what does not fit. */
Test(de55, build_is_the_inverse_of_parse)
{
	const struct {
		const struct obj *objs;
		size_t n;
		unsigned cvn;
	} cases[] = {{visa18, N_VISA18, 18}, {mc16, N_MC16, 16}};
	uint8_t de55[256], again[256];

	for (size_t c = 0; c < 2; c++) {
		struct tsw_hsm_arqc_input in, back;
		size_t len = build(cases[c].objs, cases[c].n, 0, 0, de55);
		int n;

		cr_assert_eq(tsw_hsm_de55_parse(de55, len, cases[c].cvn, &in, NULL), 0);
		n = tsw_hsm_de55_build(&in, again, sizeof(again));
		cr_assert_eq(n, (int)len, "the same tags, the same bytes in all");
		cr_assert_eq(tsw_hsm_de55_parse(again, (size_t)n, cases[c].cvn, &back, NULL), 0);
		cr_assert_eq(memcmp(&in, &back, sizeof(in)), 0, "case %zu", c);
		cr_assert_eq(tsw_hsm_de55_build(&in, again, (size_t)n - 1), -TSW_E_NO_SPACE);
	}
	{
		struct tsw_hsm_arqc_input in = {.iad_len = 0};

		cr_assert_eq(tsw_hsm_de55_build(&in, again, sizeof(again)), -TSW_E_BAD_INPUT);
		in.iad_len = TSW_HSM_IAD_MAX + 1;
		cr_assert_eq(tsw_hsm_de55_build(&in, again, sizeof(again)), -TSW_E_BAD_INPUT);
	}
}
