/* Card cryptography in the engine: the ARQC of a chip or contactless
 * request checked before the limited use, its ATC through the state
 * (forwarded only once durable), the tag 91 of the answer, the keys of a
 * reload, and the DE52 PIN block translated from the token to the PAN.
 * The test plays the card and the terminal with the same HSM library
 * (tests/integration/e2e_crypto.py checks the same against an
 * independent implementation). */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "engine_int.h"
#include "harness.h"
#include "tsw/authz.h"
#include "tsw/error.h"
#include "tsw/hsm.h"
#include "tsw/vault.h"

static struct h H;
static struct h_msgs *out;
static struct tsw_hsm_session *card; /* the test's own session: the card and terminal */

static const uint8_t IMK1[16] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
				 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10};
static const uint8_t IMK2[16] = {0x1f, 0x2e, 0x3d, 0x4c, 0x5b, 0x6a, 0x79, 0x88,
				 0x97, 0xa6, 0xb5, 0xc4, 0xd3, 0xe2, 0xf1, 0x01};
static const uint8_t IMK3[16] = {0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38,
				 0x39, 0x3a, 0x3b, 0x3c, 0x3d, 0x3e, 0x3f, 0x40};
static const uint8_t ZPK_ACQ[16] = {0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47,
				    0x48, 0x49, 0x4a, 0x4b, 0x4c, 0x4d, 0x4e, 0x4f};
static const uint8_t ZPK_ISS[16] = {0x70, 0x61, 0x52, 0x43, 0x34, 0x25, 0x16, 0x07,
				    0x08, 0x19, 0x2a, 0x3b, 0x4c, 0x5d, 0x6e, 0x7f};
#define ACQ_ID "123456"

static void add_key(enum tsw_vault_key_kind kind, enum tsw_vault_key_alg alg, const char *id,
		    const char *scope, const uint8_t *bytes, size_t len)
{
	struct tsw_vault_key_info in = {.kind = (uint8_t)kind, .alg = (uint8_t)alg};
	int r;

	strcpy(in.id, id);
	strcpy(in.scope, scope);
	r = tsw_vault_key_add(H.vault, &in, bytes, len, NULL);
	cr_assert_eq(r, 0, "key-add %s: %s", id, tsw_strerror(r));
}

static void setup(void)
{
	h_init(&H);
	out = malloc(sizeof(*out));
	cr_assert(out);
	add_key(TSW_VAULT_KEY_IMK_AC, TSW_VAULT_KEY_TDES2, "imk-1", "4000", IMK1, 16);
	add_key(TSW_VAULT_KEY_ZPK_ACQUIRER, TSW_VAULT_KEY_TDES2, "zpk-acq-1", ACQ_ID, ZPK_ACQ, 16);
	add_key(TSW_VAULT_KEY_ZPK_ISSUER, TSW_VAULT_KEY_TDES2, "zpk-iss-1", "0", ZPK_ISS, 16);
	h_card_keys(&H);
	cr_assert_eq(tsw_hsm_session_open(H.hsm, &card), 0);
}

static void start(void)
{
	setup();
	h_start(&H);
}

static void teardown(void)
{
	tsw_hsm_session_close(card);
	card = NULL;
	h_fini(&H);
	free(out);
}

/* What the card used for its cryptogram: the test's fixed terminal data
 * with atc, for the record's CVN. */
static struct tsw_hsm_arqc_input card_input(unsigned cvn, uint16_t atc)
{
	struct tsw_hsm_arqc_input in = {
	    .cvn = (uint8_t)cvn,
	    .cid = 0x80,
	    .amount = {0, 0, 0, 0, 0x05, 0x00},
	    .country = {0x08, 0x40},
	    .tvr = {0, 0, 0, 0x80, 0},
	    .currency = {0x08, 0x40},
	    .date = {0x26, 0x12, 0x03},
	    .un = {0xde, 0xad, 0xbe, 0xef},
	    .aip = {0x19, 0x80},
	    .atc = {(uint8_t)(atc >> 8), (uint8_t)atc},
	};

	if (cvn == TSW_HSM_CVN_VISA_10 || cvn == TSW_HSM_CVN_VISA_18) {
		const uint8_t iad[7] = {0x06, 0x01, (uint8_t)cvn, 0x03, 0xa0, 0x00, 0x00};

		memcpy(in.iad, iad, sizeof(iad));
		in.iad_len = sizeof(iad);
		memcpy(in.cvr, iad + 3, 4);
		in.cvr_len = 4;
	} else {
		const uint8_t iad[10] = {0x01, (uint8_t)cvn, 0xa0, 0x00, 0x00,
					 0x00, 0x00,	     0x00, 0x12, 0x34};

		memcpy(in.iad, iad, sizeof(iad));
		in.iad_len = sizeof(iad);
		memcpy(in.cvr, iad + 2, 6);
		in.cvr_len = 6;
	}
	return in;
}

/* The PSN H_CHIP's device was personalized with last (its record's,
 * until a test re-personalizes it). */
static uint8_t chip_psn = 0x01;

static uint8_t psn_of(enum h_token t)
{
	return t == H_CHIP ? chip_psn : t == H_CHIP_LIMITED ? 0x02 : 0x00;
}

static unsigned cvn_of(enum h_token t)
{
	return t == H_CHIP ? 18 : t == H_CHIP_LIMITED ? 20 : 10;
}

/* DE55 of a device of token t personalized as token dev (itself, or
 * another device of the range) at atc under imk. */
static size_t device_de55(enum h_token t, enum h_token dev, uint16_t atc, const uint8_t imk[16],
			  uint8_t *buf, struct tsw_hsm_arqc_input *ret_in)
{
	struct tsw_hsm_arqc_input in = card_input(cvn_of(t), atc);
	struct tsw_hsm_key *k;
	int n;

	cr_assert_eq(tsw_hsm_key_import(H.hsm, TSW_HSM_IMK_AC, TSW_HSM_TDES2, imk, 16, &k), 0);
	cr_assert_eq(
	    tsw_hsm_arqc_generate(card, k, h_tokens[dev].token, 16, psn_of(t), &in, in.arqc), 0);
	tsw_hsm_key_free(k);
	n = tsw_hsm_de55_build(&in, buf, 255);
	cr_assert_gt(n, 0);
	if (ret_in)
		*ret_in = in;
	return (size_t)n;
}

/* DE55 of token t at atc under imk, as its device would send it. */
static size_t card_de55(enum h_token t, uint16_t atc, const uint8_t imk[16], uint8_t *buf,
			struct tsw_hsm_arqc_input *ret_in)
{
	return device_de55(t, t, atc, imk, buf, ret_in);
}

static int send_chip(enum h_token t, const char *stan, const char *de22, const uint8_t *de55,
		     size_t de55_len)
{
	uint8_t body[2048];
	struct tsw_iso_edit ed[] = {
	    {.field = 22, .len = 3, .data = (const uint8_t *)de22},
	    {.field = 55, .len = (uint16_t)de55_len, .data = de55},
	};

	return h_send(&H, body, h_auth_edits(&H, body, sizeof(body), t, stan, ed, 2));
}

/* Runs the loop until the issuer got a request (the ATC's commit), or
 * fails after a deadline. */
static void wait_forwarded(void)
{
	int64_t deadline = h_real_ms() + 10000;

	for (;;) {
		h_collect(&H, TSW_EP_LINK, 0, out);
		if (out->n)
			break;
		h_wait_step(&H, deadline, "the request to reach the issuer");
	}
	/* forwarded before its ATC was durable: its approval would wait */
	h_wait_records(&H);
}

static void expect_local(const char *rc, const char *reason)
{
	h_collect_acq_clean(&H, out);
	cr_assert_eq(out->n, 1, "one answer, got %u", out->n);
	cr_expect_str_eq(h_field(&out->m[0], 39), rc);
	cr_expect_str_eq(h_field(&out->m[0], 44), reason);
}

static void expect_no_issuer_request(void)
{
	struct h_msgs *iss = malloc(sizeof(*iss));

	h_collect(&H, TSW_EP_LINK, 0, iss);
	cr_expect_eq(iss->n, 0, "the issuer must not see it");
	free(iss);
}

/* Tag 91 of an answer's DE55: its value in v, length returned (0: none). */
static size_t tag91(const struct tsw_iso_msg *m, uint8_t *v)
{
	const uint8_t *p;
	size_t n;

	if (!tsw_iso_has(m, 55) ||
	    tsw_tlv_find(tsw_iso_ptr(m, 55), m->f[55].len, 0x91, &p, &n) != 1)
		return 0;
	memcpy(v, p, n);
	return n;
}

/* The tag 91 the card expects for its ARQC in answered rc. */
static size_t expected_arpc(enum h_token t, const struct tsw_hsm_arqc_input *in, const char *rc,
			    uint8_t *v)
{
	struct tsw_hsm_arpc_params p = {.arc = {(uint8_t)rc[0], (uint8_t)rc[1]}};
	struct tsw_hsm_key *k;
	size_t n;

	if (in->cvn == TSW_HSM_CVN_VISA_18 && strcmp(rc, "00") == 0)
		p.csu[1] = 0x80;
	cr_assert_eq(tsw_hsm_key_import(H.hsm, TSW_HSM_IMK_AC, TSW_HSM_TDES2, IMK1, 16, &k), 0);
	cr_assert_eq(tsw_hsm_arpc(card, k, h_tokens[t].token, 16, psn_of(t), in, &p, v, &n), 0);
	tsw_hsm_key_free(k);
	return n;
}

/* A chip request of t at atc goes to the issuer with its DE55 as sent and
 * its answer rc comes back with the ARPC in tag 91. */
static void approve_with_arpc(enum h_token t, const char *stan, uint16_t atc, const char *rc)
{
	uint8_t de55[256], got[32], want[32];
	struct tsw_hsm_arqc_input in;
	size_t len = card_de55(t, atc, IMK1, de55, &in), n;

	cr_assert_eq(send_chip(t, stan, "051", de55, len), 0);
	wait_forwarded();
	cr_assert_eq(out->n, 1);
	cr_assert_eq(out->m[0].f[55].len, len, "DE55 reaches the issuer as sent");
	cr_assert_eq(memcmp(tsw_iso_ptr(&out->m[0], 55), de55, len), 0);
	cr_assert_eq(h_issuer_answer(&H, 0, &out->m[0], rc, 0), 0);
	h_collect_acq_clean(&H, out);
	cr_assert_eq(out->n, 1);
	cr_expect_str_eq(h_field(&out->m[0], 39), rc);
	n = tag91(&out->m[0], got);
	cr_assert_eq(n, expected_arpc(t, &in, rc, want), "tag 91 length");
	cr_assert_eq(memcmp(got, want, n), 0, "tag 91 is the card's ARPC");
}

TestSuite(card_crypto, .init = start, .fini = teardown, .timeout = 60);
/* tests that change the keys or the profile before the engine starts */
TestSuite(card_crypto_own_start, .init = setup, .fini = teardown, .timeout = 60);

Test(card_crypto, cvn18_approval_carries_arpc_method2)
{
	approve_with_arpc(H_CHIP, "000001", 1, "00");
	cr_expect_eq(H.m.card_checks[TSW_CARD_CHECK_OK], 1);
	cr_expect_eq(H.m.arpcs, 1);
}

Test(card_crypto, cvn10_and_cvn20_answers_carry_arpc_method1_also_for_a_decline)
{
	approve_with_arpc(H_CHIP10, "000001", 7, "00");
	approve_with_arpc(H_CHIP10, "000002", 8, "05");
	approve_with_arpc(H_CHIP_LIMITED, "000003", 1, "00");
	cr_expect_eq(H.m.arpcs, 3);
}

Test(card_crypto, one_bit_flipped_declined_63_before_the_issuer)
{
	uint8_t de55[256];
	size_t len = card_de55(H_CHIP, 1, IMK1, de55, NULL);

	de55[5] ^= 0x01; /* inside 9F26's value */
	cr_assert_eq(send_chip(H_CHIP, "000001", "051", de55, len), 0);
	expect_local("63", "CRYPTOGRAM");
	expect_no_issuer_request();
	cr_expect_eq(H.m.card_checks[TSW_CARD_CHECK_WRONG], 1);
}

Test(card_crypto, another_tokens_de55_declined_63)
{
	uint8_t de55[256];
	/* generated on phone B: a device of another token of the range, the
	 * same CVN and key */
	size_t len = device_de55(H_CHIP, H_OK, 1, IMK1, de55, NULL);

	cr_assert_eq(send_chip(H_CHIP, "000001", "051", de55, len), 0);
	expect_local("63", "CRYPTOGRAM");
	/* and a DE55 of another CVN (its 9F10 names its own) */
	len = card_de55(H_CHIP10, 1, IMK1, de55, NULL);
	cr_assert_eq(send_chip(H_CHIP, "000002", "051", de55, len), 0);
	expect_local("63", "CRYPTOGRAM");
	expect_no_issuer_request();
	cr_expect_eq(H.m.card_checks[TSW_CARD_CHECK_WRONG], 1);
	cr_expect_eq(H.m.card_checks[TSW_CARD_CHECK_MALFORMED], 1);
}

Test(card_crypto, no_de55_declined_63_contactless_too)
{
	cr_assert_eq(send_chip(H_CHIP, "000001", "071", NULL, 0), 0);
	expect_local("63", "CRYPTOGRAM");
	expect_no_issuer_request();
	cr_expect_eq(H.m.card_checks[TSW_CARD_CHECK_MISSING], 1);
}

Test(card_crypto, manual_entry_of_a_cvn_token_declined_57_unless_its_modes_name_it)
{
	/* pos_modes 0 (all) does not open a token that names a CVN to modes
	 * without a cryptogram: only modes its record lists explicitly */
	cr_assert_eq(send_chip(H_CHIP, "000001", "011", NULL, 0), 0);
	expect_local("57", "DOMAIN_POS_MODE");
	expect_no_issuer_request();
}

Test(card_crypto, replayed_atc_63_atc_replay_and_far_ahead_atc_window)
{
	uint8_t de55[256];
	size_t len;

	approve_with_arpc(H_CHIP, "000001", 5, "00");
	len = card_de55(H_CHIP, 5, IMK1, de55, NULL);
	cr_assert_eq(send_chip(H_CHIP, "000002", "051", de55, len), 0);
	expect_local("63", "ATC_REPLAY");
	len = card_de55(H_CHIP, 4, IMK1, de55, NULL);
	cr_assert_eq(send_chip(H_CHIP, "000003", "051", de55, len), 0);
	expect_local("63", "ATC_REPLAY");
	len = card_de55(H_CHIP, 5 + 101, IMK1, de55, NULL);
	cr_assert_eq(send_chip(H_CHIP, "000004", "051", de55, len), 0);
	expect_local("63", "ATC_WINDOW");
	expect_no_issuer_request();
	/* the window's edge is accepted */
	approve_with_arpc(H_CHIP, "000005", 5 + 100, "00");
	cr_expect_eq(H.m.declines[TSW_AUTHZ_ATC_REPLAY], 2);
	cr_expect_eq(H.m.declines[TSW_AUTHZ_ATC_WINDOW], 1);
}

/* The ATC is recorded in the state's memory when the cryptogram
 * verifies and the request goes to the issuer at once; the approval (its
 * tag 91 with it) waits until that ATC is durable, and the same ATC
 * meanwhile is a replay. The state's commits are stalled (h_state_stall). */
Test(card_crypto, forwarded_before_the_atc_is_durable_and_approved_after)
{
	uint8_t de55[256], got[32], want[32];
	struct tsw_hsm_arqc_input in;
	size_t len = card_de55(H_CHIP, 1, IMK1, de55, &in), n;
	struct h_msgs *acq = malloc(sizeof(*acq));
	struct tsw_state_token st;
	int64_t deadline;

	cr_assert_not_null(acq);
	h_state_stall(&H);
	cr_assert_eq(send_chip(H_CHIP, "000001", "051", de55, len), 0);
	h_collect(&H, TSW_EP_LINK, 0, out);
	cr_assert_eq(out->n, 1, "not forwarded before its ATC is durable");
	cr_assert_neq(h_record_ticket(&H), 0);
	cr_assert_eq(tsw_state_get(H.state, h_tokens[H_CHIP].token, 16, &st), 0);
	cr_expect_eq(st.last_atc, 1);
	cr_assert_eq(h_issuer_answer(&H, 0, &out->m[0], "00", 0), 0);
	h_advance(&H, 10);
	h_collect(&H, TSW_EP_ACQ, (uint32_t)H.slot, acq);
	cr_assert_eq(acq->n, 0, "approved before its ATC was durable");
	cr_expect_eq(H.m.answers_awaiting_record, 1);
	/* the same cryptogram meanwhile */
	cr_assert_eq(send_chip(H_CHIP, "000002", "051", de55, len), 0);
	expect_local("63", "ATC_REPLAY");
	h_state_unstall(&H);
	deadline = h_real_ms() + 10000;
	for (;;) {
		h_collect_acq_clean(&H, acq);
		if (acq->n)
			break;
		h_wait_step(&H, deadline, "the approval");
	}
	cr_assert_eq(acq->n, 1);
	cr_assert_str_eq(h_field(&acq->m[0], 39), "00");
	cr_assert_str_eq(h_field(&acq->m[0], 11), "000001");
	n = tag91(&acq->m[0], got);
	cr_assert_eq(n, expected_arpc(H_CHIP, &in, "00", want), "tag 91 length");
	cr_assert_eq(memcmp(got, want, n), 0, "tag 91 is the card's ARPC");
	cr_expect_eq(H.m.answers_awaiting_record, 0);
	free(acq);
}

/* Each request forwarded before its ATC is durable holds a slot for its
 * answer (limits.max_parked): none left, the next one is declined 96
 * before it is forwarded, counted and logged as parked_full. */
Test(card_crypto_own_start, no_slot_left_for_the_answer_declined_96_unforwarded)
{
	uint8_t de55[256];
	size_t len = card_de55(H_CHIP, 1, IMK1, de55, NULL);

	H.cfg.settings.max_parked = 1;
	h_start(&H);
	h_state_stall(&H);
	cr_assert_eq(send_chip(H_CHIP, "000001", "051", de55, len), 0);
	h_collect(&H, TSW_EP_LINK, 0, out);
	cr_assert_eq(out->n, 1, "not forwarded before its ATC is durable");
	len = card_de55(H_CHIP10, 1, IMK1, de55, NULL);
	cr_assert_eq(send_chip(H_CHIP10, "000002", "051", de55, len), 0);
	expect_local("96", "SYSTEM");
	h_collect(&H, TSW_EP_LINK, 0, out);
	cr_assert_eq(out->n, 0, "forwarded without a slot for its answer");
	cr_expect_eq(H.m.parked_full, 1);
	h_state_unstall(&H);
}

/* With state.forward_before_durable off the request waits for its ATC's
 * commit before it is forwarded. */
Test(card_crypto, forwarded_only_once_the_atc_is_durable_when_told_to_wait)
{
	uint8_t de55[256];
	size_t len = card_de55(H_CHIP, 1, IMK1, de55, NULL);
	struct tsw_state_token st;

	H.e->cfg.state_forward_before_durable = false;
	h_state_stall(&H);
	cr_assert_eq(send_chip(H_CHIP, "000001", "051", de55, len), 0);
	h_collect(&H, TSW_EP_LINK, 0, out);
	cr_assert_eq(out->n, 0, "forwarded before its ATC was durable");
	cr_expect_eq(H.m.parked, 1, "parked for the ATC's commit");
	h_state_unstall(&H);
	wait_forwarded();
	cr_expect_eq(H.m.parked, 0);
	cr_assert_eq(tsw_state_get(H.state, h_tokens[H_CHIP].token, 16, &st), 0);
	cr_expect_eq(st.last_atc, 1);
}

Test(card_crypto, bad_cryptogram_of_a_limited_token_keeps_its_use)
{
	uint8_t de55[256];
	size_t len = card_de55(H_CHIP_LIMITED, 1, IMK1, de55, NULL);
	struct tsw_state_token st;

	de55[5] ^= 0x80;
	cr_assert_eq(send_chip(H_CHIP_LIMITED, "000001", "051", de55, len), 0);
	expect_local("63", "CRYPTOGRAM");
	cr_expect_neq(tsw_state_get(H.state, h_tokens[H_CHIP_LIMITED].token, 16, &st), 0,
		      "nothing recorded for the token");
	approve_with_arpc(H_CHIP_LIMITED, "000002", 1, "00");
}

static void expect_declined_63(void);

/* The new device gets the next PSN, so its ICC key is not the old one's. */
static void repersonalize_chip(void)
{
	uint32_t epoch = 0;
	unsigned psn = 0;

	cr_assert_eq(tsw_vault_repersonalize(H.vault, h_tokens[H_CHIP].token, 16,
					     TSW_VAULT_PSN_NEXT, &epoch, &psn),
		     0);
	cr_assert_eq(epoch, 1);
	cr_assert_eq(psn, 2, "the record's PSN 01 becomes 02");
	chip_psn = 0x02;
}

Test(card_crypto, repersonalized_token_accepts_atc_1_again)
{
	chip_psn = 0x01;
	approve_with_arpc(H_CHIP, "000001", 1, "00");
	repersonalize_chip();
	approve_with_arpc(H_CHIP, "000002", 1, "00");
}

/* A re-personalization resets the ATC: a cryptogram the old device made
 * (captured, or from the old phone still around) must not be good again
 * once the counter starts over. The new PSN changes the ICC key. */
Test(card_crypto, repersonalized_token_refuses_the_old_devices_cryptograms)
{
	uint8_t old2[256], old3[256];
	size_t n2, n3;

	chip_psn = 0x01;
	approve_with_arpc(H_CHIP, "000001", 1, "00");
	n2 = card_de55(H_CHIP, 2, IMK1, old2, NULL); /* made, never sent */
	n3 = card_de55(H_CHIP, 3, IMK1, old3, NULL);
	repersonalize_chip();
	cr_assert_eq(send_chip(H_CHIP, "000002", "051", old2, n2), 0);
	expect_declined_63();
	cr_assert_eq(send_chip(H_CHIP, "000003", "051", old3, n3), 0);
	expect_declined_63();
	approve_with_arpc(H_CHIP, "000004", 1, "00");
}

Test(card_crypto_own_start, no_key_for_the_range_declined_63)
{
	uint8_t de55[256];
	size_t len = card_de55(H_CHIP, 1, IMK1, de55, NULL);

	/* the engine without card keys */
	H.cfg.hsm = NULL;
	H.cfg.card_keys = NULL;
	h_start(&H);
	cr_assert_eq(send_chip(H_CHIP, "000001", "051", de55, len), 0);
	expect_local("63", "CRYPTOGRAM");
	cr_expect_eq(H.m.card_checks[TSW_CARD_CHECK_NO_KEY], 1);
}

Test(card_crypto, rotated_key_both_verify_then_the_retired_one_not)
{
	uint8_t de55[256];
	size_t len;

	add_key(TSW_VAULT_KEY_IMK_AC, TSW_VAULT_KEY_TDES2, "imk-2", "4000", IMK2, 16);
	h_card_keys(&H);
	cr_assert_eq(tsw_engine_reconfigure(H.e, &H.cfg), 0);
	approve_with_arpc(H_CHIP, "000001", 1, "00"); /* under IMK1: the older key */
	len = card_de55(H_CHIP, 2, IMK2, de55, NULL);
	cr_assert_eq(send_chip(H_CHIP, "000002", "051", de55, len), 0);
	wait_forwarded();
	cr_assert_eq(h_issuer_answer(&H, 0, &out->m[0], "00", 0), 0);
	h_collect_acq_clean(&H, out);
	cr_expect_str_eq(h_field(&out->m[0], 39), "00");
	cr_assert_eq(tsw_vault_key_retire(H.vault, TSW_VAULT_KEY_IMK_AC, "imk-1", 5, NULL), 0);
	h_card_keys(&H);
	cr_assert_eq(tsw_engine_reconfigure(H.e, &H.cfg), 0);
	len = card_de55(H_CHIP, 3, IMK1, de55, NULL);
	cr_assert_eq(send_chip(H_CHIP, "000003", "051", de55, len), 0);
	expect_local("63", "CRYPTOGRAM");
}

/* A chip request of t at atc under imk reaches the issuer and its
 * approval the acquirer. */
static void approved_under(enum h_token t, const char *stan, uint16_t atc, const uint8_t imk[16])
{
	uint8_t de55[256];
	size_t len = card_de55(t, atc, imk, de55, NULL);

	cr_assert_eq(send_chip(t, stan, "051", de55, len), 0);
	wait_forwarded();
	cr_assert_eq(h_issuer_answer(&H, 0, &out->m[0], "00", 0), 0);
	h_collect_acq_clean(&H, out);
	cr_assert_eq(out->n, 1);
	cr_expect_str_eq(h_field(&out->m[0], 39), "00");
}

/* A forged cryptogram costs one verification per key tried: the range's
 * keys past cryptogram.max_keys_tried (newest first) are not tried, and a
 * check that fails with keys left untried is counted. */
Test(card_crypto, keys_past_max_keys_tried_are_not_tried)
{
	uint8_t de55[256];
	size_t len;

	add_key(TSW_VAULT_KEY_IMK_AC, TSW_VAULT_KEY_TDES2, "imk-2", "4000", IMK2, 16);
	add_key(TSW_VAULT_KEY_IMK_AC, TSW_VAULT_KEY_TDES2, "imk-3", "4000", IMK3, 16);
	H.cfg.settings.cryptogram_max_keys_tried = 2;
	h_card_keys(&H);
	cr_assert_eq(tsw_engine_reconfigure(H.e, &H.cfg), 0);
	approved_under(H_CHIP, "000001", 1, IMK3);
	approved_under(H_CHIP, "000002", 2, IMK2);
	cr_expect_eq(H.m.cryptogram_keys_untried, 0, "verified: nothing counted");
	len = card_de55(H_CHIP, 3, IMK1, de55, NULL); /* the oldest: third */
	cr_assert_eq(send_chip(H_CHIP, "000003", "051", de55, len), 0);
	expect_declined_63();
	cr_expect_eq(H.m.cryptogram_keys_untried, 1);
	{
		struct tsw_engine_event ev;
		unsigned hits = 0;

		while (tsw_engine_next_event(H.e, &ev)) {
			if (ev.kind != TSW_EV_KEYS_TRIED_LIMIT)
				continue;
			hits++;
			cr_expect_eq(ev.n1, 2, "the bound");
			cr_expect_eq(ev.n2, 3, "the range's active keys");
		}
		cr_expect_eq(hits, 1, "one keys_tried_limit event");
	}
	H.cfg.settings.cryptogram_max_keys_tried = 3;
	cr_assert_eq(tsw_engine_reconfigure(H.e, &H.cfg), 0);
	approved_under(H_CHIP, "000004", 4, IMK1);
	cr_expect_eq(H.m.cryptogram_keys_untried, 1);
}

Test(card_crypto, reload_while_in_flight_keeps_the_verifying_key_for_tag_91)
{
	uint8_t de55[256], got[32], want[32];
	struct tsw_hsm_arqc_input in;
	struct h_msgs *req = malloc(sizeof(*req));
	size_t len = card_de55(H_CHIP, 1, IMK1, de55, &in), n;

	cr_assert_eq(send_chip(H_CHIP, "000001", "051", de55, len), 0);
	wait_forwarded();
	*req = *out;
	/* the verifying key retired and the harness's set dropped: only the
	 * request's own reference keeps it */
	cr_assert_eq(tsw_vault_key_retire(H.vault, TSW_VAULT_KEY_IMK_AC, "imk-1", 5, NULL), 0);
	add_key(TSW_VAULT_KEY_IMK_AC, TSW_VAULT_KEY_TDES2, "imk-2", "4000", IMK2, 16);
	h_card_keys(&H);
	cr_assert_eq(tsw_engine_reconfigure(H.e, &H.cfg), 0);
	cr_assert_eq(h_issuer_answer(&H, 0, &req->m[0], "00", 0), 0);
	h_collect_acq_clean(&H, out);
	n = tag91(&out->m[0], got);
	cr_assert_eq(n, expected_arpc(H_CHIP, &in, "00", want));
	cr_assert_eq(memcmp(got, want, n), 0);
	free(req);
}

/* ---- DE52 ---- */

static void pin_block(const uint8_t *zpk, enum tsw_vault_key_alg alg, enum tsw_hsm_kind kind,
		      const char *bound_to, const char *pin, uint8_t *blk)
{
	struct tsw_hsm_key *k;
	size_t klen = tsw_vault_key_alg_len(alg);

	cr_assert_eq(tsw_hsm_key_import(H.hsm, kind, (enum tsw_hsm_alg)alg, zpk, klen, &k), 0);
	cr_assert_eq(tsw_hsm_pin_form(card, k, bound_to, strlen(bound_to), pin, strlen(pin), blk),
		     0);
	tsw_hsm_key_free(k);
}

static int pin_verifies(const uint8_t *zpk, enum tsw_vault_key_alg alg, const char *pan,
			const uint8_t *blk, const char *pin)
{
	struct tsw_hsm_key *k;
	int r;

	cr_assert_eq(tsw_hsm_key_import(H.hsm, TSW_HSM_ZPK_ISSUER, (enum tsw_hsm_alg)alg, zpk,
					tsw_vault_key_alg_len(alg), &k),
		     0);
	r = tsw_hsm_pin_verify(card, k, pan, strlen(pan), blk, pin, strlen(pin));
	tsw_hsm_key_free(k);
	return r;
}

static int send_pin(enum h_token t, const char *stan, const char *de32, const uint8_t *blk,
		    size_t blen)
{
	uint8_t body[2048];
	struct tsw_iso_edit ed[] = {
	    {.field = 22, .len = 3, .data = (const uint8_t *)"011"},
	    {.field = 32, .len = (uint16_t)strlen(de32), .data = (const uint8_t *)de32},
	    {.field = 52, .len = (uint16_t)blen, .data = blk},
	};

	return h_send(&H, body, h_auth_edits(&H, body, sizeof(body), t, stan, ed, 3));
}

Test(card_crypto, format0_pin_block_reaches_the_issuer_bound_to_the_pan)
{
	uint8_t blk[16];

	pin_block(ZPK_ACQ, TSW_VAULT_KEY_TDES2, TSW_HSM_ZPK_ACQUIRER, h_tokens[H_OK].token, "4321",
		  blk);
	cr_assert_eq(send_pin(H_OK, "000001", ACQ_ID, blk, 8), 0);
	h_collect(&H, TSW_EP_LINK, 0, out);
	cr_assert_eq(out->n, 1);
	cr_assert_eq(out->m[0].f[52].len, 8);
	cr_expect_neq(memcmp(tsw_iso_ptr(&out->m[0], 52), blk, 8), 0, "never the acquirer's block");
	cr_expect_eq(pin_verifies(ZPK_ISS, TSW_VAULT_KEY_TDES2, h_tokens[H_OK].pan,
				  tsw_iso_ptr(&out->m[0], 52), "4321"),
		     0, "the issuer's key opens it, bound to the PAN");
	cr_expect_eq(H.m.pin_translations[TSW_PIN_OK], 1);
}

Test(card_crypto, pin_block_of_another_pan_or_no_key_or_garbage_96_pin_block)
{
	uint8_t blk[16], junk[8] = {1, 2, 3, 4, 5, 6, 7, 8};

	pin_block(ZPK_ACQ, TSW_VAULT_KEY_TDES2, TSW_HSM_ZPK_ACQUIRER, h_tokens[H_AMOUNT].token,
		  "4321", blk);
	cr_assert_eq(send_pin(H_OK, "000001", ACQ_ID, blk, 8), 0);
	expect_local("96", "PIN_BLOCK");
	pin_block(ZPK_ACQ, TSW_VAULT_KEY_TDES2, TSW_HSM_ZPK_ACQUIRER, h_tokens[H_OK].token, "4321",
		  blk);
	cr_assert_eq(send_pin(H_OK, "000002", "999999", blk, 8), 0);
	expect_local("96", "PIN_BLOCK");
	cr_assert_eq(send_pin(H_OK, "000003", ACQ_ID, junk, 8), 0);
	expect_local("96", "PIN_BLOCK");
	expect_no_issuer_request();
	cr_expect_eq(H.m.pin_translations[TSW_PIN_PAN], 1);
	cr_expect_eq(H.m.pin_translations[TSW_PIN_NO_ACQUIRER_KEY], 1);
	cr_expect_eq(H.m.pin_translations[TSW_PIN_FORMAT], 1);
}

Test(card_crypto_own_start, format4_pin_block_with_aes_keys_and_a_16_byte_de52)
{
	static const uint8_t aes_acq[16] = {0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7,
					    0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf};
	static const uint8_t aes_iss[32] = {0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7,
					    0xb8, 0xb9, 0xba, 0xbb, 0xbc, 0xbd, 0xbe, 0xbf,
					    0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7,
					    0xc8, 0xc9, 0xca, 0xcb, 0xcc, 0xcd, 0xce, 0xcf};
	uint8_t blk[16];

	cr_assert_eq(tsw_iso_profile_load_named(NULL, "pin16", &H.prof), 0);
	add_key(TSW_VAULT_KEY_ZPK_ACQUIRER, TSW_VAULT_KEY_AES128, "zpk-acq-aes", "654321", aes_acq,
		16);
	cr_assert_eq(tsw_vault_key_retire(H.vault, TSW_VAULT_KEY_ZPK_ISSUER, "zpk-iss-1", 9, NULL),
		     0);
	add_key(TSW_VAULT_KEY_ZPK_ISSUER, TSW_VAULT_KEY_AES256, "zpk-iss-aes", "0", aes_iss, 32);
	h_card_keys(&H);
	h_start(&H);
	pin_block(aes_acq, TSW_VAULT_KEY_AES128, TSW_HSM_ZPK_ACQUIRER, h_tokens[H_OK].token,
		  "987654", blk);
	cr_assert_eq(send_pin(H_OK, "000001", "654321", blk, 16), 0);
	h_collect(&H, TSW_EP_LINK, 0, out);
	cr_assert_eq(out->n, 1);
	cr_assert_eq(out->m[0].f[52].len, 16);
	cr_expect_eq(pin_verifies(aes_iss, TSW_VAULT_KEY_AES256, h_tokens[H_OK].pan,
				  tsw_iso_ptr(&out->m[0], 52), "987654"),
		     0);
	/* a format 0 acquirer key cannot fill a 16-byte DE52 */
	memset(blk, 0x5a, sizeof(blk));
	cr_assert_eq(send_pin(H_OK, "000002", ACQ_ID, blk, 16), 0);
	expect_local("96", "PIN_BLOCK");
}

Test(card_crypto, pin_block_of_a_reversal_never_reaches_the_issuer)
{
	uint8_t body[2048], blk[8] = {9, 9, 9, 9, 9, 9, 9, 9};
	struct tsw_iso_edit ed[] = {
	    {.field = 0, .len = 4, .data = (const uint8_t *)"0400"},
	    {.field = 52, .len = 8, .data = blk},
	};

	cr_assert_eq(h_send(&H, body, h_auth_edits(&H, body, sizeof(body), H_OK, "000001", ed, 2)),
		     0);
	h_collect(&H, TSW_EP_LINK, 0, out);
	cr_assert_eq(out->n, 1);
	cr_expect_not(tsw_iso_has(&out->m[0], 52), "DE52 removed from the issuer's copy");
}

/* ---- DE48 tag 11: the token cryptogram of e-commerce and card-on-file ---- */

static const uint8_t TAVV_KEY[16] = {0x2b, 0x7e, 0x15, 0x16, 0x28, 0xae, 0xd2, 0xa6,
				     0xab, 0xf7, 0x15, 0x88, 0x09, 0xcf, 0x4f, 0x3c};

static void add_tavv_key(void)
{
	add_key(TSW_VAULT_KEY_TAVV, TSW_VAULT_KEY_AES128, "tavv-1", "4000", TAVV_KEY, 16);
	h_card_keys(&H);
	cr_assert_eq(tsw_engine_reconfigure(H.e, &H.cfg), 0);
}

/* DE48 with tag 11 for token t, counter ctr, over amount (the device's
 * view of the purchase). */
static void tavv_de48(enum h_token t, uint16_t ctr, const char *amount, char *de48)
{
	struct tsw_hsm_tavv_input in = {
	    .token = h_tokens[t].token,
	    .token_len = 16,
	    .amount = amount,
	    .currency = "840",
	    .merchant = "MERCHANT0000001",
	    .merchant_len = 15,
	    .counter = ctr,
	};
	uint8_t mac[TSW_HSM_TAVV_MAC_BYTES];
	struct tsw_hsm_key *k;
	int n;

	cr_assert_eq(tsw_hsm_key_import(H.hsm, TSW_HSM_TAVV, TSW_HSM_AES128, TAVV_KEY, 16, &k), 0);
	cr_assert_eq(tsw_hsm_tavv_generate(card, k, &in, mac), 0);
	tsw_hsm_key_free(k);
	n = sprintf(de48, "1120%04X", ctr);
	for (unsigned i = 0; i < sizeof(mac); i++)
		n += sprintf(de48 + n, "%02X", mac[i]);
}

static int send_ecom(enum h_token t, const char *stan, const char *de48)
{
	uint8_t body[2048];
	size_t n = de48 ? h_auth(&H, body, sizeof(body), t, stan, 22, "810", 48, de48, 0)
			: h_auth(&H, body, sizeof(body), t, stan, 22, "810", 0);

	return h_send(&H, body, n);
}

Test(card_crypto, ecommerce_token_cryptogram_verified_and_its_counter_replay_refused)
{
	char de48[64];

	add_tavv_key();
	tavv_de48(H_OK, 7, "000000000500", de48);
	cr_assert_eq(send_ecom(H_OK, "000001", de48), 0);
	wait_forwarded();
	cr_assert_eq(out->n, 1);
	cr_assert_eq(h_issuer_answer(&H, 0, &out->m[0], "00", 0), 0);
	h_collect_acq_clean(&H, out);
	cr_expect_str_eq(h_field(&out->m[0], 39), "00");
	cr_expect(!tsw_iso_has(&out->m[0], 55), "no ARQC, no tag 91");
	/* the same cryptogram again */
	cr_assert_eq(send_ecom(H_OK, "000002", de48), 0);
	expect_local("63", "ATC_REPLAY");
	cr_expect_eq(H.m.card_checks[TSW_CARD_CHECK_OK], 1);
	cr_expect_eq(H.m.card_checks[TSW_CARD_CHECK_ATC_REPLAY], 1);
}

Test(card_crypto, ecommerce_without_or_with_a_wrong_token_cryptogram_declined_63)
{
	char de48[64];

	add_tavv_key();
	cr_assert_eq(send_ecom(H_OK, "000001", NULL), 0);
	expect_local("63", "CRYPTOGRAM");
	/* made for another amount than DE4's */
	tavv_de48(H_OK, 1, "000000000501", de48);
	cr_assert_eq(send_ecom(H_OK, "000002", de48), 0);
	expect_local("63", "CRYPTOGRAM");
	/* not 20 hex digits */
	cr_assert_eq(send_ecom(H_OK, "000003", "1120ZZZZ0000000000000000"), 0);
	expect_local("63", "CRYPTOGRAM");
	expect_no_issuer_request();
	cr_expect_eq(H.m.card_checks[TSW_CARD_CHECK_MISSING], 1);
	cr_expect_eq(H.m.card_checks[TSW_CARD_CHECK_WRONG], 1);
	cr_expect_eq(H.m.card_checks[TSW_CARD_CHECK_MALFORMED], 1);
}

Test(card_crypto, ecommerce_without_a_tavv_key_for_the_range_not_checked)
{
	cr_assert_eq(send_ecom(H_OK, "000001", NULL), 0);
	h_collect(&H, TSW_EP_LINK, 0, out);
	cr_assert_eq(out->n, 1, "forwarded: no key, nothing required");
}

/* ---- found by an attacker-style review: each failed before its fix ---- */

/* Waits until the issuer got a request or the acquirer an answer. */
static void wait_either(struct h_msgs *iss, struct h_msgs *acq)
{
	int64_t deadline = h_real_ms() + 10000;

	for (;;) {
		h_collect(&H, TSW_EP_LINK, 0, iss);
		h_collect_acq_clean(&H, acq);
		if (iss->n || acq->n)
			return;
		h_wait_step(&H, deadline, "the issuer or the acquirer to hear of it");
	}
}

/* The request was declined 63 by the switch and never reached the
 * issuer (waits for either, so a forward after the ATC's commit is seen). */
static void expect_declined_63(void)
{
	struct h_msgs *iss = malloc(sizeof(*iss));

	wait_either(iss, out);
	cr_expect_eq(iss->n, 0, "the issuer must not see it");
	cr_expect_eq(out->n, 1, "answered by the switch");
	if (out->n)
		cr_expect_str_eq(h_field(&out->m[0], 39), "63");
	free(iss);
}

static int send_chip_with(enum h_token t, const char *stan, const uint8_t *de55, size_t de55_len,
			  unsigned f, const char *v)
{
	uint8_t body[2048];
	struct tsw_iso_edit ed[] = {
	    {.field = 22, .len = 3, .data = (const uint8_t *)"051"},
	    {.field = 55, .len = (uint16_t)de55_len, .data = de55},
	    {.field = (uint16_t)f, .len = (uint16_t)strlen(v), .data = (const uint8_t *)v},
	};

	return h_send(&H, body, h_auth_edits(&H, body, sizeof(body), t, stan, ed, 3));
}

/* A token whose record requires an ARQC (cvn 18), pos_modes left at
 * 0 as `tokvault provision --cvn 18` leaves it: keyed (01) or swiped (02,
 * 90) it reaches the issuer with no cryptogram at all. Whoever learned
 * the device token's number bypasses the control by choosing DE22. */
Test(card_crypto, review_cvn_token_keyed_or_swiped_without_cryptogram_not_forwarded)
{
	static const char *modes[] = {"011", "021", "901"};
	char stan[7];

	for (unsigned i = 0; i < 3; i++) {
		snprintf(stan, sizeof(stan), "%06u", i + 1);
		cr_assert_eq(send_chip(H_CHIP, stan, modes[i], NULL, 0), 0);
		h_collect_acq_clean(&H, out);
		cr_expect_eq(out->n, 1, "DE22 %s: answered by the switch", modes[i]);
		if (out->n) {
			cr_expect_str_eq(h_field(&out->m[0], 39), "57", "DE22 %s", modes[i]);
			cr_expect_str_eq(h_field(&out->m[0], 44), "DOMAIN_POS_MODE", "DE22 %s",
					 modes[i]);
		}
	}
	expect_no_issuer_request();
}

/* The ARQC covers 9F02 (amount) and 5F2A (currency), but nothing
 * compares them with DE4 / DE49, and the issuer, which cannot verify the
 * ARQC (the switch holds the IMK), authorizes DE4. A cryptogram the card
 * made for 5.00 approves 5,000.00. */
Test(card_crypto, review_arqc_for_another_amount_or_currency_than_de4_de49_declined)
{
	uint8_t de55[256];
	size_t len = card_de55(H_CHIP, 1, IMK1, de55, NULL); /* 9F02 000000000500, 5F2A 0840 */

	cr_assert_eq(send_chip_with(H_CHIP, "000001", de55, len, 4, "000000500000"), 0);
	expect_declined_63();
	len = card_de55(H_CHIP, 2, IMK1, de55, NULL);
	cr_assert_eq(send_chip_with(H_CHIP, "000002", de55, len, 49, "978"), 0);
	expect_declined_63();
	cr_expect_eq(H.m.card_checks[TSW_CARD_CHECK_OK], 0, "neither verified as good");
}

/* 5F34 in DE55 (sender's choice) overrides the record's PSN: a device
 * personalized with another PSN (the replaced phone, PSN 00, where the
 * record now says 01) still verifies. */
Test(card_crypto, review_de55_psn_other_than_the_records_declined)
{
	struct tsw_hsm_arqc_input in = card_input(cvn_of(H_CHIP), 1);
	struct tsw_hsm_key *k;
	uint8_t de55[256];
	int n;

	in.has_psn = true;
	in.psn = 0x00; /* the record says 01 */
	cr_assert_eq(tsw_hsm_key_import(H.hsm, TSW_HSM_IMK_AC, TSW_HSM_TDES2, IMK1, 16, &k), 0);
	cr_assert_eq(tsw_hsm_arqc_generate(card, k, h_tokens[H_CHIP].token, 16, 0x00, &in, in.arqc),
		     0);
	tsw_hsm_key_free(k);
	n = tsw_hsm_de55_build(&in, de55, sizeof(de55));
	cr_assert_gt(n, 0);
	cr_assert_eq(send_chip(H_CHIP, "000001", "051", de55, (size_t)n), 0);
	expect_declined_63();
}

/* A DE55 with a second 9F02 / 9F36 after the verified ones: the switch
 * reads the first, the issuer gets both and may read the last. */
Test(card_crypto, review_de55_with_repeated_arqc_tags_declined)
{
	static const uint8_t extra[] = {0x9f, 0x02, 0x06, 0x00, 0x00, 0x99, 0x99,
					0x99, 0x99, 0x9f, 0x36, 0x02, 0x00, 0x63};
	uint8_t de55[256 + sizeof(extra)];
	size_t len = card_de55(H_CHIP, 1, IMK1, de55, NULL);

	memcpy(de55 + len, extra, sizeof(extra));
	len += sizeof(extra);
	cr_assert_eq(send_chip(H_CHIP, "000001", "051", de55, len), 0);
	expect_declined_63();
}

/* A limited-use e-commerce request parked for its use; a reload adds the
 * range's tavv key meanwhile. Run again, it records the counter and parks
 * a second time, but gate()'s resume keeps only the counter's ticket: the
 * use reservation is forgotten (never released), and the third run
 * reserves again: 65 DOMAIN_USES for the token's only use. */
Test(card_crypto, review_use_reserved_before_a_reload_kept_across_a_second_park)
{
	struct h_msgs *iss = malloc(sizeof(*iss));
	char de48[64];
	uint8_t body[2048];

	/* the parked path (state.forward_before_durable off) */
	H.e->cfg.state_forward_before_durable = false;
	tavv_de48(H_LIMITED, 1, "000000000500", de48);
	cr_assert_eq(
	    h_send(&H, body,
		   h_auth(&H, body, sizeof(body), H_LIMITED, "000001", 22, "810", 48, de48, 0)),
	    0);
	if (H.m.parked != 1) {
		free(iss);
		cr_skip_test("the writer committed at once: nothing parked");
	}
	add_tavv_key();
	wait_either(iss, out);
	cr_expect_eq(out->n, 0, "no local answer (got DE39 %s)",
		     out->n ? h_field(&out->m[0], 39) : "-");
	cr_expect_eq(iss->n, 1, "forwarded once the counter is durable");
	free(iss);
}

/* Two acquirer keys (rotation). A format 0 block under the other key
 * passes the PAN-free nibbles 0..3 under the first key tried with
 * probability 1/16 * 9/16 * (10/16)^2 = 1.4 %; pin_translate() then
 * stops with TSW_PIN_PAN and never tries the key that opens it. */
static bool pan_error_under(struct tsw_hsm_key *other, struct tsw_hsm_key *iss, const uint8_t *blk)
{
	uint8_t o[16];

	return tsw_hsm_pin_translate(card, other, h_tokens[H_OK].token, 16, iss, h_tokens[H_OK].pan,
				     16, blk, o) == -TSW_E_PIN_PAN;
}

static void block_misread_under(struct tsw_hsm_key *own, struct tsw_hsm_key *other,
				struct tsw_hsm_key *iss, uint8_t *blk, char *pin)
{
	for (unsigned p = 1000; p < 10000; p++) {
		snprintf(pin, 5, "%04u", p);
		cr_assert_eq(tsw_hsm_pin_form(card, own, h_tokens[H_OK].token, 16, pin, 4, blk), 0);
		if (pan_error_under(other, iss, blk))
			return;
	}
	cr_assert_fail("no PIN in 1000..9999 gives such a block");
}

Test(card_crypto, review_rotated_acquirer_key_block_opened_whatever_the_other_key_reads)
{
	static const uint8_t ZPK_ACQ2[16] = {0x13, 0x57, 0x9b, 0xdf, 0x02, 0x46, 0x8a, 0xce,
					     0xec, 0xa8, 0x64, 0x20, 0xfd, 0xb9, 0x75, 0x31};
	struct tsw_hsm_key *a, *b, *iss;
	uint8_t blk_a[16], blk_b[16];
	char pin_a[5], pin_b[5];

	add_key(TSW_VAULT_KEY_ZPK_ACQUIRER, TSW_VAULT_KEY_TDES2, "zpk-acq-2", ACQ_ID, ZPK_ACQ2, 16);
	h_card_keys(&H);
	cr_assert_eq(tsw_engine_reconfigure(H.e, &H.cfg), 0);
	cr_assert_eq(
	    tsw_hsm_key_import(H.hsm, TSW_HSM_ZPK_ACQUIRER, TSW_HSM_TDES2, ZPK_ACQ, 16, &a), 0);
	cr_assert_eq(
	    tsw_hsm_key_import(H.hsm, TSW_HSM_ZPK_ACQUIRER, TSW_HSM_TDES2, ZPK_ACQ2, 16, &b), 0);
	cr_assert_eq(
	    tsw_hsm_key_import(H.hsm, TSW_HSM_ZPK_ISSUER, TSW_HSM_TDES2, ZPK_ISS, 16, &iss), 0);
	/* whichever key the engine tries first, one of the two is misread */
	block_misread_under(a, b, iss, blk_a, pin_a);
	block_misread_under(b, a, iss, blk_b, pin_b);
	tsw_hsm_key_free(a);
	tsw_hsm_key_free(b);
	tsw_hsm_key_free(iss);
	cr_assert_eq(send_pin(H_OK, "000001", ACQ_ID, blk_a, 8), 0);
	cr_assert_eq(send_pin(H_OK, "000002", ACQ_ID, blk_b, 8), 0);
	h_collect(&H, TSW_EP_LINK, 0, out);
	cr_expect_eq(out->n, 2, "both blocks reach the issuer (got %u)", out->n);
	cr_expect_eq(H.m.pin_translations[TSW_PIN_PAN], 0);
}

/* 9F27 (cryptogram information data) is parsed but never read: a DE55
 * whose cryptogram is an AAC (9F27 00: the card declined offline) or a
 * TC (40) verifies like an ARQC and goes to the issuer for approval. */
Test(card_crypto, review_aac_or_tc_in_an_authorization_declined)
{
	static const uint8_t cids[] = {0x00, 0x40};
	uint8_t de55[256];
	char stan[7];

	for (unsigned i = 0; i < 2; i++) {
		struct tsw_hsm_arqc_input in = card_input(cvn_of(H_CHIP), (uint16_t)(i + 1));
		struct tsw_hsm_key *k;
		int n;

		in.cid = cids[i];
		cr_assert_eq(tsw_hsm_key_import(H.hsm, TSW_HSM_IMK_AC, TSW_HSM_TDES2, IMK1, 16, &k),
			     0);
		cr_assert_eq(tsw_hsm_arqc_generate(card, k, h_tokens[H_CHIP].token, 16,
						   psn_of(H_CHIP), &in, in.arqc),
			     0);
		tsw_hsm_key_free(k);
		n = tsw_hsm_de55_build(&in, de55, sizeof(de55));
		cr_assert_gt(n, 0);
		snprintf(stan, sizeof(stan), "%06u", i + 1);
		cr_assert_eq(send_chip(H_CHIP, stan, "051", de55, (size_t)n), 0);
		expect_declined_63();
	}
}

/* ---- repersonalization: what the old device made stays dead ---- */

/* The token cryptogram's MAC is under the range's tavv key and names
 * neither the PSN nor the epoch: a DE48 tag 11 made before a
 * re-personalization (kept by a merchant, or by the old device) must not
 * be good again after it, so its counter is not the ATC's and is never
 * reset. */
Test(card_crypto, repersonalized_token_refuses_its_old_token_cryptogram)
{
	char de48[64];

	add_tavv_key();
	tavv_de48(H_OK, 1, "000000000500", de48);
	cr_assert_eq(send_ecom(H_OK, "000001", de48), 0);
	wait_forwarded();
	cr_assert_eq(out->n, 1);
	cr_assert_eq(h_issuer_answer(&H, 0, &out->m[0], "00", 0), 0);
	h_collect_acq_clean(&H, out);
	cr_assert_str_eq(h_field(&out->m[0], 39), "00");
	cr_assert_eq(tsw_vault_repersonalize(H.vault, h_tokens[H_OK].token, 16, TSW_VAULT_PSN_NEXT,
					     NULL, NULL),
		     0);
	/* the same DE48 again, after the reset */
	cr_assert_eq(send_ecom(H_OK, "000002", de48), 0);
	expect_declined_63();
}

/* A PSN only ever goes up: A -> B -> A would give the device of two
 * personalizations ago its key back with a counter started over, so its
 * cryptograms, captured or fresh, would verify again. */
Test(card_crypto, a_psn_given_before_is_never_given_again)
{
	uint8_t old2[256];
	size_t n2;
	unsigned psn = 0;

	chip_psn = 0x01;
	approve_with_arpc(H_CHIP, "000001", 1, "00");
	n2 = card_de55(H_CHIP, 2, IMK1, old2, NULL); /* device 1 (PSN 01), never sent */
	repersonalize_chip();			     /* device 2: PSN 02 */
	approve_with_arpc(H_CHIP, "000002", 1, "00");
	cr_assert_eq(tsw_vault_repersonalize(H.vault, h_tokens[H_CHIP].token, 16, 1, NULL, &psn),
		     -TSW_E_BAD_INPUT, "device 1's PSN again");
	cr_assert_eq(send_chip(H_CHIP, "000003", "051", old2, n2), 0);
	expect_declined_63();
	approve_with_arpc(H_CHIP, "000004", 2, "00"); /* device 2 still is the card */
}
