/* The wire between the engine and its peers (white-box: the engine's
 * internal header): an issuer copy its length header cannot say, answers
 * whose MTI answers another message, the card data of DE55, and the PAN
 * in binary forms (packed BCD, track-2 BCD) anywhere in an answer. Every
 * answer to the acquirer is scanned for the PANs of the test vault in
 * ASCII and in BCD. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "answer_guard.h"
#include "engine_int.h"
#include "harness.h"
#include "tsw/error.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static struct h H;
static struct h_msgs *acq, *iss;
static uint8_t body[H_BUF];

static void setup(void)
{
	h_init(&H);
	acq = calloc(1, sizeof(*acq));
	iss = calloc(1, sizeof(*iss));
}

static void teardown(void)
{
	h_fini(&H);
	free(acq);
	free(iss);
}

static void scan_acq(void)
{
	for (unsigned i = 0; i < H_TOKEN_MAX; i++)
		cr_assert_not(h_contains_pan(acq->buf, acq->len, h_tokens[i].pan),
			      "a PAN (ASCII or BCD) in an acquirer answer");
}

static void collect_acq(void)
{
	h_collect(&H, TSW_EP_ACQ, (uint32_t)H.slot, acq);
	scan_acq();
}

TestSuite(wire, .init = setup, .fini = teardown, .timeout = 30);

/* The issuer's answer to req with MTI mti, DE39 rc and the extra edits
 * (binary values allowed), fed to link 0. */
static int answer_with(const struct tsw_iso_msg *req, const char *mti, const char *rc,
		       const struct tsw_iso_edit *extra, size_t n_extra)
{
	static const unsigned copy[] = {2, 3, 4, 7, 11, 14, 37, 41, 42, 49};
	struct tsw_iso_edit ed[32];
	uint8_t frame[H_BUF];
	size_t n = 0;
	int len, r;

	ed[n++] = (struct tsw_iso_edit){0, 4, (const uint8_t *)mti};
	for (size_t i = 0; i < ARRAY_SIZE(copy); i++)
		if (tsw_iso_has(req, copy[i]))
			ed[n++] = (struct tsw_iso_edit){(uint16_t)copy[i], req->f[copy[i]].len,
							tsw_iso_ptr(req, copy[i])};
	if (rc) /* NULL: an answer without DE39 */
		ed[n++] = (struct tsw_iso_edit){39, 2, (const uint8_t *)rc};
	ed[n++] = (struct tsw_iso_edit){38, 6, (const uint8_t *)"AB1234"};
	for (size_t i = 0; i < n_extra; i++)
		ed[n++] = extra[i];
	len = tsw_iso_encode(&H.prof, NULL, ed, n, frame + 2, sizeof(frame) - 2);
	cr_assert_geq(len, 0, "answer encode: %s", tsw_strerror(len));
	frame[0] = (uint8_t)(len >> 8);
	frame[1] = (uint8_t)len;
	tsw_engine_loop_begin(H.e, H.now);
	r = tsw_engine_link_input(H.e, 0, frame, (size_t)len + 2, H.now);
	tsw_engine_loop_end(H.e);
	return r;
}

/* Sends a 0100 (or, with mti, the same as another MTI) of H_OK and
 * returns the issuer's copy in iss->m[0] (reversals the engine sends
 * meanwhile left out). */
static void forward(const char *stan, const char *mti)
{
	size_t n = h_auth(&H, body, sizeof(body), H_OK, stan, 0);
	unsigned k = 0;

	if (mti)
		memcpy(body, mti, 4);
	cr_assert_eq(h_send(&H, body, n), 0);
	h_collect(&H, TSW_EP_LINK, 0, iss);
	for (unsigned i = 0; i < iss->n; i++)
		if (memcmp(iss->m[i].mti, mti ? mti : "0100", 4) == 0)
			iss->m[k++] = iss->m[i];
	iss->n = k;
	cr_assert_eq(iss->n, 1, "forwarded");
}

/* ---- the issuer copy and the length header ------------------------------ */

static struct tsw_iso_profile acq12k, iss_ascii4;

/* Signs link 0 on with an ascii4 issuer: the harness speaks bin2. */
static void sign_on_ascii4(void)
{
	const uint8_t *out;
	size_t len;
	struct tsw_iso_msg m;
	struct tsw_endpoint ep = {.kind = TSW_EP_LINK, .slot = 0};
	struct tsw_iso_edit ed[4];
	uint8_t frame[256];
	int n;

	cr_assert(tsw_engine_link_wants_connect(H.e, 0, H.now));
	tsw_engine_link_connecting(H.e, 0, H.now);
	tsw_engine_link_up(H.e, 0, H.now);
	tsw_engine_out(H.e, ep, &out, &len);
	cr_assert_gt(len, 4);
	cr_assert_eq(tsw_iso_decode(&iss_ascii4, out + 4, len - 4, &m), 0, "the sign-on");
	cr_assert_eq(memcmp(m.mti, "0800", 4), 0);
	ed[0] = (struct tsw_iso_edit){0, 4, (const uint8_t *)"0810"};
	ed[1] = (struct tsw_iso_edit){11, 6, tsw_iso_ptr(&m, 11)};
	ed[2] = (struct tsw_iso_edit){39, 2, (const uint8_t *)"00"};
	ed[3] = (struct tsw_iso_edit){70, 3, (const uint8_t *)"001"};
	n = tsw_iso_encode(&iss_ascii4, NULL, ed, 4, frame + 4, sizeof(frame) - 4);
	cr_assert_gt(n, 0, "0810: %s", tsw_strerror(n));
	tsw_engine_sent(H.e, ep, len); /* wipes what m points into */
	cr_assert_eq(tsw_iso_header_write(&iss_ascii4, (size_t)n, frame), 0);
	tsw_engine_loop_begin(H.e, H.now);
	cr_assert_eq(tsw_engine_link_input(H.e, 0, frame, (size_t)n + 4, H.now), 0);
	tsw_engine_loop_end(H.e);
	cr_assert(tsw_engine_ready(H.e));
}

/* The profiles' max_frame above the ascii4 header's 9999, as limits.max_frame
 * once set them (the configuration refuses it now: tsw_config_check_frame).
 * The engine must still never write a header modulo 10000. */
Test(wire, issuer_copy_the_ascii4_header_cannot_say_is_answered_96_and_never_sent)
{
	static char pad[900];
	struct tsw_endpoint link = {.kind = TSW_EP_LINK, .slot = 0};
	struct tsw_engine_event ev;
	struct tsw_iso_edit ed[32];
	const uint8_t *out;
	size_t len, n = 0;
	int blen;
	bool logged = false;

	acq12k = H.prof;
	acq12k.max_frame = 12000;
	cr_assert_eq(tsw_iso_profile_load_named(NULL, "ascii4", &iss_ascii4), 0);
	iss_ascii4.max_frame = 12000;
	H.cfg.acq_profile = &acq12k;
	H.cfg.iss_profile = &iss_ascii4;
	cr_assert_eq(tsw_engine_new(&H.cfg, H.vault, H.state, &H.m, &H.e), 0);
	H.slot = tsw_engine_acq_open(H.e, H.now);
	sign_on_ascii4();

	/* 10 ans fields of 900 bytes, the usual ones and one to make 9990 */
	memset(pad, 'P', sizeof(pad));
	ed[n++] = (struct tsw_iso_edit){0, 4, (const uint8_t *)"0100"};
	ed[n++] = (struct tsw_iso_edit){2, (uint16_t)strlen(h_tokens[H_OK].token),
					(const uint8_t *)h_tokens[H_OK].token};
	ed[n++] = (struct tsw_iso_edit){3, 6, (const uint8_t *)"000000"};
	ed[n++] = (struct tsw_iso_edit){4, 12, (const uint8_t *)"000000000500"};
	ed[n++] = (struct tsw_iso_edit){7, 10, (const uint8_t *)"1123031500"};
	ed[n++] = (struct tsw_iso_edit){11, 6, (const uint8_t *)"000777"};
	ed[n++] = (struct tsw_iso_edit){14, 4, (const uint8_t *)"3012"};
	ed[n++] = (struct tsw_iso_edit){22, 3, (const uint8_t *)"051"};
	ed[n++] = (struct tsw_iso_edit){37, 12, (const uint8_t *)"123456789012"};
	ed[n++] = (struct tsw_iso_edit){41, 8, (const uint8_t *)"TERM0001"};
	ed[n++] = (struct tsw_iso_edit){42, 15, (const uint8_t *)"MERCHANT0000001"};
	ed[n++] = (struct tsw_iso_edit){49, 3, (const uint8_t *)"840"};
	for (unsigned f = 56; f <= 63; f++)
		ed[n++] = (struct tsw_iso_edit){(uint16_t)f, 900, (const uint8_t *)pad};
	ed[n++] = (struct tsw_iso_edit){46, 900, (const uint8_t *)pad};
	ed[n++] = (struct tsw_iso_edit){47, 900, (const uint8_t *)pad};
	/* just under 10000 bytes: the copy, with DE48 token data, above */
	ed[n++] = (struct tsw_iso_edit){106, 0, (const uint8_t *)pad};
	blen = tsw_iso_encode(&acq12k, NULL, ed, n, body + 2, sizeof(body) - 2);
	cr_assert_gt(blen, 0, "%s", tsw_strerror(blen));
	cr_assert_lt(blen, 9990 - 10);
	ed[n - 1].len = (uint16_t)(9990 - blen);
	blen = tsw_iso_encode(&acq12k, NULL, ed, n, body + 2, sizeof(body) - 2);
	cr_assert_eq(blen, 9990);
	body[0] = (uint8_t)(blen >> 8);
	body[1] = (uint8_t)blen;
	cr_assert_eq(h_send_raw(&H, body, (size_t)blen + 2), 0);

	tsw_engine_out(H.e, link, &out, &len);
	cr_assert_eq(len, 0, "nothing of it on the issuer link (a header written modulo 10000)");
	collect_acq();
	cr_assert_eq(acq->n, 1);
	cr_assert_str_eq(h_field(&acq->m[0], 39), "96");
	cr_assert_str_eq(h_field(&acq->m[0], 44), "SYSTEM");
	cr_assert_str_eq(h_field(&acq->m[0], 11), "000777");
	cr_assert_eq(H.m.issuer_frames_too_big, 1);
	cr_assert_eq(tsw_engine_inflight(H.e), 0);
	while (tsw_engine_next_event(H.e, &ev)) {
		char line[512];

		if (ev.kind != TSW_EV_ISSUER_FRAME_TOO_BIG)
			continue;
		tsw_engine_event_format(&ev, line, sizeof(line));
		cr_assert(strstr(line, "max_frame=9999"), "%s", line);
		cr_assert(strstr(line, "stan=\"000777\""), "%s", line);
		cr_assert_null(strstr(line, h_tokens[H_OK].token), "unmasked token: %s", line);
		cr_assert_null(strstr(line, h_tokens[H_OK].pan), "PAN: %s", line);
		logged = true;
	}
	cr_assert(logged, "an issuer_frame_too_big event");
}

/* ---- the MTI of an answer ----------------------------------------------- */

Test(wire, response_mti_rule)
{
	static const struct {
		const char *req, *ans;
		bool ok;
	} cases[] = {
	    {"0100", "0110", true},  {"0101", "0110", true},  {"0200", "0210", true},
	    {"0120", "0130", true},  {"0121", "0130", true},  {"0220", "0230", true},
	    {"0400", "0410", true},  {"0401", "0410", true},  {"0420", "0430", true},
	    {"0401", "0411", true},  {"0101", "0111", true},  {"0400", "0411", false},
	    {"0100", "0410", false}, {"0100", "0210", false}, {"0100", "0130", false},
	    {"0100", "0100", false}, {"0100", "0111", false}, {"0400", "0110", false},
	    {"0200", "0110", false}, {"0120", "0230", false}, {"0420", "0410", false},
	    {"0110", "0120", false}, {"1100", "0110", false},
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
		cr_assert_eq(engine__answer_mti_matches(cases[i].req, cases[i].ans), cases[i].ok,
			     "%s answered %s", cases[i].req, cases[i].ans);
}

/* A 0410 (or any answer to another kind of message) with the STAN and the
 * echoed fields of a pending 0100 must not settle it: dropped, counted,
 * logged, and the request still gets its own answer. */
Test(wire, answer_with_another_mti_leaves_the_request_pending)
{
	static const struct {
		const char *req, *wrong, *right;
	} cases[] = {
	    {"0100", "0410", "0110"}, {"0100", "0130", "0110"}, {"0100", "0210", "0110"},
	    {"0100", "0100", "0110"}, {"0200", "0110", "0210"}, {"0200", "0230", "0210"},
	};
	struct tsw_engine_event ev;
	unsigned logged = 0;

	h_start(&H);
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char stan[7];

		snprintf(stan, sizeof(stan), "0005%02zu", i);
		forward(stan, cases[i].req);
		cr_assert_eq(answer_with(&iss->m[0], cases[i].wrong, "00", NULL, 0), 0);
		collect_acq();
		cr_assert_eq(acq->n, 0, "%s settled by %s", cases[i].req, cases[i].wrong);
		cr_assert_eq(H.m.answer_mti_mismatches, i + 1);
		cr_assert_eq(tsw_engine_inflight(H.e), 1, "still pending");
		cr_assert_eq(answer_with(&iss->m[0], cases[i].right, "00", NULL, 0), 0);
		collect_acq();
		cr_assert_eq(acq->n, 1, "%s answered %s", cases[i].req, cases[i].right);
		cr_assert_eq(memcmp(acq->m[0].mti, cases[i].right, 4), 0);
		cr_assert_str_eq(h_field(&acq->m[0], 39), "00");
		cr_assert_str_eq(h_field(&acq->m[0], 11), stan);
		cr_assert_eq(tsw_engine_inflight(H.e), 0);
	}
	while (tsw_engine_next_event(H.e, &ev)) {
		char line[512];

		if (ev.kind != TSW_EV_ANSWER_MTI_MISMATCH)
			continue;
		tsw_engine_event_format(&ev, line, sizeof(line));
		if (logged == 0) {
			cr_assert(strstr(line, "request_mti=\"0100\" answer_mti=\"0410\""), "%s",
				  line);
			cr_assert(strstr(line, "stan=\"000500\""), "%s", line);
		}
		cr_assert_null(strstr(line, h_tokens[H_OK].pan), "PAN: %s", line);
		logged++;
	}
	cr_assert_geq(logged, 1, "issuer_answer_mti_mismatch events");
}

/* ---- DE55 --------------------------------------------------------------- */

/* BER-TLV: tag (1-2 bytes), short length, value. */
static size_t put_tlv(uint8_t *p, size_t at, uint32_t tag, const uint8_t *v, size_t n)
{
	if (tag > 0xff)
		p[at++] = (uint8_t)(tag >> 8);
	p[at++] = (uint8_t)tag;
	p[at++] = (uint8_t)n;
	memcpy(p + at, v, n);
	return at + n;
}

/* digits as packed BCD, pad nibble appended when odd; low_first puts the
 * pad first. Returns the bytes written. */
static size_t bcd(uint8_t *out, const char *digits, uint8_t pad, bool low_first)
{
	char s[64];
	size_t n, k = 0;

	snprintf(s, sizeof(s), "%s%s", low_first ? (pad ? "F" : "0") : "", digits);
	n = strlen(s);
	if (n % 2)
		s[n++] = pad ? 'F' : '0';
	for (size_t i = 0; i < n; i += 2) {
		unsigned hi = s[i] == 'F' ? 15u : s[i] == 'D' ? 13u : (unsigned)(s[i] - '0');
		unsigned lo = s[i + 1] == 'F'	? 15u
			      : s[i + 1] == 'D' ? 13u
						: (unsigned)(s[i + 1] - '0');

		out[k++] = (uint8_t)(hi << 4 | lo);
	}
	return k;
}

static const uint8_t arqc[8] = {1, 2, 3, 4, 5, 6, 7, 8};
static const uint8_t iad[10] = {0x91, 0x0a, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88};

/* Tags 5A, 57, 5F24 and 9F6B are removed from DE55, at the top and inside
 * a template; the rest goes to the acquirer unchanged. */
Test(wire, card_data_tags_are_stripped_from_de55)
{
	uint8_t de55[256], inner[64], v[32], want[64];
	size_t n = 0, k, ni = 0, w = 0;
	struct tsw_iso_edit ed;
	char track2[40];
	const uint8_t *got;
	size_t got_len;

	h_start(&H);
	snprintf(track2, sizeof(track2), "%sD2912201", h_tokens[H_OK].pan);
	k = bcd(v, h_tokens[H_OK].pan, 1, false);
	n = put_tlv(de55, n, 0x5a, v, k);
	n = put_tlv(de55, n, 0x9f26, arqc, sizeof(arqc));
	k = bcd(v, track2, 1, false);
	n = put_tlv(de55, n, 0x57, v, k);
	n = put_tlv(de55, n, 0x5f24, (const uint8_t *)"\x29\x12\x31", 3);
	/* a template holding track 2 data and an issuer script command */
	k = bcd(v, track2, 1, false);
	ni = put_tlv(inner, ni, 0x9f6b, v, k);
	ni = put_tlv(inner, ni, 0x86, (const uint8_t *)"\x84\x24\x00\x00\x00", 5);
	n = put_tlv(de55, n, 0x72, inner, ni);
	n = put_tlv(de55, n, 0x91, iad + 2, 8);
	/* what the acquirer must get */
	w = put_tlv(want, w, 0x9f26, arqc, sizeof(arqc));
	w = put_tlv(want, w, 0x72, (const uint8_t *)"\x86\x05\x84\x24\x00\x00\x00", 7);
	w = put_tlv(want, w, 0x91, iad + 2, 8);

	forward("000601", NULL);
	ed = (struct tsw_iso_edit){55, (uint16_t)n, de55};
	cr_assert_eq(answer_with(&iss->m[0], "0110", "00", &ed, 1), 0);
	collect_acq();
	cr_assert_eq(acq->n, 1);
	cr_assert_str_eq(h_field(&acq->m[0], 39), "00", "the answer goes, without card data");
	cr_assert(tsw_iso_has(&acq->m[0], 55));
	got = tsw_iso_ptr(&acq->m[0], 55);
	got_len = acq->m[0].f[55].len;
	cr_assert_eq(got_len, w);
	cr_assert_eq(memcmp(got, want, w), 0, "DE55 without 5A, 57, 5F24, 9F6B");
	cr_assert_eq(H.m.de55_tags_stripped, 4);
	cr_assert_eq(H.m.pan_leaks_blocked, 0);

	/* nothing to strip: DE55 byte for byte as the issuer sent it */
	forward("000602", NULL);
	ed = (struct tsw_iso_edit){55, (uint16_t)w, want};
	cr_assert_eq(answer_with(&iss->m[0], "0110", "00", &ed, 1), 0);
	collect_acq();
	cr_assert_eq(acq->n, 1);
	cr_assert_eq(acq->m[0].f[55].len, w);
	cr_assert_eq(memcmp(tsw_iso_ptr(&acq->m[0], 55), want, w), 0);
	cr_assert_eq(H.m.de55_tags_stripped, 4);
}

/* A DE55 that is not BER-TLV cannot be checked: the answer goes without
 * it (docs/wire.md), and the PAN scan still looks at everything else. */
Test(wire, malformed_de55_is_removed_from_the_answer)
{
	static const uint8_t bad[] = {0x9f, 0x26, 0x08, 1, 2, 3}; /* value past the end */
	struct tsw_iso_edit ed = {55, sizeof(bad), bad};

	h_start(&H);
	forward("000611", NULL);
	cr_assert_eq(answer_with(&iss->m[0], "0110", "00", &ed, 1), 0);
	collect_acq();
	cr_assert_eq(acq->n, 1);
	cr_assert_str_eq(h_field(&acq->m[0], 39), "00");
	cr_assert_not(tsw_iso_has(&acq->m[0], 55), "DE55 removed");
	cr_assert_eq(H.m.de55_dropped, 1);
}

/* ---- the PAN in binary forms -------------------------------------------- */

/* The PAN in a DE55 tag that is not stripped, or in another binary field,
 * in every form: the answer is replaced by 96 and the approval reversed. */
Test(wire, pan_in_bcd_anywhere_in_an_answer_is_replaced_by_96)
{
	const char *pan = h_tokens[H_OK].pan;
	char track2[40];
	unsigned i = 0;

	h_start(&H);
	snprintf(track2, sizeof(track2), "%sD29122010000", pan);
	for (unsigned form = 0; form < 6; form++) {
		uint8_t de55[128], v[48];
		size_t n = 0, k = 0;
		struct tsw_iso_edit ed;
		char stan[7];

		switch (form) {
		case 0: /* high nibble first, F padded */
			k = bcd(v + 1, pan, 1, false) + 1;
			v[0] = 0xaa;
			break;
		case 1: /* high nibble first, 0 padded */
			k = bcd(v, pan, 0, false);
			break;
		case 2: /* low nibble first: one pad nibble before it */
			k = bcd(v, pan, 1, true);
			break;
		case 3: /* low nibble first, 0 padded */
			k = bcd(v, pan, 0, true);
			break;
		case 4: /* track 2 BCD: PAN, D, expiry */
			k = bcd(v, track2, 1, false);
			break;
		case 5: /* track 2 BCD, starting in a low nibble */
			k = bcd(v, track2, 1, true);
			break;
		}
		n = put_tlv(de55, n, 0x9f26, arqc, sizeof(arqc));
		n = put_tlv(de55, n, 0x9f10, v, k); /* issuer application data */
		snprintf(stan, sizeof(stan), "0007%02u", form);
		forward(stan, NULL);
		ed = (struct tsw_iso_edit){55, (uint16_t)n, de55};
		cr_assert_eq(answer_with(&iss->m[0], "0110", "00", &ed, 1), 0);
		h_collect_after_commit(&H, acq);
		scan_acq();
		cr_assert_eq(acq->n, 1, "form %u", form);
		cr_assert_str_eq(h_field(&acq->m[0], 39), "96", "form %u", form);
		cr_assert_eq(H.m.pan_leaks_blocked, ++i, "form %u", form);
		cr_assert_eq(H.m.answers_undelivered_reversed, i, "form %u reversed", form);
		/* the reversal of the approval goes to the issuer */
		h_advance(&H, 0);
		h_collect(&H, TSW_EP_LINK, 0, iss);
	}
	/* DE52 (8 raw bytes) holding a 16-digit PAN in BCD */
	{
		uint8_t v[16];
		struct tsw_iso_edit ed;

		cr_assert_eq(bcd(v, pan, 1, false), 8, "a 16-digit PAN");
		forward("000710", NULL);
		ed = (struct tsw_iso_edit){52, 8, v};
		cr_assert_eq(answer_with(&iss->m[0], "0110", "05", &ed, 1), 0);
		collect_acq();
		cr_assert_eq(acq->n, 1);
		cr_assert_str_eq(h_field(&acq->m[0], 39), "96");
		cr_assert_eq(H.m.pan_leaks_blocked, i + 1);
	}
}

Test(wire, bcd_scan_finds_every_form_and_nothing_else)
{
	static const char *pans[] = {"5413000000000017", "541300000000015", "6011000990139424"};
	uint64_t seed = engine__pan_fp_seed_new();

	for (size_t i = 0; i < ARRAY_SIZE(pans); i++) {
		const char *pan = pans[i];
		size_t len = strlen(pan);
		uint64_t fp = engine__pan_fp(seed, pan, len);
		char other[24], track2[48];

		snprintf(track2, sizeof(track2), "%sD2912", pan);
		for (unsigned form = 0; form < 6; form++) {
			uint8_t buf[64] = {0x30, 0x31, 0x32}, v[32];
			size_t k;

			k = form < 4 ? bcd(v, pan, form % 2, form >= 2)
				     : bcd(v, track2, 1, form == 5);
			memcpy(buf + 3, v, k);
			buf[3 + k] = 0x20;
			cr_assert(engine__pan_fp_scan_bcd(seed, fp, len, pan + len - 4, buf, 4 + k),
				  "%s form %u", pan, form);
			cr_assert(engine__pan_fp_scan_bcd(seed, fp, len, pan + len - 4, v, k),
				  "%s form %u at the edges", pan, form);
			cr_assert_not(engine__pan_fp_scan(seed, fp, len, pan + len - 4, buf, 4 + k),
				      "no ASCII digits there");
		}
		/* one digit off, in the middle: not that PAN */
		snprintf(other, sizeof(other), "%s", pan);
		other[len / 2] = other[len / 2] == '9' ? '0' : (char)(other[len / 2] + 1);
		{
			uint8_t v[32];
			size_t k = bcd(v, other, 1, false);

			cr_assert_not(engine__pan_fp_scan_bcd(seed, fp, len, pan + len - 4, v, k),
				      "%s", other);
			k = bcd(v, other, 1, true);
			cr_assert_not(engine__pan_fp_scan_bcd(seed, fp, len, pan + len - 4, v, k),
				      "%s", other);
		}
		/* cut short by one byte: not all of it */
		{
			uint8_t v[32];
			size_t k = bcd(v, pan, 1, false);

			cr_assert_not(engine__pan_fp_scan_bcd(seed, fp, len, pan + len - 4, v,
							      k - 2 + len % 2),
				      "%s cut", pan);
		}
	}
}

/* An issuer answer without DE39 is counted as 96 and goes to the acquirer
 * with DE39 96: never an answer without a response code. */
Test(wire, an_answer_without_de39_reaches_the_acquirer_as_96)
{
	struct tsw_iso_msg req;
	uint8_t buf[2048];

	h_start(&H);
	forward("003001", NULL);
	cr_assert_leq(iss->m[0].len, sizeof(buf));
	memcpy(buf, iss->m[0].buf, iss->m[0].len);
	cr_assert_eq(tsw_iso_decode(&H.prof, buf, iss->m[0].len, &req), 0);
	cr_assert_eq(answer_with(&req, "0110", NULL, NULL, 0), 0);
	collect_acq();
	cr_assert_eq(acq->n, 1);
	cr_assert_str_eq(h_field(&acq->m[0], 39), "96", "the code the switch counted");
}
