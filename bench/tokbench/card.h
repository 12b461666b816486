/* tokbench playing the card and the terminal: the DE55 of a chip or
 * contactless request with a valid ARQC (the device is personalised with
 * the token as its PAN) and, with --pin, the acquirer's DE52, both under
 * keys loaded from the vault (cardkeys.h). Sans I/O. */
#ifndef TSW_BENCH_CARD_H
#define TSW_BENCH_CARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cardkeys.h"
#include "tokens.h"
#include "tsw/hsm.h"

#define BENCH_DE55_MAX 128 /* the tags below with a 32-byte 9F10 fit */
#define BENCH_ATC_MAX 0xFFFFu

/* One token of the list as a card. */
struct bench_card {
	const struct tsw_hsm_key *imk; /* NULL: the row sends no DE55 */
	const struct tsw_hsm_key *zpk; /* zpk-acquirer of the row's DE32; NULL: no DE52 */
	uint16_t atc;		       /* the last ATC sent */
	bool busy;		       /* a request of this token is in flight */
};

/* Every card of a token list, and what tokbench does with them. */
struct bench_cards {
	struct cardkeys *keys; /* the soft HSM, its session, the keys */
	struct bench_card *c;  /* c[i] is toks->t[i] */
	uint32_t n;
	char pin[TSW_HSM_PIN_DIGITS_MAX];
	uint8_t pin_len; /* 0: no DE52 */
};

/* True when a request of t needs a cryptogram: a cvn and a chip (05) or
 * contactless (07, 91) DE22. */
bool bench_card_needs_arqc(const struct bench_token *t);

/* Sets up cards for toks under keys: each row that needs an ARQC gets the
 * imk-ac of its range, and with pin (NULL: none) every row the
 * zpk-acquirer of its DE32, or with to_issuer (straight to issuer-sim, no
 * switch to translate) the zpk-issuer of issuer 0: the block the switch
 * would forward, bound to DE2. ATCs start at atc_start (the first one sent).
 * Returns 0, -TSW_E_NOT_FOUND (a row lacks its key: *ret_row names it,
 * 1-based, *ret_kind the key's kind), -ENOMEM. Free with
 * bench_cards_free(). */
int bench_cards_setup(const struct bench_tokens *toks, struct cardkeys *keys, const char *pin,
		      bool to_issuer, uint16_t atc_start, struct bench_cards *ret,
		      uint32_t *ret_row, enum tsw_vault_key_kind *ret_kind);

void bench_cards_free(struct bench_cards *cards);

/* What one ARQC covers besides the card: DE4 (12 digits), DE49 (3
 * digits), the transaction date (YYMMDD digits), the unpredictable number. */
struct bench_arqc_terms {
	char amount[12];
	char currency[3];
	char date[6];
	uint32_t un;
};

/* Builds DE55 (BER-TLV: 9F26 9F27 9F10 9F36 9F37 9F02 9F03 9F1A 95 5F2A
 * 9A 9C 82, and 5F34 when with_psn) for token t (cvn and psn from the
 * row) at atc under imk, 9F10 in the layout of t's CVN (Visa 10/18,
 * Mastercard 16/20), into out (BENCH_DE55_MAX bytes). *ret_in (may be
 * NULL) gets the ARQC's inputs, to check the answer's tag 91 with
 * tsw_hsm_arpc(). Returns the length, or the errors of
 * tsw_hsm_arqc_generate(). */
int bench_de55_build(struct tsw_hsm_session *s, const struct tsw_hsm_key *imk,
		     const struct bench_token *t, uint16_t atc, bool with_psn,
		     const struct bench_arqc_terms *terms, uint8_t out[BENCH_DE55_MAX],
		     struct tsw_hsm_arqc_input *ret_in);

/* The PSN of t as the HSM takes it (BCD). */
uint8_t bench_card_psn(const struct bench_token *t);

#endif
