/* EMV cryptograms: every vector of shared/vectors/emv/arqc-vectors.md
 * (pyemv's test suite, cross-checked there against an HSM), exactly; one
 * flipped bit anywhere in the inputs fails verification; the retail MAC
 * on ISO/IEC 9797-1's own examples. Each vector runs on two software
 * backends: with the ICC master key cache and without it. */
#include "hsm_test.h"

#define IMK "0123456789ABCDEFFEDCBA9876543210"
#define PAN "1234567890123456"

struct vec {
	unsigned cvn;
	const char *amount, *other, *country, *tvr, *currency, *date, *type, *un, *aip, *atc;
	const char *cvr, *iad;
	const char *sk_kcv; /* first 2 bytes; NULL: CVN 10 has no session key */
	const char *arqc;
	const char *arc, *csu; /* ARPC inputs: method 1 ARC, method 2 CSU */
	const char *tag91;     /* the whole tag 91 value */
};

/* clang-format off */
#define VISA_COMMON "000000004000", "000000000000", "0124", "8000048000", "0124", "191105", \
		    "01", "52BF4585", "1800", "001C"
#define MC_COMMON "000000009999", "000000000000", "0124", "8000000000", "0124", "209906", \
		  "00", "ABCDEF12", "1800", "001C"

/*                                  cvn  inputs       CVR             9F10 (CVN 10: Visa layout, made up)
 *                                  session KCV  ARQC  ARC  CSU  tag 91 */
static const struct vec visa10 = {10, VISA_COMMON, "03A06010", "06010A03A06010",
				  NULL, "29CCA15AE665FA2E", "3030", NULL, "28993816AFAE4AEB" "3030"};
static const struct vec visa18 = {18, VISA_COMMON, "03A0B800", "06011203A0B800",
				  "22C8", "7A788EA6B8A3E733", NULL, "00000000", "9AF514C1" "00000000"};
static const struct vec mc16 = {16, MC_COMMON, "A00003220000", "0110A00003220000000000000000000000FF",
				"2FD5", "24CCF3DEE3158C70", "0010", NULL, "73F6BBF389A6586C" "0010"};
static const struct vec mc20 = {20, MC_COMMON, "A00003220000", "0114A00003220000000000000000000000FF",
				"22C8", "CD29615D6452E70E", "0010", NULL, "DFD0956606B68D64" "0010"};
/* clang-format on */

static void input(const struct vec *v, struct tsw_hsm_arqc_input *in)
{
	memset(in, 0, sizeof(*in));
	in->cvn = (uint8_t)v->cvn;
	unhex(v->amount, in->amount, 6);
	unhex(v->other, in->amount_other, 6);
	unhex(v->country, in->country, 2);
	unhex(v->tvr, in->tvr, 5);
	unhex(v->currency, in->currency, 2);
	unhex(v->date, in->date, 3);
	unhex(v->type, &in->type, 1);
	unhex(v->un, in->un, 4);
	unhex(v->aip, in->aip, 2);
	unhex(v->atc, in->atc, 2);
	in->cvr_len = (uint8_t)unhex(v->cvr, in->cvr, sizeof(in->cvr));
	in->iad_len = (uint8_t)unhex(v->iad, in->iad, sizeof(in->iad));
	unhex(v->arqc, in->arqc, 8);
}

static const struct tsw_hsm_soft_config configs[] = {
    {0},
    {.icc_cache_entries = UINT32_MAX},
};
#define N_CONFIGS (sizeof(configs) / sizeof(configs[0]))

static void check_vector(const struct vec *v)
{
	for (size_t c = 0; c < N_CONFIGS; c++) {
		struct tsw_hsm *h;
		struct tsw_hsm_session *s;
		struct tsw_hsm_key *imk, *mk, *sk;
		struct tsw_hsm_arqc_input in;
		struct tsw_hsm_arpc_params p;
		struct tsw_hsm_soft_stats st;
		uint8_t arqc[8], out[TSW_HSM_ARPC_DATA_MAX], want[TSW_HSM_ARPC_DATA_MAX];
		size_t n = 0;

		cr_assert_eq(tsw_hsm_soft_open(&configs[c], &h), 0);
		cr_assert_eq(tsw_hsm_session_open(h, &s), 0);
		imk = import_hex(h, TSW_HSM_IMK_AC, TSW_HSM_TDES2, IMK);
		input(v, &in);
		memset(&p, 0, sizeof(p));

		cr_assert_eq(tsw_hsm_derive_icc_mk(s, imk, PAN, 16, 0x00, &mk), 0);
		assert_hex(tsw_hsm_key_info(mk)->kcv, 2, "BAB0");
		if (v->sk_kcv) {
			cr_assert_eq(tsw_hsm_derive_session_key(s, mk, &in, &sk), 0);
			assert_hex(tsw_hsm_key_info(sk)->kcv, 2, v->sk_kcv);
			tsw_hsm_key_free(sk);
		} else {
			cr_assert_eq(tsw_hsm_derive_session_key(s, mk, &in, &sk), -TSW_E_BAD_INPUT);
		}
		tsw_hsm_key_free(mk);

		cr_assert_eq(tsw_hsm_arqc_generate(s, imk, PAN, 16, 0x00, &in, arqc), 0);
		assert_hex(arqc, 8, v->arqc);
		/* twice: the second one comes from the cache where there is one */
		cr_assert_eq(tsw_hsm_arqc_verify(s, imk, PAN, 16, 0x00, &in), 0);
		cr_assert_eq(tsw_hsm_arqc_verify(s, imk, PAN, 16, 0x00, &in), 0);

		if (v->arc)
			unhex(v->arc, p.arc, 2);
		if (v->csu)
			unhex(v->csu, p.csu, 4);
		cr_assert_eq(tsw_hsm_arpc(s, imk, PAN, 16, 0x00, &in, &p, out, &n), 0);
		cr_assert_eq(n, unhex(v->tag91, want, sizeof(want)));
		assert_hex(out, n, v->tag91);

		cr_assert_eq(tsw_hsm_soft_stats(h, &st), 0);
		if (c == 1) {
			cr_assert_eq(st.icc_cache_hits + st.icc_cache_misses, 0);
		} else {
			cr_assert_eq(st.icc_cache_misses, 1);
			cr_assert_eq(st.icc_cache_hits, 3);
		}
		tsw_hsm_key_free(imk);
		tsw_hsm_session_close(s);
		tsw_hsm_close(h);
	}
}

Test(emv_vectors, visa_cvn10_master_key_direct_padding_1)
{
	check_vector(&visa10);
}
Test(emv_vectors, visa_cvn18_common_session_key_iad_padding_2)
{
	check_vector(&visa18);
}
Test(emv_vectors, mastercard_cvn16_atc_un_session_key)
{
	check_vector(&mc16);
}
Test(emv_vectors, mastercard_cvn20_common_session_key)
{
	check_vector(&mc20);
}

/* Flips every bit of every byte that goes into v's cryptogram (the MAC
 * data of its CVN and the ARQC itself), one at a time: each must fail. */
static void check_flips(const struct vec *v)
{
	struct tsw_hsm *h;
	struct tsw_hsm_session *s;
	struct tsw_hsm_key *imk, *other;
	struct tsw_hsm_arqc_input in, bad;
	struct {
		uint8_t *p;
		size_t n;
	} f[12];
	size_t nf = 0, flips = 0;

	cr_assert_eq(tsw_hsm_soft_open(NULL, &h), 0);
	cr_assert_eq(tsw_hsm_session_open(h, &s), 0);
	imk = import_hex(h, TSW_HSM_IMK_AC, TSW_HSM_TDES2, IMK);
	input(v, &in);
	cr_assert_eq(tsw_hsm_arqc_verify(s, imk, PAN, 16, 0, &in), 0);
#define FIELD(x) f[nf++] = (__typeof__(f[0])){(uint8_t *)&bad.x, sizeof(bad.x)}
	FIELD(arqc);
	FIELD(amount);
	FIELD(amount_other);
	FIELD(country);
	FIELD(tvr);
	FIELD(currency);
	FIELD(date);
	FIELD(type);
	FIELD(un);
	FIELD(aip);
	FIELD(atc);
#undef FIELD
	if (v->cvn == 18)
		f[nf++] = (__typeof__(f[0])){bad.iad, in.iad_len};
	else
		f[nf++] = (__typeof__(f[0])){bad.cvr, in.cvr_len};
	for (size_t i = 0; i < nf; i++) {
		for (size_t b = 0; b < f[i].n * 8; b++) {
			bad = in;
			f[i].p[b / 8] ^= (uint8_t)(1u << b % 8);
			cr_assert_eq(tsw_hsm_arqc_verify(s, imk, PAN, 16, 0, &bad),
				     -TSW_E_CRYPTOGRAM, "field %zu bit %zu", i, b);
			flips++;
		}
	}
	cr_assert_gt(flips, 8 * 40);
	/* another card: one PAN digit, the PSN (from 5F34 or the record),
	 * another issuer key */
	cr_assert_eq(tsw_hsm_arqc_verify(s, imk, "1234567890123457", 16, 0, &in),
		     -TSW_E_CRYPTOGRAM);
	cr_assert_eq(tsw_hsm_arqc_verify(s, imk, PAN, 16, 0x01, &in), -TSW_E_CRYPTOGRAM);
	bad = in;
	bad.has_psn = true;
	bad.psn = 0x01;
	cr_assert_eq(tsw_hsm_arqc_verify(s, imk, PAN, 16, 0, &bad), -TSW_E_CRYPTOGRAM);
	bad.psn = 0x00;
	cr_assert_eq(tsw_hsm_arqc_verify(s, imk, PAN, 16, 0x01, &bad), 0,
		     "5F34 wins over the record");
	/* ...10 -> ...12: bit 1 (bit 0 of each byte is DES parity, ignored) */
	other = import_hex(h, TSW_HSM_IMK_AC, TSW_HSM_TDES2, "0123456789ABCDEFFEDCBA9876543212");
	cr_assert_eq(tsw_hsm_arqc_verify(s, other, PAN, 16, 0, &in), -TSW_E_CRYPTOGRAM);
	tsw_hsm_key_free(other);
	tsw_hsm_key_free(imk);
	tsw_hsm_session_close(s);
	tsw_hsm_close(h);
}

Test(emv_flips, visa_cvn10)
{
	check_flips(&visa10);
}
Test(emv_flips, visa_cvn18)
{
	check_flips(&visa18);
}
Test(emv_flips, mastercard_cvn16)
{
	check_flips(&mc16);
}
Test(emv_flips, mastercard_cvn20)
{
	check_flips(&mc20);
}

/* ICC master keys derived under an IMK are wiped from the cache when the
 * IMK is freed (a retired key, a reload): no key material outlives the
 * key it came from; another IMK's entries stay. */
Test(emv_cache, freeing_an_imk_wipes_the_icc_keys_derived_under_it)
{
	struct tsw_hsm *h;
	struct tsw_hsm_session *s;
	struct tsw_hsm_key *old, *kept;
	struct tsw_hsm_arqc_input in;
	struct tsw_hsm_soft_stats st;
	static const char *pans[] = {"1234567890123456", "1234567890123464", "4000123412341234"};

	cr_assert_eq(tsw_hsm_soft_open(NULL, &h), 0);
	cr_assert_eq(tsw_hsm_session_open(h, &s), 0);
	old = import_hex(h, TSW_HSM_IMK_AC, TSW_HSM_TDES2, IMK);
	kept = import_hex(h, TSW_HSM_IMK_AC, TSW_HSM_TDES2, "89ABCDEF01234567FEDCBA9876543210");
	input(&visa10, &in);
	for (size_t i = 0; i < 3; i++) {
		cr_assert_eq(tsw_hsm_arqc_generate(s, old, pans[i], 16, 0x00, &in, in.arqc), 0);
		cr_assert_eq(tsw_hsm_arqc_verify(s, old, pans[i], 16, 0x00, &in), 0);
	}
	cr_assert_eq(tsw_hsm_arqc_generate(s, kept, pans[0], 16, 0x01, &in, in.arqc), 0);
	cr_assert_eq(tsw_hsm_soft_stats(h, &st), 0);
	cr_assert_eq(st.icc_cache_used, 4, "3 cards under the old IMK, 1 under the kept one");
	tsw_hsm_key_free(old);
	cr_assert_eq(tsw_hsm_soft_stats(h, &st), 0);
	cr_assert_eq(st.icc_cache_used, 1, "only the kept IMK's card is left");
	cr_assert_eq(tsw_hsm_arqc_verify(s, kept, pans[0], 16, 0x01, &in), 0);
	cr_assert_eq(tsw_hsm_soft_stats(h, &st), 0);
	cr_assert_eq(st.icc_cache_hits, 4, "3 verifications, then the kept card's again: hits");
	tsw_hsm_key_free(kept);
	cr_assert_eq(tsw_hsm_soft_stats(h, &st), 0);
	cr_assert_eq(st.icc_cache_used, 0);
	tsw_hsm_session_close(s);
	tsw_hsm_close(h);
}

/* A set freed at once (a reload's old card keys) wipes the cache of
 * every IMK in it in one pass, keys never used for a cryptogram included
 * in the set; a key outside the set keeps its cards. */
Test(emv_cache, freeing_a_key_set_wipes_its_imks_cards_in_one_pass)
{
	struct tsw_hsm *h;
	struct tsw_hsm_session *s;
	struct tsw_hsm_key *set[4], *kept;
	struct tsw_hsm_arqc_input in;
	struct tsw_hsm_soft_stats st;
	static const char *imks[] = {IMK, "89ABCDEF01234567FEDCBA9876543210",
				     "0011223344556677FEDCBA9876543210"};

	cr_assert_eq(tsw_hsm_soft_open(NULL, &h), 0);
	cr_assert_eq(tsw_hsm_session_open(h, &s), 0);
	for (size_t i = 0; i < 3; i++)
		set[i] = import_hex(h, TSW_HSM_IMK_AC, TSW_HSM_TDES2, imks[i]);
	set[3] = NULL;
	kept = import_hex(h, TSW_HSM_IMK_AC, TSW_HSM_TDES2, "FEDCBA98765432100123456789ABCDEF");
	input(&visa10, &in);
	/* two of the set's IMKs and the kept one derive a card each; the
	 * third IMK of the set never does */
	cr_assert_eq(tsw_hsm_arqc_generate(s, set[0], PAN, 16, 0x00, &in, in.arqc), 0);
	cr_assert_eq(tsw_hsm_arqc_generate(s, set[1], PAN, 16, 0x00, &in, in.arqc), 0);
	cr_assert_eq(tsw_hsm_arqc_generate(s, kept, PAN, 16, 0x00, &in, in.arqc), 0);
	cr_assert_eq(tsw_hsm_soft_stats(h, &st), 0);
	cr_assert_eq(st.icc_cache_used, 3);
	cr_assert_eq(st.keys_in_use, 4);
	tsw_hsm_keys_free(set, 4);
	cr_assert_eq(tsw_hsm_soft_stats(h, &st), 0);
	cr_assert_eq(st.icc_cache_used, 1, "the kept IMK's card only");
	cr_assert_eq(st.keys_in_use, 1, "the set's three slots freed");
	tsw_hsm_key_free(kept);
	tsw_hsm_session_close(s);
	tsw_hsm_close(h);
}

Test(emv_args, bad_inputs_are_refused_before_any_key_is_used)
{
	struct tsw_hsm *h;
	struct tsw_hsm_session *s;
	struct tsw_hsm_key *imk, *zpk;
	struct tsw_hsm_arqc_input in;

	cr_assert_eq(tsw_hsm_soft_open(NULL, &h), 0);
	cr_assert_eq(tsw_hsm_session_open(h, &s), 0);
	imk = import_hex(h, TSW_HSM_IMK_AC, TSW_HSM_TDES2, IMK);
	zpk = import_hex(h, TSW_HSM_ZPK_ISSUER, TSW_HSM_TDES2, IMK);
	input(&visa10, &in);
	cr_assert_eq(tsw_hsm_arqc_verify(s, NULL, PAN, 16, 0, &in), -TSW_E_NOT_FOUND);
	cr_assert_eq(tsw_hsm_arqc_verify(s, zpk, PAN, 16, 0, &in), -TSW_E_BAD_INPUT,
		     "a PIN key is no IMK, even with the same bytes");
	cr_assert_eq(tsw_hsm_arqc_verify(s, imk, "12345678901234X6", 16, 0, &in), -TSW_E_BAD_INPUT);
	cr_assert_eq(tsw_hsm_arqc_verify(s, imk, PAN, 0, 0, &in), -TSW_E_BAD_INPUT);
	cr_assert_eq(tsw_hsm_arqc_verify(s, imk, PAN, 16, 0x0A, &in), -TSW_E_BAD_INPUT,
		     "PSN not BCD");
	in.cvn = 17;
	cr_assert_eq(tsw_hsm_arqc_verify(s, imk, PAN, 16, 0, &in), -TSW_E_BAD_INPUT);
	input(&visa10, &in);
	in.cvr_len = 6;
	cr_assert_eq(tsw_hsm_arqc_verify(s, imk, PAN, 16, 0, &in), -TSW_E_BAD_INPUT);
	tsw_hsm_key_free(zpk);
	tsw_hsm_key_free(imk);
	tsw_hsm_session_close(s);
	tsw_hsm_close(h);
}

/* ISO/IEC 9797-1 Annex B's examples for MAC algorithm 3 (key 0123456789ABCDEF
 * FEDCBA9876543210), the pad-2 and empty cases recomputed with python3
 * `cryptography` (single DES as TDES K K K: CBC under K1, then D K2, E K1;
 * the pad-1 results match the published ones, A1C72E74EA3FA9B6 and
 * 2E2B1428CC78254F). */
Test(retail_mac, iso9797_examples_both_paddings)
{
	static const struct {
		const char *data;
		enum tsw_hsm_pad pad;
		const char *mac;
	} cases[] = {
	    {"Now is the time for all ", TSW_HSM_PAD_1, "A1C72E74EA3FA9B6"},
	    {"Now is the time for all ", TSW_HSM_PAD_2, "E9086230CA3BE796"},
	    {"Now is the time for it", TSW_HSM_PAD_1, "2E2B1428CC78254F"},
	    {"Now is the time for it", TSW_HSM_PAD_2, "5A692CE64F404145"},
	    {"", TSW_HSM_PAD_2, "F1FBCF2A56D19BA7"},
	};

	for (size_t c = 0; c < 2; c++) {
		struct tsw_hsm *h;
		struct tsw_hsm_session *s;
		struct tsw_hsm_key *k;

		cr_assert_eq(tsw_hsm_soft_open(&configs[c], &h), 0);
		cr_assert_eq(tsw_hsm_session_open(h, &s), 0);
		k = import_hex(h, TSW_HSM_IMK_AC, TSW_HSM_TDES2, IMK);
		for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			uint8_t mac[8];

			cr_assert_eq(tsw_hsm_retail_mac(s, k, cases[i].pad,
							(const uint8_t *)cases[i].data,
							strlen(cases[i].data), mac),
				     0);
			assert_hex(mac, 8, cases[i].mac);
		}
		tsw_hsm_key_free(k);
		k = import_hex(h, TSW_HSM_ZPK_ACQUIRER, TSW_HSM_TDES2, IMK);
		cr_assert_eq(tsw_hsm_retail_mac(s, k, TSW_HSM_PAD_1, (const uint8_t *)"x", 1,
						(uint8_t[8]){0}),
			     -TSW_E_BAD_INPUT, "no MAC under a PIN key");
		tsw_hsm_key_free(k);
		tsw_hsm_session_close(s);
		tsw_hsm_close(h);
	}
}
