#include "card.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tsw/error.h"

/* The card's constant data: an ARQC (9F27 80), terminal country and
 * currency as DE49, TVR all clear, a purchase (9C 00), AIP with SDA/CDA
 * and cardholder verification (82 3900). */
#define CID_ARQC 0x80
#define AIP_0 0x39
#define AIP_1 0x00
/* 9F10: Visa format (length 06, DKI, CVN, CVR of 4 with its length byte
 * 03) and Mastercard M/Chip (DKI, CVN, CVR of 6, DAC, counters). */
static const uint8_t visa_iad[] = {0x06, 0x01, 0x00, 0x03, 0xA0, 0x00, 0x00};
static const uint8_t mc_iad[] = {0x01, 0x00, 0xA0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
				 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xFF};
#define VISA_IAD_CVN 2
#define VISA_IAD_CVR 3
#define VISA_CVR_LEN 4
#define MC_IAD_CVN 1
#define MC_IAD_CVR 2
#define MC_CVR_LEN 6

bool bench_card_needs_arqc(const struct bench_token *t)
{
	return t->cvn && ((t->pos[0] == '0' && (t->pos[1] == '5' || t->pos[1] == '7')) ||
			  (t->pos[0] == '9' && t->pos[1] == '1'));
}

uint8_t bench_card_psn(const struct bench_token *t)
{
	return (uint8_t)((t->psn / 10) << 4 | t->psn % 10);
}

int bench_cards_setup(const struct bench_tokens *toks, struct cardkeys *keys, const char *pin,
		      bool to_issuer, uint16_t atc_start, struct bench_cards *ret,
		      uint32_t *ret_row, enum tsw_vault_key_kind *ret_kind)
{
	struct bench_cards out = {.keys = keys, .n = toks->n};
	uint32_t i;

	out.c = calloc(toks->n, sizeof(*out.c));
	if (!out.c)
		return -ENOMEM;
	for (i = 0; i < toks->n; i++) {
		const struct bench_token *t = &toks->t[i];
		struct bench_card *c = &out.c[i];

		/* the ATC sent is the last one plus 1 */
		c->atc = (uint16_t)(atc_start - 1);
		if (bench_card_needs_arqc(t)) {
			c->imk =
			    cardkeys_by_prefix(keys, TSW_VAULT_KEY_IMK_AC, t->token, t->token_len);
			*ret_kind = TSW_VAULT_KEY_IMK_AC;
			if (!c->imk)
				goto err_missing;
		}
		if (pin && to_issuer) {
			c->zpk = cardkeys_by_scope(keys, TSW_VAULT_KEY_ZPK_ISSUER, "0", 1);
			*ret_kind = TSW_VAULT_KEY_ZPK_ISSUER;
		} else if (pin) {
			c->zpk = cardkeys_by_scope(keys, TSW_VAULT_KEY_ZPK_ACQUIRER, t->acquirer,
						   t->acquirer_len);
			*ret_kind = TSW_VAULT_KEY_ZPK_ACQUIRER;
		}
		if (pin && !c->zpk)
			goto err_missing;
	}
	if (pin) {
		out.pin_len = (uint8_t)strlen(pin);
		memcpy(out.pin, pin, out.pin_len);
	}
	*ret = out;
	return 0;

err_missing:
	*ret_row = i + 1;
	free(out.c);
	return -TSW_E_NOT_FOUND;
}

void bench_cards_free(struct bench_cards *cards)
{
	free(cards->c);
	cards->c = NULL;
	cards->n = 0;
}

static void bcd(const char *digits, size_t n, uint8_t *out)
{
	for (size_t i = 0; i < n; i += 2)
		out[i / 2] = (uint8_t)((digits[i] - '0') << 4 | (digits[i + 1] - '0'));
}

/* The card's data for terms, in struct tsw_hsm_arqc_input. */
static void arqc_input(const struct bench_token *t, uint16_t atc, bool with_psn,
		       const struct bench_arqc_terms *terms, struct tsw_hsm_arqc_input *in)
{
	char cur[4] = {'0', terms->currency[0], terms->currency[1], terms->currency[2]};
	bool visa = t->cvn == TSW_HSM_CVN_VISA_10 || t->cvn == TSW_HSM_CVN_VISA_18;

	memset(in, 0, sizeof(*in));
	in->cvn = t->cvn;
	in->cid = CID_ARQC;
	bcd(terms->amount, 12, in->amount);
	bcd(cur, 4, in->country);
	bcd(cur, 4, in->currency);
	bcd(terms->date, 6, in->date);
	in->type = 0x00;
	for (int i = 0; i < 4; i++)
		in->un[i] = (uint8_t)(terms->un >> (24 - 8 * i));
	in->aip[0] = AIP_0;
	in->aip[1] = AIP_1;
	in->atc[0] = (uint8_t)(atc >> 8);
	in->atc[1] = (uint8_t)atc;
	if (visa) {
		memcpy(in->iad, visa_iad, sizeof(visa_iad));
		in->iad_len = sizeof(visa_iad);
		in->iad[VISA_IAD_CVN] = t->cvn;
		memcpy(in->cvr, in->iad + VISA_IAD_CVR, VISA_CVR_LEN);
		in->cvr_len = VISA_CVR_LEN;
	} else {
		memcpy(in->iad, mc_iad, sizeof(mc_iad));
		in->iad_len = sizeof(mc_iad);
		in->iad[MC_IAD_CVN] = t->cvn;
		memcpy(in->cvr, in->iad + MC_IAD_CVR, MC_CVR_LEN);
		in->cvr_len = MC_CVR_LEN;
	}
	in->has_psn = with_psn;
	in->psn = with_psn ? bench_card_psn(t) : 0;
}

int bench_de55_build(struct tsw_hsm_session *s, const struct tsw_hsm_key *imk,
		     const struct bench_token *t, uint16_t atc, bool with_psn,
		     const struct bench_arqc_terms *terms, uint8_t out[BENCH_DE55_MAX],
		     struct tsw_hsm_arqc_input *ret_in)
{
	struct tsw_hsm_arqc_input in;
	int r;

	arqc_input(t, atc, with_psn, terms, &in);
	r = tsw_hsm_arqc_generate(s, imk, t->token, t->token_len, bench_card_psn(t), &in, in.arqc);
	if (r < 0)
		return r;
	r = tsw_hsm_de55_build(&in, out, BENCH_DE55_MAX);
	if (r < 0)
		return r;
	if (ret_in)
		*ret_in = in;
	return r;
}
