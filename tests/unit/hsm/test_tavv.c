/* The token cryptogram of DE48 tag 11: values computed independently by
 * tavv_vectors.py (python3 `cryptography`, the layout written from
 * docs/wire.md; the first also by `openssl mac CMAC`), each changed input
 * refused, the value's parser, and the key rules. */
#include "hsm_test.h"

#define AES128 "000102030405060708090A0B0C0D0E0F"
#define AES256 "F0E0D0C0B0A090807060504030201000F0E0D0C0B0A090807060504030201000"

struct vector {
	const char *name;
	enum tsw_hsm_alg alg;
	const char *key;
	struct tsw_hsm_tavv_input in;
	const char *value; /* counter || MAC, as DE48 tag 11 carries it */
};

#define TOK(s) .token = (s), .token_len = sizeof(s) - 1
#define MER(s) .merchant = (s), .merchant_len = sizeof(s) - 1

static const struct vector vectors[] = {
    {"aes128, DE42 space-padded",
     TSW_HSM_AES128,
     AES128,
     {TOK("4895370000000015"), .amount = "000000012500", .currency = "840", MER("MERCHANT0001   "),
      .counter = 1},
     "000120112E99E6D514D9"},
    {"aes256, no DE49, no DE42, counter FFFF",
     TSW_HSM_AES256,
     AES256,
     {TOK("4895370000000015123"), .amount = "000000000100", .counter = 0xFFFF},
     "FFFF3076111AD757EDB5"},
    {"aes128, 15-character DE42 with a space inside",
     TSW_HSM_AES128,
     AES128,
     {TOK("489537000000"), .amount = "999999999999", .currency = "978", MER("SHOP 42 LONDON1"),
      .counter = 0x0100},
     "010091C4DD363F408683"},
    {"aes256, counter 0",
     TSW_HSM_AES256,
     AES256,
     {TOK("4111111111111111"), .amount = "000000000000", .currency = "036", MER("X"), .counter = 0},
     "00002F0BA237128428CE"},
};
#define NVECTORS (sizeof(vectors) / sizeof(vectors[0]))

struct fixture {
	struct tsw_hsm *h;
	struct tsw_hsm_session *s;
	struct tsw_hsm_key *k;
};

static void open_for(const struct vector *v, struct fixture *f)
{
	cr_assert_eq(tsw_hsm_soft_open(NULL, &f->h), 0);
	cr_assert_eq(tsw_hsm_session_open(f->h, &f->s), 0);
	f->k = import_hex(f->h, TSW_HSM_TAVV, v->alg, v->key);
}

static void close_fixture(struct fixture *f)
{
	tsw_hsm_key_free(f->k);
	tsw_hsm_session_close(f->s);
	tsw_hsm_close(f->h);
}

/* The MAC the value carries (and checks its counter against in). */
static void value_mac(const struct vector *v, uint8_t mac[8])
{
	uint16_t counter = 0;

	cr_assert_eq(tsw_hsm_tavv_parse(v->value, strlen(v->value), &counter, mac), 0);
	cr_assert_eq(counter, v->in.counter, "%s", v->name);
}

Test(tavv, vectors_generate_and_verify)
{
	for (size_t i = 0; i < NVECTORS; i++) {
		const struct vector *v = &vectors[i];
		struct fixture f;
		uint8_t want[8], got[8];

		open_for(v, &f);
		value_mac(v, want);
		cr_assert_eq(tsw_hsm_tavv_generate(f.s, f.k, &v->in, got), 0, "%s", v->name);
		cr_assert_eq(memcmp(got, want, 8), 0, "%s", v->name);
		cr_assert_eq(tsw_hsm_tavv_verify(f.s, f.k, &v->in, want), 0, "%s", v->name);
		close_fixture(&f);
	}
}

Test(tavv, trailing_spaces_of_de42_do_not_count)
{
	const struct vector *v = &vectors[0]; /* DE42 "MERCHANT0001   " */
	struct tsw_hsm_tavv_input trimmed = v->in;
	struct fixture f;
	uint8_t mac[8];

	open_for(v, &f);
	value_mac(v, mac);
	trimmed.merchant_len = strlen("MERCHANT0001");
	cr_assert_eq(tsw_hsm_tavv_verify(f.s, f.k, &trimmed, mac), 0);
	close_fixture(&f);
}

Test(tavv, every_flipped_mac_bit_is_refused)
{
	for (size_t i = 0; i < NVECTORS; i++) {
		const struct vector *v = &vectors[i];
		struct fixture f;
		uint8_t mac[8];

		open_for(v, &f);
		value_mac(v, mac);
		for (unsigned bit = 0; bit < 64; bit++) {
			mac[bit / 8] ^= (uint8_t)(1u << bit % 8);
			cr_assert_eq(tsw_hsm_tavv_verify(f.s, f.k, &v->in, mac), -TSW_E_CRYPTOGRAM,
				     "%s bit %u", v->name, bit);
			mac[bit / 8] ^= (uint8_t)(1u << bit % 8);
		}
		cr_assert_eq(tsw_hsm_tavv_verify(f.s, f.k, &v->in, mac), 0, "%s", v->name);
		close_fixture(&f);
	}
}

Test(tavv, another_amount_currency_merchant_counter_or_token_is_refused)
{
	const struct vector *v = &vectors[0];
	struct tsw_hsm_tavv_input c[8];
	struct fixture f;
	uint8_t mac[8];

	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++)
		c[i] = v->in;
	c[0].amount = "000000012501";
	c[1].currency = "978";
	c[2].currency = NULL; /* "000" */
	c[3].merchant = "MERCHANT0002   ";
	c[4].merchant_len = 0; /* DE42 absent */
	c[5].counter = 2;
	c[6].token = "4895370000000016";
	c[7].token_len = 15; /* the same digits, one fewer */
	open_for(v, &f);
	value_mac(v, mac);
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++)
		cr_assert_eq(tsw_hsm_tavv_verify(f.s, f.k, &c[i], mac), -TSW_E_CRYPTOGRAM,
			     "case %zu", i);
	close_fixture(&f);
}

Test(tavv, another_key_is_refused)
{
	const struct vector *v = &vectors[0];
	struct fixture f;
	struct tsw_hsm_key *other;
	uint8_t mac[8];

	open_for(v, &f);
	value_mac(v, mac);
	other = import_hex(f.h, TSW_HSM_TAVV, TSW_HSM_AES128, "000102030405060708090A0B0C0D0E0E");
	cr_assert_eq(tsw_hsm_tavv_verify(f.s, other, &v->in, mac), -TSW_E_CRYPTOGRAM);
	tsw_hsm_key_free(other);
	close_fixture(&f);
}

Test(tavv, keys_of_other_kinds_and_algorithms_are_refused)
{
	const struct vector *v = &vectors[0];
	struct fixture f;
	struct tsw_hsm_key *zpk, *imk, *k = NULL;
	uint8_t mac[8], b[16] = {1}, block[TSW_HSM_PIN_BLOCK_MAX];

	open_for(v, &f);
	value_mac(v, mac);
	/* the same bytes as a zone PIN key: never a MAC oracle for a PIN key */
	zpk = import_hex(f.h, TSW_HSM_ZPK_ACQUIRER, TSW_HSM_AES128, AES128);
	imk = import_hex(f.h, TSW_HSM_IMK_AC, TSW_HSM_TDES2, AES128);
	cr_assert_eq(tsw_hsm_tavv_verify(f.s, zpk, &v->in, mac), -TSW_E_BAD_INPUT);
	cr_assert_eq(tsw_hsm_tavv_generate(f.s, zpk, &v->in, mac), -TSW_E_BAD_INPUT);
	cr_assert_eq(tsw_hsm_tavv_verify(f.s, imk, &v->in, mac), -TSW_E_BAD_INPUT);
	cr_assert_eq(tsw_hsm_tavv_verify(f.s, NULL, &v->in, mac), -TSW_E_NOT_FOUND);
	/* and a tavv key serves nothing else */
	cr_assert_eq(tsw_hsm_pin_form(f.s, f.k, "4895370000000015", 16, "1234", 4, block),
		     -TSW_E_BAD_INPUT);
	cr_assert_eq(tsw_hsm_retail_mac(f.s, f.k, TSW_HSM_PAD_1, b, 8, mac), -TSW_E_BAD_INPUT);
	/* TDES is no tavv algorithm */
	cr_assert_eq(tsw_hsm_key_import(f.h, TSW_HSM_TAVV, TSW_HSM_TDES2, b, 16, &k),
		     -TSW_E_BAD_INPUT);
	cr_assert_eq(tsw_hsm_key_import(f.h, TSW_HSM_TAVV, TSW_HSM_TDES3, b, 24, &k),
		     -TSW_E_BAD_INPUT);
	cr_assert_null(k);
	tsw_hsm_key_free(zpk);
	tsw_hsm_key_free(imk);
	close_fixture(&f);
}

Test(tavv, bad_digits_and_lengths_are_refused_before_the_key_is_used)
{
	const struct vector *v = &vectors[0];
	struct tsw_hsm_tavv_input c[7];
	struct fixture f;
	uint8_t mac[8] = {0}, untouched[8] = {0};

	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++)
		c[i] = v->in;
	c[0].token = "48953700000000X5";
	c[1].token_len = 0;
	c[2].token_len = 20;
	c[3].amount = "00000001250A";
	c[4].currency = "84 ";
	c[5].merchant_len = 16;
	c[6].merchant = NULL;
	open_for(v, &f);
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		cr_assert_eq(tsw_hsm_tavv_generate(f.s, f.k, &c[i], mac), -TSW_E_BAD_INPUT,
			     "case %zu", i);
		cr_assert_eq(tsw_hsm_tavv_verify(f.s, f.k, &c[i], mac), -TSW_E_BAD_INPUT,
			     "case %zu", i);
	}
	cr_assert_eq(memcmp(mac, untouched, 8), 0, "ret_mac untouched on failure");
	close_fixture(&f);
}

Test(tavv, the_value_parses_in_either_case_and_nothing_else)
{
	static const char *const bad[] = {
	    "000120112E99E6D514D",   /* 19 */
	    "000120112E99E6D514D9F", /* 21 */
	    "000120112E99E6D514DG",  /* not hex */
	    "0001 0112E99E6D514D9",  /* a space */
	    "-00120112E99E6D514D9",
	};
	uint16_t counter = 7;
	uint8_t mac[8] = {0};

	cr_assert_eq(tsw_hsm_tavv_parse("a1b220112e99e6d514d9", 20, &counter, mac), 0);
	cr_assert_eq(counter, 0xA1B2);
	assert_hex(mac, 8, "20112E99E6D514D9");
	cr_assert_eq(tsw_hsm_tavv_parse("A1B220112E99E6D514D9", 20, &counter, mac), 0);
	cr_assert_eq(counter, 0xA1B2);
	assert_hex(mac, 8, "20112E99E6D514D9");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(tsw_hsm_tavv_parse(bad[i], strlen(bad[i]), &counter, mac),
			     -TSW_E_BAD_INPUT, "%s", bad[i]);
		cr_assert_eq(counter, 0xA1B2, "untouched");
	}
	cr_assert_eq(tsw_hsm_tavv_parse(NULL, 20, &counter, mac), -TSW_E_BAD_INPUT);
	/* a length that cuts a valid value short */
	cr_assert_eq(tsw_hsm_tavv_parse("000120112E99E6D514D9", 18, &counter, mac),
		     -TSW_E_BAD_INPUT);
}

Test(tavv, a_key_of_another_backend_is_refused)
{
	const struct vector *v = &vectors[0];
	struct fixture f, g;
	uint8_t mac[8];

	open_for(v, &f);
	open_for(v, &g);
	value_mac(v, mac);
	cr_assert_eq(tsw_hsm_tavv_verify(f.s, g.k, &v->in, mac), -TSW_E_BAD_INPUT);
	cr_assert_eq(tsw_hsm_tavv_verify(g.s, g.k, &v->in, mac), 0);
	close_fixture(&g);
	close_fixture(&f);
}
