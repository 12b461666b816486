/* Keys of the software backend: check values (computed independently by
 * pin_vectors.py: TDES encrypts 8 zero bytes, AES takes AES-CMAC of 16 zero
 * bytes), import rules, the slot limit, wiping on free, locked memory, the
 * ICC master key cache (a key's cache entries never serve the next key in
 * its slot) and concurrent sessions. */
#include <pthread.h>
#include <sys/resource.h>

#include "hsm_test.h"
#include "internal.h"

#define IMK "0123456789ABCDEFFEDCBA9876543210"
#define PAN "1234567890123456"

Test(keys, check_values_per_algorithm)
{
	static const struct {
		enum tsw_hsm_alg alg;
		const char *key, *kcv;
	} cases[] = {
	    {TSW_HSM_TDES2, "0123456789ABCDEFFEDCBA9876543210", "08D7B4"},
	    {TSW_HSM_TDES2, "89ABCDEF0123456776543210FEDCBA98", "EB7A8D"},
	    {TSW_HSM_TDES3, "0123456789ABCDEFFEDCBA98765432101122334455667788", "8BB7CF"},
	    {TSW_HSM_AES128, "000102030405060708090A0B0C0D0E0F", "BE7ED6AE78"},
	    {TSW_HSM_AES256, "F0E0D0C0B0A090807060504030201000F0E0D0C0B0A090807060504030201000",
	     "F72599C4B4"},
	};
	struct tsw_hsm *h;

	cr_assert_eq(tsw_hsm_soft_open(NULL, &h), 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct tsw_hsm_key *k =
		    import_hex(h, TSW_HSM_ZPK_ISSUER, cases[i].alg, cases[i].key);
		const struct tsw_hsm_key_info *info = tsw_hsm_key_info(k);

		cr_assert_eq(info->kind, TSW_HSM_ZPK_ISSUER);
		cr_assert_eq(info->alg, cases[i].alg);
		cr_assert_eq(info->kcv_len, strlen(cases[i].kcv) / 2);
		assert_hex(info->kcv, info->kcv_len, cases[i].kcv);
		tsw_hsm_key_free(k);
	}
	tsw_hsm_close(h);
}

Test(keys, import_rules)
{
	uint8_t b[32] = {1};
	struct tsw_hsm *h;
	struct tsw_hsm_key *k = NULL;

	cr_assert_eq(tsw_hsm_soft_open(NULL, &h), 0);
	cr_assert_eq(tsw_hsm_key_import(h, TSW_HSM_ZPK_ISSUER, TSW_HSM_TDES2, b, 24, &k),
		     -TSW_E_BAD_INPUT);
	cr_assert_eq(tsw_hsm_key_import(h, TSW_HSM_ZPK_ISSUER, TSW_HSM_AES256, b, 16, &k),
		     -TSW_E_BAD_INPUT);
	cr_assert_eq(tsw_hsm_key_import(h, TSW_HSM_ZPK_ISSUER, TSW_HSM_ALG_MAX, b, 16, &k),
		     -TSW_E_BAD_INPUT);
	cr_assert_eq(tsw_hsm_key_import(h, TSW_HSM_IMK_AC, TSW_HSM_AES128, b, 16, &k),
		     -TSW_E_BAD_INPUT, "option A is TDES");
	cr_assert_eq(tsw_hsm_key_import(h, TSW_HSM_ICC_MK, TSW_HSM_TDES2, b, 16, &k),
		     -TSW_E_BAD_INPUT, "derived kinds are derived");
	cr_assert_eq(tsw_hsm_key_import(h, TSW_HSM_SESSION_KEY, TSW_HSM_TDES2, b, 16, &k),
		     -TSW_E_BAD_INPUT);
	cr_assert_null(k, "untouched on failure");
	tsw_hsm_close(h);
}

Test(keys, slots_run_out_and_come_back)
{
	struct tsw_hsm_soft_config cfg = {.max_keys = 2};
	struct tsw_hsm_soft_stats st;
	struct tsw_hsm *h;
	struct tsw_hsm_session *s;
	struct tsw_hsm_key *a, *b, *c = NULL;
	uint8_t raw[16] = {0};

	cr_assert_eq(tsw_hsm_soft_open(&cfg, &h), 0);
	cr_assert_eq(tsw_hsm_session_open(h, &s), 0);
	a = import_hex(h, TSW_HSM_IMK_AC, TSW_HSM_TDES2, IMK);
	b = import_hex(h, TSW_HSM_ZPK_ISSUER, TSW_HSM_TDES2, IMK);
	cr_assert_eq(tsw_hsm_key_import(h, TSW_HSM_ZPK_ISSUER, TSW_HSM_TDES2, raw, 16, &c),
		     -TSW_E_FULL);
	cr_assert_eq(tsw_hsm_derive_icc_mk(s, a, PAN, 16, 0, &c), -TSW_E_FULL,
		     "a derived key takes a slot too");
	cr_assert_eq(tsw_hsm_soft_stats(h, &st), 0);
	cr_assert_eq(st.keys_in_use, 2);
	cr_assert_eq(st.key_full, 2);
	tsw_hsm_key_free(b);
	cr_assert_eq(tsw_hsm_derive_icc_mk(s, a, PAN, 16, 0, &c), 0);
	assert_hex(tsw_hsm_key_info(c)->kcv, 2, "BAB0");
	tsw_hsm_key_free(c);
	tsw_hsm_key_free(a);
	cr_assert_eq(tsw_hsm_soft_stats(h, &st), 0);
	cr_assert_eq(st.keys_in_use, 0);
	tsw_hsm_session_close(s);
	tsw_hsm_close(h);
}

Test(keys, a_freed_key_is_wiped)
{
	static const uint8_t zero[sizeof(struct soft_key)];
	struct tsw_hsm *h;
	struct tsw_hsm_key *k;
	const struct soft_key *slot;

	cr_assert_eq(tsw_hsm_soft_open(NULL, &h), 0);
	k = import_hex(h, TSW_HSM_ZPK_ISSUER, TSW_HSM_AES256,
		       "F0E0D0C0B0A090807060504030201000F0E0D0C0B0A090807060504030201000");
	slot = (const struct soft_key *)k;
	cr_assert_eq(slot->bytes[0], 0xF0);
	tsw_hsm_key_free(k);
	/* the slot stays mapped (the backend owns it): every byte but the
	 * free-list link is zero */
	cr_assert_eq(memcmp(slot->bytes, zero, sizeof(slot->bytes)), 0);
	cr_assert_eq(slot->serial, 0);
	cr_assert_eq(slot->base.info.kcv[0], 0);
	tsw_hsm_close(h);
}

Test(keys, a_freed_cryptogram_key_wipes_its_key_schedules)
{
	static const struct tdes2_ks zero;
	struct tsw_hsm *h;
	struct tsw_hsm_key *k;
	const struct soft_key *slot;

	cr_assert_eq(tsw_hsm_soft_open(NULL, &h), 0);
	k = import_hex(h, TSW_HSM_IMK_AC, TSW_HSM_TDES2, IMK);
	slot = (const struct soft_key *)k;
	/* the schedules an IMK is used by live in its locked slot */
	cr_assert_neq(memcmp(&slot->ks, &zero, sizeof(zero)), 0);
	tsw_hsm_key_free(k);
	cr_assert_eq(memcmp(&slot->ks, &zero, sizeof(zero)), 0);
	tsw_hsm_close(h);
}

Test(keys, key_memory_is_locked_when_the_limit_allows)
{
	struct tsw_hsm_soft_config cfg = {.max_keys = 16, .icc_cache_entries = 16};
	struct tsw_hsm_soft_stats st;
	struct rlimit rl;
	struct tsw_hsm *h;

	cr_assert_eq(getrlimit(RLIMIT_MEMLOCK, &rl), 0);
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < 64 * 1024)
		cr_skip_test("RLIMIT_MEMLOCK %llu is below two pages",
			     (unsigned long long)rl.rlim_cur);
	cr_assert_eq(tsw_hsm_soft_open(&cfg, &h), 0);
	cr_assert_eq(tsw_hsm_soft_stats(h, &st), 0);
	cr_assert(st.locked);
	tsw_hsm_close(h);
}

Test(keys, the_cache_never_serves_a_key_the_next_one_in_its_slot)
{
	struct tsw_hsm_soft_config nocache = {.icc_cache_entries = UINT32_MAX};
	struct tsw_hsm *h, *h2;
	struct tsw_hsm_session *s, *s2;
	struct tsw_hsm_key *a, *b, *b2;
	struct tsw_hsm_arqc_input in;
	struct tsw_hsm_soft_stats st;
	uint8_t got[8], want[8];

	cr_assert_eq(tsw_hsm_soft_open(NULL, &h), 0);
	cr_assert_eq(tsw_hsm_session_open(h, &s), 0);
	visa10_input(&in);
	a = import_hex(h, TSW_HSM_IMK_AC, TSW_HSM_TDES2, IMK);
	cr_assert_eq(tsw_hsm_arqc_verify(s, a, PAN, 16, 0, &in), 0);
	tsw_hsm_key_free(a);
	b = import_hex(h, TSW_HSM_IMK_AC, TSW_HSM_TDES2, "00112233445566778899AABBCCDDEEFF");
	cr_assert_eq((const void *)b, (const void *)a, "the test needs the same slot");
	cr_assert_eq(tsw_hsm_arqc_verify(s, b, PAN, 16, 0, &in), -TSW_E_CRYPTOGRAM);
	cr_assert_eq(tsw_hsm_arqc_generate(s, b, PAN, 16, 0, &in, got), 0);
	/* what an uncached backend computes under the new key */
	cr_assert_eq(tsw_hsm_soft_open(&nocache, &h2), 0);
	cr_assert_eq(tsw_hsm_session_open(h2, &s2), 0);
	b2 = import_hex(h2, TSW_HSM_IMK_AC, TSW_HSM_TDES2, "00112233445566778899AABBCCDDEEFF");
	cr_assert_eq(tsw_hsm_arqc_generate(s2, b2, PAN, 16, 0, &in, want), 0);
	cr_assert_eq(memcmp(got, want, 8), 0);
	cr_assert_eq(tsw_hsm_arqc_verify(s, b2, PAN, 16, 0, &in), -TSW_E_BAD_INPUT,
		     "a key of another backend");
	cr_assert_eq(tsw_hsm_soft_stats(h, &st), 0);
	cr_assert_eq(st.icc_cache_misses, 2);
	cr_assert_eq(st.icc_cache_hits, 1);
	tsw_hsm_key_free(b2);
	tsw_hsm_session_close(s2);
	tsw_hsm_close(h2);
	tsw_hsm_key_free(b);
	tsw_hsm_session_close(s);
	tsw_hsm_close(h);
}

enum { THREADS = 4, ROUNDS = 2000, CARDS = 8 };

struct worker {
	struct tsw_hsm *h;
	const struct tsw_hsm_key *imk;
	const uint8_t (*arqc)[8];
	int failures;
};

static void *verify_loop(void *arg)
{
	struct worker *w = arg;
	struct tsw_hsm_session *s;
	struct tsw_hsm_arqc_input in;

	if (tsw_hsm_session_open(w->h, &s) < 0) {
		w->failures = -1;
		return NULL;
	}
	visa10_input(&in);
	for (int i = 0; i < ROUNDS; i++) {
		char pan[] = PAN;

		pan[15] = (char)('0' + i % CARDS);
		memcpy(in.arqc, w->arqc[i % CARDS], 8);
		if (tsw_hsm_arqc_verify(s, w->imk, pan, 16, 0, &in) != 0)
			w->failures++;
	}
	tsw_hsm_session_close(s);
	return NULL;
}

Test(keys, sessions_on_several_threads_share_keys_and_cache)
{
	struct tsw_hsm_soft_config cfg = {.icc_cache_entries = 4}; /* collisions */
	struct tsw_hsm *h;
	struct tsw_hsm_session *s;
	struct tsw_hsm_key *imk;
	struct tsw_hsm_arqc_input in;
	uint8_t arqc[CARDS][8];
	pthread_t t[THREADS];
	struct worker w[THREADS];

	cr_assert_eq(tsw_hsm_soft_open(&cfg, &h), 0);
	cr_assert_eq(tsw_hsm_session_open(h, &s), 0);
	imk = import_hex(h, TSW_HSM_IMK_AC, TSW_HSM_TDES2, IMK);
	visa10_input(&in);
	for (int c = 0; c < CARDS; c++) {
		char pan[] = PAN;

		pan[15] = (char)('0' + c);
		cr_assert_eq(tsw_hsm_arqc_generate(s, imk, pan, 16, 0, &in, arqc[c]), 0);
	}
	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){h, imk, (const uint8_t(*)[8])arqc, 0};
		cr_assert_eq(pthread_create(&t[i], NULL, verify_loop, &w[i]), 0);
	}
	for (int i = 0; i < THREADS; i++) {
		pthread_join(t[i], NULL);
		cr_assert_eq(w[i].failures, 0, "thread %d", i);
	}
	tsw_hsm_key_free(imk);
	tsw_hsm_session_close(s);
	tsw_hsm_close(h);
}

Test(keys, error_strings_name_the_reason_and_nothing_else)
{
	cr_assert_str_eq(tsw_strerror(-TSW_E_CRYPTOGRAM), "cryptogram does not verify");
	cr_assert_str_eq(tsw_strerror(-TSW_E_PIN_FORMAT), "PIN block malformed");
	cr_assert_str_eq(tsw_strerror(-TSW_E_PIN_PAN), "PIN block bound to another account number");
}
