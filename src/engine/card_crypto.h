/* Card cryptography in the pipeline (card_crypto.c) and the key set it
 * uses (card_keys.c): the cryptogram of a request (EMV ARQC in DE55, or
 * the token cryptogram of DE48 tag 11) with its counter's replay check,
 * the issuer's answer to it (tag 91), and the PIN block of DE52
 * translated from the token to the PAN. docs/decisions.md says when each
 * applies and what it answers. Internal to src/engine. */
#ifndef TSW_ENGINE_CARD_CRYPTO_H
#define TSW_ENGINE_CARD_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine_int.h"
#include "tsw/authz.h"
#include "tsw/engine.h"
#include "tsw/iso8583.h"
#include "tsw/token.h"
#include "tsw/vault.h"

struct tsw_engine;
struct tsw_hsm_key;

/* card_keys.c: keys [first, first + n) of a set, newest first. */
struct card_keys_run {
	uint32_t first, n;
};

/* Takes a reference on k (NULL is fine) and returns k. */
struct tsw_card_keys *engine__card_keys_get(struct tsw_card_keys *k);
/* The keys of kind whose range is the longest prefix of token that has
 * any (imk-ac, tavv). k NULL: none. */
struct card_keys_run engine__card_keys_for_token(const struct tsw_card_keys *k,
						 enum tsw_vault_key_kind kind, const char *token,
						 size_t len);
/* The keys of kind with exactly this scope (zpk-acquirer: DE32; zpk-issuer:
 * the issuer index in decimal). */
struct card_keys_run engine__card_keys_for_scope(const struct tsw_card_keys *k,
						 enum tsw_vault_key_kind kind, const char *scope,
						 size_t len);
const struct tsw_hsm_key *engine__card_key(const struct tsw_card_keys *k, uint32_t i);

/* What a request's cryptogram checks left for the rest of the pipeline. */
struct card_check {
	uint64_t ticket;       /* the counter's durability ticket (has_ticket) */
	bool has_ticket;       /* a counter was accepted: answer only once durable */
	struct card_arpc arpc; /* a verified ARQC: its answer owes tag 91 */
};

/* The cryptogram checks of request q (message m) of token t, after
 * tsw_authz_decide forwarded it and before any limited use is taken:
 * TSW_AUTHZ_FORWARD when it may go on (nothing required, or it verified
 * and its counter was accepted: out->has_ticket), else the decline.
 * counter_done: the request ran before and its counter was accepted then
 * (it waited for the ticket): verify again, do not count again. Counted
 * in the metrics by result. out->arpc holds a key reference when set:
 * engine__card_arpc_drop() it unless it moves into a request. */
enum tsw_authz_reason engine__card_check_needed(struct tsw_engine *e, const struct tsw_token *t,
						const struct tsw_authz_req *q,
						const struct tsw_iso_msg *m, bool counter_done,
						struct card_check *out);
/* Inline: most requests need no cryptogram (no CVN, no card keys). */
static inline enum tsw_authz_reason
engine__card_check(struct tsw_engine *e, const struct tsw_token *t, const struct tsw_authz_req *q,
		   const struct tsw_iso_msg *m, bool counter_done, struct card_check *out)
{
	/* what the pipeline reads of it; the rest is set with these */
	out->has_ticket = false;
	out->arpc.keys = NULL;
	if (!t->cvn && !e->card_keys)
		return TSW_AUTHZ_FORWARD;
	return engine__card_check_needed(e, t, q, m, counter_done, out);
}

/* Drops the key reference a (possibly empty) ARPC holds. Inline: every
 * request passes here, few hold one. */
static inline void engine__card_arpc_drop(struct card_arpc *a)
{
	if (a->keys) {
		tsw_card_keys_put(a->keys);
		a->keys = NULL;
	}
}

/* Appends tag 91 (issuer authentication data) for the ARQC a verified,
 * answered with DE39 rc, to the DE55 TLV bytes buf[0..*len) (cap bytes).
 * Returns 0 (*len grown), or a negative error (nothing appended). */
int engine__card_arpc_append(struct tsw_engine *e, const char *token, size_t token_len,
			     const struct card_arpc *a, const char rc[2], uint8_t *buf, size_t cap,
			     size_t *len);

/* DE52 of m translated for issuer index iss: out[0..*ret_len). Returns
 * TSW_AUTHZ_FORWARD, or TSW_AUTHZ_PIN_BLOCK (counted by reason). The
 * clear PIN never leaves the HSM. */
enum tsw_authz_reason engine__card_pin(struct tsw_engine *e, const struct tsw_iso_msg *m,
				       const struct tsw_authz_req *q, const struct tsw_token *t,
				       const char *pan, size_t pan_len, uint32_t iss, uint8_t *out,
				       size_t *ret_len);

#endif
