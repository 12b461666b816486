/* The issuer's decision, sans I/O: request body in, answer body out.
 *
 * Answers 0100->0110, 0200->0210 (DE38 approval code on approvals, DE39 by
 * amount-suffix rules), 0120->0130, 0400->0410, 0420->0430 and 0800->0810
 * (DE39 00, DE70 echoed). Echoes DE2, DE3, DE4, DE7, DE11, DE12, DE13, DE32,
 * DE37, DE41, DE42, DE49 when present; never DE35 or DE48.
 */
#ifndef TSW_TOOLS_ANSWER_H
#define TSW_TOOLS_ANSWER_H

#include <stddef.h>
#include <stdint.h>

#include "tsw/hsm.h"
#include "tsw/iso8583.h"

#define SIM_RULES_MAX 32
#define SIM_RULE_SUFFIX_MAX 12 /* DE4 has 12 digits */

/* DE4 ending in suffix answers rc. */
struct sim_rule {
	char suffix[SIM_RULE_SUFFIX_MAX];
	uint8_t suffix_len;
	char rc[2];
};

struct sim_rules {
	struct sim_rule r[SIM_RULES_MAX];
	unsigned n;
};

/* Fills rules with the built-in rule 51=51 (amount ending in 51 declined
 * with 51, "insufficient funds"). */
void sim_rules_init(struct sim_rules *rules);

/* Parses "SUFFIX=RC" (1..12 digits, 2 alphanumerics) and adds it. The
 * longest matching suffix wins; among equal suffixes the one added last
 * (so a user rule "51=00" overrides the built-in one). Returns 0,
 * -TSW_E_BAD_INPUT or -TSW_E_FULL. */
int sim_rules_add(struct sim_rules *rules, const char *spec);

/* The response code for a 12-digit DE4 (or a shorter one): "00" when no
 * rule matches. Writes 2 characters to ret_rc. */
void sim_rules_apply(const struct sim_rules *rules, const uint8_t *de4, size_t len, char ret_rc[2]);

/* The PIN check of an issuer that knows its cardholder's PIN: an
 * authorization request (0100/0200) with DE52 is checked under zpk (the
 * zpk-issuer, so the block is the one the switch translated) bound to
 * DE2 (the PAN the switch forwards); a wrong PIN, a block of another PAN
 * or of the wrong length is declined 55. No DE52: no check. */
struct sim_pin {
	struct tsw_hsm_session *s;
	const struct tsw_hsm_key *zpk;
	char pin[TSW_HSM_PIN_DIGITS_MAX];
	uint8_t pin_len;
	uint64_t checked, wrong; /* counted by sim_answer_build() */
};

enum sim_verdict {
	SIM_ANSWER,    /* an answer was written */
	SIM_NO_ANSWER, /* not a request an issuer answers (a response, unknown MTI) */
	SIM_VERDICT_MAX
};

/* Builds the answer to one request body (no length header) into out.
 * auth_seq numbers the approval code (DE38, 6 digits). pin (NULL: no PIN
 * check) declines a wrong DE52 with 55 before the amount rules. On success returns
 * the answer's length (>0) with *ret_verdict SIM_ANSWER and ret_rc set to
 * its DE39, or 0 with SIM_NO_ANSWER. Returns a negative -TSW_E_* from
 * decode (malformed request) or encode (-TSW_E_NO_SPACE). */
int sim_answer_build(const struct tsw_iso_profile *p, const struct sim_rules *rules,
		     struct sim_pin *pin, uint32_t auth_seq, const uint8_t *req, size_t len,
		     uint8_t *out, size_t cap, enum sim_verdict *ret_verdict, char ret_rc[2]);

#endif
