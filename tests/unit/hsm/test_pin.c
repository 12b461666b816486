/* ISO 9564-1 PIN blocks. The expected blocks were computed independently
 * with python3 `cryptography` by tests/unit/hsm/pin_vectors.py, which
 * builds each block from the standard's layout:
 *   format 0: PIN field 0 N PIN F..F, xor PAN field 0000 + the 12 rightmost
 *             PAN digits before the check digit, TDES-ECB;
 *   format 4: PIN field 4 N PIN A..A + 8 random bytes (fixed here: 1122..88),
 *             AES(PIN field) xor PAN field (M = len - 12, PAN, 0-filled),
 *             then AES again.
 * The first format 0 block was also checked by hand: 041234FFFFFFFFFF xor
 * 0000537000000001 | openssl enc -des-ede -K 0123..3210 -nopad gives
 * 0FBB81283B1EAB0C. */
#include "hsm_test.h"
#include "internal.h"

#define ZPK_A "0123456789ABCDEFFEDCBA9876543210"
#define ZPK_I "89ABCDEF0123456776543210FEDCBA98"
#define ZPK_A3 "0123456789ABCDEFFEDCBA98765432101122334455667788"
#define AES_A "000102030405060708090A0B0C0D0E0F"
#define AES_I "F0E0D0C0B0A090807060504030201000F0E0D0C0B0A090807060504030201000"
#define TOKEN "4895370000000015"
#define PAN "4111111111111111"
#define FILL "1122334455667788"

static struct tsw_hsm *h;
static struct tsw_hsm_session *s;
static struct tsw_hsm_key *zpk_a, *zpk_i, *zpk_a3, *aes_a, *aes_i;

static void setup(void)
{
	cr_assert_eq(tsw_hsm_soft_open(NULL, &h), 0);
	cr_assert_eq(tsw_hsm_session_open(h, &s), 0);
	zpk_a = import_hex(h, TSW_HSM_ZPK_ACQUIRER, TSW_HSM_TDES2, ZPK_A);
	zpk_i = import_hex(h, TSW_HSM_ZPK_ISSUER, TSW_HSM_TDES2, ZPK_I);
	zpk_a3 = import_hex(h, TSW_HSM_ZPK_ACQUIRER, TSW_HSM_TDES3, ZPK_A3);
	aes_a = import_hex(h, TSW_HSM_ZPK_ACQUIRER, TSW_HSM_AES128, AES_A);
	aes_i = import_hex(h, TSW_HSM_ZPK_ISSUER, TSW_HSM_AES256, AES_I);
}

static void teardown(void)
{
	tsw_hsm_key_free(zpk_a);
	tsw_hsm_key_free(zpk_i);
	tsw_hsm_key_free(zpk_a3);
	tsw_hsm_key_free(aes_a);
	tsw_hsm_key_free(aes_i);
	tsw_hsm_session_close(s);
	tsw_hsm_close(h);
}

TestSuite(pin, .init = setup, .fini = teardown);

struct pin_vec {
	struct tsw_hsm_key **k;
	const char *pan, *pin, *block;
};

static const struct pin_vec f0[] = {
    {&zpk_a, TOKEN, "1234", "0FBB81283B1EAB0C"},
    {&zpk_i, PAN, "1234", "58B583E21EEB26B5"},
    {&zpk_i, PAN, "123456789012", "5C00582B292417CE"},
    {&zpk_a3, "6011000990139424123", "98765", "D2C9E111D7BF354C"},
};

static const struct pin_vec f4[] = {
    {&aes_a, TOKEN, "1234", "08E6EE8896D7160468B35521AD0895ED"},
    {&aes_i, PAN, "1234", "DC12E96BBF21F19B791E21A5D42BBA07"},
    {&aes_a, "6011000990139424123", "98765", "45E1E0BC16C0C7CAB09E5E379B78954A"},
    {&aes_a, "411111111111", "1234", "E00D0F0A0C2B8252D269D3662E9D4493"},
};

Test(pin, format0_vectors_form_and_verify)
{
	for (size_t i = 0; i < sizeof(f0) / sizeof(f0[0]); i++) {
		uint8_t out[16], block[16];
		size_t plen = strlen(f0[i].pan), n = strlen(f0[i].pin);

		cr_assert_eq(tsw_hsm_pin_block_len(*f0[i].k), 8);
		cr_assert_eq(tsw_hsm_pin_form(s, *f0[i].k, f0[i].pan, plen, f0[i].pin, n, out), 0);
		assert_hex(out, 8, f0[i].block);
		unhex(f0[i].block, block, sizeof(block));
		cr_assert_eq(tsw_hsm_pin_verify(s, *f0[i].k, f0[i].pan, plen, block, f0[i].pin, n),
			     0);
		cr_assert_eq(tsw_hsm_pin_verify(s, *f0[i].k, f0[i].pan, plen, block, "9999", 4),
			     -TSW_E_PIN_FORMAT, "another PIN");
	}
}

Test(pin, format4_vectors_form_and_verify)
{
	for (size_t i = 0; i < sizeof(f4) / sizeof(f4[0]); i++) {
		uint8_t out[16], again[16], block[16], fill[8];
		size_t plen = strlen(f4[i].pan), n = strlen(f4[i].pin);

		cr_assert_eq(tsw_hsm_pin_block_len(*f4[i].k), 16);
		unhex(FILL, fill, sizeof(fill));
		cr_assert_eq(tsw_hsm_soft_pin_form4_fill(s, *f4[i].k, f4[i].pan, plen, f4[i].pin, n,
							 fill, out),
			     0);
		assert_hex(out, 16, f4[i].block);
		unhex(f4[i].block, block, sizeof(block));
		cr_assert_eq(tsw_hsm_pin_verify(s, *f4[i].k, f4[i].pan, plen, block, f4[i].pin, n),
			     0);
		cr_assert_eq(tsw_hsm_pin_verify(s, *f4[i].k, f4[i].pan, plen, block, "9999", 4),
			     -TSW_E_PIN_FORMAT);
		/* the public form draws its fill: two blocks differ, both hold the PIN */
		cr_assert_eq(tsw_hsm_pin_form(s, *f4[i].k, f4[i].pan, plen, f4[i].pin, n, out), 0);
		cr_assert_eq(tsw_hsm_pin_form(s, *f4[i].k, f4[i].pan, plen, f4[i].pin, n, again),
			     0);
		cr_assert(memcmp(out, again, 16) != 0);
		cr_assert_eq(tsw_hsm_pin_verify(s, *f4[i].k, f4[i].pan, plen, out, f4[i].pin, n),
			     0);
		cr_assert_eq(tsw_hsm_pin_verify(s, *f4[i].k, f4[i].pan, plen, again, f4[i].pin, n),
			     0);
	}
}

Test(pin, format0_translation_token_to_pan_matches_the_independent_block)
{
	uint8_t in[16], out[16];

	/* the acquirer's block, formed with the token under its ZPK, becomes
	 * exactly the block python formed with the PAN under the issuer's */
	unhex("0FBB81283B1EAB0C", in, sizeof(in));
	cr_assert_eq(tsw_hsm_pin_translate(s, zpk_a, TOKEN, 16, zpk_i, PAN, 16, in, out), 0);
	assert_hex(out, 8, "58B583E21EEB26B5");
	/* in place, and into a 3-key ZPK and back */
	cr_assert_eq(tsw_hsm_pin_translate(s, zpk_a, TOKEN, 16, zpk_a3, PAN, 16, in, in), 0);
	cr_assert_eq(tsw_hsm_pin_translate(s, zpk_a3, PAN, 16, zpk_i, PAN, 16, in, in), 0);
	assert_hex(in, 8, "58B583E21EEB26B5");
}

Test(pin, format4_translation_token_to_pan_keeps_the_pin_with_a_fresh_fill)
{
	uint8_t in[16], out[16], fixed[16];

	unhex("08E6EE8896D7160468B35521AD0895ED", in, sizeof(in));
	cr_assert_eq(tsw_hsm_pin_translate(s, aes_a, TOKEN, 16, aes_i, PAN, 16, in, out), 0);
	cr_assert_eq(tsw_hsm_pin_verify(s, aes_i, PAN, 16, out, "1234", 4), 0);
	cr_assert_eq(tsw_hsm_pin_verify(s, aes_a, TOKEN, 16, out, "1234", 4), -TSW_E_PIN_FORMAT,
		     "no longer the acquirer's block");
	/* python's block for the PAN under the issuer key with the old fill:
	 * the translation drew a new one */
	unhex("DC12E96BBF21F19B791E21A5D42BBA07", fixed, sizeof(fixed));
	cr_assert(memcmp(out, fixed, 16) != 0);
}

Test(pin, translation_errors_by_reason)
{
	uint8_t in[16], out[16] = {0}, zero[16] = {0};

	unhex("0FBB81283B1EAB0C", in, sizeof(in));
	cr_assert_eq(tsw_hsm_pin_translate(s, NULL, TOKEN, 16, zpk_i, PAN, 16, in, out),
		     -TSW_E_NOT_FOUND, "no acquirer key");
	cr_assert_eq(tsw_hsm_pin_translate(s, zpk_a, TOKEN, 16, NULL, PAN, 16, in, out),
		     -TSW_E_NOT_FOUND, "no issuer key");
	/* formed with another token: the PAN-free half is fine, the rest not */
	cr_assert_eq(
	    tsw_hsm_pin_translate(s, zpk_a, "4895370000000023", 16, zpk_i, PAN, 16, in, out),
	    -TSW_E_PIN_PAN);
	/* the wrong key garbles the whole block; a random block passes the
	 * first four nibbles about once in 70 and this one does not */
	cr_assert_eq(tsw_hsm_pin_translate(s, zpk_i, TOKEN, 16, zpk_a, PAN, 16, in, out),
		     -TSW_E_PIN_FORMAT);
	cr_assert_eq(tsw_hsm_pin_translate(s, zpk_a, TOKEN, 16, aes_i, PAN, 16, in, out),
		     -TSW_E_BAD_INPUT, "format 0 stays 0");
	cr_assert_eq(tsw_hsm_pin_translate(s, zpk_a, TOKEN, 11, zpk_i, PAN, 16, in, out),
		     -TSW_E_BAD_INPUT, "11 digits");
	cr_assert_eq(
	    tsw_hsm_pin_translate(s, zpk_a, TOKEN, 16, zpk_i, "41111111111X1111", 16, in, out),
	    -TSW_E_BAD_INPUT);
	cr_assert(memcmp(out, zero, 16) == 0, "out untouched on failure");

	unhex("08E6EE8896D7160468B35521AD0895ED", in, sizeof(in));
	cr_assert_eq(
	    tsw_hsm_pin_translate(s, aes_a, "4895370000000023", 16, aes_i, PAN, 16, in, out),
	    -TSW_E_PIN_FORMAT, "format 4 cannot tell a PAN");
	cr_assert_eq(tsw_hsm_pin_translate(s, aes_a, TOKEN, 16, zpk_i, PAN, 16, in, out),
		     -TSW_E_BAD_INPUT, "format 4 stays 4");
}

Test(pin, malformed_clear_fields_by_reason)
{
	/* pin_vectors.py: each clear field xor the token's PAN field, encrypted */
	static const struct {
		struct tsw_hsm_key **k;
		const char *clear, *block;
		int err;
	} cases[] = {
	    {&zpk_a, "141234FFFFFFFFFF", "AB7AA04FA134CF6C", -TSW_E_PIN_FORMAT}, /* control 1 */
	    {&zpk_a, "031234FFFFFFFFFF", "BF491B5A95F73442", -TSW_E_PIN_FORMAT}, /* 3 digits */
	    {&zpk_a, "0D1234FFFFFFFFFF", "BA6ACE183993E457", -TSW_E_PIN_FORMAT}, /* 13 digits */
	    {&zpk_a, "041A34FFFFFFFFFF", "CA058ED7B857A230", -TSW_E_PIN_FORMAT}, /* A in PIN 1-2 */
	    /* past nibble 3 the PAN field is mixed in: read as another PAN */
	    {&zpk_a, "041234FFFFFFFFFE", "7FFBEA2D3A1F95EC", -TSW_E_PIN_PAN},
	    {&zpk_a, "04123AFFFFFFFFFF", "7DBAB1B7A4B38D7A", -TSW_E_PIN_PAN},
	    {&aes_a, "341234AAAAAAAAAA" FILL, "1B48ECD2BB7F4E8DC66C6408C33AE3DF",
	     -TSW_E_PIN_FORMAT},
	    {&aes_a, "4D1234AAAAAAAAAA" FILL, "3211C45A2752A066DF32DD1D6640D4BA",
	     -TSW_E_PIN_FORMAT},
	    {&aes_a, "441234AAAAAAAAAB" FILL, "B27BFE752E0FA0FDF9D4DBF03DAC3EF8",
	     -TSW_E_PIN_FORMAT},
	    {&aes_a, "44123AAAAAAAAAAA" FILL, "F18D8FB83DD9E130217EF5B945180859",
	     -TSW_E_PIN_FORMAT},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t in[16], out[16];
		struct tsw_hsm_key *dst = *cases[i].k == zpk_a ? zpk_i : aes_i;

		unhex(cases[i].block, in, sizeof(in));
		cr_assert_eq(
		    tsw_hsm_pin_translate(s, *cases[i].k, TOKEN, 16, dst, PAN, 16, in, out),
		    cases[i].err, "%s", cases[i].clear);
		cr_assert_eq(tsw_hsm_pin_verify(s, *cases[i].k, TOKEN, 16, in, "1234", 4),
			     cases[i].err, "%s", cases[i].clear);
	}
}

Test(pin, keys_that_are_no_zone_pin_keys_are_refused)
{
	struct tsw_hsm_key *imk = import_hex(h, TSW_HSM_IMK_AC, TSW_HSM_TDES2, ZPK_A);
	uint8_t out[16];

	cr_assert_eq(tsw_hsm_pin_form(s, imk, PAN, 16, "1234", 4, out), -TSW_E_BAD_INPUT);
	cr_assert_eq(tsw_hsm_pin_form(s, zpk_a, PAN, 16, "123", 3, out), -TSW_E_BAD_INPUT);
	cr_assert_eq(tsw_hsm_pin_form(s, zpk_a, PAN, 16, "1234567890123", 13, out),
		     -TSW_E_BAD_INPUT);
	tsw_hsm_key_free(imk);
}
